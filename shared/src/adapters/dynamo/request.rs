//! DynamoDB plumbing with no chat knowledge: expressions, error mapping, and the requests the
//! store makes (get, put-if-absent, update, delete, queries, batch writes, transactions),
//! each counted, chunked to the service limits and retried where the SDK does not.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update, WriteRequest,
};
use serde::de::DeserializeOwned;
use tracing::warn;

use super::item::parse;
use crate::adapters::retry::{Attempt, retry};
use crate::error::{Error, Result};
use crate::ports::{Page, PageRequest};

pub type Item = HashMap<String, AttributeValue>;

/// Key attributes of the table.
pub const PK: &str = "pk";
pub const SK: &str = "sk";
/// Sort key of the `by_order` local index.
pub const ORDER: &str = "order_key";
pub const ORDER_INDEX: &str = "by_order";

/// Items per BatchWriteItem (service limit).
const BATCH_WRITE_LIMIT: usize = 25;

/// Builds condition and update expressions with placeholders for every name and value
/// (many of our field names, like `status` and `timestamp`, are DynamoDB reserved words).
#[derive(Default)]
pub struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    pub fn name(&mut self, attr: &str) -> String {
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), attr.to_string());
        placeholder
    }

    pub fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub fn key(pk: String, sk: String) -> Item {
    HashMap::from([(PK.to_string(), s(pk)), (SK.to_string(), s(sk))])
}

/// The key attributes of a whole item.
pub fn key_of(item: &Item) -> Option<Item> {
    let k: Item = [PK, SK]
        .iter()
        .filter_map(|name| Some((name.to_string(), item.get(*name)?.clone())))
        .collect();
    (k.len() == 2).then_some(k)
}

pub fn built<T>(r: std::result::Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T> {
    r.map_err(|e| Error::internal(format!("bad DynamoDB request: {e}")))
}

/// Maps an SDK failure to the API's error: throttling is 429, our own malformed requests are
/// bugs (500), anything else (network, service) is a 503 the client may retry.
pub fn sdk_error<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    op: &str,
    e: SdkError<E, R>,
) -> Error {
    let code = e.code().unwrap_or("").to_string();
    let detail = format!("DynamoDB {op} failed: {code} {}", e.message().unwrap_or(""));
    match code.as_str() {
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded" => Error::Throttled("the store is busy; retry shortly".into()),
        "ValidationException" | "ResourceNotFoundException" | "SerializationException" => {
            Error::internal(detail)
        }
        _ => {
            warn!(error = ?e, "{detail}");
            Error::unavailable(format!("the store is unavailable ({op})"))
        }
    }
}

/// How a transaction ended, when it did not fail outright.
#[derive(Debug, Clone, PartialEq)]
pub enum Transaction {
    Committed,
    /// Cancelled by failed conditions: per action, what happened to it.
    ConditionsFailed(Vec<Cancelled>),
}

/// One action of a cancelled transaction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cancelled {
    /// Its own condition failed (the others were only cancelled with it).
    pub failed: bool,
    /// The item as it was, for actions that asked for it on failure.
    pub old: Option<Item>,
}

impl Transaction {
    /// Whether action `index` failed its condition.
    pub fn failed(&self, index: usize) -> bool {
        match self {
            Transaction::Committed => false,
            Transaction::ConditionsFailed(actions) => actions.get(index).is_some_and(|a| a.failed),
        }
    }
}

/// One table, and a count of the requests sent to it.
pub struct Table {
    pub client: Client,
    pub name: String,
    requests: AtomicU64,
}

