//! Every storage key, in one place. Both store adapters order and page by these strings, so a
//! cursor means the same thing on DynamoDB and on the embedded store.
//!
//! Table layout (single table, `pk`/`sk`, local index `by_order` on `pk`/`order_key`):
//!
//! | pk                         | sk                  | order_key                           | item |
//! |----------------------------|---------------------|-------------------------------------|------|
//! | `{app}#D#{a}#{b}`          | `M#{sender}#{id}`   | `{ts:013}#{sender}#{id}`            | direct message (a ≤ b: the two users) |
//! | `{app}#H#{group}`          | `M#{sender}#{id}`   | `{seq:013}#{sender}#{id}`           | group message in the group's history |
//! | `{app}#T#{owner}#{with}`   | `M#{sender}#{id}`   | `{ts:013}#{sender}#{id}`            | inline group message, the owner's copy |
//! | `{app}#U#{user}`           | `C#{with}`          |                                     | conversation row (no index entry) |
//! | `{app}#G#{group}`          | `GROUP`             |                                     | group meta |
//! | `{app}#G#{group}`          | `M#{member}`        |                                     | membership |
//! | `{app}#G#{group}`          | `C#{change}`        |                                     | change whose events are owed |
//! | `{app}#W`                  | `W#{webhook}`       |                                     | a tenant's webhook endpoint |
//! | `{app}#W`                  | `COUNT`             |                                     | how many endpoints the tenant has |
//!
//! Ids never contain `#` (see [`crate::ids`]), so every key splits back unambiguously.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};
use crate::ids;
use crate::model::Message;

/// Largest timestamp a key can hold: 13 digits of milliseconds (year 2286).
pub const MAX_TIMESTAMP: u64 = 9_999_999_999_999;

pub const GROUP_META_SK: &str = "GROUP";
pub const MEMBER_PREFIX: &str = "M#";
pub const CHANGE_PREFIX: &str = "C#";
const ACTIVE: &str = "active";
const ARCHIVED: &str = "archived";

/// The timeline two users share: the same for (a, b) and (b, a).
pub fn direct_pk(app: &str, a: &str, b: &str) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("{app}#D#{lo}#{hi}")
}

/// One user's own copies of a conversation (inline groups).
pub fn timeline_pk(app: &str, owner: &str, with: &str) -> String {
    format!("{app}#T#{owner}#{with}")
}

/// The group's own timeline (its history). A key of its own: user ids and group ids share
/// one namespace, so `timeline_pk(group, group)` is also some user's conversation with
/// themself.
pub fn history_pk(app: &str, group: &str) -> String {
    format!("{app}#H#{group}")
}

pub fn message_sk(sender: &str, message_id: &str) -> String {
    format!("M#{sender}#{message_id}")
}

/// Sort key of a message inside its timeline: by time, then sender and id for ties.
pub fn message_order(timestamp: u64, sender: &str, message_id: &str) -> String {
    format!("{timestamp:013}#{sender}#{message_id}")
}

pub fn order_of(message: &Message) -> String {
    message_order(message.timestamp, &message.sender, &message.message_id)
}

/// Sort key of a group message in its group's history: by its place, then sender and id
/// (the same shape as a timestamp order, so cursors read alike).
pub fn group_order(seq: u64, message: &Message) -> String {
    message_order(seq, &message.sender, &message.message_id)
}

/// What a group conversation row's `open_from` holds once its window is closed (it sorts after
/// every order key): a message applied later does not open it again; a rejoin does.
pub const CLOSED_WINDOW: &str = "~";

/// The place of a group message, from its order key in the history.
pub fn place_of(order: &str) -> Result<u64> {
    order
        .get(..13)
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| Error::internal(format!("an unreadable history order {order}")))
}

pub fn user_pk(app: &str, user: &str) -> String {
    format!("{app}#U#{user}")
}

pub fn conversation_sk(with: &str) -> String {
    format!("C#{with}")
}

pub fn conversation_order(archived: bool, timestamp: u64, with: &str) -> String {
    format!("{}#{timestamp:013}#{with}", list_prefix(archived))
}

/// The `order` prefix shared by a user's active (or archived) conversation rows.
pub fn list_prefix(archived: bool) -> &'static str {
    if archived { ARCHIVED } else { ACTIVE }
}

pub fn group_pk(app: &str, group: &str) -> String {
    format!("{app}#G#{group}")
}

pub fn member_sk(member: &str) -> String {
    format!("{MEMBER_PREFIX}{member}")
}

pub fn change_sk(change_id: &str) -> String {
    format!("{CHANGE_PREFIX}{change_id}")
}

/// A tenant's webhook endpoints: one small partition per app (read whole by the webhooks
/// consumer).
pub fn webhooks_pk(app: &str) -> String {
    format!("{app}#W")
}

