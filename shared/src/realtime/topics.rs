//! The topics of REALTIME.md: the ones clients may publish (parsed and checked against the
//! connection's user), the ones they may subscribe to, the ones the server publishes, and the
//! limits every topic must fit (IoT Core: at most 256 bytes and 7 `/`).

use crate::error::{Error, Result};
use crate::ids::Id;
use crate::model::Caller;

/// IoT Core's limits on a topic name.
pub const MAX_TOPIC_BYTES: usize = 256;
pub const MAX_TOPIC_SLASHES: usize = 7;

/// A topic a client may publish to, with its ids checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTopic {
    /// `apps/{app}/outgoing/users/{me}/messages/{to}/outgoing`: a send.
    Outgoing { to: Id },
    /// `apps/{app}/users/{me}/messages/{cw}/{message_id}/update`: a read receipt.
    MessageUpdate { with: Id, message_id: Id },
    /// `apps/{app}/users/{me}/conversations/{cw}/update`: the conversation is read.
    ConversationUpdate { with: Id },
    /// `apps/{app}/users/{me}/conversations/{cw}/archive`.
    Archive { with: Id },
    /// `apps/{app}/users/{me}/presence/{client_id}` (retained and will messages allowed).
    Presence { client_id: Id },
}

impl ClientTopic {
    /// Parses a client's publish topic; `None` unless it is one of the five shapes, in the
    /// caller's own tenant and tree, with valid ids.
    pub fn parse(topic: &str, caller: &Caller) -> Option<ClientTopic> {
        let levels: Vec<&str> = topic.split('/').collect();
        let id = |raw: &str| Id::parse("topic level", raw).ok();
        let mine = |app: &str, me: &str| caller.app_id == *app && caller.user_id == *me;
        match levels.as_slice() {
            [
                "apps",
                app,
                "outgoing",
                "users",
                me,
                "messages",
                to,
                "outgoing",
            ] if mine(app, me) => Some(ClientTopic::Outgoing { to: id(to)? }),
            [
                "apps",
                app,
                "users",
                me,
                "messages",
                with,
                message_id,
                "update",
            ] if mine(app, me) => Some(ClientTopic::MessageUpdate {
                with: id(with)?,
                message_id: id(message_id)?,
            }),
            ["apps", app, "users", me, "conversations", with, "update"] if mine(app, me) => {
                Some(ClientTopic::ConversationUpdate { with: id(with)? })
            }
            ["apps", app, "users", me, "conversations", with, "archive"] if mine(app, me) => {
                Some(ClientTopic::Archive { with: id(with)? })
            }
            ["apps", app, "users", me, "presence", client_id] if mine(app, me) => {
                Some(ClientTopic::Presence {
                    client_id: id(client_id)?,
                })
            }
            _ => None,
        }
    }

    /// Only presence may be retained (and be a will message).
    pub fn may_retain(&self) -> bool {
        matches!(self, ClientTopic::Presence { .. })
    }
}

/// The prefix of every topic a user may subscribe to: `apps/{app}/users/{me}/`.
pub fn user_tree(app: &str, user: &str) -> String {
    format!("apps/{app}/users/{user}/")
}

/// Whether `filter` is a valid MQTT topic filter: `#` only as the whole last level, `+` only
/// as a whole level.
pub fn is_valid_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    !filter.is_empty()
        && levels.iter().enumerate().all(|(i, level)| match *level {
            "#" => i == levels.len() - 1,
            "+" => true,
            other => !other.contains('#') && !other.contains('+'),
        })
}

/// A subscription is allowed inside the caller's own tree only.
pub fn may_subscribe(filter: &str, caller: &Caller) -> bool {
    let tree = user_tree(&caller.app_id, &caller.user_id);
    is_valid_filter(filter) && filter.len() > tree.len() && filter.starts_with(&tree)
}

