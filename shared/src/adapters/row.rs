//! How a message (or a run of them) applies to a conversation row, the same on both stores.
//!
//! A row keeps the order key of its last message and the *tags* (short hashes) of the messages
//! applied to it recently, in two generations of at most [`GENERATION`] tags: the current one
//! and the one before. A message newer than the last becomes the last; an older one (a late
//! delivery) counts as unread once; one whose tag is remembered was applied before (a
//! redelivery, even after newer messages overtook it) and changes nothing. When the current
//! generation is full it becomes the previous one, so a row remembers between 8 and 16 of its
//! most recent messages in at most 150 bytes, whatever its history (a row that crosses 1 KB
//! costs twice per write): a message redelivered after more than that many newer ones of its
//! conversation could count twice.

use std::collections::BTreeSet;

/// Tags per generation.
pub const GENERATION: usize = 8;

/// A message's tag: 48 bits of FNV-1a of its order key, base64url (8 characters). Stable
/// across releases (it is stored).
pub fn tag(order: &str) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = order
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..8)
        .map(|i| char::from(ALPHABET[((hash >> (6 * i)) & 63) as usize]))
        .collect()
}

/// The row's state that decides how a run applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Order key of the last message (`None`: no row yet, or a row without one).
    pub last: Option<String>,
    pub current: BTreeSet<String>,
    pub previous: BTreeSet<String>,
}

/// What applying a run does to a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The run's orders newer than the last: the last of them becomes the row's last.
    pub newer: Vec<String>,
    /// Older orders not applied before: each counts as unread once.
    pub late: Vec<String>,
    /// The tag generations after the run.
    pub current: BTreeSet<String>,
    pub previous: BTreeSet<String>,
}

impl Plan {
    pub fn changes_nothing(&self) -> bool {
        self.newer.is_empty() && self.late.is_empty()
    }

    /// How many messages of the run count as unread (when they are from someone else).
    pub fn counted(&self) -> u64 {
        (self.newer.len() + self.late.len()) as u64
    }
}

/// The tag generations after applying `late` and `newer` (older first): added to the current
/// one while it has room; when it has not, it becomes the previous one and the run's tags the
/// current one; a run of a whole generation or more keeps only its newest [`GENERATION`]
/// tags, as the previous generation (so the next messages find room).
pub fn remember(
    current: &BTreeSet<String>,
    previous: &BTreeSet<String>,
    late: &[String],
    newer: &[String],
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut tags: Vec<String> = Vec::new();
    for t in late.iter().chain(newer).map(|o| tag(o)) {
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    if tags.len() >= GENERATION {
        let newest = tags[tags.len() - GENERATION..].iter().cloned().collect();
        return (BTreeSet::new(), newest);
    }
    if current.len() + tags.len() > GENERATION {
        return (tags.into_iter().collect(), current.clone());
    }
    let mut current = current.clone();
    current.extend(tags);
    (current, previous.clone())
}

/// The tags of a run's newest [`GENERATION`] messages (all of a shorter run's).
pub fn newest_tags(orders: &[String]) -> BTreeSet<String> {
    let (current, previous) = remember(&BTreeSet::new(), &BTreeSet::new(), &[], orders);
    current.into_iter().chain(previous).collect()
}

/// Splits a run (`orders`, oldest first) against the row.
pub fn plan(orders: &[String], seen: &Seen) -> Plan {
    let known = |o: &String| {
        let t = tag(o);
        seen.current.contains(&t) || seen.previous.contains(&t)
    };
    let last = seen.last.as_deref();
    let (newer, older): (Vec<String>, Vec<String>) = orders
        .iter()
        .cloned()
        .partition(|o| last.is_none_or(|l| o.as_str() > l));
    let late: Vec<String> = older
        .into_iter()
        .filter(|o| Some(o.as_str()) != last && !known(o))
        .collect();
    let (current, previous) = remember(&seen.current, &seen.previous, &late, &newer);
    Plan {
        newer,
        late,
        current,
        previous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(orders: &[&str]) -> Vec<String> {
        orders.iter().map(|o| o.to_string()).collect()
    }

    fn seen(last: &str, applied: &[&str]) -> Seen {
        Seen {
            last: Some(last.into()),
            current: applied.iter().map(|o| tag(o)).collect(),
            previous: BTreeSet::new(),
        }
    }

    #[test]
    fn tags_are_stable_and_short() {
        assert_eq!(tag("0001700000000000#u1#m1"), tag("0001700000000000#u1#m1"));
        assert_ne!(tag("0001700000000000#u1#m1"), tag("0001700000000000#u1#m2"));
        assert_eq!(tag("x").len(), 8);
        // Stored: a change of the function would make rows forget what they applied.
        assert_eq!(tag(""), "lMiIESOn");
    }

    #[test]
    fn a_run_splits_against_the_row() {
        let row = seen("4", &["4"]);
        assert_eq!(plan(&v(&["5", "6"]), &row).newer, v(&["5", "6"]));
        let mixed = plan(&v(&["3", "5"]), &row);
        assert_eq!((mixed.newer, mixed.late), (v(&["5"]), v(&["3"])));
        assert!(plan(&v(&["4"]), &row).changes_nothing());
        let late = plan(&v(&["2"]), &row);
        assert_eq!(late.late, v(&["2"]));
        assert!(plan(&v(&["2"]), &seen("4", &["4", "2"])).changes_nothing());
        // A fresh row: everything is newer.
        assert_eq!(plan(&v(&["1"]), &Seen::default()).newer, v(&["1"]));
    }

    #[test]
    fn a_message_overtaken_then_redelivered_changes_nothing() {
        let mut row = Seen::default();
        for order in ["1", "2", "3"] {
            let p = plan(&v(&[order]), &row);
            row = Seen {
                last: p.newer.last().cloned().or(row.last),
                current: p.current,
                previous: p.previous,
            };
        }
        assert!(plan(&v(&["1"]), &row).changes_nothing());
        assert!(plan(&v(&["2"]), &row).changes_nothing());
    }

    #[test]
    fn a_long_run_leaves_room_and_remembers_its_newest() {
        let run: Vec<String> = (0..40).map(|i| format!("{i:04}")).collect();
        let p = plan(&run, &Seen::default());
        assert!(p.current.is_empty());
        assert_eq!(p.previous, newest_tags(&run));
        assert_eq!(p.previous.len(), GENERATION);
        let row = Seen {
            last: Some("0039".into()),
            current: p.current,
            previous: p.previous,
        };
        assert!(plan(&run[40 - GENERATION..], &row).changes_nothing());
        assert_eq!(
            plan(&run[..1], &row).late,
            v(&["0000"]),
            "beyond memory: counted"
        );
    }

    #[test]
    fn generations_rotate_and_remember_at_least_one_full_generation() {
        let mut row = Seen::default();
        let orders: Vec<String> = (0..100).map(|i| format!("{i:04}")).collect();
        for (i, order) in orders.iter().enumerate() {
            let p = plan(std::slice::from_ref(order), &row);
            assert_eq!(p.newer.len(), 1);
            row = Seen {
                last: Some(order.clone()),
                current: p.current,
                previous: p.previous,
            };
            assert!(row.current.len() <= GENERATION && row.previous.len() <= GENERATION);
            // The newest GENERATION messages are always remembered.
            for back in orders[i.saturating_sub(GENERATION - 1)..=i].iter() {
                assert!(
                    plan(std::slice::from_ref(back), &row).changes_nothing(),
                    "{i} {back}"
                );
            }
        }
    }
}
