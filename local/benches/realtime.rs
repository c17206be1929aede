//! Benchmark of `chat21-local`'s embedded MQTT broker (issue #9's figures), reported, never
//! asserted:
//!
//! 1. memory per idle WebSocket connection (the server's RSS before and after 1,000 clients
//!    connected and subscribed, then idle for a second);
//! 2. end-to-end latency, HTTP send → the recipient's `clientadded`, with the 1,000 clients
//!    connected, and that every message arrived exactly once;
//! 3. fan-out: one group message to 1,000 connected members, until the last `clientadded`;
//! 4. the CPU time of the server and of this load generator per phase (they share the cores).
//!
//! The server is the release binary (`$CARGO_TARGET_DIR/release/chat21-local`, built first;
//! `CHAT21_LOCAL_BIN` overrides it). The load generator is a lean MQTT-over-WebSocket client
//! (tokio-tungstenite + rmqtt-codec, one task per connection) and a keep-alive HTTP/1.1 client.
//!
//! `cargo bench -p chat21-local --bench realtime`; the report is printed and written to
//! `target/bench-realtime.md`. `BENCH_CLIENTS`, `BENCH_MESSAGES`, `BENCH_ROUNDS` scale it down
//! or up (defaults 1000, 2000, 10).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use bytestring::ByteString;
use futures_util::{SinkExt, StreamExt};
use rmqtt_codec::types::{Publish, QoS};
use rmqtt_codec::v3::{Codec, Connect, ConnectAckReason, Packet, SubscribeReturnCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::codec::{Decoder, Encoder};

const APP: &str = "bench";
const JWT_KEY: &str = "chat21-bench-realtime-key";
const GROUP: &str = "group-bench";
/// HTTP requests in flight during the latency phase (one keep-alive connection each).
const IN_FLIGHT: usize = 6;
/// WebSocket handshakes + CONNECT + SUBSCRIBE in flight while a fleet connects.
const CONNECTING: usize = 64;
/// Member changes per group call (the API's limit).
const MEMBER_CHANGES: usize = 98;
/// USER_HZ: the unit of utime/stime in /proc/<pid>/stat (100 on every mainstream Linux).
const TICKS_PER_SEC: f64 = 100.0;

type Res<T> = Result<T, String>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn user(i: usize) -> String {
    format!("u{i:04}")
}

fn token(user: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3 * 3600;
    let claims = json!({ "sub": user, "app_id": APP, "exp": exp });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_KEY.as_bytes()),
    )
    .expect("an HS256 token")
}

// ---------------------------------------------------------------------------------------------
// /proc

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    let Some(end) = stat.rfind(')') else {
        return f64::NAN;
    };
    // After the command name: field 3 (state) is index 0, so utime (14) is 11, stime (15) 12.
    let fields: Vec<&str> = stat[end + 1..].split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (tick(11) + tick(12)) as f64 / TICKS_PER_SEC
}

/// VmRSS of a process, in kB.
fn rss_kb(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The 1-minute load average (other processes share the cores).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The soft limit on open files of this process (the server inherits it).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

/// CPU of the server and of the bench at one moment.
#[derive(Clone, Copy)]
struct Cpu {
    at: Instant,
    server: f64,
    bench: f64,
}

impl Cpu {
    fn now(server_pid: &str) -> Cpu {
        Cpu {
            at: Instant::now(),
            server: cpu_secs(server_pid),
            bench: cpu_secs("self"),
        }
    }
}

struct PhaseCpu {
    name: String,
    wall: f64,
    server: f64,
    bench: f64,
}

fn phase(name: &str, from: Cpu, to: Cpu) -> PhaseCpu {
    PhaseCpu {
        name: name.to_string(),
        wall: (to.at - from.at).as_secs_f64(),
        server: to.server - from.server,
        bench: to.bench - from.bench,
    }
}

// ---------------------------------------------------------------------------------------------
// The server

struct Server {
    child: Child,
    pid: String,
    http: u16,
    ws: u16,
    /// Lines the server wrote on stderr (RUST_LOG=warn: warnings and errors).
    warnings: Arc<AtomicUsize>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_binary() -> Res<PathBuf> {
    if let Ok(bin) = std::env::var("CHAT21_LOCAL_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target"));
    let bin = target.join("release/chat21-local");
    // Always through cargo: a no-op when the binary is current, never a stale server.
    eprintln!("building the release server (cargo build --release -p chat21-local) ...");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "chat21-local"])
        .current_dir(manifest.join(".."))
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !status.success() {
        return Err("cargo build --release -p chat21-local failed".into());
    }
    Ok(bin)
}

