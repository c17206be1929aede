//! Groups on the embedded store.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{EmbeddedStore, GroupState};
use crate::error::Result;
use crate::keys;
use crate::model::{GroupChange, GroupMeta};
use crate::ports::{Added, Created, GroupHead, GroupStore, MembersSet, Removed, Updated};

#[async_trait]
impl GroupStore for EmbeddedStore {
    async fn group_head(&self, app: &str, group: &str) -> Result<Option<GroupHead>> {
        Ok(self
            .state()
            .groups
            .get(&keys::group_pk(app, group))
            .map(|g| GroupHead {
                meta: g.meta.clone(),
                pending: g.changes.values().cloned().collect(),
            }))
    }

    async fn is_member(&self, app: &str, group: &str, user: &str) -> Result<bool> {
        let state = self.state();
        let group = state.groups.get(&keys::group_pk(app, group));
        Ok(group.is_some_and(|g| g.members.contains(user)))
    }

    async fn members(&self, app: &str, group: &str) -> Result<Vec<String>> {
        let state = self.state();
        Ok(state
            .groups
            .get(&keys::group_pk(app, group))
            .map(|g| g.members.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn create_group(
        &self,
        meta: &GroupMeta,
        members: &[String],
        change: &GroupChange,
    ) -> Result<Created> {
        let mut state = self.state();
        let key = keys::group_pk(&meta.app_id, &meta.uid);
        if state.groups.contains_key(&key) {
            return Ok(Created::Taken);
        }
        let group = GroupState {
            meta: meta.clone(),
            members: members.iter().cloned().collect(),
            changes: BTreeMap::from([(change.id.clone(), change.clone())]),
        };
        state.groups.insert(key, group);
        Ok(Created::Created)
    }

    async fn add_member(
        &self,
        app: &str,
        group: &str,
        member: &str,
        change: &GroupChange,
    ) -> Result<Added> {
        let mut state = self.state();
        let Some(g) = state.groups.get_mut(&keys::group_pk(app, group)) else {
            return Ok(Added::NoGroup);
        };
        if !g.members.insert(member.to_string()) {
            return Ok(Added::AlreadyMember);
        }
        g.changes.insert(change.id.clone(), change.clone());
        Ok(Added::Added)
    }

    async fn remove_member(
        &self,
        app: &str,
        group: &str,
        member: &str,
        change: &GroupChange,
    ) -> Result<Removed> {
        let mut state = self.state();
        let Some(g) = state.groups.get_mut(&keys::group_pk(app, group)) else {
            return Ok(Removed::NotMember);
        };
        if !g.members.remove(member) {
            return Ok(Removed::NotMember);
        }
        g.changes.insert(change.id.clone(), change.clone());
        Ok(Removed::Removed)
    }

    async fn set_members(
        &self,
        app: &str,
        group: &str,
        version: u64,
        change: &GroupChange,
    ) -> Result<MembersSet> {
        let mut state = self.state();
        let Some(g) = state.groups.get_mut(&keys::group_pk(app, group)) else {
            return Ok(MembersSet::Stale);
        };
        let still_valid = g.meta.version == version
            && change.joined.iter().all(|m| !g.members.contains(m))
            && change.left.iter().all(|m| g.members.contains(m));
        if !still_valid {
            return Ok(MembersSet::Stale);
        }
        g.members.extend(change.joined.iter().cloned());
        for m in &change.left {
            g.members.remove(m);
        }
        g.meta.version += 1;
        g.changes.insert(change.id.clone(), change.clone());
        Ok(MembersSet::Applied)
    }

    async fn update_meta(&self, meta: &GroupMeta, change: &GroupChange) -> Result<Updated> {
        let mut state = self.state();
        let Some(g) = state
            .groups
            .get_mut(&keys::group_pk(&meta.app_id, &meta.uid))
        else {
            return Ok(Updated::NoGroup);
        };
        g.meta.name = meta.name.clone();
        g.meta.attributes = meta.attributes.clone();
        g.meta.updated_on = meta.updated_on;
        g.changes.insert(change.id.clone(), change.clone());
        Ok(Updated::Updated)
    }

    async fn mark_stalled(&self, app: &str, group: &str, change_id: &str) -> Result<()> {
        if let Some(g) = self.state().groups.get_mut(&keys::group_pk(app, group))
            && let Some(change) = g.changes.get_mut(change_id)
        {
            change.stalled = true;
        }
        Ok(())
    }

    async fn finish_change(&self, app: &str, group: &str, change_id: &str) -> Result<()> {
        if let Some(g) = self.state().groups.get_mut(&keys::group_pk(app, group)) {
            g.changes.remove(change_id);
        }
        Ok(())
    }
}
