//! The conversations' port: each user's conversation rows, how a message (or a run) is applied
//! to one, and how its owner sees the timeline behind it.

use async_trait::async_trait;

use super::common::{Page, PageRequest};
use crate::error::Result;
use crate::model::{Conversation, Message};

/// A span of a group's history a member sees: from `from` (an order key) up to `to`
/// (inclusive; `None` while still a member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub from: String,
    pub to: Option<String>,
}

impl Window {
    /// The window a row's `open_from` leaves open, if any: none for a row closed for good
    /// ([`keys::CLOSED_WINDOW`](crate::keys::CLOSED_WINDOW)).
    pub fn open(open_from: Option<&String>) -> Option<Window> {
        open_from
            .filter(|f| *f != crate::keys::CLOSED_WINDOW)
            .map(|from| Window {
                from: from.clone(),
                to: None,
            })
    }

    pub fn contains(&self, order: &str) -> bool {
        order >= self.from.as_str() && self.to.as_deref().is_none_or(|to| order <= to)
    }
}

/// What a conversation is, for reading its timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationKind {
    Direct,
    Group,
    Inline,
}

/// How a user sees their conversation's timeline: which messages, and their receipts.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineView {
    pub kind: ConversationKind,
    /// Group conversations: the spans of the group's history the user sees.
    pub windows: Vec<Window>,
    /// Messages up to this order key were deleted for this user.
    pub cleared_to: Option<String>,
    pub received_up_to: Option<u64>,
    pub peer_read_at: Option<u64>,
    /// Deleted for good (a tombstone that keeps `cleared_to`).
    pub deleted: bool,
}

/// One message (or the run of system messages of one group change) applied to its owner's
/// conversation row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowUpdate {
    /// The last message of the run, as the owner sees it (`timelineOf` = owner).
    pub last: Message,
    pub kind: ConversationKind,
    /// The order keys of the run's messages, oldest first (one for an ordinary message).
    pub orders: Vec<String>,
    /// Each of them counts as unread (received from someone else).
    pub unread: bool,
    /// A group conversation without an open window gets one from the run's first message
    /// (a member's first message); false for a run delivered to a member who left.
    pub opens_window: bool,
    /// The newest `timestamp` among the run's messages (a group's are ordered by place, not
    /// time): the row remembers the newest it was given, which a read mark never falls behind.
    pub newest_at: u64,
}

impl RowUpdate {
    pub fn last_order(&self) -> &str {
        self.orders.last().map_or("", String::as_str)
    }

    pub fn first_order(&self) -> &str {
        self.orders.first().map_or("", String::as_str)
    }
}

/// What applying a [`RowUpdate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The run is the newest: its last message is the conversation's last now.
    Newer { unarchived: bool },
    /// Older than the last message: counted as unread only (once; the row remembers it).
    Late,
    /// Applied before (a redelivery): nothing changed.
    Already,
    /// An inline group's copy met a direct or group conversation's row: the real conversation
    /// wins, nothing changed (and nobody is to be told of the copy).
    Refused,
}

/// The receipt marks of a conversation row (message timestamps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMark {
    /// `received_up_to`: the owner sent receipts (status 200) for messages up to here.
    Received,
    /// `peer_read_at`: the peer (of a direct conversation) read the owner's messages up to here.
    Peer,
}

impl ReadMark {
    pub fn attribute(self) -> &'static str {
        match self {
            ReadMark::Received => "received_up_to",
            ReadMark::Peer => "peer_read_at",
        }
    }
}

#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// Applies a message (or a run) to `owner`'s conversation with `with`: the newest becomes
    /// the last one (un-archiving, reviving a deleted conversation, opening a group window if
    /// none is open); an older one not counted before is counted as unread; one applied before
    /// changes nothing.
    ///
    /// The real conversation wins the row: a direct or group message applied to a row of
    /// another kind (one that old data left "inline", or a user's conversation with a group
    /// of the same id) makes it that kind's and starts it over (its order keys, marks and
    /// deletions belong to another timeline; a group's windows are kept, being membership's);
    /// an inline group's copy never applies to a direct or group row ([`Applied::Refused`]).
    async fn apply(&self, owner: &str, with: &str, update: &RowUpdate) -> Result<Applied>;
    /// Whether `owner`'s direct conversation with `with` is missing `order` as its last
    /// message (or a later one), or the row is not a direct conversation's: a cheap read
    /// before repairing it.
    async fn lags(&self, app: &str, owner: &str, with: &str, order: &str) -> Result<bool>;
    async fn get_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>>;
    /// How `user` sees their conversation's timeline; `None` if they never had one.
    async fn timeline_view(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<TimelineView>>;
    async fn list_conversations(
        &self,
        app: &str,
        user: &str,
        archived: bool,
        page: &PageRequest,
    ) -> Result<Page<Conversation>>;
    /// Moves the conversation to the archived list; `None` if there is no such conversation.
    async fn archive_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>>;
    /// Deletes the conversation for `user`: it leaves their lists and its messages up to now
    /// leave their timeline (a group's windows close); a later message brings it back.
    async fn delete_conversation(&self, app: &str, user: &str, with: &str) -> Result<()>;
    /// Sets the read mark, atomically: `is_new` false, `unread_count` 0, and `read_at` the
    /// later of `at` and the newest timestamp applied to the row, so that the mark and the
    /// count agree: every message applied before the mark is at or before `read_at`, every
    /// one applied after counts as unread. Returns the conversation as marked; `None` if
    /// unknown.
    async fn mark_read(
        &self,
        app: &str,
        user: &str,
        with: &str,
        at: u64,
    ) -> Result<Option<Conversation>>;
    /// Raises a receipt mark of `user`'s conversation with `with` to `at` (never lowers it;
    /// nothing if the row does not exist).
    async fn raise_read_mark(
        &self,
        app: &str,
        user: &str,
        with: &str,
        mark: ReadMark,
        at: u64,
    ) -> Result<()>;
    /// Opens `member`'s view of a group from `from` (or earlier, if already open from there).
    async fn open_window(&self, app: &str, member: &str, group: &str, from: &str) -> Result<()>;
    /// Closes `member`'s open view of a group at `at` (inclusive).
    async fn close_window(&self, app: &str, member: &str, group: &str, at: &str) -> Result<()>;
}
