//! Conversations on DynamoDB: one row per (user, peer or group), updated by one conditional
//! UpdateItem per message. A row remembers the order of its last message (`last_key`) and the
//! older messages it counted since the last read (`counted`), so applying a message twice
//! changes nothing and a late one counts once.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::DynamoStore;
use super::item::{
    LAST, StoredRow, attribute, conversation_key, conversation_of, kind_name, row_of,
};
use super::request::{Expr, Item, PK, n, s};
use crate::adapters::retry::{Attempt, retry};
use crate::error::Result;
use crate::keys;
use crate::model::Conversation;
use crate::ports::{
    Applied, ConversationKind, ConversationStore, Page, PageRequest, ReadMark, RowUpdate,
    TimelineView,
};

const COUNTED: &str = "counted";

fn string(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn flag(item: &Item, name: &str) -> bool {
    matches!(item.get(name), Some(AttributeValue::Bool(true)))
}

fn counted(item: &Item) -> Vec<String> {
    match item.get(COUNTED) {
        Some(AttributeValue::Ss(set)) => set.clone(),
        _ => Vec::new(),
    }
}

/// What to do with the part of a run a row's state says is not applied yet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// These orders are newer than the row's last: apply them as the newest.
    Newer(Vec<String>),
    /// These older orders were never counted: count them.
    Late(Vec<String>),
    Nothing,
}

/// Splits a run against the row as it is (its last order and the late ones it counted).
fn plan(orders: &[String], last: &str, counted: &[String]) -> Plan {
    let newer: Vec<String> = orders
        .iter()
        .filter(|o| o.as_str() > last)
        .cloned()
        .collect();
    if !newer.is_empty() {
        return Plan::Newer(newer);
    }
    let late: Vec<String> = orders
        .iter()
        .filter(|o| o.as_str() != last && !counted.contains(o))
        .cloned()
        .collect();
    if late.is_empty() {
        Plan::Nothing
    } else {
        Plan::Late(late)
    }
}

impl DynamoStore {
    /// Makes the run (`orders`, oldest first) the newest of the row if its last message is
    /// older than all of them; otherwise `Err` with the row as it is, which says why not.
    async fn apply_newer(
        &self,
        owner: &str,
        with: &str,
        update: &RowUpdate,
        orders: &[String],
    ) -> Result<std::result::Result<Applied, Item>> {
        let last = &update.last;
        let mut e = Expr::default();
        let fields = [
            ("last", attribute(last)?),
            ("key", s(with)),
            ("last_message_text", s(last.text.clone())),
            ("is_new", AttributeValue::Bool(update.unread)),
            ("archived", AttributeValue::Bool(false)),
            ("deleted", AttributeValue::Bool(false)),
            (LAST, s(update.last_order())),
        ];
        let mut sets: Vec<String> = fields
            .into_iter()
            .map(|(name, value)| format!("{} = {}", e.name(name), e.value(value)))
            .collect();
        let kind = e.name("kind");
        sets.push(format!(
            "{kind} = if_not_exists({kind}, {})",
            e.value(s(kind_name(update.kind)))
        ));
        if update.kind == ConversationKind::Group {
            let open = e.name("open_from");
            let first = e.value(s(orders.first().cloned().unwrap_or_default()));
            sets.push(format!("{open} = if_not_exists({open}, {first})"));
        }
        let unread = if update.unread {
            orders.len() as u64
        } else {
            0
        };
        let expression = format!(
            "SET {} ADD {} {}",
            sets.join(", "),
            e.name("unread_count"),
            e.value(n(unread))
        );
        let last_key = e.name(LAST);
        let condition = format!(
            "attribute_not_exists({last_key}) OR {last_key} < {}",
            e.value(s(orders.first().cloned().unwrap_or_default()))
        );
        let key = conversation_key(&last.app_id, owner, with);
        let request = self.table.update(key, expression, condition, &e)?;
        Ok(match self.table.update_or_current(request).await? {
            Ok(old) => {
                let unarchived = flag(&old, "archived") && !flag(&old, "deleted");
                Ok(Applied::Newer { unarchived })
            }
            Err(current) => Err(current),
        })
    }

    /// Counts older messages once each: conditional on not having counted them.
    async fn count_late(
        &self,
        app: &str,
        owner: &str,
        with: &str,
        late: &[String],
    ) -> Result<bool> {
        let mut e = Expr::default();
        let set = e.value(AttributeValue::Ss(late.to_vec()));
        let expression = format!(
            "ADD {} {}, {} {set}",
            e.name("unread_count"),
            e.value(n(late.len() as u64)),
            e.name(COUNTED)
        );
        let counted = e.name(COUNTED);
        let fresh: Vec<String> = late
            .iter()
            .map(|o| format!("NOT contains({counted}, {})", e.value(s(o.as_str()))))
            .collect();
        let condition = format!(
            "attribute_exists({}) AND (attribute_not_exists({counted}) OR ({}))",
            e.name(LAST),
            fresh.join(" AND ")
        );
        let update = self.table.update(
            conversation_key(app, owner, with),
            expression,
            condition,
            &e,
        )?;
        Ok(self.table.update_item(update).await?.is_some())
    }
}

