//! The rig: the deployed Lambda path on moto.

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::dynamodb;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record};
use chat21::adapters::dynamo::DynamoStore;
use chat21::adapters::dynamo::stream::{ORIGIN, streamed_of};
use chat21::adapters::sns::SnsEvents;
use chat21::adapters::system::{SystemClock, UuidIds};
use chat21::entry::http::Api;
use chat21::entry::stream::handle_stream;
use chat21::ops::Deps;
use chat21::ports::NoRealtime;
use chat21::routes::{self, Match};
use serde_json::{Value, json};

use crate::common;
use crate::model::CostModel;
use crate::recorder::{Recorder, Service, TableSchema};
use crate::{Invocation, Outcome, StreamCount};

/// What every scenario shares: the recorded clients, the topic, the model.
pub struct Env {
    pub recorder: Recorder,
    pub model: CostModel,
    config: aws_config::SdkConfig,
    plain: aws_sdk_dynamodb::Client,
    dynamo: aws_sdk_dynamodb::Client,
    sns: aws_sdk_sns::Client,
    topic_arn: String,
    settings: chat21::ops::Settings,
}

impl Env {
    pub async fn new(schema: TableSchema, model: CostModel) -> Env {
        let config = common::aws_config().await;
        let recorder = Recorder::new(schema);
        let dynamo = aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(recorder.spy(Service::DynamoDb))
            .build();
        let sns = aws_sdk_sns::config::Builder::from(&config)
            .interceptor(recorder.spy(Service::Sns))
            .build();
        let topic_arn = aws_sdk_sns::Client::new(&config)
            .create_topic()
            .name(common::unique("events"))
            .send()
            .await
            .expect("create the topic on moto")
            .topic_arn
            .expect("a topic ARN");
        // As deployed: DELIVERED_EVENTS from the environment, default true.
        let settings =
            chat21::ops::Settings::from_lookup(chat21::config::env).expect("DELIVERED_EVENTS");
        Env {
            recorder,
            model,
            plain: aws_sdk_dynamodb::Client::new(&config),
            dynamo: aws_sdk_dynamodb::Client::from_conf(dynamo),
            sns: aws_sdk_sns::Client::from_conf(sns),
            config,
            topic_arn,
            settings,
        }
    }

    pub fn delivered_events(&self) -> bool {
        self.settings.delivered_events
    }
}

/// One fresh table with the production schema (its stream on, new images), the API on it
/// as `entry::lambda::aws_deps` builds it (DynamoDB store, SNS events, no real-time endpoint,
/// system clock, UUIDs), and the table's stream as deliver's event source reads it. The
/// stream is read by a client of its own, not recorded: Lambda's reads of a stream that
/// triggers it are free.
pub struct Rig<'e> {
    env: &'e Env,
    api: Api,
    stream: common::StreamReader,
}

/// The origins of the new message items deliver delivers (a group change's system
/// messages, `origin: system`, are delivered by the settled change instead).
const DELIVERED_ORIGINS: [&str; 3] = ["direct", "group", "inline"];

/// Whether the deliver function's event source passes a stream record on. Mirrors the
/// FilterCriteria of the deliver function's `TableStream` event in template.yaml:
///
/// ```yaml
/// FilterCriteria:
///   Filters:
///     - Pattern: '{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"origin": {"S": ["direct", "group", "inline"]}}}}'
///     - Pattern: '{"eventName": ["MODIFY"], "dynamodb": {"NewImage": {"settled": {"BOOL": [true]}}}}'
/// ```
///
/// new message items, and group change records once settled. Everything else
/// (conversation rows, memberships, group metas, system messages, change records not yet
/// settled, removals) is dropped by the event source: free, no invocation.
fn passes_filter(record: &Record) -> bool {
    let Some(image) = record.dynamodb().and_then(|d| d.new_image()) else {
        return false;
    };
    let event = record.event_name().map(|e| e.as_str());
    let new_message = matches!(
        image.get(ORIGIN),
        Some(AttributeValue::S(origin)) if DELIVERED_ORIGINS.contains(&origin.as_str())
    );
    let settled = matches!(image.get("settled"), Some(AttributeValue::Bool(true)));
    (event == Some("INSERT") && new_message) || (event == Some("MODIFY") && settled)
}

/// Whether deliver acts on a record (what `entry::stream::handle_stream` reads from it).
fn deliver_acts_on(record: &Record) -> bool {
    let Some(image) = record.dynamodb().and_then(|d| d.new_image()) else {
        return false;
    };
    matches!(streamed_of(image.clone().into()), Ok(Some(_)))
}

