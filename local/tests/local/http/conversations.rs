//! A conversation archived (one side only; a new message brings it back), then deleted (the
//! caller's copies only), over HTTP.

use serde_json::json;

use crate::support::{APP, direct, eventually, find, start, token};

#[test]
fn archive_then_delete_a_conversation() {
    let server = start();
    let (t1, t2) = (token("u1", APP, false), token("u2", APP, false));
    server.send(&t1, direct("u2", "one"));
    server.settle();

    // Archive.
    let done = server.expect(
        200,
        "DELETE",
        &format!("/api/{APP}/conversations/u2"),
        &t1,
        None,
    );
    assert_eq!(done, json!({"success": true}));
    let active = server.conversations("u1", &t1);
    assert!(find(&active, "conversWith", "u2").is_none(), "{active:?}");
    for path in ["conversations/archived", "archived_conversations"] {
        let archived = server.result(&format!("/api/{APP}/u1/{path}"), &t1);
        let found =
            find(&archived, "conversWith", "u2").unwrap_or_else(|| panic!("{path}: {archived:?}"));
        assert_eq!(found["archived"], true, "{found}");
    }
    let one = server.result(&format!("/api/{APP}/u1/archived_conversations/u2"), &t1);
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one[0]["conversWith"], "u2");
    let none = server.result(&format!("/api/{APP}/u1/conversations/u2"), &t1);
    assert!(none.is_empty(), "{none:?}");
    // Only u1's side is archived.
    let theirs = server.conversations("u2", &t2);
    assert!(find(&theirs, "conversWith", "u1").is_some(), "{theirs:?}");

    // A new message brings it back.
    server.send(&t2, direct("u1", "two"));
    eventually("the conversation back in u1's active list", || {
        let active = server.conversations("u1", &t1);
        match find(&active, "conversWith", "u2") {
            Some(c) if c["last_message_text"] == "two" && c["archived"] == false => Ok(()),
            _ => Err(format!("{active:?}")),
        }
    });
    let archived = server.archived("u1", &t1);
    assert!(
        find(&archived, "conversWith", "u2").is_none(),
        "{archived:?}"
    );
    assert_eq!(server.timeline("u1", "u2", &t1).len(), 2);
    server.settle();

    // Delete: the conversation and u1's messages go, u2 keeps theirs.
    let delete = format!("/api/{APP}/conversations/u2?delete=true");
    let done = server.expect(200, "DELETE", &delete, &t1, None);
    assert_eq!(done, json!({"success": true}));
    for path in [
        "conversations/u2",
        "archived_conversations/u2",
        "conversations/u2/messages",
    ] {
        let gone = server.result(&format!("/api/{APP}/u1/{path}"), &t1);
        assert!(gone.is_empty(), "{path}: {gone:?}");
    }
    let active = server.conversations("u1", &t1);
    assert!(find(&active, "conversWith", "u2").is_none(), "{active:?}");
    let again = server.expect(404, "DELETE", &delete, &t1, None);
    assert_eq!(again["code"], "not_found");
    let theirs = server.timeline("u2", "u1", &t2);
    assert_eq!(theirs.len(), 2, "{theirs:?}");
    let theirs = server.conversations("u2", &t2);
    assert!(find(&theirs, "conversWith", "u1").is_some(), "{theirs:?}");
}
