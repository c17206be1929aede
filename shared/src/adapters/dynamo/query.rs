//! Reads of many items: one partition whole, or pages of its `by_order` index.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::DeserializeOwned;

use super::item::parse;
use super::request::{Item, ORDER, ORDER_INDEX, PK, SK, Table, s, sdk_error};
use crate::error::Result;
use crate::ports::{Page, PageRequest};

impl Table {
    /// Queries one partition (all pages), with `condition` on the sort key (`#sk`).
    pub async fn query_all(
        &self,
        pk: String,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            self.count();
            let mut q = self
                .client
                .query()
                .table_name(&self.name)
                .key_condition_expression(format!("#pk = :pk AND {condition}"))
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", s(pk.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            for (name, value) in &values {
                q = q.expression_attribute_values(*name, value.clone());
            }
            let out = q.send().await.map_err(|e| sdk_error("Query", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// Up to `limit` items of one partition's `by_order` index, newest first, whose order is
    /// within `range` (both ends inclusive; `None` is open). The exact number asked for, unless
    /// fewer are there.
    pub async fn query_orders(
        &self,
        pk: &str,
        range: (Option<&str>, Option<&str>),
        limit: usize,
    ) -> Result<Vec<(String, Item)>> {
        let condition = match range {
            (None, None) => "#pk = :pk",
            (Some(_), None) => "#pk = :pk AND #o >= :low",
            (None, Some(_)) => "#pk = :pk AND #o <= :high",
            (Some(_), Some(_)) => "#pk = :pk AND #o BETWEEN :low AND :high",
        };
        let mut names = HashMap::from([("#pk".to_string(), PK.to_string())]);
        let mut values = HashMap::from([(":pk".to_string(), s(pk))]);
        if range != (None, None) {
            names.insert("#o".to_string(), ORDER.to_string());
        }
        if let Some(low) = range.0 {
            values.insert(":low".to_string(), s(low));
        }
        if let Some(high) = range.1 {
            values.insert(":high".to_string(), s(high));
        }
        let mut kept: Vec<(String, Item)> = Vec::new();
        let mut start: Option<Item> = None;
        while kept.len() < limit {
            self.count();
            let out = self
                .client
                .query()
                .table_name(&self.name)
                .index_name(ORDER_INDEX)
                .key_condition_expression(condition)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit((limit - kept.len()) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in out.items.unwrap_or_default() {
                if let Some(AttributeValue::S(order)) = item.get(ORDER) {
                    kept.push((order.clone(), item));
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(kept)
    }

    /// Items of one partition's `by_order` index that `page` asks for, newest first: those
    /// within the spans (`from` inclusive, `to` inclusive or open; `None` = the whole
    /// partition) that sort before the page's position, and after `floor` (exclusive).
    pub async fn query_page<T: DeserializeOwned>(
        &self,
        pk: &str,
        spans: Option<&[(String, Option<String>)]>,
        floor: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<T>> {
        let before = page.after.as_ref().map(|p| p.order.as_str());
        let whole = [(String::new(), None)];
        let spans = spans.unwrap_or(&whole);
        let wanted = page.limit + 1;
        let mut kept: Vec<(String, Item)> = Vec::new();
        // Newest span first; each queried for what the page still needs.
        for (from, to) in spans.iter().rev() {
            let high = match (to.as_deref(), before) {
                (Some(to), Some(before)) => Some(to.min(before)),
                (to, before) => to.or(before),
            };
            let low = match floor {
                Some(floor) if floor >= from.as_str() => Some(floor),
                _ => (!from.is_empty()).then_some(from.as_str()),
            };
            if let (Some(low), Some(high)) = (low, high)
                && low > high
            {
                continue;
            }
            // Bounds are inclusive in DynamoDB: ask for the excluded ends too, then drop them.
            let items = self
                .query_orders(pk, (low, high), wanted - kept.len() + 2)
                .await?;
            kept.extend(items.into_iter().filter(|(order, _)| {
                Some(order.as_str()) != before && Some(order.as_str()) != floor
            }));
            kept.truncate(wanted);
            if kept.len() == wanted {
                break;
            }
        }
        let next = if kept.len() > page.limit {
            kept.truncate(page.limit);
            kept.last().map(|(order, _)| order.clone())
        } else {
            None
        };
        let items = kept
            .into_iter()
            .map(|(_, item)| parse(item))
            .collect::<Result<_>>()?;
        Ok(Page { items, next })
    }
}
