//! `chat21-local` as its users meet it, in one test binary: the binary started on free ports and
//! driven over real HTTP (`http`) and real MQTT over TCP and WebSocket (`mqtt`), its webhooks
//! received by a real HTTP endpoint (`webhooks`), its web console's routes (`console`), its
//! listeners under misbehaving connections (`listeners`). What they share: `support`.

mod console;
mod durability;
mod http;
mod listeners;
mod mqtt;
mod support;
mod webhooks;
