//! The SQLite store's own guarantees, beyond the behaviour suite it shares with DynamoDB: its
//! outbox (handed over only once consumed, in order per lane, retried, dead after its
//! attempts, kept across a restart), and its schema (a database of the previous version
//! migrates and keeps its data; one of a newer version is refused).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chat21::adapters::sqlite::dispatch::{Consumer, Dispatcher};
use chat21::adapters::sqlite::outbox::{OutboxEvents, OutboxRetries, Queue};
use chat21::adapters::sqlite::{FILE_NAME, Location, SqliteStore, schema};
use chat21::adapters::system::SystemClock;
use chat21::error::{Error, Result};
use chat21::events::Event;
use chat21::model::{ChangeKind, GroupChange, GroupInfo, GroupMeta, Message, Webhook};
use chat21::ports::{
    ConversationKind, ConversationStore, EventPublisher, GroupStore, MessageStore, Origin,
    PageRequest, RetryQueue, RowUpdate, Streamed, Timeline, WebhookStore, Written,
};
use tokio::sync::watch;

use crate::common::{self, APP};

/// A fresh directory under the system's temporary one (removed when dropped).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let dir = std::env::temp_dir().join(common::unique("chat21-sqlite"));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn location(&self) -> Location {
        Location::of_data_dir(self.0.to_str().unwrap())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn message(from: &str, to: &str, id: &str, at: u64) -> Message {
    Message {
        message_id: id.into(),
        sender: from.into(),
        sender_fullname: from.into(),
        recipient: to.into(),
        recipient_fullname: to.into(),
        text: format!("text of {id}"),
        kind: "text".into(),
        channel_type: chat21::model::ChannelType::Direct,
        attributes: None,
        metadata: None,
        timestamp: at,
        status: 100,
        app_id: APP.into(),
        timeline_of: from.into(),
        convers_with: to.into(),
    }
}

fn written(from: &str, to: &str, id: &str, at: u64) -> Written {
    Written {
        message: message(from, to, id, at),
        origin: Origin::Direct,
        written_at: at,
    }
}

/// The message id of a delivery's body.
fn id_of(body: &str) -> String {
    match serde_json::from_str::<Streamed>(body).unwrap() {
        Streamed::Message(w) => w.message.message_id,
        Streamed::Change { change, .. } => change.id,
    }
}

/// A consumer that records what it is handed, and fails the first attempts at some ids.
#[derive(Default)]
struct Recording {
    handed: Mutex<Vec<String>>,
    /// id → attempts to fail (`usize::MAX`: always; with `BadRequest` when `malformed`).
    failing: Mutex<Vec<(String, usize)>>,
    malformed: Option<String>,
    calls: AtomicUsize,
}

impl Recording {
    fn handed(&self) -> Vec<String> {
        self.handed.lock().unwrap().clone()
    }
}

#[async_trait]
impl Consumer for Recording {
    async fn consume(&self, body: &str) -> Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let id = serde_json::from_str::<Streamed>(body)
            .map(|_| id_of(body))
            .unwrap_or_else(|_| body.to_string());
        if self.malformed.as_deref() == Some(id.as_str()) {
            return Err(Error::bad_request("malformed"));
        }
        {
            let mut failing = self.failing.lock().unwrap();
            if let Some((_, left)) = failing.iter_mut().find(|(f, left)| *f == id && *left > 0) {
                *left = left.saturating_sub(1);
                return Err(Error::unavailable(format!("{id} failed")));
            }
        }
        self.handed.lock().unwrap().push(id);
        Ok(())
    }
}

