//! The real `chat21-local` binary, driven over real HTTP with real HS256 tokens.
//!
//! Each test starts its own server on a free port and kills it when done (also on a failed
//! assertion). Events are delivered in the background, so the effects of a send are polled for.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{APP, KEY, STARTUP, Server, command, start, start_with, token};

const EVENTUALLY: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client

pub(crate) struct Response {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One request on a fresh connection (`Connection: close`), the whole response read.
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(body);
    // Written by another thread: the server may answer (413) before it has read the whole body.
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let mut raw = Vec::new();
    let read = (&stream).read_to_end(&mut raw);
    let _ = sender.join();
    if let Err(e) = read {
        assert!(!raw.is_empty(), "{method} {path}: no response: {e}");
    }
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no header end in {raw:?}"));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut head_lines = head.split("\r\n");
    let status_line = head_lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = head_lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().unwrap();
        assert!(
            body.len() >= length,
            "{method} {path}: truncated body ({} of {length} bytes)",
            body.len()
        );
        body.truncate(length);
    }
    Response { body, ..response }
}

/// Sends raw bytes on a fresh connection and parses whatever comes back.
fn raw(port: u16, request: &[u8]) -> Response {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let request = request.to_vec();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let mut bytes = Vec::new();
    let _ = (&stream).read_to_end(&mut bytes);
    let _ = sender.join();
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&bytes)));
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: bytes[end + 4..].to_vec(),
    }
}

impl Server {
    /// A JSON call with an optional token and an optional JSON body.
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Response {
        let mut headers = Vec::new();
        if let Some(token) = token {
            headers.push(("Authorization", token));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        http(self.port, method, path, &headers, body.as_bytes())
    }

    /// A call that must answer `status` with a JSON body; returns that body.
    fn expect(
        &self,
        status: u16,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Value {
        let response = self.call(method, path, Some(token), body);
        assert_eq!(
            response.status,
            status,
            "{method} {path}: {}",
            response.text()
        );
        let json = response.json();
        if status < 300 {
            assert_eq!(json["success"], true, "{method} {path}: {json}");
        } else {
            assert_error(&response, status);
        }
        json
    }

    /// `result` of a successful GET.
    fn result(&self, path: &str, token: &str) -> Vec<Value> {
        let body = self.expect(200, "GET", path, token, None);
        body["result"]
            .as_array()
            .unwrap_or_else(|| panic!("GET {path}: no result array: {body}"))
            .clone()
    }

    fn conversations(&self, user: &str, token: &str) -> Vec<Value> {
        self.result(&format!("/api/{APP}/{user}/conversations"), token)
    }

    fn archived(&self, user: &str, token: &str) -> Vec<Value> {
        self.result(&format!("/api/{APP}/{user}/conversations/archived"), token)
    }

    fn timeline(&self, user: &str, with: &str, token: &str) -> Vec<Value> {
        self.result(
            &format!("/api/{APP}/{user}/conversations/{with}/messages"),
            token,
        )
    }

    fn send(&self, token: &str, body: Value) -> Value {
        let answer = self.expect(
            200,
            "POST",
            &format!("/api/{APP}/messages"),
            token,
            Some(body),
        );
        answer["message"].clone()
    }

    /// Waits until everything written so far has been delivered: the outbox holds no
    /// delivery (`GET /health`).
    pub(crate) fn settle(&self) {
        eventually("the outbox's deliveries", || {
            let health = http(self.port, "GET", "/health", &[], b"").json();
            (health["outbox"]["deliveries"] == 0)
                .then_some(())
                .ok_or_else(|| health.to_string())
        });
    }
}

/// The JSON error envelope, with its content type.
fn assert_error(response: &Response, status: u16) {
    assert_eq!(response.status, status, "{}", response.text());
    let content_type = response.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "error {status} with content-type {content_type:?}: {}",
        response.text()
    );
    let body = response.json();
    assert_eq!(body["success"], false, "{body}");
    assert!(
        body["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{body}"
    );
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Polls `check` every 20 ms for up to 5 s; `Err` carries the last observed state.
pub(crate) fn eventually<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out waiting for {what}; last seen: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn find<'a>(items: &'a [Value], field: &str, value: &str) -> Option<&'a Value> {
    items.iter().find(|i| i[field] == value)
}

fn direct(to: &str, text: &str) -> Value {
    json!({"sender_fullname": "Sender", "recipient_id": to,
           "recipient_fullname": "Recipient", "text": text})
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn direct_message_is_delivered_read_and_safely_retried() {
    let server = start();
    let (t1, t2) = (token("u1", APP, false), token("u2", APP, false));
    let mut body = direct("u2", "hello");
    body["message_id"] = json!("m-1");
    let answer = server.expect(
        200,
        "POST",
        &format!("/api/{APP}/messages"),
        &t1,
        Some(body.clone()),
    );
    let sent = &answer["message"];
    assert_eq!(sent["message_id"], "m-1", "{answer}");
    assert_eq!(sent["sender"], "u1");
    assert_eq!(sent["recipient"], "u2");
    assert_eq!(sent["text"], "hello");
    assert!(sent["timestamp"].is_u64(), "{answer}");

    let conversation = eventually("u2's conversation with u1", || {
        let list = server.conversations("u2", &t2);
        match find(&list, "conversWith", "u1") {
            Some(c) if c["unread_count"] == 1 && c["is_new"] == true => Ok(c.clone()),
            _ => Err(format!("{list:?}")),
        }
    });
    assert_eq!(conversation["last_message_text"], "hello");
    let copies = eventually("u2's copy", || {
        let timeline = server.timeline("u2", "u1", &t2);
        (!timeline.is_empty())
            .then_some(timeline.clone())
            .ok_or_else(|| format!("{timeline:?}"))
    });
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0]["message_id"], "m-1");
    assert_eq!(copies[0]["status"], 150, "{copies:?}");
    let own = server.timeline("u1", "u2", &t1);
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(own[0]["status"], 100, "{own:?}");
    let mine = server.conversations("u1", &t1);
    let mine = find(&mine, "conversWith", "u2").expect("u1's conversation with u2");
    assert_eq!(mine["is_new"], false, "{mine}");

