//! Retained messages, bounded as IoT Core bounds them (REALTIME.md "Guarantees"): only on a
//! user's own presence topics (the session refuses them elsewhere), at most [`PER_USER`] per
//! user of at most [`MAX_BYTES`] each (the oldest goes), replayed once per SUBSCRIBE however
//! many of its filters match, and cleared by a `disconnected` presence (a will's included), so
//! that the wills of clients long gone do not pile up.

use std::collections::HashMap;

use bytes::Bytes;
use bytestring::ByteString;
use chat21::realtime::topics;
use rmqtt_codec::types::QoS;
use serde_json::Value;

use super::router::Delivery;

/// Retained messages kept per user; a newer one pushes out the oldest.
pub const PER_USER: usize = 8;
/// The largest retained message (payload bytes); a larger retained publish is refused.
pub const MAX_BYTES: usize = 1024;

/// Every user's retained messages.
#[derive(Default)]
pub struct Retained {
    /// Per app and user, oldest first (retaining a topic again makes it the newest).
    by_user: HashMap<(String, String), Vec<(String, Bytes)>>,
}

impl Retained {
    /// Keeps `payload` as `topic`'s retained message (of `user` of `app`), or with an empty
    /// payload forgets it.
    pub fn set(&mut self, app: &str, user: &str, topic: &str, payload: Bytes) {
        let key = (app.to_string(), user.to_string());
        let kept = self.by_user.entry(key.clone()).or_default();
        kept.retain(|(t, _)| t != topic);
        if !payload.is_empty() {
            kept.push((topic.to_string(), payload));
            if kept.len() > PER_USER {
                kept.remove(0);
            }
        }
        if kept.is_empty() {
            self.by_user.remove(&key);
        }
    }

    /// What one SUBSCRIBE of `user` to `filters` replays: each retained message that any
    /// filter matches, once, at the highest QoS granted among those filters.
    pub fn replay(&self, app: &str, user: &str, filters: &[(String, QoS)]) -> Vec<Delivery> {
        let Some(kept) = self.by_user.get(&(app.to_string(), user.to_string())) else {
            return Vec::new();
        };
        kept.iter()
            .filter_map(|(topic, payload)| {
                let qos = filters
                    .iter()
                    .filter(|(filter, _)| topics::matches(filter, topic))
                    .map(|(_, qos)| *qos)
                    .max_by_key(|qos| *qos as u8)?;
                Some(Delivery {
                    topic: ByteString::from(topic.as_str()),
                    payload: payload.clone(),
                    qos,
                    retain: true,
                })
            })
            .collect()
    }
}

/// A presence payload saying the client is gone (`{"disconnected": true}`, Chat21's will), as
/// the shared crate's inbound handler reads it: `connected: true` wins over it.
pub fn is_disconnected(payload: &[u8]) -> bool {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(payload) else {
        return false;
    };
    fields.get("connected") != Some(&Value::Bool(true))
        && fields.get("disconnected") == Some(&Value::Bool(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics_of(deliveries: &[Delivery]) -> Vec<String> {
        deliveries.iter().map(|d| d.topic.to_string()).collect()
    }

    #[test]
    fn at_most_8_per_user_the_oldest_goes() {
        let mut retained = Retained::default();
        for i in 0..10 {
            let topic = format!("apps/a/users/u1/presence/c{i}");
            retained.set("a", "u1", &topic, Bytes::from("{}"));
        }
        retained.set("a", "u2", "apps/a/users/u2/presence/d", Bytes::from("{}"));
        let all = [("apps/a/users/u1/#".to_string(), QoS::AtLeastOnce)];
        let kept = topics_of(&retained.replay("a", "u1", &all));
        let expected: Vec<String> = (2..10)
            .map(|i| format!("apps/a/users/u1/presence/c{i}"))
            .collect();
        assert_eq!(kept, expected);
        // Retained again, c2 is the newest: c10 pushes out c3.
        retained.set("a", "u1", "apps/a/users/u1/presence/c2", Bytes::from("[]"));
        retained.set("a", "u1", "apps/a/users/u1/presence/c10", Bytes::from("{}"));
        let kept = topics_of(&retained.replay("a", "u1", &all));
        assert!(!kept.contains(&"apps/a/users/u1/presence/c3".to_string()));
        assert_eq!(kept.last().unwrap(), "apps/a/users/u1/presence/c10");
        // An empty payload forgets; the last one forgotten leaves nothing behind.
        for topic in kept {
            retained.set("a", "u1", &topic, Bytes::new());
        }
        assert!(retained.replay("a", "u1", &all).is_empty());
        assert!(!retained.by_user.contains_key(&("a".into(), "u1".into())));
        assert_eq!(
            retained
                .replay("a", "u2", &[("#".into(), QoS::AtMostOnce)])
                .len(),
            1
        );
    }

    #[test]
    fn replayed_once_at_the_highest_qos_of_the_matching_filters() {
        let mut retained = Retained::default();
        retained.set("a", "u1", "apps/a/users/u1/presence/x", Bytes::from("{}"));
        let filters = vec![
            ("apps/a/users/u1/presence/x".to_string(), QoS::AtMostOnce),
            ("apps/a/users/u1/#".to_string(), QoS::AtLeastOnce),
            ("apps/a/users/u1/presence/+".to_string(), QoS::AtMostOnce),
            ("apps/a/users/u1/messages/#".to_string(), QoS::AtLeastOnce),
        ];
        let replayed = retained.replay("a", "u1", &filters);
        assert_eq!(replayed.len(), 1);
        assert_eq!(replayed[0].qos, QoS::AtLeastOnce);
        assert!(replayed[0].retain);
        let none = [("apps/a/users/u1/messages/#".to_string(), QoS::AtLeastOnce)];
        assert!(retained.replay("a", "u1", &none).is_empty());
    }

    #[test]
    fn disconnected_presences() {
        assert!(is_disconnected(br#"{"disconnected": true}"#));
        assert!(is_disconnected(br#"{"disconnected": true, "at": 5}"#));
        for not in [
            &br#"{"connected": true}"#[..],
            br#"{"connected": true, "disconnected": true}"#,
            br#"{"disconnected": "true"}"#,
            br#"{"disconnected": false}"#,
            b"[true]",
            b"disconnected",
            b"",
        ] {
            assert!(!is_disconnected(not), "{}", String::from_utf8_lossy(not));
        }
    }
}
