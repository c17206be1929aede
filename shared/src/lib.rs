//! The shared crate of the serverless Chat21: everything the Lambda functions and the local
//! server do, written once.
//!
//! - [`entry`] — every entry point: HTTP glue (auth, parsing, the JSON envelope), the Lambda
//!   wiring, the stream and queue consumers, MQTT inbound, the IoT authorizer.
//! - [`ops`] — the behaviour of API.md, against the [`ports`].
//! - [`adapters`] — DynamoDB + SNS (production) and embedded (local server, tests).

pub mod adapters;
pub mod auth;
pub mod config;
pub mod cors;
pub mod entry;
pub mod error;
pub mod events;
pub mod ids;
pub mod input;
pub mod keys;
pub mod model;
pub mod ops;
pub mod ports;
pub mod realtime;
pub mod routes;

pub use error::{Error, Result};
pub use lambda_http;
