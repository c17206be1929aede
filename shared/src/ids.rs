//! Identifier rules shared by users, groups, apps and messages (API.md "Identifiers"), and the
//! [`Id`] type that proves a string passed them. Path and body parsers return `Id`s, so an
//! operation cannot forget the check.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const MAX_ID_CHARS: usize = 128;

/// Characters ids may not contain: Chat21's `#` `/` `.` `*` (storage keys, event attributes,
/// topic levels) and the wildcards of MQTT (`+`, and `#`) and of IoT policies (`*`, `?`), so an
/// id can never widen a subscription or a policy.
const FORBIDDEN: [char; 6] = ['#', '/', '.', '*', '+', '?'];

/// A valid id (user, group, app or message): 1 to 128 printable characters without the
/// forbidden ones. Serialized as the plain string; deserializing checks it again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Id(String);

impl Id {
    /// Checks `raw` and names `field` in the error, so a client knows what to fix.
    pub fn parse(field: &str, raw: impl Into<String>) -> Result<Id> {
        let raw = raw.into();
        validate(field, &raw)?;
        Ok(Id(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Id {
    type Error = Error;
    fn try_from(raw: String) -> Result<Id> {
        Id::parse("id", raw)
    }
}

impl From<Id> for String {
    fn from(id: Id) -> String {
        id.0
    }
}

impl std::ops::Deref for Id {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for Id {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<Id> for String {
    fn eq(&self, other: &Id) -> bool {
        *self == other.0
    }
}

fn validate(field: &str, id: &str) -> Result<()> {
    let count = id.chars().count();
    if count == 0 {
        return Err(Error::bad_request(format!("`{field}` must not be empty")));
    }
    if count > MAX_ID_CHARS {
        return Err(Error::bad_request(format!(
            "`{field}` is longer than {MAX_ID_CHARS} characters"
        )));
    }
    if let Some(c) = id.chars().find(|c| FORBIDDEN.contains(c) || c.is_control()) {
        let shown = if c.is_control() {
            format!("control character U+{:04X}", c as u32)
        } else {
            format!("`{c}`")
        };
        return Err(Error::bad_request(format!(
            "`{field}` contains a forbidden character ({shown}); ids may not contain # / . * + ? or control characters"
        )));
    }
    Ok(())
}

/// True when the id is valid; for data that is checked but not kept as an [`Id`].
pub fn is_valid(id: &str) -> bool {
    validate("id", id).is_ok()
}

/// Chat21's rule: an id containing `group-` names a group (Tiledesk's `support-group-...`).
pub fn looks_like_group(id: &str) -> bool {
    id.contains("group-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        for id in [
            "u1",
            "support-group-5f2a-xyz",
            "Andrea Leo",
            "ünï-cødé",
            &"x".repeat(128),
        ] {
            assert_eq!(Id::parse("user_id", id).unwrap(), id);
        }
    }

    #[test]
    fn rejects_forbidden_characters_and_lengths() {
        for id in [
            "",
            "a#b",
            "a/b",
            "a.b",
            "a*b",
            "a+b",
            "a?b",
            "a\nb",
            "a\u{0}b",
            "a\u{7f}b",
            &"x".repeat(129),
        ] {
            let err = Id::parse("user_id", id).unwrap_err();
            assert_eq!(err.status(), 400, "{id:?}");
            assert!(err.to_string().contains("user_id"), "{err}");
            assert!(!is_valid(id));
        }
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert!(Id::parse("id", "é".repeat(128)).is_ok());
        assert!(Id::parse("id", "é".repeat(129)).is_err());
    }

    #[test]
    fn serde_checks_on_the_way_in() {
        let id: Id = serde_json::from_str("\"u1\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"u1\"");
        assert!(serde_json::from_str::<Id>("\"a#b\"").is_err());
    }

    #[test]
    fn group_rule() {
        assert!(looks_like_group("group-123"));
        assert!(looks_like_group("support-group-1"));
        assert!(!looks_like_group("groupie"));
    }
}
