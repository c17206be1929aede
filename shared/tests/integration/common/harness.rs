//! The harness every behavioural scenario runs on: the same deps on SQLite (in memory) or on
//! DynamoDB (moto), with a recording event bus and real-time publisher, a deterministic clock
//! and ids, and the store's stream of new messages to deliver; and the inputs and counts the
//! scenarios share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chat21::adapters::dynamo::DynamoStore;
use chat21::adapters::embedded::{EmbeddedEvents, RecordingRealtime};
use chat21::adapters::sqlite::SqliteStore;
use chat21::events::Event;
use chat21::model::EventType;
use chat21::model::{Caller, Conversation, Message};
use chat21::ops::messages::SendMessage;
use chat21::ops::{Deps, Settings, conversations, deliver, messages};
use chat21::ports::{Clock, IdSource, Page, PageRequest, Streamed, Timeline};

use super::{APP, StreamReader, aws_config, create_table, id, unique, user};

/// A clock that moves forward by one millisecond per reading: deterministic order.
pub struct StepClock(AtomicU64);

impl Clock for StepClock {
    fn now_ms(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

pub struct SeqIds(AtomicU64);

impl IdSource for SeqIds {
    fn new_id(&self) -> String {
        format!("id-{:06}", self.0.fetch_add(1, Ordering::SeqCst))
    }
}

/// Where the new messages a store writes come from: the SQLite store's outbox, or the
/// DynamoDB table's stream.
pub enum Stream {
    Sqlite(Arc<SqliteStore>),
    Dynamo(StreamReader),
}

/// Deps plus the recording event bus and real-time publisher, and the store's stream of new
/// messages, on either store.
#[derive(Clone)]
pub struct Harness {
    pub deps: Deps,
    pub events: Arc<EmbeddedEvents>,
    pub realtime: Arc<RecordingRealtime>,
    pub dynamo: Option<Arc<DynamoStore>>,
    pub stream: Arc<Stream>,
    /// Every new message delivered so far (to deliver again: a redelivery).
    pub delivered: Arc<std::sync::Mutex<Vec<Streamed>>>,
}

/// The clock every harness starts from.
pub fn step_clock() -> Arc<StepClock> {
    Arc::new(StepClock(AtomicU64::new(1_700_000_000_000)))
}

fn deps_with(
    store: Arc<dyn chat21::ports::Store>,
    events: Arc<EmbeddedEvents>,
    realtime: Arc<RecordingRealtime>,
) -> Deps {
    Deps {
        store,
        events,
        realtime,
        clock: step_clock(),
        ids: Arc::new(SeqIds(AtomicU64::new(1))),
        settings: Settings::default(),
    }
}

impl Harness {
    /// A fresh in-memory SQLite store; the test plays the deliver step from its outbox.
    pub fn sqlite() -> Harness {
        let events = Arc::new(EmbeddedEvents::new());
        let realtime = Arc::new(RecordingRealtime::new());
        let store = Arc::new(SqliteStore::memory().expect("an in-memory database"));
        Harness {
            deps: deps_with(store.clone(), events.clone(), realtime.clone()),
            events,
            realtime,
            dynamo: None,
            stream: Arc::new(Stream::Sqlite(store)),
            delivered: Default::default(),
        }
    }

    /// A fresh table on moto, so that tests running in parallel never see each other's data.
    pub async fn dynamo() -> Harness {
        let config = aws_config().await;
        let client = aws_sdk_dynamodb::Client::new(&config);
        let table = unique("chat21");
        create_table(&client, &table).await;
        let store = Arc::new(DynamoStore::new(client, table.clone()));
        let events = Arc::new(EmbeddedEvents::new());
        let realtime = Arc::new(RecordingRealtime::new());
        Harness {
            deps: deps_with(store.clone(), events.clone(), realtime.clone()),
            events,
            realtime,
            dynamo: Some(store),
            stream: Arc::new(Stream::Dynamo(StreamReader::new(&config, &table))),
            delivered: Default::default(),
        }
    }

    /// The new messages (and settled group changes) written since the last call, not
    /// delivered.
    pub async fn take_written(&self) -> Vec<Streamed> {
        match &*self.stream {
            Stream::Sqlite(store) => store.take_deliveries().await.expect("the outbox"),
            Stream::Dynamo(reader) => reader.written().await,
        }
    }

    /// Delivers what the stream holds now, in order; returns how many.
    async fn deliver_pending(&self) -> usize {
        let written = self.take_written().await;
        for w in &written {
            deliver::handle(&self.deps, w).await.expect("deliver");
        }
        let n = written.len();
        self.delivered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(written);
        n
    }

    /// Runs the deliver step for every new message, in order, until none are left (what the
    /// table's stream and the deliver function do on AWS). Returns every event published so
    /// far (by the operations and by deliver).
    pub async fn deliver_all(&self) -> Vec<Event> {
        while self.deliver_pending().await > 0 {}
        self.events.take()
    }

    /// Runs the deliver step alongside whatever the test does next (as the stream does on
    /// AWS), until the returned stop is called; the stop waits for it to finish.
    pub fn deliver_in_background(&self) -> impl AsyncFnOnce() {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let h = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let done = stopped.load(Ordering::SeqCst);
                if h.deliver_pending().await == 0 {
                    if done {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
        });
        async move || {
            stop.store(true, Ordering::SeqCst);
            task.await.expect("the background deliver step");
        }
    }

    /// Delivers every message delivered so far again (a redelivery); returns how many.
    pub async fn redeliver_all(&self) -> usize {
        let all = self
            .delivered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for w in &all {
            deliver::handle(&self.deps, w).await.expect("redeliver");
        }
        all.len()
    }

    pub async fn send(&self, from: &Caller, to: &str, text: &str) -> chat21::Result<Message> {
        messages::send_message(&self.deps, from, input(to, text)).await
    }

    pub async fn send_with(&self, from: &Caller, input: SendMessage) -> chat21::Result<Message> {
        messages::send_message(&self.deps, from, input).await
    }

    /// What `owner` sees of their conversation with `with` (their copies, as stored: no
    /// receipts derived).
    pub async fn timeline(&self, owner: &str, with: &str) -> Vec<Message> {
        let page = PageRequest::first(1000);
        conversations::copies(&self.deps, APP, owner, with, &page)
            .await
            .unwrap()
            .items
    }

    /// A group's own history.
    pub async fn history(&self, group: &str) -> Vec<Message> {
        let page = PageRequest::first(1000);
        let history = Timeline::History {
            app: APP.into(),
            group: group.into(),
        };
        self.deps
            .store
            .list_timeline(&history, None, None, &page)
            .await
            .unwrap()
            .items
    }

    /// The timeline as its owner reads it over the API (with derived receipts).
    pub async fn read_timeline(&self, owner: &str, with: &str) -> Vec<Message> {
        let page = PageRequest::first(1000);
        conversations::messages(&self.deps, &user(owner), id(owner), &id(with), &page)
            .await
            .unwrap()
            .items
    }

    pub async fn conversation(&self, owner: &str, with: &str) -> Option<Conversation> {
        self.deps
            .store
            .get_conversation(APP, owner, with)
            .await
            .unwrap()
    }

    pub async fn list(&self, owner: &str, archived: bool) -> Page<Conversation> {
        conversations::list(
            &self.deps,
            &user(owner),
            id(owner),
            archived,
            &PageRequest::first(1000),
        )
        .await
        .unwrap()
    }

    pub async fn members(&self, group: &str) -> Vec<String> {
        self.deps.store.members(APP, group).await.unwrap()
    }
}

pub fn input(to: &str, text: &str) -> SendMessage {
    SendMessage {
        sender_fullname: "Sender".into(),
        recipient_id: id(to),
        recipient_fullname: "Recipient".into(),
        text: text.into(),
        kind: None,
        channel_type: None,
        attributes: None,
        metadata: None,
        timestamp: None,
        sender_id: None,
        message_id: None,
        group_members: None,
    }
}

pub fn count(events: &[Event], kind: EventType) -> usize {
    events.iter().filter(|e| e.event_type() == kind).count()
}

pub fn label(message: &Message) -> Option<String> {
    message
        .attribute("messagelabel")?
        .get("key")?
        .as_str()
        .map(str::to_string)
}
