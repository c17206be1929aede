//! The real-time port on AWS: every push is one IoT Core data-plane `Publish` (QoS 1, not
//! retained) to the account's ATS endpoint, which delivers it to the connected clients
//! subscribed to its topic (REALTIME.md "On AWS"). IoT Core bills each publish per 5 KB of
//! payload, so a push is one message unless its payload is larger. Clearing a retained
//! message is one `Publish` too: empty, retained (which IoT Core takes as "delete it").

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_iotdataplane::Client;
use aws_sdk_iotdataplane::error::ProvideErrorMetadata;
use aws_sdk_iotdataplane::primitives::Blob;
use futures_util::future::join_all;
use tracing::warn;

use crate::error::{Error, Result};
use crate::ports::{NoRealtime, Push, Realtime};
use crate::realtime::topics;

/// Users whose publishes are in flight at once.
const CONCURRENT_OWNERS: usize = 16;

pub struct IotRealtime {
    client: Client,
}

impl IotRealtime {
    pub fn new(client: Client) -> IotRealtime {
        IotRealtime { client }
    }

    async fn publish_one(&self, push: &Push) -> Result<()> {
        self.send(&push.topic, push.payload.to_string().into_bytes(), false)
            .await
    }

    /// One QoS 1 `Publish`; `retain` with an empty payload deletes the topic's retained
    /// message.
    async fn send(&self, topic: &str, payload: Vec<u8>, retain: bool) -> Result<()> {
        self.client
            .publish()
            .topic(topic)
            .qos(1)
            // Unset unless retained: a push's request stays `?qos=1`.
            .set_retain(retain.then_some(true))
            .payload(Blob::new(payload))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                warn!(code = ?e.code(), message = ?e.message(), %topic, retain, "IoT Publish failed");
                Error::unavailable("the real-time broker is unavailable")
            })
    }

    /// One user's pushes, one after the other: a client receives them in the order they were
    /// made (an un-archive before the message that caused it).
    async fn publish_in_order(&self, pushes: &[&Push]) -> Result<()> {
        for push in pushes {
            self.publish_one(push).await?;
        }
        Ok(())
    }
}

/// The pushes grouped by the user they are for, each group in its original order.
fn by_owner(pushes: &[Push]) -> Vec<Vec<&Push>> {
    let mut owners: BTreeMap<(&str, &str), Vec<&Push>> = BTreeMap::new();
    for push in pushes {
        let owner = topics::owner_of(&push.topic).unwrap_or(("", &push.topic));
        owners.entry(owner).or_default().push(push);
    }
    owners.into_values().collect()
}

#[async_trait]
impl Realtime for IotRealtime {
    /// Every push is attempted (the SDK retries each request by itself); an error means at
    /// least one did not go out, so that the deliver step fails its record and is retried.
    async fn publish(&self, pushes: &[Push]) -> Result<()> {
        let owners = by_owner(pushes);
        let mut failed = None;
        for chunk in owners.chunks(CONCURRENT_OWNERS) {
            let results = join_all(chunk.iter().map(|own| self.publish_in_order(own))).await;
            if let Some(e) = results.into_iter().find_map(|r| r.err()) {
                failed = Some(e);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Needs `iot:Publish` and `iot:RetainPublish` on the topic (template.yaml grants both to
    /// mqtt-inbound, on presence topics only).
    async fn clear_retained(&self, topic: &str) -> Result<()> {
        self.send(topic, Vec::new(), true).await
    }
}

/// The real-time port of a function: IoT Core's data plane at `IOT_DATA_ENDPOINT` (the
/// account's `iot:Data-ATS` endpoint, a host name, or a URL), or nothing if it is unset.
/// Builds a client without any network call.
pub fn realtime_from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
    shared: &aws_config::SdkConfig,
) -> Arc<dyn Realtime> {
    match lookup("IOT_DATA_ENDPOINT")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
    {
        None => Arc::new(NoRealtime),
        Some(endpoint) => {
            let url = if endpoint.contains("://") {
                endpoint
            } else {
                format!("https://{endpoint}")
            };
            let config = aws_sdk_iotdataplane::config::Builder::from(shared)
                .endpoint_url(url)
                .build();
            Arc::new(IotRealtime::new(aws_sdk_iotdataplane::Client::from_conf(
                config,
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn push(topic: &str) -> Push {
        Push {
            topic: topic.into(),
            payload: json!({}).into(),
        }
    }

    #[test]
    fn pushes_are_grouped_per_user_in_order() {
        let pushes = [
            push("apps/a/users/u2/archived_conversations/u1/clientdeleted"),
            push("apps/a/users/u1/messages/u2/clientadded"),
            push("apps/a/users/u2/messages/u1/clientadded"),
            push("apps/b/users/u2/messages/u1/clientadded"),
        ];
        let groups = by_owner(&pushes);
        let topics: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.iter().map(|p| p.topic.as_str()).collect())
            .collect();
        assert_eq!(
            topics,
            [
                vec!["apps/a/users/u1/messages/u2/clientadded"],
                vec![
                    "apps/a/users/u2/archived_conversations/u1/clientdeleted",
                    "apps/a/users/u2/messages/u1/clientadded"
                ],
                vec!["apps/b/users/u2/messages/u1/clientadded"],
            ]
        );
    }
}
