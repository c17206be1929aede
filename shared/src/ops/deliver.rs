//! The deliver step: consumes every new message the store writes (DynamoDB's stream on AWS, a
//! channel in `chat21-local`) and delivers it: the recipients' conversations, the connected
//! clients (a `clientadded` per copy, the sender's own too), and the `message-sent` event for
//! the other consumers (webhooks). Settled group changes come the same way, to be delivered to
//! every member (`ops::groups::delivery`). Every write is idempotent, so a redelivered message
//! changes nothing; its publishes go out again (real time is at least once).

use futures_util::future::join_all;

use crate::error::{Error, Result};
use crate::events::Event;
use crate::ids;
use crate::keys;
use crate::model::Message;
use crate::ops::rows::{self, FAN_OUT_CONCURRENCY};
use crate::ops::{Deps, groups};
use crate::ports::{Applied, ConversationKind, Origin, Push, Streamed, Written};
use crate::realtime::push;

/// Anything from the stream is checked before it is trusted: a well-formed canonical message.
fn check(written: &Written) -> Result<()> {
    let message = &written.message;
    let valid_ids = [
        &message.app_id,
        &message.sender,
        &message.recipient,
        &message.message_id,
    ]
    .iter()
    .all(|id| ids::is_valid(id));
    // The canonical form: the sender's (direct) or the group's own (group) timeline.
    let owner = if message.is_group() {
        &message.recipient
    } else {
        &message.sender
    };
    let canonical = message.timeline_of == *owner && message.convers_with == message.recipient;
    let origin_fits = match &written.origin {
        Origin::Direct => !message.is_group(),
        Origin::Group { .. } => message.is_group(),
        // An inline group's id looks like a group's (a send refuses any other; a record from
        // before that rule would name a user's conversation).
        Origin::Inline { audience } => {
            message.is_group()
                && ids::looks_like_group(&message.recipient)
                && audience.iter().all(|id| ids::is_valid(id))
        }
    };
    if !valid_ids || !canonical || !origin_fits {
        return Err(Error::bad_request("an invalid message to deliver"));
    }
    Ok(())
}

/// Delivers what the stream handed over: a new message, or a settled group change.
pub async fn handle(deps: &Deps, streamed: &Streamed) -> Result<()> {
    match streamed {
        Streamed::Message(written) => message(deps, written).await,
        Streamed::Change { app, group, change } => {
            if !ids::is_valid(app) || !ids::is_valid(group) {
                return Err(Error::bad_request("an invalid group change to deliver"));
            }
            groups::delivery::deliver(deps, app, group, change).await
        }
    }
}

/// Delivers one new message.
pub async fn message(deps: &Deps, written: &Written) -> Result<()> {
    check(written)?;
    let message = &written.message;
    // Every event of the record is dated by its write, never by this attempt: a redelivered
    // record publishes the same bytes (and webhook ids), so consumers can drop duplicates.
    let at = written.written_at;
    let delivered = match &written.origin {
        Origin::Direct => direct(deps, message, at).await?,
        Origin::Group { seq } => group(deps, message, *seq, at).await?,
        Origin::Inline { audience } => inline(deps, message, audience, at).await?,
    };
    let mut events = vec![Event::message_sent(message, at)];
    if deps.settings.delivered_events {
        events.extend(
            delivered
                .iter()
                .map(|copy| Event::message_delivered(copy, at)),
        );
    }
    deps.events.publish(&events).await
}

/// Applies a message (written at `at`) to one owner's conversation; adds the publishes it
/// causes. False when the copy is not the owner's to see: an inline group's copy for a
/// conversation that is a real (direct or group) one.
async fn apply(
    deps: &Deps,
    view: &Message,
    kind: ConversationKind,
    order: &str,
    at: u64,
    pushes: &mut Vec<Push>,
) -> Result<bool> {
    let (owner, with) = (&view.timeline_of, &view.convers_with);
    if view.updates_conversation() {
        let update = rows::one_message(view, kind, order.to_string());
        if rows::apply(deps, owner, with, &update, at, pushes).await? == Applied::Refused {
            return Ok(false);
        }
    } else if kind == ConversationKind::Inline && is_real(deps, &view.app_id, owner, with).await? {
        return Ok(false);
    }
    pushes.push(push::message_added(view));
    Ok(true)
}

