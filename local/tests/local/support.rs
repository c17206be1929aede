//! What every suite of this binary shares: the server process (`server`), the tokens it
//! accepts (`tokens`), the one HTTP client and the JSON API on it (`http`), and hand-encoded
//! MQTT and WebSocket bytes (`packets`). Suites import from here, not from the files.

mod http;
mod packets;
mod server;
mod tokens;

pub use http::{Response, assert_error, direct, eventually, find, http, raw, to_group};
pub use packets::{
    PINGREQ, connect_packet, publish_packet, subscribe_packet, upgrade_request, ws_frame,
};
pub use server::{
    APP, KEY, Log, STARTUP, Server, command, command_with_descriptors, start, start_with,
};
pub use tokens::{now_secs, signed, tok, token};
