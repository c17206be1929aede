//! The messages' port: where a new message is written (and so how it is delivered), the
//! timelines it is read from, and the store of both.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::common::{Page, PageRequest};
use super::conversations::Window;
use crate::error::Result;
use crate::model::Message;

/// Where a message was written, and so what its delivery is (the store's change stream tells
/// the deliver step).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// A direct message, in the timeline its sender and recipient share.
    Direct,
    /// A message in a group's history, at its place `seq`.
    Group { seq: u64 },
    /// An inline group's message (Chat21's "volatile" group): copied to these users.
    Inline { audience: Vec<String> },
}

/// A new message as the store wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Written {
    pub message: Message,
    pub origin: Origin,
    /// When it was written (the server's clock at the send): the `createdAt` of every event
    /// its delivery publishes, so that a redelivered record publishes the same bytes.
    pub written_at: u64,
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

#[async_trait]
pub trait MessageStore: Send + Sync {
    /// A new message's one write, where its `origin` says: a direct message into the timeline
    /// its two users share, an inline group's into its sender's own, a member's into the
    /// group's history at its place. Unless its sender already sent this `message_id` there:
    /// then returns that earlier message and writes nothing. The write is the event: the
    /// store's change stream hands it to the deliver step.
    async fn put_message(&self, written: &Written) -> Result<Option<Message>>;
    /// The next `count` places of a group's history (for a message): returns the first.
    /// `None` if the group does not exist.
    async fn next_seq(&self, app: &str, group: &str, count: u64) -> Result<Option<u64>>;
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
