//! Real time (REALTIME.md): what connected Chat21 clients are told, and what they may ask.
//!
//! - [`topics`]: the topics, who may publish or subscribe where, and their limits;
//! - [`push`]: the server's publishes (a copy written, a receipt, a conversation read,
//!   archived, deleted or un-archived, a group changed), built where the change happens;
//! - [`authorizer`]: IoT Core's custom authorizer on AWS, the JWT becomes a policy granting the
//!   topics above.
//!
//! Only the rules live here. A client's publish mapped to the operation it means is
//! `entry::inbound` (run by `chat21-local`'s broker and by IoT Core's topic rules,
//! `entry::rule`); the authorizer's Lambda glue is `entry::authorizer`.
//!
//! Publishing goes through the [`Realtime`](crate::ports::Realtime) port: the embedded MQTT
//! broker of `chat21-local`, or IoT Core's data plane on AWS (`adapters::iot`).

pub mod authorizer;
pub mod push;
pub mod topics;
