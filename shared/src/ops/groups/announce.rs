//! A group change's follow-up in its call: its system messages into the group's history and
//! its events, then the change handed to the deliver step, which delivers it to every member
//! ([`delivery`](super::delivery)).
//!
//! Every change is committed atomically together with a [`GroupChange`] record. The follow-up
//! runs right after; if that fails the call answers 503 and the record stays (marked stalled),
//! and the next operation on the group (the client's retry, or anyone's call) finishes it
//! first. So a change is never announced twice by a retry, and never silently left
//! unannounced. Once announced the record is marked settled, which hands it to the deliver
//! step through the store's stream: a call costs O(1) writes whatever the group's size, and
//! the O(members) delivery is retried on its own.

use futures_util::future::join_all;
use serde_json::{Map, Value, json};
use tracing::warn;

use crate::error::{Error, Result};
use crate::events::{Event, MemberChange};
use crate::ids::Id;
use crate::keys;
use crate::model::{
    ChangeKind, ChannelType, Group, GroupChange, GroupMeta, Message, SYSTEM_SENDER, status,
};
use crate::ops::Deps;

/// A pending change older than this is finished by any call on the group: well beyond the
/// longest a function may run (its timeout), so its own call is surely over.
const ABANDONED_AFTER_MS: u64 = 60_000;
/// A settled change still pending after this was not delivered (its stream record's retries
/// ran out): the next call on the group hands it over again.
const DELIVERY_ABANDONED_AFTER_MS: u64 = 15 * 60_000;

/// A system message of `change`, the `index`-th it produces (ids and order are deterministic,
/// so finishing a change twice writes the same messages).
fn system_message(
    meta: &GroupMeta,
    change: &GroupChange,
    index: usize,
    text: String,
    key: &str,
    parameters: Value,
) -> Message {
    let mut attributes = Map::new();
    attributes.insert("subtype".into(), json!("info"));
    attributes.insert("updateconversation".into(), json!(true));
    attributes.insert(
        "messagelabel".into(),
        json!({ "key": key, "parameters": parameters }),
    );
    Message {
        message_id: format!("{}-{index:04}", change.id),
        sender: SYSTEM_SENDER.to_string(),
        sender_fullname: "System".to_string(),
        recipient: meta.info.uid.clone(),
        recipient_fullname: meta.info.name.clone(),
        text,
        kind: "text".to_string(),
        channel_type: ChannelType::Group,
        attributes: Some(attributes),
        metadata: None,
        timestamp: change.at,
        status: status::SENT,
        app_id: meta.info.app_id.clone(),
        timeline_of: meta.info.uid.clone(),
        convers_with: meta.info.uid.clone(),
    }
}

/// The member a `MEMBER_LEFT_GROUP` message is about.
pub(super) fn left_member(message: &Message) -> Option<&str> {
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

/// `data` of a member event. Stored members and changes hold valid ids.
fn member_change(
    meta: &GroupMeta,
    member: &str,
    message: Option<&Message>,
) -> Result<MemberChange> {
    Ok(MemberChange {
        member_id: Id::parse("member_id", member)?,
        group_id: Id::parse("group_id", meta.info.uid.as_str())?,
        group_name: meta.info.name.clone(),
        message: message.cloned(),
    })
}

/// A change's system messages, in order, and its events.
fn compose(meta: &GroupMeta, change: &GroupChange) -> Result<(Vec<Message>, Vec<Event>)> {
    let mut messages = Vec::new();
    let mut member_events = Vec::new();
    if change.kind == ChangeKind::Created {
        messages.push(system_message(
            meta,
            change,
            0,
            "Group created".into(),
            "GROUP_CREATED",
            json!({ "creator": change.actor }),
        ));
    }
    for member in &change.joined {
        let message = system_message(
            meta,
            change,
            messages.len(),
            format!("{member} added to group"),
            "MEMBER_JOINED_GROUP",
            json!({ "member_id": member, "fullname": member, "firstname": "", "lastname": "" }),
        );
        if change.kind != ChangeKind::Created {
            let data = member_change(meta, member, Some(&message))?;
            member_events.push(Event::member_joined(&meta.info.app_id, data, change.at));
        }
        messages.push(message);
    }
    for member in &change.left {
        let message = system_message(
            meta,
            change,
            messages.len(),
            format!("{member} left the group"),
            "MEMBER_LEFT_GROUP",
            json!({ "member_id": member }),
        );
        let data = member_change(meta, member, Some(&message))?;
        member_events.push(Event::member_left(&meta.info.app_id, data, change.at));
        messages.push(message);
    }
    let mut events: Vec<Event> = messages
        .iter()
        .map(|m| Event::message_sent(m, change.at))
        .collect();
    events.extend(member_events);
    Ok((messages, events))
}

/// The places of a change's system messages in the group's history: taken with its commit,
/// or else allocated now and recorded on the change, so that finishing it again puts them at
/// the same places.
async fn place(
    deps: &Deps,
    meta: &GroupMeta,
    change: &GroupChange,
    messages: Vec<Message>,
) -> Result<Vec<(Message, u64)>> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let (app, group) = (&meta.info.app_id, &meta.info.uid);
    let first = match change.places_from {
        Some(first) => first,
        None => {
            let count = messages.len() as u64;
            let first = deps
                .store
                .next_seq(app, group, count)
                .await?
                .ok_or_else(|| Error::not_found(format!("group {group} not found")))?;
            deps.store
                .record_places(app, group, &change.id, first)
                .await?
        }
    };
    Ok(messages.into_iter().zip(first..).collect())
}

