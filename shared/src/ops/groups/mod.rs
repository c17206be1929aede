//! Groups: create, read, rename, attributes, join, leave, set members.
//!
//! Every change is committed atomically together with a [`GroupChange`] record, then
//! announced in its call (system messages, events; `announce.rs`, which also says how a failed
//! announcement is finished by the next call), then delivered to every member by the deliver
//! step ([`delivery`]).

mod announce;
pub mod delivery;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::ids::Id;
use crate::input::Fields;
use crate::model::{Caller, ChangeKind, Group, GroupChange, GroupInfo, GroupMeta};
use crate::ops::Deps;
use crate::ports::{Added, Created, MembersSet, Removed, Updated};
use announce::{abandoned, announce, settle};

/// Member changes one call may make: one DynamoDB transaction holds 100 writes, two of which
/// are the group meta and the change record.
pub const MAX_MEMBER_CHANGES: usize = 98;
const MAX_GROUP_NAME_CHARS: usize = 1024;
/// How often a member change retries when the group moved on under it (another change, or
/// messages taking the places it was about to take).
const ATTEMPTS: usize = 8;
/// Of those, how many take the places of the change's system messages with its commit;
/// later ones (a busy group) commit first and take the next places after.
const PLACED_ATTEMPTS: usize = 3;

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
    pub members: Vec<Id>,
    pub group_id: Option<Id>,
    pub attributes: Map<String, Value>,
    pub owner: Option<Id>,
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

pub fn join_input(f: &Fields) -> Result<Id> {
    f.required_id("member_id")
}

pub fn set_members_input(f: &Fields) -> Result<Vec<Id>> {
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
        actor: caller.user_id.to_string(),
        kind,
        joined,
        left,
        stalled: false,
        places_from: None,
        settled: false,
    }
}

fn not_found(group: &str) -> Error {
    Error::not_found(format!("group {group} not found"))
}

fn owner_or_admin(caller: &Caller, meta: &GroupMeta) -> Result<()> {
    if caller.admin || caller.user_id == meta.info.owner {
        return Ok(());
    }
    Err(Error::forbidden(
        "only the group owner or an admin may do this",
    ))
}

/// Reads a group's meta, first finishing any abandoned change whose follow-up is still owed.
async fn load(deps: &Deps, caller: &Caller, group: &Id) -> Result<GroupMeta> {
    let head = deps
        .store
        .group_head(&caller.app_id, group)
        .await?
        .ok_or_else(|| not_found(group))?;
    for change in head.pending.iter().filter(|c| abandoned(deps, c)) {
        if change.settled {
            // Announced, but its delivery failed for good: hand it over again.
            deps.store
                .mark_settled(&caller.app_id, group, change)
                .await?;
        } else {
            settle(deps, &head.meta, change).await?;
        }
    }
    Ok(head.meta)
}

/// Creates a group; the creator (or, for an admin, `group_owner`) is owner and member.
pub async fn create(deps: &Deps, caller: &Caller, input: CreateGroup) -> Result<Group> {
    let owner = caller.acting_as("group_owner", input.owner)?;
    let mut members: Vec<String> = input.members.into_iter().map(String::from).collect();
    if let Err(at) = members.binary_search_by(|m| m.as_str().cmp(&owner)) {
        members.insert(at, owner.to_string());
    }
    if members.len() > MAX_MEMBER_CHANGES {
        return Err(too_many(members.len()));
    }
    let uid = input
        .group_id
        .map_or_else(|| format!("group-{}", deps.ids.new_id()), String::from);
    let app = &caller.app_id;
    let now = deps.now();
    let meta = GroupMeta {
        info: GroupInfo {
            uid: uid.clone(),
            name: input.name,
            owner: owner.to_string(),
            attributes: input.attributes,
            created_on: now,
            updated_on: now,
            app_id: app.to_string(),
        },
        version: 1,
        seq: 0,
    };
    let mut change = new_change(
        deps,
        caller,
        ChangeKind::Created,
        members.clone(),
        Vec::new(),
    );
    // The history starts with the creation's own system messages.
    change.places_from = Some(1);
    let meta = GroupMeta {
        seq: change.message_count(),
        ..meta
    };
    if deps.store.create_group(&meta, &members, &change).await? == Created::Created {
        announce(deps, &meta, &change).await?;
        return Ok(Group::new(&meta, members));
    }
    // The id is taken. If it is this caller's own earlier create of the same group, which
    // committed but could not announce itself (a 503), this retry finishes it. A create still
    // in flight (a concurrent call) is not an earlier attempt: that is a conflict.
    if let Some(head) = deps.store.group_head(app, &uid).await? {
        let retried = head.pending.iter().any(|c| {
            c.kind == ChangeKind::Created
                && c.actor == *caller.user_id
                && abandoned(deps, c)
                && c.joined == members
                && head.meta.same_definition(&meta)
        });
        if retried {
            for change in &head.pending {
                settle(deps, &head.meta, change).await?;
            }
            let members = deps.store.members(app, &uid).await?;
            return Ok(Group::new(&head.meta, members));
        }
    }
    Err(Error::Conflict(format!("group {uid} already exists")))
}

