//! Conversations on DynamoDB: deliveries (copy + conversation row in one transaction), the
//! sender's row, lists, archive, delete, read marks.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, ReturnValue, TransactWriteItem, WriteRequest,
};

use super::DynamoStore;
use super::item::{LAST, StoredConversation, conversation_key, conversation_of, copy_item};
use super::item::{Premise, count_unread, set_last};
use super::request::{Cancelled, Expr, Item, ORDER, PK, Transaction, built, key_of, n, s};
use crate::adapters::retry::{Attempt, retry};
use crate::error::Result;
use crate::keys;
use crate::model::{Conversation, Message};
use crate::ports::{ConversationStore, Delivery, Page, PageRequest, ReadMark, Unarchived};

/// Deliveries per transaction: two actions each (the copy and the conversation row).
const DELIVERIES_PER_TRANSACTION: usize = 50;

/// How a delivery updates the owner's conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConversationWrite {
    /// The copy is the newest message of an active conversation: it becomes the last one.
    Newer,
    /// The copy is the newest message of an archived conversation: it becomes the last one
    /// and takes the conversation back to the active list.
    Unarchive,
    /// A later message is already there: only count it as unread (conditional on the row).
    Older,
    /// `updateconversation: false`, or an old message the owner sent: the row stays.
    Skip,
}

/// One delivery still to make (its index in the call's deliveries) and how.
type Planned = (usize, ConversationWrite);

/// What one action of a delivery transaction stands for: (position in the chunk, part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Copy,
    Conversation,
}

/// The conversation row as a failed condition returned it: its last message's order, and
/// whether it is archived.
fn row_state(old: Option<&Item>) -> Option<(String, bool)> {
    let old = old?;
    let last = match old.get(LAST) {
        Some(AttributeValue::S(last)) => last.clone(),
        _ => String::new(),
    };
    let archived = matches!(old.get("archived"), Some(AttributeValue::Bool(true)));
    Some((last, archived))
}

/// After a chunk's transaction was cancelled by failed conditions, what to try again. A
/// delivery whose copy already exists was made before: it is done. One whose conversation
/// condition failed was planned on a wrong premise, which the row as it was tells: a later
/// message is there (`Older`), the row is archived (`Unarchive`), or there is no row yet
/// (`Newer`). The others were only cancelled with the chunk and go again as they were.
fn replan(
    chunk: &[Planned],
    orders: &[String],
    parts: &[(usize, Part)],
    outcomes: &[Cancelled],
) -> Vec<Planned> {
    let mut copy_exists = vec![false; chunk.len()];
    let mut premise_failed: Vec<Option<Option<(String, bool)>>> = vec![None; chunk.len()];
    for (&(pos, part), outcome) in parts.iter().zip(outcomes) {
        match part {
            Part::Copy => copy_exists[pos] |= outcome.failed,
            Part::Conversation if outcome.failed => {
                premise_failed[pos] = Some(row_state(outcome.old.as_ref()))
            }
            Part::Conversation => {}
        }
    }
    chunk
        .iter()
        .enumerate()
        .filter(|(pos, _)| !copy_exists[*pos])
        .map(|(pos, &(i, write))| {
            let write = match &premise_failed[pos] {
                None => write,
                Some(None) => ConversationWrite::Newer,
                Some(Some((last, _))) if *last >= orders[pos] => ConversationWrite::Older,
                Some(Some((_, true))) => ConversationWrite::Unarchive,
                Some(Some((_, false))) => ConversationWrite::Newer,
            };
            (i, write)
        })
        .collect()
}

