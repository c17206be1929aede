//! Writes of many items: transactions (retried on conflicts) and batch writes (chunked to
//! the service limit, unprocessed items retried). The SDK retries neither.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{TransactWriteItem, WriteRequest};

use super::request::{Cancelled, Table, Transaction, sdk_error};
use crate::adapters::retry::{Attempt, retry};
use crate::error::Result;

/// Items per BatchWriteItem (service limit).
const BATCH_WRITE_LIMIT: usize = 25;

impl Table {
    /// TransactWriteItems (at most 100 actions), retried while a concurrent transaction on the
    /// same items cancels it. Failed conditions are an outcome, not an error.
    pub async fn transact(&self, actions: Vec<TransactWriteItem>) -> Result<Transaction> {
        let actions = &actions;
        retry("the store kept conflicting", (), move |()| async move {
            self.count();
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions.clone()))
                .send()
                .await;
            let e = match sent {
                Ok(_) => return Ok(Attempt::Done(Transaction::Committed)),
                Err(e) => e,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                e.as_service_error()
            else {
                return Err(sdk_error("TransactWriteItems", e));
            };
            let reasons = cancelled.cancellation_reasons();
            let codes: Vec<&str> = reasons.iter().map(|r| r.code().unwrap_or("None")).collect();
            if codes.contains(&"ConditionalCheckFailed") {
                let actions = reasons
                    .iter()
                    .map(|r| Cancelled {
                        failed: r.code() == Some("ConditionalCheckFailed"),
                        old: r.item().cloned(),
                    })
                    .collect();
                return Ok(Attempt::Done(Transaction::ConditionsFailed(actions)));
            }
            if codes.contains(&"TransactionConflict") {
                return Ok(Attempt::Again(()));
            }
            Err(sdk_error("TransactWriteItems", e))
        })
        .await
    }

    /// BatchWriteItem in chunks of 25, retrying the items DynamoDB leaves unprocessed.
    pub async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<()> {
        for chunk in requests.chunks(BATCH_WRITE_LIMIT) {
            retry(
                "the store kept refusing writes",
                chunk.to_vec(),
                move |pending| async move {
                    self.count();
                    let out = self
                        .client
                        .batch_write_item()
                        .request_items(&self.name, pending)
                        .send()
                        .await
                        .map_err(|e| sdk_error("BatchWriteItem", e))?;
                    let left = out
                        .unprocessed_items
                        .and_then(|mut m| m.remove(&self.name))
                        .unwrap_or_default();
                    Ok(Attempt::unless_left(left))
                },
            )
            .await?;
        }
        Ok(())
    }
}
