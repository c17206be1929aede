//! The `chat21-local` process every suite here drives: started on free ports (HTTP and both
//! MQTT listeners), killed when dropped.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The server's log lines.
pub type Log = Arc<Mutex<Vec<String>>>;

pub const KEY: &str = "server-test-key";
pub const APP: &str = "app1";
pub const STARTUP: Duration = Duration::from_secs(20);
const LISTENING: &str = "chat21-local listening on http://";
const MQTT_WS: &str = "chat21-local MQTT over WebSocket on ws://";
const MQTT_TCP: &str = "chat21-local MQTT over TCP on mqtt://";

/// The port of `host:port` (whatever `HOST` is).
fn port_of(address: &str) -> Option<u16> {
    address.trim().rsplit_once(':')?.1.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// The server process

/// A running server; dropping it kills the process.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// MQTT over WebSocket (`ws://127.0.0.1:{ws_port}/ws`) and over TCP.
    pub ws_port: u16,
    pub tcp_port: u16,
    /// Stdout lines after the listening line (a thread keeps draining the pipe).
    pub lines: Receiver<String>,
    /// Its stderr (the log), drained as it comes so that a flood of warnings never fills the
    /// pipe and stalls the server; the first 10,000 lines are kept.
    pub log: Log,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn command() -> Command {
    configured(Command::new(env!("CARGO_BIN_EXE_chat21-local")))
}

/// The binary with at most `descriptors` open files (`ulimit -n` in a shell that then execs
/// it: the process, its pid and its pipes are the binary's own).
pub fn command_with_descriptors(descriptors: u32) -> Command {
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(format!("ulimit -n {descriptors} && exec \"$0\""))
        .arg(env!("CARGO_BIN_EXE_chat21-local"));
    configured(shell)
}

fn configured(mut command: Command) -> Command {
    command
        .env("PORT", "0")
        .env("MQTT_WS_PORT", "0")
        .env("MQTT_TCP_PORT", "0")
        .env("RUST_LOG", "warn")
        // Each test's own server, nothing kept: in memory (the restart tests name a directory).
        .env("DATA_DIR", ":memory:")
        .env_remove("JWT_KEY")
        .env_remove("JWT_PUBLIC_KEY")
        .env_remove("JWT_ALGORITHM")
        .env_remove("HANDSHAKE_TIMEOUT_SECS")
        .env_remove("MAX_CONNECTIONS")
        .env_remove("MQTT_MAX_IN_FLIGHT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Starts the binary and waits (bounded) for the port it prints.
pub fn start_with(mut command: Command) -> Server {
    let mut child = command.spawn().expect("start chat21-local");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut server = Server {
        child,
        port: 0,
        ws_port: 0,
        tcp_port: 0,
        lines,
        log: Log::default(),
    };
    let deadline = Instant::now() + STARTUP;
    while server.port == 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match server.lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(address) = line.strip_prefix(LISTENING) {
                    server.port = port_of(address).expect("a port number");
                } else if let Some(rest) = line.strip_prefix(MQTT_WS) {
                    let address = rest.trim().trim_end_matches("/ws");
                    server.ws_port = port_of(address).expect("a WebSocket port");
                } else if let Some(address) = line.strip_prefix(MQTT_TCP) {
                    server.tcp_port = port_of(address).expect("a TCP port");
                }
            }
            Err(e) => {
                let _ = server.child.kill();
                let mut stderr = String::new();
                if let Some(mut err) = server.child.stderr.take() {
                    let _ = err.read_to_string(&mut stderr);
                }
                panic!("chat21-local did not print its port ({e:?}); stderr: {stderr}");
            }
        }
    }
    if let Some(stderr) = server.child.stderr.take() {
        let log = server.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                if log.len() < 10_000 {
                    log.push(line);
                }
            }
        });
    }
    server
}

pub fn start() -> Server {
    let mut command = command();
    command.env("JWT_KEY", KEY);
    start_with(command)
}
