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
    /// Removes an unpublished send (its record and canonical copy) when nothing was promised.
    async fn abandon_sent(&self, message: &Message) -> Result<()>;
    /// Writes copies as they are; writing the same copy again changes nothing.
    async fn put_copies(&self, copies: &[Message]) -> Result<()>;
    /// A timeline, newest first.
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
    /// un-archives; unread ones add one to `unread_count`). Returns which deliveries were new.
    async fn deliver(&self, deliveries: &[Delivery]) -> Result<Vec<bool>>;
    /// The sender's side: makes `copy` the last message of its owner's conversation (read,
    /// un-archived) unless a later message is already there. Idempotent.
    async fn touch_conversation(&self, copy: &Message) -> Result<()>;
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
    /// Removes every copy in `user`'s timeline with `with`; returns how many.
    async fn delete_timeline(&self, app: &str, user: &str, with: &str) -> Result<u64>;
    /// Removes the conversation row; false if there was none.
    async fn delete_conversation(&self, app: &str, user: &str, with: &str) -> Result<bool>;
    /// Sets the read mark: `is_new` false, `unread_count` 0, `read_at`. `None` if unknown.
    async fn mark_read(
        &self,
        app: &str,
        user: &str,
        with: &str,
        at: u64,
    ) -> Result<Option<Conversation>>;
    /// Records on `peer`'s conversation with `reader` that `reader` read up to `at` (if later
    /// than what is there; nothing if the row does not exist).
    async fn mark_peer_read(&self, app: &str, peer: &str, reader: &str, at: u64) -> Result<()>;
}

#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Consistent read of the group's meta and owed changes; `None` if the group is unknown.
    async fn group_head(&self, app: &str, group: &str) -> Result<Option<GroupHead>>;
    /// Which of `users` are members.
    async fn members_among(&self, app: &str, group: &str, users: &[&str]) -> Result<Vec<String>>;
    /// Every member, in id order.
    async fn members(&self, app: &str, group: &str) -> Result<Vec<String>>;
    /// Atomically: the meta (unless the id is taken), the members and the change. False if taken.
    async fn create_group(
        &self,
        meta: &GroupMeta,
        members: &[String],
        change: &GroupChange,
    ) -> Result<bool>;
    /// Atomically adds `change.joined[0]` and records the change; false if already a member.
    async fn add_member(&self, app: &str, group: &str, change: &GroupChange) -> Result<bool>;
    /// Atomically removes `change.left[0]` and records the change; false if not a member.
    async fn remove_member(&self, app: &str, group: &str, change: &GroupChange) -> Result<bool>;
    /// Atomically applies `change.joined`/`change.left`, records the change and bumps the
    /// version, if the group is still at `version`; false if it moved on (retry).
    async fn set_members(
        &self,
        app: &str,
        group: &str,
        version: u64,
        change: &GroupChange,
    ) -> Result<bool>;
    /// Atomically replaces the meta's name and attributes and records the change; false if the
    /// group is gone.
    async fn update_meta(&self, meta: &GroupMeta, change: &GroupChange) -> Result<bool>;
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

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

pub struct UuidIds;

impl IdSource for UuidIds {
    fn new_id(&self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}
