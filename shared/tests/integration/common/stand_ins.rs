//! Stand-ins for what the tests do not run: an HTTP endpoint that records what it receives
//! (IoT Core's data plane, CloudFormation's response URL), a webhooks HTTP client that sends
//! nothing, a clock moved by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chat21::ports::Clock;

/// One request a [`Recorder`] received.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    /// The path, percent-decoded, and the query.
    pub path: String,
    pub query: String,
    pub body: Vec<u8>,
}

impl Recorded {
    /// An IoT data-plane Publish (`POST /topics/{topic}?qos=1`) as the push it carried.
    pub fn as_push(&self) -> Option<(String, serde_json::Value)> {
        let topic = self.path.strip_prefix("/topics/")?;
        Some((
            topic.to_string(),
            serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null),
        ))
    }
}

/// An HTTP endpoint on loopback that records every request and answers 200 `{}` (or 503 while
/// told to fail): stands in for IoT Core's data plane (moto keeps publishes in-process) and
/// for CloudFormation's custom-resource response URL.
#[derive(Clone)]
pub struct Recorder {
    pub url: String,
    requests: Arc<std::sync::Mutex<Vec<Recorded>>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let recorder = Recorder {
            url,
            requests: Default::default(),
            failing: Default::default(),
        };
        let serving = recorder.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serving.clone().serve(stream));
            }
        });
        recorder
    }

    /// Answers 503 to every request from now until told otherwise.
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Everything received so far, and forgets it.
    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.requests.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The IoT publishes received so far (topic, JSON payload), and forgets them.
    pub fn take_pushes(&self) -> Vec<(String, serde_json::Value)> {
        self.take().iter().filter_map(Recorded::as_push).collect()
    }

    /// HTTP/1.1 with keep-alive, bodies by Content-Length (what the SDK and urllib send).
    async fn serve(self, mut stream: tokio::net::TcpStream) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let head_end = loop {
                if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
            let mut lines = head.lines();
            let mut first = lines.next().unwrap_or_default().split(' ');
            let method = first.next().unwrap_or_default().to_string();
            let target = first.next().unwrap_or_default().to_string();
            let length: usize = lines
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            while buffer.len() < head_end + length {
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            let body = buffer[head_end..head_end + length].to_vec();
            buffer.drain(..head_end + length);
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let path = percent_encoding::percent_decode_str(path)
                .decode_utf8_lossy()
                .into_owned();
            let failing = self.failing.load(Ordering::SeqCst);
            if !failing {
                self.requests
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Recorded {
                        method,
                        path,
                        query: query.to_string(),
                        body,
                    });
            }
            let response: &[u8] = if failing {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            };
            if stream.write_all(response).await.is_err() {
                return;
            }
        }
    }
}

/// A clock the test moves by hand (webhook backoffs take a day; the tests take no time).
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn at(ms: u64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicU64::new(ms)))
    }

    pub fn set(&self, ms: u64) {
        self.0.fetch_max(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// One POST a [`RecordingClient`] was asked to make.
#[derive(Debug, Clone)]
pub struct Posted {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Posted {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A webhooks HTTP client that sends nothing: it records each POST and answers 200.
#[derive(Default)]
pub struct RecordingClient {
    pub posted: std::sync::Mutex<Vec<Posted>>,
}

#[async_trait::async_trait]
impl chat21::ports::WebhookClient for RecordingClient {
    async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: &str,
    ) -> chat21::ports::PostOutcome {
        self.posted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Posted {
                url: url.to_string(),
                headers: headers.to_vec(),
                body: body.to_string(),
            });
        chat21::ports::PostOutcome::Delivered(200)
    }
}
