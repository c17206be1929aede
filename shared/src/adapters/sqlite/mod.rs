//! The SQLite store: every store port on one database file (`chat21-local`), or in memory
//! (tests). Same semantics as the DynamoDB store (the behaviour suite runs on both): every
//! operation DynamoDB makes atomic (a conditional write, a transaction) is one SQLite
//! transaction here, run by the one writer thread (`db`), so a read-then-write needs no
//! condition: nothing else writes in between.
//!
//! - `db`: the writer (group commit) and the readers, off the async workers;
//! - `schema`: tables, migrations (`PRAGMA user_version`), connection settings;
//! - `messages`, `conversations` (`row`: a conversation row and how a message applies to it),
//!   `groups`, `webhooks`: the store ports;
//! - `outbox`: what a write hands on (the deliver step's input, events, webhook retries),
//!   written in the same transaction, and how its consumers take it.

mod conversations;
mod db;
pub mod dispatch;
mod groups;
mod messages;
pub mod outbox;
mod row;
pub mod schema;
mod webhooks;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::error::{Error, Result};
use db::Db;

/// The database's file name in its data directory.
pub const FILE_NAME: &str = "chat21.db";

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A database file.
    File(PathBuf),
    /// In memory, gone with the process (tests, throwaway runs).
    Memory,
}

impl Location {
    /// `DATA_DIR`'s meaning: `:memory:`, or a directory holding [`FILE_NAME`].
    pub fn of_data_dir(dir: &str) -> Location {
        if dir == ":memory:" {
            Location::Memory
        } else {
            Location::File(Path::new(dir).join(FILE_NAME))
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Memory => write!(f, ":memory: (nothing is kept)"),
        }
    }
}

pub struct SqliteStore {
    db: Db,
    /// Told after a commit that queued deliveries, or webhooks records (the dispatchers).
    pub(crate) deliveries_added: Notify,
    pub(crate) webhooks_added: Notify,
}

impl SqliteStore {
    /// Opens (creating it if missing, with its directory) and migrates the database.
    pub fn open(location: &Location) -> Result<SqliteStore> {
        SqliteStore::open_at(location, schema::VERSION)
    }

    /// A fresh in-memory database.
    pub fn memory() -> Result<SqliteStore> {
        SqliteStore::open(&Location::Memory)
    }

    /// Opens the database migrated to `version` only: for the tests of migrations, which
    /// write a database as an older release did.
    #[doc(hidden)]
    pub fn open_at(location: &Location, version: u32) -> Result<SqliteStore> {
        let fail = |e: rusqlite::Error| Error::internal(format!("cannot open {location}: {e}"));
        let (mut writer, path) = match location {
            Location::Memory => (Connection::open_in_memory().map_err(fail)?, None),
            Location::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        Error::internal(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                (Connection::open(path).map_err(fail)?, Some(path))
            }
        };
        schema::configure(&writer)?;
        if path.is_some() {
            let mode: String = writer
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(fail)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::internal(format!(
                    "{location} cannot use WAL (journal mode {mode})"
                )));
            }
        }
        schema::migrate(&mut writer, version)?;
        let mut readers = Vec::new();
        if let Some(path) = path {
            for _ in 0..db::READERS {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let reader = Connection::open_with_flags(path, flags).map_err(fail)?;
                schema::configure(&reader)?;
                readers.push(reader);
            }
        }
        Ok(SqliteStore {
            db: Db::start(writer, readers)?,
            deliveries_added: Notify::new(),
            webhooks_added: Notify::new(),
        })
    }

    /// Whether the database answers a read (the health check).
    pub async fn check(&self) -> Result<()> {
        self.db
            .read(|c| {
                c.query_row("SELECT count(*) FROM groups WHERE 0", [], |_| Ok(()))
                    .map_err(Error::from)
            })
            .await
    }

    /// Commits what is queued and closes the database (graceful shutdown). Calls after it
    /// fail as unavailable.
    pub async fn close(&self) {
        self.db.stop().await;
    }
}

/// A value as stored (JSON).
fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::internal(format!("cannot store a value: {e}")))
}

/// A stored value (JSON).
fn from_json<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| Error::internal(format!("an unreadable stored value: {e}")))
}
