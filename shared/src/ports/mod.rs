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

use crate::model::GroupChange;

mod common;
mod conversations;
mod groups;
mod messages;
mod realtime;
mod webhooks;

pub use common::{Clock, EventPublisher, IdSource, Page, PageRequest};
pub use conversations::{
    Applied, ConversationKind, ConversationStore, ReadMark, RowUpdate, TimelineView, Window,
};
pub use groups::{Added, Created, GroupHead, GroupStore, MembersSet, Removed, Updated};
pub use messages::{MessageStore, Origin, Timeline, Written};
pub use realtime::{NoRealtime, Push, Realtime};
pub use webhooks::{PostOutcome, RetryQueue, Target, WebhookClient, WebhookPut, WebhookStore};

/// What the store's change stream hands the deliver step (the SQLite store keeps it as JSON
/// in its outbox).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