impl Table {
    pub fn new(client: Client, name: String) -> Table {
        Table {
            client,
            name,
            requests: AtomicU64::new(0),
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn put(&self, item: Item, condition: Option<&str>) -> Result<Put> {
        built(
            Put::builder()
                .table_name(&self.name)
                .set_item(Some(item))
                .set_condition_expression(condition.map(str::to_string))
                .build(),
        )
    }

    /// An update of one item, with the names and values `e` collected.
    pub fn update(
        &self,
        key: Item,
        expression: String,
        condition: String,
        e: &Expr,
    ) -> Result<Update> {
        built(
            Update::builder()
                .table_name(&self.name)
                .set_key(Some(key))
                .update_expression(expression)
                .condition_expression(condition)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .build(),
        )
    }

    /// TransactWriteItems (at most 100 actions), retried while a concurrent transaction on the
    /// same items cancels it. Failed conditions are an outcome, not an error.
    pub async fn transact(&self, actions: Vec<TransactWriteItem>) -> Result<Transaction> {
        let actions = &actions;
        retry("the store kept conflicting", (), move |()| async move {
            self.count();
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions.clone()))
                .send()
                .await;
            let e = match sent {
                Ok(_) => return Ok(Attempt::Done(Transaction::Committed)),
                Err(e) => e,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                e.as_service_error()
            else {
                return Err(sdk_error("TransactWriteItems", e));
            };
            let reasons = cancelled.cancellation_reasons();
            let codes: Vec<&str> = reasons.iter().map(|r| r.code().unwrap_or("None")).collect();
            if codes.contains(&"ConditionalCheckFailed") {
                let actions = reasons
                    .iter()
                    .map(|r| Cancelled {
                        failed: r.code() == Some("ConditionalCheckFailed"),
                        old: r.item().cloned(),
                    })
                    .collect();
                return Ok(Attempt::Done(Transaction::ConditionsFailed(actions)));
            }
            if codes.contains(&"TransactionConflict") {
                return Ok(Attempt::Again(()));
            }
            Err(sdk_error("TransactWriteItems", e))
        })
        .await
    }

    /// BatchWriteItem in chunks of 25, retrying the items DynamoDB leaves unprocessed.
    pub async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<()> {
        for chunk in requests.chunks(BATCH_WRITE_LIMIT) {
            retry(
                "the store kept refusing writes",
                chunk.to_vec(),
                move |pending| async move {
                    self.count();
                    let out = self
                        .client
                        .batch_write_item()
                        .request_items(&self.name, pending)
                        .send()
                        .await
                        .map_err(|e| sdk_error("BatchWriteItem", e))?;
                    let left = out
                        .unprocessed_items
                        .and_then(|mut m| m.remove(&self.name))
                        .unwrap_or_default();
                    Ok(if left.is_empty() {
                        Attempt::Done(())
                    } else {
                        Attempt::Again(left)
                    })
                },
            )
            .await?;
        }
        Ok(())
    }

    /// A consistent read of one item.
    pub async fn get(&self, key: Item) -> Result<Option<Item>> {
        self.count();
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item)
    }

    /// Puts `item` unless its key exists; returns the existing item when it does.
    pub async fn put_if_absent(&self, item: Item) -> Result<Option<Item>> {
        let existing_key = key_of(&item);
        self.count();
        let out = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let e = match out {
            Ok(_) => return Ok(None),
            Err(e) => e,
        };
        match e.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(c)) => match c.item() {
                Some(existing) => Ok(Some(existing.clone())),
                // Older DynamoDB versions do not return the item: read it.
                None => match existing_key {
                    Some(k) => self.get(k).await,
                    None => Err(Error::internal("an item without its key")),
                },
            },
            _ => Err(sdk_error("PutItem", e)),
        }
    }

    /// Puts `item` over the existing item of its key; false (nothing written) if there is none.
    pub async fn put_if_exists(&self, item: Item) -> Result<bool> {
        self.count();
        let out = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error("PutItem", e)),
        }
    }

    /// UpdateItem returning the new item; `None` when its condition failed.
    pub async fn update_item(&self, update: Update) -> Result<Option<Item>> {
        self.update_returning(update, ReturnValue::AllNew).await
    }

    /// UpdateItem returning what `returned` asks for; `None` when its condition failed.
    pub async fn update_returning(
        &self,
        update: Update,
        returned: ReturnValue,
    ) -> Result<Option<Item>> {
        self.count();
        let out = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(update.key))
            .update_expression(update.update_expression)
            .set_condition_expression(update.condition_expression)
            .set_expression_attribute_names(update.expression_attribute_names)
            .set_expression_attribute_values(update.expression_attribute_values)
            .return_values(returned)
            .send()
            .await;
        match out {
            Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    /// UpdateItem that tells what it found: `Ok(old)` with the item as it was when applied,
    /// `Err(current)` with the item as it is when the condition failed.
    pub async fn update_or_current(
        &self,
        update: Update,
    ) -> Result<std::result::Result<Item, Item>> {
        self.count();
        let out = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(update.key))
            .update_expression(update.update_expression)
            .set_condition_expression(update.condition_expression)
            .set_expression_attribute_names(update.expression_attribute_names)
            .set_expression_attribute_values(update.expression_attribute_values)
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(out) => Ok(Ok(out.attributes.unwrap_or_default())),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                    Ok(Err(c.item().cloned().unwrap_or_default()))
                }
                _ => Err(sdk_error("UpdateItem", e)),
            },
        }
    }

    /// An eventually consistent read of one attribute of an item (half a read unit).
    pub async fn get_projected(&self, key: Item, attribute: &str) -> Result<Option<Item>> {
        self.count();
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key))
            .projection_expression("#a")
            .expression_attribute_names("#a", attribute)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item.filter(|item| !item.is_empty()))
    }

    /// Sets a boolean attribute of an existing item to true (nothing if the item is gone).
    pub async fn set_flag(&self, key: Item, flag: &str) -> Result<()> {
        let mut e = Expr::default();
        let expression = format!(
            "SET {} = {}",
            e.name(flag),
            e.value(AttributeValue::Bool(true))
        );
        let condition = format!("attribute_exists({})", e.name(PK));
        self.update_item(self.update(key, expression, condition, &e)?)
            .await
            .map(|_| ())
    }

    pub async fn delete(&self, key: Item) -> Result<()> {
        self.count();
        self.client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(key))
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", e))?;
        Ok(())
    }

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
