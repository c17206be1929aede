//! The banner, the catch-all route, and the suite's own checks (snapshots see every change).

use super::conversations::READS;
use super::*;

#[tokio::test]
async fn the_banner_is_only_get_slash() {
    let w = world().await;
    let (status, content_type, text) =
        crate::common::call_raw(&w.api, None, "GET", "/", &[], None).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.is_some_and(|c| c.starts_with("text/plain")),
        "the banner is text"
    );
    assert!(text.starts_with("Chat21"), "{text:?}");
    assert_eq!(text, chat21::entry::http::BANNER);
    // Through `common::call` too, with or without a token.
    let (status, body) = w.call("GET", "/", Some(&token("u1")), None).await;
    assert_eq!((status, body), (200, json!(chat21::entry::http::BANNER)));

    for (what, route, method, path) in [
        (
            "the catch-all route on /nope",
            Route::Banner,
            "GET",
            "/nope",
        ),
        (
            "the catch-all route on an API-looking path",
            Route::Banner,
            "GET",
            "/api/app1/nothing/here/at/all",
        ),
        ("POST /", Route::Banner, "POST", "/"),
        ("DELETE /", Route::Banner, "DELETE", "/"),
    ] {
        let response = crate::common::call_raw(&w.api, Some(route), method, path, &[], None);
        w.refused_raw(what, 404, response).await;
        let t = token("u1");
        let headers = [("authorization", t.as_str())];
        let response = crate::common::call_raw(&w.api, Some(route), method, path, &headers, None);
        w.refused_raw(&format!("{what}, with a token"), 404, response)
            .await;
    }
}

// ---------------------------------------------------------------------------------------------
// The suite's own checks
// ---------------------------------------------------------------------------------------------

/// Successful calls that the contract says change nothing leave the snapshot as it was.
#[tokio::test]
async fn no_op_successes_change_nothing() {
    let w = world().await;
    let u1 = token("u1");
    let body = with(send_body(), "message_id", json!("m-1"));
    let first = w.ok("POST", SEND, &u1, Some(body.clone())).await;
    w.h.deliver_all().await;
    let before = snapshot(&w.h).await;
    let retry = w
        .ok(
            "POST",
            SEND,
            &u1,
            Some(with(body, "text", json!("changed"))),
        )
        .await;
    assert_eq!(retry, first, "a retry answers with the original message");
    w.ok(
        "POST",
        &format!("{TEAM_PATH}/members"),
        &u1,
        Some(json!({"member_id": "u2"})),
    )
    .await;
    w.ok(
        "PUT",
        &format!("{TEAM_PATH}/members"),
        &u1,
        Some(json!({"members": {"u1": 1, "u2": 1}})),
    )
    .await;
    for path in READS {
        w.ok("GET", path, &u1, None).await;
    }
    w.ok("GET", TEAM_PATH, &u1, None).await;
    w.h.deliver_all().await;
    assert_unchanged("no-op successes", &before, &snapshot(&w.h).await);
}

/// The snapshot that every refusal is checked against does see each kind of change.
#[tokio::test]
async fn snapshots_see_every_kind_of_change() {
    let w = world().await;
    let u1 = token("u1");
    let changes: [(&str, &str, String, Option<Value>); 7] = [
        ("POST", "send", SEND.to_string(), Some(send_body())),
        (
            "POST",
            "mark read",
            "/api/app1/u1/conversations/u2/read".into(),
            None,
        ),
        (
            "DELETE",
            "archive",
            "/api/app1/conversations/u2".into(),
            None,
        ),
        (
            "PUT",
            "rename",
            TEAM_PATH.into(),
            Some(json!({"group_name": "Other"})),
        ),
        (
            "PUT",
            "attributes",
            format!("{TEAM_PATH}/attributes"),
            Some(json!({"attributes": {}})),
        ),
        (
            "POST",
            "join",
            format!("{TEAM_PATH}/members"),
            Some(json!({"member_id": "u3"})),
        ),
        (
            "POST",
            "create",
            GROUPS.into(),
            Some(json!({"group_name": "N", "group_members": {}, "group_id": "group-new"})),
        ),
    ];
    for (method, what, path, body) in changes {
        w.h.deliver_all().await;
        let before = snapshot(&w.h).await;
        w.ok(method, &path, &u1, body).await;
        // Only what the call itself wrote: nothing delivered yet, the events cleared.
        w.h.events.take();
        assert_ne!(before, snapshot(&w.h).await, "{what} went unseen");
    }
}
