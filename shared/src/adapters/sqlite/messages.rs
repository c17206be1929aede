//! Messages on SQLite: one row per message in its timeline (direct, a group's history, an
//! inline group's copies), keyed by its sender and id (a retry finds it), read in its order
//! key's order from an index. A new message's row and its delivery (the outbox) are one
//! transaction: the write is the event.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::outbox::enqueue_delivery;
use super::{SqliteStore, from_json, to_json};
use crate::error::Result;
use crate::keys;
use crate::model::Message;
use crate::ports::{MessageStore, Origin, Page, PageRequest, Streamed, Timeline, Window, Written};

/// The key of a timeline.
pub(super) fn timeline_key(timeline: &Timeline) -> String {
    match timeline {
        Timeline::Direct { app, a, b } => keys::direct_pk(app, a, b),
        Timeline::History { app, group } => keys::history_pk(app, group),
        Timeline::Copies { app, owner, with } => keys::timeline_pk(app, owner, with),
    }
}

/// Where a new message goes: its timeline and its order there.
fn placed(written: &Written) -> (String, String) {
    let m = &written.message;
    match &written.origin {
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
    }
}

/// Writes `message` at `order` in `timeline`, replacing the copy of the same sender and id.
fn upsert(c: &Connection, timeline: &str, message: &Message, order: &str) -> Result<()> {
    let sk = keys::message_sk(&message.sender, &message.message_id);
    c.prepare_cached(
        "INSERT INTO messages (timeline, sk, order_key, message) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (timeline, sk) DO UPDATE SET order_key = excluded.order_key,
         message = excluded.message",
    )?
    .execute(params![timeline, sk, order, to_json(message)?])?;
    Ok(())
}

fn messages_of(
    rows: &mut rusqlite::Rows<'_>,
    mut keep: impl FnMut(&str) -> bool,
    limit: usize,
) -> Result<Vec<(String, Message)>> {
    let mut found = Vec::new();
    while found.len() < limit
        && let Some(row) = rows.next()?
    {
        let order: String = row.get(0)?;
        if !keep(&order) {
            continue;
        }
        let text: String = row.get(1)?;
        found.push((order, from_json(&text)?));
    }
    Ok(found)
}

#[async_trait]
impl MessageStore for SqliteStore {
    async fn put_message(&self, written: &Written) -> Result<Option<Message>> {
        let written = written.clone();
        let earlier = self
            .db
            .write(move |c| {
                let (timeline, order) = placed(&written);
                let m = &written.message;
                let sk = keys::message_sk(&m.sender, &m.message_id);
                let inserted = c
                    .prepare_cached(
                        "INSERT INTO messages (timeline, sk, order_key, message)
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (timeline, sk) DO NOTHING",
                    )?
                    .execute(params![timeline, sk, order, to_json(m)?])?;
                if inserted == 0 {
                    let earlier: String = c
                        .prepare_cached(
                            "SELECT message FROM messages WHERE timeline = ?1 AND sk = ?2",
                        )?
                        .query_row(params![timeline, sk], |r| r.get(0))?;
                    return Ok(Some(from_json(&earlier)?));
                }
                enqueue_delivery(c, &timeline, &Streamed::Message(written))?;
                Ok(None)
            })
            .await?;
        if earlier.is_none() {
            self.deliveries_added.notify_one();
        }
        Ok(earlier)
    }

    async fn next_seq(&self, app: &str, group: &str, count: u64) -> Result<Option<u64>> {
        let pk = keys::group_pk(app, group);
        self.db
            .write(move |c| {
                let seq: Option<u64> = c
                    .prepare_cached("UPDATE groups SET seq = seq + ?2 WHERE pk = ?1 RETURNING seq")?
                    .query_row(params![pk, count], |r| r.get(0))
                    .optional()?;
                Ok(seq.map(|seq| seq + 1 - count))
            })
            .await
    }

    async fn put_system_messages(&self, messages: &[(Message, u64)]) -> Result<()> {
        let messages = messages.to_vec();
        self.db
            .write(move |c| {
                for (message, seq) in &messages {
                    let timeline = keys::history_pk(&message.app_id, &message.recipient);
                    upsert(c, &timeline, message, &keys::group_order(*seq, message))?;
                }
                Ok(())
            })
            .await
    }

