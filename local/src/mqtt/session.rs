//! One client connection, from CONNECT to close: authentication by the JWT in the password,
//! per-connection authorization of every SUBSCRIBE and PUBLISH (REALTIME.md's table),
//! keep-alive, the token's expiry, the will message, and delivery of what the router queues.

use std::collections::{HashSet, VecDeque};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chat21::entry::inbound;
use chat21::model::Caller;
use chat21::realtime::topics::{self, ClientTopic};
use rmqtt_codec::types::{Publish, QoS};
use rmqtt_codec::v3::{Connect, ConnectAck, ConnectAckReason, Packet, SubscribeReturnCode};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{debug, info, warn};

use super::Broker;
use super::retained;
use super::router::{Connection, Delivery, MAX_SUBSCRIPTIONS};
use super::transport::{Failure, Transport};

/// How long one packet may take to write before the client counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one connection until it ends.
pub async fn run(broker: Arc<Broker>, mut transport: Transport) {
    let connect = match timeout(broker.settings.handshake_timeout, transport.next()).await {
        Ok(Some(Ok(Packet::Connect(connect)))) => connect,
        Ok(Some(Err(Failure::Version5))) => {
            refuse(
                &mut transport,
                ConnectAckReason::UnacceptableProtocolVersion,
            )
            .await;
            return;
        }
        Ok(Some(Err(e))) => {
            debug!(error = %e, "connection closed before CONNECT");
            return;
        }
        _ => return,
    };
    let Some((caller, expires)) = authenticate(&broker, &connect) else {
        refuse(&mut transport, ConnectAckReason::NotAuthorized).await;
        return;
    };
    let will = match will_of(&connect, &caller) {
        Ok(will) => will,
        Err(()) => {
            refuse(&mut transport, ConnectAckReason::NotAuthorized).await;
            return;
        }
    };
    // MQTT: the server names a client that gave no id, uniquely.
    let client_id = if connect.client_id.is_empty() {
        format!("anonymous-{}", broker.router.fresh_id())
    } else {
        connect.client_id.to_string()
    };
    let (connection, queue) = broker
        .router
        .connect(&caller.app_id, &caller.user_id, &client_id);
    let accepted = Packet::ConnectAck(ConnectAck {
        return_code: ConnectAckReason::ConnectionAccepted,
        session_present: false,
    });
    let mut session = Session {
        broker: broker.clone(),
        connection: connection.clone(),
        caller,
        transport,
        in_flight: HashSet::new(),
        replay: VecDeque::new(),
        next_packet_id: 1,
        keep_alive: (connect.keep_alive > 0)
            .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500)),
    };
    let clean = match session.transport.send(accepted).await {
        Ok(()) => session.serve(queue, expires).await,
        Err(_) => false,
    };
    broker.router.disconnect(&connection);
    session.transport.close().await;
    if !clean && let Some(will) = will {
        // The client went away without DISCONNECT: its will goes out, as if it published it.
        client_publish(&broker, &session.caller, will).await;
    }
}

/// Sends a refusing CONNACK and closes.
async fn refuse(transport: &mut Transport, reason: ConnectAckReason) {
    let refused = Packet::ConnectAck(ConnectAck {
        return_code: reason,
        session_present: false,
    });
    let _ = transport.send(refused).await;
    transport.close().await;
}

/// The password is the JWT (the user name is ignored: Chat21 sends `JWT`).
fn authenticate(broker: &Broker, connect: &Connect) -> Option<(Caller, u64)> {
    let password = connect.password.as_ref()?;
    let token = std::str::from_utf8(password).ok()?;
    match broker.api.verifier.verify_until(token.trim()) {
        // A connection is closed at the token's exp, so one past it (within the clock-skew
        // leeway HTTP calls get) would only connect to be closed: refuse it.
        Ok((_, exp)) if exp * 1000 <= now_ms() => {
            info!("MQTT connection refused: the token has expired");
            None
        }
        Ok(verified) => Some(verified),
        Err(e) => {
            info!(error = %e, "MQTT connection refused");
            None
        }
    }
}

