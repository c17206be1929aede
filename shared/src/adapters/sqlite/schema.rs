//! The schema, its migrations, and how a connection is set up.
//!
//! Versions are `PRAGMA user_version`, forward only: each migration runs once, in order, in the
//! transaction that also sets the version, so a crash mid-migration leaves the previous
//! version whole. A database whose version is newer than this code knows (written by a newer
//! release) is refused at start: this code cannot know what the newer one changed.
//!
//! The settings: WAL (readers run beside the writer; a crash of the process loses nothing
//! committed), `synchronous=NORMAL` (in WAL mode, a commit is not fsynced at once, only at
//! checkpoints: a power loss or an OS crash may lose the last commits, never corrupt the
//! database; the process dying loses nothing), `foreign_keys`, and a `busy_timeout` for the
//! moments another process (a backup with `sqlite3`) holds a lock.
//!
//! Every key column holds a string built by `crate::keys`, so orders and cursors mean the same
//! on both stores. Each table is shaped for its reads: a user's conversations are listed from
//! an index on their list order, a timeline is read from an index on its order key.

use rusqlite::Connection;

use crate::error::{Error, Result};

/// Version 1: the store (messages, conversations, groups, webhooks).
const V1: &str = "
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    timeline TEXT NOT NULL,   -- keys::direct_pk, history_pk or timeline_pk
    sk TEXT NOT NULL,         -- keys::message_sk: the sender and the message id
    order_key TEXT NOT NULL,  -- keys::message_order / group_order
    message TEXT NOT NULL,    -- the message, JSON
    UNIQUE (timeline, sk)
);
CREATE INDEX messages_by_order ON messages (timeline, order_key);

CREATE TABLE conversations (
    owner TEXT NOT NULL,      -- keys::user_pk
    with_id TEXT NOT NULL,
    list_key TEXT,            -- keys::conversation_order; NULL while deleted
    row TEXT NOT NULL,        -- the row (conversation, marks, windows), JSON
    PRIMARY KEY (owner, with_id)
);
CREATE INDEX conversations_listed ON conversations (owner, list_key);

CREATE TABLE groups (
    pk TEXT PRIMARY KEY,      -- keys::group_pk
    meta TEXT NOT NULL,       -- the meta but its counters, JSON
    version INTEGER NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE members (
    pk TEXT NOT NULL REFERENCES groups (pk) ON DELETE CASCADE,
    member TEXT NOT NULL,
    PRIMARY KEY (pk, member)
) WITHOUT ROWID;
CREATE TABLE changes (
    pk TEXT NOT NULL REFERENCES groups (pk) ON DELETE CASCADE,
    change_id TEXT NOT NULL,
    change TEXT NOT NULL,     -- the change record, JSON
    PRIMARY KEY (pk, change_id)
) WITHOUT ROWID;

CREATE TABLE webhooks (
    app TEXT NOT NULL,        -- keys::webhooks_pk
    id TEXT NOT NULL,
    webhook TEXT NOT NULL,    -- JSON
    PRIMARY KEY (app, id)
);
";

/// Version 2: the outbox. What a write hands on is written in the same transaction: a new
/// message or a settled group change for the deliver step (`deliveries`, handed over in order
/// per lane: a conversation, a group), the events and webhook retries for the webhooks
/// consumer (`webhook_queue`, by due time). An entry leaves its table only once its consumer
/// succeeded; one that failed [`super::outbox::MAX_ATTEMPTS`] times stays, `dead = 1`, for an
/// operator to look at.
const V2: &str = "
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lane TEXT NOT NULL,       -- keys of the timeline or group: handed over in order
    streamed TEXT NOT NULL,   -- what the deliver step is handed, JSON
    due INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    dead INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE webhook_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record TEXT NOT NULL,     -- an event, or an endpoint's retry (ops::webhooks::records)
    due INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    dead INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX webhook_queue_due ON webhook_queue (dead, due);
";

/// Every migration, in order: migration `i` moves a database from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[V1, V2];

/// The version this code writes.
pub const VERSION: u32 = MIGRATIONS.len() as u32;

/// The settings of every connection.
pub(super) fn configure(connection: &Connection) -> Result<()> {
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    connection.set_prepared_statement_cache_capacity(64);
    connection.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")?;
    Ok(())
}

/// Moves the database to `target` (at most [`VERSION`]), or refuses one newer than this code.
pub(super) fn migrate(connection: &mut Connection, target: u32) -> Result<()> {
    let found: u32 = connection.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(Error::internal(format!(
            "the database is at schema version {found}, written by a newer chat21-local; this \
             one knows versions up to {VERSION}: run the newer release (or restore a backup)"
        )));
    }
    for version in found..target.min(VERSION) {
        let step = connection.transaction()?;
        step.execute_batch(MIGRATIONS[version as usize])?;
        step.pragma_update(None, "user_version", version + 1)?;
        step.commit()?;
    }
    Ok(())
}
