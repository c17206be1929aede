//! Connecting: a valid token connects whatever the user name, and only into its own
//! tenant's tree; missing, forged and expired tokens get CONNACK 5; the connection is closed at
//! the token's `exp`; keep-alive drops a silent client and keeps a pinging one.

use super::*;

pub(super) async fn a_valid_token_connects_whatever_the_user_name(via: Via) {
    let server = start();
    if via == Via::Ws {
        // MQTT over WebSocket is served on /ws only.
        let mut stream = TcpStream::connect(("127.0.0.1", server.ws_port))
            .await
            .unwrap();
        stream
            .write_all(upgrade_request(server.ws_port, "/mqtt").as_bytes())
            .await
            .unwrap();
        let mut answer = vec![0u8; 1024];
        let n = timeout(WAIT, stream.read(&mut answer))
            .await
            .expect("an answer to an upgrade on /mqtt")
            .unwrap();
        let head = String::from_utf8_lossy(&answer[..n]);
        assert!(
            head.starts_with("HTTP/1.1 404"),
            "an upgrade on /mqtt: {head}"
        );
    }
    // The user name names someone else: the connection is still the token's user's.
    for (i, user_name) in ["JWT", "u2", "any thing"].into_iter().enumerate() {
        let mut options = options(&server, via, &format!("c-{i}"));
        options.set_credentials(user_name, tok("u1"));
        let mut mqtt = try_connect(options)
            .await
            .unwrap_or_else(|e| panic!("user name {user_name:?}: refused: {e}"));
        let codes = mqtt
            .subscribe(&["apps/app1/users/u1/#", "apps/app1/users/u2/#"])
            .await;
        assert_eq!(
            codes,
            vec![
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::Failure
            ],
            "user name {user_name:?}"
        );
        let sent = send(&server, "u3", direct("u1", &format!("hello {i}"))).await;
        let got = mqtt
            .expect("apps/app1/users/u1/messages/u3/clientadded")
            .await;
        assert_eq!(got.payload["message_id"], sent["message_id"]);
        mqtt.disconnect().await;
    }
}

pub(super) async fn missing_forged_and_expired_tokens_are_refused_with_code_5(via: Via) {
    let server = start();
    let now = now_secs();
    let hs256 = jsonwebtoken::Algorithm::HS256;
    let claims = |exp: u64| json!({"sub": "u1", "app_id": APP, "exp": exp});
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no credentials at all", None),
        ("a user name without password", Some(String::new())),
        ("a password that is not a JWT", Some("not-a-jwt".into())),
        (
            "a forged signature",
            Some(signed(&claims(now + 3600), hs256, "another-key")),
        ),
        (
            "a token expired an hour ago",
            Some(signed(&claims(now - 3600), hs256, KEY)),
        ),
        (
            "a token of another algorithm (HS384)",
            Some(signed(
                &claims(now + 3600),
                jsonwebtoken::Algorithm::HS384,
                KEY,
            )),
        ),
        (
            "a token without app_id",
            Some(signed(&json!({"sub": "u1", "exp": now + 3600}), hs256, KEY)),
        ),
        (
            "a token whose sub is not a valid id",
            Some(signed(
                &json!({"sub": "u+1", "app_id": APP, "exp": now + 3600}),
                hs256,
                KEY,
            )),
        ),
    ];
    for (i, (what, password)) in cases.into_iter().enumerate() {
        let mut options = options(&server, via, &format!("refused-{i}"));
        if let Some(password) = password {
            // rumqttc sends no password field for an empty one.
            options.set_credentials("JWT", password);
        }
        match try_connect(options).await {
            Ok(_) => panic!("{what}: the connection was accepted"),
            Err(ConnectionError::ConnectionRefused(code)) => {
                assert_eq!(code, ConnectReturnCode::NotAuthorized, "{what}")
            }
            Err(e) => panic!("{what}: expected CONNACK 5, got {e}"),
        }
    }
    // A raw CONNECT without password: CONNACK 5, then the close.
    let mut raw = Raw::open(&server, via, "raw-no-password", None).await;
    raw.send(&connect_packet("raw-no-password", 30, None)).await;
    raw.expect_packet(0x20, &[0, 5], "CONNACK 5").await;
    assert!(
        raw.closed_within(WAIT).await.is_some(),
        "a refused connection stays open"
    );
    // And the valid token still works.
    connect_as(&server, via, "u1", "fine")
        .await
        .disconnect()
        .await;
}

