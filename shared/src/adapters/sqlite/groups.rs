//! Groups on SQLite: the meta (its counters in columns of their own), one row per member and
//! per pending change. Every change is one job of the writer: what DynamoDB checks with
//! conditions in a transaction is read and decided inside it.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::outbox::enqueue_delivery;
use super::{SqliteStore, from_json, to_json};
use crate::error::Result;
use crate::keys;
use crate::model::{GroupChange, GroupMeta};
use crate::ports::{Added, Created, GroupHead, GroupStore, MembersSet, Removed, Streamed, Updated};

fn meta_of(c: &Connection, pk: &str) -> Result<Option<GroupMeta>> {
    let found: Option<(String, u64, u64)> = c
        .prepare_cached("SELECT meta, version, seq FROM groups WHERE pk = ?1")?
        .query_row([pk], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    found
        .map(|(meta, version, seq)| {
            let meta: GroupMeta = from_json(&meta)?;
            Ok(GroupMeta {
                version,
                seq,
                ..meta
            })
        })
        .transpose()
}

fn is_member(c: &Connection, pk: &str, member: &str) -> Result<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM members WHERE pk = ?1 AND member = ?2")?
            .query_row([pk, member], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

fn add(c: &Connection, pk: &str, member: &str) -> Result<()> {
    c.prepare_cached("INSERT OR IGNORE INTO members (pk, member) VALUES (?1, ?2)")?
        .execute([pk, member])?;
    Ok(())
}

fn remove(c: &Connection, pk: &str, member: &str) -> Result<()> {
    c.prepare_cached("DELETE FROM members WHERE pk = ?1 AND member = ?2")?
        .execute([pk, member])?;
    Ok(())
}

fn record(c: &Connection, pk: &str, change: &GroupChange) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO changes (pk, change_id, change) VALUES (?1, ?2, ?3)
         ON CONFLICT (pk, change_id) DO UPDATE SET change = excluded.change",
    )?
    .execute(params![pk, change.id, to_json(change)?])?;
    Ok(())
}

fn change_of(c: &Connection, pk: &str, id: &str) -> Result<Option<GroupChange>> {
    let text: Option<String> = c
        .prepare_cached("SELECT change FROM changes WHERE pk = ?1 AND change_id = ?2")?
        .query_row([pk, id], |r| r.get(0))
        .optional()?;
    text.map(|t| from_json(&t)).transpose()
}

/// Takes the places `change.places_from` names, if the history is right before them (a
/// change without places takes none); false if it moved on.
fn take_places(c: &Connection, pk: &str, seq: u64, change: &GroupChange) -> Result<bool> {
    let Some(first) = change.places_from else {
        return Ok(true);
    };
    if seq + 1 != first {
        return Ok(false);
    }
    c.prepare_cached("UPDATE groups SET seq = seq + ?2 WHERE pk = ?1")?
        .execute(params![pk, change.message_count()])?;
    Ok(true)
}

#[async_trait]
impl GroupStore for SqliteStore {
    async fn group_head(&self, app: &str, group: &str) -> Result<Option<GroupHead>> {
        let pk = keys::group_pk(app, group);
        self.db
            .read(move |c| {
                // One snapshot for the meta and the changes.
                let tx = c.unchecked_transaction()?;
                let Some(meta) = meta_of(&tx, &pk)? else {
                    return Ok(None);
                };
                let mut statement = tx.prepare_cached(
                    "SELECT change FROM changes WHERE pk = ?1 ORDER BY change_id",
                )?;
                let pending = statement
                    .query_map([&pk], |r| r.get::<_, String>(0))?
                    .map(|text| from_json(&text?))
                    .collect::<Result<Vec<GroupChange>>>()?;
                Ok(Some(GroupHead { meta, pending }))
            })
            .await
    }

    async fn is_member(&self, app: &str, group: &str, user: &str) -> Result<bool> {
        let (pk, user) = (keys::group_pk(app, group), user.to_string());
        self.db.read(move |c| is_member(c, &pk, &user)).await
    }

