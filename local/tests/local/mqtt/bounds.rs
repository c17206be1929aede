//! The broker's bounds (REALTIME.md "Guarantees"; issue 16, items 5–7): retained messages
//! only on one's presence topics, at most 8 per user of at most 1 KiB each (the oldest goes),
//! each replayed once per SUBSCRIBE, and cleared by a `disconnected` presence (a will's
//! too); at most 50 subscriptions per connection; and a window of unacknowledged QoS 1
//! publishes that waits for the client's acknowledgements instead of disconnecting it.

use super::*;

fn presence(user: &str, client: &str) -> String {
    format!("apps/{APP}/users/{user}/presence/{client}")
}

/// A presence payload of exactly `bytes` bytes.
fn padded(bytes: usize) -> String {
    let empty = json!({"connected": true, "pad": ""}).to_string();
    let payload = json!({"connected": true, "pad": "x".repeat(bytes - empty.len())}).to_string();
    assert_eq!(payload.len(), bytes);
    payload
}

static SENTINELS: AtomicUsize = AtomicUsize::new(0);

/// Subscribes `mqtt` (a connection of `user`) to `filters` in one SUBSCRIBE, all granted;
/// then `feeder` (another connection of the same user) publishes a live presence, which the
/// filters must cover: the publishes `mqtt` received in between are the SUBSCRIBE's replay.
async fn replay(mqtt: &mut Mqtt, feeder: &mut Mqtt, user: &str, filters: &[&str]) -> Vec<Received> {
    mqtt.drain();
    let before = mqtt.all.len();
    let codes = mqtt.subscribe(filters).await;
    assert!(
        codes
            .iter()
            .all(|c| *c == SubscribeReasonCode::Success(QoS::AtLeastOnce)),
        "{}: {codes:?}",
        mqtt.name
    );
    let sentinel = presence(
        user,
        &format!("sentinel-{}", SENTINELS.fetch_add(1, Ordering::Relaxed)),
    );
    feeder.publish(&sentinel, "{}", false).await;
    let seen = mqtt.expect(&sentinel).await;
    mqtt.all[before..seen.seq].to_vec()
}

/// The retained presence topics a fresh subscription to `user`'s whole tree replays, with
/// their payloads.
async fn retained_of(server: &Server, via: Via, user: &str) -> Vec<(String, Value)> {
    let id = CLIENTS.fetch_add(1, Ordering::Relaxed);
    let mut mqtt = connect_as(server, via, user, &format!("{user}-look-{id}")).await;
    let mut feeder = connect_as(server, via, user, &format!("{user}-feed-{id}")).await;
    let tree = format!("apps/{APP}/users/{user}/#");
    let replayed = replay(&mut mqtt, &mut feeder, user, &[&tree]).await;
    for r in &replayed {
        assert!(
            r.retain,
            "a replayed message is flagged retained: {}",
            r.topic
        );
    }
    let mut topics: Vec<(String, Value)> =
        replayed.into_iter().map(|r| (r.topic, r.payload)).collect();
    topics.sort_by(|a, b| a.0.cmp(&b.0));
    topics
}

fn topics_of(retained: &[(String, Value)]) -> Vec<String> {
    retained.iter().map(|(t, _)| t.clone()).collect()
}

fn sorted(mut topics: Vec<String>) -> Vec<String> {
    topics.sort();
    topics
}

