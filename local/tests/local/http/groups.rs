//! A group's life over HTTP: created (its id then taken), read, renamed, joined, messaged, its
//! members set, left; each step refused to those it is not for.

use serde_json::json;

use crate::support::{APP, direct, eventually, find, start, token};

#[test]
fn group_lifecycle() {
    let server = start();
    let [t1, t2, t3, t4] = ["u1", "u2", "u3", "u4"].map(|u| token(u, APP, false));
    let stranger = token("stranger", APP, false);
    let groups = format!("/api/{APP}/groups");
    let group = format!("{groups}/group-team");

    let created = server.expect(
        201,
        "POST",
        &groups,
        &t1,
        Some(json!({"group_name": "Team", "group_id": "group-team",
                    "group_members": {"u2": 1}})),
    );
    assert_eq!(created["group"]["uid"], "group-team", "{created}");
    assert_eq!(created["group"]["owner"], "u1");
    assert_eq!(created["group"]["members"], json!({"u1": 1, "u2": 1}));
    // The id is taken now.
    server.expect(
        409,
        "POST",
        &groups,
        &t2,
        Some(json!({"group_name": "Again", "group_id": "group-team", "group_members": {}})),
    );

    let read = server.expect(200, "GET", &group, &t2, None);
    assert_eq!(read["result"]["name"], "Team", "{read}");
    let refused = server.expect(403, "GET", &group, &stranger, None);
    assert_eq!(refused["code"], "forbidden");
    server.expect(404, "GET", &format!("{groups}/group-none"), &t1, None);

    // Rename: the owner may, a member may not.
    server.expect(403, "PUT", &group, &t2, Some(json!({"group_name": "Mine"})));
    server.expect(
        200,
        "PUT",
        &group,
        &t1,
        Some(json!({"group_name": "Team 2"})),
    );
    let read = server.expect(200, "GET", &group, &t2, None);
    assert_eq!(read["result"]["name"], "Team 2", "{read}");

    // Join: the owner adds u3.
    let members = format!("{group}/members");
    server.expect(200, "POST", &members, &t1, Some(json!({"member_id": "u3"})));
    let read = server.expect(200, "GET", &group, &t3, None);
    assert_eq!(
        read["result"]["members"],
        json!({"u1": 1, "u2": 1, "u3": 1})
    );

    // A group message reaches every member's timeline.
    let mut body = direct("group-team", "hi team");
    body["channel_type"] = json!("group");
    let sent = server.send(&t2, body);
    for (user, token) in [("u1", &t1), ("u2", &t2), ("u3", &t3)] {
        eventually(&format!("the group message in {user}'s timeline"), || {
            let timeline = server.timeline(user, "group-team", token);
            match find(
                &timeline,
                "message_id",
                sent["message_id"].as_str().unwrap(),
            ) {
                Some(m) if m["status"] == 150 => Ok(()),
                _ => Err(format!("{timeline:?}")),
            }
        });
    }
    // Strangers may not post.
    let mut body = direct("group-team", "let me in");
    body["channel_type"] = json!("group");
    server.expect(
        403,
        "POST",
        &format!("/api/{APP}/messages"),
        &stranger,
        Some(body),
    );

    // Set members: u3 out, u4 in (with the history).
    server.expect(
        200,
        "PUT",
        &members,
        &t1,
        Some(json!({"members": {"u1": 1, "u2": 1, "u4": 1}})),
    );
    let read = server.expect(200, "GET", &group, &t1, None);
    assert_eq!(
        read["result"]["members"],
        json!({"u1": 1, "u2": 1, "u4": 1})
    );
    server.expect(403, "GET", &group, &t3, None);
    eventually("the history in u4's timeline", || {
        let timeline = server.timeline("u4", "group-team", &t4);
        find(&timeline, "text", "hi team")
            .map(|_| ())
            .ok_or_else(|| format!("{timeline:?}"))
    });
    // The same set again changes nothing.
    server.expect(
        200,
        "PUT",
        &members,
        &t1,
        Some(json!({"members": {"u1": 1, "u2": 1, "u4": 1}})),
    );

    // u2 leaves, and their conversation with the group ends with MEMBER_LEFT_GROUP.
    server.expect(200, "DELETE", &format!("{members}/u2"), &t2, None);
    server.expect(404, "DELETE", &format!("{members}/u2"), &t1, None);
    server.expect(403, "GET", &group, &t2, None);
    let left = eventually("MEMBER_LEFT_GROUP in u2's timeline", || {
        let timeline = server.timeline("u2", "group-team", &t2);
        match timeline.first() {
            Some(m) if m["attributes"]["messagelabel"]["key"] == "MEMBER_LEFT_GROUP" => {
                Ok(m.clone())
            }
            _ => Err(format!("{timeline:?}")),
        }
    });
    assert_eq!(left["sender"], "system", "{left}");
    assert_eq!(
        left["attributes"]["messagelabel"]["parameters"]["member_id"], "u2",
        "{left}"
    );
    let conversation = server.result(&format!("/api/{APP}/u2/conversations/group-team"), &t2);
    assert_eq!(conversation.len(), 1, "{conversation:?}");
    assert_eq!(
        conversation[0]["attributes"]["messagelabel"]["key"], "MEMBER_LEFT_GROUP",
        "{conversation:?}"
    );
    // The remaining members got it too.
    eventually("MEMBER_LEFT_GROUP in u1's timeline", || {
        let timeline = server.timeline("u1", "group-team", &t1);
        match timeline.first() {
            Some(m) if m["attributes"]["messagelabel"]["parameters"]["member_id"] == "u2" => Ok(()),
            _ => Err(format!("{timeline:?}")),
        }
    });
    // Nothing sent to the group afterwards reaches u2.
    let mut body = direct("group-team", "after u2 left");
    body["channel_type"] = json!("group");
    server.send(&t1, body);
    server.settle();
    let timeline = server.timeline("u2", "group-team", &t2);
    assert!(
        find(&timeline, "text", "after u2 left").is_none(),
        "{timeline:?}"
    );
    let timeline = server.timeline("u4", "group-team", &t4);
    assert!(
        find(&timeline, "text", "after u2 left").is_some(),
        "{timeline:?}"
    );
}
