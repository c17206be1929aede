//! An in-memory retry queue for the webhooks consumer: the tests', with a clock they control
//! (`chat21-local` keeps its retries in its database: `adapters::sqlite::outbox`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::ports::{Clock, RetryQueue, Target};

/// Messages kept after their last attempt, for a look (the newest).
const DEAD_LETTERS_KEPT: usize = 1_000;

/// How many retries may wait in memory at once: in all, for one endpoint, and for one tenant
/// (the events of one app, whichever their endpoints, the deployment's included), so that one
/// tenant's failing endpoints cannot take the room of another tenant's retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBounds {
    pub total: usize,
    pub per_endpoint: usize,
    pub per_tenant: usize,
}

impl RetryBounds {
    /// Only a total bound.
    pub fn total(total: usize) -> RetryBounds {
        RetryBounds {
            total,
            per_endpoint: total,
            per_tenant: total,
        }
    }
}

/// Whose a waiting retry is, for the bounds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Owner {
    endpoint: Option<Target>,
    tenant: Option<String>,
}

/// The parts of a retry message (`{"webhook_retry": {target, event, …}}`) the bounds read.
#[derive(Deserialize)]
struct Queued {
    webhook_retry: QueuedRetry,
}

#[derive(Deserialize)]
struct QueuedRetry {
    target: Target,
    event: QueuedEvent,
}

#[derive(Deserialize)]
struct QueuedEvent {
    app_id: Option<String>,
}

impl Owner {
    fn of(message: &str) -> Owner {
        match serde_json::from_str::<Queued>(message) {
            Ok(queued) => Owner {
                endpoint: Some(queued.webhook_retry.target),
                tenant: queued.webhook_retry.event.app_id,
            },
            Err(_) => Owner::default(),
        }
    }
}

#[derive(Default)]
struct Waiting {
    /// By due time (ms), then arrival.
    messages: BTreeMap<(u64, u64), (String, Owner)>,
    per_endpoint: HashMap<Target, usize>,
    per_tenant: HashMap<String, usize>,
    arrivals: u64,
    dead: VecDeque<String>,
}

impl Waiting {
    /// Why `owner`'s next retry does not fit, if it does not.
    fn full_for(&self, owner: &Owner, bounds: &RetryBounds) -> Option<String> {
        if self.messages.len() >= bounds.total {
            return Some(format!("the queue is full ({} waiting)", bounds.total));
        }
        if let Some(endpoint) = &owner.endpoint
            && self.per_endpoint.get(endpoint).copied().unwrap_or(0) >= bounds.per_endpoint
        {
            return Some(format!(
                "{endpoint} has {} retries waiting",
                bounds.per_endpoint
            ));
        }
        if let Some(tenant) = &owner.tenant
            && self.per_tenant.get(tenant).copied().unwrap_or(0) >= bounds.per_tenant
        {
            return Some(format!(
                "app {tenant}'s events have {} retries waiting",
                bounds.per_tenant
            ));
        }
        None
    }

    fn count(&mut self, owner: &Owner) {
        if let Some(endpoint) = &owner.endpoint {
            *self.per_endpoint.entry(endpoint.clone()).or_default() += 1;
        }
        if let Some(tenant) = &owner.tenant {
            *self.per_tenant.entry(tenant.clone()).or_default() += 1;
        }
    }

    fn uncount(&mut self, owner: &Owner) {
        fn down<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
            if let Some(n) = counts.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(key);
                }
            }
        }
        if let Some(endpoint) = &owner.endpoint {
            down(&mut self.per_endpoint, endpoint);
        }
        if let Some(tenant) = &owner.tenant {
            down(&mut self.per_tenant, tenant);
        }
    }
}

/// The in-process retry queue: each message comes back when its delay is over, read from
/// `clock`, as long as the process lives. Bounded ([`RetryBounds`]): a retry beyond a bound is
/// refused (the webhook dropped, with an error in the log), the others of the same call kept.
///
/// [`MemoryRetries::due`] hands them over with real time (the local server); tests take the
/// due messages themselves ([`MemoryRetries::take_due`]) after moving their clock.
pub struct MemoryRetries {
    state: Mutex<Waiting>,
    clock: Arc<dyn Clock>,
    bounds: RetryBounds,
    changed: Notify,
}

impl MemoryRetries {
    /// At most `capacity` retries waiting, whosever they are.
    pub fn new(clock: Arc<dyn Clock>, capacity: usize) -> MemoryRetries {
        MemoryRetries::with_bounds(clock, RetryBounds::total(capacity))
    }

