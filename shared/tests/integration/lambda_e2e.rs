//! The Lambda path end to end against moto: the HTTP handlers on DynamoDB + SNS, the topic's
//! subscription delivering into an SQS queue, and the deliver handler consuming that queue.

use std::sync::Arc;

use crate::common::{APP, call, token};
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use chat21::adapters::dynamo::DynamoStore;
use chat21::adapters::sns::SnsEvents;
use chat21::adapters::system::{SystemClock, UuidIds};
use chat21::api::Api;
use chat21::events::{DELIVER_CONSUMES, Event, EventType};
use chat21::lambda::{event_of, handle_sqs};
use chat21::lambda_http::aws_lambda_events::event::sqs::SqsEvent;
use chat21::model::status;
use chat21::ops::{Deps, Settings};
use chat21::ports::{ConversationStore, MessageStore};
use serde_json::{Value, json};

struct Aws {
    api: Arc<Api>,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    config: aws_config::SdkConfig,
    store: Arc<DynamoStore>,
}

/// A table, a topic, and a queue subscribed the way template.yaml subscribes it.
async fn setup() -> Aws {
    let config = crate::common::aws_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let table = crate::common::unique("chat21");
    crate::common::create_table(&dynamo, &table).await;
    let sns = aws_sdk_sns::Client::new(&config);
    let topic_arn = sns
        .create_topic()
        .name(crate::common::unique("events"))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue_url = sqs
        .create_queue()
        .queue_name(crate::common::unique("deliver"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let filter =
        json!({ "event_type": DELIVER_CONSUMES.iter().map(|e| e.as_str()).collect::<Vec<_>>() });
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", "true")
        .attributes("FilterPolicy", filter.to_string())
        .send()
        .await
        .unwrap();
    let store = Arc::new(DynamoStore::new(dynamo, table, Arc::new(SystemClock)));
    let api = Arc::new(api_with_topic(&config, store.clone(), &topic_arn));
    Aws {
        api,
        sqs,
        queue_url,
        config,
        store,
    }
}

fn api_with_topic(config: &aws_config::SdkConfig, store: Arc<DynamoStore>, topic_arn: &str) -> Api {
    crate::common::api_on(Deps {
        store,
        events: Arc::new(SnsEvents::new(aws_sdk_sns::Client::new(config), topic_arn)),
        realtime: std::sync::Arc::new(chat21::realtime::NoRealtime),
        clock: Arc::new(SystemClock),
        ids: Arc::new(UuidIds),
        settings: Settings::default(),
    })
}

impl Aws {
    async fn receive(&self) -> Vec<aws_sdk_sqs::types::Message> {
        self.sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default()
    }

    /// Runs the deliver handler on one received batch, `times` times (a redelivery), then
    /// deletes the records it did not report as failed, as Lambda's event source does.
    async fn deliver_batch(
        &self,
        batch: &[aws_sdk_sqs::types::Message],
        times: usize,
    ) -> Vec<Event> {
        let records: Vec<Value> = batch
            .iter()
            .map(|m| json!({ "messageId": m.message_id, "body": m.body, "receiptHandle": m.receipt_handle }))
            .collect();
        let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
        for _ in 0..times {
            let response = handle_sqs(&self.api.deps, event.clone()).await;
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
        }
        let entries: Vec<DeleteMessageBatchRequestEntry> = batch
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle.clone().unwrap())
                    .build()
                    .unwrap()
            })
            .collect();
        self.sqs
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
        batch
            .iter()
            .map(|m| event_of(m.body.as_deref().unwrap()).unwrap())
            .collect()
    }

    /// Delivers until the queue is empty; returns every event that went through the queue.
    async fn drain(&self) -> Vec<Event> {
        let mut seen = Vec::new();
        loop {
            let batch = self.receive().await;
            if batch.is_empty() {
                return seen;
            }
            seen.extend(self.deliver_batch(&batch, 1).await);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_message_goes_through_sns_sqs_and_deliver() {
    let aws = setup().await;
    let body = json!({"sender_fullname": "One", "recipient_id": "u2", "recipient_fullname": "Two", "text": "hi"});
    let (code, sent) = call(
        &aws.api,
        "POST",
        "/api/app1/messages",
        Some(&token("u1")),
        Some(body.to_string().as_bytes()),
    )
    .await;
    assert_eq!(code, 200, "{sent}");
    let id = sent["message"]["message_id"].as_str().unwrap().to_string();
    let (_, mine) = call(
        &aws.api,
        "GET",
        "/api/app1/u1/conversations/u2/messages",
        Some(&token("u1")),
        None,
    )
    .await;
    assert_eq!(mine["result"][0]["status"], status::SENT);
    let (_, theirs) = call(
        &aws.api,
        "GET",
        "/api/app1/u2/conversations/u1/messages",
        Some(&token("u2")),
        None,
    )
    .await;
    assert_eq!(
        theirs["result"],
        json!([]),
        "nothing for the recipient before deliver runs"
    );

    let through_queue = aws.drain().await;
    assert_eq!(
        through_queue.len(),
        1,
        "only message-sent reaches the queue (filter policy): {through_queue:?}"
    );
    assert_eq!(through_queue[0].event_type(), EventType::MessageSent);
    assert_eq!(through_queue[0].message_id.as_deref(), Some(id.as_str()));

    let (_, theirs) = call(
        &aws.api,
        "GET",
        "/api/app1/u2/conversations/u1/messages",
        Some(&token("u2")),
        None,
    )
    .await;
    assert_eq!(theirs["result"].as_array().unwrap().len(), 1);
    assert_eq!(theirs["result"][0]["status"], status::DELIVERED);
    assert_eq!(theirs["result"][0]["message_id"], id.as_str());
    let (_, list) = call(
        &aws.api,
        "GET",
        "/api/app1/u2/conversations",
        Some(&token("u2")),
        None,
    )
    .await;
    assert_eq!(list["result"][0]["conversWith"], "u1");
    assert_eq!(list["result"][0]["unread_count"], 1);
    assert_eq!(list["result"][0]["is_new"], true);
    assert!(
        aws.receive().await.is_empty(),
        "message-delivered events are filtered out of the queue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_member_group_gets_each_message_once_even_when_a_batch_is_redelivered() {
    let aws = setup().await;
    let members: serde_json::Map<String, Value> =
        (1..50).map(|i| (format!("m{i:02}"), json!(1))).collect();
    let body = json!({"group_name": "Fifty", "group_id": "group-50", "group_members": members});
    let (code, created) = call(
        &aws.api,
        "POST",
        "/api/app1/groups",
        Some(&token("owner")),
        Some(body.to_string().as_bytes()),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["group"]["members"].as_object().unwrap().len(), 50);
    let announced = aws.drain().await;
    assert_eq!(
        announced.len(),
        51,
        "GROUP_CREATED and one MEMBER_JOINED_GROUP per member"
    );
    let unread_before = aws
        .store
        .get_conversation(APP, "m07", "group-50")
        .await
        .unwrap()
        .unwrap()
        .unread_count;

    let body = json!({"sender_fullname": "M1", "recipient_id": "group-50", "recipient_fullname": "Fifty", "text": "to all", "message_id": "g-msg-1"});
    let (code, _) = call(
        &aws.api,
        "POST",
        "/api/app1/messages",
        Some(&token("m01")),
        Some(body.to_string().as_bytes()),
    )
    .await;
    assert_eq!(code, 200);
    let batch = aws.receive().await;
    assert_eq!(batch.len(), 1);
    aws.deliver_batch(&batch, 2).await;
    assert!(aws.receive().await.is_empty());

    let mut everyone: Vec<String> = (1..50).map(|i| format!("m{i:02}")).collect();
    everyone.push("owner".into());
    let page = chat21::ports::PageRequest::first(1000);
    for member in &everyone {
        let timeline = aws
            .store
            .list_messages(APP, member, "group-50", &page)
            .await
            .unwrap()
            .items;
        let copies = timeline
            .iter()
            .filter(|m| m.message_id == "g-msg-1")
            .count();
        assert_eq!(copies, 1, "{member} has {copies} copies");
        assert_eq!(timeline[0].status, status::DELIVERED);
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
    let (code, _) = call(
        &aws.api,
        "POST",
        "/api/app1/groups",
        Some(&token("owner")),
        Some(body.to_string().as_bytes()),
    )
    .await;
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
    let (_, group) = call(
        &aws.api,
        "GET",
        "/api/app1/groups/group-open",
        Some(&token("owner")),
        None,
    )
    .await;
    assert_eq!(group["result"]["members"].as_object().unwrap().len(), 51);
    let events = aws.drain().await;
    let joins = events
        .iter()
        .filter(|e| e.event_type() == EventType::JoinMember)
        .count();
    assert_eq!(joins, 50, "one join-member event per join");
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
async fn an_unreachable_topic_answers_503_and_a_retry_finishes_the_send() {
    let aws = setup().await;
    let broken = api_with_topic(
        &aws.config,
        aws.store.clone(),
        "arn:aws:sns:us-east-1:123456789012:no-such-topic",
    );
    let body = json!({"sender_fullname": "One", "recipient_id": "u2", "recipient_fullname": "Two", "text": "hi", "message_id": "r-1"});
    let (code, error) = call(
        &broken,
        "POST",
        "/api/app1/messages",
        Some(&token("u1")),
        Some(body.to_string().as_bytes()),
    )
    .await;
    assert_eq!(code, 503, "{error}");
    assert_eq!(error["success"], false);
    assert_eq!(error["code"], "unavailable");
    assert!(aws.receive().await.is_empty());

    let (code, _) = call(
        &aws.api,
        "POST",
        "/api/app1/messages",
        Some(&token("u1")),
        Some(body.to_string().as_bytes()),
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = call(
        &aws.api,
        "POST",
        "/api/app1/messages",
        Some(&token("u1")),
        Some(body.to_string().as_bytes()),
    )
    .await;
    assert_eq!(
        code, 200,
        "a retry after success is answered from the record"
    );
    assert_eq!(
        aws.drain().await.len(),
        1,
        "published once by the retry, not again"
    );
    let page = chat21::ports::PageRequest::first(10);
    assert_eq!(
        aws.store
            .list_messages(APP, "u2", "u1", &page)
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    // Without a client id the failed send is rolled back: nothing stays behind.
    let body = json!({"sender_fullname": "One", "recipient_id": "u3", "recipient_fullname": "Three", "text": "lost"});
    let (code, _) = call(
        &broken,
        "POST",
        "/api/app1/messages",
        Some(&token("u1")),
        Some(body.to_string().as_bytes()),
    )
    .await;
    assert_eq!(code, 503);
    assert!(
        aws.store
            .list_messages(APP, "u1", "u3", &page)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        aws.store
            .get_conversation(APP, "u1", "u3")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_fails_alone() {
    let aws = setup().await;
    let body = json!({"sender_fullname": "One", "recipient_id": "u2", "recipient_fullname": "Two", "text": "ok"});
    call(
        &aws.api,
        "POST",
        "/api/app1/messages",
        Some(&token("u1")),
        Some(body.to_string().as_bytes()),
    )
    .await;
    let good = aws.receive().await;
    let forged = json!({"event_type": "message-sent", "createdAt": 1, "app_id": "app1", "recipient_id": "u2",
                        "data": {"message_id": "x", "sender": "u#1"}});
    // The same event claiming another tenant than its message's.
    let mut other_tenant: Value = serde_json::from_str(good[0].body.as_deref().unwrap()).unwrap();
    other_tenant["app_id"] = json!("app2");
    // A message claiming to be someone else's copy (it would touch their conversation).
    let mut foreign_copy: Value = serde_json::from_str(good[0].body.as_deref().unwrap()).unwrap();
    foreign_copy["data"]["timelineOf"] = json!("victim");
    let records = json!({ "Records": [
        { "messageId": "good", "body": good[0].body },
        { "messageId": "not-json", "body": "{{{" },
        { "messageId": "forged", "body": forged.to_string() },
        { "messageId": "other-tenant", "body": other_tenant.to_string() },
        { "messageId": "foreign-copy", "body": foreign_copy.to_string() },
    ]});
    let response = handle_sqs(&aws.api.deps, serde_json::from_value(records).unwrap()).await;
    let mut failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        vec!["foreign-copy", "forged", "not-json", "other-tenant"]
    );
    let page = chat21::ports::PageRequest::first(10);
    assert_eq!(
        aws.store
            .list_messages(APP, "u2", "u1", &page)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(
        aws.store
            .list_messages("app2", "u2", "u1", &page)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}
