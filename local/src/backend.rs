//! The local server's back end: the API on the SQLite store (a file under `DATA_DIR`, or in
//! memory), and the dispatchers that hand the store's outbox to the same consumers as on AWS:
//! new messages and settled group changes to the deliver step (what the table's stream does),
//! events and webhook retries to the webhooks consumer (what the SNS topic and the SQS queue
//! do). An entry leaves the outbox only once its consumer succeeded, so an acknowledged write
//! is delivered even if the process dies right after it: at the next start.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chat21::adapters::http::HttpClient;
use chat21::adapters::sqlite::dispatch::{CONCURRENCY, Consumer, Dispatcher};
use chat21::adapters::sqlite::outbox::{OutboxEvents, OutboxRetries};
use chat21::adapters::sqlite::{Location, SqliteStore};
use chat21::adapters::system::{SystemClock, UuidIds};
use chat21::auth::JwtVerifier;
use chat21::entry::http::Api;
use chat21::error::{Error, Result};
use chat21::ops::webhooks::delivery::POST_TIMEOUT;
use chat21::ops::webhooks::{WebhookConfig, Webhooks};
use chat21::ops::{Deps, Settings, deliver};
use chat21::ports::{Clock, Realtime, Streamed};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

/// Webhooks records handed to the consumer at once: each may wait for its endpoint's POST
/// (10 s at most), and each endpoint has its own lane of 10 in flight, so this is a socket
/// budget shared by every endpoint.
pub const WEBHOOK_CONCURRENCY: usize = 256;

/// The deliver step, fed by the outbox.
struct DeliverStep(Deps);

#[async_trait]
impl Consumer for DeliverStep {
    async fn consume(&self, body: &str) -> Result<()> {
        let streamed: Streamed = serde_json::from_str(body)
            .map_err(|e| Error::bad_request(format!("an unreadable delivery: {e}")))?;
        deliver::handle(&self.0, &streamed).await
    }
}

/// The webhooks consumer, fed by the outbox (events and retries).
struct WebhooksQueue(Arc<Webhooks>);

#[async_trait]
impl Consumer for WebhooksQueue {
    async fn consume(&self, body: &str) -> Result<()> {
        self.0.handle_record(body).await
    }
}

/// The API on the store, and its consumers.
pub struct Backend {
    pub api: Arc<Api>,
    pub store: Arc<SqliteStore>,
    pub webhooks: Arc<Webhooks>,
    clock: Arc<dyn Clock>,
    stop: watch::Sender<bool>,
    dispatchers: Vec<JoinHandle<()>>,
}

impl Backend {
    /// Opens (creating or migrating) the store at `location` and builds the API on it,
    /// publishing to connected clients through `realtime`. Its dispatchers are not running
    /// yet ([`Backend::start`]).
    pub fn open(
        location: &Location,
        verifier: JwtVerifier,
        realtime: Arc<dyn Realtime>,
        settings: Settings,
        webhook_config: WebhookConfig,
    ) -> std::result::Result<Backend, String> {
        let store = Arc::new(SqliteStore::open(location).map_err(|e| e.to_string())?);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let deps = Deps {
            store: store.clone(),
            events: Arc::new(OutboxEvents(store.clone())),
            realtime,
            clock: clock.clone(),
            ids: Arc::new(UuidIds),
            settings,
        };
        let retries = OutboxRetries {
            store: store.clone(),
            clock: clock.clone(),
        };
        let webhooks = Webhooks::new(
            store.clone(),
            Arc::new(HttpClient::new(POST_TIMEOUT)?),
            Arc::new(retries),
            clock.clone(),
            webhook_config,
        );
        Ok(Backend {
            api: Arc::new(Api { deps, verifier }),
            store,
            webhooks: Arc::new(webhooks),
            clock,
            stop: watch::channel(false).0,
            dispatchers: Vec::new(),
        })
    }

    /// Starts the dispatchers: whatever the outbox holds is handed over, then what comes.
    pub fn start(&mut self) {
        let deliveries = Dispatcher::new(
            self.store.clone(),
            Arc::new(DeliverStep(self.api.deps.clone())),
            self.clock.clone(),
            CONCURRENCY,
        );
        let webhooks = Dispatcher::new(
            self.store.clone(),
            Arc::new(WebhooksQueue(self.webhooks.clone())),
            self.clock.clone(),
            WEBHOOK_CONCURRENCY,
        );
        self.dispatchers = vec![
            tokio::spawn(deliveries.run_deliveries(self.stop.subscribe())),
            tokio::spawn(webhooks.run_webhooks(self.stop.subscribe())),
        ];
    }

    /// Stops the dispatchers (what is under way finishes, within `grace`; what is not stays
    /// in the outbox for the next start), then commits what is queued and closes the store.
    pub async fn shutdown(&mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let dispatchers = std::mem::take(&mut self.dispatchers);
        let all = futures_util::future::join_all(dispatchers);
        if tokio::time::timeout(grace, all).await.is_err() {
            warn!(
                "the outbox's consumers did not finish in time; their entries stay for the next start"
            );
        }
        self.store.close().await;
    }
}
