//! The consumer on the in-memory retry queue and a clock the test moves (a day of backoff
//! takes no time): each endpoint gets each event once, the flaky one after its retries; a dead
//! endpoint is retried for a day, then dead-lettered; retries follow the endpoint as it is
//! now; and the queue chat21-local drives in real time.

use super::*;

fn caller(app: &str, user: &str, admin: bool) -> Caller {
    Caller {
        user_id: id(user),
        app_id: id(app),
        admin,
    }
}

/// Some activity in APP (a direct message, a group, a group message) and in app2 (a direct
/// message), delivered: every event it published.
async fn activity(h: &Harness) -> Vec<Event> {
    h.send(&user("u1"), "u2", "hello direct").await.unwrap();
    groups::create(
        &h.deps,
        &user("u1"),
        groups::CreateGroup {
            name: "Support".into(),
            members: vec![id("u2")],
            group_id: Some(id("group-support")),
            attributes: Default::default(),
            owner: None,
        },
    )
    .await
    .unwrap();
    let mut events = h.deliver_all().await;
    h.send(&user("u2"), "group-support", "hello group")
        .await
        .unwrap();
    messages::send_message(
        &h.deps,
        &caller("app2", "v1", false),
        input("v2", "other tenant"),
    )
    .await
    .unwrap();
    events.extend(h.deliver_all().await);
    // A client's presence (real time publishes it; nothing is stored).
    let presence = chat21::events::Presence {
        user_id: id("u2"),
        client_id: id("client-1"),
        presence: chat21::events::PresenceState::Online,
    };
    events.push(Event::presence_change(APP, presence, START));
    events
}

