//! What the server publishes: a direct message to recipient and sender, group changes to
//! every member and to removed ones, a read receipt to the sender, a read conversation to
//! reader and peer, archive, un-archive and delete to the owner.

use super::*;

pub(super) async fn a_direct_message_reaches_recipient_and_sender(via: Via) {
    let server = start();
    let mut u1 = online(&server, via, "u1").await;
    let mut u2 = online(&server, via, "u2").await;
    let to_u2 = "apps/app1/users/u2/messages/u1/clientadded";
    let to_u1 = "apps/app1/users/u1/messages/u2/clientadded";

    let sent = send(&server, "u1", direct("u2", "no attributes")).await;
    let common = json!({"message_id": sent["message_id"], "sender": "u1",
        "sender_fullname": "Sender", "recipient": "u2", "recipient_fullname": "Recipient",
        "text": "no attributes", "type": "text", "channel_type": "direct", "app_id": APP,
        "timestamp": sent["timestamp"]});
    let theirs = u2.expect(to_u2).await;
    assert_fields(&theirs.payload, common.clone(), "the recipient's copy");
    assert_fields(
        &theirs.payload,
        json!({"timelineOf": "u2", "conversWith": "u1", "status": 150}),
        "the recipient's copy",
    );
    let mine = u1.expect(to_u1).await;
    assert_fields(&mine.payload, common, "the sender's copy");
    assert_fields(
        &mine.payload,
        json!({"timelineOf": "u1", "conversWith": "u2", "status": 100}),
        "the sender's copy",
    );
    for copy in [&theirs.payload, &mine.payload] {
        assert!(copy.get("attributes").is_none(), "{copy}");
        assert!(copy.get("metadata").is_none(), "{copy}");
    }

    // `null` there, as Chat21's client sends: no field either.
    let mut body = direct("u2", "null attributes");
    body["attributes"] = Value::Null;
    body["metadata"] = Value::Null;
    send(&server, "u1", body).await;
    // With attributes and metadata: delivered as sent.
    let mut body = direct("u2", "with attributes");
    body["attributes"] = json!({"updateconversation": true, "k": "v"});
    body["metadata"] = json!({"src": "https://x/y.png", "width": 1, "height": 2});
    send(&server, "u1", body.clone()).await;
    for (client, topic) in [(&mut u2, to_u2), (&mut u1, to_u1)] {
        let null = client
            .expect_where(topic, "null attributes", |p| p["text"] == "null attributes")
            .await;
        assert!(null.payload.get("attributes").is_none(), "{}", null.payload);
        assert!(null.payload.get("metadata").is_none(), "{}", null.payload);
        let with = client
            .expect_where(topic, "with attributes", |p| p["text"] == "with attributes")
            .await;
        assert_eq!(with.payload["attributes"], body["attributes"]);
        assert_eq!(with.payload["metadata"], body["metadata"]);
        // The copies of one conversation arrive in the order they were written.
        assert!(null.seq < with.seq, "{}", client.report());
    }
    assert_eq!(u2.count(to_u2), 3);
    assert_eq!(u1.count(to_u1), 3);
}

fn group_of(payload: &Value, members: &[&str]) -> bool {
    let expected: serde_json::Map<String, Value> =
        members.iter().map(|m| (m.to_string(), json!(1))).collect();
    payload["members"] == Value::Object(expected)
}

fn label(payload: &Value, key: &str, member: Option<&str>) -> bool {
    let label = &payload["attributes"]["messagelabel"];
    label["key"] == key && member.is_none_or(|m| label["parameters"]["member_id"] == m)
}

