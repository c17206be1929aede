//! Test harness shared by the integration suites: the same deps on SQLite (in memory) or on
//! DynamoDB (moto's server on loopback, started by `scripts/test`).
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lambda_events::event::dynamodb;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, LocalSecondaryIndex, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
};
use chat21::adapters::dynamo::stream::streamed_of;
use chat21::adapters::dynamo::{DynamoStore, ORDER_INDEX};
use chat21::adapters::embedded::{EmbeddedEvents, RecordingRealtime};
use chat21::adapters::sqlite::SqliteStore;
use chat21::events::Event;
use chat21::ids::Id;
use chat21::model::EventType;
use chat21::model::{Caller, Conversation, Message};
use chat21::ops::messages::SendMessage;
use chat21::ops::{Deps, Settings, conversations, deliver, messages};
use chat21::ports::{Clock, IdSource, Page, PageRequest, Streamed, Timeline};

/// A clock that moves forward by one millisecond per reading: deterministic order.
pub struct StepClock(AtomicU64);

impl Clock for StepClock {
    fn now_ms(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

pub struct SeqIds(AtomicU64);

impl IdSource for SeqIds {
    fn new_id(&self) -> String {
        format!("id-{:06}", self.0.fetch_add(1, Ordering::SeqCst))
    }
}

pub const APP: &str = "app1";

/// A valid id (test data only).
pub fn id(raw: &str) -> Id {
    Id::parse("id", raw).unwrap_or_else(|e| panic!("{raw:?} is not a valid id: {e}"))
}

pub fn user(user_id: &str) -> Caller {
    Caller {
        user_id: id(user_id),
        app_id: id(APP),
        admin: false,
    }
}

pub fn admin(user_id: &str) -> Caller {
    Caller {
        user_id: id(user_id),
        app_id: id(APP),
        admin: true,
    }
}

/// Logs of the code under test, shown for failing tests (`RUST_LOG`, default warn).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// The moto endpoint from the environment; refuses anything but loopback.
pub fn moto_endpoint() -> String {
    init_logs();
    let url = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!("AWS_ENDPOINT_URL is not set: run the suites with scripts/test, which starts moto's server")
    });
    assert!(
        url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:"),
        "tests only talk to a loopback emulator, not {url}"
    );
    url
}