    // u2 reads: u1 sees the return receipt.
    let read = server.expect(
        200,
        "POST",
        &format!("/api/{APP}/u2/conversations/u1/read"),
        &t2,
        None,
    );
    assert_eq!(read, json!({"success": true}));
    eventually("status 250 on u1's copy", || {
        let own = server.timeline("u1", "u2", &t1);
        (own.first().is_some_and(|m| m["status"] == 250))
            .then_some(())
            .ok_or_else(|| format!("{own:?}"))
    });
    let list = server.conversations("u2", &t2);
    let read = find(&list, "conversWith", "u1").expect("still listed");
    assert_eq!(read["unread_count"], 0, "{read}");
    assert_eq!(read["is_new"], false, "{read}");

    // The retry answers with the original message and delivers nothing twice.
    let retried = server.expect(
        200,
        "POST",
        &format!("/api/{APP}/messages"),
        &t1,
        Some(body),
    );
    assert_eq!(
        retried["message"], *sent,
        "the retry answered another message"
    );
    server.settle();
    let copies = server.timeline("u2", "u1", &t2);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0]["message_id"], "m-1");
    let list = server.conversations("u2", &t2);
    let conversation = find(&list, "conversWith", "u1").expect("still listed");
    assert_eq!(conversation["unread_count"], 0, "{conversation}");
}

