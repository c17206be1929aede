//! Tenants' webhook endpoints on DynamoDB: one item per endpoint in the tenant's webhooks
//! partition, and a counter item there that bounds how many it has (created and deleted in
//! one transaction with the endpoint, so concurrent creates never exceed the bound).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, TransactWriteItem, Update};

use super::DynamoStore;
use super::item::{item_of, parse};
use super::request::{Expr, Item, Transaction, built, key, n, s};
use crate::error::{Error, Result};
use crate::keys;
use crate::model::Webhook;
use crate::ports::{WebhookPut, WebhookStore};

/// On the counter item: how many endpoints the tenant has.
const COUNT: &str = "webhooks";
/// Rounds of replace-or-create before giving up (each only repeats when a concurrent call
/// created or deleted the same endpoint in between).
const ATTEMPTS: usize = 4;

fn webhook_key(app: &str, id: &str) -> Item {
    key(keys::webhooks_pk(app), keys::webhook_sk(id))
}

fn counter_key(app: &str) -> Item {
    key(keys::webhooks_pk(app), keys::WEBHOOK_COUNT_SK.to_string())
}

impl DynamoStore {
    /// Adds `delta` to the tenant's count; with `below`, only while the count is below it.
    fn count_update(&self, app: &str, delta: i64, below: Option<usize>) -> Result<Update> {
        let mut e = Expr::default();
        let count = e.name(COUNT);
        let expression = format!(
            "ADD {count} {}",
            e.value(aws_sdk_dynamodb::types::AttributeValue::N(
                delta.to_string()
            ))
        );
        let condition = match below {
            Some(max) => format!(
                "attribute_not_exists({count}) OR {count} < {}",
                e.value(n(max as u64))
            ),
            // Always true: the count item may not exist yet.
            None => format!("attribute_not_exists({count}) OR attribute_exists({count})"),
        };
        self.table
            .update(counter_key(app), expression, condition, &e)
    }
}

#[async_trait]
impl WebhookStore for DynamoStore {
    async fn list_webhooks(&self, app: &str) -> Result<Vec<Webhook>> {
        let items = self
            .table
            .query_all(
                keys::webhooks_pk(app),
                "begins_with(#sk, :w)",
                vec![(":w", s(keys::WEBHOOK_PREFIX))],
            )
            .await?;
        items.into_iter().map(parse::<Webhook>).collect()
    }

    async fn get_webhook(&self, app: &str, id: &str) -> Result<Option<Webhook>> {
        self.table
            .get(webhook_key(app, id))
            .await?
            .map(parse::<Webhook>)
            .transpose()
    }

    async fn put_webhook(&self, webhook: &Webhook, max: usize) -> Result<WebhookPut> {
        let item = item_of(
            webhook,
            keys::webhooks_pk(&webhook.app_id),
            keys::webhook_sk(&webhook.id),
        )?;
        for _ in 0..ATTEMPTS {
            if self.table.put_if_exists(item.clone()).await? {
                return Ok(WebhookPut::Replaced);
            }
            let count = self.count_update(&webhook.app_id, 1, Some(max))?;
            let put = self
                .table
                .put(item.clone(), Some("attribute_not_exists(pk)"))?;
            let actions = vec![
                TransactWriteItem::builder().update(count).build(),
                TransactWriteItem::builder().put(put).build(),
            ];
            match self.table.transact(actions).await? {
                Transaction::Committed => return Ok(WebhookPut::Created),
                outcome if outcome.failed(0) => return Ok(WebhookPut::Full),
                // Created by a concurrent call in between: replace it.
                _ => continue,
            }
        }
        Err(Error::unavailable(
            "the webhook kept changing under concurrent calls; retry",
        ))
    }

    async fn delete_webhook(&self, app: &str, id: &str) -> Result<bool> {
        let delete = built(
            Delete::builder()
                .table_name(&self.table.name)
                .set_key(Some(webhook_key(app, id)))
                .condition_expression("attribute_exists(pk)")
                .build(),
        )?;
        let count = self.count_update(app, -1, None)?;
        let actions = vec![
            TransactWriteItem::builder().delete(delete).build(),
            TransactWriteItem::builder().update(count).build(),
        ];
        Ok(self.table.transact(actions).await? == Transaction::Committed)
    }
}