pub async fn aws_config() -> aws_config::SdkConfig {
    moto_endpoint();
    // The functions' own configuration (and HTTP client).
    chat21::adapters::aws::sdk_config().await
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Creates a table with the production schema (template.yaml's).
pub async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .unwrap()
    };
    let index = LocalSecondaryIndex::builder()
        .index_name(ORDER_INDEX)
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("order_key", KeyType::Range))
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .unwrap();
    client
        .create_table()
        .table_name(name)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .attribute_definitions(attr("order_key"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .local_secondary_indexes(index)
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create table on moto");
}

/// Reads a table's stream (moto's one shard) from where the last read stopped: what Lambda's
/// event source mapping does on AWS.
pub struct StreamReader {
    client: aws_sdk_dynamodbstreams::Client,
    table: String,
    /// The stream, and the sequence number of the last record read.
    position: tokio::sync::Mutex<(Option<String>, Option<String>)>,
}

impl StreamReader {
    pub fn new(config: &aws_config::SdkConfig, table: &str) -> StreamReader {
        StreamReader {
            client: aws_sdk_dynamodbstreams::Client::new(config),
            table: table.to_string(),
            position: tokio::sync::Mutex::new((None, None)),
        }
    }

    /// Every record written since the last call, oldest first. A fresh shard iterator each
    /// time, after the last record read: moto replaces the shard when it rolls back a failed
    /// transaction, and an old iterator would read the replaced one.
    pub async fn records(&self) -> Vec<aws_sdk_dynamodbstreams::types::Record> {
        use aws_sdk_dynamodbstreams::types::ShardIteratorType;
        let mut position = self.position.lock().await;
        let arn = match &position.0 {
            Some(arn) => arn.clone(),
            None => {
                let streams = self
                    .client
                    .list_streams()
                    .table_name(&self.table)
                    .send()
                    .await
                    .expect("list streams");
                let arn = streams.streams()[0].stream_arn().unwrap().to_string();
                position.0 = Some(arn.clone());
                arn
            }
        };
        let stream = self
            .client
            .describe_stream()
            .stream_arn(&arn)
            .send()
            .await
            .expect("describe stream");
        let shard = stream.stream_description().unwrap().shards()[0]
            .shard_id()
            .unwrap()
            .to_string();
        let start = self
            .client
            .get_shard_iterator()
            .stream_arn(&arn)
            .shard_id(shard)
            .shard_iterator_type(match position.1 {
                Some(_) => ShardIteratorType::AfterSequenceNumber,
                None => ShardIteratorType::TrimHorizon,
            })
            .set_sequence_number(position.1.clone())
            .send()
            .await
            .expect("shard iterator");
        let mut iterator = start.shard_iterator().map(str::to_string);
        let mut records = Vec::new();
        while let Some(current) = iterator {
            let out = self
                .client
                .get_records()
                .shard_iterator(current)
                .send()
                .await
                .expect("get records");
            if out.records().is_empty() {
                break;
            }
            iterator = out.next_shard_iterator().map(str::to_string);
            records.extend(out.records().iter().cloned());
        }
        if let Some(last) = records.last().and_then(|r| r.dynamodb()?.sequence_number()) {
            position.1 = Some(last.to_string());
        }
        records
    }

    /// The records since the last call as Lambda hands them to the deliver function.
    pub async fn lambda_event(&self) -> dynamodb::Event {
        let images: Vec<(serde_dynamo::Item, String)> = self
            .records()
            .await
            .into_iter()
            .filter_map(|r| {
                let d = r.dynamodb()?;
                Some((
                    d.new_image()?.clone().into(),
                    d.sequence_number()?.to_string(),
                ))
            })
            .collect();
        stream_event(&images)
    }

    /// What the deliver step is handed among the records since the last call.
    pub async fn written(&self) -> Vec<Streamed> {
        let mut written = Vec::new();
        for record in self.records().await {
            let Some(image) = record.dynamodb().and_then(|d| d.new_image()) else {
                continue;
            };
            let item: serde_dynamo::Item = image.clone().into();
            if let Some(w) = streamed_of(item).expect("a readable stream record") {
                written.push(w);
            }
        }
        written
    }
}

/// A DynamoDB stream event as Lambda hands it to the deliver function (parsed from its JSON):
/// one INSERT record per new image, with its sequence number.
pub fn stream_event(images: &[(serde_dynamo::Item, String)]) -> dynamodb::Event {
    let records: Vec<serde_json::Value> = images
        .iter()
        .map(|(image, sequence)| {
            let image = serde_json::to_value(image).unwrap();
            serde_json::json!({
                "eventID": sequence,
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1_700_000_000,
                    "Keys": {"pk": image["pk"], "sk": image["sk"]},
                    "NewImage": image,
                    "SequenceNumber": sequence,
                    "SizeBytes": 256,
                    "StreamViewType": "NEW_IMAGE"
                },
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/chat21/stream/2026-01-01T00:00:00.000"
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

/// Where the new messages a store writes come from: the SQLite store's outbox, or the
/// DynamoDB table's stream.
pub enum Stream {
    Sqlite(Arc<SqliteStore>),
    Dynamo(StreamReader),
}

/// Deps plus the recording event bus and real-time publisher, and the store's stream of new
/// messages, on either store.
#[derive(Clone)]
pub struct Harness {
    pub deps: Deps,
    pub events: Arc<EmbeddedEvents>,
    pub realtime: Arc<RecordingRealtime>,
    pub dynamo: Option<Arc<DynamoStore>>,
    pub stream: Arc<Stream>,
    /// Every new message delivered so far (to deliver again: a redelivery).
    pub delivered: Arc<std::sync::Mutex<Vec<Streamed>>>,
}

/// The clock every harness starts from.
pub fn step_clock() -> Arc<StepClock> {
    Arc::new(StepClock(AtomicU64::new(1_700_000_000_000)))
}

fn deps_with(
    store: Arc<dyn chat21::ports::Store>,
    events: Arc<EmbeddedEvents>,
    realtime: Arc<RecordingRealtime>,
) -> Deps {
    Deps {
        store,
        events,
        realtime,
        clock: step_clock(),
        ids: Arc::new(SeqIds(AtomicU64::new(1))),
        settings: Settings::default(),
    }
}

impl Harness {
    /// A fresh in-memory SQLite store; the test plays the deliver step from its outbox.
    pub fn sqlite() -> Harness {
        let events = Arc::new(EmbeddedEvents::new());
        let realtime = Arc::new(RecordingRealtime::new());
        let store = Arc::new(SqliteStore::memory().expect("an in-memory database"));
        Harness {
            deps: deps_with(store.clone(), events.clone(), realtime.clone()),
            events,
            realtime,
            dynamo: None,
            stream: Arc::new(Stream::Sqlite(store)),
            delivered: Default::default(),
        }
    }

    /// A fresh table on moto, so that tests running in parallel never see each other's data.
    pub async fn dynamo() -> Harness {
        let config = aws_config().await;
        let client = aws_sdk_dynamodb::Client::new(&config);
        let table = unique("chat21");
        create_table(&client, &table).await;
        let store = Arc::new(DynamoStore::new(client, table.clone()));
        let events = Arc::new(EmbeddedEvents::new());
        let realtime = Arc::new(RecordingRealtime::new());
        Harness {
            deps: deps_with(store.clone(), events.clone(), realtime.clone()),
            events,
            realtime,
            dynamo: Some(store),
            stream: Arc::new(Stream::Dynamo(StreamReader::new(&config, &table))),
            delivered: Default::default(),
        }
    }

    /// The new messages (and settled group changes) written since the last call, not
    /// delivered.
    pub async fn take_written(&self) -> Vec<Streamed> {
        match &*self.stream {
            Stream::Sqlite(store) => store.take_deliveries().await.expect("the outbox"),
            Stream::Dynamo(reader) => reader.written().await,
        }
    }

    /// Delivers what the stream holds now, in order; returns how many.
    async fn deliver_pending(&self) -> usize {
        let written = self.take_written().await;
        for w in &written {
            deliver::handle(&self.deps, w).await.expect("deliver");
        }
        let n = written.len();
        self.delivered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(written);
        n
    }

    /// Runs the deliver step for every new message, in order, until none are left (what the
    /// table's stream and the deliver function do on AWS). Returns every event published so
    /// far (by the operations and by deliver).
    pub async fn deliver_all(&self) -> Vec<Event> {
        while self.deliver_pending().await > 0 {}
        self.events.take()
    }

    /// Runs the deliver step alongside whatever the test does next (as the stream does on
    /// AWS), until the returned stop is called; the stop waits for it to finish.
    pub fn deliver_in_background(&self) -> impl AsyncFnOnce() {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let h = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let done = stopped.load(Ordering::SeqCst);
                if h.deliver_pending().await == 0 {
                    if done {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
        });
        async move || {
            stop.store(true, Ordering::SeqCst);
            task.await.expect("the background deliver step");
        }
    }

    /// Delivers every message delivered so far again (a redelivery); returns how many.
    pub async fn redeliver_all(&self) -> usize {
        let all = self
            .delivered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for w in &all {
            deliver::handle(&self.deps, w).await.expect("redeliver");
        }
        all.len()
    }

    pub async fn send(&self, from: &Caller, to: &str, text: &str) -> chat21::Result<Message> {
        messages::send_message(&self.deps, from, input(to, text)).await
    }

    pub async fn send_with(&self, from: &Caller, input: SendMessage) -> chat21::Result<Message> {
        messages::send_message(&self.deps, from, input).await
    }

    /// What `owner` sees of their conversation with `with` (their copies, as stored: no
    /// receipts derived).
    pub async fn timeline(&self, owner: &str, with: &str) -> Vec<Message> {
        let page = PageRequest::first(1000);
        conversations::copies(&self.deps, APP, owner, with, &page)
            .await
            .unwrap()
            .items
    }

    /// A group's own history.
    pub async fn history(&self, group: &str) -> Vec<Message> {
        let page = PageRequest::first(1000);
        let history = Timeline::History {
            app: APP.into(),
            group: group.into(),
        };
        self.deps
            .store
            .list_timeline(&history, None, None, &page)
            .await
            .unwrap()
            .items
    }

    /// The timeline as its owner reads it over the API (with derived receipts).
    pub async fn read_timeline(&self, owner: &str, with: &str) -> Vec<Message> {
        let page = PageRequest::first(1000);
        conversations::messages(&self.deps, &user(owner), id(owner), &id(with), &page)
            .await
            .unwrap()
            .items
    }

    pub async fn conversation(&self, owner: &str, with: &str) -> Option<Conversation> {
        self.deps
            .store
            .get_conversation(APP, owner, with)
            .await
            .unwrap()
    }

    pub async fn list(&self, owner: &str, archived: bool) -> Page<Conversation> {
        conversations::list(
            &self.deps,
            &user(owner),
            id(owner),
            archived,
            &PageRequest::first(1000),
        )
        .await
        .unwrap()
    }

    pub async fn members(&self, group: &str) -> Vec<String> {
        self.deps.store.members(APP, group).await.unwrap()
    }
}

pub fn input(to: &str, text: &str) -> SendMessage {
    SendMessage {
        sender_fullname: "Sender".into(),
        recipient_id: id(to),
        recipient_fullname: "Recipient".into(),
        text: text.into(),
        kind: None,
        channel_type: None,
        attributes: None,
        metadata: None,
        timestamp: None,
        sender_id: None,
        message_id: None,
        group_members: None,
    }
}

pub fn count(events: &[Event], kind: EventType) -> usize {
    events.iter().filter(|e| e.event_type() == kind).count()
}

pub fn label(message: &Message) -> Option<String> {
    message
        .attribute("messagelabel")?
        .get("key")?
        .as_str()
        .map(str::to_string)
}

/// The key the HTTP-level tests sign their tokens with.
pub const KEY: &[u8] = b"test-key";

pub fn token_for(sub: &str, app: &str, admin: bool) -> String {
    let mut claims = serde_json::json!({
        "sub": sub,
        "app_id": app,
        "exp": jsonwebtoken::get_current_timestamp() + 3600,
    });
    if admin {
        claims["tiledesk_api_roles"] = "admin".into();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY),
    )
    .unwrap()
}

pub fn token(sub: &str) -> String {
    token_for(sub, APP, false)
}

pub fn api_on(deps: Deps) -> chat21::entry::http::Api {
    chat21::entry::http::Api {
        deps,
        verifier: chat21::auth::JwtVerifier::hs256(KEY).unwrap(),
    }
}

/// Calls the API as API Gateway would: the route table picks the route and path parameters,
/// the query string becomes query parameters. Returns the status and the JSON body.
pub async fn call(
    api: &chat21::entry::http::Api,
    method: &str,
    path_and_query: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, serde_json::Value) {
    let mut headers = Vec::new();
    if let Some(token) = token {
        headers.push(("authorization", token));
    }
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let (status, _, text) = call_raw(api, None, method, path_and_query, &headers, body).await;
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}

/// A request with exactly the given headers, and optionally a forced route (the banner
/// function also serves API Gateway's catch-all route). Returns the status, the
/// Content-Type and the body text.
pub async fn call_raw(
    api: &chat21::entry::http::Api,
    route: Option<chat21::routes::Route>,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> (u16, Option<String>, String) {
    use chat21::lambda_http::{Body, RequestExt};
    use chat21::routes::{self, Match};
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let (route, params) = match (route, routes::find(method, path)) {
        (Some(route), _) => (route, std::collections::HashMap::new()),
        (None, Match::Found(route, params)) => (route, params),
        (None, other) => panic!("{method} {path} is not routed: {other:?}"),
    };
    let mut builder = http::Request::builder().method(method).uri(path_and_query);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = body.map_or(Body::Empty, |b| Body::Binary(b.to_vec()));
    let query: chat21::lambda_http::aws_lambda_events::query_map::QueryMap = query.parse().unwrap();
    let request = builder
        .body(body)
        .unwrap()
        .with_path_parameters(params)
        .with_query_string_parameters(query);
    let response = chat21::entry::http::handle(api, route, request).await;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes: &[u8] = response.body().as_ref();
    (
        status,
        content_type,
        String::from_utf8_lossy(bytes).into_owned(),
    )
}

/// One request a [`Recorder`] received.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    /// The path, percent-decoded, and the query.
    pub path: String,
    pub query: String,
    pub body: Vec<u8>,
}

impl Recorded {
    /// An IoT data-plane Publish (`POST /topics/{topic}?qos=1`) as the push it carried.
    pub fn as_push(&self) -> Option<(String, serde_json::Value)> {
        let topic = self.path.strip_prefix("/topics/")?;
        Some((
            topic.to_string(),
            serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null),
        ))
    }
}

/// An HTTP endpoint on loopback that records every request and answers 200 `{}` (or 503 while
/// told to fail): stands in for IoT Core's data plane (moto keeps publishes in-process) and
/// for CloudFormation's custom-resource response URL.
#[derive(Clone)]
pub struct Recorder {
    pub url: String,
    requests: Arc<std::sync::Mutex<Vec<Recorded>>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let recorder = Recorder {
            url,
            requests: Default::default(),
            failing: Default::default(),
        };
        let serving = recorder.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serving.clone().serve(stream));
            }
        });
        recorder
    }

    /// Answers 503 to every request from now until told otherwise.
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Everything received so far, and forgets it.
    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.requests.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The IoT publishes received so far (topic, JSON payload), and forgets them.
    pub fn take_pushes(&self) -> Vec<(String, serde_json::Value)> {
        self.take().iter().filter_map(Recorded::as_push).collect()
    }

    /// HTTP/1.1 with keep-alive, bodies by Content-Length (what the SDK and urllib send).
    async fn serve(self, mut stream: tokio::net::TcpStream) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let head_end = loop {
                if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
            let mut lines = head.lines();
            let mut first = lines.next().unwrap_or_default().split(' ');
            let method = first.next().unwrap_or_default().to_string();
            let target = first.next().unwrap_or_default().to_string();
            let length: usize = lines
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            while buffer.len() < head_end + length {
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            let body = buffer[head_end..head_end + length].to_vec();
            buffer.drain(..head_end + length);
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let path = percent_encoding::percent_decode_str(path)
                .decode_utf8_lossy()
                .into_owned();
            let failing = self.failing.load(Ordering::SeqCst);
            if !failing {
                self.requests
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Recorded {
                        method,
                        path,
                        query: query.to_string(),
                        body,
                    });
            }
            let response: &[u8] = if failing {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            };
            if stream.write_all(response).await.is_err() {
                return;
            }
        }
    }
}

