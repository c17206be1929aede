//! How the chat's data is laid out in items: the stored conversation row, message copies,
//! memberships, change records, and the conditional writes built from them.

use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_attribute_value, to_item};

use super::request::{Expr, Item, ORDER, Table, built, key, n, s};
use crate::error::{Error, Result};
use crate::keys;
use crate::model::{Conversation, GroupChange, Message};

/// On a conversation row: the `order_key` of its last message, to tell newer from late ones.
pub const LAST: &str = "last_key";
/// On a membership item: the member's id.
pub const MEMBER_ID: &str = "member_id";

pub fn item_of<T: Serialize>(value: &T, pk: String, sk: String) -> Result<Item> {
    let mut item: Item =
        to_item(value).map_err(|e| Error::internal(format!("cannot store item: {e}")))?;
    item.extend(key(pk, sk));
    Ok(item)
}

pub fn parse<T: DeserializeOwned>(item: Item) -> Result<T> {
    from_item(item).map_err(|e| Error::internal(format!("unreadable stored item: {e}")))
}

pub fn attribute<T: Serialize>(value: &T) -> Result<AttributeValue> {
    to_attribute_value(value).map_err(|e| Error::internal(format!("cannot store a value: {e}")))
}

/// A conversation row as stored: the last message as one map attribute, so that making a
/// message the last one is a single `SET` rather than one per message field.
#[derive(Serialize, Deserialize)]
pub struct StoredConversation {
    last: Message,
    key: String,
    last_message_text: String,
    is_new: bool,
    archived: bool,
    #[serde(default)]
    unread_count: u64,
    #[serde(default)]
    read_at: Option<u64>,
    #[serde(default)]
    peer_read_at: Option<u64>,
    #[serde(default)]
    received_up_to: Option<u64>,
}

impl From<StoredConversation> for Conversation {
    fn from(row: StoredConversation) -> Conversation {
        Conversation {
            last: row.last,
            key: row.key,
            last_message_text: row.last_message_text,
            is_new: row.is_new,
            archived: row.archived,
            unread_count: row.unread_count,
            read_at: row.read_at,
            peer_read_at: row.peer_read_at,
            received_up_to: row.received_up_to,
        }
    }
}

pub fn conversation_of(item: Item) -> Result<Conversation> {
    parse::<StoredConversation>(item).map(Conversation::from)
}

pub fn conversation_key(app: &str, user: &str, with: &str) -> Item {
    key(keys::user_pk(app, user), keys::conversation_sk(with))
}

/// Where a message is kept: a copy in its owner's timeline, or a group message in the
/// group's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Timeline,
    History,
}

impl Place {
    /// Where a send's canonical copy is: the sender's timeline, or the group's history.
    pub fn of_canonical(message: &Message) -> Place {
        if message.is_group() {
            Place::History
        } else {
            Place::Timeline
        }
    }

    fn pk(self, m: &Message) -> String {
        match self {
            Place::Timeline => keys::timeline_pk(&m.app_id, &m.timeline_of, &m.convers_with),
            Place::History => keys::history_pk(&m.app_id, &m.recipient),
        }
    }
}

pub fn message_key(message: &Message, place: Place) -> Item {
    key(
        place.pk(message),
        keys::message_sk(&message.sender, &message.message_id),
    )
}

pub fn message_item(message: &Message, place: Place) -> Result<Item> {
    let mut item = item_of(
        message,
        place.pk(message),
        keys::message_sk(&message.sender, &message.message_id),
    )?;
    item.insert(ORDER.into(), s(keys::order_of(message)));
    Ok(item)
}

/// A copy in its owner's timeline.
pub fn copy_item(copy: &Message) -> Result<Item> {
    message_item(copy, Place::Timeline)
}

pub fn group_meta_key(app: &str, group: &str) -> Item {
    key(keys::group_pk(app, group), keys::GROUP_META_SK.into())
}

pub fn member_key(app: &str, group: &str, member: &str) -> Item {
    key(keys::group_pk(app, group), keys::member_sk(member))
}

pub fn change_key(app: &str, group: &str, change_id: &str) -> Item {
    key(keys::group_pk(app, group), keys::change_sk(change_id))
}

/// What `set_last` expects of the conversation row besides an older last message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Premise {
    /// Whatever its archived state.
    Any,
    /// Not archived (or no row yet).
    Active,
    /// Archived: the new message takes it back to the active list.
    Archived,
}

