//! The webhooks consumer: every event (in Chat21's envelope, exactly as published) POSTed to
//! each endpoint that wants it, each endpoint retried on its own. See the module above for
//! the retry design; this file is its code.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::value::RawValue;
use tracing::{debug, error, info, warn};

use crate::error::{Error, Result};
use crate::ids;
use crate::model::EventType;
use crate::ops::webhooks::lanes::Lanes;
use crate::ops::webhooks::records::{
    Record, Retry, Unreadable, UnreadableBody, head_of, read_record,
};
use crate::ops::webhooks::signing::{Secret, webhook_id};
use crate::ops::webhooks::targets::WebhookConfig;
use crate::ports::{Clock, PostOutcome, RetryQueue, Target, WebhookClient, WebhookStore};

/// The waits between attempts: after the first failed attempt 1 minute, then 5 minutes,
/// 30 minutes, 2 hours, 6 hours and 15 hours; the 7th attempt comes about 23.6 hours after the
/// first, and if it fails too the event is dead-lettered for that endpoint.
pub const BACKOFF_SECS: [u64; 6] = [60, 5 * 60, 30 * 60, 2 * 3600, 6 * 3600, 15 * 3600];
/// Attempts per endpoint and event, the first included.
pub const MAX_ATTEMPTS: u32 = BACKOFF_SECS.len() as u32 + 1;
/// The longest an SQS message can be delayed (`DelaySeconds` ≤ 900): longer waits hop.
pub const MAX_QUEUE_DELAY: Duration = Duration::from_secs(900);
/// How long one POST may take, answer included, before it counts as failed (and is retried).
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// A retry due within this much is attempted at once rather than queued again.
const DUE_SLACK_MS: u64 = 1_000;
/// Why a POST was not attempted: its endpoint's lane was full ([`Lanes`]); its retry says so.
const LANE_FULL: &str = "not attempted: the endpoint had too many POSTs pending";

/// The wait after `attempts` failed attempts.
pub fn backoff(attempts: u32) -> Duration {
    let index = (attempts.max(1) - 1) as usize;
    Duration::from_secs(BACKOFF_SECS[index.min(BACKOFF_SECS.len() - 1)])
}

/// What the consumer runs against: the tenants' endpoints, the HTTP client, the retry queue,
/// a clock, and the deployment's configuration. Built once per process.
pub struct Webhooks {
    pub store: Arc<dyn WebhookStore>,
    pub client: Arc<dyn WebhookClient>,
    pub retries: Arc<dyn RetryQueue>,
    pub clock: Arc<dyn Clock>,
    pub config: WebhookConfig,
    /// Each endpoint's own POSTs in flight and waiting.
    lanes: Lanes,
}

impl Webhooks {
    pub fn new(
        store: Arc<dyn WebhookStore>,
        client: Arc<dyn WebhookClient>,
        retries: Arc<dyn RetryQueue>,
        clock: Arc<dyn Clock>,
        config: WebhookConfig,
    ) -> Webhooks {
        Webhooks {
            store,
            client,
            retries,
            clock,
            config,
            lanes: Lanes::default(),
        }
    }
}

/// A resolved endpoint.
struct Endpoint {
    target: Target,
    url: String,
    secret: Option<Secret>,
}

impl Webhooks {
    fn global(&self, url: &str) -> Endpoint {
        Endpoint {
            target: Target::Global {
                url: url.to_string(),
            },
            url: url.to_string(),
            secret: self.config.secret.clone(),
        }
    }

    fn tenant(&self, hook: &crate::model::Webhook, kind: EventType) -> Option<Endpoint> {
        if !hook.events.contains(&kind) || !self.config.allowed_hosts.allows(&hook.url) {
            return None;
        }
        let secret = match Secret::parse("secret", &hook.secret) {
            Ok(secret) => secret,
            Err(e) => {
                error!(app = %hook.app_id, webhook = %hook.id, error = %e, "a stored webhook secret is unreadable; skipped");
                return None;
            }
        };
        Some(Endpoint {
            target: Target::Tenant {
                app_id: hook.app_id.clone(),
                webhook_id: hook.id.clone(),
            },
            url: hook.url.clone(),
            secret: Some(secret),
        })
    }

