//! The production store: one DynamoDB table (single-table design, keys from [`crate::keys`]).
//!
//! Writes that must not be lost or doubled are conditional; multi-item writes are chunked to
//! the service limits (25 per BatchWriteItem with unprocessed items retried, 100 per
//! transaction) and lists are queries on the `by_order` local index, never scans.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, DeleteRequest, KeysAndAttributes, Put, PutRequest,
    ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update, WriteRequest,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};
use tracing::warn;

use crate::error::{Error, Result};
use crate::keys;
use crate::model::{Conversation, GroupChange, GroupMeta, Message, SentRecord};
use crate::ports::{
    Clock, ConversationStore, Delivery, GroupHead, GroupStore, MessageStore, Page, PageRequest,
    SystemClock,
};

type Item = HashMap<String, AttributeValue>;

/// Attribute names the adapter adds to items.
const PK: &str = "pk";
const SK: &str = "sk";
/// Sort key of the `by_order` local index.
const ORDER: &str = "order_key";
/// On a conversation row: the `order` of its last message, to tell newer from late messages.
const LAST: &str = "last_key";
/// TTL attribute (seconds) of sent records.
const EXPIRES: &str = "expires_at";
pub const ORDER_INDEX: &str = "by_order";

/// How long a client `message_id` is remembered for safe retries.
pub const SENT_RECORD_TTL_SECS: u64 = 30 * 24 * 3600;
/// Items per BatchWriteItem / actions per TransactWriteItems (service limits).
const BATCH_WRITE_LIMIT: usize = 25;
const BATCH_GET_LIMIT: usize = 100;
/// Deliveries per transaction: two actions each (the copy and the conversation row).
const DELIVERIES_PER_TRANSACTION: usize = 50;
/// Attempts for throttled batches and conflicting transactions before answering 503.
const ATTEMPTS: u32 = 8;

/// A conversation row as stored: the last message as one map attribute, so that making a
/// message the last one is a single `SET` rather than one per message field.
#[derive(Serialize, Deserialize)]
struct StoredConversation {
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
        }
    }
}

fn conversation_of(item: Item) -> Result<Conversation> {
    parse::<StoredConversation>(item).map(Conversation::from)
}

pub struct DynamoStore {
    client: Client,
    table: String,
    requests: AtomicU64,
}

/// Builds condition and update expressions with placeholders for every name and value
/// (many of our field names, like `status` and `timestamp`, are DynamoDB reserved words).
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, attr: &str) -> String {
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), attr.to_string());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
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

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([(PK.to_string(), s(pk)), (SK.to_string(), s(sk))])
}

fn item_of<T: Serialize>(value: &T, pk: String, sk: String) -> Result<Item> {
    let mut item: Item =
        to_item(value).map_err(|e| Error::internal(format!("cannot store item: {e}")))?;
    item.extend(key(pk, sk));
    Ok(item)
}

fn parse<T: DeserializeOwned>(item: Item) -> Result<T> {
    from_item(item).map_err(|e| Error::internal(format!("unreadable stored item: {e}")))
}

fn built<T>(r: std::result::Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T> {
    r.map_err(|e| Error::internal(format!("bad DynamoDB request: {e}")))
}

/// Maps an SDK failure to the API's error: throttling is 429, our own malformed requests are
/// bugs (500), anything else (network, service) is a 503 the client may retry.
fn sdk_error<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
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

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(10u64 << attempt.min(6))
}

/// The outcome of a transaction that did not fail outright.
enum Tx {
    Committed,
    /// Per action, whether its condition failed.
    ConditionFailed(Vec<bool>),
}

/// What one transaction action in a delivery chunk stands for.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    Copy,
    Conversation,
}

/// How a delivery updates the owner's conversation.
#[derive(Clone, Copy, PartialEq)]
enum ConversationWrite {
    /// The copy is the newest message: it becomes the last one (conditional on that).
    Newer,
    /// A later message is already there: only count it as unread.
    Older,
    None,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoStore {
        DynamoStore {
            client,
            table: table.into(),
            requests: AtomicU64::new(0),
        }
    }

