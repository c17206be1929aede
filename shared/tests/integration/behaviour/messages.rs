//! Direct messages: sent and delivered to both sides, and every way a send or a delivery comes
//! twice (a retry with the same message id, a failed delivery retried, a redelivered or
//! overtaken event) storing and delivering once; a late older message; `updateconversation`.

use crate::common::{Harness, count, id, input, user};
use chat21::model::EventType;
use chat21::model::status;
use chat21::ops::{conversations, deliver};
use serde_json::json;

use super::make_group;

pub(super) async fn direct_message_reaches_both_sides(h: &Harness) {
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

pub(super) async fn retry_with_message_id_stores_and_delivers_once(h: &Harness) {
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
pub(super) async fn failed_deliveries_are_retried_without_doubling(h: &Harness) {
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
pub(super) async fn retries_with_an_id_store_and_deliver_once(h: &Harness) {
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

pub(super) async fn redelivered_events_change_nothing(h: &Harness) {
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
pub(super) async fn overtaken_messages_redelivered_change_nothing(h: &Harness) {
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

pub(super) async fn late_older_message_counts_but_does_not_replace_the_last(h: &Harness) {
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

pub(super) async fn updateconversation_false_leaves_conversations_alone(h: &Harness) {
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
