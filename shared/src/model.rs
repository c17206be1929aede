//! The data of API.md: messages, conversations, groups, and the caller.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::ids::Id;

/// Message status codes of Chat21.
pub mod status {
    pub const SENT: u16 = 100;
    pub const DELIVERED: u16 = 150;
    pub const RECEIVED: u16 = 200;
    pub const RETURN_RECEIPT: u16 = 250;
}

/// The sender id of system messages (group created, member joined or left).
pub const SYSTEM_SENDER: &str = "system";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelType {
    Direct,
    Group,
}

impl ChannelType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelType::Direct => "direct",
            ChannelType::Group => "group",
        }
    }
}

/// Declares [`EventType`] from one list, each variant beside its name: the enum (serialized as
/// the name), [`EventType::ALL`], [`EventType::as_str`] and [`EventType::parse`].
macro_rules! event_types {
    ($($variant:ident = $name:literal,)*) => {
        /// The event types, as names (subscription filters, message attributes); each is a
        /// variant of `events::EventData`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum EventType {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl EventType {
            /// Every event type, in the order of [`EventType`].
            pub const ALL: [EventType; [$($name),*].len()] = [$(EventType::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)*
                }
            }
        }
    };
}

event_types! {
    MessageSent = "message-sent",
    MessageDelivered = "message-delivered",
    MessageReturnReceipt = "message-return-receipt",
    ConversationArchived = "conversation-archived",
    ConversationUnarchived = "conversation-unarchived",
    ConversationDeleted = "conversation-deleted",
    GroupCreated = "group-created",
    GroupUpdated = "group-updated",
    JoinMember = "join-member",
    LeaveMember = "leave-member",
    PresenceChange = "presence-change",
}

impl EventType {
    /// The type of a name (`message-sent`, ...).
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// One copy of a message in one timeline. The canonical copy of a direct message is the
/// sender's (status 100); of a group message, the group's own timeline (status 100).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub message_id: String,
    pub sender: String,
    pub sender_fullname: String,
    pub recipient: String,
    pub recipient_fullname: String,
    pub text: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub channel_type: ChannelType,
    /// Absent when the sender gave none (Chat21 clients test `!message.attributes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    pub timestamp: u64,
    pub status: u16,
    pub app_id: String,
    #[serde(rename = "timelineOf")]
    pub timeline_of: String,
    #[serde(rename = "conversWith")]
    pub convers_with: String,
}

impl Message {
    /// The copy of this message kept in `owner`'s timeline of the conversation with `peer`.
    pub fn copy_for(&self, owner: &str, peer: &str, status: u16) -> Message {
        Message {
            timeline_of: owner.to_string(),
            convers_with: peer.to_string(),
            status,
            ..self.clone()
        }
    }

    /// This message as `owner` sees it in their conversation (its copy there): `timelineOf` the
    /// owner, `conversWith` the peer (or the group); status 100 on the sender's own direct
    /// message, 150 on a received one and on every group message.
    pub fn view_for(&self, owner: &str) -> Message {
        match self.channel_type {
            ChannelType::Direct if owner == self.sender => {
                self.copy_for(&self.sender, &self.recipient, status::SENT)
            }
            ChannelType::Direct => self.copy_for(owner, &self.sender, status::DELIVERED),
            ChannelType::Group => self.copy_for(owner, &self.recipient, status::DELIVERED),
        }
    }

    /// Chat21's `attributes.updateconversation: false` leaves conversations untouched.
    pub fn updates_conversation(&self) -> bool {
        self.attribute("updateconversation") != Some(&Value::Bool(false))
    }

    /// One of the message's attributes.
    pub fn attribute(&self, name: &str) -> Option<&Value> {
        self.attributes.as_ref()?.get(name)
    }

    pub fn is_group(&self) -> bool {
        self.channel_type == ChannelType::Group
    }

    /// The copy as its owner sees it, with the receipts derived from the conversation's marks
    /// (never stored per copy): a received message the owner sent a receipt for (or for a
    /// later one) shows 200, the owner's own message the peer has read shows 250.
    pub fn with_receipt(
        mut self,
        received_up_to: Option<u64>,
        peer_read_at: Option<u64>,
    ) -> Message {
        let read = |mark: Option<u64>| mark.is_some_and(|at| at >= self.timestamp);
        if self.sender == self.timeline_of {
            if self.status < status::RETURN_RECEIPT && read(peer_read_at) {
                self.status = status::RETURN_RECEIPT;
            }
        } else if self.status < status::RECEIVED && read(received_up_to) {
            self.status = status::RECEIVED;
        }
        self
    }
}

/// One row per (user, peer or group): the last message plus the per-user state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    #[serde(flatten)]
    pub last: Message,
    pub key: String,
    pub last_message_text: String,
    pub is_new: bool,
    pub archived: bool,
    /// Messages received from others since the last read.
    #[serde(default)]
    pub unread_count: u64,
    /// When the owner last marked the conversation read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<u64>,
    /// When the peer last read their side (direct conversations); drives status 250.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_read_at: Option<u64>,
    /// The owner's receipts (status 200 on the message update topic) reach up to here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_up_to: Option<u64>,
}

impl Conversation {
    /// The row as it looks right after `copy` became its last message.
    pub fn from_last(copy: &Message, is_new: bool) -> Conversation {
        Conversation {
            key: copy.convers_with.clone(),
            last_message_text: copy.text.clone(),
            is_new,
            archived: false,
            unread_count: 0,
            read_at: None,
            peer_read_at: None,
            received_up_to: None,
            last: copy.clone(),
        }
    }

    /// Applies the derived return receipt to the last message.
    pub fn with_receipt(mut self) -> Conversation {
        self.last = self
            .last
            .with_receipt(self.received_up_to, self.peer_read_at);
        self
    }
}

