//! The embedded adapters: an in-process store and event bus with the same semantics as the
//! DynamoDB and SNS ones (the shared behavioural suite runs against both). Used by the local
//! server and by tests.
//!
//! All data sits in one mutex, so every store operation is trivially atomic.

mod conversations;
mod events;
mod groups;
mod realtime;

pub use events::EmbeddedEvents;
pub use realtime::RecordingRealtime;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::error::Result;
use crate::keys::{self, Position};
use crate::model::{Conversation, GroupChange, GroupMeta, Message, SentRecord};
use crate::ports::{MessageStore, Page, PageRequest, Unarchived};

#[derive(Default)]
struct Timeline {
    by_order: BTreeMap<String, Message>,
    /// `sk` (sender + id) to `order`: a copy's identity, as in DynamoDB.
    order_of: HashMap<String, String>,
}

impl Timeline {
    fn contains(&self, copy: &Message) -> bool {
        self.order_of
            .contains_key(&keys::message_sk(&copy.sender, &copy.message_id))
    }

    fn put(&mut self, copy: &Message) {
        let sk = keys::message_sk(&copy.sender, &copy.message_id);
        let order = keys::order_of(copy);
        if let Some(old) = self.order_of.insert(sk, order.clone()) {
            self.by_order.remove(&old);
        }
        self.by_order.insert(order, copy.clone());
    }

    fn remove(&mut self, copy: &Message) {
        if let Some(order) = self
            .order_of
            .remove(&keys::message_sk(&copy.sender, &copy.message_id))
        {
            self.by_order.remove(&order);
        }
    }
}

struct ConversationRow {
    conversation: Conversation,
    /// `order` of the last message, to tell newer messages from late older ones.
    last_order: String,
}

struct GroupState {
    meta: GroupMeta,
    members: BTreeSet<String>,
    changes: BTreeMap<String, GroupChange>,
}

#[derive(Default)]
struct State {
    sent: HashMap<(String, String), SentRecord>,
    timelines: HashMap<String, Timeline>,
    conversations: HashMap<String, HashMap<String, ConversationRow>>,
    groups: HashMap<String, GroupState>,
}

/// All data in one mutex: every operation is trivially atomic.
#[derive(Default)]
pub struct EmbeddedStore {
    state: Mutex<State>,
}

