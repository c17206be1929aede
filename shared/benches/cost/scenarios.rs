//! The scenarios: what is measured. Everything else is layout-agnostic; the item names here
//! are this table layout's (keys.rs).

use serde_json::{Map, Value, json};

use crate::Outcome;
use crate::recorder::{Attrs, TableSchema};
use crate::rig::{Env, Rig};
use chat21::adapters::dynamo::request::{ORDER, PK, SK};

/// The table as template.yaml declares it.
pub fn schema() -> TableSchema {
    TableSchema {
        key: [PK, SK],
        lsi_sort_keys: vec![ORDER],
        label,
    }
}

/// Names an item by its key shape (keys.rs).
fn label(item: &Attrs) -> String {
    let text = |k: &str| item.get(k).and_then(|v| v["S"].as_str()).unwrap_or("");
    let (pk, sk) = (text(PK), text(SK));
    let kind = pk.split('#').nth(1).unwrap_or("");
    match (kind, sk) {
        ("D", _) => "direct timeline message",
        ("H", _) => "group history message",
        ("T", _) => "inline copy",
        ("U", s) if s.starts_with("C#") => "conversation row",
        ("G", "GROUP") => "group meta",
        ("G", s) if s.starts_with("M#") => "membership",
        ("G", s) if s.starts_with("C#") => "group change record",
        _ => "item",
    }
    .to_string()
}

pub const TEXT: &str = "Hi! Are we still on for the design review at 3pm tomorrow?";
pub const REPLY: &str = "Yes, see you there. I'll bring the mockups.";
pub const GROUP_NAME: &str = "Project Phoenix";
/// Messages in the conversation deleted permanently.
pub const DELETED_MESSAGES: usize = 10;
/// Conversations of the user who lists them.
pub const LISTED_CONVERSATIONS: usize = 10;
/// Messages in the timeline read (one page: the default limit is 200).
pub const TIMELINE_MESSAGES: usize = 50;

/// A user id shaped like Tiledesk's (a 24-hex-digit ObjectId).
fn user_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..24].to_string()
}

fn direct(to: &str, text: &str) -> Value {
    json!({
        "sender_fullname": "Alice Johnson",
        "recipient_id": to,
        "recipient_fullname": "Bob Smith",
        "text": text,
    })
}

fn to_group(group: &str, text: &str) -> Value {
    json!({
        "sender_fullname": "Alice Johnson",
        "recipient_id": group,
        "recipient_fullname": GROUP_NAME,
        "channel_type": "group",
        "text": text,
    })
}

fn ids(members: &[String]) -> Value {
    let map: Map<String, Value> = members.iter().map(|m| (m.clone(), json!(1))).collect();
    Value::Object(map)
}

fn create_body(members: &[String]) -> Value {
    json!({ "group_name": GROUP_NAME, "group_members": ids(members) })
}

/// Two users who exchanged `n` messages (alternating), each delivered before the reply.
async fn conversation(rig: &Rig<'_>, n: usize) -> (String, String) {
    let (a, b) = (user_id(), user_id());
    for i in 0..n {
        let (from, to) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let text = if i % 2 == 0 { TEXT } else { REPLY };
        rig.call("POST", "/messages", from, Some(direct(to, text)))
            .await;
        rig.settle().await;
    }
    (a, b)
}

