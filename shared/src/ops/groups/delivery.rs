//! A group change's delivery (the deliver step's, once the change is settled): its system
//! messages to each member's conversation, updated once for the whole run of a batch of
//! changes (so a change of n members costs O(n) writes, not O(n²), and a burst of joins is
//! delivered together), joiners' views of the history opened on the newest messages before
//! their join, leavers' runs ending with their own `MEMBER_LEFT_GROUP` (their view was closed
//! there when the change was announced), what every member's clients are told, and then the
//! changes' records dropped.

use std::collections::HashMap;

use futures_util::future::join_all;

use super::announce::left_member;
use crate::error::Result;
use crate::keys;
use crate::model::{ChangeKind, Group, GroupChange, Message};
use crate::ops::Deps;
use crate::ops::rows::{self, FAN_OUT_CONCURRENCY};
use crate::ports::{ConversationKind, Push, RowUpdate};
use crate::realtime::push;

/// How many group messages a joiner receives (the newest ones before the join).
pub const HISTORY_ON_JOIN: usize = 200;
/// At most this many settled changes are delivered together.
const DELIVERY_BATCH: usize = 32;

/// Delivers a settled change (the deliver step), together with every other settled change of
/// the group still pending (a burst of joins costs one conversation update per member, not
/// one per join and member): their system messages to every member's conversation (and to
/// the members they removed), what their clients are told, then drops the changes' records.
/// Safe to run more than once; a change delivered with an earlier batch is skipped.
pub async fn deliver(deps: &Deps, app: &str, group: &str, change: &GroupChange) -> Result<()> {
    let Some(head) = deps.store.group_head(app, group).await? else {
        return Ok(());
    };
    if !head.pending.iter().any(|c| c.id == change.id) {
        return Ok(());
    }
    let mut batch: Vec<&GroupChange> = head.pending.iter().filter(|c| c.settled).collect();
    batch.sort_by_key(|c| (c.places_from.unwrap_or(0), c.id.clone()));
    match batch.iter().position(|c| c.id == change.id) {
        Some(at) => batch.truncate(DELIVERY_BATCH.max(at + 1)),
        None => {
            batch.truncate(DELIVERY_BATCH);
            batch.push(change);
        }
    }
    let mut runs = Vec::new();
    for c in batch {
        let run = match c.places_from {
            Some(first) => {
                deps.store
                    .history_run(app, group, first, c.message_count())
                    .await?
            }
            None => Vec::new(),
        };
        runs.push((c.clone(), run));
    }
    let members = deps.store.members(app, group).await?;
    to_members(deps, app, group, &runs, &members).await?;
    let mut pushes = Vec::new();
    let now = Group::new(&head.meta, members.iter().cloned());
    for (c, _) in &runs {
        // A creation pushes nothing on `groups/…` (REALTIME.md): the original server disabled
        // that push, and Chat21 clients count the updates of a change (its own suite fails on
        // one more). Members learn of the new group from its system messages' `clientadded`.
        if c.kind == ChangeKind::Created {
            continue;
        }
        // Every member now, and every member the change removed, hears of it.
        let mut told = members.clone();
        told.extend(c.left.iter().cloned());
        let notification = match (c.kind, c.joined.first(), c.left.first()) {
            (ChangeKind::Joined, Some(member), _) => Some(("MEMBER_JOINED_GROUP", member.as_str())),
            (ChangeKind::Left, _, Some(member)) => Some(("MEMBER_LEFT_GROUP", member.as_str())),
            _ => None,
        };
        pushes.extend(push::group_updated(&now, &told, notification));
    }
    deps.realtime.publish(&pushes).await?;
    for (c, _) in &runs {
        deps.store.finish_change(app, group, &c.id).await?;
    }
    Ok(())
}

