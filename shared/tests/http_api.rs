//! The HTTP-level suite of refusals, on the embedded store: every bad request gets the right
//! status and the JSON error envelope (`{"success": false, "code", "message"}`), and changes
//! nothing — no timeline, conversation, group or event differs after a refused call. A few
//! success shapes and the paging contract are checked along the way.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chat21::api::Api;
use chat21::ops::groups::MAX_MEMBER_CHANGES;
use chat21::ports::PageRequest;
use chat21::routes::Route;
use common::{APP, Harness, KEY, api_on, call, token, token_for};
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
    let h = Harness::embedded();
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
    for group in SNAPSHOT_GROUPS {
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

// ---------------------------------------------------------------------------------------------
// Send: POST /api/app1/messages
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn send_answers_the_stored_message() {
    let w = world().await;
    let body = json!({
        "sender_fullname": "One",
        "recipient_id": "u3",
        "recipient_fullname": "Three",
        "text": "hey",
        "attributes": {"a": 1},
        "metadata": {"src": "x", "width": 1, "height": 2},
    });
    let answer = w.ok("POST", SEND, &token("u1"), Some(body)).await;
    let keys: BTreeSet<&str> = answer
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["success", "message"]), "{answer}");
    let m = &answer["message"];
    assert!(
        m["message_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{m}"
    );
    assert!(m["timestamp"].is_u64(), "{m}");
    assert_eq!(m["status"], json!(100));
    assert_eq!(m["sender"], json!("u1"));
    assert_eq!(m["sender_fullname"], json!("One"));
    assert_eq!(m["recipient"], json!("u3"));
    assert_eq!(m["recipient_fullname"], json!("Three"));
    assert_eq!(m["text"], json!("hey"));
    assert_eq!(m["type"], json!("text"));
    assert_eq!(m["channel_type"], json!("direct"));
    assert_eq!(m["attributes"], json!({"a": 1}));
    assert_eq!(m["metadata"], json!({"src": "x", "width": 1, "height": 2}));
    assert_eq!(m["app_id"], json!(APP));
    assert_eq!(m["timelineOf"], json!("u1"));
    assert_eq!(m["conversWith"], json!("u3"));

    // An explicit timestamp is kept.
    let stamped = w
        .ok(
            "POST",
            SEND,
            &token("u1"),
            Some(with(send_body(), "timestamp", json!(1234))),
        )
        .await;
    assert_eq!(stamped["message"]["timestamp"], json!(1234));
}

