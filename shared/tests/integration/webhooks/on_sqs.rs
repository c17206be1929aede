//! The Lambda path on moto's SQS: partial batch failures, retries as delayed messages, the
//! dead-letter queue; and from the topic through the template's filtered subscription to a
//! Tiledesk-style receiver.

use super::*;

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
