//! The table's stream (DynamoDB Streams, new images): each new message item, read back as the
//! message the deliver step delivers. Only items carrying an `origin` are new messages to
//! deliver (the stream's filter on AWS passes only those); a group change's system messages
//! (`origin: system`) are delivered by the change itself.

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Deserialize;

use super::item::message_item;
use super::request::{Item, n, s};
use crate::error::{Error, Result};
use crate::keys;
use crate::model::Message;
use crate::ports::{Origin, Written};

/// The attribute that marks a new message for the deliver step, and the ones it needs.
pub const ORIGIN: &str = "origin";
pub const AUDIENCE: &str = "audience";
pub const SEQ: &str = "seq";

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

/// [`item_of`] as the stream's record carries it (what Lambda hands the deliver function).
pub fn image_of(written: &Written) -> Result<serde_dynamo::Item> {
    Ok(item_of(written)?.into())
}

/// The delivery marks a new message item carries besides the message.
#[derive(Deserialize)]
struct Marks {
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    audience: Vec<String>,
    #[serde(default)]
    seq: Option<u64>,
}

/// The new message a stream record's new image announces; `None` for any other item.
pub fn written_of(image: serde_dynamo::Item) -> Result<Option<Written>> {
    let unreadable = |e: serde_dynamo::Error| Error::bad_request(format!("an unreadable stream record: {e}"));
    let marks: Marks = serde_dynamo::from_item(image.clone()).map_err(unreadable)?;
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
    Ok(Some(Written { message, origin }))
}
