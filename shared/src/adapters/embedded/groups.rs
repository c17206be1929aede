//! Groups on the embedded store.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{EmbeddedStore, GroupState};
use crate::error::Result;
use crate::keys;
use crate::model::{GroupChange, GroupMeta};
use crate::ports::{Added, Created, GroupHead, GroupStore, MembersSet, Removed, Streamed, Updated};

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
        let key = keys::group_pk(&meta.info.app_id, &meta.info.uid);
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
        if g.members.contains(member) {
            return Ok(Added::AlreadyMember);
        }
        if !g.take_places(change) {
            return Ok(Added::Stale);
        }
        g.members.insert(member.to_string());
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
        if !g.members.contains(member) {
            return Ok(Removed::NotMember);
        }
        if !g.take_places(change) {
            return Ok(Removed::Stale);
        }
        g.members.remove(member);
        g.changes.insert(change.id.clone(), change.clone());
        Ok(Removed::Removed)
    }

    async fn set_members(&self, meta: &GroupMeta, change: &GroupChange) -> Result<MembersSet> {
        let mut state = self.state();
        let Some(g) = state
            .groups
            .get_mut(&keys::group_pk(&meta.info.app_id, &meta.info.uid))
        else {
            return Ok(MembersSet::Stale);
        };
        let still_valid = g.meta.version == meta.version
            && change.joined.iter().all(|m| !g.members.contains(m))
            && change.left.iter().all(|m| g.members.contains(m));
        if !still_valid || !g.take_places(change) {
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
            .get_mut(&keys::group_pk(&meta.info.app_id, &meta.info.uid))
        else {
            return Ok(Updated::NoGroup);
        };
        g.meta.info.name = meta.info.name.clone();
        g.meta.info.attributes = meta.info.attributes.clone();
        g.meta.info.updated_on = meta.info.updated_on;
        g.changes.insert(change.id.clone(), change.clone());
        Ok(Updated::Updated)
    }

    async fn record_places(
        &self,
        app: &str,
        group: &str,
        change_id: &str,
        first: u64,
    ) -> Result<u64> {
        let mut state = self.state();
        let change = state
            .groups
            .get_mut(&keys::group_pk(app, group))
            .and_then(|g| g.changes.get_mut(change_id));
        Ok(match change {
            Some(change) => *change.places_from.get_or_insert(first),
            None => first,
        })
    }

    async fn mark_settled(&self, app: &str, group: &str, change: &GroupChange) -> Result<()> {
        {
            let mut state = self.state();
            let Some(recorded) = state
                .groups
                .get_mut(&keys::group_pk(app, group))
                .and_then(|g| g.changes.get_mut(&change.id))
            else {
                return Ok(());
            };
            recorded.settled = true;
            recorded.stalled = false;
        }
        self.streamed(Streamed::Change {
            app: app.to_string(),
            group: group.to_string(),
            change: GroupChange {
                settled: true,
                stalled: false,
                ..change.clone()
            },
        });
        Ok(())
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
