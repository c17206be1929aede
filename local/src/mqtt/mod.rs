//! The MQTT broker of `chat21-local` (REALTIME.md): MQTT 3.1.1 over WebSocket (`/ws`, as
//! RabbitMQ's Web-MQTT serves Chat21 clients) and TCP, QoS 0 and 1, keep-alive, retained and
//! will messages, clean sessions.
//!
//! Only the broker core lives here (connections, subscriptions, routing, retained messages);
//! packets are `rmqtt-codec`'s, and what a topic may be, who may publish or subscribe where,
//! and what a publish means are the shared crate's (`chat21::realtime`), so that IoT Core's
//! authorizer and rules on AWS enforce exactly the same.

mod router;
mod session;
mod transport;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chat21::api::Api;
use chat21::error::Result;
use chat21::realtime::{Push, Realtime};
use rmqtt_codec::types::QoS;
use tokio::net::TcpListener;
use tracing::debug;

pub use router::Router;
use transport::Transport;

/// Publishes a connection may have queued before it counts as too slow and is closed.
pub const QUEUE_LEN: usize = 1024;

/// What the broker runs with.
pub struct Broker {
    pub router: Arc<Router>,
    /// The operations (inbound publishes) and the token verifier (CONNECT).
    pub api: Arc<Api>,
}

/// The real-time port on the embedded broker: every push is routed to the subscribed
/// connections of its topic's user, at QoS 1.
pub struct BrokerRealtime(pub Arc<Router>);

#[async_trait]
impl Realtime for BrokerRealtime {
    async fn publish(&self, pushes: &[Push]) -> Result<()> {
        for push in pushes {
            self.0.publish(
                &push.topic,
                session::payload_of(&push.payload),
                QoS::AtLeastOnce,
            );
        }
        Ok(())
    }

    /// An empty retained message forgets the topic's (the router's own rule).
    async fn clear_retained(&self, topic: &str) -> Result<()> {
        self.0.retain(topic, Bytes::new());
        Ok(())
    }
}

/// The transport a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Tcp,
    WebSocket,
}

/// Accepts connections until the listener fails.
pub async fn serve(
    listener: TcpListener,
    kind: Listener,
    broker: Arc<Broker>,
) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let broker = broker.clone();
        tokio::spawn(async move {
            let transport = match kind {
                Listener::Tcp => Transport::tcp(stream),
                Listener::WebSocket => match Transport::websocket(stream).await {
                    Ok(transport) => transport,
                    Err(e) => {
                        debug!(%peer, error = %e, "WebSocket refused");
                        return;
                    }
                },
            };
            session::run(broker, transport).await;
        });
    }
}
