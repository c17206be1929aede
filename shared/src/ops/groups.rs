//! Groups: create, read, rename, attributes, join, leave, set members.
//!
//! Every change is committed atomically together with a [`GroupChange`] record. Its follow-up
//! (system messages into the group timeline, events on the topic) runs right after; if that
//! fails the call answers 503 and the record stays, and the next operation on the group (the
//! client's retry, or anyone's call) finishes it first. So a change is never announced twice
//! by a retry, and never silently left unannounced.

use serde_json::{Map, Value, json};
use tracing::warn;

use crate::error::{Error, Result};
use crate::events::{Event, EventType, MemberChange};
use crate::ids;
use crate::input::Fields;
use crate::keys;
use crate::model::{
    Caller, ChangeKind, ChannelType, Group, GroupChange, GroupMeta, Message, SYSTEM_SENDER, status,
};
use crate::ops::Deps;

/// Member changes one call may make: one DynamoDB transaction holds 100 writes, two of which
/// are the group meta and the change record.
pub const MAX_MEMBER_CHANGES: usize = 98;
const MAX_GROUP_NAME_CHARS: usize = 1024;
/// A pending change older than this is finished by any call on the group: well beyond the
/// longest a function may run (its timeout), so its own call is surely over.
const ABANDONED_AFTER_MS: u64 = 60_000;
/// How often set-members retries when another set-members moved the group under it.
const SET_MEMBERS_ATTEMPTS: usize = 8;

fn group_name(f: &Fields) -> Result<String> {
    let name = f.required_str("group_name")?;
    if name.trim().is_empty() {
        return Err(Error::bad_request("`group_name` must not be empty"));
    }
    if name.chars().count() > MAX_GROUP_NAME_CHARS {
        return Err(Error::bad_request(format!(
            "`group_name` is longer than {MAX_GROUP_NAME_CHARS} characters"
        )));
    }
    Ok(name)
}

fn too_many(count: usize) -> Error {
    Error::bad_request(format!(
        "{count} member changes in one call; at most {MAX_MEMBER_CHANGES} are allowed, make the rest in further calls"
    ))
}

/// `POST /api/{app_id}/groups`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateGroup {
    pub name: String,
    pub members: Vec<String>,
    pub group_id: Option<String>,
    pub attributes: Map<String, Value>,
    pub owner: Option<String>,
}

impl CreateGroup {
    pub fn from_fields(f: &Fields) -> Result<CreateGroup> {
        Ok(CreateGroup {
            name: group_name(f)?,
            members: f.member_ids("group_members")?,
            group_id: f.optional_id("group_id")?,
            attributes: f.optional_object("attributes")?.unwrap_or_default(),
            owner: f.optional_id("group_owner")?,
        })
    }
}

pub fn rename_input(f: &Fields) -> Result<String> {
    group_name(f)
}

pub fn attributes_input(f: &Fields) -> Result<Map<String, Value>> {
    f.required_object("attributes")
}

pub fn join_input(f: &Fields) -> Result<String> {
    f.required_id("member_id")
}

pub fn set_members_input(f: &Fields) -> Result<Vec<String>> {
    f.member_ids("members")
}

fn new_change(
    deps: &Deps,
    caller: &Caller,
    kind: ChangeKind,
    joined: Vec<String>,
    left: Vec<String>,
) -> GroupChange {
    let at = deps.now();
    GroupChange {
        id: format!("{at:013}-{}", deps.ids.new_id()),
        at,
        actor: caller.user_id.clone(),
        kind,
        joined,
        left,
        stalled: false,
    }
}

fn not_found(group: &str) -> Error {
    Error::not_found(format!("group {group} not found"))
}

fn owner_or_admin(caller: &Caller, meta: &GroupMeta) -> Result<()> {
    if caller.admin || caller.user_id == meta.owner {
        return Ok(());
    }
    Err(Error::forbidden(
        "only the group owner or an admin may do this",
    ))
}

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
        recipient: meta.uid.clone(),
        recipient_fullname: meta.name.clone(),
        text,
        kind: "text".to_string(),
        channel_type: ChannelType::Group,
        attributes,
        metadata: None,
        timestamp: change.at,
        status: status::SENT,
        app_id: meta.app_id.clone(),
        timeline_of: meta.uid.clone(),
        convers_with: meta.uid.clone(),
    }
}

