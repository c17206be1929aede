//! `chat21-local` as its users meet it, in one test binary: the binary started on free ports and
//! driven over real HTTP (`http`) and real MQTT over TCP and WebSocket (`mqtt`), its webhooks
//! received by a real HTTP endpoint (`webhooks`), its web console's routes (`console`), its
//! data kept across restarts, shutdowns and backups (`durability`).

mod console;
mod durability;
mod http;
mod listeners;
mod mqtt;
mod server;
mod webhooks;
