//! The deliver function: the table's stream (DynamoDB Streams), a batch of records at a time.

use aws_lambda_events::event::dynamodb;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_http::service_fn;
use lambda_runtime::LambdaEvent;
use tracing::{error, warn};

use crate::adapters::dynamo::stream::streamed_of;
use crate::config;
use crate::entry::lambda::{Error, aws_deps, init_tracing};
use crate::ops::{Deps, deliver};

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
