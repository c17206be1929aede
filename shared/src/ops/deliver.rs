//! The deliver step: consumes `message-sent` and `join-member` events from the queue and writes
//! recipients' copies and conversations. Every write is idempotent, so a redelivered event
//! changes nothing.

use crate::error::{Error, Result};
use crate::events::{Event, EventData, MemberChange};
use crate::ids;
use crate::keys::Position;
use crate::model::{Message, SYSTEM_SENDER, status};
use crate::ops::Deps;
use crate::ports::{Delivery, PageRequest};
use crate::realtime::push;

/// How many group messages a joiner receives (the newest ones).
pub const HISTORY_ON_JOIN: usize = 200;

/// Handles one event from the queue. Events deliver does not consume are ignored.
pub async fn handle(deps: &Deps, event: &Event) -> Result<()> {
    match &event.data {
        EventData::MessageSent(message) => deliver_message(deps, event, message).await,
        EventData::JoinMember(change) => copy_history(deps, event, change).await,
        _ => Ok(()),
    }
}

/// Anything on the topic is untrusted input: refuse messages that are not well formed.
fn check_message(event: &Event, message: &Message) -> Result<()> {
    let valid_ids = [
        &message.app_id,
        &message.sender,
        &message.recipient,
        &message.message_id,
    ]
    .iter()
    .all(|id| ids::is_valid(id));
    // The canonical copy: the sender's (direct) or the group's own (group) timeline.
    let owner = if message.is_group() {
        &message.recipient
    } else {
        &message.sender
    };
    let canonical = message.timeline_of == *owner && message.convers_with == message.recipient;
    if !valid_ids || !canonical || message.app_id != event.app_id {
        return Err(Error::bad_request(
            "message-sent event with an invalid message",
        ));
    }
    Ok(())
}

async fn deliver_message(deps: &Deps, event: &Event, message: &Message) -> Result<()> {
    check_message(event, message)?;
    let update_conversation = message.updates_conversation();
    let deliveries: Vec<Delivery> = if message.is_group() {
        let group = &message.recipient;
        let mut members = deps.store.members(&message.app_id, group).await?;
        for extra in &event.also_to {
            if ids::is_valid(extra) && !members.contains(extra) {
                members.push(extra.clone());
            }
        }
        members
            .iter()
            .map(|member| Delivery {
                copy: message.copy_for(member, group, status::DELIVERED),
                unread: *member != message.sender,
                update_conversation,
            })
            .collect()
    } else {
        vec![Delivery {
            copy: message.copy_for(&message.recipient, &message.sender, status::DELIVERED),
            unread: message.recipient != message.sender,
            update_conversation,
        }]
    };
    let unarchived = deps.store.deliver(&deliveries).await?;
    let mut pushes = Vec::new();
    if !message.is_group() && update_conversation {
        // The sender's side too (send-message did it already unless it failed there).
        if deps.store.touch_conversation(message).await? {
            let (app, sender, to) = (&message.app_id, &message.sender, &message.recipient);
            pushes.push(push::unarchived(app, sender, to));
        }
    }
    for (delivery, taken_back) in deliveries.iter().zip(unarchived) {
        let copy = &delivery.copy;
        if taken_back {
            pushes.push(push::unarchived(
                &copy.app_id,
                &copy.timeline_of,
                &copy.convers_with,
            ));
        }
        pushes.push(push::message_added(copy));
    }
    // A failure fails the event, so that its redelivery publishes again (its writes are
    // idempotent: they change nothing the second time).
    deps.realtime.publish(&pushes).await?;
    if deps.settings.delivered_events {
        let now = deps.now();
        let events: Vec<Event> = deliveries
            .iter()
            .map(|d| Event::message_delivered(&d.copy, now))
            .collect();
        deps.events.publish(&events).await?;
    }
    Ok(())
}

/// A joiner receives the newest group messages from before their join, as delivered copies.
async fn copy_history(deps: &Deps, event: &Event, change: &MemberChange) -> Result<()> {
    let Some(joined) = &change.message else {
        return Ok(());
    };
    let group = &change.group_id;
    let announces_this_join = joined.sender == SYSTEM_SENDER
        && joined.recipient == *group
        && joined.app_id == event.app_id;
    if !announces_this_join {
        return Err(Error::bad_request(
            "join-member event whose message is not the group's announcement",
        ));
    }
    let page = PageRequest {
        limit: HISTORY_ON_JOIN,
        after: Some(Position::of(joined)),
    };
    let history = deps.store.list_history(&event.app_id, group, &page).await?;
    // Oldest first, as clients expect copies of a conversation in the order written.
    let copies: Vec<Message> = history
        .items
        .iter()
        .rev()
        .map(|m| m.copy_for(&change.member_id, group, status::DELIVERED))
        .collect();
    deps.store.put_copies(&copies).await?;
    let pushes: Vec<_> = copies.iter().map(push::message_added).collect();
    deps.realtime.publish(&pushes).await
}
