//! Refusals: subscriptions outside the user's tree get 0x80; forbidden publishes disconnect
//! and change nothing; ids with wildcards in topics are refused.

use super::*;

pub(super) async fn subscriptions_outside_the_users_tree_get_0x80(via: Via) {
    let server = start();
    let mut u1 = connect_as(&server, via, "u1", "nosy").await;
    let mut u2 = online(&server, via, "u2").await;
    let filters = [
        "apps/app1/users/u2/#",
        "apps/app1/users/+/messages/+/clientadded",
        "apps/app1/users/+/#",
        "#",
        "+/+/+/+/#",
        "apps/app2/users/u1/#",
        "apps/+/users/u1/#",
        "apps/app1/outgoing/users/u1/#",
        "apps/app1/users/u10/#",
        "apps/app1/users/u1/messages/+/clientadded",
    ];
    let codes = u1.subscribe(&filters).await;
    let mut expected = vec![SubscribeReasonCode::Failure; filters.len() - 1];
    expected.push(SubscribeReasonCode::Success(QoS::AtLeastOnce));
    assert_eq!(codes, expected, "{filters:?}");

    send(&server, "u3", direct("u2", "for u2 only")).await;
    u2.expect("apps/app1/users/u2/messages/u3/clientadded")
        .await;
    send(&server, "u3", direct("u1", "for u1")).await;
    u1.expect("apps/app1/users/u1/messages/u3/clientadded")
        .await;
    u1.assert_never("another user's topic", |r| {
        !r.topic.starts_with("apps/app1/users/u1/")
    });
    assert!(
        u1.closed.is_none(),
        "a refused subscription does not close: {:?}",
        u1.closed
    );
}

pub(super) async fn forbidden_publishes_disconnect_and_change_nothing(via: Via) {
    let server = start();
    send(&server, "u2", direct("u1", "setup")).await;
    let mut u1b = online(&server, via, "u1").await;
    let mut u2 = online(&server, via, "u2").await;
    let mut u3 = online(&server, via, "u3").await;
    let mut other_app = try_connect(options_for(
        &server,
        via,
        "u2-app2",
        &token("u2", "app2", false),
    ))
    .await
    .unwrap();
    other_app.subscribe_ok("apps/app2/users/u2/#").await;
    let send_body = |id: &str| {
        json!({"text": "forged", "sender_fullname": "F", "recipient_fullname": "F",
               "message_id": id})
        .to_string()
    };
    let forged_copy = json!({"message_id": "forged-copy", "sender": "u3", "recipient": "u2",
        "text": "forged", "timelineOf": "u2", "conversWith": "u3", "status": 150})
    .to_string();
    let cases: Vec<(&str, String, bool)> = vec![
        (
            "apps/app1/outgoing/users/u2/messages/u3/outgoing",
            send_body("forged-1"),
            false,
        ),
        (
            "apps/app1/users/u2/messages/u3/clientadded",
            forged_copy.clone(),
            false,
        ),
        (
            "apps/app1/users/u1/messages/u2/clientadded",
            forged_copy.clone(),
            false,
        ),
        (
            "apps/app1/users/u1/conversations/u2/clientupdated",
            json!({"text": "forged", "is_new": false}).to_string(),
            false,
        ),
        (
            "apps/app1/users/u2/conversations/u1/update",
            json!({"is_new": false, "text": "forged"}).to_string(),
            false,
        ),
        (
            "apps/app2/outgoing/users/u1/messages/u2/outgoing",
            send_body("forged-2"),
            false,
        ),
        (
            "apps/app2/users/u2/presence/x",
            json!({"connected": true, "text": "forged"}).to_string(),
            true,
        ),
        (
            "apps/app1/users/u1/conversations/u2/archive",
            json!({"text": "forged"}).to_string(),
            true,
        ),
        (
            "apps/app1/outgoing/users/u1/messages/u2/outgoing",
            send_body("forged-3"),
            true,
        ),
        (
            "apps/app1/users/u2/presence/x",
            json!({"connected": true, "text": "forged"}).to_string(),
            false,
        ),
        (
            "apps/app1/outgoing/users/u1/messages/u?2/outgoing",
            send_body("forged-4"),
            false,
        ),
        (
            "apps/app1/outgoing/users/u1/messages/u2/outgoing/extra",
            send_body("forged-5"),
            false,
        ),
        (
            "apps/app1/users/u1",
            json!({"text": "forged"}).to_string(),
            false,
        ),
        ("$SYS/broker", json!({"text": "forged"}).to_string(), false),
    ];
    for (i, (topic, payload, retain)) in cases.into_iter().enumerate() {
        let mut bad = connect_as(&server, via, "u1", &format!("bad-{i}")).await;
        bad.publish_refused(topic, payload, retain).await;
    }

    // Nothing was delivered: later messages arrive, and nothing forged before them.
    send(&server, "u3", direct("u1", "barrier")).await;
    send(&server, "u3", direct("u2", "barrier")).await;
    send_in(&server, "app2", "u3", direct("u2", "barrier")).await;
    u1b.expect("apps/app1/users/u1/messages/u3/clientadded")
        .await;
    u2.expect("apps/app1/users/u2/messages/u3/clientadded")
        .await;
    other_app
        .expect("apps/app2/users/u2/messages/u3/clientadded")
        .await;
    let forged = |r: &Received| r.payload.to_string().contains("forged");
    u1b.assert_never("a forged publish", forged);
    u2.assert_never("a forged publish", forged);
    u3.assert_never("a forged publish", forged);
    other_app.assert_never("a forged publish", forged);
    // A new subscriber finds no retained message from them either.
    let mut late = connect_as(&server, via, "u2", "late").await;
    late.subscribe_ok("apps/app1/users/u2/#").await;
    send(&server, "u3", direct("u2", "barrier 2")).await;
    late.expect("apps/app1/users/u2/messages/u3/clientadded")
        .await;
    late.assert_never("a retained forged publish", |r| r.retain);

    // Nothing changed: no message, no conversation, nothing archived or read.
    for user in ["u1", "u2", "u3"] {
        for row in conversations(&server, user).await {
            assert_ne!(row["last_message_text"], "forged", "{user}: {row}");
        }
        assert!(archived(&server, user).await.is_empty(), "{user}'s archive");
    }
    let u2_row = find(&conversations(&server, "u2").await, "conversWith", "u1")
        .cloned()
        .expect("u2's conversation with u1");
    assert_eq!(u2_row["last_message_text"], "setup", "{u2_row}");
    let u1_row = find(&conversations(&server, "u1").await, "conversWith", "u2")
        .cloned()
        .expect("u1's conversation with u2");
    assert_fields(
        &u1_row,
        json!({"is_new": true, "unread_count": 1, "archived": false}),
        "u1's conversation",
    );
    let (_, app2) = http(
        &server,
        "GET",
        "/api/app2/u2/conversations",
        &token("u2", "app2", false),
        None,
    )
    .await;
    let rows = app2["result"].as_array().cloned().unwrap_or_default();
    assert!(
        rows.iter().all(|r| r["last_message_text"] == "barrier"),
        "app2: {app2}"
    );
}

