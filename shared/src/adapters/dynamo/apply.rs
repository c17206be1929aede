//! Conversations on DynamoDB: one row per (user, peer or group), updated by one conditional
//! UpdateItem per message. A row remembers the order of its last message (`last_key`) and the
//! tags of its recent messages (`seen`, `seen_before`; see `adapters::row`), so applying a
//! message twice changes nothing and a late one counts once. A run newer than the last, on a
//! row of its own kind, costs one blind conditional write; anything else is planned from the
//! row as it is and written if the row's version `v` did not move. A row of another kind is
//! the real conversation's (an inline copy is refused) or starts over as the message's kind
//! (see `ConversationStore::apply`).

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::AttributeValue;

use super::DynamoStore;
use super::item::{KIND, LAST, attribute, conversation_key, kind_name, kind_of};
use super::request::{Expr, Item, PK, n, s};
use crate::adapters::retry::{Attempt, retry};
use crate::adapters::row;
use crate::error::Result;
use crate::ports::{Applied, ConversationKind, RowUpdate};

/// A row's recently applied messages (see `adapters::row`), and its version.
const SEEN: &str = "seen";
const SEEN_BEFORE: &str = "seen_before";
const VERSION: &str = "v";
/// The newest message timestamp applied to a row (not its last message's, for a group): no
/// read mark falls behind it.
pub(super) const NEWEST_AT: &str = "newest_at";

