//! Real time (REALTIME.md): what connected Chat21 clients are told, and what they may ask.
//!
//! - [`topics`]: the topics, who may publish or subscribe where, and their limits;
//! - [`push`]: the server's publishes (a copy written, a receipt, a conversation read,
//!   archived, deleted or un-archived, a group changed), built where the change happens;
//! - [`inbound`]: a client's publish mapped to the operation it means (the same operations as
//!   the HTTP routes).
//! - On AWS: [`authorizer`] (IoT Core's custom authorizer: the JWT becomes a policy granting
//!   the topics above), [`rule`] (a topic rule's invocation, run by [`inbound`]) and [`aws`]
//!   (their Lambda wiring, and the publishing adapter's).
//!
//! Publishing goes through the [`Realtime`](crate::ports::Realtime) port: the embedded MQTT
//! broker of `chat21-local`, or IoT Core's data plane on AWS (`adapters::iot`).

pub mod authorizer;
pub mod aws;
pub mod inbound;
pub mod push;
pub mod rule;
pub mod topics;
