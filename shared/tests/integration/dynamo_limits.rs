//! DynamoDB's request limits, checked on the wire. moto accepts any batch size and never
//! leaves items unprocessed, so an SDK interceptor watches every request (operation, batch and
//! transaction sizes) and can withhold items from a BatchWriteItem and report them back as
//! `UnprocessedItems`, as DynamoDB does under load: the items really are not written unless
//! the adapter retries them.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::common::{APP, id, user};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use chat21::adapters::dynamo::DynamoStore;
use chat21::adapters::embedded::EmbeddedEvents;
use chat21::adapters::system::{SystemClock, UuidIds};
use chat21::model::{ChannelType, Message, status};
use chat21::ops::{Deps, Settings, conversations, deliver, groups, messages};
use chat21::ports::{
    ConversationStore, Created, GroupStore, MessageStore, PageRequest, Streamed, Timeline,
};
use serde_json::{Value, json};

#[derive(Debug, Default)]
struct Seen {
    operations: Vec<String>,
    /// What IAM authorizes for each request: its operation, or for a transaction each of its
    /// actions' own (`PutItem`, `UpdateItem`, `DeleteItem`, `ConditionCheckItem`).
    iam_actions: Vec<String>,
    batch_write_sizes: Vec<usize>,
    transaction_sizes: Vec<usize>,
    /// BatchWriteItem calls that will still have 3 items withheld.
    withhold: usize,
    /// Answer every BatchWriteItem as if nothing was processed (a store under endless load).
    refuse_all: bool,
    withheld: Option<(String, Vec<Value>)>,
    /// TransactWriteItems calls still to answer as cancelled by a concurrent transaction.
    conflicts: usize,
    /// Answer every TransactWriteItems with a ThrottlingException.
    throttle_transactions: bool,
    /// The error the next response is replaced by: (HTTP status, body).
    fake_error: Option<(u16, Value)>,
}

#[derive(Debug, Default, Clone)]
struct Spy(Arc<Mutex<Seen>>);

impl Spy {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0.lock().unwrap()
    }

    fn count(&self, operation: &str) -> usize {
        self.seen()
            .operations
            .iter()
            .filter(|o| *o == operation)
            .count()
    }
}

