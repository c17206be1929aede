//! Events published to the topic, in Chat21's webhook envelope (API.md "Events").

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::{Conversation, Group, Message};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventType {
    MessageSent,
    MessageDelivered,
    ConversationArchived,
    ConversationDeleted,
    GroupCreated,
    GroupUpdated,
    JoinMember,
    LeaveMember,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MessageSent => "message-sent",
            EventType::MessageDelivered => "message-delivered",
            EventType::ConversationArchived => "conversation-archived",
            EventType::ConversationDeleted => "conversation-deleted",
            EventType::GroupCreated => "group-created",
            EventType::GroupUpdated => "group-updated",
            EventType::JoinMember => "join-member",
            EventType::LeaveMember => "leave-member",
        }
    }
}

/// Largest `data` of a group event (SNS messages are at most 256 KiB).
const MAX_GROUP_EVENT_DATA: usize = 192 * 1024;

/// The event types the deliver function consumes (the queue's subscription filter).
pub const DELIVER_CONSUMES: [EventType; 2] = [EventType::MessageSent, EventType::JoinMember];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_type: EventType,
    #[serde(rename = "createdAt")]
    pub created_at: u64,
    pub app_id: String,
    pub recipient_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<String>,
    /// Users who get a group message although they are no longer members: the member a
    /// `MEMBER_LEFT_GROUP` message is about.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_to: Vec<String>,
}

/// `data` of `join-member` and `leave-member`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberChange {
    pub member_id: String,
    pub group_id: String,
    pub group_name: String,
    /// For joins: the joiner gets copies of the group messages ordered before this key (the
    /// join's own system message), newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_before: Option<String>,
}

fn to_value<T: Serialize>(data: &T) -> Value {
    // Serializing our own plain data types cannot fail (string keys, no custom impls).
    serde_json::to_value(data).unwrap_or(Value::Null)
}

impl Event {
    /// Subscribers filter on these without parsing the body.
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut attrs = vec![
            ("event_type", self.event_type.as_str().to_string()),
            ("app_id", self.app_id.clone()),
        ];
        if let Some(channel) = self.data.get("channel_type").and_then(Value::as_str)
            && matches!(
                self.event_type,
                EventType::MessageSent | EventType::MessageDelivered
            )
        {
            attrs.push(("channel_type", channel.to_string()));
        }
        attrs
    }

    pub fn message_sent(message: &Message, at: u64) -> Event {
        Event {
            event_type: EventType::MessageSent,
            created_at: at,
            app_id: message.app_id.clone(),
            recipient_id: message.recipient.clone(),
            message_id: Some(message.message_id.clone()),
            data: to_value(message),
            delivered_to: None,
            also_to: Vec::new(),
        }
    }

    pub fn message_delivered(copy: &Message, at: u64) -> Event {
        Event {
            event_type: EventType::MessageDelivered,
            delivered_to: Some(copy.timeline_of.clone()),
            ..Event::message_sent(copy, at)
        }
    }

    pub fn conversation(
        kind: EventType,
        user: &str,
        conversation: &Conversation,
        at: u64,
    ) -> Event {
        Event {
            event_type: kind,
            created_at: at,
            app_id: conversation.last.app_id.clone(),
            recipient_id: user.to_string(),
            message_id: None,
            data: to_value(conversation),
            delivered_to: None,
            also_to: Vec::new(),
        }
    }

    /// A group event. A member list too big for one SNS message is left out (and flagged).
    pub fn group(kind: EventType, group: &Group, at: u64) -> Event {
        let mut data = to_value(group);
        if data.to_string().len() > MAX_GROUP_EVENT_DATA {
            data["members"] = Value::Object(Default::default());
            data["members_omitted"] = Value::Bool(true);
        }
        Event {
            event_type: kind,
            created_at: at,
            app_id: group.app_id.clone(),
            recipient_id: group.uid.clone(),
            message_id: None,
            data,
            delivered_to: None,
            also_to: Vec::new(),
        }
    }

    pub fn member(kind: EventType, app_id: &str, change: &MemberChange, at: u64) -> Event {
        Event {
            event_type: kind,
            created_at: at,
            app_id: app_id.to_string(),
            recipient_id: change.group_id.clone(),
            message_id: None,
            data: to_value(change),
            delivered_to: None,
            also_to: Vec::new(),
        }
    }

    /// Reads the `data` of an event as `T`, refusing events that do not carry one.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.data.clone()).map_err(|e| {
            Error::bad_request(format!(
                "{} event with unreadable data: {e}",
                self.event_type.as_str()
            ))
        })
    }

    pub fn to_json(&self) -> String {
        to_value(self).to_string()
    }
}
