//! Deliver's fan-out of one message to a group of 1000 members: time and DynamoDB requests,
//! on the embedded store and (when `AWS_ENDPOINT_URL` points at moto, as `scripts/bench`
//! arranges) on DynamoDB. Prints a small report; nothing here is asserted.
//!
//! Each message is sent through the operations (it is written once, into the group's
//! history, at its place) and taken from the store's stream as the deliver step receives it;
//! only `deliver::handle` on it is measured.

#[path = "../tests/integration/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use chat21::ops::messages::SendMessage;
use chat21::ops::{deliver, groups};
use chat21::ports::{Origin, Streamed, Written};
use common::{Harness, id, user};

const MEMBERS: usize = 1000;
const GROUP: &str = "group-bench";

/// Builds a group of `MEMBERS` through the operations (98 member changes per call), then
/// delivers the setup's changes, so that what is measured is one message's fan-out alone.
async fn seed(h: &Harness) {
    let all: Vec<_> = (0..MEMBERS - 1)
        .map(|i| id(&format!("member-{i:04}")))
        .collect();
    let input = groups::CreateGroup {
        name: "Bench".into(),
        members: all[..97].to_vec(),
        group_id: Some(id(GROUP)),
        attributes: Default::default(),
        owner: None,
    };
    groups::create(&h.deps, &user("owner"), input)
        .await
        .expect("create");
    let mut wanted = all[..97].to_vec();
    wanted.push(id("owner"));
    for chunk in all[97..].chunks(98) {
        wanted.extend(chunk.iter().cloned());
        wanted.sort();
        groups::set_members(&h.deps, &user("owner"), &id(GROUP), wanted.clone())
            .await
            .expect("set members");
    }
    assert_eq!(h.members(GROUP).await.len(), MEMBERS);
    h.deliver_all().await;
}

/// Sends the `i`-th group message (written once into the group's history) and returns it as
/// the store's stream hands it to the deliver step.
async fn sent(h: &Harness, i: usize) -> Streamed {
    let input = SendMessage {
        channel_type: Some("group".into()),
        ..common::input(GROUP, &format!("hello, everyone ({i})"))
    };
    h.send_with(&user("owner"), input).await.expect("send");
    let mut written = h.take_written().await;
    assert_eq!(written.len(), 1, "one new message on the stream");
    let streamed = written.remove(0);
    assert!(
        matches!(
            &streamed,
            Streamed::Message(Written {
                origin: Origin::Group { .. },
                ..
            })
        ),
        "a group message: {streamed:?}"
    );
    streamed
}

/// A member's unread count (to see what a redelivery changed).
async fn unread(h: &Harness) -> u64 {
    h.conversation("member-0000", GROUP)
        .await
        .map_or(0, |c| c.unread_count)
}

/// Delivers `streamed` again: its time, its DynamoDB requests, and a member's unread count
/// before and after.
async fn redeliver(h: &Harness, streamed: &Streamed) -> (Duration, u64, u64, u64) {
    let requests = || h.dynamo.as_ref().map_or(0, |d| d.requests());
    let unread_before = unread(h).await;
    let before = requests();
    let started = Instant::now();
    deliver::handle(&h.deps, streamed).await.expect("redeliver");
    let elapsed = started.elapsed();
    let count = requests() - before;
    h.events.take();
    (elapsed, count, unread_before, unread(h).await)
}

async fn run(name: &str, h: &Harness, rounds: usize) {
    seed(h).await;
    let requests = || h.dynamo.as_ref().map_or(0, |d| d.requests());
    let mut times = Vec::new();
    let mut counts = Vec::new();
    let mut delivered = Vec::new();
    for i in 0..rounds {
        let streamed = sent(h, i).await;
        let before = requests();
        let started = Instant::now();
        deliver::handle(&h.deps, &streamed).await.expect("deliver");
        times.push(started.elapsed());
        counts.push(requests() - before);
        // Deliver's own writes (the members' rows) are on the stream too; none is a message.
        assert!(h.take_written().await.is_empty());
        h.events.take();
        delivered.push(streamed);
    }
    let mean = times.iter().sum::<Duration>() / rounds as u32;
    println!("{name}: fan-out to {MEMBERS} members, mean of {rounds}: {mean:.2?} per message");
    if h.dynamo.is_some() {
        println!(
            "{name}: DynamoDB requests per message: {counts:?} (expected {}: 1 members query + 1 conditional UpdateItem per member's row)",
            1 + MEMBERS
        );
    }
    // A redelivery of the newest message (a retried batch), then of the first one, older
    // than the rows' last message by now.
    let cases = [
        ("the newest message", delivered.last()),
        ("the first message", delivered.first()),
    ];
    for (which, streamed) in cases {
        let streamed = streamed.expect("one round at least");
        let (elapsed, count, before, after) = redeliver(h, streamed).await;
        let requests = if h.dynamo.is_some() {
            format!(", {count} DynamoDB requests")
        } else {
            String::new()
        };
        println!(
            "{name}: redelivery of {which}: {elapsed:.2?}{requests}; member-0000's unread count {before} -> {after}"
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        run("sqlite", &Harness::sqlite(), 20).await;
        if std::env::var("AWS_ENDPOINT_URL").is_ok() {
            run("dynamodb (moto)", &Harness::dynamo().await, 3).await;
        } else {
            println!("dynamodb (moto): skipped, AWS_ENDPOINT_URL is not set (use scripts/bench)");
        }
    });
}