pub(super) async fn group_changes_reach_every_member_and_removed_ones(via: Via) {
    let server = start();
    let group = "group-g1";
    let base = format!("/api/{APP}/groups/{group}");
    let updated = |user: &str| format!("apps/{APP}/users/{user}/groups/{group}/clientupdated");
    let added = |user: &str| format!("apps/{APP}/users/{user}/messages/{group}/clientadded");
    let mut clients = std::collections::HashMap::new();
    for user in ["o", "m1", "m2", "m3", "m4"] {
        clients.insert(user, online(&server, via, user).await);
    }
    macro_rules! c {
        ($user:expr) => {
            clients.get_mut($user).unwrap()
        };
    }

    // Create: every member gets the system messages (and nothing on `groups/`, below).
    ok(
        &server,
        "POST",
        &format!("/api/{APP}/groups"),
        &tok("o"),
        Some(json!({"group_name": "G1", "group_id": group, "group_members": {"m1": 1, "m2": 1}})),
    )
    .await;
    for user in ["o", "m1", "m2"] {
        let created = c!(user)
            .expect_where(&added(user), "GROUP_CREATED", |p| {
                label(p, "GROUP_CREATED", None)
            })
            .await;
        assert_fields(
            &created.payload,
            json!({"sender": "system", "sender_fullname": "System", "recipient": group,
                   "channel_type": "group", "type": "text", "timelineOf": user,
                   "conversWith": group, "status": 150}),
            "the GROUP_CREATED system message",
        );
        assert_eq!(created.payload["attributes"]["subtype"], "info");
        assert_eq!(
            created.payload["attributes"]["messagelabel"]["parameters"]["creator"],
            "o"
        );
        for member in ["m1", "m2"] {
            c!(user)
                .expect_where(&added(user), "MEMBER_JOINED_GROUP", |p| {
                    label(p, "MEMBER_JOINED_GROUP", Some(member))
                })
                .await;
        }
    }

    // A group message: every member, the sender included, gets a copy with status 150.
    let hello = send(&server, "o", to_group(group, "hello group")).await;
    for user in ["o", "m1", "m2"] {
        let got = c!(user)
            .expect_where(&added(user), "hello group", |p| p["text"] == "hello group")
            .await;
        assert_fields(
            &got.payload,
            json!({"message_id": hello["message_id"], "sender": "o", "recipient": group,
                   "channel_type": "group", "timelineOf": user, "conversWith": group,
                   "status": 150}),
            "a group message copy",
        );
        // One deliver step, in order: the creation's pushes came before this message's. A
        // creation pushes nothing on `groups/` (REALTIME.md; the original server did not).
        c!(user).assert_never("a group push for the creation", |r| {
            r.topic == updated(user)
        });
    }

    // Rename: the whole group, to every member.
    ok(
        &server,
        "PUT",
        &base,
        &tok("o"),
        Some(json!({"group_name": "G1b"})),
    )
    .await;
    for user in ["o", "m1", "m2"] {
        let got = c!(user)
            .expect_where(&updated(user), "the renamed group", |p| p["name"] == "G1b")
            .await;
        assert_fields(
            &got.payload,
            json!({"uid": group, "name": "G1b", "owner": "o", "appId": APP}),
            "the renamed group",
        );
        assert!(
            group_of(&got.payload, &["o", "m1", "m2"]),
            "{}",
            got.payload
        );
        assert!(got.payload["createdOn"].is_u64(), "{}", got.payload);
    }

    // Join m3: everyone after the change, with the notification; m3 gets the history.
    let members = format!("{base}/members");
    ok(
        &server,
        "POST",
        &members,
        &tok("o"),
        Some(json!({"member_id": "m3"})),
    )
    .await;
    for user in ["o", "m1", "m2", "m3"] {
        let got = c!(user)
            .expect_where(&updated(user), "the join of m3", |p| {
                group_of(p, &["o", "m1", "m2", "m3"])
            })
            .await;
        assert_eq!(
            got.payload["notification"],
            json!({"messagelabel": {"key": "MEMBER_JOINED_GROUP",
                                    "parameters": {"member_id": "m3"}}}),
            "{user}: {}",
            got.payload
        );
        c!(user)
            .expect_where(&added(user), "MEMBER_JOINED_GROUP m3", |p| {
                label(p, "MEMBER_JOINED_GROUP", Some("m3"))
            })
            .await;
    }
    let history = c!("m3")
        .expect_where(&added("m3"), "the history: hello group", |p| {
            p["text"] == "hello group"
        })
        .await;
    assert_fields(
        &history.payload,
        json!({"message_id": hello["message_id"], "sender": "o", "timelineOf": "m3",
               "conversWith": group, "status": 150}),
        "the history copy",
    );
    c!("m3")
        .expect_where(&added("m3"), "the history: GROUP_CREATED", |p| {
            label(p, "GROUP_CREATED", None)
        })
        .await;

    // m2 leaves: the remaining members and m2 hear of it.
    ok(
        &server,
        "DELETE",
        &format!("{members}/m2"),
        &tok("m2"),
        None,
    )
    .await;
    for user in ["o", "m1", "m3", "m2"] {
        let got = c!(user)
            .expect_where(&updated(user), "the leave of m2", |p| {
                group_of(p, &["o", "m1", "m3"])
            })
            .await;
        assert_eq!(
            got.payload["notification"],
            json!({"messagelabel": {"key": "MEMBER_LEFT_GROUP",
                                    "parameters": {"member_id": "m2"}}}),
            "{user}: {}",
            got.payload
        );
        c!(user)
            .expect_where(&added(user), "MEMBER_LEFT_GROUP m2", |p| {
                label(p, "MEMBER_LEFT_GROUP", Some("m2"))
            })
            .await;
    }

    // Set members {o, m1, m4}: m3 out, m4 in (with the history).
    ok(
        &server,
        "PUT",
        &members,
        &tok("o"),
        Some(json!({"members": {"o": 1, "m1": 1, "m4": 1}})),
    )
    .await;
    for user in ["o", "m1", "m4", "m3"] {
        c!(user)
            .expect_where(&updated(user), "the set members", |p| {
                group_of(p, &["o", "m1", "m4"])
            })
            .await;
    }
    for user in ["o", "m1", "m4", "m3"] {
        c!(user)
            .expect_where(&added(user), "MEMBER_LEFT_GROUP m3", |p| {
                label(p, "MEMBER_LEFT_GROUP", Some("m3"))
            })
            .await;
    }
    c!("m4")
        .expect_where(&added("m4"), "the history: hello group", |p| {
            p["text"] == "hello group"
        })
        .await;

    // A message now reaches the members only; those who left get nothing more.
    send(&server, "o", to_group(group, "after the changes")).await;
    for user in ["o", "m1", "m4"] {
        c!(user)
            .expect_where(&added(user), "after the changes", |p| {
                p["text"] == "after the changes"
            })
            .await;
    }
    // One deliver step, in order: once a later message reached m2 and m3, the group message
    // would have too.
    for user in ["m2", "m3"] {
        send(&server, "o", direct(user, "barrier")).await;
        c!(user)
            .expect(&format!("apps/{APP}/users/{user}/messages/o/clientadded"))
            .await;
        c!(user).assert_never("a group message after leaving", |r| {
            r.payload["text"] == "after the changes"
        });
    }
    c!("m2").assert_never("the later group changes", |r| {
        r.topic == updated("m2")
            && r.payload["name"] == "G1b"
            && group_of(&r.payload, &["o", "m1", "m4"])
    });
}

