//! Per-user conversations: lists, detail, timelines, archive/delete and read state.

use crate::error::{Error, Result};
use crate::events::{Event, EventType};
use crate::ids;
use crate::model::{Caller, ChannelType, Conversation, Message};
use crate::ops::Deps;
use crate::ports::{Page, PageRequest};

/// A user may read and change only their own conversations; admins anyone's in their tenant.
fn authorize(caller: &Caller, user: &str) -> Result<()> {
    ids::validate("user_id", user)?;
    if !caller.may_act_for(user) {
        return Err(Error::forbidden(
            "you may only access your own conversations",
        ));
    }
    Ok(())
}

/// Active (or archived) conversations, newest first.
pub async fn list(
    deps: &Deps,
    caller: &Caller,
    app: &str,
    user: &str,
    archived: bool,
    page: &PageRequest,
) -> Result<Page<Conversation>> {
    authorize(caller, user)?;
    let page = deps
        .store
        .list_conversations(app, user, archived, page)
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
    app: &str,
    user: &str,
    with: &str,
    archived: bool,
) -> Result<Option<Conversation>> {
    authorize(caller, user)?;
    ids::validate("convers_with", with)?;
    let found = deps.store.get_conversation(app, user, with).await?;
    Ok(found
        .filter(|c| c.archived == archived)
        .map(Conversation::with_receipt))
}

/// The user's timeline with `with`, newest first; their own direct messages that the peer has
/// read show status 250.
pub async fn messages(
    deps: &Deps,
    caller: &Caller,
    app: &str,
    user: &str,
    with: &str,
    page: &PageRequest,
) -> Result<Page<Message>> {
    authorize(caller, user)?;
    ids::validate("convers_with", with)?;
    let (messages, conversation) = tokio::try_join!(
        deps.store.list_messages(app, user, with, page),
        deps.store.get_conversation(app, user, with),
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

/// Who a conversation call acts for: the caller, or for an admin the body's `user_id`.
pub fn acting_user(caller: &Caller, user_id: Option<String>) -> Result<String> {
    match user_id {
        Some(user) if user != caller.user_id && !caller.admin => Err(Error::forbidden(
            "only admins may act for another user (`user_id`)",
        )),
        Some(user) => {
            ids::validate("user_id", &user)?;
            Ok(user)
        }
        None => Ok(caller.user_id.clone()),
    }
}

/// `DELETE /conversations/{with}`: archive, or with `delete` remove the conversation and the
/// user's copies in it. Nobody else's copies are touched.
pub async fn archive_or_delete(
    deps: &Deps,
    app: &str,
    user: &str,
    with: &str,
    delete: bool,
) -> Result<()> {
    ids::validate("recipient_id", with)?;
    let store = &deps.store;
    if !delete {
        let conversation = store
            .archive_conversation(app, user, with)
            .await?
            .ok_or_else(|| not_found(with))?;
        // Published on every call, so a retry after a failed publish still announces it.
        let event = Event::conversation(
            EventType::ConversationArchived,
            user,
            &conversation,
            deps.now(),
        );
        return deps.events.publish(&[event]).await;
    }
    let conversation = store
        .get_conversation(app, user, with)
        .await?
        .ok_or_else(|| not_found(with))?;
    // Copies first, the row last: a failure part way leaves the row, so a retry finds it.
    store.delete_timeline(app, user, with).await?;
    let event = Event::conversation(
        EventType::ConversationDeleted,
        user,
        &conversation,
        deps.now(),
    );
    deps.events.publish(&[event]).await?;
    store.delete_conversation(app, user, with).await?;
    Ok(())
}

fn not_found(with: &str) -> Error {
    Error::not_found(format!("no conversation with {with}"))
}

/// Marks the conversation read: `is_new` false, `unread_count` 0; in a direct conversation the
/// peer's messages up to now show status 250 to the peer. Two writes, whatever the count.
pub async fn mark_read(
    deps: &Deps,
    caller: &Caller,
    app: &str,
    user: &str,
    with: &str,
) -> Result<()> {
    authorize(caller, user)?;
    ids::validate("convers_with", with)?;
    let at = deps.now();
    let conversation = deps
        .store
        .mark_read(app, user, with, at)
        .await?
        .ok_or_else(|| not_found(with))?;
    if conversation.last.channel_type == ChannelType::Direct {
        deps.store.mark_peer_read(app, with, user, at).await?;
    }
    Ok(())
}
