//! Groups and their members: a creation (announced; one 201 for concurrent creates of one id; a
//! stalled create finished only by a retry with the same body), reads and refusals, the join,
//! leave and set-members rules (concurrent ones lose nobody), a large change pushed in bounded
//! batches, a failed announcement finished by the next call.

use crate::common::{APP, Harness, admin, count, id, label, user};
use chat21::Error;
use chat21::events::EventData;
use chat21::model::EventType;
use chat21::model::{ChangeKind, ChannelType, status};
use chat21::ops::groups::{self, CreateGroup};
use serde_json::json;

use super::{create_input, make_group};

pub(super) async fn create_group_makes_owner_a_member_and_announces(h: &Harness) {
    let group = groups::create(
        &h.deps,
        &user("u1"),
        create_input("Team", &["u2", "u3"], Some("group-a")),
    )
    .await
    .unwrap();
    assert_eq!(group.info.owner, "u1");
    assert_eq!(
        group.members.keys().collect::<Vec<_>>(),
        vec!["u1", "u2", "u3"]
    );
    let events = h.deliver_all().await;
    assert_eq!(count(&events, EventType::GroupCreated), 1);
    assert_eq!(count(&events, EventType::MessageSent), 4);
    let history = h.history("group-a").await;
    assert_eq!(history.len(), 4);
    assert!(
        history
            .iter()
            .all(|m| m.status == status::SENT && m.sender == "system")
    );
    let copies = h.timeline("u2", "group-a").await;
    assert_eq!(copies.len(), 4);
    assert!(
        copies
            .iter()
            .all(|m| m.status == status::DELIVERED && m.channel_type == ChannelType::Group)
    );
    let mut labels: Vec<String> = copies.iter().filter_map(label).collect();
    labels.sort();
    assert_eq!(
        labels,
        vec![
            "GROUP_CREATED",
            "MEMBER_JOINED_GROUP",
            "MEMBER_JOINED_GROUP",
            "MEMBER_JOINED_GROUP"
        ]
    );
    let created = copies
        .iter()
        .find(|m| label(m).as_deref() == Some("GROUP_CREATED"))
        .unwrap();
    assert_eq!(
        created.attribute("messagelabel").unwrap()["parameters"]["creator"],
        "u1"
    );
    assert_eq!(created.attribute("subtype").unwrap(), "info");
    assert!(h.conversation("u3", "group-a").await.is_some());

    let taken = groups::create(
        &h.deps,
        &user("u9"),
        create_input("Other", &[], Some("group-a")),
    )
    .await
    .unwrap_err();
    assert!(matches!(taken, Error::Conflict(_)), "{taken:?}");
    assert_eq!(
        h.members("group-a").await,
        vec!["u1", "u2", "u3"],
        "a refused create changes nothing"
    );
    let generated = groups::create(&h.deps, &user("u1"), create_input("Gen", &[], None))
        .await
        .unwrap();
    assert!(generated.info.uid.starts_with("group-"));
    // Only admins may create for someone else; the admin then is not a member.
    let refused = CreateGroup {
        owner: Some(id("u5")),
        ..create_input("X", &[], Some("group-x"))
    };
    assert_eq!(
        groups::create(&h.deps, &user("u1"), refused)
            .await
            .unwrap_err()
            .status(),
        403
    );
    let for_u5 = CreateGroup {
        owner: Some(id("u5")),
        ..create_input("X", &["u6"], Some("group-x"))
    };
    let g = groups::create(&h.deps, &admin("boss"), for_u5)
        .await
        .unwrap();
    assert_eq!(g.info.owner, "u5");
    assert_eq!(g.members.keys().collect::<Vec<_>>(), vec!["u5", "u6"]);
    let many = (0..98).map(|i| id(&format!("m{i}"))).collect();
    let too_big = CreateGroup {
        members: many,
        ..create_input("Big", &[], Some("group-big"))
    };
    assert_eq!(
        groups::create(&h.deps, &user("u1"), too_big)
            .await
            .unwrap_err()
            .status(),
        400
    );
    assert!(
        h.deps
            .store
            .group_head(APP, "group-big")
            .await
            .unwrap()
            .is_none()
    );
}