fn dispatcher(store: &Arc<SqliteStore>, consumer: &Arc<Recording>) -> Dispatcher {
    let mut d = Dispatcher::new(store.clone(), consumer.clone(), Arc::new(SystemClock), 8);
    d.first_backoff = Duration::from_millis(20);
    d
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_survive_a_restart_and_are_handed_over_once() {
    let dir = TempDir::new();
    {
        let store = SqliteStore::open(&dir.location()).unwrap();
        for i in 0..20 {
            let w = written(
                "u1",
                &format!("u{}", 2 + i % 3),
                &format!("m{i:02}"),
                1_000 + i,
            );
            assert_eq!(store.put_message(&w).await.unwrap(), None);
        }
        // A retry of an acknowledged send queues nothing more.
        let again = written("u1", "u2", "m00", 1_000);
        assert!(store.put_message(&again).await.unwrap().is_some());
        store.close().await;
    }
    let store = Arc::new(SqliteStore::open(&dir.location()).unwrap());
    let consumer = Arc::new(Recording::default());
    let (stop, stopped) = watch::channel(false);
    let run = tokio::spawn(dispatcher(&store, &consumer).run_deliveries(stopped));
    until("20 deliveries", || consumer.handed().len() == 20).await;
    // Nothing more comes, and nothing is left.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut handed = consumer.handed();
    handed.sort();
    let expected: Vec<String> = (0..20).map(|i| format!("m{i:02}")).collect();
    assert_eq!(handed, expected);
    stop.send(true).unwrap();
    run.await.unwrap();
    assert!(store.take_deliveries().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_delivery_holds_its_lane_only_and_is_retried() {
    let store = Arc::new(SqliteStore::memory().unwrap());
    // Lane u1–u2: a1 (fails twice), a2, a3; lane u1–u3: b1, b2.
    for (to, id, at) in [
        ("u2", "a1", 1),
        ("u3", "b1", 2),
        ("u2", "a2", 3),
        ("u3", "b2", 4),
        ("u2", "a3", 5),
    ] {
        store.put_message(&written("u1", to, id, at)).await.unwrap();
    }
    let consumer = Arc::new(Recording {
        failing: Mutex::new(vec![("a1".into(), 2)]),
        ..Recording::default()
    });
    let (stop, stopped) = watch::channel(false);
    let run = tokio::spawn(dispatcher(&store, &consumer).run_deliveries(stopped));
    until("five deliveries", || consumer.handed().len() == 5).await;
    let handed = consumer.handed();
    let at = |id: &str| handed.iter().position(|h| h == id).unwrap();
    assert!(at("a1") < at("a2") && at("a2") < at("a3"), "{handed:?}");
    assert!(at("b1") < at("b2"), "{handed:?}");
    // The other lane did not wait for a1's retries.
    assert!(at("b2") < at("a1"), "{handed:?}");
    assert_eq!(consumer.calls.load(Ordering::SeqCst), 7);
    stop.send(true).unwrap();
    run.await.unwrap();
    assert!(
        store
            .dead_letters(Queue::Deliveries)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_that_never_succeed_are_kept_dead_and_let_their_lane_go_on() {
    let store = Arc::new(SqliteStore::memory().unwrap());
    for (id, at) in [("bad", 1), ("broken", 2), ("fine", 3)] {
        store
            .put_message(&written("u1", "u2", id, at))
            .await
            .unwrap();
    }
    let consumer = Arc::new(Recording {
        failing: Mutex::new(vec![("broken".into(), usize::MAX)]),
        malformed: Some("bad".into()),
        ..Recording::default()
    });
    let (stop, stopped) = watch::channel(false);
    let mut d = dispatcher(&store, &consumer);
    d.max_attempts = 3;
    let run = tokio::spawn(d.run_deliveries(stopped));
    until("the last delivery", || consumer.handed() == ["fine"]).await;
    // A malformed entry is dead at once; one that keeps failing after its attempts.
    assert_eq!(consumer.calls.load(Ordering::SeqCst), 1 + 3 + 1);
    let dead = store.dead_letters(Queue::Deliveries).await.unwrap();
    let ids: Vec<String> = dead.iter().map(|e| id_of(&e.body)).collect();
    assert_eq!(ids, ["bad", "broken"]);
    assert_eq!((dead[0].attempts, dead[1].attempts), (1, 3));
    assert_eq!(dead[1].last_error.as_deref(), Some("broken failed"));
    let counts = store.outbox_counts(0).await.unwrap();
    assert_eq!((counts.deliveries, counts.dead_deliveries), (0, 2));
    stop.send(true).unwrap();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_retries_wait_in_the_webhooks_queue_across_a_restart() {
    let dir = TempDir::new();
    let clock = Arc::new(SystemClock);
    let event = |id: &str| Event::message_sent(&message("u1", "u2", id, 1), 1);
    {
        let store = Arc::new(SqliteStore::open(&dir.location()).unwrap());
        OutboxEvents(store.clone())
            .publish(&[event("e1"), event("e2")])
            .await
            .unwrap();
        let retries = OutboxRetries {
            store: store.clone(),
            clock: clock.clone(),
        };
        retries
            .schedule(&[("later".into(), Duration::from_millis(600))])
            .await
            .unwrap();
        retries.dead_letter(&["given up".into()]).await.unwrap();
        store.close().await;
    }
    let store = Arc::new(SqliteStore::open(&dir.location()).unwrap());
    let consumer = Arc::new(Recording::default());
    let (stop, stopped) = watch::channel(false);
    let started = Instant::now();
    let run = tokio::spawn(dispatcher(&store, &consumer).run_webhooks(stopped));
    until("both events", || consumer.handed().len() >= 2).await;
    let events: Vec<String> = [event("e1"), event("e2")]
        .iter()
        .map(Event::to_json)
        .collect();
    let mut first = consumer.handed()[..2].to_vec();
    first.sort();
    assert_eq!(first, events);
    until("the retry", || consumer.handed().len() == 3).await;
    assert_eq!(consumer.handed()[2], "later");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "a retry waits for its time"
    );
    stop.send(true).unwrap();
    run.await.unwrap();
    let dead = store.dead_letters(Queue::Webhooks).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "given up");
    assert_eq!(
        consumer.handed().len(),
        3,
        "the dead letter is never handed over"
    );
}

fn meta(group: &str) -> GroupMeta {
    GroupMeta {
        info: GroupInfo {
            uid: group.into(),
            name: "The group".into(),
            owner: "u1".into(),
            attributes: Default::default(),
            created_on: 1,
            updated_on: 1,
            app_id: APP.into(),
        },
        version: 0,
        seq: 0,
    }
}

fn change(id: &str) -> GroupChange {
    GroupChange {
        id: id.into(),
        at: 1,
        actor: "u1".into(),
        kind: ChangeKind::Created,
        joined: vec!["u1".into(), "u2".into()],
        left: Vec::new(),
        stalled: false,
        places_from: None,
        settled: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_previous_version_migrates_and_keeps_its_data() {
    assert_eq!(schema::VERSION, 2);
    let dir = TempDir::new();
    let m = message("u1", "u2", "m1", 10);
    let hook = Webhook {
        id: "w1".into(),
        app_id: APP.into(),
        url: "http://127.0.0.1:9/h".into(),
        events: vec![chat21::model::EventType::MessageSent],
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        created_at: 1,
        updated_at: 1,
    };
    {
        // Written as version 1 wrote it: no outbox yet.
        let v1 = SqliteStore::open_at(&dir.location(), 1).unwrap();
        v1.create_group(&meta("g1"), &["u1".into(), "u2".into()], &change("c1"))
            .await
            .unwrap();
        let update = RowUpdate {
            last: m.clone(),
            kind: ConversationKind::Direct,
            orders: vec![chat21::keys::order_of(&m)],
            unread: false,
            opens_window: false,
            newest_at: 10,
        };
        v1.apply("u1", "u2", &update).await.unwrap();
        v1.put_copies(std::slice::from_ref(&m)).await.unwrap();
        v1.put_webhook(&hook, 20).await.unwrap();
        // Version 1 has no outbox: a send cannot be written there.
        assert!(
            v1.put_message(&written("u1", "u2", "m2", 11))
                .await
                .is_err()
        );
        v1.close().await;
    }
    let store = SqliteStore::open(&dir.location()).unwrap();
    let head = store.group_head(APP, "g1").await.unwrap().unwrap();
    assert_eq!(head.meta.info.name, "The group");
    assert_eq!(head.pending, vec![change("c1")]);
    assert_eq!(store.members(APP, "g1").await.unwrap(), ["u1", "u2"]);
    let listed = store
        .list_conversations(APP, "u1", false, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].last, m);
    let copies = Timeline::Copies {
        app: APP.into(),
        owner: "u1".into(),
        with: "u2".into(),
    };
    assert_eq!(
        store.get_message(&copies, "u1", "m1").await.unwrap(),
        Some(m)
    );
    assert_eq!(store.get_webhook(APP, "w1").await.unwrap(), Some(hook));
    // Version 2's outbox works on it.
    let w = written("u1", "u2", "m2", 11);
    assert_eq!(store.put_message(&w).await.unwrap(), None);
    assert_eq!(
        store.take_deliveries().await.unwrap(),
        vec![Streamed::Message(w)]
    );
    store.close().await;
}

#[tokio::test]
async fn a_database_of_a_newer_version_is_refused() {
    let dir = TempDir::new();
    SqliteStore::open(&dir.location()).unwrap().close().await;
    // The header's user_version (bytes 60..64, big-endian), as a newer release would set it.
    let file = dir.0.join(FILE_NAME);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[60..64].copy_from_slice(&(schema::VERSION + 1).to_be_bytes());
    std::fs::write(&file, bytes).unwrap();
    let refused = SqliteStore::open(&dir.location()).err().expect("refused");
    let why = refused.to_string();
    assert!(
        why.contains("newer") && why.contains(&format!("{}", schema::VERSION + 1)),
        "{why}"
    );
}
