//! Latency `chat21-local` adds between a send and its webhook: the local server's pieces in this
//! process (the HTTP front, the embedded store, the deliver step, the webhooks consumer with
//! retries in memory), a receiver on loopback; each message is sent over HTTP and the time
//! until its `message-sent` webhook arrives is measured, one message at a time, next to the
//! send's own answer time. Reported, never asserted.
//!
//! `cargo bench -p chat21-local --bench webhooks`; `BENCH_MESSAGES` (default 500).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat21::adapters::http::HttpClient;
use chat21::auth::JwtVerifier;
use chat21::cors::Cors;
use chat21::ops::Settings;
use chat21::ops::webhooks::{AllowedHosts, Secret, WebhookConfig};
use chat21::ports::{PostOutcome, WebhookClient};
use chat21_local::Local;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tokio::sync::oneshot;

const KEY: &str = "chat21-bench-webhooks-key";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Instant>>>>;

/// A receiver on loopback: tells whoever waits for a message's text when its `message-sent`
/// arrived.
async fn receiver(waiting: Waiting) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let waiting = waiting.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let waiting = waiting.clone();
                        async move {
                            let body = request
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let at = Instant::now();
                            let event: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            if event["event_type"] == "message-sent"
                                && let Some(text) = event["data"]["text"].as_str()
                                && let Some(tx) = waiting
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .remove(text)
                            {
                                let _ = tx.send(at);
                            }
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    base
}

fn token() -> String {
    let claims = serde_json::json!({
        "sub": "user-1", "app_id": "bench",
        "exp": jsonwebtoken::get_current_timestamp() + 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
    )
    .expect("token")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let messages: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let waiting: Waiting = Arc::default();
    let hooks = receiver(waiting.clone()).await;

    // chat21-local, as main.rs builds it (without the MQTT broker), its data in memory.
    let verifier = JwtVerifier::hs256(KEY.as_bytes()).expect("key");
    let config = WebhookConfig {
        endpoints: vec![format!("{hooks}/tiledesk")],
        events: chat21::model::EventType::ALL.to_vec(),
        secret: Some(Secret::parse("secret", SECRET).expect("secret")),
        allowed_hosts: AllowedHosts::any(),
    };
    let mut backend = chat21_local::backend::Backend::open(
        &chat21::adapters::sqlite::Location::Memory,
        verifier,
        Arc::new(chat21::ports::NoRealtime),
        Settings::default(),
        config,
    )
    .expect("the back end");
    backend.start();
    let api = backend.api.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let local = Arc::new(Local {
        api,
        cors: Cors::default(),
        console: chat21_local::console::Console::new(0, None),
        store: backend.store.clone(),
    });
    tokio::spawn(chat21_local::serve(
        listener,
        local,
        chat21_local::Limits::default(),
    ));

    // The sender: a keep-alive HTTP client.
    let client = HttpClient::new(Duration::from_secs(10)).expect("client");
    let url = format!("http://127.0.0.1:{port}/api/bench/messages");
    let auth = [("authorization", token())];
    let mut to_answer = Vec::new();
    let mut to_webhook = Vec::new();
    for i in 0..messages + 20 {
        let text = format!("bench message {i}");
        let (tx, rx) = oneshot::channel();
        waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(text.clone(), tx);
        let body = serde_json::json!({
            "sender_fullname": "User One", "recipient_id": "user-2",
            "recipient_fullname": "User Two", "text": text,
        })
        .to_string();
        let start = Instant::now();
        let answer = client.post(&url, &auth, &body).await;
        let answered = start.elapsed();
        assert_eq!(answer, PostOutcome::Delivered(200), "the send failed");
        let arrived = tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("no webhook within 10 s")
            .expect("the receiver went away");
        // The first 20 warm up (connections, allocations).
        if i >= 20 {
            to_answer.push(answered);
            to_webhook.push(arrived - start);
        }
    }
    to_answer.sort();
    to_webhook.sort();
    println!("{messages} messages, one at a time:");
    println!("| from the send | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|");
    for (what, sorted) in [
        ("to its HTTP answer", &to_answer),
        ("to its message-sent webhook", &to_webhook),
    ] {
        println!(
            "| {what} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            percentile(sorted, 0.5),
            percentile(sorted, 0.9),
            percentile(sorted, 0.99),
            percentile(sorted, 1.0)
        );
    }
}