#[test]
fn group_lifecycle() {
    let server = start();
    let [t1, t2, t3, t4] = ["u1", "u2", "u3", "u4"].map(|u| token(u, APP, false));
    let stranger = token("stranger", APP, false);
    let groups = format!("/api/{APP}/groups");
    let group = format!("{groups}/group-team");

    let created = server.expect(
        201,
        "POST",
        &groups,
        &t1,
        Some(json!({"group_name": "Team", "group_id": "group-team",
                    "group_members": {"u2": 1}})),
    );
    assert_eq!(created["group"]["uid"], "group-team", "{created}");
    assert_eq!(created["group"]["owner"], "u1");
    assert_eq!(created["group"]["members"], json!({"u1": 1, "u2": 1}));
    // The id is taken now.
    server.expect(
        409,
        "POST",
        &groups,
        &t2,
        Some(json!({"group_name": "Again", "group_id": "group-team", "group_members": {}})),
    );

    let read = server.expect(200, "GET", &group, &t2, None);
    assert_eq!(read["result"]["name"], "Team", "{read}");
    let refused = server.expect(403, "GET", &group, &stranger, None);
    assert_eq!(refused["code"], "forbidden");
    server.expect(404, "GET", &format!("{groups}/group-none"), &t1, None);

    // Rename: the owner may, a member may not.
    server.expect(403, "PUT", &group, &t2, Some(json!({"group_name": "Mine"})));
    server.expect(
        200,
        "PUT",
        &group,
        &t1,
        Some(json!({"group_name": "Team 2"})),
    );
    let read = server.expect(200, "GET", &group, &t2, None);
    assert_eq!(read["result"]["name"], "Team 2", "{read}");

    // Join: the owner adds u3.
    let members = format!("{group}/members");
    server.expect(200, "POST", &members, &t1, Some(json!({"member_id": "u3"})));
    let read = server.expect(200, "GET", &group, &t3, None);
    assert_eq!(
        read["result"]["members"],
        json!({"u1": 1, "u2": 1, "u3": 1})
    );

    // A group message reaches every member's timeline.
    let mut body = direct("group-team", "hi team");
    body["channel_type"] = json!("group");
    let sent = server.send(&t2, body);
    for (user, token) in [("u1", &t1), ("u2", &t2), ("u3", &t3)] {
        eventually(&format!("the group message in {user}'s timeline"), || {
            let timeline = server.timeline(user, "group-team", token);
            match find(
                &timeline,
                "message_id",
                sent["message_id"].as_str().unwrap(),
            ) {
                Some(m) if m["status"] == 150 => Ok(()),
                _ => Err(format!("{timeline:?}")),
            }
        });
    }
    // Strangers may not post.
    let mut body = direct("group-team", "let me in");
    body["channel_type"] = json!("group");
    server.expect(
        403,
        "POST",
        &format!("/api/{APP}/messages"),
        &stranger,
        Some(body),
    );

    // Set members: u3 out, u4 in (with the history).
    server.expect(
        200,
        "PUT",
        &members,
        &t1,
        Some(json!({"members": {"u1": 1, "u2": 1, "u4": 1}})),
    );
    let read = server.expect(200, "GET", &group, &t1, None);
    assert_eq!(
        read["result"]["members"],
        json!({"u1": 1, "u2": 1, "u4": 1})
    );
    server.expect(403, "GET", &group, &t3, None);
    eventually("the history in u4's timeline", || {
        let timeline = server.timeline("u4", "group-team", &t4);
        find(&timeline, "text", "hi team")
            .map(|_| ())
            .ok_or_else(|| format!("{timeline:?}"))
    });
    // The same set again changes nothing.
    server.expect(
        200,
        "PUT",
        &members,
        &t1,
        Some(json!({"members": {"u1": 1, "u2": 1, "u4": 1}})),
    );

    // u2 leaves, and their conversation with the group ends with MEMBER_LEFT_GROUP.
    server.expect(200, "DELETE", &format!("{members}/u2"), &t2, None);
    server.expect(404, "DELETE", &format!("{members}/u2"), &t1, None);
    server.expect(403, "GET", &group, &t2, None);
    let left = eventually("MEMBER_LEFT_GROUP in u2's timeline", || {
        let timeline = server.timeline("u2", "group-team", &t2);
        match timeline.first() {
            Some(m) if m["attributes"]["messagelabel"]["key"] == "MEMBER_LEFT_GROUP" => {
                Ok(m.clone())
            }
            _ => Err(format!("{timeline:?}")),
        }
    });
    assert_eq!(left["sender"], "system", "{left}");
    assert_eq!(
        left["attributes"]["messagelabel"]["parameters"]["member_id"], "u2",
        "{left}"
    );
    let conversation = server.result(&format!("/api/{APP}/u2/conversations/group-team"), &t2);
    assert_eq!(conversation.len(), 1, "{conversation:?}");
    assert_eq!(
        conversation[0]["attributes"]["messagelabel"]["key"], "MEMBER_LEFT_GROUP",
        "{conversation:?}"
    );
    // The remaining members got it too.
    eventually("MEMBER_LEFT_GROUP in u1's timeline", || {
        let timeline = server.timeline("u1", "group-team", &t1);
        match timeline.first() {
            Some(m) if m["attributes"]["messagelabel"]["parameters"]["member_id"] == "u2" => Ok(()),
            _ => Err(format!("{timeline:?}")),
        }
    });
    // Nothing sent to the group afterwards reaches u2.
    let mut body = direct("group-team", "after u2 left");
    body["channel_type"] = json!("group");
    server.send(&t1, body);
    server.settle();
    let timeline = server.timeline("u2", "group-team", &t2);
    assert!(
        find(&timeline, "text", "after u2 left").is_none(),
        "{timeline:?}"
    );
    let timeline = server.timeline("u4", "group-team", &t4);
    assert!(
        find(&timeline, "text", "after u2 left").is_some(),
        "{timeline:?}"
    );
}