pub(super) async fn ids_with_wildcards_in_topics_are_refused(via: Via) {
    let server = start();
    let mut u2 = online(&server, via, "u2").await;
    let body =
        json!({"text": "wild", "sender_fullname": "U1", "recipient_fullname": "U2"}).to_string();
    for topic in [
        "apps/app1/outgoing/users/u1/messages/u+2/outgoing",
        "apps/app1/outgoing/users/u1/messages/u#2/outgoing",
        "apps/app1/outgoing/users/u1/messages/+/outgoing",
        "apps/app1/outgoing/users/u1/messages/u?2/outgoing",
        "apps/app1/outgoing/users/u1/messages/u*2/outgoing",
        "apps/app1/users/u1/conversations/u+2/archive",
        "apps/app1/users/u1/conversations/+/update",
        "apps/app1/users/u1/messages/u2/m+1/update",
        "apps/app1/users/u1/presence/c#1",
    ] {
        let mut raw = Raw::online(&server, via, "u1", 30).await;
        raw.send(&publish_packet(topic, body.as_bytes(), true))
            .await;
        match raw.next(WAIT).await {
            Next::Closed => {}
            Next::Packet(first, rest) => {
                panic!("{topic}: answered {first:#04x} {rest:?} instead of closing")
            }
            Next::TimedOut => panic!("{topic}: still connected after {WAIT:?}"),
        }
    }
    // The HTTP API refuses such ids too.
    let (status, answer) = http(
        &server,
        "POST",
        &format!("/api/{APP}/messages"),
        &tok("u1"),
        Some(&direct("u+2", "wild")),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    send(&server, "u1", direct("u2", "barrier")).await;
    u2.expect("apps/app1/users/u2/messages/u1/clientadded")
        .await;
    u2.assert_never("a wildcard send", |r| r.payload["text"] == "wild");
    for row in conversations(&server, "u1").await {
        assert_eq!(row["conversWith"], "u2", "{row}");
    }
}
