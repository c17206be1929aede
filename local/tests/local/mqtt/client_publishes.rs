//! What clients publish: a send over MQTT is a send (bad payloads change nothing); presence
//! is retained, and the will goes out on abrupt disconnects only.

use super::*;

pub(super) async fn a_send_over_mqtt_is_a_send_and_bad_payloads_change_nothing(via: Via) {
    let server = start();
    let mut u1 = online(&server, via, "u1").await;
    let mut u2 = online(&server, via, "u2").await;
    let mut u3 = online(&server, via, "u3").await;
    let outgoing = "apps/app1/outgoing/users/u1/messages/u2/outgoing";
    let theirs = "apps/app1/users/u2/messages/u1/clientadded";
    let mine = "apps/app1/users/u1/messages/u2/clientadded";

    // The sender is the topic's; `sender_id` in the payload is ignored.
    u1.publish_json(
        outgoing,
        json!({"text": "over mqtt", "sender_fullname": "U1", "recipient_fullname": "U2",
               "sender_id": "u9", "message_id": "mq-1", "attributes": null,
               "type": "text", "channel_type": "direct"}),
    )
    .await;
    let got = u2.expect(theirs).await.payload;
    assert_fields(
        &got,
        json!({"message_id": "mq-1", "sender": "u1", "recipient": "u2", "text": "over mqtt",
               "sender_fullname": "U1", "timelineOf": "u2", "conversWith": "u1",
               "status": 150, "app_id": APP}),
        "the recipient's copy",
    );
    assert!(got.get("attributes").is_none(), "{got}");
    let own = u1.expect(mine).await.payload;
    assert_fields(
        &own,
        json!({"message_id": "mq-1", "sender": "u1", "timelineOf": "u1", "status": 100}),
        "the sender's copy",
    );

    // Not JSON objects, or invalid sends: dropped, the connection stays.
    let bad: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        b"[1, 2]".to_vec(),
        b"\"a string\"".to_vec(),
        b"".to_vec(),
        json!({"text": "no names", "message_id": "bad-1"})
            .to_string()
            .into(),
        json!({"text": 5, "sender_fullname": "U1", "recipient_fullname": "U2",
               "message_id": "bad-2"})
        .to_string()
        .into(),
        json!({"text": "x", "sender_fullname": "U1", "recipient_fullname": "U2",
               "attributes": "not an object", "message_id": "bad-3"})
        .to_string()
        .into(),
        json!({"text": "x", "sender_fullname": "U1", "recipient_fullname": "U2",
               "message_id": "bad+4"})
        .to_string()
        .into(),
        json!({"text": "x".repeat(70 * 1024), "sender_fullname": "U1",
               "recipient_fullname": "U2", "message_id": "bad-5"})
        .to_string()
        .into(),
        json!({"text": "x", "sender_fullname": "U1", "recipient_fullname": "U2",
               "channel_type": "broadcast", "message_id": "bad-6"})
        .to_string()
        .into(),
        // Fits one MQTT packet (< 128 KiB) but not the 120 KiB a stored message may take.
        json!({"text": "x".repeat(60 * 1024), "sender_fullname": "U1",
               "recipient_fullname": "U2", "message_id": "bad-7",
               "attributes": {"big": "y".repeat(62 * 1024)}})
        .to_string()
        .into(),
    ];
    for payload in bad {
        u1.publish(outgoing, payload, false).await;
    }
    u1.publish_json(
        outgoing,
        json!({"text": "second", "sender_fullname": "U1", "recipient_fullname": "U2",
               "message_id": "mq-2"}),
    )
    .await;
    u2.expect_where(theirs, "mq-2", |p| p["message_id"] == "mq-2")
        .await;
    u1.expect_where(mine, "mq-2", |p| p["message_id"] == "mq-2")
        .await;
    assert_eq!(u2.count(theirs), 2, "{}", u2.report());
    assert!(u1.closed.is_none(), "{:?}", u1.closed);
    for (user, with) in [("u2", "u1"), ("u1", "u2")] {
        let ids: Vec<Value> = timeline(&server, user, with)
            .await
            .iter()
            .map(|m| m["message_id"].clone())
            .collect();
        assert_eq!(ids, vec![json!("mq-2"), json!("mq-1")], "{user}'s timeline");
    }

    // Ids too long together for the real-time topics (at most 256 bytes): dropped, as the HTTP
    // route refuses them with 400.
    let long_user = "l".repeat(128);
    let long_body = json!({"text": "too long", "sender_fullname": "U1", "recipient_fullname": "L",
                           "message_id": "m".repeat(128)});
    u1.publish_json(
        &format!("apps/app1/outgoing/users/u1/messages/{long_user}/outgoing"),
        long_body.clone(),
    )
    .await;
    let mut http_body = long_body;
    http_body["recipient_id"] = json!(long_user);
    let (status, answer) = http(
        &server,
        "POST",
        &format!("/api/{APP}/messages"),
        &tok("u1"),
        Some(&http_body),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(conversations(&server, &long_user).await.is_empty());
    let rows = conversations(&server, "u1").await;
    assert!(find(&rows, "conversWith", &long_user).is_none(), "{rows:?}");

    // An inline ("volatile") group: delivered to its members, no group created.
    u1.publish_json(
        "apps/app1/outgoing/users/u1/messages/group-volatile/outgoing",
        json!({"text": "inline", "sender_fullname": "U1", "recipient_fullname": "V",
               "channel_type": "group", "group": {"members": {"u1": 1, "u2": 1, "u3": 1}}}),
    )
    .await;
    for (user, client) in [("u1", &mut u1), ("u2", &mut u2), ("u3", &mut u3)] {
        let got = client
            .expect(&format!(
                "apps/app1/users/{user}/messages/group-volatile/clientadded"
            ))
            .await;
        assert_fields(
            &got.payload,
            json!({"text": "inline", "sender": "u1", "recipient": "group-volatile",
                   "timelineOf": user, "conversWith": "group-volatile"}),
            "an inline group copy",
        );
    }
    let (status, answer) = http(
        &server,
        "GET",
        &format!("/api/{APP}/groups/group-volatile"),
        &tok("u1"),
        None,
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    // The sender gets a copy even when the inline members do not name them.
    u1.publish_json(
        "apps/app1/outgoing/users/u1/messages/group-volatile2/outgoing",
        json!({"text": "inline 2", "sender_fullname": "U1", "recipient_fullname": "V",
               "channel_type": "group", "group": {"members": {"u2": 1, "u3": 1}}}),
    )
    .await;
    for (user, client) in [("u2", &mut u2), ("u3", &mut u3), ("u1", &mut u1)] {
        let got = client
            .expect(&format!(
                "apps/app1/users/{user}/messages/group-volatile2/clientadded"
            ))
            .await;
        assert_fields(
            &got.payload,
            json!({"text": "inline 2", "sender": "u1", "timelineOf": user}),
            "an inline group copy (sender not among the members)",
        );
    }
}

pub(super) async fn presence_is_retained_and_the_will_goes_out_on_abrupt_disconnects_only(
    via: Via,
) {
    let server = start();
    let presence = |client: &str| format!("apps/app1/users/u1/presence/{client}");
    let with_will = |client: &str| {
        let mut options = options_for(&server, via, client, &tok("u1"));
        options.set_last_will(LastWill::new(
            presence(client),
            json!({"disconnected": true}).to_string(),
            QoS::AtLeastOnce,
            true,
        ));
        options
    };

    // A announces itself, retained.
    let mut a = try_connect(with_will("pa")).await.unwrap();
    a.publish(
        &presence("pa"),
        json!({"connected": true}).to_string(),
        true,
    )
    .await;
    // B, the same user on another connection, gets it as a retained message on subscribing.
    let mut b = connect_as(&server, via, "u1", "pb").await;
    b.subscribe_ok("apps/app1/users/u1/#").await;
    let got = b.expect(&presence("pa")).await;
    assert_eq!(got.payload, json!({"connected": true}));
    assert!(got.retain, "a retained message is sent as retained");
    // Another user sees none of it.
    let mut u2 = online(&server, via, "u2").await;
    u2.assert_never("u1's presence", |r| r.topic.contains("/u1/"));

    // A goes away without DISCONNECT: its will goes out, and (a `disconnected`) clears A's
    // retained presence.
    a.kill().await;
    let will = b
        .expect_where(&presence("pa"), "the will", |p| {
            *p == json!({"disconnected": true})
        })
        .await;
    assert!(!will.retain, "a live publish is not flagged retained");
    let mut d = connect_as(&server, via, "u1", "pd").await;
    d.subscribe_ok(&presence("+")).await;
    d.publish(
        &presence("pd"),
        json!({"connected": true}).to_string(),
        false,
    )
    .await;
    d.expect(&presence("pd")).await;
    d.assert_never("A's presence, cleared by its will", |r| {
        r.topic == presence("pa")
    });

    // C disconnects cleanly: no will.
    let mut c = try_connect(with_will("pc")).await.unwrap();
    c.publish(
        &presence("pc"),
        json!({"connected": true}).to_string(),
        true,
    )
    .await;
    b.expect(&presence("pc")).await;
    c.disconnect().await;
    // A later publish of the same user reaches B after anything C's end would have sent.
    sleep(Duration::from_millis(300)).await;
    let mut e = connect_as(&server, via, "u1", "pe").await;
    e.publish(
        &presence("pe"),
        json!({"connected": true}).to_string(),
        false,
    )
    .await;
    b.expect(&presence("pe")).await;
    b.assert_never("C's will after a clean DISCONNECT", |r| {
        r.topic == presence("pc") && r.payload == json!({"disconnected": true})
    });
    let mut f = connect_as(&server, via, "u1", "pf").await;
    f.subscribe_ok(&presence("pc")).await;
    let got = f.expect(&presence("pc")).await;
    assert_eq!(
        got.payload,
        json!({"connected": true}),
        "C's retained presence"
    );
    // An empty retained payload clears it (MQTT).
    e.publish(
        &presence("pe"),
        json!({"connected": true}).to_string(),
        true,
    )
    .await;
    e.publish(&presence("pe"), "", true).await;
    let mut g = connect_as(&server, via, "u1", "pg").await;
    g.subscribe_ok("apps/app1/users/u1/#").await;
    g.publish(
        &presence("pg"),
        json!({"connected": true}).to_string(),
        false,
    )
    .await;
    g.expect(&presence("pg")).await;
    g.assert_never("a cleared retained message", |r| r.topic == presence("pe"));

    // Retained and will messages elsewhere are refused.
    for topic in [
        "apps/app1/users/u1/conversations/u2/archive",
        "apps/app1/users/u2/presence/pa",
        "apps/app2/users/u1/presence/pa",
    ] {
        let mut options = options_for(&server, via, "bad-will", &tok("u1"));
        options.set_last_will(LastWill::new(topic, "{}", QoS::AtLeastOnce, false));
        match try_connect(options).await {
            Ok(_) => panic!("a will on {topic} was accepted"),
            Err(ConnectionError::ConnectionRefused(code)) => {
                assert_eq!(code, ConnectReturnCode::NotAuthorized, "a will on {topic}")
            }
            Err(_) => {} // closed without CONNACK: refused too
        }
    }
}