    async fn members(&self, app: &str, group: &str) -> Result<Vec<String>> {
        let pk = keys::group_pk(app, group);
        self.db
            .read(move |c| {
                let mut statement =
                    c.prepare_cached("SELECT member FROM members WHERE pk = ?1 ORDER BY member")?;
                let members = statement
                    .query_map([&pk], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                Ok(members)
            })
            .await
    }

    async fn create_group(
        &self,
        meta: &GroupMeta,
        members: &[String],
        change: &GroupChange,
    ) -> Result<Created> {
        let (meta, members, change) = (meta.clone(), members.to_vec(), change.clone());
        self.db
            .write(move |c| {
                let pk = keys::group_pk(&meta.info.app_id, &meta.info.uid);
                let created = c
                    .prepare_cached(
                        "INSERT INTO groups (pk, meta, version, seq) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (pk) DO NOTHING",
                    )?
                    .execute(params![pk, to_json(&meta)?, meta.version, meta.seq])?;
                if created == 0 {
                    return Ok(Created::Taken);
                }
                for member in &members {
                    add(c, &pk, member)?;
                }
                record(c, &pk, &change)?;
                Ok(Created::Created)
            })
            .await
    }

    async fn add_member(
        &self,
        app: &str,
        group: &str,
        member: &str,
        change: &GroupChange,
    ) -> Result<Added> {
        let (pk, member, change) = (
            keys::group_pk(app, group),
            member.to_string(),
            change.clone(),
        );
        self.db
            .write(move |c| {
                let Some(meta) = meta_of(c, &pk)? else {
                    return Ok(Added::NoGroup);
                };
                if is_member(c, &pk, &member)? {
                    return Ok(Added::AlreadyMember);
                }
                if !take_places(c, &pk, meta.seq, &change)? {
                    return Ok(Added::Stale);
                }
                add(c, &pk, &member)?;
                record(c, &pk, &change)?;
                Ok(Added::Added)
            })
            .await
    }

    async fn remove_member(
        &self,
        app: &str,
        group: &str,
        member: &str,
        change: &GroupChange,
    ) -> Result<Removed> {
        let (pk, member, change) = (
            keys::group_pk(app, group),
            member.to_string(),
            change.clone(),
        );
        self.db
            .write(move |c| {
                let Some(meta) = meta_of(c, &pk)? else {
                    return Ok(Removed::NotMember);
                };
                if !is_member(c, &pk, &member)? {
                    return Ok(Removed::NotMember);
                }
                if !take_places(c, &pk, meta.seq, &change)? {
                    return Ok(Removed::Stale);
                }
                remove(c, &pk, &member)?;
                record(c, &pk, &change)?;
                Ok(Removed::Removed)
            })
            .await
    }

    async fn set_members(&self, meta: &GroupMeta, change: &GroupChange) -> Result<MembersSet> {
        let (expected, change) = (meta.clone(), change.clone());
        self.db
            .write(move |c| {
                let pk = keys::group_pk(&expected.info.app_id, &expected.info.uid);
                let Some(meta) = meta_of(c, &pk)? else {
                    return Ok(MembersSet::Stale);
                };
                let mut valid = meta.version == expected.version;
                for m in &change.joined {
                    valid = valid && !is_member(c, &pk, m)?;
                }
                for m in &change.left {
                    valid = valid && is_member(c, &pk, m)?;
                }
                if !valid || !take_places(c, &pk, meta.seq, &change)? {
                    return Ok(MembersSet::Stale);
                }
                for m in &change.joined {
                    add(c, &pk, m)?;
                }
                for m in &change.left {
                    remove(c, &pk, m)?;
                }
                c.prepare_cached("UPDATE groups SET version = version + 1 WHERE pk = ?1")?
                    .execute([&pk])?;
                record(c, &pk, &change)?;
                Ok(MembersSet::Applied)
            })
            .await
    }

    async fn update_meta(&self, meta: &GroupMeta, change: &GroupChange) -> Result<Updated> {
        let (new, change) = (meta.clone(), change.clone());
        self.db
            .write(move |c| {
                let pk = keys::group_pk(&new.info.app_id, &new.info.uid);
                let Some(mut meta) = meta_of(c, &pk)? else {
                    return Ok(Updated::NoGroup);
                };
                meta.info.name = new.info.name.clone();
                meta.info.attributes = new.info.attributes.clone();
                meta.info.updated_on = new.info.updated_on;
                c.prepare_cached("UPDATE groups SET meta = ?2 WHERE pk = ?1")?
                    .execute(params![pk, to_json(&meta)?])?;
                record(c, &pk, &change)?;
                Ok(Updated::Updated)
            })
            .await
    }

    async fn record_places(
        &self,
        app: &str,
        group: &str,
        change_id: &str,
        first: u64,
    ) -> Result<u64> {
        let (pk, id) = (keys::group_pk(app, group), change_id.to_string());
        self.db
            .write(move |c| {
                let Some(mut change) = change_of(c, &pk, &id)? else {
                    return Ok(first);
                };
                if let Some(recorded) = change.places_from {
                    return Ok(recorded);
                }
                change.places_from = Some(first);
                record(c, &pk, &change)?;
                Ok(first)
            })
            .await
    }

    async fn mark_settled(&self, app: &str, group: &str, change: &GroupChange) -> Result<()> {
        let (app, group, change) = (app.to_string(), group.to_string(), change.clone());
        self.db
            .write(move |c| {
                let pk = keys::group_pk(&app, &group);
                let Some(mut recorded) = change_of(c, &pk, &change.id)? else {
                    // Finished already: nothing more to deliver.
                    return Ok(());
                };
                recorded.settled = true;
                recorded.stalled = false;
                record(c, &pk, &recorded)?;
                // The delivery, in the lane of the group's messages (one order for both).
                let lane = keys::history_pk(&app, &group);
                let change = GroupChange {
                    settled: true,
                    stalled: false,
                    ..change
                };
                enqueue_delivery(c, &lane, &Streamed::Change { app, group, change })
            })
            .await?;
        self.deliveries_added.notify_one();
        Ok(())
    }

    async fn mark_stalled(&self, app: &str, group: &str, change_id: &str) -> Result<()> {
        let (pk, id) = (keys::group_pk(app, group), change_id.to_string());
        self.db
            .write(move |c| {
                if let Some(mut change) = change_of(c, &pk, &id)? {
                    change.stalled = true;
                    record(c, &pk, &change)?;
                }
                Ok(())
            })
            .await
    }

    async fn finish_change(&self, app: &str, group: &str, change_id: &str) -> Result<()> {
        let (pk, id) = (keys::group_pk(app, group), change_id.to_string());
        self.db
            .write(move |c| {
                c.prepare_cached("DELETE FROM changes WHERE pk = ?1 AND change_id = ?2")?
                    .execute([&pk, &id])?;
                Ok(())
            })
            .await
    }
}
