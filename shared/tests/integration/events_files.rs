//! Every sample event in `events/` replayed through its function's handler, in the scenario
//! order of `events/README.md`, against one embedded store: each must succeed, and the state
//! it leaves behind is checked (`check`; how each kind of event is handed over: `replay`).
//! Also: every function has an event, every event a function.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{RecordingClient, stream_event};
use aws_lambda_events::event::dynamodb;
use chat21::adapters::dynamo::stream::{image_of, streamed_of};
use chat21::adapters::embedded::{EmbeddedEvents, MemoryRetries, RecordingRealtime};
use chat21::adapters::sqlite::SqliteStore;
use chat21::adapters::system::{SystemClock, UuidIds};
use chat21::auth::JwtVerifier;
use chat21::entry::http::Api;
use chat21::entry::{authorizer, http, rule, stream, webhooks};
use chat21::events::PresenceState;
use chat21::lambda_http::{self, Body, RequestExt};
use chat21::model::EventType;
use chat21::model::{Message, status};
use chat21::ops::webhooks::{Secret, WebhookConfig, Webhooks};
use chat21::ops::{Deps, Settings, conversations};
use chat21::ports::{ConversationStore, GroupStore, PageRequest, Streamed, WebhookStore};
use chat21::routes::{self, Match, ROUTES, Route};
use serde_json::{Value, json};

mod replay;

use replay::{Harness, replay_authorizer, replay_http, replay_queue, replay_stream};

/// The key the sample tokens are signed with (events/README.md).
const KEY: &[u8] = b"chat21-events-example-key";
const APP: &str = "default";
const GROUP: &str = "group-events-demo";
const MESSAGE_ID: &str = "events-demo-message-1";
/// The functions fed by the table's stream and by a queue instead of the HTTP API.
const DELIVER: &str = "deliver";
const WEBHOOKS: &str = "webhooks";
/// The tenant webhook `put-webhook.json` registers, and its secret.
const WEBHOOK_URL: &str = "https://hooks.example.com/chat21";
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// IoT Core's custom authorizer (events: an MQTT CONNECT), and the function its topic rules
/// invoke (events: a client's publish, as the rules' SQL shapes it).
const AUTHORIZER: &str = "authorizer";
const MQTT_INBOUND: &str = "mqtt-inbound";
/// The authorizer function's ARN in the replay (its policies name this region and account).
const AUTHORIZER_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:chat21-authorizer";

/// Replay order (file stems). Every file in `events/` must be listed here, and only those.
const ORDER: &[&str] = &[
    "banner",
    "create-group",
    "send-message",
    "deliver",
    "list-conversations",
    "get-conversation",
    "read-conversation",
    "conversation-messages",
    "authorizer",
    "authorizer-expired",
    "authorizer-forged",
    "authorizer-wrong-algorithm",
    "authorizer-mapped-id",
    "mqtt-inbound",
    "mqtt-inbound-receipt",
    "mqtt-inbound-read",
    "mqtt-inbound-archive",
    "mqtt-inbound-presence",
    "mqtt-inbound-will",
    "get-group",
    "update-group",
    "update-group-attributes",
    "join-group",
    "set-members",
    "leave-group",
    "delete-conversation",
    "list-archived-conversations",
    "list-archived-conversations-alias",
    "get-conversation-archived",
    "put-webhook",
    "get-webhook",
    "list-webhooks",
    "webhooks",
    "delete-webhook",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The function packages: every directory under `functions/` with a `Cargo.toml`.
fn functions() -> BTreeSet<String> {
    let dir = workspace().join("functions");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("Cargo.toml").is_file())
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// `events/*.json` by file stem.
fn event_files() -> BTreeMap<String, PathBuf> {
    let dir = workspace().join("events");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            (
                path.file_stem().unwrap().to_string_lossy().into_owned(),
                path,
            )
        })
        .collect()
}

/// The function an events file is for: its stem is the function's name, or the name followed
/// by `-<variant>` (the longest matching name wins, so `update-group-attributes` is not a
/// variant of `update-group`).
fn function_of<'a>(stem: &str, functions: &'a BTreeSet<String>) -> Option<&'a str> {
    functions
        .iter()
        .filter(|f| {
            stem == f.as_str()
                || stem
                    .strip_prefix(f.as_str())
                    .is_some_and(|rest| rest.starts_with('-'))
        })
        .max_by_key(|f| f.len())
        .map(String::as_str)
}

