//! Every integration suite of the shared crate, in one test binary (each binary links the AWS
//! SDK; one link instead of six is the cheapest build-time win on a small machine).
//!
//! The suites that touch DynamoDB, SNS or SQS talk to moto's server on loopback, started by
//! `scripts/test` (it sets `AWS_ENDPOINT_URL`).

mod common;

mod behaviour;
mod dynamo_limits;
mod events_files;
mod http_api;
mod iot;
mod iot_endpoints_resource;
mod iot_policy;
mod lambda_e2e;
mod openapi;
mod rule_retries;
mod sqlite_store;
mod template;
mod template_realtime;
mod webhooks;
