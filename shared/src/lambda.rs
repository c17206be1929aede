//! Lambda wiring: what every function's `main` calls. Dependencies are built once per cold
//! start; each invocation goes straight to the shared HTTP glue or the deliver operation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::config_bag::ConfigBag;
use futures_util::future::join_all;
use lambda_http::{Request, service_fn};
use lambda_runtime::LambdaEvent;
use tracing::{error, warn};

use crate::adapters::dynamo::{DynamoStore, stream::streamed_of};
use crate::adapters::http::HttpClient as WebhookHttpClient;
use crate::adapters::sns::SnsEvents;
use crate::adapters::sqs::SqsRetries;
use crate::adapters::system::{SystemClock, UuidIds};
use crate::api::{self, Api};
use crate::config::{self, AwsConfig};
use crate::events::Event;
use crate::ops::webhooks::delivery::POST_TIMEOUT;
use crate::ops::webhooks::{WebhookConfig, Webhooks};
use crate::ops::{Deps, deliver};
use crate::ports::EventPublisher;
use crate::routes::Route;

pub type Error = lambda_http::Error;

/// JSON logs (CloudWatch adds the time), filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_target(false)
        .without_time()
        .with_current_span(false)
        .try_init();
}

/// The AWS SDK configuration: the standard chain (environment, profile files, web identity,
/// container and instance credentials; `AWS_ENDPOINT_URL*` honoured), built without network
/// calls, with one HTTPS client for every SDK client: rustls on ring (randomness straight from
/// the OS, `getrandom`), verifying servers against the system's root certificates as the SDK's
/// default client does. The default client's aws-lc seeds its DRBG from CPU jitter on first use:
/// ~30 ms of CPU on the 2-core development machine, in the first request of every cold start,
/// several times that on a fraction of a Lambda core (scripts/coldstart measures it).
pub async fn sdk_config() -> aws_config::SdkConfig {
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let https = PreparedOnce {
        inner: https,
        prepared: AtomicBool::new(false),
    };
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(SharedHttpClient::new(https))
        .load()
        .await
}

/// The SDK's HTTPS client builds a whole TLS configuration (root store included) when each SDK
/// client is built on it, so that the roots are loaded before the first request: once per
/// process is enough (the STS client of the credential chain, then DynamoDB, then SNS).
#[derive(Debug)]
struct PreparedOnce {
    inner: SharedHttpClient,
    prepared: AtomicBool,
}

impl HttpClient for PreparedOnce {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.inner.http_connector(settings, components)
    }

    fn validate_base_client_config(
        &self,
        components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        if self.prepared.load(Ordering::Acquire) {
            return Ok(());
        }
        self.inner.validate_base_client_config(components, cfg)?;
        self.prepared.store(true, Ordering::Release);
        Ok(())
    }

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.validate_final_config(components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

/// The production dependencies: a DynamoDB client, and an SNS client when the function
/// publishes events (`TOPIC_ARN` is required then, and only then).
pub async fn aws_deps(
    lookup: impl Fn(&str) -> Option<String>,
    publishes_events: bool,
) -> Result<Deps, Error> {
    let aws = AwsConfig::from_lookup(&lookup, publishes_events)?;
    let settings = config::settings_from_lookup(&lookup)?;
    let shared = sdk_config().await;
    let clock = Arc::new(SystemClock);
    let events: Arc<dyn EventPublisher> = match aws.topic_arn {
        Some(topic_arn) => Arc::new(SnsEvents::new(aws_sdk_sns::Client::new(&shared), topic_arn)),
        None => Arc::new(NoEvents),
    };
    Ok(Deps {
        store: Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&shared),
            aws.table,
        )),
        events,
        realtime: crate::realtime::aws::realtime_from_lookup(&lookup, &shared),
        clock,
        ids: Arc::new(UuidIds),
        settings,
    })
}

/// The event bus of a function that publishes none ([`Route::publishes_events`]); its role has
/// no `sns:Publish` either.
struct NoEvents;

#[async_trait]
impl EventPublisher for NoEvents {
    async fn publish(&self, events: &[Event]) -> crate::error::Result<()> {
        match events {
            [] => Ok(()),
            _ => Err(crate::error::Error::internal(
                "this function has no event bus (Route::publishes_events)",
            )),
        }
    }
}

/// Runs an HTTP function serving `route`. Refuses to start without a JWT key.
pub async fn serve_http(route: Route) -> Result<(), Error> {
    init_tracing();
    let verifier = config::verifier_from_lookup(config::env)?;
    let api = Api {
        deps: aws_deps(config::env, route.publishes_events()).await?,
        verifier,
    };
    let api = &api;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(api::handle(api, route, request).await)
    }))
    .await
}

