//! The one HTTP client of this binary: a minimal HTTP/1.1 client on plain blocking sockets (one
//! request per connection), the server's JSON API on top of it, and the bodies and waits the
//! suites share. Async suites call it through `tokio::task::block_in_place`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::server::{APP, Server};

const EVENTUALLY: Duration = Duration::from_secs(5);

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The body as JSON, or as a JSON string when it is not JSON (`null` when empty).
    pub fn json_or_text(&self) -> Value {
        if self.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&self.body).unwrap_or_else(|_| Value::String(self.text()))
        }
    }
}

/// The status and headers of a raw response (`what` names the request in failures), and where
/// its body begins.
fn parse_head(raw: &[u8], what: &str) -> (u16, Vec<(String, String)>, usize) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "{what}: no header end in {:?}",
                String::from_utf8_lossy(raw)
            )
        });
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut head_lines = head.split("\r\n");
    let status_line = head_lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: bad status line {status_line:?}"));
    let headers = head_lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, end + 4)
}

/// Writes `request` on a fresh connection from another thread (the server may answer, 413,
/// before it has read the whole body) and reads the whole answer.
fn exchange(port: u16, request: Vec<u8>) -> (Vec<u8>, std::io::Result<usize>) {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let mut raw = Vec::new();
    let read = (&stream).read_to_end(&mut raw);
    let _ = sender.join();
    (raw, read)
}

/// One request on a fresh connection (`Connection: close`), the whole response read.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
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
    let (raw, read) = exchange(port, request);
    if let Err(e) = read {
        assert!(!raw.is_empty(), "{method} {path}: no response: {e}");
    }
    let (status, headers, at) = parse_head(&raw, &format!("{method} {path}"));
    let mut body = raw[at..].to_vec();
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
pub fn raw(port: u16, request: &[u8]) -> Response {
    let (bytes, _) = exchange(port, request.to_vec());
    let (status, headers, at) = parse_head(&bytes, "a raw request");
    Response {
        status,
        headers,
        body: bytes[at..].to_vec(),
    }
}

impl Server {
    /// A JSON call with an optional token and an optional JSON body.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
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
    pub fn expect(
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
    pub fn result(&self, path: &str, token: &str) -> Vec<Value> {
        let body = self.expect(200, "GET", path, token, None);
        body["result"]
            .as_array()
            .unwrap_or_else(|| panic!("GET {path}: no result array: {body}"))
            .clone()
    }

    pub fn conversations(&self, user: &str, token: &str) -> Vec<Value> {
        self.result(&format!("/api/{APP}/{user}/conversations"), token)
    }

    pub fn archived(&self, user: &str, token: &str) -> Vec<Value> {
        self.result(&format!("/api/{APP}/{user}/conversations/archived"), token)
    }

    pub fn timeline(&self, user: &str, with: &str, token: &str) -> Vec<Value> {
        self.result(
            &format!("/api/{APP}/{user}/conversations/{with}/messages"),
            token,
        )
    }

    /// Sends in [`APP`]; the stored message.
    pub fn send(&self, token: &str, body: Value) -> Value {
        self.send_in(APP, token, body)
    }

    /// Sends in tenant `app`; the stored message.
    pub fn send_in(&self, app: &str, token: &str, body: Value) -> Value {
        let answer = self.expect(
            200,
            "POST",
            &format!("/api/{app}/messages"),
            token,
            Some(body),
        );
        answer["message"].clone()
    }

    /// Waits until everything written so far has been delivered: the outbox holds no
    /// delivery (`GET /health`).
    pub fn settle(&self) {
        eventually("the outbox's deliveries", || {
            let health = http(self.port, "GET", "/health", &[], b"").json();
            (health["outbox"]["deliveries"] == 0)
                .then_some(())
                .ok_or_else(|| health.to_string())
        });
    }
}

/// The JSON error envelope, with its content type.
pub fn assert_error(response: &Response, status: u16) {
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
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
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

pub fn find<'a>(items: &'a [Value], field: &str, value: &str) -> Option<&'a Value> {
    items.iter().find(|i| i[field] == value)
}

/// A direct message's body.
pub fn direct(to: &str, text: &str) -> Value {
    json!({"sender_fullname": "Sender", "recipient_id": to,
           "recipient_fullname": "Recipient", "text": text})
}

/// A group message's body.
pub fn to_group(group: &str, text: &str) -> Value {
    let mut body = direct(group, text);
    body["channel_type"] = json!("group");
    body
}