pub(super) async fn retained_messages_are_at_most_8_per_user_and_1_kib_each(via: Via) {
    let server = start();
    let mut writer = connect_as(&server, via, "u1", "writer").await;
    let mut watcher = online(&server, via, "u1").await;
    for i in 0..10 {
        let payload = json!({"connected": true, "n": i}).to_string();
        writer
            .publish(&presence("u1", &format!("c{i}")), payload, true)
            .await;
    }
    // The newest 8 stay.
    let expected = |ids: &[usize]| {
        sorted(
            ids.iter()
                .map(|i| presence("u1", &format!("c{i}")))
                .collect(),
        )
    };
    let kept = retained_of(&server, via, "u1").await;
    assert_eq!(topics_of(&kept), expected(&[2, 3, 4, 5, 6, 7, 8, 9]));
    let c9 = kept
        .iter()
        .find(|(t, _)| *t == presence("u1", "c9"))
        .unwrap();
    assert_eq!(c9.1, json!({"connected": true, "n": 9}));
    // Retaining c2 again makes it the newest: c10 pushes out c3, the oldest now.
    writer
        .publish(
            &presence("u1", "c2"),
            json!({"connected": true, "n": 22}).to_string(),
            true,
        )
        .await;
    writer
        .publish(
            &presence("u1", "c10"),
            json!({"connected": true}).to_string(),
            true,
        )
        .await;
    let kept = retained_of(&server, via, "u1").await;
    assert_eq!(topics_of(&kept), expected(&[2, 4, 5, 6, 7, 8, 9, 10]));
    let c2 = kept
        .iter()
        .find(|(t, _)| *t == presence("u1", "c2"))
        .unwrap();
    assert_eq!(c2.1, json!({"connected": true, "n": 22}));

    // Another user's retained messages count for that user only.
    let mut other = connect_as(&server, via, "u2", "other-writer").await;
    for i in 0..3 {
        other
            .publish(
                &presence("u2", &format!("d{i}")),
                json!({"connected": true}).to_string(),
                true,
            )
            .await;
    }
    assert_eq!(retained_of(&server, via, "u1").await.len(), 8);
    assert_eq!(retained_of(&server, via, "u2").await.len(), 3);

    // 1 KiB is the most: exactly 1,024 bytes are kept (and push out the oldest, c4)...
    let exact = padded(1024);
    writer
        .publish(&presence("u1", "big"), exact.clone(), true)
        .await;
    let kept = retained_of(&server, via, "u1").await;
    assert_eq!(
        topics_of(&kept),
        expected_with(&expected(&[2, 5, 6, 7, 8, 9, 10]), "big")
    );
    let big = kept
        .iter()
        .find(|(t, _)| *t == presence("u1", "big"))
        .unwrap();
    assert_eq!(big.1.to_string().len(), 1024);
    // ... one byte more is refused as a retained publish elsewhere is: the client is closed
    // without a PUBACK, nothing is kept, nobody receives it.
    let mut huge = connect_as(&server, via, "u1", "huge").await;
    huge.publish_refused(&presence("u1", "huge"), padded(1025), true)
        .await;
    let kept = retained_of(&server, via, "u1").await;
    assert!(
        !topics_of(&kept).contains(&presence("u1", "huge")),
        "{kept:?}"
    );
    assert_eq!(kept.len(), 8);
    watcher.assert_never("the refused retained publish", |r| {
        r.topic == presence("u1", "huge")
    });
    // The same payload without the retain flag is an ordinary publish.
    writer
        .publish(&presence("u1", "huge"), padded(1025), false)
        .await;
    watcher.expect(&presence("u1", "huge")).await;

    // A retained will over 1 KiB is refused at CONNECT; one of 1 KiB is taken.
    let with_will = |client: &str, payload: String| {
        let mut options = options_for(&server, via, client, &tok("u1"));
        options.set_last_will(LastWill::new(
            presence("u1", client),
            payload,
            QoS::AtLeastOnce,
            true,
        ));
        options
    };
    match try_connect(with_will("will-huge", padded(1025))).await {
        Ok(_) => panic!("a retained will over 1 KiB was accepted"),
        Err(ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, ConnectReturnCode::NotAuthorized)
        }
        Err(_) => {} // closed without CONNACK: refused too
    }
    try_connect(with_will("will-exact", padded(1024)))
        .await
        .unwrap_or_else(|e| panic!("a retained will of 1 KiB was refused: {e}"));
}

fn expected_with(topics: &[String], client: &str) -> Vec<String> {
    let mut all = topics.to_vec();
    all.push(presence("u1", client));
    sorted(all)
}

pub(super) async fn a_subscribe_replays_each_retained_message_once(via: Via) {
    let server = start();
    let mut writer = connect_as(&server, via, "u1", "writer").await;
    for client in ["x", "y"] {
        writer
            .publish(
                &presence("u1", client),
                json!({"connected": true}).to_string(),
                true,
            )
            .await;
    }
    let tree = "apps/app1/users/u1/#";
    let any_presence = "apps/app1/users/u1/presence/+";
    let x = presence("u1", "x");
    let mut overlapping = vec![
        tree,
        any_presence,
        x.as_str(),
        x.as_str(),
        "apps/app1/users/u1/+/x",
    ];
    // The same filter many times over in one SUBSCRIBE (each is granted; it is one
    // subscription).
    overlapping.extend(std::iter::repeat_n(any_presence, 200));
    let mut reader = connect_as(&server, via, "u1", "reader").await;
    for round in 0..2 {
        let replayed = replay(&mut reader, &mut writer, "u1", &overlapping).await;
        let mut topics: Vec<String> = replayed.iter().map(|r| r.topic.clone()).collect();
        topics.sort();
        assert_eq!(
            topics,
            vec![x.clone(), presence("u1", "y")],
            "round {round}: each retained message once per SUBSCRIBE"
        );
        assert!(replayed.iter().all(|r| r.retain));
    }
    // A live publish matching every filter arrives once too.
    writer
        .publish(
            &presence("u1", "x"),
            json!({"connected": true, "live": 1}).to_string(),
            false,
        )
        .await;
    let live = reader
        .expect_where(&x, "the live publish", |p| p["live"] == 1)
        .await;
    assert!(!live.retain);
    writer.publish(&presence("u1", "after"), "{}", false).await;
    reader.expect(&presence("u1", "after")).await;
    assert_eq!(reader.count(&x), 3, "{}", reader.report());
}