/// A clock the test moves by hand (webhook backoffs take a day; the tests take no time).
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn at(ms: u64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicU64::new(ms)))
    }

    pub fn set(&self, ms: u64) {
        self.0.fetch_max(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// One POST a [`RecordingClient`] was asked to make.
#[derive(Debug, Clone)]
pub struct Posted {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Posted {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A webhooks HTTP client that sends nothing: it records each POST and answers 200.
#[derive(Default)]
pub struct RecordingClient {
    pub posted: std::sync::Mutex<Vec<Posted>>,
}

#[async_trait::async_trait]
impl chat21::ports::WebhookClient for RecordingClient {
    async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: &str,
    ) -> chat21::ports::PostOutcome {
        self.posted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Posted {
                url: url.to_string(),
                headers: headers.to_vec(),
                body: body.to_string(),
            });
        chat21::ports::PostOutcome::Delivered(200)
    }
}

/// An event as a queue subscribed to the topic with raw delivery (as the template subscribes)
/// receives it.
pub fn event_of(body: &str) -> Event {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not an event: {e}: {body}"))
}

/// A new SNS topic on moto; its ARN.
pub async fn create_topic(sns: &aws_sdk_sns::Client) -> String {
    sns.create_topic()
        .name(unique("events"))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap()
}

/// A new SQS queue on moto named after `name`; its URL.
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(unique(name))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone()
}

/// Subscribes the queue to the topic as the template does (raw messages), with a filter
/// policy on the message attributes if given.
pub async fn subscribe_queue(
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    filter: Option<serde_json::Value>,
) {
    let mut subscribe = sns
        .subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn(sqs, queue_url).await)
        .attributes("RawMessageDelivery", "true");
    if let Some(filter) = filter {
        subscribe = subscribe.attributes("FilterPolicy", filter.to_string());
    }
    subscribe.send().await.unwrap();
}
