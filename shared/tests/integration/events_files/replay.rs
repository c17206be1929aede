//! Replaying one sample event through its function's handler, as Lambda would hand it over:
//! HTTP events through the route's handler, stream records through deliver, IoT Core's
//! authorizer requests and rule events, the webhooks queue's batch; all against one store.

use super::*;

pub(super) struct Harness {
    pub(super) api: Api,
    /// The webhooks consumer, on the same store, sending nothing (it records its POSTs).
    pub(super) webhooks: Webhooks,
    pub(super) posted: Arc<RecordingClient>,
    /// Its outbox is the store's stream of new messages.
    pub(super) store: Arc<SqliteStore>,
    pub(super) events: Arc<EmbeddedEvents>,
    /// What was published to clients (and which retained messages were cleared).
    pub(super) realtime: Arc<RecordingRealtime>,
    /// Written and not yet handed to deliver.
    pub(super) pending: Vec<Streamed>,
}

impl Harness {
    pub(super) fn new() -> Harness {
        let store = Arc::new(SqliteStore::memory().unwrap());
        let events = Arc::new(EmbeddedEvents::new());
        let realtime = Arc::new(RecordingRealtime::new());
        let deps = Deps {
            store: store.clone(),
            events: events.clone(),
            realtime: realtime.clone(),
            clock: Arc::new(SystemClock),
            ids: Arc::new(UuidIds),
            settings: Settings::default(),
        };
        let verifier = JwtVerifier::hs256(KEY).unwrap();
        let posted = Arc::new(RecordingClient::default());
        let webhooks = Webhooks::new(
            store.clone(),
            posted.clone(),
            Arc::new(MemoryRetries::new(Arc::new(SystemClock), 100)),
            Arc::new(SystemClock),
            WebhookConfig::default(),
        );
        Harness {
            api: Api { deps, verifier },
            webhooks,
            posted,
            store,
            events,
            realtime,
            pending: Vec::new(),
        }
    }

    pub(super) async fn take_written(&mut self) {
        let written = self.store.take_deliveries().await.unwrap();
        self.pending.extend(written);
    }

    /// Hands the new messages to deliver as the table's stream would, until none are left.
    pub(super) async fn pump(&mut self) {
        loop {
            self.take_written().await;
            if self.pending.is_empty() {
                return;
            }
            let images: Vec<(serde_dynamo::Item, String)> = self
                .pending
                .drain(..)
                .enumerate()
                .map(|(i, w)| (image_of(&w).unwrap(), format!("{}", 1000 + i)))
                .collect();
            let response = stream::handle_stream(&self.api.deps, stream_event(&images)).await;
            assert!(
                response.batch_item_failures.is_empty(),
                "deliver failed on new messages: {:?}",
                response.batch_item_failures
            );
        }
    }

    pub(super) async fn timeline(&self, owner: &str, with: &str) -> Vec<Message> {
        conversations::copies(&self.api.deps, APP, owner, with, &PageRequest::first(500))
            .await
            .unwrap()
            .items
    }

    /// The timeline as its owner reads it over the API (receipts derived).
    pub(super) async fn read_timeline(&self, owner: &str, with: &str) -> Vec<Message> {
        let id = |raw: &str| chat21::ids::Id::parse("id", raw).unwrap();
        let caller = chat21::model::Caller {
            user_id: id(owner),
            app_id: id(APP),
            admin: false,
        };
        let page = PageRequest::first(500);
        conversations::messages(&self.api.deps, &caller, id(owner), &id(with), &page)
            .await
            .unwrap()
            .items
    }

    pub(super) async fn members(&self) -> Vec<String> {
        let mut members = self.store.members(APP, GROUP).await.unwrap();
        members.sort();
        members
    }
}

/// Runs one HTTP event through its function's handler; returns the JSON body.
pub(super) async fn replay_http(h: &Harness, stem: &str, function: &str, json: &str) -> Value {
    let raw: Value = serde_json::from_str(json).unwrap();
    let route_key = raw["routeKey"].as_str().unwrap();
    let (method, _) = route_key.split_once(' ').unwrap();
    let route = route_of(function);
    // The concrete path is one API Gateway sends to this route, with these path parameters.
    let raw_path = raw["rawPath"].as_str().unwrap();
    let params: HashMap<String, String> =
        serde_json::from_value(raw["pathParameters"].clone()).unwrap_or_default();
    assert_eq!(
        routes::find(method, raw_path),
        Match::Found(route, params),
        "events/{stem}.json: {method} {raw_path} does not match its route and pathParameters"
    );
    assert_eq!(raw["requestContext"]["routeKey"], raw["routeKey"]);

    let request = lambda_http::request::from_str(json)
        .unwrap_or_else(|e| panic!("events/{stem}.json is not an HTTP API event: {e}"));
    assert_eq!(request.method().as_str(), method, "events/{stem}.json");
    assert!(
        request.path_parameters_ref().is_some() || raw["pathParameters"].is_null(),
        "events/{stem}.json: path parameters lost"
    );
    let response = http::handle(&h.api, route, request).await;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body: &Body = response.body();
    let text = String::from_utf8(body.as_ref().to_vec()).unwrap();
    let expected = if ["create-group", "put-webhook"].contains(&stem) {
        201
    } else {
        200
    };
    assert_eq!(
        status, expected,
        "events/{stem}.json answered {status}: {text}"
    );
    if route == Route::Banner {
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        assert!(text.starts_with("Chat21 HTTP API"), "{text}");
        return Value::Null;
    }
    assert_eq!(content_type, "application/json", "events/{stem}.json");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["success"], true, "events/{stem}.json: {body}");
    body
}

