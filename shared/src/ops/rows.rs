//! A copy applied to its owner's conversation row, and what an un-archive raises: one step for
//! the send (the sender's own row), the deliver step (each recipient's row, and the sender's
//! when the send could not write it) and a group change's delivery (each member's run of
//! system messages).

use crate::error::Result;
use crate::events::Event;
use crate::model::Message;
use crate::ops::Deps;
use crate::ports::{Applied, ConversationKind, Push, RowUpdate};
use crate::realtime::push;

/// Conversation rows written at once when a message or a group change reaches many members.
pub const FAN_OUT_CONCURRENCY: usize = 16;

/// One message as its owner's row takes it: `view` is the owner's copy (`timelineOf`), at
/// `order` in its timeline; it counts as unread when someone else sent it.
pub fn one_message(view: &Message, kind: ConversationKind, order: String) -> RowUpdate {
    RowUpdate {
        last: view.clone(),
        kind,
        orders: vec![order],
        unread: view.sender != view.timeline_of,
        opens_window: true,
        newest_at: view.timestamp,
    }
}

/// Applies `update` to `owner`'s conversation with `with`. When the write brings the
/// conversation back from the archive, the owner's clients are told (the push is added to
/// `pushes`, for the caller to publish with its others), and if the message was received from
/// someone else (`update.unread`) a `conversation-unarchived` event, dated `at` (the write
/// that brought it back), carries the conversation as it is now. A user's own message bringing
/// back their own conversation raises no event, whichever path wrote the row: the send, or the
/// deliver step repairing it. A redelivery finds the conversation active and says nothing.
pub async fn apply(
    deps: &Deps,
    owner: &str,
    with: &str,
    update: &RowUpdate,
    at: u64,
    pushes: &mut Vec<Push>,
) -> Result<Applied> {
    let applied = deps.store.apply(owner, with, update).await?;
    if applied == (Applied::Newer { unarchived: true }) {
        let app = &update.last.app_id;
        if update.unread
            && let Some(conversation) = deps.store.get_conversation(app, owner, with).await?
        {
            let event = Event::conversation_unarchived(owner, &conversation.with_receipt(), at);
            deps.events.publish(&[event]).await?;
        }
        pushes.push(push::unarchived(app, owner, with));
    }
    Ok(applied)
}