/// Runs a committed change's follow-up: its system messages into the group's history, the
/// leavers' views closed on their goodbye, its events, then hands the change to the deliver
/// step (which delivers it to every member: [`delivery`](super::delivery)). Safe to run
/// more than once.
pub async fn settle(deps: &Deps, meta: &GroupMeta, change: &GroupChange) -> Result<()> {
    let (app, group) = (&meta.info.app_id, &meta.info.uid);
    let (messages, mut events) = compose(meta, change)?;
    let placed = place(deps, meta, change, messages).await?;
    deps.store.put_system_messages(&placed).await?;
    // Leavers' views end on their goodbye now: nothing sent after it is theirs to read.
    let closes =
        goodbyes(&placed)
            .into_iter()
            .map(|(leaver, order)| async move {
                deps.store.close_window(app, leaver, group, &order).await
            });
    for closed in join_all(closes).await {
        closed?;
    }
    let members = if change.kind == ChangeKind::Created {
        change.joined.clone()
    } else {
        deps.store.members(app, group).await?
    };
    let group = Group::new(meta, members);
    match change.kind {
        ChangeKind::Created => events.push(Event::group_created(&group, change.at)),
        ChangeKind::Renamed | ChangeKind::AttributesSet | ChangeKind::MembersSet => {
            events.push(Event::group_updated(&group, change.at))
        }
        ChangeKind::Joined | ChangeKind::Left => {}
    }
    deps.events.publish(&events).await?;
    let settled = GroupChange {
        places_from: placed.first().map(|(_, seq)| *seq),
        ..change.clone()
    };
    deps.store.mark_settled(app, &meta.info.uid, &settled).await
}

/// Announces a change right after its commit. If that fails the change is marked stalled, so
/// that the next call on the group (typically the client's retry) finishes it.
pub async fn announce(deps: &Deps, meta: &GroupMeta, change: &GroupChange) -> Result<()> {
    let announced = settle(deps, meta, change).await;
    if let Err(e) = &announced {
        warn!(error = %e, change = %change.id, "group change left for the next call to announce");
        if let Err(mark) = deps
            .store
            .mark_stalled(&meta.info.app_id, &meta.info.uid, &change.id)
            .await
        {
            warn!(error = %mark, change = %change.id, "could not mark the change stalled");
        }
    }
    announced
}

/// Whether a pending change is owed by nobody: its call failed, or is surely over (older than
/// any call may run), or it was handed to the deliver step long enough ago that its delivery
/// must have failed for good. Fresh changes belong to calls (or deliveries) still running.
pub fn abandoned(deps: &Deps, change: &GroupChange) -> bool {
    let age = deps.now().saturating_sub(change.at);
    if change.settled {
        age >= DELIVERY_ABANDONED_AFTER_MS
    } else {
        change.stalled || age >= ABANDONED_AFTER_MS
    }
}
