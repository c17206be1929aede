//! Reading requests: bodies (size, JSON, object shape, typed fields with errors that name the
//! field; every operation's input is read through [`Fields`]) and query values (paging, flags).

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::ids::Id;
use crate::keys::{MAX_TIMESTAMP, Position};
use crate::ports::PageRequest;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Deepest accepted nesting of free JSON (`attributes`, `metadata`); DynamoDB allows 32 levels.
pub const MAX_JSON_DEPTH: usize = 16;

/// The top-level fields of a JSON object body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(Map<String, Value>);

impl Fields {
    /// Parses a body. An empty body is an empty object (DELETE calls usually send none); a body
    /// of only whitespace is not JSON.
    pub fn parse(body: &[u8]) -> Result<Fields> {
        if body.len() > MAX_BODY_BYTES {
            return Err(Error::PayloadTooLarge(format!(
                "the request body is larger than {} KiB",
                MAX_BODY_BYTES / 1024
            )));
        }
        if body.is_empty() {
            return Ok(Fields::default());
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Fields(map)),
            Ok(_) => Err(Error::bad_request("the request body must be a JSON object")),
            Err(e) => Err(Error::bad_request(format!(
                "the request body is not valid JSON: {e}"
            ))),
        }
    }

    pub fn from_map(map: Map<String, Value>) -> Fields {
        Fields(map)
    }

    /// A field, treating `null` as absent.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn set(&mut self, name: &str, value: Value) {
        self.0.insert(name.to_string(), value);
    }

    pub fn remove(&mut self, name: &str) {
        self.0.remove(name);
    }

    pub fn optional_str(&self, name: &str) -> Result<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Error::bad_request(format!("`{name}` must be a string"))),
        }
    }

    pub fn required_str(&self, name: &str) -> Result<String> {
        self.optional_str(name)?
            .ok_or_else(|| Error::bad_request(format!("`{name}` is required")))
    }

    /// A required string that must be a valid id.
    pub fn required_id(&self, name: &str) -> Result<Id> {
        Id::parse(name, self.required_str(name)?)
    }

    pub fn optional_id(&self, name: &str) -> Result<Option<Id>> {
        self.optional_str(name)?
            .map(|id| Id::parse(name, id))
            .transpose()
    }

    /// A free JSON object (`attributes`, `metadata`), nested at most [`MAX_JSON_DEPTH`] deep.
    pub fn optional_object(&self, name: &str) -> Result<Option<Map<String, Value>>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(map)) => {
                if 1 + map.values().map(depth).max().unwrap_or(0) > MAX_JSON_DEPTH {
                    return Err(Error::bad_request(format!(
                        "`{name}` is nested deeper than {MAX_JSON_DEPTH} levels"
                    )));
                }
                Ok(Some(map.clone()))
            }
            Some(_) => Err(Error::bad_request(format!(
                "`{name}` must be a JSON object"
            ))),
        }
    }

    pub fn required_object(&self, name: &str) -> Result<Map<String, Value>> {
        self.optional_object(name)?
            .ok_or_else(|| Error::bad_request(format!("`{name}` is required")))
    }

    /// An object whose keys are member ids (`{"u1": 1, ...}`), as a sorted, deduplicated list.
    pub fn member_ids(&self, name: &str) -> Result<Vec<Id>> {
        let map = match self.get(name) {
            None => return Err(Error::bad_request(format!("`{name}` is required"))),
            Some(Value::Object(map)) => map,
            Some(_) => {
                return Err(Error::bad_request(format!(
                    "`{name}` must be an object of member ids, like {{\"user-1\": 1}}"
                )));
            }
        };
        let mut members = Vec::with_capacity(map.len());
        for id in map.keys() {
            members.push(Id::parse(&format!("{name} key"), id.as_str())?);
        }
        members.sort();
        Ok(members)
    }

    /// Milliseconds since the epoch: a non-negative integer (`435.0` counts as one, as JSON
    /// Schema says).
    pub fn optional_timestamp(&self, name: &str) -> Result<Option<u64>> {
        let bad = || {
            Error::bad_request(format!(
                "`{name}` must be a non-negative integer number of milliseconds"
            ))
        };
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let ms = match value {
            Value::Number(n) => n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && (0.0..=MAX_TIMESTAMP as f64).contains(f))
                    .map(|f| f as u64)
            }),
            _ => None,
        };
        match ms {
            Some(ms) if ms <= MAX_TIMESTAMP => Ok(Some(ms)),
            _ => Err(bad()),
        }
    }
}