pub(super) async fn a_disconnected_presence_clears_its_retained_message(via: Via) {
    let server = start();
    let mut watcher = online(&server, via, "u1").await;

    // A client's own `disconnected`, retained or not, clears its topic's retained message.
    for retain in [true, false] {
        let client = format!("bye-{retain}");
        let topic = presence("u1", &client);
        let mut a = connect_as(&server, via, "u1", &client).await;
        a.publish(&topic, json!({"connected": true}).to_string(), true)
            .await;
        assert!(topics_of(&retained_of(&server, via, "u1").await).contains(&topic));
        a.publish(&topic, json!({"disconnected": true}).to_string(), retain)
            .await;
        let bye = watcher
            .expect_where(&topic, "disconnected", |p| {
                *p == json!({"disconnected": true})
            })
            .await;
        assert!(!bye.retain, "a live publish is not flagged retained");
        let kept = retained_of(&server, via, "u1").await;
        assert!(
            !topics_of(&kept).contains(&topic),
            "{topic} is still retained: {kept:?}"
        );
    }

    // The will of an unclean disconnect: it goes out, and clears the retained `connected`.
    let topic = presence("u1", "gone");
    let mut options = options_for(&server, via, "gone", &tok("u1"));
    options.set_last_will(LastWill::new(
        topic.clone(),
        json!({"disconnected": true}).to_string(),
        QoS::AtLeastOnce,
        true,
    ));
    let mut gone = try_connect(options).await.unwrap();
    gone.publish(&topic, json!({"connected": true}).to_string(), true)
        .await;
    watcher.expect(&topic).await;
    assert!(topics_of(&retained_of(&server, via, "u1").await).contains(&topic));
    gone.kill().await;
    watcher
        .expect_where(&topic, "the will", |p| *p == json!({"disconnected": true}))
        .await;
    let kept = retained_of(&server, via, "u1").await;
    assert!(
        !topics_of(&kept).contains(&topic),
        "the will left {topic} retained: {kept:?}"
    );
    // Other clients' retained presence is untouched.
    let mut stays = connect_as(&server, via, "u1", "stays").await;
    stays
        .publish(
            &presence("u1", "stays"),
            json!({"connected": true}).to_string(),
            true,
        )
        .await;
    let mut leaves = connect_as(&server, via, "u1", "leaves").await;
    leaves
        .publish(
            &presence("u1", "leaves"),
            json!({"disconnected": true}).to_string(),
            true,
        )
        .await;
    assert_eq!(
        topics_of(&retained_of(&server, via, "u1").await),
        vec![presence("u1", "stays")]
    );
}

fn from(i: usize) -> String {
    format!("apps/app1/users/u1/messages/p{i}/clientadded")
}

pub(super) async fn at_most_50_subscriptions_per_connection(via: Via) {
    let server = start();
    let mut u1 = connect_as(&server, via, "u1", "many").await;
    let ok = SubscribeReasonCode::Success(QoS::AtLeastOnce);
    let refused = SubscribeReasonCode::Failure;
    let first: Vec<String> = (0..45).map(from).collect();
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    assert_eq!(u1.subscribe(&first).await, vec![ok; 45]);
    // Re-subscribing a filter replaces it; a refused filter (another user's) counts for
    // nothing; the 51st distinct filter and beyond get 0x80.
    let (f0, f45, f46, f47, f48, f49, f50, f51) = (
        from(0),
        from(45),
        from(46),
        from(47),
        from(48),
        from(49),
        from(50),
        from(51),
    );
    let second = [
        f0.as_str(),
        "apps/app1/users/u2/#",
        &f45,
        &f46,
        &f47,
        &f48,
        &f49,
        &f50,
        &f51,
        &f49,
        &f50,
    ];
    assert_eq!(
        u1.subscribe(&second).await,
        vec![
            ok, refused, ok, ok, ok, ok, ok, refused, refused, ok, refused
        ]
    );
    // The refused filter is not in force; the 50th is.
    send(&server, "p50", direct("u1", "to the 51st filter")).await;
    send(&server, "p49", direct("u1", "to the 50th filter")).await;
    u1.expect(&f49).await;
    u1.assert_never("a publish under a refused 51st filter", |r| r.topic == f50);
    // Unsubscribing frees a place.
    u1.client.unsubscribe(from(1)).await.unwrap();
    assert_eq!(u1.subscribe(&[&f50, &f51]).await, vec![ok, refused]);
    send(&server, "p50", direct("u1", "now in force")).await;
    u1.expect_where(&f50, "now in force", |p| p["text"] == "now in force")
        .await;
    assert!(u1.closed.is_none(), "{:?}", u1.closed);
}

