//! Conversations on the embedded store.

use async_trait::async_trait;

use super::{EmbeddedStore, page_of, timeline_key};
use crate::error::Result;
use crate::keys;
use crate::model::{Conversation, Message};
use crate::ports::{ConversationStore, Delivery, Page, PageRequest, ReadMark, Unarchived};

#[async_trait]
impl ConversationStore for EmbeddedStore {
    async fn deliver(&self, deliveries: &[Delivery]) -> Result<Vec<Unarchived>> {
        let mut state = self.state();
        let mut unarchived = vec![false; deliveries.len()];
        for (delivery, unarchived) in deliveries.iter().zip(&mut unarchived) {
            let copy = &delivery.copy;
            let timeline = state.timelines.entry(timeline_key(copy)).or_default();
            if timeline.contains(copy) {
                continue;
            }
            timeline.put(copy);
            if !delivery.update_conversation {
                continue;
            }
            *unarchived = state.set_last(copy, delivery.unread);
            if delivery.unread
                && let Some(row) = state.row(&copy.app_id, &copy.timeline_of, &copy.convers_with)
            {
                row.conversation.unread_count += 1;
            }
        }
        Ok(unarchived)
    }

    async fn touch_conversation(&self, copy: &Message) -> Result<Unarchived> {
        Ok(self.state().set_last(copy, false))
    }

    async fn get_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>> {
        Ok(self
            .state()
            .row(app, user, with)
            .map(|r| r.conversation.clone()))
    }

    async fn list_conversations(
        &self,
        app: &str,
        user: &str,
        archived: bool,
        page: &PageRequest,
    ) -> Result<Page<Conversation>> {
        let state = self.state();
        let Some(rows) = state.conversations.get(&keys::user_pk(app, user)) else {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        };
        let mut listed: Vec<(String, Conversation)> = rows
            .iter()
            .filter(|(_, row)| row.conversation.archived == archived)
            .map(|(with, row)| {
                let c = &row.conversation;
                (
                    keys::conversation_order(archived, c.last.timestamp, with),
                    c.clone(),
                )
            })
            .collect();
        listed.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(page_of(listed.into_iter(), page))
    }

    async fn archive_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>> {
        Ok(self.state().row(app, user, with).map(|row| {
            row.conversation.archived = true;
            row.conversation.clone()
        }))
    }

    async fn delete_timeline(&self, app: &str, user: &str, with: &str) -> Result<()> {
        self.state()
            .timelines
            .remove(&keys::timeline_pk(app, user, with));
        Ok(())
    }

    async fn delete_conversation(&self, app: &str, user: &str, with: &str) -> Result<()> {
        if let Some(rows) = self
            .state()
            .conversations
            .get_mut(&keys::user_pk(app, user))
        {
            rows.remove(with);
        }
        Ok(())
    }

    async fn mark_read(
        &self,
        app: &str,
        user: &str,
        with: &str,
        at: u64,
    ) -> Result<Option<Conversation>> {
        Ok(self.state().row(app, user, with).map(|row| {
            let c = &mut row.conversation;
            c.is_new = false;
            c.unread_count = 0;
            c.read_at = Some(at);
            c.clone()
        }))
    }

    async fn raise_read_mark(
        &self,
        app: &str,
        user: &str,
        with: &str,
        mark: ReadMark,
        at: u64,
    ) -> Result<()> {
        if let Some(row) = self.state().row(app, user, with) {
            let mark = match mark {
                ReadMark::Received => &mut row.conversation.received_up_to,
                ReadMark::Peer => &mut row.conversation.peer_read_at,
            };
            *mark = Some(mark.map_or(at, |old| old.max(at)));
        }
        Ok(())
    }
}
