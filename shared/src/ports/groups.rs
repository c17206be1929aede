//! The groups' port: a group's meta, members and pending changes, each change committed
//! atomically with its record.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{GroupChange, GroupMeta};

/// A group's meta and the changes whose follow-up is still owed, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupHead {
    pub meta: GroupMeta,
    pub pending: Vec<GroupChange>,
}

/// What creating a group did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    /// The id is taken; nothing was written.
    Taken,
}

/// What adding one member did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Added,
    AlreadyMember,
    NoGroup,
    /// The group's history moved on since it was read: read it again.
    Stale,
}

/// What removing one member did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Removed,
    /// Not a member (or no such group); nothing was written.
    NotMember,
    /// The group's history moved on since it was read: read it again.
    Stale,
}

/// What a version-checked change of the whole member set did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembersSet {
    Applied,
    /// The group moved on (another change, or it is gone) since the version was read.
    Stale,
}

/// What replacing a group's name and attributes did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated {
    Updated,
    NoGroup,
}

#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Consistent read of the group's meta and owed changes; `None` if the group is unknown.
    async fn group_head(&self, app: &str, group: &str) -> Result<Option<GroupHead>>;
    /// Whether `user` is a member of the group (false for an unknown group).
    async fn is_member(&self, app: &str, group: &str, user: &str) -> Result<bool>;
    /// Every member, in id order.
    async fn members(&self, app: &str, group: &str) -> Result<Vec<String>>;
    /// Atomically: the meta (unless the id is taken), the members and the change.
    async fn create_group(
        &self,
        meta: &GroupMeta,
        members: &[String],
        change: &GroupChange,
    ) -> Result<Created>;
    /// Atomically adds `member` and records the change; when `change.places_from` is set,
    /// also takes the places of its system messages from there on, if the history is still
    /// right before them (else `Stale`).
    async fn add_member(
        &self,
        app: &str,
        group: &str,
        member: &str,
        change: &GroupChange,
    ) -> Result<Added>;
    /// Atomically removes `member` and records the change; places as for [`Self::add_member`].
    async fn remove_member(
        &self,
        app: &str,
        group: &str,
        member: &str,
        change: &GroupChange,
    ) -> Result<Removed>;
    /// Atomically applies `change.joined`/`change.left`, records the change and bumps the
    /// version, if the group is still at `meta.version`; places as for [`Self::add_member`].
    async fn set_members(&self, meta: &GroupMeta, change: &GroupChange) -> Result<MembersSet>;
    /// Atomically replaces the meta's name and attributes and records the change.
    async fn update_meta(&self, meta: &GroupMeta, change: &GroupChange) -> Result<Updated>;
    /// Records where a change's system messages go in the history (its first place), unless
    /// an earlier run recorded it: returns the recorded one.
    async fn record_places(
        &self,
        app: &str,
        group: &str,
        change_id: &str,
        first: u64,
    ) -> Result<u64>;
    /// The change is announced: hands it to the deliver step (the stream), which delivers it
    /// to every member and then finishes it.
    async fn mark_settled(&self, app: &str, group: &str, change: &GroupChange) -> Result<()>;
    /// The change's own call failed to announce it: let the next call finish it.
    async fn mark_stalled(&self, app: &str, group: &str, change_id: &str) -> Result<()>;
    /// The change's follow-up is done.
    async fn finish_change(&self, app: &str, group: &str, change_id: &str) -> Result<()>;
}
