//! The embedded MQTT broker (REALTIME.md), as Chat21 clients meet it: the real binary, a real
//! MQTT 3.1.1 client (rumqttc) over TCP and over WebSocket (`/ws`), and hand-encoded packets
//! where a well-behaved client library would refuse to misbehave (silence, wildcards in a
//! topic name, never reading).
//!
//! Most scenarios run on both transports (`mod name { tcp, ws }`). Every wait is bounded; a
//! failed wait lists everything the client did receive.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, LastWill, MqttOptions, Packet, QoS,
    SubscribeFilter, SubscribeReasonCode, Transport,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

use crate::server::{APP, KEY, Log, Server, token};

/// How long anything that should happen may take.
const WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Tcp,
    Ws,
}

/// One `#[tokio::test]` per transport for each scenario `async fn name(via: Via)`.
macro_rules! on_both_transports {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tcp() {
                super::$name(super::Via::Tcp).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ws() {
                super::$name(super::Via::Ws).await
            }
        }
    )*};
}

on_both_transports!(
    a_valid_token_connects_whatever_the_user_name,
    missing_forged_and_expired_tokens_are_refused_with_code_5,
    another_tenants_token_is_valid_in_its_own_tree_only,
    the_connection_is_closed_at_the_tokens_exp,
    keep_alive_drops_a_silent_client_and_keeps_a_pinging_one,
    a_direct_message_reaches_recipient_and_sender,
    group_changes_reach_every_member_and_removed_ones,
    a_read_receipt_reaches_the_sender,
    a_read_conversation_is_told_to_reader_and_peer,
    archive_unarchive_and_delete_are_told_to_the_owner,
    a_send_over_mqtt_is_a_send_and_bad_payloads_change_nothing,
    presence_is_retained_and_the_will_goes_out_on_abrupt_disconnects_only,
    subscriptions_outside_the_users_tree_get_0x80,
    forbidden_publishes_disconnect_and_change_nothing,
    ids_with_wildcards_in_topics_are_refused,
    the_same_client_id_replaces_the_first_connection,
    anonymous_clients_get_distinct_ids,
);

// ---------------------------------------------------------------------------------------------
// The server, its log drained (a flood of warnings must not fill the pipe and stall it)

fn start_logged() -> (Server, Log) {
    let server = crate::server::start();
    let log = server.log.clone();
    (server, log)
}

fn start() -> Server {
    start_logged().0
}

// ---------------------------------------------------------------------------------------------
// Tokens

fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn signed(claims: &Value, algorithm: jsonwebtoken::Algorithm, key: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(algorithm),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn tok(user: &str) -> String {
    token(user, APP, false)
}

// ---------------------------------------------------------------------------------------------
// HTTP (a minimal HTTP/1.1 client: one request per connection)

async fn http(
    server: &Server,
    method: &str,
    path: &str,
    bearer: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect to the HTTP port");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Authorization: {bearer}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within 10 s"))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no header end in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: bad status line in {head:?}"));
    let json = if rest.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(rest).unwrap_or_else(|_| Value::String(rest.to_string()))
    };
    (status, json)
}

/// A call that must succeed (2xx); its body.
async fn ok(server: &Server, method: &str, path: &str, bearer: &str, body: Option<Value>) -> Value {
    let (status, answer) = http(server, method, path, bearer, body.as_ref()).await;
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {answer}"
    );
    answer
}

fn direct(to: &str, text: &str) -> Value {
    json!({"sender_fullname": "Sender", "recipient_id": to,
           "recipient_fullname": "Recipient", "text": text})
}

fn to_group(group: &str, text: &str) -> Value {
    let mut body = direct(group, text);
    body["channel_type"] = json!("group");
    body
}

/// Sends over HTTP as `from` (in `app`); the stored message.
async fn send_in(server: &Server, app: &str, from: &str, body: Value) -> Value {
    let bearer = token(from, app, false);
    let answer = ok(
        server,
        "POST",
        &format!("/api/{app}/messages"),
        &bearer,
        Some(body),
    )
    .await;
    answer["message"].clone()
}

async fn send(server: &Server, from: &str, body: Value) -> Value {
    send_in(server, APP, from, body).await
}

async fn list(server: &Server, user: &str, rest: &str) -> Vec<Value> {
    let path = format!("/api/{APP}/{user}/{rest}");
    let answer = ok(server, "GET", &path, &tok(user), None).await;
    answer["result"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {path}: no result array: {answer}"))
        .clone()
}

async fn timeline(server: &Server, user: &str, with: &str) -> Vec<Value> {
    list(server, user, &format!("conversations/{with}/messages")).await
}

async fn conversations(server: &Server, user: &str) -> Vec<Value> {
    list(server, user, "conversations").await
}

async fn archived(server: &Server, user: &str) -> Vec<Value> {
    list(server, user, "conversations/archived").await
}

fn find<'a>(items: &'a [Value], field: &str, value: &str) -> Option<&'a Value> {
    items.iter().find(|i| i[field] == value)
}

/// Every field of `expected` has that value in `actual`.
fn assert_fields(actual: &Value, expected: Value, what: &str) {
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&actual[field], value, "{what}: field `{field}` of {actual}");
    }
}

// ---------------------------------------------------------------------------------------------
// An MQTT client (rumqttc), its event loop polled by a task that records what arrives

