//! The server's publishes of REALTIME.md ("What the server publishes to clients"), one builder
//! per row of its table. Payloads are API.md's shapes.

use std::sync::Arc;

use serde_json::{Value, json};

use super::topics;
use crate::model::{Conversation, Group, Message};
use crate::ports::Push;

fn to_value<T: serde::Serialize>(data: &T) -> Value {
    // Our own plain data types (string keys, derived impls) always serialize.
    serde_json::to_value(data).unwrap_or(Value::Null)
}

/// A timeline copy was written: to its owner.
pub fn message_added(copy: &Message) -> Push {
    Push {
        topic: topics::message_added(&copy.app_id, &copy.timeline_of, &copy.convers_with),
        payload: Arc::new(to_value(copy)),
    }
}

/// `reader` read the direct message `message_id` of `sender`: to the sender, whose copy now
/// shows the return receipt.
pub fn receipt(app: &str, sender: &str, reader: &str, message_id: &str) -> Push {
    Push {
        topic: topics::message_updated(app, sender, reader, message_id),
        payload: Arc::new(json!({ "timelineOf": sender, "message_id": message_id, "status": 250 })),
    }
}

/// The reader's conversation was marked read: to the reader.
pub fn conversation_read(row: &Conversation) -> Push {
    let (app, owner) = (&row.last.app_id, &row.last.timeline_of);
    Push {
        topic: topics::conversation_updated(app, owner, &row.key),
        payload: Arc::new(json!({
            "timelineOf": owner,
            "conversWith": row.key,
            "is_new": false,
            "unread_count": 0,
            "read_at": row.read_at,
        })),
    }
}

/// `reader` read their direct conversation with `peer`: to the peer.
pub fn peer_read(app: &str, peer: &str, reader: &str, at: u64) -> Push {
    Push {
        topic: topics::conversation_updated(app, peer, reader),
        payload: Arc::new(json!({ "timelineOf": peer, "conversWith": reader, "peer_read_at": at })),
    }
}

/// A conversation was archived: it leaves the active list and joins the archived one.
pub fn archived(row: &Conversation) -> Vec<Push> {
    let (app, owner) = (&row.last.app_id, &row.last.timeline_of);
    let whole = Arc::new(to_value(row));
    vec![
        Push {
            topic: topics::conversation_deleted(app, owner, &row.key),
            payload: whole.clone(),
        },
        Push {
            topic: topics::archived_added(app, owner, &row.key),
            payload: whole,
        },
    ]
}

fn reference(owner: &str, with: &str) -> Value {
    json!({ "timelineOf": owner, "conversWith": with })
}

/// A conversation was deleted for good: from the list it was in.
pub fn deleted(row: &Conversation) -> Vec<Push> {
    let (app, owner) = (&row.last.app_id, &row.last.timeline_of);
    let mut pushes = vec![Push {
        topic: topics::conversation_deleted(app, owner, &row.key),
        payload: Arc::new(reference(owner, &row.key)),
    }];
    if row.archived {
        pushes.push(Push {
            topic: topics::archived_deleted(app, owner, &row.key),
            payload: Arc::new(reference(owner, &row.key)),
        });
    }
    pushes
}

/// A new message took an archived conversation back to the active list (its own
/// `clientadded` follows).
pub fn unarchived(app: &str, owner: &str, with: &str) -> Push {
    Push {
        topic: topics::archived_deleted(app, owner, with),
        payload: Arc::new(reference(owner, with)),
    }
}

/// A group changed: the whole group to each of `to` (the members after the change and those
/// it removed), with the member a join or leave was about.
pub fn group_updated(
    group: &Group,
    to: &[String],
    notification: Option<(&str, &str)>,
) -> Vec<Push> {
    let mut payload = to_value(group);
    if let Some((key, member)) = notification {
        payload["notification"] = json!({
            "messagelabel": { "key": key, "parameters": { "member_id": member } }
        });
    }
    let payload = Arc::new(payload);
    to.iter()
        .map(|member| Push {
            topic: topics::group_updated(&group.info.app_id, member, &group.info.uid),
            payload: payload.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::message;

    /// u2's copy of u1's message.
    fn copy() -> Message {
        message().view_for("u2")
    }

    #[test]
    fn a_copy_goes_to_its_owner_without_absent_fields() {
        let push = message_added(&copy());
        assert_eq!(push.topic, "apps/a/users/u2/messages/u1/clientadded");
        assert_eq!(push.payload["timelineOf"], "u2");
        assert_eq!(push.payload["status"], 150);
        assert!(push.payload.get("attributes").is_none());
        assert!(push.payload.get("metadata").is_none());
    }

    #[test]
    fn archive_then_delete() {
        let mut row = Conversation::from_last(&copy(), true);
        row.archived = true;
        let pushes = archived(&row);
        assert_eq!(
            pushes[0].topic,
            "apps/a/users/u2/conversations/u1/clientdeleted"
        );
        assert_eq!(
            pushes[1].topic,
            "apps/a/users/u2/archived_conversations/u1/clientadded"
        );
        assert_eq!(pushes[1].payload["archived"], true);
        let gone = deleted(&row);
        assert_eq!(gone.len(), 2);
        assert_eq!(
            *gone[1].payload,
            json!({"timelineOf": "u2", "conversWith": "u1"})
        );
    }
}
