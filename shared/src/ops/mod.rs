//! The behaviour of API.md, written once against the ports. No AWS or Lambda types here.

pub mod conversations;
pub mod deliver;
pub mod groups;
pub mod messages;
pub mod rows;
pub mod webhooks;

use std::sync::Arc;

use tracing::warn;

use crate::ports::{Clock, EventPublisher, IdSource, Push, Realtime, Store};
use webhooks::AllowedHosts;

/// What every operation runs against, built once per process (per cold start on Lambda).
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub events: Arc<dyn EventPublisher>,
    /// Publishes to connected clients (REALTIME.md).
    pub realtime: Arc<dyn Realtime>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdSource>,
    pub settings: Settings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Publish a `message-delivered` event per recipient copy.
    pub delivered_events: bool,
    /// The hosts tenants' webhook endpoints may point at (`WEBHOOK_ALLOWED_HOSTS`).
    pub webhook_hosts: webhooks::AllowedHosts,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            delivered_events: true,
            webhook_hosts: webhooks::AllowedHosts::any(),
        }
    }
}

impl Settings {
    /// `DELIVERED_EVENTS` (`true` by default): publish `message-delivered` per recipient copy;
    /// `WEBHOOK_ALLOWED_HOSTS` (any host by default): where tenants' webhooks may point.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let delivered_events = match get("DELIVERED_EVENTS").as_deref().map(str::trim) {
            None | Some("") | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(format!(
                    "DELIVERED_EVENTS must be true or false, not {other:?}"
                ));
            }
        };
        let webhook_hosts = AllowedHosts::parse(&get("WEBHOOK_ALLOWED_HOSTS").unwrap_or_default())
            .map_err(|e| format!("WEBHOOK_ALLOWED_HOSTS: {e}"))?;
        Ok(Settings {
            delivered_events,
            webhook_hosts,
        })
    }
}

impl Deps {
    pub fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Real-time publishes made by an HTTP or MQTT call after its writes: a failure is logged,
    /// not answered (the writes are done, and clients reload over HTTP when they reconnect).
    pub(crate) async fn publish_quietly(&self, pushes: &[Push]) {
        if pushes.is_empty() {
            return;
        }
        if let Err(e) = self.realtime.publish(pushes).await {
            warn!(error = %e, count = pushes.len(), "real-time publishes failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::lookup;

    #[test]
    fn settings() {
        assert!(Settings::from_lookup(lookup(&[])).unwrap().delivered_events);
        assert!(
            !Settings::from_lookup(lookup(&[("DELIVERED_EVENTS", "false")]))
                .unwrap()
                .delivered_events
        );
        assert!(Settings::from_lookup(lookup(&[("DELIVERED_EVENTS", "maybe")])).is_err());
        let hosts = Settings::from_lookup(lookup(&[("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")]))
            .unwrap()
            .webhook_hosts;
        assert!(hosts.allows("http://127.0.0.1:1/") && !hosts.allows("http://example.com/"));
        assert!(Settings::from_lookup(lookup(&[("WEBHOOK_ALLOWED_HOSTS", "a b")])).is_err());
    }
}
