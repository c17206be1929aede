//! The HTTP-level suite of refusals, on the embedded store: every bad request gets the right
//! status and the JSON error envelope (`{"success": false, "code", "message"}`), and changes
//! nothing — no timeline, conversation, group or event differs after a refused call. A few
//! success shapes and the paging contract are checked along the way.

mod conversations;
mod groups;
mod other;
mod send;
mod tokens;
mod webhooks;

use std::collections::{BTreeMap, BTreeSet};

use crate::common::{APP, Harness, KEY, api_on, call, token, token_for};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chat21::entry::http::Api;
use chat21::ops::groups::MAX_MEMBER_CHANGES;
use chat21::ports::PageRequest;
use chat21::routes::Route;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};

const SEND: &str = "/api/app1/messages";
const GROUPS: &str = "/api/app1/groups";
/// The fixture's group: owner u1, members u1 and u2.
const TEAM: &str = "group-team";
const TEAM_PATH: &str = "/api/app1/groups/group-team";
/// Users the snapshots look at; `boss` is an admin, u3 and u4 are strangers to the fixture.
const USERS: [&str; 5] = ["u1", "u2", "u3", "u4", "boss"];
/// Groups the snapshots look at (a refused create must not make `group-new`).
const SNAPSHOT_GROUPS: [&str; 3] = [TEAM, "group-new", "group-nope"];

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

struct World {
    h: Harness,
    api: Api,
}

/// An empty embedded store behind the HTTP glue.
fn empty() -> World {
    let h = Harness::sqlite();
    let api = api_on(h.deps.clone());
    World { h, api }
}

/// u1 and u2 have exchanged two direct messages; u1 owns `group-team` (name "Team",
/// attributes `{"topic": "rust"}`) with u2, where u2 has posted once. Everything is delivered.
async fn world() -> World {
    let w = empty();
    w.send_ok(&token("u1"), "u2", "hello").await;
    w.send_ok(&token("u2"), "u1", "hi back").await;
    w.ok(
        "POST",
        GROUPS,
        &token("u1"),
        Some(json!({
            "group_name": "Team",
            "group_id": TEAM,
            "group_members": {"u2": 1},
            "attributes": {"topic": "rust"},
        })),
    )
    .await;
    w.h.deliver_all().await;
    w.send_ok(&token("u2"), TEAM, "to the team").await;
    w.h.deliver_all().await;
    w
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    Some(v.to_string().into_bytes())
}

fn raw(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

/// A valid send body from anyone to u2.
fn send_body() -> Value {
    json!({
        "sender_fullname": "One",
        "recipient_id": "u2",
        "recipient_fullname": "Two",
        "text": "hi",
    })
}

fn with(mut body: Value, field: &str, value: Value) -> Value {
    body[field] = value;
    body
}

fn without(mut body: Value, field: &str) -> Value {
    body.as_object_mut().unwrap().remove(field);
    body
}

/// One refused request and its expected status.
struct Case {
    what: String,
    method: &'static str,
    path: String,
    token: Option<String>,
    body: Option<Vec<u8>>,
    status: u16,
}

fn case(
    what: impl Into<String>,
    method: &'static str,
    path: impl Into<String>,
    token: Option<String>,
    body: Option<Vec<u8>>,
    status: u16,
) -> Case {
    Case {
        what: what.into(),
        method,
        path: path.into(),
        token,
        body,
        status,
    }
}

fn send_case(what: impl Into<String>, token: &str, body: Option<Vec<u8>>, status: u16) -> Case {
    case(what, "POST", SEND, Some(token.to_string()), body, status)
}

/// The stable code of each status (src/error.rs).
fn code_of(status: u16) -> &'static str {
    match status {
        400 => "invalid_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        other => panic!("no refusal expected with status {other}"),
    }
}

/// The error envelope, and nothing else (no stack trace, no detail).
fn assert_envelope(what: &str, status: u16, body: &Value) {
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: the error body is not a JSON object: {body}"));
    assert_eq!(body["success"], json!(false), "{what}: {body}");
    assert_eq!(body["code"], json!(code_of(status)), "{what}: {body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| !m.trim().is_empty()),
        "{what}: the error has no message: {body}"
    );
    let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["success", "code", "message"]),
        "{what}: {body}"
    );
}

/// Everything a refused call could have changed: every timeline and conversation list of the
/// known users and groups, the groups (meta, pending changes, members), and the published
/// events (a group made under a generated id would show up there).
async fn snapshot(h: &Harness) -> BTreeMap<String, Value> {
    let mut state = BTreeMap::new();
    state.insert(
        "events".to_string(),
        serde_json::to_value(h.events.published()).unwrap(),
    );
    let store = &h.deps.store;
    for user in USERS {
        for archived in [false, true] {
            let page = store
                .list_conversations(APP, user, archived, &PageRequest::first(1000))
                .await
                .unwrap();
            state.insert(
                format!("conversations of {user} (archived: {archived})"),
                serde_json::to_value(page.items).unwrap(),
            );
        }
    }
    let owners: Vec<&str> = USERS.iter().chain(&SNAPSHOT_GROUPS).copied().collect();
    for owner in &owners {
        for peer in &owners {
            let timeline = h.timeline(owner, peer).await;
            if !timeline.is_empty() {
                state.insert(
                    format!("timeline of {owner} with {peer}"),
                    serde_json::to_value(timeline).unwrap(),
                );
            }
        }
    }
    for app in [APP, "app2"] {
        state.insert(
            format!("webhooks of {app}"),
            serde_json::to_value(store.list_webhooks(app).await.unwrap()).unwrap(),
        );
    }
    for group in SNAPSHOT_GROUPS {
        let history = h.history(group).await;
        if !history.is_empty() {
            state.insert(
                format!("history of {group}"),
                serde_json::to_value(history).unwrap(),
            );
        }
        let head = store.group_head(APP, group).await.unwrap();
        state.insert(
            format!("group {group}"),
            json!({
                "meta": head.as_ref().map(|h| serde_json::to_value(&h.meta).unwrap()),
                "pending": head.as_ref().map(|h| serde_json::to_value(&h.pending).unwrap()),
                "members": h.members(group).await,
            }),
        );
    }
    state
}

