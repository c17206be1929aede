//! Adapters of the ports: production (DynamoDB, SNS, SQS, IoT Core, the webhooks' HTTP
//! client, the system clock), SQLite (`chat21-local`'s store and outbox, in memory for tests;
//! behind the `sqlite` feature, which Lambda functions never enable) and embedded
//! (in-process recorders: the tests' event bus and real time).

pub mod aws;
pub mod dynamo;
pub mod embedded;
pub mod http;
pub mod iot;
mod retry;
pub mod row;
pub mod sns;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod sqs;
pub mod system;
