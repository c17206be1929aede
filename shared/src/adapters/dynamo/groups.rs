//! Groups on DynamoDB: the meta, one item per member (so concurrent joins never conflict),
//! and change records, all in the group's partition; every change is one transaction.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};

use super::DynamoStore;
use super::item::{MEMBER_ID, attribute, change_key, change_put, group_meta_key};
use super::item::{group_exists, meta_update};
use super::item::{item_of, member_delete, member_key, member_put, parse};
use super::request::{Expr, PK, SK, Transaction, n, s};
use crate::error::Result;
use crate::keys;
use crate::model::{GroupChange, GroupMeta};
use crate::ports::{Added, Created, GroupHead, GroupStore, MembersSet, Removed, Updated};

#[async_trait]
impl GroupStore for DynamoStore {
    async fn group_head(&self, app: &str, group: &str) -> Result<Option<GroupHead>> {
        // Change records (`C#…`) sort before the meta (`GROUP`), members (`M#…`) after it.
        let items = self
            .table
            .query_all(
                keys::group_pk(app, group),
                "#sk <= :meta",
                vec![(":meta", s(keys::GROUP_META_SK))],
            )
            .await?;
        let mut meta = None;
        let mut pending = Vec::new();
        for item in items {
            match item.get(SK) {
                Some(AttributeValue::S(sk)) if sk == keys::GROUP_META_SK => {
                    meta = Some(parse::<GroupMeta>(item)?)
                }
                Some(AttributeValue::S(sk)) if sk.starts_with(keys::CHANGE_PREFIX) => {
                    pending.push(parse::<GroupChange>(item)?)
                }
                _ => {}
            }
        }
        pending.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(meta.map(|meta| GroupHead { meta, pending }))
    }

    async fn is_member(&self, app: &str, group: &str, user: &str) -> Result<bool> {
        let found = self.table.get(member_key(app, group, user)).await?;
        Ok(found.is_some())
    }

    async fn members(&self, app: &str, group: &str) -> Result<Vec<String>> {
        let items = self
            .table
            .query_all(
                keys::group_pk(app, group),
                "begins_with(#sk, :m)",
                vec![(":m", s(keys::MEMBER_PREFIX))],
            )
            .await?;
        Ok(items
            .into_iter()
            .filter_map(|item| match item.get(MEMBER_ID) {
                Some(AttributeValue::S(m)) => Some(m.clone()),
                _ => None,
            })
            .collect())
    }

    async fn create_group(
        &self,
        meta: &GroupMeta,
        members: &[String],
        change: &GroupChange,
    ) -> Result<Created> {
        let (app, group) = (&meta.info.app_id, &meta.info.uid);
        let meta_item = item_of(meta, keys::group_pk(app, group), keys::GROUP_META_SK.into())?;
        let put_meta = self
            .table
            .put(meta_item, Some("attribute_not_exists(pk)"))?;
        let mut actions = vec![TransactWriteItem::builder().put(put_meta).build()];
        for member in members {
            actions.push(member_put(&self.table, app, group, member, false)?);
        }
        actions.push(change_put(&self.table, app, group, change)?);
        Ok(match self.table.transact(actions).await? {
            Transaction::Committed => Created::Created,
            Transaction::ConditionsFailed(_) => Created::Taken,
        })
    }

    async fn add_member(
        &self,
        app: &str,
        group: &str,
        member: &str,
        change: &GroupChange,
    ) -> Result<Added> {
        // The membership first (its failure says "already a member"), then the meta: the
        // group's existence, and the places when the change takes them.
        let meta = match meta_update(&self.table, app, group, None, change)? {
            Some(places) => places,
            None => group_exists(&self.table, app, group)?,
        };
        let actions = vec![
            member_put(&self.table, app, group, member, true)?,
            meta,
            change_put(&self.table, app, group, change)?,
        ];
        Ok(match self.table.transact(actions).await? {
            Transaction::Committed => Added::Added,
            failed @ Transaction::ConditionsFailed(_) if failed.failed(0) => Added::AlreadyMember,
            // No group, or (taking places) the history moved on: the next read tells which.
            _ if change.places_from.is_some() => Added::Stale,
            Transaction::ConditionsFailed(_) => Added::NoGroup,
        })
    }