#[test]
fn archive_then_delete_a_conversation() {
    let server = start();
    let (t1, t2) = (token("u1", APP, false), token("u2", APP, false));
    server.send(&t1, direct("u2", "one"));
    server.settle();

    // Archive.
    let done = server.expect(
        200,
        "DELETE",
        &format!("/api/{APP}/conversations/u2"),
        &t1,
        None,
    );
    assert_eq!(done, json!({"success": true}));
    let active = server.conversations("u1", &t1);
    assert!(find(&active, "conversWith", "u2").is_none(), "{active:?}");
    for path in ["conversations/archived", "archived_conversations"] {
        let archived = server.result(&format!("/api/{APP}/u1/{path}"), &t1);
        let found =
            find(&archived, "conversWith", "u2").unwrap_or_else(|| panic!("{path}: {archived:?}"));
        assert_eq!(found["archived"], true, "{found}");
    }
    let one = server.result(&format!("/api/{APP}/u1/archived_conversations/u2"), &t1);
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one[0]["conversWith"], "u2");
    let none = server.result(&format!("/api/{APP}/u1/conversations/u2"), &t1);
    assert!(none.is_empty(), "{none:?}");
    // Only u1's side is archived.
    let theirs = server.conversations("u2", &t2);
    assert!(find(&theirs, "conversWith", "u1").is_some(), "{theirs:?}");

    // A new message brings it back.
    server.send(&t2, direct("u1", "two"));
    eventually("the conversation back in u1's active list", || {
        let active = server.conversations("u1", &t1);
        match find(&active, "conversWith", "u2") {
            Some(c) if c["last_message_text"] == "two" && c["archived"] == false => Ok(()),
            _ => Err(format!("{active:?}")),
        }
    });
    let archived = server.archived("u1", &t1);
    assert!(
        find(&archived, "conversWith", "u2").is_none(),
        "{archived:?}"
    );
    assert_eq!(server.timeline("u1", "u2", &t1).len(), 2);
    server.settle();

    // Delete: the conversation and u1's messages go, u2 keeps theirs.
    let delete = format!("/api/{APP}/conversations/u2?delete=true");
    let done = server.expect(200, "DELETE", &delete, &t1, None);
    assert_eq!(done, json!({"success": true}));
    for path in [
        "conversations/u2",
        "archived_conversations/u2",
        "conversations/u2/messages",
    ] {
        let gone = server.result(&format!("/api/{APP}/u1/{path}"), &t1);
        assert!(gone.is_empty(), "{path}: {gone:?}");
    }
    let active = server.conversations("u1", &t1);
    assert!(find(&active, "conversWith", "u2").is_none(), "{active:?}");
    let again = server.expect(404, "DELETE", &delete, &t1, None);
    assert_eq!(again["code"], "not_found");
    let theirs = server.timeline("u2", "u1", &t2);
    assert_eq!(theirs.len(), 2, "{theirs:?}");
    let theirs = server.conversations("u2", &t2);
    assert!(find(&theirs, "conversWith", "u1").is_some(), "{theirs:?}");
}

