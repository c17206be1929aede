//! Real time on AWS, offline: the `mqtt-inbound` path (topic-rule events, as template.yaml's
//! SQL shapes them) against moto's DynamoDB and SNS, with IoT Core's data plane replaced by a
//! recording endpoint on loopback (moto keeps its publishes in-process): every client publish
//! of REALTIME.md's table runs its operation and the server publishes its outbound table. Also
//! the deliver step with a failing broker, the retained wills a disconnect clears, and the IoT
//! publishes each operation costs. (The authorizer's policies: `iot_policy.rs`.)

use std::sync::Arc;

use base64::Engine;
use chat21::adapters::dynamo::DynamoStore;
use chat21::adapters::iot::realtime_from_lookup;
use chat21::adapters::sns::SnsEvents;
use chat21::adapters::system::{SystemClock, UuidIds};
use chat21::entry::rule;
use chat21::entry::stream::handle_stream;
use chat21::events::Event;
use chat21::model::EventType;
use chat21::ops::{Deps, Settings};
use serde_json::{Value, json};

use crate::common::{self, APP, Recorder, StreamReader, api_on, call, token};

// ---------------------------------------------------------------- the inbound path on moto

struct Aws {
    deps: Deps,
    iot: Recorder,
    stream: StreamReader,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

/// A table with its stream, a topic with a queue subscribed (to read the events), and the
/// functions' real-time port built by the production constructor, pointed at a recorder.
async fn setup() -> Aws {
    let config = common::aws_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let table = common::unique("chat21");
    common::create_table(&dynamo, &table).await;
    let sns = aws_sdk_sns::Client::new(&config);
    let topic_arn = common::create_topic(&sns).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue_url = common::create_queue(&sqs, "events").await;
    common::subscribe_queue(&sns, &topic_arn, &sqs, &queue_url, None).await;
    let iot = Recorder::start().await;
    let endpoint = iot.url.clone();
    let realtime = realtime_from_lookup(
        move |name| (name == "IOT_DATA_ENDPOINT").then(|| endpoint.clone()),
        &config,
    );
    let deps = Deps {
        store: Arc::new(DynamoStore::new(dynamo, table.clone())),
        events: Arc::new(SnsEvents::new(sns, topic_arn)),
        realtime,
        clock: Arc::new(SystemClock),
        ids: Arc::new(UuidIds),
        settings: Settings {
            delivered_events: false,
            ..Settings::default()
        },
    };
    Aws {
        deps,
        iot,
        stream: StreamReader::new(&config, &table),
        sqs,
        queue_url,
    }
}

impl Aws {
    /// The deliver function on the table's stream until nothing new is left.
    async fn deliver(&self) {
        loop {
            let event = self.stream.lambda_event().await;
            if event.records.is_empty() {
                return;
            }
            let response = handle_stream(&self.deps, event).await;
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
        }
    }

    async fn events(&self) -> Vec<Event> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        out.messages
            .unwrap_or_default()
            .iter()
            .map(|m| crate::common::event_of(m.body.as_deref().unwrap()))
            .collect()
    }

    /// What the IoT data plane received: the pushes (topic, payload), in order, all QoS 1 and
    /// not retained, and the topics whose retained message was cleared (an empty retained
    /// QoS 1 publish), in order.
    fn publishes(&self) -> (Vec<(String, Value)>, Vec<String>) {
        let (mut pushes, mut cleared) = (Vec::new(), Vec::new());
        for r in self.iot.take() {
            assert_eq!(r.method, "POST", "{r:?}");
            let mut query: Vec<&str> = r.query.split('&').collect();
            query.sort_unstable();
            let (topic, payload) = r
                .as_push()
                .unwrap_or_else(|| panic!("not a Publish: {r:?}"));
            match query.as_slice() {
                ["qos=1"] => pushes.push((topic, payload)),
                ["qos=1", "retain=true"] => {
                    assert!(
                        r.body.is_empty(),
                        "a retained publish with a payload: {r:?}"
                    );
                    cleared.push(topic);
                }
                _ => panic!("unexpected publish: {r:?}"),
            }
        }
        (pushes, cleared)
    }

