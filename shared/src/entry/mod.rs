//! Every entry point, together (as aws-samples/serverless-rust-demo keeps them): what turns an
//! outside request into an operation of [`crate::ops`], and its answer back. Nothing below
//! imports them.
//!
//! - [`http`]: the HTTP routes, shared by the Lambda functions and `chat21-local`: auth,
//!   parsing, and the one place where results and errors become HTTP responses;
//! - [`lambda`]: what every function's `main` calls (dependencies built once per cold start,
//!   logs), and the HTTP functions' runtime;
//! - [`stream`]: the deliver function, a batch of the table's stream at a time;
//! - [`webhooks`]: the webhooks function, a batch of its queue at a time (and the in-process
//!   retry queue's consumer of `chat21-local`);
//! - [`inbound`]: a client's MQTT publish mapped to the operation it means (`chat21-local`'s
//!   broker and IoT Core's topic rules);
//! - [`rule`]: the mqtt-inbound function: a topic rule's invocation, run by [`inbound`];
//! - [`authorizer`]: the authorizer function: IoT Core's custom authorizer, whose policies are
//!   `realtime::authorizer`'s.

pub mod authorizer;
pub mod http;
pub mod inbound;
pub mod lambda;
pub mod rule;
pub mod stream;
pub mod webhooks;