pub async fn run(env: &Env) -> Vec<Outcome> {
    let mut out = Vec::new();

    // Direct message, then read and archive on the same conversation.
    let chat = Rig::fresh(env).await;
    let (alice, bob) = conversation(&chat, 2).await;
    let sent = chat
        .measure(
            "direct message",
            "send + deliver, in a conversation both users already have",
            "POST",
            "/messages",
            &alice,
            Some(direct(&bob, TEXT)),
        )
        .await;
    out.push(sent);

    // A group message to 100 members (the sender one of them).
    let big = Rig::fresh(env).await;
    let owner = user_id();
    let members: Vec<String> = (0..97).map(|_| user_id()).collect();
    let group = big
        .call("POST", "/groups", &owner, Some(create_body(&members)))
        .await;
    let group = group["group"]["uid"]
        .as_str()
        .expect("group uid")
        .to_string();
    for _ in 0..2 {
        let join = json!({ "member_id": user_id() });
        big.call(
            "POST",
            &format!("/groups/{group}/members"),
            &owner,
            Some(join),
        )
        .await;
    }
    // The setup's changes are delivered (one row update per member each); one earlier
    // message makes a member's message the last of every member's conversation.
    big.settle().await;
    big.call("POST", "/messages", &owner, Some(to_group(&group, REPLY)))
        .await;
    big.settle().await;
    out.push(
        big.measure(
            "group message (100 members)",
            "send (once, into the group history) + fan-out to the 100 members' conversation rows (the sender's included), each row there already",
            "POST",
            "/messages",
            &owner,
            Some(to_group(&group, TEXT)),
        )
        .await,
    );

    // Group creations, all their system messages fanned out.
    for size in [10, 20] {
        let rig = Rig::fresh(env).await;
        let owner = user_id();
        let members: Vec<String> = (1..size).map(|_| user_id()).collect();
        let created = rig
            .measure(
                &format!("create group ({size} members)"),
                &format!("the creator + {} members; GROUP_CREATED and {size} MEMBER_JOINED_GROUP messages written once into the history, each member's row updated once for the run", size - 1),
                "POST",
                "/groups",
                &owner,
                Some(create_body(&members)),
            )
            .await;
        out.push(created.clone());
        if size != 20 {
            continue;
        }
        // Join, leave, set-members on the 20-member group just created.
        let group = created.answer["group"]["uid"]
            .as_str()
            .expect("uid")
            .to_string();
        let newcomer = user_id();
        out.push(
            rig.measure(
                "join",
                "the owner adds a member to the 20-member group (21 system messages in its history before; the joiner's view opens on them, nothing copied)",
                "POST",
                &format!("/groups/{group}/members"),
                &owner,
                Some(json!({ "member_id": newcomer })),
            )
            .await,
        );
        out.push(
            rig.measure(
                "leave",
                "that member leaves (21 members before, 20 after; the leaver's row gets MEMBER_LEFT_GROUP too, and its view closes there)",
                "DELETE",
                &format!("/groups/{group}/members/{newcomer}"),
                &newcomer,
                None,
            )
            .await,
        );
        let mut wanted: Vec<String> = members[2..].to_vec();
        wanted.push(owner.clone());
        wanted.extend([user_id(), user_id()]);
        out.push(
            rig.measure(
                "set-members",
                "the owner replaces the 20 members: 2 removed, 2 added (4 system messages; the 2 joiners' views open on the history)",
                "PUT",
                &format!("/groups/{group}/members"),
                &owner,
                Some(json!({ "members": ids(&wanted) })),
            )
            .await,
        );
    }

    out.push(
        chat.measure(
            "mark read",
            "the recipient marks the direct conversation read (their row, then the peer's read mark)",
            "POST",
            &format!("/{bob}/conversations/{alice}/read"),
            &bob,
            None,
        )
        .await,
    );
    out.push(
        chat.measure(
            "archive",
            "the recipient archives the direct conversation",
            "DELETE",
            &format!("/conversations/{alice}"),
            &bob,
            None,
        )
        .await,
    );

    let rig = Rig::fresh(env).await;
    let (carol, dave) = conversation(&rig, DELETED_MESSAGES).await;
    out.push(
        rig.measure(
            &format!("delete ({DELETED_MESSAGES} messages)"),
            &format!("permanent delete of a direct conversation of {DELETED_MESSAGES} messages (the caller's row becomes a tombstone; the shared timeline stays)"),
            "DELETE",
            &format!("/conversations/{dave}?delete=true"),
            &carol,
            None,
        )
        .await,
    );

    let rig = Rig::fresh(env).await;
    let erin = user_id();
    for _ in 0..LISTED_CONVERSATIONS {
        rig.call("POST", "/messages", &user_id(), Some(direct(&erin, TEXT)))
            .await;
    }
    rig.settle().await;
    out.push(
        rig.measure(
            "list conversations",
            &format!(
                "a user with {LISTED_CONVERSATIONS} active conversations lists them (one page)"
            ),
            "GET",
            &format!("/{erin}/conversations"),
            &erin,
            None,
        )
        .await,
    );

    let rig = Rig::fresh(env).await;
    let (frank, gina) = conversation(&rig, TIMELINE_MESSAGES).await;
    out.push(
        rig.measure(
            "get timeline",
            &format!("a conversation of {TIMELINE_MESSAGES} messages, read in one page (default limit 200)"),
            "GET",
            &format!("/{frank}/conversations/{gina}/messages"),
            &frank,
            None,
        )
        .await,
    );
    out
}
