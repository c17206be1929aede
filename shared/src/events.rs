//! Events published to the topic, in Chat21's webhook envelope (API.md "Events"):
//! `{event_type, createdAt, app_id, recipient_id, message_id?, data, delivered_to?}`.
//!
//! An event is typed: [`EventData`] is an enum whose adjacently tagged serde form is exactly the
//! envelope's `{event_type, data}` pair, so consumers match on variants, not strings.

use serde::{Deserialize, Serialize};

use crate::ids::Id;
use crate::model::{Conversation, EventType, Group, Message};

/// Largest `data` of a group event (SNS messages are at most 256 KiB).
const MAX_GROUP_EVENT_DATA: usize = 192 * 1024;

/// What happened, and its data: the `{event_type, data}` pair of the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "data", rename_all = "kebab-case")]
pub enum EventData {
    /// The canonical copy of a new message (once per message).
    MessageSent(Message),
    /// One recipient's copy.
    MessageDelivered(Message),
    /// The sender's copy of a direct message its recipient has read (status 250).
    MessageReturnReceipt(Message),
    ConversationArchived(Conversation),
    /// A new message brought the conversation back from the archive.
    ConversationUnarchived(Conversation),
    ConversationDeleted(Conversation),
    GroupCreated(GroupData),
    GroupUpdated(GroupData),
    JoinMember(MemberChange),
    LeaveMember(MemberChange),
    PresenceChange(Presence),
}

impl EventData {
    pub fn event_type(&self) -> EventType {
        match self {
            EventData::MessageSent(_) => EventType::MessageSent,
            EventData::MessageDelivered(_) => EventType::MessageDelivered,
            EventData::MessageReturnReceipt(_) => EventType::MessageReturnReceipt,
            EventData::ConversationArchived(_) => EventType::ConversationArchived,
            EventData::ConversationUnarchived(_) => EventType::ConversationUnarchived,
            EventData::ConversationDeleted(_) => EventType::ConversationDeleted,
            EventData::GroupCreated(_) => EventType::GroupCreated,
            EventData::GroupUpdated(_) => EventType::GroupUpdated,
            EventData::JoinMember(_) => EventType::JoinMember,
            EventData::LeaveMember(_) => EventType::LeaveMember,
            EventData::PresenceChange(_) => EventType::PresenceChange,
        }
    }
}

/// `data` of `group-created` and `group-updated`: the group, without its member list when
/// that would not fit one SNS message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupData {
    #[serde(flatten)]
    pub group: Group,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub members_omitted: bool,
}

impl GroupData {
    fn of(group: &Group) -> GroupData {
        let mut data = GroupData {
            group: group.clone(),
            members_omitted: false,
        };
        let size = serde_json::to_vec(group).map_or(usize::MAX, |v| v.len());
        if size > MAX_GROUP_EVENT_DATA {
            data.group.members.clear();
            data.members_omitted = true;
        }
        data
    }
}

/// `data` of `join-member` and `leave-member`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberChange {
    pub member_id: Id,
    pub group_id: Id,
    pub group_name: String,
    /// The system message that announced it (`MEMBER_JOINED_GROUP` / `MEMBER_LEFT_GROUP`);
    /// a joiner receives the group messages ordered before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
}

/// A client's presence (REALTIME.md): `online` on `{"connected": true}`, `offline` on
/// `{"disconnected": true}` (Chat21's will message). Nothing is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub user_id: Id,
    pub client_id: Id,
    pub presence: PresenceState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceState {
    Online,
    Offline,
}

/// One event in Chat21's envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(flatten)]
    pub data: EventData,
    #[serde(rename = "createdAt")]
    pub created_at: u64,
    pub app_id: String,
    pub recipient_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<String>,
    /// Users who get a group message although they are no longer members: the member a
    /// `MEMBER_LEFT_GROUP` message is about.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_to: Vec<String>,
    /// `presence-change` carries its fields at the top level too (REALTIME.md's shape).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<Presence>,
}

impl Event {
    fn new(data: EventData, app_id: &str, recipient_id: &str, at: u64) -> Event {
        Event {
            data,
            created_at: at,
            app_id: app_id.to_string(),
            recipient_id: recipient_id.to_string(),
            message_id: None,
            delivered_to: None,
            also_to: Vec::new(),
            presence: None,
        }
    }

