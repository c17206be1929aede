//! An MQTT client (rumqttc), its event loop polled by a task that records what arrives; every
//! wait bounded, a failed wait listing everything the client did receive.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS,
    SubscribeFilter, SubscribeReasonCode, Transport,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use super::{Via, WAIT};
use crate::support::{APP, Server, tok};

#[derive(Debug)]
pub(super) enum Got {
    Publish {
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    },
    SubAck(Vec<SubscribeReasonCode>),
    PubAck,
    Closed(String),
}

#[derive(Debug, Clone)]
pub(super) struct Received {
    pub(super) seq: usize,
    pub(super) topic: String,
    pub(super) payload: Value,
    pub(super) retain: bool,
}

pub(super) struct Mqtt {
    pub(super) name: String,
    pub(super) client: AsyncClient,
    pub(super) rx: mpsc::UnboundedReceiver<Got>,
    pub(super) task: JoinHandle<()>,
    /// Every publish received, in order.
    pub(super) all: Vec<Received>,
    /// Those an `expect` has already matched.
    pub(super) taken: HashSet<usize>,
    pub(super) acks: usize,
    pub(super) subacks: Vec<Vec<SubscribeReasonCode>>,
    pub(super) closed: Option<String>,
}

pub(super) fn options(server: &Server, via: Via, client_id: &str) -> MqttOptions {
    let mut options = match via {
        Via::Tcp => MqttOptions::new(client_id, "127.0.0.1", server.tcp_port),
        Via::Ws => {
            let url = format!("ws://127.0.0.1:{}/ws", server.ws_port);
            let mut options = MqttOptions::new(client_id, url, server.ws_port);
            options.set_transport(Transport::Ws);
            options
        }
    };
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(256 * 1024, 256 * 1024);
    options
}

pub(super) fn options_for(server: &Server, via: Via, client_id: &str, bearer: &str) -> MqttOptions {
    let mut options = options(server, via, client_id);
    options.set_credentials("JWT", bearer);
    options
}

/// Connects; the broker's refusal as rumqttc reports it.
pub(super) async fn try_connect(options: MqttOptions) -> Result<Mqtt, ConnectionError> {
    let name = options.client_id();
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let answer = timeout(WAIT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    let Ok(answer) = answer else {
        panic!("{name}: neither a CONNACK nor a close within {WAIT:?}");
    };
    let connack = answer?;
    assert_eq!(connack.code, ConnectReturnCode::Success, "{name}");
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let got = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => Got::Publish {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                    retain: p.retain,
                },
                Ok(Event::Incoming(Packet::SubAck(s))) => Got::SubAck(s.return_codes),
                Ok(Event::Incoming(Packet::PubAck(_))) => Got::PubAck,
                Ok(_) => continue,
                Err(e) => {
                    let _ = tx.send(Got::Closed(e.to_string()));
                    return;
                }
            };
            if tx.send(got).is_err() {
                return;
            }
        }
    });
    Ok(Mqtt {
        name,
        client,
        rx,
        task,
        all: Vec::new(),
        taken: HashSet::new(),
        acks: 0,
        subacks: Vec::new(),
        closed: None,
    })
}

pub(super) async fn connect_as(server: &Server, via: Via, user: &str, client_id: &str) -> Mqtt {
    try_connect(options_for(server, via, client_id, &tok(user)))
        .await
        .unwrap_or_else(|e| panic!("{client_id} ({user}) could not connect: {e}"))
}

pub(super) static CLIENTS: AtomicUsize = AtomicUsize::new(0);

/// `user` connected with a fresh client id and subscribed to their whole tree, as Chat21
/// clients do.
pub(super) async fn online(server: &Server, via: Via, user: &str) -> Mqtt {
    let client_id = format!("{user}-{}", CLIENTS.fetch_add(1, Ordering::Relaxed));
    let mut mqtt = connect_as(server, via, user, &client_id).await;
    mqtt.subscribe_ok(&format!("apps/{APP}/users/{user}/#"))
        .await;
    mqtt
}

pub(super) fn summary(payload: &Value) -> String {
    let text = payload.to_string();
    if text.len() > 400 {
        format!("{}… ({} bytes)", &text[..400], text.len())
    } else {
        text
    }
}

