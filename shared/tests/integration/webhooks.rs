//! Webhooks against a real HTTP receiver on loopback (hyper, started by each test), through the
//! real HTTP client: every POST's signature checked, endpoints that fail, hang, refuse; the
//! retries driven by a clock the test moves (a day of backoff takes no time), on the in-memory
//! retry queue; then the Lambda path on moto's SQS (partial batch failures, delays, the
//! dead-letter queue) and from the topic through a filtered subscription.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chat21::adapters::embedded::MemoryRetries;
use chat21::adapters::http::HttpClient;
use chat21::adapters::sqs::SqsRetries;
use chat21::entry::webhooks::handle_webhooks;
use chat21::events::Event;
use chat21::model::EventType;
use chat21::model::{Caller, Webhook};
use chat21::ops::webhooks::delivery::{BACKOFF_SECS, MAX_ATTEMPTS};
use chat21::ops::webhooks::records::Retry;
use chat21::ops::webhooks::{AllowedHosts, Secret, WebhookConfig, Webhooks};
use chat21::ops::{groups, messages};
use chat21::ports::Target;
use chat21::ports::{Clock, RetryQueue, WebhookStore};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::common::{APP, Harness, ManualClock, id, input, user};

/// The POST timeout of these tests' client (production: 10 s). Loopback answers take
/// milliseconds; only the endpoint told to hang reaches it.
const TIMEOUT: Duration = Duration::from_secs(5);
const GLOBAL_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TENANT_SECRET: &str = "a-tenants-own-plain-secret";
const START: u64 = 1_800_000_000_000;

// ---------------------------------------------------------------------------------------------
// The receiver

