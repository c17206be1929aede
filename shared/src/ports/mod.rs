//! What the operations need from the outside world, as small traits. Each has a production
//! adapter (DynamoDB, SNS, system clock) and an embedded one (local server and tests).
//!
//! How messages are kept (see `keys` for the layout): a direct conversation's messages once, in
//! a timeline the two users share; a group's messages once, in the group's history; each user
//! sees them through their conversation row ([`TimelineView`]). Only an inline group's messages
//! are copied into each member's own timeline.

use async_trait::async_trait;

use crate::error::Result;
use crate::events::Event;
use crate::keys::Position;
use crate::model::{Conversation, GroupChange, GroupMeta, Message};

mod webhooks;
pub use webhooks::{PostOutcome, RetryQueue, WebhookClient, WebhookPut, WebhookStore};

/// A page request: at most `limit` items after `after` (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    pub after: Option<Position>,
}

impl PageRequest {
    pub fn first(limit: usize) -> PageRequest {
        PageRequest { limit, after: None }
    }

    /// The page this request asks for out of items already ordered newest first (each with
    /// its order key): those strictly before `after`, at most `limit`, and where to continue.
    pub fn page_of<T>(&self, newest_first: impl IntoIterator<Item = (String, T)>) -> Page<T> {
        let after = self.after.as_ref().map(|p| p.order.as_str());
        let mut items: Vec<(String, T)> = newest_first
            .into_iter()
            .filter(|(order, _)| after.is_none_or(|a| order.as_str() < a))
            .take(self.limit + 1)
            .collect();
        let next = if items.len() > self.limit {
            items.truncate(self.limit);
            items.last().map(|(order, _)| order.clone())
        } else {
            None
        };
        Page {
            items: items.into_iter().map(|(_, item)| item).collect(),
            next,
        }
    }
}

/// One page, and the `order` key to continue from while more remain.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Where a message was written, and so what its delivery is (the store's change stream tells
/// the deliver step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A direct message, in the timeline its sender and recipient share.
    Direct,
    /// A message in a group's history, at its place `seq`.
    Group { seq: u64 },
    /// An inline group's message (Chat21's "volatile" group): copied to these users.
    Inline { audience: Vec<String> },
}

/// A new message as the store wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub message: Message,
    pub origin: Origin,
    /// When it was written (the server's clock at the send): the `createdAt` of every event
    /// its delivery publishes, so that a redelivered record publishes the same bytes.
    pub written_at: u64,
}

/// What the store's change stream hands the deliver step.
#[derive(Debug, Clone, PartialEq)]
pub enum Streamed {
    /// A new message to deliver.
    Message(Written),
    /// A group change whose system messages are stored: to deliver to every member.
    Change {
        app: String,
        group: String,
        change: GroupChange,
    },
}

/// A timeline to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timeline {
    /// The direct conversation of two users (in either order).
    Direct { app: String, a: String, b: String },
    /// A group's history.
    History { app: String, group: String },
    /// One user's own copies of their conversation with `with` (inline groups).
    Copies {
        app: String,
        owner: String,
        with: String,
    },
}

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

/// A group's meta and the changes whose follow-up is still owed, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupHead {
    pub meta: GroupMeta,
    pub pending: Vec<GroupChange>,
}

#[async_trait]
pub trait MessageStore: Send + Sync {
    /// A direct or inline-group send: writes the message into its sender's timeline with the
    /// recipient unless the sender already sent this `message_id` there (then returns that
    /// earlier message and writes nothing). The write is the event: the store's change stream
    /// hands it to the deliver step.
    async fn put_sent(&self, written: &Written) -> Result<Option<Message>>;
    /// The next `count` places of a group's history (for a message): returns the first.
    /// `None` if the group does not exist.
    async fn next_seq(&self, app: &str, group: &str, count: u64) -> Result<Option<u64>>;
    /// A member's message into the group's history at `seq`, written at `written_at`, unless
    /// the sender already sent this `message_id` to the group (then returns it). Streamed to
    /// the deliver step.
    async fn put_group_message(
        &self,
        message: &Message,
        seq: u64,
        written_at: u64,
    ) -> Result<Option<Message>>;
    /// A change's system messages into the group's history at their places (idempotent). Not
    /// streamed: the change's own follow-up delivers them.
    async fn put_system_messages(&self, messages: &[(Message, u64)]) -> Result<()>;
    /// Copies into their owners' own timelines (inline groups), idempotent.
    async fn put_copies(&self, copies: &[Message]) -> Result<()>;
    /// One message of a timeline, by its sender and id.
    async fn get_message(
        &self,
        timeline: &Timeline,
        sender: &str,
        message_id: &str,
    ) -> Result<Option<Message>>;
    /// A page of a timeline as stored, newest first; only the messages within `windows` (a
    /// group member's view) and after `cleared_to` when given.
    async fn list_timeline(
        &self,
        timeline: &Timeline,
        windows: Option<&[Window]>,
        cleared_to: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Message>>;
    /// A change's system messages, at their places `first..first + count`.
    async fn history_run(
        &self,
        app: &str,
        group: &str,
        first: u64,
        count: u64,
    ) -> Result<Vec<(Message, u64)>>;
    /// The newest `n` messages of a group's history before the order `before`, newest first,
    /// with their order keys: what a joiner is given.
    async fn history_before(
        &self,
        app: &str,
        group: &str,
        before: &str,
        n: usize,
    ) -> Result<Vec<(Message, String)>>;
    /// Removes a user's own copies of a conversation (inline groups).
    async fn delete_copies(&self, app: &str, owner: &str, with: &str) -> Result<()>;
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

/// What creating a group did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    /// The id is taken; nothing was written.
    Taken,
}

/// What adding one member did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Added,
    AlreadyMember,
    NoGroup,
    /// The group's history moved on since it was read: read it again.
    Stale,
}