pub(super) async fn a_read_receipt_reaches_the_sender(via: Via) {
    let server = start();
    let mut u1 = online(&server, via, "u1").await;
    let mut u2 = online(&server, via, "u2").await;
    let sent = send(&server, "u1", direct("u2", "read me")).await;
    let id = sent["message_id"].as_str().unwrap().to_string();
    u2.expect("apps/app1/users/u2/messages/u1/clientadded")
        .await;

    let update = format!("apps/app1/users/u2/messages/u1/{id}/update");
    let receipt = format!("apps/app1/users/u1/messages/u2/{id}/clientupdated");
    // Other statuses are ignored.
    u2.publish_json(&update, json!({"status": 150})).await;
    u2.publish_json(&update, json!({"status": 200})).await;
    u1.expect_exactly(
        &receipt,
        json!({"timelineOf": "u1", "message_id": id, "status": 250}),
    )
    .await;
    // The ignored publish came first on the same connection: it told nobody.
    assert_eq!(u1.count(&receipt), 1, "{}", u1.report());

    let theirs = timeline(&server, "u2", "u1").await;
    assert_eq!(
        find(&theirs, "message_id", &id).unwrap()["status"],
        200,
        "{theirs:?}"
    );
    let mine = timeline(&server, "u1", "u2").await;
    assert_eq!(
        find(&mine, "message_id", &id).unwrap()["status"],
        250,
        "{mine:?}"
    );
    // A receipt for a message u2 never received changes nothing and tells nobody.
    u2.publish_json(
        "apps/app1/users/u2/messages/u1/no-such-message/update",
        json!({"status": 200}),
    )
    .await;
    u1.assert_never("a receipt for an unknown message", |r| {
        r.topic.contains("no-such-message")
    });
}

