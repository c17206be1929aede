//! Lambda wiring: what every function's `main` calls. Dependencies are built once per cold
//! start; each invocation goes straight to the shared HTTP glue or the deliver operation.

use std::sync::Arc;

use async_trait::async_trait;
use lambda_http::{Request, service_fn};

use crate::adapters::aws::sdk_config;
use crate::adapters::dynamo::DynamoStore;
use crate::adapters::iot::realtime_from_lookup;
use crate::adapters::sns::SnsEvents;
use crate::adapters::system::{SystemClock, UuidIds};
use crate::config::{self, AwsConfig};
use crate::entry::http::{Api, handle};
use crate::events::Event;
use crate::ops::{Deps, Settings};
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

/// The production dependencies: a DynamoDB client, and an SNS client when the function
/// publishes events (`TOPIC_ARN` is required then, and only then).
pub async fn aws_deps(
    lookup: impl Fn(&str) -> Option<String>,
    publishes_events: bool,
) -> Result<Deps, Error> {
    let aws = AwsConfig::from_lookup(&lookup, publishes_events)?;
    let settings = Settings::from_lookup(&lookup)?;
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
        realtime: realtime_from_lookup(&lookup, &shared),
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
        Ok::<_, Error>(handle(api, route, request).await)
    }))
    .await
}
