//! `POST /api/{app_id}/messages`: send a direct or group message.

use serde_json::{Map, Value};
use tracing::warn;

use crate::error::{Error, Result};
use crate::ids::{self, Id};
use crate::input::Fields;
use crate::keys;
use crate::model::{Caller, ChannelType, Message, status};
use crate::ops::{Deps, rows};
use crate::ports::{ConversationKind, Origin, Written};
use crate::realtime::topics;

/// Largest `text`, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Largest stored message as JSON: it travels whole in one MQTT publish (IoT Core carries at
/// most 128 KB) and one SNS event.
pub const MAX_MESSAGE_BYTES: usize = 120 * 1024;
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
    /// Chat21's inline ("volatile") group: `group: {members: {id: 1, …}}`, used when the
    /// recipient group does not exist.
    pub group_members: Option<Vec<Id>>,
}

/// Most members an inline group may name.
pub const MAX_INLINE_MEMBERS: usize = 100;

impl SendMessage {
    /// The body of `POST /messages`.
    pub fn from_fields(f: &Fields) -> Result<SendMessage> {
        let group_members = match f.optional_object("group")? {
            Some(group) if group.get("members").is_some_and(|m| !m.is_null()) => {
                let members = Fields::from_map(group).member_ids("members")?;
                if members.len() > MAX_INLINE_MEMBERS {
                    return Err(Error::bad_request(format!(
                        "an inline group has at most {MAX_INLINE_MEMBERS} members"
                    )));
                }
                Some(members)
            }
            _ => None,
        };
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
            group_members,
        })
    }

    /// The payload of a publish on `…/outgoing/users/{me}/messages/{to}/outgoing`: the same
    /// body, with the recipient from the topic and the sender from the connection.
    pub fn from_publish(f: &Fields, to: Id) -> Result<SendMessage> {
        let mut fields = f.clone();
        fields.set("recipient_id", Value::String(to.to_string()));
        fields.remove("sender_id");
        SendMessage::from_fields(&fields)
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

/// Builds the canonical copy of the message a caller asks to send at `now`, enforcing every
/// rule.
fn compose(deps: &Deps, caller: &Caller, input: SendMessage, now: u64) -> Result<Message> {
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
        attributes: input.attributes,
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

/// Where a group message goes: the group, or Chat21's inline group (`audience`: its members
/// and the sender) when no group has the id and the id looks like a group's.
enum GroupAudience {
    Members,
    Inline(Vec<String>),
}

async fn group_audience(
    deps: &Deps,
    caller: &Caller,
    message: &Message,
    inline: Option<Vec<Id>>,
) -> Result<GroupAudience> {
    let (app, group, sender) = (&message.app_id, &message.recipient, &message.sender);
    if deps.store.is_member(app, group, sender).await? {
        return Ok(GroupAudience::Members);
    }
    if deps.store.group_head(app, group).await?.is_none() {
        // An id without `group-` may be a user's (Chat21's rule makes any id with it a group,
        // so no user with one can receive a direct message): an inline group there would
        // take that user's conversations in its members' lists. It means nothing: refused.
        if !ids::looks_like_group(group) {
            return Err(Error::bad_request(format!(
                "no group has the id {group}; an inline group's id must contain `group-` (an id without it may be a user's)"
            )));
        }
        // Chat21's inline group: those members and the sender, and no group is created.
        let Some(members) = inline else {
            return Err(Error::not_found(format!("group {group} not found")));
        };
        let mut audience: Vec<String> = members.into_iter().map(String::from).collect();
        if !audience.contains(sender) {
            audience.push(sender.clone());
        }
        for member in &audience {
            topics::check_fits(app, member, group, None)?;
        }
        return Ok(GroupAudience::Inline(audience));
    }
    if caller.admin {
        return Ok(GroupAudience::Members);
    }
    Err(Error::forbidden(format!(
        "{sender} is not a member of group {group}"
    )))
}

/// Sends a message and answers with it as stored. The one write that stores it is the event:
/// the store's change stream hands it to the deliver step, which updates the recipients'
/// conversations, tells connected clients and publishes `message-sent`. So nothing is ever
/// stored without being delivered, and no rollback is needed.
///
/// A client `message_id` makes the call safe to retry: the same sender, recipient and id never
/// store or deliver twice, and the retry answers with the original message.
pub async fn send_message(deps: &Deps, caller: &Caller, input: SendMessage) -> Result<Message> {
    let inline = input.group_members.clone();
    // The time of the write: the `createdAt` of the events its delivery publishes.
    let now = deps.now();
    let message = compose(deps, caller, input, now)?;
    let (app, sender, to) = (&message.app_id, &message.sender, &message.recipient);
    topics::check_fits(app, sender, to, Some(&message.message_id))?;
    if !message.is_group() {
        topics::check_fits(app, to, sender, Some(&message.message_id))?;
        return send_one(deps, message, Origin::Direct, now).await;
    }
    match group_audience(deps, caller, &message, inline).await? {
        GroupAudience::Inline(audience) => {
            send_one(deps, message, Origin::Inline { audience }, now).await
        }
        GroupAudience::Members => {
            let seq = deps
                .store
                .next_seq(app, to, 1)
                .await?
                .ok_or_else(|| Error::not_found(format!("group {to} not found")))?;
            let written = Written {
                message,
                origin: Origin::Group { seq },
                written_at: now,
            };
            let earlier = deps.store.put_message(&written).await?;
            Ok(earlier.unwrap_or(written.message))
        }
    }
}

/// A direct (or inline group) send: the message into the sender's timeline, then the sender's
/// own conversation (two requests; the deliver step repairs the conversation if the second
/// failed).
async fn send_one(
    deps: &Deps,
    message: Message,
    origin: Origin,
    written_at: u64,
) -> Result<Message> {
    let kind = match origin {
        Origin::Inline { .. } => ConversationKind::Inline,
        _ => ConversationKind::Direct,
    };
    let written = Written {
        message,
        origin,
        written_at,
    };
    if let Some(earlier) = deps.store.put_message(&written).await? {
        return Ok(earlier);
    }
    let message = written.message;
    if message.updates_conversation() {
        let (sender, to) = (&message.sender, &message.recipient);
        let update = rows::one_message(&message.view_for(sender), kind, keys::order_of(&message));
        let mut pushes = Vec::new();
        match rows::apply(deps, sender, to, &update, written_at, &mut pushes).await {
            Ok(_) => deps.publish_quietly(&pushes).await,
            Err(e) => {
                warn!(error = %e, message_id = %message.message_id, "sender conversation left to deliver");
            }
        }
    }
    Ok(message)
}
