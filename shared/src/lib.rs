//! The shared crate of the serverless Chat21: everything the Lambda functions and the local
//! server do, written once. Its modules, from the top layer down (each imports only from the
//! layers below it; adapters implement the ports and never import `ops` or `entry`):
//!
//! - [`entry`]: every entry point. HTTP glue (auth, parsing, the one place errors become HTTP
//!   responses), the Lambda wiring of each function, the table's stream and the webhooks
//!   queue consumers, a client's MQTT publish mapped to its operation, IoT Core's topic rule
//!   and authorizer. [`routes`] is the HTTP route table it and `chat21-local` serve, and
//!   [`cors`] what browsers on other origins are allowed (`chat21-local`; API Gateway on AWS).
//! - [`ops`]: the behaviour of API.md, written once against the ports: messages, the deliver
//!   step, conversations, groups, webhooks, and the row step they share.
//! - [`realtime`]: REALTIME.md's rules: the topics, the server's publishes, the authorizer's
//!   policies. [`input`]: reading request bodies and query values.
//! - [`ports`]: what the operations need from the outside world, as small traits.
//! - [`adapters`]: the ports on DynamoDB, SNS, SQS, IoT Core, an HTTP client and the system
//!   clock (production), and embedded (the local server, tests). The IoT adapter reads the
//!   topics' layout from `realtime::topics`, as the stores read `keys`.
//! - Below them all: [`model`] (the data of API.md), [`events`] (the events' envelope),
//!   [`keys`] (every storage key), [`auth`] (JWT), [`config`] (environment variables), [`ids`]
//!   (identifier rules), [`error`] (the one error type).

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
