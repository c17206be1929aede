//! Adapters of the ports: production (DynamoDB, SNS, IoT Core, the system clock) and embedded
//! (in-process; the local server and the tests).

pub mod dynamo;
pub mod embedded;
pub mod iot;
mod retry;
pub mod row;
pub mod sns;
pub mod system;