/// The update that makes `copy` the last message of its owner's conversation (un-archiving
/// it), if newer and the row is as `premise` says. In a transaction, a failed condition
/// returns the row as it was.
pub fn set_last(
    table: &Table,
    copy: &Message,
    is_new: bool,
    unread: bool,
    premise: Premise,
) -> Result<Update> {
    let order = keys::order_of(copy);
    let fields = [
        ("last", attribute(copy)?),
        ("key", s(copy.convers_with.clone())),
        ("last_message_text", s(copy.text.clone())),
        ("is_new", AttributeValue::Bool(is_new)),
        ("archived", AttributeValue::Bool(false)),
        (
            ORDER,
            s(keys::conversation_order(
                false,
                copy.timestamp,
                &copy.convers_with,
            )),
        ),
        (LAST, s(order.clone())),
    ];
    let mut e = Expr::default();
    let sets: Vec<String> = fields
        .into_iter()
        .map(|(name, value)| format!("{} = {}", e.name(name), e.value(value)))
        .collect();
    let mut update = format!("SET {}", sets.join(", "));
    if unread {
        update.push_str(&format!(
            " ADD {} {}",
            e.name("unread_count"),
            e.value(n(1))
        ));
    }
    let last = e.name(LAST);
    let newer = format!(
        "(attribute_not_exists({last}) OR {last} < {})",
        e.value(s(order))
    );
    let condition = match premise {
        Premise::Any => newer,
        Premise::Active => {
            let archived = e.name("archived");
            format!(
                "{newer} AND (attribute_not_exists({archived}) OR {archived} = {})",
                e.value(AttributeValue::Bool(false))
            )
        }
        Premise::Archived => {
            let archived = e.name("archived");
            format!(
                "{newer} AND {archived} = {}",
                e.value(AttributeValue::Bool(true))
            )
        }
    };
    let key = conversation_key(&copy.app_id, &copy.timeline_of, &copy.convers_with);
    let mut update = table.update(key, update, condition, &e)?;
    update.return_values_on_condition_check_failure =
        Some(ReturnValuesOnConditionCheckFailure::AllOld);
    Ok(update)
}

/// A late (older) message: counts as unread without changing the last message.
pub fn count_unread(table: &Table, copy: &Message) -> Result<Update> {
    let mut e = Expr::default();
    let update = format!("ADD {} {}", e.name("unread_count"), e.value(n(1)));
    let condition = format!("attribute_exists({})", e.name(LAST));
    let key = conversation_key(&copy.app_id, &copy.timeline_of, &copy.convers_with);
    let mut update = table.update(key, update, condition, &e)?;
    update.return_values_on_condition_check_failure =
        Some(ReturnValuesOnConditionCheckFailure::AllOld);
    Ok(update)
}

pub fn change_put(
    table: &Table,
    app: &str,
    group: &str,
    change: &GroupChange,
) -> Result<TransactWriteItem> {
    let item = item_of(
        change,
        keys::group_pk(app, group),
        keys::change_sk(&change.id),
    )?;
    Ok(TransactWriteItem::builder()
        .put(table.put(item, None)?)
        .build())
}

/// Puts a membership; with `only_if_absent`, the transaction fails if it exists.
pub fn member_put(
    table: &Table,
    app: &str,
    group: &str,
    member: &str,
    only_if_absent: bool,
) -> Result<TransactWriteItem> {
    let mut item = member_key(app, group, member);
    item.insert(MEMBER_ID.into(), s(member));
    let condition = only_if_absent.then_some("attribute_not_exists(pk)");
    Ok(TransactWriteItem::builder()
        .put(table.put(item, condition)?)
        .build())
}

/// Deletes a membership; the transaction fails if there is none.
pub fn member_delete(
    table: &Table,
    app: &str,
    group: &str,
    member: &str,
) -> Result<TransactWriteItem> {
    let delete = built(
        Delete::builder()
            .table_name(&table.name)
            .set_key(Some(member_key(app, group, member)))
            .condition_expression("attribute_exists(pk)")
            .build(),
    )?;
    Ok(TransactWriteItem::builder().delete(delete).build())
}

/// Fails the transaction unless the group exists.
pub fn group_exists(table: &Table, app: &str, group: &str) -> Result<TransactWriteItem> {
    let check = built(
        ConditionCheck::builder()
            .table_name(&table.name)
            .set_key(Some(group_meta_key(app, group)))
            .condition_expression("attribute_exists(pk)")
            .build(),
    )?;
    Ok(TransactWriteItem::builder().condition_check(check).build())
}