/// MQTT matching of a topic name against a filter (`+` one level, `#` the rest). Topics
/// starting with `$` are not matched by leading wildcards.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            literal => {
                if topic_levels.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

/// The user a server topic is for (`apps/{app}/users/{user}/…`), with its app.
pub fn owner_of(topic: &str) -> Option<(&str, &str)> {
    let mut levels = topic.splitn(5, '/');
    match (levels.next(), levels.next(), levels.next(), levels.next()) {
        (Some("apps"), Some(app), Some("users"), Some(user)) => Some((app, user)),
        _ => None,
    }
}

fn user_topic(app: &str, user: &str, rest: &[&str]) -> String {
    let mut topic = format!("apps/{app}/users/{user}");
    for level in rest {
        topic.push('/');
        topic.push_str(level);
    }
    topic
}

pub fn message_added(app: &str, owner: &str, with: &str) -> String {
    user_topic(app, owner, &["messages", with, "clientadded"])
}

pub fn message_updated(app: &str, owner: &str, with: &str, message_id: &str) -> String {
    user_topic(app, owner, &["messages", with, message_id, "clientupdated"])
}

pub fn conversation_updated(app: &str, owner: &str, with: &str) -> String {
    user_topic(app, owner, &["conversations", with, "clientupdated"])
}

pub fn conversation_deleted(app: &str, owner: &str, with: &str) -> String {
    user_topic(app, owner, &["conversations", with, "clientdeleted"])
}

pub fn archived_added(app: &str, owner: &str, with: &str) -> String {
    user_topic(app, owner, &["archived_conversations", with, "clientadded"])
}

pub fn archived_deleted(app: &str, owner: &str, with: &str) -> String {
    user_topic(
        app,
        owner,
        &["archived_conversations", with, "clientdeleted"],
    )
}

pub fn group_updated(app: &str, member: &str, group: &str) -> String {
    user_topic(app, member, &["groups", group, "clientupdated"])
}

/// A client's presence topic (published by the client, its will retained there); the server
/// only ever clears its retained message.
pub fn presence(app: &str, user: &str, client_id: &str) -> String {
    user_topic(app, user, &["presence", client_id])
}

fn fits(topic: &str) -> bool {
    topic.len() <= MAX_TOPIC_BYTES && topic.matches('/').count() <= MAX_TOPIC_SLASHES
}

fn too_long() -> Error {
    Error::bad_request(format!(
        "these ids are too long together for the real-time topics (at most {MAX_TOPIC_BYTES} bytes)"
    ))
}

