//! Every entry point, together: what turns an outside request into an operation.

pub mod authorizer;
pub mod http;
pub mod inbound;
pub mod lambda;
pub mod rule;
pub mod stream;
pub mod webhooks;