    /// Every endpoint that wants an event of this type and tenant: the global ones, and the
    /// tenant's own (never another tenant's: they live under the tenant's key).
    async fn endpoints_for(&self, kind: EventType, app: &str) -> Result<Vec<Endpoint>> {
        if !self.config.events.contains(&kind) {
            return Ok(Vec::new());
        }
        let mut endpoints: Vec<Endpoint> = self
            .config
            .endpoints
            .iter()
            .map(|url| self.global(url))
            .collect();
        if ids::is_valid(app) {
            for hook in self.store.list_webhooks(app).await? {
                endpoints.extend(self.tenant(&hook, kind));
            }
        }
        Ok(endpoints)
    }

    /// The endpoint a retry is for, as it is now; `None` if it is gone or no longer wants
    /// this event.
    async fn resolve(
        &self,
        target: &Target,
        kind: EventType,
        app: &str,
    ) -> Result<Option<Endpoint>> {
        if !self.config.events.contains(&kind) {
            return Ok(None);
        }
        match target {
            Target::Global { url } => Ok(self
                .config
                .endpoints
                .contains(url)
                .then(|| self.global(url))),
            Target::Tenant { app_id, webhook_id } => {
                if app_id != app || !ids::is_valid(app_id) || !ids::is_valid(webhook_id) {
                    return Ok(None);
                }
                let hook = self.store.get_webhook(app_id, webhook_id).await?;
                Ok(hook.and_then(|hook| self.tenant(&hook, kind)))
            }
        }
    }

