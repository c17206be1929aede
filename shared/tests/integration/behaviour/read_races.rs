//! A read mark and the unread count agree (issue #16, item 9): a read computes its time, then
//! writes `unread_count = 0` and `read_at`; a message applied in between, newer than that time,
//! must not end up both uncounted and newer than the mark. The mark is the later of the read's
//! time and the newest message the row was given, so every message applied before the mark is
//! at or before `read_at`, and every one applied after counts as unread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::make_group;
use crate::common::{APP, Harness, id, input, user};
use chat21::model::status;
use chat21::ops::messages::SendMessage;
use chat21::ops::{conversations, deliver};
use chat21::ports::Streamed;

/// The messages `owner` received from `from` dated after `read_at`.
async fn newer_than_mark(h: &Harness, owner: &str, from: &str) -> (u64, usize) {
    let row = h.conversation(owner, from).await.unwrap();
    let read_at = row.read_at.unwrap_or(0);
    let newer = h
        .timeline(owner, from)
        .await
        .iter()
        .filter(|m| m.sender != owner && m.timestamp > read_at)
        .count();
    (row.unread_count, newer)
}

/// The exact interleaving: the read takes its time, a newer message is applied, the read
/// writes its mark.
pub(super) async fn a_message_applied_between_the_reads_clock_and_its_write_is_covered(
    h: &Harness,
) {
    h.send(&user("a"), "b", "one").await.unwrap();
    h.deliver_all().await;
    let at = h.deps.now();
    let two = h.send(&user("a"), "b", "two").await.unwrap();
    h.deliver_all().await;
    assert!(two.timestamp > at);
    let marked = h
        .deps
        .store
        .mark_read(APP, "b", "a", at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(marked.unread_count, 0);
    assert_eq!(marked.read_at, Some(two.timestamp), "the mark covers it");
    assert_eq!(newer_than_mark(h, "b", "a").await, (0, 0));
    // Applied after the mark: counted, and newer than it.
    h.send(&user("a"), "b", "three").await.unwrap();
    h.deliver_all().await;
    assert_eq!(newer_than_mark(h, "b", "a").await, (1, 1));
    // A read of an unknown conversation is still none.
    assert!(
        h.deps
            .store
            .mark_read(APP, "b", "nobody", at)
            .await
            .unwrap()
            .is_none()
    );
}

/// A group's messages are ordered by place, not time: the message a row was given last is not
/// the newest dated. The mark covers the newest.
pub(super) async fn a_group_read_covers_a_message_dated_later_than_the_last(h: &Harness) {
    make_group(h, "group-r", &["b"]).await;
    let ahead = SendMessage {
        timestamp: Some(h.deps.now() + 120_000),
        ..input("group-r", "dated two minutes ahead")
    };
    let ahead = h.send_with(&user("u1"), ahead).await.unwrap();
    h.deliver_all().await;
    h.send(&user("u1"), "group-r", "placed after, dated now")
        .await
        .unwrap();
    h.deliver_all().await;
    let row = h.conversation("b", "group-r").await.unwrap();
    assert_eq!(row.last_message_text, "placed after, dated now");
    conversations::mark_read(&h.deps, &user("b"), id("b"), &id("group-r"))
        .await
        .unwrap();
    let row = h.conversation("b", "group-r").await.unwrap();
    assert_eq!(row.read_at, Some(ahead.timestamp));
    assert_eq!(newer_than_mark(h, "b", "group-r").await, (0, 0));
}

/// The peer's `peer_read_at` (status 250 on their messages) is the reader's mark.
pub(super) async fn the_peer_sees_the_same_mark(h: &Harness) {
    let ahead = SendMessage {
        timestamp: Some(h.deps.now() + 60_000),
        ..input("b", "dated a minute ahead")
    };
    h.send_with(&user("a"), ahead).await.unwrap();
    h.deliver_all().await;
    conversations::mark_read(&h.deps, &user("b"), id("b"), &id("a"))
        .await
        .unwrap();
    let mark = h.conversation("b", "a").await.unwrap().read_at;
    assert_eq!(h.conversation("a", "b").await.unwrap().peer_read_at, mark);
    let theirs = h.read_timeline("a", "b").await;
    assert_eq!(
        theirs[0].status,
        status::RETURN_RECEIPT,
        "read, as b's mark says"
    );
}

/// splitmix64: a small seeded generator, so that every interleaving tried can be tried again
/// (no dependency for a dozen lines).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// When something happened, as an interval of a counter read before and after it: its
/// effect took place in between.
type Span = (u64, u64);

/// 100 sends a→b at random moments (some dated ahead, as clients may) and 10 reads by b
/// after random numbers of them were applied, with the deliver step running alongside;
/// repeated with different seeds. After
/// delivery settles: no message b received is newer than the mark unless it counts as unread,
/// every message applied before the last read's write is covered by the mark, and the count is
/// the messages applied after that write.
pub(super) async fn reads_racing_sends_agree_with_the_unread_count(h: &Harness) {
    // moto answers one request at a time: a round there takes some 20 s.
    let seeds = if h.dynamo.is_some() { 2 } else { 24 };
    for seed in 0..seeds {
        race(h, seed).await;
    }
}

async fn race(h: &Harness, seed: u64) {
    let (a, b) = (format!("a{seed}"), format!("b{seed}"));
    let mut rng = Rng(seed);
    let ticks = Arc::new(AtomicU64::new(0));
    let tick = {
        let ticks = ticks.clone();
        move || ticks.fetch_add(1, Ordering::SeqCst)
    };
    // The deliver step, recording when each message was applied.
    let applied: Arc<Mutex<HashMap<String, Span>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let deliverer = {
        let (h, applied, stop, tick) = (h.clone(), applied.clone(), stop.clone(), tick.clone());
        tokio::spawn(async move {
            loop {
                let done = stop.load(Ordering::SeqCst);
                let written = h.take_written().await;
                if written.is_empty() {
                    if done {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                for w in &written {
                    let before = tick();
                    deliver::handle(&h.deps, w).await.unwrap();
                    let after = tick();
                    if let Streamed::Message(m) = w {
                        let id = m.message.message_id.clone();
                        applied.lock().unwrap().insert(id, (before, after));
                    }
                }
            }
        })
    };
    // Sends at random moments over this many milliseconds.
    let spread = if h.dynamo.is_some() { 1_000 } else { 60 };
    let mut sends = Vec::new();
    for i in 0..100 {
        let (h, from, to) = (h.clone(), user(&a), b.clone());
        let delay = rng.below(spread);
        let ahead = (rng.below(5) == 0).then(|| 1 + rng.below(3_000));
        sends.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let body = SendMessage {
                timestamp: ahead.map(|ms| h.deps.now() + ms),
                ..input(&to, &format!("m{i}"))
            };
            h.send_with(&from, body).await.unwrap()
        }));
    }
    // Each read right after a random number of messages were applied (whatever the store's
    // speed), racing the deliveries that follow.
    let reads = {
        let (h, reader, with) = (h.clone(), b.clone(), a.clone());
        let (applied, tick) = (applied.clone(), tick.clone());
        // Up to a random point of the run, so that the last read falls anywhere in it.
        let until = 10 + rng.below(91);
        let mut thresholds: Vec<usize> = (0..10).map(|_| 1 + rng.below(until) as usize).collect();
        thresholds.sort_unstable();
        tokio::spawn(async move {
            let mut last: Option<Span> = None;
            for threshold in thresholds {
                while applied.lock().unwrap().len() < threshold {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                let before = tick();
                let read =
                    conversations::mark_read(&h.deps, &user(&reader), id(&reader), &id(&with))
                        .await;
                let after = tick();
                match read {
                    Ok(()) => last = Some((before, after)),
                    Err(e) => assert_eq!(e.status(), 404, "{e}"),
                }
            }
            last
        })
    };
    let mut sent = Vec::new();
    for send in sends {
        sent.push(send.await.unwrap());
    }
    let last_read = reads.await.unwrap();
    stop.store(true, Ordering::SeqCst);
    deliverer.await.unwrap();

    let row = h.conversation(&b, &a).await.unwrap();
    let applied = applied.lock().unwrap().clone();
    assert_eq!(applied.len(), 100, "seed {seed}");
    let (unread, newer) = newer_than_mark(h, &b, &a).await;
    assert!(
        unread >= newer as u64,
        "seed {seed}: {newer} messages newer than the mark, {unread} unread"
    );
    let Some((read_from, read_to)) = last_read else {
        assert_eq!(unread, 100, "seed {seed}: never read");
        return;
    };
    let read_at = row.read_at.unwrap();
    let (mut before, mut after, mut during) = (0, 0, 0);
    for message in &sent {
        let (from, to) = applied[&message.message_id];
        if to < read_from {
            before += 1;
            assert!(
                message.timestamp <= read_at,
                "seed {seed}: {} applied before the read, dated {} after its mark {read_at}",
                message.text,
                message.timestamp
            );
        } else if from > read_to {
            after += 1;
        } else {
            during += 1;
        }
    }
    assert!(
        (after..=after + during).contains(&unread),
        "seed {seed}: {unread} unread; {after} applied after the last read, {during} during it, {before} before"
    );
}
