//! Time of the send-message handler on the embedded store: the whole HTTP path of one call
//! (token check, body parsing, the operation, store and event bus), without network.
//! Run: `cargo bench -p chat21 --bench send_message` (or `scripts/bench`).

use std::sync::Arc;

use chat21::adapters::embedded::EmbeddedEvents;
use chat21::adapters::sqlite::SqliteStore;
use chat21::adapters::system::{SystemClock, UuidIds};
use chat21::auth::JwtVerifier;
use chat21::entry::http::{Api, handle};
use chat21::lambda_http::{Body, RequestExt};
use chat21::ops::{Deps, Settings};
use chat21::routes::Route;
use criterion::{Criterion, criterion_group, criterion_main};

const KEY: &[u8] = b"bench-key";

fn api() -> Api {
    // Events go to a channel nobody reads: publishing costs what it costs, nothing piles up.
    let (sink, _) = tokio::sync::mpsc::unbounded_channel();
    Api {
        deps: Deps {
            store: Arc::new(SqliteStore::memory().unwrap()),
            events: Arc::new(EmbeddedEvents::with_sink(sink)),
            realtime: std::sync::Arc::new(chat21::ports::NoRealtime),
            clock: Arc::new(SystemClock),
            ids: Arc::new(UuidIds),
            settings: Settings::default(),
        },
        verifier: JwtVerifier::hs256(KEY).expect("key"),
    }
}

fn token() -> String {
    let claims = serde_json::json!({
        "sub": "u1", "app_id": "app1", "exp": jsonwebtoken::get_current_timestamp() + 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY),
    )
    .expect("token")
}

fn request(token: &str, recipient: usize) -> chat21::lambda_http::Request {
    let body = serde_json::json!({
        "sender_fullname": "User One", "recipient_id": format!("u{recipient}"),
        "recipient_fullname": "Someone", "text": "hello there", "type": "text",
        "attributes": {"client": "bench"},
    });
    http::Request::builder()
        .method("POST")
        .uri("/api/app1/messages")
        .header("authorization", token)
        .header("content-type", "application/json")
        .body(Body::Text(body.to_string()))
        .expect("request")
        .with_path_parameters(std::collections::HashMap::from([(
            "app_id".to_string(),
            "app1".to_string(),
        )]))
}

fn send_message(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let token = token();
    let requests: Vec<_> = (0..100).map(|i| request(&token, i)).collect();
    c.bench_function("send-message handler (embedded)", |b| {
        // A fresh store per sample (a few thousand sends): the figure is the handler's cost,
        // not the rehashing of an in-memory map grown by hundreds of thousands of sends.
        b.iter_custom(|iterations| {
            let api = api();
            let started = std::time::Instant::now();
            for i in 0..iterations as usize {
                let request = requests[i % requests.len()].clone();
                let response = runtime.block_on(handle(&api, Route::SendMessage, request));
                assert_eq!(response.status(), 200);
            }
            started.elapsed()
        })
    });
}

criterion_group!(benches, send_message);
criterion_main!(benches);
