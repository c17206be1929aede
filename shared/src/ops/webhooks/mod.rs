//! Webhooks: every event POSTed, in Chat21's envelope, to the deployment's endpoints
//! (`WEBHOOK_ENDPOINTS`, Chat21's configuration) and to each tenant's own (managed by its
//! admins over HTTP: the operations of this module), signed per Standard Webhooks
//! ([`signing`]), at least once per endpoint.
//!
//! # Delivery and retries
//!
//! On AWS the SNS topic feeds a queue of the `webhooks` function, filtered to `WEBHOOK_EVENTS`.
//! For each event the function POSTs the event's JSON (as published, byte for byte) to every
//! endpoint that wants it, at once. A 2xx is success; a timeout (10 s), a connection error, a
//! 429 or a 5xx is worth retrying; any other answer is refused for good (logged, never
//! retried). Each endpoint that should be retried gets **its own retry message** on the
//! same queue, so endpoints that succeeded are never called again and a failing endpoint never
//! delays the others: the event's record itself always completes.
//!
//! Each endpoint has its own lane ([`lanes`]): at most 10 POSTs in flight (the queue's batch
//! size: a batch reaches every endpoint at once) and a bounded number waiting; so an endpoint
//! that hangs holds up only its own POSTs, never another endpoint's or another tenant's. A POST
//! that finds its lane full is retried later, without counting as an attempt.
//!
//! A retry message (`{"webhook_retry": {…}}`, [`records::Retry`]) names the endpoint (a
//! global URL, or a tenant's endpoint by id: its current URL, filter and secret are read at
//! each attempt, so no secret waits in a queue and a deleted endpoint gets nothing more),
//! carries the event, the `webhook-id`, the attempts made and when the next one is due.
//! Waits grow 1 min, 5 min, 30 min, 2 h, 6 h, 15 h ([`delivery::BACKOFF_SECS`]): seven attempts
//! over about 24 hours, then the retry goes to the dead-letter queue with its last error.
//!
//! SQS delays a message by at most 15 minutes (`DelaySeconds` ≤ 900). A longer wait is a
//! chain of hops: the message is queued for min(wait, 15 min); when it comes back before its
//! due time the consumer queues it again for what is left, and only attempts it once due. A
//! 15-hour wait is 60 hops: 60 small SQS messages, cents per million retries, and no scheduler
//! to run. The `webhook-id` (a hash of the event's body) is the same on every attempt, so
//! receivers drop duplicates; `webhook-timestamp` and the signature are fresh per attempt.
//!
//! A record fails (and SQS hands it over again; after 5 receives, into the dead-letter queue)
//! only when its retries cannot be queued or the tenant's endpoints cannot be read before
//! anything was sent. In the first case the endpoints that succeeded get the event again, with
//! the same `webhook-id`.
//!
//! `chat21-local` runs the same consumer in-process: events come from the embedded event bus,
//! retries wait in memory (bounded; they live as long as the process).

pub mod delivery;
pub mod lanes;
pub mod records;
pub mod signing;
pub mod targets;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::ids::Id;
use crate::input::Fields;
use crate::model::EventType;
use crate::model::{Caller, Webhook};
use crate::ops::Deps;
use crate::ports::WebhookPut;

pub use delivery::Webhooks;
pub use signing::Secret;
pub use targets::{AllowedHosts, WebhookConfig};

/// Endpoints one tenant may have (each event is POSTed to all of them at once).
pub const MAX_WEBHOOKS: usize = 20;

/// `PUT /api/{app_id}/webhooks/{webhook_id}`: the endpoint's URL, the event types it
/// receives (every type when absent), and its signing secret (generated on creation when
/// absent, kept on replacement).
#[derive(Debug, Clone, PartialEq)]
pub struct PutWebhook {
    pub url: String,
    pub events: Vec<EventType>,
    pub secret: Option<Secret>,
}

impl PutWebhook {
    pub fn from_fields(f: &Fields) -> Result<PutWebhook> {
        let url = targets::validate_url("url", &f.required_str("url")?)?;
        let events = match f.get("events") {
            None => EventType::ALL.to_vec(),
            Some(Value::Array(names)) => {
                if names.is_empty() {
                    return Err(Error::bad_request(
                        "`events` must name at least one event type (leave it out for all)",
                    ));
                }
                let mut events = Vec::new();
                for name in names {
                    let kind = name.as_str().and_then(EventType::parse).ok_or_else(|| {
                        Error::bad_request(format!(
                            "`events`: {name} is not an event type (one of {})",
                            EventType::ALL.map(EventType::as_str).join(", ")
                        ))
                    })?;
                    if !events.contains(&kind) {
                        events.push(kind);
                    }
                }
                events
            }
            Some(_) => {
                return Err(Error::bad_request(
                    "`events` must be an array of event types",
                ));
            }
        };
        let secret = f
            .optional_str("secret")?
            .map(|s| Secret::parse("secret", &s))
            .transpose()?;
        Ok(PutWebhook {
            url,
            events,
            secret,
        })
    }
}