pub(super) async fn a_read_conversation_is_told_to_reader_and_peer(via: Via) {
    let server = start();
    let mut u1 = online(&server, via, "u1").await;
    let mut u2 = online(&server, via, "u2").await;
    let mine = "apps/app1/users/u2/conversations/u1/clientupdated";
    let peer = "apps/app1/users/u1/conversations/u2/clientupdated";
    for text in ["one", "two"] {
        send(&server, "u1", direct("u2", text)).await;
        u2.expect_where("apps/app1/users/u2/messages/u1/clientadded", text, |p| {
            p["text"] == text
        })
        .await;
    }
    let row = find(&conversations(&server, "u2").await, "conversWith", "u1")
        .cloned()
        .expect("u2's conversation");
    assert_fields(
        &row,
        json!({"is_new": true, "unread_count": 2}),
        "before reading",
    );

    // Over MQTT.
    u2.publish_json(
        "apps/app1/users/u2/conversations/u1/update",
        json!({"is_new": false}),
    )
    .await;
    let read = u2.expect(mine).await.payload;
    assert_fields(
        &read,
        json!({"timelineOf": "u2", "conversWith": "u1", "is_new": false, "unread_count": 0}),
        "the reader's conversation",
    );
    assert!(read["read_at"].is_u64(), "{read}");
    let told = u1.expect(peer).await.payload;
    assert_fields(
        &told,
        json!({"timelineOf": "u1", "conversWith": "u2"}),
        "the peer's conversation",
    );
    assert!(told["peer_read_at"].is_u64(), "{told}");
    let row = find(&conversations(&server, "u2").await, "conversWith", "u1")
        .cloned()
        .unwrap();
    assert_fields(
        &row,
        json!({"is_new": false, "unread_count": 0}),
        "after reading",
    );
    let sender_side = timeline(&server, "u1", "u2").await;
    assert!(
        sender_side.iter().all(|m| m["status"] == 250),
        "the sender's copies show the return receipt: {sender_side:?}"
    );

    // Other values are ignored; then the HTTP route does the same.
    send(&server, "u1", direct("u2", "three")).await;
    u2.expect_where("apps/app1/users/u2/messages/u1/clientadded", "three", |p| {
        p["text"] == "three"
    })
    .await;
    u2.publish_json(
        "apps/app1/users/u2/conversations/u1/update",
        json!({"is_new": true}),
    )
    .await;
    let row = find(&conversations(&server, "u2").await, "conversWith", "u1")
        .cloned()
        .unwrap();
    assert_fields(
        &row,
        json!({"is_new": true, "unread_count": 1}),
        "after is_new: true",
    );
    assert_eq!(u2.count(mine), 1, "{}", u2.report());
    ok(
        &server,
        "POST",
        &format!("/api/{APP}/u2/conversations/u1/read"),
        &tok("u2"),
        None,
    )
    .await;
    let read = u2.expect(mine).await.payload;
    assert_fields(
        &read,
        json!({"timelineOf": "u2", "conversWith": "u1", "is_new": false, "unread_count": 0}),
        "the reader's conversation (HTTP)",
    );
    assert!(read["read_at"].is_u64(), "{read}");
    let told = u1.expect(peer).await.payload;
    assert_fields(
        &told,
        json!({"timelineOf": "u1", "conversWith": "u2"}),
        "the peer's conversation (HTTP)",
    );
    assert!(told["peer_read_at"].is_u64(), "{told}");

    // A group conversation read: the reader is told, nobody else.
    let group = "group-read";
    ok(
        &server,
        "POST",
        &format!("/api/{APP}/groups"),
        &tok("u1"),
        Some(json!({"group_name": "R", "group_id": group, "group_members": {"u2": 1}})),
    )
    .await;
    send(&server, "u1", to_group(group, "group text")).await;
    u2.expect_where(
        &format!("apps/app1/users/u2/messages/{group}/clientadded"),
        "group text",
        |p| p["text"] == "group text",
    )
    .await;
    u2.publish_json(
        &format!("apps/app1/users/u2/conversations/{group}/update"),
        json!({"is_new": false}),
    )
    .await;
    let read = u2
        .expect(&format!(
            "apps/app1/users/u2/conversations/{group}/clientupdated"
        ))
        .await
        .payload;
    assert_fields(
        &read,
        json!({"timelineOf": "u2", "conversWith": group, "is_new": false, "unread_count": 0}),
        "the reader's group conversation",
    );
    send(&server, "u2", direct("u1", "barrier")).await;
    u1.expect("apps/app1/users/u1/messages/u2/clientadded")
        .await;
    u1.assert_never("a peer read of a group conversation", |r| {
        r.topic.contains(group) && r.topic.contains("/conversations/")
    });
    assert_eq!(u1.count(peer), 2, "{}", u1.report());
}