/// The scenario: two global endpoints, one healthy and one failing each event's first
/// two attempts; one that hangs once and one that answers 410 once; tenants' endpoints with
/// and without a filter, in two tenants. Each event reaches each healthy endpoint exactly
/// once, the flaky one after its retries with the same `webhook-id`; a refused one is not
/// retried; filters and tenants hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_gets_each_event_once_the_flaky_one_after_retries() {
    crate::common::init_logs();
    let receiver = Receiver::start(&[
        ("/healthy", Script::Ok, Some(GLOBAL_SECRET)),
        ("/flaky", Script::FailFirst(2), Some(GLOBAL_SECRET)),
        ("/slow", Script::HangOnce, Some(GLOBAL_SECRET)),
        ("/gone", Script::GoneOnce, Some(GLOBAL_SECRET)),
        ("/tenant-all", Script::Ok, Some(TENANT_SECRET)),
        ("/tenant-sent", Script::Ok, Some(TENANT_SECRET)),
        ("/tenant-two", Script::Ok, Some(TENANT_SECRET)),
    ])
    .await;
    let h = Harness::sqlite();
    // Webhooks carry every type but message-delivered (WEBHOOK_EVENTS).
    let wanted: Vec<EventType> = EventType::ALL
        .into_iter()
        .filter(|t| *t != EventType::MessageDelivered)
        .collect();
    let store = &h.deps.store;
    for hook in [
        tenant_hook(APP, "all", receiver.url("/tenant-all"), &EventType::ALL),
        tenant_hook(
            APP,
            "sent",
            receiver.url("/tenant-sent"),
            &[EventType::MessageSent],
        ),
        tenant_hook("app2", "two", receiver.url("/tenant-two"), &EventType::ALL),
    ] {
        store.put_webhook(&hook, 20).await.unwrap();
    }
    let consumer = Consumer::new(
        store.clone(),
        config(
            &receiver,
            &["/healthy", "/flaky", "/slow", "/gone"],
            &wanted,
        ),
    );
    let events = activity(&h).await;
    assert!(
        events
            .iter()
            .any(|e| e.event_type() == EventType::MessageDelivered)
    );
    consumer.deliver(&events).await;
    let handled = consumer.drain().await;
    assert!(handled > 0, "the flaky endpoint was retried");
    assert!(consumer.retries.dead_letters().is_empty());

    let arrivals = receiver.arrivals();
    assert!(
        arrivals.iter().all(|a| a.verified),
        "a signature did not verify: {:?}",
        arrivals.iter().find(|a| !a.verified)
    );
    assert!(
        arrivals
            .iter()
            .all(|a| a.content_type == "application/json")
    );
    let presence = receiver
        .at("/healthy")
        .into_iter()
        .map(|a| a.event())
        .find(|e| e["event_type"] == "presence-change")
        .expect("presence-change reaches webhooks");
    assert_eq!(
        (presence["user_id"].as_str(), presence["presence"].as_str()),
        (Some("u2"), Some("online"))
    );
    assert!(
        arrivals
            .iter()
            .all(|a| a.event()["event_type"] != "message-delivered"),
        "an event type outside WEBHOOK_EVENTS was sent"
    );
    let global: Vec<&Event> = events
        .iter()
        .filter(|e| wanted.contains(&e.event_type()))
        .collect();
    let mut global_ids: Vec<String> = global.iter().map(|e| event_id(e)).collect();
    global_ids.sort();
    global_ids.dedup();

    // Healthy: each event once, byte for byte as published.
    let healthy = receiver.at("/healthy");
    assert_eq!(
        counts(&healthy),
        global_ids.iter().map(|i| (i.clone(), 1)).collect()
    );
    for event in &global {
        let arrival = healthy.iter().find(|a| a.id == event_id(event)).unwrap();
        assert_eq!(arrival.body, event.to_json());
    }
    // Flaky: each event three times (503, 503, 200), one id per event, the same body.
    let flaky = receiver.at("/flaky");
    assert_eq!(
        counts(&flaky),
        global_ids.iter().map(|i| (i.clone(), 3)).collect()
    );
    for id in &global_ids {
        let attempts: Vec<&Arrival> = flaky.iter().filter(|a| a.id == *id).collect();
        assert_eq!(
            attempts.iter().map(|a| a.answered).collect::<Vec<_>>(),
            [503, 503, 200]
        );
        assert!(attempts.iter().all(|a| a.body == attempts[0].body));
    }
    // Slow: the first request hung past the timeout and was retried; every event answered
    // 200 exactly once.
    let slow = receiver.at("/slow");
    assert_eq!(slow[0].answered, 0, "the first request hung");
    let ok: Vec<&Arrival> = slow.iter().filter(|a| a.answered == 200).collect();
    assert_eq!(ok.len(), global_ids.len());
    assert_eq!(
        ok.iter().map(|a| a.id.clone()).collect::<BTreeSet<_>>(),
        global_ids.iter().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(slow.len(), global_ids.len() + 1);
    assert_eq!(counts(&slow)[&slow[0].id], 2, "the hung one came once more");
    // Gone: 410 is final; that event never came back there.
    let gone = receiver.at("/gone");
    assert_eq!(gone[0].answered, 410);
    assert_eq!(gone.len(), global_ids.len(), "no retry after a 410");
    assert_eq!(counts(&gone).values().max(), Some(&1));

    // Tenants: APP's endpoints get APP's events only, filtered; app2's only app2's.
    let of_app = |app: &str| -> BTreeSet<String> {
        global
            .iter()
            .filter(|e| e.app_id == app)
            .map(|e| event_id(e))
            .collect()
    };
    let all = receiver.at("/tenant-all");
    assert_eq!(ids(&all).into_iter().collect::<BTreeSet<_>>(), of_app(APP));
    assert_eq!(all.len(), of_app(APP).len(), "once each");
    assert!(all.iter().all(|a| a.event()["app_id"] == APP));
    let sent = receiver.at("/tenant-sent");
    let app_sent: BTreeSet<String> = global
        .iter()
        .filter(|e| e.app_id == APP && e.event_type() == EventType::MessageSent)
        .map(|e| event_id(e))
        .collect();
    assert!(!app_sent.is_empty());
    assert_eq!(ids(&sent).into_iter().collect::<BTreeSet<_>>(), app_sent);
    assert!(
        sent.iter()
            .all(|a| a.event()["event_type"] == "message-sent")
    );
    let two = receiver.at("/tenant-two");
    assert_eq!(
        ids(&two).into_iter().collect::<BTreeSet<_>>(),
        of_app("app2")
    );
    assert!(!two.is_empty() && two.iter().all(|a| a.event()["app_id"] == "app2"));

    // What a Tiledesk-style receiver reads: Chat21's envelope, for a direct and a group message.
    for (recipient, text, channel) in [
        ("u2", "hello direct", "direct"),
        ("group-support", "hello group", "group"),
    ] {
        let found = healthy
            .iter()
            .map(Arrival::event)
            .find(|e| e["event_type"] == "message-sent" && e["data"]["text"] == text)
            .unwrap_or_else(|| panic!("no message-sent for {text:?}"));
        assert_eq!(found["app_id"], APP);
        assert_eq!(found["recipient_id"], recipient);
        assert!(found["createdAt"].is_u64());
        assert_eq!(found["message_id"], found["data"]["message_id"]);
        assert_eq!(found["data"]["recipient"], recipient);
        assert_eq!(found["data"]["channel_type"], channel);
        assert_eq!(found["data"]["status"], 100);
    }
}

