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

mod http;
mod mqtt;
mod phases;
mod proc_stats;
mod server;
mod stats;

use http::{Http, send_body};
use mqtt::{Arrival, Fleet, Hub};
use phases::{Memory, direct_messages, fan_out};
use proc_stats::{Cpu, PhaseCpu, load_average, open_files_limit, phase, rss_kb};
use server::{Server, server_binary, start_server};
use stats::{ms, percentile, sorted, splitmix};

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