pub const WEBHOOK_PREFIX: &str = "W#";
/// The item counting a tenant's endpoints (bounds them under concurrent creates).
pub const WEBHOOK_COUNT_SK: &str = "COUNT";

pub fn webhook_sk(id: &str) -> String {
    format!("{WEBHOOK_PREFIX}{id}")
}

/// A page position: the `order_key` of the last item a page returned. The next page holds the
/// items that sort before it (lists are newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub order: String,
}

impl Position {
    /// The position of a message in its timeline: a page after it holds the older messages.
    pub fn of(message: &Message) -> Position {
        Position {
            order: order_of(message),
        }
    }
}

/// Opaque cursor handed to clients: the `order` key, base64url.
pub fn encode_cursor(order: &str) -> String {
    URL_SAFE_NO_PAD.encode(order)
}

fn decode(cursor: &str) -> Result<String> {
    let bad = || Error::bad_request("`cursor` is not a cursor this list returned");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    String::from_utf8(bytes).map_err(|_| bad())
}

fn parse_timestamp(digits: &str) -> Option<u64> {
    (digits.len() == 13 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Decodes a cursor of a message list, refusing anything that is not a message position.
pub fn message_position(cursor: &str) -> Result<Position> {
    let order = decode(cursor)?;
    let parts: Vec<&str> = order.split('#').collect();
    match parts.as_slice() {
        [ts, sender, id]
            if parse_timestamp(ts).is_some() && ids::is_valid(sender) && ids::is_valid(id) =>
        {
            Ok(Position { order })
        }
        _ => Err(Error::bad_request(
            "`cursor` is not a cursor this list returned",
        )),
    }
}

/// Decodes a cursor of a conversation list (active or archived, as asked).
pub fn conversation_position(cursor: &str, archived: bool) -> Result<Position> {
    let order = decode(cursor)?;
    let parts: Vec<&str> = order.split('#').collect();
    match parts.as_slice() {
        [prefix, ts, with]
            if *prefix == list_prefix(archived)
                && parse_timestamp(ts).is_some()
                && ids::is_valid(with) =>
        {
            Ok(Position { order })
        }
        _ => Err(Error::bad_request(
            "`cursor` is not a cursor this list returned",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_timeline_is_shared_by_its_two_users() {
        assert_eq!(direct_pk("a", "u1", "u2"), direct_pk("a", "u2", "u1"));
        assert_ne!(direct_pk("a", "u1", "u2"), direct_pk("a", "u1", "u3"));
        assert_ne!(direct_pk("a", "g", "g"), history_pk("a", "g"));
    }

    #[test]
    fn a_group_history_is_no_users_timeline() {
        assert_ne!(history_pk("a", "g"), timeline_pk("a", "g", "g"));
        assert_ne!(history_pk("a", "g"), user_pk("a", "g"));
        assert_ne!(history_pk("a", "g"), group_pk("a", "g"));
    }

    #[test]
    fn webhooks_have_a_partition_of_their_own() {
        assert_ne!(webhooks_pk("a"), user_pk("a", "W"));
        assert_ne!(webhooks_pk("a"), group_pk("a", "W"));
        assert!(webhook_sk("w1").starts_with(WEBHOOK_PREFIX));
        assert!(!WEBHOOK_COUNT_SK.starts_with(WEBHOOK_PREFIX));
    }

    #[test]
    fn orders_sort_by_time_first() {
        let a = message_order(999, "zed", "z");
        let b = message_order(1000, "amy", "a");
        assert!(a < b);
        assert!(conversation_order(false, 5, "x") < conversation_order(false, 40, "a"));
    }

    #[test]
    fn cursors_round_trip() {
        let order = message_order(1_700_000_000_000, "u1", "m1");
        let pos = message_position(&encode_cursor(&order)).unwrap();
        assert_eq!(pos, Position { order });

        let order = conversation_order(true, 42, "g");
        let pos = conversation_position(&encode_cursor(&order), true).unwrap();
        assert_eq!(pos.order, order);
    }

    #[test]
    fn foreign_or_forged_cursors_are_refused() {
        let active = encode_cursor(&conversation_order(false, 42, "g"));
        assert!(
            conversation_position(&active, true).is_err(),
            "active cursor on the archived list"
        );
        assert!(message_position(&active).is_err());
        for bad in [
            "",
            "!!!",
            &encode_cursor("12#a#b"),
            &encode_cursor("0000000000012#a"),
            &encode_cursor("0000000000012#a.b#c"),
        ] {
            let err = message_position(bad).unwrap_err();
            assert_eq!(err.status(), 400, "{bad}");
        }
    }
}
