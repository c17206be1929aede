//! Throughput of one `webhooks` invocation: SQS batches of `message-sent` events handed to
//! `chat21::entry::webhooks::handle_webhooks` (the function's handler, on a current-thread runtime as
//! in the function), POSTed, signed, over the real HTTP client to a receiver on loopback that
//! answers 200 at once (on its own thread). Reported, never asserted.
//!
//! `cargo bench -p chat21 --bench webhooks` (or `scripts/bench`); the report is printed.
//! `BENCH_BATCHES` sets how many batches per case (default 300).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chat21::adapters::embedded::MemoryRetries;
use chat21::adapters::http::HttpClient;
use chat21::adapters::sqlite::SqliteStore;
use chat21::adapters::system::SystemClock;
use chat21::entry::webhooks::handle_webhooks;
use chat21::events::Event;
use chat21::model::{ChannelType, Message, Webhook, status};
use chat21::ops::webhooks::{AllowedHosts, Secret, WebhookConfig, Webhooks};
use chat21::ports::WebhookStore;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A receiver on 127.0.0.1 that reads each POST and answers 200, on a runtime of its own.
fn receiver(received: Arc<AtomicUsize>) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let received = received.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let received = received.clone();
                            async move {
                                let _ = request.into_body().collect().await;
                                received.fetch_add(1, Ordering::Relaxed);
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
    });
    format!("http://{}", rx.recv().expect("receiver address"))
}

fn event(i: usize) -> String {
    let message = Message {
        message_id: format!("bench-{i:08}"),
        sender: "user-1".into(),
        sender_fullname: "User One".into(),
        recipient: "user-2".into(),
        recipient_fullname: "User Two".into(),
        text: format!("hello there, this is message {i}"),
        kind: "text".into(),
        channel_type: ChannelType::Direct,
        attributes: None,
        metadata: None,
        timestamp: 1_800_000_000_000 + i as u64,
        status: status::SENT,
        app_id: "bench".into(),
        timeline_of: "user-1".into(),
        convers_with: "user-2".into(),
    };
    Event::message_sent(&message, 1_800_000_000_000 + i as u64).to_json()
}

fn batch(first: usize, size: usize) -> SqsEvent {
    let mut sqs = SqsEvent::default();
    sqs.records = (first..first + size)
        .map(|i| {
            let mut record = SqsMessage::default();
            record.message_id = Some(format!("record-{i}"));
            record.body = Some(event(i));
            record
        })
        .collect();
    sqs
}

struct Case {
    name: &'static str,
    batch: usize,
    /// Endpoints per event: the global one, plus this many tenant endpoints.
    tenant_endpoints: usize,
}

fn main() {
    let batches: usize = std::env::var("BENCH_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let received = Arc::new(AtomicUsize::new(0));
    let base = receiver(received.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cases = [
        Case {
            name: "batch of 10 events, 1 endpoint",
            batch: 10,
            tenant_endpoints: 0,
        },
        Case {
            name: "batch of 10 events, 3 endpoints (1 global, 2 tenant)",
            batch: 10,
            tenant_endpoints: 2,
        },
        Case {
            name: "batch of 100 events, 1 endpoint",
            batch: 100,
            tenant_endpoints: 0,
        },
    ];
    println!("| case | invocations | events/s per invocation | POSTs/s | ms per invocation |");
    println!("|---|---|---|---|---|");
    for case in cases {
        runtime.block_on(async {
            let store = Arc::new(SqliteStore::memory().unwrap());
            for t in 0..case.tenant_endpoints {
                let hook = Webhook {
                    id: format!("tenant-{t}"),
                    app_id: "bench".into(),
                    url: format!("{base}/tenant-{t}"),
                    events: chat21::model::EventType::ALL.to_vec(),
                    secret: SECRET.into(),
                    created_at: 1,
                    updated_at: 1,
                };
                store.put_webhook(&hook, 20).await.expect("webhook");
            }
            let clock = Arc::new(SystemClock);
            let webhooks = Webhooks::new(
                store,
                Arc::new(HttpClient::new(Duration::from_secs(10)).expect("client")),
                Arc::new(MemoryRetries::new(clock.clone(), 100_000)),
                clock,
                WebhookConfig {
                    endpoints: vec![format!("{base}/global")],
                    events: chat21::model::EventType::ALL.to_vec(),
                    secret: Some(Secret::parse("secret", SECRET).expect("secret")),
                    allowed_hosts: AllowedHosts::any(),
                },
            );
            // Warm-up: connections opened, code paged in.
            for b in 0..5 {
                handle_webhooks(&webhooks, batch(b * case.batch, case.batch)).await;
            }
            let before = received.load(Ordering::Relaxed);
            let start = Instant::now();
            for b in 0..batches {
                let response = handle_webhooks(&webhooks, batch(b * case.batch, case.batch)).await;
                assert!(response.batch_item_failures.is_empty());
            }
            let elapsed = start.elapsed().as_secs_f64();
            let posts = received.load(Ordering::Relaxed) - before;
            let events = batches * case.batch;
            assert_eq!(
                posts,
                events * (1 + case.tenant_endpoints),
                "every POST arrived"
            );
            println!(
                "| {} | {batches} | {:.0} | {:.0} | {:.2} |",
                case.name,
                events as f64 / elapsed,
                posts as f64 / elapsed,
                elapsed * 1000.0 / batches as f64
            );
        });
    }
}
