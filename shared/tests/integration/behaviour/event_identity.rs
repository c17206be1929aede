//! An event has one identity (API.md "Events"): however often the stream hands a record over,
//! the events its delivery publishes are the same bytes, dated by the record's write, so the
//! webhook ids are the same and receivers can drop the duplicates.

use std::sync::Arc;

use super::make_group;
use crate::common::{Harness, RecordingClient, id, input, user};
use chat21::adapters::embedded::MemoryRetries;
use chat21::events::Event;
use chat21::model::EventType;
use chat21::ops::messages::SendMessage;
use chat21::ops::webhooks::{WebhookConfig, Webhooks};
use chat21::ops::{conversations, deliver};
use chat21::ports::Streamed;

/// The `webhook-id` each event gets from the webhooks consumer (a recording client, one
/// global endpoint).
async fn webhook_ids(h: &Harness, events: &[Event]) -> Vec<String> {
    let client = Arc::new(RecordingClient::default());
    let webhooks = Webhooks::new(
        h.deps.store.clone(),
        client.clone(),
        Arc::new(MemoryRetries::new(h.deps.clock.clone(), 10)),
        h.deps.clock.clone(),
        WebhookConfig {
            endpoints: vec!["http://127.0.0.1:9/identity".into()],
            ..WebhookConfig::default()
        },
    );
    for event in events {
        webhooks.handle_record(&event.to_json()).await.unwrap();
    }
    let posted = client.posted.lock().unwrap();
    assert_eq!(posted.len(), events.len());
    posted
        .iter()
        .map(|p| p.header("webhook-id").unwrap().to_string())
        .collect()
}

pub(super) async fn a_redelivered_record_publishes_the_same_events(h: &Harness) {
    make_group(h, "group-i", &["u2"]).await;
    let first = SendMessage {
        timestamp: Some(1_600_000_000_000),
        ..input("u2", "first")
    };
    h.send_with(&user("u1"), first).await.unwrap();
    h.deliver_all().await;
    // u2's conversation is archived: the first delivery below brings it back.
    conversations::archive(&h.deps, &user("u2"), None, &id("u1"))
        .await
        .unwrap();
    h.events.take();

    // A direct message dated a year before its write, a group message, an inline group's.
    let backdated = SendMessage {
        timestamp: Some(1_670_000_000_000),
        ..input("u2", "direct")
    };
    h.send_with(&user("u1"), backdated).await.unwrap();
    h.send(&user("u1"), "group-i", "group").await.unwrap();
    let inline = SendMessage {
        channel_type: Some("group".into()),
        group_members: Some(vec![id("u2"), id("u3")]),
        ..input("group-inline-i", "inline")
    };
    h.send_with(&user("u1"), inline).await.unwrap();
    let written = h.take_written().await;
    assert_eq!(written.len(), 3);

    for record in &written {
        let Streamed::Message(w) = record else {
            panic!("not a message: {record:?}");
        };
        let what = &w.message.text;
        deliver::handle(&h.deps, record).await.unwrap();
        let first = h.events.take();
        // The same record again (and a third time), later by the clock.
        let mut again = Vec::new();
        for _ in 0..2 {
            deliver::handle(&h.deps, record).await.unwrap();
            again.push(h.events.take());
        }
        assert!(
            first.len() >= 2,
            "{what}: message-sent and message-delivered"
        );
        for event in &first {
            assert_eq!(
                event.created_at,
                w.written_at,
                "{what}: {:?} is dated by the write",
                event.event_type()
            );
        }
        let unarchived = |events: &[Event]| {
            events
                .iter()
                .filter(|e| e.event_type() == EventType::ConversationUnarchived)
                .count()
        };
        if what == "direct" {
            assert_ne!(w.written_at, w.message.timestamp);
            assert_eq!(unarchived(&first), 1, "the write brought u2's back");
        }
        // Only the first delivery's write un-archived (docs/limits.md): the others
        // publish the rest, byte for byte.
        let repeatable: Vec<Event> = first
            .iter()
            .filter(|e| e.event_type() != EventType::ConversationUnarchived)
            .cloned()
            .collect();
        let bytes = |events: &[Event]| events.iter().map(Event::to_json).collect::<Vec<_>>();
        for later in &again {
            assert_eq!(unarchived(later), 0, "{what}");
            assert_eq!(bytes(later), bytes(&repeatable), "{what}");
            assert_eq!(
                webhook_ids(h, later).await,
                webhook_ids(h, &repeatable).await,
                "{what}"
            );
        }
    }
}