#[test]
fn errors_are_json_envelopes_over_the_wire() {
    let server = start();
    let t1 = token("u1", APP, false);
    let json_type = [
        ("Authorization", t1.as_str()),
        ("Content-Type", "application/json"),
    ];
    let port = server.port;

    let banner = http(port, "GET", "/", &[], b"");
    assert_eq!(banner.status, 200);
    assert!(
        banner
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        banner.headers
    );
    assert!(
        banner.text().starts_with("Chat21 HTTP API"),
        "{}",
        banner.text()
    );

    let cases: Vec<(&str, Response, u16, &str)> = vec![
        (
            "unknown path",
            http(port, "GET", "/nope/at/all", &[], b""),
            404,
            "not_found",
        ),
        (
            "unknown api path",
            server.call("GET", &format!("/api/{APP}/u1/unknown"), Some(&t1), None),
            404,
            "not_found",
        ),
        (
            "wrong method",
            server.call("GET", &format!("/api/{APP}/messages"), Some(&t1), None),
            405,
            "method_not_allowed",
        ),
        (
            "missing token",
            server.call("GET", &format!("/api/{APP}/u1/conversations"), None, None),
            401,
            "unauthorized",
        ),
        (
            "token signed with another key",
            server.call(
                "GET",
                &format!("/api/{APP}/u1/conversations"),
                Some(&jsonwebtoken::encode(
                    &jsonwebtoken::Header::default(),
                    &json!({"sub": "u1", "app_id": APP,
                            "exp": jsonwebtoken::get_current_timestamp() + 3600}),
                    &jsonwebtoken::EncodingKey::from_secret(b"another key"),
                )
                .unwrap()),
                None,
            ),
            401,
            "unauthorized",
        ),
        (
            "other tenant's token",
            server.call(
                "GET",
                &format!("/api/{APP}/u1/conversations"),
                Some(&token("u1", "app2", false)),
                None,
            ),
            403,
            "forbidden",
        ),
        (
            "someone else's conversations",
            server.call("GET", &format!("/api/{APP}/u2/conversations"), Some(&t1), None),
            403,
            "forbidden",
        ),
        (
            "malformed JSON",
            http(
                port,
                "POST",
                &format!("/api/{APP}/messages"),
                &json_type,
                b"{\"recipient_id\": ",
            ),
            400,
            "invalid_request",
        ),
        (
            "missing required field",
            server.call(
                "POST",
                &format!("/api/{APP}/messages"),
                Some(&t1),
                Some(json!({"recipient_id": "u2"})),
            ),
            400,
            "invalid_request",
        ),
        (
            "body over 256 KiB",
            http(
                port,
                "POST",
                &format!("/api/{APP}/messages"),
                &json_type,
                format!(
                    "{{\"sender_fullname\":\"A\",\"recipient_id\":\"u2\",\"recipient_fullname\":\"B\",\"text\":\"{}\"}}",
                    "a".repeat(300 * 1024)
                )
                .as_bytes(),
            ),
            413,
            "payload_too_large",
        ),
        (
            "text/plain body",
            http(
                port,
                "POST",
                &format!("/api/{APP}/messages"),
                &[("Authorization", t1.as_str()), ("Content-Type", "text/plain")],
                direct("u2", "hi").to_string().as_bytes(),
            ),
            415,
            "unsupported_media_type",
        ),
    ];
    for (name, response, status, code) in cases {
        assert_eq!(response.status, status, "{name}: {}", response.text());
        assert_error(&response, status);
        assert_eq!(response.json()["code"], code, "{name}");
    }
    // Still serving after all that.
    let list = server.conversations("u1", &t1);
    assert!(list.is_empty(), "{list:?}");
}

