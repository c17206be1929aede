//! DynamoDB plumbing with no chat knowledge: expressions, error mapping, the table and its
//! single-item requests (get, put-if-absent, update, delete), each counted. Many-item reads
//! are in `query`, many-item writes in `batch`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, Update,
};
use tracing::warn;

use crate::error::{Error, Result};

pub type Item = HashMap<String, AttributeValue>;

/// Key attributes of the table.
pub const PK: &str = "pk";
pub const SK: &str = "sk";
/// Sort key of the `by_order` local index.
pub const ORDER: &str = "order_key";
pub const ORDER_INDEX: &str = "by_order";

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

    pub(super) fn count(&self) {
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
        match self
            .put_call(item, "attribute_not_exists(pk)", true)
            .await?
        {
            Ok(()) => Ok(None),
            Err(Some(existing)) => Ok(Some(existing)),
            // Older DynamoDB versions do not return the item: read it.
            Err(None) => match existing_key {
                Some(k) => self.get(k).await,
                None => Err(Error::internal("an item without its key")),
            },
        }
    }

    /// Puts `item` over the existing item of its key; false (nothing written) if there is none.
    pub async fn put_if_exists(&self, item: Item) -> Result<bool> {
        let put = self.put_call(item, "attribute_exists(pk)", false).await?;
        Ok(put.is_ok())
    }

    /// One conditional PutItem: `Err` when the condition failed, with the item as it is if
    /// `current` asked for it (and DynamoDB returned it).
    async fn put_call(
        &self,
        item: Item,
        condition: &str,
        current: bool,
    ) -> Result<std::result::Result<(), Option<Item>>> {
        self.count();
        let out = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_return_values_on_condition_check_failure(
                current.then_some(ReturnValuesOnConditionCheckFailure::AllOld),
            )
            .send()
            .await;
        match out {
            Ok(_) => Ok(Ok(())),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => {
                    Ok(Err(c.item().cloned()))
                }
                _ => Err(sdk_error("PutItem", e)),
            },
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
        Ok(self.update_call(update, returned, None).await?.ok())
    }

    /// UpdateItem that tells what it found: `Ok(old)` with the item as it was when applied,
    /// `Err(current)` with the item as it is when the condition failed.
    pub async fn update_or_current(
        &self,
        update: Update,
    ) -> Result<std::result::Result<Item, Item>> {
        self.update_returning_or_current(update, ReturnValue::AllOld)
            .await
    }

    /// UpdateItem returning what `returned` asks for, or `Err(current)` with the item as it is
    /// (empty if there is none) when the condition failed.
    pub async fn update_returning_or_current(
        &self,
        update: Update,
        returned: ReturnValue,
    ) -> Result<std::result::Result<Item, Item>> {
        let current = Some(ReturnValuesOnConditionCheckFailure::AllOld);
        let out = self.update_call(update, returned, current).await?;
        Ok(out.map_err(Option::unwrap_or_default))
    }

    /// One UpdateItem: `Ok(returned)`, or `Err` with the item as it is (if asked for) when the
    /// condition failed.
    async fn update_call(
        &self,
        update: Update,
        returned: ReturnValue,
        on_failure: Option<ReturnValuesOnConditionCheckFailure>,
    ) -> Result<std::result::Result<Item, Option<Item>>> {
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
            .set_return_values_on_condition_check_failure(on_failure)
            .send()
            .await;
        match out {
            Ok(out) => Ok(Ok(out.attributes.unwrap_or_default())),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                    Ok(Err(c.item().cloned()))
                }
                _ => Err(sdk_error("UpdateItem", e)),
            },
        }
    }

    /// An eventually consistent read of a few attributes of an item (half a read unit).
    pub async fn get_projected(&self, key: Item, attributes: &[&str]) -> Result<Option<Item>> {
        self.count();
        let names: HashMap<String, String> = attributes
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("#a{i}"), a.to_string()))
            .collect();
        let projection: Vec<String> = (0..attributes.len()).map(|i| format!("#a{i}")).collect();
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key))
            .projection_expression(projection.join(", "))
            .set_expression_attribute_names(Some(names))
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
}
