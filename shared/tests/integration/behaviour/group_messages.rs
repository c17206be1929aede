//! Group messages: fanned out to every member, the newest history for a joiner, a group's
//! history kept apart from a same-id user's self-conversation, and sends racing joins, leaves
//! and self-notes (a joiner receives every message; nothing follows a leaver's goodbye).

use crate::common::{APP, Harness, admin, id, input, label, user};
use chat21::model::{ChannelType, status};
use chat21::ops::conversations;
use chat21::ops::groups;
use chat21::ports::PageRequest;

use super::{create_input, make_group};

pub(super) async fn group_message_fans_out_to_every_member(h: &Harness) {
    make_group(h, "group-f", &["u2", "u3"]).await;
    let unread_before = h.conversation("u3", "group-f").await.unwrap().unread_count;
    let sent = h.send(&user("u2"), "group-f", "hello all").await.unwrap();
    assert_eq!(sent.channel_type, ChannelType::Group);
    assert_eq!(sent.status, status::SENT);
    assert_eq!(h.history("group-f").await[0], sent);
    h.deliver_all().await;
    for member in ["u1", "u2", "u3"] {
        let copies = h.timeline(member, "group-f").await;
        let copy = &copies[0];
        assert_eq!(
            (copy.text.as_str(), copy.status),
            ("hello all", status::DELIVERED),
            "{member}"
        );
        assert_eq!(
            copies
                .iter()
                .filter(|m| m.message_id == sent.message_id)
                .count(),
            1
        );
    }
    let own = h.conversation("u2", "group-f").await.unwrap();
    assert!(!own.is_new);
    let other = h.conversation("u3", "group-f").await.unwrap();
    assert!(other.is_new);
    assert_eq!(other.unread_count, unread_before + 1);

    assert_eq!(
        h.send(&user("u9"), "group-f", "hi")
            .await
            .unwrap_err()
            .status(),
        403
    );
    assert_eq!(
        h.send(&user("u9"), "group-none", "hi")
            .await
            .unwrap_err()
            .status(),
        404
    );
    h.send(&admin("boss"), "group-f", "from an admin")
        .await
        .unwrap();
    h.deliver_all().await;
    assert_eq!(h.timeline("u3", "group-f").await[0].text, "from an admin");
    assert!(
        h.timeline("boss", "group-f").await.is_empty(),
        "a non-member admin gets no copy"
    );
    // channel_type "group" makes any id a group recipient; an unknown one without `group-`
    // may be a user's, and cannot be an inline group's either: refused as invalid.
    let explicit = chat21::ops::messages::SendMessage {
        channel_type: Some("group".into()),
        ..input("team", "x")
    };
    assert_eq!(
        h.send_with(&user("u1"), explicit)
            .await
            .unwrap_err()
            .status(),
        400
    );
}

pub(super) async fn joiner_gets_the_newest_history(h: &Harness) {
    make_group(h, "group-h", &[]).await;
    for i in 0..205u64 {
        h.send(&user("u1"), "group-h", &format!("h{i}"))
            .await
            .unwrap();
    }
    h.deliver_all().await;
    groups::join(&h.deps, &user("u1"), &id("group-h"), id("u2"))
        .await
        .unwrap();
    h.deliver_all().await;
    let copies = h.timeline("u2", "group-h").await;
    let texts: Vec<&str> = copies.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        copies.len(),
        201,
        "200 history messages and the join message"
    );
    assert!(texts.contains(&"h5") && texts.contains(&"h204"));
    assert!(!texts.contains(&"h4"), "the oldest are not copied");
    assert!(
        copies
            .iter()
            .all(|m| m.status == status::DELIVERED && m.timeline_of == "u2")
    );
    assert_eq!(label(&copies[0]).as_deref(), Some("MEMBER_JOINED_GROUP"));
}

