//! Configuration: environment variables only, read once at start-up (every variable: docs/configuration.md).

use crate::auth::{DEFAULT_LEEWAY_SECS, JwtVerifier, MAX_LEEWAY_SECS};
use crate::error::Error;

/// Where the production adapters point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    pub table: String,
    /// Only for functions that publish events.
    pub topic_arn: Option<String>,
}

/// A variable that must be set (and not blank).
pub(crate) fn required(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
) -> Result<String, String> {
    get(name)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("{name} is not set"))
}

impl AwsConfig {
    /// `TABLE_NAME`, and `TOPIC_ARN` for a function that publishes events (not read otherwise).
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        publishes_events: bool,
    ) -> Result<AwsConfig, String> {
        Ok(AwsConfig {
            table: required(&get, "TABLE_NAME")?,
            topic_arn: match publishes_events {
                true => Some(required(&get, "TOPIC_ARN")?),
                false => None,
            },
        })
    }
}

/// The token verifier: `JWT_ALGORITHM` (`HS256` by default) with `JWT_KEY`, or `RS256` with
/// `JWT_PUBLIC_KEY` (PEM; `\n` escapes allowed), and `JWT_LEEWAY_SECS` of tolerated clock
/// skew. There is no default key: without one the function refuses to start.
pub fn verifier_from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<JwtVerifier, String> {
    let leeway = leeway_from_lookup(&get)?;
    key_from_lookup(&get).map(|v| v.with_leeway(leeway))
}

/// `JWT_LEEWAY_SECS`: 0 to 300, default 5.
pub fn leeway_from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<u64, String> {
    match get("JWT_LEEWAY_SECS").as_deref().map(str::trim) {
        None | Some("") => Ok(DEFAULT_LEEWAY_SECS),
        Some(raw) => match raw.parse::<u64>() {
            Ok(secs) if secs <= MAX_LEEWAY_SECS => Ok(secs),
            _ => Err(format!(
                "JWT_LEEWAY_SECS must be a number of seconds from 0 to {MAX_LEEWAY_SECS}, not {raw:?}"
            )),
        },
    }
}

fn key_from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<JwtVerifier, String> {
    let algorithm = get("JWT_ALGORITHM").unwrap_or_else(|| "HS256".into());
    let shown = |e: Error| e.to_string();
    match algorithm.trim() {
        "" | "HS256" => JwtVerifier::hs256(required(get, "JWT_KEY")?.as_bytes()).map_err(shown),
        "RS256" => {
            let pem = required(get, "JWT_PUBLIC_KEY")?.replace("\\n", "\n");
            JwtVerifier::rs256_pem(pem.as_bytes()).map_err(shown)
        }
        other => Err(format!(
            "JWT_ALGORITHM must be HS256 or RS256, not {other:?}"
        )),
    }
}

pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A lookup of these variables only.
    pub(crate) fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn refuses_to_start_without_a_key() {
        assert!(
            verifier_from_lookup(lookup(&[]))
                .unwrap_err()
                .contains("JWT_KEY")
        );
        assert!(verifier_from_lookup(lookup(&[("JWT_KEY", " ")])).is_err());
        assert!(
            verifier_from_lookup(lookup(&[("JWT_ALGORITHM", "RS256")]))
                .unwrap_err()
                .contains("JWT_PUBLIC_KEY")
        );
        assert!(
            verifier_from_lookup(lookup(&[
                ("JWT_ALGORITHM", "RS256"),
                ("JWT_PUBLIC_KEY", "nope")
            ]))
            .is_err()
        );
        assert!(
            verifier_from_lookup(lookup(&[("JWT_ALGORITHM", "none"), ("JWT_KEY", "k")])).is_err()
        );
        assert!(verifier_from_lookup(lookup(&[("JWT_KEY", "k")])).is_ok());
    }

    #[test]
    fn leeway_is_configurable_within_bounds() {
        let v = verifier_from_lookup(lookup(&[("JWT_KEY", "k")])).unwrap();
        assert_eq!(v.leeway(), DEFAULT_LEEWAY_SECS);
        let v =
            verifier_from_lookup(lookup(&[("JWT_KEY", "k"), ("JWT_LEEWAY_SECS", "0")])).unwrap();
        assert_eq!(v.leeway(), 0);
        for bad in ["-1", "301", "5s"] {
            let e = verifier_from_lookup(lookup(&[("JWT_KEY", "k"), ("JWT_LEEWAY_SECS", bad)]));
            assert!(e.unwrap_err().contains("JWT_LEEWAY_SECS"), "{bad}");
        }
    }

    #[test]
    fn aws_config() {
        assert!(AwsConfig::from_lookup(lookup(&[("TABLE_NAME", "t")]), true).is_err());
        let c = AwsConfig::from_lookup(lookup(&[("TABLE_NAME", "t"), ("TOPIC_ARN", "arn")]), true)
            .unwrap();
        assert_eq!(c.table, "t");
        assert_eq!(c.topic_arn.as_deref(), Some("arn"));
        // Read-only functions need no topic.
        let c = AwsConfig::from_lookup(lookup(&[("TABLE_NAME", "t")]), false).unwrap();
        assert_eq!(c.topic_arn, None);
        assert!(AwsConfig::from_lookup(lookup(&[("TOPIC_ARN", "arn")]), false).is_err());
    }
}