pub(super) async fn another_tenants_token_is_valid_in_its_own_tree_only(via: Via) {
    let server = start();
    let mut other = try_connect(options_for(
        &server,
        via,
        "tenant-2",
        &token("u1", "app2", false),
    ))
    .await
    .expect("a token of app2 connects");
    let codes = other
        .subscribe(&[
            "apps/app2/users/u1/#",
            "apps/app1/users/u1/#",
            "apps/+/users/u1/#",
        ])
        .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Failure
        ]
    );
    let mut here = online(&server, via, "u1").await;

    // A message to u1 in app1 reaches app1's u1 only.
    let sent = send(&server, "u2", direct("u1", "in app1")).await;
    let got = here
        .expect("apps/app1/users/u1/messages/u2/clientadded")
        .await;
    assert_eq!(got.payload["message_id"], sent["message_id"]);
    // A message to u1 in app2 reaches app2's u1 only, on app2's topics.
    let sent = send_in(&server, "app2", "u2", direct("u1", "in app2")).await;
    let got = other
        .expect("apps/app2/users/u1/messages/u2/clientadded")
        .await;
    assert_fields(
        &got.payload,
        json!({"message_id": sent["message_id"], "app_id": "app2", "text": "in app2",
               "timelineOf": "u1", "conversWith": "u2", "status": 150}),
        "app2's copy",
    );
    // Both pushes went out in order through one deliver step: each client has seen all it
    // will ever see of them.
    other.assert_never("an app1 topic", |r| !r.topic.starts_with("apps/app2/"));
    here.assert_never("an app2 topic", |r| !r.topic.starts_with("apps/app1/"));
    here.assert_never("app2's message", |r| r.payload["text"] == "in app2");
}

pub(super) async fn the_connection_is_closed_at_the_tokens_exp(via: Via) {
    let server = start();
    let exp = now_secs() + 3;
    let short = signed(
        &json!({"sub": "u1", "app_id": APP, "exp": exp}),
        jsonwebtoken::Algorithm::HS256,
        KEY,
    );
    let mut mqtt = try_connect(options_for(&server, via, "short-lived", &short))
        .await
        .expect("a token valid for 3 more seconds connects");
    let connected = Instant::now();
    mqtt.subscribe_ok("apps/app1/users/u1/#").await;
    mqtt.expect_closed(Duration::from_secs(8)).await;
    let lived = connected.elapsed();
    let now = now_secs();
    assert!(
        now >= exp,
        "closed {lived:?} after connecting, before the token's exp ({now} < {exp}): {:?}",
        mqtt.closed
    );
    assert!(
        lived <= Duration::from_secs(5),
        "closed {lived:?} after connecting, with exp at most 3 s away"
    );
}

pub(super) async fn keep_alive_drops_a_silent_client_and_keeps_a_pinging_one(via: Via) {
    let server = start();
    // Keep-alive 1 s, then silence: gone after 1.5 s.
    let mut silent = Raw::online(&server, via, "u1", 1).await;
    let (after, _) = silent
        .closed_within(Duration::from_secs(4))
        .await
        .expect("a client silent for 4 s with keep-alive 1 s is still connected");
    assert!(
        after >= Duration::from_millis(1000) && after <= Duration::from_millis(3000),
        "dropped {after:?} after CONNACK, expected about 1.5 s"
    );
    // Keep-alive 1 s with a PINGREQ every 0.6 s: still there after 3 s.
    let mut pinging = Raw::online(&server, via, "u1", 1).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        pinging.send(&PINGREQ).await;
        pinging.expect_packet(0xD0, &[], "PINGRESP").await;
        sleep(Duration::from_millis(600)).await;
    }
    pinging
        .send(&subscribe_packet(7, "apps/app1/users/u1/#", 1))
        .await;
    pinging
        .expect_packet(0x90, &[0, 7, 1], "SUBACK after 3 s of pings")
        .await;
    // rumqttc with keep-alive 1 s pings by itself and stays connected.
    let mut options = options_for(&server, via, "keep-alive-1", &tok("u1"));
    options.set_keep_alive(Duration::from_secs(1));
    let mut mqtt = try_connect(options).await.unwrap();
    sleep(Duration::from_secs(3)).await;
    mqtt.subscribe_ok("apps/app1/users/u1/#").await;
    assert!(mqtt.closed.is_none(), "{:?}", mqtt.closed);
}
