//! Un-archiving, one rule whichever path writes the row: `conversation-unarchived` is raised
//! when a message received from someone else brings a conversation back from the archive; a
//! user's own message bringing back their own conversation tells their clients
//! (`archived_conversations/{cw}/clientdeleted`) and raises no event, whether the send wrote
//! their row or the deliver step repaired it.

use super::make_group;
use crate::common::{APP, Harness, id, user};
use chat21::events::{Event, EventData};
use chat21::model::EventType;
use chat21::ops::conversations;
use chat21::ports::{Origin, Written};

/// Whose conversations `conversation-unarchived` events name.
fn unarchived_for(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event_type() == EventType::ConversationUnarchived)
        .map(|e| {
            let EventData::ConversationUnarchived(row) = &e.data else {
                panic!("not an unarchive: {e:?}");
            };
            assert_eq!(row.last.timeline_of, e.recipient_id, "the owner's own row");
            assert!(!row.archived);
            e.recipient_id.clone()
        })
        .collect()
}

/// The un-archives pushed since the last look: the owner and the conversation of each
/// `apps/{app}/users/{owner}/archived_conversations/{with}/clientdeleted`.
fn unarchive_pushes(h: &Harness) -> Vec<(String, String)> {
    h.realtime
        .take()
        .into_iter()
        .filter_map(|p| match p.topic.split('/').collect::<Vec<_>>()[..] {
            [
                "apps",
                APP,
                "users",
                owner,
                "archived_conversations",
                with,
                "clientdeleted",
            ] => Some((owner.to_string(), with.to_string())),
            _ => None,
        })
        .collect()
}

fn pair(owner: &str, with: &str) -> (String, String) {
    (owner.to_string(), with.to_string())
}

async fn archive(h: &Harness, owner: &str, with: &str) {
    conversations::archive(&h.deps, &user(owner), None, &id(with))
        .await
        .unwrap();
    assert!(h.conversation(owner, with).await.unwrap().archived);
}

pub(super) async fn only_a_received_message_raises_conversation_unarchived(h: &Harness) {
    let first = h.send(&user("u1"), "u2", "first").await.unwrap();
    h.deliver_all().await;
    archive(h, "u1", "u2").await;
    archive(h, "u2", "u1").await;
    h.events.take();
    h.realtime.take();

    // The sender's own row, written by the send: brought back, told, no event.
    h.send(&user("u1"), "u2", "back").await.unwrap();
    assert!(!h.conversation("u1", "u2").await.unwrap().archived);
    assert_eq!(
        unarchive_pushes(h),
        [pair("u1", "u2")],
        "the send tells the sender"
    );
    assert_eq!(unarchived_for(&h.events.take()), Vec::<String>::new());
    // The recipient's row, written by the deliver step: brought back, told, and the event.
    let events = h.deliver_all().await;
    assert!(!h.conversation("u2", "u1").await.unwrap().archived);
    assert_eq!(unarchive_pushes(h), [pair("u2", "u1")]);
    assert_eq!(unarchived_for(&events), ["u2"], "{events:?}");

    // The sender's own row, repaired by the deliver step because the send's second write
    // failed (here: the message written as the send's first write does, and nothing more).
    archive(h, "u1", "u2").await;
    h.events.take();
    h.realtime.take();
    let written = Written {
        message: chat21::model::Message {
            message_id: "m-repaired".into(),
            text: "repaired".into(),
            timestamp: h.deps.now(),
            ..first
        },
        origin: Origin::Direct,
        written_at: h.deps.now(),
    };
    assert_eq!(h.deps.store.put_message(&written).await.unwrap(), None);
    assert!(h.conversation("u1", "u2").await.unwrap().archived);
    let events = h.deliver_all().await;
    let mine = h.conversation("u1", "u2").await.unwrap();
    assert!(!mine.archived, "the deliver step repaired the sender's row");
    assert_eq!(mine.last_message_text, "repaired");
    assert_eq!(
        unarchive_pushes(h),
        [pair("u1", "u2")],
        "the repair tells the sender"
    );
    assert_eq!(
        unarchived_for(&events),
        Vec::<String>::new(),
        "one's own message raises no event, whichever path wrote the row: {events:?}"
    );
}

pub(super) async fn ones_own_group_message_unarchives_without_an_event(h: &Harness) {
    make_group(h, "group-own", &["u2"]).await;
    archive(h, "u1", "group-own").await;
    archive(h, "u2", "group-own").await;
    h.events.take();
    h.realtime.take();
    h.send(&user("u1"), "group-own", "to all").await.unwrap();
    let events = h.deliver_all().await;
    assert!(!h.conversation("u1", "group-own").await.unwrap().archived);
    assert!(!h.conversation("u2", "group-own").await.unwrap().archived);
    let mut told = unarchive_pushes(h);
    told.sort();
    assert_eq!(
        told,
        [pair("u1", "group-own"), pair("u2", "group-own")],
        "both members' clients are told"
    );
    assert_eq!(unarchived_for(&events), ["u2"], "{events:?}");
}
