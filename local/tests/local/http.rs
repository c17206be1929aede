//! The real `chat21-local` binary, driven over real HTTP with real HS256 tokens, one file per
//! route family (`messages`, `groups`, `conversations`), then what every route shares
//! (`errors`, `browsers`) and the binary's start (`startup`).
//!
//! Each test starts its own server on a free port and kills it when done (also on a failed
//! assertion). Events are delivered in the background, so the effects of a send are polled for.

mod browsers;
mod conversations;
mod errors;
mod groups;
mod messages;
mod startup;