/// One endpoint down for good: attempts at 0, +1 min, +6 min, +36 min, +2 h 36, +8 h 36 and
/// +23 h 36 (the waits of the backoff, longer ones hopping through the queue 15 minutes at a
/// time), each signed afresh with the same id; then the dead-letter queue. The healthy endpoint
/// of the same event was called once, never again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_is_retried_for_a_day_then_dead_lettered() {
    crate::common::init_logs();
    let receiver = Receiver::start(&[
        ("/down", Script::Down, Some(GLOBAL_SECRET)),
        ("/healthy", Script::Ok, Some(GLOBAL_SECRET)),
    ])
    .await;
    let h = Harness::sqlite();
    let consumer = Consumer::new(
        h.deps.store.clone(),
        config(&receiver, &["/down", "/healthy"], &EventType::ALL),
    );
    let attempt_times: Arc<Mutex<Vec<u64>>> = Arc::default();
    h.send(&user("u1"), "u2", "anyone there?").await.unwrap();
    let events: Vec<Event> = h
        .deliver_all()
        .await
        .into_iter()
        .filter(|e| e.event_type() == EventType::MessageSent)
        .collect();
    assert_eq!(events.len(), 1);
    consumer.deliver(&events).await;
    attempt_times.lock().unwrap().push(consumer.clock.now_ms());
    // Drain by hand to note when each attempt happened.
    let mut messages = 0;
    while let Some(due) = consumer.retries.next_due() {
        consumer.clock.set(due);
        for message in consumer.retries.take_due() {
            let before = receiver.at("/down").len();
            consumer.webhooks.handle_record(&message).await.unwrap();
            messages += 1;
            if receiver.at("/down").len() > before {
                attempt_times.lock().unwrap().push(consumer.clock.now_ms());
            }
        }
    }
    let times = attempt_times.lock().unwrap().clone();
    let offsets: Vec<u64> = times.iter().map(|t| (t - times[0]) / 1000).collect();
    let mut expected = vec![0];
    for wait in BACKOFF_SECS {
        expected.push(expected.last().unwrap() + wait);
    }
    assert_eq!(offsets, expected);
    assert_eq!(times.len(), MAX_ATTEMPTS as usize);
    // Each wait is ⌈wait / 15 min⌉ queue messages.
    let hops: u64 = BACKOFF_SECS.iter().map(|w| w.div_ceil(900)).sum();
    assert_eq!(messages as u64, hops);

    let down = receiver.at("/down");
    assert_eq!(down.len(), MAX_ATTEMPTS as usize);
    assert!(down.iter().all(|a| a.id == down[0].id && a.verified));
    assert_eq!(
        receiver.at("/healthy").len(),
        1,
        "a success is never repeated"
    );
    let dead = consumer.retries.dead_letters();
    assert_eq!(dead.len(), 1);
    let dead: Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(dead["webhook_retry"]["attempts"], MAX_ATTEMPTS);
    assert_eq!(dead["webhook_retry"]["last_error"], "answered 503");
    assert_eq!(dead["webhook_retry"]["webhook_id"], down[0].id.as_str());
    assert_eq!(
        dead["webhook_retry"]["target"],
        json!({"kind": "global", "url": receiver.url("/down")})
    );
    assert_eq!(
        dead["webhook_retry"]["event"],
        serde_json::from_str::<Value>(&events[0].to_json()).unwrap()
    );
}