impl Intercept for Spy {
    fn name(&self) -> &'static str {
        "request-spy"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("")
            .to_string();
        let mut seen = self.seen();
        seen.operations.push(operation.clone());
        let Some(bytes) = request.body().bytes() else {
            seen.iam_actions.push(operation);
            return Ok(());
        };
        let mut body: Value = serde_json::from_slice(bytes)?;
        match body["TransactItems"].as_array() {
            Some(items) if operation == "TransactWriteItems" => {
                for item in items {
                    for kind in item.as_object().into_iter().flat_map(|o| o.keys()) {
                        let action = match kind.as_str() {
                            "ConditionCheck" => "ConditionCheckItem".to_string(),
                            other => format!("{other}Item"),
                        };
                        seen.iam_actions.push(action);
                    }
                }
            }
            _ => seen.iam_actions.push(operation.clone()),
        }
        match operation.as_str() {
            "TransactWriteItems" => {
                let n = body["TransactItems"].as_array().map_or(0, Vec::len);
                seen.transaction_sizes.push(n);
                if seen.throttle_transactions {
                    let error = json!({
                        "__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                        "message": "Rate of requests exceeds the allowed throughput."
                    });
                    seen.fake_error = Some((400, error));
                } else if seen.conflicts > 0 {
                    seen.conflicts -= 1;
                    let reasons: Vec<Value> = (0..n)
                        .map(|_| json!({"Code": "TransactionConflict"}))
                        .collect();
                    let error = json!({
                        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                        "message": "Transaction cancelled",
                        "CancellationReasons": reasons
                    });
                    seen.fake_error = Some((400, error));
                    // The request itself must change nothing: send it with a failing check.
                    body["TransactItems"] = json!([{"ConditionCheck": {
                        "TableName": body["TransactItems"][0].as_object().and_then(|a| a.values().next()).and_then(|v| v.get("TableName")).cloned().unwrap_or_default(),
                        "Key": {"pk": {"S": "spy"}, "sk": {"S": "spy"}},
                        "ConditionExpression": "attribute_exists(pk)"
                    }}]);
                    let bytes = serde_json::to_vec(&body)?;
                    request
                        .headers_mut()
                        .insert("content-length", bytes.len().to_string());
                    *request.body_mut() = SdkBody::from(bytes);
                }
            }
            "BatchWriteItem" => {
                let items = body["RequestItems"].as_object_mut().unwrap();
                let (table, requests) = items.iter_mut().next().unwrap();
                let requests = requests.as_array_mut().unwrap();
                seen.batch_write_sizes.push(requests.len());
                if seen.refuse_all {
                    seen.withheld = Some((table.clone(), requests.clone()));
                } else if seen.withhold > 0 && requests.len() > 3 {
                    seen.withhold -= 1;
                    let kept = requests.len() - 3;
                    let withheld = requests.split_off(kept);
                    seen.withheld = Some((table.clone(), withheld));
                    let bytes = serde_json::to_vec(&body)?;
                    request
                        .headers_mut()
                        .insert("content-length", bytes.len().to_string());
                    *request.body_mut() = SdkBody::from(bytes);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some((status, error)) = self.seen().fake_error.take() {
            let body = error.to_string();
            let kind = error["__type"].as_str().unwrap_or("").rsplit('#').next();
            let response = context.response_mut();
            *response.status_mut() = status.try_into()?;
            response.headers_mut().remove("x-amz-crc32");
            response
                .headers_mut()
                .insert("x-amzn-errortype", kind.unwrap_or("").to_string());
            response
                .headers_mut()
                .insert("content-length", body.len().to_string());
            *response.body_mut() = SdkBody::from(body);
            return Ok(());
        }
        if let Some((table, withheld)) = self.seen().withheld.take() {
            let body = json!({ "UnprocessedItems": { table: withheld } }).to_string();
            let response = context.response_mut();
            response.headers_mut().remove("x-amz-crc32");
            response
                .headers_mut()
                .insert("content-length", body.len().to_string());
            *response.body_mut() = SdkBody::from(body);
        }
        Ok(())
    }
}

struct Spied {
    spy: Spy,
    store: Arc<DynamoStore>,
    deps: Deps,
    stream: crate::common::StreamReader,
}

async fn spied() -> Spied {
    let config = crate::common::aws_config().await;
    let plain = aws_sdk_dynamodb::Client::new(&config);
    let table = crate::common::unique("limits");
    crate::common::create_table(&plain, &table).await;
    let spy = Spy::default();
    let conf = aws_sdk_dynamodb::config::Builder::from(&config)
        .interceptor(spy.clone())
        .build();
    let stream = crate::common::StreamReader::new(&config, &table);
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(conf),
        table,
    ));
    let deps = Deps {
        store: store.clone(),
        events: Arc::new(EmbeddedEvents::new()),
        realtime: std::sync::Arc::new(chat21::ports::NoRealtime),
        clock: Arc::new(SystemClock),
        ids: Arc::new(UuidIds),
        settings: Settings {
            delivered_events: false,
            ..Settings::default()
        },
    };
    Spied {
        spy,
        store,
        deps,
        stream,
    }
}

fn copy(owner: &str, with: &str, sender: &str, i: usize) -> Message {
    Message {
        message_id: format!("m{i:05}"),
        sender: sender.into(),
        sender_fullname: "S".into(),
        recipient: with.into(),
        recipient_fullname: "R".into(),
        text: format!("text {i}"),
        kind: "text".into(),
        channel_type: ChannelType::Direct,
        attributes: None,
        metadata: None,
        timestamp: 1_700_000_000_000 + i as u64,
        status: status::SENT,
        app_id: APP.into(),
        timeline_of: owner.into(),
        convers_with: with.into(),
    }
}

/// How many of `owner`'s own copies of a conversation there are (inline groups).
async fn copies_len(store: &DynamoStore, owner: &str, with: &str) -> usize {
    let copies = Timeline::Copies {
        app: APP.into(),
        owner: owner.into(),
        with: with.into(),
    };
    store
        .list_timeline(&copies, None, None, &PageRequest::first(1000))
        .await
        .unwrap()
        .items
        .len()
}

#[tokio::test]
async fn batches_stay_within_25_and_unprocessed_items_are_retried() {
    let s = spied().await;
    s.spy.seen().withhold = 2;
    let copies: Vec<Message> = (0..60).map(|i| copy("u1", "u2", "u1", i)).collect();
    s.store.put_copies(&copies).await.unwrap();
    let sizes = s.spy.seen().batch_write_sizes.clone();
    assert!(sizes.iter().all(|&n| n <= 25), "{:?}", sizes);
    assert_eq!(
        sizes.len(),
        5,
        "3 chunks and 2 retries of withheld items: {:?}",
        sizes
    );
    assert_eq!(
        copies_len(&s.store, "u1", "u2").await,
        60,
        "withheld items were written by the retries"
    );
}