    async fn remove_member(
        &self,
        app: &str,
        group: &str,
        member: &str,
        change: &GroupChange,
    ) -> Result<Removed> {
        let mut actions = vec![member_delete(&self.table, app, group, member)?];
        actions.extend(meta_update(&self.table, app, group, None, change)?);
        actions.push(change_put(&self.table, app, group, change)?);
        Ok(match self.table.transact(actions).await? {
            Transaction::Committed => Removed::Removed,
            // Not a member (or no group): whatever else failed, there is nothing to remove.
            failed @ Transaction::ConditionsFailed(_) if failed.failed(0) => Removed::NotMember,
            Transaction::ConditionsFailed(_) => Removed::Stale,
        })
    }

    async fn set_members(&self, meta: &GroupMeta, change: &GroupChange) -> Result<MembersSet> {
        let (app, group) = (&meta.info.app_id, &meta.info.uid);
        let mut actions: Vec<TransactWriteItem> =
            meta_update(&self.table, app, group, Some(meta.version), change)?
                .into_iter()
                .collect();
        for member in &change.joined {
            actions.push(member_put(&self.table, app, group, member, true)?);
        }
        for member in &change.left {
            actions.push(member_delete(&self.table, app, group, member)?);
        }
        actions.push(change_put(&self.table, app, group, change)?);
        Ok(match self.table.transact(actions).await? {
            Transaction::Committed => MembersSet::Applied,
            Transaction::ConditionsFailed(_) => MembersSet::Stale,
        })
    }

    async fn update_meta(&self, meta: &GroupMeta, change: &GroupChange) -> Result<Updated> {
        let (app, group) = (&meta.info.app_id, &meta.info.uid);
        let mut e = Expr::default();
        let update = format!(
            "SET {} = {}, {} = {}, {} = {}",
            e.name("name"),
            e.value(s(meta.info.name.clone())),
            e.name("attributes"),
            e.value(attribute(&meta.info.attributes)?),
            e.name("updatedOn"),
            e.value(n(meta.info.updated_on))
        );
        let condition = format!("attribute_exists({})", e.name(PK));
        let set = self
            .table
            .update(group_meta_key(app, group), update, condition, &e)?;
        let actions = vec![
            TransactWriteItem::builder().update(set).build(),
            change_put(&self.table, app, group, change)?,
        ];
        Ok(match self.table.transact(actions).await? {
            Transaction::Committed => Updated::Updated,
            Transaction::ConditionsFailed(_) => Updated::NoGroup,
        })
    }

    async fn record_places(
        &self,
        app: &str,
        group: &str,
        change_id: &str,
        first: u64,
    ) -> Result<u64> {
        let mut e = Expr::default();
        let places = e.name("places_from");
        let update = format!("SET {places} = {}", e.value(n(first)));
        let condition = format!(
            "attribute_exists({}) AND attribute_not_exists({places})",
            e.name(PK)
        );
        let update = self
            .table
            .update(change_key(app, group, change_id), update, condition, &e)?;
        match self.table.update_or_current(update).await? {
            Ok(_) => Ok(first),
            // Recorded by an earlier run (or the change is finished: then nothing reads it).
            Err(current) => Ok(match current.get("places_from") {
                Some(AttributeValue::N(recorded)) => recorded.parse().unwrap_or(first),
                _ => first,
            }),
        }
    }

    async fn mark_settled(&self, app: &str, group: &str, change: &GroupChange) -> Result<()> {
        // Each call changes the item (`handed` counts them), so each one is a stream record:
        // handing a change over again (its delivery failed for good) delivers it again.
        let mut e = Expr::default();
        let handed = e.name("handed");
        let update = format!(
            "SET {} = {}, {handed} = if_not_exists({handed}, {}) + {} REMOVE {}",
            e.name("settled"),
            e.value(AttributeValue::Bool(true)),
            e.value(n(0)),
            e.value(n(1)),
            e.name("stalled"),
        );
        let condition = format!("attribute_exists({})", e.name(PK));
        let update =
            self.table
                .update(change_key(app, group, &change.id), update, condition, &e)?;
        // A finished change (the condition failed) needs nothing more.
        self.table.update_item(update).await.map(|_| ())
    }

    async fn mark_stalled(&self, app: &str, group: &str, change_id: &str) -> Result<()> {
        let change = change_key(app, group, change_id);
        self.table.set_flag(change, "stalled").await
    }

    async fn finish_change(&self, app: &str, group: &str, change_id: &str) -> Result<()> {
        self.table.delete(change_key(app, group, change_id)).await
    }
}