/// A group's history and the self-conversation of a user whose id is the group's id are
/// different timelines: nothing crosses from one to the other, in either direction.
pub(super) async fn a_group_history_is_no_users_self_conversation(h: &Harness) {
    let texts = |messages: Vec<chat21::model::Message>| {
        messages.into_iter().map(|m| m.text).collect::<Vec<_>>()
    };
    // A user's note to themself...
    h.send(&user("bee"), "bee", "private note").await.unwrap();
    h.deliver_all().await;
    // ...is not the history of a group someone else creates with that user's id,
    groups::create(
        &h.deps,
        &user("m"),
        create_input("Trap", &["m2"], Some("bee")),
    )
    .await
    .unwrap();
    h.deliver_all().await;
    assert!(!texts(h.history("bee").await).contains(&"private note".to_string()));
    assert!(!texts(h.timeline("m2", "bee").await).contains(&"private note".to_string()));
    // nor copied to a joiner with the history.
    groups::join(&h.deps, &user("m"), &id("bee"), id("m3"))
        .await
        .unwrap();
    h.deliver_all().await;
    let joined = texts(h.timeline("m3", "bee").await);
    assert!(joined.contains(&"Group created".to_string()), "{joined:?}");
    assert!(!joined.contains(&"private note".to_string()), "{joined:?}");

    // The user reads their own self-conversation, not the group's history.
    let own = conversations::messages(
        &h.deps,
        &user("bee"),
        id("bee"),
        &id("bee"),
        &PageRequest::first(100),
    )
    .await
    .unwrap();
    assert_eq!(texts(own.items), vec!["private note"]);
    // The group route still refuses them: they are not a member.
    let refused = groups::get(&h.deps, &user("bee"), &id("bee")).await;
    assert_eq!(refused.unwrap_err().status(), 403);

    // A note they send to themself does not go into the group's history...
    h.send(&user("bee"), "bee", "second note").await.unwrap();
    h.deliver_all().await;
    let history = texts(h.history("bee").await);
    assert!(!history.iter().any(|t| t.ends_with("note")), "{history:?}");
    // ...so later joiners never receive it.
    groups::join(&h.deps, &user("m"), &id("bee"), id("m4"))
        .await
        .unwrap();
    h.deliver_all().await;
    let later = texts(h.timeline("m4", "bee").await);
    assert!(!later.iter().any(|t| t.ends_with("note")), "{later:?}");
    assert_eq!(
        texts(h.timeline("bee", "bee").await),
        vec!["second note", "private note"]
    );
}

/// Self-notes of the user whose id is a group's id, racing messages to that group: each lands
/// where it belongs, whatever the interleaving.
pub(super) async fn racing_self_notes_and_group_messages_never_cross(h: &Harness) {
    make_group(h, "twin", &["u2"]).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                h.send(&user("twin"), "twin", &format!("note {i}")).await
            } else {
                let to_group = chat21::ops::messages::SendMessage {
                    channel_type: Some("group".into()),
                    ..input("twin", &format!("group {i}"))
                };
                h.send_with(&user(if i % 4 == 1 { "u1" } else { "u2" }), to_group)
                    .await
            }
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    h.deliver_all().await;
    let texts = |messages: Vec<chat21::model::Message>| {
        messages.into_iter().map(|m| m.text).collect::<Vec<_>>()
    };
    let history = texts(h.history("twin").await);
    assert_eq!(
        history.iter().filter(|t| t.starts_with("group ")).count(),
        6
    );
    assert!(
        !history.iter().any(|t| t.starts_with("note")),
        "{history:?}"
    );
    let own = texts(h.timeline("twin", "twin").await);
    assert_eq!(own.len(), 6, "{own:?}");
    assert!(own.iter().all(|t| t.starts_with("note")), "{own:?}");
    for member in ["u1", "u2"] {
        let theirs = texts(h.timeline(member, "twin").await);
        assert!(
            !theirs.iter().any(|t| t.starts_with("note")),
            "{member}: {theirs:?}"
        );
        assert_eq!(theirs.iter().filter(|t| t.starts_with("group ")).count(), 6);
    }
}