#[derive(Debug)]
enum Got {
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
struct Received {
    seq: usize,
    topic: String,
    payload: Value,
    retain: bool,
}

struct Mqtt {
    name: String,
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Got>,
    task: JoinHandle<()>,
    /// Every publish received, in order.
    all: Vec<Received>,
    /// Those an `expect` has already matched.
    taken: HashSet<usize>,
    acks: usize,
    subacks: Vec<Vec<SubscribeReasonCode>>,
    closed: Option<String>,
}

fn options(server: &Server, via: Via, client_id: &str) -> MqttOptions {
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

fn options_for(server: &Server, via: Via, client_id: &str, bearer: &str) -> MqttOptions {
    let mut options = options(server, via, client_id);
    options.set_credentials("JWT", bearer);
    options
}

/// Connects; the broker's refusal as rumqttc reports it.
async fn try_connect(options: MqttOptions) -> Result<Mqtt, ConnectionError> {
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

async fn connect_as(server: &Server, via: Via, user: &str, client_id: &str) -> Mqtt {
    try_connect(options_for(server, via, client_id, &tok(user)))
        .await
        .unwrap_or_else(|e| panic!("{client_id} ({user}) could not connect: {e}"))
}

static CLIENTS: AtomicUsize = AtomicUsize::new(0);

/// `user` connected with a fresh client id and subscribed to their whole tree, as Chat21
/// clients do.
async fn online(server: &Server, via: Via, user: &str) -> Mqtt {
    let client_id = format!("{user}-{}", CLIENTS.fetch_add(1, Ordering::Relaxed));
    let mut mqtt = connect_as(server, via, user, &client_id).await;
    mqtt.subscribe_ok(&format!("apps/{APP}/users/{user}/#"))
        .await;
    mqtt
}

fn summary(payload: &Value) -> String {
    let text = payload.to_string();
    if text.len() > 400 {
        format!("{}… ({} bytes)", &text[..400], text.len())
    } else {
        text
    }
}

impl Mqtt {
    fn record(&mut self, got: Got) {
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
    async fn pump(&mut self, deadline: Instant) -> bool {
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
    fn drain(&mut self) {
        while let Ok(got) = self.rx.try_recv() {
            self.record(got);
        }
    }

    fn report(&self) -> String {
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
    async fn until(&mut self, what: &str, mut done: impl FnMut(&Mqtt) -> bool) {
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
    async fn expect_where(
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

    async fn expect(&mut self, topic: &str) -> Received {
        self.expect_where(topic, "any payload", |_| true).await
    }

    /// The next publish on `topic` must carry exactly `payload`.
    async fn expect_exactly(&mut self, topic: &str, payload: Value) -> Received {
        let got = self.expect(topic).await;
        assert_eq!(got.payload, payload, "{}: payload on {topic}", self.name);
        got
    }

    /// No publish received so far matches.
    fn assert_never(&mut self, what: &str, pred: impl Fn(&Received) -> bool) {
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

    fn count(&mut self, topic: &str) -> usize {
        self.drain();
        self.all.iter().filter(|r| r.topic == topic).count()
    }

    async fn subscribe(&mut self, filters: &[&str]) -> Vec<SubscribeReasonCode> {
        let before = self.subacks.len();
        let filters: Vec<SubscribeFilter> = filters
            .iter()
            .map(|f| SubscribeFilter::new(f.to_string(), QoS::AtLeastOnce))
            .collect();
        self.client.subscribe_many(filters).await.unwrap();
        self.until("a SUBACK", |m| m.subacks.len() > before).await;
        self.subacks[before].clone()
    }

    async fn subscribe_ok(&mut self, filter: &str) {
        let codes = self.subscribe(&[filter]).await;
        assert_eq!(
            codes,
            vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
            "{}: subscribing to {filter}",
            self.name
        );
    }

    /// Publishes at QoS 1 and waits for the PUBACK (the broker acknowledges after handling).
    async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        let before = self.acks;
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .unwrap_or_else(|e| panic!("{}: publish on {topic}: {e}", self.name));
        self.until(&format!("the PUBACK of {topic}"), |m| m.acks > before)
            .await;
    }

    async fn publish_json(&mut self, topic: &str, payload: Value) {
        self.publish(topic, payload.to_string(), false).await
    }

    /// Waits for the broker to close the connection; how long that took.
    async fn expect_closed(&mut self, within: Duration) -> Duration {
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
    async fn publish_refused(&mut self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
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
    async fn disconnect(&mut self) {
        self.client.disconnect().await.unwrap();
        self.expect_closed(WAIT).await;
    }

    /// Drops the connection without DISCONNECT (the event loop and its socket go away).
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-encoded MQTT 3.1.1, over TCP or over WebSocket frames

fn with_length(first: u8, body: &[u8]) -> Vec<u8> {
    let mut packet = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(body);
    packet
}

fn string(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

fn connect_packet(client_id: &str, keep_alive: u16, password: Option<&str>) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4];
    // Clean session; with a password, the user name `JWT` as Chat21 sends.
    body.push(if password.is_some() { 0xC2 } else { 0x02 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    body.extend(string(client_id.as_bytes()));
    if let Some(password) = password {
        body.extend(string(b"JWT"));
        body.extend(string(password.as_bytes()));
    }
    with_length(0x10, &body)
}

fn subscribe_packet(packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend(string(filter.as_bytes()));
    body.push(qos);
    with_length(0x82, &body)
}

/// A QoS 1 publish (packet id 1) or a QoS 0 one.
fn publish_packet(topic: &str, payload: &[u8], qos1: bool) -> Vec<u8> {
    let mut body = string(topic.as_bytes());
    if qos1 {
        body.extend_from_slice(&1u16.to_be_bytes());
    }
    body.extend_from_slice(payload);
    with_length(if qos1 { 0x32 } else { 0x30 }, &body)
}

const PINGREQ: [u8; 2] = [0xC0, 0];

/// A raw connection to the broker.
struct Raw {
    name: String,
    stream: TcpStream,
    ws: bool,
    /// Bytes read from the socket, not yet decoded (WebSocket frames, or MQTT over TCP).
    wire: Vec<u8>,
    /// MQTT bytes not yet decoded into packets.
    mqtt: Vec<u8>,
    eof: bool,
}

enum Next {
    Packet(u8, Vec<u8>),
    Closed,
    TimedOut,
}

impl Raw {
    /// Opens a TCP (or WebSocket) connection; `recv_buffer` shrinks the socket's receive buffer.
    async fn open(server: &Server, via: Via, name: &str, recv_buffer: Option<u32>) -> Raw {
        let port = match via {
            Via::Tcp => server.tcp_port,
            Via::Ws => server.ws_port,
        };
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let stream = socket
            .connect(([127, 0, 0, 1], port).into())
            .await
            .expect("connect to the MQTT port");
        let mut raw = Raw {
            name: name.to_string(),
            stream,
            ws: via == Via::Ws,
            wire: Vec::new(),
            mqtt: Vec::new(),
            eof: false,
        };
        if raw.ws {
            let upgrade = format!(
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
            );
            raw.stream.write_all(upgrade.as_bytes()).await.unwrap();
            let deadline = Instant::now() + WAIT;
            let end = loop {
                if let Some(end) = raw.wire.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end;
                }
                assert!(
                    raw.read(deadline).await,
                    "{name}: no WebSocket handshake answer"
                );
            };
            let head = String::from_utf8_lossy(&raw.wire[..end]).into_owned();
            assert!(head.starts_with("HTTP/1.1 101"), "{name}: {head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("\r\nsec-websocket-protocol: mqtt"),
                "{name}: the `mqtt` subprotocol is not answered: {head}"
            );
            raw.wire.drain(..end + 4);
        }
        raw
    }

    /// Opens and CONNECTs as `user` with a fresh client id, expecting CONNACK 0.
    async fn online(server: &Server, via: Via, user: &str, keep_alive: u16) -> Raw {
        let client_id = format!("{user}-raw-{}", CLIENTS.fetch_add(1, Ordering::Relaxed));
        Raw::connected(server, via, user, &client_id, keep_alive).await
    }

    async fn connected(
        server: &Server,
        via: Via,
        user: &str,
        client_id: &str,
        keep_alive: u16,
    ) -> Raw {
        let name = if client_id.is_empty() {
            format!("{user}-anonymous")
        } else {
            client_id.to_string()
        };
        let mut raw = Raw::open(server, via, &name, None).await;
        raw.send(&connect_packet(client_id, keep_alive, Some(&tok(user))))
            .await;
        raw.expect_packet(0x20, &[0, 0], "CONNACK 0").await;
        raw
    }

    /// A PINGREQ must be answered.
    async fn ping(&mut self, what: &str) {
        self.send(&PINGREQ).await;
        self.expect_packet(0xD0, &[], what).await;
    }

    async fn send(&mut self, packet: &[u8]) {
        let bytes = if self.ws {
            let mask = [0x37u8, 0xfa, 0x21, 0x3d];
            let mut frame = vec![0x82];
            match packet.len() {
                n if n < 126 => frame.push(0x80 | n as u8),
                n if n < 65536 => {
                    frame.push(0x80 | 126);
                    frame.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    frame.push(0x80 | 127);
                    frame.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            frame.extend_from_slice(&mask);
            frame.extend(packet.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            frame
        } else {
            packet.to_vec()
        };
        // The broker may have closed already: that is for the reads to tell.
        let _ = self.stream.write_all(&bytes).await;
    }

    /// Reads once into `wire`; false at the deadline or at the end of the stream.
    async fn read(&mut self, deadline: Instant) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.eof = true;
                false
            }
            Ok(Ok(n)) => {
                self.wire.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => false,
        }
    }

    /// Moves complete WebSocket frames (or, over TCP, everything) from `wire` to `mqtt`.
    fn unframe(&mut self) {
        if !self.ws {
            self.mqtt.append(&mut self.wire);
            return;
        }
        loop {
            let w = &self.wire;
            if w.len() < 2 {
                return;
            }
            let (mut len, mut at) = ((w[1] & 0x7f) as usize, 2);
            if len == 126 {
                if w.len() < 4 {
                    return;
                }
                len = u16::from_be_bytes([w[2], w[3]]) as usize;
                at = 4;
            } else if len == 127 {
                if w.len() < 10 {
                    return;
                }
                len = u64::from_be_bytes(w[2..10].try_into().unwrap()) as usize;
                at = 10;
            }
            if w[1] & 0x80 != 0 {
                at += 4; // servers do not mask; skip a mask key if one is there anyway
            }
            if w.len() < at + len {
                return;
            }
            let opcode = w[0] & 0x0f;
            let payload = w[at..at + len].to_vec();
            self.wire.drain(..at + len);
            match opcode {
                0 | 2 => self.mqtt.extend_from_slice(&payload),
                8 => self.eof = true,
                _ => {}
            }
        }
    }

    /// One complete MQTT packet from `mqtt`, if there is one.
    fn decode(&mut self) -> Option<(u8, Vec<u8>)> {
        let (mut len, mut shift, mut at) = (0usize, 0, 1);
        loop {
            let byte = *self.mqtt.get(at)?;
            len |= ((byte & 0x7f) as usize) << shift;
            shift += 7;
            at += 1;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if self.mqtt.len() < at + len {
            return None;
        }
        let first = self.mqtt[0];
        let body = self.mqtt[at..at + len].to_vec();
        self.mqtt.drain(..at + len);
        Some((first, body))
    }

    async fn next(&mut self, within: Duration) -> Next {
        let deadline = Instant::now() + within;
        loop {
            self.unframe();
            if let Some((first, body)) = self.decode() {
                return Next::Packet(first, body);
            }
            if self.eof {
                return Next::Closed;
            }
            if !self.read(deadline).await && !self.eof {
                return Next::TimedOut;
            }
        }
    }

    async fn expect_packet(&mut self, first: u8, body: &[u8], what: &str) {
        match self.next(WAIT).await {
            Next::Packet(f, b) if f == first && b == body => {}
            Next::Packet(f, b) => panic!("{}: expected {what}, got {f:#04x} {b:?}", self.name),
            Next::Closed => panic!("{}: closed while waiting for {what}", self.name),
            Next::TimedOut => panic!("{}: no {what} within {WAIT:?}", self.name),
        }
    }

    /// Reads (and discards) until the broker closes the connection; how long that took and
    /// how many bytes came, or `None` if it was still open after `within`.
    async fn closed_within(&mut self, within: Duration) -> Option<(Duration, usize)> {
        let started = Instant::now();
        let deadline = started + within;
        let mut bytes = self.wire.len() + self.mqtt.len();
        self.wire.clear();
        self.mqtt.clear();
        while !self.eof {
            if !self.read(deadline).await && !self.eof {
                return None;
            }
            bytes += self.wire.len();
            // A WebSocket close frame ends it too.
            self.unframe();
            self.mqtt.clear();
        }
        Some((started.elapsed(), bytes))
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Connection

async fn a_valid_token_connects_whatever_the_user_name(via: Via) {
    let server = start();
    if via == Via::Ws {
        // MQTT over WebSocket is served on /ws only.
        let mut stream = TcpStream::connect(("127.0.0.1", server.ws_port))
            .await
            .unwrap();
        stream
            .write_all(
                b"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                  Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
            )
            .await
            .unwrap();
        let mut answer = vec![0u8; 1024];
        let n = timeout(WAIT, stream.read(&mut answer))
            .await
            .expect("an answer to an upgrade on /mqtt")
            .unwrap();
        let head = String::from_utf8_lossy(&answer[..n]);
        assert!(
            head.starts_with("HTTP/1.1 404"),
            "an upgrade on /mqtt: {head}"
        );
    }
    // The user name names someone else: the connection is still the token's user's.
    for (i, user_name) in ["JWT", "u2", "any thing"].into_iter().enumerate() {
        let mut options = options(&server, via, &format!("c-{i}"));
        options.set_credentials(user_name, tok("u1"));
        let mut mqtt = try_connect(options)
            .await
            .unwrap_or_else(|e| panic!("user name {user_name:?}: refused: {e}"));
        let codes = mqtt
            .subscribe(&["apps/app1/users/u1/#", "apps/app1/users/u2/#"])
            .await;
        assert_eq!(
            codes,
            vec![
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::Failure
            ],
            "user name {user_name:?}"
        );
        let sent = send(&server, "u3", direct("u1", &format!("hello {i}"))).await;
        let got = mqtt
            .expect("apps/app1/users/u1/messages/u3/clientadded")
            .await;
        assert_eq!(got.payload["message_id"], sent["message_id"]);
        mqtt.disconnect().await;
    }
}

async fn missing_forged_and_expired_tokens_are_refused_with_code_5(via: Via) {
    let server = start();
    let now = now_secs();
    let hs256 = jsonwebtoken::Algorithm::HS256;
    let claims = |exp: u64| json!({"sub": "u1", "app_id": APP, "exp": exp});
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no credentials at all", None),
        ("a user name without password", Some(String::new())),
        ("a password that is not a JWT", Some("not-a-jwt".into())),
        (
            "a forged signature",
            Some(signed(&claims(now + 3600), hs256, "another-key")),
        ),
        (
            "a token expired an hour ago",
            Some(signed(&claims(now - 3600), hs256, KEY)),
        ),
        (
            "a token of another algorithm (HS384)",
            Some(signed(
                &claims(now + 3600),
                jsonwebtoken::Algorithm::HS384,
                KEY,
            )),
        ),
        (
            "a token without app_id",
            Some(signed(&json!({"sub": "u1", "exp": now + 3600}), hs256, KEY)),
        ),
        (
            "a token whose sub is not a valid id",
            Some(signed(
                &json!({"sub": "u+1", "app_id": APP, "exp": now + 3600}),
                hs256,
                KEY,
            )),
        ),
    ];
    for (i, (what, password)) in cases.into_iter().enumerate() {
        let mut options = options(&server, via, &format!("refused-{i}"));
        if let Some(password) = password {
            // rumqttc sends no password field for an empty one.
            options.set_credentials("JWT", password);
        }
        match try_connect(options).await {
            Ok(_) => panic!("{what}: the connection was accepted"),
            Err(ConnectionError::ConnectionRefused(code)) => {
                assert_eq!(code, ConnectReturnCode::NotAuthorized, "{what}")
            }
            Err(e) => panic!("{what}: expected CONNACK 5, got {e}"),
        }
    }
    // A raw CONNECT without password: CONNACK 5, then the close.
    let mut raw = Raw::open(&server, via, "raw-no-password", None).await;
    raw.send(&connect_packet("raw-no-password", 30, None)).await;
    raw.expect_packet(0x20, &[0, 5], "CONNACK 5").await;
    assert!(
        raw.closed_within(WAIT).await.is_some(),
        "a refused connection stays open"
    );
    // And the valid token still works.
    connect_as(&server, via, "u1", "fine")
        .await
        .disconnect()
        .await;
}

async fn another_tenants_token_is_valid_in_its_own_tree_only(via: Via) {
    let server = start();
    let mut other = try_connect(options_for(
        &server,
        via,
        "tenant-2",
        &token("u1", "app2", false),
    ))
    .await
    .expect("a token of app2 connects");
    let codes = other
        .subscribe(&[
            "apps/app2/users/u1/#",
            "apps/app1/users/u1/#",
            "apps/+/users/u1/#",
        ])
        .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Failure
        ]
    );
    let mut here = online(&server, via, "u1").await;

    // A message to u1 in app1 reaches app1's u1 only.
    let sent = send(&server, "u2", direct("u1", "in app1")).await;
    let got = here
        .expect("apps/app1/users/u1/messages/u2/clientadded")
        .await;
    assert_eq!(got.payload["message_id"], sent["message_id"]);
    // A message to u1 in app2 reaches app2's u1 only, on app2's topics.
    let sent = send_in(&server, "app2", "u2", direct("u1", "in app2")).await;
    let got = other
        .expect("apps/app2/users/u1/messages/u2/clientadded")
        .await;
    assert_fields(
        &got.payload,
        json!({"message_id": sent["message_id"], "app_id": "app2", "text": "in app2",
               "timelineOf": "u1", "conversWith": "u2", "status": 150}),
        "app2's copy",
    );
    // Both pushes went out in order through one deliver step: each client has seen all it
    // will ever see of them.
    other.assert_never("an app1 topic", |r| !r.topic.starts_with("apps/app2/"));
    here.assert_never("an app2 topic", |r| !r.topic.starts_with("apps/app1/"));
    here.assert_never("app2's message", |r| r.payload["text"] == "in app2");
}

async fn the_connection_is_closed_at_the_tokens_exp(via: Via) {
    let server = start();
    let exp = now_secs() + 3;
    let short = signed(
        &json!({"sub": "u1", "app_id": APP, "exp": exp}),
        jsonwebtoken::Algorithm::HS256,
        KEY,
    );
    let mut mqtt = try_connect(options_for(&server, via, "short-lived", &short))
        .await
        .expect("a token valid for 3 more seconds connects");
    let connected = Instant::now();
    mqtt.subscribe_ok("apps/app1/users/u1/#").await;
    mqtt.expect_closed(Duration::from_secs(8)).await;
    let lived = connected.elapsed();
    let now = now_secs();
    assert!(
        now >= exp,
        "closed {lived:?} after connecting, before the token's exp ({now} < {exp}): {:?}",
        mqtt.closed
    );
    assert!(
        lived <= Duration::from_secs(5),
        "closed {lived:?} after connecting, with exp at most 3 s away"
    );
}

async fn keep_alive_drops_a_silent_client_and_keeps_a_pinging_one(via: Via) {
    let server = start();
    // Keep-alive 1 s, then silence: gone after 1.5 s.
    let mut silent = Raw::online(&server, via, "u1", 1).await;
    let (after, _) = silent
        .closed_within(Duration::from_secs(4))
        .await
        .expect("a client silent for 4 s with keep-alive 1 s is still connected");
    assert!(
        after >= Duration::from_millis(1000) && after <= Duration::from_millis(3000),
        "dropped {after:?} after CONNACK, expected about 1.5 s"
    );
    // Keep-alive 1 s with a PINGREQ every 0.6 s: still there after 3 s.
    let mut pinging = Raw::online(&server, via, "u1", 1).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        pinging.send(&PINGREQ).await;
        pinging.expect_packet(0xD0, &[], "PINGRESP").await;
        sleep(Duration::from_millis(600)).await;
    }
    pinging
        .send(&subscribe_packet(7, "apps/app1/users/u1/#", 1))
        .await;
    pinging
        .expect_packet(0x90, &[0, 7, 1], "SUBACK after 3 s of pings")
        .await;
    // rumqttc with keep-alive 1 s pings by itself and stays connected.
    let mut options = options_for(&server, via, "keep-alive-1", &tok("u1"));
    options.set_keep_alive(Duration::from_secs(1));
    let mut mqtt = try_connect(options).await.unwrap();
    sleep(Duration::from_secs(3)).await;
    mqtt.subscribe_ok("apps/app1/users/u1/#").await;
    assert!(mqtt.closed.is_none(), "{:?}", mqtt.closed);
}

// ---------------------------------------------------------------------------------------------
// 2. What the server publishes

async fn a_direct_message_reaches_recipient_and_sender(via: Via) {
    let server = start();
    let mut u1 = online(&server, via, "u1").await;
    let mut u2 = online(&server, via, "u2").await;
    let to_u2 = "apps/app1/users/u2/messages/u1/clientadded";
    let to_u1 = "apps/app1/users/u1/messages/u2/clientadded";

    let sent = send(&server, "u1", direct("u2", "no attributes")).await;
    let common = json!({"message_id": sent["message_id"], "sender": "u1",
        "sender_fullname": "Sender", "recipient": "u2", "recipient_fullname": "Recipient",
        "text": "no attributes", "type": "text", "channel_type": "direct", "app_id": APP,
        "timestamp": sent["timestamp"]});
    let theirs = u2.expect(to_u2).await;
    assert_fields(&theirs.payload, common.clone(), "the recipient's copy");
    assert_fields(
        &theirs.payload,
        json!({"timelineOf": "u2", "conversWith": "u1", "status": 150}),
        "the recipient's copy",
    );
    let mine = u1.expect(to_u1).await;
    assert_fields(&mine.payload, common, "the sender's copy");
    assert_fields(
        &mine.payload,
        json!({"timelineOf": "u1", "conversWith": "u2", "status": 100}),
        "the sender's copy",
    );
    for copy in [&theirs.payload, &mine.payload] {
        assert!(copy.get("attributes").is_none(), "{copy}");
        assert!(copy.get("metadata").is_none(), "{copy}");
    }

    // `null` there, as Chat21's client sends: no field either.
    let mut body = direct("u2", "null attributes");
    body["attributes"] = Value::Null;
    body["metadata"] = Value::Null;
    send(&server, "u1", body).await;
    // With attributes and metadata: delivered as sent.
    let mut body = direct("u2", "with attributes");
    body["attributes"] = json!({"updateconversation": true, "k": "v"});
    body["metadata"] = json!({"src": "https://x/y.png", "width": 1, "height": 2});
    send(&server, "u1", body.clone()).await;
    for (client, topic) in [(&mut u2, to_u2), (&mut u1, to_u1)] {
        let null = client
            .expect_where(topic, "null attributes", |p| p["text"] == "null attributes")
            .await;
        assert!(null.payload.get("attributes").is_none(), "{}", null.payload);
        assert!(null.payload.get("metadata").is_none(), "{}", null.payload);
        let with = client
            .expect_where(topic, "with attributes", |p| p["text"] == "with attributes")
            .await;
        assert_eq!(with.payload["attributes"], body["attributes"]);
        assert_eq!(with.payload["metadata"], body["metadata"]);
        // The copies of one conversation arrive in the order they were written.
        assert!(null.seq < with.seq, "{}", client.report());
    }
    assert_eq!(u2.count(to_u2), 3);
    assert_eq!(u1.count(to_u1), 3);
}

fn group_of(payload: &Value, members: &[&str]) -> bool {
    let expected: serde_json::Map<String, Value> =
        members.iter().map(|m| (m.to_string(), json!(1))).collect();
    payload["members"] == Value::Object(expected)
}

fn label(payload: &Value, key: &str, member: Option<&str>) -> bool {
    let label = &payload["attributes"]["messagelabel"];
    label["key"] == key && member.is_none_or(|m| label["parameters"]["member_id"] == m)
}

async fn group_changes_reach_every_member_and_removed_ones(via: Via) {
    let server = start();
    let group = "group-g1";
    let base = format!("/api/{APP}/groups/{group}");
    let updated = |user: &str| format!("apps/{APP}/users/{user}/groups/{group}/clientupdated");
    let added = |user: &str| format!("apps/{APP}/users/{user}/messages/{group}/clientadded");
    let mut clients = std::collections::HashMap::new();
    for user in ["o", "m1", "m2", "m3", "m4"] {
        clients.insert(user, online(&server, via, user).await);
    }
    macro_rules! c {
        ($user:expr) => {
            clients.get_mut($user).unwrap()
        };
    }

    // Create: every member hears of the whole group, and gets the system messages.
    ok(
        &server,
        "POST",
        &format!("/api/{APP}/groups"),
        &tok("o"),
        Some(json!({"group_name": "G1", "group_id": group, "group_members": {"m1": 1, "m2": 1}})),
    )
    .await;
    for user in ["o", "m1", "m2"] {
        let got = c!(user)
            .expect_where(&updated(user), "the created group", |p| {
                group_of(p, &["o", "m1", "m2"])
            })
            .await;
        assert_fields(
            &got.payload,
            json!({"uid": group, "name": "G1", "owner": "o", "appId": APP}),
            "the created group",
        );
        assert!(got.payload["createdOn"].is_u64(), "{}", got.payload);
        let created = c!(user)
            .expect_where(&added(user), "GROUP_CREATED", |p| {
                label(p, "GROUP_CREATED", None)
            })
            .await;
        assert_fields(
            &created.payload,
            json!({"sender": "system", "sender_fullname": "System", "recipient": group,
                   "channel_type": "group", "type": "text", "timelineOf": user,
                   "conversWith": group, "status": 150}),
            "the GROUP_CREATED system message",
        );
        assert_eq!(created.payload["attributes"]["subtype"], "info");
        assert_eq!(
            created.payload["attributes"]["messagelabel"]["parameters"]["creator"],
            "o"
        );
        for member in ["m1", "m2"] {
            c!(user)
                .expect_where(&added(user), "MEMBER_JOINED_GROUP", |p| {
                    label(p, "MEMBER_JOINED_GROUP", Some(member))
                })
                .await;
        }
    }

    // A group message: every member, the sender included, gets a copy with status 150.
    let hello = send(&server, "o", to_group(group, "hello group")).await;
    for user in ["o", "m1", "m2"] {
        let got = c!(user)
            .expect_where(&added(user), "hello group", |p| p["text"] == "hello group")
            .await;
        assert_fields(
            &got.payload,
            json!({"message_id": hello["message_id"], "sender": "o", "recipient": group,
                   "channel_type": "group", "timelineOf": user, "conversWith": group,
                   "status": 150}),
            "a group message copy",
        );
    }

    // Rename: the whole group again.
    ok(
        &server,
        "PUT",
        &base,
        &tok("o"),
        Some(json!({"group_name": "G1b"})),
    )
    .await;
    for user in ["o", "m1", "m2"] {
        c!(user)
            .expect_where(&updated(user), "the renamed group", |p| p["name"] == "G1b")
            .await;
    }

    // Join m3: everyone after the change, with the notification; m3 gets the history.
    let members = format!("{base}/members");
    ok(
        &server,
        "POST",
        &members,
        &tok("o"),
        Some(json!({"member_id": "m3"})),
    )
    .await;
    for user in ["o", "m1", "m2", "m3"] {
        let got = c!(user)
            .expect_where(&updated(user), "the join of m3", |p| {
                group_of(p, &["o", "m1", "m2", "m3"])
            })
            .await;
        assert_eq!(
            got.payload["notification"],
            json!({"messagelabel": {"key": "MEMBER_JOINED_GROUP",
                                    "parameters": {"member_id": "m3"}}}),
            "{user}: {}",
            got.payload
        );
        c!(user)
            .expect_where(&added(user), "MEMBER_JOINED_GROUP m3", |p| {
                label(p, "MEMBER_JOINED_GROUP", Some("m3"))
            })
            .await;
    }
    let history = c!("m3")
        .expect_where(&added("m3"), "the history: hello group", |p| {
            p["text"] == "hello group"
        })
        .await;
    assert_fields(
        &history.payload,
        json!({"message_id": hello["message_id"], "sender": "o", "timelineOf": "m3",
               "conversWith": group, "status": 150}),
        "the history copy",
    );
    c!("m3")
        .expect_where(&added("m3"), "the history: GROUP_CREATED", |p| {
            label(p, "GROUP_CREATED", None)
        })
        .await;

    // m2 leaves: the remaining members and m2 hear of it.
    ok(
        &server,
        "DELETE",
        &format!("{members}/m2"),
        &tok("m2"),
        None,
    )
    .await;
    for user in ["o", "m1", "m3", "m2"] {
        let got = c!(user)
            .expect_where(&updated(user), "the leave of m2", |p| {
                group_of(p, &["o", "m1", "m3"])
            })
            .await;
        assert_eq!(
            got.payload["notification"],
            json!({"messagelabel": {"key": "MEMBER_LEFT_GROUP",
                                    "parameters": {"member_id": "m2"}}}),
            "{user}: {}",
            got.payload
        );
        c!(user)
            .expect_where(&added(user), "MEMBER_LEFT_GROUP m2", |p| {
                label(p, "MEMBER_LEFT_GROUP", Some("m2"))
            })
            .await;
    }

    // Set members {o, m1, m4}: m3 out, m4 in (with the history).
    ok(
        &server,
        "PUT",
        &members,
        &tok("o"),
        Some(json!({"members": {"o": 1, "m1": 1, "m4": 1}})),
    )
    .await;
    for user in ["o", "m1", "m4", "m3"] {
        c!(user)
            .expect_where(&updated(user), "the set members", |p| {
                group_of(p, &["o", "m1", "m4"])
            })
            .await;
    }
    for user in ["o", "m1", "m4", "m3"] {
        c!(user)
            .expect_where(&added(user), "MEMBER_LEFT_GROUP m3", |p| {
                label(p, "MEMBER_LEFT_GROUP", Some("m3"))
            })
            .await;
    }
    c!("m4")
        .expect_where(&added("m4"), "the history: hello group", |p| {
            p["text"] == "hello group"
        })
        .await;

    // A message now reaches the members only; those who left get nothing more.
    send(&server, "o", to_group(group, "after the changes")).await;
    for user in ["o", "m1", "m4"] {
        c!(user)
            .expect_where(&added(user), "after the changes", |p| {
                p["text"] == "after the changes"
            })
            .await;
    }
    // One deliver step, in order: once a later message reached m2 and m3, the group message
    // would have too.
    for user in ["m2", "m3"] {
        send(&server, "o", direct(user, "barrier")).await;
        c!(user)
            .expect(&format!("apps/{APP}/users/{user}/messages/o/clientadded"))
            .await;
        c!(user).assert_never("a group message after leaving", |r| {
            r.payload["text"] == "after the changes"
        });
    }
    c!("m2").assert_never("the later group changes", |r| {
        r.topic == updated("m2")
            && r.payload["name"] == "G1b"
            && group_of(&r.payload, &["o", "m1", "m4"])
    });
}

async fn a_read_receipt_reaches_the_sender(via: Via) {
    let server = start();
    let mut u1 = online(&server, via, "u1").await;
    let mut u2 = online(&server, via, "u2").await;
    let sent = send(&server, "u1", direct("u2", "read me")).await;
    let id = sent["message_id"].as_str().unwrap().to_string();
    u2.expect("apps/app1/users/u2/messages/u1/clientadded")
        .await;

    let update = format!("apps/app1/users/u2/messages/u1/{id}/update");
    let receipt = format!("apps/app1/users/u1/messages/u2/{id}/clientupdated");
    // Other statuses are ignored.
    u2.publish_json(&update, json!({"status": 150})).await;
    u2.publish_json(&update, json!({"status": 200})).await;
    u1.expect_exactly(
        &receipt,
        json!({"timelineOf": "u1", "message_id": id, "status": 250}),
    )
    .await;
    // The ignored publish came first on the same connection: it told nobody.
    assert_eq!(u1.count(&receipt), 1, "{}", u1.report());

    let theirs = timeline(&server, "u2", "u1").await;
    assert_eq!(
        find(&theirs, "message_id", &id).unwrap()["status"],
        200,
        "{theirs:?}"
    );
    let mine = timeline(&server, "u1", "u2").await;
    assert_eq!(
        find(&mine, "message_id", &id).unwrap()["status"],
        250,
        "{mine:?}"
    );
    // A receipt for a message u2 never received changes nothing and tells nobody.
    u2.publish_json(
        "apps/app1/users/u2/messages/u1/no-such-message/update",
        json!({"status": 200}),
    )
    .await;
    u1.assert_never("a receipt for an unknown message", |r| {
        r.topic.contains("no-such-message")
    });
}

async fn a_read_conversation_is_told_to_reader_and_peer(via: Via) {
    let server = start();
    let mut u1 = online(&server, via, "u1").await;
    let mut u2 = online(&server, via, "u2").await;
    let mine = "apps/app1/users/u2/conversations/u1/clientupdated";
    let peer = "apps/app1/users/u1/conversations/u2/clientupdated";
    for text in ["one", "two"] {
        send(&server, "u1", direct("u2", text)).await;
        u2.expect_where("apps/app1/users/u2/messages/u1/clientadded", text, |p| {
            p["text"] == text
        })
        .await;
    }
    let row = find(&conversations(&server, "u2").await, "conversWith", "u1")
        .cloned()
        .expect("u2's conversation");
    assert_fields(
        &row,
        json!({"is_new": true, "unread_count": 2}),
        "before reading",
    );

    // Over MQTT.
    u2.publish_json(
        "apps/app1/users/u2/conversations/u1/update",
        json!({"is_new": false}),
    )
    .await;
    let read = u2.expect(mine).await.payload;
    assert_fields(
        &read,
        json!({"timelineOf": "u2", "conversWith": "u1", "is_new": false, "unread_count": 0}),
        "the reader's conversation",
    );
    assert!(read["read_at"].is_u64(), "{read}");
    let told = u1.expect(peer).await.payload;
    assert_fields(
        &told,
        json!({"timelineOf": "u1", "conversWith": "u2"}),
        "the peer's conversation",
    );
    assert!(told["peer_read_at"].is_u64(), "{told}");
    let row = find(&conversations(&server, "u2").await, "conversWith", "u1")
        .cloned()
        .unwrap();
    assert_fields(
        &row,
        json!({"is_new": false, "unread_count": 0}),
        "after reading",
    );
    let sender_side = timeline(&server, "u1", "u2").await;
    assert!(
        sender_side.iter().all(|m| m["status"] == 250),
        "the sender's copies show the return receipt: {sender_side:?}"
    );

    // Other values are ignored; then the HTTP route does the same.
    send(&server, "u1", direct("u2", "three")).await;
    u2.expect_where("apps/app1/users/u2/messages/u1/clientadded", "three", |p| {
        p["text"] == "three"
    })
    .await;
    u2.publish_json(
        "apps/app1/users/u2/conversations/u1/update",
        json!({"is_new": true}),
    )
    .await;
    let row = find(&conversations(&server, "u2").await, "conversWith", "u1")
        .cloned()
        .unwrap();
    assert_fields(
        &row,
        json!({"is_new": true, "unread_count": 1}),
        "after is_new: true",
    );
    assert_eq!(u2.count(mine), 1, "{}", u2.report());
    ok(
        &server,
        "POST",
        &format!("/api/{APP}/u2/conversations/u1/read"),
        &tok("u2"),
        None,
    )
    .await;
    let read = u2.expect(mine).await.payload;
    assert_fields(
        &read,
        json!({"timelineOf": "u2", "conversWith": "u1", "is_new": false, "unread_count": 0}),
        "the reader's conversation (HTTP)",
    );
    assert!(read["read_at"].is_u64(), "{read}");
    let told = u1.expect(peer).await.payload;
    assert_fields(
        &told,
        json!({"timelineOf": "u1", "conversWith": "u2"}),
        "the peer's conversation (HTTP)",
    );
    assert!(told["peer_read_at"].is_u64(), "{told}");

    // A group conversation read: the reader is told, nobody else.
    let group = "group-read";
    ok(
        &server,
        "POST",
        &format!("/api/{APP}/groups"),
        &tok("u1"),
        Some(json!({"group_name": "R", "group_id": group, "group_members": {"u2": 1}})),
    )
    .await;
    send(&server, "u1", to_group(group, "group text")).await;
    u2.expect_where(
        &format!("apps/app1/users/u2/messages/{group}/clientadded"),
        "group text",
        |p| p["text"] == "group text",
    )
    .await;
    u2.publish_json(
        &format!("apps/app1/users/u2/conversations/{group}/update"),
        json!({"is_new": false}),
    )
    .await;
    let read = u2
        .expect(&format!(
            "apps/app1/users/u2/conversations/{group}/clientupdated"
        ))
        .await
        .payload;
    assert_fields(
        &read,
        json!({"timelineOf": "u2", "conversWith": group, "is_new": false, "unread_count": 0}),
        "the reader's group conversation",
    );
    send(&server, "u2", direct("u1", "barrier")).await;
    u1.expect("apps/app1/users/u1/messages/u2/clientadded")
        .await;
    u1.assert_never("a peer read of a group conversation", |r| {
        r.topic.contains(group) && r.topic.contains("/conversations/")
    });
    assert_eq!(u1.count(peer), 2, "{}", u1.report());
}

async fn archive_unarchive_and_delete_are_told_to_the_owner(via: Via) {
    let server = start();
    let mut u1 = online(&server, via, "u1").await;
    let mut u2 = online(&server, via, "u2").await;
    let mut u3 = online(&server, via, "u3").await;
    send(&server, "u1", direct("u2", "one")).await;
    u2.expect("apps/app1/users/u2/messages/u1/clientadded")
        .await;

    // Archive over MQTT (any payload): clientdeleted, then archived clientadded.
    u2.publish(
        "apps/app1/users/u2/conversations/u1/archive",
        "whatever",
        false,
    )
    .await;
    let gone = u2
        .expect("apps/app1/users/u2/conversations/u1/clientdeleted")
        .await;
    let moved = u2
        .expect("apps/app1/users/u2/archived_conversations/u1/clientadded")
        .await;
    assert!(gone.seq < moved.seq, "{}", u2.report());
    for row in [&gone.payload, &moved.payload] {
        assert_fields(
            row,
            json!({"conversWith": "u1", "key": "u1", "archived": true,
                   "last_message_text": "one"}),
            "the archived conversation",
        );
    }
    assert!(find(&archived(&server, "u2").await, "conversWith", "u1").is_some());
    assert!(find(&conversations(&server, "u2").await, "conversWith", "u1").is_none());

    // A new message un-archives it: archived clientdeleted before the message's clientadded.
    send(&server, "u1", direct("u2", "two")).await;
    let back = u2
        .expect_exactly(
            "apps/app1/users/u2/archived_conversations/u1/clientdeleted",
            json!({"timelineOf": "u2", "conversWith": "u1"}),
        )
        .await;
    let two = u2
        .expect_where("apps/app1/users/u2/messages/u1/clientadded", "two", |p| {
            p["text"] == "two"
        })
        .await;
    assert!(back.seq < two.seq, "{}", u2.report());

    // Archive over HTTP.
    ok(
        &server,
        "DELETE",
        &format!("/api/{APP}/conversations/u2"),
        &tok("u1"),
        None,
    )
    .await;
    let gone = u1
        .expect("apps/app1/users/u1/conversations/u2/clientdeleted")
        .await;
    let moved = u1
        .expect("apps/app1/users/u1/archived_conversations/u2/clientadded")
        .await;
    assert!(gone.seq < moved.seq, "{}", u1.report());
    assert_fields(
        &moved.payload,
        json!({"conversWith": "u2", "archived": true, "last_message_text": "two"}),
        "the archived conversation (HTTP)",
    );
    // The sender's own new message un-archives its side too.
    send(&server, "u1", direct("u2", "three")).await;
    let back = u1
        .expect_exactly(
            "apps/app1/users/u1/archived_conversations/u2/clientdeleted",
            json!({"timelineOf": "u1", "conversWith": "u2"}),
        )
        .await;
    let three = u1
        .expect_where("apps/app1/users/u1/messages/u2/clientadded", "three", |p| {
            p["text"] == "three"
        })
        .await;
    assert!(back.seq < three.seq, "{}", u1.report());
    u2.expect_where("apps/app1/users/u2/messages/u1/clientadded", "three", |p| {
        p["text"] == "three"
    })
    .await;

    // Delete an archived conversation: from both lists.
    ok(
        &server,
        "DELETE",
        &format!("/api/{APP}/conversations/u2"),
        &tok("u1"),
        None,
    )
    .await;
    u1.expect("apps/app1/users/u1/conversations/u2/clientdeleted")
        .await;
    u1.expect("apps/app1/users/u1/archived_conversations/u2/clientadded")
        .await;
    ok(
        &server,
        "DELETE",
        &format!("/api/{APP}/conversations/u2?delete=true"),
        &tok("u1"),
        None,
    )
    .await;
    let gone = u1
        .expect_exactly(
            "apps/app1/users/u1/conversations/u2/clientdeleted",
            json!({"timelineOf": "u1", "conversWith": "u2"}),
        )
        .await;
    let gone_archived = u1
        .expect_exactly(
            "apps/app1/users/u1/archived_conversations/u2/clientdeleted",
            json!({"timelineOf": "u1", "conversWith": "u2"}),
        )
        .await;
    assert!(gone.seq < gone_archived.seq, "{}", u1.report());

    // Delete an active one: from the active list only.
    ok(
        &server,
        "DELETE",
        &format!("/api/{APP}/conversations/u1?delete=true"),
        &tok("u2"),
        None,
    )
    .await;
    u2.expect_exactly(
        "apps/app1/users/u2/conversations/u1/clientdeleted",
        json!({"timelineOf": "u2", "conversWith": "u1"}),
    )
    .await;
    send(&server, "u3", direct("u2", "barrier")).await;
    u2.expect("apps/app1/users/u2/messages/u3/clientadded")
        .await;
    let archived_gone = "apps/app1/users/u2/archived_conversations/u1/clientdeleted";
    assert_eq!(
        u2.count(archived_gone),
        1,
        "only the un-archive, not the delete of an active conversation: {}",
        u2.report()
    );
    assert!(timeline(&server, "u2", "u1").await.is_empty());
    u3.assert_never("someone else's conversation events", |r| {
        !r.topic.starts_with("apps/app1/users/u3/")
    });
}

// ---------------------------------------------------------------------------------------------
// 3. What clients publish

async fn a_send_over_mqtt_is_a_send_and_bad_payloads_change_nothing(via: Via) {
    let server = start();
    let mut u1 = online(&server, via, "u1").await;
    let mut u2 = online(&server, via, "u2").await;
    let mut u3 = online(&server, via, "u3").await;
    let outgoing = "apps/app1/outgoing/users/u1/messages/u2/outgoing";
    let theirs = "apps/app1/users/u2/messages/u1/clientadded";
    let mine = "apps/app1/users/u1/messages/u2/clientadded";

    // The sender is the topic's; `sender_id` in the payload is ignored.
    u1.publish_json(
        outgoing,
        json!({"text": "over mqtt", "sender_fullname": "U1", "recipient_fullname": "U2",
               "sender_id": "u9", "message_id": "mq-1", "attributes": null,
               "type": "text", "channel_type": "direct"}),
    )
    .await;
    let got = u2.expect(theirs).await.payload;
    assert_fields(
        &got,
        json!({"message_id": "mq-1", "sender": "u1", "recipient": "u2", "text": "over mqtt",
               "sender_fullname": "U1", "timelineOf": "u2", "conversWith": "u1",
               "status": 150, "app_id": APP}),
        "the recipient's copy",
    );
    assert!(got.get("attributes").is_none(), "{got}");
    let own = u1.expect(mine).await.payload;
    assert_fields(
        &own,
        json!({"message_id": "mq-1", "sender": "u1", "timelineOf": "u1", "status": 100}),
        "the sender's copy",
    );

    // Not JSON objects, or invalid sends: dropped, the connection stays.
    let bad: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        b"[1, 2]".to_vec(),
        b"\"a string\"".to_vec(),
        b"".to_vec(),
        json!({"text": "no names", "message_id": "bad-1"})
            .to_string()
            .into(),
        json!({"text": 5, "sender_fullname": "U1", "recipient_fullname": "U2",
               "message_id": "bad-2"})
        .to_string()
        .into(),
        json!({"text": "x", "sender_fullname": "U1", "recipient_fullname": "U2",
               "attributes": "not an object", "message_id": "bad-3"})
        .to_string()
        .into(),
        json!({"text": "x", "sender_fullname": "U1", "recipient_fullname": "U2",
               "message_id": "bad+4"})
        .to_string()
        .into(),
        json!({"text": "x".repeat(70 * 1024), "sender_fullname": "U1",
               "recipient_fullname": "U2", "message_id": "bad-5"})
        .to_string()
        .into(),
        json!({"text": "x", "sender_fullname": "U1", "recipient_fullname": "U2",
               "channel_type": "broadcast", "message_id": "bad-6"})
        .to_string()
        .into(),
        // Fits one MQTT packet (< 128 KiB) but not the 120 KiB a stored message may take.
        json!({"text": "x".repeat(60 * 1024), "sender_fullname": "U1",
               "recipient_fullname": "U2", "message_id": "bad-7",
               "attributes": {"big": "y".repeat(62 * 1024)}})
        .to_string()
        .into(),
    ];
    for payload in bad {
        u1.publish(outgoing, payload, false).await;
    }
    u1.publish_json(
        outgoing,
        json!({"text": "second", "sender_fullname": "U1", "recipient_fullname": "U2",
               "message_id": "mq-2"}),
    )
    .await;
    u2.expect_where(theirs, "mq-2", |p| p["message_id"] == "mq-2")
        .await;
    u1.expect_where(mine, "mq-2", |p| p["message_id"] == "mq-2")
        .await;
    assert_eq!(u2.count(theirs), 2, "{}", u2.report());
    assert!(u1.closed.is_none(), "{:?}", u1.closed);
    for (user, with) in [("u2", "u1"), ("u1", "u2")] {
        let ids: Vec<Value> = timeline(&server, user, with)
            .await
            .iter()
            .map(|m| m["message_id"].clone())
            .collect();
        assert_eq!(ids, vec![json!("mq-2"), json!("mq-1")], "{user}'s timeline");
    }

    // Ids too long together for the real-time topics (at most 256 bytes): dropped, as the HTTP
    // route refuses them with 400.
    let long_user = "l".repeat(128);
    let long_body = json!({"text": "too long", "sender_fullname": "U1", "recipient_fullname": "L",
                           "message_id": "m".repeat(128)});
    u1.publish_json(
        &format!("apps/app1/outgoing/users/u1/messages/{long_user}/outgoing"),
        long_body.clone(),
    )
    .await;
    let mut http_body = long_body;
    http_body["recipient_id"] = json!(long_user);
    let (status, answer) = http(
        &server,
        "POST",
        &format!("/api/{APP}/messages"),
        &tok("u1"),
        Some(&http_body),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(conversations(&server, &long_user).await.is_empty());
    let rows = conversations(&server, "u1").await;
    assert!(find(&rows, "conversWith", &long_user).is_none(), "{rows:?}");

    // An inline ("volatile") group: delivered to its members, no group created.
    u1.publish_json(
        "apps/app1/outgoing/users/u1/messages/group-volatile/outgoing",
        json!({"text": "inline", "sender_fullname": "U1", "recipient_fullname": "V",
               "channel_type": "group", "group": {"members": {"u1": 1, "u2": 1, "u3": 1}}}),
    )
    .await;
    for (user, client) in [("u1", &mut u1), ("u2", &mut u2), ("u3", &mut u3)] {
        let got = client
            .expect(&format!(
                "apps/app1/users/{user}/messages/group-volatile/clientadded"
            ))
            .await;
        assert_fields(
            &got.payload,
            json!({"text": "inline", "sender": "u1", "recipient": "group-volatile",
                   "timelineOf": user, "conversWith": "group-volatile"}),
            "an inline group copy",
        );
    }
    let (status, answer) = http(
        &server,
        "GET",
        &format!("/api/{APP}/groups/group-volatile"),
        &tok("u1"),
        None,
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    // The sender gets a copy even when the inline members do not name them.
    u1.publish_json(
        "apps/app1/outgoing/users/u1/messages/group-volatile2/outgoing",
        json!({"text": "inline 2", "sender_fullname": "U1", "recipient_fullname": "V",
               "channel_type": "group", "group": {"members": {"u2": 1, "u3": 1}}}),
    )
    .await;
    for (user, client) in [("u2", &mut u2), ("u3", &mut u3), ("u1", &mut u1)] {
        let got = client
            .expect(&format!(
                "apps/app1/users/{user}/messages/group-volatile2/clientadded"
            ))
            .await;
        assert_fields(
            &got.payload,
            json!({"text": "inline 2", "sender": "u1", "timelineOf": user}),
            "an inline group copy (sender not among the members)",
        );
    }
}

async fn presence_is_retained_and_the_will_goes_out_on_abrupt_disconnects_only(via: Via) {
    let server = start();
    let presence = |client: &str| format!("apps/app1/users/u1/presence/{client}");
    let with_will = |client: &str| {
        let mut options = options_for(&server, via, client, &tok("u1"));
        options.set_last_will(LastWill::new(
            presence(client),
            json!({"disconnected": true}).to_string(),
            QoS::AtLeastOnce,
            true,
        ));
        options
    };

    // A announces itself, retained.
    let mut a = try_connect(with_will("pa")).await.unwrap();
    a.publish(
        &presence("pa"),
        json!({"connected": true}).to_string(),
        true,
    )
    .await;
    // B, the same user on another connection, gets it as a retained message on subscribing.
    let mut b = connect_as(&server, via, "u1", "pb").await;
    b.subscribe_ok("apps/app1/users/u1/#").await;
    let got = b.expect(&presence("pa")).await;
    assert_eq!(got.payload, json!({"connected": true}));
    assert!(got.retain, "a retained message is sent as retained");
    // Another user sees none of it.
    let mut u2 = online(&server, via, "u2").await;
    u2.assert_never("u1's presence", |r| r.topic.contains("/u1/"));

    // A goes away without DISCONNECT: its will goes out, and its handling clears the retained
    // will (REALTIME.md: a `disconnected` clears its topic's retained message).
    a.kill().await;
    let will = b
        .expect_where(&presence("pa"), "the will", |p| {
            *p == json!({"disconnected": true})
        })
        .await;
    assert!(!will.retain, "a live publish is not flagged retained");
    let mut d = connect_as(&server, via, "u1", "pd").await;
    d.subscribe_ok(&presence("+")).await;
    d.publish(
        &presence("pd"),
        json!({"connected": true}).to_string(),
        false,
    )
    .await;
    d.expect(&presence("pd")).await;
    d.assert_never("a will left retained", |r| r.topic == presence("pa"));

    // C disconnects cleanly: no will.
    let mut c = try_connect(with_will("pc")).await.unwrap();
    c.publish(
        &presence("pc"),
        json!({"connected": true}).to_string(),
        true,
    )
    .await;
    b.expect(&presence("pc")).await;
    c.disconnect().await;
    // A later publish of the same user reaches B after anything C's end would have sent.
    sleep(Duration::from_millis(300)).await;
    let mut e = connect_as(&server, via, "u1", "pe").await;
    e.publish(
        &presence("pe"),
        json!({"connected": true}).to_string(),
        false,
    )
    .await;
    b.expect(&presence("pe")).await;
    b.assert_never("C's will after a clean DISCONNECT", |r| {
        r.topic == presence("pc") && r.payload == json!({"disconnected": true})
    });
    let mut f = connect_as(&server, via, "u1", "pf").await;
    f.subscribe_ok(&presence("pc")).await;
    let got = f.expect(&presence("pc")).await;
    assert_eq!(
        got.payload,
        json!({"connected": true}),
        "C's retained presence"
    );
    // An empty retained payload clears it (MQTT).
    e.publish(
        &presence("pe"),
        json!({"connected": true}).to_string(),
        true,
    )
    .await;
    e.publish(&presence("pe"), "", true).await;
    let mut g = connect_as(&server, via, "u1", "pg").await;
    g.subscribe_ok("apps/app1/users/u1/#").await;
    g.publish(
        &presence("pg"),
        json!({"connected": true}).to_string(),
        false,
    )
    .await;
    g.expect(&presence("pg")).await;
    g.assert_never("a cleared retained message", |r| r.topic == presence("pe"));

    // Retained and will messages elsewhere are refused.
    for topic in [
        "apps/app1/users/u1/conversations/u2/archive",
        "apps/app1/users/u2/presence/pa",
        "apps/app2/users/u1/presence/pa",
    ] {
        let mut options = options_for(&server, via, "bad-will", &tok("u1"));
        options.set_last_will(LastWill::new(topic, "{}", QoS::AtLeastOnce, false));
        match try_connect(options).await {
            Ok(_) => panic!("a will on {topic} was accepted"),
            Err(ConnectionError::ConnectionRefused(code)) => {
                assert_eq!(code, ConnectReturnCode::NotAuthorized, "a will on {topic}")
            }
            Err(_) => {} // closed without CONNACK: refused too
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Refusals

async fn subscriptions_outside_the_users_tree_get_0x80(via: Via) {
    let server = start();
    let mut u1 = connect_as(&server, via, "u1", "nosy").await;
    let mut u2 = online(&server, via, "u2").await;
    let filters = [
        "apps/app1/users/u2/#",
        "apps/app1/users/+/messages/+/clientadded",
        "apps/app1/users/+/#",
        "#",
        "+/+/+/+/#",
        "apps/app2/users/u1/#",
        "apps/+/users/u1/#",
        "apps/app1/outgoing/users/u1/#",
        "apps/app1/users/u10/#",
        "apps/app1/users/u1/messages/+/clientadded",
    ];
    let codes = u1.subscribe(&filters).await;
    let mut expected = vec![SubscribeReasonCode::Failure; filters.len() - 1];
    expected.push(SubscribeReasonCode::Success(QoS::AtLeastOnce));
    assert_eq!(codes, expected, "{filters:?}");

    send(&server, "u3", direct("u2", "for u2 only")).await;
    u2.expect("apps/app1/users/u2/messages/u3/clientadded")
        .await;
    send(&server, "u3", direct("u1", "for u1")).await;
    u1.expect("apps/app1/users/u1/messages/u3/clientadded")
        .await;
    u1.assert_never("another user's topic", |r| {
        !r.topic.starts_with("apps/app1/users/u1/")
    });
    assert!(
        u1.closed.is_none(),
        "a refused subscription does not close: {:?}",
        u1.closed
    );
}

async fn forbidden_publishes_disconnect_and_change_nothing(via: Via) {
    let server = start();
    send(&server, "u2", direct("u1", "setup")).await;
    let mut u1b = online(&server, via, "u1").await;
    let mut u2 = online(&server, via, "u2").await;
    let mut u3 = online(&server, via, "u3").await;
    let mut other_app = try_connect(options_for(
        &server,
        via,
        "u2-app2",
        &token("u2", "app2", false),
    ))
    .await
    .unwrap();
    other_app.subscribe_ok("apps/app2/users/u2/#").await;
    let send_body = |id: &str| {
        json!({"text": "forged", "sender_fullname": "F", "recipient_fullname": "F",
               "message_id": id})
        .to_string()
    };
    let forged_copy = json!({"message_id": "forged-copy", "sender": "u3", "recipient": "u2",
        "text": "forged", "timelineOf": "u2", "conversWith": "u3", "status": 150})
    .to_string();
    let cases: Vec<(&str, String, bool)> = vec![
        (
            "apps/app1/outgoing/users/u2/messages/u3/outgoing",
            send_body("forged-1"),
            false,
        ),
        (
            "apps/app1/users/u2/messages/u3/clientadded",
            forged_copy.clone(),
            false,
        ),
        (
            "apps/app1/users/u1/messages/u2/clientadded",
            forged_copy.clone(),
            false,
        ),
        (
            "apps/app1/users/u1/conversations/u2/clientupdated",
            json!({"text": "forged", "is_new": false}).to_string(),
            false,
        ),
        (
            "apps/app1/users/u2/conversations/u1/update",
            json!({"is_new": false, "text": "forged"}).to_string(),
            false,
        ),
        (
            "apps/app2/outgoing/users/u1/messages/u2/outgoing",
            send_body("forged-2"),
            false,
        ),
        (
            "apps/app2/users/u2/presence/x",
            json!({"connected": true, "text": "forged"}).to_string(),
            true,
        ),
        (
            "apps/app1/users/u1/conversations/u2/archive",
            json!({"text": "forged"}).to_string(),
            true,
        ),
        (
            "apps/app1/outgoing/users/u1/messages/u2/outgoing",
            send_body("forged-3"),
            true,
        ),
        (
            "apps/app1/users/u2/presence/x",
            json!({"connected": true, "text": "forged"}).to_string(),
            false,
        ),
        (
            "apps/app1/outgoing/users/u1/messages/u?2/outgoing",
            send_body("forged-4"),
            false,
        ),
        (
            "apps/app1/outgoing/users/u1/messages/u2/outgoing/extra",
            send_body("forged-5"),
            false,
        ),
        (
            "apps/app1/users/u1",
            json!({"text": "forged"}).to_string(),
            false,
        ),
        ("$SYS/broker", json!({"text": "forged"}).to_string(), false),
    ];
    for (i, (topic, payload, retain)) in cases.into_iter().enumerate() {
        let mut bad = connect_as(&server, via, "u1", &format!("bad-{i}")).await;
        bad.publish_refused(topic, payload, retain).await;
    }

    // Nothing was delivered: later messages arrive, and nothing forged before them.
    send(&server, "u3", direct("u1", "barrier")).await;
    send(&server, "u3", direct("u2", "barrier")).await;
    send_in(&server, "app2", "u3", direct("u2", "barrier")).await;
    u1b.expect("apps/app1/users/u1/messages/u3/clientadded")
        .await;
    u2.expect("apps/app1/users/u2/messages/u3/clientadded")
        .await;
    other_app
        .expect("apps/app2/users/u2/messages/u3/clientadded")
        .await;
    let forged = |r: &Received| r.payload.to_string().contains("forged");
    u1b.assert_never("a forged publish", forged);
    u2.assert_never("a forged publish", forged);
    u3.assert_never("a forged publish", forged);
    other_app.assert_never("a forged publish", forged);
    // A new subscriber finds no retained message from them either.
    let mut late = connect_as(&server, via, "u2", "late").await;
    late.subscribe_ok("apps/app1/users/u2/#").await;
    send(&server, "u3", direct("u2", "barrier 2")).await;
    late.expect("apps/app1/users/u2/messages/u3/clientadded")
        .await;
    late.assert_never("a retained forged publish", |r| r.retain);

    // Nothing changed: no message, no conversation, nothing archived or read.
    for user in ["u1", "u2", "u3"] {
        for row in conversations(&server, user).await {
            assert_ne!(row["last_message_text"], "forged", "{user}: {row}");
        }
        assert!(archived(&server, user).await.is_empty(), "{user}'s archive");
    }
    let u2_row = find(&conversations(&server, "u2").await, "conversWith", "u1")
        .cloned()
        .expect("u2's conversation with u1");
    assert_eq!(u2_row["last_message_text"], "setup", "{u2_row}");
    let u1_row = find(&conversations(&server, "u1").await, "conversWith", "u2")
        .cloned()
        .expect("u1's conversation with u2");
    assert_fields(
        &u1_row,
        json!({"is_new": true, "unread_count": 1, "archived": false}),
        "u1's conversation",
    );
    let (_, app2) = http(
        &server,
        "GET",
        "/api/app2/u2/conversations",
        &token("u2", "app2", false),
        None,
    )
    .await;
    let rows = app2["result"].as_array().cloned().unwrap_or_default();
    assert!(
        rows.iter().all(|r| r["last_message_text"] == "barrier"),
        "app2: {app2}"
    );
}

async fn ids_with_wildcards_in_topics_are_refused(via: Via) {
    let server = start();
    let mut u2 = online(&server, via, "u2").await;
    let body =
        json!({"text": "wild", "sender_fullname": "U1", "recipient_fullname": "U2"}).to_string();
    for topic in [
        "apps/app1/outgoing/users/u1/messages/u+2/outgoing",
        "apps/app1/outgoing/users/u1/messages/u#2/outgoing",
        "apps/app1/outgoing/users/u1/messages/+/outgoing",
        "apps/app1/outgoing/users/u1/messages/u?2/outgoing",
        "apps/app1/outgoing/users/u1/messages/u*2/outgoing",
        "apps/app1/users/u1/conversations/u+2/archive",
        "apps/app1/users/u1/conversations/+/update",
        "apps/app1/users/u1/messages/u2/m+1/update",
        "apps/app1/users/u1/presence/c#1",
    ] {
        let mut raw = Raw::online(&server, via, "u1", 30).await;
        raw.send(&publish_packet(topic, body.as_bytes(), true))
            .await;
        match raw.next(WAIT).await {
            Next::Closed => {}
            Next::Packet(first, rest) => {
                panic!("{topic}: answered {first:#04x} {rest:?} instead of closing")
            }
            Next::TimedOut => panic!("{topic}: still connected after {WAIT:?}"),
        }
    }
    // The HTTP API refuses such ids too.
    let (status, answer) = http(
        &server,
        "POST",
        &format!("/api/{APP}/messages"),
        &tok("u1"),
        Some(&direct("u+2", "wild")),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    send(&server, "u1", direct("u2", "barrier")).await;
    u2.expect("apps/app1/users/u2/messages/u1/clientadded")
        .await;
    u2.assert_never("a wildcard send", |r| r.payload["text"] == "wild");
    for row in conversations(&server, "u1").await {
        assert_eq!(row["conversWith"], "u2", "{row}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. A slow client

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_disconnected_and_others_keep_receiving() {
    let (server, log) = start_logged();
    // A client that subscribes to its tree at QoS 0 and then never reads.
    let mut slow = Raw::open(&server, Via::Tcp, "slow-reader", Some(4096)).await;
    slow.send(&connect_packet("slow-reader", 0, Some(&tok("slow"))))
        .await;
    slow.expect_packet(0x20, &[0, 0], "CONNACK 0").await;
    slow.send(&subscribe_packet(1, "apps/app1/users/slow/#", 0))
        .await;
    slow.expect_packet(0x90, &[0, 1, 0], "SUBACK").await;
    let mut fast = online(&server, Via::Tcp, "fast").await;

    // The same user's other connection floods the slow one's tree (its own presence topic,
    // routed straight to the subscribers): 3000 publishes of 16 KiB.
    const FLOOD: usize = 3000;
    let mut feeder = connect_as(&server, Via::Tcp, "slow", "feeder").await;
    let payload = json!({"pad": "x".repeat(16 * 1024)}).to_string();
    let published = Arc::new(AtomicUsize::new(0));
    let flood = {
        let (client, published) = (feeder.client.clone(), published.clone());
        let payload = payload.clone();
        tokio::spawn(async move {
            for _ in 0..FLOOD {
                client
                    .publish(
                        "apps/app1/users/slow/presence/feeder",
                        QoS::AtMostOnce,
                        false,
                        payload.clone(),
                    )
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "the feeder could not publish #{}: {e}",
                            published.load(Ordering::Relaxed)
                        )
                    });
                published.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // Halfway through, another user still gets their message promptly.
    let halfway = Instant::now() + Duration::from_secs(30);
    while published.load(Ordering::Relaxed) < FLOOD / 2 {
        assert!(
            Instant::now() < halfway,
            "the feeder published only {} in 30 s",
            published.load(Ordering::Relaxed)
        );
        sleep(Duration::from_millis(10)).await;
    }
    let asked = Instant::now();
    let sent = send(&server, "other", direct("fast", "still here")).await;
    let got = fast
        .expect("apps/app1/users/fast/messages/other/clientadded")
        .await;
    let took = asked.elapsed();
    assert_eq!(got.payload["message_id"], sent["message_id"]);
    assert!(
        took < Duration::from_secs(2),
        "the other user's message took {took:?} during the flood"
    );
    let flooded = timeout(Duration::from_secs(30), flood)
        .await
        .expect("the flood ends within 30 s");
    if flooded.is_err() {
        feeder.drain();
        panic!(
            "the feeder failed: {flooded:?}; its connection: {:?}",
            feeder.closed
        );
    }

    // The slow client was disconnected: reading now ends with the close, before all of it.
    let total = FLOOD * payload.len();
    let Some((_, read)) = slow.closed_within(Duration::from_secs(20)).await else {
        panic!(
            "the slow client is still connected 20 s after a flood of {FLOOD} publishes; \
             server log: {:?}",
            log.lock().unwrap()
        );
    };
    assert!(
        read < total,
        "the slow client received everything ({read} bytes): it was never too slow"
    );
    // The feeder and the other user are still fine.
    send(&server, "other", direct("fast", "after")).await;
    fast.expect_where(
        "apps/app1/users/fast/messages/other/clientadded",
        "after",
        |p| p["text"] == "after",
    )
    .await;
    assert!(fast.closed.is_none(), "{:?}", fast.closed);
    feeder.drain();
    assert!(
        feeder.closed.is_none(),
        "the feeder was closed: {:?}",
        feeder.closed
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Client ids

async fn the_same_client_id_replaces_the_first_connection(via: Via) {
    let server = start();
    let mut first = connect_as(&server, via, "u1", "same-id").await;
    first.subscribe_ok("apps/app1/users/u1/#").await;
    let mut second = connect_as(&server, via, "u1", "same-id").await;
    second.subscribe_ok("apps/app1/users/u1/#").await;
    first.expect_closed(WAIT).await;
    send(&server, "u2", direct("u1", "to the second")).await;
    second
        .expect("apps/app1/users/u1/messages/u2/clientadded")
        .await;
    // Another user's connection with the same client id replaces nobody's.
    let mut stranger = connect_as(&server, via, "u2", "same-id").await;
    stranger.subscribe_ok("apps/app1/users/u2/#").await;
    send(&server, "u3", direct("u1", "still the second")).await;
    second
        .expect_where(
            "apps/app1/users/u1/messages/u3/clientadded",
            "still the second",
            |p| p["text"] == "still the second",
        )
        .await;
    assert!(second.closed.is_none(), "{:?}", second.closed);
    assert!(stranger.closed.is_none(), "{:?}", stranger.closed);
}

/// MQTT 3.1.1 (3.1.3-6, 3.1.3-8): a client sending an empty client id (clean session) gets a
/// unique one from the server, so two anonymous clients never replace each other.
async fn anonymous_clients_get_distinct_ids(via: Via) {
    let server = start();
    // Another connection of the same user, open while the first anonymous client connects,
    // then closed (DISCONNECT, then the broker's close).
    let mut named = Raw::connected(&server, via, "u1", "named", 30).await;
    let mut first = Raw::connected(&server, via, "u1", "", 30).await;
    named.send(&[0xE0, 0]).await;
    assert!(
        named.closed_within(WAIT).await.is_some(),
        "DISCONNECT did not close"
    );
    let mut second = Raw::connected(&server, via, "u1", "", 30).await;
    // Neither anonymous client replaced the other.
    for round in 0..2 {
        second
            .ping(&format!(
                "PINGRESP to the second anonymous client (round {round})"
            ))
            .await;
        first
            .ping(&format!(
                "PINGRESP to the first anonymous client (round {round}): was it replaced by \
                 the second one?"
            ))
            .await;
        sleep(Duration::from_millis(200)).await;
    }
}
