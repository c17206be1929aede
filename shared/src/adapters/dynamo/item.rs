//! How the chat's data is laid out in items: the stored conversation row, message copies,
//! memberships, change records, and the conditional writes built from them.

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, TransactWriteItem};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_attribute_value, to_item};

use super::request::{Expr, Item, ORDER, Table, built, key, n, s};
use crate::error::{Error, Result};
use crate::keys;
use crate::model::{Conversation, GroupChange, Message};
use crate::ports::{ConversationKind, Timeline, TimelineView, Window};

/// On a conversation row: the `order_key` of its last message, to tell newer from late ones.
pub const LAST: &str = "last_key";
/// On a membership item: the member's id.
pub const MEMBER_ID: &str = "member_id";
/// On a change record: its group's app and id.
pub const CHANGE_APP: &str = "change_app";
pub const CHANGE_GROUP: &str = "change_group";
/// On a group's meta: the last place taken in its history.
pub const SEQ: &str = "seq";

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

/// A conversation row as stored: the last message as one map attribute (making a message the
/// last one is a single `SET`; `key` and `last_message_text` are derived from it), the API's
/// fields, and how its owner sees the timeline. Rows
/// carry no `order_key`: they are not in the `by_order` index (a list reads the user's
/// partition and sorts), so a new message costs one write per row, not three.
#[derive(Serialize, Deserialize)]
pub struct StoredRow {
    last: Message,
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
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    open_from: Option<String>,
    #[serde(default)]
    closed: Vec<StoredWindow>,
    #[serde(default)]
    cleared_to: Option<String>,
    #[serde(default)]
    deleted: bool,
}

/// A closed span of a group's history a former member sees.
#[derive(Serialize, Deserialize)]
pub struct StoredWindow {
    pub from: String,
    pub to: String,
}

/// On a conversation row: what the conversation is (`kind_name`).
pub const KIND: &str = "kind";

pub fn kind_name(kind: ConversationKind) -> &'static str {
    match kind {
        ConversationKind::Direct => "direct",
        ConversationKind::Group => "group",
        ConversationKind::Inline => "inline",
    }
}

/// The kind a row's `kind` names; rows written before kinds were stored are direct.
pub fn kind_of(name: Option<&str>) -> ConversationKind {
    match name {
        Some("group") => ConversationKind::Group,
        Some("inline") => ConversationKind::Inline,
        _ => ConversationKind::Direct,
    }
}

impl StoredRow {
    pub fn deleted(&self) -> bool {
        self.deleted
    }

    pub fn archived(&self) -> bool {
        self.archived
    }

    pub fn conversation(self) -> Conversation {
        Conversation {
            key: self.last.convers_with.clone(),
            last_message_text: self.last.text.clone(),
            last: self.last,
            is_new: self.is_new,
            archived: self.archived,
            unread_count: self.unread_count,
            read_at: self.read_at,
            peer_read_at: self.peer_read_at,
            received_up_to: self.received_up_to,
        }
    }

    pub fn view(&self) -> TimelineView {
        let kind = kind_of(self.kind.as_deref());
        let mut windows: Vec<Window> = self
            .closed
            .iter()
            .map(|w| Window {
                from: w.from.clone(),
                to: Some(w.to.clone()),
            })
            .collect();
        windows.extend(Window::open(self.open_from.as_ref()));
        TimelineView {
            kind,
            windows,
            cleared_to: self.cleared_to.clone(),
            received_up_to: self.received_up_to,
            peer_read_at: self.peer_read_at,
            deleted: self.deleted,
        }
    }
}

pub fn row_of(item: Item) -> Result<StoredRow> {
    parse(item)
}

/// The live conversation of a row item (not a deleted one).
pub fn conversation_of(item: Item) -> Result<Option<Conversation>> {
    let row = row_of(item)?;
    Ok((!row.deleted()).then(|| row.conversation()))
}

pub fn conversation_key(app: &str, user: &str, with: &str) -> Item {
    key(keys::user_pk(app, user), keys::conversation_sk(with))
}

/// The partition key of a timeline.
pub fn timeline_pk(timeline: &Timeline) -> String {
    match timeline {
        Timeline::Direct { app, a, b } => keys::direct_pk(app, a, b),
        Timeline::History { app, group } => keys::history_pk(app, group),
        Timeline::Copies { app, owner, with } => keys::timeline_pk(app, owner, with),
    }
}

/// A message item in a timeline, ordered by `order`.
pub fn message_item(message: &Message, pk: String, order: String) -> Result<Item> {
    let mut item = item_of(
        message,
        pk,
        keys::message_sk(&message.sender, &message.message_id),
    )?;
    item.insert(ORDER.into(), s(order));
    Ok(item)
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

/// A change record as stored.
pub fn change_item(app: &str, group: &str, change: &GroupChange) -> Result<Item> {
    let mut item = item_of(
        change,
        keys::group_pk(app, group),
        keys::change_sk(&change.id),
    )?;
    // The stream's record of a settled change names its group by these.
    item.insert(CHANGE_APP.into(), s(app));
    item.insert(CHANGE_GROUP.into(), s(group));
    Ok(item)
}

pub fn change_put(
    table: &Table,
    app: &str,
    group: &str,
    change: &GroupChange,
) -> Result<TransactWriteItem> {
    let item = change_item(app, group, change)?;
    Ok(TransactWriteItem::builder()
        .put(table.put(item, None)?)
        .build())
}

/// The meta update a change makes: takes the places `change.places_from` names (if the
/// history is right before them) and, with `version`, bumps the version (if still that).
/// `None` when it makes neither.
pub fn meta_update(
    table: &Table,
    app: &str,
    group: &str,
    version: Option<u64>,
    change: &GroupChange,
) -> Result<Option<TransactWriteItem>> {
    let mut e = Expr::default();
    let mut sets = Vec::new();
    let mut conditions = Vec::new();
    if let Some(first) = change.places_from {
        let at = e.name(SEQ);
        let before = first.saturating_sub(1);
        sets.push(format!(
            "{at} = {}",
            e.value(n(before + change.message_count()))
        ));
        conditions.push(format!("{at} = {}", e.value(n(before))));
    }
    if let Some(version) = version {
        let v = e.name("version");
        sets.push(format!("{v} = {v} + {}", e.value(n(1))));
        conditions.push(format!("{v} = {}", e.value(n(version))));
    }
    if sets.is_empty() {
        return Ok(None);
    }
    let update = table.update(
        group_meta_key(app, group),
        format!("SET {}", sets.join(", ")),
        conditions.join(" AND "),
        &e,
    )?;
    Ok(Some(TransactWriteItem::builder().update(update).build()))
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