/// How one path of the receiver answers.
#[derive(Clone, Copy, Debug)]
enum Script {
    /// 200 to everything.
    Ok,
    /// 503 to the first `n` attempts of each webhook id, then 200.
    FailFirst(usize),
    /// The very first request hangs (past the client's timeout); 200 to the others.
    HangOnce,
    /// 410 to the very first request, 200 to the others.
    GoneOnce,
    /// 503 to everything.
    Down,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Arrival {
    path: String,
    id: String,
    body: String,
    content_type: String,
    /// The signature verified with the path's secret (or there was none to check).
    verified: bool,
    /// What it answered (0: it hung).
    answered: u16,
}

impl Arrival {
    fn event(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct ReceiverState {
    arrivals: Vec<Arrival>,
    /// Requests per path, and per path and webhook id.
    per_path: HashMap<String, usize>,
    per_id: HashMap<(String, String), usize>,
}

struct Receiver {
    base: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1: `paths` maps a path to its script and the secret its
    /// signatures must verify with (`None`: unsigned POSTs expected).
    async fn start(paths: &[(&str, Script, Option<&str>)]) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let scripts: Arc<HashMap<String, (Script, Option<Secret>)>> = Arc::new(
            paths
                .iter()
                .map(|(path, script, secret)| {
                    let secret = secret.map(|s| Secret::parse("secret", s).unwrap());
                    (path.to_string(), (*script, secret))
                })
                .collect(),
        );
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (scripts, state) = (scripts.clone(), shared.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let (scripts, state) = (scripts.clone(), state.clone());
                        async move { Ok::<_, Infallible>(answer(&scripts, &state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { base, state }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.state.lock().unwrap().arrivals.clone()
    }

    fn at(&self, path: &str) -> Vec<Arrival> {
        self.arrivals()
            .into_iter()
            .filter(|a| a.path == path)
            .collect()
    }
}

async fn answer(
    scripts: &HashMap<String, (Script, Option<Secret>)>,
    state: &Mutex<ReceiverState>,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let content_type = header("content-type");
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    let (script, secret) = scripts
        .get(&path)
        .cloned()
        .unwrap_or_else(|| panic!("a POST to an unknown path {path}"));
    let verified = match &secret {
        Some(secret) => timestamp
            .parse()
            .is_ok_and(|ts| secret.verify(&id, ts, body.as_bytes(), &signature)),
        None => signature.is_empty(),
    };
    let status = {
        let mut state = state.lock().unwrap();
        let nth = *state
            .per_path
            .entry(path.clone())
            .and_modify(|n| *n += 1)
            .or_insert(1);
        let nth_of_id = *state
            .per_id
            .entry((path.clone(), id.clone()))
            .and_modify(|n| *n += 1)
            .or_insert(1);
        let status = match script {
            Script::Ok => 200,
            Script::FailFirst(n) if nth_of_id <= n => 503,
            Script::FailFirst(_) => 200,
            Script::HangOnce if nth == 1 => 0,
            Script::HangOnce => 200,
            Script::GoneOnce if nth == 1 => 410,
            Script::GoneOnce => 200,
            Script::Down => 503,
        };
        state.arrivals.push(Arrival {
            path,
            id,
            body,
            content_type,
            verified,
            answered: status,
        });
        status
    };
    if status == 0 {
        // Past the client's timeout: it gives up first.
        tokio::time::sleep(TIMEOUT * 4).await;
    }
    let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
    *response.status_mut() = hyper::StatusCode::from_u16(status.max(200)).unwrap();
    response
}

// ---------------------------------------------------------------------------------------------
// The consumer, on the in-memory queue and a clock the test moves

struct Consumer {
    webhooks: Arc<Webhooks>,
    retries: Arc<MemoryRetries>,
    clock: Arc<ManualClock>,
}

impl Consumer {
    fn new(store: Arc<dyn WebhookStore>, config: WebhookConfig) -> Consumer {
        let clock = ManualClock::at(START);
        let retries = Arc::new(MemoryRetries::new(clock.clone(), 10_000));
        let webhooks = Arc::new(Webhooks::new(
            store,
            Arc::new(HttpClient::new(TIMEOUT).unwrap()),
            retries.clone(),
            clock.clone(),
            config,
        ));
        Consumer {
            webhooks,
            retries,
            clock,
        }
    }

    /// The events, as the topic hands them over.
    async fn deliver(&self, events: &[Event]) {
        for event in events {
            self.webhooks.handle_record(&event.to_json()).await.unwrap();
        }
    }

    /// Moves the clock to each due time in turn and hands the due retries over, until none
    /// wait; returns how many queue messages came back (attempts and hops).
    async fn drain(&self) -> usize {
        let mut handled = 0;
        while let Some(due) = self.retries.next_due() {
            self.clock.set(due);
            for message in self.retries.take_due() {
                self.webhooks.handle_record(&message).await.unwrap();
                handled += 1;
            }
            assert!(handled < 100_000, "the retries never end");
        }
        handled
    }
}

fn config(receiver: &Receiver, paths: &[&str], events: &[EventType]) -> WebhookConfig {
    WebhookConfig {
        endpoints: paths.iter().map(|p| receiver.url(p)).collect(),
        events: events.to_vec(),
        secret: Some(Secret::parse("secret", GLOBAL_SECRET).unwrap()),
        allowed_hosts: AllowedHosts::any(),
    }
}

fn tenant_hook(app: &str, hook: &str, url: String, events: &[EventType]) -> Webhook {
    Webhook {
        id: hook.into(),
        app_id: app.into(),
        url,
        events: events.to_vec(),
        secret: TENANT_SECRET.into(),
        created_at: 1,
        updated_at: 1,
    }
}

fn caller(app: &str, user: &str, admin: bool) -> Caller {
    Caller {
        user_id: id(user),
        app_id: id(app),
        admin,
    }
}

/// Some activity in APP (a direct message, a group, a group message) and in app2 (a direct
/// message), delivered: every event it published.
async fn activity(h: &Harness) -> Vec<Event> {
    h.send(&user("u1"), "u2", "hello direct").await.unwrap();
    groups::create(
        &h.deps,
        &user("u1"),
        groups::CreateGroup {
            name: "Support".into(),
            members: vec![id("u2")],
            group_id: Some(id("group-support")),
            attributes: Default::default(),
            owner: None,
        },
    )
    .await
    .unwrap();
    let mut events = h.deliver_all().await;
    h.send(&user("u2"), "group-support", "hello group")
        .await
        .unwrap();
    messages::send_message(
        &h.deps,
        &caller("app2", "v1", false),
        input("v2", "other tenant"),
    )
    .await
    .unwrap();
    events.extend(h.deliver_all().await);
    // A client's presence (real time publishes it; nothing is stored).
    let presence = chat21::events::Presence {
        user_id: id("u2"),
        client_id: id("client-1"),
        presence: chat21::events::PresenceState::Online,
    };
    events.push(Event::presence_change(APP, presence, START));
    events
}

fn ids(arrivals: &[Arrival]) -> Vec<String> {
    arrivals.iter().map(|a| a.id.clone()).collect()
}

fn counts(arrivals: &[Arrival]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for a in arrivals {
        *counts.entry(a.id.clone()).or_default() += 1;
    }
    counts
}

fn event_id(event: &Event) -> String {
    chat21::ops::webhooks::signing::webhook_id(&event.to_json())
}

/// The scenario: two global endpoints, one healthy and one failing each event's first
/// two attempts; one that hangs once and one that answers 410 once; tenants' endpoints with
/// and without a filter, in two tenants. Each event reaches each healthy endpoint exactly
/// once, the flaky one after its retries with the same `webhook-id`; a refused one is not
/// retried; filters and tenants hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_gets_each_event_once_the_flaky_one_after_retries() {
    crate::common::init_logs();
    let receiver = Receiver::start(&[
        ("/healthy", Script::Ok, Some(GLOBAL_SECRET)),
        ("/flaky", Script::FailFirst(2), Some(GLOBAL_SECRET)),
        ("/slow", Script::HangOnce, Some(GLOBAL_SECRET)),
        ("/gone", Script::GoneOnce, Some(GLOBAL_SECRET)),
        ("/tenant-all", Script::Ok, Some(TENANT_SECRET)),
        ("/tenant-sent", Script::Ok, Some(TENANT_SECRET)),
        ("/tenant-two", Script::Ok, Some(TENANT_SECRET)),
    ])
    .await;
    let h = Harness::sqlite();
    // Webhooks carry every type but message-delivered (WEBHOOK_EVENTS).
    let wanted: Vec<EventType> = EventType::ALL
        .into_iter()
        .filter(|t| *t != EventType::MessageDelivered)
        .collect();
    let store = &h.deps.store;
    for hook in [
        tenant_hook(APP, "all", receiver.url("/tenant-all"), &EventType::ALL),
        tenant_hook(
            APP,
            "sent",
            receiver.url("/tenant-sent"),
            &[EventType::MessageSent],
        ),
        tenant_hook("app2", "two", receiver.url("/tenant-two"), &EventType::ALL),
    ] {
        store.put_webhook(&hook, 20).await.unwrap();
    }
    let consumer = Consumer::new(
        store.clone(),
        config(
            &receiver,
            &["/healthy", "/flaky", "/slow", "/gone"],
            &wanted,
        ),
    );
    let events = activity(&h).await;
    assert!(
        events
            .iter()
            .any(|e| e.event_type() == EventType::MessageDelivered)
    );
    consumer.deliver(&events).await;
    let handled = consumer.drain().await;
    assert!(handled > 0, "the flaky endpoint was retried");
    assert!(consumer.retries.dead_letters().is_empty());

    let arrivals = receiver.arrivals();
    assert!(
        arrivals.iter().all(|a| a.verified),
        "a signature did not verify: {:?}",
        arrivals.iter().find(|a| !a.verified)
    );
    assert!(
        arrivals
            .iter()
            .all(|a| a.content_type == "application/json")
    );
    let presence = receiver
        .at("/healthy")
        .into_iter()
        .map(|a| a.event())
        .find(|e| e["event_type"] == "presence-change")
        .expect("presence-change reaches webhooks");
    assert_eq!(
        (presence["user_id"].as_str(), presence["presence"].as_str()),
        (Some("u2"), Some("online"))
    );
    assert!(
        arrivals
            .iter()
            .all(|a| a.event()["event_type"] != "message-delivered"),
        "an event type outside WEBHOOK_EVENTS was sent"
    );
    let global: Vec<&Event> = events
        .iter()
        .filter(|e| wanted.contains(&e.event_type()))
        .collect();
    let mut global_ids: Vec<String> = global.iter().map(|e| event_id(e)).collect();
    global_ids.sort();
    global_ids.dedup();

    // Healthy: each event once, byte for byte as published.
    let healthy = receiver.at("/healthy");
    assert_eq!(
        counts(&healthy),
        global_ids.iter().map(|i| (i.clone(), 1)).collect()
    );
    for event in &global {
        let arrival = healthy.iter().find(|a| a.id == event_id(event)).unwrap();
        assert_eq!(arrival.body, event.to_json());
    }
    // Flaky: each event three times (503, 503, 200), one id per event, the same body.
    let flaky = receiver.at("/flaky");
    assert_eq!(
        counts(&flaky),
        global_ids.iter().map(|i| (i.clone(), 3)).collect()
    );
    for id in &global_ids {
        let attempts: Vec<&Arrival> = flaky.iter().filter(|a| a.id == *id).collect();
        assert_eq!(
            attempts.iter().map(|a| a.answered).collect::<Vec<_>>(),
            [503, 503, 200]
        );
        assert!(attempts.iter().all(|a| a.body == attempts[0].body));
    }
    // Slow: the first request hung past the timeout and was retried; every event answered
    // 200 exactly once.
    let slow = receiver.at("/slow");
    assert_eq!(slow[0].answered, 0, "the first request hung");
    let ok: Vec<&Arrival> = slow.iter().filter(|a| a.answered == 200).collect();
    assert_eq!(ok.len(), global_ids.len());
    assert_eq!(
        ok.iter().map(|a| a.id.clone()).collect::<BTreeSet<_>>(),
        global_ids.iter().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(slow.len(), global_ids.len() + 1);
    assert_eq!(counts(&slow)[&slow[0].id], 2, "the hung one came once more");
    // Gone: 410 is final; that event never came back there.
    let gone = receiver.at("/gone");
    assert_eq!(gone[0].answered, 410);
    assert_eq!(gone.len(), global_ids.len(), "no retry after a 410");
    assert_eq!(counts(&gone).values().max(), Some(&1));

    // Tenants: APP's endpoints get APP's events only, filtered; app2's only app2's.
    let of_app = |app: &str| -> BTreeSet<String> {
        global
            .iter()
            .filter(|e| e.app_id == app)
            .map(|e| event_id(e))
            .collect()
    };
    let all = receiver.at("/tenant-all");
    assert_eq!(ids(&all).into_iter().collect::<BTreeSet<_>>(), of_app(APP));
    assert_eq!(all.len(), of_app(APP).len(), "once each");
    assert!(all.iter().all(|a| a.event()["app_id"] == APP));
    let sent = receiver.at("/tenant-sent");
    let app_sent: BTreeSet<String> = global
        .iter()
        .filter(|e| e.app_id == APP && e.event_type() == EventType::MessageSent)
        .map(|e| event_id(e))
        .collect();
    assert!(!app_sent.is_empty());
    assert_eq!(ids(&sent).into_iter().collect::<BTreeSet<_>>(), app_sent);
    assert!(
        sent.iter()
            .all(|a| a.event()["event_type"] == "message-sent")
    );
    let two = receiver.at("/tenant-two");
    assert_eq!(
        ids(&two).into_iter().collect::<BTreeSet<_>>(),
        of_app("app2")
    );
    assert!(!two.is_empty() && two.iter().all(|a| a.event()["app_id"] == "app2"));

    // What a Tiledesk-style receiver reads: Chat21's envelope, for a direct and a group message.
    for (recipient, text, channel) in [
        ("u2", "hello direct", "direct"),
        ("group-support", "hello group", "group"),
    ] {
        let found = healthy
            .iter()
            .map(Arrival::event)
            .find(|e| e["event_type"] == "message-sent" && e["data"]["text"] == text)
            .unwrap_or_else(|| panic!("no message-sent for {text:?}"));
        assert_eq!(found["app_id"], APP);
        assert_eq!(found["recipient_id"], recipient);
        assert!(found["createdAt"].is_u64());
        assert_eq!(found["message_id"], found["data"]["message_id"]);
        assert_eq!(found["data"]["recipient"], recipient);
        assert_eq!(found["data"]["channel_type"], channel);
        assert_eq!(found["data"]["status"], 100);
    }
}

/// One endpoint down for good: attempts at 0, +1 min, +6 min, +36 min, +2 h 36, +8 h 36 and
/// +23 h 36 (the waits of the backoff, longer ones hopping through the queue 15 minutes at a
/// time), each signed afresh with the same id; then the dead-letter queue. The healthy endpoint
/// of the same event was called once, never again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_is_retried_for_a_day_then_dead_lettered() {
    crate::common::init_logs();
    let receiver = Receiver::start(&[
        ("/down", Script::Down, Some(GLOBAL_SECRET)),
        ("/healthy", Script::Ok, Some(GLOBAL_SECRET)),
    ])
    .await;
    let h = Harness::sqlite();
    let consumer = Consumer::new(
        h.deps.store.clone(),
        config(&receiver, &["/down", "/healthy"], &EventType::ALL),
    );
    let attempt_times: Arc<Mutex<Vec<u64>>> = Arc::default();
    h.send(&user("u1"), "u2", "anyone there?").await.unwrap();
    let events: Vec<Event> = h
        .deliver_all()
        .await
        .into_iter()
        .filter(|e| e.event_type() == EventType::MessageSent)
        .collect();
    assert_eq!(events.len(), 1);
    consumer.deliver(&events).await;
    attempt_times.lock().unwrap().push(consumer.clock.now_ms());
    // Drain by hand to note when each attempt happened.
    let mut messages = 0;
    while let Some(due) = consumer.retries.next_due() {
        consumer.clock.set(due);
        for message in consumer.retries.take_due() {
            let before = receiver.at("/down").len();
            consumer.webhooks.handle_record(&message).await.unwrap();
            messages += 1;
            if receiver.at("/down").len() > before {
                attempt_times.lock().unwrap().push(consumer.clock.now_ms());
            }
        }
    }
    let times = attempt_times.lock().unwrap().clone();
    let offsets: Vec<u64> = times.iter().map(|t| (t - times[0]) / 1000).collect();
    let mut expected = vec![0];
    for wait in BACKOFF_SECS {
        expected.push(expected.last().unwrap() + wait);
    }
    assert_eq!(offsets, expected);
    assert_eq!(times.len(), MAX_ATTEMPTS as usize);
    // Each wait is ⌈wait / 15 min⌉ queue messages.
    let hops: u64 = BACKOFF_SECS.iter().map(|w| w.div_ceil(900)).sum();
    assert_eq!(messages as u64, hops);

    let down = receiver.at("/down");
    assert_eq!(down.len(), MAX_ATTEMPTS as usize);
    assert!(down.iter().all(|a| a.id == down[0].id && a.verified));
    assert_eq!(
        receiver.at("/healthy").len(),
        1,
        "a success is never repeated"
    );
    let dead = consumer.retries.dead_letters();
    assert_eq!(dead.len(), 1);
    let dead: Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(dead["webhook_retry"]["attempts"], MAX_ATTEMPTS);
    assert_eq!(dead["webhook_retry"]["last_error"], "answered 503");
    assert_eq!(dead["webhook_retry"]["webhook_id"], down[0].id.as_str());
    assert_eq!(
        dead["webhook_retry"]["target"],
        json!({"kind": "global", "url": receiver.url("/down")})
    );
    assert_eq!(
        dead["webhook_retry"]["event"],
        serde_json::from_str::<Value>(&events[0].to_json()).unwrap()
    );
}

/// A tenant's endpoint deleted (or narrowed) while its retries wait gets nothing more, and
/// nothing is dead-lettered for it; retries read the endpoint as it is now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_endpoint_as_it_is_now() {
    crate::common::init_logs();
    let receiver = Receiver::start(&[
        ("/down", Script::Down, Some(TENANT_SECRET)),
        (
            "/moved",
            Script::Ok,
            Some("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"),
        ),
    ])
    .await;
    let h = Harness::sqlite();
    let store = h.deps.store.clone();
    store
        .put_webhook(
            &tenant_hook(APP, "gone", receiver.url("/down"), &EventType::ALL),
            20,
        )
        .await
        .unwrap();
    store
        .put_webhook(
            &tenant_hook(APP, "moves", receiver.url("/down"), &EventType::ALL),
            20,
        )
        .await
        .unwrap();
    let consumer = Consumer::new(store.clone(), WebhookConfig::default());
    h.send(&user("u1"), "u2", "hi").await.unwrap();
    let events: Vec<Event> = h
        .deliver_all()
        .await
        .into_iter()
        .filter(|e| e.event_type() == EventType::MessageSent)
        .collect();
    consumer.deliver(&events).await;
    assert_eq!(receiver.at("/down").len(), 2);
    assert_eq!(consumer.retries.waiting(), 2);
    assert!(store.delete_webhook(APP, "gone").await.unwrap());
    let mut moved = tenant_hook(APP, "moves", receiver.url("/moved"), &EventType::ALL);
    moved.secret = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0".into();
    store.put_webhook(&moved, 20).await.unwrap();
    consumer.drain().await;
    assert_eq!(
        receiver.at("/down").len(),
        2,
        "nothing more to the deleted one"
    );
    let arrived = receiver.at("/moved");
    assert_eq!(arrived.len(), 1);
    assert!(arrived[0].verified, "signed with the new secret");
    assert_eq!(arrived[0].id, receiver.at("/down")[0].id);
    assert!(consumer.retries.dead_letters().is_empty());
}

// ---------------------------------------------------------------------------------------------
// The Lambda path on moto's SQS

struct Queues {
    sqs: aws_sdk_sqs::Client,
    queue: String,
    dead: String,
}

async fn queues(config: &aws_config::SdkConfig) -> Queues {
    let sqs = aws_sdk_sqs::Client::new(config);
    let queue = crate::common::create_queue(&sqs, "webhooks").await;
    let dead = crate::common::create_queue(&sqs, "webhooks-dead").await;
    Queues { sqs, queue, dead }
}

impl Queues {
    async fn count(&self, url: &str, attribute: &str) -> u64 {
        let name = aws_sdk_sqs::types::QueueAttributeName::from(attribute);
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(name.clone())
            .send()
            .await
            .unwrap();
        out.attributes.unwrap()[&name].parse().unwrap()
    }

    /// Everything visible on a queue now (and removes it).
    async fn take(&self, url: &str) -> Vec<(String, String)> {
        let mut taken = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap();
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                return taken;
            }
            for m in batch {
                self.sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle.clone().unwrap())
                    .send()
                    .await
                    .unwrap();
                taken.push((m.message_id.unwrap(), m.body.unwrap()));
            }
        }
    }
}

/// An SQS event as Lambda hands it over.
fn sqs_event(records: &[(String, String)]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = records
        .iter()
        .map(|(id, body)| {
            let mut message = SqsMessage::default();
            message.message_id = Some(id.clone());
            message.body = Some(body.clone());
            message
        })
        .collect();
    event
}

fn webhooks_on(
    store: Arc<dyn WebhookStore>,
    retries: Arc<dyn RetryQueue>,
    clock: Arc<ManualClock>,
    config: WebhookConfig,
) -> Webhooks {
    Webhooks::new(
        store,
        Arc::new(HttpClient::new(TIMEOUT).unwrap()),
        retries,
        clock,
        config,
    )
}

fn message_sent(app: &str, to: &str, text: &str) -> Event {
    let message = chat21::model::Message {
        message_id: crate::common::unique("m"),
        sender: "u1".into(),
        sender_fullname: "One".into(),
        recipient: to.into(),
        recipient_fullname: "Two".into(),
        text: text.into(),
        kind: "text".into(),
        channel_type: chat21::model::ChannelType::Direct,
        attributes: None,
        metadata: None,
        timestamp: START,
        status: chat21::model::status::SENT,
        app_id: app.into(),
        timeline_of: "u1".into(),
        convers_with: to.into(),
    };
    Event::message_sent(&message, START)
}

/// Only the records that must come back are reported: the one whose retry could not be
/// queued (the retry queue is unreachable). The record delivered everywhere completes, and an
/// unreadable record goes straight to the dead-letter queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_batch_failures_report_only_what_must_come_back() {
    let aws = crate::common::aws_config().await;
    let q = queues(&aws).await;
    let receiver = Receiver::start(&[
        ("/healthy", Script::Ok, Some(TENANT_SECRET)),
        ("/down", Script::Down, Some(TENANT_SECRET)),
    ])
    .await;
    let h = Harness::dynamo().await;
    let store = h.deps.store.clone();
    store
        .put_webhook(
            &tenant_hook("app-a", "ok", receiver.url("/healthy"), &EventType::ALL),
            20,
        )
        .await
        .unwrap();
    store
        .put_webhook(
            &tenant_hook("app-b", "down", receiver.url("/down"), &EventType::ALL),
            20,
        )
        .await
        .unwrap();
    let broken = SqsRetries::new(
        q.sqs.clone(),
        format!("{}-no-such-queue", q.queue),
        q.dead.clone(),
    );
    let webhooks = webhooks_on(
        store,
        Arc::new(broken),
        ManualClock::at(START),
        WebhookConfig::default(),
    );
    let batch = sqs_event(&[
        ("r-ok".into(), message_sent("app-a", "u2", "fine").to_json()),
        (
            "r-down".into(),
            message_sent("app-b", "u2", "fails").to_json(),
        ),
        ("r-unreadable".into(), "{\"not\": \"an event\"}".into()),
    ]);
    let response = handle_webhooks(&webhooks, batch).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["r-down"]);
    assert_eq!(receiver.at("/healthy").len(), 1);
    assert_eq!(receiver.at("/down").len(), 1);
    let dead = q.take(&q.dead).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let dead: Value = serde_json::from_str(&dead[0].1).unwrap();
    assert_eq!(
        dead["webhook_unreadable"]["body"],
        "{\"not\": \"an event\"}"
    );
}