/// Nesting depth of a JSON value (a scalar is 0).
pub fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Parses `true`/`false` query values; anything else is a 400.
pub fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::bad_request(format!(
            "`{name}` must be true or false"
        ))),
    }
}

pub const DEFAULT_PAGE: usize = 200;
pub const MAX_PAGE: usize = 1000;

/// Reads `?limit=` (1..=1000, default 200).
pub fn page_limit(limit: Option<&str>) -> Result<usize> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(Error::bad_request(format!(
                "`limit` must be an integer from 1 to {MAX_PAGE}"
            ))),
        },
    }
}

/// Reads `?limit=` and `?cursor=`, with `decode` turning the cursor into a position.
pub fn page_request(
    limit: Option<&str>,
    cursor: Option<&str>,
    decode: impl Fn(&str) -> Result<Position>,
) -> Result<PageRequest> {
    Ok(PageRequest {
        limit: page_limit(limit)?,
        after: cursor.map(decode).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_must_be_json_objects() {
        assert!(Fields::parse(b"").unwrap().0.is_empty());
        for bad in [
            &b"{"[..],
            b"[1]",
            b"\"x\"",
            b"12",
            b"{\"a\":}",
            b"\n",
            b"  ",
        ] {
            assert_eq!(Fields::parse(bad).unwrap_err().status(), 400);
        }
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(Fields::parse(&big).unwrap_err().status(), 413);
    }

    #[test]
    fn typed_fields_name_the_field() {
        let f =
            Fields::parse(br#"{"a": 1, "b": "x", "n": null, "o": [], "t": -1, "f": 1.5}"#).unwrap();
        assert!(
            f.required_str("a")
                .unwrap_err()
                .to_string()
                .contains("`a` must be a string")
        );
        assert!(
            f.required_str("n")
                .unwrap_err()
                .to_string()
                .contains("`n` is required")
        );
        assert!(
            f.optional_object("o")
                .unwrap_err()
                .to_string()
                .contains("object")
        );
        assert!(f.optional_timestamp("t").is_err());
        assert!(f.optional_timestamp("f").is_err());
        let whole = Fields::parse(br#"{"t": 435.0, "big": 1e300, "neg": -0.5}"#).unwrap();
        assert_eq!(whole.optional_timestamp("t").unwrap(), Some(435));
        assert!(whole.optional_timestamp("big").is_err());
        assert!(whole.optional_timestamp("neg").is_err());
        assert!(f.optional_timestamp("b").is_err());
        assert_eq!(f.optional_str("missing").unwrap(), None);
    }

    #[test]
    fn deep_json_is_refused() {
        let mut v = Value::from(1);
        for _ in 0..MAX_JSON_DEPTH {
            v = serde_json::json!({ "k": v });
        }
        let ok = Fields::from_map(
            serde_json::json!({ "attributes": v })
                .as_object()
                .unwrap()
                .clone(),
        );
        assert!(ok.optional_object("attributes").is_ok());
        let deeper = Fields::from_map(
            serde_json::json!({ "attributes": { "k": v } })
                .as_object()
                .unwrap()
                .clone(),
        );
        assert!(deeper.optional_object("attributes").is_err());
    }

    #[test]
    fn member_ids_are_validated_and_sorted() {
        let f =
            Fields::parse(br#"{"m": {"b": 1, "a": 1}, "bad": {"x.y": 1}, "list": ["a"]}"#).unwrap();
        assert_eq!(f.member_ids("m").unwrap(), vec!["a", "b"]);
        assert_eq!(f.required_id("m").unwrap_err().status(), 400);
        assert_eq!(f.member_ids("bad").unwrap_err().status(), 400);
        assert_eq!(f.member_ids("list").unwrap_err().status(), 400);
        assert_eq!(f.member_ids("none").unwrap_err().status(), 400);
    }

    #[test]
    fn page_limits() {
        assert_eq!(page_limit(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(page_limit(Some("1000")).unwrap(), 1000);
        for bad in ["0", "1001", "-1", "x", ""] {
            assert_eq!(page_limit(Some(bad)).unwrap_err().status(), 400, "{bad}");
        }
    }
}