/// Runs a committed change's follow-up: its system messages into the group timeline, then all
/// its events, then drops the change record. Safe to run more than once.
async fn settle(deps: &Deps, meta: &GroupMeta, change: &GroupChange) -> Result<()> {
    let mut messages = Vec::new();
    let mut events = Vec::new();
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
            let data = MemberChange {
                member_id: member.clone(),
                group_id: meta.uid.clone(),
                group_name: meta.name.clone(),
                history_before: Some(keys::order_of(&message)),
            };
            member_events.push(Event::member(
                EventType::JoinMember,
                &meta.app_id,
                &data,
                change.at,
            ));
        }
        events.push(Event::message_sent(&message, change.at));
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
        let data = MemberChange {
            member_id: member.clone(),
            group_id: meta.uid.clone(),
            group_name: meta.name.clone(),
            history_before: None,
        };
        member_events.push(Event::member(
            EventType::LeaveMember,
            &meta.app_id,
            &data,
            change.at,
        ));
        // The member who left receives it too, so their conversation with the group ends with it.
        events.push(Event {
            also_to: vec![member.clone()],
            ..Event::message_sent(&message, change.at)
        });
        messages.push(message);
    }
    if change.kind == ChangeKind::Created {
        events.insert(0, Event::message_sent(&messages[0], change.at));
        let group = Group::new(meta, change.joined.iter().cloned());
        events.push(Event::group(EventType::GroupCreated, &group, change.at));
    } else if matches!(
        change.kind,
        ChangeKind::Renamed | ChangeKind::AttributesSet | ChangeKind::MembersSet
    ) {
        let members = deps.store.members(&meta.app_id, &meta.uid).await?;
        events.push(Event::group(
            EventType::GroupUpdated,
            &Group::new(meta, members),
            change.at,
        ));
    }
    events.extend(member_events);
    deps.store.put_copies(&messages).await?;
    deps.events.publish(&events).await?;
    deps.store
        .finish_change(&meta.app_id, &meta.uid, &change.id)
        .await
}

/// Announces a change right after its commit. If that fails the change is marked stalled, so
/// that the next call on the group (typically the client's retry) finishes it.
async fn announce(deps: &Deps, meta: &GroupMeta, change: &GroupChange) -> Result<()> {
    let announced = settle(deps, meta, change).await;
    if let Err(e) = &announced {
        warn!(error = %e, change = %change.id, "group change left for the next call to announce");
        if let Err(mark) = deps
            .store
            .mark_stalled(&meta.app_id, &meta.uid, &change.id)
            .await
        {
            warn!(error = %mark, change = %change.id, "could not mark the change stalled");
        }
    }
    announced
}

/// Whether a pending change is owed by nobody: its call failed, or is surely over (older than
/// any call may run). Fresh changes belong to calls still running, which announce them.
fn abandoned(deps: &Deps, change: &GroupChange) -> bool {
    change.stalled || deps.now().saturating_sub(change.at) >= ABANDONED_AFTER_MS
}

/// Reads a group's meta, first finishing any abandoned change whose follow-up is still owed.
async fn load(deps: &Deps, app: &str, group: &str) -> Result<GroupMeta> {
    ids::validate("group_id", group)?;
    let head = deps
        .store
        .group_head(app, group)
        .await?
        .ok_or_else(|| not_found(group))?;
    for change in head.pending.iter().filter(|c| abandoned(deps, c)) {
        settle(deps, &head.meta, change).await?;
    }
    Ok(head.meta)
}

/// Creates a group; the creator (or, for an admin, `group_owner`) is owner and member.
pub async fn create(deps: &Deps, caller: &Caller, app: &str, input: CreateGroup) -> Result<Group> {
    let owner = match input.owner {
        Some(owner) if owner != caller.user_id && !caller.admin => {
            return Err(Error::forbidden(
                "only admins may create a group for someone else (`group_owner`)",
            ));
        }
        Some(owner) => owner,
        None => caller.user_id.clone(),
    };
    let mut members = input.members;
    if let Err(at) = members.binary_search(&owner) {
        members.insert(at, owner.clone());
    }
    if members.len() > MAX_MEMBER_CHANGES {
        return Err(too_many(members.len()));
    }
    let uid = input
        .group_id
        .unwrap_or_else(|| format!("group-{}", deps.ids.new_id()));
    let now = deps.now();
    let meta = GroupMeta {
        uid: uid.clone(),
        name: input.name,
        owner,
        attributes: input.attributes,
        created_on: now,
        updated_on: now,
        app_id: app.to_string(),
        version: 1,
    };
    let change = new_change(
        deps,
        caller,
        ChangeKind::Created,
        members.clone(),
        Vec::new(),
    );
    if deps.store.create_group(&meta, &members, &change).await? {
        announce(deps, &meta, &change).await?;
        return Ok(Group::new(&meta, members));
    }
    // The id is taken. If it is this caller's own create that committed but could not announce
    // itself (a 503), this retry finishes it; anything else is a conflict.
    if let Some(head) = deps.store.group_head(app, &uid).await?
        && head
            .pending
            .iter()
            .any(|c| c.kind == ChangeKind::Created && c.actor == caller.user_id)
    {
        for change in &head.pending {
            settle(deps, &head.meta, change).await?;
        }
        let members = deps.store.members(app, &uid).await?;
        return Ok(Group::new(&head.meta, members));
    }
    Err(Error::Conflict(format!("group {uid} already exists")))
}