/// On SQS: a failed first attempt queues one retry, delayed by the first backoff (invisible
/// until then); a retry not due yet is queued again (at most 15 minutes) without a POST; the
/// last attempt failing sends the retry, with its last error, to the dead-letter queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_wait_on_the_queue_and_the_last_one_is_dead_lettered() {
    let aws = crate::common::aws_config().await;
    let q = queues(&aws).await;
    let receiver = Receiver::start(&[("/down", Script::Down, Some(GLOBAL_SECRET))]).await;
    let h = Harness::dynamo().await;
    let clock = ManualClock::at(START);
    let webhooks = webhooks_on(
        h.deps.store.clone(),
        Arc::new(SqsRetries::new(
            q.sqs.clone(),
            q.queue.clone(),
            q.dead.clone(),
        )),
        clock.clone(),
        config(&receiver, &["/down"], &EventType::ALL),
    );
    let event = message_sent(APP, "u2", "retry me");
    let response = handle_webhooks(&webhooks, sqs_event(&[("e1".into(), event.to_json())])).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(receiver.at("/down").len(), 1);
    assert_eq!(
        q.count(&q.queue, "ApproximateNumberOfMessagesDelayed")
            .await,
        1
    );
    assert_eq!(q.count(&q.queue, "ApproximateNumberOfMessages").await, 0);

    let retry = |attempts: u32, due: u64| Retry {
        webhook_id: chat21::ops::webhooks::signing::webhook_id(&event.to_json()),
        target: Target::Global {
            url: receiver.url("/down"),
        },
        attempts,
        due,
        last_error: "answered 503".into(),
        event: RawValue::from_string(event.to_json()).unwrap(),
    };
    // Due in two hours: back on the queue, not attempted.
    let early = retry(3, START + 2 * 3600 * 1000);
    let response =
        handle_webhooks(&webhooks, sqs_event(&[("e2".into(), early.to_message())])).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        receiver.at("/down").len(),
        1,
        "not attempted before it is due"
    );
    assert_eq!(
        q.count(&q.queue, "ApproximateNumberOfMessagesDelayed")
            .await,
        2
    );

    // The last attempt, due now, fails: dead-lettered.
    let last = retry(MAX_ATTEMPTS - 1, START);
    let response = handle_webhooks(&webhooks, sqs_event(&[("e3".into(), last.to_message())])).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(receiver.at("/down").len(), 2);
    let dead = q.take(&q.dead).await;
    assert_eq!(dead.len(), 1);
    let dead: Value = serde_json::from_str(&dead[0].1).unwrap();
    assert_eq!(dead["webhook_retry"]["attempts"], MAX_ATTEMPTS);
    assert_eq!(dead["webhook_retry"]["last_error"], "answered 503");
    assert_eq!(
        dead["webhook_retry"]["event"]["message_id"],
        event.message_id.clone().unwrap()
    );
    assert_eq!(
        q.count(&q.queue, "ApproximateNumberOfMessagesDelayed")
            .await,
        2
    );
}

