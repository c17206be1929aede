//! The behavioural suite: every scenario runs against the SQLite store (in memory) and against
//! DynamoDB (moto), so the two adapters cannot drift apart.

use crate::common::{APP, Harness, admin, count, id, input, label, user};
use chat21::events::EventData;
use chat21::model::EventType;
use chat21::model::{ChangeKind, ChannelType, status};
use chat21::ops::groups::{self, CreateGroup};
use chat21::ops::{conversations, deliver};
use chat21::ports::{PageRequest, WebhookPut};
use chat21::{Error, keys};
use serde_json::json;

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&super::Harness::sqlite()).await
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&super::Harness::dynamo().await).await
                }
            )*
        }
    };
}

on_both_stores!(
    direct_message_reaches_both_sides,
    retry_with_message_id_stores_and_delivers_once,
    failed_deliveries_are_retried_without_doubling,
    retries_with_an_id_store_and_deliver_once,
    redelivered_events_change_nothing,
    overtaken_messages_redelivered_change_nothing,
    late_older_message_counts_but_does_not_replace_the_last,
    updateconversation_false_leaves_conversations_alone,
    paging_reaches_every_item,
    archive_and_unarchive,
    permanent_delete_removes_only_the_callers_copies,
    read_marks_read_and_shows_receipts,
    concurrent_deliveries_keep_unread_exact,
    conversation_refusals_change_nothing,
    create_group_makes_owner_a_member_and_announces,
    group_reads_and_refusals,
    join_rules,
    leave_rules,
    set_members_applies_the_difference,
    a_large_group_change_is_pushed_in_bounded_batches,
    group_message_fans_out_to_every_member,
    joiner_gets_the_newest_history,
    failed_announcement_is_finished_by_the_next_call,
    concurrent_joins_keep_every_member,
    concurrent_set_members_serialize,
    a_group_history_is_no_users_self_conversation,
    concurrent_creates_of_one_id_answer_201_once,
    only_a_stalled_create_with_the_same_body_is_finished_by_a_retry,
    racing_self_notes_and_group_messages_never_cross,
    joiners_receive_every_message_sent_around_their_join,
    a_leavers_conversation_ends_with_their_goodbye,
    receipts_and_unarchiving_raise_their_events,
    webhook_endpoints_are_kept_per_tenant_and_bounded,
    concurrent_webhook_creates_never_exceed_the_bound,
);

// Further scenarios, each file with its own `on_both_stores!` list (this file is long enough).
mod event_identity;
mod group_pushes;
mod inline_groups;
mod read_races;
mod unarchiving;

async fn direct_message_reaches_both_sides(h: &Harness) {
    let sent = h.send(&user("u1"), "u2", "hi").await.unwrap();
    assert_eq!(sent.status, status::SENT);
    assert_eq!(
        (sent.timeline_of.as_str(), sent.convers_with.as_str()),
        ("u1", "u2")
    );
    assert_eq!(h.timeline("u1", "u2").await, vec![sent.clone()]);
    // Stored once, in the timeline both share: the recipient sees it at once; their
    // conversation comes from the deliver step.
    assert_eq!(h.timeline("u2", "u1").await, vec![sent.view_for("u2")]);
    assert!(h.conversation("u2", "u1").await.is_none());
    let mine = h.conversation("u1", "u2").await.unwrap();
    assert!(!mine.is_new);
    assert_eq!(mine.last_message_text, "hi");

    let events = h.deliver_all().await;
    assert_eq!(count(&events, EventType::MessageSent), 1);
    assert_eq!(count(&events, EventType::MessageDelivered), 1);
    let theirs = h.timeline("u2", "u1").await;
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].status, status::DELIVERED);
    assert_eq!(
        (
            theirs[0].timeline_of.as_str(),
            theirs[0].convers_with.as_str()
        ),
        ("u2", "u1")
    );
    assert_eq!(theirs[0].message_id, sent.message_id);
    let conv = h.conversation("u2", "u1").await.unwrap();
    assert!(conv.is_new);
    assert_eq!(conv.unread_count, 1);
    assert_eq!(conv.key, "u1");
    assert_eq!(h.conversation("u1", "u2").await.unwrap().unread_count, 0);
}

