//! Per-user conversations: lists, detail, timelines, archive/delete and read state.
//!
//! A user reads and changes only their own conversations; admins anyone's in their tenant
//! ([`Caller::acting_as`]).

use crate::error::{Error, Result};
use crate::events::Event;
use crate::ids::Id;
use crate::model::{Caller, ChannelType, Conversation, Message};
use crate::ops::Deps;
use crate::ports::{Page, PageRequest};

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

/// The user's timeline with `with`, newest first; their own direct messages that the peer has
/// read show status 250.
pub async fn messages(
    deps: &Deps,
    caller: &Caller,
    user: Id,
    with: &Id,
    page: &PageRequest,
) -> Result<Page<Message>> {
    let user = caller.acting_as("user_id", Some(user))?;
    let app = &caller.app_id;
    let (messages, conversation) = tokio::try_join!(
        deps.store.list_messages(app, &user, with, page),
        deps.store.get_conversation(app, &user, with),
    )?;
    let peer_read_at = conversation.and_then(|c| c.peer_read_at);
    Ok(Page {
        items: messages
            .items
            .into_iter()
            .map(|m| m.with_receipt(peer_read_at))
            .collect(),
        next: messages.next,
    })
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
    deps.events.publish(&[event]).await
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
    // Copies first, the row last: a failure part way leaves the row, so a retry finds it.
    store.delete_timeline(app, &user, with).await?;
    let event = Event::conversation_deleted(&user, &conversation, deps.now());
    deps.events.publish(&[event]).await?;
    store.delete_conversation(app, &user, with).await
}

/// Marks the conversation read: `is_new` false, `unread_count` 0; in a direct conversation the
/// peer's messages up to now show status 250 to the peer. Two writes, whatever the count.
pub async fn mark_read(deps: &Deps, caller: &Caller, user: Id, with: &Id) -> Result<()> {
    let user = caller.acting_as("user_id", Some(user))?;
    let app = &caller.app_id;
    let at = deps.now();
    let conversation = deps
        .store
        .mark_read(app, &user, with, at)
        .await?
        .ok_or_else(|| not_found(with))?;
    if conversation.last.channel_type == ChannelType::Direct {
        deps.store.mark_peer_read(app, with, &user, at).await?;
    }
    Ok(())
}
