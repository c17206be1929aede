//! A slow client: one that never reads is disconnected, and the others keep receiving.

use super::*;

pub(super) async fn a_slow_client_is_disconnected_and_others_keep_receiving() {
    let (server, log) = start_logged();
    // A client that subscribes to its tree at QoS 0 and then never reads.
    let mut slow = Raw::open(&server, Via::Tcp, "slow-reader", Some(4096)).await;
    slow.send(&connect_packet("slow-reader", 0, Some(&tok("slow"))))
        .await;
    slow.expect_packet(0x20, &[0, 0], "CONNACK 0").await;
    slow.send(&subscribe_packet(1, "apps/app1/users/slow/#", 0))
        .await;
    slow.expect_packet(0x90, &[0, 1, 0], "SUBACK").await;
    let mut fast = online(&server, Via::Tcp, "fast").await;

    // The same user's other connection floods the slow one's tree (its own presence topic,
    // routed straight to the subscribers): 3000 publishes of 16 KiB.
    const FLOOD: usize = 3000;
    let mut feeder = connect_as(&server, Via::Tcp, "slow", "feeder").await;
    let payload = json!({"pad": "x".repeat(16 * 1024)}).to_string();
    let published = Arc::new(AtomicUsize::new(0));
    let flood = {
        let (client, published) = (feeder.client.clone(), published.clone());
        let payload = payload.clone();
        tokio::spawn(async move {
            for _ in 0..FLOOD {
                client
                    .publish(
                        "apps/app1/users/slow/presence/feeder",
                        QoS::AtMostOnce,
                        false,
                        payload.clone(),
                    )
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "the feeder could not publish #{}: {e}",
                            published.load(Ordering::Relaxed)
                        )
                    });
                published.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // Halfway through, another user still gets their message promptly.
    let halfway = Instant::now() + Duration::from_secs(30);
    while published.load(Ordering::Relaxed) < FLOOD / 2 {
        assert!(
            Instant::now() < halfway,
            "the feeder published only {} in 30 s",
            published.load(Ordering::Relaxed)
        );
        sleep(Duration::from_millis(10)).await;
    }
    let asked = Instant::now();
    let sent = send(&server, "other", direct("fast", "still here")).await;
    let got = fast
        .expect("apps/app1/users/fast/messages/other/clientadded")
        .await;
    let took = asked.elapsed();
    assert_eq!(got.payload["message_id"], sent["message_id"]);
    assert!(
        took < Duration::from_secs(2),
        "the other user's message took {took:?} during the flood"
    );
    let flooded = timeout(Duration::from_secs(30), flood)
        .await
        .expect("the flood ends within 30 s");
    if flooded.is_err() {
        feeder.drain();
        panic!(
            "the feeder failed: {flooded:?}; its connection: {:?}",
            feeder.closed
        );
    }

    // The slow client was disconnected: reading now ends with the close, before all of it.
    let total = FLOOD * payload.len();
    let Some((_, read)) = slow.closed_within(Duration::from_secs(20)).await else {
        panic!(
            "the slow client is still connected 20 s after a flood of {FLOOD} publishes; \
             server log: {:?}",
            log.lock().unwrap()
        );
    };
    assert!(
        read < total,
        "the slow client received everything ({read} bytes): it was never too slow"
    );
    // The feeder and the other user are still fine.
    send(&server, "other", direct("fast", "after")).await;
    fast.expect_where(
        "apps/app1/users/fast/messages/other/clientadded",
        "after",
        |p| p["text"] == "after",
    )
    .await;
    assert!(fast.closed.is_none(), "{:?}", fast.closed);
    feeder.drain();
    assert!(
        feeder.closed.is_none(),
        "the feeder was closed: {:?}",
        feeder.closed
    );
}
