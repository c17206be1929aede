//! `POST /api/{app_id}/messages`: every refusal of a send, and the stored message it answers.

use super::*;
use chat21::ops::messages::MAX_FUTURE_SKEW_MS;

#[tokio::test]
async fn send_answers_the_stored_message() {
    let w = world().await;
    let body = json!({
        "sender_fullname": "One",
        "recipient_id": "u3",
        "recipient_fullname": "Three",
        "text": "hey",
        "attributes": {"a": 1},
        "metadata": {"src": "x", "width": 1, "height": 2},
    });
    let answer = w.ok("POST", SEND, &token("u1"), Some(body)).await;
    let keys: BTreeSet<&str> = answer
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["success", "message"]), "{answer}");
    let m = &answer["message"];
    assert!(
        m["message_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{m}"
    );
    assert!(m["timestamp"].is_u64(), "{m}");
    assert_eq!(m["status"], json!(100));
    assert_eq!(m["sender"], json!("u1"));
    assert_eq!(m["sender_fullname"], json!("One"));
    assert_eq!(m["recipient"], json!("u3"));
    assert_eq!(m["recipient_fullname"], json!("Three"));
    assert_eq!(m["text"], json!("hey"));
    assert_eq!(m["type"], json!("text"));
    assert_eq!(m["channel_type"], json!("direct"));
    assert_eq!(m["attributes"], json!({"a": 1}));
    assert_eq!(m["metadata"], json!({"src": "x", "width": 1, "height": 2}));
    assert_eq!(m["app_id"], json!(APP));
    assert_eq!(m["timelineOf"], json!("u1"));
    assert_eq!(m["conversWith"], json!("u3"));

    // An explicit timestamp is kept.
    let stamped = w
        .ok(
            "POST",
            SEND,
            &token("u1"),
            Some(with(send_body(), "timestamp", json!(1234))),
        )
        .await;
    assert_eq!(stamped["message"]["timestamp"], json!(1234));
}

