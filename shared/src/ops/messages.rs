//! `POST /api/{app_id}/messages`: send a direct or group message.

use serde_json::{Map, Value};
use tracing::warn;

use crate::error::{Error, Result};
use crate::events::Event;
use crate::ids::{self, Id};
use crate::input::Fields;
use crate::model::{Caller, ChannelType, Message, SentRecord, status};
use crate::ops::Deps;

/// Largest `text`, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Largest stored message as JSON: it travels whole in one SNS event (256 KiB with envelope).
pub const MAX_MESSAGE_BYTES: usize = 240 * 1024;
const MAX_NAME_CHARS: usize = 1024;
/// How far ahead of the server's clock a client `timestamp` may be: a few minutes of clock
/// skew. A message from further in the future would stay the conversation's last forever.
pub const MAX_FUTURE_SKEW_MS: u64 = 5 * 60 * 1000;
const MAX_TYPE_CHARS: usize = 64;

/// The body of a send.
#[derive(Debug, Clone, PartialEq)]
pub struct SendMessage {
    pub sender_fullname: String,
    pub recipient_id: Id,
    pub recipient_fullname: String,
    pub text: String,
    pub kind: Option<String>,
    pub channel_type: Option<String>,
    pub attributes: Option<Map<String, Value>>,
    pub metadata: Option<Map<String, Value>>,
    pub timestamp: Option<u64>,
    pub sender_id: Option<Id>,
    pub message_id: Option<Id>,
}

impl SendMessage {
    pub fn from_fields(f: &Fields) -> Result<SendMessage> {
        Ok(SendMessage {
            sender_fullname: f.required_str("sender_fullname")?,
            recipient_id: f.required_id("recipient_id")?,
            recipient_fullname: f.required_str("recipient_fullname")?,
            text: f.optional_str("text")?.unwrap_or_default(),
            kind: f.optional_str("type")?,
            channel_type: f.optional_str("channel_type")?,
            attributes: f.optional_object("attributes")?,
            metadata: f.optional_object("metadata")?,
            timestamp: f.optional_timestamp("timestamp")?,
            sender_id: f.optional_id("sender_id")?,
            message_id: f.optional_id("message_id")?,
        })
    }
}

