//! The dispatchers: each hands its outbox table's entries to an in-process consumer (the
//! deliver step, the webhooks consumer) and deletes an entry only once the consumer
//! succeeded. A failure is tried again after a backoff (1 s, doubling, at most 10 minutes); an
//! entry the consumer calls malformed (`Error::BadRequest`), or that failed
//! [`MAX_ATTEMPTS`] times, is dead
//! (kept, logged). At start, whatever is pending is handed over: a process that died between a
//! write and its delivery delivers at its next start.
//!
//! Deliveries keep the order of the table's stream per lane (a conversation, a group): one
//! entry of a lane at a time, the next only once it succeeded or died; different lanes run at
//! once. Webhooks records need no order (each endpoint has its own retries): they run as they
//! come due.

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, warn};

use super::SqliteStore;
use super::outbox::{Entry, FIRST_BACKOFF, MAX_ATTEMPTS, MAX_BACKOFF, Queue};
use crate::error::{Error, Result};
use crate::ports::Clock;

/// What an outbox entry is handed to.
#[async_trait]
pub trait Consumer: Send + Sync {
    /// Handles one entry. An error means it must come back, except `Error::BadRequest`: it
    /// never can be handled (dead at once).
    async fn consume(&self, body: &str) -> Result<()>;
}

/// Entries of different lanes handed over at once.
pub const CONCURRENCY: usize = 64;
/// Deliveries read ahead into memory at most.
const READ_AHEAD: usize = 4_096;
/// The longest a dispatcher sleeps without looking (a clock that jumped, a lost wake-up).
const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(30);

/// One dispatcher: a queue of the outbox and its consumer.
pub struct Dispatcher {
    pub store: Arc<SqliteStore>,
    pub consumer: Arc<dyn Consumer>,
    pub clock: Arc<dyn Clock>,
    /// Entries (of different lanes) handed over at once.
    pub concurrency: usize,
    /// The wait after a first failure; it doubles with each, up to 10 minutes.
    pub first_backoff: Duration,
    /// Attempts before an entry is dead.
    pub max_attempts: u32,
}

impl Dispatcher {
    /// A dispatcher of `store`'s outbox to `consumer`, with the outbox's retry policy.
    pub fn new(
        store: Arc<SqliteStore>,
        consumer: Arc<dyn Consumer>,
        clock: Arc<dyn Clock>,
        concurrency: usize,
    ) -> Dispatcher {
        Dispatcher {
            store,
            consumer,
            clock,
            concurrency,
            first_backoff: FIRST_BACKOFF,
            max_attempts: MAX_ATTEMPTS,
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(20);
        (self.first_backoff * (1u32 << doublings)).min(MAX_BACKOFF)
    }
}

type Running = JoinSet<(Entry, Result<()>)>;

impl Dispatcher {
    fn start(&self, running: &mut Running, entry: Entry) {
        let consumer = self.consumer.clone();
        running.spawn(async move {
            let outcome = AssertUnwindSafe(consumer.consume(&entry.body))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(Error::internal("the consumer panicked")));
            (entry, outcome)
        });
    }

    /// Records what the consumer did with `entry`; returns the entry as it waits again, if
    /// it must be tried again.
    async fn settle(&self, queue: Queue, mut entry: Entry, outcome: Result<()>) -> Option<Entry> {
        let e = match outcome {
            Ok(()) => {
                if let Err(e) = self.store.done(queue, entry.id).await {
                    // It stays, and comes back at the next start: consumers are idempotent.
                    warn!(error = %e, id = entry.id, "could not remove a consumed outbox entry");
                }
                return None;
            }
            Err(e) => e,
        };
        entry.attempts += 1;
        let dead = matches!(e, Error::BadRequest(_)) || entry.attempts >= self.max_attempts;
        let wait = self.backoff(entry.attempts);
        entry.due = self.clock.now_ms() + wait.as_millis() as u64;
        entry.last_error = Some(e.to_string());
        if dead {
            error!(?queue, id = entry.id, attempts = entry.attempts, error = %e, "an outbox entry failed for good: kept as dead");
        } else {
            warn!(?queue, id = entry.id, attempts = entry.attempts, error = %e, "an outbox entry failed; tried again in {wait:?}");
        }
        let recorded = self
            .store
            .failed(
                queue,
                entry.id,
                entry.attempts,
                entry.due,
                e.to_string(),
                dead,
            )
            .await;
        if let Err(e) = recorded {
            warn!(error = %e, id = entry.id, "could not record an outbox entry's failure");
        }
        (!dead).then_some(entry)
    }

