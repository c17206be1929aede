//! The records of the webhooks queue: a new event (raw, or in an SNS notification), an
//! endpoint's retry (`{"webhook_retry": …}`), and what is dead-lettered when a record cannot be
//! read.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::model::EventType;
use crate::ports::Target;

/// One endpoint's next attempt at one event: a message on the retry queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Retry {
    /// The `webhook-id` every attempt carries.
    pub webhook_id: String,
    pub target: Target,
    /// Attempts made so far (0: the first was not made, its endpoint's lane being full).
    pub attempts: u32,
    /// When the next attempt is due (ms since the epoch).
    pub due: u64,
    /// Why the last attempt failed.
    pub last_error: String,
    /// The event exactly as first received: the body of every attempt, byte for byte.
    pub event: Box<RawValue>,
}

#[derive(Serialize, Deserialize)]
struct RetryMessage {
    webhook_retry: Retry,
}

impl Retry {
    /// The queue message: `{"webhook_retry": {...}}` (events never have that key).
    pub fn to_message(&self) -> String {
        serde_json::to_string(&RetryMessage {
            webhook_retry: self.clone(),
        })
        .unwrap_or_default()
    }
}

/// The dead-letter message of a record that cannot be read.
#[derive(Serialize)]
pub(super) struct Unreadable<'a> {
    pub(super) webhook_unreadable: UnreadableBody<'a>,
}

#[derive(Serialize)]
pub(super) struct UnreadableBody<'a> {
    pub(super) reason: &'a str,
    pub(super) body: &'a str,
}

/// What the consumer needs to know of an event to route it.
#[derive(Deserialize)]
struct Head {
    event_type: String,
    app_id: String,
}

pub(super) fn head_of(event: &RawValue) -> std::result::Result<(EventType, String), String> {
    let head: Head =
        serde_json::from_str(event.get()).map_err(|e| format!("not an event envelope: {e}"))?;
    let kind = EventType::parse(&head.event_type)
        .ok_or_else(|| format!("unknown event type {:?}", head.event_type))?;
    Ok((kind, head.app_id))
}

/// One record of the webhooks queue.
pub(super) enum Record {
    /// A new event: to every endpoint that wants it.
    Event(Box<RawValue>),
    /// One endpoint's next attempt.
    Retry(Retry),
}

/// A record is a retry (`{"webhook_retry": …}`), an event as the topic delivers it raw, or
/// an SNS notification around one.
pub(super) fn read_record(body: &str) -> std::result::Result<Record, String> {
    #[derive(Deserialize)]
    struct Top {
        webhook_retry: Option<Retry>,
        #[serde(rename = "Type")]
        kind: Option<String>,
        #[serde(rename = "Message")]
        message: Option<String>,
    }
    let top: Top = serde_json::from_str(body).map_err(|e| format!("not a JSON object: {e}"))?;
    if let Some(retry) = top.webhook_retry {
        return Ok(Record::Retry(retry));
    }
    let event = match (top.kind.as_deref(), top.message) {
        (Some("Notification"), Some(message)) => RawValue::from_string(message)
            .map_err(|e| format!("the notification's Message is not JSON: {e}"))?,
        _ => RawValue::from_string(body.trim().to_string()).map_err(|e| e.to_string())?,
    };
    Ok(Record::Event(event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_events_notifications_or_retries() {
        let event = r#"{"event_type":"message-sent","app_id":"a"}"#;
        assert!(matches!(read_record(event), Ok(Record::Event(e)) if e.get() == event));
        let notification = serde_json::json!({"Type": "Notification", "Message": event});
        assert!(
            matches!(read_record(&notification.to_string()), Ok(Record::Event(e)) if e.get() == event)
        );
        let retry = Retry {
            webhook_id: "msg_1".into(),
            target: Target::Tenant {
                app_id: "a".into(),
                webhook_id: "w".into(),
            },
            attempts: 2,
            due: 5,
            last_error: "answered 503".into(),
            event: RawValue::from_string(event.into()).unwrap(),
        };
        match read_record(&retry.to_message()) {
            Ok(Record::Retry(back)) => {
                assert_eq!(back.event.get(), event, "the body is kept byte for byte");
                assert_eq!(back.target, retry.target);
                assert_eq!(back.attempts, 2);
            }
            _ => panic!("not read back as a retry"),
        }
        assert!(read_record("nope").is_err());
        assert!(read_record("[1]").is_err());
    }
}