fn check_name(field: &str, value: &str) -> Result<()> {
    if value.chars().count() > MAX_NAME_CHARS {
        return Err(Error::bad_request(format!(
            "`{field}` is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(())
}

/// Builds the canonical copy of the message a caller asks to send, enforcing every rule.
fn compose(deps: &Deps, caller: &Caller, input: SendMessage) -> Result<Message> {
    let sender = caller.acting_as("sender_id", input.sender_id)?;
    let channel_type = match input.channel_type.as_deref() {
        None | Some("direct") if !ids::looks_like_group(&input.recipient_id) => ChannelType::Direct,
        None | Some("direct") | Some("group") => ChannelType::Group,
        Some(other) => {
            return Err(Error::bad_request(format!(
                "`channel_type` must be \"direct\" or \"group\", not {other:?}"
            )));
        }
    };
    if input.text.len() > MAX_TEXT_BYTES {
        return Err(Error::PayloadTooLarge(format!(
            "`text` is larger than {} KiB",
            MAX_TEXT_BYTES / 1024
        )));
    }
    check_name("sender_fullname", &input.sender_fullname)?;
    check_name("recipient_fullname", &input.recipient_fullname)?;
    let kind = input.kind.unwrap_or_else(|| "text".to_string());
    if kind.is_empty() || kind.chars().count() > MAX_TYPE_CHARS {
        return Err(Error::bad_request(format!(
            "`type` must be a string of 1 to {MAX_TYPE_CHARS} characters"
        )));
    }
    let now = deps.now();
    let timestamp = input.timestamp.unwrap_or(now);
    if timestamp > now + MAX_FUTURE_SKEW_MS {
        return Err(Error::bad_request(format!(
            "`timestamp` is more than {} minutes ahead of the server's clock",
            MAX_FUTURE_SKEW_MS / 60_000
        )));
    }
    let message_id = input
        .message_id
        .map_or_else(|| deps.ids.new_id(), String::from);
    let recipient = String::from(input.recipient_id);
    let sender = String::from(sender);
    let (timeline_of, convers_with) = match channel_type {
        ChannelType::Direct => (sender.clone(), recipient.clone()),
        ChannelType::Group => (recipient.clone(), recipient.clone()),
    };
    let message = Message {
        message_id,
        sender,
        sender_fullname: input.sender_fullname,
        recipient,
        recipient_fullname: input.recipient_fullname,
        text: input.text,
        kind,
        channel_type,
        attributes: input.attributes.unwrap_or_default(),
        metadata: input.metadata,
        timestamp,
        status: status::SENT,
        app_id: caller.app_id.to_string(),
        timeline_of,
        convers_with,
    };
    let size = serde_json::to_vec(&message)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_MESSAGE_BYTES {
        return Err(Error::PayloadTooLarge(format!(
            "the message is larger than {} KiB once stored",
            MAX_MESSAGE_BYTES / 1024
        )));
    }
    Ok(message)
}

/// A group message needs a member sender (admins excepted) and an existing group.
async fn check_group_sender(deps: &Deps, caller: &Caller, message: &Message) -> Result<()> {
    let (app, group, sender) = (&message.app_id, &message.recipient, &message.sender);
    if deps.store.is_member(app, group, sender).await? {
        return Ok(());
    }
    if deps.store.group_head(app, group).await?.is_none() {
        return Err(Error::not_found(format!("group {group} not found")));
    }
    if caller.admin {
        return Ok(());
    }
    Err(Error::forbidden(format!(
        "{sender} is not a member of group {group}"
    )))
}

/// Sends a message: stores the canonical copy, publishes `message-sent` (the deliver step writes
/// the recipients' copies), and answers with the stored message.
///
/// A client `message_id` makes the call safe to retry: the same sender and id never store or
/// deliver twice, and a retry after a failed publish finishes the job. Without one, a failed
/// publish is rolled back so that the client's retry does not leave a stray copy.
pub async fn send_message(deps: &Deps, caller: &Caller, input: SendMessage) -> Result<Message> {
    let client_id = input.message_id.is_some();
    let message = compose(deps, caller, input)?;
    if message.is_group() {
        check_group_sender(deps, caller, &message).await?;
    }
    let record = SentRecord {
        message,
        published: false,
    };
    match deps.store.claim_sent(&record).await? {
        None => finish(deps, record.message, client_id).await,
        Some(earlier) if earlier.published => Ok(earlier.message),
        // An earlier attempt stored it but could not publish: finish that attempt.
        Some(earlier) => finish(deps, earlier.message, true).await,
    }
}

async fn finish(deps: &Deps, message: Message, keep_on_failure: bool) -> Result<Message> {
    let canonical = std::slice::from_ref(&message);
    let stored = if message.is_group() {
        deps.store.put_history(canonical).await
    } else {
        deps.store.put_copies(canonical).await
    };
    let published = match stored {
        Ok(()) => {
            deps.events
                .publish(&[Event::message_sent(&message, deps.now())])
                .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = published {
        warn!(error = %e, message_id = %message.message_id, "send could not complete");
        if !keep_on_failure && let Err(undo) = deps.store.abandon_sent(&message).await {
            warn!(error = %undo, message_id = %message.message_id, "could not roll back a failed send");
        }
        if !matches!(e, Error::Unavailable(_)) {
            return Err(e);
        }
        let hint = if keep_on_failure {
            " with the same message_id"
        } else {
            ""
        };
        return Err(Error::unavailable(format!(
            "the message could not be sent now ({e}); retry{hint}"
        )));
    }
    // The sender's own conversation; deliver repeats this idempotently, so a failure here
    // only delays it.
    if !message.is_group()
        && message.updates_conversation()
        && let Err(e) = deps.store.touch_conversation(&message).await
    {
        warn!(error = %e, message_id = %message.message_id, "sender conversation left to deliver");
    }
    if let Err(e) = deps.store.mark_published(&message).await {
        warn!(error = %e, message_id = %message.message_id, "could not mark the send published");
    }
    Ok(message)
}