    /// The pushes (see [`Aws::publishes`]); no retained message was cleared.
    fn pushes(&self) -> Vec<(String, Value)> {
        let (pushes, cleared) = self.publishes();
        assert_eq!(cleared, Vec::<String>::new(), "retained messages cleared");
        pushes
    }
}

/// A topic rule's invocation, shaped by template.yaml's SQL (the user is the topic's level
/// `user_level`).
fn rule_event(topic: &str, user_level: usize, payload: &[u8], publish_id: &str) -> Value {
    let levels: Vec<&str> = topic.split('/').collect();
    json!({
        "payload": base64::engine::general_purpose::STANDARD.encode(payload),
        "topic": topic,
        "app_id": levels[1],
        "user_id": levels[user_level - 1],
        "principal": chat21::realtime::authorizer::principal_id(levels[1], levels[user_level - 1]),
        "client_id": "client-1",
        "received_at": 1_800_000_000_000u64,
        "publish_id": publish_id,
    })
}

const OUTGOING: usize = 5;
const OWN_TREE: usize = 4;

fn sorted(mut pushes: Vec<(String, Value)>) -> Vec<(String, Value)> {
    pushes.sort_by(|a, b| a.0.cmp(&b.0));
    pushes
}

#[tokio::test]
async fn client_publishes_run_their_operations_and_push_the_outbound_table() {
    let aws = setup().await;
    let deps = &aws.deps;
    let send = rule_event(
        &format!("apps/{APP}/outgoing/users/u1/messages/u2/outgoing"),
        OUTGOING,
        br#"{"text": "over MQTT", "type": "text", "sender_fullname": "U1", "recipient_fullname": "U2", "channel_type": "direct", "attributes": null}"#,
        "0b6f3c7e-1d2a-4b5c-8d9e-0f1a2b3c4d5e",
    );
    rule::handle(deps, &send).await.unwrap();
    // The send's own writes publish nothing; the deliver step tells both users.
    assert_eq!(aws.pushes(), []);
    aws.deliver().await;
    let pushes = sorted(aws.pushes());
    let topics: Vec<&str> = pushes.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        [
            format!("apps/{APP}/users/u1/messages/u2/clientadded"),
            format!("apps/{APP}/users/u2/messages/u1/clientadded"),
        ]
    );
    let (mine, theirs) = (&pushes[0].1, &pushes[1].1);
    assert_eq!(
        (mine["status"].as_u64(), theirs["status"].as_u64()),
        (Some(100), Some(150))
    );
    assert_eq!(theirs["timelineOf"], "u2");
    assert_eq!(theirs["text"], "over MQTT");
    assert!(theirs.get("attributes").is_none(), "{theirs}");
    let id = theirs["message_id"].as_str().unwrap().to_string();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);

    // The same invocation again (Lambda retried it): the same message, nothing new.
    rule::handle(deps, &send).await.unwrap();
    aws.deliver().await;
    let row = deps
        .store
        .get_conversation(APP, "u2", "u1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.unread_count, 1, "a retried publish sent twice");

    // A read receipt: the sender is told (250).
    let receipt = rule_event(
        &format!("apps/{APP}/users/u2/messages/u1/{id}/update"),
        OWN_TREE,
        br#"{"status": 200}"#,
        "1b6f3c7e-1d2a-4b5c-8d9e-0f1a2b3c4d5e",
    );
    rule::handle(deps, &receipt).await.unwrap();
    assert_eq!(
        aws.pushes(),
        [(
            format!("apps/{APP}/users/u1/messages/u2/{id}/clientupdated"),
            json!({"timelineOf": "u1", "message_id": id, "status": 250})
        )]
    );

    // The conversation read: the reader, then the peer.
    let read = rule_event(
        &format!("apps/{APP}/users/u2/conversations/u1/update"),
        OWN_TREE,
        br#"{"is_new": false}"#,
        "2b6f3c7e-1d2a-4b5c-8d9e-0f1a2b3c4d5e",
    );
    rule::handle(deps, &read).await.unwrap();
    let pushes = sorted(aws.pushes());
    assert_eq!(pushes.len(), 2, "{pushes:?}");
    assert_eq!(
        pushes[0].0,
        format!("apps/{APP}/users/u1/conversations/u2/clientupdated")
    );
    assert_eq!(pushes[0].1["timelineOf"], "u1");
    assert_eq!(pushes[0].1["conversWith"], "u2");
    assert!(pushes[0].1["peer_read_at"].is_u64());
    assert_eq!(
        pushes[1].0,
        format!("apps/{APP}/users/u2/conversations/u1/clientupdated")
    );
    assert_eq!(pushes[1].1["is_new"], false);
    assert_eq!(pushes[1].1["unread_count"], 0);
    assert!(pushes[1].1["read_at"].is_u64());

    // An archive: out of the active list, into the archived one, in that order.
    let archive = rule_event(
        &format!("apps/{APP}/users/u2/conversations/u1/archive"),
        OWN_TREE,
        b"",
        "3b6f3c7e-1d2a-4b5c-8d9e-0f1a2b3c4d5e",
    );
    rule::handle(deps, &archive).await.unwrap();
    let pushes = aws.pushes();
    let topics: Vec<&str> = pushes.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        [
            format!("apps/{APP}/users/u2/conversations/u1/clientdeleted"),
            format!("apps/{APP}/users/u2/archived_conversations/u1/clientadded"),
        ]
    );
    assert_eq!(pushes[1].1["archived"], true);
    assert!(
        deps.store
            .get_conversation(APP, "u2", "u1")
            .await
            .unwrap()
            .unwrap()
            .archived
    );

    // Presence: an event for the other consumers, nothing stored, nothing pushed.
    let presence = rule_event(
        &format!("apps/{APP}/users/u2/presence/client-1"),
        OWN_TREE,
        br#"{"connected": true}"#,
        "4b6f3c7e-1d2a-4b5c-8d9e-0f1a2b3c4d5e",
    );
    rule::handle(deps, &presence).await.unwrap();
    assert_eq!(aws.pushes(), []);
    let events = aws.events().await;
    let change = events
        .iter()
        .find(|e| e.event_type() == EventType::PresenceChange)
        .unwrap_or_else(|| panic!("no presence-change in {events:?}"));
    assert_eq!(change.recipient_id, "u2");
}

