//! The behaviour of API.md, written once against the ports. No AWS or Lambda types here.

pub mod conversations;
pub mod deliver;
pub mod groups;
pub mod messages;
pub mod webhooks;

use std::sync::Arc;

use crate::ports::{Clock, EventPublisher, IdSource, Realtime, Store};

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

impl Deps {
    pub fn now(&self) -> u64 {
        self.clock.now_ms()
    }
}