async fn retry_with_message_id_stores_and_delivers_once(h: &Harness) {
    let first = h
        .send_with(
            &user("u1"),
            chat21::ops::messages::SendMessage {
                message_id: Some(id("m-1")),
                ..input("u2", "one")
            },
        )
        .await
        .unwrap();
    let again = h
        .send_with(
            &user("u1"),
            chat21::ops::messages::SendMessage {
                message_id: Some(id("m-1")),
                ..input("u2", "changed")
            },
        )
        .await
        .unwrap();
    assert_eq!(again, first, "a retry answers with the original message");
    let events = h.deliver_all().await;
    assert_eq!(count(&events, EventType::MessageSent), 1);
    assert_eq!(h.timeline("u1", "u2").await.len(), 1);
    assert_eq!(h.timeline("u2", "u1").await.len(), 1);
    assert_eq!(h.conversation("u2", "u1").await.unwrap().unread_count, 1);
    // Another sender may use the same id: ids are per sender.
    h.send_with(
        &user("u3"),
        chat21::ops::messages::SendMessage {
            message_id: Some(id("m-1")),
            ..input("u2", "x")
        },
    )
    .await
    .unwrap();
    h.deliver_all().await;
    assert_eq!(h.timeline("u2", "u3").await.len(), 1);
}

/// The send's one write is the event: an unavailable event bus cannot fail a send, and a
/// delivery that fails (here: publishing its events) is retried and changes nothing twice.
async fn failed_deliveries_are_retried_without_doubling(h: &Harness) {
    h.events.fail_next(1);
    let sent = h.send(&user("u1"), "u2", "hello").await.unwrap();
    assert!(
        h.events.published().is_empty(),
        "a send publishes nothing itself"
    );
    let written = h.take_written().await;
    assert_eq!(written.len(), 1);
    let failed = deliver::handle(&h.deps, &written[0]).await.unwrap_err();
    assert_eq!(failed.status(), 503);
    // The stream hands it over again.
    deliver::handle(&h.deps, &written[0]).await.unwrap();
    let events = h.events.take();
    assert_eq!(count(&events, EventType::MessageSent), 1);
    assert_eq!(h.timeline("u2", "u1").await, vec![sent.view_for("u2")]);
    let theirs = h.conversation("u2", "u1").await.unwrap();
    assert_eq!(theirs.unread_count, 1, "counted once");
    // A failed real-time publish fails the delivery too, and its retry publishes.
    h.send(&user("u2"), "u1", "back").await.unwrap();
    let written = h.take_written().await;
    h.realtime.take();
    h.realtime.fail_next(1);
    assert_eq!(
        deliver::handle(&h.deps, &written[0])
            .await
            .unwrap_err()
            .status(),
        503
    );
    deliver::handle(&h.deps, &written[0]).await.unwrap();
    let topics: Vec<String> = h.realtime.take().into_iter().map(|p| p.topic).collect();
    assert!(
        topics.contains(&"apps/app1/users/u1/messages/u2/clientadded".to_string()),
        "{topics:?}"
    );
    assert_eq!(h.conversation("u1", "u2").await.unwrap().unread_count, 1);
}

/// A retry with the same id, whatever happened to the first call, stores and delivers once.
async fn retries_with_an_id_store_and_deliver_once(h: &Harness) {
    let body = || chat21::ops::messages::SendMessage {
        message_id: Some(id("m-9")),
        ..input("u2", "hello")
    };
    let first = h.send_with(&user("u1"), body()).await.unwrap();
    let events = h.deliver_all().await;
    assert_eq!(count(&events, EventType::MessageSent), 1);
    for _ in 0..3 {
        assert_eq!(h.send_with(&user("u1"), body()).await.unwrap(), first);
    }
    assert_eq!(count(&h.deliver_all().await, EventType::MessageSent), 0);
    assert_eq!(h.timeline("u1", "u2").await.len(), 1);
    assert_eq!(h.timeline("u2", "u1").await.len(), 1);
}

async fn redelivered_events_change_nothing(h: &Harness) {
    h.send(&user("u1"), "u2", "once").await.unwrap();
    h.deliver_all().await;
    for _ in 0..2 {
        assert_eq!(h.redeliver_all().await, 1);
    }
    assert_eq!(h.timeline("u2", "u1").await.len(), 1);
    assert_eq!(h.conversation("u2", "u1").await.unwrap().unread_count, 1);
}

