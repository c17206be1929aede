//! Messages on DynamoDB: direct timelines, group histories, inline copies. A message is one
//! item keyed by its sender and id (a retry finds it), ordered by `order_key` in the
//! `by_order` index. The items of new messages carry an `origin`, which the table's stream
//! filter passes to the deliver function: the write is the event.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, PutRequest, ReturnValue, WriteRequest,
};

use super::DynamoStore;
use super::item::SEQ;
use super::item::{group_meta_key, message_item, parse, timeline_pk};
use super::request::{Expr, Item, PK, SK, built, key, key_of, n, s};
use super::stream::{ORIGIN, item_of};
use crate::error::{Error, Result};
use crate::keys;
use crate::model::Message;
use crate::ports::{MessageStore, Page, PageRequest, Timeline, Window, Written};

/// The spans of a member's windows, merged and oldest first (`to` inclusive; open = `None`).
pub fn spans(windows: &[Window]) -> Vec<(String, Option<String>)> {
    let mut sorted: Vec<&Window> = windows.iter().collect();
    sorted.sort_by(|a, b| a.from.cmp(&b.from));
    let mut merged: Vec<(String, Option<String>)> = Vec::new();
    for w in sorted {
        match merged.last_mut() {
            // Overlapping or touching the previous span: extend it.
            Some((_, to)) if to.as_deref().is_none_or(|t| t >= w.from.as_str()) => {
                *to = match (to.take(), &w.to) {
                    (None, _) | (_, None) => None,
                    (Some(a), Some(b)) => Some(if a >= *b { a } else { b.clone() }),
                };
            }
            _ => merged.push((w.from.clone(), w.to.clone())),
        }
    }
    merged
}

impl DynamoStore {
    async fn put_messages(&self, items: Vec<Item>) -> Result<()> {
        // One request may not name the same item twice: keep the last of each.
        let mut unique: HashMap<(String, String), Item> = HashMap::new();
        for item in items {
            let id = match (item.get(PK), item.get(SK)) {
                (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => {
                    (pk.clone(), sk.clone())
                }
                _ => return Err(Error::internal("a message item without its key")),
            };
            unique.insert(id, item);
        }
        let requests = unique
            .into_values()
            .map(|item| {
                let put = built(PutRequest::builder().set_item(Some(item)).build())?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>>>()?;
        self.table.batch_write(requests).await
    }
}

#[async_trait]
impl MessageStore for DynamoStore {
    async fn put_message(&self, written: &Written) -> Result<Option<Message>> {
        match self.table.put_if_absent(item_of(written)?).await? {
            None => Ok(None),
            Some(earlier) => parse(earlier).map(Some),
        }
    }

    async fn next_seq(&self, app: &str, group: &str, count: u64) -> Result<Option<u64>> {
        let mut e = Expr::default();
        let update = format!("ADD {} {}", e.name(SEQ), e.value(n(count)));
        let condition = format!("attribute_exists({})", e.name(PK));
        let update = self
            .table
            .update(group_meta_key(app, group), update, condition, &e)?;
        let Some(new) = self
            .table
            .update_returning(update, ReturnValue::UpdatedNew)
            .await?
        else {
            return Ok(None);
        };
        match new.get(SEQ) {
            Some(AttributeValue::N(seq)) => {
                let seq: u64 = seq
                    .parse()
                    .map_err(|_| Error::internal("an unreadable group seq"))?;
                Ok(Some(seq + 1 - count))
            }
            _ => Err(Error::internal("the group seq was not returned")),
        }
    }

    async fn put_system_messages(&self, messages: &[(Message, u64)]) -> Result<()> {
        let items = messages
            .iter()
            .map(|(m, seq)| {
                let pk = keys::history_pk(&m.app_id, &m.recipient);
                let mut item = message_item(m, pk, keys::group_order(*seq, m))?;
                item.insert(ORIGIN.into(), s("system"));
                Ok(item)
            })
            .collect::<Result<Vec<_>>>()?;
        self.put_messages(items).await
    }

    async fn put_copies(&self, copies: &[Message]) -> Result<()> {
        let items = copies
            .iter()
            .map(|c| {
                let pk = keys::timeline_pk(&c.app_id, &c.timeline_of, &c.convers_with);
                message_item(c, pk, keys::order_of(c))
            })
            .collect::<Result<Vec<_>>>()?;
        self.put_messages(items).await
    }

    async fn get_message(
        &self,
        timeline: &Timeline,
        sender: &str,
        message_id: &str,
    ) -> Result<Option<Message>> {
        let k = key(timeline_pk(timeline), keys::message_sk(sender, message_id));
        self.table.get(k).await?.map(parse).transpose()
    }

    async fn list_timeline(
        &self,
        timeline: &Timeline,
        windows: Option<&[Window]>,
        cleared_to: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Message>> {
        let spans = windows.map(spans);
        self.table
            .query_page(&timeline_pk(timeline), spans.as_deref(), cleared_to, page)
            .await
    }

    async fn history_run(
        &self,
        app: &str,
        group: &str,
        first: u64,
        count: u64,
    ) -> Result<Vec<(Message, u64)>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let pk = keys::history_pk(app, group);
        // Every order at places first..=last: `{seq:013}#…` ('$' sorts right after '#').
        let low = format!("{first:013}#");
        let high = format!("{:013}$", first + count - 1);
        let items = self
            .table
            .query_orders(&pk, (Some(&low), Some(&high)), count as usize)
            .await?;
        let mut run = items
            .into_iter()
            .map(|(order, item)| Ok((parse::<Message>(item)?, keys::place_of(&order)?)))
            .collect::<Result<Vec<_>>>()?;
        run.sort_by_key(|(_, seq)| *seq);
        Ok(run)
    }

    async fn history_before(
        &self,
        app: &str,
        group: &str,
        before: &str,
        n: usize,
    ) -> Result<Vec<(Message, String)>> {
        let pk = keys::history_pk(app, group);
        // Up to `before` inclusive (DynamoDB's bounds are), then without it.
        let newest = self
            .table
            .query_orders(&pk, (None, Some(before)), n + 1)
            .await?;
        newest
            .into_iter()
            .filter(|(order, _)| order.as_str() != before)
            .take(n)
            .map(|(order, item)| Ok((parse::<Message>(item)?, order)))
            .collect()
    }

    async fn delete_copies(&self, app: &str, owner: &str, with: &str) -> Result<()> {
        let pk = keys::timeline_pk(app, owner, with);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(from: &str, to: Option<&str>) -> Window {
        Window {
            from: from.into(),
            to: to.map(str::to_string),
        }
    }

    #[test]
    fn windows_merge_into_ordered_spans() {
        assert_eq!(spans(&[]), vec![]);
        let merged = spans(&[w("50", None), w("10", Some("20")), w("15", Some("30"))]);
        assert_eq!(
            merged,
            vec![
                ("10".to_string(), Some("30".to_string())),
                ("50".to_string(), None)
            ]
        );
        assert_eq!(
            spans(&[w("10", Some("20")), w("05", None)]),
            vec![("05".to_string(), None)]
        );
    }
}
