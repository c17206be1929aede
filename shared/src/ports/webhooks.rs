//! The webhooks' ports: tenants' endpoints, the HTTP client that POSTs to them, and the queue
//! where retries wait.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::Webhook;

/// What putting a webhook did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookPut {
    Created,
    Replaced,
    /// A new one, and the tenant already has the most it may have; nothing was written.
    Full,
}

/// A tenant's webhook endpoints (admins manage them; the webhooks consumer reads them).
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Every endpoint of the tenant, in id order.
    async fn list_webhooks(&self, app: &str) -> Result<Vec<Webhook>>;
    async fn get_webhook(&self, app: &str, id: &str) -> Result<Option<Webhook>>;
    /// Replaces the endpoint with this id, or creates it unless the tenant has `max` already
    /// (atomically: concurrent creates never exceed `max`).
    async fn put_webhook(&self, webhook: &Webhook, max: usize) -> Result<WebhookPut>;
    /// Deletes the endpoint; false if there was none.
    async fn delete_webhook(&self, app: &str, id: &str) -> Result<bool>;
}

/// What one POST to a webhook endpoint came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// A 2xx answer (its status).
    Delivered(u16),
    /// Worth another attempt later: a timeout, a connection error, 429 or a 5xx.
    Retry(String),
    /// Refused for good: any other answer (a 4xx but 429, a 3xx); never retried.
    Refused(String),
}

impl PostOutcome {
    /// What an HTTP status means for a webhook.
    pub fn of_status(status: u16) -> PostOutcome {
        match status {
            200..=299 => PostOutcome::Delivered(status),
            429 | 500..=599 => PostOutcome::Retry(format!("answered {status}")),
            _ => PostOutcome::Refused(format!("answered {status}")),
        }
    }
}

/// The webhooks' HTTP client.
#[async_trait]
pub trait WebhookClient: Send + Sync {
    /// POSTs the JSON `body` to `url` with these headers (and `content-type:
    /// application/json`), within the client's timeout.
    async fn post(&self, url: &str, headers: &[(&'static str, String)], body: &str) -> PostOutcome;
}

/// Where webhook retries wait: each message comes back to the webhooks consumer after its
/// delay (SQS: at most 15 minutes; the consumer re-queues longer waits until they are due).
#[async_trait]
pub trait RetryQueue: Send + Sync {
    /// Queues each message with its delay; all or an error.
    async fn schedule(&self, messages: &[(String, Duration)]) -> Result<()>;
    /// Keeps messages nobody could deliver (their last attempt failed, or they cannot be
    /// read) for an operator: the dead-letter queue.
    async fn dead_letter(&self, messages: &[String]) -> Result<()>;
}

/// Which endpoint a retry is for. A tenant's endpoint is named, not copied: its current URL,
/// filter and secret are read at each attempt (no secret ever waits in a queue), and a
/// deleted endpoint gets nothing more.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    /// One of `WEBHOOK_ENDPOINTS`.
    Global { url: String },
    /// A tenant's endpoint.
    Tenant { app_id: String, webhook_id: String },
}

impl std::fmt::Display for Target {
    /// For logs: a global endpoint's scheme and host (its path or query may hold a token), a
    /// tenant's endpoint by its app and id.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Global { url } => {
                let shown = url
                    .parse::<http::Uri>()
                    .ok()
                    .and_then(|u| Some(format!("{}://{}", u.scheme_str()?, u.authority()?)))
                    .unwrap_or_else(|| "?".into());
                write!(f, "global endpoint {shown}")
            }
            Target::Tenant { app_id, webhook_id } => {
                write!(f, "webhook {webhook_id} of app {app_id}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_never_show_a_global_endpoints_path() {
        let t = Target::Global {
            url: "https://hooks.example:8443/secret-token?x=1".into(),
        };
        assert_eq!(t.to_string(), "global endpoint https://hooks.example:8443");
    }
}
