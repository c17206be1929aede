//! Tenants' webhook endpoints on SQLite: one row per endpoint. The bound on how many a tenant
//! has is checked and the endpoint written in one job of the writer, so concurrent creates
//! never exceed it.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, from_json, to_json};
use crate::error::Result;
use crate::keys;
use crate::model::Webhook;
use crate::ports::{WebhookPut, WebhookStore};

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn list_webhooks(&self, app: &str) -> Result<Vec<Webhook>> {
        let app = keys::webhooks_pk(app);
        self.db
            .read(move |c| {
                let mut statement =
                    c.prepare_cached("SELECT webhook FROM webhooks WHERE app = ?1 ORDER BY id")?;
                statement
                    .query_map([&app], |r| r.get::<_, String>(0))?
                    .map(|text| from_json(&text?))
                    .collect()
            })
            .await
    }

    async fn get_webhook(&self, app: &str, id: &str) -> Result<Option<Webhook>> {
        let (app, id) = (keys::webhooks_pk(app), id.to_string());
        self.db
            .read(move |c| {
                let text: Option<String> = c
                    .prepare_cached("SELECT webhook FROM webhooks WHERE app = ?1 AND id = ?2")?
                    .query_row([&app, &id], |r| r.get(0))
                    .optional()?;
                text.map(|t| from_json(&t)).transpose()
            })
            .await
    }

    async fn put_webhook(&self, webhook: &Webhook, max: usize) -> Result<WebhookPut> {
        let webhook = webhook.clone();
        self.db
            .write(move |c| {
                let app = keys::webhooks_pk(&webhook.app_id);
                let exists = c
                    .prepare_cached("SELECT 1 FROM webhooks WHERE app = ?1 AND id = ?2")?
                    .query_row([&app, &webhook.id], |_| Ok(()))
                    .optional()?
                    .is_some();
                if !exists {
                    let count: usize = c
                        .prepare_cached("SELECT count(*) FROM webhooks WHERE app = ?1")?
                        .query_row([&app], |r| r.get(0))?;
                    if count >= max {
                        return Ok(WebhookPut::Full);
                    }
                }
                c.prepare_cached(
                    "INSERT INTO webhooks (app, id, webhook) VALUES (?1, ?2, ?3)
                     ON CONFLICT (app, id) DO UPDATE SET webhook = excluded.webhook",
                )?
                .execute(params![app, webhook.id, to_json(&webhook)?])?;
                Ok(if exists {
                    WebhookPut::Replaced
                } else {
                    WebhookPut::Created
                })
            })
            .await
    }

    async fn delete_webhook(&self, app: &str, id: &str) -> Result<bool> {
        let (app, id) = (keys::webhooks_pk(app), id.to_string());
        self.db
            .write(move |c| {
                let deleted = c
                    .prepare_cached("DELETE FROM webhooks WHERE app = ?1 AND id = ?2")?
                    .execute([&app, &id])?;
                Ok(deleted > 0)
            })
            .await
    }
}
