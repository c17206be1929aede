//! The production store: one DynamoDB table (single-table design, keys from [`crate::keys`]).
//!
//! Writes that must not be lost or doubled are conditional; multi-item writes are chunked to
//! the service limits (25 per BatchWriteItem with unprocessed items retried, 100 actions per
//! transaction) and lists are queries on the `by_order` local index, never scans.
//!
//! - [`request`], `query`, `batch`: DynamoDB plumbing with no chat knowledge;
//! - [`item`]: how messages, conversations and groups are laid out in items;
//! - `messages`, `conversations` (`apply`: a message on a conversation row), `groups`,
//!   `webhooks`: the store ports;
//! - `stream`: the table's stream records, read back as the new messages they announce.

mod apply;
mod batch;
mod conversations;
mod groups;
pub mod item;
mod messages;
mod query;
pub mod request;
pub mod stream;
mod webhooks;

use aws_sdk_dynamodb::Client;

use request::Table;

pub use request::ORDER_INDEX;

pub struct DynamoStore {
    table: Table,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoStore {
        DynamoStore {
            table: Table::new(client, table.into()),
        }
    }

    /// Requests sent to DynamoDB so far (benchmarks report it).
    pub fn requests(&self) -> u64 {
        self.table.requests()
    }
}
