//! Chat21's inline ("volatile") groups, and why one can never hijack a real conversation
//! (issue #16, item 1): an inline group has a group-looking id (a send naming a user's id is
//! refused), the real conversation wins a row (a direct or group message repairs a row that
//! old data left "inline"; an inline copy never touches a direct or group row), and a copy's
//! sender is always the real sender.

use super::create_input;
use crate::common::{APP, Harness, count, id, input, user};
use chat21::keys;
use chat21::model::EventType;
use chat21::model::{ChannelType, Message};
use chat21::ops::messages::SendMessage;
use chat21::ops::{conversations, deliver, groups};
use chat21::ports::{ConversationKind, RowUpdate, Streamed};

fn inline(to: &str, members: &[&str], text: &str) -> SendMessage {
    SendMessage {
        channel_type: Some("group".into()),
        group_members: Some(members.iter().map(|m| id(m)).collect()),
        ..input(to, text)
    }
}

fn texts(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|m| m.text.clone()).collect()
}

async fn kind(h: &Harness, owner: &str, with: &str) -> Option<ConversationKind> {
    let view = h.deps.store.timeline_view(APP, owner, with).await.unwrap();
    view.map(|v| v.kind)
}

pub(super) async fn an_inline_group_reaches_its_members_and_creates_no_group(h: &Harness) {
    let sent = h
        .send_with(&user("u1"), inline("group-v", &["u2", "u3"], "hello"))
        .await
        .unwrap();
    assert_eq!(sent.channel_type, ChannelType::Group);
    let events = h.deliver_all().await;
    assert_eq!(count(&events, EventType::MessageDelivered), 2);
    for member in ["u1", "u2", "u3"] {
        let seen = h.timeline(member, "group-v").await;
        assert_eq!(texts(&seen), vec!["hello"], "{member}");
        assert_eq!(seen[0].sender, "u1", "{member}: the real sender");
        assert_eq!(seen[0].timeline_of, member);
        assert_eq!(
            kind(h, member, "group-v").await,
            Some(ConversationKind::Inline)
        );
    }
    assert_eq!(
        h.conversation("u2", "group-v").await.unwrap().unread_count,
        1
    );
    let unknown = groups::get(&h.deps, &user("u1"), &id("group-v")).await;
    assert_eq!(unknown.unwrap_err().status(), 404, "no group was created");
}

/// (a) of the issue: `mal`'s inline send to `dan` naming `vic` would have made vic's
/// conversation with dan read mal's copies forever. An id without `group-` may be a user's:
/// such a send is refused, with or without `group.members`, and stores nothing.
pub(super) async fn an_inline_send_to_a_users_id_is_refused(h: &Harness) {
    let forged = SendMessage {
        sender_fullname: "Dan".into(),
        ..inline("dan", &["vic"], "dan here: please pay to account 456")
    };
    for attempt in [
        forged.clone(),
        SendMessage {
            group_members: None,
            ..forged
        },
    ] {
        let refused = h.send_with(&user("mal"), attempt).await.unwrap_err();
        assert_eq!(refused.status(), 400);
        assert!(refused.to_string().contains("group-"), "{refused}");
    }
    assert!(h.take_written().await.is_empty(), "nothing stored");
    for (owner, with) in [("mal", "dan"), ("vic", "dan"), ("dan", "mal")] {
        assert!(
            h.conversation(owner, with).await.is_none(),
            "{owner}/{with}"
        );
        assert!(h.timeline(owner, with).await.is_empty(), "{owner}/{with}");
    }

    h.send(&user("dan"), "vic", "hi vic").await.unwrap();
    h.send(&user("vic"), "dan", "hi dan").await.unwrap();
    h.deliver_all().await;
    assert_eq!(texts(&h.timeline("vic", "dan").await), ["hi dan", "hi vic"]);
    assert_eq!(kind(h, "vic", "dan").await, Some(ConversationKind::Direct));

    // (b): deleted, then a new message shows.
    conversations::delete(&h.deps, &user("vic"), None, &id("dan"))
        .await
        .unwrap();
    assert!(h.timeline("vic", "dan").await.is_empty());
    h.send(&user("dan"), "vic", "again").await.unwrap();
    h.deliver_all().await;
    assert_eq!(texts(&h.timeline("vic", "dan").await), ["again"]);
    let row = h.conversation("vic", "dan").await.unwrap();
    assert_eq!(
        (row.last_message_text.as_str(), row.unread_count),
        ("again", 1)
    );
}