/// A message delivered, overtaken by newer ones, then delivered again (a batch retried after a
/// crash part way) changes nothing: not the unread counts, before or after a read.
async fn overtaken_messages_redelivered_change_nothing(h: &Harness) {
    make_group(h, "group-r", &["u2", "u3"]).await;
    for i in 0..12 {
        h.send(&user("u1"), "u2", &format!("d{i}")).await.unwrap();
        let to_group = chat21::ops::messages::SendMessage {
            channel_type: Some("group".into()),
            ..input("group-r", &format!("g{i}"))
        };
        h.send_with(&user("u1"), to_group).await.unwrap();
    }
    h.deliver_all().await;
    let unread = |h: &Harness, owner: &'static str, with: &'static str| {
        let h = h.clone();
        async move { h.conversation(owner, with).await.unwrap().unread_count }
    };
    let before = (
        unread(h, "u2", "u1").await,
        unread(h, "u2", "group-r").await,
        unread(h, "u3", "group-r").await,
    );
    assert_eq!(before.0, 12);
    assert_eq!(
        h.redeliver_all().await,
        12 * 2 + 1,
        "every message and the creation"
    );
    let after = (
        unread(h, "u2", "u1").await,
        unread(h, "u2", "group-r").await,
        unread(h, "u3", "group-r").await,
    );
    assert_eq!(after, before);
    let last = h.conversation("u2", "u1").await.unwrap();
    assert_eq!(
        last.last.text, "d11",
        "the last message is still the newest"
    );
    // After a read, a redelivery does not count anything again either.
    conversations::mark_read(&h.deps, &user("u2"), id("u2"), &id("u1"))
        .await
        .unwrap();
    h.redeliver_all().await;
    assert_eq!(unread(h, "u2", "u1").await, 0);
}

async fn late_older_message_counts_but_does_not_replace_the_last(h: &Harness) {
    let at = |ts, text: &str| chat21::ops::messages::SendMessage {
        timestamp: Some(ts),
        ..input("u2", text)
    };
    h.send_with(&user("u1"), at(2_000, "newer")).await.unwrap();
    h.send_with(&user("u1"), at(1_000, "older")).await.unwrap();
    let written = h.take_written().await;
    assert_eq!(written.len(), 2);
    for w in &written {
        deliver::handle(&h.deps, w).await.unwrap();
    }
    let conv = h.conversation("u2", "u1").await.unwrap();
    assert_eq!(conv.last_message_text, "newer");
    assert_eq!(conv.unread_count, 2);
    assert_eq!(
        h.conversation("u1", "u2").await.unwrap().last_message_text,
        "newer"
    );
    let texts: Vec<String> = h
        .timeline("u2", "u1")
        .await
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, vec!["newer", "older"], "timelines are newest first");
}

async fn updateconversation_false_leaves_conversations_alone(h: &Harness) {
    let quiet = chat21::ops::messages::SendMessage {
        attributes: Some(
            json!({"updateconversation": false})
                .as_object()
                .unwrap()
                .clone(),
        ),
        ..input("u2", "quiet")
    };
    h.send_with(&user("u1"), quiet).await.unwrap();
    h.deliver_all().await;
    assert_eq!(
        h.timeline("u2", "u1").await.len(),
        1,
        "the message is still delivered"
    );
    assert!(h.conversation("u2", "u1").await.is_none());
    assert!(h.conversation("u1", "u2").await.is_none());
}