#[tokio::test]
async fn send_refuses_bodies_that_are_not_json_objects() {
    let w = world().await;
    let u1 = token("u1");
    let cases = [
        send_case("malformed JSON", &u1, raw("{"), 400),
        send_case("malformed JSON (missing value)", &u1, raw(r#"{"a":}"#), 400),
        send_case("trailing garbage", &u1, raw(r#"{"a": 1} x"#), 400),
        send_case("not JSON at all", &u1, raw("hello"), 400),
        send_case("an empty JSON array", &u1, raw("[]"), 400),
        send_case(
            "an array of the fields",
            &u1,
            bytes(json!([send_body()])),
            400,
        ),
        send_case("a JSON string", &u1, raw(r#""x""#), 400),
        send_case("a JSON number", &u1, raw("12"), 400),
        send_case("JSON null", &u1, raw("null"), 400),
        send_case("JSON true", &u1, raw("true"), 400),
        send_case(
            "invalid UTF-8",
            &u1,
            Some(vec![b'{', 0xff, 0xfe, b'}']),
            400,
        ),
        send_case("no body (required fields missing)", &u1, None, 400),
        send_case("an empty body (required fields missing)", &u1, raw(""), 400),
        send_case(
            "a blank body (required fields missing)",
            &u1,
            raw("  \n"),
            400,
        ),
        send_case("an empty object", &u1, raw("{}"), 400),
    ];
    w.refuse_all(&cases).await;
}

#[tokio::test]
async fn send_refuses_missing_required_fields() {
    let w = world().await;
    let u1 = token("u1");
    for field in ["sender_fullname", "recipient_id", "recipient_fullname"] {
        let cases = [
            send_case(
                format!("missing {field}"),
                &u1,
                bytes(without(send_body(), field)),
                400,
            ),
            send_case(
                format!("{field}: null"),
                &u1,
                bytes(with(send_body(), field, Value::Null)),
                400,
            ),
        ];
        w.refuse_all(&cases).await;
        // The message names the field, so that a client knows what to fix.
        let (_, body) = w
            .call(
                "POST",
                SEND,
                Some(&u1),
                Some(without(send_body(), field).to_string().as_bytes()),
            )
            .await;
        assert!(
            body["message"].as_str().unwrap().contains(field),
            "{field}: {body}"
        );
    }
}

#[tokio::test]
async fn send_refuses_wrong_typed_fields() {
    let w = world().await;
    let u1 = token("u1");
    let wrong = [
        ("text", json!(5)),
        ("text", json!({"t": "x"})),
        ("recipient_id", json!(1)),
        ("recipient_id", json!(["u2"])),
        ("sender_fullname", json!(true)),
        ("recipient_fullname", json!(2)),
        ("type", json!([])),
        ("type", json!(1)),
        ("type", json!("")),
        ("channel_type", json!(1)),
        ("attributes", json!("x")),
        ("attributes", json!([1])),
        ("attributes", json!(7)),
        ("metadata", json!(3)),
        ("metadata", json!("x")),
        ("metadata", json!([])),
        ("message_id", json!(12)),
        ("sender_id", json!(12)),
        ("type", json!("t".repeat(1000))),
        ("attributes", nested(20)),
        ("metadata", nested(20)),
    ];
    let cases: Vec<Case> = wrong
        .into_iter()
        .map(|(field, value)| {
            send_case(
                format!("{field}: {value}"),
                &u1,
                bytes(with(send_body(), field, value)),
                400,
            )
        })
        .collect();
    w.refuse_all(&cases).await;
}

/// A JSON object nested `levels` deep.
fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| json!({ "k": inner }))
}

#[tokio::test]
async fn send_refuses_an_unknown_channel_type() {
    let w = world().await;
    let u1 = token("u1");
    let cases: Vec<Case> = ["broadcast", "Direct", "GROUP", "", "channel"]
        .into_iter()
        .map(|channel| {
            send_case(
                format!("channel_type {channel:?}"),
                &u1,
                bytes(with(send_body(), "channel_type", json!(channel))),
                400,
            )
        })
        .collect();
    w.refuse_all(&cases).await;
    w.ok(
        "POST",
        SEND,
        &u1,
        Some(with(send_body(), "channel_type", json!("direct"))),
    )
    .await;
}

/// Ids that API.md forbids.
fn bad_ids() -> Vec<(&'static str, String)> {
    vec![
        ("with #", "a#b".to_string()),
        ("with /", "a/b".to_string()),
        ("with .", "a.b".to_string()),
        ("with *", "a*b".to_string()),
        ("with a control character", "a\u{1}b".to_string()),
        ("with a newline", "a\nb".to_string()),
        ("with DEL", "a\u{7f}b".to_string()),
        ("of 129 characters", "x".repeat(129)),
        ("empty", String::new()),
    ]
}

#[tokio::test]
async fn send_refuses_invalid_ids() {
    let w = world().await;
    // An admin may send as someone else, so only the id itself can be wrong for `sender_id`.
    let boss = token_for("boss", APP, true);
    let u1 = token("u1");
    let mut cases = Vec::new();
    for (why, id) in bad_ids() {
        for (field, caller) in [
            ("recipient_id", &u1),
            ("message_id", &u1),
            ("sender_id", &boss),
        ] {
            cases.push(send_case(
                format!("{field} {why}"),
                caller,
                bytes(with(send_body(), field, json!(id))),
                400,
            ));
        }
        cases.push(send_case(
            format!("sender_id {why} from a non-admin"),
            &u1,
            bytes(with(send_body(), "sender_id", json!(id))),
            400,
        ));
    }
    w.refuse_all(&cases).await;
    // 128 characters are fine.
    let longest = "x".repeat(128);
    let sent = w
        .ok(
            "POST",
            SEND,
            &u1,
            Some(with(
                with(send_body(), "recipient_id", json!(longest)),
                "message_id",
                json!(longest),
            )),
        )
        .await;
    assert_eq!(sent["message"]["message_id"], json!(longest));
}

#[tokio::test]
async fn send_enforces_the_size_limits() {
    let w = world().await;
    let u1 = token("u1");
    let long_text = "a".repeat(64 * 1024 + 1);
    let text_body = with(send_body(), "text", json!(long_text)).to_string();
    assert!(text_body.len() < 256 * 1024);
    let huge_text = with(send_body(), "text", json!("a".repeat(300 * 1024))).to_string();
    let huge_attributes = with(
        send_body(),
        "attributes",
        json!({"blob": "b".repeat(260 * 1024)}),
    )
    .to_string();
    let padded = format!("{}{}", send_body(), " ".repeat(256 * 1024));
    let cases = [
        send_case("text over 64 KiB", &u1, raw(&text_body), 413),
        send_case(
            "text over 64 KiB in 2-byte characters",
            &u1,
            bytes(with(send_body(), "text", json!("é".repeat(32 * 1024 + 1)))),
            413,
        ),
        send_case("a body over 256 KiB (text)", &u1, raw(&huge_text), 413),
        send_case(
            "a body over 256 KiB (attributes)",
            &u1,
            raw(&huge_attributes),
            413,
        ),
        send_case(
            "a valid message padded over 256 KiB",
            &u1,
            raw(&padded),
            413,
        ),
    ];
    w.refuse_all(&cases).await;
    // Exactly 64 KiB of text is accepted.
    let sent = w
        .ok(
            "POST",
            SEND,
            &u1,
            Some(with(send_body(), "text", json!("a".repeat(64 * 1024)))),
        )
        .await;
    assert_eq!(sent["message"]["text"].as_str().unwrap().len(), 64 * 1024);
}

#[tokio::test]
async fn send_refuses_bad_timestamps() {
    let w = world().await;
    let u1 = token("u1");
    let cases: Vec<Case> = [
        json!(-1),
        json!(-1_700_000_000_000_i64),
        json!(1.5),
        json!(1_700_000_000_000.5),
        json!("1700000000000"),
        json!("now"),
        json!(true),
        json!([1]),
        json!({"ms": 1}),
    ]
    .into_iter()
    .map(|ts| {
        send_case(
            format!("timestamp {ts}"),
            &u1,
            bytes(with(send_body(), "timestamp", ts)),
            400,
        )
    })
    .collect();
    w.refuse_all(&cases).await;
    let sent = w
        .ok(
            "POST",
            SEND,
            &u1,
            Some(with(send_body(), "timestamp", json!(0))),
        )
        .await;
    assert_eq!(sent["message"]["timestamp"], json!(0));
}

#[tokio::test]
async fn sender_id_is_for_admins_only() {
    let w = world().await;
    let cases = [
        send_case(
            "a user sending as someone else",
            &token("u1"),
            bytes(with(send_body(), "sender_id", json!("u3"))),
            403,
        ),
        send_case(
            "a user sending as the recipient",
            &token("u1"),
            bytes(with(send_body(), "sender_id", json!("u2"))),
            403,
        ),
        send_case(
            "a non-admin role",
            &sign(json!({"sub": "u1", "app_id": APP, "exp": in_an_hour(),
                         "tiledesk_api_roles": "user"})),
            bytes(with(send_body(), "sender_id", json!("u3"))),
            403,
        ),
    ];
    w.refuse_all(&cases).await;

    // A user naming themself is fine.
    let own = w
        .ok(
            "POST",
            SEND,
            &token("u1"),
            Some(with(send_body(), "sender_id", json!("u1"))),
        )
        .await;
    assert_eq!(own["message"]["sender"], json!("u1"));

    // An admin sends as u3: the message is u3's, in u3's timeline, not the admin's.
    let body = with(
        with(send_body(), "sender_id", json!("u3")),
        "text",
        json!("on behalf"),
    );
    let sent = w
        .ok("POST", SEND, &token_for("boss", APP, true), Some(body))
        .await;
    assert_eq!(sent["message"]["sender"], json!("u3"));
    assert_eq!(sent["message"]["timelineOf"], json!("u3"));
    let id = sent["message"]["message_id"].clone();
    w.h.deliver_all().await;
    let mine = w.h.timeline("u3", "u2").await;
    assert_eq!(mine.len(), 1);
    assert_eq!(json!(mine[0].message_id), id);
    assert_eq!(w.h.timeline("u2", "u3").await.len(), 1);
    assert!(w.h.timeline("boss", "u2").await.is_empty());

    // Admin as a list of roles (Tiledesk tokens).
    let listed = sign(json!({"sub": "bot", "app_id": APP, "exp": in_an_hour(),
                             "tiledesk_api_roles": ["user", "admin"]}));
    let sent = w
        .ok(
            "POST",
            SEND,
            &listed,
            Some(with(send_body(), "sender_id", json!("u4"))),
        )
        .await;
    assert_eq!(sent["message"]["sender"], json!("u4"));
}

#[tokio::test]
async fn non_json_content_types_are_415() {
    let w = world().await;
    let u1 = token("u1");
    let body = send_body().to_string();
    for content_type in [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
    ] {
        let what = format!("send with Content-Type {content_type}");
        let headers = [
            ("authorization", u1.as_str()),
            ("content-type", content_type),
        ];
        let response =
            common::call_raw(&w.api, None, "POST", SEND, &headers, Some(body.as_bytes()));
        w.refused_raw(&what, 415, response).await;
    }
    let group = json!({"group_name": "X", "group_members": {"u2": 1}}).to_string();
    let rename = json!({"group_name": "Renamed"}).to_string();
    let plain = [
        ("authorization", u1.as_str()),
        ("content-type", "text/plain"),
    ];
    let response = common::call_raw(&w.api, None, "POST", GROUPS, &plain, Some(group.as_bytes()));
    w.refused_raw("create group as text/plain", 415, response)
        .await;
    let response = common::call_raw(
        &w.api,
        None,
        "PUT",
        TEAM_PATH,
        &plain,
        Some(rename.as_bytes()),
    );
    w.refused_raw("rename group as text/plain", 415, response)
        .await;
    // JSON with parameters is JSON.
    let (status, _, text) = common::call_raw(
        &w.api,
        None,
        "POST",
        SEND,
        &[
            ("authorization", &u1),
            ("content-type", "application/json; charset=utf-8"),
        ],
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn group_sends_need_a_known_group_and_membership() {
    let w = world().await;
    let cases = [
        send_case(
            "a stranger writing to the group",
            &token("u3"),
            bytes(with(send_body(), "recipient_id", json!(TEAM))),
            403,
        ),
        send_case(
            "an unknown group",
            &token("u1"),
            bytes(with(send_body(), "recipient_id", json!("group-nope"))),
            404,
        ),
        send_case(
            "an unknown group by channel_type",
            &token("u1"),
            bytes(with(
                with(send_body(), "recipient_id", json!("nope")),
                "channel_type",
                json!("group"),
            )),
            404,
        ),
    ];
    w.refuse_all(&cases).await;
    let sent = w.send_ok(&token("u1"), TEAM, "members may").await;
    assert_eq!(sent["channel_type"], json!("group"));
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_tokens_are_401() {
    let w = world().await;
    let mut cases = vec![
        case("no token", "POST", SEND, None, bytes(send_body()), 401),
        case(
            "no token on a read",
            "GET",
            "/api/app1/u1/conversations",
            None,
            None,
            401,
        ),
        case(
            "a bad token in ?token=",
            "GET",
            "/api/app1/u1/conversations?token=garbage",
            None,
            None,
            401,
        ),
        case(
            "an empty ?jwt=",
            "GET",
            "/api/app1/u1/conversations?jwt=",
            None,
            None,
            401,
        ),
    ];
    for (why, t) in invalid_tokens() {
        cases.push(case(
            format!("send, token {why}"),
            "POST",
            SEND,
            Some(t.clone()),
            bytes(send_body()),
            401,
        ));
        cases.push(case(
            format!("list, token {why}"),
            "GET",
            "/api/app1/u1/conversations",
            Some(t.clone()),
            None,
            401,
        ));
        cases.push(case(
            format!("create group, token {why}"),
            "POST",
            GROUPS,
            Some(t),
            bytes(json!({"group_name": "X", "group_members": {"u2": 1}})),
            401,
        ));
    }
    w.refuse_all(&cases).await;
}

#[tokio::test]
async fn every_token_form_is_accepted() {
    let w = world().await;
    let t = token("u1");
    for form in [
        t.clone(),
        format!("Bearer {t}"),
        format!("bearer {t}"),
        format!("JWT {t}"),
        format!("  {t}  "),
    ] {
        let answer = w.ok("POST", SEND, &form, Some(send_body())).await;
        assert_eq!(answer["message"]["sender"], json!("u1"), "{form}");
    }
    for name in ["token", "jwt", "JWT"] {
        let path = format!("/api/app1/u1/conversations?{name}={t}");
        let (status, body) = w.call("GET", &path, None, None).await;
        assert_eq!(status, 200, "?{name}=: {body}");
        assert_eq!(body["success"], json!(true));
        assert!(!body["result"].as_array().unwrap().is_empty(), "{body}");
        let path = format!("{SEND}?{name}={t}");
        let (status, body) = w
            .call(
                "POST",
                &path,
                None,
                Some(send_body().to_string().as_bytes()),
            )
            .await;
        assert_eq!(status, 200, "send with ?{name}=: {body}");
        assert_eq!(body["message"]["sender"], json!("u1"));
    }
    // Tiledesk's extra claims are ignored.
    let tiledesk = sign(json!({
        "sub": "u1", "app_id": APP, "exp": in_an_hour(), "aud": ["rabbitmq", "u1"],
        "scope": ["rabbitmq.read:*"], "kid": "k", "jti": "j", "client_id": "c",
    }));
    w.ok("GET", "/api/app1/u1/conversations", &tiledesk, None)
        .await;
}

/// Every authenticated route, with a body that u1 (the owner of `group-team`) may send, so
/// that with the right token each succeeds.
fn every_route() -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("POST", SEND.to_string(), Some(send_body())),
        ("GET", "/api/app1/u1/conversations".into(), None),
        ("GET", "/api/app1/u1/conversations/archived".into(), None),
        ("GET", "/api/app1/u1/archived_conversations".into(), None),
        ("GET", "/api/app1/u1/conversations/u2".into(), None),
        ("GET", "/api/app1/u1/archived_conversations/u2".into(), None),
        ("GET", "/api/app1/u1/conversations/u2/messages".into(), None),
        ("DELETE", "/api/app1/conversations/u2".into(), None),
        ("POST", "/api/app1/u1/conversations/u2/read".into(), None),
        (
            "POST",
            GROUPS.into(),
            Some(json!({"group_name": "New", "group_members": {"u3": 1}})),
        ),
        ("GET", TEAM_PATH.into(), None),
        (
            "PUT",
            TEAM_PATH.into(),
            Some(json!({"group_name": "Renamed"})),
        ),
        (
            "PUT",
            format!("{TEAM_PATH}/attributes"),
            Some(json!({"attributes": {"x": 1}})),
        ),
        (
            "POST",
            format!("{TEAM_PATH}/members"),
            Some(json!({"member_id": "u3"})),
        ),
        ("DELETE", format!("{TEAM_PATH}/members/u2"), None),
        (
            "PUT",
            format!("{TEAM_PATH}/members"),
            Some(json!({"members": {"u1": 1, "u3": 1}})),
        ),
    ]
}

#[tokio::test]
async fn every_route_needs_a_token_of_the_paths_tenant() {
    for (method, path, body) in every_route() {
        let w = world().await;
        let body = body.map(|b| b.to_string().into_bytes());
        let expired = sign(json!({"sub": "u1", "app_id": APP,
                                  "exp": get_current_timestamp() - 3600}));
        let cases = [
            case("no token", method, &path, None, body.clone(), 401),
            case(
                "an expired token",
                method,
                &path,
                Some(expired),
                body.clone(),
                401,
            ),
            case(
                "alg none",
                method,
                &path,
                Some(unsigned(
                    json!({"sub": "u1", "app_id": APP, "exp": in_an_hour()}),
                )),
                body.clone(),
                401,
            ),
            case(
                "a valid token of another tenant",
                method,
                &path,
                Some(token_for("u1", "app2", false)),
                body.clone(),
                403,
            ),
            case(
                "an admin of another tenant",
                method,
                &path,
                Some(token_for("boss", "app2", true)),
                body.clone(),
                403,
            ),
            case(
                "a token of this tenant on another tenant's path",
                method,
                path.replacen("/api/app1/", "/api/app2/", 1),
                Some(token("u1")),
                body.clone(),
                403,
            ),
        ];
        w.refuse_all(&cases).await;
        // The control: the same call with the right token succeeds.
        let (status, answer) = w
            .call(method, &path, Some(&token("u1")), body.as_deref())
            .await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} with u1's token: {status} {answer}"
        );
        assert_eq!(answer["success"], json!(true), "{method} {path}");
    }
}

// ---------------------------------------------------------------------------------------------
// Conversations
// ---------------------------------------------------------------------------------------------

const READS: [&str; 6] = [
    "/api/app1/u1/conversations",
    "/api/app1/u1/conversations/archived",
    "/api/app1/u1/archived_conversations",
    "/api/app1/u1/conversations/u2",
    "/api/app1/u1/archived_conversations/u2",
    "/api/app1/u1/conversations/u2/messages",
];

#[tokio::test]
async fn reading_someone_elses_conversations_is_403_admins_may() {
    let w = world().await;
    let mut cases = Vec::new();
    for path in READS {
        for (who, t) in [("a stranger", token("u3")), ("the peer", token("u2"))] {
            cases.push(case(
                format!("{who} reading u1's"),
                "GET",
                path,
                Some(t),
                None,
                403,
            ));
        }
    }
    w.refuse_all(&cases).await;

    let boss = token_for("boss", APP, true);
    let list = w.list("/api/app1/u1/conversations", &boss).await;
    // Newest first: the group (u2 posted last), then u2.
    let peers: Vec<&Value> = list.iter().map(|c| &c["conversWith"]).collect();
    assert_eq!(peers, [&json!(TEAM), &json!("u2")], "{list:?}");
    assert!(list.iter().all(|c| c["timelineOf"] == json!("u1")));
    let detail = w.list("/api/app1/u1/conversations/u2", &boss).await;
    assert_eq!(detail.len(), 1);
    assert_eq!(detail[0]["last_message_text"], json!("hi back"));
    let messages = w
        .list("/api/app1/u1/conversations/u2/messages", &boss)
        .await;
    let texts: Vec<&Value> = messages.iter().map(|m| &m["text"]).collect();
    assert_eq!(texts, [&json!("hi back"), &json!("hello")]);
    assert!(
        w.list("/api/app1/u1/conversations/archived", &boss)
            .await
            .is_empty()
    );
    assert!(
        w.list("/api/app1/u1/archived_conversations/u2", &boss)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn lists_answer_success_and_result() {
    let w = world().await;
    let u1 = token("u1");
    let body = w.ok("GET", "/api/app1/u1/conversations", &u1, None).await;
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["success", "result"]),
        "no `next` when everything fits: {body}"
    );
    let rows = body["result"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{body}");
    assert_eq!(rows[0]["key"], json!(TEAM));
    assert_eq!(rows[0]["channel_type"], json!("group"));
    assert_eq!(rows[1]["key"], json!("u2"));
    assert_eq!(rows[1]["last_message_text"], json!("hi back"));
    assert_eq!(rows[1]["is_new"], json!(true));
    assert_eq!(rows[1]["unread_count"], json!(1));
    assert_eq!(rows[1]["archived"], json!(false));
    // The group conversation of u2, who is a member.
    let u2 = w.list("/api/app1/u2/conversations", &token("u2")).await;
    assert!(u2.iter().any(|c| c["conversWith"] == json!(TEAM)), "{u2:?}");
    // Detail of an unknown peer: an empty array, not an error.
    assert!(
        w.list("/api/app1/u1/conversations/u4", &u1)
            .await
            .is_empty()
    );
    // A group, for a member.
    let group = w.ok("GET", TEAM_PATH, &token("u2"), None).await;
    assert_eq!(group["result"]["uid"], json!(TEAM));
    assert_eq!(group["result"]["name"], json!("Team"));
    assert_eq!(group["result"]["owner"], json!("u1"));
    assert_eq!(group["result"]["members"], json!({"u1": 1, "u2": 1}));
}

#[tokio::test]
async fn bad_limits_are_400() {
    let w = world().await;
    let u1 = token("u1");
    let lists = [
        "/api/app1/u1/conversations",
        "/api/app1/u1/conversations/archived",
        "/api/app1/u1/archived_conversations",
        "/api/app1/u1/conversations/u2/messages",
    ];
    let mut cases = Vec::new();
    for path in lists {
        for limit in [
            "0",
            "1001",
            "abc",
            "-1",
            "2.5",
            "1e3",
            "99999999999999999999999",
        ] {
            cases.push(case(
                format!("limit={limit}"),
                "GET",
                format!("{path}?limit={limit}"),
                Some(u1.clone()),
                None,
                400,
            ));
        }
    }
    w.refuse_all(&cases).await;
    for path in lists {
        for limit in ["1", "1000"] {
            w.ok("GET", &format!("{path}?limit={limit}"), &u1, None)
                .await;
        }
    }
}

#[tokio::test]
async fn forged_cursors_are_400() {
    let w = world().await;
    let u1 = token("u1");
    // u1: active conversations with u2, u3 and u4; archived ones with u3 and u4.
    for peer in ["u3", "u4"] {
        w.send_ok(&u1, peer, "x").await;
    }
    let next = |body: &Value| body["next"].as_str().unwrap().to_string();
    let active = next(
        &w.ok("GET", "/api/app1/u1/conversations?limit=1", &u1, None)
            .await,
    );
    let message = next(
        &w.ok(
            "GET",
            "/api/app1/u1/conversations/u2/messages?limit=1",
            &u1,
            None,
        )
        .await,
    );
    for peer in ["u3", "u4"] {
        w.ok(
            "DELETE",
            &format!("/api/app1/conversations/{peer}"),
            &u1,
            None,
        )
        .await;
    }
    let archived = next(
        &w.ok(
            "GET",
            "/api/app1/u1/conversations/archived?limit=1",
            &u1,
            None,
        )
        .await,
    );
    w.h.deliver_all().await;

    let forged = [
        ("!!!", "!!!".to_string()),
        ("base64url of garbage", URL_SAFE_NO_PAD.encode("garbage")),
        (
            "base64url of invalid UTF-8",
            URL_SAFE_NO_PAD.encode([0xff, 0xfe, 0xfd]),
        ),
        (
            "base64url of a bad timestamp",
            URL_SAFE_NO_PAD.encode("active#12#u2"),
        ),
        (
            "base64url of a forbidden id",
            URL_SAFE_NO_PAD.encode("active#1700000000000#u.2"),
        ),
    ];
    let mut cases = Vec::new();
    for path in [
        "/api/app1/u1/conversations",
        "/api/app1/u1/conversations/archived",
        "/api/app1/u1/conversations/u2/messages",
    ] {
        for (why, cursor) in &forged {
            cases.push(case(
                format!("cursor {why}"),
                "GET",
                format!("{path}?cursor={cursor}"),
                Some(u1.clone()),
                None,
                400,
            ));
        }
    }
    let misused = [
        (
            "an active-list cursor on the archived list",
            "/api/app1/u1/conversations/archived",
            &active,
        ),
        (
            "an active-list cursor on the archived alias",
            "/api/app1/u1/archived_conversations",
            &active,
        ),
        (
            "an archived-list cursor on the active list",
            "/api/app1/u1/conversations",
            &archived,
        ),
        (
            "a message cursor on the conversation list",
            "/api/app1/u1/conversations",
            &message,
        ),
        (
            "a conversation cursor on a timeline",
            "/api/app1/u1/conversations/u2/messages",
            &active,
        ),
    ];
    for (why, path, cursor) in misused {
        cases.push(case(
            why,
            "GET",
            format!("{path}?cursor={cursor}"),
            Some(u1.clone()),
            None,
            400,
        ));
    }
    w.refuse_all(&cases).await;

    // Each cursor works on its own list.
    for (path, cursor) in [
        ("/api/app1/u1/conversations", &active),
        ("/api/app1/u1/conversations/archived", &archived),
        ("/api/app1/u1/archived_conversations", &archived),
        ("/api/app1/u1/conversations/u2/messages", &message),
    ] {
        let rest = w
            .list(&format!("{path}?limit=1&cursor={cursor}"), &u1)
            .await;
        assert_eq!(rest.len(), 1, "{path}");
    }
}

#[tokio::test]
async fn delete_conversation_refusals() {
    let w = world().await;
    let u1 = Some(token("u1"));
    let boss = Some(token_for("boss", APP, true));
    let path = "/api/app1/conversations/u2";
    let cases = [
        case(
            "delete=maybe",
            "DELETE",
            format!("{path}?delete=maybe"),
            u1.clone(),
            None,
            400,
        ),
        case(
            "delete=yes",
            "DELETE",
            format!("{path}?delete=yes"),
            u1.clone(),
            None,
            400,
        ),
        case(
            "delete=1",
            "DELETE",
            format!("{path}?delete=1"),
            u1.clone(),
            None,
            400,
        ),
        case(
            "a non-admin acting for another user",
            "DELETE",
            path,
            u1.clone(),
            bytes(json!({"user_id": "u2"})),
            403,
        ),
        case(
            "a non-admin acting for another user, delete=true",
            "DELETE",
            format!("{path}?delete=true"),
            u1.clone(),
            bytes(json!({"user_id": "u2"})),
            403,
        ),
        case(
            "user_id not a string",
            "DELETE",
            path,
            boss.clone(),
            bytes(json!({"user_id": 5})),
            400,
        ),
        case(
            "user_id not a valid id (admin)",
            "DELETE",
            path,
            boss.clone(),
            bytes(json!({"user_id": "u.2"})),
            400,
        ),
        case(
            "a malformed body",
            "DELETE",
            path,
            u1.clone(),
            raw("{"),
            400,
        ),
        case(
            "a body that is an array",
            "DELETE",
            path,
            u1.clone(),
            raw("[]"),
            400,
        ),
        case(
            "an unknown conversation (archive)",
            "DELETE",
            "/api/app1/conversations/u4",
            u1.clone(),
            None,
            404,
        ),
        case(
            "an unknown conversation (delete)",
            "DELETE",
            "/api/app1/conversations/u4?delete=true",
            u1.clone(),
            None,
            404,
        ),
        case(
            "an unknown conversation of another user (admin)",
            "DELETE",
            "/api/app1/conversations/u4",
            boss.clone(),
            bytes(json!({"user_id": "u2"})),
            404,
        ),
        case(
            "the admin's own, unknown, conversation",
            "DELETE",
            path,
            boss.clone(),
            None,
            404,
        ),
        case(
            "a recipient with *",
            "DELETE",
            "/api/app1/conversations/a%2Ab",
            u1.clone(),
            None,
            400,
        ),
        case(
            "a recipient with #",
            "DELETE",
            "/api/app1/conversations/a%23b?delete=true",
            u1.clone(),
            None,
            400,
        ),
    ];
    w.refuse_all(&cases).await;

    // An admin archives u2's conversation with u1: only u2's row moves.
    let before_u1 = w.h.conversation("u1", "u2").await;
    w.ok(
        "DELETE",
        "/api/app1/conversations/u1",
        boss.as_deref().unwrap(),
        Some(json!({"user_id": "u2"})),
    )
    .await;
    assert!(w.h.conversation("u2", "u1").await.unwrap().archived);
    assert_eq!(w.h.conversation("u1", "u2").await, before_u1);
    // And deletes it for good: u2's copies go, u1's stay.
    w.ok(
        "DELETE",
        "/api/app1/conversations/u1?delete=true",
        boss.as_deref().unwrap(),
        Some(json!({"user_id": "u2"})),
    )
    .await;
    assert_eq!(w.h.conversation("u2", "u1").await, None);
    assert!(w.h.timeline("u2", "u1").await.is_empty());
    assert_eq!(w.h.timeline("u1", "u2").await.len(), 2);
    // A user naming themself is fine.
    w.ok(
        "DELETE",
        "/api/app1/conversations/u2?delete=false",
        u1.as_deref().unwrap(),
        Some(json!({"user_id": "u1"})),
    )
    .await;
    assert!(w.h.conversation("u1", "u2").await.unwrap().archived);
}

#[tokio::test]
async fn mark_read_refusals() {
    let w = world().await;
    let cases = [
        case(
            "a stranger marking u1's conversation",
            "POST",
            "/api/app1/u1/conversations/u2/read",
            Some(token("u3")),
            None,
            403,
        ),
        case(
            "the peer marking u1's side",
            "POST",
            "/api/app1/u1/conversations/u2/read",
            Some(token("u2")),
            None,
            403,
        ),
        case(
            "an unknown conversation",
            "POST",
            "/api/app1/u1/conversations/u4/read",
            Some(token("u1")),
            None,
            404,
        ),
        case(
            "an unknown group conversation",
            "POST",
            "/api/app1/u1/conversations/group-nope/read",
            Some(token("u1")),
            None,
            404,
        ),
        case(
            "a peer id with *",
            "POST",
            "/api/app1/u1/conversations/a%2Ab/read",
            Some(token("u1")),
            None,
            400,
        ),
        case(
            "a user id with . (admin)",
            "POST",
            "/api/app1/u%2E1/conversations/u2/read",
            Some(token_for("boss", APP, true)),
            None,
            400,
        ),
    ];
    w.refuse_all(&cases).await;
    assert!(w.h.conversation("u1", "u2").await.unwrap().is_new);
    w.ok(
        "POST",
        "/api/app1/u1/conversations/u2/read",
        &token("u1"),
        None,
    )
    .await;
    let read = w.h.conversation("u1", "u2").await.unwrap();
    assert!(!read.is_new);
    assert_eq!(read.unread_count, 0);
    // An admin may mark for a user.
    w.ok(
        "POST",
        "/api/app1/u2/conversations/u1/read",
        &token_for("boss", APP, true),
        None,
    )
    .await;
}

#[tokio::test]
async fn forbidden_characters_in_path_ids_are_400() {
    let w = world().await;
    let u1 = token("u1");
    let boss = token_for("boss", APP, true);
    let long = "x".repeat(129);
    let mut cases = Vec::new();
    for (why, encoded) in [
        ("*", "a%2Ab"),
        ("#", "a%23b"),
        (".", "a%2Eb"),
        (". unencoded", "a.b"),
        ("an encoded /", "a%2Fb"),
        ("a control character", "a%01b"),
        ("a tab", "a%09b"),
        ("129 characters", long.as_str()),
    ] {
        for (route, path, t) in [
            (
                "detail",
                format!("/api/app1/u1/conversations/{encoded}"),
                &u1,
            ),
            (
                "archived detail",
                format!("/api/app1/u1/archived_conversations/{encoded}"),
                &u1,
            ),
            (
                "messages",
                format!("/api/app1/u1/conversations/{encoded}/messages"),
                &u1,
            ),
            (
                "list of a bad user (admin)",
                format!("/api/app1/{encoded}/conversations"),
                &boss,
            ),
            (
                "messages of a bad user (admin)",
                format!("/api/app1/{encoded}/conversations/u2/messages"),
                &boss,
            ),
            ("group", format!("/api/app1/groups/{encoded}"), &u1),
        ] {
            cases.push(case(
                format!("{route}, id with {why}"),
                "GET",
                path,
                Some(t.clone()),
                None,
                400,
            ));
        }
        cases.push(case(
            format!("rename a group with {why}"),
            "PUT",
            format!("/api/app1/groups/{encoded}"),
            Some(u1.clone()),
            bytes(json!({"group_name": "X"})),
            400,
        ));
        cases.push(case(
            format!("remove a member with {why}"),
            "DELETE",
            format!("{TEAM_PATH}/members/{encoded}"),
            Some(u1.clone()),
            None,
            400,
        ));
    }
    w.refuse_all(&cases).await;
}

#[tokio::test]
async fn paging_reaches_every_message_once() {
    let w = empty();
    let u1 = token("u1");
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(w.send_ok(&u1, "u2", &format!("m{i}")).await["message_id"].clone());
    }
    w.h.deliver_all().await;
    for (owner, peer) in [("u1", "u2"), ("u2", "u1")] {
        let base = format!("/api/app1/{owner}/conversations/{peer}/messages?limit=2");
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        let mut path = base.clone();
        loop {
            let body = w.ok("GET", &path, &token(owner), None).await;
            let items = body["result"].as_array().unwrap();
            sizes.push(items.len());
            seen.extend(items.iter().cloned());
            match body["next"].as_str() {
                Some(next) => path = format!("{base}&cursor={next}"),
                None => break,
            }
            assert!(sizes.len() < 10, "paging does not end");
        }
        assert_eq!(sizes, [2, 2, 1], "{owner}");
        let ids: Vec<Value> = seen.iter().map(|m| m["message_id"].clone()).collect();
        let newest_first: Vec<Value> = sent.iter().rev().cloned().collect();
        assert_eq!(
            ids, newest_first,
            "{owner}: every message once, newest first"
        );
    }
    // Exactly one full page: no `next`.
    let body = w
        .ok(
            "GET",
            "/api/app1/u1/conversations/u2/messages?limit=5",
            &u1,
            None,
        )
        .await;
    assert_eq!(body["result"].as_array().unwrap().len(), 5);
    assert!(body.get("next").is_none(), "{body}");

    // Conversation lists page the same way.
    for peer in ["u3", "u4", "boss"] {
        w.send_ok(&u1, peer, "x").await;
    }
    let base = "/api/app1/u1/conversations?limit=3";
    let first = w.ok("GET", base, &u1, None).await;
    let next = first["next"].as_str().unwrap();
    let second = w
        .ok("GET", &format!("{base}&cursor={next}"), &u1, None)
        .await;
    assert!(second.get("next").is_none(), "{second}");
    let peers: Vec<&Value> = first["result"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["result"].as_array().unwrap())
        .map(|c| &c["conversWith"])
        .collect();
    assert_eq!(
        peers,
        [&json!("boss"), &json!("u4"), &json!("u3"), &json!("u2")]
    );
}

// ---------------------------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_group_refusals() {
    let w = world().await;
    let u3 = token("u3");
    let valid = json!({"group_name": "New", "group_members": {"u4": 1}, "group_id": "group-new"});
    let mut cases = Vec::new();
    let mut push = |what: &str, t: &str, body: Option<Vec<u8>>, status: u16| {
        cases.push(case(
            what,
            "POST",
            GROUPS,
            Some(t.to_string()),
            body,
            status,
        ));
    };
    push("no body", &u3, None, 400);
    push("malformed JSON", &u3, raw("{"), 400);
    push("an array body", &u3, raw("[]"), 400);
    push(
        "missing group_name",
        &u3,
        bytes(without(valid.clone(), "group_name")),
        400,
    );
    for (why, name) in [
        ("empty", json!("")),
        ("blank", json!("   ")),
        ("a number", json!(5)),
        ("an object", json!({})),
        ("null", Value::Null),
    ] {
        push(
            &format!("group_name {why}"),
            &u3,
            bytes(with(valid.clone(), "group_name", name)),
            400,
        );
    }
    push(
        "missing group_members",
        &u3,
        bytes(without(valid.clone(), "group_members")),
        400,
    );
    for (why, members) in [
        ("an array", json!([])),
        ("an array of ids", json!(["u4"])),
        ("a string", json!("x")),
        ("a number", json!(1)),
        ("with a key containing .", json!({"a.b": 1})),
        ("with a key containing #", json!({"u4": 1, "a#b": 1})),
        ("with an empty key", json!({"": 1})),
        ("with a 129-character key", json!({"x".repeat(129): 1})),
    ] {
        push(
            &format!("group_members {why}"),
            &u3,
            bytes(with(valid.clone(), "group_members", members)),
            400,
        );
    }
    for (why, id) in [
        ("with *", json!("group-a*b")),
        ("with /", json!("group-a/b")),
        ("empty", json!("")),
        ("a number", json!(5)),
    ] {
        push(
            &format!("group_id {why}"),
            &u3,
            bytes(with(valid.clone(), "group_id", id)),
            400,
        );
    }
    for attributes in [json!("x"), json!([1]), json!(3)] {
        push(
            &format!("attributes {attributes}"),
            &u3,
            bytes(with(valid.clone(), "attributes", attributes)),
            400,
        );
    }
    push(
        "group_owner from a non-admin",
        &u3,
        bytes(with(valid.clone(), "group_owner", json!("u4"))),
        403,
    );
    let crowd: serde_json::Map<String, Value> = (0..=MAX_MEMBER_CHANGES)
        .map(|i| (format!("m{i}"), json!(1)))
        .collect();
    push(
        "more members than one call may add",
        &u3,
        bytes(with(valid.clone(), "group_members", Value::Object(crowd))),
        400,
    );
    let boss = token_for("boss", APP, true);
    push(
        "group_owner not a valid id (admin)",
        &boss,
        bytes(with(valid.clone(), "group_owner", json!("u#4"))),
        400,
    );
    w.refuse_all(&cases).await;
    assert!(
        w.h.deps
            .store
            .group_head(APP, "group-new")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_existing_group_id_is_409_and_the_group_is_unchanged() {
    let w = world().await;
    let taken = |name: &str, members: Value| {
        bytes(json!({"group_name": name, "group_members": members, "group_id": TEAM}))
    };
    let cases = [
        case(
            "a stranger reusing the id",
            "POST",
            GROUPS,
            Some(token("u3")),
            taken("Hijack", json!({"u3": 1, "u4": 1})),
            409,
        ),
        case(
            "the owner creating it again",
            "POST",
            GROUPS,
            Some(token("u1")),
            taken("Team again", json!({"u4": 1})),
            409,
        ),
        case(
            "a member creating it again",
            "POST",
            GROUPS,
            Some(token("u2")),
            taken("Team", json!({"u1": 1})),
            409,
        ),
        case(
            "an admin creating it again",
            "POST",
            GROUPS,
            Some(token_for("boss", APP, true)),
            taken("Admin's", json!({"u3": 1})),
            409,
        ),
    ];
    w.refuse_all(&cases).await;
    let group = w.ok("GET", TEAM_PATH, &token("u1"), None).await;
    assert_eq!(group["result"]["name"], json!("Team"));
    assert_eq!(group["result"]["owner"], json!("u1"));
    assert_eq!(group["result"]["members"], json!({"u1": 1, "u2": 1}));
    assert_eq!(group["result"]["attributes"], json!({"topic": "rust"}));
}

#[tokio::test]
async fn create_group_answers_201_with_the_group() {
    let w = world().await;
    let body = json!({
        "group_name": "New",
        "group_members": {"u4": 1},
        "group_id": "group-new",
        "attributes": {"a": "b"},
    });
    let (status, answer) = w
        .call(
            "POST",
            GROUPS,
            Some(&token("u3")),
            Some(body.to_string().as_bytes()),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let keys: BTreeSet<&str> = answer
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["success", "group"]), "{answer}");
    assert_eq!(answer["success"], json!(true));
    let g = &answer["group"];
    assert_eq!(g["uid"], json!("group-new"));
    assert_eq!(g["name"], json!("New"));
    assert_eq!(g["owner"], json!("u3"));
    assert_eq!(g["members"], json!({"u3": 1, "u4": 1}));
    assert_eq!(g["attributes"], json!({"a": "b"}));
    assert_eq!(g["appId"], json!(APP));
    assert!(g["createdOn"].is_u64() && g["updatedOn"].is_u64(), "{g}");

    // Without an id the server makes `group-<uuid>`.
    let made = w
        .call(
            "POST",
            GROUPS,
            Some(&token("u3")),
            Some(
                json!({"group_name": "Anon", "group_members": {}})
                    .to_string()
                    .as_bytes(),
            ),
        )
        .await;
    assert_eq!(made.0, 201, "{}", made.1);
    assert!(
        made.1["group"]["uid"]
            .as_str()
            .unwrap()
            .starts_with("group-")
    );
    assert_eq!(made.1["group"]["members"], json!({"u3": 1}));

    // An admin creating for u4 owns nothing and is not a member.
    let (status, answer) = w
        .call(
            "POST",
            GROUPS,
            Some(&token_for("boss", APP, true)),
            Some(
                json!({"group_name": "For u4", "group_members": {"u1": 1},
                       "group_owner": "u4", "group_id": "group-for-u4"})
                .to_string()
                .as_bytes(),
            ),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["group"]["owner"], json!("u4"));
    assert_eq!(answer["group"]["members"], json!({"u1": 1, "u4": 1}));
}

#[tokio::test]
async fn an_unknown_group_is_404_on_every_group_route() {
    let w = world().await;
    let nope = "/api/app1/groups/group-nope";
    let mut cases = Vec::new();
    for (who, t) in [
        ("owner elsewhere", token("u1")),
        ("admin", token_for("boss", APP, true)),
    ] {
        let t = Some(t);
        cases.extend([
            case(format!("{who}: get"), "GET", nope, t.clone(), None, 404),
            case(
                format!("{who}: rename"),
                "PUT",
                nope,
                t.clone(),
                bytes(json!({"group_name": "X"})),
                404,
            ),
            case(
                format!("{who}: attributes"),
                "PUT",
                format!("{nope}/attributes"),
                t.clone(),
                bytes(json!({"attributes": {"x": 1}})),
                404,
            ),
            case(
                format!("{who}: join"),
                "POST",
                format!("{nope}/members"),
                t.clone(),
                bytes(json!({"member_id": "u3"})),
                404,
            ),
            case(
                format!("{who}: remove a member"),
                "DELETE",
                format!("{nope}/members/u2"),
                t.clone(),
                None,
                404,
            ),
            case(
                format!("{who}: leave"),
                "DELETE",
                format!("{nope}/members/u1"),
                t.clone(),
                None,
                404,
            ),
            case(
                format!("{who}: set members"),
                "PUT",
                format!("{nope}/members"),
                t.clone(),
                bytes(json!({"members": {"u1": 1}})),
                404,
            ),
        ]);
    }
    w.refuse_all(&cases).await;
}

#[tokio::test]
async fn strangers_cannot_touch_a_group() {
    let w = world().await;
    let u3 = Some(token("u3"));
    let cases = [
        case(
            "a stranger reading",
            "GET",
            TEAM_PATH,
            u3.clone(),
            None,
            403,
        ),
        case(
            "a stranger renaming",
            "PUT",
            TEAM_PATH,
            u3.clone(),
            bytes(json!({"group_name": "Mine"})),
            403,
        ),
        case(
            "a stranger changing attributes",
            "PUT",
            format!("{TEAM_PATH}/attributes"),
            u3.clone(),
            bytes(json!({"attributes": {"topic": "mine"}})),
            403,
        ),
        case(
            "a stranger adding someone",
            "POST",
            format!("{TEAM_PATH}/members"),
            u3.clone(),
            bytes(json!({"member_id": "u4"})),
            403,
        ),
        case(
            "a stranger adding themself (self-join is off)",
            "POST",
            format!("{TEAM_PATH}/members"),
            u3.clone(),
            bytes(json!({"member_id": "u3"})),
            403,
        ),
        case(
            "a stranger setting the members",
            "PUT",
            format!("{TEAM_PATH}/members"),
            u3.clone(),
            bytes(json!({"members": {"u3": 1}})),
            403,
        ),
        case(
            "a stranger removing a member",
            "DELETE",
            format!("{TEAM_PATH}/members/u2"),
            u3.clone(),
            None,
            403,
        ),
        case(
            "a stranger leaving a group they are not in",
            "DELETE",
            format!("{TEAM_PATH}/members/u3"),
            u3.clone(),
            None,
            404,
        ),
        case(
            "another tenant's member reading",
            "GET",
            TEAM_PATH,
            Some(token_for("u2", "app2", false)),
            None,
            403,
        ),
        case(
            "another tenant's owner renaming",
            "PUT",
            TEAM_PATH,
            Some(token_for("u1", "app2", false)),
            bytes(json!({"group_name": "X"})),
            403,
        ),
        case(
            "another tenant's admin setting members",
            "PUT",
            format!("{TEAM_PATH}/members"),
            Some(token_for("boss", "app2", true)),
            bytes(json!({"members": {"u3": 1}})),
            403,
        ),
    ];
    w.refuse_all(&cases).await;
}

#[tokio::test]
async fn members_and_owners_are_held_to_their_rights() {
    let w = world().await;
    let u1 = Some(token("u1"));
    let u2 = Some(token("u2"));
    let cases = [
        case(
            "a member renaming",
            "PUT",
            TEAM_PATH,
            u2.clone(),
            bytes(json!({"group_name": "Mine"})),
            403,
        ),
        case(
            "a member changing attributes",
            "PUT",
            format!("{TEAM_PATH}/attributes"),
            u2.clone(),
            bytes(json!({"attributes": {}})),
            403,
        ),
        case(
            "a member adding someone",
            "POST",
            format!("{TEAM_PATH}/members"),
            u2.clone(),
            bytes(json!({"member_id": "u3"})),
            403,
        ),
        case(
            "a member setting the members",
            "PUT",
            format!("{TEAM_PATH}/members"),
            u2.clone(),
            bytes(json!({"members": {"u2": 1}})),
            403,
        ),
        case(
            "a member removing the owner",
            "DELETE",
            format!("{TEAM_PATH}/members/u1"),
            u2.clone(),
            None,
            403,
        ),
        case(
            "the owner removing a non-member",
            "DELETE",
            format!("{TEAM_PATH}/members/u4"),
            u1.clone(),
            None,
            404,
        ),
        case(
            "an admin removing a non-member",
            "DELETE",
            format!("{TEAM_PATH}/members/u4"),
            Some(token_for("boss", APP, true)),
            None,
            404,
        ),
        case(
            "rename without group_name",
            "PUT",
            TEAM_PATH,
            u1.clone(),
            bytes(json!({})),
            400,
        ),
        case(
            "rename to an empty name",
            "PUT",
            TEAM_PATH,
            u1.clone(),
            bytes(json!({"group_name": ""})),
            400,
        ),
        case(
            "rename to a number",
            "PUT",
            TEAM_PATH,
            u1.clone(),
            bytes(json!({"group_name": 7})),
            400,
        ),
        case(
            "attributes missing",
            "PUT",
            format!("{TEAM_PATH}/attributes"),
            u1.clone(),
            bytes(json!({})),
            400,
        ),
        case(
            "attributes a string",
            "PUT",
            format!("{TEAM_PATH}/attributes"),
            u1.clone(),
            bytes(json!({"attributes": "x"})),
            400,
        ),
        case(
            "attributes an array",
            "PUT",
            format!("{TEAM_PATH}/attributes"),
            u1.clone(),
            bytes(json!({"attributes": [1]})),
            400,
        ),
        case(
            "join without member_id",
            "POST",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            bytes(json!({})),
            400,
        ),
        case(
            "join with a numeric member_id",
            "POST",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            bytes(json!({"member_id": 3})),
            400,
        ),
        case(
            "join with a member_id containing *",
            "POST",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            bytes(json!({"member_id": "u*3"})),
            400,
        ),
        case(
            "set members without members",
            "PUT",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            bytes(json!({})),
            400,
        ),
        case(
            "members an array",
            "PUT",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            bytes(json!({"members": ["u1", "u3"]})),
            400,
        ),
        case(
            "members a string",
            "PUT",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            bytes(json!({"members": "u1"})),
            400,
        ),
        case(
            "members with an invalid id",
            "PUT",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            bytes(json!({"members": {"u1": 1, "u.3": 1}})),
            400,
        ),
        case(
            "more member changes than one call may make",
            "PUT",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            bytes(json!({
                "members": (0..=MAX_MEMBER_CHANGES)
                    .map(|i| (format!("m{i}"), json!(1)))
                    .collect::<serde_json::Map<String, Value>>()
            })),
            400,
        ),
        case(
            "set members with a malformed body",
            "PUT",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            raw("{\"members\":"),
            400,
        ),
    ];
    w.refuse_all(&cases).await;

    // The controls: a member reads, the owner renames, a member leaves.
    w.ok("GET", TEAM_PATH, u2.as_deref().unwrap(), None).await;
    w.ok(
        "PUT",
        TEAM_PATH,
        u1.as_deref().unwrap(),
        Some(json!({"group_name": "Renamed"})),
    )
    .await;
    w.ok(
        "DELETE",
        &format!("{TEAM_PATH}/members/u2"),
        u2.as_deref().unwrap(),
        None,
    )
    .await;
    assert_eq!(w.h.members(TEAM).await, ["u1"]);
    let group = w.ok("GET", TEAM_PATH, u1.as_deref().unwrap(), None).await;
    assert_eq!(group["result"]["name"], json!("Renamed"));
}

// ---------------------------------------------------------------------------------------------
// Other routes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_banner_is_only_get_slash() {
    let w = world().await;
    let (status, content_type, text) = common::call_raw(&w.api, None, "GET", "/", &[], None).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.is_some_and(|c| c.starts_with("text/plain")),
        "the banner is text"
    );
    assert!(text.starts_with("Chat21"), "{text:?}");
    assert_eq!(text, chat21::api::BANNER);
    // Through `common::call` too, with or without a token.
    let (status, body) = w.call("GET", "/", Some(&token("u1")), None).await;
    assert_eq!((status, body), (200, json!(chat21::api::BANNER)));

    for (what, route, method, path) in [
        (
            "the catch-all route on /nope",
            Route::Banner,
            "GET",
            "/nope",
        ),
        (
            "the catch-all route on an API-looking path",
            Route::Banner,
            "GET",
            "/api/app1/nothing/here/at/all",
        ),
        ("POST /", Route::Banner, "POST", "/"),
        ("DELETE /", Route::Banner, "DELETE", "/"),
        ("the not-found route", Route::NotFound, "GET", "/nope"),
    ] {
        let response = common::call_raw(&w.api, Some(route), method, path, &[], None);
        w.refused_raw(what, 404, response).await;
        let t = token("u1");
        let headers = [("authorization", t.as_str())];
        let response = common::call_raw(&w.api, Some(route), method, path, &headers, None);
        w.refused_raw(&format!("{what}, with a token"), 404, response)
            .await;
    }
}

// ---------------------------------------------------------------------------------------------
// The suite's own checks
// ---------------------------------------------------------------------------------------------

/// Successful calls that the contract says change nothing leave the snapshot as it was.
#[tokio::test]
async fn no_op_successes_change_nothing() {
    let w = world().await;
    let u1 = token("u1");
    let body = with(send_body(), "message_id", json!("m-1"));
    let first = w.ok("POST", SEND, &u1, Some(body.clone())).await;
    w.h.deliver_all().await;
    let before = snapshot(&w.h).await;
    let retry = w
        .ok(
            "POST",
            SEND,
            &u1,
            Some(with(body, "text", json!("changed"))),
        )
        .await;
    assert_eq!(retry, first, "a retry answers with the original message");
    w.ok(
        "POST",
        &format!("{TEAM_PATH}/members"),
        &u1,
        Some(json!({"member_id": "u2"})),
    )
    .await;
    w.ok(
        "PUT",
        &format!("{TEAM_PATH}/members"),
        &u1,
        Some(json!({"members": {"u1": 1, "u2": 1}})),
    )
    .await;
    for path in READS {
        w.ok("GET", path, &u1, None).await;
    }
    w.ok("GET", TEAM_PATH, &u1, None).await;
    w.h.deliver_all().await;
    assert_unchanged("no-op successes", &before, &snapshot(&w.h).await);
}

/// The snapshot that every refusal is checked against does see each kind of change.
#[tokio::test]
async fn snapshots_see_every_kind_of_change() {
    let w = world().await;
    let u1 = token("u1");
    let changes: [(&str, &str, String, Option<Value>); 7] = [
        ("POST", "send", SEND.to_string(), Some(send_body())),
        (
            "POST",
            "mark read",
            "/api/app1/u1/conversations/u2/read".into(),
            None,
        ),
        (
            "DELETE",
            "archive",
            "/api/app1/conversations/u2".into(),
            None,
        ),
        (
            "PUT",
            "rename",
            TEAM_PATH.into(),
            Some(json!({"group_name": "Other"})),
        ),
        (
            "PUT",
            "attributes",
            format!("{TEAM_PATH}/attributes"),
            Some(json!({"attributes": {}})),
        ),
        (
            "POST",
            "join",
            format!("{TEAM_PATH}/members"),
            Some(json!({"member_id": "u3"})),
        ),
        (
            "POST",
            "create",
            GROUPS.into(),
            Some(json!({"group_name": "N", "group_members": {}, "group_id": "group-new"})),
        ),
    ];
    for (method, what, path, body) in changes {
        w.h.deliver_all().await;
        let before = snapshot(&w.h).await;
        w.ok(method, &path, &u1, body).await;
        // Only what the call itself wrote: nothing delivered yet, the events cleared.
        w.h.events.take();
        assert_ne!(before, snapshot(&w.h).await, "{what} went unseen");
    }
}