#[tokio::test]
async fn refused_publishes_change_nothing_and_outages_are_retried() {
    let aws = setup().await;
    let deps = &aws.deps;
    let topic = format!("apps/{APP}/outgoing/users/u1/messages/u2/outgoing");
    let body = br#"{"text": "x", "sender_fullname": "U1", "recipient_fullname": "U2"}"#;
    // A topic that is not the publisher's own (no rule hands one over, but the function does
    // not rely on it), a payload that is not a JSON object, a send that fails validation, an
    // event that is not a rule's: each is dropped and answered Ok (no retry).
    let mut someone_else = rule_event(
        &topic,
        OUTGOING,
        body,
        "5b6f3c7e-1d2a-4b5c-8d9e-0f1a2b3c4d5e",
    );
    someone_else["user_id"] = json!("u3");
    let not_json = rule_event(
        &topic,
        OUTGOING,
        b"hello",
        "6b6f3c7e-1d2a-4b5c-8d9e-0f1a2b3c4d5e",
    );
    let invalid = rule_event(
        &topic,
        OUTGOING,
        br#"{"text": "x"}"#,
        "7b6f3c7e-1d2a-4b5c-8d9e-0f1a2b3c4d5e",
    );
    let mut not_base64 = rule_event(
        &topic,
        OUTGOING,
        body,
        "8b6f3c7e-1d2a-4b5c-8d9e-0f1a2b3c4d5e",
    );
    not_base64["payload"] = json!("%%%");
    for event in [
        someone_else,
        not_json,
        invalid,
        not_base64,
        json!({"foo": 1}),
        json!("x"),
    ] {
        rule::handle(deps, &event).await.unwrap();
    }
    aws.deliver().await;
    assert_eq!(aws.pushes(), []);
    assert!(
        deps.store
            .get_conversation(APP, "u1", "u2")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        deps.store
            .get_conversation(APP, "u3", "u2")
            .await
            .unwrap()
            .is_none()
    );

    // A store that cannot be reached fails the invocation: Lambda retries it, then the
    // dead-letter queue keeps it.
    let broken = Deps {
        store: Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&common::aws_config().await),
            "no-such-table",
        )),
        ..aws.deps.clone()
    };
    let send = rule_event(
        &topic,
        OUTGOING,
        body,
        "9b6f3c7e-1d2a-4b5c-8d9e-0f1a2b3c4d5e",
    );
    assert!(rule::handle(&broken, &send).await.is_err());
}

