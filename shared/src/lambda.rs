//! Lambda wiring: what every function's `main` calls. Dependencies are built once per cold
//! start; each invocation goes straight to the shared HTTP glue or the deliver operation.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_http::{Request, service_fn};
use lambda_runtime::LambdaEvent;
use tracing::{error, warn};

use crate::adapters::system::{SystemClock, UuidIds};
use crate::adapters::{dynamo::DynamoStore, sns::SnsEvents};
use crate::api::{self, Api};
use crate::config::{self, AwsConfig};
use crate::events::Event;
use crate::ops::{Deps, deliver};
use crate::realtime::NoRealtime;
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

/// The production dependencies: DynamoDB and SNS clients from the standard AWS configuration
/// chain (which also honours `AWS_ENDPOINT_URL*`), built without network calls.
pub async fn aws_deps(lookup: impl Fn(&str) -> Option<String>) -> Result<Deps, Error> {
    let aws = AwsConfig::from_lookup(&lookup)?;
    let settings = config::settings_from_lookup(&lookup)?;
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let clock = Arc::new(SystemClock);
    Ok(Deps {
        store: Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&shared),
            aws.table,
            clock.clone(),
        )),
        events: Arc::new(SnsEvents::new(
            aws_sdk_sns::Client::new(&shared),
            aws.topic_arn,
        )),
        realtime: Arc::new(NoRealtime),
        clock,
        ids: Arc::new(UuidIds),
        settings,
    })
}

/// Runs an HTTP function serving `route`. Refuses to start without a JWT key.
pub async fn serve_http(route: Route) -> Result<(), Error> {
    init_tracing();
    let verifier = config::verifier_from_lookup(config::env)?;
    let api = Api {
        deps: aws_deps(config::env).await?,
        verifier,
    };
    let api = &api;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(api::handle(api, route, request).await)
    }))
    .await
}

/// Runs the deliver function (SQS event source with partial batch responses).
pub async fn serve_deliver() -> Result<(), Error> {
    init_tracing();
    let deps = aws_deps(config::env).await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handle_sqs(deps, event.payload).await)
    }))
    .await
}

/// Reads one queue record: the event itself (raw delivery, as the template subscribes), or an
/// SNS notification envelope around it.
pub fn event_of(body: &str) -> Result<Event, String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let inner = match value.get("Type").and_then(|t| t.as_str()) {
        Some("Notification") => {
            let message = value
                .get("Message")
                .and_then(|m| m.as_str())
                .ok_or("SNS notification without a Message")?;
            serde_json::from_str(message).map_err(|e| format!("SNS Message is not JSON: {e}"))?
        }
        _ => value,
    };
    serde_json::from_value(inner).map_err(|e| format!("not an event: {e}"))
}

/// Delivers every record of a batch; failed records are reported so that only they are
/// retried (and land in the DLQ after the queue's receive limit).
pub async fn handle_sqs(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let outcome = match record.body.as_deref().map(event_of) {
            None => Err("record without a body".to_string()),
            Some(Err(e)) => Err(e),
            Some(Ok(event)) => deliver::handle(deps, &event)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(reason) = outcome {
            if id.is_empty() {
                error!(%reason, "failed record without a message id");
            } else {
                warn!(message_id = %id, %reason, "record failed; it will be retried");
            }
            response.add_failure(id);
        }
    }
    response
}
