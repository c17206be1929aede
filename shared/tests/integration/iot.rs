//! Real time on AWS, offline: the `mqtt-inbound` path (topic-rule events, as template.yaml's
//! SQL shapes them) against moto's DynamoDB and SNS, with IoT Core's data plane replaced by a
//! recording endpoint on loopback (moto keeps its publishes in-process): every client publish
//! of REALTIME.md's table runs its operation and the server publishes its outbound table. Also
//! the deliver step with a failing broker, and the IoT publishes each operation costs.
//!
//! The IoT policy evaluator the authorizer's policies are checked with lives here too
//! (`policy_allows`); `events_files.rs` uses it on the sample authorizer events.

use std::sync::Arc;

use base64::Engine;
use chat21::adapters::dynamo::DynamoStore;
use chat21::adapters::sns::SnsEvents;
use chat21::adapters::system::{SystemClock, UuidIds};
use chat21::events::{Event, EventType};
use chat21::lambda::handle_stream;
use chat21::ops::{Deps, Settings};
use chat21::realtime::{aws, rule};
use serde_json::{Value, json};

use crate::common::{self, APP, Recorder, StreamReader, api_on, call, token};

// ---------------------------------------------------------------- the IoT policy evaluator

/// IoT policy matching of one resource pattern: `*` any run of characters (`/` included), `?`
/// exactly one, and the special-character variables `${*}`, `${?}`, `${$}` the literal
/// characters. Any other `${…}` is a policy variable, which the authorizer never emits: it
/// matches nothing here, so a stray one fails the test.
pub fn iot_pattern_matches(pattern: &str, resource: &str) -> bool {
    #[derive(Debug, PartialEq)]
    enum Token {
        Any,
        One,
        Char(char),
        Variable,
    }
    let mut tokens = Vec::new();
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        if let Some(var) = rest.strip_prefix("${") {
            let end = var.find('}').map_or(var.len(), |e| e + 1);
            tokens.push(match &var[..end] {
                "*}" => Token::Char('*'),
                "?}" => Token::Char('?'),
                "$}" => Token::Char('$'),
                _ => Token::Variable,
            });
            rest = &var[end..];
            continue;
        }
        tokens.push(match c {
            '*' => Token::Any,
            '?' => Token::One,
            c => Token::Char(c),
        });
        rest = &rest[c.len_utf8()..];
    }
    let text: Vec<char> = resource.chars().collect();
    // matched[j]: the tokens so far match the first j characters.
    let mut matched = vec![false; text.len() + 1];
    matched[0] = true;
    for token in &tokens {
        let mut next = vec![false; text.len() + 1];
        for j in 0..=text.len() {
            match token {
                Token::Any => next[j] = matched[j] || (j > 0 && next[j - 1]),
                Token::One => next[j] = j > 0 && matched[j - 1],
                Token::Char(c) => next[j] = j > 0 && matched[j - 1] && text[j - 1] == *c,
                Token::Variable => next[j] = false,
            }
        }
        matched = next;
    }
    matched[text.len()]
}

fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether the policy documents of an authorizer response allow `action` on `resource`
/// (Allow statements only; there is no Deny to weigh).
pub fn policy_allows(documents: &[Value], action: &str, resource: &str) -> bool {
    documents
        .iter()
        .flat_map(|d| d["Statement"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["Effect"] == "Allow")
        .filter(|s| strings(&s["Action"]).contains(&action))
        .any(|s| {
            strings(&s["Resource"])
                .iter()
                .any(|p| iot_pattern_matches(p, resource))
        })
}

/// REALTIME.md's table, checked on the policy of a connection of `me` in `app` with client
/// id `client`: what it may do, and a sample of what it may not.
pub fn check_policy_against_realtime_table(
    documents: &[Value],
    arn: &str,
    app: &str,
    me: &str,
    client: &str,
) {
    let topic = |t: &str| format!("{arn}topic/{t}");
    let filter = |t: &str| format!("{arn}topicfilter/{t}");
    let tree = format!("apps/{app}/users/{me}");
    let other_app = format!("{app}x");
    let allowed = [
        ("iot:Connect", format!("{arn}client/{client}")),
        ("iot:Subscribe", filter(&format!("{tree}/#"))),
        (
            "iot:Subscribe",
            filter(&format!("{tree}/messages/+/clientadded")),
        ),
        (
            "iot:Subscribe",
            filter(&format!("{tree}/groups/g1/clientupdated")),
        ),
        (
            "iot:Receive",
            topic(&format!("{tree}/messages/u2/clientadded")),
        ),
        (
            "iot:Receive",
            topic(&format!("{tree}/messages/u2/m1/clientupdated")),
        ),
        (
            "iot:Receive",
            topic(&format!("{tree}/conversations/u2/clientupdated")),
        ),
        (
            "iot:Receive",
            topic(&format!("{tree}/archived_conversations/u2/clientadded")),
        ),
        (
            "iot:Receive",
            topic(&format!("{tree}/groups/g1/clientupdated")),
        ),
        ("iot:Receive", topic(&format!("{tree}/presence/c2"))),
        (
            "iot:Publish",
            topic(&format!(
                "apps/{app}/outgoing/users/{me}/messages/u2/outgoing"
            )),
        ),
        (
            "iot:Publish",
            topic(&format!("{tree}/messages/u2/m1/update")),
        ),
        (
            "iot:Publish",
            topic(&format!("{tree}/conversations/u2/update")),
        ),
        (
            "iot:Publish",
            topic(&format!("{tree}/conversations/u2/archive")),
        ),
        ("iot:Publish", topic(&format!("{tree}/presence/{client}"))),
        (
            "iot:RetainPublish",
            topic(&format!("{tree}/presence/{client}")),
        ),
    ];
    for (action, resource) in &allowed {
        assert!(
            policy_allows(documents, action, resource),
            "{me} may not {action} {resource}"
        );
    }
    let denied = [
        ("iot:Connect", format!("{arn}client/{client}x")),
        ("iot:Subscribe", filter("#")),
        ("iot:Subscribe", filter("apps/#")),
        ("iot:Subscribe", filter(&format!("apps/{app}/users/#"))),
        ("iot:Subscribe", filter(&format!("apps/{app}/users/+/#"))),
        (
            "iot:Subscribe",
            filter(&format!("apps/{app}/users/{me}x/#")),
        ),
        (
            "iot:Subscribe",
            filter(&format!("apps/{other_app}/users/{me}/#")),
        ),
        (
            "iot:Subscribe",
            filter(&format!("apps/{app}/outgoing/users/{me}/#")),
        ),
        (
            "iot:Receive",
            topic(&format!("apps/{app}/users/u2/messages/{me}/clientadded")),
        ),
        (
            "iot:Receive",
            topic(&format!(
                "apps/{other_app}/users/{me}/messages/u2/clientadded"
            )),
        ),
        // Server events, even into one's own tree.
        (
            "iot:Publish",
            topic(&format!("{tree}/messages/u2/clientadded")),
        ),
        (
            "iot:Publish",
            topic(&format!("{tree}/messages/u2/m1/clientupdated")),
        ),
        (
            "iot:Publish",
            topic(&format!("{tree}/conversations/u2/clientupdated")),
        ),
        (
            "iot:Publish",
            topic(&format!("{tree}/conversations/u2/clientdeleted")),
        ),
        (
            "iot:Publish",
            topic(&format!("{tree}/archived_conversations/u2/clientadded")),
        ),
        (
            "iot:Publish",
            topic(&format!("{tree}/groups/g1/clientupdated")),
        ),
        // Someone else's tree, another tenant.
        (
            "iot:Publish",
            topic(&format!(
                "apps/{app}/outgoing/users/u2/messages/{me}/outgoing"
            )),
        ),
        (
            "iot:Publish",
            topic(&format!("apps/{app}/users/u2/conversations/{me}/update")),
        ),
        (
            "iot:Publish",
            topic(&format!("apps/{app}/users/u2/presence/c2")),
        ),
        (
            "iot:Publish",
            topic(&format!(
                "apps/{other_app}/users/{me}/conversations/u2/archive"
            )),
        ),
        // Retained messages elsewhere than presence.
        (
            "iot:RetainPublish",
            topic(&format!("{tree}/conversations/u2/update")),
        ),
        (
            "iot:RetainPublish",
            topic(&format!("apps/{app}/users/u2/presence/c2")),
        ),
    ];
    for (action, resource) in &denied {
        assert!(
            !policy_allows(documents, action, resource),
            "{me} may {action} {resource}"
        );
    }
}

#[test]
fn the_evaluator_knows_iot_wildcards() {
    assert!(iot_pattern_matches("a/*", "a/b/c"));
    assert!(iot_pattern_matches("a/*", "a/"));
    assert!(!iot_pattern_matches("a/*", "a"));
    assert!(iot_pattern_matches("a/?/c", "a/b/c"));
    assert!(!iot_pattern_matches("a/?/c", "a/bb/c"));
    assert!(iot_pattern_matches("a/${*}", "a/*"));
    assert!(!iot_pattern_matches("a/${*}", "a/b"));
    assert!(iot_pattern_matches("a${$}b${?}", "a$b?"));
    assert!(!iot_pattern_matches("a/${iot:ClientId}", "a/x"));
    assert!(iot_pattern_matches("a/#", "a/#"));
    assert!(!iot_pattern_matches("a/+", "a/b"));
}

/// The authorizer's policies, through the function's own entry point, for ids that stretch
/// the policy: the longest ids, and ids made of the characters a policy must escape.
#[test]
fn authorizer_policies_grant_exactly_the_table_for_any_id() {
    let verifier = chat21::auth::JwtVerifier::hs256(common::KEY).unwrap();
    let function = "arn:aws:lambda:eu-west-1:123456789012:function:chat21-authorizer";
    let arn = "arn:aws:iot:eu-west-1:123456789012:";
    let now = jsonwebtoken::get_current_timestamp();
    for (app, me, client) in [
        (
            "tilechat".to_string(),
            "user-1".to_string(),
            "c-1".to_string(),
        ),
        ("a".repeat(128), "u".repeat(128), "c".repeat(128)),
        ("$app{x}".into(), "${iot:ClientId}".into(), "*".into()),
        ("app".into(), "jane@example$ü".into(), "?client*".into()),
    ] {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({"sub": me, "app_id": app, "exp": now + 7_200}),
            &jsonwebtoken::EncodingKey::from_secret(common::KEY),
        )
        .unwrap();
        let password = base64::engine::general_purpose::STANDARD.encode(&token);
        let event = json!({"protocols": ["tls", "mqtt"], "protocolData": {"mqtt": {
            "username": "JWT", "password": password, "clientId": client}}});
        let response = aws::authorizer_response(&verifier, function, now, &event);
        assert_eq!(response["isAuthenticated"], true, "{me}: {response}");
        let principal = response["principalId"].as_str().unwrap();
        assert!((1..=128).contains(&principal.len()));
        assert!(principal.chars().all(|c| c.is_ascii_alphanumeric()));
        let documents = response["policyDocuments"].as_array().unwrap();
        let sizes: Vec<usize> = documents.iter().map(|d| d.to_string().len()).collect();
        println!(
            "policy of {} + {} chars of ids: {sizes:?} characters",
            app.len(),
            me.len()
        );
        assert!(documents.len() <= 10 && sizes.iter().all(|s| *s <= 2_048));
        let disconnect = response["disconnectAfterInSeconds"].as_u64().unwrap();
        assert!((300..=7_200).contains(&disconnect));
        check_policy_against_realtime_table(documents, arn, &app, &me, &client);
    }
}

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
    let realtime = aws::realtime_from_lookup(
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

    /// What the IoT data plane received: (topic, payload), in order, and only QoS 1 publishes.
    fn pushes(&self) -> Vec<(String, Value)> {
        let requests = self.iot.take();
        for r in &requests {
            assert_eq!(r.method, "POST", "{r:?}");
            assert_eq!(r.query, "qos=1", "{r:?}");
        }
        requests.iter().filter_map(|r| r.as_push()).collect()
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
/// the README's cost table.
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