/// The route an HTTP function serves (aliases share one route).
fn route_of(function: &str) -> Route {
    let routes: BTreeSet<String> = ROUTES
        .iter()
        .filter(|def| def.route.function() == function)
        .map(|def| format!("{:?}", def.route))
        .collect();
    assert_eq!(
        routes.len(),
        1,
        "function {function} should serve exactly one route of ROUTES, found {routes:?}"
    );
    ROUTES
        .iter()
        .find(|def| def.route.function() == function)
        .map(|def| def.route)
        .unwrap()
}

#[test]
fn every_function_has_an_event_and_every_event_a_function() {
    let functions = functions();
    assert!(
        functions.len() >= 2,
        "no function packages found under functions/"
    );
    let files = event_files();
    for stem in files.keys() {
        assert!(
            function_of(stem, &functions).is_some(),
            "events/{stem}.json is not for any function under functions/ (name it <function>.json or <function>-<variant>.json)"
        );
    }
    for function in &functions {
        assert!(
            files
                .keys()
                .any(|stem| function_of(stem, &functions) == Some(function.as_str())),
            "function {function} has no sample event: add events/{function}.json"
        );
    }
    let listed: BTreeSet<&str> = ORDER.iter().copied().collect();
    assert_eq!(listed.len(), ORDER.len(), "ORDER lists a file twice");
    let present: BTreeSet<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        present, listed,
        "the files in events/ and the replay ORDER of this test differ: list new files in ORDER"
    );
    // Every HTTP function's events name one of its routes.
    for (stem, path) in &files {
        let function = function_of(stem, &functions).unwrap();
        if [DELIVER, WEBHOOKS, AUTHORIZER, MQTT_INBOUND].contains(&function) {
            continue;
        }
        let event: Value = serde_json::from_str(&read(path)).unwrap();
        let route_key = event["routeKey"].as_str().unwrap_or_default();
        assert!(
            ROUTES
                .iter()
                .any(|def| format!("{} {}", def.method, def.path) == route_key
                    && def.route.function() == function),
            "events/{stem}.json: routeKey {route_key:?} is not a route of {function} in ROUTES"
        );
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A system message's `messagelabel` key and the member it is about (empty if none).
fn label(message: &Message) -> (String, String) {
    let label = message
        .attribute("messagelabel")
        .cloned()
        .unwrap_or_default();
    (
        label["key"].as_str().unwrap_or_default().to_string(),
        label["parameters"]["member_id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn has_label(timeline: &[Message], key: &str, member: &str) -> bool {
    timeline
        .iter()
        .any(|m| m.sender == "system" && label(m) == (key.to_string(), member.to_string()))
}

fn keys_of(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|c| c["key"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// What each step must have done, beyond answering 2xx.
async fn check(h: &Harness, stem: &str, body: &Value) {
    match stem {
        "create-group" => {
            assert_eq!(body["group"]["uid"], GROUP);
            assert_eq!(body["group"]["owner"], "user-1");
            assert_eq!(
                body["group"]["members"],
                json!({ "user-1": 1, "user-2": 1 })
            );
        }
        "send-message" => {
            assert_eq!(body["message"]["message_id"], MESSAGE_ID);
            assert_eq!(body["message"]["sender"], "user-1");
            assert_eq!(body["message"]["status"], status::SENT);
        }
        "deliver" => {
            let copies = h.timeline("user-2", "user-1").await;
            let copy = copies
                .iter()
                .find(|m| m.message_id == MESSAGE_ID)
                .expect("user-2 has no copy of the message");
            assert_eq!(copy.status, status::DELIVERED);
            assert_eq!(copy.timeline_of, "user-2");
            let conversation = h
                .store
                .get_conversation(APP, "user-2", "user-1")
                .await
                .unwrap()
                .expect("user-2 has no conversation with user-1");
            assert!(conversation.is_new);
            assert_eq!(conversation.unread_count, 1);
        }
        "list-conversations" => {
            let keys = keys_of(&body["result"]);
            assert!(keys.contains(&"user-2".to_string()), "{keys:?}");
            assert!(keys.contains(&GROUP.to_string()), "{keys:?}");
        }
        "get-conversation" => {
            let result = body["result"].as_array().unwrap();
            assert_eq!(result.len(), 1, "{body}");
            assert_eq!(result[0]["key"], "user-2");
            assert_eq!(
                result[0]["last_message_text"],
                "Hello from the events folder"
            );
            assert_eq!(result[0]["archived"], false);
        }
        "read-conversation" => {
            let conversation = h
                .store
                .get_conversation(APP, "user-2", "user-1")
                .await
                .unwrap()
                .unwrap();
            assert!(!conversation.is_new);
            assert_eq!(conversation.unread_count, 0);
        }
        "conversation-messages" => {
            let result = body["result"].as_array().unwrap();
            assert_eq!(result.len(), 1, "{body}");
            assert_eq!(result[0]["message_id"], MESSAGE_ID);
            // user-2 read it: user-1 sees the return receipt.
            assert_eq!(result[0]["status"], status::RETURN_RECEIPT);
        }
        "mqtt-inbound" => {
            let copies = h.timeline("user-1", "user-2").await;
            let sent = copies
                .iter()
                .find(|m| m.text == "Hello back, over MQTT")
                .expect("user-1 did not get the MQTT send");
            assert_eq!(sent.sender, "user-2");
            // Its id, made from the rule's timestamp and UUID, is the one the receipt names.
            let publish: rule::RulePublish = serde_json::from_value(body.clone()).unwrap();
            assert_eq!(
                Some(sent.message_id.clone()),
                publish.message_id().map(String::from)
            );
            let receipt = read(&workspace().join("events/mqtt-inbound-receipt.json"));
            assert!(
                receipt.contains(&format!("/messages/user-2/{}/update", sent.message_id)),
                "events/mqtt-inbound-receipt.json must name {}",
                sent.message_id
            );
        }
        "mqtt-inbound-receipt" => {
            let copies = h.read_timeline("user-2", "user-1").await;
            let sent = copies
                .iter()
                .find(|m| m.text == "Hello back, over MQTT")
                .unwrap();
            assert_eq!(
                sent.status,
                status::RETURN_RECEIPT,
                "the sender sees the receipt"
            );
        }
        "mqtt-inbound-read" => {
            let conversation = h
                .store
                .get_conversation(APP, "user-1", "user-2")
                .await
                .unwrap()
                .unwrap();
            assert!(!conversation.is_new);
            assert_eq!(conversation.unread_count, 0);
        }
        "mqtt-inbound-archive" => {
            let archived = h
                .store
                .get_conversation(APP, "user-2", "user-1")
                .await
                .unwrap()
                .unwrap();
            assert!(archived.archived);
        }
        "mqtt-inbound-presence" | "mqtt-inbound-will" => {
            let online = stem == "mqtt-inbound-presence";
            let changes: Vec<PresenceState> = h
                .events
                .published()
                .iter()
                .filter(|e| e.event_type() == EventType::PresenceChange)
                .filter(|e| e.recipient_id == "user-2")
                .filter_map(|e| e.presence.as_ref().map(|p| p.presence))
                .collect();
            let expected = if online {
                vec![PresenceState::Online]
            } else {
                vec![PresenceState::Online, PresenceState::Offline]
            };
            assert_eq!(changes, expected, "presence-change events");
            // A connect clears nothing; the will clears itself (retained on its topic).
            let topic = body["topic"].as_str().unwrap().to_string();
            let cleared = h.realtime.take_cleared();
            assert_eq!(cleared, if online { vec![] } else { vec![topic] });
        }
        "get-group" => {
            assert_eq!(body["result"]["uid"], GROUP);
            assert_eq!(body["result"]["name"], "Events demo");
            assert_eq!(
                body["result"]["members"],
                json!({ "user-1": 1, "user-2": 1 })
            );
        }
        "update-group" => {
            let head = h.store.group_head(APP, GROUP).await.unwrap().unwrap();
            assert_eq!(head.meta.info.name, "Events demo (renamed)");
        }
        "update-group-attributes" => {
            let head = h.store.group_head(APP, GROUP).await.unwrap().unwrap();
            assert_eq!(head.meta.info.attributes["topic"], "sample events");
            assert_eq!(head.meta.info.attributes["allow_self_join"], false);
        }
        "join-group" => {
            assert_eq!(h.members().await, ["user-1", "user-2", "user-3"]);
        }
        "set-members" => {
            assert_eq!(h.members().await, ["user-1", "user-3", "user-4"]);
        }
        "leave-group" => {
            assert_eq!(h.members().await, ["user-1", "user-4"]);
        }
        "delete-conversation" => {
            let archived = h
                .store
                .get_conversation(APP, "user-1", "user-2")
                .await
                .unwrap()
                .unwrap();
            assert!(archived.archived);
            assert!(
                h.events
                    .published()
                    .iter()
                    .any(|e| e.event_type() == EventType::ConversationArchived
                        && e.recipient_id == "user-1"),
                "no conversation-archived event"
            );
        }
        "list-archived-conversations" | "list-archived-conversations-alias" => {
            let result = body["result"].as_array().unwrap();
            assert_eq!(keys_of(&body["result"]), ["user-2"], "{body}");
            assert_eq!(result[0]["archived"], true);
        }
        "put-webhook" => {
            assert_eq!(body["webhook"]["id"], "tiledesk");
            assert_eq!(body["webhook"]["url"], WEBHOOK_URL);
            assert_eq!(body["webhook"]["secret"], WEBHOOK_SECRET);
            assert_eq!(
                body["webhook"]["events"],
                json!(["message-sent", "message-return-receipt"])
            );
        }
        "get-webhook" => {
            assert_eq!(body["result"]["id"], "tiledesk");
        }
        "list-webhooks" => {
            assert_eq!(body["result"].as_array().map(Vec::len), Some(1), "{body}");
        }
        "webhooks" => {
            let posted = h.posted.posted.lock().unwrap().clone();
            assert_eq!(posted.len(), 1, "{posted:?}");
            let post = &posted[0];
            assert_eq!(post.url, WEBHOOK_URL);
            let event: Value = serde_json::from_str(&post.body).unwrap();
            assert_eq!(event["event_type"], "message-sent");
            assert_eq!(event["message_id"], MESSAGE_ID);
            let secret = Secret::parse("secret", WEBHOOK_SECRET).unwrap();
            let id = post.header("webhook-id").unwrap();
            let timestamp: u64 = post.header("webhook-timestamp").unwrap().parse().unwrap();
            let signature = post.header("webhook-signature").unwrap();
            assert!(secret.verify(id, timestamp, post.body.as_bytes(), signature));
        }
        "delete-webhook" => {
            assert!(h.store.list_webhooks(APP).await.unwrap().is_empty());
        }
        "get-conversation-archived" => {
            let result = body["result"].as_array().unwrap();
            assert_eq!(result.len(), 1, "{body}");
            assert_eq!(result[0]["key"], "user-2");
            assert_eq!(result[0]["archived"], true);
        }
        _ => {}
    }
}

#[tokio::test]
async fn event_files_replay_in_order_against_one_store() {
    let functions = functions();
    let files = event_files();
    let mut h = Harness::new();
    for stem in ORDER {
        let path = files
            .get(*stem)
            .unwrap_or_else(|| panic!("events/{stem}.json is missing"));
        let function = function_of(stem, &functions)
            .unwrap_or_else(|| panic!("events/{stem}.json is for no function"));
        let json = read(path);
        if function == DELIVER {
            replay_stream(&mut h, &json).await;
            check(&h, stem, &Value::Null).await;
        } else if function == AUTHORIZER {
            replay_authorizer(&h, stem, &json);
        } else if function == MQTT_INBOUND {
            h.pump().await;
            let event: Value = serde_json::from_str(&json).unwrap();
            rule::handle(&h.api.deps, &event)
                .await
                .unwrap_or_else(|e| panic!("events/{stem}.json failed: {e}"));
            h.pump().await;
            check(&h, stem, &event).await;
        } else if function == WEBHOOKS {
            replay_queue(&h, &json).await;
            check(&h, stem, &Value::Null).await;
        } else {
            // Whatever earlier calls published reaches deliver before the next request. (The
            // deliver sample, which follows send-message, is itself the delivery of its message.)
            h.pump().await;
            let body = replay_http(&h, stem, function, &json).await;
            check(&h, stem, &body).await;
        }
        // Real requests are milliseconds apart: keep every step's timestamps distinct.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    h.pump().await;

    // The group's fan-out, through deliver: joiners got the history, leavers the goodbye.
    let user3 = h.timeline("user-3", GROUP).await;
    assert!(
        has_label(&user3, "GROUP_CREATED", ""),
        "user-3 did not get the group history on joining"
    );
    assert!(has_label(&user3, "MEMBER_JOINED_GROUP", "user-3"));
    assert!(
        has_label(&user3, "MEMBER_LEFT_GROUP", "user-3"),
        "user-3 did not get their own MEMBER_LEFT_GROUP"
    );
    let user4 = h.timeline("user-4", GROUP).await;
    assert!(
        has_label(&user4, "GROUP_CREATED", ""),
        "user-4 got no history"
    );
    assert!(has_label(&user4, "MEMBER_LEFT_GROUP", "user-3"));
    let user2 = h.timeline("user-2", GROUP).await;
    assert!(has_label(&user2, "MEMBER_LEFT_GROUP", "user-2"));
    assert!(
        !has_label(&user2, "MEMBER_LEFT_GROUP", "user-3"),
        "user-2 left before user-3 and must not get later group messages"
    );
    assert!(
        user2
            .iter()
            .chain(&user3)
            .chain(&user4)
            .all(|m| m.status == status::DELIVERED)
    );
    // user-1's group conversation ends with the last change.
    let conversation = h
        .store
        .get_conversation(APP, "user-1", GROUP)
        .await
        .unwrap()
        .expect("user-1 has no group conversation");
    assert_eq!(
        label(&conversation.last),
        ("MEMBER_LEFT_GROUP".into(), "user-3".into())
    );
}
