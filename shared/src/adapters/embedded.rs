//! The embedded adapters: an in-process store and event bus with the same semantics as the
//! DynamoDB and SNS ones (the shared behavioural suite runs against both). Used by the local
//! server and by tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::mpsc::UnboundedSender;

use crate::error::{Error, Result};
use crate::events::Event;
use crate::keys::{self, Position};
use crate::model::{Conversation, GroupChange, GroupMeta, Message, SentRecord};
use crate::ports::{
    ConversationStore, Delivery, EventPublisher, GroupHead, GroupStore, MessageStore, Page,
    PageRequest,
};

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
    fn row(&mut self, app: &str, user: &str, with: &str) -> Option<&mut ConversationRow> {
        self.conversations
            .get_mut(&keys::user_pk(app, user))?
            .get_mut(with)
    }

    /// Makes `copy` the last message of its owner's conversation if it is newer than the last
    /// one; returns whether it was.
    fn set_last(&mut self, copy: &Message, is_new: bool) -> bool {
        let order = keys::order_of(copy);
        let rows = self
            .conversations
            .entry(keys::user_pk(&copy.app_id, &copy.timeline_of))
            .or_default();
        match rows.get_mut(&copy.convers_with) {
            Some(row) if row.last_order >= order => false,
            Some(row) => {
                let old = &row.conversation;
                row.conversation = Conversation {
                    unread_count: old.unread_count,
                    read_at: old.read_at,
                    peer_read_at: old.peer_read_at,
                    ..Conversation::from_last(copy, is_new)
                };
                row.last_order = order;
                true
            }
            None => {
                let row = ConversationRow {
                    conversation: Conversation::from_last(copy, is_new),
                    last_order: order,
                };
                rows.insert(copy.convers_with.clone(), row);
                true
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
            if let Some(timeline) = state.timelines.get_mut(&timeline_key(message)) {
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

    async fn list_messages(
        &self,
        app: &str,
        owner: &str,
        with: &str,
        page: &PageRequest,
    ) -> Result<Page<Message>> {
        let state = self.state();
        let Some(timeline) = state.timelines.get(&keys::timeline_pk(app, owner, with)) else {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        };
        let newest_first = timeline
            .by_order
            .iter()
            .rev()
            .map(|(o, m)| (o.clone(), m.clone()));
        Ok(page_of(newest_first, page))
    }
}

#[async_trait]
impl ConversationStore for EmbeddedStore {
    async fn deliver(&self, deliveries: &[Delivery]) -> Result<Vec<bool>> {
        let mut state = self.state();
        let mut fresh = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let copy = &delivery.copy;
            let timeline = state.timelines.entry(timeline_key(copy)).or_default();
            if timeline.contains(copy) {
                fresh.push(false);
                continue;
            }
            timeline.put(copy);
            fresh.push(true);
            if !delivery.update_conversation {
                continue;
            }
            state.set_last(copy, delivery.unread);
            if delivery.unread
                && let Some(row) = state.row(&copy.app_id, &copy.timeline_of, &copy.convers_with)
            {
                row.conversation.unread_count += 1;
            }
        }
        Ok(fresh)
    }

    async fn touch_conversation(&self, copy: &Message) -> Result<()> {
        self.state().set_last(copy, false);
        Ok(())
    }

    async fn get_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>> {
        Ok(self
            .state()
            .row(app, user, with)
            .map(|r| r.conversation.clone()))
    }

    async fn list_conversations(
        &self,
        app: &str,
        user: &str,
        archived: bool,
        page: &PageRequest,
    ) -> Result<Page<Conversation>> {
        let state = self.state();
        let Some(rows) = state.conversations.get(&keys::user_pk(app, user)) else {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        };
        let mut listed: Vec<(String, Conversation)> = rows
            .iter()
            .filter(|(_, row)| row.conversation.archived == archived)
            .map(|(with, row)| {
                let c = &row.conversation;
                (
                    keys::conversation_order(archived, c.last.timestamp, with),
                    c.clone(),
                )
            })
            .collect();
        listed.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(page_of(listed.into_iter(), page))
    }

    async fn archive_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>> {
        Ok(self.state().row(app, user, with).map(|row| {
            row.conversation.archived = true;
            row.conversation.clone()
        }))
    }

    async fn delete_timeline(&self, app: &str, user: &str, with: &str) -> Result<u64> {
        let removed = self
            .state()
            .timelines
            .remove(&keys::timeline_pk(app, user, with));
        Ok(removed.map_or(0, |t| t.by_order.len() as u64))
    }

    async fn delete_conversation(&self, app: &str, user: &str, with: &str) -> Result<bool> {
        let mut state = self.state();
        let rows = state.conversations.get_mut(&keys::user_pk(app, user));
        Ok(rows.is_some_and(|rows| rows.remove(with).is_some()))
    }

    async fn mark_read(
        &self,
        app: &str,
        user: &str,
        with: &str,
        at: u64,
    ) -> Result<Option<Conversation>> {
        Ok(self.state().row(app, user, with).map(|row| {
            let c = &mut row.conversation;
            c.is_new = false;
            c.unread_count = 0;
            c.read_at = Some(at);
            c.clone()
        }))
    }

    async fn mark_peer_read(&self, app: &str, peer: &str, reader: &str, at: u64) -> Result<()> {
        if let Some(row) = self.state().row(app, peer, reader) {
            let mark = &mut row.conversation.peer_read_at;
            *mark = Some(mark.map_or(at, |old| old.max(at)));
        }
        Ok(())
    }
}

#[async_trait]
impl GroupStore for EmbeddedStore {
    async fn group_head(&self, app: &str, group: &str) -> Result<Option<GroupHead>> {
        Ok(self
            .state()
            .groups
            .get(&keys::group_pk(app, group))
            .map(|g| GroupHead {
                meta: g.meta.clone(),
                pending: g.changes.values().cloned().collect(),
            }))
    }

    async fn members_among(&self, app: &str, group: &str, users: &[&str]) -> Result<Vec<String>> {
        let state = self.state();
        let Some(g) = state.groups.get(&keys::group_pk(app, group)) else {
            return Ok(Vec::new());
        };
        Ok(users
            .iter()
            .filter(|u| g.members.contains(**u))
            .map(|u| u.to_string())
            .collect())
    }

    async fn members(&self, app: &str, group: &str) -> Result<Vec<String>> {
        let state = self.state();
        Ok(state
            .groups
            .get(&keys::group_pk(app, group))
            .map(|g| g.members.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn create_group(
        &self,
        meta: &GroupMeta,
        members: &[String],
        change: &GroupChange,
    ) -> Result<bool> {
        let mut state = self.state();
        let key = keys::group_pk(&meta.app_id, &meta.uid);
        if state.groups.contains_key(&key) {
            return Ok(false);
        }
        let group = GroupState {
            meta: meta.clone(),
            members: members.iter().cloned().collect(),
            changes: BTreeMap::from([(change.id.clone(), change.clone())]),
        };
        state.groups.insert(key, group);
        Ok(true)
    }

    async fn add_member(&self, app: &str, group: &str, change: &GroupChange) -> Result<bool> {
        let member = first(&change.joined)?;
        let mut state = self.state();
        let g = state
            .groups
            .get_mut(&keys::group_pk(app, group))
            .ok_or_else(|| Error::not_found(format!("group {group} not found")))?;
        if !g.members.insert(member.to_string()) {
            return Ok(false);
        }
        g.changes.insert(change.id.clone(), change.clone());
        Ok(true)
    }

    async fn remove_member(&self, app: &str, group: &str, change: &GroupChange) -> Result<bool> {
        let member = first(&change.left)?;
        let mut state = self.state();
        let Some(g) = state.groups.get_mut(&keys::group_pk(app, group)) else {
            return Ok(false);
        };
        if !g.members.remove(member) {
            return Ok(false);
        }
        g.changes.insert(change.id.clone(), change.clone());
        Ok(true)
    }

    async fn set_members(
        &self,
        app: &str,
        group: &str,
        version: u64,
        change: &GroupChange,
    ) -> Result<bool> {
        let mut state = self.state();
        let Some(g) = state.groups.get_mut(&keys::group_pk(app, group)) else {
            return Ok(false);
        };
        let still_valid = g.meta.version == version
            && change.joined.iter().all(|m| !g.members.contains(m))
            && change.left.iter().all(|m| g.members.contains(m));
        if !still_valid {
            return Ok(false);
        }
        g.members.extend(change.joined.iter().cloned());
        for m in &change.left {
            g.members.remove(m);
        }
        g.meta.version += 1;
        g.changes.insert(change.id.clone(), change.clone());
        Ok(true)
    }

    async fn update_meta(&self, meta: &GroupMeta, change: &GroupChange) -> Result<bool> {
        let mut state = self.state();
        let Some(g) = state
            .groups
            .get_mut(&keys::group_pk(&meta.app_id, &meta.uid))
        else {
            return Ok(false);
        };
        g.meta.name = meta.name.clone();
        g.meta.attributes = meta.attributes.clone();
        g.meta.updated_on = meta.updated_on;
        g.changes.insert(change.id.clone(), change.clone());
        Ok(true)
    }

    async fn mark_stalled(&self, app: &str, group: &str, change_id: &str) -> Result<()> {
        if let Some(g) = self.state().groups.get_mut(&keys::group_pk(app, group))
            && let Some(change) = g.changes.get_mut(change_id)
        {
            change.stalled = true;
        }
        Ok(())
    }

    async fn finish_change(&self, app: &str, group: &str, change_id: &str) -> Result<()> {
        if let Some(g) = self.state().groups.get_mut(&keys::group_pk(app, group)) {
            g.changes.remove(change_id);
        }
        Ok(())
    }
}

fn first(members: &[String]) -> Result<&str> {
    members
        .first()
        .map(String::as_str)
        .ok_or_else(|| Error::internal("a single-member change without a member"))
}

/// The in-process event bus: records what was published, optionally forwards it to a
/// consumer (the local server's deliver task), and can be told to fail (tests).
/// Built with [`EmbeddedEvents::new`] (records) or [`EmbeddedEvents::with_sink`] (forwards).
#[derive(Default)]
pub struct EmbeddedEvents {
    published: Mutex<Vec<Event>>,
    /// Keeps what is published (tests read it); off for the long-running local server.
    record: bool,
    failures: AtomicUsize,
    sink: Option<UnboundedSender<Event>>,
}

impl EmbeddedEvents {
    pub fn new() -> EmbeddedEvents {
        EmbeddedEvents {
            record: true,
            ..EmbeddedEvents::default()
        }
    }

    /// Forwards every published event to `sink` instead of keeping it.
    pub fn with_sink(sink: UnboundedSender<Event>) -> EmbeddedEvents {
        EmbeddedEvents {
            sink: Some(sink),
            ..EmbeddedEvents::default()
        }
    }

    /// Makes the next `n` publish calls fail as an unreachable SNS would.
    pub fn fail_next(&self, n: usize) {
        self.failures.store(n, Ordering::SeqCst);
    }

    /// Everything published so far, and forgets it.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.lock())
    }

    /// Everything published so far.
    pub fn published(&self) -> Vec<Event> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Event>> {
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl EventPublisher for EmbeddedEvents {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(Error::unavailable(
                "event bus unavailable (injected failure)",
            ));
        }
        if self.record {
            self.lock().extend(events.iter().cloned());
        }
        if let Some(sink) = &self.sink {
            for event in events {
                // The receiver only goes away when the process is shutting down.
                let _ = sink.send(event.clone());
            }
        }
        Ok(())
    }
}