/// Checks that every topic about `user`'s conversation with `with` fits, and with a
/// `message_id`, the topics about that message too (its receipts, its read updates).
pub fn check_fits(app: &str, user: &str, with: &str, message_id: Option<&str>) -> Result<()> {
    let mut longest = vec![
        archived_deleted(app, user, with),
        group_updated(app, user, with),
    ];
    if let Some(id) = message_id {
        longest.push(message_updated(app, user, with, id));
        longest.push(format!(
            "apps/{app}/outgoing/users/{user}/messages/{with}/outgoing"
        ));
    }
    if longest.iter().all(|t| fits(t)) {
        Ok(())
    } else {
        Err(too_long())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(user: &str, app: &str) -> Caller {
        Caller {
            user_id: Id::parse("sub", user).unwrap(),
            app_id: Id::parse("app", app).unwrap(),
            admin: false,
        }
    }

    #[test]
    fn the_five_client_topics() {
        let me = caller("u1", "a");
        let cases = [
            (
                "apps/a/outgoing/users/u1/messages/u2/outgoing",
                Some("Outgoing"),
            ),
            (
                "apps/a/users/u1/messages/u2/m1/update",
                Some("MessageUpdate"),
            ),
            (
                "apps/a/users/u1/conversations/u2/update",
                Some("ConversationUpdate"),
            ),
            ("apps/a/users/u1/conversations/u2/archive", Some("Archive")),
            ("apps/a/users/u1/presence/c-1", Some("Presence")),
            // Someone else's tree, another tenant, server topics, bad ids, other shapes.
            ("apps/a/outgoing/users/u2/messages/u1/outgoing", None),
            ("apps/b/users/u1/conversations/u2/update", None),
            ("apps/a/users/u1/messages/u2/clientadded", None),
            ("apps/a/users/u1/conversations/u2/clientupdated", None),
            ("apps/a/users/u1/groups/g/clientupdated", None),
            ("apps/a/users/u1/conversations/u.2/archive", None),
            ("apps/a/users/u1/presence/c+1", None),
            ("apps/a/users/u1/presence", None),
            ("apps/a/users/u1/conversations/u2/update/extra", None),
            ("", None),
        ];
        for (topic, kind) in cases {
            let parsed = ClientTopic::parse(topic, &me);
            let name = parsed.as_ref().map(|p| format!("{p:?}"));
            assert_eq!(
                name.as_deref().map(|n| n.split(' ').next().unwrap()),
                kind,
                "{topic}"
            );
        }
        let presence = ClientTopic::parse("apps/a/users/u1/presence/c1", &me).unwrap();
        assert!(presence.may_retain());
        let archive = ClientTopic::parse("apps/a/users/u1/conversations/u2/archive", &me).unwrap();
        assert!(!archive.may_retain());
    }

    #[test]
    fn subscriptions_stay_in_the_users_tree() {
        let me = caller("u1", "a");
        for ok in [
            "apps/a/users/u1/#",
            "apps/a/users/u1/messages/+/clientadded",
            "apps/a/users/u1/conversations/u2/clientupdated",
        ] {
            assert!(may_subscribe(ok, &me), "{ok}");
        }
        for refused in [
            "#",
            "apps/#",
            "apps/a/users/#",
            "apps/a/users/+/#",
            "apps/a/users/u1",
            "apps/a/users/u1/",
            "apps/a/users/u10/#",
            "apps/b/users/u1/#",
            "apps/a/users/u1/#/x",
            "apps/a/users/u1/mess+ages",
            "apps/a/outgoing/users/u1/#",
        ] {
            assert!(!may_subscribe(refused, &me), "{refused}");
        }
    }

    #[test]
    fn wildcard_matching() {
        assert!(matches(
            "apps/a/users/u1/#",
            "apps/a/users/u1/messages/u2/clientadded"
        ));
        assert!(matches("apps/a/users/u1/#", "apps/a/users/u1"));
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("a/+/c", "a/b/d"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("+/x", "$SYS/x"));
    }

    #[test]
    fn server_topics_and_their_owner() {
        let t = message_added("a", "u2", "u1");
        assert_eq!(t, "apps/a/users/u2/messages/u1/clientadded");
        assert_eq!(owner_of(&t), Some(("a", "u2")));
        assert_eq!(
            message_updated("a", "u1", "u2", "m1"),
            "apps/a/users/u1/messages/u2/m1/clientupdated"
        );
        assert_eq!(owner_of("apps/a/outgoing/users/u1"), None);
        let me = caller("u1", "a");
        let presence = presence("a", "u1", "c-1");
        assert_eq!(
            ClientTopic::parse(&presence, &me),
            Some(ClientTopic::Presence {
                client_id: Id::parse("c", "c-1").unwrap()
            })
        );
    }

    #[test]
    fn topics_must_fit_iot_cores_limits() {
        let long = "x".repeat(128);
        let half = "y".repeat(64);
        assert!(check_fits("a", "u1", "u2", Some("m1")).is_ok());
        assert!(check_fits("a", &half, "u2", Some(&half)).is_ok());
        assert!(check_fits("a", &long, "u2", None).is_ok());
        let e = check_fits("a", &long, "u2", Some(&long)).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(check_fits(&long, &long, &long, None).is_err());
    }
}