#[test]
fn without_jwt_key_a_development_key_and_a_working_example_are_printed() {
    let server = start_with(command());
    let mut printed = Vec::new();
    let deadline = Instant::now() + STARTUP;
    while !printed.iter().any(|l: &String| l.contains("curl")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match server.lines.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(e) => panic!("no curl example printed ({e:?}); got {printed:?}"),
        }
    }
    let at = printed
        .iter()
        .position(|l| l.starts_with("Example token"))
        .unwrap_or_else(|| panic!("no example token in {printed:?}"));
    let example = printed
        .get(at + 1)
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| panic!("no token after {printed:?}"));
    assert_eq!(example.split('.').count(), 3, "not a JWT: {example:?}");
    let curl = printed.iter().find(|l| l.contains("curl")).unwrap();
    assert!(
        curl.contains(&format!("http://127.0.0.1:{}/api/default/", server.port)),
        "{curl}"
    );
    // The rest of the curl command (headers and body) follows on the next lines.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !printed.iter().any(|l| l.contains("-d '")) && Instant::now() < deadline {
        if let Ok(line) = server.lines.recv_timeout(Duration::from_millis(100)) {
            printed.push(line);
        }
    }
    let all = printed.join("\n");
    assert!(all.contains(&format!("Authorization: {example}")), "{all}");

    // The token works: the example request, and a read of the token's own conversations.
    let body = json!({"sender_fullname": "User One", "recipient_id": "user-2",
                      "recipient_fullname": "User Two", "text": "hello"});
    let sent = server.expect(200, "POST", "/api/default/messages", &example, Some(body));
    assert_eq!(sent["message"]["sender"], "user-1", "{sent}");
    let list = server.result("/api/default/user-1/conversations", &example);
    assert!(find(&list, "conversWith", "user-2").is_some(), "{list:?}");
    // A token signed with the test key is not accepted by the development key.
    let other = server.call(
        "GET",
        "/api/default/user-1/conversations",
        Some(&token("user-1", "default", false)),
        None,
    );
    assert_error(&other, 401);
}

#[test]
fn an_invalid_port_stops_the_binary_with_a_message() {
    let mut command = command();
    command
        .env("PORT", "notaport")
        .env("JWT_KEY", KEY)
        .stdout(Stdio::null());
    let child = command.spawn().expect("start chat21-local");
    let mut server = Server {
        child,
        port: 0,
        ws_port: 0,
        tcp_port: 0,
        lines: channel().1,
        log: Default::default(),
    };
    let deadline = Instant::now() + STARTUP;
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running with PORT=notaport"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "{status}");
    let mut stderr = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("PORT") && stderr.contains("notaport"),
        "stderr: {stderr:?}"
    );
}