/// The Lambda path end to end: sends over the HTTP handlers on DynamoDB, the table's stream
/// through deliver, events to the topic, a queue subscribed to it with the template's filter
/// (here without message-delivered), the webhooks handler: a Tiledesk-style receiver gets
/// `message-sent` for a direct and a group message, in Chat21's envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topic_reaches_a_tiledesk_style_receiver() {
    let aws = crate::common::aws_config().await;
    let q = queues(&aws).await;
    let receiver = Receiver::start(&[("/tiledesk", Script::Ok, None)]).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    let table = crate::common::unique("chat21");
    crate::common::create_table(&dynamo, &table).await;
    let sns = aws_sdk_sns::Client::new(&aws);
    let topic = crate::common::create_topic(&sns).await;
    let wanted: Vec<&str> = EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .filter(|t| *t != "message-delivered")
        .collect();
    let filter = json!({ "event_type": wanted });
    crate::common::subscribe_queue(&sns, &topic, &q.sqs, &q.queue, Some(filter)).await;
    let store = Arc::new(chat21::adapters::dynamo::DynamoStore::new(
        dynamo,
        table.clone(),
    ));
    let api = crate::common::api_on(chat21::ops::Deps {
        store: store.clone(),
        events: Arc::new(chat21::adapters::sns::SnsEvents::new(sns.clone(), topic)),
        realtime: Arc::new(chat21::ports::NoRealtime),
        clock: Arc::new(chat21::adapters::system::SystemClock),
        ids: Arc::new(chat21::adapters::system::UuidIds),
        settings: Default::default(),
    });
    let stream = crate::common::StreamReader::new(&aws, &table);
    let post = |path: &'static str, who: &'static str, body: Value| {
        let api = &api;
        async move {
            crate::common::call(
                api,
                "POST",
                path,
                Some(&crate::common::token(who)),
                Some(body.to_string().as_bytes()),
            )
            .await
        }
    };
    let (code, _) = post(
        "/api/app1/groups",
        "u1",
        json!({"group_name": "Support", "group_id": "group-support", "group_members": {"u2": 1}}),
    )
    .await;
    assert_eq!(code, 201);
    for (to, text) in [("u2", "hello direct"), ("group-support", "hello group")] {
        let body = json!({"sender_fullname": "One", "recipient_id": to,
                          "recipient_fullname": "Them", "text": text});
        let (code, sent) = post("/api/app1/messages", "u1", body).await;
        assert_eq!(code, 200, "{sent}");
    }
    loop {
        let event = stream.lambda_event().await;
        if event.records.is_empty() {
            break;
        }
        let response = chat21::entry::stream::handle_stream(&api.deps, event).await;
        assert!(response.batch_item_failures.is_empty());
    }
    let records = q.take(&q.queue).await;
    assert!(!records.is_empty());
    let webhooks = webhooks_on(
        store,
        Arc::new(SqsRetries::new(
            q.sqs.clone(),
            q.queue.clone(),
            q.dead.clone(),
        )),
        ManualClock::at(START),
        WebhookConfig {
            endpoints: vec![receiver.url("/tiledesk")],
            events: wanted.iter().filter_map(|t| EventType::parse(t)).collect(),
            secret: None,
            allowed_hosts: AllowedHosts::any(),
        },
    );
    for chunk in records.chunks(10) {
        let response = handle_webhooks(&webhooks, sqs_event(chunk)).await;
        assert!(response.batch_item_failures.is_empty());
    }
    let arrivals = receiver.at("/tiledesk");
    assert_eq!(arrivals.len(), records.len(), "one POST per event");
    assert!(
        arrivals.iter().all(|a| a.verified),
        "unsigned without a secret"
    );
    let events: Vec<Value> = arrivals.iter().map(Arrival::event).collect();
    assert!(
        events
            .iter()
            .all(|e| e["event_type"] != "message-delivered"),
        "the filter holds"
    );
    for (to, text, channel) in [
        ("u2", "hello direct", "direct"),
        ("group-support", "hello group", "group"),
    ] {
        let found = events
            .iter()
            .find(|e| e["event_type"] == "message-sent" && e["data"]["text"] == text)
            .unwrap_or_else(|| panic!("no message-sent for {text:?} in {events:?}"));
        assert_eq!(found["app_id"], APP);
        assert_eq!(found["recipient_id"], to);
        assert_eq!(found["data"]["sender"], "u1");
        assert_eq!(found["data"]["channel_type"], channel);
        assert!(found["createdAt"].is_u64() && found["message_id"].is_string());
    }
    assert!(events.iter().any(|e| e["event_type"] == "group-created"));
}