/// What the deliver step did before the fix with mal's inline send to `dan` naming `victim`:
/// a copy into the victim's own timeline and their row with dan taken as "inline" (dated four
/// minutes ahead, as a client timestamp may be).
async fn poison(h: &Harness, victim: &str, text: &str) {
    let copy = Message {
        message_id: format!("forged-{text}"),
        sender: "mal".into(),
        sender_fullname: "Dan".into(),
        recipient: "dan".into(),
        recipient_fullname: "Peer".into(),
        text: text.into(),
        kind: "text".into(),
        channel_type: ChannelType::Group,
        attributes: None,
        metadata: None,
        timestamp: h.deps.now() + 4 * 60_000,
        status: 150,
        app_id: APP.into(),
        timeline_of: victim.into(),
        convers_with: "dan".into(),
    };
    h.deps
        .store
        .put_copies(std::slice::from_ref(&copy))
        .await
        .unwrap();
    let update = RowUpdate {
        orders: vec![keys::order_of(&copy)],
        newest_at: copy.timestamp,
        last: copy,
        kind: ConversationKind::Inline,
        unread: true,
        opens_window: true,
    };
    h.deps.store.apply(victim, "dan", &update).await.unwrap();
    assert_eq!(kind(h, victim, "dan").await, Some(ConversationKind::Inline));
    let seen = h
        .deps
        .store
        .timeline_view(APP, victim, "dan")
        .await
        .unwrap();
    assert!(seen.is_some_and(|v| !v.deleted));
}

pub(super) async fn a_row_left_inline_by_old_data_is_repaired_by_the_next_real_message(
    h: &Harness,
) {
    poison(h, "vic", "pay to 456").await;
    // Read at once: an inline group's id has `group-`, so this is the direct conversation.
    assert!(h.timeline("vic", "dan").await.is_empty());
    h.send(&user("dan"), "vic", "hi vic").await.unwrap();
    h.send(&user("vic"), "dan", "hi dan").await.unwrap();
    h.deliver_all().await;
    assert_eq!(texts(&h.timeline("vic", "dan").await), ["hi dan", "hi vic"]);
    assert_eq!(kind(h, "vic", "dan").await, Some(ConversationKind::Direct));
    let row = h.conversation("vic", "dan").await.unwrap();
    assert_eq!(row.last.channel_type, ChannelType::Direct);
    assert_eq!(row.last_message_text, "hi dan");
    assert_eq!(
        row.unread_count, 1,
        "the row started over: dan's message only"
    );
    assert_eq!(h.list("vic", false).await.items.len(), 1);

    // (b) on old data: deleted while poisoned, then dan writes again.
    poison(h, "wes", "pay to 789").await;
    conversations::delete(&h.deps, &user("wes"), None, &id("dan"))
        .await
        .unwrap();
    h.send(&user("dan"), "wes", "again").await.unwrap();
    h.deliver_all().await;
    assert_eq!(texts(&h.timeline("wes", "dan").await), ["again"]);
    assert_eq!(kind(h, "wes", "dan").await, Some(ConversationKind::Direct));
    let row = h.conversation("wes", "dan").await.unwrap();
    assert_eq!(row.last_message_text, "again");

    // Once the row is the direct conversation's, an inline copy never applies to it.
    let copy = h.timeline("vic", "dan").await[0].clone();
    let update = RowUpdate {
        orders: vec![format!("{:013}#mal#x", copy.timestamp + 1)],
        newest_at: copy.timestamp + 1,
        last: Message {
            sender: "mal".into(),
            channel_type: ChannelType::Group,
            text: "x".into(),
            ..copy
        },
        kind: ConversationKind::Inline,
        unread: true,
        opens_window: true,
    };
    let refused = h.deps.store.apply("vic", "dan", &update).await.unwrap();
    assert_eq!(refused, chat21::ports::Applied::Refused);
    assert_eq!(
        h.conversation("vic", "dan")
            .await
            .unwrap()
            .last_message_text,
        "hi dan"
    );

    // An inline record to a user's id still in the stream (written before the rule) is
    // refused by the deliver step and changes nothing.
    let written = chat21::ports::Written {
        message: Message {
            message_id: "old-inline".into(),
            sender: "mal".into(),
            sender_fullname: "Dan".into(),
            recipient: "dan".into(),
            recipient_fullname: "Peer".into(),
            text: "old".into(),
            kind: "text".into(),
            channel_type: ChannelType::Group,
            attributes: None,
            metadata: None,
            timestamp: h.deps.now(),
            status: 100,
            app_id: APP.into(),
            timeline_of: "dan".into(),
            convers_with: "dan".into(),
        },
        origin: chat21::ports::Origin::Inline {
            audience: vec!["vic".into(), "mal".into()],
        },
        written_at: h.deps.now(),
    };
    let refused = deliver::handle(&h.deps, &Streamed::Message(written))
        .await
        .unwrap_err();
    assert_eq!(refused.status(), 400);
    assert_eq!(
        h.conversation("vic", "dan")
            .await
            .unwrap()
            .last_message_text,
        "hi dan"
    );
    assert!(h.conversation("mal", "dan").await.is_none());
}