#[async_trait]
impl ConversationStore for DynamoStore {
    async fn apply(&self, owner: &str, with: &str, update: &RowUpdate) -> Result<Applied> {
        let app = update.last.app_id.as_str();
        retry(
            "the conversation kept changing",
            update.orders.clone(),
            move |orders| async move {
                let old = match self.apply_newer(owner, with, update, &orders).await? {
                    Ok(applied) => return Ok(Attempt::Done(applied)),
                    Err(old) => old,
                };
                let last = string(&old, LAST).unwrap_or_default();
                Ok(match plan(&orders, &last, &counted(&old)) {
                    // Part of a run is newer than the row: apply that part.
                    Plan::Newer(newer) => Attempt::Again(newer),
                    Plan::Late(_) if !update.unread => Attempt::Done(Applied::Late),
                    Plan::Late(late) => {
                        if self.count_late(app, owner, with, &late).await? {
                            Attempt::Done(Applied::Late)
                        } else {
                            // Counted meanwhile (or the row changed): look again.
                            Attempt::Again(orders)
                        }
                    }
                    Plan::Nothing => Attempt::Done(Applied::Already),
                })
            },
        )
        .await
    }

    async fn lags(&self, app: &str, owner: &str, with: &str, order: &str) -> Result<bool> {
        let row = self
            .table
            .get_projected(conversation_key(app, owner, with), LAST)
            .await?;
        Ok(row
            .and_then(|r| string(&r, LAST))
            .is_none_or(|last| last.as_str() < order))
    }

    async fn get_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>> {
        match self.table.get(conversation_key(app, user, with)).await? {
            Some(item) => conversation_of(item),
            None => Ok(None),
        }
    }