async fn paging_reaches_every_item(h: &Harness) {
    for i in 0..5u64 {
        let m = chat21::ops::messages::SendMessage {
            timestamp: Some(10_000 + i),
            ..input("u2", &format!("m{i}"))
        };
        h.send_with(&user("u1"), m).await.unwrap();
    }
    let mut texts = Vec::new();
    let mut page = PageRequest::first(2);
    let mut pages = 0;
    loop {
        let got = conversations::messages(&h.deps, &user("u1"), id("u1"), &id("u2"), &page)
            .await
            .unwrap();
        pages += 1;
        texts.extend(got.items.into_iter().map(|m| m.text));
        match got.next {
            Some(next) => {
                page.after = Some(keys::message_position(&keys::encode_cursor(&next)).unwrap())
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(texts, vec!["m4", "m3", "m2", "m1", "m0"]);

    for peer in ["p1", "p2", "p3", "p4", "p5"] {
        h.send(&user("u9"), peer, "x").await.unwrap();
    }
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let got = conversations::list(&h.deps, &user("u9"), id("u9"), false, &page)
            .await
            .unwrap();
        seen.extend(got.items.into_iter().map(|c| c.key));
        match got.next {
            Some(next) => {
                page.after =
                    Some(keys::conversation_position(&keys::encode_cursor(&next), false).unwrap())
            }
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec!["p5", "p4", "p3", "p2", "p1"],
        "newest first, each once"
    );
}

async fn archive_and_unarchive(h: &Harness) {
    h.send(&user("u1"), "u2", "first").await.unwrap();
    h.deliver_all().await;
    conversations::archive(&h.deps, &user("u2"), None, &id("u1"))
        .await
        .unwrap();
    assert!(h.list("u2", false).await.items.is_empty());
    let archived = h.list("u2", true).await.items;
    assert_eq!(archived.len(), 1);
    assert!(archived[0].archived);
    let detail = conversations::detail(&h.deps, &user("u2"), id("u2"), &id("u1"), true)
        .await
        .unwrap();
    assert!(detail.is_some());
    assert!(
        conversations::detail(&h.deps, &user("u2"), id("u2"), &id("u1"), false)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(count(&h.events.take(), EventType::ConversationArchived), 1);
    // Archiving again is harmless.
    conversations::archive(&h.deps, &user("u2"), None, &id("u1"))
        .await
        .unwrap();
    assert_eq!(h.list("u2", true).await.items.len(), 1);

    // A new message brings it back for the recipient (deliver)...
    h.send(&user("u1"), "u2", "second").await.unwrap();
    h.deliver_all().await;
    let active = h.list("u2", false).await.items;
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].last_message_text, "second");
    assert!(h.list("u2", true).await.items.is_empty());
    // ...and for the sender (send-message).
    conversations::archive(&h.deps, &user("u1"), None, &id("u2"))
        .await
        .unwrap();
    assert!(h.list("u1", false).await.items.is_empty());
    h.send(&user("u1"), "u2", "third").await.unwrap();
    assert_eq!(h.list("u1", false).await.items.len(), 1);
    assert!(h.list("u1", true).await.items.is_empty());
}

async fn permanent_delete_removes_only_the_callers_copies(h: &Harness) {
    h.send(&user("u1"), "u2", "a").await.unwrap();
    h.send(&user("u2"), "u1", "b").await.unwrap();
    h.send(&user("u1"), "u2", "c").await.unwrap();
    h.deliver_all().await;
    assert_eq!(h.timeline("u2", "u1").await.len(), 3);
    conversations::delete(&h.deps, &user("u2"), None, &id("u1"))
        .await
        .unwrap();
    assert!(h.conversation("u2", "u1").await.is_none());
    assert!(h.timeline("u2", "u1").await.is_empty());
    assert!(
        h.list("u2", false).await.items.is_empty() && h.list("u2", true).await.items.is_empty()
    );
    assert_eq!(
        h.timeline("u1", "u2").await.len(),
        3,
        "the peer keeps every copy"
    );
    assert!(h.conversation("u1", "u2").await.is_some());
    assert_eq!(count(&h.events.take(), EventType::ConversationDeleted), 1);
    let again = conversations::delete(&h.deps, &user("u2"), None, &id("u1"))
        .await
        .unwrap_err();
    assert_eq!(again.status(), 404);
    let unknown = conversations::archive(&h.deps, &user("u2"), None, &id("nobody"))
        .await
        .unwrap_err();
    assert_eq!(unknown.status(), 404);
}

async fn read_marks_read_and_shows_receipts(h: &Harness) {
    h.send(&user("u1"), "u2", "one").await.unwrap();
    h.send(&user("u1"), "u2", "two").await.unwrap();
    h.deliver_all().await;
    assert_eq!(h.conversation("u2", "u1").await.unwrap().unread_count, 2);
    assert!(
        h.read_timeline("u1", "u2")
            .await
            .iter()
            .all(|m| m.status == status::SENT)
    );

    conversations::mark_read(&h.deps, &user("u2"), id("u2"), &id("u1"))
        .await
        .unwrap();
    let mine = h.conversation("u2", "u1").await.unwrap();
    assert_eq!((mine.unread_count, mine.is_new), (0, false));
    assert!(mine.read_at.is_some());
    let theirs = h.read_timeline("u1", "u2").await;
    assert!(
        theirs.iter().all(|m| m.status == status::RETURN_RECEIPT),
        "{theirs:?}"
    );
    assert_eq!(
        h.list("u1", false).await.items[0].last.status,
        status::RETURN_RECEIPT
    );
    // The reader's own copies keep their status.
    assert!(
        h.read_timeline("u2", "u1")
            .await
            .iter()
            .all(|m| m.status == status::DELIVERED)
    );

    h.send(&user("u1"), "u2", "three").await.unwrap();
    h.deliver_all().await;
    let statuses: Vec<u16> = h
        .read_timeline("u1", "u2")
        .await
        .iter()
        .map(|m| m.status)
        .collect();
    assert_eq!(
        statuses,
        vec![status::SENT, status::RETURN_RECEIPT, status::RETURN_RECEIPT]
    );
    assert_eq!(h.conversation("u2", "u1").await.unwrap().unread_count, 1);
    let unknown = conversations::mark_read(&h.deps, &user("u2"), id("u2"), &id("nobody"))
        .await
        .unwrap_err();
    assert_eq!(unknown.status(), 404);
}

async fn concurrent_deliveries_keep_unread_exact(h: &Harness) {
    for i in 0..20u64 {
        let m = chat21::ops::messages::SendMessage {
            timestamp: Some(50_000 + i),
            ..input("u0", &format!("m{i}"))
        };
        h.send_with(&user("u1"), m).await.unwrap();
    }
    let written = h.take_written().await;
    assert_eq!(written.len(), 20);
    let mut tasks = Vec::new();
    // In reverse, all at once: the late ones must still count once each.
    for w in written.into_iter().rev() {
        let deps = h.deps.clone();
        tasks.push(tokio::spawn(
            async move { deliver::handle(&deps, &w).await },
        ));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let conv = h.conversation("u0", "u1").await.unwrap();
    assert_eq!(conv.unread_count, 20);
    assert_eq!(conv.last_message_text, "m19");
    assert_eq!(h.timeline("u0", "u1").await.len(), 20);
}

async fn conversation_refusals_change_nothing(h: &Harness) {
    h.send(&user("u1"), "u2", "x").await.unwrap();
    h.deliver_all().await;
    let forbidden = [
        conversations::list(
            &h.deps,
            &user("u3"),
            id("u1"),
            false,
            &PageRequest::first(10),
        )
        .await
        .map(|_| ()),
        conversations::messages(
            &h.deps,
            &user("u3"),
            id("u1"),
            &id("u2"),
            &PageRequest::first(10),
        )
        .await
        .map(|_| ()),
        conversations::mark_read(&h.deps, &user("u3"), id("u2"), &id("u1")).await,
        conversations::archive(&h.deps, &user("u3"), Some(id("u2")), &id("u1")).await,
        conversations::delete(&h.deps, &user("u3"), Some(id("u2")), &id("u1")).await,
    ];
    for result in forbidden {
        assert_eq!(result.unwrap_err().status(), 403);
    }
    assert!(
        conversations::list(
            &h.deps,
            &admin("a"),
            id("u1"),
            false,
            &PageRequest::first(10)
        )
        .await
        .is_ok()
    );
    let conv = h.conversation("u2", "u1").await.unwrap();
    assert_eq!((conv.unread_count, conv.archived), (1, false));
}

pub(crate) fn create_input(name: &str, members: &[&str], id: Option<&str>) -> CreateGroup {
    CreateGroup {
        name: name.into(),
        members: members.iter().map(|m| crate::common::id(m)).collect(),
        group_id: id.map(crate::common::id),
        attributes: Default::default(),
        owner: None,
    }
}

pub(crate) async fn make_group(h: &Harness, id: &str, members: &[&str]) {
    groups::create(
        &h.deps,
        &user("u1"),
        create_input("Team", members, Some(id)),
    )
    .await
    .unwrap();
    h.deliver_all().await;
}

async fn create_group_makes_owner_a_member_and_announces(h: &Harness) {
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

async fn group_reads_and_refusals(h: &Harness) {
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

async fn join_rules(h: &Harness) {
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

async fn leave_rules(h: &Harness) {
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

async fn set_members_applies_the_difference(h: &Harness) {
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
async fn a_large_group_change_is_pushed_in_bounded_batches(h: &Harness) {
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

async fn group_message_fans_out_to_every_member(h: &Harness) {
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

async fn joiner_gets_the_newest_history(h: &Harness) {
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

async fn failed_announcement_is_finished_by_the_next_call(h: &Harness) {
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

async fn concurrent_joins_keep_every_member(h: &Harness) {
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

async fn concurrent_set_members_serialize(h: &Harness) {
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

/// A group's history and the self-conversation of a user whose id is the group's id are
/// different timelines: nothing crosses from one to the other, in either direction.
async fn a_group_history_is_no_users_self_conversation(h: &Harness) {
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

/// Concurrent creates of one group id by one user, same body or not: exactly one 201, the
/// others 409, and the group is the winner's.
async fn concurrent_creates_of_one_id_answer_201_once(h: &Harness) {
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

async fn only_a_stalled_create_with_the_same_body_is_finished_by_a_retry(h: &Harness) {
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

/// Self-notes of the user whose id is a group's id, racing messages to that group: each lands
/// where it belongs, whatever the interleaving.
async fn racing_self_notes_and_group_messages_never_cross(h: &Harness) {
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
async fn joiners_receive_every_message_sent_around_their_join(h: &Harness) {
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
async fn a_leavers_conversation_ends_with_their_goodbye(h: &Harness) {
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

/// The events real time adds for webhooks: `message-return-receipt` where a read receipt is
/// applied (direct conversations), `conversation-unarchived` where a new message brings a
/// conversation back (direct and group), each once: a redelivery raises neither again.
async fn receipts_and_unarchiving_raise_their_events(h: &Harness) {
    let sent = h.send(&user("u1"), "u2", "read me").await.unwrap();
    h.deliver_all().await;
    conversations::read_message(&h.deps, &user("u2"), &id("u1"), &id(&sent.message_id))
        .await
        .unwrap();
    let events = h.events.take();
    let receipts: Vec<_> = events
        .iter()
        .filter(|e| e.event_type() == EventType::MessageReturnReceipt)
        .collect();
    assert_eq!(receipts.len(), 1, "{events:?}");
    let EventData::MessageReturnReceipt(copy) = &receipts[0].data else {
        panic!("not a receipt: {:?}", receipts[0]);
    };
    assert_eq!(copy.timeline_of, "u1", "the sender's copy");
    assert_eq!(copy.status, status::RETURN_RECEIPT);
    assert_eq!(copy.message_id, sent.message_id);
    assert_eq!(receipts[0].recipient_id, "u2");
    assert_eq!(receipts[0].app_id, APP);
    assert_eq!(
        receipts[0].message_id.as_deref(),
        Some(sent.message_id.as_str())
    );
    // A receipt for one's own message is no receipt.
    conversations::read_message(&h.deps, &user("u1"), &id("u2"), &id(&sent.message_id))
        .await
        .unwrap();
    assert_eq!(count(&h.events.take(), EventType::MessageReturnReceipt), 0);

    // Direct: archived by u2, brought back by u1's next message.
    conversations::archive(&h.deps, &user("u2"), None, &id("u1"))
        .await
        .unwrap();
    h.events.take();
    h.send(&user("u1"), "u2", "back").await.unwrap();
    let events = h.deliver_all().await;
    let unarchived: Vec<_> = events
        .iter()
        .filter(|e| e.event_type() == EventType::ConversationUnarchived)
        .collect();
    assert_eq!(unarchived.len(), 1, "{events:?}");
    assert_eq!(unarchived[0].recipient_id, "u2");
    let EventData::ConversationUnarchived(row) = &unarchived[0].data else {
        panic!("not an unarchive: {:?}", unarchived[0]);
    };
    assert_eq!((row.key.as_str(), row.archived), ("u1", false));
    assert_eq!(row.last_message_text, "back");
    h.redeliver_all().await;
    assert_eq!(
        count(&h.events.take(), EventType::ConversationUnarchived),
        0,
        "a redelivery un-archives nothing"
    );

    // Group: a member's archived group conversation comes back with the next group message.
    make_group(h, "group-back", &["u2"]).await;
    conversations::archive(&h.deps, &user("u2"), None, &id("group-back"))
        .await
        .unwrap();
    h.events.take();
    h.send(&user("u1"), "group-back", "to the group")
        .await
        .unwrap();
    let events = h.deliver_all().await;
    let unarchived: Vec<_> = events
        .iter()
        .filter(|e| e.event_type() == EventType::ConversationUnarchived)
        .collect();
    assert_eq!(unarchived.len(), 1, "{events:?}");
    assert_eq!(unarchived[0].recipient_id, "u2");
    // And through a group change's system messages (the fan-out of a join).
    conversations::archive(&h.deps, &user("u2"), None, &id("group-back"))
        .await
        .unwrap();
    h.events.take();
    groups::join(&h.deps, &user("u1"), &id("group-back"), id("u3"))
        .await
        .unwrap();
    let events = h.deliver_all().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type() == EventType::ConversationUnarchived)
            .map(|e| e.recipient_id.as_str())
            .collect::<Vec<_>>(),
        ["u2"],
        "{events:?}"
    );
}

fn webhook(app: &str, hook: &str, url: &str) -> chat21::model::Webhook {
    chat21::model::Webhook {
        id: hook.into(),
        app_id: app.into(),
        url: url.into(),
        events: vec![EventType::MessageSent],
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        created_at: 1,
        updated_at: 1,
    }
}

async fn webhook_endpoints_are_kept_per_tenant_and_bounded(h: &Harness) {
    let store = &h.deps.store;
    assert!(store.list_webhooks(APP).await.unwrap().is_empty());
    let b = webhook(APP, "b", "https://b.example/");
    assert_eq!(store.put_webhook(&b, 3).await.unwrap(), WebhookPut::Created);
    let a = webhook(APP, "a", "https://a.example/");
    assert_eq!(store.put_webhook(&a, 3).await.unwrap(), WebhookPut::Created);
    let mut b2 = b.clone();
    b2.url = "https://b2.example/".into();
    b2.events = vec![EventType::JoinMember, EventType::PresenceChange];
    b2.updated_at = 2;
    assert_eq!(
        store.put_webhook(&b2, 3).await.unwrap(),
        WebhookPut::Replaced
    );
    assert_eq!(
        store.list_webhooks(APP).await.unwrap(),
        vec![a.clone(), b2.clone()]
    );
    assert_eq!(store.get_webhook(APP, "b").await.unwrap(), Some(b2.clone()));
    assert_eq!(store.get_webhook(APP, "zzz").await.unwrap(), None);
    // Another tenant's endpoints are its own.
    assert!(store.list_webhooks("app2").await.unwrap().is_empty());
    assert_eq!(store.get_webhook("app2", "a").await.unwrap(), None);
    let other = webhook("app2", "a", "https://other.example/");
    assert_eq!(
        store.put_webhook(&other, 3).await.unwrap(),
        WebhookPut::Created
    );
    assert_eq!(store.get_webhook(APP, "a").await.unwrap(), Some(a.clone()));

    // The bound: a new one beyond it writes nothing; replacing is still fine.
    let c = webhook(APP, "c", "https://c.example/");
    assert_eq!(store.put_webhook(&c, 3).await.unwrap(), WebhookPut::Created);
    let d = webhook(APP, "d", "https://d.example/");
    assert_eq!(store.put_webhook(&d, 3).await.unwrap(), WebhookPut::Full);
    assert_eq!(store.get_webhook(APP, "d").await.unwrap(), None);
    assert_eq!(
        store.put_webhook(&c, 3).await.unwrap(),
        WebhookPut::Replaced
    );
    // A deletion makes room.
    assert!(store.delete_webhook(APP, "a").await.unwrap());
    assert!(!store.delete_webhook(APP, "a").await.unwrap());
    assert!(!store.delete_webhook("app2", "zzz").await.unwrap());
    assert_eq!(store.put_webhook(&d, 3).await.unwrap(), WebhookPut::Created);
    let ids: Vec<String> = store
        .list_webhooks(APP)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids, ["b", "c", "d"]);
    assert_eq!(store.list_webhooks("app2").await.unwrap(), vec![other]);
}

async fn concurrent_webhook_creates_never_exceed_the_bound(h: &Harness) {
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = h.deps.store.clone();
            tokio::spawn(async move {
                let hook = webhook(APP, &format!("w{i:02}"), "https://x.example/");
                store.put_webhook(&hook, 5).await.unwrap()
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        if task.await.unwrap() == WebhookPut::Created {
            created += 1;
        }
    }
    assert_eq!(created, 5);
    assert_eq!(h.deps.store.list_webhooks(APP).await.unwrap().len(), 5);
}