/// Whether `owner`'s conversation with `with` is a direct or group one (which an inline
/// group's copy never reaches, even one that leaves conversations alone).
async fn is_real(deps: &Deps, app: &str, owner: &str, with: &str) -> Result<bool> {
    let view = deps.store.timeline_view(app, owner, with).await?;
    Ok(view.is_some_and(|v| v.kind != ConversationKind::Inline))
}

/// [`apply`] on its own, for running several at once.
async fn apply_one(
    deps: &Deps,
    view: &Message,
    kind: ConversationKind,
    order: &str,
    at: u64,
) -> Result<Vec<Push>> {
    let mut pushes = Vec::new();
    apply(deps, view, kind, order, at, &mut pushes).await?;
    Ok(pushes)
}

/// Publishes to connected clients. A failure fails the delivery, so that its redelivery
/// publishes again (its writes change nothing the second time).
async fn publish(deps: &Deps, pushes: &[Push]) -> Result<()> {
    deps.realtime.publish(pushes).await
}

/// A direct message: the recipient's conversation (and the sender's, if the send could not
/// update it), both users told. Returns the recipient's copy.
async fn direct(deps: &Deps, message: &Message, at: u64) -> Result<Vec<Message>> {
    let (app, sender, recipient) = (&message.app_id, &message.sender, &message.recipient);
    let order = keys::order_of(message);
    let mut pushes = Vec::new();
    let theirs = message.view_for(recipient);
    if recipient != sender {
        apply(
            deps,
            &theirs,
            ConversationKind::Direct,
            &order,
            at,
            &mut pushes,
        )
        .await?;
    }
    let mine = message.view_for(sender);
    if message.updates_conversation() && deps.store.lags(app, sender, recipient, &order).await? {
        apply(
            deps,
            &mine,
            ConversationKind::Direct,
            &order,
            at,
            &mut pushes,
        )
        .await?;
    } else {
        pushes.push(push::message_added(&mine));
    }
    publish(deps, &pushes).await?;
    Ok(if recipient == sender {
        Vec::new()
    } else {
        vec![theirs]
    })
}

/// A group message: every member's conversation, every member told (the sender too).
async fn group(deps: &Deps, message: &Message, seq: u64, at: u64) -> Result<Vec<Message>> {
    let order = keys::group_order(seq, message);
    let members = deps
        .store
        .members(&message.app_id, &message.recipient)
        .await?;
    let views: Vec<Message> = members.iter().map(|m| message.view_for(m)).collect();
    let mut pushes = Vec::new();
    for chunk in views.chunks(FAN_OUT_CONCURRENCY) {
        let applied = join_all(
            chunk
                .iter()
                .map(|view| apply_one(deps, view, ConversationKind::Group, &order, at)),
        )
        .await;
        for result in applied {
            pushes.extend(result?);
        }
    }
    publish(deps, &pushes).await?;
    Ok(views
        .into_iter()
        .filter(|v| v.timeline_of != message.sender)
        .collect())
}

/// An inline group's message: a copy into each member's own timeline and their conversation.
async fn inline(
    deps: &Deps,
    message: &Message,
    audience: &[String],
    at: u64,
) -> Result<Vec<Message>> {
    let order = keys::order_of(message);
    let copies: Vec<Message> = audience
        .iter()
        .filter(|member| **member != message.sender)
        .map(|member| message.view_for(member))
        .collect();
    deps.store.put_copies(&copies).await?;
    let mut pushes = Vec::new();
    let mut delivered = Vec::new();
    for copy in copies {
        // A member whose conversation with that id is a real one is neither told of the copy
        // nor counted as delivered. The copy stays in their own inline timeline, which is
        // harmless: that timeline is read only through a row of an inline group, and an
        // inline copy never turns a direct or group row into one.
        if apply(
            deps,
            &copy,
            ConversationKind::Inline,
            &order,
            at,
            &mut pushes,
        )
        .await?
        {
            delivered.push(copy);
        }
    }
    pushes.push(push::message_added(&message.view_for(&message.sender)));
    publish(deps, &pushes).await?;
    Ok(delivered)
}
