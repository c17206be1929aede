//! Adapters of the ports: production (DynamoDB, SNS, SQS, the webhooks' HTTP client, the
//! system clock) and embedded (in-process; the local server and the tests).

pub mod dynamo;
pub mod embedded;
pub mod http;
mod retry;
pub mod sns;
pub mod sqs;
pub mod system;
