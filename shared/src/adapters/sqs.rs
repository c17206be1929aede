//! The webhooks' retry queue on SQS: retries go back to the webhooks queue with a delay
//! (SendMessageBatch, 10 per request), dead letters to its dead-letter queue.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use tracing::warn;

use crate::adapters::retry::{Attempt, retry};
use crate::error::{Error, Result};
use crate::ports::RetryQueue;

/// Entries per SendMessageBatch, and the largest batch payload (SQS limits).
const BATCH_ENTRIES: usize = 10;
const BATCH_BYTES: usize = 256 * 1024;
/// SQS's longest `DelaySeconds`.
const MAX_DELAY_SECS: u64 = 900;

pub struct SqsRetries {
    client: Client,
    queue_url: String,
    dead_letter_url: String,
}

impl SqsRetries {
    pub fn new(
        client: Client,
        queue_url: impl Into<String>,
        dead_letter_url: impl Into<String>,
    ) -> SqsRetries {
        SqsRetries {
            client,
            queue_url: queue_url.into(),
            dead_letter_url: dead_letter_url.into(),
        }
    }

    /// Sends every message (with its delay), in batches within the SQS limits, retrying the
    /// entries SQS reports failed on its side.
    async fn send(&self, queue_url: &str, messages: &[(String, Duration)]) -> Result<()> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        for (message, delay) in messages {
            if !batch.is_empty()
                && (batch.len() == BATCH_ENTRIES || bytes + message.len() > BATCH_BYTES)
            {
                self.send_batch(queue_url, std::mem::take(&mut batch))
                    .await?;
                bytes = 0;
            }
            let entry = SendMessageBatchRequestEntry::builder()
                .id(batch.len().to_string())
                .message_body(message)
                .delay_seconds(delay.as_secs().min(MAX_DELAY_SECS) as i32)
                .build()
                .map_err(|e| Error::internal(format!("bad SQS entry: {e}")))?;
            batch.push(entry);
            bytes += message.len();
        }
        if !batch.is_empty() {
            self.send_batch(queue_url, batch).await?;
        }
        Ok(())
    }

    async fn send_batch(
        &self,
        queue_url: &str,
        entries: Vec<SendMessageBatchRequestEntry>,
    ) -> Result<()> {
        retry(
            "the retry queue kept failing",
            entries,
            move |entries| async move {
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(queue_url)
                    .set_entries(Some(entries.clone()))
                    .send()
                    .await
                    .map_err(|e| {
                        warn!(code = ?e.code(), message = ?e.message(), "SQS SendMessageBatch failed");
                        Error::unavailable("the retry queue is unavailable")
                    })?;
                let failed = out.failed;
                if let Some(f) = failed.iter().find(|f| f.sender_fault) {
                    return Err(Error::internal(format!(
                        "SQS refused a message: {} {:?}",
                        f.code, f.message
                    )));
                }
                let left: Vec<_> = entries
                    .into_iter()
                    .filter(|e| failed.iter().any(|f| f.id == e.id))
                    .collect();
                Ok(Attempt::unless_left(left))
            },
        )
        .await
    }
}

#[async_trait]
impl RetryQueue for SqsRetries {
    async fn schedule(&self, messages: &[(String, Duration)]) -> Result<()> {
        self.send(&self.queue_url, messages).await
    }

    async fn dead_letter(&self, messages: &[String]) -> Result<()> {
        let messages: Vec<(String, Duration)> = messages
            .iter()
            .map(|m| (m.clone(), Duration::ZERO))
            .collect();
        self.send(&self.dead_letter_url, &messages).await
    }
}