    pub fn event_type(&self) -> EventType {
        self.data.event_type()
    }

    /// Subscribers filter on these without parsing the body.
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut attrs = vec![
            ("event_type", self.event_type().as_str().to_string()),
            ("app_id", self.app_id.clone()),
        ];
        if let EventData::MessageSent(m)
        | EventData::MessageDelivered(m)
        | EventData::MessageReturnReceipt(m) = &self.data
        {
            attrs.push(("channel_type", m.channel_type.as_str().to_string()));
        }
        attrs
    }

    /// An event about a message (`data` holds that copy): for its recipient, naming it.
    fn about_message(data: fn(Message) -> EventData, copy: &Message, at: u64) -> Event {
        Event {
            message_id: Some(copy.message_id.clone()),
            ..Event::new(data(copy.clone()), &copy.app_id, &copy.recipient, at)
        }
    }

    /// An event about `user`'s conversation (`data` holds it as it is now).
    fn about_conversation(
        data: fn(Conversation) -> EventData,
        user: &str,
        conversation: &Conversation,
        at: u64,
    ) -> Event {
        let app = conversation.last.app_id.clone();
        Event::new(data(conversation.clone()), &app, user, at)
    }

    pub fn message_sent(message: &Message, at: u64) -> Event {
        Event::about_message(EventData::MessageSent, message, at)
    }

    pub fn message_delivered(copy: &Message, at: u64) -> Event {
        Event {
            delivered_to: Some(copy.timeline_of.clone()),
            ..Event::about_message(EventData::MessageDelivered, copy, at)
        }
    }

    pub fn conversation_archived(user: &str, conversation: &Conversation, at: u64) -> Event {
        Event::about_conversation(EventData::ConversationArchived, user, conversation, at)
    }

    /// The sender's copy of a direct message (`timelineOf` = sender, status 250) once its
    /// recipient has read it: Chat21's `message-return-receipt`.
    pub fn message_return_receipt(copy: &Message, at: u64) -> Event {
        Event::about_message(EventData::MessageReturnReceipt, copy, at)
    }

    pub fn conversation_unarchived(user: &str, conversation: &Conversation, at: u64) -> Event {
        Event::about_conversation(EventData::ConversationUnarchived, user, conversation, at)
    }

    pub fn conversation_deleted(user: &str, conversation: &Conversation, at: u64) -> Event {
        Event::about_conversation(EventData::ConversationDeleted, user, conversation, at)
    }

    pub fn group_created(group: &Group, at: u64) -> Event {
        let data = EventData::GroupCreated(GroupData::of(group));
        Event::new(data, &group.info.app_id, &group.info.uid, at)
    }

    pub fn group_updated(group: &Group, at: u64) -> Event {
        let data = EventData::GroupUpdated(GroupData::of(group));
        Event::new(data, &group.info.app_id, &group.info.uid, at)
    }

    pub fn member_joined(app_id: &str, change: MemberChange, at: u64) -> Event {
        let group = change.group_id.to_string();
        Event::new(EventData::JoinMember(change), app_id, &group, at)
    }

    pub fn member_left(app_id: &str, change: MemberChange, at: u64) -> Event {
        let group = change.group_id.to_string();
        Event::new(EventData::LeaveMember(change), app_id, &group, at)
    }

    pub fn presence_change(app_id: &str, presence: Presence, at: u64) -> Event {
        let user = presence.user_id.to_string();
        Event {
            presence: Some(presence.clone()),
            ..Event::new(EventData::PresenceChange(presence), app_id, &user, at)
        }
    }

    pub fn to_json(&self) -> String {
        // Our own plain data (string keys, derived impls) always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GroupInfo;
    use crate::model::tests::message;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn group_info() -> GroupInfo {
        GroupInfo {
            uid: "g".into(),
            name: "G".into(),
            owner: "o".into(),
            attributes: Default::default(),
            created_on: 1,
            updated_on: 1,
            app_id: "a".into(),
        }
    }

    #[test]
    fn the_wire_form_is_chat21s_envelope() {
        let event = Event::message_sent(&message(), 9);
        let wire: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(wire["event_type"], json!("message-sent"));
        assert_eq!(wire["createdAt"], json!(9));
        assert_eq!(wire["app_id"], json!("a"));
        assert_eq!(wire["recipient_id"], json!("u2"));
        assert_eq!(wire["message_id"], json!("m1"));
        assert_eq!(wire["data"]["text"], json!("hi"));
        assert!(wire.get("delivered_to").is_none());
        let back: Event = serde_json::from_value(wire).unwrap();
        assert_eq!(back, event);
        assert_eq!(
            back.attributes(),
            vec![
                ("event_type", "message-sent".to_string()),
                ("app_id", "a".to_string()),
                ("channel_type", "direct".to_string())
            ]
        );
    }

    #[test]
    fn every_type_has_its_data_named_alike_on_the_wire() {
        let member = || MemberChange {
            member_id: Id::parse("m", "u2").unwrap(),
            group_id: Id::parse("g", "g").unwrap(),
            group_name: "G".into(),
            message: None,
        };
        let group = GroupData {
            group: Group {
                info: group_info(),
                members: Default::default(),
            },
            members_omitted: false,
        };
        let row = Conversation::from_last(&message(), false);
        for t in EventType::ALL {
            // Exhaustive: a new type fails to compile here until it has its data.
            let data = match t {
                EventType::MessageSent => EventData::MessageSent(message()),
                EventType::MessageDelivered => EventData::MessageDelivered(message()),
                EventType::MessageReturnReceipt => EventData::MessageReturnReceipt(message()),
                EventType::ConversationArchived => EventData::ConversationArchived(row.clone()),
                EventType::ConversationUnarchived => EventData::ConversationUnarchived(row.clone()),
                EventType::ConversationDeleted => EventData::ConversationDeleted(row.clone()),
                EventType::GroupCreated => EventData::GroupCreated(group.clone()),
                EventType::GroupUpdated => EventData::GroupUpdated(group.clone()),
                EventType::JoinMember => EventData::JoinMember(member()),
                EventType::LeaveMember => EventData::LeaveMember(member()),
                EventType::PresenceChange => EventData::PresenceChange(Presence {
                    user_id: Id::parse("u", "u1").unwrap(),
                    client_id: Id::parse("c", "c1").unwrap(),
                    presence: PresenceState::Online,
                }),
            };
            assert_eq!(data.event_type(), t);
            let wire = serde_json::to_value(&data).unwrap();
            assert_eq!(wire["event_type"], json!(t.as_str()));
        }
    }

    #[test]
    fn unknown_types_and_mismatched_data_are_refused() {
        let wire = json!({"event_type": "nope", "createdAt": 1, "app_id": "a",
                          "recipient_id": "r", "data": {}});
        assert!(serde_json::from_value::<Event>(wire).is_err());
        let wire = json!({"event_type": "join-member", "createdAt": 1, "app_id": "a",
                          "recipient_id": "r", "data": {"member_id": "a#b", "group_id": "g",
                          "group_name": "G"}});
        assert!(
            serde_json::from_value::<Event>(wire).is_err(),
            "ids are checked"
        );
    }

    #[test]
    fn presence_has_realtimes_top_level_fields() {
        let presence = Presence {
            user_id: Id::parse("u", "u1").unwrap(),
            client_id: Id::parse("c", "c1").unwrap(),
            presence: PresenceState::Offline,
        };
        let event = Event::presence_change("a", presence, 3);
        let wire: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(wire["event_type"], "presence-change");
        assert_eq!(wire["user_id"], "u1");
        assert_eq!(wire["client_id"], "c1");
        assert_eq!(wire["presence"], "offline");
        assert_eq!(wire["recipient_id"], "u1");
        assert_eq!(serde_json::from_value::<Event>(wire).unwrap(), event);
    }

    #[test]
    fn huge_member_lists_are_left_out_of_group_events() {
        let members: BTreeMap<String, u8> =
            (0..20_000).map(|i| (format!("user-{i:08}"), 1)).collect();
        let group = Group {
            info: group_info(),
            members,
        };
        let EventData::GroupCreated(data) = Event::group_created(&group, 1).data else {
            panic!("not a group event");
        };
        assert!(data.members_omitted);
        assert!(data.group.members.is_empty());
    }
}
