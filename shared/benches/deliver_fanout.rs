//! Deliver's fan-out of one message to a group of 1000 members: time and DynamoDB requests,
//! on the embedded store and (when `AWS_ENDPOINT_URL` points at moto, as `scripts/bench`
//! arranges) on DynamoDB. Prints a small report; nothing here is asserted.

#[path = "../tests/integration/common.rs"]
mod common;

use std::time::{Duration, Instant};

use chat21::events::Event;
use chat21::model::{ChannelType, Message, status};
use chat21::ops::{deliver, groups};
use common::{APP, Harness, id, user};

const MEMBERS: usize = 1000;
const GROUP: &str = "group-bench";

/// Builds a group of `MEMBERS` through the operations (98 member changes per call).
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
    h.events.take();
}

fn message(i: usize) -> Event {
    let m = Message {
        message_id: format!("bench-{i}"),
        sender: "owner".into(),
        sender_fullname: "Owner".into(),
        recipient: GROUP.into(),
        recipient_fullname: "Bench".into(),
        text: "hello, everyone".into(),
        kind: "text".into(),
        channel_type: ChannelType::Group,
        attributes: None,
        metadata: None,
        timestamp: 1_800_000_000_000 + i as u64,
        status: status::SENT,
        app_id: APP.into(),
        timeline_of: GROUP.into(),
        convers_with: GROUP.into(),
    };
    Event::message_sent(&m, 0)
}

async fn run(name: &str, h: &Harness, rounds: usize) {
    seed(h).await;
    let requests = || h.dynamo.as_ref().map_or(0, |d| d.requests());
    let mut times = Vec::new();
    let mut counts = Vec::new();
    for i in 0..rounds {
        let event = message(i);
        let before = requests();
        let started = Instant::now();
        deliver::handle(&h.deps, &event).await.expect("deliver");
        times.push(started.elapsed());
        counts.push(requests() - before);
        h.events.take();
    }
    let redelivered = {
        let before = requests();
        let started = Instant::now();
        deliver::handle(&h.deps, &message(0))
            .await
            .expect("redeliver");
        (started.elapsed(), requests() - before)
    };
    let mean = times.iter().sum::<Duration>() / rounds as u32;
    println!("{name}: fan-out to {MEMBERS} members, mean of {rounds}: {mean:.2?} per message");
    if h.dynamo.is_some() {
        println!(
            "{name}: DynamoDB requests per message: {counts:?} (1 members query + ceil({MEMBERS}/50) transactions)"
        );
        println!(
            "{name}: redelivery of a delivered message: {:.2?}, {} requests, nothing written",
            redelivered.0, redelivered.1
        );
    } else {
        println!(
            "{name}: redelivery of a delivered message: {:.2?}",
            redelivered.0
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        run("embedded", &Harness::embedded(), 20).await;
        if std::env::var("AWS_ENDPOINT_URL").is_ok() {
            run("dynamodb (moto)", &Harness::dynamo().await, 3).await;
        } else {
            println!("dynamodb (moto): skipped, AWS_ENDPOINT_URL is not set (use scripts/bench)");
        }
    });
}
