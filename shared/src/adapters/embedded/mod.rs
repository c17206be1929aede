//! The embedded adapters: an in-process store and event bus with the same semantics as the
//! DynamoDB and SNS ones (the shared behavioural suite runs against both). Used by the local
//! server and by tests.
//!
//! All data sits in one mutex, so every store operation is trivially atomic. New messages are
//! handed to the deliver step through a channel, as DynamoDB's stream does on AWS.

mod conversations;
mod events;
mod groups;
mod messages;
mod realtime;
mod webhooks;

pub use events::EmbeddedEvents;
pub use realtime::RecordingRealtime;
pub use webhooks::{MemoryRetries, RetryBounds};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::mpsc::UnboundedSender;

use crate::model::{Conversation, GroupChange, GroupMeta, Message, Webhook};
use crate::ports::{ConversationKind, Streamed, Window};

/// One timeline: a direct conversation, a group's history, or a user's own copies.
#[derive(Default)]
struct Timeline {
    by_order: BTreeMap<String, Message>,
    /// `sk` (sender + id) to order: a message's identity, as in DynamoDB.
    order_of: HashMap<String, String>,
}

impl Timeline {
    fn get(&self, sk: &str) -> Option<&Message> {
        self.order_of.get(sk).and_then(|o| self.by_order.get(o))
    }

    fn put(&mut self, sk: String, order: String, message: &Message) {
        if let Some(old) = self.order_of.insert(sk, order.clone()) {
            self.by_order.remove(&old);
        }
        self.by_order.insert(order, message.clone());
    }
}

/// A conversation row: what the API shows, and how its owner sees the timeline.
struct Row {
    conversation: Conversation,
    kind: ConversationKind,
    /// Order key of the last message applied.
    last_key: String,
    /// Tags of the messages applied recently, two generations (see `adapters::row`).
    seen: BTreeSet<String>,
    seen_before: BTreeSet<String>,
    open_from: Option<String>,
    closed: Vec<Window>,
    cleared_to: Option<String>,
    deleted: bool,
    /// The newest message timestamp applied (a group's last message is not its newest).
    newest_at: u64,
}

impl Row {
    fn windows(&self) -> Vec<Window> {
        let mut windows = self.closed.clone();
        windows.extend(Window::open(self.open_from.as_ref()));
        windows
    }
}

struct GroupState {
    /// With `seq`, the last place taken in the group's history.
    meta: GroupMeta,
    members: BTreeSet<String>,
    changes: BTreeMap<String, GroupChange>,
}

impl GroupState {
    /// Takes the places `change.places_from` names, if the history is right before them
    /// (a change without places takes none).
    fn take_places(&mut self, change: &GroupChange) -> bool {
        let Some(first) = change.places_from else {
            return true;
        };
        if self.meta.seq + 1 != first {
            return false;
        }
        self.meta.seq += change.message_count();
        true
    }
}

#[derive(Default)]
struct State {
    timelines: HashMap<String, Timeline>,
    rows: HashMap<String, HashMap<String, Row>>,
    groups: HashMap<String, GroupState>,
    /// Each tenant's webhook endpoints, by id.
    webhooks: HashMap<String, BTreeMap<String, Webhook>>,
}

/// All data in one mutex: every operation is trivially atomic.
#[derive(Default)]
pub struct EmbeddedStore {
    state: Mutex<State>,
    /// Where new messages and announced group changes go to be delivered (the stream of the
    /// DynamoDB table).
    stream: Option<UnboundedSender<Streamed>>,
}

impl EmbeddedStore {
    pub fn new() -> EmbeddedStore {
        EmbeddedStore::default()
    }

    /// A store that hands every new message and announced group change to `stream`, as
    /// DynamoDB's stream does.
    pub fn with_stream(stream: UnboundedSender<Streamed>) -> EmbeddedStore {
        EmbeddedStore {
            stream: Some(stream),
            ..EmbeddedStore::default()
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave half-applied writes (each write is one
        // step), so the data is still consistent: keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn streamed(&self, item: Streamed) {
        if let Some(stream) = &self.stream {
            // The receiver only goes away when the process is shutting down.
            let _ = stream.send(item);
        }
    }
}