/// A tenant's endpoint deleted (or narrowed) while its retries wait gets nothing more, and
/// nothing is dead-lettered for it; retries read the endpoint as it is now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_endpoint_as_it_is_now() {
    crate::common::init_logs();
    let receiver = Receiver::start(&[
        ("/down", Script::Down, Some(TENANT_SECRET)),
        (
            "/moved",
            Script::Ok,
            Some("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"),
        ),
    ])
    .await;
    let h = Harness::sqlite();
    let store = h.deps.store.clone();
    store
        .put_webhook(
            &tenant_hook(APP, "gone", receiver.url("/down"), &EventType::ALL),
            20,
        )
        .await
        .unwrap();
    store
        .put_webhook(
            &tenant_hook(APP, "moves", receiver.url("/down"), &EventType::ALL),
            20,
        )
        .await
        .unwrap();
    let consumer = Consumer::new(store.clone(), WebhookConfig::default());
    h.send(&user("u1"), "u2", "hi").await.unwrap();
    let events: Vec<Event> = h
        .deliver_all()
        .await
        .into_iter()
        .filter(|e| e.event_type() == EventType::MessageSent)
        .collect();
    consumer.deliver(&events).await;
    assert_eq!(receiver.at("/down").len(), 2);
    assert_eq!(consumer.retries.waiting(), 2);
    assert!(store.delete_webhook(APP, "gone").await.unwrap());
    let mut moved = tenant_hook(APP, "moves", receiver.url("/moved"), &EventType::ALL);
    moved.secret = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0".into();
    store.put_webhook(&moved, 20).await.unwrap();
    consumer.drain().await;
    assert_eq!(
        receiver.at("/down").len(),
        2,
        "nothing more to the deleted one"
    );
    let arrived = receiver.at("/moved");
    assert_eq!(arrived.len(), 1);
    assert!(arrived[0].verified, "signed with the new secret");
    assert_eq!(arrived[0].id, receiver.at("/down")[0].id);
    assert!(consumer.retries.dead_letters().is_empty());
}

/// chat21-local's retry queue, driven in real time: a retry comes back once its delay is over
/// (also one queued while the driver waits for a later one), and the queue is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_memory_queue_hands_retries_back_in_real_time() {
    let receiver = Receiver::start(&[("/later", Script::Ok, Some(GLOBAL_SECRET))]).await;
    let clock: Arc<dyn Clock> = Arc::new(chat21::adapters::system::SystemClock);
    let retries = Arc::new(MemoryRetries::new(clock.clone(), 3));
    let h = Harness::sqlite();
    let webhooks = Arc::new(Webhooks::new(
        h.deps.store.clone(),
        Arc::new(HttpClient::new(TIMEOUT).unwrap()),
        retries.clone(),
        clock.clone(),
        config(&receiver, &["/later"], &EventType::ALL),
    ));
    tokio::spawn(chat21::entry::webhooks::run_memory_retries(
        retries.clone(),
        webhooks.clone(),
    ));
    let retry = |text: &str, wait_ms: u64| {
        let event = message_sent(APP, "u2", text);
        let retry = Retry {
            webhook_id: chat21::ops::webhooks::signing::webhook_id(&event.to_json()),
            target: Target::Global {
                url: receiver.url("/later"),
            },
            attempts: 1,
            due: clock.now_ms() + wait_ms,
            last_error: "answered 503".into(),
            event: RawValue::from_string(event.to_json()).unwrap(),
        };
        (retry.to_message(), Duration::from_millis(wait_ms))
    };
    retries
        .schedule(&[retry("much later", 60_000)])
        .await
        .unwrap();
    retries
        .schedule(&[retry("soon", 50), retry("sooner", 10)])
        .await
        .unwrap();
    let full = retries.schedule(&[retry("one too many", 10)]).await;
    assert_eq!(full.unwrap_err().status(), 503, "the queue holds 3");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while receiver.at("/later").len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the retries never came back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let texts: BTreeSet<String> = receiver
        .at("/later")
        .iter()
        .map(|a| a.event()["data"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, BTreeSet::from(["soon".into(), "sooner".into()]));
    assert_eq!(retries.waiting(), 1, "the later one still waits");
}
