//! Isolation between endpoints on the Lambda path (issue 16, item 4): one invocation of the
//! webhooks function POSTs every record of its batch to every endpoint at once, so endpoints
//! that hang hold up no other endpoint's POST, whatever the number of POSTs they hold.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::*;

/// What the endpoint saw, in one order: a counter shared by every connection numbers the
/// arrival of the healthy POST and each POST a client gave up on.
#[derive(Default)]
struct Seen {
    order: AtomicUsize,
    /// When the POST to `/ok` arrived.
    ok_at: Mutex<Option<usize>>,
    /// POSTs to the hanging paths that arrived.
    hanging: AtomicUsize,
    /// When each hanging POST was closed by its client (it gave up).
    given_up: Mutex<Vec<usize>>,
}

/// A raw HTTP endpoint on loopback: `/ok` answered 200 at once; any other path read and never
/// answered, until the client closes (counted as given up) or the test lets go (`release`:
/// the endpoint closes them).
async fn endpoint() -> (String, Arc<Seen>, watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let (release, released) = watch::channel(false);
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (seen, mut released) = (shared.clone(), released.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut chunk = [0u8; 8192];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request);
                if head.starts_with("POST /ok ") {
                    *seen.ok_at.lock().unwrap() = Some(seen.order.fetch_add(1, Ordering::SeqCst));
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
                seen.hanging.fetch_add(1, Ordering::SeqCst);
                tokio::select! {
                    _ = async {
                        while let Ok(n) = stream.read(&mut chunk).await {
                            if n == 0 { break; }
                        }
                    } => {
                        let at = seen.order.fetch_add(1, Ordering::SeqCst);
                        seen.given_up.lock().unwrap().push(at);
                    }
                    _ = released.wait_for(|r| *r) => {}
                }
            });
        }
    });
    (base, seen, release)
}

/// A batch of 10 records: 9 events of tenant `sl`, whose 8 endpoints hang (72 POSTs, more
/// than the 64 the consumer once had for everything), then 1 event of tenant `ok`. ok's POST
/// arrives while every one of sl's POSTs is still held: none was given up before it (the
/// client's timeout is 5 s here). Then the hanging endpoints close; each of sl's POSTs gets
/// its retry, ok's none, and no record fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batchs_hanging_endpoints_hold_up_no_other_endpoints_post() {
    let (base, seen, release) = endpoint().await;
    let store = Arc::new(chat21::adapters::sqlite::SqliteStore::memory().unwrap());
    for i in 0..8 {
        let hook = tenant_hook(
            "sl",
            &format!("h{i}"),
            format!("{base}/hang/{i}"),
            &EventType::ALL,
        );
        store.put_webhook(&hook, 20).await.unwrap();
    }
    let fine = tenant_hook("ok", "fine", format!("{base}/ok"), &EventType::ALL);
    store.put_webhook(&fine, 20).await.unwrap();
    let consumer = Consumer::new(store, WebhookConfig::default());
    let mut records: Vec<(String, String)> = (0..9)
        .map(|i| {
            (
                format!("sl-{i}"),
                message_sent("sl", "peer", &format!("slow {i}")).to_json(),
            )
        })
        .collect();
    records.push(("ok".into(), message_sent("ok", "peer", "fine").to_json()));
    let webhooks = consumer.webhooks.clone();
    let handling =
        tokio::spawn(async move { handle_webhooks(&webhooks, sqs_event(&records)).await });

    let deadline = std::time::Instant::now() + TIMEOUT * 3;
    let ok_at = loop {
        if let Some(at) = *seen.ok_at.lock().unwrap() {
            break at;
        }
        assert!(std::time::Instant::now() < deadline, "ok's POST never came");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let given_up_before: Vec<usize> = seen
        .given_up
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|at| *at < ok_at)
        .collect();
    assert!(
        given_up_before.is_empty(),
        "ok's POST came only after {} of sl's POSTs had timed out",
        given_up_before.len()
    );
    // Every POST of the batch was under way at once.
    while seen.hanging.load(Ordering::SeqCst) < 72 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of sl's 72 POSTs under way",
            seen.hanging.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    release.send(true).unwrap();
    let response = handling.await.unwrap();
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    assert_eq!(consumer.retries.waiting(), 72, "one retry per hanging POST");
}

fn retry_of(message: &str) -> Retry {
    let value: Value = serde_json::from_str(message).unwrap();
    serde_json::from_value(value["webhook_retry"].clone()).unwrap()
}

/// An endpoint's lane is bounded: with 10 POSTs hanging and 1,000 waiting for them, one more
/// event is not POSTed there: its retry is queued at once, uncounted; due while the lane is
/// still full, that retry is put off again, still uncounted. Once the endpoint lets go, the
/// held POSTs fail and are retried as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_lane_puts_posts_off_without_counting_attempts() {
    use chat21::ops::webhooks::lanes::{LANE_IN_FLIGHT, LANE_WAITING};
    let (base, seen, release) = endpoint().await;
    let url = format!("{base}/hang");
    let config = WebhookConfig {
        endpoints: vec![url.clone()],
        events: EventType::ALL.to_vec(),
        secret: None,
        allowed_hosts: AllowedHosts::any(),
    };
    let store = Arc::new(chat21::adapters::sqlite::SqliteStore::memory().unwrap());
    let consumer = Consumer::new(store, config);
    let target = Target::Global { url };
    let full = LANE_IN_FLIGHT + LANE_WAITING;
    let held: Vec<_> = (0..full)
        .map(|i| {
            let (webhooks, body) = (
                consumer.webhooks.clone(),
                message_sent(APP, "peer", &format!("held {i}")).to_json(),
            );
            tokio::spawn(async move { webhooks.handle_record(&body).await })
        })
        .collect();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while consumer.webhooks.pending(&target) < full
        || seen.hanging.load(Ordering::SeqCst) < LANE_IN_FLIGHT
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the lane never filled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let one_more = message_sent(APP, "peer", "one more");
    consumer.deliver(&[one_more]).await;
    assert_eq!(
        seen.hanging.load(Ordering::SeqCst),
        LANE_IN_FLIGHT,
        "no POST beyond the lane"
    );
    assert_eq!(consumer.retries.waiting(), 1);
    consumer.clock.set(START + 60_000);
    let queued = consumer.retries.take_due();
    let retry = retry_of(&queued[0]);
    assert_eq!(retry.attempts, 0, "{}", retry.last_error);
    assert!(
        retry.last_error.contains("not attempted"),
        "{}",
        retry.last_error
    );
    assert_eq!(retry.target, target);
    // Due, while the lane is still full: put off, uncounted.
    consumer.webhooks.handle_record(&queued[0]).await.unwrap();
    assert_eq!(seen.hanging.load(Ordering::SeqCst), LANE_IN_FLIGHT);
    consumer.clock.set(START + 120_000);
    let again = retry_of(&consumer.retries.take_due()[0]);
    assert_eq!((again.attempts, again.webhook_id), (0, retry.webhook_id));

    release.send(true).unwrap();
    for task in held {
        task.await.unwrap().unwrap();
    }
    assert_eq!(
        consumer.retries.waiting(),
        full,
        "each held POST failed and is retried"
    );
    assert_eq!(consumer.webhooks.pending(&target), 0);
}
