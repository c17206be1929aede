//! A group change's system messages, delivered: each member's conversation updated once for
//! the whole run (so a change of n members costs O(n) writes, not O(n²)), joiners' views of the
//! history opened on the newest messages before their join, leavers' closed on their own
//! `MEMBER_LEFT_GROUP` (so nothing follows it), and what every member's clients are told.

use std::collections::HashMap;

use futures_util::future::join_all;

use crate::error::Result;
use crate::keys::{self, Position};
use crate::model::{GroupChange, Message};
use crate::ops::Deps;
use crate::ports::{Applied, ConversationKind, PageRequest, RowUpdate, Timeline};
use crate::realtime::{Push, push};

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

/// Delivers the `placed` system messages of `change` to `members` (after the change) and to
/// the members it removed. Returns the publishes for connected clients.
pub async fn deliver(
    deps: &Deps,
    app: &str,
    group: &str,
    change: &GroupChange,
    members: &[String],
    placed: &[(Message, u64)],
) -> Result<Vec<Push>> {
    if placed.is_empty() {
        return Ok(Vec::new());
    }
    let orders: Vec<String> = placed
        .iter()
        .map(|(m, seq)| keys::group_order(*seq, m))
        .collect();
    // A leaver's run ends with their own MEMBER_LEFT_GROUP.
    let ends: HashMap<&str, usize> = placed
        .iter()
        .enumerate()
        .filter_map(|(i, (m, _))| left_member(m).map(|member| (member, i + 1)))
        .collect();
    let mut targets: Vec<&str> = members.iter().map(String::as_str).collect();
    targets.extend(change.left.iter().map(String::as_str));
    targets.sort_unstable();
    targets.dedup();
    let mut pushes = Vec::new();
    for chunk in targets.chunks(CONCURRENCY) {
        let runs = join_all(chunk.iter().map(|target| {
            let end = ends.get(target).copied().unwrap_or(placed.len());
            deliver_run(deps, app, group, target, &placed[..end], &orders[..end])
        }))
        .await;
        for run in runs {
            pushes.extend(run?);
        }
    }
    // Leavers see the history up to their own MEMBER_LEFT_GROUP, nothing after.
    for leaver in &change.left {
        if let Some(end) = ends.get(leaver.as_str()) {
            deps.store
                .close_window(app, leaver, group, &orders[end - 1])
                .await?;
        }
    }
    if !change.joined.is_empty() {
        pushes.extend(open_history(deps, app, group, change, &orders[0]).await?);
    }
    Ok(pushes)
}

/// One member's run: their conversation updated once, their clients told of each message.
async fn deliver_run(
    deps: &Deps,
    app: &str,
    group: &str,
    target: &str,
    run: &[(Message, u64)],
    orders: &[String],
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
    };
    let mut pushes = Vec::new();
    if deps.store.apply(target, group, &update).await? == (Applied::Newer { unarchived: true }) {
        pushes.push(push::unarchived(app, target, group));
    }
    pushes.extend(views.iter().map(push::message_added));
    Ok(pushes)
}

/// Joiners see the newest messages from before their join (and every later one); their
/// clients are told of those older ones, oldest first.
async fn open_history(
    deps: &Deps,
    app: &str,
    group: &str,
    change: &GroupChange,
    first: &str,
) -> Result<Vec<Push>> {
    let Some(floor) = deps
        .store
        .history_floor(app, group, first, HISTORY_ON_JOIN)
        .await?
    else {
        return Ok(Vec::new());
    };
    let history = Timeline::History {
        app: app.to_string(),
        group: group.to_string(),
    };
    let page = PageRequest {
        limit: HISTORY_ON_JOIN,
        after: Some(Position {
            order: first.to_string(),
        }),
    };
    let before = deps
        .store
        .list_timeline(&history, None, None, &page)
        .await?;
    let mut pushes = Vec::new();
    for joiner in &change.joined {
        deps.store.open_window(app, joiner, group, &floor).await?;
        pushes.extend(
            before
                .items
                .iter()
                .rev()
                .map(|m| push::message_added(&m.view_for(joiner))),
        );
    }
    Ok(pushes)
}
