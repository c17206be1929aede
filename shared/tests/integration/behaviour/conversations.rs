//! Conversations: paging, archive and un-archive, a permanent delete (the caller's copies only),
//! reads and their receipts and the events they raise, unread counts under concurrent
//! deliveries, refusals that change nothing.

use crate::common::{APP, Harness, admin, count, id, input, user};
use chat21::events::EventData;
use chat21::keys;
use chat21::model::EventType;
use chat21::model::status;
use chat21::ops::groups;
use chat21::ops::{conversations, deliver};
use chat21::ports::PageRequest;

use super::make_group;

pub(super) async fn paging_reaches_every_item(h: &Harness) {
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

pub(super) async fn archive_and_unarchive(h: &Harness) {
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

pub(super) async fn permanent_delete_removes_only_the_callers_copies(h: &Harness) {
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

pub(super) async fn read_marks_read_and_shows_receipts(h: &Harness) {
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

pub(super) async fn concurrent_deliveries_keep_unread_exact(h: &Harness) {
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

pub(super) async fn conversation_refusals_change_nothing(h: &Harness) {
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

/// The events real time adds for webhooks: `message-return-receipt` where a read receipt is
/// applied (direct conversations), `conversation-unarchived` where a new message brings a
/// conversation back (direct and group), each once: a redelivery raises neither again.
pub(super) async fn receipts_and_unarchiving_raise_their_events(h: &Harness) {
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
