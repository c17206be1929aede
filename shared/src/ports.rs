//! What the operations need from the outside world, as small traits. Each has a production
//! adapter (DynamoDB, SNS, system clock) and an embedded one (local server and tests).

use async_trait::async_trait;

use crate::error::Result;
use crate::events::Event;
use crate::keys::Position;
use crate::model::{Conversation, GroupChange, GroupMeta, Message, SentRecord};

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
}

/// One page, and the `order` key to continue from while more remain.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// One copy to write into its owner's timeline, and how it affects their conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub copy: Message,
    /// Received from someone else: counts in `unread_count` and sets `is_new`.
    pub unread: bool,
    /// False for `attributes.updateconversation: false`.
    pub update_conversation: bool,
}

/// Whether a delivery (or the sender's own touch) took an archived conversation back.
pub type Unarchived = bool;

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
    /// Claims `(sender, message_id)` for a new send. `None` when newly claimed; otherwise the
    /// record of the earlier send with that id.
    async fn claim_sent(&self, record: &SentRecord) -> Result<Option<SentRecord>>;
    /// Notes that the message's `message-sent` event went out.
    async fn mark_published(&self, message: &Message) -> Result<()>;
    /// Removes an unpublished send (its record and canonical copy: the sender's, or the
    /// group history's) when nothing was promised.
    async fn abandon_sent(&self, message: &Message) -> Result<()>;
    /// Writes copies into their owners' timelines as they are; writing the same copy again
    /// changes nothing.
    async fn put_copies(&self, copies: &[Message]) -> Result<()>;
    /// Writes group messages into their group's own history (idempotent, like copies).
    async fn put_history(&self, messages: &[Message]) -> Result<()>;
    /// A group's history, newest first.
    async fn list_history(
        &self,
        app: &str,
        group: &str,
        page: &PageRequest,
    ) -> Result<Page<Message>>;
    /// One copy in `owner`'s timeline with `with`, by its sender and id.
    async fn get_copy(
        &self,
        app: &str,
        owner: &str,
        with: &str,
        sender: &str,
        message_id: &str,
    ) -> Result<Option<Message>>;
    /// A user's timeline with a peer or a group, newest first.
    async fn list_messages(
        &self,
        app: &str,
        owner: &str,
        with: &str,
        page: &PageRequest,
    ) -> Result<Page<Message>>;
}

#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// For each delivery, atomically: writes the copy unless it is already there and, only if it
    /// was not, applies it to the owner's conversation (newer message becomes the last one and
    /// un-archives; unread ones add one to `unread_count`). A delivery made before changes
    /// nothing. Returns, per delivery, whether it took an archived conversation back.
    async fn deliver(&self, deliveries: &[Delivery]) -> Result<Vec<Unarchived>>;
    /// The sender's side: makes `copy` the last message of its owner's conversation (read,
    /// un-archived) unless a later message is already there. Idempotent. Returns whether it
    /// took an archived conversation back.
    async fn touch_conversation(&self, copy: &Message) -> Result<Unarchived>;
    async fn get_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>>;
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
    /// Removes every copy in `user`'s timeline with `with`.
    async fn delete_timeline(&self, app: &str, user: &str, with: &str) -> Result<()>;
    /// Removes the conversation row, if there is one.
    async fn delete_conversation(&self, app: &str, user: &str, with: &str) -> Result<()>;
    /// Sets the read mark: `is_new` false, `unread_count` 0, `read_at`. `None` if unknown.
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
}

/// What removing one member did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Removed,
    /// Not a member (or no such group); nothing was written.
    NotMember,
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
    /// Atomically adds `member` and records the change.
    async fn add_member(
        &self,
        app: &str,
        group: &str,
        member: &str,
        change: &GroupChange,
    ) -> Result<Added>;
    /// Atomically removes `member` and records the change.
    async fn remove_member(
        &self,
        app: &str,
        group: &str,
        member: &str,
        change: &GroupChange,
    ) -> Result<Removed>;
    /// Atomically applies `change.joined`/`change.left`, records the change and bumps the
    /// version, if the group is still at `version`.
    async fn set_members(
        &self,
        app: &str,
        group: &str,
        version: u64,
        change: &GroupChange,
    ) -> Result<MembersSet>;
    /// Atomically replaces the meta's name and attributes and records the change.
    async fn update_meta(&self, meta: &GroupMeta, change: &GroupChange) -> Result<Updated>;
    /// The change's own call failed to announce it: let the next call finish it.
    async fn mark_stalled(&self, app: &str, group: &str, change_id: &str) -> Result<()>;
    /// The change's follow-up is done.
    async fn finish_change(&self, app: &str, group: &str, change_id: &str) -> Result<()>;
}

/// Everything the operations store.
pub trait Store: MessageStore + ConversationStore + GroupStore {}
impl<T: MessageStore + ConversationStore + GroupStore> Store for T {}

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
