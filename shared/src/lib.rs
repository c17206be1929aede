//! The shared crate of the serverless Chat21: everything the Lambda functions and the local
//! server do, written once.
//!
//! - [`api`] — HTTP glue: auth, parsing, the JSON envelope (every route enters here).
//! - [`ops`] — the behaviour of API.md, against the [`ports`].
//! - [`adapters`] — DynamoDB + SNS (production) and embedded (local server, tests).
//! - [`lambda`] — what each function's `main` calls.

pub mod adapters;
pub mod api;
pub mod auth;
pub mod config;
pub mod cors;
pub mod error;
pub mod events;
pub mod ids;
pub mod input;
pub mod keys;
pub mod lambda;
pub mod model;
pub mod ops;
pub mod ports;
pub mod realtime;
pub mod routes;

pub use error::{Error, Result};
pub use lambda_http;