#[tokio::test]
async fn send_refuses_bodies_that_are_not_json_objects() {
    let w = world().await;
    let u1 = token("u1");
    let cases = [
        send_case("malformed JSON", &u1, raw("{"), 400),
        send_case("malformed JSON (missing value)", &u1, raw(r#"{"a":}"#), 400),
        send_case("trailing garbage", &u1, raw(r#"{"a": 1} x"#), 400),
        send_case("not JSON at all", &u1, raw("hello"), 400),
        send_case("an empty JSON array", &u1, raw("[]"), 400),
        send_case(
            "an array of the fields",
            &u1,
            bytes(json!([send_body()])),
            400,
        ),
        send_case("a JSON string", &u1, raw(r#""x""#), 400),
        send_case("a JSON number", &u1, raw("12"), 400),
        send_case("JSON null", &u1, raw("null"), 400),
        send_case("JSON true", &u1, raw("true"), 400),
        send_case(
            "invalid UTF-8",
            &u1,
            Some(vec![b'{', 0xff, 0xfe, b'}']),
            400,
        ),
        send_case("no body (required fields missing)", &u1, None, 400),
        send_case("an empty body (required fields missing)", &u1, raw(""), 400),
        send_case(
            "a blank body (required fields missing)",
            &u1,
            raw("  \n"),
            400,
        ),
        send_case("an empty object", &u1, raw("{}"), 400),
    ];
    w.refuse_all(&cases).await;
}

#[tokio::test]
async fn send_refuses_missing_required_fields() {
    let w = world().await;
    let u1 = token("u1");
    for field in ["sender_fullname", "recipient_id", "recipient_fullname"] {
        let cases = [
            send_case(
                format!("missing {field}"),
                &u1,
                bytes(without(send_body(), field)),
                400,
            ),
            send_case(
                format!("{field}: null"),
                &u1,
                bytes(with(send_body(), field, Value::Null)),
                400,
            ),
        ];
        w.refuse_all(&cases).await;
        // The message names the field, so that a client knows what to fix.
        let (_, body) = w
            .call(
                "POST",
                SEND,
                Some(&u1),
                Some(without(send_body(), field).to_string().as_bytes()),
            )
            .await;
        assert!(
            body["message"].as_str().unwrap().contains(field),
            "{field}: {body}"
        );
    }
}

#[tokio::test]
async fn send_refuses_wrong_typed_fields() {
    let w = world().await;
    let u1 = token("u1");
    let wrong = [
        ("text", json!(5)),
        ("text", json!({"t": "x"})),
        ("recipient_id", json!(1)),
        ("recipient_id", json!(["u2"])),
        ("sender_fullname", json!(true)),
        ("recipient_fullname", json!(2)),
        ("type", json!([])),
        ("type", json!(1)),
        ("type", json!("")),
        ("channel_type", json!(1)),
        ("attributes", json!("x")),
        ("attributes", json!([1])),
        ("attributes", json!(7)),
        ("metadata", json!(3)),
        ("metadata", json!("x")),
        ("metadata", json!([])),
        ("message_id", json!(12)),
        ("sender_id", json!(12)),
        ("type", json!("t".repeat(1000))),
        ("attributes", nested(20)),
        ("metadata", nested(20)),
    ];
    let cases: Vec<Case> = wrong
        .into_iter()
        .map(|(field, value)| {
            send_case(
                format!("{field}: {value}"),
                &u1,
                bytes(with(send_body(), field, value)),
                400,
            )
        })
        .collect();
    w.refuse_all(&cases).await;
}

/// A JSON object nested `levels` deep.
fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| json!({ "k": inner }))
}

#[tokio::test]
async fn send_refuses_an_unknown_channel_type() {
    let w = world().await;
    let u1 = token("u1");
    let cases: Vec<Case> = ["broadcast", "Direct", "GROUP", "", "channel"]
        .into_iter()
        .map(|channel| {
            send_case(
                format!("channel_type {channel:?}"),
                &u1,
                bytes(with(send_body(), "channel_type", json!(channel))),
                400,
            )
        })
        .collect();
    w.refuse_all(&cases).await;
    w.ok(
        "POST",
        SEND,
        &u1,
        Some(with(send_body(), "channel_type", json!("direct"))),
    )
    .await;
}

/// Ids that API.md forbids.
fn bad_ids() -> Vec<(&'static str, String)> {
    vec![
        ("with #", "a#b".to_string()),
        ("with /", "a/b".to_string()),
        ("with .", "a.b".to_string()),
        ("with *", "a*b".to_string()),
        ("with a control character", "a\u{1}b".to_string()),
        ("with a newline", "a\nb".to_string()),
        ("with DEL", "a\u{7f}b".to_string()),
        ("of 129 characters", "x".repeat(129)),
        ("empty", String::new()),
    ]
}

#[tokio::test]
async fn send_refuses_invalid_ids() {
    let w = world().await;
    // An admin may send as someone else, so only the id itself can be wrong for `sender_id`.
    let boss = token_for("boss", APP, true);
    let u1 = token("u1");
    let mut cases = Vec::new();
    for (why, id) in bad_ids() {
        for (field, caller) in [
            ("recipient_id", &u1),
            ("message_id", &u1),
            ("sender_id", &boss),
        ] {
            cases.push(send_case(
                format!("{field} {why}"),
                caller,
                bytes(with(send_body(), field, json!(id))),
                400,
            ));
        }
        cases.push(send_case(
            format!("sender_id {why} from a non-admin"),
            &u1,
            bytes(with(send_body(), "sender_id", json!(id))),
            400,
        ));
    }
    // 128 characters each are fine, but not when together they make a real-time topic longer
    // than IoT Core's 256 bytes (the receipt topic names sender, recipient and message id).
    let longest = "x".repeat(128);
    cases.push(send_case(
        "a 128-character recipient and message id together",
        &u1,
        bytes(with(
            with(send_body(), "recipient_id", json!(longest)),
            "message_id",
            json!(longest),
        )),
        400,
    ));
    w.refuse_all(&cases).await;
    for (field, other) in [
        ("recipient_id", "message_id"),
        ("message_id", "recipient_id"),
    ] {
        let body = with(
            with(send_body(), field, json!(longest)),
            other,
            json!("short"),
        );
        let sent = w.ok("POST", SEND, &u1, Some(body)).await;
        let stored = if field == "recipient_id" {
            "recipient"
        } else {
            "message_id"
        };
        assert_eq!(sent["message"][stored], json!(longest));
    }
}

#[tokio::test]
async fn send_enforces_the_size_limits() {
    let w = world().await;
    let u1 = token("u1");
    let long_text = "a".repeat(64 * 1024 + 1);
    let text_body = with(send_body(), "text", json!(long_text)).to_string();
    assert!(text_body.len() < 256 * 1024);
    let huge_text = with(send_body(), "text", json!("a".repeat(300 * 1024))).to_string();
    let huge_attributes = with(
        send_body(),
        "attributes",
        json!({"blob": "b".repeat(260 * 1024)}),
    )
    .to_string();
    let padded = format!("{}{}", send_body(), " ".repeat(256 * 1024));
    let cases = [
        send_case("text over 64 KiB", &u1, raw(&text_body), 413),
        send_case(
            "text over 64 KiB in 2-byte characters",
            &u1,
            bytes(with(send_body(), "text", json!("é".repeat(32 * 1024 + 1)))),
            413,
        ),
        send_case("a body over 256 KiB (text)", &u1, raw(&huge_text), 413),
        send_case(
            "a body over 256 KiB (attributes)",
            &u1,
            raw(&huge_attributes),
            413,
        ),
        send_case(
            "a valid message padded over 256 KiB",
            &u1,
            raw(&padded),
            413,
        ),
    ];
    w.refuse_all(&cases).await;
    // Exactly 64 KiB of text is accepted.
    let sent = w
        .ok(
            "POST",
            SEND,
            &u1,
            Some(with(send_body(), "text", json!("a".repeat(64 * 1024)))),
        )
        .await;
    assert_eq!(sent["message"]["text"].as_str().unwrap().len(), 64 * 1024);
}

#[tokio::test]
async fn send_refuses_bad_timestamps() {
    let w = world().await;
    let u1 = token("u1");
    let cases: Vec<Case> = [
        json!(-1),
        json!(-1_700_000_000_000_i64),
        json!(1.5),
        json!(1_700_000_000_000.5),
        json!("1700000000000"),
        json!("now"),
        json!(true),
        json!([1]),
        json!({"ms": 1}),
        // Further ahead of the server's clock (the harness' clock reads 1.7e12) than allowed.
        json!(1_700_000_000_000_u64 + MAX_FUTURE_SKEW_MS + 60_000),
        json!(9_999_999_999_999_u64),
    ]
    .into_iter()
    .map(|ts| {
        send_case(
            format!("timestamp {ts}"),
            &u1,
            bytes(with(send_body(), "timestamp", ts)),
            400,
        )
    })
    .collect();
    w.refuse_all(&cases).await;
    let sent = w
        .ok(
            "POST",
            SEND,
            &u1,
            Some(with(send_body(), "timestamp", json!(0))),
        )
        .await;
    assert_eq!(sent["message"]["timestamp"], json!(0));
    // A whole number written with a fraction is a whole number; a little ahead is skew.
    let sent = w
        .ok(
            "POST",
            SEND,
            &u1,
            Some(with(send_body(), "timestamp", json!(1_700_000_060_000.0))),
        )
        .await;
    assert_eq!(sent["message"]["timestamp"], json!(1_700_000_060_000_u64));
}

#[tokio::test]
async fn sender_id_is_for_admins_only() {
    let w = world().await;
    let cases = [
        send_case(
            "a user sending as someone else",
            &token("u1"),
            bytes(with(send_body(), "sender_id", json!("u3"))),
            403,
        ),
        send_case(
            "a user sending as the recipient",
            &token("u1"),
            bytes(with(send_body(), "sender_id", json!("u2"))),
            403,
        ),
        send_case(
            "a non-admin role",
            &sign(json!({"sub": "u1", "app_id": APP, "exp": in_an_hour(),
                         "tiledesk_api_roles": "user"})),
            bytes(with(send_body(), "sender_id", json!("u3"))),
            403,
        ),
    ];
    w.refuse_all(&cases).await;

    // A user naming themself is fine.
    let own = w
        .ok(
            "POST",
            SEND,
            &token("u1"),
            Some(with(send_body(), "sender_id", json!("u1"))),
        )
        .await;
    assert_eq!(own["message"]["sender"], json!("u1"));

    // An admin sends as u3: the message is u3's, in u3's timeline, not the admin's.
    let body = with(
        with(send_body(), "sender_id", json!("u3")),
        "text",
        json!("on behalf"),
    );
    let sent = w
        .ok("POST", SEND, &token_for("boss", APP, true), Some(body))
        .await;
    assert_eq!(sent["message"]["sender"], json!("u3"));
    assert_eq!(sent["message"]["timelineOf"], json!("u3"));
    let id = sent["message"]["message_id"].clone();
    w.h.deliver_all().await;
    let mine = w.h.timeline("u3", "u2").await;
    assert_eq!(mine.len(), 1);
    assert_eq!(json!(mine[0].message_id), id);
    assert_eq!(w.h.timeline("u2", "u3").await.len(), 1);
    assert!(w.h.timeline("boss", "u2").await.is_empty());

    // Admin as a list of roles (Tiledesk tokens).
    let listed = sign(json!({"sub": "bot", "app_id": APP, "exp": in_an_hour(),
                             "tiledesk_api_roles": ["user", "admin"]}));
    let sent = w
        .ok(
            "POST",
            SEND,
            &listed,
            Some(with(send_body(), "sender_id", json!("u4"))),
        )
        .await;
    assert_eq!(sent["message"]["sender"], json!("u4"));
}

#[tokio::test]
async fn non_json_content_types_are_415() {
    let w = world().await;
    let u1 = token("u1");
    let body = send_body().to_string();
    for content_type in [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
    ] {
        let what = format!("send with Content-Type {content_type}");
        let headers = [
            ("authorization", u1.as_str()),
            ("content-type", content_type),
        ];
        let response =
            crate::common::call_raw(&w.api, None, "POST", SEND, &headers, Some(body.as_bytes()));
        w.refused_raw(&what, 415, response).await;
    }
    let group = json!({"group_name": "X", "group_members": {"u2": 1}}).to_string();
    let rename = json!({"group_name": "Renamed"}).to_string();
    let plain = [
        ("authorization", u1.as_str()),
        ("content-type", "text/plain"),
    ];
    let response =
        crate::common::call_raw(&w.api, None, "POST", GROUPS, &plain, Some(group.as_bytes()));
    w.refused_raw("create group as text/plain", 415, response)
        .await;
    let response = crate::common::call_raw(
        &w.api,
        None,
        "PUT",
        TEAM_PATH,
        &plain,
        Some(rename.as_bytes()),
    );
    w.refused_raw("rename group as text/plain", 415, response)
        .await;
    // JSON with parameters is JSON.
    let (status, _, text) = crate::common::call_raw(
        &w.api,
        None,
        "POST",
        SEND,
        &[
            ("authorization", &u1),
            ("content-type", "application/json; charset=utf-8"),
        ],
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn group_sends_need_a_known_group_and_membership() {
    let w = world().await;
    let cases = [
        send_case(
            "a stranger writing to the group",
            &token("u3"),
            bytes(with(send_body(), "recipient_id", json!(TEAM))),
            403,
        ),
        send_case(
            "an unknown group",
            &token("u1"),
            bytes(with(send_body(), "recipient_id", json!("group-nope"))),
            404,
        ),
        send_case(
            "an unknown group by channel_type, whose id may be a user's",
            &token("u1"),
            bytes(with(
                with(send_body(), "recipient_id", json!("nope")),
                "channel_type",
                json!("group"),
            )),
            400,
        ),
        send_case(
            "an inline group naming a user's id (it would take over u3's conversation with u4)",
            &token("u1"),
            bytes(with(
                with(
                    with(send_body(), "recipient_id", json!("u4")),
                    "channel_type",
                    json!("group"),
                ),
                "group",
                json!({"members": {"u3": 1}}),
            )),
            400,
        ),
        send_case(
            "an inline group naming an existing group the sender is not in",
            &token("u3"),
            bytes(with(
                with(send_body(), "recipient_id", json!(TEAM)),
                "group",
                json!({"members": {"u3": 1, "u4": 1}}),
            )),
            403,
        ),
    ];
    w.refuse_all(&cases).await;
    let sent = w.send_ok(&token("u1"), TEAM, "members may").await;
    assert_eq!(sent["channel_type"], json!("group"));
}