fn admin_only(caller: &Caller) -> Result<()> {
    if caller.admin {
        Ok(())
    } else {
        Err(Error::forbidden("only admins may manage webhooks"))
    }
}

fn not_found(id: &str) -> Error {
    Error::not_found(format!("no webhook {id}"))
}

/// The tenant's endpoints.
pub async fn list(deps: &Deps, caller: &Caller) -> Result<Vec<Webhook>> {
    admin_only(caller)?;
    deps.store.list_webhooks(&caller.app_id).await
}

/// One endpoint.
pub async fn get(deps: &Deps, caller: &Caller, id: &Id) -> Result<Webhook> {
    admin_only(caller)?;
    deps.store
        .get_webhook(&caller.app_id, id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Creates or replaces an endpoint; returns it and whether it is new.
pub async fn put(
    deps: &Deps,
    caller: &Caller,
    id: &Id,
    input: PutWebhook,
) -> Result<(Webhook, bool)> {
    admin_only(caller)?;
    if !deps.settings.webhook_hosts.allows(&input.url) {
        return Err(Error::bad_request(
            "`url` points at a host this deployment does not send webhooks to (WEBHOOK_ALLOWED_HOSTS)",
        ));
    }
    let now = deps.now();
    let existing = deps.store.get_webhook(&caller.app_id, id).await?;
    let secret = match (input.secret, &existing) {
        (Some(secret), _) => secret.as_str().to_string(),
        (None, Some(old)) => old.secret.clone(),
        (None, None) => Secret::generate()?.as_str().to_string(),
    };
    let webhook = Webhook {
        id: id.to_string(),
        app_id: caller.app_id.to_string(),
        url: input.url,
        events: input.events,
        secret,
        created_at: existing.as_ref().map_or(now, |old| old.created_at),
        updated_at: now,
    };
    match deps.store.put_webhook(&webhook, MAX_WEBHOOKS).await? {
        WebhookPut::Created => Ok((webhook, true)),
        WebhookPut::Replaced => Ok((webhook, false)),
        WebhookPut::Full => Err(Error::Conflict(format!(
            "this app has {MAX_WEBHOOKS} webhooks already, the most it may have: delete one first"
        ))),
    }
}

/// Deletes an endpoint: nothing more is sent to it, retries included.
pub async fn delete(deps: &Deps, caller: &Caller, id: &Id) -> Result<()> {
    admin_only(caller)?;
    if deps.store.delete_webhook(&caller.app_id, id).await? {
        Ok(())
    } else {
        Err(not_found(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Fields {
        Fields::parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn put_bodies_are_read_strictly() {
        let put = PutWebhook::from_fields(&fields(json!({"url": "https://a.example/h"}))).unwrap();
        assert_eq!(put.events, EventType::ALL);
        assert!(put.secret.is_none());
        let put = PutWebhook::from_fields(&fields(json!({
            "url": "https://a.example/h",
            "events": ["message-sent", "message-sent", "join-member"],
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "unknown": 1,
        })))
        .unwrap();
        assert_eq!(put.events, [EventType::MessageSent, EventType::JoinMember]);
        assert!(put.secret.is_some());
        for (bad, names) in [
            (json!({}), "`url`"),
            (json!({"url": 5}), "`url`"),
            (json!({"url": "ftp://x"}), "`url`"),
            (
                json!({"url": "https://a.example", "events": []}),
                "`events`",
            ),
            (
                json!({"url": "https://a.example", "events": "message-sent"}),
                "`events`",
            ),
            (
                json!({"url": "https://a.example", "events": ["nope"]}),
                "`events`",
            ),
            (
                json!({"url": "https://a.example", "events": [1]}),
                "`events`",
            ),
            (
                json!({"url": "https://a.example", "secret": "short"}),
                "`secret`",
            ),
            (json!({"url": "https://a.example", "secret": 7}), "`secret`"),
        ] {
            let e = PutWebhook::from_fields(&fields(bad.clone())).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
            assert!(e.to_string().contains(names), "{bad}: {e}");
        }
    }
}