/// Delivers the system messages (`placed`, in history order) of a batch of changes to
/// `members` (the members now) and to the members the changes removed, and tells their
/// connected clients: each chunk of members right after its writes, so that what is held in
/// memory is bounded by the chunk, not by members × messages (a batch of joins into a group
/// of a thousand is about a million `clientadded`). A failure stops there; the retry writes
/// nothing twice and publishes again (real time is at least once).
async fn to_members(
    deps: &Deps,
    app: &str,
    group: &str,
    changes: &[(GroupChange, Vec<(Message, u64)>)],
    members: &[String],
) -> Result<()> {
    let placed: Vec<(Message, u64)> = changes.iter().flat_map(|(_, run)| run.clone()).collect();
    if placed.is_empty() {
        return Ok(());
    }
    let orders: Vec<String> = placed
        .iter()
        .map(|(m, seq)| keys::group_order(*seq, m))
        .collect();
    let is_member = |user: &str| members.iter().any(|m| m == user);
    // A member who left (and is not back) sees the run up to their own MEMBER_LEFT_GROUP.
    let ends: HashMap<&str, usize> = placed
        .iter()
        .enumerate()
        .filter_map(|(i, (m, _))| left_member(m).map(|member| (member, i + 1)))
        .filter(|(member, _)| !is_member(member))
        .collect();
    let mut targets: Vec<&str> = members.iter().map(String::as_str).collect();
    targets.extend(ends.keys().copied());
    targets.sort_unstable();
    targets.dedup();
    for chunk in targets.chunks(FAN_OUT_CONCURRENCY) {
        let runs = join_all(chunk.iter().map(|target| {
            // A leaver's view was closed on their goodbye when the change was announced:
            // their run must not open it again.
            let (end, stays) = match ends.get(target) {
                Some(end) => (*end, false),
                None => (placed.len(), true),
            };
            deliver_run(deps, target, group, &placed[..end], &orders[..end], stays)
        }))
        .await;
        let mut pushes = Vec::new();
        for run in runs {
            pushes.extend(run?);
        }
        deps.realtime.publish(&pushes).await?;
    }
    // Joiners (still members) see the history from before their join.
    for (change, run) in changes {
        let joiners: Vec<&str> = change
            .joined
            .iter()
            .map(String::as_str)
            .filter(|j| is_member(j))
            .collect();
        if let (false, Some((first, seq))) = (joiners.is_empty(), run.first()) {
            let first = keys::group_order(*seq, first);
            open_history(deps, app, group, &joiners, &first).await?;
        }
    }
    Ok(())
}

/// One member's run: their conversation updated once, their clients told of each message.
async fn deliver_run(
    deps: &Deps,
    target: &str,
    group: &str,
    run: &[(Message, u64)],
    orders: &[String],
    member: bool,
) -> Result<Vec<Push>> {
    let views: Vec<Message> = run.iter().map(|(m, _)| m.view_for(target)).collect();
    let Some(last) = views.last() else {
        return Ok(Vec::new());
    };
    let update = RowUpdate {
        last: last.clone(),
        kind: ConversationKind::Group,
        orders: orders.to_vec(),
        unread: true,
        opens_window: member,
        newest_at: views
            .iter()
            .map(|v| v.timestamp)
            .max()
            .unwrap_or(last.timestamp),
    };
    let mut pushes = Vec::new();
    // Dated by the change that wrote the run's last message (a system message's time).
    rows::apply(deps, target, group, &update, last.timestamp, &mut pushes).await?;
    pushes.extend(views.iter().map(push::message_added));
    Ok(pushes)
}

/// Joiners see the newest messages from before their join (and every later one); their
/// clients are told of those older ones, oldest first. One read of the history.
async fn open_history(
    deps: &Deps,
    app: &str,
    group: &str,
    joiners: &[&str],
    first: &str,
) -> Result<()> {
    let before = deps
        .store
        .history_before(app, group, first, HISTORY_ON_JOIN)
        .await?;
    let Some((_, floor)) = before.last() else {
        return Ok(());
    };
    for joiner in joiners {
        deps.store.open_window(app, joiner, group, floor).await?;
        let pushes: Vec<Push> = before
            .iter()
            .rev()
            .map(|(m, _)| push::message_added(&m.view_for(joiner)))
            .collect();
        deps.realtime.publish(&pushes).await?;
    }
    Ok(())
}