fn start_server(bin: &PathBuf) -> Res<Server> {
    let mut child = Command::new(bin)
        .env("PORT", "0")
        .env("MQTT_WS_PORT", "0")
        .env("MQTT_TCP_PORT", "0")
        .env("JWT_KEY", JWT_KEY)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let pid = child.id().to_string();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (lines, ports) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let warnings = Arc::new(AtomicUsize::new(0));
    let counted = warnings.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // Shown, but not flooding: the first 20, then only counted.
            if counted.fetch_add(1, Ordering::Relaxed) < 20 {
                eprintln!("  [server] {line}");
            }
        }
    });
    let mut server = Server {
        child,
        pid,
        http: 0,
        ws: 0,
        warnings,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.http == 0 || server.ws == 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = ports
            .recv_timeout(left)
            .map_err(|_| "the server did not print its ports".to_string())?;
        let port_after = |prefix: &str| -> Option<u16> {
            let rest = line.split(prefix).nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        if line.contains("MQTT over WebSocket") {
            server.ws = port_after("ws://127.0.0.1:").unwrap_or(0);
        } else if line.contains("listening on http://") {
            server.http = port_after("http://127.0.0.1:").unwrap_or(0);
        }
    }
    Ok(server)
}

// ---------------------------------------------------------------------------------------------
// The lean MQTT-over-WebSocket client

type Ws = WebSocketStream<TcpStream>;

/// One `clientadded` as a client received it.
struct Arrival {
    user: u32,
    message_id: String,
    at: Instant,
}

/// What all clients report to.
#[derive(Default)]
struct Hub {
    arrivals: Mutex<Vec<Arrival>>,
    /// `clientadded` publishes recorded since the last `take`.
    count: AtomicUsize,
    /// Every publish received, of any topic.
    publishes: AtomicUsize,
    /// Publishes on a topic outside the receiving client's own tree (never expected).
    foreign: AtomicUsize,
    /// Connections the server closed while the bench still wanted them.
    dropped: AtomicUsize,
}

impl Hub {
    fn record(&self, user: u32, name: &str, publish: &Publish, at: Instant) {
        self.publishes.fetch_add(1, Ordering::Relaxed);
        let own = format!("apps/{APP}/users/{name}/");
        if !publish.topic.starts_with(&own) {
            self.foreign.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if !publish.topic.ends_with("/clientadded") || !publish.topic.contains("/messages/") {
            return;
        }
        let message_id = serde_json::from_slice::<Value>(&publish.payload)
            .ok()
            .and_then(|v| v.get("message_id")?.as_str().map(str::to_string))
            .unwrap_or_default();
        self.arrivals.lock().unwrap().push(Arrival {
            user,
            message_id,
            at,
        });
        self.count.fetch_add(1, Ordering::Release);
    }

    fn take(&self) -> Vec<Arrival> {
        let mut arrivals = self.arrivals.lock().unwrap();
        self.count.store(0, Ordering::Release);
        std::mem::take(&mut *arrivals)
    }

    /// Waits until `n` `clientadded` were recorded, or `timeout`.
    async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.count.load(Ordering::Acquire) < n {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }
}

struct Mqtt {
    ws: Ws,
    codec: Codec,
    read: BytesMut,
}

impl Mqtt {
    async fn send(&mut self, packet: Packet) -> Res<()> {
        let mut bytes = BytesMut::new();
        self.codec
            .encode(packet, &mut bytes)
            .map_err(|e| e.to_string())?;
        self.ws
            .send(Message::Binary(bytes.freeze()))
            .await
            .map_err(|e| e.to_string())
    }

