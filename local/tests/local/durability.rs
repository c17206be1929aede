//! What a self-hosted `chat21-local` keeps: its data across a restart (a file under
//! `DATA_DIR`), everything it acknowledged across a SIGTERM in the middle of traffic (a
//! graceful shutdown), an online backup taken while it serves; `GET /health`; `HOST`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{APP, KEY, STARTUP, Server, command, eventually, start_with, token};

/// A fresh directory under the system's temporary one (removed when dropped).
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn new(name: &str) -> DataDir {
        let unique = format!(
            "chat21-{name}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ rand_seed()
        );
        let dir = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&dir).unwrap();
        DataDir(dir)
    }

    pub fn db(&self) -> PathBuf {
        self.0.join("chat21.db")
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Some entropy for unique names and seeds (the clock's nanoseconds).
pub fn rand_seed() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The binary on `dir` (its data kept there), with the tests' key, plus `extra` variables.
pub fn start_in(dir: &DataDir, extra: &[(&str, &str)]) -> Server {
    let mut command = command();
    command.env("JWT_KEY", KEY).env("DATA_DIR", &dir.0);
    for (name, value) in extra {
        command.env(name, value);
    }
    start_with(command)
}

/// One request; `None` when the connection fails or the answer is cut (the server died).
pub fn try_call(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Option<(u16, Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())?;
    (body.len() == length).then_some(())?;
    Some((status, serde_json::from_str(body).ok()?))
}

/// A call that must answer 200; its body.
pub fn ok(port: u16, method: &str, path: &str, token: &str, body: Option<&Value>) -> Value {
    match try_call(port, method, path, token, body) {
        Some((200 | 201, json)) => json,
        other => panic!("{method} {path}: {other:?}"),
    }
}

/// Every message id of `user`'s timeline with `with`, all pages.
pub fn timeline_ids(port: u16, user: &str, with: &str) -> Vec<String> {
    let t = token(user, APP, false);
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/{APP}/{user}/conversations/{with}/messages?limit=1000");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = ok(port, "GET", &path, &t, None);
        for m in page["result"].as_array().unwrap() {
            ids.push(m["message_id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return ids,
        }
    }
}

/// `user`'s conversation with `with`, as listed.
pub fn conversation(port: u16, user: &str, with: &str) -> Option<Value> {
    let t = token(user, APP, false);
    let list = ok(
        port,
        "GET",
        &format!("/api/{APP}/{user}/conversations"),
        &t,
        None,
    );
    list["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["conversWith"] == with)
        .cloned()
}

pub fn direct(to: &str, id: &str) -> Value {
    json!({
        "sender_fullname": "Sender",
        "recipient_id": to,
        "recipient_fullname": "Recipient",
        "text": format!("text of {id}"),
        "message_id": id,
    })
}

/// Waits (bounded) for the process to end on its own.
pub fn wait_exit(server: &mut Server, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "chat21-local did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Senders running until told to stop or until the server stops answering; each keeps the
/// ids the server acknowledged (2xx).
pub struct Traffic {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    pub acked: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl Traffic {
    /// `senders` threads, sender `s{i}` to `r{i}`, ids `{tag}-{i}-{n}`.
    pub fn start(port: u16, senders: usize, tag: &str) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
        let threads = (0..senders)
            .map(|i| {
                let (stop, acked, tag) = (stop.clone(), acked.clone(), tag.to_string());
                std::thread::spawn(move || {
                    let (from, to) = (format!("s{i}"), format!("r{i}"));
                    let t = token(&from, APP, false);
                    for n in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let id = format!("{tag}-{i}-{n}");
                        let body = direct(&to, &id);
                        match try_call(
                            port,
                            "POST",
                            &format!("/api/{APP}/messages"),
                            &t,
                            Some(&body),
                        ) {
                            Some((200, _)) => {
                                acked.lock().unwrap().push((from.clone(), to.clone(), id))
                            }
                            Some((503, _)) => {}
                            Some(other) => panic!("a send answered {other:?}"),
                            None => return,
                        }
                    }
                })
            })
            .collect();
        Traffic {
            stop,
            threads,
            acked,
        }
    }

    pub fn stop(self) -> Vec<(String, String, String)> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}

fn sigterm(server: &Server) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Every acknowledged send is in its timeline, once, and (after the restart delivered what
/// was pending) counted in its recipient's unread count.
fn assert_kept(port: u16, acked: &[(String, String, String)], senders: usize) {
    for i in 0..senders {
        let (from, to) = (format!("s{i}"), format!("r{i}"));
        let mine: Vec<&String> = acked
            .iter()
            .filter(|(f, _, _)| *f == from)
            .map(|(_, _, id)| id)
            .collect();
        let stored = timeline_ids(port, &from, &to);
        for id in &mine {
            assert_eq!(
                stored.iter().filter(|s| s == id).count(),
                1,
                "{id} acknowledged, stored {:?}",
                stored.len()
            );
        }
        eventually("the recipient's unread count", || {
            let c = conversation(port, &to, &from).ok_or("no conversation")?;
            (c["unread_count"] == stored.len())
                .then_some(())
                .ok_or_else(|| format!("{} stored, {c}", stored.len()))
        });
    }
}

#[test]
fn a_sigterm_mid_traffic_loses_no_acknowledged_send() {
    let dir = DataDir::new("sigterm");
    let mut server = start_in(&dir, &[]);
    let traffic = Traffic::start(server.port, 4, "t");
    std::thread::sleep(Duration::from_millis(400));
    sigterm(&server);
    let status = wait_exit(&mut server, Duration::from_secs(20));
    let acked = traffic.stop();
    assert!(status.success(), "exited with {status}");
    assert!(acked.len() > 10, "only {} sends acknowledged", acked.len());
    let printed: Vec<String> = server.lines.try_iter().collect();
    assert!(
        printed.iter().any(|l| l == "chat21-local stopped"),
        "{printed:?}"
    );
    // A clean close leaves no write-ahead log behind: everything is in the database file.
    assert!(!dir.0.join("chat21.db-wal").exists());
    let server = start_in(&dir, &[]);
    assert_kept(server.port, &acked, 4);
}

#[test]
fn health_reports_the_database_and_its_outbox() {
    let dir = DataDir::new("health");
    let server = start_in(&dir, &[]);
    let health = ok(server.port, "GET", "/health", "", None);
    assert_eq!(health["success"], true, "{health}");
    assert_eq!(health["database"], "ok");
    assert_eq!(health["outbox"]["dead_deliveries"], 0, "{health}");
    assert!(health["outbox"]["deliveries"].is_u64(), "{health}");
    // The data directory and its file were created, and said where.
    assert!(dir.db().exists());
}

#[test]
fn host_is_the_address_every_listener_binds() {
    let dir = DataDir::new("host");
    let server = start_in(&dir, &[("HOST", "127.0.0.2")]);
    // Listening on 127.0.0.2 only: 127.0.0.1 is refused.
    assert!(TcpStream::connect(("127.0.0.2", server.port)).is_ok());
    assert!(TcpStream::connect(("127.0.0.1", server.port)).is_err());
    drop(server);
    let mut bad = command();
    bad.env("HOST", "everywhere").env("DATA_DIR", ":memory:");
    let out = bad.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HOST must be an IP address"), "{err}");
}

#[test]
fn a_backup_taken_while_serving_holds_what_was_acknowledged() {
    let dir = DataDir::new("backup");
    let server = start_in(&dir, &[]);
    let traffic = Traffic::start(server.port, 3, "b");
    std::thread::sleep(Duration::from_millis(300));
    let before: Vec<(String, String, String)> = traffic.acked.lock().unwrap().clone();
    let copy = DataDir::new("backup-copy");
    // SQLite's own online backup, as the docs show it (`VACUUM INTO`), while sends go on.
    let live = rusqlite::Connection::open(dir.db()).unwrap();
    live.execute("VACUUM INTO ?1", [copy.db().to_str().unwrap()])
        .unwrap();
    drop(live);
    let acked = traffic.stop();
    assert!(
        acked.len() > before.len(),
        "traffic went on during the backup"
    );
    drop(server);
    let restored = start_in(&copy, &[]);
    let deadline = Instant::now() + STARTUP;
    while Instant::now() < deadline && try_call(restored.port, "GET", "/health", "", None).is_none()
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_kept(restored.port, &before, 3);
}