/// A group, for its members and admins.
pub async fn get(deps: &Deps, caller: &Caller, app: &str, group: &str) -> Result<Group> {
    let meta = load(deps, app, group).await?;
    let members = deps.store.members(app, group).await?;
    if !caller.admin && !members.contains(&caller.user_id) {
        return Err(Error::forbidden(
            "only members and admins may read this group",
        ));
    }
    Ok(Group::new(&meta, members))
}

async fn update_meta(
    deps: &Deps,
    caller: &Caller,
    meta: GroupMeta,
    kind: ChangeKind,
) -> Result<()> {
    let change = new_change(deps, caller, kind, Vec::new(), Vec::new());
    if !deps.store.update_meta(&meta, &change).await? {
        return Err(not_found(&meta.uid));
    }
    announce(deps, &meta, &change).await
}

/// Renames a group (owner or admin).
pub async fn rename(
    deps: &Deps,
    caller: &Caller,
    app: &str,
    group: &str,
    name: String,
) -> Result<()> {
    let meta = load(deps, app, group).await?;
    owner_or_admin(caller, &meta)?;
    let meta = GroupMeta {
        name,
        updated_on: deps.now(),
        ..meta
    };
    update_meta(deps, caller, meta, ChangeKind::Renamed).await
}

/// Replaces a group's attributes (owner or admin).
pub async fn set_attributes(
    deps: &Deps,
    caller: &Caller,
    app: &str,
    group: &str,
    attributes: Map<String, Value>,
) -> Result<()> {
    let meta = load(deps, app, group).await?;
    owner_or_admin(caller, &meta)?;
    let meta = GroupMeta {
        attributes,
        updated_on: deps.now(),
        ..meta
    };
    update_meta(deps, caller, meta, ChangeKind::AttributesSet).await
}

/// Adds a member: the owner or an admin adds anyone; a user adds only themself, and only to a
/// group whose `allow_self_join` attribute is true. Returns false when already a member.
pub async fn join(
    deps: &Deps,
    caller: &Caller,
    app: &str,
    group: &str,
    member: String,
) -> Result<bool> {
    ids::validate("member_id", &member)?;
    let meta = load(deps, app, group).await?;
    let self_join = caller.user_id == member && meta.allows_self_join();
    if !self_join {
        owner_or_admin(caller, &meta)?;
    }
    let change = new_change(deps, caller, ChangeKind::Joined, vec![member], Vec::new());
    if !deps.store.add_member(app, group, &change).await? {
        return Ok(false);
    }
    announce(deps, &meta, &change).await?;
    Ok(true)
}

/// Removes a member: the member themself, the owner or an admin.
pub async fn leave(
    deps: &Deps,
    caller: &Caller,
    app: &str,
    group: &str,
    member: &str,
) -> Result<()> {
    ids::validate("member_id", member)?;
    let meta = load(deps, app, group).await?;
    if caller.user_id != member {
        owner_or_admin(caller, &meta)?;
    }
    let change = new_change(
        deps,
        caller,
        ChangeKind::Left,
        Vec::new(),
        vec![member.to_string()],
    );
    if !deps.store.remove_member(app, group, &change).await? {
        return Err(Error::not_found(format!(
            "{member} is not a member of group {group}"
        )));
    }
    announce(deps, &meta, &change).await
}

/// Replaces the member set (owner or admin). Returns false when the set was already that.
pub async fn set_members(
    deps: &Deps,
    caller: &Caller,
    app: &str,
    group: &str,
    wanted: Vec<String>,
) -> Result<bool> {
    for member in &wanted {
        ids::validate("members key", member)?;
    }
    let mut meta = load(deps, app, group).await?;
    owner_or_admin(caller, &meta)?;
    for _ in 0..SET_MEMBERS_ATTEMPTS {
        let current = deps.store.members(app, group).await?;
        let joined: Vec<String> = wanted
            .iter()
            .filter(|m| !current.contains(m))
            .cloned()
            .collect();
        let left: Vec<String> = current
            .iter()
            .filter(|m| !wanted.contains(m))
            .cloned()
            .collect();
        if joined.is_empty() && left.is_empty() {
            return Ok(false);
        }
        if joined.len() + left.len() > MAX_MEMBER_CHANGES {
            return Err(too_many(joined.len() + left.len()));
        }
        let change = new_change(deps, caller, ChangeKind::MembersSet, joined, left);
        if deps
            .store
            .set_members(app, group, meta.version, &change)
            .await?
        {
            return announce(deps, &meta, &change).await.map(|()| true);
        }
        // Another change got in between: read again (finishing its follow-up) and recompute.
        meta = load(deps, app, group).await?;
    }
    Err(Error::unavailable("the group is changing too fast; retry"))
}
