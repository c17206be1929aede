//! The MQTT broker of `chat21-local` (REALTIME.md): MQTT 3.1.1 over WebSocket (`/ws`, as
//! RabbitMQ's Web-MQTT serves Chat21 clients) and TCP, QoS 0 and 1, keep-alive, retained and
//! will messages, clean sessions; bounded per connection and per user as IoT Core is (50
//! subscriptions, 8 retained messages of 1 KiB).
//!
//! Only the broker core lives here (connections, subscriptions, routing, retained messages);
//! packets are `rmqtt-codec`'s, and what a topic may be, who may publish or subscribe where,
//! and what a publish means are the shared crate's (`chat21::realtime`, `chat21::entry::inbound`),
//! so that IoT Core's authorizer and rules on AWS enforce exactly the same.

mod retained;
mod router;
mod session;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chat21::entry::http::Api;
use chat21::error::Result;
use chat21::ports::{Push, Realtime};
use rmqtt_codec::types::QoS;
use tokio::net::TcpListener;
use tracing::debug;

use crate::listen::{self, Limits};
pub use router::Router;
use transport::Transport;

/// Publishes a connection may have queued before it counts as too slow and is closed.
pub const QUEUE_LEN: usize = 1024;

/// What the broker runs with.
pub struct Broker {
    pub router: Arc<Router>,
    /// The operations (inbound publishes) and the token verifier (CONNECT).
    pub api: Arc<Api>,
    pub settings: Settings,
}

/// The broker's bounds per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long a new connection may take to finish its WebSocket upgrade, and then to send
    /// its CONNECT (`HANDSHAKE_TIMEOUT_SECS`).
    pub handshake_timeout: Duration,
    /// QoS 1 publishes a client may leave unacknowledged (`MQTT_MAX_IN_FLIGHT`).
    pub max_in_flight: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            handshake_timeout: Limits::default().handshake_timeout,
            max_in_flight: 1024,
        }
    }
}

impl Settings {
    /// The listeners' handshake timeout, and `MQTT_MAX_IN_FLIGHT` (1–65,000, default 1,024).
    pub fn from_lookup(
        limits: &Limits,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Settings, String> {
        let default = Settings::default().max_in_flight as u64;
        let max_in_flight = listen::bounded(lookup, "MQTT_MAX_IN_FLIGHT", 1..=65_000, default)?;
        Ok(Settings {
            handshake_timeout: limits.handshake_timeout,
            max_in_flight: max_in_flight as usize,
        })
    }
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

/// Serves one listener until `stop` (see [`listen::accept_loop`]); a connection beyond the
/// cap is closed at once. Connections are closed by [`Router::close_all`].
pub async fn serve(
    listener: TcpListener,
    kind: Listener,
    broker: Arc<Broker>,
    limits: Limits,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let name = match kind {
        Listener::Tcp => "MQTT over TCP",
        Listener::WebSocket => "MQTT over WebSocket",
    };
    listen::accept_loop(
        listener,
        name,
        limits.max_connections,
        stop,
        listen::close,
        move |stream, peer| {
            let broker = broker.clone();
            async move {
                let transport = match kind {
                    Listener::Tcp => Transport::tcp(stream),
                    Listener::WebSocket => {
                        let timeout = broker.settings.handshake_timeout;
                        match tokio::time::timeout(timeout, Transport::websocket(stream)).await {
                            Ok(Ok(transport)) => transport,
                            Ok(Err(e)) => {
                                debug!(%peer, error = %e, "WebSocket refused");
                                return;
                            }
                            Err(_) => {
                                debug!(%peer, "WebSocket handshake timed out");
                                return;
                            }
                        }
                    }
                };
                session::run(broker, transport).await;
            }
        },
    )
    .await
}