impl EmbeddedStore {
    pub fn new() -> EmbeddedStore {
        EmbeddedStore::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave half-applied writes (each write is one
        // step), so the data is still consistent: keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn sent_key(message: &Message) -> (String, String) {
    (
        keys::sent_pk(&message.app_id, &message.sender),
        message.message_id.clone(),
    )
}

fn timeline_key(copy: &Message) -> String {
    keys::timeline_pk(&copy.app_id, &copy.timeline_of, &copy.convers_with)
}

/// Where a send's canonical copy is: the sender's timeline, or the group's history.
fn canonical_key(message: &Message) -> String {
    if message.is_group() {
        keys::history_pk(&message.app_id, &message.recipient)
    } else {
        timeline_key(message)
    }
}

/// Newest first, strictly before `after`, at most `limit`, with the `order` to continue from.
fn page_of<T: Clone>(
    newest_first: impl Iterator<Item = (String, T)>,
    page: &PageRequest,
) -> Page<T> {
    let after = page.after.as_ref().map(|p: &Position| p.order.as_str());
    let mut items: Vec<(String, T)> = newest_first
        .filter(|(order, _)| after.is_none_or(|a| order.as_str() < a))
        .take(page.limit + 1)
        .collect();
    let next = if items.len() > page.limit {
        items.truncate(page.limit);
        items.last().map(|(order, _)| order.clone())
    } else {
        None
    };
    Page {
        items: items.into_iter().map(|(_, item)| item).collect(),
        next,
    }
}

impl State {
    /// A page of one timeline (or history), newest first.
    fn page(&self, pk: &str, page: &PageRequest) -> Page<Message> {
        let Some(timeline) = self.timelines.get(pk) else {
            return Page {
                items: Vec::new(),
                next: None,
            };
        };
        let newest_first = timeline
            .by_order
            .iter()
            .rev()
            .map(|(o, m)| (o.clone(), m.clone()));
        page_of(newest_first, page)
    }

    fn row(&mut self, app: &str, user: &str, with: &str) -> Option<&mut ConversationRow> {
        self.conversations
            .get_mut(&keys::user_pk(app, user))?
            .get_mut(with)
    }

    /// Makes `copy` the last message of its owner's conversation if it is newer than the last
    /// one (un-archiving it); returns whether the conversation was archived before.
    fn set_last(&mut self, copy: &Message, is_new: bool) -> Unarchived {
        let order = keys::order_of(copy);
        let rows = self
            .conversations
            .entry(keys::user_pk(&copy.app_id, &copy.timeline_of))
            .or_default();
        match rows.get_mut(&copy.convers_with) {
            Some(row) if row.last_order >= order => false,
            Some(row) => {
                let old = &row.conversation;
                let was_archived = old.archived;
                row.conversation = Conversation {
                    unread_count: old.unread_count,
                    read_at: old.read_at,
                    peer_read_at: old.peer_read_at,
                    received_up_to: old.received_up_to,
                    ..Conversation::from_last(copy, is_new)
                };
                row.last_order = order;
                was_archived
            }
            None => {
                let row = ConversationRow {
                    conversation: Conversation::from_last(copy, is_new),
                    last_order: order,
                };
                rows.insert(copy.convers_with.clone(), row);
                false
            }
        }
    }
}

#[async_trait]
impl MessageStore for EmbeddedStore {
    async fn claim_sent(&self, record: &SentRecord) -> Result<Option<SentRecord>> {
        let mut state = self.state();
        let key = sent_key(&record.message);
        if let Some(earlier) = state.sent.get(&key) {
            return Ok(Some(earlier.clone()));
        }
        state.sent.insert(key, record.clone());
        Ok(None)
    }

    async fn mark_published(&self, message: &Message) -> Result<()> {
        if let Some(record) = self.state().sent.get_mut(&sent_key(message)) {
            record.published = true;
        }
        Ok(())
    }

    async fn abandon_sent(&self, message: &Message) -> Result<()> {
        let mut state = self.state();
        let key = sent_key(message);
        if state.sent.get(&key).is_some_and(|r| !r.published) {
            state.sent.remove(&key);
            if let Some(timeline) = state.timelines.get_mut(&canonical_key(message)) {
                timeline.remove(message);
            }
        }
        Ok(())
    }

    async fn put_copies(&self, copies: &[Message]) -> Result<()> {
        let mut state = self.state();
        for copy in copies {
            state
                .timelines
                .entry(timeline_key(copy))
                .or_default()
                .put(copy);
        }
        Ok(())
    }

    async fn put_history(&self, messages: &[Message]) -> Result<()> {
        let mut state = self.state();
        for message in messages {
            let key = keys::history_pk(&message.app_id, &message.recipient);
            state.timelines.entry(key).or_default().put(message);
        }
        Ok(())
    }

    async fn list_history(
        &self,
        app: &str,
        group: &str,
        page: &PageRequest,
    ) -> Result<Page<Message>> {
        Ok(self.state().page(&keys::history_pk(app, group), page))
    }

    async fn get_copy(
        &self,
        app: &str,
        owner: &str,
        with: &str,
        sender: &str,
        message_id: &str,
    ) -> Result<Option<Message>> {
        let state = self.state();
        let Some(timeline) = state.timelines.get(&keys::timeline_pk(app, owner, with)) else {
            return Ok(None);
        };
        let order = timeline.order_of.get(&keys::message_sk(sender, message_id));
        Ok(order.and_then(|o| timeline.by_order.get(o)).cloned())
    }

    async fn list_messages(
        &self,
        app: &str,
        owner: &str,
        with: &str,
        page: &PageRequest,
    ) -> Result<Page<Message>> {
        Ok(self
            .state()
            .page(&keys::timeline_pk(app, owner, with), page))
    }
}
