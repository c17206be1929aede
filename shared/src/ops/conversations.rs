//! Per-user conversations: lists, detail, timelines, archive/delete and read state.
//!
//! A user reads and changes only their own conversations; admins anyone's in their tenant
//! ([`Caller::acting_as`]).

use crate::error::{Error, Result};
use crate::events::Event;
use crate::ids::{self, Id};
use crate::model::{Caller, ChannelType, Conversation, Message, status};
use crate::ops::Deps;
use crate::ports::{ConversationKind, Page, PageRequest, ReadMark, Timeline, TimelineView};
use crate::realtime::push;

/// Active (or archived) conversations of `user`, newest first.
pub async fn list(
    deps: &Deps,
    caller: &Caller,
    user: Id,
    archived: bool,
    page: &PageRequest,
) -> Result<Page<Conversation>> {
    let user = caller.acting_as("user_id", Some(user))?;
    let page = deps
        .store
        .list_conversations(&caller.app_id, &user, archived, page)
        .await?;
    Ok(Page {
        items: page
            .items
            .into_iter()
            .map(Conversation::with_receipt)
            .collect(),
        next: page.next,
    })
}

/// One conversation, if it is in the asked list (active or archived).
pub async fn detail(
    deps: &Deps,
    caller: &Caller,
    user: Id,
    with: &Id,
    archived: bool,
) -> Result<Option<Conversation>> {
    let user = caller.acting_as("user_id", Some(user))?;
    let found = deps
        .store
        .get_conversation(&caller.app_id, &user, with)
        .await?;
    Ok(found
        .filter(|c| c.archived == archived)
        .map(Conversation::with_receipt))
}

/// The timeline `user` sees with `with`, and how.
async fn timeline_of(
    deps: &Deps,
    app: &str,
    user: &str,
    with: &str,
) -> Result<(Timeline, Option<TimelineView>)> {
    let view = deps.store.timeline_view(app, user, with).await?;
    let timeline = match view.as_ref().map(|v| v.kind) {
        Some(ConversationKind::Group) => Timeline::History {
            app: app.to_string(),
            group: with.to_string(),
        },
        // An inline group's id looks like a group's: a row of an "inline" conversation with
        // any other id is old data (an inline send that named a user), to be read as the
        // direct conversation it hid until its next message repairs it.
        Some(ConversationKind::Inline) if ids::looks_like_group(with) => Timeline::Copies {
            app: app.to_string(),
            owner: user.to_string(),
            with: with.to_string(),
        },
        Some(ConversationKind::Direct | ConversationKind::Inline) | None => Timeline::Direct {
            app: app.to_string(),
            a: user.to_string(),
            b: with.to_string(),
        },
    };
    Ok((timeline, view))
}

/// A page of what `user` sees of their conversation with `with`, newest first, as copies of
/// theirs (`timelineOf` = user), without the receipts the read marks give.
pub async fn copies(
    deps: &Deps,
    app: &str,
    user: &str,
    with: &str,
    page: &PageRequest,
) -> Result<Page<Message>> {
    seen(deps, app, user, with, page, false).await
}

/// [`copies`], with the receipts when `receipts` is set.
async fn seen(
    deps: &Deps,
    app: &str,
    user: &str,
    with: &str,
    page: &PageRequest,
    receipts: bool,
) -> Result<Page<Message>> {
    let (timeline, view) = timeline_of(deps, app, user, with).await?;
    let windows = match (&timeline, &view) {
        (Timeline::History { .. }, Some(v)) => Some(v.windows.as_slice()),
        _ => None,
    };
    let cleared_to = view.as_ref().and_then(|v| v.cleared_to.as_deref());
    let stored = deps
        .store
        .list_timeline(&timeline, windows, cleared_to, page)
        .await?;
    let (received, peer_read_at) = match &view {
        Some(v) if receipts => (v.received_up_to, v.peer_read_at),
        _ => (None, None),
    };
    Ok(Page {
        items: stored
            .items
            .iter()
            .map(|m| m.view_for(user).with_receipt(received, peer_read_at))
            .collect(),
        next: stored.next,
    })
}

/// The user's timeline with `with`, newest first: their own direct messages that the peer has
/// read show status 250, received ones they sent a receipt for 200.
pub async fn messages(
    deps: &Deps,
    caller: &Caller,
    user: Id,
    with: &Id,
    page: &PageRequest,
) -> Result<Page<Message>> {
    let user = caller.acting_as("user_id", Some(user))?;
    seen(deps, &caller.app_id, &user, with, page, true).await
}

fn not_found(with: &str) -> Error {
    Error::not_found(format!("no conversation with {with}"))
}