fn assert_unchanged(what: &str, before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>) {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| {
            format!(
                "{k}:\n  before {:?}\n  after  {:?}",
                before.get(k),
                after.get(k)
            )
        })
        .collect();
    assert!(
        changed.is_empty(),
        "{what}: the refused call changed the state:\n{}",
        changed.join("\n")
    );
}

impl World {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> (u16, Value) {
        call(&self.api, method, path, token, body).await
    }

    /// A call that must succeed (2xx with `"success": true`); returns the body.
    async fn ok(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string().into_bytes());
        let (status, json) = self.call(method, path, Some(token), body.as_deref()).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {json}"
        );
        assert_eq!(json["success"], json!(true), "{method} {path}: {json}");
        json
    }

    /// Sends a direct or group message over HTTP; returns the stored message.
    async fn send_ok(&self, token: &str, to: &str, text: &str) -> Value {
        let body = with(
            with(send_body(), "recipient_id", json!(to)),
            "text",
            json!(text),
        );
        self.ok("POST", SEND, token, Some(body)).await["message"].clone()
    }

    /// Runs one refused call: the status, the envelope, and no change anywhere.
    async fn refused(&self, c: &Case) {
        let what = format!("{} ({} {})", c.what, c.method, c.path);
        let before = snapshot(&self.h).await;
        let (status, body) = self
            .call(c.method, &c.path, c.token.as_deref(), c.body.as_deref())
            .await;
        assert_eq!(status, c.status, "{what}: {body}");
        assert_envelope(&what, status, &body);
        assert_unchanged(&what, &before, &snapshot(&self.h).await);
    }

    async fn refuse_all(&self, cases: &[Case]) {
        for c in cases {
            self.refused(c).await;
        }
    }

    /// Like [`World::refused`], for a request built by hand with [`raw_call`] (its future runs
    /// only when awaited here, between the two snapshots).
    async fn refused_raw(
        &self,
        what: &str,
        expected: u16,
        response: impl Future<Output = (u16, Option<String>, String)>,
    ) {
        let before = snapshot(&self.h).await;
        let (status, _, text) = response.await;
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{what}: the error body is not JSON: {text:?}"));
        assert_eq!(status, expected, "{what}: {json}");
        assert_envelope(what, status, &json);
        assert_unchanged(what, &before, &snapshot(&self.h).await);
    }

    async fn list(&self, path: &str, token: &str) -> Vec<Value> {
        self.ok("GET", path, token, None).await["result"]
            .as_array()
            .unwrap()
            .clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens built by hand
// ---------------------------------------------------------------------------------------------

fn in_an_hour() -> u64 {
    get_current_timestamp() + 3600
}

fn sign_with(claims: Value, key: &[u8], algorithm: Algorithm) -> String {
    encode(
        &Header::new(algorithm),
        &claims,
        &EncodingKey::from_secret(key),
    )
    .unwrap()
}

fn sign(claims: Value) -> String {
    sign_with(claims, KEY, Algorithm::HS256)
}

/// An unsigned token: `{"alg":"none"}` header, the claims, an empty signature.
fn unsigned(claims: Value) -> String {
    let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}

/// Tokens that must be refused with 401.
fn invalid_tokens() -> Vec<(&'static str, String)> {
    let valid = json!({"sub": "u1", "app_id": APP, "exp": in_an_hour()});
    vec![
        ("empty Authorization header", String::new()),
        ("Bearer without a token", "Bearer ".to_string()),
        ("not a JWT", "not-a-token".to_string()),
        ("three garbage parts", "a.b.c".to_string()),
        (
            "a truncated token",
            token("u1")[..token("u1").len() - 5].to_string(),
        ),
        (
            "expired",
            sign(json!({"sub": "u1", "app_id": APP, "exp": get_current_timestamp() - 3600})),
        ),
        (
            "signed with another key",
            sign_with(valid.clone(), b"another-key", Algorithm::HS256),
        ),
        ("alg none", unsigned(valid.clone())),
        (
            "alg none with Bearer",
            format!("Bearer {}", unsigned(valid.clone())),
        ),
        (
            "HS384 although HS256 is configured",
            sign_with(valid.clone(), KEY, Algorithm::HS384),
        ),
        (
            "without app_id",
            sign(json!({"sub": "u1", "exp": in_an_hour()})),
        ),
        (
            "without sub",
            sign(json!({"app_id": APP, "exp": in_an_hour()})),
        ),
        ("without exp", sign(json!({"sub": "u1", "app_id": APP}))),
        (
            "exp not a number",
            sign(json!({"sub": "u1", "app_id": APP, "exp": "tomorrow"})),
        ),
        (
            "app_id not a string",
            sign(json!({"sub": "u1", "app_id": 1, "exp": in_an_hour()})),
        ),
        (
            "app_id not a valid id",
            sign(json!({"sub": "u1", "app_id": "app#1", "exp": in_an_hour()})),
        ),
        (
            "sub is not a valid id",
            sign(json!({"sub": "u#1", "app_id": APP, "exp": in_an_hour()})),
        ),
    ]
}
