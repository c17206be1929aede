//! The production store: one DynamoDB table (single-table design, keys from [`crate::keys`]).
//!
//! Writes that must not be lost or doubled are conditional; multi-item writes are chunked to
//! the service limits (25 per BatchWriteItem with unprocessed items retried, 100 actions per
//! transaction) and lists are queries on the `by_order` local index, never scans.
//!
//! - [`request`]: DynamoDB plumbing with no chat knowledge;
//! - [`item`]: how messages, conversations and groups are laid out in items;
//! - `messages`, `conversations`, `groups`: the store ports.

mod conversations;
mod groups;
pub mod item;
mod messages;
pub mod request;

use std::sync::Arc;

use aws_sdk_dynamodb::Client;

use crate::ports::Clock;
use request::Table;

pub use request::ORDER_INDEX;

/// How long a client `message_id` is remembered for safe retries.
pub const SENT_RECORD_TTL_SECS: u64 = 30 * 24 * 3600;
/// TTL attribute (seconds since the epoch) of sent records.
pub const EXPIRES: &str = "expires_at";

pub struct DynamoStore {
    table: Table,
    /// Dates the sent records' expiry.
    clock: Arc<dyn Clock>,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>, clock: Arc<dyn Clock>) -> DynamoStore {
        DynamoStore {
            table: Table::new(client, table.into()),
            clock,
        }
    }

    /// Requests sent to DynamoDB so far (benchmarks report it).
    pub fn requests(&self) -> u64 {
        self.table.requests()
    }
}