/// `DELETE /conversations/{with}`: moves the caller's (or, for an admin, `user_id`'s)
/// conversation to the archived list.
pub async fn archive(deps: &Deps, caller: &Caller, user_id: Option<Id>, with: &Id) -> Result<()> {
    let user = caller.acting_as("user_id", user_id)?;
    let conversation = deps
        .store
        .archive_conversation(&caller.app_id, &user, with)
        .await?
        .ok_or_else(|| not_found(with))?;
    // Published on every call, so a retry after a failed publish still announces it.
    let event = Event::conversation_archived(&user, &conversation, deps.now());
    deps.events.publish(&[event]).await?;
    deps.publish_quietly(&push::archived(&conversation)).await;
    Ok(())
}

/// `DELETE /conversations/{with}?delete=true`: removes the conversation and the user's copies
/// in it. Nobody else's copies are touched.
pub async fn delete(deps: &Deps, caller: &Caller, user_id: Option<Id>, with: &Id) -> Result<()> {
    let user = caller.acting_as("user_id", user_id)?;
    let (store, app) = (&deps.store, &caller.app_id);
    let conversation = store
        .get_conversation(app, &user, with)
        .await?
        .ok_or_else(|| not_found(with))?;
    // An inline group's copies first, the row last: a failure part way leaves the row, so a
    // retry finds it. (Direct and group messages are kept once for everyone: the row's
    // tombstone hides them from this user.)
    let inline = conversation.last.channel_type == ChannelType::Group
        && store.timeline_view(app, &user, with).await?.map(|v| v.kind)
            == Some(ConversationKind::Inline);
    if inline {
        store.delete_copies(app, &user, with).await?;
    }
    let event = Event::conversation_deleted(&user, &conversation, deps.now());
    deps.events.publish(&[event]).await?;
    store.delete_conversation(app, &user, with).await?;
    deps.publish_quietly(&push::deleted(&conversation)).await;
    Ok(())
}

/// Marks the conversation read: `is_new` false, `unread_count` 0; in a direct conversation the
/// peer's messages up to the mark show status 250 to the peer. Two writes, whatever the count.
/// The mark is now, or later: the newest message the conversation was given (one that arrived
/// between reading the clock and writing the mark is read too, and not counted as unread).
pub async fn mark_read(deps: &Deps, caller: &Caller, user: Id, with: &Id) -> Result<()> {
    let user = caller.acting_as("user_id", Some(user))?;
    let app = &caller.app_id;
    let now = deps.now();
    let conversation = deps
        .store
        .mark_read(app, &user, with, now)
        .await?
        .ok_or_else(|| not_found(with))?;
    let at = conversation.read_at.unwrap_or(now);
    let mut pushes = vec![push::conversation_read(&conversation)];
    if conversation.last.channel_type == ChannelType::Direct {
        deps.store
            .raise_read_mark(app, with, &user, ReadMark::Peer, at)
            .await?;
        pushes.push(push::peer_read(app, with, &user, at));
    }
    deps.publish_quietly(&pushes).await;
    Ok(())
}

/// How far back a receipt for a group or inline message is looked for in the reader's view.
const RECEIPT_LOOKBACK: usize = 200;

/// `{me}` read message `message_id` of their conversation with `with` (Chat21's
/// `{"status": 200}` on the message's update topic): their copy, and every earlier one, shows
/// status 200; in a direct conversation the sender's copy shows 250, the sender is told, and a
/// `message-return-receipt` event carries that copy.
/// A receipt for a message the reader did not receive changes nothing.
pub async fn read_message(deps: &Deps, caller: &Caller, with: &Id, message_id: &Id) -> Result<()> {
    let (app, me) = (&caller.app_id, &caller.user_id);
    if deps.store.get_conversation(app, me, with).await?.is_none() {
        return Ok(());
    }
    let (timeline, _) = timeline_of(deps, app, me, with).await?;
    let direct = matches!(timeline, Timeline::Direct { .. });
    let found = if direct {
        // A received direct message's sender is the peer.
        deps.store.get_message(&timeline, with, message_id).await?
    } else {
        // A group message's sender is not in the topic: look among the newest.
        let recent = PageRequest::first(RECEIPT_LOOKBACK);
        let page = seen(deps, app, me, with, &recent, false).await?;
        page.items
            .into_iter()
            .find(|m| m.message_id == **message_id)
    };
    let Some(message) = found.filter(|m| m.sender != **me) else {
        return Ok(());
    };
    let at = message.timestamp;
    deps.store
        .raise_read_mark(app, me, with, ReadMark::Received, at)
        .await?;
    if direct {
        deps.store
            .raise_read_mark(app, with, me, ReadMark::Peer, at)
            .await?;
        deps.publish_quietly(&[push::receipt(app, with, me, message_id)])
            .await;
        // The sender's copy, as they see it now: read (Chat21's return receipt).
        let mut copy = message.view_for(with);
        copy.status = status::RETURN_RECEIPT;
        let event = Event::message_return_receipt(&copy, deps.now());
        deps.events.publish(&[event]).await?;
    }
    Ok(())
}
