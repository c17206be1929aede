//! Group changes' system messages, delivered: each member's conversation updated once for the
//! whole run of a batch of changes (so a change of n members costs O(n) writes, not O(n²), and
//! a burst of joins is delivered together), joiners' views of the history opened on the newest
//! messages before their join, leavers' runs ending with their own `MEMBER_LEFT_GROUP` (their
//! view was closed there when the change was announced), and what every member's clients are
//! told.

use std::collections::HashMap;

use futures_util::future::join_all;

use crate::error::Result;
use crate::keys;
use crate::model::{GroupChange, Message};
use crate::ops::{Deps, deliver};
use crate::ports::{Applied, ConversationKind, Push, RowUpdate};
use crate::realtime::push;

/// How many group messages a joiner receives (the newest ones before the join).
pub const HISTORY_ON_JOIN: usize = 200;
/// Conversation updates in flight at once.
const CONCURRENCY: usize = 16;

/// The member a `MEMBER_LEFT_GROUP` message is about.
fn left_member(message: &Message) -> Option<&str> {
    let label = message.attribute("messagelabel")?;
    (label.get("key")?.as_str()? == "MEMBER_LEFT_GROUP")
        .then(|| label.get("parameters")?.get("member_id")?.as_str())
        .flatten()
}

/// Each member a run's `MEMBER_LEFT_GROUP` messages are about, with that goodbye's order key:
/// where their view of the history ends.
pub fn goodbyes(placed: &[(Message, u64)]) -> Vec<(&str, String)> {
    placed
        .iter()
        .filter_map(|(m, seq)| Some((left_member(m)?, keys::group_order(*seq, m))))
        .collect()
}

/// Delivers the system messages (`placed`, in history order) of a batch of changes to
/// `members` (the members now) and to the members the changes removed, and tells their
/// connected clients: each chunk of members right after its writes, so that what is held in
/// memory is bounded by the chunk, not by members × messages (a batch of joins into a group
/// of a thousand is about a million `clientadded`). A failure stops there; the retry writes
/// nothing twice and publishes again (real time is at least once).
pub async fn deliver(
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
    for chunk in targets.chunks(CONCURRENCY) {
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
    if deps.store.apply(target, group, &update).await? == (Applied::Newer { unarchived: true }) {
        // Dated by the change that wrote the run's last message (a system message's time).
        let at = last.timestamp;
        pushes.push(deliver::unarchived(deps, &last.app_id, target, group, at).await?);
    }
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