/// Chat21's will (`{"disconnected":true}`) is retained, on a topic named by the client's random
/// id: IoT Core would keep one per unclean disconnect for years. A `disconnected` clears its
/// topic's retained message (an empty retained publish there); a `connected` clears nothing;
/// the clear, handed back by the presence rule (an empty payload), does nothing, so nothing
/// loops; a broker outage fails the invocation before the event, and its retry does both.
#[tokio::test]
async fn a_disconnect_clears_its_retained_will() {
    let aws = setup().await;
    let deps = &aws.deps;
    let topic = format!("apps/{APP}/users/u2/presence/5f2c9a1e-3b7d-4c6e-9f0a-1d2e3f4a5b6c");
    let presence_of = |events: &[Event]| -> Vec<(String, String)> {
        events
            .iter()
            .filter(|e| e.event_type() == EventType::PresenceChange)
            .map(|e| {
                let p = e.presence.as_ref().expect("a presence-change's fields");
                (p.user_id.to_string(), format!("{:?}", p.presence))
            })
            .collect()
    };

    let connected = rule_event(
        &topic,
        OWN_TREE,
        br#"{"connected": true}"#,
        "4c6f3c7e-1d2a-4b5c-8d9e-0f1a2b3c4d5e",
    );
    rule::handle(deps, &connected).await.unwrap();
    assert_eq!(
        aws.publishes(),
        (vec![], vec![]),
        "a connect clears nothing"
    );
    assert_eq!(
        presence_of(&aws.events().await),
        [("u2".to_string(), "Online".to_string())]
    );

    let will = rule_event(
        &topic,
        OWN_TREE,
        br#"{"disconnected":true}"#,
        "5c6f3c7e-1d2a-4b5c-8d9e-0f1a2b3c4d5e",
    );
    rule::handle(deps, &will).await.unwrap();
    assert_eq!(aws.publishes(), (vec![], vec![topic.clone()]));
    assert_eq!(
        presence_of(&aws.events().await),
        [("u2".to_string(), "Offline".to_string())]
    );

    // The clear itself reaches the presence rule: an empty payload, nothing to do.
    let clear = rule_event(
        &topic,
        OWN_TREE,
        b"",
        "6c6f3c7e-1d2a-4b5c-8d9e-0f1a2b3c4d5e",
    );
    rule::handle(deps, &clear).await.unwrap();
    assert_eq!(
        aws.publishes(),
        (vec![], vec![]),
        "the clear came back: a loop"
    );
    assert_eq!(presence_of(&aws.events().await), []);

    // The broker is down: the invocation fails (Lambda retries it) and no event went out;
    // the retry clears (again: nothing changes if it had) and sends the event.
    aws.iot.fail(true);
    assert!(rule::handle(deps, &will).await.is_err());
    assert_eq!(presence_of(&aws.events().await), []);
    aws.iot.fail(false);
    rule::handle(deps, &will).await.unwrap();
    assert_eq!(aws.publishes(), (vec![], vec![topic.clone()]));
    assert_eq!(
        presence_of(&aws.events().await),
        [("u2".to_string(), "Offline".to_string())]
    );

    // Only the publisher's own topic is ever cleared: a will naming another user's presence
    // topic is refused before anything is published.
    let mut forged = will.clone();
    forged["user_id"] = json!("u3");
    rule::handle(deps, &forged).await.unwrap();
    assert_eq!(aws.publishes(), (vec![], vec![]));
    assert_eq!(presence_of(&aws.events().await), []);
}