fn number(value: Option<&AttributeValue>) -> Option<u64> {
    match value {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

/// The newest timestamp applied to a row as read; for a row from before it was kept, its last
/// message's.
pub(super) fn newest_of(row: &Item) -> Option<u64> {
    number(row.get(NEWEST_AT)).or_else(|| match row.get("last") {
        Some(AttributeValue::M(last)) => number(last.get("timestamp")),
        _ => None,
    })
}

/// The condition that the row's newest applied timestamp ([`newest_of`]) is at most `at`, or
/// that it has none (no row).
pub(super) fn newest_at_most(e: &mut Expr, at: u64) -> String {
    let (newest, last, timestamp) = (e.name(NEWEST_AT), e.name("last"), e.name("timestamp"));
    let at = e.value(n(at));
    format!(
        "({newest} <= {at} OR (attribute_not_exists({newest}) AND \
         (attribute_not_exists({last}) OR {last}.{timestamp} <= {at})))"
    )
}

pub(super) fn string(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

pub(super) fn flag(item: &Item, name: &str) -> bool {
    matches!(item.get(name), Some(AttributeValue::Bool(true)))
}

fn tags(item: &Item, name: &str) -> BTreeSet<String> {
    match item.get(name) {
        Some(AttributeValue::Ss(set)) => set.iter().cloned().collect(),
        _ => BTreeSet::new(),
    }
}

fn tag_set(tags: &BTreeSet<String>) -> AttributeValue {
    AttributeValue::Ss(tags.iter().cloned().collect())
}

/// A write planned from the row as read (`current`): the `SET` that moves the row to its next
/// version, and the condition that it is still at the version it was read at.
fn next_version(e: &mut Expr, current: &Item) -> (String, String) {
    let version = e.name(VERSION);
    let observed = number(current.get(VERSION));
    let set = format!("{version} = {}", e.value(n(observed.unwrap_or(0) + 1)));
    let condition = match observed {
        Some(v) => format!("{version} = {}", e.value(n(v))),
        None => format!(
            "attribute_exists({}) AND attribute_not_exists({version})",
            e.name(PK)
        ),
    };
    (set, condition)
}

/// The tags a plan leaves the row remembering: each generation set, or removed when empty.
fn remembered(e: &mut Expr, plan: &row::Plan, sets: &mut Vec<String>, removes: &mut Vec<String>) {
    for (name, tags) in [(SEEN, &plan.current), (SEEN_BEFORE, &plan.previous)] {
        if tags.is_empty() {
            removes.push(e.name(name));
        } else {
            sets.push(format!("{} = {}", e.name(name), e.value(tag_set(tags))));
        }
    }
}

/// The `SET` clauses that make `update.last` the row's last message (`order` its order key).
fn newest(e: &mut Expr, update: &RowUpdate, order: &str, first: &str) -> Result<Vec<String>> {
    let last = &update.last;
    let fields = [
        ("last", attribute(last)?),
        ("is_new", AttributeValue::Bool(update.unread)),
        ("archived", AttributeValue::Bool(false)),
        ("deleted", AttributeValue::Bool(false)),
        (LAST, s(order)),
    ];
    let mut sets: Vec<String> = fields
        .into_iter()
        .map(|(name, value)| format!("{} = {}", e.name(name), e.value(value)))
        .collect();
    // Written only where the row is that kind's already (or none), or starts over as it.
    sets.push(format!(
        "{} = {}",
        e.name(KIND),
        e.value(s(kind_name(update.kind)))
    ));
    if update.kind == ConversationKind::Group && update.opens_window {
        let open = e.name("open_from");
        let from = e.value(s(first));
        sets.push(format!("{open} = if_not_exists({open}, {from})"));
    }
    Ok(sets)
}

/// The condition that the row is `kind`'s, or that there is none (a row written before kinds
/// were stored is direct).
fn same_kind(e: &mut Expr, kind: ConversationKind) -> String {
    let (name, value) = (e.name(KIND), e.value(s(kind_name(kind))));
    let absent = match kind {
        ConversationKind::Direct => name.clone(),
        ConversationKind::Group | ConversationKind::Inline => e.name(PK),
    };
    format!("(attribute_not_exists({absent}) OR {name} = {value})")
}

/// The kind of the row as read; `None` when there is no row.
fn row_kind(row: &Item) -> Option<ConversationKind> {
    row.contains_key(PK)
        .then(|| kind_of(string(row, KIND).as_deref()))
}

impl DynamoStore {
    /// The common case in one blind write: the whole run is newer than the row's last message
    /// (or there is no row), and its tags fit the current generation (a run of a generation or
    /// more replaces both, see `row::remember`). Otherwise `Err` with the row as it is.
    async fn apply_newer(
        &self,
        owner: &str,
        with: &str,
        update: &RowUpdate,
    ) -> Result<std::result::Result<Applied, Item>> {
        let mut e = Expr::default();
        let mut sets = newest(&mut e, update, update.last_order(), update.first_order())?;
        let version = e.name(VERSION);
        sets.push(format!(
            "{version} = if_not_exists({version}, {}) + {}",
            e.value(n(0)),
            e.value(n(1))
        ));
        let unread = if update.unread {
            update.orders.len() as u64
        } else {
            0
        };
        let seen = e.name(SEEN);
        let last_key = e.name(LAST);
        // The newest timestamp too: the run's, unless the row has seen a newer one (a group
        // message placed after one dated later), which the planned path keeps.
        sets.push(format!(
            "{} = {}",
            e.name(NEWEST_AT),
            e.value(n(update.newest_at))
        ));
        let newer = format!(
            "(attribute_not_exists({last_key}) OR {last_key} < {}) AND {} AND {}",
            e.value(s(update.first_order())),
            same_kind(&mut e, update.kind),
            newest_at_most(&mut e, update.newest_at)
        );
        let long_run = row::newest_tags(&update.orders);
        let (expression, condition) = if long_run.len() >= row::GENERATION {
            let seen_before = e.name(SEEN_BEFORE);
            sets.push(format!("{seen_before} = {}", e.value(tag_set(&long_run))));
            let expression = format!(
                "SET {} ADD {} {} REMOVE {seen}",
                sets.join(", "),
                e.name("unread_count"),
                e.value(n(unread))
            );
            (expression, newer)
        } else {
            let expression = format!(
                "SET {} ADD {} {}, {seen} {}",
                sets.join(", "),
                e.name("unread_count"),
                e.value(n(unread)),
                e.value(tag_set(&long_run))
            );
            let room = row::GENERATION - long_run.len();
            let fits = format!(
                "(attribute_not_exists({seen}) OR size({seen}) <= {})",
                e.value(n(room as u64))
            );
            (expression, format!("{newer} AND {fits}"))
        };
        let key = conversation_key(&update.last.app_id, owner, with);
        let request = self.table.update(key, expression, condition, &e)?;
        Ok(match self.table.update_or_current(request).await? {
            Ok(old) => {
                let unarchived = flag(&old, "archived") && !flag(&old, "deleted");
                Ok(Applied::Newer { unarchived })
            }
            Err(current) => Err(current),
        })
    }

    /// Late messages only, with room in the current generation: one blind write, conditional
    /// on none of them being remembered (so concurrent late deliveries do not conflict), and
    /// raising the row's newest timestamp if the run's is newer than the row's as read
    /// (`newest`). `Err` with the row as it is otherwise.
    async fn apply_late(
        &self,
        owner: &str,
        with: &str,
        update: &RowUpdate,
        late: &[String],
        newest: Option<u64>,
    ) -> Result<std::result::Result<Applied, Item>> {
        let mut e = Expr::default();
        let (seen, seen_before) = (e.name(SEEN), e.name(SEEN_BEFORE));
        let tags: BTreeSet<String> = late.iter().map(|o| row::tag(o)).collect();
        let version = e.name(VERSION);
        let unread = if update.unread { late.len() as u64 } else { 0 };
        let mut sets = vec![format!("{version} = {version} + {}", e.value(n(1)))];
        let mut conditions = vec![
            format!("attribute_exists({version})"),
            same_kind(&mut e, update.kind),
        ];
        // Timestamps applied only grow (while the row is this kind's): one at least as new as
        // the run's stays so.
        if newest.is_none_or(|newest| newest < update.newest_at) {
            sets.push(format!(
                "{} = {}",
                e.name(NEWEST_AT),
                e.value(n(update.newest_at))
            ));
            conditions.push(newest_at_most(&mut e, update.newest_at));
        }
        let expression = format!(
            "SET {} ADD {} {}, {seen} {}",
            sets.join(", "),
            e.name("unread_count"),
            e.value(n(unread)),
            e.value(tag_set(&tags))
        );
        conditions.extend([format!(
            "(attribute_not_exists({seen}) OR size({seen}) <= {})",
            e.value(n((row::GENERATION - tags.len()) as u64))
        )]);
        for t in &tags {
            let t = e.value(s(t.as_str()));
            conditions.push(format!(
                "(attribute_not_exists({seen}) OR NOT contains({seen}, {t}))"
            ));
            conditions.push(format!(
                "(attribute_not_exists({seen_before}) OR NOT contains({seen_before}, {t}))"
            ));
        }
        let key = conversation_key(&update.last.app_id, owner, with);
        let request = self
            .table
            .update(key, expression, conditions.join(" AND "), &e)?;
        Ok(match self.table.update_or_current(request).await? {
            Ok(_) => Ok(Applied::Late),
            Err(current) => Err(current),
        })
    }

    /// Applies `plan` to the row as read (`current`), if it is still that version.
    async fn apply_planned(
        &self,
        owner: &str,
        with: &str,
        update: &RowUpdate,
        current: &Item,
        plan: &row::Plan,
    ) -> Result<Option<Applied>> {
        let mut e = Expr::default();
        let mut sets = match (plan.newer.first(), plan.newer.last()) {
            (Some(first), Some(last)) => newest(&mut e, update, last, first)?,
            _ => Vec::new(),
        };
        let (next, condition) = next_version(&mut e, current);
        sets.push(next);
        let newest = newest_of(current).map_or(update.newest_at, |n| n.max(update.newest_at));
        sets.push(format!("{} = {}", e.name(NEWEST_AT), e.value(n(newest))));
        let mut removes = Vec::new();
        remembered(&mut e, plan, &mut sets, &mut removes);
        let unread = if update.unread { plan.counted() } else { 0 };
        let mut expression = format!(
            "SET {} ADD {} {}",
            sets.join(", "),
            e.name("unread_count"),
            e.value(n(unread))
        );
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let key = conversation_key(&update.last.app_id, owner, with);
        let request = self.table.update(key, expression, condition, &e)?;
        Ok(match self.table.update_item(request).await? {
            None => None,
            Some(_) if plan.newer.is_empty() => Some(Applied::Late),
            Some(_) => Some(Applied::Newer {
                unarchived: flag(current, "archived") && !flag(current, "deleted"),
            }),
        })
    }

    /// The row as it is now (empty if there is none).
    async fn reread(&self, update: &RowUpdate, owner: &str, with: &str) -> Result<Item> {
        let key = conversation_key(&update.last.app_id, owner, with);
        Ok(self.table.get(key).await?.unwrap_or_default())
    }

    /// A direct or group message on a row of another kind (`current`, as read): the row
    /// becomes the message's kind and starts over with it, keeping only a group's windows
    /// (membership's), if it is still that version. `None` if it moved meanwhile.
    async fn start_over(
        &self,
        owner: &str,
        with: &str,
        update: &RowUpdate,
        current: &Item,
    ) -> Result<Option<Applied>> {
        let plan = row::plan(&update.orders, &row::Seen::default());
        let mut e = Expr::default();
        let mut sets = newest(&mut e, update, update.last_order(), update.first_order())?;
        let unread = if update.unread { plan.counted() } else { 0 };
        sets.push(format!(
            "{} = {}",
            e.name("unread_count"),
            e.value(n(unread))
        ));
        sets.push(format!(
            "{} = {}",
            e.name(NEWEST_AT),
            e.value(n(update.newest_at))
        ));
        let (next, condition) = next_version(&mut e, current);
        sets.push(next);
        let mut removes: Vec<String> = ["read_at", "peer_read_at", "received_up_to", "cleared_to"]
            .into_iter()
            .map(|name| e.name(name))
            .collect();
        remembered(&mut e, &plan, &mut sets, &mut removes);
        let expression = format!("SET {} REMOVE {}", sets.join(", "), removes.join(", "));
        let key = conversation_key(&update.last.app_id, owner, with);
        let request = self.table.update(key, expression, condition, &e)?;
        Ok(self
            .table
            .update_item(request)
            .await?
            .map(|_| Applied::Newer {
                unarchived: flag(current, "archived") && !flag(current, "deleted"),
            }))
    }

    /// Applies `update` to the row of `owner`'s conversation with `with` (see the module's
    /// documentation).
    pub(super) async fn apply_to_row(
        &self,
        owner: &str,
        with: &str,
        update: &RowUpdate,
    ) -> Result<Applied> {
        let current = match self.apply_newer(owner, with, update).await? {
            Ok(applied) => return Ok(applied),
            Err(current) => current,
        };
        retry(
            "the conversation kept changing",
            current,
            move |current| async move {
                // The real conversation wins the row.
                match row_kind(&current) {
                    Some(kind) if kind == update.kind => {}
                    Some(_) if update.kind == ConversationKind::Inline => {
                        return Ok(Attempt::Done(Applied::Refused));
                    }
                    Some(_) => {
                        return Ok(
                            match self.start_over(owner, with, update, &current).await? {
                                Some(applied) => Attempt::Done(applied),
                                None => Attempt::Again(self.reread(update, owner, with).await?),
                            },
                        );
                    }
                    None => {}
                }
                let seen = row::Seen {
                    last: string(&current, LAST),
                    current: tags(&current, SEEN),
                    previous: tags(&current, SEEN_BEFORE),
                };
                let plan = row::plan(&update.orders, &seen);
                if plan.changes_nothing() {
                    return Ok(Attempt::Done(Applied::Already));
                }
                let fits = seen.current.len() + plan.late.len() <= row::GENERATION
                    && plan.late.len() < row::GENERATION;
                if plan.newer.is_empty() && fits && current.contains_key(VERSION) {
                    let newest = newest_of(&current);
                    return Ok(
                        match self
                            .apply_late(owner, with, update, &plan.late, newest)
                            .await?
                        {
                            Ok(applied) => Attempt::Done(applied),
                            Err(now) => Attempt::Again(now),
                        },
                    );
                }
                match self
                    .apply_planned(owner, with, update, &current, &plan)
                    .await?
                {
                    Some(applied) => Ok(Attempt::Done(applied)),
                    // Changed meanwhile: read it again.
                    None => Ok(Attempt::Again(self.reread(update, owner, with).await?)),
                }
            },
        )
        .await
    }
}