    /// The next packet; `None` when closed. Cancel-safe.
    async fn next(&mut self) -> Res<Option<Packet>> {
        loop {
            if let Some((packet, _)) = self
                .codec
                .decode(&mut self.read)
                .map_err(|e| e.to_string())?
            {
                return Ok(Some(packet));
            }
            match self.ws.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Binary(bytes))) => self.read.extend_from_slice(&bytes),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
            }
        }
    }

    /// WebSocket (`/ws`, subprotocol `mqtt`), CONNECT with the JWT as password, SUBSCRIBE to
    /// the user's own tree at QoS 1.
    async fn open(ws_port: u16, user: &str, token: &str, client_id: &str) -> Res<Mqtt> {
        let addr = format!("127.0.0.1:{ws_port}");
        let stream = TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("TCP connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut request = format!("ws://{addr}/ws")
            .into_client_request()
            .map_err(|e| e.to_string())?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
            .await
            .map_err(|e| format!("WebSocket handshake: {e}"))?;
        let mut mqtt = Mqtt {
            ws,
            codec: Codec::new(0),
            read: BytesMut::with_capacity(512),
        };
        let connect = Connect {
            clean_session: true,
            keep_alive: 60,
            client_id: ByteString::from(client_id),
            username: Some(ByteString::from_static("JWT")),
            password: Some(bytes::Bytes::from(token.to_string())),
            ..Connect::default()
        };
        mqtt.send(Packet::Connect(Box::new(connect))).await?;
        match mqtt.next().await? {
            Some(Packet::ConnectAck(ack))
                if ack.return_code == ConnectAckReason::ConnectionAccepted => {}
            other => return Err(format!("CONNECT refused: {other:?}")),
        }
        mqtt.send(Packet::Subscribe {
            packet_id: NonZeroU16::MIN,
            topic_filters: vec![(
                ByteString::from(format!("apps/{APP}/users/{user}/#")),
                QoS::AtLeastOnce,
            )],
        })
        .await?;
        match mqtt.next().await? {
            Some(Packet::SubscribeAck { status, .. })
                if matches!(status.first(), Some(SubscribeReturnCode::Success(_))) => {}
            other => return Err(format!("SUBSCRIBE refused: {other:?}")),
        }
        Ok(mqtt)
    }

    /// Receives until told to stop: records every publish, acknowledges QoS 1, pings every 30 s.
    async fn serve(
        mut self,
        index: u32,
        user: String,
        hub: Arc<Hub>,
        mut stop: watch::Receiver<bool>,
    ) {
        let period = Duration::from_secs(30);
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                packet = self.next() => match packet {
                    Ok(Some(Packet::Publish(publish))) => {
                        let at = Instant::now();
                        hub.record(index, &user, &publish, at);
                        if let Some(packet_id) = publish.packet_id
                            && self.send(Packet::PublishAck { packet_id }).await.is_err()
                        {
                            hub.dropped.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        if !*stop.borrow() {
                            hub.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        return;
                    }
                },
                _ = stop.changed() => {
                    let _ = self.send(Packet::Disconnect).await;
                    let _ = self.ws.close(None).await;
                    return;
                }
                _ = ping.tick() => {
                    let _ = self.send(Packet::PingRequest).await;
                }
            }
        }
    }
}

/// A set of connected clients.
struct Fleet {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Connects one client per user (`users[i]` gets index `i`), `CONNECTING` at a time.
    async fn connect(
        ws_port: u16,
        users: &[String],
        tokens: &[String],
        hub: &Arc<Hub>,
        generation: u32,
    ) -> Res<Fleet> {
        let (stop, stopped) = watch::channel(false);
        let gate = Arc::new(Semaphore::new(CONNECTING));
        let mut tasks = Vec::with_capacity(users.len());
        let mut readies = Vec::with_capacity(users.len());
        for (i, (user, token)) in users.iter().zip(tokens).enumerate() {
            let (ready, is_ready) = oneshot::channel::<Res<()>>();
            readies.push(is_ready);
            let (user, token, hub, gate, stopped) = (
                user.clone(),
                token.clone(),
                hub.clone(),
                gate.clone(),
                stopped.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let opened = {
                    let _permit = gate.acquire().await;
                    let client_id = format!("bench-{generation}-{i}");
                    Mqtt::open(ws_port, &user, &token, &client_id).await
                };
                match opened {
                    Ok(mqtt) => {
                        let _ = ready.send(Ok(()));
                        mqtt.serve(i as u32, user, hub, stopped).await;
                    }
                    Err(e) => {
                        let _ = ready.send(Err(format!("{user}: {e}")));
                    }
                }
            }));
        }
        let fleet = Fleet { stop, tasks };
        let mut failures = Vec::new();
        for ready in readies {
            match ready.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(e),
                Err(_) => failures.push("a client task ended".into()),
            }
        }
        if !failures.is_empty() {
            let n = failures.len();
            fleet.close().await;
            return Err(format!(
                "{n} clients failed to connect, e.g. {}",
                failures[0]
            ));
        }
        Ok(fleet)
    }

    /// DISCONNECT every client and wait for them.
    async fn close(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A keep-alive HTTP/1.1 client (hyper's server writes Content-Length on every answer)

struct Http {
    port: u16,
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    async fn connect(port: u16) -> Res<Http> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("HTTP connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Http {
            port,
            stream,
            buf: Vec::with_capacity(8192),
        })
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: &str,
    ) -> Res<(u16, String)> {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        );
        self.stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("HTTP write: {e}"))?;
        let head_end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad HTTP answer: {head:?}"))?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while self.buf.len() < head_end + length {
            self.fill().await?;
        }
        let body = String::from_utf8_lossy(&self.buf[head_end..head_end + length]).to_string();
        self.buf.drain(..head_end + length);
        Ok((status, body))
    }

    async fn fill(&mut self) -> Res<()> {
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err("the server closed the HTTP connection".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("HTTP read: {e}")),
        }
    }
}