/// The deliver step's writes come before its publishes: a broker outage fails the stream
/// record, Lambda hands it over again, the writes change nothing the second time and the
/// pushes go out (at least once).
#[tokio::test]
async fn a_failed_publish_fails_the_record_and_its_retry_doubles_nothing() {
    let aws = setup().await;
    let api = api_on(aws.deps.clone());
    let body = br#"{"recipient_id": "u2", "recipient_fullname": "U2", "sender_fullname": "U1", "text": "hi"}"#;
    let (status, _) = call(
        &api,
        "POST",
        &format!("/api/{APP}/messages"),
        Some(&token("u1")),
        Some(body),
    )
    .await;
    assert_eq!(status, 200);
    // The message's record, and the writes deliver skips (the sender's conversation row).
    let event = aws.stream.lambda_event().await;
    aws.iot.fail(true);
    let response = handle_stream(&aws.deps, event.clone()).await;
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "the outage must fail the record"
    );
    let row = aws
        .deps
        .store
        .get_conversation(APP, "u2", "u1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.unread_count, 1);
    aws.iot.fail(false);
    let response = handle_stream(&aws.deps, event).await;
    assert!(response.batch_item_failures.is_empty());
    let row = aws
        .deps
        .store
        .get_conversation(APP, "u2", "u1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.unread_count, 1,
        "the redelivery counted the message twice"
    );
    assert_eq!(aws.pushes().len(), 2);
    // Its own writes: the retry wrote nothing new to the stream but conversation updates.
    aws.deliver().await;
}

/// IoT Core messages per operation (billed per publish, per 5 KB of payload): the figures of
/// docs/realtime.md's cost table.
#[tokio::test]
async fn iot_publishes_per_operation() {
    let aws = setup().await;
    let api = api_on(aws.deps.clone());
    let post = |path: String, user: &'static str, body: Value| {
        let api = &api;
        async move {
            let (status, answer) = call(
                api,
                "POST",
                &path,
                Some(&token(user)),
                Some(body.to_string().as_bytes()),
            )
            .await;
            assert!(status == 200 || status == 201, "{path}: {answer}");
        }
    };
    let count = |aws: &Aws| aws.pushes().len();

    post(format!("/api/{APP}/messages"), "u1", json!({"recipient_id": "u2", "recipient_fullname": "U2", "sender_fullname": "U1", "text": "hi"})).await;
    aws.deliver().await;
    let direct = count(&aws);

    const N: usize = 10;
    let members: serde_json::Map<String, Value> =
        (2..=N).map(|i| (format!("u{i}"), json!(1))).collect();
    post(
        format!("/api/{APP}/groups"),
        "u1",
        json!({"group_id": "group-cost", "group_name": "Cost", "group_members": members}),
    )
    .await;
    aws.deliver().await;
    let created = count(&aws);

    post(format!("/api/{APP}/messages"), "u1", json!({"recipient_id": "group-cost", "recipient_fullname": "Cost", "sender_fullname": "U1", "text": "to all"})).await;
    aws.deliver().await;
    let group_message = count(&aws);

    let (status, _) = call(
        &api,
        "PUT",
        &format!("/api/{APP}/groups/group-cost"),
        Some(&token("u1")),
        Some(br#"{"group_name": "Renamed"}"#),
    )
    .await;
    assert_eq!(status, 200);
    aws.deliver().await;
    let renamed = count(&aws);

    post(
        format!("/api/{APP}/groups/group-cost/members"),
        "u1",
        json!({"member_id": "u99"}),
    )
    .await;
    aws.deliver().await;
    let joined = count(&aws);

    let (status, _) = call(
        &api,
        "DELETE",
        &format!("/api/{APP}/groups/group-cost/members/u99"),
        Some(&token("u1")),
        None,
    )
    .await;
    assert_eq!(status, 200);
    aws.deliver().await;
    let left = count(&aws);

    println!(
        "IoT publishes: direct message {direct}; group of {N}: created {created}, message {group_message}, renamed {renamed}, join (+1, history of 2) {joined}, leave {left}"
    );
    assert_eq!(direct, 2, "the recipient's copy and the sender's");
    assert_eq!(group_message, N, "one per member, the sender included");
    // A creation's system messages (GROUP_CREATED, and MEMBER_JOINED_GROUP per member) to
    // every member, and nothing on `groups/` (REALTIME.md): N (N + 1), quadratic in the size.
    assert_eq!(created, N * (N + 1));
    // A rename has no system message: the group to every member.
    assert_eq!(renamed, N);
    // The joiner: the system message and the group to all N + 1, and the history before the
    // join (the creation's N + 1 system messages and one message) to the joiner.
    assert_eq!(joined, 2 * (N + 1) + (N + 2));
    // The leaver is told too: system message and group to the N + 1 before.
    assert_eq!(left, 2 * (N + 1));
}