    async fn put_copies(&self, copies: &[Message]) -> Result<()> {
        let copies = copies.to_vec();
        self.db
            .write(move |c| {
                for copy in &copies {
                    let timeline =
                        keys::timeline_pk(&copy.app_id, &copy.timeline_of, &copy.convers_with);
                    upsert(c, &timeline, copy, &keys::order_of(copy))?;
                }
                Ok(())
            })
            .await
    }

    async fn get_message(
        &self,
        timeline: &Timeline,
        sender: &str,
        message_id: &str,
    ) -> Result<Option<Message>> {
        let (timeline, sk) = (timeline_key(timeline), keys::message_sk(sender, message_id));
        self.db
            .read(move |c| {
                let text: Option<String> = c
                    .prepare_cached("SELECT message FROM messages WHERE timeline = ?1 AND sk = ?2")?
                    .query_row(params![timeline, sk], |r| r.get(0))
                    .optional()?;
                text.map(|t| from_json(&t)).transpose()
            })
            .await
    }

    async fn list_timeline(
        &self,
        timeline: &Timeline,
        windows: Option<&[Window]>,
        cleared_to: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Message>> {
        let timeline = timeline_key(timeline);
        let windows = windows.map(<[Window]>::to_vec);
        let cleared_to = cleared_to.unwrap_or("").to_string();
        let page = page.clone();
        self.db
            .read(move |c| {
                // Newest first, below the cursor and above what was cleared; windows filter.
                let before = page.after.as_ref().map_or("~", |p| p.order.as_str());
                let mut statement = c.prepare_cached(
                    "SELECT order_key, message FROM messages
                     WHERE timeline = ?1 AND order_key < ?2 AND order_key > ?3
                     ORDER BY order_key DESC",
                )?;
                let mut rows = statement.query(params![timeline, before, cleared_to])?;
                let seen = |order: &str| {
                    windows
                        .as_ref()
                        .is_none_or(|ws| ws.iter().any(|w| w.contains(order)))
                };
                let newest_first = messages_of(&mut rows, seen, page.limit + 1)?;
                Ok(page.page_of(newest_first))
            })
            .await
    }

    async fn history_run(
        &self,
        app: &str,
        group: &str,
        first: u64,
        count: u64,
    ) -> Result<Vec<(Message, u64)>> {
        let timeline = keys::history_pk(app, group);
        let low = keys::message_order(first, "", "");
        let high = keys::message_order(first + count, "", "");
        self.db
            .read(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT order_key, message FROM messages
                     WHERE timeline = ?1 AND order_key >= ?2 AND order_key < ?3
                     ORDER BY order_key",
                )?;
                let mut rows = statement.query(params![timeline, low, high])?;
                messages_of(&mut rows, |_| true, usize::MAX)?
                    .into_iter()
                    .map(|(order, m)| Ok((m, keys::place_of(&order)?)))
                    .collect()
            })
            .await
    }

    async fn history_before(
        &self,
        app: &str,
        group: &str,
        before: &str,
        n: usize,
    ) -> Result<Vec<(Message, String)>> {
        let (timeline, before) = (keys::history_pk(app, group), before.to_string());
        self.db
            .read(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT order_key, message FROM messages
                     WHERE timeline = ?1 AND order_key < ?2 ORDER BY order_key DESC LIMIT ?3",
                )?;
                let mut rows = statement.query(params![timeline, before, n as i64])?;
                Ok(messages_of(&mut rows, |_| true, n)?
                    .into_iter()
                    .map(|(o, m)| (m, o))
                    .collect())
            })
            .await
    }

    async fn delete_copies(&self, app: &str, owner: &str, with: &str) -> Result<()> {
        let timeline = keys::timeline_pk(app, owner, with);
        self.db
            .write(move |c| {
                c.prepare_cached("DELETE FROM messages WHERE timeline = ?1")?
                    .execute([timeline])?;
                Ok(())
            })
            .await
    }
}
