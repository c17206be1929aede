//! The Lambda path end to end against moto: the HTTP handlers on DynamoDB + SNS, the table's
//! stream handed to the deliver handler as Lambda's event source mapping hands it, and the
//! topic's events reaching a queue subscribed to it (as a webhooks consumer would be).

use std::sync::Arc;

use crate::common::{APP, StreamReader, call, stream_event, token};
use chat21::adapters::dynamo::DynamoStore;
use chat21::adapters::dynamo::stream::image_of;
use chat21::adapters::sns::SnsEvents;
use chat21::adapters::system::{SystemClock, UuidIds};
use chat21::entry::http::Api;
use chat21::entry::stream::handle_stream;
use chat21::events::Event;
use chat21::model::EventType;
use chat21::model::status;
use chat21::ops::{Deps, Settings};
use chat21::ports::{ConversationStore, Origin, Streamed, Written};
use serde_json::{Value, json};

struct Aws {
    api: Arc<Api>,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    config: aws_config::SdkConfig,
    store: Arc<DynamoStore>,
    stream: StreamReader,
}

/// A table with its stream, a topic, and a queue subscribed to every event of the topic.
async fn setup() -> Aws {
    let config = crate::common::aws_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let table = crate::common::unique("chat21");
    crate::common::create_table(&dynamo, &table).await;
    let sns = aws_sdk_sns::Client::new(&config);
    let topic_arn = crate::common::create_topic(&sns).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue_url = crate::common::create_queue(&sqs, "events").await;
    crate::common::subscribe_queue(&sns, &topic_arn, &sqs, &queue_url, None).await;
    let store = Arc::new(DynamoStore::new(dynamo, table.clone()));
    let api = Arc::new(api_with_topic(&config, store.clone(), &topic_arn));
    let stream = StreamReader::new(&config, &table);
    Aws {
        api,
        sqs,
        queue_url,
        config,
        store,
        stream,
    }
}

fn api_with_topic(config: &aws_config::SdkConfig, store: Arc<DynamoStore>, topic_arn: &str) -> Api {
    crate::common::api_on(Deps {
        store,
        events: Arc::new(SnsEvents::new(aws_sdk_sns::Client::new(config), topic_arn)),
        realtime: Arc::new(chat21::ports::NoRealtime),
        clock: Arc::new(SystemClock),
        ids: Arc::new(UuidIds),
        settings: Settings::default(),
    })
}

impl Aws {
    /// Every event the topic delivered to the queue so far (and removes them).
    /// Runs the deliver function on the table's stream until nothing new is left.
    async fn deliver(&self) {
        loop {
            let event = self.stream.lambda_event().await;
            if event.records.is_empty() {
                return;
            }
            let response = handle_stream(&self.api.deps, event).await;
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
        }
    }

    async fn events(&self) -> Vec<Event> {
        let bodies = self.bodies().await;
        bodies.iter().map(|b| crate::common::event_of(b)).collect()
    }

