//! `chat21-local`'s webhooks, received by a plain HTTP endpoint on loopback (what Tiledesk
//! runs): Chat21's envelope, signed, for the deployment's endpoints (`WEBHOOK_ENDPOINTS`) and a
//! tenant's own (registered over HTTP by an admin), each filtered.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chat21::ops::webhooks::Secret;
use chat21::ops::webhooks::lanes::LANE_IN_FLIGHT;
use serde_json::{Value, json};

use crate::support::{APP, KEY, command, eventually, start_with, token};

const GLOBAL_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TENANT_SECRET: &str = "the-tenants-own-secret";

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Post {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Post {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }

    fn event(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn verifies_with(&self, secret: &str) -> bool {
        let secret = Secret::parse("secret", secret).unwrap();
        self.header("webhook-timestamp").parse().is_ok_and(|ts| {
            secret.verify(
                self.header("webhook-id"),
                ts,
                self.body.as_bytes(),
                self.header("webhook-signature"),
            )
        })
    }
}

/// A plain HTTP/1.1 endpoint on 127.0.0.1 answering 200 to every POST (one per connection).
struct Receiver {
    port: u16,
    posts: Arc<Mutex<Vec<Post>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let posts: Arc<Mutex<Vec<Post>>> = Arc::default();
        let kept = posts.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split(' ').nth(1).unwrap_or_default().to_string();
                let mut headers = Vec::new();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 {
                        break;
                    }
                    let header = header.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':') {
                        headers.push((name.trim().to_string(), value.trim().to_string()));
                    }
                }
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                kept.lock().unwrap().push(Post {
                    path,
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Receiver { port, posts }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn at(&self, path: &str) -> Vec<Post> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.path == path)
            .cloned()
            .collect()
    }
}

fn message_sent<'a>(posts: &'a [Post], text: &str) -> Option<&'a Post> {
    posts
        .iter()
        .find(|p| p.event()["event_type"] == "message-sent" && p.event()["data"]["text"] == text)
}

