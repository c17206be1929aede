//! Conversations on the embedded store.

use async_trait::async_trait;

use super::{EmbeddedStore, Row, State};
use crate::adapters::row::{self, Seen};
use crate::error::Result;
use crate::keys;
use crate::model::Conversation;
use crate::ports::{
    Applied, ConversationKind, ConversationStore, Page, PageRequest, ReadMark, RowUpdate,
    TimelineView, Window,
};

impl Row {
    /// A new row, or one starting over: `update` as its only messages.
    fn started(update: &RowUpdate) -> Row {
        let plan = row::plan(&update.orders, &Seen::default());
        let mut conversation = Conversation::from_last(&update.last, update.unread);
        conversation.unread_count = u64::from(update.unread) * plan.counted();
        Row {
            conversation,
            kind: update.kind,
            last_key: update.last_order().to_string(),
            seen: plan.current,
            seen_before: plan.previous,
            open_from: (update.kind == ConversationKind::Group && update.opens_window)
                .then(|| update.first_order().to_string()),
            closed: Vec::new(),
            cleared_to: None,
            deleted: false,
            newest_at: update.newest_at,
        }
    }
}

impl State {
    fn row(&mut self, app: &str, user: &str, with: &str) -> Option<&mut Row> {
        self.rows.get_mut(&keys::user_pk(app, user))?.get_mut(with)
    }

    fn live_row(&mut self, app: &str, user: &str, with: &str) -> Option<&mut Row> {
        self.row(app, user, with).filter(|r| !r.deleted)
    }
}

#[async_trait]
impl ConversationStore for EmbeddedStore {
    async fn apply(&self, owner: &str, with: &str, update: &RowUpdate) -> Result<Applied> {
        let mut state = self.state();
        let last = &update.last;
        let unread = u64::from(update.unread);
        let rows = state
            .rows
            .entry(keys::user_pk(&last.app_id, owner))
            .or_default();
        let Some(row) = rows.get_mut(with) else {
            rows.insert(with.to_string(), Row::started(update));
            return Ok(Applied::Newer { unarchived: false });
        };
        if row.kind != update.kind {
            // The real conversation wins the row (see the port).
            if update.kind == ConversationKind::Inline {
                return Ok(Applied::Refused);
            }
            let unarchived = row.conversation.archived && !row.deleted;
            let (open_from, closed) = (row.open_from.take(), std::mem::take(&mut row.closed));
            *row = Row::started(update);
            if open_from.is_some() {
                row.open_from = open_from;
            }
            row.closed = closed;
            return Ok(Applied::Newer { unarchived });
        }
        let seen = Seen {
            last: Some(row.last_key.clone()),
            current: row.seen.clone(),
            previous: row.seen_before.clone(),
        };
        let plan = row::plan(&update.orders, &seen);
        if plan.changes_nothing() {
            return Ok(Applied::Already);
        }
        row.seen = plan.current.clone();
        row.seen_before = plan.previous.clone();
        row.newest_at = row.newest_at.max(update.newest_at);
        let count = row.conversation.unread_count + unread * plan.counted();
        let Some(newest) = plan.newer.last() else {
            row.conversation.unread_count = count;
            return Ok(Applied::Late);
        };
        let old = &row.conversation;
        let unarchived = old.archived && !row.deleted;
        row.conversation = Conversation {
            unread_count: count,
            read_at: old.read_at,
            peer_read_at: old.peer_read_at,
            received_up_to: old.received_up_to,
            ..Conversation::from_last(last, update.unread)
        };
        row.last_key = newest.clone();
        row.deleted = false;
        if row.kind == ConversationKind::Group && update.opens_window && row.open_from.is_none() {
            row.open_from = plan.newer.first().cloned();
        }
        Ok(Applied::Newer { unarchived })
    }

    async fn lags(&self, app: &str, owner: &str, with: &str, order: &str) -> Result<bool> {
        let mut state = self.state();
        Ok(state.row(app, owner, with).is_none_or(|row| {
            row.kind != ConversationKind::Direct || row.last_key.as_str() < order
        }))
    }

    async fn get_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>> {
        Ok(self
            .state()
            .live_row(app, user, with)
            .map(|r| r.conversation.clone()))
    }

    async fn timeline_view(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<TimelineView>> {
        Ok(self.state().row(app, user, with).map(|r| TimelineView {
            kind: r.kind,
            windows: r.windows(),
            cleared_to: r.cleared_to.clone(),
            received_up_to: r.conversation.received_up_to,
            peer_read_at: r.conversation.peer_read_at,
            deleted: r.deleted,
        }))
    }

    async fn list_conversations(
        &self,
        app: &str,
        user: &str,
        archived: bool,
        page: &PageRequest,
    ) -> Result<Page<Conversation>> {
        let state = self.state();
        let Some(rows) = state.rows.get(&keys::user_pk(app, user)) else {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        };
        let mut listed: Vec<(String, Conversation)> = rows
            .iter()
            .filter(|(_, row)| !row.deleted && row.conversation.archived == archived)
            .map(|(with, row)| {
                let c = &row.conversation;
                (
                    keys::conversation_order(archived, c.last.timestamp, with),
                    c.clone(),
                )
            })
            .collect();
        listed.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(page.page_of(listed))
    }

    async fn archive_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>> {
        Ok(self.state().live_row(app, user, with).map(|row| {
            row.conversation.archived = true;
            row.conversation.clone()
        }))
    }

    async fn delete_conversation(&self, app: &str, user: &str, with: &str) -> Result<()> {
        if let Some(row) = self.state().row(app, user, with) {
            row.deleted = true;
            row.conversation.archived = false;
            row.conversation.unread_count = 0;
            row.cleared_to = Some(row.last_key.clone());
            row.open_from = None;
            row.closed.clear();
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
        Ok(self.state().live_row(app, user, with).map(|row| {
            let c = &mut row.conversation;
            c.is_new = false;
            c.unread_count = 0;
            c.read_at = Some(at.max(row.newest_at));
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
        if let Some(row) = self.state().live_row(app, user, with) {
            let mark = match mark {
                ReadMark::Received => &mut row.conversation.received_up_to,
                ReadMark::Peer => &mut row.conversation.peer_read_at,
            };
            *mark = Some(mark.map_or(at, |old| old.max(at)));
        }
        Ok(())
    }

    async fn open_window(&self, app: &str, member: &str, group: &str, from: &str) -> Result<()> {
        if let Some(row) = self.state().row(app, member, group) {
            let open = row.open_from.get_or_insert_with(|| from.to_string());
            if from < open.as_str() {
                *open = from.to_string();
            }
        }
        Ok(())
    }

    async fn close_window(&self, app: &str, member: &str, group: &str, at: &str) -> Result<()> {
        if let Some(row) = self.state().row(app, member, group)
            && let Some(from) = row.open_from.take()
        {
            row.open_from = Some(keys::CLOSED_WINDOW.to_string());
            if from != keys::CLOSED_WINDOW {
                row.closed.push(Window {
                    from,
                    to: Some(at.to_string()),
                });
            }
        }
        Ok(())
    }
}