    /// Hands the deliveries over, in order per lane, until `stop` turns true; then lets those
    /// under way finish.
    pub async fn run_deliveries(self, mut stop: watch::Receiver<bool>) {
        let mut lanes: HashMap<String, VecDeque<Entry>> = HashMap::new();
        let mut busy: HashSet<String> = HashSet::new();
        let (mut read_up_to, mut buffered, mut more) = (0i64, 0usize, true);
        let mut running = Running::new();
        let mut stopping = *stop.borrow();
        loop {
            if stopping && running.is_empty() {
                return;
            }
            if more && !stopping && buffered < READ_AHEAD {
                match self
                    .store
                    .deliveries_after(read_up_to, READ_AHEAD - buffered)
                    .await
                {
                    Ok(entries) => {
                        more = entries.len() == READ_AHEAD - buffered;
                        for entry in entries {
                            read_up_to = entry.id;
                            buffered += 1;
                            lanes
                                .entry(entry.lane.clone())
                                .or_default()
                                .push_back(entry);
                        }
                    }
                    Err(e) => warn!(error = %e, "cannot read the deliveries; trying again"),
                }
            }
            let now = self.clock.now_ms();
            let mut next_due: Option<u64> = None;
            if !stopping {
                for (lane, waiting) in &lanes {
                    if running.len() >= self.concurrency {
                        break;
                    }
                    let Some(front) = waiting.front() else {
                        continue;
                    };
                    if busy.contains(lane) {
                        continue;
                    }
                    if front.due <= now {
                        busy.insert(lane.clone());
                        self.start(&mut running, front.clone());
                    } else {
                        next_due = Some(next_due.map_or(front.due, |d| d.min(front.due)));
                    }
                }
            }
            let wait = next_due.map_or(LOOK_AT_LEAST_EVERY, |due| {
                Duration::from_millis(due.saturating_sub(now)).min(LOOK_AT_LEAST_EVERY)
            });
            tokio::select! {
                Some(finished) = running.join_next(), if !running.is_empty() => {
                    let Ok((entry, outcome)) = finished else { continue };
                    let lane = entry.lane.clone();
                    busy.remove(&lane);
                    let again = self.settle(Queue::Deliveries, entry, outcome).await;
                    if let Some(waiting) = lanes.get_mut(&lane) {
                        match again {
                            Some(entry) => {
                                if let Some(front) = waiting.front_mut() {
                                    *front = entry;
                                }
                            }
                            None => {
                                waiting.pop_front();
                                buffered -= 1;
                                if waiting.is_empty() {
                                    lanes.remove(&lane);
                                }
                            }
                        }
                    }
                }
                () = self.store.deliveries_added.notified(), if !stopping => more = true,
                () = tokio::time::sleep(wait), if !stopping => more = true,
                changed = stop.changed(), if !stopping => {
                    stopping = changed.is_err() || *stop.borrow();
                }
            }
        }
    }

    /// Hands the webhooks records over as they come due, until `stop` turns true; then lets
    /// those under way finish.
    pub async fn run_webhooks(self, mut stop: watch::Receiver<bool>) {
        let mut under_way: HashSet<i64> = HashSet::new();
        let mut running = Running::new();
        let mut stopping = *stop.borrow();
        loop {
            if stopping && running.is_empty() {
                return;
            }
            let now = self.clock.now_ms();
            let mut wait = LOOK_AT_LEAST_EVERY;
            if !stopping && running.len() < self.concurrency {
                let limit = self.concurrency + under_way.len();
                match self.store.webhook_records_due(now, limit).await {
                    Ok(due) => {
                        for entry in due {
                            if running.len() >= self.concurrency {
                                break;
                            }
                            if under_way.insert(entry.id) {
                                self.start(&mut running, entry);
                            }
                        }
                    }
                    Err(e) => warn!(error = %e, "cannot read the webhooks queue; trying again"),
                }
                if let Ok(Some(next)) = self.store.next_webhook_due().await
                    && next > now
                {
                    wait = Duration::from_millis(next - now).min(wait);
                }
            }
            tokio::select! {
                Some(finished) = running.join_next(), if !running.is_empty() => {
                    let Ok((entry, outcome)) = finished else { continue };
                    under_way.remove(&entry.id);
                    self.settle(Queue::Webhooks, entry, outcome).await;
                }
                () = self.store.webhooks_added.notified(), if !stopping => {}
                () = tokio::time::sleep(wait), if !stopping => {}
                changed = stop.changed(), if !stopping => {
                    stopping = changed.is_err() || *stop.borrow();
                }
            }
        }
    }
}
