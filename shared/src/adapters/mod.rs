//! Adapters of the ports: production (DynamoDB, SNS, SQS, IoT Core, the webhooks' HTTP
//! client, the system clock) and embedded (in-process; the local server and the tests).

pub mod aws;
pub mod dynamo;
pub mod embedded;
pub mod http;
pub mod iot;
mod retry;
pub mod row;
pub mod sns;
pub mod sqs;
pub mod system;