pub(super) async fn group_reads_and_refusals(h: &Harness) {
    make_group(h, "group-r", &["u2"]).await;
    let g = groups::get(&h.deps, &user("u2"), &id("group-r"))
        .await
        .unwrap();
    assert_eq!(g.info.name, "Team");
    assert!(
        groups::get(&h.deps, &admin("boss"), &id("group-r"))
            .await
            .is_ok()
    );
    assert_eq!(
        groups::get(&h.deps, &user("u9"), &id("group-r"))
            .await
            .unwrap_err()
            .status(),
        403
    );
    assert_eq!(
        groups::get(&h.deps, &user("u2"), &id("group-none"))
            .await
            .unwrap_err()
            .status(),
        404
    );

    let member = groups::rename(&h.deps, &user("u2"), &id("group-r"), "Mine".into())
        .await
        .unwrap_err();
    assert_eq!(member.status(), 403);
    let attrs = json!({"color": "blue"}).as_object().unwrap().clone();
    assert_eq!(
        groups::set_attributes(&h.deps, &user("u9"), &id("group-r"), attrs.clone())
            .await
            .unwrap_err()
            .status(),
        403
    );
    assert_eq!(
        groups::rename(&h.deps, &user("u1"), &id("group-none"), "x".into())
            .await
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(
        groups::get(&h.deps, &user("u2"), &id("group-r"))
            .await
            .unwrap()
            .info
            .name,
        "Team",
        "refusals change nothing"
    );
    assert!(h.events.take().is_empty());

    groups::rename(&h.deps, &user("u1"), &id("group-r"), "Renamed".into())
        .await
        .unwrap();
    groups::set_attributes(&h.deps, &admin("boss"), &id("group-r"), attrs)
        .await
        .unwrap();
    let g = groups::get(&h.deps, &user("u2"), &id("group-r"))
        .await
        .unwrap();
    assert_eq!(
        (g.info.name.as_str(), g.info.attributes["color"].as_str()),
        ("Renamed", Some("blue"))
    );
    assert_eq!(g.members.len(), 2);
    let events = h.events.take();
    assert_eq!(count(&events, EventType::GroupUpdated), 2);
    let EventData::GroupUpdated(last) = &events.last().unwrap().data else {
        panic!("the last event is not group-updated");
    };
    assert_eq!(last.group.info.attributes["color"], "blue");
}

pub(super) async fn join_rules(h: &Harness) {
    make_group(h, "group-j", &["u2"]).await;
    assert!(
        groups::join(&h.deps, &user("u1"), &id("group-j"), id("u4"))
            .await
            .unwrap()
    );
    let events = h.deliver_all().await;
    assert_eq!(count(&events, EventType::JoinMember), 1);
    assert_eq!(count(&events, EventType::MessageSent), 1);
    assert_eq!(h.members("group-j").await, vec!["u1", "u2", "u4"]);
    let last = h.conversation("u2", "group-j").await.unwrap();
    assert_eq!(
        last.last.attribute("messagelabel").unwrap()["key"],
        "MEMBER_JOINED_GROUP"
    );
    assert_eq!(
        last.last.attribute("messagelabel").unwrap()["parameters"]["member_id"],
        "u4"
    );

    // Repeated join: 200, no change, no duplicate system message.
    assert!(
        !groups::join(&h.deps, &user("u1"), &id("group-j"), id("u4"))
            .await
            .unwrap()
    );
    assert!(h.deliver_all().await.is_empty());

    let refused = [
        groups::join(&h.deps, &user("u5"), &id("group-j"), id("u5")).await,
        groups::join(&h.deps, &user("u2"), &id("group-j"), id("u6")).await,
    ];
    for r in refused {
        assert_eq!(r.unwrap_err().status(), 403);
    }
    assert_eq!(
        groups::join(&h.deps, &user("u1"), &id("group-none"), id("u5"))
            .await
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(h.members("group-j").await, vec!["u1", "u2", "u4"]);
    assert!(h.deliver_all().await.is_empty());

    let open = json!({"allow_self_join": true})
        .as_object()
        .unwrap()
        .clone();
    groups::set_attributes(&h.deps, &user("u1"), &id("group-j"), open)
        .await
        .unwrap();
    assert!(
        groups::join(&h.deps, &user("u5"), &id("group-j"), id("u5"))
            .await
            .unwrap()
    );
    assert_eq!(
        groups::join(&h.deps, &user("u5"), &id("group-j"), id("u7"))
            .await
            .unwrap_err()
            .status(),
        403
    );
    assert_eq!(h.members("group-j").await, vec!["u1", "u2", "u4", "u5"]);
}

pub(super) async fn leave_rules(h: &Harness) {
    make_group(h, "group-l", &["u2", "u3"]).await;
    let refused = [
        groups::leave(&h.deps, &user("u9"), &id("group-l"), &id("u2")).await,
        groups::leave(&h.deps, &user("u2"), &id("group-l"), &id("u3")).await,
    ];
    for r in refused {
        assert_eq!(r.unwrap_err().status(), 403);
    }
    assert_eq!(h.members("group-l").await, vec!["u1", "u2", "u3"]);

    groups::leave(&h.deps, &user("u2"), &id("group-l"), &id("u2"))
        .await
        .unwrap();
    let events = h.deliver_all().await;
    assert_eq!(count(&events, EventType::LeaveMember), 1);
    assert_eq!(h.members("group-l").await, vec!["u1", "u3"]);
    for member in ["u1", "u2", "u3"] {
        let conv = h.conversation(member, "group-l").await.unwrap();
        assert_eq!(
            conv.last.attribute("messagelabel").unwrap()["key"],
            "MEMBER_LEFT_GROUP",
            "{member}"
        );
    }
    let before = h.timeline("u2", "group-l").await.len();
    assert_eq!(
        groups::leave(&h.deps, &user("u2"), &id("group-l"), &id("u2"))
            .await
            .unwrap_err()
            .status(),
        404
    );

    // The removed user keeps their past and gets nothing new, and may not post.
    h.send(&user("u1"), "group-l", "after").await.unwrap();
    h.deliver_all().await;
    assert_eq!(h.timeline("u2", "group-l").await.len(), before);
    assert_eq!(
        h.timeline("u3", "group-l").await.first().unwrap().text,
        "after"
    );
    assert_eq!(
        h.send(&user("u2"), "group-l", "let me in")
            .await
            .unwrap_err()
            .status(),
        403
    );

    groups::leave(&h.deps, &user("u1"), &id("group-l"), &id("u3"))
        .await
        .unwrap();
    assert_eq!(h.members("group-l").await, vec!["u1"]);
}

pub(super) async fn set_members_applies_the_difference(h: &Harness) {
    make_group(h, "group-s", &["u2", "u3"]).await;
    let wanted = |ms: &[&str]| ms.iter().map(|m| id(m)).collect::<Vec<_>>();
    let refused = groups::set_members(&h.deps, &user("u2"), &id("group-s"), wanted(&["u2"]))
        .await
        .unwrap_err();
    assert_eq!(refused.status(), 403);
    assert!(
        groups::set_members(
            &h.deps,
            &user("u1"),
            &id("group-s"),
            wanted(&["u1", "u3", "u4"])
        )
        .await
        .unwrap()
    );
    assert_eq!(h.members("group-s").await, vec!["u1", "u3", "u4"]);
    let events = h.deliver_all().await;
    assert_eq!(count(&events, EventType::JoinMember), 1);
    assert_eq!(count(&events, EventType::LeaveMember), 1);
    assert_eq!(count(&events, EventType::GroupUpdated), 1);
    assert_eq!(count(&events, EventType::MessageSent), 2);
    assert_eq!(
        h.conversation("u2", "group-s")
            .await
            .unwrap()
            .last
            .attribute("messagelabel")
            .unwrap()["key"],
        "MEMBER_LEFT_GROUP"
    );
    assert!(h.conversation("u4", "group-s").await.is_some());

    assert!(
        !groups::set_members(
            &h.deps,
            &user("u1"),
            &id("group-s"),
            wanted(&["u1", "u3", "u4"])
        )
        .await
        .unwrap()
    );
    assert!(
        h.deliver_all().await.is_empty(),
        "the same set again changes nothing"
    );
    assert_eq!(h.members("group-s").await, vec!["u1", "u3", "u4"]);
}

/// Creating a group of n tells every member of every system message (n² `clientadded`, as
/// Chat21's protocol has it): they must go out chunk by chunk, not be held all at once (a
/// thousand-member group held gigabytes); and the group every member is told of by a change
/// (a rename here: a creation pushes none) is one shared payload.
pub(super) async fn a_large_group_change_is_pushed_in_bounded_batches(h: &Harness) {
    let names: Vec<String> = (0..40).map(|i| format!("m{i:02}")).collect();
    let members: Vec<&str> = names.iter().map(String::as_str).collect();
    h.realtime.take();
    make_group(h, "group-big", &members).await;
    let pushes = h.realtime.take();
    // 41 members (the owner too), 42 system messages (GROUP_CREATED, 41 joins).
    let added = pushes
        .iter()
        .filter(|p| p.topic.ends_with("/clientadded") && p.topic.contains("/messages/group-big/"))
        .count();
    assert_eq!(
        added,
        41 * 42,
        "every member is told of every system message"
    );
    let largest = h.realtime.largest_publish();
    assert!(
        largest <= 16 * 42,
        "one publish carried {largest} pushes: the fan-out held all {added} at once"
    );
    assert!(
        !pushes.iter().any(|p| p.topic.contains("/groups/")),
        "a creation pushes nothing on groups/"
    );
    groups::rename(&h.deps, &user("u1"), &id("group-big"), "Big".into())
        .await
        .unwrap();
    h.deliver_all().await;
    let pushes = h.realtime.take();
    let updated: Vec<_> = pushes
        .iter()
        .filter(|p| p.topic.ends_with("/groups/group-big/clientupdated"))
        .collect();
    assert_eq!(updated.len(), 41);
    assert!(
        updated
            .windows(2)
            .all(|w| std::sync::Arc::ptr_eq(&w[0].payload, &w[1].payload)),
        "the group's payload is shared by every member's push"
    );
}

pub(super) async fn failed_announcement_is_finished_by_the_next_call(h: &Harness) {
    make_group(h, "group-p", &["u2"]).await;
    h.events.fail_next(1);
    let err = groups::join(&h.deps, &user("u1"), &id("group-p"), id("u4"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 503);
    assert!(h.events.published().is_empty());
    let pending = h
        .deps
        .store
        .group_head(APP, "group-p")
        .await
        .unwrap()
        .unwrap()
        .pending;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].kind, ChangeKind::Joined);

    // The client's retry: already a member, and the owed announcement goes out exactly now.
    assert!(
        !groups::join(&h.deps, &user("u1"), &id("group-p"), id("u4"))
            .await
            .unwrap()
    );
    let events = h.deliver_all().await;
    assert_eq!(count(&events, EventType::JoinMember), 1);
    assert_eq!(count(&events, EventType::MessageSent), 1);
    assert!(
        h.deps
            .store
            .group_head(APP, "group-p")
            .await
            .unwrap()
            .unwrap()
            .pending
            .is_empty()
    );
    let joined = h.conversation("u4", "group-p").await.unwrap();
    assert_eq!(
        joined.last.attribute("messagelabel").unwrap()["key"],
        "MEMBER_JOINED_GROUP"
    );
    assert_eq!(
        h.timeline("u4", "group-p").await.len(),
        4,
        "history (created, u1 and u2 joined) and the join"
    );

    // A create whose announcement failed is finished by the same caller's retry.
    h.events.fail_next(1);
    let input = || create_input("Retry", &["u2"], Some("group-q"));
    assert_eq!(
        groups::create(&h.deps, &user("u1"), input())
            .await
            .unwrap_err()
            .status(),
        503
    );
    let group = groups::create(&h.deps, &user("u1"), input()).await.unwrap();
    assert_eq!(group.members.len(), 2);
    let events = h.deliver_all().await;
    assert_eq!(count(&events, EventType::GroupCreated), 1);
    assert_eq!(h.timeline("u2", "group-q").await.len(), 3);
    let conflict = groups::create(&h.deps, &user("u1"), input())
        .await
        .unwrap_err();
    assert_eq!(
        conflict.status(),
        409,
        "once finished, the id is simply taken"
    );
}

pub(super) async fn concurrent_joins_keep_every_member(h: &Harness) {
    make_group(h, "group-c", &[]).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let deps = h.deps.clone();
        tasks.push(tokio::spawn(async move {
            groups::join(&deps, &user("u1"), &id("group-c"), id(&format!("j{i:02}"))).await
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().unwrap());
    }
    let members = h.members("group-c").await;
    assert_eq!(members.len(), 51);
    let events = h.deliver_all().await;
    assert!(
        h.deps
            .store
            .group_head(APP, "group-c")
            .await
            .unwrap()
            .unwrap()
            .pending
            .is_empty()
    );
    assert_eq!(count(&events, EventType::JoinMember), 50);
}

pub(super) async fn concurrent_set_members_serialize(h: &Harness) {
    make_group(h, "group-z", &["x"]).await;
    let a = vec![id("u1"), id("a1"), id("a2")];
    let b = vec![id("u1"), id("b1")];
    let (deps_a, deps_b) = (h.deps.clone(), h.deps.clone());
    let (wa, wb) = (a.clone(), b.clone());
    let ta =
        tokio::spawn(
            async move { groups::set_members(&deps_a, &user("u1"), &id("group-z"), wa).await },
        );
    let tb =
        tokio::spawn(
            async move { groups::set_members(&deps_b, &user("u1"), &id("group-z"), wb).await },
        );
    ta.await.unwrap().unwrap();
    tb.await.unwrap().unwrap();
    let mut members = h.members("group-z").await;
    members.sort();
    let (mut a, mut b) = (a, b);
    a.sort();
    b.sort();
    assert!(
        members == a || members == b,
        "the result is one of the sets, not a mix: {members:?}"
    );
}

/// Concurrent creates of one group id by one user, same body or not: exactly one 201, the
/// others 409, and the group is the winner's.
pub(super) async fn concurrent_creates_of_one_id_answer_201_once(h: &Harness) {
    for round in 0..8 {
        let gid = format!("group-race-{round}");
        let same_body = round % 2 == 0;
        let mut tasks = Vec::new();
        for i in 0..4 {
            let deps = h.deps.clone();
            let name = if same_body {
                "Race".to_string()
            } else {
                format!("Race {i}")
            };
            let member = format!("m{i}");
            let input = create_input(&name, &[member.as_str()], Some(&gid));
            tasks.push(tokio::spawn(async move {
                groups::create(&deps, &user("u1"), input).await
            }));
        }
        let mut created = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(group) => created.push(group),
                Err(e) => assert_eq!(e.status(), 409, "round {round}: {e}"),
            }
        }
        assert_eq!(created.len(), 1, "round {round}: {created:?}");
        let stored = groups::get(&h.deps, &user("u1"), &id(&gid)).await.unwrap();
        assert_eq!(
            stored, created[0],
            "round {round}: the group is the winner's"
        );
    }
    let events = h.deliver_all().await;
    assert_eq!(count(&events, EventType::GroupCreated), 8);
}

pub(super) async fn only_a_stalled_create_with_the_same_body_is_finished_by_a_retry(h: &Harness) {
    h.events.fail_next(1);
    let first = create_input("First", &["u2"], Some("group-st"));
    let err = groups::create(&h.deps, &user("u1"), first.clone())
        .await
        .unwrap_err();
    assert_eq!(err.status(), 503);
    // Another body, or another caller: a conflict, and the pending change stays owed.
    let other = create_input("Other", &["u3"], Some("group-st"));
    let conflict = groups::create(&h.deps, &user("u1"), other)
        .await
        .unwrap_err();
    assert_eq!(conflict.status(), 409);
    let conflict = groups::create(&h.deps, &user("u2"), first.clone())
        .await
        .unwrap_err();
    assert_eq!(conflict.status(), 409);
    assert!(h.deliver_all().await.is_empty(), "nothing announced yet");
    // The same caller with the same body finishes it.
    let group = groups::create(&h.deps, &user("u1"), first).await.unwrap();
    assert_eq!(group.info.name, "First");
    assert_eq!(group.members.keys().collect::<Vec<_>>(), vec!["u1", "u2"]);
    assert_eq!(count(&h.deliver_all().await, EventType::GroupCreated), 1);
}
