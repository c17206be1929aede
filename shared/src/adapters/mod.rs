//! Adapters of the ports: production (DynamoDB, SNS, the system clock) and embedded
//! (in-process; the local server and the tests).

pub mod dynamo;
pub mod embedded;
mod retry;
pub mod row;
pub mod sns;
pub mod system;
