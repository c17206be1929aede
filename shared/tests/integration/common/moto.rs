//! moto's server on loopback (started by `scripts/test`): the SDK configuration, a table with
//! the production schema and its stream read as Lambda would, SNS topics and SQS queues
//! subscribed as the template does.

use aws_lambda_events::event::dynamodb;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, LocalSecondaryIndex, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
};
use chat21::adapters::dynamo::ORDER_INDEX;
use chat21::adapters::dynamo::stream::streamed_of;
use chat21::events::Event;
use chat21::ports::Streamed;

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
