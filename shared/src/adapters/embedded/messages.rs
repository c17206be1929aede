//! Messages on the embedded store: direct timelines, group histories, inline copies.

use async_trait::async_trait;

use super::EmbeddedStore;
use crate::error::Result;
use crate::keys;
use crate::model::Message;
use crate::ports::{MessageStore, Origin, Page, PageRequest, Streamed, Timeline, Window, Written};

/// The partition key of a timeline.
pub(super) fn pk_of(timeline: &Timeline) -> String {
    match timeline {
        Timeline::Direct { app, a, b } => keys::direct_pk(app, a, b),
        Timeline::History { app, group } => keys::history_pk(app, group),
        Timeline::Copies { app, owner, with } => keys::timeline_pk(app, owner, with),
    }
}

#[async_trait]
impl MessageStore for EmbeddedStore {
    async fn put_message(&self, written: &Written) -> Result<Option<Message>> {
        let m = &written.message;
        let (pk, order) = match &written.origin {
            Origin::Direct => (
                keys::direct_pk(&m.app_id, &m.sender, &m.recipient),
                keys::order_of(m),
            ),
            Origin::Inline { .. } => (
                keys::timeline_pk(&m.app_id, &m.sender, &m.recipient),
                keys::order_of(m),
            ),
            Origin::Group { seq } => (
                keys::history_pk(&m.app_id, &m.recipient),
                keys::group_order(*seq, m),
            ),
        };
        let sk = keys::message_sk(&m.sender, &m.message_id);
        {
            let mut state = self.state();
            let timeline = state.timelines.entry(pk).or_default();
            if let Some(earlier) = timeline.get(&sk) {
                return Ok(Some(earlier.clone()));
            }
            timeline.put(sk, order, m);
        }
        self.streamed(Streamed::Message(written.clone()));
        Ok(None)
    }

    async fn next_seq(&self, app: &str, group: &str, count: u64) -> Result<Option<u64>> {
        let mut state = self.state();
        Ok(state.groups.get_mut(&keys::group_pk(app, group)).map(|g| {
            g.meta.seq += count;
            g.meta.seq - count + 1
        }))
    }

    async fn put_system_messages(&self, messages: &[(Message, u64)]) -> Result<()> {
        let mut state = self.state();
        for (message, seq) in messages {
            let pk = keys::history_pk(&message.app_id, &message.recipient);
            let sk = keys::message_sk(&message.sender, &message.message_id);
            let order = keys::group_order(*seq, message);
            state
                .timelines
                .entry(pk)
                .or_default()
                .put(sk, order, message);
        }
        Ok(())
    }

    async fn put_copies(&self, copies: &[Message]) -> Result<()> {
        let mut state = self.state();
        for copy in copies {
            let pk = keys::timeline_pk(&copy.app_id, &copy.timeline_of, &copy.convers_with);
            let sk = keys::message_sk(&copy.sender, &copy.message_id);
            state
                .timelines
                .entry(pk)
                .or_default()
                .put(sk, keys::order_of(copy), copy);
        }
        Ok(())
    }

    async fn get_message(
        &self,
        timeline: &Timeline,
        sender: &str,
        message_id: &str,
    ) -> Result<Option<Message>> {
        let state = self.state();
        let sk = keys::message_sk(sender, message_id);
        Ok(state
            .timelines
            .get(&pk_of(timeline))
            .and_then(|t| t.get(&sk))
            .cloned())
    }

    async fn list_timeline(
        &self,
        timeline: &Timeline,
        windows: Option<&[Window]>,
        cleared_to: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Message>> {
        let state = self.state();
        let Some(t) = state.timelines.get(&pk_of(timeline)) else {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        };
        let seen = |order: &str| {
            cleared_to.is_none_or(|c| order > c)
                && windows.is_none_or(|ws| ws.iter().any(|w| w.contains(order)))
        };
        let newest_first = t
            .by_order
            .iter()
            .rev()
            .filter(|(o, _)| seen(o))
            .map(|(o, m)| (o.clone(), m.clone()));
        Ok(page.page_of(newest_first))
    }

    async fn history_run(
        &self,
        app: &str,
        group: &str,
        first: u64,
        count: u64,
    ) -> Result<Vec<(Message, u64)>> {
        let state = self.state();
        let Some(history) = state.timelines.get(&keys::history_pk(app, group)) else {
            return Ok(Vec::new());
        };
        let low = keys::message_order(first, "", "");
        let high = keys::message_order(first + count, "", "");
        Ok(history
            .by_order
            .range(low..high)
            .filter_map(|(order, m)| Some((m.clone(), order.split('#').next()?.parse().ok()?)))
            .collect())
    }

    async fn history_before(
        &self,
        app: &str,
        group: &str,
        before: &str,
        n: usize,
    ) -> Result<Vec<(Message, String)>> {
        let state = self.state();
        Ok(state
            .timelines
            .get(&keys::history_pk(app, group))
            .map(|t| {
                t.by_order
                    .range(..before.to_string())
                    .rev()
                    .take(n)
                    .map(|(o, m)| (m.clone(), o.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn delete_copies(&self, app: &str, owner: &str, with: &str) -> Result<()> {
        self.state()
            .timelines
            .remove(&keys::timeline_pk(app, owner, with));
        Ok(())
    }
}