#[tokio::test]
async fn a_store_that_keeps_items_unprocessed_answers_503() {
    let s = spied().await;
    s.spy.seen().refuse_all = true;
    let copies: Vec<Message> = (0..10).map(|i| copy("u1", "u2", "u1", i)).collect();
    let err = s.store.put_copies(&copies).await.unwrap_err();
    assert_eq!(err.status(), 503, "{err}");
    assert_eq!(s.spy.count("BatchWriteItem"), 8, "bounded retries");
}

#[tokio::test]
async fn transactions_cancelled_by_a_conflict_are_retried() {
    let s = spied().await;
    s.spy.seen().conflicts = 2;
    let change = |id: &str| chat21::model::GroupChange {
        id: id.into(),
        at: 1,
        actor: "owner".into(),
        kind: chat21::model::ChangeKind::Created,
        joined: vec!["owner".into()],
        left: vec![],
        stalled: false,
        places_from: Some(1),
        settled: false,
    };
    let meta = chat21::model::GroupMeta {
        info: chat21::model::GroupInfo {
            uid: "group-x".into(),
            name: "X".into(),
            owner: "owner".into(),
            attributes: Default::default(),
            created_on: 1,
            updated_on: 1,
            app_id: APP.into(),
        },
        version: 1,
        seq: 2,
    };
    let created = s
        .store
        .create_group(&meta, &["owner".into()], &change("c1"))
        .await
        .unwrap();
    assert_eq!(created, Created::Created);
    assert_eq!(
        s.spy.count("TransactWriteItems"),
        3,
        "two conflicts, then it went through"
    );
    assert!(s.store.is_member(APP, "group-x", "owner").await.unwrap());
}

#[tokio::test]
async fn throttling_is_left_to_the_sdks_own_retries() {
    let s = spied().await;
    s.spy.seen().throttle_transactions = true;
    let input = groups::CreateGroup {
        name: "Throttled".into(),
        members: vec![id("u2")],
        group_id: Some(id("group-t")),
        attributes: Default::default(),
        owner: None,
    };
    let err = groups::create(&s.deps, &user("u1"), input)
        .await
        .unwrap_err();
    assert_eq!(err.status(), 429, "{err}");
    // The SDK's standard retry mode makes 3 attempts; the adapter adds none on top.
    assert_eq!(s.spy.count("TransactWriteItems"), 3);
}