/// Stream records as Lambda hands them to the deliver function.
fn lambda_event(records: &[Record]) -> dynamodb::Event {
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            let d = r.dynamodb().expect("a DynamoDB stream record");
            let image: serde_dynamo::Item = d.new_image().cloned().unwrap_or_default().into();
            let keys: serde_dynamo::Item = d.keys().cloned().unwrap_or_default().into();
            json!({
                "eventID": r.event_id(),
                "eventName": r.event_name().map(|e| e.as_str()),
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1_700_000_000,
                    "Keys": keys,
                    "NewImage": image,
                    "SequenceNumber": d.sequence_number(),
                    "SizeBytes": d.size_bytes(),
                    "StreamViewType": "NEW_IMAGE"
                },
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/chat21/stream/2026-01-01T00:00:00.000"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("a DynamoDB stream event")
}

impl<'e> Rig<'e> {
    pub async fn fresh(env: &'e Env) -> Rig<'e> {
        let table = common::unique("cost");
        common::create_table(&env.plain, &table).await;
        let clock = Arc::new(SystemClock);
        let deps = Deps {
            store: Arc::new(DynamoStore::new(env.dynamo.clone(), table.clone())),
            events: Arc::new(SnsEvents::new(env.sns.clone(), env.topic_arn.clone())),
            realtime: Arc::new(NoRealtime),
            clock,
            ids: Arc::new(UuidIds),
            settings: env.settings.clone(),
        };
        Rig {
            env,
            api: common::api_on(deps),
            stream: common::StreamReader::new(&env.config, &table),
        }
    }

    fn url(path: &str) -> String {
        format!("/api/{}{path}", common::APP)
    }

    async fn http(
        &self,
        method: &str,
        path: &str,
        caller: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let body = body.map(Value::to_string);
        let token = common::token(caller);
        common::call(
            &self.api,
            method,
            &Self::url(path),
            Some(&token),
            body.as_deref().map(str::as_bytes),
        )
        .await
    }

    /// A setup call (not measured); panics unless it succeeds.
    pub async fn call(&self, method: &str, path: &str, caller: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.http(method, path, caller, body.as_ref()).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
        answer
    }

    /// Delivers everything written so far, unmeasured.
    pub async fn settle(&self) {
        self.env.recorder.take_calls();
        self.deliver().await;
        self.env.recorder.take_calls();
    }

    /// Measures one HTTP call and everything it sets off.
    pub async fn measure(
        &self,
        name: &str,
        what: &str,
        method: &str,
        path: &str,
        caller: &str,
        body: Option<Value>,
    ) -> Outcome {
        self.settle().await;
        let function =
            match routes::find(method, &Self::url(path.split('?').next().unwrap_or(path))) {
                Match::Found(route, _) => route.function().to_string(),
                other => panic!("{method} {path} is not routed: {other:?}"),
            };
        let started = Instant::now();
        let (status, answer) = self.http(method, path, caller, body.as_ref()).await;
        let wall = started.elapsed();
        assert!((200..300).contains(&status), "{name}: {status} {answer}");
        let http = Invocation {
            function,
            calls: self.env.recorder.take_calls(),
            wall,
            records: 0,
        };
        let (deliveries, stream) = self.deliver().await;
        Outcome {
            name: name.to_string(),
            what: what.to_string(),
            http,
            answer,
            deliveries,
            stream,
        }
    }

    /// The table's stream → deliver, as the event source mapping runs it: the records
    /// written since the last read, filtered, in batches, each batch one invocation of
    /// `entry::stream::handle_stream`; again until the stream holds nothing new (deliver's own
    /// writes are records too, which the filter drops).
    async fn deliver(&self) -> (Vec<Invocation>, StreamCount) {
        let batch_size = self.env.model.source.batch_size;
        let mut invocations = Vec::new();
        let mut count = StreamCount::default();
        loop {
            let records = self.stream.records().await;
            if records.is_empty() {
                return (invocations, count);
            }
            count.records += records.len();
            let mut passed = Vec::new();
            for record in records {
                let acts = deliver_acts_on(&record);
                let passes = passes_filter(&record);
                assert!(
                    passes || !acts,
                    "the filter drops a record deliver needs: {record:?}"
                );
                if passes {
                    count.idle += usize::from(!acts);
                    passed.push(record);
                }
            }
            count.passed += passed.len();
            for batch in passed.chunks(batch_size) {
                let event = lambda_event(batch);
                let started = Instant::now();
                let response = handle_stream(&self.api.deps, event).await;
                let wall = started.elapsed();
                assert!(
                    response.batch_item_failures.is_empty(),
                    "deliver failed: {response:?}"
                );
                invocations.push(Invocation {
                    function: "deliver".into(),
                    calls: self.env.recorder.take_calls(),
                    wall,
                    records: batch.len(),
                });
            }
        }
    }
}