#[test]
fn a_tiledesk_style_receiver_gets_message_sent_for_direct_and_group_messages() {
    let receiver = Receiver::start();
    let mut command = command();
    command
        .env("JWT_KEY", KEY)
        .env("WEBHOOK_ENDPOINTS", receiver.url("/tiledesk"))
        .env("WEBHOOK_EVENTS", "message-sent,group-created,join-member")
        .env("WEBHOOK_SECRET", GLOBAL_SECRET);
    let server = start_with(command);
    let call = |method: &str, path: &str, who: &str, admin: bool, body: Value| {
        server.call(method, path, Some(&token(who, APP, admin)), Some(body))
    };

    // The tenant's own endpoint, for message-sent only.
    let put = call(
        "PUT",
        "/api/app1/webhooks/mine",
        "boss",
        true,
        json!({"url": receiver.url("/tenant"), "events": ["message-sent"], "secret": TENANT_SECRET}),
    );
    assert_eq!(put.status, 201, "{}", put.text());

    let created = call(
        "POST",
        "/api/app1/groups",
        "u1",
        false,
        json!({"group_name": "Support", "group_id": "group-support", "group_members": {"u2": 1}}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    for (to, text) in [("u2", "hello direct"), ("group-support", "hello group")] {
        let sent = call(
            "POST",
            "/api/app1/messages",
            "u1",
            false,
            json!({"sender_fullname": "One", "recipient_id": to,
                   "recipient_fullname": "Them", "text": text}),
        );
        assert_eq!(sent.status, 200, "{}", sent.text());
    }

    for path in ["/tiledesk", "/tenant"] {
        eventually(&format!("message-sent for both messages at {path}"), || {
            let posts = receiver.at(path);
            match (
                message_sent(&posts, "hello direct"),
                message_sent(&posts, "hello group"),
            ) {
                (Some(_), Some(_)) => Ok(()),
                _ => Err(format!("{} posts", posts.len())),
            }
        });
    }
    let tiledesk = receiver.at("/tiledesk");
    for (to, text, channel) in [
        ("u2", "hello direct", "direct"),
        ("group-support", "hello group", "group"),
    ] {
        let post = message_sent(&tiledesk, text).unwrap();
        assert_eq!(post.header("content-type"), "application/json");
        assert!(post.header("webhook-id").starts_with("msg_"));
        let event = post.event();
        assert_eq!(event["app_id"], APP);
        assert_eq!(event["recipient_id"], to);
        assert_eq!(event["message_id"], event["data"]["message_id"]);
        assert_eq!(event["data"]["sender"], "u1");
        assert_eq!(event["data"]["channel_type"], channel);
        assert!(event["createdAt"].is_u64());
    }
    eventually("group-created at the global endpoint", || {
        let posts = receiver.at("/tiledesk");
        posts
            .iter()
            .any(|p| p.event()["event_type"] == "group-created")
            .then_some(())
            .ok_or_else(|| format!("{} posts", posts.len()))
    });
    let tiledesk = receiver.at("/tiledesk");
    assert!(tiledesk.iter().all(|p| p.verifies_with(GLOBAL_SECRET)));
    let allowed = ["message-sent", "group-created", "join-member"];
    assert!(
        tiledesk
            .iter()
            .all(|p| allowed.contains(&p.event()["event_type"].as_str().unwrap_or_default())),
        "WEBHOOK_EVENTS holds"
    );
    let tenant = receiver.at("/tenant");
    assert!(tenant.iter().all(|p| p.verifies_with(TENANT_SECRET)));
    assert!(
        tenant
            .iter()
            .all(|p| p.event()["event_type"] == "message-sent")
    );
    // The same event carries the same id to both endpoints.
    let direct_id = message_sent(&tiledesk, "hello direct")
        .unwrap()
        .header("webhook-id")
        .to_string();
    assert_eq!(
        message_sent(&tenant, "hello direct")
            .unwrap()
            .header("webhook-id"),
        direct_id
    );
    drop(server);
}

/// An endpoint that reads each POST and never answers: it counts the POSTs, the connections
/// open at once, and those the client gave up on (closed).
struct Hanging {
    port: u16,
    posts: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
    given_up: Arc<AtomicUsize>,
}

impl Hanging {
    fn start() -> Hanging {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hanging = Hanging {
            port,
            posts: Arc::default(),
            open: Arc::default(),
            most_open: Arc::default(),
            given_up: Arc::default(),
        };
        let (posts, open, most_open, given_up) = (
            hanging.posts.clone(),
            hanging.open.clone(),
            hanging.most_open.clone(),
            hanging.given_up.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (posts, open, most_open, given_up) = (
                    posts.clone(),
                    open.clone(),
                    most_open.clone(),
                    given_up.clone(),
                );
                std::thread::spawn(move || {
                    let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                    most_open.fetch_max(now_open, Ordering::SeqCst);
                    let mut seen = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let mut counted = false;
                    // Read everything the client sends until it closes; answer nothing.
                    while let Ok(n) = stream.read(&mut chunk) {
                        if n == 0 {
                            break;
                        }
                        seen.extend_from_slice(&chunk[..n]);
                        if !counted && seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            counted = true;
                            posts.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                    given_up.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        hanging
    }
}

/// Issue 16, item 4: tenant `sl`'s endpoint accepts and never answers; 40 sends in `sl`,
/// then one in `ok`: ok's endpoint gets its POST before the first of sl's POSTs has timed
/// out (POST_TIMEOUT, 10 s), and sl's endpoint never holds more POSTs at once than its own
/// lane's.
#[test]
fn one_tenants_hanging_endpoint_does_not_hold_up_another_tenants_webhooks() {
    let hanging = Hanging::start();
    let healthy = Receiver::start();
    let mut command = command();
    command.env("JWT_KEY", KEY);
    let server = start_with(command);
    let call = |method: &str, path: &str, who: &str, app: &str, body: Value| {
        server.call(
            method,
            path,
            Some(&token(who, app, who == "boss")),
            Some(body),
        )
    };
    let hang_url = format!("http://127.0.0.1:{}/hook", hanging.port);
    let put = call(
        "PUT",
        "/api/sl/webhooks/slow",
        "boss",
        "sl",
        json!({"url": hang_url}),
    );
    assert_eq!(put.status, 201, "{}", put.text());
    let put = call(
        "PUT",
        "/api/ok/webhooks/fine",
        "boss",
        "ok",
        json!({"url": healthy.url("/ok"), "events": ["message-sent"]}),
    );
    assert_eq!(put.status, 201, "{}", put.text());

    for i in 0..40 {
        let body = json!({"sender_fullname": "S", "recipient_id": "sl-peer",
                          "recipient_fullname": "P", "text": format!("slow {i}")});
        let sent = call("POST", "/api/sl/messages", &format!("s{i}"), "sl", body);
        assert_eq!(sent.status, 200, "{}", sent.text());
    }
    eventually("sl's endpoint holding POSTs", || {
        let posts = hanging.posts.load(Ordering::SeqCst);
        (posts > 0).then_some(()).ok_or(format!("{posts} POSTs"))
    });
    let body = json!({"sender_fullname": "O", "recipient_id": "ok-peer",
                      "recipient_fullname": "P", "text": "fine"});
    let sent = call("POST", "/api/ok/messages", "o1", "ok", body);
    assert_eq!(sent.status, 200, "{}", sent.text());
    eventually("ok's message-sent", || {
        let posts = healthy.at("/ok");
        message_sent(&posts, "fine")
            .map(|_| ())
            .ok_or_else(|| format!("{} posts at ok's endpoint", posts.len()))
    });
    // Causality, not speed: when ok's POST had arrived, no POST to sl's endpoint had ended.
    let given_up = hanging.given_up.load(Ordering::SeqCst);
    assert_eq!(
        given_up, 0,
        "ok's POST came only after {given_up} of sl's POSTs had timed out"
    );
    let most_open = hanging.most_open.load(Ordering::SeqCst);
    assert!(
        most_open <= LANE_IN_FLIGHT,
        "sl's endpoint held {most_open} POSTs at once (its lane: {LANE_IN_FLIGHT})"
    );
    drop(server);
}