    /// Requests sent to DynamoDB so far (benchmarks report it).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn put(&self, item: Item, condition: Option<&str>) -> Result<Put> {
        built(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .set_condition_expression(condition.map(str::to_string))
                .build(),
        )
    }

    async fn transact(&self, actions: Vec<TransactWriteItem>) -> Result<Tx> {
        let mut attempt = 0;
        loop {
            self.count();
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions.clone()))
                .send()
                .await;
            let e = match sent {
                Ok(_) => return Ok(Tx::Committed),
                Err(e) => e,
            };
            let reasons: Option<Vec<String>> = match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => Some(
                    c.cancellation_reasons()
                        .iter()
                        .map(|r| r.code().unwrap_or("None").to_string())
                        .collect(),
                ),
                _ => None,
            };
            let retryable = matches!(
                e.as_service_error(),
                Some(TransactWriteItemsError::TransactionInProgressException(_))
            ) || e.code() == Some("ThrottlingException");
            match reasons {
                Some(codes) if codes.iter().any(|c| c == "ConditionalCheckFailed") => {
                    return Ok(Tx::ConditionFailed(
                        codes
                            .iter()
                            .map(|c| c == "ConditionalCheckFailed")
                            .collect(),
                    ));
                }
                // Conflicts with a concurrent transaction or throttling: retry the whole thing.
                Some(_) if attempt < ATTEMPTS => {}
                None if retryable && attempt < ATTEMPTS => {}
                _ => return Err(sdk_error("TransactWriteItems", e)),
            }
            attempt += 1;
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// BatchWriteItem in chunks of 25, retrying unprocessed items with backoff.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<()> {
        for chunk in requests.chunks(BATCH_WRITE_LIMIT) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                if attempt > 0 {
                    if attempt >= ATTEMPTS {
                        return Err(Error::unavailable("the store kept refusing writes; retry"));
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                attempt += 1;
                self.count();
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| sdk_error("BatchWriteItem", e))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
            }
        }
        Ok(())
    }

    async fn get(&self, pk: String, sk: String) -> Result<Option<Item>> {
        self.count();
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item)
    }

    /// Queries one partition (all pages), with `condition` on the sort key.
    async fn query_all(
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
                .table_name(&self.table)
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

    /// A page of the `by_order` index, newest first: items whose order starts with `prefix`
    /// (if given) and sorts before the page's cursor.
    async fn query_page<T: DeserializeOwned>(
        &self,
        pk: String,
        prefix: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<T>> {
        let before = page.after.as_ref().map(|p| p.order.clone());
        let mut kept: Vec<(String, Item)> = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            self.count();
            let mut values = HashMap::from([(":pk".to_string(), s(pk.clone()))]);
            let condition = match (prefix, &before) {
                (None, None) => "#pk = :pk",
                (None, Some(_)) => "#pk = :pk AND #o < :before",
                (Some(_), None) => "#pk = :pk AND begins_with(#o, :low)",
                (Some(_), Some(_)) => "#pk = :pk AND #o BETWEEN :low AND :before",
            };
            let mut names = HashMap::from([("#pk".to_string(), PK.to_string())]);
            if prefix.is_some() || before.is_some() {
                names.insert("#o".to_string(), ORDER.to_string());
            }
            if let Some(low) = prefix {
                values.insert(":low".to_string(), s(low));
            }
            if let Some(before) = &before {
                values.insert(":before".to_string(), s(before.clone()));
            }
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(ORDER_INDEX)
                .key_condition_expression(condition)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit((page.limit + 2) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in out.items.unwrap_or_default() {
                let order = match item.get(ORDER) {
                    Some(AttributeValue::S(o)) => o.clone(),
                    _ => continue,
                };
                // BETWEEN is inclusive: the cursor's own item is not part of this page.
                if before.as_ref() != Some(&order) {
                    kept.push((order, item));
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() && kept.len() <= page.limit => start = Some(k),
                _ => break,
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

    fn copy_item(&self, copy: &Message) -> Result<Item> {
        let mut item = item_of(
            copy,
            keys::timeline_pk(&copy.app_id, &copy.timeline_of, &copy.convers_with),
            keys::message_sk(&copy.sender, &copy.message_id),
        )?;
        item.insert(ORDER.into(), s(keys::order_of(copy)));
        Ok(item)
    }

    fn conversation_key(app: &str, user: &str, with: &str) -> Item {
        key(keys::user_pk(app, user), keys::conversation_sk(with))
    }

    /// The update that makes `copy` the last message of its owner's conversation, if newer.
    fn set_last(&self, copy: &Message, is_new: bool, unread: bool) -> Result<Update> {
        let last = serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(copy)
            .map_err(|e| Error::internal(format!("cannot store conversation: {e}")))?;
        let order = keys::order_of(copy);
        let fields = [
            ("last", last),
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
        let condition = format!(
            "attribute_not_exists({last}) OR {last} < {}",
            e.value(s(order))
        );
        self.update(
            Self::conversation_key(&copy.app_id, &copy.timeline_of, &copy.convers_with),
            update,
            condition,
            &e,
        )
    }

    /// A late (older) message: counts as unread without changing the last message.
    fn count_unread(&self, copy: &Message) -> Result<Update> {
        let mut e = Expr::default();
        let update = format!("ADD {} {}", e.name("unread_count"), e.value(n(1)));
        let condition = format!("attribute_exists({})", e.name(LAST));
        self.update(
            Self::conversation_key(&copy.app_id, &copy.timeline_of, &copy.convers_with),
            update,
            condition,
            &e,
        )
    }

    async fn update_item(&self, update: Update) -> Result<Option<Item>> {
        self.count();
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(update.key))
            .update_expression(update.update_expression)
            .set_condition_expression(update.condition_expression)
            .set_expression_attribute_names(update.expression_attribute_names)
            .set_expression_attribute_values(update.expression_attribute_values)
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.attributes),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    /// An update of one item, with the names and values `e` collected.
    fn update(&self, key: Item, expression: String, condition: String, e: &Expr) -> Result<Update> {
        built(
            Update::builder()
                .table_name(&self.table)
                .set_key(Some(key))
                .update_expression(expression)
                .condition_expression(condition)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .build(),
        )
    }

    /// Sets a boolean attribute of an existing item to true (nothing if the item is gone).
    async fn set_flag(&self, key: Item, flag: &str) -> Result<()> {
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

    fn member_item(app: &str, group: &str, member: &str) -> Item {
        let mut item = key(keys::group_pk(app, group), keys::member_sk(member));
        item.insert("member_id".into(), s(member));
        item
    }

    fn change_put(
        &self,
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
            .put(self.put(item, None)?)
            .build())
    }

    fn member_put(
        &self,
        app: &str,
        group: &str,
        member: &str,
        only_if_absent: bool,
    ) -> Result<TransactWriteItem> {
        let condition = only_if_absent.then_some("attribute_not_exists(pk)");
        let put = self.put(Self::member_item(app, group, member), condition)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn member_delete(&self, app: &str, group: &str, member: &str) -> Result<TransactWriteItem> {
        let delete = built(
            Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(
                    keys::group_pk(app, group),
                    keys::member_sk(member),
                )))
                .condition_expression("attribute_exists(pk)")
                .build(),
        )?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    fn meta_exists(&self, app: &str, group: &str) -> Result<TransactWriteItem> {
        let check = built(
            ConditionCheck::builder()
                .table_name(&self.table)
                .set_key(Some(key(
                    keys::group_pk(app, group),
                    keys::GROUP_META_SK.into(),
                )))
                .condition_expression("attribute_exists(pk)")
                .build(),
        )?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }
}

#[async_trait]
impl MessageStore for DynamoStore {
    async fn claim_sent(&self, record: &SentRecord) -> Result<Option<SentRecord>> {
        let m = &record.message;
        let (pk, sk) = (keys::sent_pk(&m.app_id, &m.sender), m.message_id.clone());
        let mut item = item_of(record, pk.clone(), sk.clone())?;
        let expires = SystemClock.now_ms() / 1000 + SENT_RECORD_TTL_SECS;
        item.insert(EXPIRES.into(), n(expires));
        self.count();
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(_) => Ok(None),
            Err(e) => match e.as_service_error() {
                Some(err) if err.is_conditional_check_failed_exception() => {
                    let earlier = match err {
                        aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => c.item().cloned(),
                        _ => None,
                    };
                    let earlier = match earlier {
                        Some(item) => item,
                        None => self
                            .get(pk, sk)
                            .await?
                            .ok_or_else(|| Error::unavailable("the sent record vanished; retry"))?,
                    };
                    Ok(Some(parse(earlier)?))
                }
                _ => Err(sdk_error("PutItem", e)),
            },
        }
    }

    async fn mark_published(&self, message: &Message) -> Result<()> {
        let sent = key(
            keys::sent_pk(&message.app_id, &message.sender),
            message.message_id.clone(),
        );
        self.set_flag(sent, "published").await
    }

    async fn abandon_sent(&self, message: &Message) -> Result<()> {
        let sent = built(
            Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(
                    keys::sent_pk(&message.app_id, &message.sender),
                    message.message_id.clone(),
                )))
                .condition_expression("published = :f")
                .expression_attribute_values(":f", AttributeValue::Bool(false))
                .build(),
        )?;
        let copy = built(
            Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(
                    keys::timeline_pk(&message.app_id, &message.timeline_of, &message.convers_with),
                    keys::message_sk(&message.sender, &message.message_id),
                )))
                .build(),
        )?;
        let actions = vec![
            TransactWriteItem::builder().delete(sent).build(),
            TransactWriteItem::builder().delete(copy).build(),
        ];
        // A failed condition means it was published after all: then it must stay.
        self.transact(actions).await.map(|_| ())
    }

    async fn put_copies(&self, copies: &[Message]) -> Result<()> {
        // One request may not name the same item twice: keep the last copy of each.
        let mut unique: HashMap<(String, String), Item> = HashMap::new();
        for copy in copies {
            let item = self.copy_item(copy)?;
            let id = (
                keys::timeline_pk(&copy.app_id, &copy.timeline_of, &copy.convers_with),
                keys::message_sk(&copy.sender, &copy.message_id),
            );
            unique.insert(id, item);
        }
        let requests = unique
            .into_values()
            .map(|item| {
                let put = built(PutRequest::builder().set_item(Some(item)).build())?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>>>()?;
        self.batch_write(requests).await
    }

    async fn list_messages(
        &self,
        app: &str,
        owner: &str,
        with: &str,
        page: &PageRequest,
    ) -> Result<Page<Message>> {
        self.query_page(keys::timeline_pk(app, owner, with), None, page)
            .await
    }
}

#[async_trait]
impl ConversationStore for DynamoStore {
    async fn deliver(&self, deliveries: &[Delivery]) -> Result<Vec<bool>> {
        let mut fresh = vec![false; deliveries.len()];
        let mut plan: Vec<(usize, ConversationWrite)> = deliveries
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let write = if d.update_conversation {
                    ConversationWrite::Newer
                } else {
                    ConversationWrite::None
                };
                (i, write)
            })
            .collect();
        let mut rounds = 0;
        while !plan.is_empty() {
            rounds += 1;
            if rounds > ATTEMPTS as usize + 2 {
                return Err(Error::unavailable("deliveries kept conflicting; retry"));
            }
            let mut next_plan = Vec::new();
            for chunk in plan.chunks(DELIVERIES_PER_TRANSACTION) {
                let mut actions = Vec::new();
                let mut parts: Vec<(usize, Part)> = Vec::new();
                for (pos, (i, write)) in chunk.iter().enumerate() {
                    let d = &deliveries[*i];
                    let put =
                        self.put(self.copy_item(&d.copy)?, Some("attribute_not_exists(pk)"))?;
                    actions.push(TransactWriteItem::builder().put(put).build());
                    parts.push((pos, Part::Copy));
                    let update = match write {
                        ConversationWrite::Newer => {
                            Some(self.set_last(&d.copy, d.unread, d.unread)?)
                        }
                        ConversationWrite::Older if d.unread => Some(self.count_unread(&d.copy)?),
                        _ => None,
                    };
                    if let Some(update) = update {
                        actions.push(TransactWriteItem::builder().update(update).build());
                        parts.push((pos, Part::Conversation));
                    }
                }
                match self.transact(actions).await? {
                    Tx::Committed => {
                        for (i, _) in chunk {
                            fresh[*i] = true;
                        }
                    }
                    Tx::ConditionFailed(failed) => {
                        // Drop deliveries already made; switch conversation writes whose
                        // premise failed; retry the rest (they were cancelled with the chunk).
                        let mut copy_done = vec![false; chunk.len()];
                        let mut conv_failed = vec![false; chunk.len()];
                        for ((pos, part), failed) in parts.iter().zip(failed) {
                            match (part, failed) {
                                (Part::Copy, true) => copy_done[*pos] = true,
                                (Part::Conversation, true) => conv_failed[*pos] = true,
                                _ => {}
                            }
                        }
                        for (pos, (i, write)) in chunk.iter().enumerate() {
                            if copy_done[pos] {
                                continue;
                            }
                            let write = match (conv_failed[pos], write) {
                                (false, w) => *w,
                                (true, ConversationWrite::Newer) => ConversationWrite::Older,
                                (true, _) => ConversationWrite::Newer,
                            };
                            next_plan.push((*i, write));
                        }
                    }
                }
            }
            plan = next_plan;
        }
        Ok(fresh)
    }

    async fn touch_conversation(&self, copy: &Message) -> Result<()> {
        self.update_item(self.set_last(copy, false, false)?)
            .await
            .map(|_| ())
    }

    async fn get_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>> {
        self.get(keys::user_pk(app, user), keys::conversation_sk(with))
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
        for _ in 0..ATTEMPTS {
            let Some(row) = self
                .get(keys::user_pk(app, user), keys::conversation_sk(with))
                .await?
            else {
                return Ok(None);
            };
            let last = row.get(LAST).cloned().unwrap_or_else(|| s(""));
            let current = conversation_of(row)?;
            let mut e = Expr::default();
            let update = format!(
                "SET {} = {}, {} = {}",
                e.name("archived"),
                e.value(AttributeValue::Bool(true)),
                e.name(ORDER),
                e.value(s(keys::conversation_order(
                    true,
                    current.last.timestamp,
                    with
                )))
            );
            let condition = format!("{} = {}", e.name(LAST), e.value(last));
            let update = self.update(
                Self::conversation_key(app, user, with),
                update,
                condition,
                &e,
            )?;
            if let Some(item) = self.update_item(update).await? {
                return conversation_of(item).map(Some);
            }
        }
        Err(Error::unavailable("the conversation kept changing; retry"))
    }

    async fn delete_timeline(&self, app: &str, user: &str, with: &str) -> Result<u64> {
        let pk = keys::timeline_pk(app, user, with);
        let items = self
            .query_all(pk, "begins_with(#sk, :m)", vec![(":m", s("M#"))])
            .await?;
        let count = items.len() as u64;
        let requests = items
            .into_iter()
            .filter_map(|item| {
                let k: Item = item
                    .into_iter()
                    .filter(|(name, _)| name == PK || name == SK)
                    .collect();
                (k.len() == 2).then_some(k)
            })
            .map(|k| {
                let delete = built(DeleteRequest::builder().set_key(Some(k)).build())?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<Vec<_>>>()?;
        self.batch_write(requests).await?;
        Ok(count)
    }

    async fn delete_conversation(&self, app: &str, user: &str, with: &str) -> Result<bool> {
        self.count();
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::conversation_key(app, user, with)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
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
        let update = self.update(
            Self::conversation_key(app, user, with),
            update,
            condition,
            &e,
        )?;
        self.update_item(update)
            .await?
            .map(conversation_of)
            .transpose()
    }

    async fn mark_peer_read(&self, app: &str, peer: &str, reader: &str, at: u64) -> Result<()> {
        let mut e = Expr::default();
        let mark = e.name("peer_read_at");
        let at = e.value(n(at));
        let update = format!("SET {mark} = {at}");
        let condition = format!(
            "attribute_exists({}) AND (attribute_not_exists({mark}) OR {mark} < {at})",
            e.name(PK)
        );
        let update = self.update(
            Self::conversation_key(app, peer, reader),
            update,
            condition,
            &e,
        )?;
        self.update_item(update).await.map(|_| ())
    }
}

#[async_trait]
impl GroupStore for DynamoStore {
    async fn group_head(&self, app: &str, group: &str) -> Result<Option<GroupHead>> {
        // Change records (`C#…`) sort before the meta (`GROUP`), members (`M#…`) after it.
        let items = self
            .query_all(
                keys::group_pk(app, group),
                "#sk <= :meta",
                vec![(":meta", s(keys::GROUP_META_SK))],
            )
            .await?;
        let mut meta = None;
        let mut pending = Vec::new();
        for item in items {
            match item.get(SK) {
                Some(AttributeValue::S(sk)) if sk == keys::GROUP_META_SK => {
                    meta = Some(parse::<GroupMeta>(item)?)
                }
                Some(AttributeValue::S(sk)) if sk.starts_with(keys::CHANGE_PREFIX) => {
                    pending.push(parse::<GroupChange>(item)?)
                }
                _ => {}
            }
        }
        pending.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(meta.map(|meta| GroupHead { meta, pending }))
    }

    async fn members_among(&self, app: &str, group: &str, users: &[&str]) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for chunk in users.chunks(BATCH_GET_LIMIT) {
            let mut pending: Vec<Item> = chunk
                .iter()
                .map(|u| key(keys::group_pk(app, group), keys::member_sk(u)))
                .collect();
            let mut attempt = 0;
            while !pending.is_empty() {
                if attempt >= ATTEMPTS {
                    return Err(Error::unavailable("the store kept refusing reads; retry"));
                }
                if attempt > 0 {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                attempt += 1;
                let request = built(
                    KeysAndAttributes::builder()
                        .set_keys(Some(pending))
                        .consistent_read(true)
                        .build(),
                )?;
                self.count();
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| sdk_error("BatchGetItem", e))?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    if let Some(AttributeValue::S(member)) = item.get("member_id") {
                        found.push(member.clone());
                    }
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
        }
        Ok(found)
    }

    async fn members(&self, app: &str, group: &str) -> Result<Vec<String>> {
        let items = self
            .query_all(
                keys::group_pk(app, group),
                "begins_with(#sk, :m)",
                vec![(":m", s(keys::MEMBER_PREFIX))],
            )
            .await?;
        Ok(items
            .into_iter()
            .filter_map(|item| match item.get("member_id") {
                Some(AttributeValue::S(m)) => Some(m.clone()),
                _ => None,
            })
            .collect())
    }

    async fn create_group(
        &self,
        meta: &GroupMeta,
        members: &[String],
        change: &GroupChange,
    ) -> Result<bool> {
        let (app, group) = (&meta.app_id, &meta.uid);
        let meta_item = item_of(meta, keys::group_pk(app, group), keys::GROUP_META_SK.into())?;
        let mut actions = vec![
            TransactWriteItem::builder()
                .put(self.put(meta_item, Some("attribute_not_exists(pk)"))?)
                .build(),
        ];
        for member in members {
            actions.push(self.member_put(app, group, member, false)?);
        }
        actions.push(self.change_put(app, group, change)?);
        Ok(matches!(self.transact(actions).await?, Tx::Committed))
    }

    async fn add_member(&self, app: &str, group: &str, change: &GroupChange) -> Result<bool> {
        let member = change
            .joined
            .first()
            .ok_or_else(|| Error::internal("a join without a member"))?;
        let actions = vec![
            self.meta_exists(app, group)?,
            self.member_put(app, group, member, true)?,
            self.change_put(app, group, change)?,
        ];
        match self.transact(actions).await? {
            Tx::Committed => Ok(true),
            Tx::ConditionFailed(failed) if failed.first() == Some(&true) => {
                Err(Error::not_found(format!("group {group} not found")))
            }
            Tx::ConditionFailed(_) => Ok(false),
        }
    }

    async fn remove_member(&self, app: &str, group: &str, change: &GroupChange) -> Result<bool> {
        let member = change
            .left
            .first()
            .ok_or_else(|| Error::internal("a leave without a member"))?;
        let actions = vec![
            self.member_delete(app, group, member)?,
            self.change_put(app, group, change)?,
        ];
        Ok(matches!(self.transact(actions).await?, Tx::Committed))
    }

    async fn set_members(
        &self,
        app: &str,
        group: &str,
        version: u64,
        change: &GroupChange,
    ) -> Result<bool> {
        let mut e = Expr::default();
        let v = e.name("version");
        let update = format!("SET {v} = {v} + {}", e.value(n(1)));
        let condition = format!("{v} = {}", e.value(n(version)));
        let bump = self.update(
            key(keys::group_pk(app, group), keys::GROUP_META_SK.into()),
            update,
            condition,
            &e,
        )?;
        let mut actions = vec![TransactWriteItem::builder().update(bump).build()];
        for member in &change.joined {
            actions.push(self.member_put(app, group, member, true)?);
        }
        for member in &change.left {
            actions.push(self.member_delete(app, group, member)?);
        }
        actions.push(self.change_put(app, group, change)?);
        Ok(matches!(self.transact(actions).await?, Tx::Committed))
    }

    async fn update_meta(&self, meta: &GroupMeta, change: &GroupChange) -> Result<bool> {
        let (app, group) = (&meta.app_id, &meta.uid);
        let attributes = serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(&meta.attributes)
            .map_err(|e| Error::internal(format!("cannot store attributes: {e}")))?;
        let mut e = Expr::default();
        let update = format!(
            "SET {} = {}, {} = {}, {} = {}",
            e.name("name"),
            e.value(s(meta.name.clone())),
            e.name("attributes"),
            e.value(attributes),
            e.name("updatedOn"),
            e.value(n(meta.updated_on))
        );
        let condition = format!("attribute_exists({})", e.name(PK));
        let set = self.update(
            key(keys::group_pk(app, group), keys::GROUP_META_SK.into()),
            update,
            condition,
            &e,
        )?;
        let actions = vec![
            TransactWriteItem::builder().update(set).build(),
            self.change_put(app, group, change)?,
        ];
        Ok(matches!(self.transact(actions).await?, Tx::Committed))
    }

    async fn mark_stalled(&self, app: &str, group: &str, change_id: &str) -> Result<()> {
        let change = key(keys::group_pk(app, group), keys::change_sk(change_id));
        self.set_flag(change, "stalled").await
    }

    async fn finish_change(&self, app: &str, group: &str, change_id: &str) -> Result<()> {
        self.count();
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(
                keys::group_pk(app, group),
                keys::change_sk(change_id),
            )))
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", e))?;
        Ok(())
    }
}