/// Runs the DynamoDB stream event; each record's new image must be what the store wrote for a
/// message some function sent (so the sample is what production streams), and deliver must
/// accept it.
pub(super) async fn replay_stream(h: &mut Harness, json: &str) {
    let event: dynamodb::Event =
        serde_json::from_str(json).expect("events/deliver.json is not a DynamoDB stream event");
    assert!(!event.records.is_empty());
    h.take_written().await;
    for record in &event.records {
        let written = streamed_of(record.change.new_image.clone())
            .expect("a readable record")
            .expect("a new message's record");
        let Streamed::Message(sample) = &written else {
            panic!("events/deliver.json carries a record that is not a message");
        };
        assert!(
            record.change.new_image.get("written_at").is_some(),
            "the sample's message carries its write time"
        );
        // The same message, written when the sample says (the store wrote it at this clock's
        // now).
        let at = h
            .pending
            .iter()
            .position(|w| match w {
                Streamed::Message(w) => {
                    (&w.message, &w.origin) == (&sample.message, &sample.origin)
                }
                _ => false,
            })
            .unwrap_or_else(|| {
                panic!(
                    "events/deliver.json carries a message nothing sent; written: {:#?}",
                    h.pending
                )
            });
        let Streamed::Message(stored) = &h.pending[at] else {
            unreachable!("matched a message");
        };
        let stored = Streamed::Message(chat21::ports::Written {
            written_at: sample.written_at,
            ..stored.clone()
        });
        assert_eq!(
            serde_json::to_value(&record.change.new_image).unwrap(),
            serde_json::to_value(image_of(&stored).unwrap()).unwrap(),
            "the sample's new image is the item the store writes"
        );
        // This record is its delivery.
        h.pending.remove(at);
    }
    let response = stream::handle_stream(&h.api.deps, event).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "deliver reported failures: {:?}",
        response.batch_item_failures
    );
}

/// Runs an MQTT CONNECT through the authorizer's entry point: the valid tokens get exactly
/// REALTIME.md's table (checked by the IoT policy evaluator of `iot_policy.rs`), the others a
/// refusal.
pub(super) fn replay_authorizer(h: &Harness, stem: &str, json: &str) {
    let event: Value = serde_json::from_str(json).unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    let response = authorizer::authorizer_response(&h.api.verifier, AUTHORIZER_ARN, now, &event);
    let user = match stem {
        "authorizer" => Some("user-1"),
        "authorizer-mapped-id" => Some("jane_doe@acme$corp"),
        _ => None,
    };
    let Some(user) = user else {
        assert_eq!(
            response["isAuthenticated"], false,
            "events/{stem}.json: {response}"
        );
        return;
    };
    assert_eq!(
        response["isAuthenticated"], true,
        "events/{stem}.json: {response}"
    );
    assert_eq!(
        response["principalId"],
        chat21::realtime::authorizer::principal_id(APP, user)
    );
    assert_eq!(response["disconnectAfterInSeconds"], 86_400);
    assert_eq!(response["refreshAfterInSeconds"], 3_600);
    let client = event["protocolData"]["mqtt"]["clientId"].as_str().unwrap();
    crate::iot_policy::check_policy_against_realtime_table(
        response["policyDocuments"].as_array().unwrap(),
        "arn:aws:iot:us-east-1:123456789012:",
        APP,
        user,
        client,
    );
}

/// Runs the SQS batch of the webhooks queue through the webhooks handler.
pub(super) async fn replay_queue(h: &Harness, json: &str) {
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(json).expect("events/webhooks.json is not an SQS event");
    assert!(!event.records.is_empty());
    for record in &event.records {
        let body = record.body.as_deref().expect("a record without a body");
        let parsed: chat21::events::Event = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("events/webhooks.json: a record is not an event: {e}"));
        // The message attributes are the ones the topic sets (what the subscription filters).
        for (name, value) in parsed.attributes() {
            assert_eq!(
                record.message_attributes[name].string_value.as_deref(),
                Some(value.as_str()),
                "events/webhooks.json: attribute {name}"
            );
        }
    }
    let response = webhooks::handle_webhooks(&h.webhooks, event).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "webhooks reported failures: {:?}",
        response.batch_item_failures
    );
}