fn send_body(recipient: &str, message_id: &str, text: &str) -> String {
    json!({
        "sender_fullname": "Bench Sender",
        "recipient_id": recipient,
        "recipient_fullname": recipient,
        "text": text,
        "message_id": message_id,
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// Statistics

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

// ---------------------------------------------------------------------------------------------
// Phases

struct Memory {
    before_kb: u64,
    after_kb: u64,
    per_conn_kb: f64,
    connect_secs: f64,
    bench_per_conn_kb: f64,
}

struct Latency {
    sent: usize,
    non_ok: usize,
    lost: usize,
    duplicates: usize,
    misrouted: usize,
    p50: f64,
    p99: f64,
    max: f64,
    http_p50: f64,
    http_p99: f64,
    rate: f64,
}

struct FanOut {
    rounds: usize,
    members: usize,
    setup_secs: f64,
    drain_secs: f64,
    last_median: f64,
    last_max: f64,
    first_median: f64,
    http_median: f64,
    lost: usize,
    duplicates: usize,
    /// (HTTP answer, send → first member, send → last member) per round, in order.
    per_round: Vec<(f64, f64, f64)>,
    /// Server RSS once the group is built and its deliveries are done (kB).
    rss_after_setup_kb: u64,
}

/// Sends `n` direct messages over `IN_FLIGHT` keep-alive connections, from users that are not
/// connected (so only the recipient's copy is published) to random connected users; waits for
/// their `clientadded` and matches them by `message_id`.
async fn direct_messages(
    server: &Server,
    hub: &Arc<Hub>,
    users: &[String],
    n: usize,
    prefix: &str,
) -> Res<Latency> {
    hub.take();
    let next = Arc::new(AtomicUsize::new(0));
    let users = Arc::new(users.to_vec());
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..IN_FLIGHT {
        let (next, users, prefix) = (next.clone(), users.clone(), prefix.to_string());
        let sender_token = token(&format!("sender-{w}"));
        let mut http = Http::connect(server.http).await?;
        workers.push(tokio::spawn(async move {
            // (message id, recipient index, send start, HTTP answer time, status)
            let mut sends: Vec<(String, u32, Instant, Duration, u16)> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let to = (splitmix(i as u64 ^ 0x5EED) % users.len() as u64) as u32;
                let id = format!("{prefix}-{i:06}");
                let body = send_body(&users[to as usize], &id, "a benchmark message");
                let start = Instant::now();
                let status = match http
                    .call(
                        "POST",
                        &format!("/api/{APP}/messages"),
                        &sender_token,
                        &body,
                    )
                    .await
                {
                    Ok((status, _)) => status,
                    Err(e) => return Err(e),
                };
                sends.push((id, to, start, start.elapsed(), status));
            }
            Ok::<_, String>(sends)
        }));
    }
    let mut sends = Vec::with_capacity(n);
    for worker in workers {
        sends.extend(worker.await.map_err(|e| e.to_string())??);
    }
    let send_secs = started.elapsed().as_secs_f64();
    let ok = sends.iter().filter(|s| s.4 == 200 || s.4 == 201).count();
    hub.wait_for(ok, Duration::from_secs(15)).await;
    // Room for duplicates to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let arrivals = hub.take();
    let mut by_id: HashMap<&str, Vec<&Arrival>> = HashMap::new();
    for a in &arrivals {
        by_id.entry(a.message_id.as_str()).or_default().push(a);
    }
    let (mut lost, mut duplicates, mut misrouted, mut non_ok) = (0, 0, 0, 0);
    let mut latencies = Vec::with_capacity(n);
    let mut http_times = Vec::with_capacity(n);
    for (id, to, start, http_time, status) in &sends {
        http_times.push(ms(*http_time));
        if *status != 200 && *status != 201 {
            non_ok += 1;
            continue;
        }
        let got = by_id.get(id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let mine: Vec<&&Arrival> = got.iter().filter(|a| a.user == *to).collect();
        misrouted += got.len() - mine.len();
        match mine.iter().map(|a| a.at).min() {
            None => lost += 1,
            Some(first) => {
                duplicates += mine.len() - 1;
                latencies.push(ms(first.saturating_duration_since(*start)));
            }
        }
    }
    let latencies = sorted(latencies);
    let http_times = sorted(http_times);
    Ok(Latency {
        sent: sends.len(),
        non_ok,
        lost,
        duplicates,
        misrouted,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or(f64::NAN),
        http_p50: percentile(&http_times, 0.50),
        http_p99: percentile(&http_times, 0.99),
        rate: sends.len() as f64 / send_secs,
    })
}

/// Creates a group of every user (`users[0]` its owner): 98 members per call, the most allowed.
async fn create_group(http: &mut Http, owner_token: &str, users: &[String]) -> Res<()> {
    let mut members: Vec<&String> = Vec::new();
    // The owner counts as a member (and as a change) of the create call.
    let first = users.len().min(MEMBER_CHANGES);
    let group_members: serde_json::Map<String, Value> = users[1..first]
        .iter()
        .map(|u| (u.clone(), json!(1)))
        .collect();
    let body =
        json!({ "group_name": "Bench fan-out", "group_members": group_members, "group_id": GROUP });
    let (status, answer) = http
        .call(
            "POST",
            &format!("/api/{APP}/groups"),
            owner_token,
            &body.to_string(),
        )
        .await?;
    if status != 200 && status != 201 {
        return Err(format!("group create: {status} {answer}"));
    }
    members.extend(&users[..first]);
    let mut at = first;
    while at < users.len() {
        let end = (at + MEMBER_CHANGES).min(users.len());
        members.extend(&users[at..end]);
        let all: serde_json::Map<String, Value> =
            members.iter().map(|u| ((*u).clone(), json!(1))).collect();
        let body = json!({ "members": all }).to_string();
        let (status, answer) = http
            .call(
                "PUT",
                &format!("/api/{APP}/groups/{GROUP}/members"),
                owner_token,
                &body,
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(format!("set members: {status} {answer}"));
        }
        at = end;
    }
    Ok(())
}

/// Waits until the server's deliver queue is empty: a direct message to a connected probe
/// arrives only after every event queued before it (one in-order deliver step). Twice: the
/// deliveries that ran while the first probe waited queued their `message-delivered` events
/// behind it (the local server drops them, but only when it reaches them).
async fn drain(server: &Server, hub: &Arc<Hub>, http: &mut Http, label: &str) -> Res<f64> {
    let probe = vec!["probe".to_string()];
    let fleet = Fleet::connect(server.ws, &probe, &[token("probe")], hub, 999).await?;
    hub.take();
    let started = Instant::now();
    for pass in 0..2 {
        let body = send_body("probe", &format!("drain-{label}-{pass}"), "drain");
        let (status, answer) = http
            .call(
                "POST",
                &format!("/api/{APP}/messages"),
                &token("sender-0"),
                &body,
            )
            .await?;
        if status != 200 && status != 201 {
            fleet.close().await;
            return Err(format!("drain probe: {status} {answer}"));
        }
        if !hub.wait_for(pass + 1, Duration::from_secs(300)).await {
            fleet.close().await;
            return Err("the deliver queue did not drain within 300 s".into());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    fleet.close().await;
    hub.take();
    Ok(secs)
}

async fn fan_out(
    server: &Server,
    hub: &Arc<Hub>,
    users: &[String],
    tokens: &[String],
    rounds: usize,
    cpu: &mut Vec<PhaseCpu>,
) -> Res<FanOut> {
    let owner_token = &tokens[0];
    let mut http = Http::connect(server.http).await?;
    // Built with nobody connected: its ~1,000 system messages and join histories go to the
    // store only, and the fleet reconnects once the deliver queue is empty again.
    let c0 = Cpu::now(&server.pid);
    let started = Instant::now();
    create_group(&mut http, owner_token, users).await?;
    let setup_secs = started.elapsed().as_secs_f64();
    let drain_secs = drain(server, hub, &mut http, "group").await?;
    let rss_after_setup_kb = rss_kb(&server.pid);
    cpu.push(phase(
        "group setup (HTTP, nobody connected) + deliver queue drain",
        c0,
        Cpu::now(&server.pid),
    ));

    let fleet = Fleet::connect(server.ws, users, tokens, hub, 2).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    hub.take();
    let c1 = Cpu::now(&server.pid);
    let members = users.len();
    let (mut lasts, mut firsts, mut https) = (Vec::new(), Vec::new(), Vec::new());
    let mut per_round = Vec::new();
    let (mut lost, mut duplicates) = (0, 0);
    for round in 0..rounds {
        hub.take();
        let id = format!("fan-{round:03}");
        let body = send_body(GROUP, &id, "a benchmark group message");
        let start = Instant::now();
        let (status, answer) = http
            .call("POST", &format!("/api/{APP}/messages"), owner_token, &body)
            .await?;
        let http_ms = ms(start.elapsed());
        https.push(http_ms);
        if status != 200 && status != 201 {
            fleet.close().await;
            return Err(format!("group send: {status} {answer}"));
        }
        hub.wait_for(members, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let arrivals = hub.take();
        let mut per_member = vec![0usize; members];
        let (mut first, mut last) = (None::<Instant>, None::<Instant>);
        for a in arrivals.iter().filter(|a| a.message_id == id) {
            per_member[a.user as usize] += 1;
            if per_member[a.user as usize] == 1 {
                first = Some(first.map_or(a.at, |f| f.min(a.at)));
                last = Some(last.map_or(a.at, |l| l.max(a.at)));
            }
        }
        lost += per_member.iter().filter(|&&c| c == 0).count();
        duplicates += per_member
            .iter()
            .map(|&c| c.saturating_sub(1))
            .sum::<usize>();
        if let (Some(first), Some(last)) = (first, last) {
            firsts.push(ms(first.saturating_duration_since(start)));
            lasts.push(ms(last.saturating_duration_since(start)));
            per_round.push((
                http_ms,
                ms(first.saturating_duration_since(start)),
                ms(last.saturating_duration_since(start)),
            ));
        } else {
            per_round.push((http_ms, f64::NAN, f64::NAN));
        }
    }
    cpu.push(phase(
        &format!("fan-out: {rounds} group messages to {members} members"),
        c1,
        Cpu::now(&server.pid),
    ));
    fleet.close().await;
    let (lasts, firsts, https) = (sorted(lasts), sorted(firsts), sorted(https));
    Ok(FanOut {
        rounds,
        members,
        setup_secs,
        drain_secs,
        last_median: percentile(&lasts, 0.5),
        last_max: lasts.last().copied().unwrap_or(f64::NAN),
        first_median: percentile(&firsts, 0.5),
        http_median: percentile(&https, 0.5),
        lost,
        duplicates,
        per_round,
        rss_after_setup_kb,
    })
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("bench realtime: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Res<()> {
    let clients = env_usize("BENCH_CLIENTS", 1000).max(1);
    let messages = env_usize("BENCH_MESSAGES", 2000).max(1);
    let rounds = env_usize("BENCH_ROUNDS", 10).max(1);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    if let Some(limit) = open_files_limit()
        && limit < (clients as u64) + 256
    {
        return Err(format!(
            "the open-files limit ({limit}) is too low for {clients} connections on each side: \
             raise it (ulimit -n {}) and run again",
            clients + 1024
        ));
    }
    let bin = server_binary()?;
    let bin = bin.canonicalize().unwrap_or(bin);
    let load_before = load_average();
    let server = start_server(&bin)?;
    eprintln!(
        "server pid {} (http {}, ws {}); {clients} clients, {messages} messages, {rounds} fan-out rounds, {cores} cores",
        server.pid, server.http, server.ws
    );
    let hub = Arc::new(Hub::default());
    let users: Vec<String> = (0..clients).map(user).collect();
    let tokens: Vec<String> = users.iter().map(|u| token(u)).collect();
    let mut cpu = Vec::new();

    // Warm-up: the HTTP path and a few connections, so that one-off allocations are in the
    // baseline rather than counted against the connections.
    {
        let mut http = Http::connect(server.http).await?;
        let warm_users: Vec<String> = (0..8).map(|i| format!("warm-{i}")).collect();
        let warm_tokens: Vec<String> = warm_users.iter().map(|u| token(u)).collect();
        let warm = Fleet::connect(server.ws, &warm_users, &warm_tokens, &hub, 0).await?;
        for (i, u) in warm_users.iter().enumerate() {
            http.call(
                "POST",
                &format!("/api/{APP}/messages"),
                &token("sender-0"),
                &send_body(u, &format!("warm-{i}"), "warm-up"),
            )
            .await?;
        }
        hub.wait_for(warm_users.len(), Duration::from_secs(5)).await;
        warm.close().await;
        hub.take();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // 1. Memory per idle connection.
    eprintln!("phase 1: connecting {clients} WebSocket clients ...");
    let rss_before = rss_kb(&server.pid);
    let bench_before = rss_kb("self");
    let c0 = Cpu::now(&server.pid);
    let fleet = Fleet::connect(server.ws, &users, &tokens, &hub, 1).await?;
    let connect_secs = c0.at.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_kb(&server.pid);
    let c1 = Cpu::now(&server.pid);
    cpu.push(phase(
        &format!("connect + subscribe {clients} clients, idle 1 s"),
        c0,
        c1,
    ));
    let memory = Memory {
        before_kb: rss_before,
        after_kb: rss_after,
        per_conn_kb: (rss_after as f64 - rss_before as f64) / clients as f64,
        connect_secs,
        bench_per_conn_kb: (rss_kb("self") as f64 - bench_before as f64) / clients as f64,
    };
    eprintln!("  {:.1} kB per connection", memory.per_conn_kb);

    // 2. Latency, HTTP send → clientadded.
    eprintln!("phase 2: {messages} direct messages over HTTP ({IN_FLIGHT} in flight) ...");
    direct_messages(&server, &hub, &users, 100.min(messages), "warm").await?;
    let c2 = Cpu::now(&server.pid);
    let latency = direct_messages(&server, &hub, &users, messages, "lat").await?;
    let c3 = Cpu::now(&server.pid);
    cpu.push(phase(
        &format!("{messages} direct messages, HTTP → clientadded"),
        c2,
        c3,
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_busy = rss_kb(&server.pid);
    eprintln!(
        "  p50 {:.2} ms, p99 {:.2} ms, lost {}",
        latency.p50, latency.p99, latency.lost
    );
    fleet.close().await;

    // 3. Fan-out.
    eprintln!("phase 3: group of {clients} members, {rounds} messages ...");
    let fan = fan_out(&server, &hub, &users, &tokens, rounds, &mut cpu).await?;
    eprintln!("  last member after {:.1} ms (median)", fan.last_median);

    let rss_end = rss_kb(&server.pid);
    let load_after = load_average();
    let warnings = server.warnings.load(Ordering::Relaxed);
    let dropped = hub.dropped.load(Ordering::Relaxed);
    let foreign = hub.foreign.load(Ordering::Relaxed);
    drop(server);

    // The report.
    let mut r = String::new();
    let _ = writeln!(r, "## chat21-local MQTT broker: realtime bench\n");
    let _ = writeln!(
        r,
        "{clients} MQTT-over-WebSocket clients (one lean tokio task each, QoS 1 subscription to their own tree), \
         {cores} cores shared by server and load generator (1-min load average {load_before} at the start, \
         {load_after} at the end); server `{}` (RUST_LOG=warn).\n",
        bin.display()
    );
    let _ = writeln!(r, "| metric | measured | target |");
    let _ = writeln!(r, "|---|---|---|");
    let _ = writeln!(
        r,
        "| memory per idle WebSocket connection (server RSS {:.1} → {:.1} MB) | **{:.1} kB** | ≤ 22 kB |",
        memory.before_kb as f64 / 1024.0,
        memory.after_kb as f64 / 1024.0,
        memory.per_conn_kb
    );
    let _ = writeln!(
        r,
        "| server RSS growth over phase 2 (the store's messages and conversations, connection buffers) | {:.1} MB | |",
        (rss_busy as f64 - memory.after_kb as f64) / 1024.0
    );
    let _ = writeln!(
        r,
        "| time to connect + subscribe {clients} clients ({CONNECTING} at a time) | {:.2} s | |",
        memory.connect_secs
    );
    let _ = writeln!(
        r,
        "| HTTP send → recipient's clientadded, p50 / p99 / max ({} messages, {IN_FLIGHT} in flight) | {:.2} / **{:.2}** / {:.2} ms | p99 ≤ 8 ms |",
        latency.sent, latency.p50, latency.p99, latency.max
    );
    let _ = writeln!(
        r,
        "| HTTP answer time, p50 / p99 | {:.2} / {:.2} ms | |",
        latency.http_p50, latency.http_p99
    );
    let _ = writeln!(
        r,
        "| send rate sustained | {:.0} messages/s | |",
        latency.rate
    );
    let _ = writeln!(
        r,
        "| direct messages lost / duplicated / misrouted / non-2xx | {} / {} / {} / {} of {} | 0 |",
        latency.lost, latency.duplicates, latency.misrouted, latency.non_ok, latency.sent
    );
    let _ = writeln!(
        r,
        "| group fan-out, send → last of {} members' clientadded, median / max ({} rounds) | **{:.1}** / {:.1} ms | ≤ 264 ms |",
        fan.members, fan.rounds, fan.last_median, fan.last_max
    );
    let _ = writeln!(
        r,
        "| group fan-out, send → first member / HTTP answer (median) | {:.1} / {:.1} ms | |",
        fan.first_median, fan.http_median
    );
    let rounds_ms: Vec<String> = fan
        .per_round
        .iter()
        .map(|(h, f, l)| format!("{h:.0}/{f:.0}/{l:.0}"))
        .collect();
    let _ = writeln!(
        r,
        "| group fan-out per round: HTTP answer / first member / last member | {} ms | |",
        rounds_ms.join(", ")
    );
    let _ = writeln!(
        r,
        "| group copies lost / duplicated | {} / {} of {} | 0 |",
        fan.lost,
        fan.duplicates,
        fan.members * fan.rounds
    );
    let _ = writeln!(
        r,
        "| group setup: create + {} set-members calls / deliver queue drain | {:.2} s / {:.2} s | |",
        fan.members.saturating_sub(1) / MEMBER_CHANGES,
        fan.setup_secs,
        fan.drain_secs
    );
    let _ = writeln!(
        r,
        "| server RSS once the {}-member group is built (store) | {:.1} MB | |",
        fan.members,
        fan.rss_after_setup_kb as f64 / 1024.0
    );
    let _ = writeln!(
        r,
        "| connections closed by the server / publishes outside a client's tree | {dropped} / {foreign} | 0 / 0 |"
    );
    let _ = writeln!(r, "| server stderr lines (warnings) | {warnings} | |");
    let _ = writeln!(
        r,
        "| server RSS at the end / load generator RSS per connection | {:.1} MB / {:.1} kB | |",
        rss_end as f64 / 1024.0,
        memory.bench_per_conn_kb
    );
    let _ = writeln!(r, "\n| phase | wall | server CPU | load generator CPU |");
    let _ = writeln!(r, "|---|---|---|---|");
    for p in &cpu {
        let _ = writeln!(
            r,
            "| {} | {:.2} s | {:.2} s ({:.0}%) | {:.2} s ({:.0}%) |",
            p.name,
            p.wall,
            p.server,
            100.0 * p.server / p.wall,
            p.bench,
            100.0 * p.bench / p.wall
        );
    }
    let _ = writeln!(
        r,
        "\n(CPU = utime + stime from /proc/<pid>/stat; 100% = one core.)"
    );
    println!("\n{r}");
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    let out = target
        .canonicalize()
        .unwrap_or(target)
        .join("bench-realtime.md");
    match std::fs::write(&out, &r) {
        Ok(()) => println!("written to {}", out.display()),
        Err(e) => eprintln!("cannot write {}: {e}", out.display()),
    }
    Ok(())
}
