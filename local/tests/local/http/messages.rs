//! Sending a direct message over HTTP: delivered, read (status 250 back on the sender's copy),
//! and a retry with the same `message_id` answered with the original, never stored twice.

use serde_json::json;

use crate::support::{APP, direct, eventually, find, start, token};

#[test]
fn direct_message_is_delivered_read_and_safely_retried() {
    let server = start();
    let (t1, t2) = (token("u1", APP, false), token("u2", APP, false));
    let mut body = direct("u2", "hello");
    body["message_id"] = json!("m-1");
    let answer = server.expect(
        200,
        "POST",
        &format!("/api/{APP}/messages"),
        &t1,
        Some(body.clone()),
    );
    let sent = &answer["message"];
    assert_eq!(sent["message_id"], "m-1", "{answer}");
    assert_eq!(sent["sender"], "u1");
    assert_eq!(sent["recipient"], "u2");
    assert_eq!(sent["text"], "hello");
    assert!(sent["timestamp"].is_u64(), "{answer}");

    let conversation = eventually("u2's conversation with u1", || {
        let list = server.conversations("u2", &t2);
        match find(&list, "conversWith", "u1") {
            Some(c) if c["unread_count"] == 1 && c["is_new"] == true => Ok(c.clone()),
            _ => Err(format!("{list:?}")),
        }
    });
    assert_eq!(conversation["last_message_text"], "hello");
    let copies = eventually("u2's copy", || {
        let timeline = server.timeline("u2", "u1", &t2);
        (!timeline.is_empty())
            .then_some(timeline.clone())
            .ok_or_else(|| format!("{timeline:?}"))
    });
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0]["message_id"], "m-1");
    assert_eq!(copies[0]["status"], 150, "{copies:?}");
    let own = server.timeline("u1", "u2", &t1);
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(own[0]["status"], 100, "{own:?}");
    let mine = server.conversations("u1", &t1);
    let mine = find(&mine, "conversWith", "u2").expect("u1's conversation with u2");
    assert_eq!(mine["is_new"], false, "{mine}");

    // u2 reads: u1 sees the return receipt.
    let read = server.expect(
        200,
        "POST",
        &format!("/api/{APP}/u2/conversations/u1/read"),
        &t2,
        None,
    );
    assert_eq!(read, json!({"success": true}));
    eventually("status 250 on u1's copy", || {
        let own = server.timeline("u1", "u2", &t1);
        (own.first().is_some_and(|m| m["status"] == 250))
            .then_some(())
            .ok_or_else(|| format!("{own:?}"))
    });
    let list = server.conversations("u2", &t2);
    let read = find(&list, "conversWith", "u1").expect("still listed");
    assert_eq!(read["unread_count"], 0, "{read}");
    assert_eq!(read["is_new"], false, "{read}");

    // The retry answers with the original message and delivers nothing twice.
    let retried = server.expect(
        200,
        "POST",
        &format!("/api/{APP}/messages"),
        &t1,
        Some(body),
    );
    assert_eq!(
        retried["message"], *sent,
        "the retry answered another message"
    );
    server.settle();
    let copies = server.timeline("u2", "u1", &t2);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0]["message_id"], "m-1");
    let list = server.conversations("u2", &t2);
    let conversation = find(&list, "conversWith", "u1").expect("still listed");
    assert_eq!(conversation["unread_count"], 0, "{conversation}");
}
