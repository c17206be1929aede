//! The table's stream (DynamoDB Streams, new images): each new message item, read back as the
//! message the deliver step delivers, and each group change record once it is settled (its
//! system messages stored, its events published), read back as the change to deliver to every
//! member. Only items carrying an `origin`, and settled changes, concern the deliver step (the
//! stream's filter on AWS passes only those); a change's system messages (`origin: system`)
//! are delivered by the change itself.

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Deserialize;

use super::item::{SEQ, change_item, message_item};
use super::request::{Item, n, s};
use crate::error::{Error, Result};
use crate::keys;
use crate::model::{GroupChange, Message};
use crate::ports::{Origin, Streamed, Written};

/// The attribute that marks a new message for the deliver step, and the ones it needs.
pub const ORIGIN: &str = "origin";
/// The `origin`s the deliver step delivers (template.yaml's stream filter passes these).
pub const DELIVERED_ORIGINS: [&str; 3] = ["direct", "group", "inline"];
pub const AUDIENCE: &str = "audience";
/// When the message was written: its events' `createdAt`, the same however often the record
/// is handed over. Items written before it existed fall back to the message's timestamp.
pub const WRITTEN_AT: &str = "written_at";

/// The item a new message is stored as (the stream's new image): the message in its
/// timeline, with its delivery marks.
pub fn item_of(written: &Written) -> Result<Item> {
    let m = &written.message;
    let (pk, order, origin) = match &written.origin {
        Origin::Direct => (
            keys::direct_pk(&m.app_id, &m.sender, &m.recipient),
            keys::order_of(m),
            "direct",
        ),
        Origin::Inline { .. } => (
            keys::timeline_pk(&m.app_id, &m.sender, &m.recipient),
            keys::order_of(m),
            "inline",
        ),
        Origin::Group { seq } => (
            keys::history_pk(&m.app_id, &m.recipient),
            keys::group_order(*seq, m),
            "group",
        ),
    };
    let mut item = message_item(m, pk, order)?;
    item.insert(ORIGIN.into(), s(origin));
    item.insert(WRITTEN_AT.into(), n(written.written_at));
    match &written.origin {
        Origin::Inline { audience } => {
            let list = audience.iter().map(|a| s(a.as_str())).collect();
            item.insert(AUDIENCE.into(), AttributeValue::L(list));
        }
        Origin::Group { seq } => {
            item.insert(SEQ.into(), n(*seq));
        }
        Origin::Direct => {}
    }
    Ok(item)
}

/// What the stream's record of `streamed` carries (the new image Lambda hands the deliver
/// function): the new message's item, or the settled change's record.
pub fn image_of(streamed: &Streamed) -> Result<serde_dynamo::Item> {
    let item = match streamed {
        Streamed::Message(written) => item_of(written)?,
        Streamed::Change { app, group, change } => change_item(app, group, change)?,
    };
    Ok(item.into())
}

/// The delivery marks a new message item carries besides the message, and the marks of a
/// settled group change's record.
#[derive(Deserialize)]
struct Marks {
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    audience: Vec<String>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    written_at: Option<u64>,
    #[serde(default)]
    settled: bool,
    #[serde(default)]
    change_app: Option<String>,
    #[serde(default)]
    change_group: Option<String>,
}

/// What a stream record's new image hands the deliver step: a new message, or a group change
/// just settled; `None` for any other item.
pub fn streamed_of(image: serde_dynamo::Item) -> Result<Option<Streamed>> {
    let unreadable =
        |e: serde_dynamo::Error| Error::bad_request(format!("an unreadable stream record: {e}"));
    let marks: Marks = serde_dynamo::from_item(image.clone()).map_err(unreadable)?;
    if let (true, Some(app), Some(group)) = (marks.settled, marks.change_app, marks.change_group) {
        let change: GroupChange = serde_dynamo::from_item(image).map_err(unreadable)?;
        return Ok(Some(Streamed::Change { app, group, change }));
    }
    let origin = match (marks.origin.as_deref(), marks.seq) {
        (Some("direct"), _) => Origin::Direct,
        (Some("inline"), _) => Origin::Inline {
            audience: marks.audience,
        },
        (Some("group"), Some(seq)) => Origin::Group { seq },
        (Some("group"), None) => {
            return Err(Error::bad_request("a group message record without its seq"));
        }
        _ => return Ok(None),
    };
    let message: Message = serde_dynamo::from_item(image).map_err(unreadable)?;
    // Never the clock of this attempt: a deterministic value for items without the mark.
    let written_at = marks.written_at.unwrap_or(message.timestamp);
    Ok(Some(Streamed::Message(Written {
        message,
        origin,
        written_at,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::message;

    fn written() -> Written {
        Written {
            message: Message {
                timestamp: 1_600_000_000_000,
                ..message()
            },
            origin: Origin::Direct,
            written_at: 1_700_000_000_123,
        }
    }

    #[test]
    fn a_record_reads_back_with_its_write_time() {
        let w = written();
        let image = image_of(&Streamed::Message(w.clone())).unwrap();
        assert_eq!(streamed_of(image).unwrap(), Some(Streamed::Message(w)));
    }

    #[test]
    fn an_item_from_before_the_write_time_falls_back_to_the_message_timestamp() {
        let w = written();
        let mut item = item_of(&w).unwrap();
        item.remove(WRITTEN_AT);
        let Some(Streamed::Message(read)) = streamed_of(item.into()).unwrap() else {
            panic!("not a message");
        };
        assert_eq!(read.written_at, 1_600_000_000_000);
        assert_eq!(read.message, w.message);
    }
}