/// Group sends racing other work, half of them with a client `timestamp` a minute ahead (it
/// used to order a group message, so it could sort after a join or leave that came later).
async fn racing_sends(
    h: &Harness,
    group: &str,
    round: usize,
) -> Vec<tokio::task::JoinHandle<String>> {
    (0..3)
        .map(|k| {
            let h = h.clone();
            let group = group.to_string();
            tokio::spawn(async move {
                let ahead = k % 2 == 0;
                let send = chat21::ops::messages::SendMessage {
                    channel_type: Some("group".into()),
                    timestamp: ahead.then(|| h.deps.now() + 60_000),
                    ..input(&group, &format!("r{round}-{k}"))
                };
                let sender = if k == 1 { "s2" } else { "s1" };
                h.send_with(&user(sender), send).await.unwrap().message_id
            })
        })
        .collect()
}

/// A joiner receives every group message not fanned out to them: whatever the join raced,
/// each message is in their timeline and was published to their clients.
pub(super) async fn joiners_receive_every_message_sent_around_their_join(h: &Harness) {
    make_group(h, "race-j", &["s1", "s2"]).await;
    h.realtime.take();
    let stop = h.deliver_in_background();
    let mut sent = Vec::new();
    for round in 0..8 {
        let sends = racing_sends(h, "race-j", round).await;
        let joiner = format!("j{round}");
        groups::join(&h.deps, &user("u1"), &id("race-j"), id(&joiner))
            .await
            .unwrap();
        for s in sends {
            sent.push(s.await.unwrap());
        }
    }
    stop().await;
    h.deliver_all().await;
    let pushes = h.realtime.take();
    for round in 0..8 {
        let joiner = format!("j{round}");
        let seen: Vec<String> = h
            .timeline(&joiner, "race-j")
            .await
            .into_iter()
            .map(|m| m.message_id)
            .collect();
        let topic = chat21::realtime::topics::message_added(APP, &joiner, "race-j");
        let told: Vec<&str> = pushes
            .iter()
            .filter(|p| p.topic == topic)
            .filter_map(|p| p.payload["message_id"].as_str())
            .collect();
        for id in &sent {
            assert!(seen.contains(id), "{joiner} cannot see {id}: {seen:?}");
            assert!(
                told.contains(&id.as_str()),
                "{joiner} was never told of {id}"
            );
        }
    }
}

/// Nothing follows a leaver's MEMBER_LEFT_GROUP: not in their conversation, not in their
/// timeline, whatever the leave raced.
pub(super) async fn a_leavers_conversation_ends_with_their_goodbye(h: &Harness) {
    let leavers: Vec<String> = (0..8).map(|i| format!("l{i}")).collect();
    let mut members = vec!["s1", "s2"];
    members.extend(leavers.iter().map(String::as_str));
    make_group(h, "race-l", &members).await;
    let stop = h.deliver_in_background();
    for (round, leaver) in leavers.iter().enumerate() {
        let sends = racing_sends(h, "race-l", round).await;
        groups::leave(&h.deps, &user(leaver), &id("race-l"), &id(leaver))
            .await
            .unwrap();
        for s in sends {
            s.await.unwrap();
        }
    }
    stop().await;
    h.deliver_all().await;
    for leaver in &leavers {
        let row = h.conversation(leaver, "race-l").await.unwrap();
        assert_eq!(
            label(&row.last).as_deref(),
            Some("MEMBER_LEFT_GROUP"),
            "{leaver}'s conversation ends with {:?}",
            row.last.text
        );
        let timeline = h.timeline(leaver, "race-l").await;
        assert_eq!(
            label(&timeline[0]).as_deref(),
            Some("MEMBER_LEFT_GROUP"),
            "{leaver}'s newest message is {:?}",
            timeline[0].text
        );
        assert_eq!(
            timeline[0].attribute("messagelabel").unwrap()["parameters"]["member_id"],
            leaver.as_str()
        );
    }
}
