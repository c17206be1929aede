//! The real-time port (REALTIME.md): publishes to connected Chat21 clients, through the
//! embedded MQTT broker of `chat21-local` or IoT Core's data plane on AWS (`adapters::iot`).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::Result;

/// One publish to connected clients (QoS 1, not retained). The payload is shared: a group
/// change tells every member the same group, and a thousand copies of a thousand members'
/// list would not be.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub topic: String,
    pub payload: Arc<Value>,
}

#[async_trait]
pub trait Realtime: Send + Sync {
    /// Publishes to whoever is connected and subscribed; nobody connected is not an error.
    /// An error means some publishes may not have gone out (the caller decides whether that
    /// fails its work: the deliver step retries, HTTP calls only log it).
    async fn publish(&self, pushes: &[Push]) -> Result<()>;

    /// Deletes the retained message of `topic` (on IoT Core: an empty retained publish, which
    /// is how MQTT deletes one). Nothing retained there is not an error. For Chat21's retained
    /// will messages, which IoT Core would otherwise keep for years (REALTIME.md, presence).
    async fn clear_retained(&self, topic: &str) -> Result<()>;
}

/// For functions that have no real-time endpoint configured: publishes nothing.
pub struct NoRealtime;

#[async_trait]
impl Realtime for NoRealtime {
    async fn publish(&self, _: &[Push]) -> Result<()> {
        Ok(())
    }

    async fn clear_retained(&self, _: &str) -> Result<()> {
        Ok(())
    }
}