    pub fn with_bounds(clock: Arc<dyn Clock>, bounds: RetryBounds) -> MemoryRetries {
        MemoryRetries {
            state: Mutex::new(Waiting::default()),
            clock,
            bounds,
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
        let due = std::mem::replace(&mut state.messages, later);
        due.into_values()
            .map(|(message, owner)| {
                state.uncount(&owner);
                message
            })
            .collect()
    }

    /// The dead-lettered messages kept so far (the newest [`DEAD_LETTERS_KEPT`]).
    pub fn dead_letters(&self) -> Vec<String> {
        self.lock().dead.iter().cloned().collect()
    }

    /// Waits until messages are due (by the clock; a message queued meanwhile is considered
    /// too), then takes them off the queue, oldest first: what the in-process consumer runs
    /// on (`entry::webhooks::run_memory_retries`).
    pub async fn due(&self) -> Vec<String> {
        loop {
            let wait = self
                .next_due()
                .map(|due| Duration::from_millis(due.saturating_sub(self.clock.now_ms())));
            let changed = self.changed.notified();
            match wait {
                Some(wait) if wait.is_zero() => return self.take_due(),
                Some(wait) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => return self.take_due(),
                        _ = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

#[async_trait]
impl RetryQueue for MemoryRetries {
    async fn schedule(&self, messages: &[(String, Duration)]) -> Result<()> {
        let now = self.clock.now_ms();
        let mut refused = Vec::new();
        {
            let mut state = self.lock();
            for (message, delay) in messages {
                let owner = Owner::of(message);
                if let Some(why) = state.full_for(&owner, &self.bounds) {
                    refused.push(why);
                    continue;
                }
                state.count(&owner);
                state.arrivals += 1;
                let key = (now + delay.as_millis() as u64, state.arrivals);
                state.messages.insert(key, (message.clone(), owner));
            }
        }
        self.changed.notify_one();
        match refused.first() {
            None => Ok(()),
            Some(why) => Err(Error::unavailable(format!(
                "{} of {} webhook retries dropped: {why}",
                refused.len(),
                messages.len()
            ))),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::system::SystemClock;
    use crate::ops::webhooks::records::Retry;
    use serde_json::value::RawValue;

    fn retry(app: &str, target: Target) -> (String, Duration) {
        let event = format!(r#"{{"event_type":"message-sent","app_id":"{app}"}}"#);
        let retry = Retry {
            webhook_id: "msg_x".into(),
            target,
            attempts: 1,
            due: 0,
            last_error: "answered 503".into(),
            event: RawValue::from_string(event).unwrap(),
        };
        (retry.to_message(), Duration::ZERO)
    }

    fn hook(app: &str, id: &str) -> Target {
        Target::Tenant {
            app_id: app.into(),
            webhook_id: id.into(),
        }
    }

    /// Keeps what fits of `messages`; how many were dropped.
    async fn kept(retries: &MemoryRetries, messages: &[(String, Duration)]) -> usize {
        let before = retries.waiting();
        let outcome = retries.schedule(messages).await;
        let kept = retries.waiting() - before;
        match outcome {
            Ok(()) => assert_eq!(kept, messages.len()),
            Err(e) => assert_eq!(e.status(), 503),
        }
        kept
    }

    #[tokio::test]
    async fn bounded_per_endpoint_per_tenant_and_in_all() {
        let bounds = RetryBounds {
            total: 10,
            per_endpoint: 3,
            per_tenant: 5,
        };
        let retries = MemoryRetries::with_bounds(Arc::new(SystemClock), bounds);
        // One endpoint: 3 of 4.
        let h1 = vec![retry("a", hook("a", "h1")); 4];
        assert_eq!(kept(&retries, &h1).await, 3);
        // The same tenant's other endpoint, in one call with another tenant's: tenant `a`
        // has room for 2 more, tenant `b` is not held up by it.
        let mixed = vec![
            retry("a", hook("a", "h2")),
            retry("b", hook("b", "h1")),
            retry("a", hook("a", "h2")),
            retry("a", hook("a", "h2")),
            retry("b", hook("b", "h1")),
        ];
        assert_eq!(kept(&retries, &mixed).await, 4);
        // The deployment's endpoint, for tenant a's events (a is full) and b's.
        let global = Target::Global {
            url: "https://hooks.example/x".into(),
        };
        assert_eq!(kept(&retries, &[retry("a", global.clone())]).await, 0);
        assert_eq!(kept(&retries, &[retry("b", global.clone())]).await, 1);
        assert_eq!(retries.waiting(), 8);
        // In all, 10.
        let more: Vec<_> = ["c", "d", "e"]
            .iter()
            .map(|app| retry(app, hook(app, "h")))
            .collect();
        assert_eq!(kept(&retries, &more).await, 2);
        // Once taken (due), the room is free again.
        assert_eq!(retries.take_due().len(), 10);
        assert_eq!(kept(&retries, &h1).await, 3);
        assert_eq!(kept(&retries, &[retry("a", hook("a", "h2"))]).await, 1);
    }
}
