//! Conversations: reads, paging, cursors, archive/delete and mark-read refusals.

use super::*;

pub(super) const READS: [&str; 6] = [
    "/api/app1/u1/conversations",
    "/api/app1/u1/conversations/archived",
    "/api/app1/u1/archived_conversations",
    "/api/app1/u1/conversations/u2",
    "/api/app1/u1/archived_conversations/u2",
    "/api/app1/u1/conversations/u2/messages",
];

#[tokio::test]
async fn reading_someone_elses_conversations_is_403_admins_may() {
    let w = world().await;
    let mut cases = Vec::new();
    for path in READS {
        for (who, t) in [("a stranger", token("u3")), ("the peer", token("u2"))] {
            cases.push(case(
                format!("{who} reading u1's"),
                "GET",
                path,
                Some(t),
                None,
                403,
            ));
        }
    }
    w.refuse_all(&cases).await;

    let boss = token_for("boss", APP, true);
    let list = w.list("/api/app1/u1/conversations", &boss).await;
    // Newest first: the group (u2 posted last), then u2.
    let peers: Vec<&Value> = list.iter().map(|c| &c["conversWith"]).collect();
    assert_eq!(peers, [&json!(TEAM), &json!("u2")], "{list:?}");
    assert!(list.iter().all(|c| c["timelineOf"] == json!("u1")));
    let detail = w.list("/api/app1/u1/conversations/u2", &boss).await;
    assert_eq!(detail.len(), 1);
    assert_eq!(detail[0]["last_message_text"], json!("hi back"));
    let messages = w
        .list("/api/app1/u1/conversations/u2/messages", &boss)
        .await;
    let texts: Vec<&Value> = messages.iter().map(|m| &m["text"]).collect();
    assert_eq!(texts, [&json!("hi back"), &json!("hello")]);
    assert!(
        w.list("/api/app1/u1/conversations/archived", &boss)
            .await
            .is_empty()
    );
    assert!(
        w.list("/api/app1/u1/archived_conversations/u2", &boss)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn lists_answer_success_and_result() {
    let w = world().await;
    let u1 = token("u1");
    let body = w.ok("GET", "/api/app1/u1/conversations", &u1, None).await;
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["success", "result"]),
        "no `next` when everything fits: {body}"
    );
    let rows = body["result"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{body}");
    assert_eq!(rows[0]["key"], json!(TEAM));
    assert_eq!(rows[0]["channel_type"], json!("group"));
    assert_eq!(rows[1]["key"], json!("u2"));
    assert_eq!(rows[1]["last_message_text"], json!("hi back"));
    assert_eq!(rows[1]["is_new"], json!(true));
    assert_eq!(rows[1]["unread_count"], json!(1));
    assert_eq!(rows[1]["archived"], json!(false));
    // The group conversation of u2, who is a member.
    let u2 = w.list("/api/app1/u2/conversations", &token("u2")).await;
    assert!(u2.iter().any(|c| c["conversWith"] == json!(TEAM)), "{u2:?}");
    // Detail of an unknown peer: an empty array, not an error.
    assert!(
        w.list("/api/app1/u1/conversations/u4", &u1)
            .await
            .is_empty()
    );
    // A group, for a member.
    let group = w.ok("GET", TEAM_PATH, &token("u2"), None).await;
    assert_eq!(group["result"]["uid"], json!(TEAM));
    assert_eq!(group["result"]["name"], json!("Team"));
    assert_eq!(group["result"]["owner"], json!("u1"));
    assert_eq!(group["result"]["members"], json!({"u1": 1, "u2": 1}));
}

#[tokio::test]
async fn bad_limits_are_400() {
    let w = world().await;
    let u1 = token("u1");
    let lists = [
        "/api/app1/u1/conversations",
        "/api/app1/u1/conversations/archived",
        "/api/app1/u1/archived_conversations",
        "/api/app1/u1/conversations/u2/messages",
    ];
    let mut cases = Vec::new();
    for path in lists {
        for limit in [
            "0",
            "1001",
            "abc",
            "-1",
            "2.5",
            "1e3",
            "99999999999999999999999",
        ] {
            cases.push(case(
                format!("limit={limit}"),
                "GET",
                format!("{path}?limit={limit}"),
                Some(u1.clone()),
                None,
                400,
            ));
        }
    }
    w.refuse_all(&cases).await;
    for path in lists {
        for limit in ["1", "1000"] {
            w.ok("GET", &format!("{path}?limit={limit}"), &u1, None)
                .await;
        }
    }
}

#[tokio::test]
async fn forged_cursors_are_400() {
    let w = world().await;
    let u1 = token("u1");
    // u1: active conversations with u2, u3 and u4; archived ones with u3 and u4.
    for peer in ["u3", "u4"] {
        w.send_ok(&u1, peer, "x").await;
    }
    let next = |body: &Value| body["next"].as_str().unwrap().to_string();
    let active = next(
        &w.ok("GET", "/api/app1/u1/conversations?limit=1", &u1, None)
            .await,
    );
    let message = next(
        &w.ok(
            "GET",
            "/api/app1/u1/conversations/u2/messages?limit=1",
            &u1,
            None,
        )
        .await,
    );
    for peer in ["u3", "u4"] {
        w.ok(
            "DELETE",
            &format!("/api/app1/conversations/{peer}"),
            &u1,
            None,
        )
        .await;
    }
    let archived = next(
        &w.ok(
            "GET",
            "/api/app1/u1/conversations/archived?limit=1",
            &u1,
            None,
        )
        .await,
    );
    w.h.deliver_all().await;

    let forged = [
        ("!!!", "!!!".to_string()),
        ("base64url of garbage", URL_SAFE_NO_PAD.encode("garbage")),
        (
            "base64url of invalid UTF-8",
            URL_SAFE_NO_PAD.encode([0xff, 0xfe, 0xfd]),
        ),
        (
            "base64url of a bad timestamp",
            URL_SAFE_NO_PAD.encode("active#12#u2"),
        ),
        (
            "base64url of a forbidden id",
            URL_SAFE_NO_PAD.encode("active#1700000000000#u.2"),
        ),
    ];
    let mut cases = Vec::new();
    for path in [
        "/api/app1/u1/conversations",
        "/api/app1/u1/conversations/archived",
        "/api/app1/u1/conversations/u2/messages",
    ] {
        for (why, cursor) in &forged {
            cases.push(case(
                format!("cursor {why}"),
                "GET",
                format!("{path}?cursor={cursor}"),
                Some(u1.clone()),
                None,
                400,
            ));
        }
    }
    let misused = [
        (
            "an active-list cursor on the archived list",
            "/api/app1/u1/conversations/archived",
            &active,
        ),
        (
            "an active-list cursor on the archived alias",
            "/api/app1/u1/archived_conversations",
            &active,
        ),
        (
            "an archived-list cursor on the active list",
            "/api/app1/u1/conversations",
            &archived,
        ),
        (
            "a message cursor on the conversation list",
            "/api/app1/u1/conversations",
            &message,
        ),
        (
            "a conversation cursor on a timeline",
            "/api/app1/u1/conversations/u2/messages",
            &active,
        ),
    ];
    for (why, path, cursor) in misused {
        cases.push(case(
            why,
            "GET",
            format!("{path}?cursor={cursor}"),
            Some(u1.clone()),
            None,
            400,
        ));
    }
    w.refuse_all(&cases).await;

    // Each cursor works on its own list.
    for (path, cursor) in [
        ("/api/app1/u1/conversations", &active),
        ("/api/app1/u1/conversations/archived", &archived),
        ("/api/app1/u1/archived_conversations", &archived),
        ("/api/app1/u1/conversations/u2/messages", &message),
    ] {
        let rest = w
            .list(&format!("{path}?limit=1&cursor={cursor}"), &u1)
            .await;
        assert_eq!(rest.len(), 1, "{path}");
    }
}

#[tokio::test]
async fn delete_conversation_refusals() {
    let w = world().await;
    let u1 = Some(token("u1"));
    let boss = Some(token_for("boss", APP, true));
    let path = "/api/app1/conversations/u2";
    let cases = [
        case(
            "delete=maybe",
            "DELETE",
            format!("{path}?delete=maybe"),
            u1.clone(),
            None,
            400,
        ),
        case(
            "delete=yes",
            "DELETE",
            format!("{path}?delete=yes"),
            u1.clone(),
            None,
            400,
        ),
        case(
            "delete=1",
            "DELETE",
            format!("{path}?delete=1"),
            u1.clone(),
            None,
            400,
        ),
        case(
            "a non-admin acting for another user",
            "DELETE",
            path,
            u1.clone(),
            bytes(json!({"user_id": "u2"})),
            403,
        ),
        case(
            "a non-admin acting for another user, delete=true",
            "DELETE",
            format!("{path}?delete=true"),
            u1.clone(),
            bytes(json!({"user_id": "u2"})),
            403,
        ),
        case(
            "user_id not a string",
            "DELETE",
            path,
            boss.clone(),
            bytes(json!({"user_id": 5})),
            400,
        ),
        case(
            "user_id not a valid id (admin)",
            "DELETE",
            path,
            boss.clone(),
            bytes(json!({"user_id": "u.2"})),
            400,
        ),
        case(
            "a malformed body",
            "DELETE",
            path,
            u1.clone(),
            raw("{"),
            400,
        ),
        case(
            "a body that is an array",
            "DELETE",
            path,
            u1.clone(),
            raw("[]"),
            400,
        ),
        case(
            "an unknown conversation (archive)",
            "DELETE",
            "/api/app1/conversations/u4",
            u1.clone(),
            None,
            404,
        ),
        case(
            "an unknown conversation (delete)",
            "DELETE",
            "/api/app1/conversations/u4?delete=true",
            u1.clone(),
            None,
            404,
        ),
        case(
            "an unknown conversation of another user (admin)",
            "DELETE",
            "/api/app1/conversations/u4",
            boss.clone(),
            bytes(json!({"user_id": "u2"})),
            404,
        ),
        case(
            "the admin's own, unknown, conversation",
            "DELETE",
            path,
            boss.clone(),
            None,
            404,
        ),
        case(
            "a recipient with *",
            "DELETE",
            "/api/app1/conversations/a%2Ab",
            u1.clone(),
            None,
            400,
        ),
        case(
            "a recipient with #",
            "DELETE",
            "/api/app1/conversations/a%23b?delete=true",
            u1.clone(),
            None,
            400,
        ),
    ];
    w.refuse_all(&cases).await;

    // An admin archives u2's conversation with u1: only u2's row moves.
    let before_u1 = w.h.conversation("u1", "u2").await;
    w.ok(
        "DELETE",
        "/api/app1/conversations/u1",
        boss.as_deref().unwrap(),
        Some(json!({"user_id": "u2"})),
    )
    .await;
    assert!(w.h.conversation("u2", "u1").await.unwrap().archived);
    assert_eq!(w.h.conversation("u1", "u2").await, before_u1);
    // And deletes it for good: u2's copies go, u1's stay.
    w.ok(
        "DELETE",
        "/api/app1/conversations/u1?delete=true",
        boss.as_deref().unwrap(),
        Some(json!({"user_id": "u2"})),
    )
    .await;
    assert_eq!(w.h.conversation("u2", "u1").await, None);
    assert!(w.h.timeline("u2", "u1").await.is_empty());
    assert_eq!(w.h.timeline("u1", "u2").await.len(), 2);
    // A user naming themself is fine.
    w.ok(
        "DELETE",
        "/api/app1/conversations/u2?delete=false",
        u1.as_deref().unwrap(),
        Some(json!({"user_id": "u1"})),
    )
    .await;
    assert!(w.h.conversation("u1", "u2").await.unwrap().archived);
}

#[tokio::test]
async fn mark_read_refusals() {
    let w = world().await;
    let cases = [
        case(
            "a stranger marking u1's conversation",
            "POST",
            "/api/app1/u1/conversations/u2/read",
            Some(token("u3")),
            None,
            403,
        ),
        case(
            "the peer marking u1's side",
            "POST",
            "/api/app1/u1/conversations/u2/read",
            Some(token("u2")),
            None,
            403,
        ),
        case(
            "an unknown conversation",
            "POST",
            "/api/app1/u1/conversations/u4/read",
            Some(token("u1")),
            None,
            404,
        ),
        case(
            "an unknown group conversation",
            "POST",
            "/api/app1/u1/conversations/group-nope/read",
            Some(token("u1")),
            None,
            404,
        ),
        case(
            "a peer id with *",
            "POST",
            "/api/app1/u1/conversations/a%2Ab/read",
            Some(token("u1")),
            None,
            400,
        ),
        case(
            "a user id with . (admin)",
            "POST",
            "/api/app1/u%2E1/conversations/u2/read",
            Some(token_for("boss", APP, true)),
            None,
            400,
        ),
    ];
    w.refuse_all(&cases).await;
    assert!(w.h.conversation("u1", "u2").await.unwrap().is_new);
    w.ok(
        "POST",
        "/api/app1/u1/conversations/u2/read",
        &token("u1"),
        None,
    )
    .await;
    let read = w.h.conversation("u1", "u2").await.unwrap();
    assert!(!read.is_new);
    assert_eq!(read.unread_count, 0);
    // An admin may mark for a user.
    w.ok(
        "POST",
        "/api/app1/u2/conversations/u1/read",
        &token_for("boss", APP, true),
        None,
    )
    .await;
}

#[tokio::test]
async fn forbidden_characters_in_path_ids_are_400() {
    let w = world().await;
    let u1 = token("u1");
    let boss = token_for("boss", APP, true);
    let long = "x".repeat(129);
    let mut cases = Vec::new();
    for (why, encoded) in [
        ("*", "a%2Ab"),
        ("#", "a%23b"),
        (".", "a%2Eb"),
        (". unencoded", "a.b"),
        ("an encoded /", "a%2Fb"),
        ("a control character", "a%01b"),
        ("a tab", "a%09b"),
        ("129 characters", long.as_str()),
    ] {
        for (route, path, t) in [
            (
                "detail",
                format!("/api/app1/u1/conversations/{encoded}"),
                &u1,
            ),
            (
                "archived detail",
                format!("/api/app1/u1/archived_conversations/{encoded}"),
                &u1,
            ),
            (
                "messages",
                format!("/api/app1/u1/conversations/{encoded}/messages"),
                &u1,
            ),
            (
                "list of a bad user (admin)",
                format!("/api/app1/{encoded}/conversations"),
                &boss,
            ),
            (
                "messages of a bad user (admin)",
                format!("/api/app1/{encoded}/conversations/u2/messages"),
                &boss,
            ),
            ("group", format!("/api/app1/groups/{encoded}"), &u1),
        ] {
            cases.push(case(
                format!("{route}, id with {why}"),
                "GET",
                path,
                Some(t.clone()),
                None,
                400,
            ));
        }
        cases.push(case(
            format!("rename a group with {why}"),
            "PUT",
            format!("/api/app1/groups/{encoded}"),
            Some(u1.clone()),
            bytes(json!({"group_name": "X"})),
            400,
        ));
        cases.push(case(
            format!("remove a member with {why}"),
            "DELETE",
            format!("{TEAM_PATH}/members/{encoded}"),
            Some(u1.clone()),
            None,
            400,
        ));
    }
    w.refuse_all(&cases).await;
}

#[tokio::test]
async fn paging_reaches_every_message_once() {
    let w = empty();
    let u1 = token("u1");
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(w.send_ok(&u1, "u2", &format!("m{i}")).await["message_id"].clone());
    }
    w.h.deliver_all().await;
    for (owner, peer) in [("u1", "u2"), ("u2", "u1")] {
        let base = format!("/api/app1/{owner}/conversations/{peer}/messages?limit=2");
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        let mut path = base.clone();
        loop {
            let body = w.ok("GET", &path, &token(owner), None).await;
            let items = body["result"].as_array().unwrap();
            sizes.push(items.len());
            seen.extend(items.iter().cloned());
            match body["next"].as_str() {
                Some(next) => path = format!("{base}&cursor={next}"),
                None => break,
            }
            assert!(sizes.len() < 10, "paging does not end");
        }
        assert_eq!(sizes, [2, 2, 1], "{owner}");
        let ids: Vec<Value> = seen.iter().map(|m| m["message_id"].clone()).collect();
        let newest_first: Vec<Value> = sent.iter().rev().cloned().collect();
        assert_eq!(
            ids, newest_first,
            "{owner}: every message once, newest first"
        );
    }
    // Exactly one full page: no `next`.
    let body = w
        .ok(
            "GET",
            "/api/app1/u1/conversations/u2/messages?limit=5",
            &u1,
            None,
        )
        .await;
    assert_eq!(body["result"].as_array().unwrap().len(), 5);
    assert!(body.get("next").is_none(), "{body}");

    // Conversation lists page the same way.
    for peer in ["u3", "u4", "boss"] {
        w.send_ok(&u1, peer, "x").await;
    }
    let base = "/api/app1/u1/conversations?limit=3";
    let first = w.ok("GET", base, &u1, None).await;
    let next = first["next"].as_str().unwrap();
    let second = w
        .ok("GET", &format!("{base}&cursor={next}"), &u1, None)
        .await;
    assert!(second.get("next").is_none(), "{second}");
    let peers: Vec<&Value> = first["result"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["result"].as_array().unwrap())
        .map(|c| &c["conversWith"])
        .collect();
    assert_eq!(
        peers,
        [&json!("boss"), &json!("u4"), &json!("u3"), &json!("u2")]
    );
}