/// The will message, if any, as the publish it will become; only on the user's own presence
/// topic (the only place a client may publish a retained message), and if retained, of at
/// most [`retained::MAX_BYTES`].
fn will_of(connect: &Connect, caller: &Caller) -> Result<Option<Publish>, ()> {
    let Some(will) = &connect.last_will else {
        return Ok(None);
    };
    let too_large = will.retain && will.message.len() > retained::MAX_BYTES;
    match ClientTopic::parse(&will.topic, caller) {
        Some(topic) if topic.may_retain() && will.qos != QoS::ExactlyOnce && !too_large => {
            Ok(Some(Publish {
                dup: false,
                retain: will.retain,
                qos: will.qos,
                topic: will.topic.clone(),
                packet_id: None,
                payload: will.message.clone(),
                properties: None,
            }))
        }
        _ => Err(()),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Session {
    broker: Arc<Broker>,
    connection: Arc<Connection>,
    caller: Caller,
    transport: Transport,
    /// Packet ids of our QoS 1 publishes the client has not acknowledged yet: at most
    /// `max_in_flight`; while that many wait, nothing more is sent (the router's queue holds
    /// the rest) and acknowledgements are still read.
    in_flight: HashSet<u16>,
    /// Retained messages a SUBSCRIBE replays, sent before anything the router queues.
    replay: VecDeque<Delivery>,
    next_packet_id: u16,
    /// 1.5 × the client's keep-alive: silent longer than that, it is gone.
    keep_alive: Option<Duration>,
}

/// Why the packet loop ended, as far as the will is concerned.
type Clean = bool;

impl Session {
    /// The packet loop. Returns whether the client ended it cleanly (DISCONNECT).
    async fn serve(&mut self, mut queue: mpsc::Receiver<Delivery>, expires: u64) -> Clean {
        let expiry =
            Instant::now() + Duration::from_millis((expires * 1000).saturating_sub(now_ms()));
        let far = Duration::from_secs(24 * 3600);
        let mut silent_until = Instant::now() + self.keep_alive.unwrap_or(far);
        let connection = self.connection.clone();
        let window = self.broker.settings.max_in_flight;
        loop {
            let open = self.in_flight.len() < window;
            if open && let Some(delivery) = self.replay.pop_front() {
                if !self.deliver(delivery).await {
                    return false;
                }
                continue;
            }
            tokio::select! {
                packet = self.transport.next() => {
                    let packet = match packet {
                        Some(Ok(packet)) => packet,
                        Some(Err(e)) => {
                            debug!(error = %e, client = %connection.client_id, "closing");
                            return false;
                        }
                        None => return false,
                    };
                    silent_until = Instant::now() + self.keep_alive.unwrap_or(far);
                    match self.on_packet(packet).await {
                        Step::Continue => {}
                        Step::Disconnected => return true,
                        Step::Close => return false,
                    }
                }
                Some(delivery) = queue.recv(), if open => {
                    if !self.deliver(delivery).await {
                        return false;
                    }
                }
                _ = connection.kicked() => return false,
                _ = sleep_until(silent_until) => {
                    info!(client = %connection.client_id, "keep-alive expired");
                    return false;
                }
                _ = sleep_until(expiry) => {
                    info!(client = %connection.client_id, "token expired: closing the connection");
                    return false;
                }
            }
        }
    }

    /// Writes one packet; false when the connection is gone, too slow, or asked to close
    /// (a write blocked on a client that stopped reading does not delay that).
    async fn write(&mut self, packet: Packet) -> bool {
        let connection = self.connection.clone();
        tokio::select! {
            written = timeout(WRITE_TIMEOUT, self.transport.send(packet)) => {
                matches!(written, Ok(Ok(())))
            }
            _ = connection.kicked() => false,
        }
    }

    /// Writes one routed publish (the loop keeps the window: nothing is sent while it is
    /// full); false when the connection is gone or misbehaving.
    async fn deliver(&mut self, delivery: Delivery) -> bool {
        let packet_id = if delivery.qos == QoS::AtMostOnce {
            None
        } else {
            // The window (at most 65,000) leaves ids free: skip those still unacknowledged.
            while self.in_flight.contains(&self.next_packet_id) {
                self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            }
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            self.in_flight.insert(id);
            NonZeroU16::new(id)
        };
        let publish = Publish {
            dup: false,
            retain: delivery.retain,
            qos: if packet_id.is_some() {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            },
            topic: delivery.topic,
            packet_id,
            payload: delivery.payload,
            properties: None,
        };
        self.write(Packet::Publish(Box::new(publish))).await
    }

    async fn on_packet(&mut self, packet: Packet) -> Step {
        match packet {
            Packet::Publish(publish) => {
                let Some(kind) = ClientTopic::parse(&publish.topic, &self.caller) else {
                    // Like IoT Core: a client publishing where it may not is disconnected.
                    warn!(client = %self.connection.client_id, topic = %publish.topic, "publish refused");
                    return Step::Close;
                };
                // A retained publish elsewhere than presence or too large for a retained
                // message is refused as IoT Core refuses publishes: the client is closed.
                let retain_refused = publish.retain
                    && (!kind.may_retain() || publish.payload.len() > retained::MAX_BYTES);
                if retain_refused || publish.qos == QoS::ExactlyOnce {
                    warn!(client = %self.connection.client_id, topic = %publish.topic, "retained or QoS 2 publish refused");
                    return Step::Close;
                }
                let packet_id = publish.packet_id;
                client_publish(&self.broker, &self.caller, *publish).await;
                if let Some(packet_id) = packet_id
                    && !self.write(Packet::PublishAck { packet_id }).await
                {
                    return Step::Close;
                }
                Step::Continue
            }
            Packet::PublishAck { packet_id } => {
                self.in_flight.remove(&packet_id.get());
                Step::Continue
            }
            Packet::Subscribe {
                packet_id,
                topic_filters,
            } => {
                let mut status = Vec::with_capacity(topic_filters.len());
                let mut granted: Vec<(String, QoS)> = Vec::new();
                for (filter, qos) in topic_filters {
                    let qos = if qos == QoS::AtMostOnce {
                        QoS::AtMostOnce
                    } else {
                        QoS::AtLeastOnce
                    };
                    if !topics::may_subscribe(&filter, &self.caller) {
                        info!(client = %self.connection.client_id, %filter, "subscription refused");
                        status.push(SubscribeReturnCode::Failure);
                    } else if !self.connection.subscribe(&filter, qos) {
                        info!(client = %self.connection.client_id, %filter, "subscription refused: {MAX_SUBSCRIPTIONS} held already");
                        status.push(SubscribeReturnCode::Failure);
                    } else {
                        status.push(SubscribeReturnCode::Success(qos));
                        granted.retain(|(f, _)| f.as_str() != &filter[..]);
                        granted.push((filter.to_string(), qos));
                    }
                }
                if !self.write(Packet::SubscribeAck { packet_id, status }).await {
                    return Step::Close;
                }
                // The retained messages under the new subscriptions, each once, sent as
                // retained by the packet loop (within the window, reading acknowledgements).
                let replay = self.broker.router.retained_for(&self.connection, &granted);
                self.replay.extend(replay);
                Step::Continue
            }
            Packet::Unsubscribe {
                packet_id,
                topic_filters,
            } => {
                for filter in topic_filters {
                    self.connection.unsubscribe(&filter);
                }
                if self.write(Packet::UnsubscribeAck { packet_id }).await {
                    Step::Continue
                } else {
                    Step::Close
                }
            }
            Packet::PingRequest => {
                if self.write(Packet::PingResponse).await {
                    Step::Continue
                } else {
                    Step::Close
                }
            }
            Packet::Disconnect => Step::Disconnected,
            // A second CONNECT, QoS 2 flows, or server-to-client packets: protocol violations.
            other => {
                warn!(client = %self.connection.client_id, packet = ?other.packet_type(), "unexpected packet");
                Step::Close
            }
        }
    }
}

/// A publish the client may make: routed to subscribers like any broker does (retained if
/// asked), then run as the operation it means. A refused or invalid one changes nothing.
async fn client_publish(broker: &Broker, caller: &Caller, publish: Publish) {
    let topic = publish.topic.to_string();
    let presence = ClientTopic::parse(&topic, caller).is_some_and(|kind| kind.may_retain());
    if presence && retained::is_disconnected(&publish.payload) {
        // The client is gone: its presence is no longer retained (nor a will's).
        broker.router.retain(&topic, Bytes::new());
    } else if publish.retain {
        broker.router.retain(&topic, publish.payload.clone());
    }
    broker
        .router
        .publish(&topic, publish.payload.clone(), publish.qos);
    let deps = &broker.api.deps;
    if let Err(e) = inbound::handle(deps, caller, &topic, &publish.payload).await {
        warn!(error = %e, user = %caller.user_id, %topic, "publish dropped");
    }
}

enum Step {
    Continue,
    /// The client sent DISCONNECT: no will.
    Disconnected,
    Close,
}

/// The payload bytes of a real-time push.
pub fn payload_of(value: &serde_json::Value) -> Bytes {
    Bytes::from(value.to_string())
}