/// What removing one member did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Removed,
    /// Not a member (or no such group); nothing was written.
    NotMember,
    /// The group's history moved on since it was read: read it again.
    Stale,
}

/// What a version-checked change of the whole member set did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembersSet {
    Applied,
    /// The group moved on (another change, or it is gone) since the version was read.
    Stale,
}

/// What replacing a group's name and attributes did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated {
    Updated,
    NoGroup,
}

#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Consistent read of the group's meta and owed changes; `None` if the group is unknown.
    async fn group_head(&self, app: &str, group: &str) -> Result<Option<GroupHead>>;
    /// Whether `user` is a member of the group (false for an unknown group).
    async fn is_member(&self, app: &str, group: &str, user: &str) -> Result<bool>;
    /// Every member, in id order.
    async fn members(&self, app: &str, group: &str) -> Result<Vec<String>>;
    /// Atomically: the meta (unless the id is taken), the members and the change.
    async fn create_group(
        &self,
        meta: &GroupMeta,
        members: &[String],
        change: &GroupChange,
    ) -> Result<Created>;
    /// Atomically adds `member` and records the change; when `change.places_from` is set,
    /// also takes the places of its system messages from there on, if the history is still
    /// right before them (else `Stale`).
    async fn add_member(
        &self,
        app: &str,
        group: &str,
        member: &str,
        change: &GroupChange,
    ) -> Result<Added>;
    /// Atomically removes `member` and records the change; places as for [`Self::add_member`].
    async fn remove_member(
        &self,
        app: &str,
        group: &str,
        member: &str,
        change: &GroupChange,
    ) -> Result<Removed>;
    /// Atomically applies `change.joined`/`change.left`, records the change and bumps the
    /// version, if the group is still at `meta.version`; places as for [`Self::add_member`].
    async fn set_members(&self, meta: &GroupMeta, change: &GroupChange) -> Result<MembersSet>;
    /// Atomically replaces the meta's name and attributes and records the change.
    async fn update_meta(&self, meta: &GroupMeta, change: &GroupChange) -> Result<Updated>;
    /// Records where a change's system messages go in the history (its first place), unless
    /// an earlier run recorded it: returns the recorded one.
    async fn record_places(
        &self,
        app: &str,
        group: &str,
        change_id: &str,
        first: u64,
    ) -> Result<u64>;
    /// The change is announced: hands it to the deliver step (the stream), which delivers it
    /// to every member and then finishes it.
    async fn mark_settled(&self, app: &str, group: &str, change: &GroupChange) -> Result<()>;
    /// The change's own call failed to announce it: let the next call finish it.
    async fn mark_stalled(&self, app: &str, group: &str, change_id: &str) -> Result<()>;
    /// The change's follow-up is done.
    async fn finish_change(&self, app: &str, group: &str, change_id: &str) -> Result<()>;
}

/// Everything the operations store.
pub trait Store: MessageStore + ConversationStore + GroupStore + WebhookStore {}
impl<T: MessageStore + ConversationStore + GroupStore + WebhookStore> Store for T {}

#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes all events or fails; publishing an event twice is allowed (consumers are
    /// idempotent), losing one is not.
    async fn publish(&self, events: &[Event]) -> Result<()>;
}

pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

pub trait IdSource: Send + Sync {
    fn new_id(&self) -> String;
}
