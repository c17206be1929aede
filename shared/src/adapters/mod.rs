//! Adapters of the ports: production (DynamoDB, SNS) and embedded (in-process).

pub mod dynamo;
pub mod embedded;
pub mod sns;
