//! Identifier rules shared by users, groups, apps and messages (API.md "Identifiers").

use crate::error::{Error, Result};

pub const MAX_ID_CHARS: usize = 128;

/// Characters Chat21 forbade in ids; they would break storage keys and event attributes.
const FORBIDDEN: [char; 4] = ['#', '/', '.', '*'];

/// Checks one id and names the field in the error, so a client knows what to fix.
pub fn validate(field: &str, id: &str) -> Result<()> {
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
            "`{field}` contains a forbidden character ({shown}); ids may not contain # / . * or control characters"
        )));
    }
    Ok(())
}

/// True when the id is valid; for places that must not fail (stored data, events).
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
            assert!(validate("user_id", id).is_ok(), "{id}");
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
            "a\nb",
            "a\u{0}b",
            "a\u{7f}b",
            &"x".repeat(129),
        ] {
            let err = validate("user_id", id).unwrap_err();
            assert_eq!(err.status(), 400, "{id:?}");
            assert!(err.to_string().contains("user_id"), "{err}");
        }
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert!(validate("id", &"é".repeat(128)).is_ok());
        assert!(validate("id", &"é".repeat(129)).is_err());
    }

    #[test]
    fn group_rule() {
        assert!(looks_like_group("group-123"));
        assert!(looks_like_group("support-group-1"));
        assert!(!looks_like_group("groupie"));
    }
}