impl DynamoStore {
    /// One transaction for a chunk of deliveries; returns what is left to do, or which
    /// deliveries it made and whether each took its conversation back from the archive.
    async fn deliver_chunk(
        &self,
        deliveries: &[Delivery],
        chunk: &[Planned],
    ) -> Result<std::result::Result<Vec<(usize, Unarchived)>, Vec<Planned>>> {
        let mut actions = Vec::new();
        let mut parts = Vec::new();
        let mut orders = Vec::new();
        for (pos, &(i, write)) in chunk.iter().enumerate() {
            let d = &deliveries[i];
            orders.push(keys::order_of(&d.copy));
            let put = self
                .table
                .put(copy_item(&d.copy)?, Some("attribute_not_exists(pk)"))?;
            actions.push(TransactWriteItem::builder().put(put).build());
            parts.push((pos, Part::Copy));
            let table = &self.table;
            let update = match write {
                ConversationWrite::Newer => Some(set_last(
                    table,
                    &d.copy,
                    d.unread,
                    d.unread,
                    Premise::Active,
                )?),
                ConversationWrite::Unarchive => Some(set_last(
                    table,
                    &d.copy,
                    d.unread,
                    d.unread,
                    Premise::Archived,
                )?),
                ConversationWrite::Older if d.unread => Some(count_unread(table, &d.copy)?),
                _ => None,
            };
            if let Some(update) = update {
                actions.push(TransactWriteItem::builder().update(update).build());
                parts.push((pos, Part::Conversation));
            }
        }
        Ok(match self.table.transact(actions).await? {
            Transaction::Committed => Ok(chunk
                .iter()
                .map(|&(i, write)| (i, write == ConversationWrite::Unarchive))
                .collect()),
            Transaction::ConditionsFailed(outcomes) => {
                Err(replan(chunk, &orders, &parts, &outcomes))
            }
        })
    }
}