/// A direct conversation is kept once for both users: deleting it for one is one write (a
/// tombstone), whatever its length, and the other keeps everything.
#[tokio::test]
async fn deleting_a_1000_message_conversation_is_one_write() {
    let s = spied().await;
    for i in 0..1000u64 {
        let m = chat21::ops::messages::SendMessage {
            timestamp: Some(1_000 + i),
            ..crate::common::input("u2", &format!("m{i}"))
        };
        messages::send_message(&s.deps, &user("u1"), m)
            .await
            .unwrap();
    }
    let page = PageRequest::first(1000);
    let seen = |who: &'static str, with: &'static str| {
        let deps = s.deps.clone();
        let page = page.clone();
        async move {
            conversations::copies(&deps, APP, who, with, &page)
                .await
                .unwrap()
                .items
                .len()
        }
    };
    assert_eq!(seen("u1", "u2").await, 1000);
    s.spy.seen().operations.clear();

    conversations::delete(&s.deps, &user("u1"), None, &id("u2"))
        .await
        .unwrap();

    let operations = s.spy.seen().operations.clone();
    assert_eq!(
        operations,
        vec!["GetItem", "UpdateItem"],
        "the row read once (a direct conversation has no copies), one write"
    );
    assert_eq!(seen("u1", "u2").await, 0);
    assert!(
        s.store
            .get_conversation(APP, "u1", "u2")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(seen("u2", "u1").await, 1000, "the peer keeps everything");
}

/// An inline group's copies (the only per-owner copies) are deleted in batches of at most 25,
/// retrying withheld items, without scans.
#[tokio::test]
async fn deleting_1000_inline_copies_is_batched_without_scans() {
    let s = spied().await;
    let copies: Vec<Message> = (0..1000).map(|i| copy("u1", "group-v", "u3", i)).collect();
    s.store.put_copies(&copies).await.unwrap();
    assert_eq!(copies_len(&s.store, "u1", "group-v").await, 1000);
    s.spy.seen().operations.clear();
    s.spy.seen().batch_write_sizes.clear();
    s.spy.seen().withhold = 3;

    s.store.delete_copies(APP, "u1", "group-v").await.unwrap();

    assert_eq!(copies_len(&s.store, "u1", "group-v").await, 0);
    let seen = s.spy.seen();
    assert!(
        !seen.operations.iter().any(|o| o == "Scan"),
        "{:?}",
        seen.operations
    );
    assert!(seen.batch_write_sizes.iter().all(|&n| n <= 25));
    assert_eq!(
        seen.batch_write_sizes.len(),
        40 + 3,
        "1000 deletes in 40 batches, 3 retries"
    );
}

/// A group message is stored once; its fan-out is one small conditional update per member
/// (no transactions), and group changes stay within 100 actions per transaction.
#[tokio::test]
async fn group_fan_out_is_one_update_per_member() {
    let s = spied().await;
    let members = (0..97).map(|i| id(&format!("m{i:03}"))).collect();
    let input = groups::CreateGroup {
        name: "Big".into(),
        members,
        group_id: Some(id("group-big")),
        attributes: Default::default(),
        owner: None,
    };
    groups::create(&s.deps, &user("owner"), input)
        .await
        .unwrap();
    assert_eq!(
        s.spy.seen().transaction_sizes,
        vec![100],
        "meta, 98 members and the change in one transaction"
    );
    let sent = messages::send_message(
        &s.deps,
        &user("m000"),
        crate::common::input("group-big", "hello all"),
    )
    .await
    .unwrap();
    let written = s.stream.written().await;
    assert_eq!(
        written.len(),
        2,
        "the settled creation and the message (its system messages go with the creation)"
    );
    assert!(
        matches!(written[0], Streamed::Change { .. }),
        "{:?}",
        written[0]
    );
    assert!(
        matches!(written[1], Streamed::Message(_)),
        "{:?}",
        written[1]
    );
    s.spy.seen().operations.clear();
    s.spy.seen().transaction_sizes.clear();

    // The creation, to all 98 members: one update each for its run of 99 system messages.
    deliver::handle(&s.deps, &written[0]).await.unwrap();
    let operations = s.spy.seen().operations.clone();
    assert_eq!(s.spy.seen().transaction_sizes, Vec::<usize>::new());
    assert_eq!(operations.iter().filter(|o| *o == "UpdateItem").count(), 98);
    assert!(operations.len() <= 98 + 5, "{operations:?}");
    s.spy.seen().operations.clear();

    deliver::handle(&s.deps, &written[1]).await.unwrap();

    let operations = s.spy.seen().operations.clone();
    assert_eq!(s.spy.seen().transaction_sizes, Vec::<usize>::new());
    assert_eq!(operations.iter().filter(|o| *o == "UpdateItem").count(), 98);
    assert_eq!(
        operations.iter().filter(|o| *o == "Query").count(),
        1,
        "the members"
    );
    assert_eq!(operations.len(), 99, "{operations:?}");
    for member in ["owner", "m000", "m096"] {
        let row = s
            .store
            .get_conversation(APP, member, "group-big")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.last.message_id, sent.message_id, "{member}");
    }
}

