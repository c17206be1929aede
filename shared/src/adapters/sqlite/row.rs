//! A conversation row as the SQLite store keeps it (one JSON value beside its keys), and how a
//! message or a run applies to it: the plan of `adapters::row`, the same as DynamoDB's, applied
//! to the row as read inside the writer's transaction (nothing else writes in between, so no
//! version check is needed).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::adapters::row::{self, Seen};
use crate::keys;
use crate::model::Conversation;
use crate::ports::{Applied, ConversationKind, RowUpdate, TimelineView, Window};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Kind {
    Direct,
    Group,
    Inline,
}

impl From<ConversationKind> for Kind {
    fn from(kind: ConversationKind) -> Kind {
        match kind {
            ConversationKind::Direct => Kind::Direct,
            ConversationKind::Group => Kind::Group,
            ConversationKind::Inline => Kind::Inline,
        }
    }
}

impl From<Kind> for ConversationKind {
    fn from(kind: Kind) -> ConversationKind {
        match kind {
            Kind::Direct => ConversationKind::Direct,
            Kind::Group => ConversationKind::Group,
            Kind::Inline => ConversationKind::Inline,
        }
    }
}

/// A closed span of a group's history a former member sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Closed {
    pub from: String,
    pub to: String,
}

/// A conversation row: what the API shows, and how its owner sees the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Row {
    pub conversation: Conversation,
    pub kind: Kind,
    /// Order key of the last message applied.
    pub last_key: String,
    /// Tags of the messages applied recently, two generations (see `adapters::row`).
    #[serde(default)]
    pub seen: BTreeSet<String>,
    #[serde(default)]
    pub seen_before: BTreeSet<String>,
    #[serde(default)]
    pub open_from: Option<String>,
    #[serde(default)]
    pub closed: Vec<Closed>,
    #[serde(default)]
    pub cleared_to: Option<String>,
    #[serde(default)]
    pub deleted: bool,
    /// The newest message timestamp applied (a group's last message is not its newest).
    pub newest_at: u64,
}

impl Row {
    /// A new row, or one starting over: `update` as its only messages.
    pub fn started(update: &RowUpdate) -> Row {
        let plan = row::plan(&update.orders, &Seen::default());
        let mut conversation = Conversation::from_last(&update.last, update.unread);
        conversation.unread_count = u64::from(update.unread) * plan.counted();
        Row {
            conversation,
            kind: update.kind.into(),
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

    /// Where the row sorts in its owner's list; `None` while deleted (in no list).
    pub fn list_key(&self) -> Option<String> {
        let c = &self.conversation;
        (!self.deleted).then(|| keys::conversation_order(c.archived, c.last.timestamp, &c.key))
    }

    pub fn windows(&self) -> Vec<Window> {
        let mut windows: Vec<Window> = self
            .closed
            .iter()
            .map(|w| Window {
                from: w.from.clone(),
                to: Some(w.to.clone()),
            })
            .collect();
        windows.extend(Window::open(self.open_from.as_ref()));
        windows
    }

    pub fn view(&self) -> TimelineView {
        TimelineView {
            kind: self.kind.into(),
            windows: self.windows(),
            cleared_to: self.cleared_to.clone(),
            received_up_to: self.conversation.received_up_to,
            peer_read_at: self.conversation.peer_read_at,
            deleted: self.deleted,
        }
    }

    /// Applies `update` (see `ConversationStore::apply`); `None` when it changes nothing
    /// worth writing.
    pub fn apply(&mut self, update: &RowUpdate) -> Applied {
        let kind = Kind::from(update.kind);
        if self.kind != kind {
            // The real conversation wins the row.
            if kind == Kind::Inline {
                return Applied::Refused;
            }
            let unarchived = self.conversation.archived && !self.deleted;
            let (open_from, closed) = (self.open_from.take(), std::mem::take(&mut self.closed));
            *self = Row::started(update);
            if open_from.is_some() {
                self.open_from = open_from;
            }
            self.closed = closed;
            return Applied::Newer { unarchived };
        }
        let seen = Seen {
            last: Some(self.last_key.clone()),
            current: std::mem::take(&mut self.seen),
            previous: std::mem::take(&mut self.seen_before),
        };
        let plan = row::plan(&update.orders, &seen);
        if plan.changes_nothing() {
            (self.seen, self.seen_before) = (seen.current, seen.previous);
            return Applied::Already;
        }
        self.seen = plan.current.clone();
        self.seen_before = plan.previous.clone();
        self.newest_at = self.newest_at.max(update.newest_at);
        let count = self.conversation.unread_count + u64::from(update.unread) * plan.counted();
        let Some(newest) = plan.newer.last() else {
            self.conversation.unread_count = count;
            return Applied::Late;
        };
        let old = &self.conversation;
        let unarchived = old.archived && !self.deleted;
        self.conversation = Conversation {
            unread_count: count,
            read_at: old.read_at,
            peer_read_at: old.peer_read_at,
            received_up_to: old.received_up_to,
            ..Conversation::from_last(&update.last, update.unread)
        };
        self.last_key = newest.clone();
        self.deleted = false;
        if kind == Kind::Group && update.opens_window && self.open_from.is_none() {
            self.open_from = plan.newer.first().cloned();
        }
        Applied::Newer { unarchived }
    }

    /// Deleted for its owner: out of the lists, its messages so far out of the timeline, no
    /// window open; a newer message brings it back.
    pub fn delete(&mut self) {
        self.deleted = true;
        self.conversation.archived = false;
        self.conversation.unread_count = 0;
        self.cleared_to = Some(self.last_key.clone());
        self.open_from = None;
        self.closed.clear();
    }

    pub fn open_window(&mut self, from: &str) {
        let open = self.open_from.get_or_insert_with(|| from.to_string());
        if from < open.as_str() {
            *open = from.to_string();
        }
    }

    pub fn close_window(&mut self, at: &str) {
        if let Some(from) = self.open_from.take() {
            self.open_from = Some(keys::CLOSED_WINDOW.to_string());
            if from != keys::CLOSED_WINDOW {
                self.closed.push(Closed {
                    from,
                    to: at.to_string(),
                });
            }
        }
    }
}
