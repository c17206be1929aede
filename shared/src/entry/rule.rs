//! A client's publish on AWS: IoT Core's topic rules (one per client-published topic kind,
//! template.yaml) hand it to the `mqtt-inbound` function, which runs the same [`inbound`]
//! operation as `chat21-local`'s broker.
//!
//! Who published: the user and tenant of the topic. IoT Core lets a connection publish only
//! inside its own tree (the authorizer's policy), so the topic's `{app}` and `{me}` are the
//! token's; the rule also passes the connection's `principal()` and client id, which are
//! logged (and the principal compared with the authorizer's mapping of that user).

use std::sync::Arc;

use base64::Engine;
use lambda_runtime::{LambdaEvent, service_fn};
use serde::Deserialize;
use serde_json::Value;
use tracing::{info, warn};

use super::inbound;
use crate::adapters::system::FixedClock;
use crate::config;
use crate::entry::lambda::{self, aws_deps, init_tracing};
use crate::error::{Error, Result};
use crate::ids::Id;
use crate::model::Caller;
use crate::ops::Deps;
use crate::realtime::authorizer::principal_id;

/// What a rule's SQL selects (template.yaml):
/// `SELECT encode(*, 'base64') AS payload, topic() AS topic, topic(2) AS app_id,
/// topic(n) AS user_id, principal() AS principal, clientid() AS client_id,
/// timestamp() AS received_at, newuuid() AS publish_id FROM '<the kind's filter>'`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RulePublish {
    pub topic: String,
    pub app_id: String,
    pub user_id: String,
    /// The payload's bytes, base64 (any payload, JSON or not).
    pub payload: String,
    #[serde(default)]
    pub principal: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// When IoT Core received the publish (ms since the epoch).
    #[serde(default)]
    pub received_at: Option<u64>,
    /// A UUID the rule made for this publish: stable across the function's retries.
    #[serde(default)]
    pub publish_id: Option<String>,
}

impl RulePublish {
    /// The `message_id` a send without one gets: time-ordered like the server's own ids
    /// (UUID v7 of `received_at`), its random part from `publish_id`, so a retried
    /// invocation sends the same message again, which changes nothing.
    pub fn message_id(&self) -> Option<Id> {
        let at = self.received_at?;
        let random = uuid::Uuid::parse_str(self.publish_id.as_deref()?).ok()?;
        let mut bytes = [0u8; 10];
        bytes.copy_from_slice(&random.as_bytes()[6..]);
        let id = uuid::Builder::from_unix_timestamp_millis(at, &bytes).into_uuid();
        Id::parse("message_id", id.to_string()).ok()
    }
}

/// Runs one rule invocation. A publish that is refused or invalid is logged and dropped (as
/// the local broker drops it: MQTT has no reply channel); only a failure a retry may cure is
/// an error, so that Lambda retries the invocation and then keeps it in the dead-letter queue.
pub async fn handle(deps: &Deps, event: &Value) -> Result<()> {
    let publish: RulePublish = match serde_json::from_value(event.clone()) {
        Ok(publish) => publish,
        Err(e) => {
            warn!(error = %e, "not a rule publish; dropped");
            return Ok(());
        }
    };
    match run(deps, &publish).await {
        Ok(()) => Ok(()),
        Err(e @ (Error::Unavailable(_) | Error::Throttled(_) | Error::Internal(_))) => {
            warn!(error = %e, topic = %publish.topic, "publish failed; it will be retried");
            Err(e)
        }
        Err(e) => {
            warn!(error = %e, topic = %publish.topic, client = ?publish.client_id, "publish dropped");
            Ok(())
        }
    }
}

async fn run(deps: &Deps, publish: &RulePublish) -> Result<()> {
    let caller = Caller {
        user_id: Id::parse("user_id", publish.user_id.as_str())?,
        app_id: Id::parse("app_id", publish.app_id.as_str())?,
        admin: false,
    };
    let expected = principal_id(&caller.app_id, &caller.user_id);
    match publish.principal.as_deref() {
        Some(principal) if principal != expected => warn!(
            %principal, %expected, user = %caller.user_id,
            "the publishing principal is not the authorizer's for this topic's user"
        ),
        _ => {
            info!(user = %caller.user_id, topic = %publish.topic, client = ?publish.client_id, "publish")
        }
    }
    let payload = base64::engine::general_purpose::STANDARD
        .decode(publish.payload.trim())
        .map_err(|_| Error::bad_request("the rule's payload is not base64"))?;
    // The operation runs as of IoT Core's receipt of the publish: a retried invocation makes
    // the same timestamps and events (`createdAt`), byte for byte, as the first did.
    let as_received;
    let deps = match publish.received_at {
        Some(at) => {
            as_received = Deps {
                clock: Arc::new(FixedClock(at)),
                ..deps.clone()
            };
            &as_received
        }
        None => deps,
    };
    inbound::handle_publish(
        deps,
        &caller,
        &publish.topic,
        &payload,
        publish.message_id(),
    )
    .await
}

/// Runs the function IoT Core's topic rules invoke with clients' publishes.
pub async fn serve_mqtt_inbound() -> Result<(), lambda::Error> {
    init_tracing();
    let deps = aws_deps(config::env, true).await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(deps, &event.payload)
            .await
            .map_err(lambda::Error::from)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retried_publishes_get_the_same_time_ordered_id() {
        let publish: RulePublish = serde_json::from_value(json!({
            "topic": "apps/a/outgoing/users/u1/messages/u2/outgoing",
            "app_id": "a", "user_id": "u1", "payload": "e30=",
            "received_at": 1_800_000_000_000u64,
            "publish_id": "7d3f0b5e-9a8c-4f1e-8b2d-1c0e5a6f7b8c"
        }))
        .unwrap();
        let id = publish.message_id().unwrap();
        assert_eq!(publish.message_id(), Some(id.clone()));
        let uuid = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        let later = RulePublish {
            received_at: Some(1_800_000_000_001),
            ..publish.clone()
        };
        assert!(*later.message_id().unwrap() > *id);
        let without = RulePublish {
            publish_id: None,
            ..publish
        };
        assert_eq!(without.message_id(), None);
    }
}