/// moto checks no IAM: a DynamoDB action missing from a function's role would only show on
/// AWS, as an AccessDenied on the first call that needs it. So every HTTP route is called here
/// through the HTTP glue, in an order that takes its fuller paths (a group whose members
/// leave, conversations that exist, a webhook that exists), and every request it makes must be
/// allowed by its own function's role in template.yaml.
#[tokio::test]
async fn every_route_stays_within_its_functions_role() {
    use chat21::routes::{self, Match};
    let s = spied().await;
    let api = crate::common::api_on(s.deps.clone());
    let token = crate::common::token;
    let admin = crate::common::token_for("admin", APP, true);
    let direct = |to: &str| json!({"sender_fullname": "S", "recipient_id": to, "recipient_fullname": "R", "text": "hi"});
    let steps: Vec<(&str, String, String, Option<Value>)> = vec![
        (
            "POST",
            format!("/api/{APP}/messages"),
            token("u1"),
            Some(direct("u2")),
        ),
        (
            "POST",
            format!("/api/{APP}/groups"),
            token("u1"),
            Some(json!({
                "group_id": "group-iam", "group_name": "G", "group_members": {"u2": 1, "u3": 1}
            })),
        ),
        (
            "POST",
            format!("/api/{APP}/messages"),
            token("u2"),
            Some(json!({
                "sender_fullname": "S", "recipient_id": "group-iam", "recipient_fullname": "G",
                "text": "to all", "channel_type": "group"
            })),
        ),
        (
            "GET",
            format!("/api/{APP}/groups/group-iam"),
            token("u1"),
            None,
        ),
        (
            "PUT",
            format!("/api/{APP}/groups/group-iam"),
            token("u1"),
            Some(json!({"group_name": "H"})),
        ),
        (
            "PUT",
            format!("/api/{APP}/groups/group-iam/attributes"),
            token("u1"),
            Some(json!({"attributes": {"a": 1}})),
        ),
        (
            "POST",
            format!("/api/{APP}/groups/group-iam/members"),
            token("u1"),
            Some(json!({"member_id": "u4"})),
        ),
        (
            "DELETE",
            format!("/api/{APP}/groups/group-iam/members/u3"),
            token("u1"),
            None,
        ),
        (
            "PUT",
            format!("/api/{APP}/groups/group-iam/members"),
            token("u1"),
            Some(json!({"members": {"u1": 1, "u2": 1, "u5": 1}})),
        ),
        (
            "GET",
            format!("/api/{APP}/groups/group-iam"),
            token("u2"),
            None,
        ),
        (
            "GET",
            format!("/api/{APP}/u1/conversations"),
            token("u1"),
            None,
        ),
        (
            "GET",
            format!("/api/{APP}/u1/conversations/archived"),
            token("u1"),
            None,
        ),
        (
            "GET",
            format!("/api/{APP}/u1/conversations/u2"),
            token("u1"),
            None,
        ),
        (
            "GET",
            format!("/api/{APP}/u1/conversations/u2/messages"),
            token("u1"),
            None,
        ),
        (
            "GET",
            format!("/api/{APP}/u2/conversations/group-iam/messages"),
            token("u2"),
            None,
        ),
        (
            "POST",
            format!("/api/{APP}/u2/conversations/u1/read"),
            token("u2"),
            None,
        ),
        (
            "DELETE",
            format!("/api/{APP}/conversations/u2"),
            token("u1"),
            None,
        ),
        (
            "DELETE",
            format!("/api/{APP}/conversations/u2?delete=true"),
            token("u1"),
            None,
        ),
        (
            "PUT",
            format!("/api/{APP}/webhooks/w1"),
            admin.clone(),
            Some(json!({"url": "https://example.com/hook"})),
        ),
        ("GET", format!("/api/{APP}/webhooks"), admin.clone(), None),
        (
            "GET",
            format!("/api/{APP}/webhooks/w1"),
            admin.clone(),
            None,
        ),
        (
            "DELETE",
            format!("/api/{APP}/webhooks/w1"),
            admin.clone(),
            None,
        ),
    ];
    let mut checked = BTreeSet::new();
    let mut delivering = BTreeSet::new();
    for (method, path, token, body) in steps {
        // What came before is delivered first (checked against the deliver function's role
        // at the end), so that every call finds the state a deployment would have.
        s.spy.seen().iam_actions.clear();
        for streamed in &s.stream.written().await {
            deliver::handle(&s.deps, streamed).await.unwrap();
        }
        delivering.extend(s.spy.seen().iam_actions.iter().cloned());
        let route_path = path.split('?').next().unwrap_or(&path);
        let Match::Found(route, _) = routes::find(method, route_path) else {
            panic!("{method} {path} is not routed");
        };
        let function = route.function();
        s.spy.seen().iam_actions.clear();
        let body = body.map(|b| b.to_string().into_bytes());
        let (status, answer) =
            crate::common::call(&api, method, &path, Some(&token), body.as_deref()).await;
        assert!(status < 300, "{method} {path}: {status} {answer}");
        let used: BTreeSet<String> = s.spy.seen().iam_actions.iter().cloned().collect();
        assert!(!used.is_empty(), "{method} {path} made no DynamoDB request");
        let allowed = crate::template::dynamodb_actions_of(function);
        let missing: Vec<_> = used.difference(&allowed).collect();
        assert!(
            missing.is_empty(),
            "{method} {path} ({function}) used DynamoDB {missing:?}, which its role in template.yaml does not allow ({allowed:?})"
        );
        checked.insert(function);
    }
    // Every HTTP function but the banner (no store) was called.
    let every: BTreeSet<&str> = routes::ROUTES
        .iter()
        .map(|def| def.route.function())
        .filter(|f| *f != "banner")
        .collect();
    assert_eq!(checked, every);
    let allowed = crate::template::dynamodb_actions_of_resource("DeliverRole");
    let missing: Vec<_> = delivering.difference(&allowed).collect();
    assert!(
        missing.is_empty(),
        "deliver used DynamoDB {missing:?}, which DeliverRole does not allow ({allowed:?})"
    );
    assert!(delivering.contains("UpdateItem"), "deliver was exercised");
}
