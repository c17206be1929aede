//! Conversations on SQLite: one row per (user, peer or group), its state as JSON beside its
//! list order, so that a user's list is a range of the `conversations_listed` index (newest
//! first), never a read of all their rows. Every change reads and writes the row in one job of
//! the writer: atomic, as DynamoDB's conditional updates are.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::row::Row;
use super::{SqliteStore, from_json, to_json};
use crate::error::Result;
use crate::keys;
use crate::model::Conversation;
use crate::ports::{
    Applied, ConversationKind, ConversationStore, Page, PageRequest, ReadMark, RowUpdate,
    TimelineView,
};

fn load(c: &Connection, owner: &str, with: &str) -> Result<Option<Row>> {
    let text: Option<String> = c
        .prepare_cached("SELECT row FROM conversations WHERE owner = ?1 AND with_id = ?2")?
        .query_row(params![owner, with], |r| r.get(0))
        .optional()?;
    text.map(|t| from_json(&t)).transpose()
}

fn save(c: &Connection, owner: &str, with: &str, row: &Row) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO conversations (owner, with_id, list_key, row) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (owner, with_id) DO UPDATE SET list_key = excluded.list_key,
         row = excluded.row",
    )?
    .execute(params![owner, with, row.list_key(), to_json(row)?])?;
    Ok(())
}

impl SqliteStore {
    /// Reads `user`'s row with `with`, changes it with `change` and writes it back, in one
    /// job of the writer; `None` without a row.
    async fn change_row<T: Send + 'static>(
        &self,
        app: &str,
        user: &str,
        with: &str,
        change: impl FnOnce(&mut Row) -> Option<T> + Send + 'static,
    ) -> Result<Option<T>> {
        let (owner, with) = (keys::user_pk(app, user), with.to_string());
        self.db
            .write(move |c| {
                let Some(mut row) = load(c, &owner, &with)? else {
                    return Ok(None);
                };
                let before = row.clone();
                let outcome = change(&mut row);
                if row != before {
                    save(c, &owner, &with, &row)?;
                }
                Ok(outcome)
            })
            .await
    }

    /// Reads `user`'s row with `with`.
    async fn read_row<T: Send + 'static>(
        &self,
        app: &str,
        user: &str,
        with: &str,
        read: impl FnOnce(Row) -> Option<T> + Send + 'static,
    ) -> Result<Option<T>> {
        let (owner, with) = (keys::user_pk(app, user), with.to_string());
        self.db
            .read(move |c| Ok(load(c, &owner, &with)?.and_then(read)))
            .await
    }
}

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn apply(&self, owner: &str, with: &str, update: &RowUpdate) -> Result<Applied> {
        let (owner, with) = (keys::user_pk(&update.last.app_id, owner), with.to_string());
        let update = update.clone();
        self.db
            .write(move |c| {
                let Some(mut row) = load(c, &owner, &with)? else {
                    save(c, &owner, &with, &Row::started(&update))?;
                    return Ok(Applied::Newer { unarchived: false });
                };
                let applied = row.apply(&update);
                if !matches!(applied, Applied::Already | Applied::Refused) {
                    save(c, &owner, &with, &row)?;
                }
                Ok(applied)
            })
            .await
    }

    async fn lags(&self, app: &str, owner: &str, with: &str, order: &str) -> Result<bool> {
        let order = order.to_string();
        let lags = self
            .read_row(app, owner, with, move |row| {
                Some(
                    ConversationKind::from(row.kind) != ConversationKind::Direct
                        || row.last_key < order,
                )
            })
            .await?;
        Ok(lags.unwrap_or(true))
    }

    async fn get_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>> {
        self.read_row(app, user, with, |row| {
            (!row.deleted).then_some(row.conversation)
        })
        .await
    }

    async fn timeline_view(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<TimelineView>> {
        self.read_row(app, user, with, |row| Some(row.view())).await
    }

    async fn list_conversations(
        &self,
        app: &str,
        user: &str,
        archived: bool,
        page: &PageRequest,
    ) -> Result<Page<Conversation>> {
        let owner = keys::user_pk(app, user);
        let prefix = format!("{}#", keys::list_prefix(archived));
        // Every list key of the list starts with `prefix`; '$' sorts right after '#'.
        let end = format!("{}$", keys::list_prefix(archived));
        let before = page.after.as_ref().map_or(end, |p| p.order.clone());
        let page = page.clone();
        self.db
            .read(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT list_key, row FROM conversations
                     WHERE owner = ?1 AND list_key >= ?2 AND list_key < ?3
                     ORDER BY list_key DESC LIMIT ?4",
                )?;
                let mut rows =
                    statement.query(params![owner, prefix, before, (page.limit + 1) as i64])?;
                let mut listed = Vec::new();
                while let Some(r) = rows.next()? {
                    let order: String = r.get(0)?;
                    let text: String = r.get(1)?;
                    let row: Row = from_json(&text)?;
                    listed.push((order, row.conversation));
                }
                Ok(page.page_of(listed))
            })
            .await
    }

    async fn archive_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>> {
        self.change_row(app, user, with, |row| {
            (!row.deleted).then(|| {
                row.conversation.archived = true;
                row.conversation.clone()
            })
        })
        .await
    }

    async fn delete_conversation(&self, app: &str, user: &str, with: &str) -> Result<()> {
        self.change_row(app, user, with, |row| {
            row.delete();
            Some(())
        })
        .await
        .map(|_| ())
    }

    async fn mark_read(
        &self,
        app: &str,
        user: &str,
        with: &str,
        at: u64,
    ) -> Result<Option<Conversation>> {
        self.change_row(app, user, with, move |row| {
            (!row.deleted).then(|| {
                let c = &mut row.conversation;
                c.is_new = false;
                c.unread_count = 0;
                c.read_at = Some(at.max(row.newest_at));
                c.clone()
            })
        })
        .await
    }

    async fn raise_read_mark(
        &self,
        app: &str,
        user: &str,
        with: &str,
        mark: ReadMark,
        at: u64,
    ) -> Result<()> {
        self.change_row(app, user, with, move |row| {
            if !row.deleted {
                let mark = match mark {
                    ReadMark::Received => &mut row.conversation.received_up_to,
                    ReadMark::Peer => &mut row.conversation.peer_read_at,
                };
                *mark = Some(mark.map_or(at, |old| old.max(at)));
            }
            Some(())
        })
        .await
        .map(|_| ())
    }

    async fn open_window(&self, app: &str, member: &str, group: &str, from: &str) -> Result<()> {
        let from = from.to_string();
        self.change_row(app, member, group, move |row| {
            row.open_window(&from);
            Some(())
        })
        .await
        .map(|_| ())
    }

    async fn close_window(&self, app: &str, member: &str, group: &str, at: &str) -> Result<()> {
        let at = at.to_string();
        self.change_row(app, member, group, move |row| {
            row.close_window(&at);
            Some(())
        })
        .await
        .map(|_| ())
    }
}
