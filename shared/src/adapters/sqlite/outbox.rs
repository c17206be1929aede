//! The outbox: what a write hands on, kept in the database until its consumer succeeded.
//!
//! - `deliveries`: each new message and each settled group change, written in the same
//!   transaction as the message or the change's record (what the table's stream is on AWS),
//!   for the deliver step; handed over in order per *lane* (a timeline, a group);
//! - `webhook_queue`: the events ([`OutboxEvents`], the SNS topic on AWS) and the webhook
//!   retries ([`OutboxRetries`], the SQS queue on AWS) for the webhooks consumer, by due time.
//!
//! An entry is deleted only once its consumer succeeded ([`Queue`], `dispatch`). A failure
//! waits (from [`FIRST_BACKOFF`], doubling) and is tried again; after [`MAX_ATTEMPTS`] it is
//! dead: kept with
//! `dead = 1` and its last error, logged, counted by the health check, and listed by
//! [`SqliteStore::dead_letters`] (or `SELECT * FROM deliveries WHERE dead = 1` in `sqlite3`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::{SqliteStore, to_json};
use crate::error::Result;
use crate::events::Event;
use crate::ports::{Clock, EventPublisher, RetryQueue, Streamed};

/// Attempts of one entry before it is dead: with the backoff, the tenth comes about 8.5
/// minutes after the first.
pub const MAX_ATTEMPTS: u32 = 10;
/// The wait after a first failure; it doubles with each failure in a row.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// The two tables of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// For the deliver step, in order per lane.
    Deliveries,
    /// For the webhooks consumer, by due time.
    Webhooks,
}

impl Queue {
    fn table(self) -> &'static str {
        match self {
            Queue::Deliveries => "deliveries",
            Queue::Webhooks => "webhook_queue",
        }
    }
}

/// What the outbox holds (the health check shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct OutboxCounts {
    /// Deliveries not yet consumed.
    pub deliveries: u64,
    /// Webhooks records (events, retries) due and not yet consumed.
    pub webhooks_due: u64,
    /// Entries whose consumer failed on every attempt: for an operator to look at.
    pub dead_deliveries: u64,
    pub dead_webhooks: u64,
}

/// One entry of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    /// Entries of one lane are handed over one at a time, in order (deliveries only; empty for
    /// the webhooks queue).
    pub lane: String,
    pub body: String,
    /// When it may be handed over (ms since the epoch).
    pub due: u64,
    pub attempts: u32,
    pub last_error: Option<String>,
}

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: r.get(0)?,
        lane: r.get(1)?,
        body: r.get(2)?,
        due: r.get(3)?,
        attempts: r.get(4)?,
        last_error: r.get(5)?,
    })
}

/// Queues the delivery of `streamed` in `lane`, inside the caller's transaction.
pub(super) fn enqueue_delivery(c: &Connection, lane: &str, streamed: &Streamed) -> Result<()> {
    c.prepare_cached("INSERT INTO deliveries (lane, streamed) VALUES (?1, ?2)")?
        .execute(params![lane, to_json(streamed)?])?;
    Ok(())
}

fn enqueue_record(c: &Connection, record: &str, due: u64, dead: bool) -> Result<()> {
    c.prepare_cached("INSERT INTO webhook_queue (record, due, dead) VALUES (?1, ?2, ?3)")?
        .execute(params![record, due, dead])?;
    Ok(())
}