#[async_trait]
impl ConversationStore for DynamoStore {
    async fn deliver(&self, deliveries: &[Delivery]) -> Result<Vec<Unarchived>> {
        let plan: Vec<Planned> = deliveries
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let write = if d.update_conversation {
                    ConversationWrite::Newer
                } else {
                    ConversationWrite::Skip
                };
                (i, write)
            })
            .collect();
        let unarchived = vec![false; deliveries.len()];
        retry(
            "deliveries kept conflicting",
            (plan, unarchived),
            move |(plan, mut unarchived)| async move {
                let mut left = Vec::new();
                for chunk in plan.chunks(DELIVERIES_PER_TRANSACTION) {
                    match self.deliver_chunk(deliveries, chunk).await? {
                        Ok(made) => {
                            for (i, taken_back) in made {
                                unarchived[i] = taken_back;
                            }
                        }
                        Err(again) => left.extend(again),
                    }
                }
                Ok(if left.is_empty() {
                    Attempt::Done(unarchived)
                } else {
                    Attempt::Again((left, unarchived))
                })
            },
        )
        .await
    }

    async fn touch_conversation(&self, copy: &Message) -> Result<Unarchived> {
        let update = set_last(&self.table, copy, false, false, Premise::Any)?;
        let old = self
            .table
            .update_returning(update, ReturnValue::UpdatedOld)
            .await?;
        let was_archived =
            |old: &Item| matches!(old.get("archived"), Some(AttributeValue::Bool(true)));
        Ok(old.as_ref().is_some_and(was_archived))
    }

    async fn get_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>> {
        self.table
            .get(conversation_key(app, user, with))
            .await?
            .map(conversation_of)
            .transpose()
    }

    async fn list_conversations(
        &self,
        app: &str,
        user: &str,
        archived: bool,
        page: &PageRequest,
    ) -> Result<Page<Conversation>> {
        let prefix = format!("{}#", keys::list_prefix(archived));
        let page: Page<StoredConversation> = self
            .table
            .query_page(keys::user_pk(app, user), Some(&prefix), page)
            .await?;
        Ok(Page {
            items: page.items.into_iter().map(Conversation::from).collect(),
            next: page.next,
        })
    }

    async fn archive_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>> {
        // The archived order needs the row's timestamp: read it, then write on the condition
        // that no newer message arrived in between (else read again).
        retry("the conversation kept changing", (), move |()| async move {
            let Some(row) = self.table.get(conversation_key(app, user, with)).await? else {
                return Ok(Attempt::Done(None));
            };
            let last = row.get(LAST).cloned().unwrap_or_else(|| s(""));
            let current = conversation_of(row)?;
            let mut e = Expr::default();
            let order = keys::conversation_order(true, current.last.timestamp, with);
            let update = format!(
                "SET {} = {}, {} = {}",
                e.name("archived"),
                e.value(AttributeValue::Bool(true)),
                e.name(ORDER),
                e.value(s(order))
            );
            let condition = format!("{} = {}", e.name(LAST), e.value(last));
            let key = conversation_key(app, user, with);
            let update = self.table.update(key, update, condition, &e)?;
            Ok(match self.table.update_item(update).await? {
                Some(item) => Attempt::Done(Some(conversation_of(item)?)),
                None => Attempt::Again(()),
            })
        })
        .await
    }

    async fn delete_timeline(&self, app: &str, user: &str, with: &str) -> Result<()> {
        let pk = keys::timeline_pk(app, user, with);
        let items = self
            .table
            .query_all(pk, "begins_with(#sk, :m)", vec![(":m", s("M#"))])
            .await?;
        let requests = items
            .iter()
            .filter_map(key_of)
            .map(|k| {
                let delete = built(DeleteRequest::builder().set_key(Some(k)).build())?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<Vec<_>>>()?;
        self.table.batch_write(requests).await
    }

    async fn delete_conversation(&self, app: &str, user: &str, with: &str) -> Result<()> {
        self.table.delete(conversation_key(app, user, with)).await
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
            "SET {} = {}, {} = {}, {} = {}",
            e.name("is_new"),
            e.value(AttributeValue::Bool(false)),
            e.name("unread_count"),
            e.value(n(0)),
            e.name("read_at"),
            e.value(n(at))
        );
        let condition = format!("attribute_exists({})", e.name(PK));
        let key = conversation_key(app, user, with);
        let update = self.table.update(key, update, condition, &e)?;
        self.table
            .update_item(update)
            .await?
            .map(conversation_of)
            .transpose()
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
        let key = conversation_key(app, user, with);
        let update = self.table.update(key, update, condition, &e)?;
        self.table.update_item(update).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConversationWrite::*;

    /// Parts of a chunk where every delivery has a copy and a conversation action.
    fn both(n: usize) -> Vec<(usize, Part)> {
        (0..n)
            .flat_map(|pos| [(pos, Part::Copy), (pos, Part::Conversation)])
            .collect()
    }

    fn failed(old: Option<(&str, bool)>) -> Cancelled {
        Cancelled {
            failed: true,
            old: old.map(|(last, archived)| {
                Item::from([
                    (LAST.to_string(), s(last)),
                    ("archived".to_string(), AttributeValue::Bool(archived)),
                ])
            }),
        }
    }

    fn ok() -> Cancelled {
        Cancelled::default()
    }

    fn orders(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("5{i}")).collect()
    }

    #[test]
    fn copies_already_there_are_done() {
        let chunk = [(0, Newer), (1, Newer)];
        let outcomes = [failed(None), ok(), ok(), ok()];
        assert_eq!(
            replan(&chunk, &orders(2), &both(2), &outcomes),
            vec![(1, Newer)]
        );
    }

    #[test]
    fn the_row_as_it_was_says_what_to_do_instead() {
        let chunk = [(3, Newer), (4, Older), (5, Newer), (6, Newer)];
        let outcomes = [
            ok(),
            failed(Some(("99", false))), // 3: a later message is there
            ok(),
            failed(None), // 4: no row yet
            ok(),
            failed(Some(("10", true))), // 5: older last message, archived
            ok(),
            ok(), // 6: only cancelled with the chunk
        ];
        assert_eq!(
            replan(&chunk, &orders(4), &both(4), &outcomes),
            vec![(3, Older), (4, Newer), (5, Unarchive), (6, Newer)]
        );
    }

    #[test]
    fn deliveries_without_a_conversation_action() {
        // Delivery 0 writes only its copy (Skip); delivery 1 both.
        let chunk = [(0, Skip), (1, Unarchive)];
        let parts = [(0, Part::Copy), (1, Part::Copy), (1, Part::Conversation)];
        let later = [ok(), ok(), failed(Some(("99", false)))];
        assert_eq!(
            replan(&chunk, &orders(2), &parts, &later),
            vec![(0, Skip), (1, Older)]
        );
        let made = [failed(None), failed(None), ok()];
        assert_eq!(replan(&chunk, &orders(2), &parts, &made), vec![]);
    }
}