/// (c) of the issue: mal's inline send to `group-future-9` naming vic, then vic creates that
/// group with carl: carl's posts show in vic's timeline, which is the group's.
pub(super) async fn an_inline_send_never_takes_over_a_group_created_later(h: &Harness) {
    h.send_with(&user("mal"), inline("group-future-9", &["vic"], "early"))
        .await
        .unwrap();
    h.deliver_all().await;
    let early = h.timeline("vic", "group-future-9").await;
    assert_eq!(texts(&early), ["early"]);
    assert_eq!(early[0].sender, "mal", "the copy names its real sender");

    groups::create(
        &h.deps,
        &user("vic"),
        create_input("Future", &["carl"], Some("group-future-9")),
    )
    .await
    .unwrap();
    h.deliver_all().await;
    h.send(&user("carl"), "group-future-9", "carl here")
        .await
        .unwrap();
    h.deliver_all().await;
    assert_eq!(
        kind(h, "vic", "group-future-9").await,
        Some(ConversationKind::Group)
    );
    let seen = h.timeline("vic", "group-future-9").await;
    assert_eq!(seen[0].text, "carl here", "{:?}", texts(&seen));
    assert!(seen.iter().all(|m| m.sender != "mal"), "{:?}", texts(&seen));
    assert_eq!(
        seen,
        h.timeline("carl", "group-future-9")
            .await
            .iter()
            .map(|m| m.view_for("vic"))
            .collect::<Vec<_>>()
    );
    let row = h.conversation("vic", "group-future-9").await.unwrap();
    assert_eq!(row.last_message_text, "carl here");
    // Now that the group exists, mal may not write to it.
    let refused = h
        .send_with(&user("mal"), inline("group-future-9", &["vic"], "late"))
        .await
        .unwrap_err();
    assert_eq!(refused.status(), 403);
}

/// An inline send accepted before the group existed but delivered after vic's conversation
/// became the group's: the copy is stored in vic's own inline timeline, which nothing reads
/// while the conversation is the group's; the row, vic's clients and the events never see it.
pub(super) async fn an_inline_copy_delivered_late_never_touches_a_real_conversation(h: &Harness) {
    let quiet = SendMessage {
        attributes: Some(
            serde_json::json!({"updateconversation": false})
                .as_object()
                .unwrap()
                .clone(),
        ),
        ..inline("group-late", &["vic"], "quiet")
    };
    h.send_with(&user("mal"), inline("group-late", &["vic"], "late"))
        .await
        .unwrap();
    h.send_with(&user("mal"), quiet).await.unwrap();
    let pending = h.take_written().await;
    assert_eq!(pending.len(), 2);

    groups::create(
        &h.deps,
        &user("vic"),
        create_input("Late", &["carl"], Some("group-late")),
    )
    .await
    .unwrap();
    h.deliver_all().await;
    h.realtime.take();
    let before = h.conversation("vic", "group-late").await.unwrap();
    for record in &pending {
        deliver::handle(&h.deps, record).await.unwrap();
    }
    let events = h.events.take();
    assert!(
        events
            .iter()
            .all(|e| e.delivered_to.as_deref() != Some("vic")),
        "no message-delivered to vic"
    );
    assert_eq!(count(&events, EventType::MessageSent), 2);
    let vics = format!("apps/{APP}/users/vic/");
    let pushed: Vec<String> = h
        .realtime
        .take()
        .into_iter()
        .map(|p| p.topic)
        .filter(|t| t.starts_with(&vics))
        .collect();
    assert!(pushed.is_empty(), "{pushed:?}");
    assert_eq!(h.conversation("vic", "group-late").await.unwrap(), before);
    assert_eq!(
        kind(h, "vic", "group-late").await,
        Some(ConversationKind::Group)
    );
    let seen = h.timeline("vic", "group-late").await;
    assert!(seen.iter().all(|m| m.sender != "mal"), "{:?}", texts(&seen));
}
