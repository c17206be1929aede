//! What the operations need from the outside world, as small traits, one file per family.
//! Their adapters:
//!
//! - the stores ([`MessageStore`], [`ConversationStore`], [`GroupStore`], [`WebhookStore`]):
//!   DynamoDB (`adapters::dynamo`) and embedded (`adapters::embedded`), one behaviour suite
//!   running on both;
//! - [`EventPublisher`]: SNS (`adapters::sns`) and embedded (`EmbeddedEvents`, the local
//!   server's event bus);
//! - [`Realtime`]: IoT Core's data plane (`adapters::iot`) and `chat21-local`'s MQTT broker;
//!   `RecordingRealtime` for tests, [`NoRealtime`] where a function has no endpoint;
//! - [`RetryQueue`]: SQS (`adapters::sqs`) and in memory (`MemoryRetries`);
//! - [`WebhookClient`]: the HTTP client (`adapters::http`) only;
//! - [`Clock`], [`IdSource`]: the system's (`adapters::system`) only; tests bring their own.
//!
//! How messages are kept (see `keys` for the layout): a direct conversation's messages once, in
//! a timeline the two users share; a group's messages once, in the group's history; each user
//! sees them through their conversation row ([`TimelineView`]). Only an inline group's messages
//! are copied into each member's own timeline.

use async_trait::async_trait;

use crate::error::Result;
use crate::events::Event;
use crate::keys::Position;
use crate::model::GroupChange;

mod conversations;
mod groups;
mod messages;
mod realtime;
mod webhooks;

pub use conversations::{
    Applied, ConversationKind, ConversationStore, ReadMark, RowUpdate, TimelineView, Window,
};
pub use groups::{Added, Created, GroupHead, GroupStore, MembersSet, Removed, Updated};
pub use messages::{MessageStore, Origin, Timeline, Written};
pub use realtime::{NoRealtime, Push, Realtime};
pub use webhooks::{PostOutcome, RetryQueue, Target, WebhookClient, WebhookPut, WebhookStore};

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