/// A group as the API and events show it, but its members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub uid: String,
    pub name: String,
    pub owner: String,
    #[serde(default)]
    pub attributes: Map<String, Value>,
    #[serde(rename = "createdOn")]
    pub created_on: u64,
    #[serde(rename = "updatedOn")]
    pub updated_on: u64,
    #[serde(rename = "appId")]
    pub app_id: String,
}

/// What a group stores besides its members: what the API shows, and its bookkeeping (never
/// shown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMeta {
    #[serde(flatten)]
    pub info: GroupInfo,
    /// Bumped by every change to the member set as a whole (create, set members), so that two
    /// concurrent set-members cannot interleave.
    #[serde(default)]
    pub version: u64,
    /// The last place taken in the group's history (its messages' sequence).
    #[serde(default)]
    pub seq: u64,
}

impl GroupMeta {
    /// Whether `other` defines the same group (a retried create): name, owner, attributes.
    pub fn same_definition(&self, other: &GroupMeta) -> bool {
        let (a, b) = (&self.info, &other.info);
        (&a.uid, &a.app_id, &a.name, &a.owner, &a.attributes)
            == (&b.uid, &b.app_id, &b.name, &b.owner, &b.attributes)
    }

    /// Chat21 never let members add themselves; a group may opt in with this attribute.
    pub fn allows_self_join(&self) -> bool {
        self.info.attributes.get("allow_self_join") == Some(&Value::Bool(true))
    }
}

/// A group as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    #[serde(flatten)]
    pub info: GroupInfo,
    pub members: BTreeMap<String, u8>,
}

impl Group {
    pub fn new(meta: &GroupMeta, members: impl IntoIterator<Item = String>) -> Group {
        Group {
            info: meta.info.clone(),
            members: members.into_iter().map(|m| (m, 1)).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Created,
    Joined,
    Left,
    MembersSet,
    Renamed,
    AttributesSet,
}

/// A committed change to a group whose follow-up (system messages, events) may still be owed.
/// It is stored atomically with the change itself and removed once its events are published,
/// so a failure in between is finished by the next operation on the group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupChange {
    /// `{at:013}-{uuid}`: sorts in commit order, and seeds the system message ids.
    pub id: String,
    pub at: u64,
    pub actor: String,
    pub kind: ChangeKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joined: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left: Vec<String>,
    /// Set when the call that made the change could not announce it: any later call on the
    /// group finishes it (otherwise only once it is old enough to be surely abandoned).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stalled: bool,
    /// The first place of its system messages in the group's history: taken with the commit,
    /// or allocated after it and recorded here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub places_from: Option<u64>,
    /// Announced (system messages stored, events published): what is left, the delivery to
    /// every member, is the deliver step's, which the change's record hands over when set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub settled: bool,
}

impl GroupChange {
    /// How many system messages (places in the group's history) the change produces.
    pub fn message_count(&self) -> u64 {
        let created = u64::from(self.kind == ChangeKind::Created);
        created + (self.joined.len() + self.left.len()) as u64
    }
}

/// A tenant's webhook endpoint, as admins register it (`PUT /api/{app_id}/webhooks/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub app_id: String,
    pub url: String,
    /// The event types it receives.
    pub events: Vec<EventType>,
    /// Signs every POST (Standard Webhooks): `whsec_<base64>`, or the text given.
    pub secret: String,
    pub created_at: u64,
    pub updated_at: u64,
}

/// Who is calling, from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Id,
    pub app_id: Id,
    pub admin: bool,
}

impl Caller {
    /// Users act for themselves; admins for anyone in their tenant.
    pub fn may_act_for(&self, user: &str) -> bool {
        self.admin || self.user_id == *user
    }

    /// The user a call acts for: the caller, or the user named by `field` (a path or body
    /// field), which only admins may name when it is someone else. Every "on behalf of" rule
    /// of API.md goes through here.
    pub fn acting_as(&self, field: &str, named: Option<Id>) -> Result<Id> {
        match named {
            Some(user) if !self.may_act_for(&user) => Err(Error::forbidden(format!(
                "only admins may act for another user (`{field}`)"
            ))),
            Some(user) => Ok(user),
            None => Ok(self.user_id.clone()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A direct message of u1 to u2 as stored (the sender's copy), for the unit tests.
    pub(crate) fn message() -> Message {
        Message {
            message_id: "m1".into(),
            sender: "u1".into(),
            sender_fullname: "U1".into(),
            recipient: "u2".into(),
            recipient_fullname: "U2".into(),
            text: "hi".into(),
            kind: "text".into(),
            channel_type: ChannelType::Direct,
            attributes: None,
            metadata: None,
            timestamp: 5,
            status: status::SENT,
            app_id: "a".into(),
            timeline_of: "u1".into(),
            convers_with: "u2".into(),
        }
    }

    #[test]
    fn every_type_is_listed_once_and_parses_back() {
        // Exhaustive: a new variant fails to compile here until it is given its place, which
        // `ALL` (made from the same list as the enum) must hold once, in order.
        let place = |t: EventType| match t {
            EventType::MessageSent => 0,
            EventType::MessageDelivered => 1,
            EventType::MessageReturnReceipt => 2,
            EventType::ConversationArchived => 3,
            EventType::ConversationUnarchived => 4,
            EventType::ConversationDeleted => 5,
            EventType::GroupCreated => 6,
            EventType::GroupUpdated => 7,
            EventType::JoinMember => 8,
            EventType::LeaveMember => 9,
            EventType::PresenceChange => 10,
        };
        for (i, t) in EventType::ALL.into_iter().enumerate() {
            assert_eq!(place(t), i);
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
        }
        assert_eq!(EventType::parse("message_sent"), None);
    }
}