/// chat21-local's retry queue, driven in real time: a retry comes back once its delay is over
/// (also one queued while the driver waits for a later one), and the queue is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_memory_queue_hands_retries_back_in_real_time() {
    let receiver = Receiver::start(&[("/later", Script::Ok, Some(GLOBAL_SECRET))]).await;
    let clock: Arc<dyn Clock> = Arc::new(chat21::adapters::system::SystemClock);
    let retries = Arc::new(MemoryRetries::new(clock.clone(), 3));
    let h = Harness::sqlite();
    let webhooks = Arc::new(Webhooks::new(
        h.deps.store.clone(),
        Arc::new(HttpClient::new(TIMEOUT).unwrap()),
        retries.clone(),
        clock.clone(),
        config(&receiver, &["/later"], &EventType::ALL),
    ));
    tokio::spawn(chat21::entry::webhooks::run_memory_retries(
        retries.clone(),
        webhooks.clone(),
    ));
    let retry = |text: &str, wait_ms: u64| {
        let event = message_sent(APP, "u2", text);
        let retry = Retry {
            webhook_id: chat21::ops::webhooks::signing::webhook_id(&event.to_json()),
            target: Target::Global {
                url: receiver.url("/later"),
            },
            attempts: 1,
            due: clock.now_ms() + wait_ms,
            last_error: "answered 503".into(),
            event: RawValue::from_string(event.to_json()).unwrap(),
        };
        (retry.to_message(), Duration::from_millis(wait_ms))
    };
    retries
        .schedule(&[retry("much later", 60_000)])
        .await
        .unwrap();
    retries
        .schedule(&[retry("soon", 50), retry("sooner", 10)])
        .await
        .unwrap();
    let full = retries.schedule(&[retry("one too many", 10)]).await;
    assert_eq!(full.unwrap_err().status(), 503, "the queue holds 3");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while receiver.at("/later").len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the retries never came back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let texts: BTreeSet<String> = receiver
        .at("/later")
        .iter()
        .map(|a| a.event()["data"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, BTreeSet::from(["soon".into(), "sooner".into()]));
    assert_eq!(retries.waiting(), 1, "the later one still waits");
}

mod isolation;