/// The QoS 1 publishes in `packets`: their packet ids.
fn publish_ids(first: u8, body: &[u8]) -> Option<u16> {
    if first & 0xF0 != 0x30 || first & 0x06 != 0x02 {
        return None;
    }
    let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
    Some(u16::from_be_bytes([
        body[2 + topic_len],
        body[3 + topic_len],
    ]))
}

fn puback(id: u16) -> Vec<u8> {
    let [hi, lo] = id.to_be_bytes();
    vec![0x40, 2, hi, lo]
}

/// Item 6: a burst of QoS 1 publishes far beyond the window of unacknowledged ones
/// (`MQTT_MAX_IN_FLIGHT`, 16 here), to a client that acknowledges what it reads in batches:
/// the broker waits for the acknowledgements, never disconnects it, and never has more than
/// the window unacknowledged. A client that never acknowledges is still bounded: once its
/// queue is full it is disconnected as a slow client.
pub(super) async fn a_client_that_acks_is_never_disconnected_by_the_in_flight_window(via: Via) {
    const WINDOW: usize = 16;
    const BURST: usize = 300;
    let mut command = crate::support::command();
    command
        .env("JWT_KEY", KEY)
        .env("MQTT_MAX_IN_FLIGHT", WINDOW.to_string());
    let server = crate::support::start_with(command);
    let topic = presence("u1", "feeder");
    let burst: Vec<u8> = (0..BURST)
        .flat_map(|_| publish_packet(&topic, b"{}", true))
        .collect();

    let mut reader = Raw::online(&server, via, "u1", 30).await;
    reader.send(&subscribe_packet(1, &topic, 1)).await;
    reader.expect_packet(0x90, &[0, 1, 1], "SUBACK 1").await;
    let mut feeder = Raw::online(&server, via, "u1", 30).await;
    feeder.send(&burst).await;
    // The reader acknowledges what it has read every 50 ms.
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while received < BURST {
        assert!(
            Instant::now() < deadline,
            "{received} of {BURST} publishes in 30 s"
        );
        let batch_end = Instant::now() + Duration::from_millis(50);
        let mut acks = Vec::new();
        loop {
            match Box::pin(reader.next(batch_end.saturating_duration_since(Instant::now()))).await {
                Next::Packet(first, body) => {
                    let id = publish_ids(first, &body)
                        .unwrap_or_else(|| panic!("not a QoS 1 publish: {first:#04x}"));
                    acks.extend(puback(id));
                    received += 1;
                }
                Next::Closed => panic!(
                    "disconnected after {received} of {BURST} publishes, {} unacknowledged",
                    acks.len() / 4
                ),
                Next::TimedOut => break,
            }
        }
        assert!(
            acks.len() / 4 <= WINDOW,
            "{} publishes unacknowledged at once (window {WINDOW})",
            acks.len() / 4
        );
        reader.send(&acks).await;
    }
    reader.ping("the reader is still connected").await;

    // A reader that never acknowledges gets the window, then nothing, then (its queue full)
    // the close.
    let mut stuck = Raw::online(&server, via, "u2", 0).await;
    let stuck_topic = presence("u2", "feeder");
    stuck.send(&subscribe_packet(1, &stuck_topic, 1)).await;
    stuck.expect_packet(0x90, &[0, 1, 1], "SUBACK 1").await;
    let mut feeder = Raw::online(&server, via, "u2", 0).await;
    let flood: Vec<u8> = (0..mqtt_queue_overflow())
        .flat_map(|_| publish_packet(&stuck_topic, b"{}", true))
        .collect();
    feeder.send(&flood).await;
    let mut publishes = 0;
    loop {
        match Box::pin(stuck.next(WAIT)).await {
            Next::Packet(first, body) => {
                assert!(publish_ids(first, &body).is_some(), "{first:#04x}");
                publishes += 1;
            }
            Next::Closed => break,
            Next::TimedOut => panic!("a reader that never acknowledges is still connected"),
        }
    }
    assert_eq!(publishes, WINDOW, "publishes sent without acknowledgement");
}

/// More publishes than a connection's queue holds beyond the window.
fn mqtt_queue_overflow() -> usize {
    1024 + 16 + 50
}
