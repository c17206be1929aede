//! The production event bus: the project's SNS topic, with PublishBatch (10 per request).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::error::ProvideErrorMetadata;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use tracing::warn;

use crate::adapters::retry::{Attempt, retry};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::ports::EventPublisher;

/// Entries per PublishBatch, and the largest batch payload (SNS limits).
const BATCH_ENTRIES: usize = 10;
const BATCH_BYTES: usize = 256 * 1024;

pub struct SnsEvents {
    client: Client,
    topic_arn: String,
}

impl SnsEvents {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> SnsEvents {
        SnsEvents {
            client,
            topic_arn: topic_arn.into(),
        }
    }

    fn entry(id: usize, event: &Event, body: String) -> Result<PublishBatchRequestEntry> {
        let mut attributes = HashMap::new();
        for (name, value) in event.attributes() {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| Error::internal(format!("bad SNS attribute: {e}")))?;
            attributes.insert(name.to_string(), value);
        }
        PublishBatchRequestEntry::builder()
            .id(id.to_string())
            .message(body)
            .set_message_attributes(Some(attributes))
            .build()
            .map_err(|e| Error::internal(format!("bad SNS entry: {e}")))
    }

    /// One PublishBatch, retrying the entries SNS reports failed on its side (the SDK retries
    /// failed requests, not failed entries).
    async fn publish_batch(&self, entries: Vec<PublishBatchRequestEntry>) -> Result<()> {
        retry(
            "the event bus kept failing",
            entries,
            move |entries| async move {
                let out = self
                    .client
                    .publish_batch()
                    .topic_arn(&self.topic_arn)
                    .set_publish_batch_request_entries(Some(entries.clone()))
                    .send()
                    .await
                    .map_err(|e| {
                        warn!(code = ?e.code(), message = ?e.message(), "SNS PublishBatch failed");
                        Error::unavailable("the event bus is unavailable")
                    })?;
                let failed = out.failed.unwrap_or_default();
                if let Some(f) = failed.iter().find(|f| f.sender_fault()) {
                    return Err(Error::internal(format!(
                        "SNS refused an event: {} {:?}",
                        f.code(),
                        f.message()
                    )));
                }
                let left: Vec<_> = entries
                    .into_iter()
                    .filter(|e| failed.iter().any(|f| f.id() == e.id()))
                    .collect();
                Ok(Attempt::unless_left(left))
            },
        )
        .await
    }
}

#[async_trait]
impl EventPublisher for SnsEvents {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        for (id, event) in events.iter().enumerate() {
            let body = event.to_json();
            // Attributes count towards the size limit too; leave room for them.
            let size = body.len() + 512;
            if !batch.is_empty()
                && (batch.len() == BATCH_ENTRIES || batch_bytes + size > BATCH_BYTES)
            {
                self.publish_batch(std::mem::take(&mut batch)).await?;
                batch_bytes = 0;
            }
            batch.push(Self::entry(id, event, body)?);
            batch_bytes += size;
        }
        if !batch.is_empty() {
            self.publish_batch(batch).await?;
        }
        Ok(())
    }
}