    /// One signed POST, in its endpoint's lane; `None` (not attempted) when that lane is full.
    async fn attempt(&self, endpoint: &Endpoint, id: &str, body: &str) -> Option<PostOutcome> {
        let _slot = self.lanes.enter(&endpoint.target).await?;
        let timestamp = self.clock.now_ms() / 1000;
        let mut headers = vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", timestamp.to_string()),
        ];
        if let Some(secret) = &endpoint.secret {
            headers.push((
                "webhook-signature",
                secret.sign(id, timestamp, body.as_bytes()),
            ));
        }
        Some(self.client.post(&endpoint.url, &headers, body).await)
    }

    /// POSTs to `target` under way or waiting for its lane.
    pub fn pending(&self, target: &Target) -> usize {
        self.lanes.holding(target)
    }

    /// Queues retries for their due time, at most [`MAX_QUEUE_DELAY`] away (a longer wait is
    /// queued again when it comes back early).
    async fn queue(&self, retries: &[Retry]) -> Result<()> {
        if retries.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let messages: Vec<(String, Duration)> = retries
            .iter()
            .map(|r| {
                let wait = Duration::from_millis(r.due.saturating_sub(now)).min(MAX_QUEUE_DELAY);
                (r.to_message(), wait)
            })
            .collect();
        self.retries.schedule(&messages).await
    }

    /// A new event: POSTed to every endpoint that wants it, at once; each that failed in a
    /// way worth retrying gets its own retry.
    async fn deliver_event(&self, event: Box<RawValue>) -> Result<()> {
        let (kind, app) = match head_of(&event) {
            Ok(head) => head,
            Err(reason) => return self.unreadable(&reason, event.get()).await,
        };
        let endpoints = self.endpoints_for(kind, &app).await?;
        if endpoints.is_empty() {
            return Ok(());
        }
        let body = event.get();
        let id = webhook_id(body);
        let outcomes = join_all(endpoints.iter().map(|e| self.attempt(e, &id, body))).await;
        let now = self.clock.now_ms();
        let mut later = Vec::new();
        for (endpoint, outcome) in endpoints.into_iter().zip(outcomes) {
            let target = &endpoint.target;
            let (attempts, last_error) = match outcome {
                Some(PostOutcome::Delivered(status)) => {
                    debug!(%target, %id, status, event = kind.as_str(), "webhook delivered");
                    continue;
                }
                Some(PostOutcome::Refused(reason)) => {
                    warn!(%target, %id, %reason, event = kind.as_str(), "webhook refused by its endpoint; not retried");
                    continue;
                }
                Some(PostOutcome::Retry(reason)) => (1, reason),
                // Not attempted (the endpoint's lane is full): retried, uncounted.
                None => (0, LANE_FULL.to_string()),
            };
            info!(%target, %id, reason = %last_error, event = kind.as_str(), "webhook failed; retried in {:?}", backoff(1));
            later.push(Retry {
                webhook_id: id.clone(),
                target: endpoint.target,
                attempts,
                due: now + backoff(1).as_millis() as u64,
                last_error,
                event: event.clone(),
            });
        }
        self.queue(&later).await
    }

    /// One endpoint's next attempt, or, if it is not due yet, back into the queue.
    async fn deliver_retry(&self, mut retry: Retry) -> Result<()> {
        let now = self.clock.now_ms();
        if retry.due > now + DUE_SLACK_MS {
            return self.queue(&[retry]).await;
        }
        let (kind, app) = match head_of(&retry.event) {
            Ok(head) => head,
            Err(reason) => return self.unreadable(&reason, &retry.to_message()).await,
        };
        let Some(endpoint) = self.resolve(&retry.target, kind, &app).await? else {
            info!(target = %retry.target, id = %retry.webhook_id, "the endpoint is gone or no longer takes this event; its retries end");
            return Ok(());
        };
        let body = retry.event.get();
        let Some(outcome) = self.attempt(&endpoint, &retry.webhook_id, body).await else {
            // Not attempted: the endpoint's lane is full. It waits its turn, uncounted.
            info!(target = %retry.target, id = %retry.webhook_id, reason = LANE_FULL, "webhook retry put off; retried in {:?}", backoff(1));
            retry.due = now + backoff(1).as_millis() as u64;
            return self.queue(&[retry]).await;
        };
        match outcome {
            PostOutcome::Delivered(status) => {
                info!(target = %retry.target, id = %retry.webhook_id, status, attempt = retry.attempts + 1, "webhook delivered after retrying");
                Ok(())
            }
            PostOutcome::Refused(reason) => {
                warn!(target = %retry.target, id = %retry.webhook_id, %reason, "webhook refused by its endpoint; not retried");
                Ok(())
            }
            PostOutcome::Retry(reason) => {
                retry.attempts += 1;
                retry.last_error = reason;
                if retry.attempts >= MAX_ATTEMPTS {
                    error!(target = %retry.target, id = %retry.webhook_id, attempts = retry.attempts, error = %retry.last_error, "webhook failed on every attempt: dead-lettered");
                    return self.retries.dead_letter(&[retry.to_message()]).await;
                }
                retry.due = now + backoff(retry.attempts).as_millis() as u64;
                info!(target = %retry.target, id = %retry.webhook_id, attempts = retry.attempts, error = %retry.last_error, "webhook failed again; retried in {:?}", backoff(retry.attempts));
                self.queue(&[retry]).await
            }
        }
    }

    /// A record nobody can deliver: straight to the dead-letter queue.
    async fn unreadable(&self, reason: &str, body: &str) -> Result<()> {
        warn!(%reason, "an unreadable webhooks record: dead-lettered");
        let message = serde_json::to_string(&Unreadable {
            webhook_unreadable: UnreadableBody { reason, body },
        })
        .map_err(|e| Error::internal(e.to_string()))?;
        self.retries.dead_letter(&[message]).await
    }

    /// Handles one record of the webhooks queue (an event, or a retry). An error means the
    /// record must come back (its retries could not be queued, or the tenant's endpoints
    /// could not be read before anything was sent).
    pub async fn handle_record(&self, body: &str) -> Result<()> {
        match read_record(body) {
            Ok(Record::Event(event)) => self.deliver_event(event).await,
            Ok(Record::Retry(retry)) => self.deliver_retry(retry).await,
            Err(reason) => self.unreadable(&reason, body).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_reaches_about_a_day() {
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(2), Duration::from_secs(300));
        assert_eq!(backoff(4), Duration::from_secs(7200));
        let total: u64 = BACKOFF_SECS.iter().sum();
        assert!((23 * 3600..=25 * 3600).contains(&total), "{total}");
        assert_eq!(MAX_ATTEMPTS, 7);
    }

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(PostOutcome::of_status(204), PostOutcome::Delivered(204));
        for retried in [429, 500, 502, 503, 504] {
            assert!(matches!(
                PostOutcome::of_status(retried),
                PostOutcome::Retry(_)
            ));
        }
        for refused in [301, 400, 401, 404, 410, 413] {
            assert!(matches!(
                PostOutcome::of_status(refused),
                PostOutcome::Refused(_)
            ));
        }
    }
}