/// A group, for its members and admins.
pub async fn get(deps: &Deps, caller: &Caller, group: &Id) -> Result<Group> {
    let meta = load(deps, caller, group).await?;
    let members = deps.store.members(&caller.app_id, group).await?;
    if !caller.admin && !members.iter().any(|m| caller.user_id == *m) {
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
    match deps.store.update_meta(&meta, &change).await? {
        Updated::Updated => announce(deps, &meta, &change).await,
        Updated::NoGroup => Err(not_found(&meta.info.uid)),
    }
}

/// Renames a group (owner or admin).
pub async fn rename(deps: &Deps, caller: &Caller, group: &Id, name: String) -> Result<()> {
    let mut meta = load(deps, caller, group).await?;
    owner_or_admin(caller, &meta)?;
    meta.info.name = name;
    meta.info.updated_on = deps.now();
    update_meta(deps, caller, meta, ChangeKind::Renamed).await
}

/// Replaces a group's attributes (owner or admin).
pub async fn set_attributes(
    deps: &Deps,
    caller: &Caller,
    group: &Id,
    attributes: Map<String, Value>,
) -> Result<()> {
    let mut meta = load(deps, caller, group).await?;
    owner_or_admin(caller, &meta)?;
    meta.info.attributes = attributes;
    meta.info.updated_on = deps.now();
    update_meta(deps, caller, meta, ChangeKind::AttributesSet).await
}

/// Adds a member: the owner or an admin adds anyone; a user adds only themself, and only to a
/// group whose `allow_self_join` attribute is true. Returns false when already a member.
pub async fn join(deps: &Deps, caller: &Caller, group: &Id, member: Id) -> Result<bool> {
    for attempt in 0..ATTEMPTS {
        let meta = load(deps, caller, group).await?;
        let self_join = caller.user_id == member && meta.allows_self_join();
        if !self_join {
            owner_or_admin(caller, &meta)?;
        }
        let change = placed(
            &meta,
            attempt,
            new_change(
                deps,
                caller,
                ChangeKind::Joined,
                vec![member.to_string()],
                Vec::new(),
            ),
        );
        match deps
            .store
            .add_member(&caller.app_id, group, &member, &change)
            .await?
        {
            Added::Added => return announce(deps, &meta, &change).await.map(|()| true),
            Added::AlreadyMember => return Ok(false),
            Added::NoGroup => return Err(not_found(group)),
            // A message or another change took the next place first: read again.
            Added::Stale => {}
        }
    }
    Err(Error::unavailable("the group is changing too fast; retry"))
}

/// Removes a member: the member themself, the owner or an admin.
pub async fn leave(deps: &Deps, caller: &Caller, group: &Id, member: &Id) -> Result<()> {
    for attempt in 0..ATTEMPTS {
        let meta = load(deps, caller, group).await?;
        if caller.user_id != *member {
            owner_or_admin(caller, &meta)?;
        }
        let change = placed(
            &meta,
            attempt,
            new_change(
                deps,
                caller,
                ChangeKind::Left,
                Vec::new(),
                vec![member.to_string()],
            ),
        );
        match deps
            .store
            .remove_member(&caller.app_id, group, member, &change)
            .await?
        {
            Removed::Removed => return announce(deps, &meta, &change).await,
            Removed::NotMember => {
                return Err(Error::not_found(format!(
                    "{member} is not a member of group {group}"
                )));
            }
            // A message or another change took the next place first: read again.
            Removed::Stale => {}
        }
    }
    Err(Error::unavailable("the group is changing too fast; retry"))
}

/// A member change takes the places of its system messages in the history with its commit
/// (right after `meta.seq`, if nothing took them meanwhile): nothing sent after a removal sorts
/// before the goodbye, so a leaver never reads a message sent after they left. In a busy
/// group, after [`PLACED_ATTEMPTS`] commits lost to messages or other changes, it commits
/// without and takes the next places right after: then messages sent in between may sort
/// before a goodbye (readable by the leaver, never delivered to them), and a joiner still
/// receives every message (those placed before their join are in the history they are given,
/// those after are delivered to them).
fn placed(meta: &GroupMeta, attempt: usize, change: GroupChange) -> GroupChange {
    if attempt >= PLACED_ATTEMPTS {
        return change;
    }
    GroupChange {
        places_from: Some(meta.seq + 1),
        ..change
    }
}

/// Replaces the member set (owner or admin). Returns false when the set was already that.
pub async fn set_members(
    deps: &Deps,
    caller: &Caller,
    group: &Id,
    wanted: Vec<Id>,
) -> Result<bool> {
    let app = &caller.app_id;
    for attempt in 0..ATTEMPTS {
        let meta = load(deps, caller, group).await?;
        owner_or_admin(caller, &meta)?;
        let current = deps.store.members(app, group).await?;
        let joined: Vec<String> = wanted
            .iter()
            .filter(|m| !current.iter().any(|c| **m == *c))
            .map(|m| m.to_string())
            .collect();
        let left: Vec<String> = current
            .iter()
            .filter(|c| !wanted.iter().any(|m| *m == **c))
            .cloned()
            .collect();
        if joined.is_empty() && left.is_empty() {
            return Ok(false);
        }
        if joined.len() + left.len() > MAX_MEMBER_CHANGES {
            return Err(too_many(joined.len() + left.len()));
        }
        let change = placed(
            &meta,
            attempt,
            new_change(deps, caller, ChangeKind::MembersSet, joined, left),
        );
        match deps.store.set_members(&meta, &change).await? {
            MembersSet::Applied => return announce(deps, &meta, &change).await.map(|()| true),
            // Another change or a message got in between: read again, recompute.
            MembersSet::Stale => {}
        }
    }
    Err(Error::unavailable("the group is changing too fast; retry"))
}
