//! Webhooks, embedded: tenants' endpoints in the store's state, and an in-memory retry queue
//! (the local server's, and the tests', with a clock they control).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tracing::error;

use super::EmbeddedStore;
use crate::error::{Error, Result};
use crate::model::Webhook;
use crate::ops::webhooks::Webhooks;
use crate::ports::{Clock, RetryQueue, WebhookPut, WebhookStore};

#[async_trait]
impl WebhookStore for EmbeddedStore {
    async fn list_webhooks(&self, app: &str) -> Result<Vec<Webhook>> {
        let state = self.state();
        Ok(state
            .webhooks
            .get(app)
            .map(|hooks| hooks.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn get_webhook(&self, app: &str, id: &str) -> Result<Option<Webhook>> {
        let state = self.state();
        Ok(state.webhooks.get(app).and_then(|h| h.get(id)).cloned())
    }

    async fn put_webhook(&self, webhook: &Webhook, max: usize) -> Result<WebhookPut> {
        let mut state = self.state();
        let hooks = state.webhooks.entry(webhook.app_id.clone()).or_default();
        let outcome = if hooks.contains_key(&webhook.id) {
            WebhookPut::Replaced
        } else if hooks.len() >= max {
            return Ok(WebhookPut::Full);
        } else {
            WebhookPut::Created
        };
        hooks.insert(webhook.id.clone(), webhook.clone());
        Ok(outcome)
    }

    async fn delete_webhook(&self, app: &str, id: &str) -> Result<bool> {
        let mut state = self.state();
        Ok(state
            .webhooks
            .get_mut(app)
            .is_some_and(|hooks| hooks.remove(id).is_some()))
    }
}

/// Messages kept after their last attempt, for a look (the newest).
const DEAD_LETTERS_KEPT: usize = 1_000;

#[derive(Default)]
struct Waiting {
    /// By due time (ms), then arrival.
    messages: BTreeMap<(u64, u64), String>,
    arrivals: u64,
    dead: VecDeque<String>,
}

/// The in-process retry queue: each message comes back when its delay is over, read from
/// `clock`, as long as the process lives. At most `capacity` messages wait at once; beyond
/// that a retry is refused (and the webhook dropped, with an error in the log).
///
/// [`MemoryRetries::run`] drives it with real time (the local server); tests take the due
/// messages themselves ([`MemoryRetries::take_due`]) after moving their clock.
pub struct MemoryRetries {
    state: Mutex<Waiting>,
    clock: Arc<dyn Clock>,
    capacity: usize,
    changed: Notify,
}

impl MemoryRetries {
    pub fn new(clock: Arc<dyn Clock>, capacity: usize) -> MemoryRetries {
        MemoryRetries {
            state: Mutex::new(Waiting::default()),
            clock,
            capacity,
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the next message is due, if any waits.
    pub fn next_due(&self) -> Option<u64> {
        self.lock().messages.keys().next().map(|(due, _)| *due)
    }

    /// How many messages wait.
    pub fn waiting(&self) -> usize {
        self.lock().messages.len()
    }

    /// The messages due now (by the clock), oldest first, taken off the queue.
    pub fn take_due(&self) -> Vec<String> {
        let now = self.clock.now_ms();
        let mut state = self.lock();
        let later = state.messages.split_off(&(now + 1, 0));
        std::mem::replace(&mut state.messages, later)
            .into_values()
            .collect()
    }

    /// The dead-lettered messages kept so far (the newest [`DEAD_LETTERS_KEPT`]).
    pub fn dead_letters(&self) -> Vec<String> {
        self.lock().dead.iter().cloned().collect()
    }

    /// Hands each message to the webhooks consumer when it is due, until the process ends.
    pub async fn run(self: Arc<Self>, webhooks: Arc<Webhooks>) {
        loop {
            let wait = self
                .next_due()
                .map(|due| Duration::from_millis(due.saturating_sub(self.clock.now_ms())));
            let changed = self.changed.notified();
            match wait {
                Some(wait) if wait.is_zero() => {}
                Some(wait) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = changed => continue,
                    }
                }
                None => {
                    changed.await;
                    continue;
                }
            }
            for message in self.take_due() {
                let webhooks = webhooks.clone();
                tokio::spawn(async move {
                    if let Err(e) = webhooks.handle_record(&message).await {
                        error!(error = %e, "a webhook retry failed and is dropped");
                    }
                });
            }
        }
    }
}

#[async_trait]
impl RetryQueue for MemoryRetries {
    async fn schedule(&self, messages: &[(String, Duration)]) -> Result<()> {
        let now = self.clock.now_ms();
        {
            let mut state = self.lock();
            if state.messages.len() + messages.len() > self.capacity {
                return Err(Error::unavailable(format!(
                    "the in-memory webhook retry queue is full ({} waiting)",
                    self.capacity
                )));
            }
            for (message, delay) in messages {
                state.arrivals += 1;
                let key = (now + delay.as_millis() as u64, state.arrivals);
                state.messages.insert(key, message.clone());
            }
        }
        self.changed.notify_one();
        Ok(())
    }

    async fn dead_letter(&self, messages: &[String]) -> Result<()> {
        let mut state = self.lock();
        // The consumer logs each with its endpoint and error.
        for message in messages {
            if state.dead.len() == DEAD_LETTERS_KEPT {
                state.dead.pop_front();
            }
            state.dead.push_back(message.clone());
        }
        Ok(())
    }
}