#[test]
fn requests_hyper_cannot_parse_get_json_errors_too() {
    let server = start();
    let port = server.port;
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(512 * 1024)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..200)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("a bad request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
        ("a bad header line", b"GET / HTTP/1.1\r\nno colon here\r\n\r\n".to_vec(), 400),
        ("an oversized header", huge_header.into_bytes(), 431),
        ("too many headers", many_headers.into_bytes(), 431),
        (
            "bad chunking",
            format!(
                "POST /api/{APP}/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZZ\r\n{{}}\r\n0\r\n\r\n"
            )
            .into_bytes(),
            400,
        ),
    ];
    for (what, request, status) in cases {
        let response = raw(port, &request);
        assert_eq!(response.status, status, "{what}: {}", response.text());
        assert!(
            response
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{what}: {:?}",
            response.headers
        );
        let body = response.json();
        assert_eq!(body["success"], json!(false), "{what}");
        assert!(
            body["code"].is_string() && body["message"].is_string(),
            "{what}: {body}"
        );
    }
    // The server is still serving.
    assert_eq!(http(port, "GET", "/", &[], b"").status, 200);
}

#[test]
fn a_method_the_path_lacks_is_405_with_allow() {
    let server = start();
    let response = http(
        server.port,
        "PATCH",
        &format!("/api/{APP}/groups/g1"),
        &[],
        b"",
    );
    assert_error(&response, 405);
    assert_eq!(response.header("allow"), Some("GET, PUT"));
}

#[test]
fn browsers_on_other_origins_may_call_the_api() {
    let server = start();
    let preflight = [
        ("Origin", "https://widget.example"),
        ("Access-Control-Request-Method", "POST"),
        (
            "Access-Control-Request-Headers",
            "authorization,content-type",
        ),
    ];
    let path = format!("/api/{APP}/messages");
    let response = http(server.port, "OPTIONS", &path, &preflight, b"");
    assert_eq!(response.status, 204, "{}", response.text());
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    let methods = response
        .header("access-control-allow-methods")
        .unwrap_or("");
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let headers = response
        .header("access-control-allow-headers")
        .unwrap_or("");
    assert!(headers.contains("authorization") && headers.contains("content-type"));
    assert_eq!(response.header("access-control-max-age"), Some("600"));
    // Ordinary answers (errors too) carry the origin header.
    let t1 = token("u1", APP, false);
    let answer = http(
        server.port,
        "GET",
        &format!("/api/{APP}/u1/conversations"),
        &[("Origin", "https://widget.example"), ("Authorization", &t1)],
        b"",
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("access-control-allow-origin"), Some("*"));
    let refused = http(
        server.port,
        "GET",
        &format!("/api/{APP}/u1/conversations"),
        &[("Origin", "https://widget.example")],
        b"",
    );
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("access-control-allow-origin"), Some("*"));

    // A configured list: listed origins are echoed, others get no CORS headers.
    let mut configured = command();
    configured.env("JWT_KEY", KEY).env(
        "CORS_ALLOW_ORIGINS",
        "https://app.example, http://localhost:4200",
    );
    let listed = start_with(configured);
    let from = |origin| {
        let headers = [("Origin", origin), ("Access-Control-Request-Method", "GET")];
        http(listed.port, "OPTIONS", &path, &headers, b"")
    };
    let ok = from("http://localhost:4200");
    assert_eq!(ok.status, 204);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("http://localhost:4200")
    );
    assert_eq!(ok.header("vary"), Some("Origin"));
    let other = from("https://evil.example");
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(other.header("access-control-allow-methods"), None);

    let mut bad = command();
    bad.env("JWT_KEY", KEY)
        .env("CORS_ALLOW_ORIGINS", "not an origin");
    let output = bad.output().expect("run chat21-local");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("CORS_ALLOW_ORIGINS"));
}

#[test]
fn the_openapi_document_is_served() {
    let server = start();
    let response = http(server.port, "GET", "/openapi.yaml", &[], b"");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/yaml"));
    assert!(
        response.text().starts_with("openapi: 3.1"),
        "{}",
        &response.text()[..40]
    );
}