impl SqliteStore {
    /// Deliveries waiting (not dead) after `after`, in order, at most `limit`.
    pub async fn deliveries_after(&self, after: i64, limit: usize) -> Result<Vec<Entry>> {
        self.db
            .read(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT id, lane, streamed, due, attempts, last_error FROM deliveries
                     WHERE id > ?1 AND dead = 0 ORDER BY id LIMIT ?2",
                )?;
                let entries = statement
                    .query_map(params![after, limit as i64], entry)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(entries)
            })
            .await
    }

    /// Webhooks records due at `now` (not dead), the earliest first, at most `limit`.
    pub async fn webhook_records_due(&self, now: u64, limit: usize) -> Result<Vec<Entry>> {
        self.db
            .read(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT id, '', record, due, attempts, last_error FROM webhook_queue
                     WHERE dead = 0 AND due <= ?1 ORDER BY due, id LIMIT ?2",
                )?;
                let entries = statement
                    .query_map(params![now, limit as i64], entry)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(entries)
            })
            .await
    }

    /// When the next webhooks record is due, if any waits.
    pub async fn next_webhook_due(&self) -> Result<Option<u64>> {
        self.db
            .read(|c| {
                let due: Option<u64> = c
                    .prepare_cached("SELECT min(due) FROM webhook_queue WHERE dead = 0")?
                    .query_row([], |r| r.get(0))?;
                Ok(due)
            })
            .await
    }

    /// The entry's consumer succeeded: it leaves the outbox.
    pub async fn done(&self, queue: Queue, id: i64) -> Result<()> {
        let sql = format!("DELETE FROM {} WHERE id = ?1", queue.table());
        self.db
            .write(move |c| {
                c.prepare_cached(&sql)?.execute([id])?;
                Ok(())
            })
            .await
    }

    /// The entry's consumer failed (`attempts` so far, the last with `error`): it is tried
    /// again at `due`, or, when `dead`, kept for an operator.
    pub async fn failed(
        &self,
        queue: Queue,
        id: i64,
        attempts: u32,
        due: u64,
        error: String,
        dead: bool,
    ) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET attempts = ?2, due = ?3, last_error = ?4, dead = ?5 WHERE id = ?1",
            queue.table()
        );
        self.db
            .write(move |c| {
                c.prepare_cached(&sql)?
                    .execute(params![id, attempts, due, error, dead])?;
                Ok(())
            })
            .await
    }

    /// The dead entries of a queue (those whose consumer failed on every attempt), oldest
    /// first.
    pub async fn dead_letters(&self, queue: Queue) -> Result<Vec<Entry>> {
        let lane = match queue {
            Queue::Deliveries => "lane",
            Queue::Webhooks => "''",
        };
        let body = match queue {
            Queue::Deliveries => "streamed",
            Queue::Webhooks => "record",
        };
        let sql = format!(
            "SELECT id, {lane}, {body}, due, attempts, last_error FROM {} WHERE dead = 1 ORDER BY id",
            queue.table()
        );
        self.db
            .read(move |c| {
                let mut statement = c.prepare(&sql)?;
                let entries = statement
                    .query_map([], entry)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(entries)
            })
            .await
    }

    /// How many entries each queue holds: waiting (dead = 0; for the webhooks queue, those
    /// due by `now`) and dead.
    pub async fn outbox_counts(&self, now: u64) -> Result<OutboxCounts> {
        self.db
            .read(move |c| {
                let count = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Result<u64> {
                    Ok(c.prepare_cached(sql)?.query_row(params, |r| r.get(0))?)
                };
                Ok(OutboxCounts {
                    deliveries: count("SELECT count(*) FROM deliveries WHERE dead = 0", &[])?,
                    webhooks_due: count(
                        "SELECT count(*) FROM webhook_queue WHERE dead = 0 AND due <= ?1",
                        &[&now],
                    )?,
                    dead_deliveries: count("SELECT count(*) FROM deliveries WHERE dead = 1", &[])?,
                    dead_webhooks: count("SELECT count(*) FROM webhook_queue WHERE dead = 1", &[])?,
                })
            })
            .await
    }

    /// Takes every waiting delivery off the outbox, in order: for tests, which play the
    /// deliver step themselves (as the DynamoDB harness reads the table's stream).
    pub async fn take_deliveries(&self) -> Result<Vec<Streamed>> {
        self.db
            .write(|c| {
                let mut statement = c.prepare_cached(
                    "DELETE FROM deliveries WHERE dead = 0 RETURNING id, streamed",
                )?;
                let mut taken = statement
                    .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                taken.sort_by_key(|(id, _)| *id);
                taken
                    .into_iter()
                    .map(|(_, text)| super::from_json(&text))
                    .collect()
            })
            .await
    }
}

/// The event bus of `chat21-local` (what the SNS topic is on AWS): each event into the
/// webhooks queue, for the webhooks consumer.
pub struct OutboxEvents(pub Arc<SqliteStore>);

#[async_trait]
impl EventPublisher for OutboxEvents {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let records: Vec<String> = events.iter().map(Event::to_json).collect();
        self.0
            .db
            .write(move |c| {
                for record in &records {
                    enqueue_record(c, record, 0, false)?;
                }
                Ok(())
            })
            .await?;
        self.0.webhooks_added.notify_one();
        Ok(())
    }
}

/// The webhooks' retry queue of `chat21-local` (what the SQS queue is on AWS): each retry a
/// row of the webhooks queue, due after its delay, kept across restarts.
pub struct OutboxRetries {
    pub store: Arc<SqliteStore>,
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl RetryQueue for OutboxRetries {
    async fn schedule(&self, messages: &[(String, Duration)]) -> Result<()> {
        let now = self.clock.now_ms();
        let records: Vec<(String, u64)> = messages
            .iter()
            .map(|(m, delay)| (m.clone(), now + delay.as_millis() as u64))
            .collect();
        self.store
            .db
            .write(move |c| {
                for (record, due) in &records {
                    enqueue_record(c, record, *due, false)?;
                }
                Ok(())
            })
            .await?;
        self.store.webhooks_added.notify_one();
        Ok(())
    }

    async fn dead_letter(&self, messages: &[String]) -> Result<()> {
        let now = self.clock.now_ms();
        let records = messages.to_vec();
        self.store
            .db
            .write(move |c| {
                for record in &records {
                    enqueue_record(c, record, now, true)?;
                }
                Ok(())
            })
            .await
    }
}