    /// The raw bodies of the events the topic delivered to the queue so far (and removes
    /// them): what a webhooks consumer signs and POSTs.
    async fn bodies(&self) -> Vec<String> {
        let mut bodies = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap();
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                return bodies;
            }
            for m in batch {
                bodies.push(m.body.unwrap());
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle.unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    async fn get(&self, path: &str, user: &str) -> Value {
        let (code, body) = call(&self.api, "GET", path, Some(&token(user)), None).await;
        assert_eq!(code, 200, "{path}: {body}");
        body
    }

    async fn post(&self, path: &str, user: &str, body: Value) -> (u16, Value) {
        let body = body.to_string();
        call(
            &self.api,
            "POST",
            path,
            Some(&token(user)),
            Some(body.as_bytes()),
        )
        .await
    }
}

fn count(events: &[Event], kind: EventType) -> usize {
    events.iter().filter(|e| e.event_type() == kind).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_message_goes_through_the_stream_and_deliver() {
    let aws = setup().await;
    let before = aws.store.requests();
    let (code, sent) = aws
        .post(
            "/api/app1/messages",
            "u1",
            json!({"sender_fullname": "One", "recipient_id": "u2", "recipient_fullname": "Two", "text": "hi"}),
        )
        .await;
    assert_eq!(code, 200, "{sent}");
    assert_eq!(
        aws.store.requests() - before,
        2,
        "a send is two DynamoDB requests: the message, the sender's conversation"
    );
    assert!(
        aws.events().await.is_empty(),
        "a send publishes nothing itself"
    );
    let id = sent["message"]["message_id"].as_str().unwrap().to_string();

    let event = aws.stream.lambda_event().await;
    let messages = event
        .records
        .iter()
        .filter(|r| r.change.new_image.get("origin").is_some())
        .count();
    assert_eq!(
        messages, 1,
        "one new message for deliver (the rest is the row)"
    );
    let response = handle_stream(&aws.api.deps, event).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    let theirs = aws
        .get("/api/app1/u2/conversations/u1/messages", "u2")
        .await;
    assert_eq!(theirs["result"].as_array().unwrap().len(), 1);
    assert_eq!(theirs["result"][0]["status"], status::DELIVERED);
    assert_eq!(theirs["result"][0]["message_id"], id.as_str());
    assert_eq!(theirs["result"][0]["timelineOf"], "u2");
    let mine = aws
        .get("/api/app1/u1/conversations/u2/messages", "u1")
        .await;
    assert_eq!(mine["result"][0]["status"], status::SENT);
    let list = aws.get("/api/app1/u2/conversations", "u2").await;
    assert_eq!(list["result"][0]["conversWith"], "u1");
    assert_eq!(list["result"][0]["unread_count"], 1);
    assert_eq!(list["result"][0]["is_new"], true);

    let events = aws.events().await;
    assert_eq!(count(&events, EventType::MessageSent), 1, "{events:?}");
    assert_eq!(count(&events, EventType::MessageDelivered), 1);
    let message_sent = events
        .iter()
        .find(|e| e.event_type() == EventType::MessageSent)
        .unwrap();
    assert_eq!(message_sent.message_id.as_deref(), Some(id.as_str()));
    assert_eq!(message_sent.recipient_id, "u2");
}

/// The same stream batch handed to deliver twice (Lambda retries a batch, or the stream
/// redelivers it), the second time later by the clock: the topic carries the same events
/// byte for byte, so their webhook ids are the same too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_batch_publishes_byte_identical_events() {
    let aws = setup().await;
    let body = json!({"group_name": "E", "group_id": "group-e", "group_members": {"u2": 1}});
    let (code, _) = aws.post("/api/app1/groups", "u1", body).await;
    assert_eq!(code, 201);
    aws.deliver().await;
    aws.bodies().await;
    for to in ["u2", "group-e"] {
        let body = json!({"sender_fullname": "One", "recipient_id": to, "recipient_fullname": "R", "text": "hi"});
        let (code, sent) = aws.post("/api/app1/messages", "u1", body).await;
        assert_eq!(code, 200, "{sent}");
    }
    let batch = aws.stream.lambda_event().await;
    let response = handle_stream(&aws.api.deps, batch.clone()).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let mut once = aws.bodies().await;
    // message-sent and message-delivered (to u2) of each message.
    assert_eq!(once.len(), 4, "{once:?}");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let response = handle_stream(&aws.api.deps, batch).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let mut twice = aws.bodies().await;
    once.sort();
    twice.sort();
    assert_eq!(twice, once, "the same bytes");
    let ids = |bodies: &[String]| {
        bodies
            .iter()
            .map(|b| chat21::ops::webhooks::signing::webhook_id(b))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&twice), ids(&once));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_member_group_gets_each_message_once_even_when_a_batch_is_redelivered() {
    let aws = setup().await;
    let members: serde_json::Map<String, Value> =
        (1..50).map(|i| (format!("m{i:02}"), json!(1))).collect();
    let body = json!({"group_name": "Fifty", "group_id": "group-50", "group_members": members});
    let (code, created) = aws.post("/api/app1/groups", "owner", body).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["group"]["members"].as_object().unwrap().len(), 50);
    let announced = aws.events().await;
    assert_eq!(
        count(&announced, EventType::MessageSent),
        51,
        "GROUP_CREATED and one MEMBER_JOINED_GROUP per member"
    );
    assert_eq!(count(&announced, EventType::GroupCreated), 1);
    let created_event = aws.stream.lambda_event().await;
    let response = handle_stream(&aws.api.deps, created_event).await;
    assert!(response.batch_item_failures.is_empty());
    let unread_before = aws
        .store
        .get_conversation(APP, "m07", "group-50")
        .await
        .unwrap()
        .unwrap()
        .unread_count;
    assert_eq!(
        unread_before, 51,
        "the creation's system messages, counted once each"
    );

    let body = json!({"sender_fullname": "M1", "recipient_id": "group-50", "recipient_fullname": "Fifty", "text": "to all", "message_id": "g-msg-1"});
    let (code, _) = aws.post("/api/app1/messages", "m01", body).await;
    assert_eq!(code, 200);
    let event = aws.stream.lambda_event().await;
    let inserts = event
        .records
        .iter()
        .filter(|r| r.event_name == "INSERT")
        .count();
    assert!(inserts >= 1);
    for _ in 0..2 {
        let response = handle_stream(&aws.api.deps, event.clone()).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }

    let mut everyone: Vec<String> = (1..50).map(|i| format!("m{i:02}")).collect();
    everyone.push("owner".into());
    for member in &everyone {
        let seen = aws
            .get(
                &format!("/api/app1/{member}/conversations/group-50/messages"),
                member,
            )
            .await;
        let copies = seen["result"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["message_id"] == "g-msg-1")
            .count();
        assert_eq!(copies, 1, "{member} sees it {copies} times");
        assert_eq!(seen["result"][0]["status"], status::DELIVERED);
        assert_eq!(seen["result"][0]["timelineOf"], member.as_str());
    }
    let after = aws
        .store
        .get_conversation(APP, "m07", "group-50")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.unread_count,
        unread_before + 1,
        "a redelivered batch counts once"
    );
    assert_eq!(after.last_message_text, "to all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_joins_leave_fifty_members() {
    let aws = setup().await;
    let body = json!({"group_name": "Open", "group_id": "group-open", "group_members": {}});
    let (code, _) = aws.post("/api/app1/groups", "owner", body).await;
    assert_eq!(code, 201);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let api = aws.api.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"member_id": format!("j{i:02}")}).to_string();
            call(
                &api,
                "POST",
                "/api/app1/groups/group-open/members",
                Some(&token("owner")),
                Some(body.as_bytes()),
            )
            .await
        }));
    }
    for task in tasks {
        let (code, body) = task.await.unwrap();
        assert_eq!(code, 200, "{body}");
    }
    let group = aws.get("/api/app1/groups/group-open", "owner").await;
    assert_eq!(group["result"]["members"].as_object().unwrap().len(), 51);
    aws.deliver().await;
    let events = aws.events().await;
    assert_eq!(count(&events, EventType::JoinMember), 50, "one per join");
    for i in [0, 25, 49] {
        let conv = aws
            .store
            .get_conversation(APP, &format!("j{i:02}"), "group-open")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            conv.last.attribute("messagelabel").unwrap()["key"],
            "MEMBER_JOINED_GROUP"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_topic_fails_the_delivery_and_its_retry_finishes_it() {
    let aws = setup().await;
    let broken = api_with_topic(
        &aws.config,
        aws.store.clone(),
        "arn:aws:sns:us-east-1:123456789012:no-such-topic",
    );
    let body = json!({"sender_fullname": "One", "recipient_id": "u2", "recipient_fullname": "Two", "text": "hi"});
    let (code, sent) = call(
        &broken,
        "POST",
        "/api/app1/messages",
        Some(&token("u1")),
        Some(body.to_string().as_bytes()),
    )
    .await;
    assert_eq!(code, 200, "the send does not need the topic: {sent}");
    let event = aws.stream.lambda_event().await;
    let failed = handle_stream(&broken.deps, event.clone()).await;
    assert_eq!(failed.batch_item_failures.len(), 1, "{failed:?}");
    let first_insert = event.records[0].change.sequence_number.clone();
    assert_eq!(failed.batch_item_failures[0].item_identifier, first_insert);
    // Lambda retries from the failed record; the topic is back.
    let retried = handle_stream(&aws.api.deps, event).await;
    assert!(retried.batch_item_failures.is_empty());
    let events = aws.events().await;
    assert_eq!(count(&events, EventType::MessageSent), 1);
    let theirs = aws
        .store
        .get_conversation(APP, "u2", "u1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        theirs.unread_count, 1,
        "the failed attempt's writes were not doubled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_record_is_skipped_and_the_others_delivered_in_order() {
    let aws = setup().await;
    let message = |id: &str, to: &str| chat21::model::Message {
        message_id: id.into(),
        sender: "u1".into(),
        sender_fullname: "One".into(),
        recipient: to.into(),
        recipient_fullname: "R".into(),
        text: id.into(),
        kind: "text".into(),
        channel_type: chat21::model::ChannelType::Direct,
        attributes: None,
        metadata: None,
        timestamp: 1_700_000_000_000,
        status: status::SENT,
        app_id: APP.into(),
        timeline_of: "u1".into(),
        convers_with: to.into(),
    };
    let written = |m| {
        Streamed::Message(Written {
            message: m,
            origin: Origin::Direct,
            written_at: 1_700_000_000_000,
        })
    };
    let good = image_of(&written(message("ok-1", "u2"))).unwrap();
    // A forged record: the message claims another sender's timeline.
    let mut forged = message("bad", "u3");
    forged.timeline_of = "u3".into();
    let forged = image_of(&written(forged)).unwrap();
    let later = image_of(&written(message("ok-2", "u4"))).unwrap();
    let event = stream_event(&[
        (good, "100".into()),
        (forged, "101".into()),
        (later, "102".into()),
    ]);
    let response = handle_stream(&aws.api.deps, event).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert!(
        aws.store
            .get_conversation(APP, "u2", "u1")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        aws.store
            .get_conversation(APP, "u4", "u1")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        aws.store
            .get_conversation(APP, "u3", "u1")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(count(&aws.events().await, EventType::MessageSent), 2);
}