pub(super) async fn archive_unarchive_and_delete_are_told_to_the_owner(via: Via) {
    let server = start();
    let mut u1 = online(&server, via, "u1").await;
    let mut u2 = online(&server, via, "u2").await;
    let mut u3 = online(&server, via, "u3").await;
    send(&server, "u1", direct("u2", "one")).await;
    u2.expect("apps/app1/users/u2/messages/u1/clientadded")
        .await;

    // Archive over MQTT (any payload): clientdeleted, then archived clientadded.
    u2.publish(
        "apps/app1/users/u2/conversations/u1/archive",
        "whatever",
        false,
    )
    .await;
    let gone = u2
        .expect("apps/app1/users/u2/conversations/u1/clientdeleted")
        .await;
    let moved = u2
        .expect("apps/app1/users/u2/archived_conversations/u1/clientadded")
        .await;
    assert!(gone.seq < moved.seq, "{}", u2.report());
    for row in [&gone.payload, &moved.payload] {
        assert_fields(
            row,
            json!({"conversWith": "u1", "key": "u1", "archived": true,
                   "last_message_text": "one"}),
            "the archived conversation",
        );
    }
    assert!(find(&archived(&server, "u2").await, "conversWith", "u1").is_some());
    assert!(find(&conversations(&server, "u2").await, "conversWith", "u1").is_none());

    // A new message un-archives it: archived clientdeleted before the message's clientadded.
    send(&server, "u1", direct("u2", "two")).await;
    let back = u2
        .expect_exactly(
            "apps/app1/users/u2/archived_conversations/u1/clientdeleted",
            json!({"timelineOf": "u2", "conversWith": "u1"}),
        )
        .await;
    let two = u2
        .expect_where("apps/app1/users/u2/messages/u1/clientadded", "two", |p| {
            p["text"] == "two"
        })
        .await;
    assert!(back.seq < two.seq, "{}", u2.report());

    // Archive over HTTP.
    ok(
        &server,
        "DELETE",
        &format!("/api/{APP}/conversations/u2"),
        &tok("u1"),
        None,
    )
    .await;
    let gone = u1
        .expect("apps/app1/users/u1/conversations/u2/clientdeleted")
        .await;
    let moved = u1
        .expect("apps/app1/users/u1/archived_conversations/u2/clientadded")
        .await;
    assert!(gone.seq < moved.seq, "{}", u1.report());
    assert_fields(
        &moved.payload,
        json!({"conversWith": "u2", "archived": true, "last_message_text": "two"}),
        "the archived conversation (HTTP)",
    );
    // The sender's own new message un-archives its side too.
    send(&server, "u1", direct("u2", "three")).await;
    let back = u1
        .expect_exactly(
            "apps/app1/users/u1/archived_conversations/u2/clientdeleted",
            json!({"timelineOf": "u1", "conversWith": "u2"}),
        )
        .await;
    let three = u1
        .expect_where("apps/app1/users/u1/messages/u2/clientadded", "three", |p| {
            p["text"] == "three"
        })
        .await;
    assert!(back.seq < three.seq, "{}", u1.report());
    u2.expect_where("apps/app1/users/u2/messages/u1/clientadded", "three", |p| {
        p["text"] == "three"
    })
    .await;

    // Delete an archived conversation: from both lists.
    ok(
        &server,
        "DELETE",
        &format!("/api/{APP}/conversations/u2"),
        &tok("u1"),
        None,
    )
    .await;
    u1.expect("apps/app1/users/u1/conversations/u2/clientdeleted")
        .await;
    u1.expect("apps/app1/users/u1/archived_conversations/u2/clientadded")
        .await;
    ok(
        &server,
        "DELETE",
        &format!("/api/{APP}/conversations/u2?delete=true"),
        &tok("u1"),
        None,
    )
    .await;
    let gone = u1
        .expect_exactly(
            "apps/app1/users/u1/conversations/u2/clientdeleted",
            json!({"timelineOf": "u1", "conversWith": "u2"}),
        )
        .await;
    let gone_archived = u1
        .expect_exactly(
            "apps/app1/users/u1/archived_conversations/u2/clientdeleted",
            json!({"timelineOf": "u1", "conversWith": "u2"}),
        )
        .await;
    assert!(gone.seq < gone_archived.seq, "{}", u1.report());

    // Delete an active one: from the active list only.
    ok(
        &server,
        "DELETE",
        &format!("/api/{APP}/conversations/u1?delete=true"),
        &tok("u2"),
        None,
    )
    .await;
    u2.expect_exactly(
        "apps/app1/users/u2/conversations/u1/clientdeleted",
        json!({"timelineOf": "u2", "conversWith": "u1"}),
    )
    .await;
    send(&server, "u3", direct("u2", "barrier")).await;
    u2.expect("apps/app1/users/u2/messages/u3/clientadded")
        .await;
    let archived_gone = "apps/app1/users/u2/archived_conversations/u1/clientdeleted";
    assert_eq!(
        u2.count(archived_gone),
        1,
        "only the un-archive, not the delete of an active conversation: {}",
        u2.report()
    );
    assert!(timeline(&server, "u2", "u1").await.is_empty());
    u3.assert_never("someone else's conversation events", |r| {
        !r.topic.starts_with("apps/app1/users/u3/")
    });
}