impl Mqtt {
    pub(super) fn record(&mut self, got: Got) {
        match got {
            Got::Publish {
                topic,
                payload,
                retain,
            } => {
                let payload = serde_json::from_slice(&payload)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&payload).into()));
                self.all.push(Received {
                    seq: self.all.len(),
                    topic,
                    payload,
                    retain,
                });
            }
            Got::SubAck(codes) => self.subacks.push(codes),
            Got::PubAck => self.acks += 1,
            Got::Closed(why) => self.closed = Some(why),
        }
    }

    /// Records one event; false at the deadline or once the connection is gone.
    pub(super) async fn pump(&mut self, deadline: Instant) -> bool {
        match timeout(
            deadline.saturating_duration_since(Instant::now()),
            self.rx.recv(),
        )
        .await
        {
            Ok(Some(got)) => {
                self.record(got);
                true
            }
            _ => false,
        }
    }

    /// Records whatever has arrived already.
    pub(super) fn drain(&mut self) {
        while let Ok(got) = self.rx.try_recv() {
            self.record(got);
        }
    }

    pub(super) fn report(&self) -> String {
        let mut lines: Vec<String> = self
            .all
            .iter()
            .map(|r| {
                let retained = if r.retain { " (retained)" } else { "" };
                format!("  #{} {}{retained} {}", r.seq, r.topic, summary(&r.payload))
            })
            .collect();
        if lines.is_empty() {
            lines.push("  (no publish)".into());
        }
        if let Some(why) = &self.closed {
            lines.push(format!("  connection closed: {why}"));
        }
        lines.join("\n")
    }

    /// Waits (bounded) until `done` holds, else fails with what did arrive.
    pub(super) async fn until(&mut self, what: &str, mut done: impl FnMut(&Mqtt) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            if !self.pump(deadline).await {
                self.drain();
                if done(self) {
                    return;
                }
                panic!(
                    "{}: timed out after {WAIT:?} waiting for {what}; received:\n{}",
                    self.name,
                    self.report()
                );
            }
        }
    }

    /// The first publish on `topic` (not matched before) whose payload satisfies `pred`.
    pub(super) async fn expect_where(
        &mut self,
        topic: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Received {
        let find = |m: &Mqtt| {
            m.all
                .iter()
                .find(|r| !m.taken.contains(&r.seq) && r.topic == topic && pred(&r.payload))
                .cloned()
        };
        self.until(&format!("a publish on {topic} ({what})"), |m| {
            find(m).is_some()
        })
        .await;
        let found = find(self).unwrap();
        self.taken.insert(found.seq);
        found
    }

    pub(super) async fn expect(&mut self, topic: &str) -> Received {
        self.expect_where(topic, "any payload", |_| true).await
    }

    /// The next publish on `topic` must carry exactly `payload`.
    pub(super) async fn expect_exactly(&mut self, topic: &str, payload: Value) -> Received {
        let got = self.expect(topic).await;
        assert_eq!(got.payload, payload, "{}: payload on {topic}", self.name);
        got
    }

    /// No publish received so far matches.
    pub(super) fn assert_never(&mut self, what: &str, pred: impl Fn(&Received) -> bool) {
        self.drain();
        if let Some(r) = self.all.iter().find(|r| pred(r)) {
            panic!(
                "{}: received {what}: #{} on {}; everything received:\n{}",
                self.name,
                r.seq,
                r.topic,
                self.report()
            );
        }
    }

    pub(super) fn count(&mut self, topic: &str) -> usize {
        self.drain();
        self.all.iter().filter(|r| r.topic == topic).count()
    }

    pub(super) async fn subscribe(&mut self, filters: &[&str]) -> Vec<SubscribeReasonCode> {
        let before = self.subacks.len();
        let filters: Vec<SubscribeFilter> = filters
            .iter()
            .map(|f| SubscribeFilter::new(f.to_string(), QoS::AtLeastOnce))
            .collect();
        self.client.subscribe_many(filters).await.unwrap();
        self.until("a SUBACK", |m| m.subacks.len() > before).await;
        self.subacks[before].clone()
    }

    pub(super) async fn subscribe_ok(&mut self, filter: &str) {
        let codes = self.subscribe(&[filter]).await;
        assert_eq!(
            codes,
            vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
            "{}: subscribing to {filter}",
            self.name
        );
    }

    /// Publishes at QoS 1 and waits for the PUBACK (the broker acknowledges after handling).
    pub(super) async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        let before = self.acks;
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .unwrap_or_else(|e| panic!("{}: publish on {topic}: {e}", self.name));
        self.until(&format!("the PUBACK of {topic}"), |m| m.acks > before)
            .await;
    }

    pub(super) async fn publish_json(&mut self, topic: &str, payload: Value) {
        self.publish(topic, payload.to_string(), false).await
    }

    /// Waits for the broker to close the connection; how long that took.
    pub(super) async fn expect_closed(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        let deadline = started + within;
        while self.closed.is_none() {
            if !self.pump(deadline).await && self.closed.is_none() {
                panic!(
                    "{}: still connected after {within:?}; received:\n{}",
                    self.name,
                    self.report()
                );
            }
        }
        started.elapsed()
    }

    /// The broker must close the connection on this publish, without acknowledging it.
    pub(super) async fn publish_refused(
        &mut self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        retain: bool,
    ) {
        let before = self.acks;
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .unwrap_or_else(|e| panic!("{}: publish on {topic}: {e}", self.name));
        self.until(&format!("the close after a publish on {topic}"), |m| {
            m.closed.is_some()
        })
        .await;
        assert_eq!(self.acks, before, "{}: {topic} was acknowledged", self.name);
    }

    /// A clean DISCONNECT, then the close.
    pub(super) async fn disconnect(&mut self) {
        self.client.disconnect().await.unwrap();
        self.expect_closed(WAIT).await;
    }

    /// Drops the connection without DISCONNECT (the event loop and its socket go away).
    pub(super) async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}
