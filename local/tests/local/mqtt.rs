//! The embedded MQTT broker (REALTIME.md), as Chat21 clients meet it: the real binary, a real
//! MQTT 3.1.1 client (rumqttc) over TCP and over WebSocket (`/ws`), and hand-encoded packets
//! where a well-behaved client library would refuse to misbehave (silence, wildcards in a
//! topic name, never reading).
//!
//! Most scenarios run on both transports (`mod name { tcp, ws }`): every one is listed below,
//! with the file of its section. Every wait is bounded; a failed wait lists everything the
//! client did receive. The harness: `client` (rumqttc, recording what arrives) and `raw`
//! (hand-encoded bytes); the HTTP API through the binary's one client (`crate::support`).

// The scenarios' shared imports: each section file takes them with `use super::*`.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rumqttc::{ConnectReturnCode, ConnectionError, LastWill, QoS, SubscribeReasonCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

use crate::support::{
    APP, KEY, Log, PINGREQ, Server, connect_packet, direct, find, now_secs, publish_packet, signed,
    subscribe_packet, to_group, tok, token, upgrade_request,
};
use client::{CLIENTS, Mqtt, Received, connect_as, online, options, options_for, try_connect};
use raw::{Next, Raw};

mod client;
mod raw;

mod bounds;
mod client_ids;
mod client_publishes;
mod connection;
mod refusals;
mod server_publishes;
mod slow_client;

/// How long anything that should happen may take.
const WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Tcp,
    Ws,
}

/// One `#[tokio::test]` per transport for each scenario `async fn name(via: Via)` of the file
/// `section`.
macro_rules! on_both_transports {
    ($($section:ident :: $name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tcp() {
                super::$section::$name(super::Via::Tcp).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ws() {
                super::$section::$name(super::Via::Ws).await
            }
        }
    )*};
}

on_both_transports!(
    connection::a_valid_token_connects_whatever_the_user_name,
    connection::missing_forged_and_expired_tokens_are_refused_with_code_5,
    connection::another_tenants_token_is_valid_in_its_own_tree_only,
    connection::the_connection_is_closed_at_the_tokens_exp,
    connection::keep_alive_drops_a_silent_client_and_keeps_a_pinging_one,
    server_publishes::a_direct_message_reaches_recipient_and_sender,
    server_publishes::group_changes_reach_every_member_and_removed_ones,
    server_publishes::a_read_receipt_reaches_the_sender,
    server_publishes::a_read_conversation_is_told_to_reader_and_peer,
    server_publishes::archive_unarchive_and_delete_are_told_to_the_owner,
    client_publishes::a_send_over_mqtt_is_a_send_and_bad_payloads_change_nothing,
    client_publishes::presence_is_retained_and_the_will_goes_out_on_abrupt_disconnects_only,
    refusals::subscriptions_outside_the_users_tree_get_0x80,
    refusals::forbidden_publishes_disconnect_and_change_nothing,
    refusals::ids_with_wildcards_in_topics_are_refused,
    client_ids::the_same_client_id_replaces_the_first_connection,
    client_ids::anonymous_clients_get_distinct_ids,
    bounds::retained_messages_are_at_most_8_per_user_and_1_kib_each,
    bounds::a_subscribe_replays_each_retained_message_once,
    bounds::a_disconnected_presence_clears_its_retained_message,
    bounds::at_most_50_subscriptions_per_connection,
    bounds::a_client_that_acks_is_never_disconnected_by_the_in_flight_window,
);

// Over TCP only: the slow reader shrinks its socket's receive buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_disconnected_and_others_keep_receiving() {
    slow_client::a_slow_client_is_disconnected_and_others_keep_receiving().await
}

// ---------------------------------------------------------------------------------------------
// The server, its log drained (a flood of warnings must not fill the pipe and stall it)

fn start_logged() -> (Server, Log) {
    let server = crate::support::start();
    let log = server.log.clone();
    (server, log)
}

fn start() -> Server {
    start_logged().0
}

// ---------------------------------------------------------------------------------------------
// The HTTP API, through the binary's one (blocking) HTTP client

/// Runs a blocking call without stalling the runtime's other tasks (the MQTT clients' loops).
fn blocking<T>(call: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(call)
}

/// Any call: its status, and its body as JSON (or as a JSON string when it is not JSON).
async fn http(
    server: &Server,
    method: &str,
    path: &str,
    bearer: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let response = blocking(|| server.call(method, path, Some(bearer), body.cloned()));
    (response.status, response.json_or_text())
}

/// A call that must succeed (2xx); its body.
async fn ok(server: &Server, method: &str, path: &str, bearer: &str, body: Option<Value>) -> Value {
    let (status, answer) = http(server, method, path, bearer, body.as_ref()).await;
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {answer}"
    );
    answer
}

/// Sends over HTTP as `from` (in `app`); the stored message.
async fn send_in(server: &Server, app: &str, from: &str, body: Value) -> Value {
    blocking(|| server.send_in(app, &token(from, app, false), body))
}

async fn send(server: &Server, from: &str, body: Value) -> Value {
    send_in(server, APP, from, body).await
}

async fn timeline(server: &Server, user: &str, with: &str) -> Vec<Value> {
    blocking(|| server.timeline(user, with, &tok(user)))
}

async fn conversations(server: &Server, user: &str) -> Vec<Value> {
    blocking(|| server.conversations(user, &tok(user)))
}

async fn archived(server: &Server, user: &str) -> Vec<Value> {
    blocking(|| server.archived(user, &tok(user)))
}

/// Every field of `expected` has that value in `actual`.
fn assert_fields(actual: &Value, expected: Value, what: &str) {
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&actual[field], value, "{what}: field `{field}` of {actual}");
    }
}