    async fn timeline_view(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<TimelineView>> {
        match self.table.get(conversation_key(app, user, with)).await? {
            Some(item) => Ok(Some(row_of(item)?.view())),
            None => Ok(None),
        }
    }

    async fn list_conversations(
        &self,
        app: &str,
        user: &str,
        archived: bool,
        page: &PageRequest,
    ) -> Result<Page<Conversation>> {
        // Every row of the user (one partition, no index to keep up to date on each message),
        // ordered here as the lists are: newest first.
        let items = self
            .table
            .query_all(
                keys::user_pk(app, user),
                "begins_with(#sk, :c)",
                vec![(":c", s("C#"))],
            )
            .await?;
        let mut listed = Vec::new();
        for item in items {
            let row: StoredRow = row_of(item)?;
            if row.deleted() || row.archived() != archived {
                continue;
            }
            let conversation = row.conversation();
            let order =
                keys::conversation_order(archived, conversation.last.timestamp, &conversation.key);
            listed.push((order, conversation));
        }
        listed.sort_by(|a, b| b.0.cmp(&a.0));
        let after = page.after.as_ref().map(|p| p.order.as_str());
        let mut items: Vec<(String, Conversation)> = listed
            .into_iter()
            .filter(|(order, _)| after.is_none_or(|a| order.as_str() < a))
            .take(page.limit + 1)
            .collect();
        let next = if items.len() > page.limit {
            items.truncate(page.limit);
            items.last().map(|(order, _)| order.clone())
        } else {
            None
        };
        Ok(Page {
            items: items.into_iter().map(|(_, c)| c).collect(),
            next,
        })
    }

    async fn archive_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>> {
        let mut e = Expr::default();
        let update = format!(
            "SET {} = {}",
            e.name("archived"),
            e.value(AttributeValue::Bool(true))
        );
        let deleted = e.name("deleted");
        let condition = format!(
            "attribute_exists({}) AND (attribute_not_exists({deleted}) OR {deleted} = {})",
            e.name(PK),
            e.value(AttributeValue::Bool(false))
        );
        let update = self
            .table
            .update(conversation_key(app, user, with), update, condition, &e)?;
        match self.table.update_item(update).await? {
            Some(item) => conversation_of(item),
            None => Ok(None),
        }
    }

    async fn delete_conversation(&self, app: &str, user: &str, with: &str) -> Result<()> {
        // A tombstone: out of the lists, its messages so far out of the timeline, no open
        // window; a newer message brings the conversation back.
        let mut e = Expr::default();
        let update = format!(
            "SET {} = {}, {} = {}, {} = {}, {} = {} REMOVE {}, {}, {}",
            e.name("deleted"),
            e.value(AttributeValue::Bool(true)),
            e.name("archived"),
            e.value(AttributeValue::Bool(false)),
            e.name("unread_count"),
            e.value(n(0)),
            e.name("cleared_to"),
            e.name(LAST),
            e.name("open_from"),
            e.name("closed"),
            e.name(COUNTED),
        );
        let condition = format!("attribute_exists({})", e.name(PK));
        let update = self
            .table
            .update(conversation_key(app, user, with), update, condition, &e)?;
        self.table.update_item(update).await.map(|_| ())
    }

    async fn mark_read(
        &self,
        app: &str,
        user: &str,
        with: &str,
        at: u64,
    ) -> Result<Option<Conversation>> {
        let mut e = Expr::default();
        let update = format!(
            "SET {} = {}, {} = {}, {} = {} REMOVE {}",
            e.name("is_new"),
            e.value(AttributeValue::Bool(false)),
            e.name("unread_count"),
            e.value(n(0)),
            e.name("read_at"),
            e.value(n(at)),
            e.name(COUNTED)
        );
        let deleted = e.name("deleted");
        let condition = format!(
            "attribute_exists({}) AND (attribute_not_exists({deleted}) OR {deleted} = {})",
            e.name(PK),
            e.value(AttributeValue::Bool(false))
        );
        let update = self
            .table
            .update(conversation_key(app, user, with), update, condition, &e)?;
        match self.table.update_item(update).await? {
            Some(item) => conversation_of(item),
            None => Ok(None),
        }
    }

    async fn raise_read_mark(
        &self,
        app: &str,
        user: &str,
        with: &str,
        mark: ReadMark,
        at: u64,
    ) -> Result<()> {
        let mut e = Expr::default();
        let mark = e.name(mark.attribute());
        let at = e.value(n(at));
        let update = format!("SET {mark} = {at}");
        let condition = format!(
            "attribute_exists({}) AND (attribute_not_exists({mark}) OR {mark} < {at})",
            e.name(PK)
        );
        let update = self
            .table
            .update(conversation_key(app, user, with), update, condition, &e)?;
        self.table.update_item(update).await.map(|_| ())
    }

    async fn open_window(&self, app: &str, member: &str, group: &str, from: &str) -> Result<()> {
        let mut e = Expr::default();
        let open = e.name("open_from");
        let from = e.value(s(from));
        let update = format!("SET {open} = {from}");
        let condition = format!(
            "attribute_exists({}) AND (attribute_not_exists({open}) OR {open} > {from})",
            e.name(PK)
        );
        let update =
            self.table
                .update(conversation_key(app, member, group), update, condition, &e)?;
        self.table.update_item(update).await.map(|_| ())
    }

    async fn close_window(&self, app: &str, member: &str, group: &str, at: &str) -> Result<()> {
        let key = conversation_key(app, member, group);
        let Some(row) = self.table.get(key.clone()).await? else {
            return Ok(());
        };
        let Some(from) = string(&row, "open_from") else {
            return Ok(());
        };
        let mut e = Expr::default();
        let closed = e.name("closed");
        let open = e.name("open_from");
        let window = AttributeValue::M(
            [
                ("from".to_string(), s(from.as_str())),
                ("to".to_string(), s(at)),
            ]
            .into(),
        );
        let update = format!(
            "SET {closed} = list_append(if_not_exists({closed}, {}), {}) REMOVE {open}",
            e.value(AttributeValue::L(Vec::new())),
            e.value(AttributeValue::L(vec![window]))
        );
        let condition = format!("{open} = {}", e.value(s(from)));
        let update = self.table.update(key, update, condition, &e)?;
        self.table.update_item(update).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(orders: &[&str]) -> Vec<String> {
        orders.iter().map(|o| o.to_string()).collect()
    }

    #[test]
    fn a_run_splits_against_the_row() {
        // Newer than the last: all of it (or the newer part) becomes the newest.
        assert_eq!(plan(&v(&["5", "6"]), "4", &[]), Plan::Newer(v(&["5", "6"])));
        assert_eq!(plan(&v(&["3", "5"]), "4", &[]), Plan::Newer(v(&["5"])));
        // The last itself, or counted before: nothing (a redelivery).
        assert_eq!(plan(&v(&["4"]), "4", &[]), Plan::Nothing);
        assert_eq!(plan(&v(&["2"]), "4", &v(&["2"])), Plan::Nothing);
        // Older and never counted: count it.
        assert_eq!(
            plan(&v(&["2", "3"]), "4", &v(&["2"])),
            Plan::Late(v(&["3"]))
        );
    }
}