/// Runs the deliver function: the table's stream (new message items and settled group
/// changes), with partial batch responses.
pub async fn serve_deliver() -> Result<(), Error> {
    init_tracing();
    let deps = aws_deps(config::env, true).await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<dynamodb::Event>| async move {
            Ok::<_, Error>(handle_stream(deps, event.payload).await)
        },
    ))
    .await
}

/// Delivers a batch of stream records in order. At the first that fails for a reason a retry
/// may cure, it stops and reports it: Lambda retries from there, so a group's messages are
/// never delivered out of order. A record that can never be delivered (malformed) is logged
/// and skipped, so it does not hold up the messages after it.
pub async fn handle_stream(deps: &Deps, event: dynamodb::Event) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    for record in event.records {
        let sequence = record.change.sequence_number.clone();
        let outcome = match streamed_of(record.change.new_image) {
            Ok(None) => Ok(()),
            Ok(Some(streamed)) => deliver::handle(deps, &streamed).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {}
            Err(e @ crate::Error::BadRequest(_)) => {
                error!(error = %e, sequence = ?sequence, "an undeliverable stream record, skipped");
            }
            Err(e) => {
                warn!(error = %e, sequence = ?sequence, "delivery failed; it will be retried");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = sequence;
                response.batch_item_failures.push(failure);
                break;
            }
        }
    }
    response
}

/// The webhooks consumer on AWS: tenants' endpoints in the table, retries on the function's
/// own queue (`WEBHOOK_QUEUE_URL`) and its dead-letter queue (`WEBHOOK_DEAD_LETTER_URL`), and
/// the configuration (`WEBHOOK_ENDPOINTS`, `WEBHOOK_EVENTS`, `WEBHOOK_SECRET`,
/// `WEBHOOK_ALLOWED_HOSTS`).
pub async fn aws_webhooks(lookup: impl Fn(&str) -> Option<String>) -> Result<Webhooks, Error> {
    let table = config::required(&lookup, "TABLE_NAME")?;
    let queue = config::required(&lookup, "WEBHOOK_QUEUE_URL")?;
    let dead_letters = config::required(&lookup, "WEBHOOK_DEAD_LETTER_URL")?;
    let config = WebhookConfig::from_lookup(&lookup)?;
    let shared = sdk_config().await;
    Ok(Webhooks::new(
        Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&shared),
            table,
        )),
        Arc::new(WebhookHttpClient::new(POST_TIMEOUT)?),
        Arc::new(SqsRetries::new(
            aws_sdk_sqs::Client::new(&shared),
            queue,
            dead_letters,
        )),
        Arc::new(SystemClock),
        config,
    ))
}

/// Runs the webhooks function: its queue (events from the topic, and retries), with partial
/// batch responses.
pub async fn serve_webhooks() -> Result<(), Error> {
    init_tracing();
    let webhooks = aws_webhooks(config::env).await?;
    let webhooks = &webhooks;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handle_webhooks(webhooks, event.payload).await)
    }))
    .await
}

/// Handles a batch of the webhooks queue, every record at once: each event to its endpoints,
/// each due retry. Only the records that must come back are reported failed (their retries
/// could not be queued, or the tenant's endpoints could not be read).
pub async fn handle_webhooks(webhooks: &Webhooks, event: SqsEvent) -> SqsBatchResponse {
    let outcomes = join_all(event.records.iter().map(|record| async move {
        let outcome = match &record.body {
            Some(body) => webhooks.handle_record(body).await,
            None => Ok(()),
        };
        (record.message_id.clone(), outcome)
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    for (id, outcome) in outcomes {
        if let Err(e) = outcome {
            warn!(error = %e, message_id = ?id, "a webhooks record failed; it will come back");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// aws-lc (the SDK's default TLS crypto, and jsonwebtoken's other backend) seeds its DRBG
    /// from CPU jitter on first use: ~30 ms of CPU in the first request of every cold start.
    /// `scripts/coldstart/run` measures it; this keeps it from coming back through a feature.
    #[test]
    fn aws_lc_is_not_in_the_build() {
        let lock = include_str!("../../Cargo.lock");
        for name in ["aws-lc-sys", "aws-lc-rs"] {
            assert!(
                !lock.contains(&format!("name = \"{name}\"")),
                "{name} is in Cargo.lock: see the AWS SDK comment in the workspace Cargo.toml"
            );
        }
    }

    #[tokio::test]
    async fn every_sdk_client_gets_the_https_client() {
        let config = sdk_config().await;
        assert!(config.http_client().is_some());
    }
}
