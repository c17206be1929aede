//! The webhooks function: its queue (events from the topic, and retries), a batch of records
//! at a time.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures_util::future::join_all;
use lambda_http::service_fn;
use lambda_runtime::LambdaEvent;
use tracing::{error, warn};

use crate::adapters::aws::sdk_config;
use crate::adapters::dynamo::DynamoStore;
use crate::adapters::embedded::MemoryRetries;
use crate::adapters::http::HttpClient;
use crate::adapters::sqs::SqsRetries;
use crate::adapters::system::SystemClock;
use crate::config;
use crate::entry::lambda::{Error, init_tracing};
use crate::ops::webhooks::delivery::POST_TIMEOUT;
use crate::ops::webhooks::{WebhookConfig, Webhooks};

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
        Arc::new(HttpClient::new(POST_TIMEOUT)?),
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

/// The in-process retry queue's consumer (`chat21-local`, and tests): hands each retry to the
/// webhooks consumer when it is due, each in its own task, until the process ends.
pub async fn run_memory_retries(retries: Arc<MemoryRetries>, webhooks: Arc<Webhooks>) {
    loop {
        for message in retries.due().await {
            let webhooks = webhooks.clone();
            tokio::spawn(async move {
                if let Err(e) = webhooks.handle_record(&message).await {
                    error!(error = %e, "a webhook retry failed and is dropped");
                }
            });
        }
    }
}
