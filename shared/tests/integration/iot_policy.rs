//! IoT and IAM policies, evaluated offline: a small evaluator of policy statements (Allow and
//! Deny; `*`, `?` and IoT's special-character variables in resources and actions), used on
//! the custom authorizer's policies (REALTIME.md's table, here and in `events_files.rs`) and
//! on the functions' roles in `template.yaml` (`template_realtime.rs`).

use base64::Engine;
use chat21::entry::authorizer::authorizer_response;
use serde_json::{Value, json};

use crate::common;

// ---------------------------------------------------------------- the IoT policy evaluator

/// IoT policy matching of one resource pattern: `*` any run of characters (`/` included), `?`
/// exactly one, and the special-character variables `${*}`, `${?}`, `${$}` the literal
/// characters. Any other `${…}` is a policy variable, which the authorizer never emits: it
/// matches nothing here, so a stray one fails the test.
pub fn iot_pattern_matches(pattern: &str, resource: &str) -> bool {
    #[derive(Debug, PartialEq)]
    enum Token {
        Any,
        One,
        Char(char),
        Variable,
    }
    let mut tokens = Vec::new();
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        if let Some(var) = rest.strip_prefix("${") {
            let end = var.find('}').map_or(var.len(), |e| e + 1);
            tokens.push(match &var[..end] {
                "*}" => Token::Char('*'),
                "?}" => Token::Char('?'),
                "$}" => Token::Char('$'),
                _ => Token::Variable,
            });
            rest = &var[end..];
            continue;
        }
        tokens.push(match c {
            '*' => Token::Any,
            '?' => Token::One,
            c => Token::Char(c),
        });
        rest = &rest[c.len_utf8()..];
    }
    // Glob matching with backtracking to the last `*` (linear in practice, no allocation per
    // step: the template's checks evaluate a million patterns).
    let text: Vec<char> = resource.chars().collect();
    let (mut t, mut s) = (0, 0);
    let mut last_any: Option<(usize, usize)> = None;
    while s < text.len() {
        match tokens.get(t) {
            Some(Token::Any) => {
                last_any = Some((t, s));
                t += 1;
            }
            Some(Token::One) => (t, s) = (t + 1, s + 1),
            Some(Token::Char(c)) if *c == text[s] => (t, s) = (t + 1, s + 1),
            _ => match last_any {
                // The last `*` takes one character more.
                Some((any, from)) => {
                    last_any = Some((any, from + 1));
                    (t, s) = (any + 1, from + 1);
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|token| *token == Token::Any)
}

/// One policy statement: its effect, its actions and resources (patterns).
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub allow: bool,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

impl Statement {
    fn covers(&self, action: &str, resource: &str) -> bool {
        // Action names are case-insensitive; resources are not.
        let action = action.to_ascii_lowercase();
        self.actions
            .iter()
            .any(|a| iot_pattern_matches(&a.to_ascii_lowercase(), &action))
            && self
                .resources
                .iter()
                .any(|r| iot_pattern_matches(r, resource))
    }
}

/// Whether `statements` allow `action` on `resource`, as IAM and IoT Core decide: an explicit
/// Deny wins, then any Allow; nothing that matches is a refusal.
pub fn allows(statements: &[Statement], action: &str, resource: &str) -> bool {
    !denies_explicitly(statements, action, resource)
        && statements
            .iter()
            .any(|s| s.allow && s.covers(action, resource))
}

/// Whether a Deny statement covers `action` on `resource` (so no other policy can allow it).
pub fn denies_explicitly(statements: &[Statement], action: &str, resource: &str) -> bool {
    statements
        .iter()
        .any(|s| !s.allow && s.covers(action, resource))
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// The statements of JSON policy documents (an authorizer's response).
pub fn statements_of(documents: &[Value]) -> Vec<Statement> {
    documents
        .iter()
        .flat_map(|d| d["Statement"].as_array().cloned().unwrap_or_default())
        .map(|s| {
            assert!(
                s["Effect"] == "Allow" || s["Effect"] == "Deny",
                "a statement without a valid Effect: {s}"
            );
            Statement {
                allow: s["Effect"] == "Allow",
                actions: strings(&s["Action"]),
                resources: strings(&s["Resource"]),
            }
        })
        .collect()
}

/// Whether the policy documents of an authorizer response allow `action` on `resource`.
pub fn policy_allows(documents: &[Value], action: &str, resource: &str) -> bool {
    allows(&statements_of(documents), action, resource)
}

/// REALTIME.md's table, checked on the policy of a connection of `me` in `app` with client
/// id `client`: what it may do, and a sample of what it may not.
pub fn check_policy_against_realtime_table(
    documents: &[Value],
    arn: &str,
    app: &str,
    me: &str,
    client: &str,
) {
    let topic = |t: &str| format!("{arn}topic/{t}");
    let filter = |t: &str| format!("{arn}topicfilter/{t}");
    let tree = format!("apps/{app}/users/{me}");
    let other_app = format!("{app}x");
    let allowed = [
        ("iot:Connect", format!("{arn}client/{client}")),
        ("iot:Subscribe", filter(&format!("{tree}/#"))),
        (
            "iot:Subscribe",
            filter(&format!("{tree}/messages/+/clientadded")),
        ),
        (
            "iot:Subscribe",
            filter(&format!("{tree}/groups/g1/clientupdated")),
        ),
        (
            "iot:Receive",
            topic(&format!("{tree}/messages/u2/clientadded")),
        ),
        (
            "iot:Receive",
            topic(&format!("{tree}/messages/u2/m1/clientupdated")),
        ),
        (
            "iot:Receive",
            topic(&format!("{tree}/conversations/u2/clientupdated")),
        ),
        (
            "iot:Receive",
            topic(&format!("{tree}/archived_conversations/u2/clientadded")),
        ),
        (
            "iot:Receive",
            topic(&format!("{tree}/groups/g1/clientupdated")),
        ),
        ("iot:Receive", topic(&format!("{tree}/presence/c2"))),
        (
            "iot:Publish",
            topic(&format!(
                "apps/{app}/outgoing/users/{me}/messages/u2/outgoing"
            )),
        ),
        (
            "iot:Publish",
            topic(&format!("{tree}/messages/u2/m1/update")),
        ),
        (
            "iot:Publish",
            topic(&format!("{tree}/conversations/u2/update")),
        ),
        (
            "iot:Publish",
            topic(&format!("{tree}/conversations/u2/archive")),
        ),
        ("iot:Publish", topic(&format!("{tree}/presence/{client}"))),
        (
            "iot:RetainPublish",
            topic(&format!("{tree}/presence/{client}")),
        ),
    ];
    for (action, resource) in &allowed {
        assert!(
            policy_allows(documents, action, resource),
            "{me} may not {action} {resource}"
        );
    }
    let denied = [
        ("iot:Connect", format!("{arn}client/{client}x")),
        ("iot:Subscribe", filter("#")),
        ("iot:Subscribe", filter("apps/#")),
        ("iot:Subscribe", filter(&format!("apps/{app}/users/#"))),
        ("iot:Subscribe", filter(&format!("apps/{app}/users/+/#"))),
        (
            "iot:Subscribe",
            filter(&format!("apps/{app}/users/{me}x/#")),
        ),
        (
            "iot:Subscribe",
            filter(&format!("apps/{other_app}/users/{me}/#")),
        ),
        (
            "iot:Subscribe",
            filter(&format!("apps/{app}/outgoing/users/{me}/#")),
        ),
        (
            "iot:Receive",
            topic(&format!("apps/{app}/users/u2/messages/{me}/clientadded")),
        ),
        (
            "iot:Receive",
            topic(&format!(
                "apps/{other_app}/users/{me}/messages/u2/clientadded"
            )),
        ),
        // Server events, even into one's own tree.
        (
            "iot:Publish",
            topic(&format!("{tree}/messages/u2/clientadded")),
        ),
        (
            "iot:Publish",
            topic(&format!("{tree}/messages/u2/m1/clientupdated")),
        ),
        (
            "iot:Publish",
            topic(&format!("{tree}/conversations/u2/clientupdated")),
        ),
        (
            "iot:Publish",
            topic(&format!("{tree}/conversations/u2/clientdeleted")),
        ),
        (
            "iot:Publish",
            topic(&format!("{tree}/archived_conversations/u2/clientadded")),
        ),
        (
            "iot:Publish",
            topic(&format!("{tree}/groups/g1/clientupdated")),
        ),
        // Someone else's tree, another tenant.
        (
            "iot:Publish",
            topic(&format!(
                "apps/{app}/outgoing/users/u2/messages/{me}/outgoing"
            )),
        ),
        (
            "iot:Publish",
            topic(&format!("apps/{app}/users/u2/conversations/{me}/update")),
        ),
        (
            "iot:Publish",
            topic(&format!("apps/{app}/users/u2/presence/c2")),
        ),
        (
            "iot:Publish",
            topic(&format!(
                "apps/{other_app}/users/{me}/conversations/u2/archive"
            )),
        ),
        // Retained messages elsewhere than presence.
        (
            "iot:RetainPublish",
            topic(&format!("{tree}/conversations/u2/update")),
        ),
        (
            "iot:RetainPublish",
            topic(&format!("apps/{app}/users/u2/presence/c2")),
        ),
    ];
    for (action, resource) in &denied {
        assert!(
            !policy_allows(documents, action, resource),
            "{me} may {action} {resource}"
        );
    }
}

#[test]
fn the_evaluator_knows_iot_wildcards_and_deny() {
    assert!(iot_pattern_matches("a/*", "a/b/c"));
    assert!(iot_pattern_matches("a/*", "a/"));
    assert!(!iot_pattern_matches("a/*", "a"));
    assert!(iot_pattern_matches("a/?/c", "a/b/c"));
    assert!(!iot_pattern_matches("a/?/c", "a/bb/c"));
    assert!(iot_pattern_matches("a/${*}", "a/*"));
    assert!(!iot_pattern_matches("a/${*}", "a/b"));
    assert!(iot_pattern_matches("a${$}b${?}", "a$b?"));
    assert!(!iot_pattern_matches("a/${iot:ClientId}", "a/x"));
    assert!(iot_pattern_matches("a/#", "a/#"));
    assert!(!iot_pattern_matches("a/+", "a/b"));
    assert!(iot_pattern_matches("*/x/*", "a/x/b/x/c"));
    assert!(iot_pattern_matches("a*b*c", "aXbYbZc"));
    assert!(!iot_pattern_matches("a*b*c", "aXbYbZ"));
    assert!(iot_pattern_matches("a**", "a"));
    assert!(!iot_pattern_matches("a?", "a"));
    assert!(iot_pattern_matches("", ""));
    assert!(!iot_pattern_matches("", "a"));
    let statement = |allow: bool, action: &str, resource: &str| Statement {
        allow,
        actions: vec![action.into()],
        resources: vec![resource.into()],
    };
    let policy = [
        statement(true, "iot:Publish", "t/*"),
        statement(false, "iot:Publish", "t/*/secret"),
    ];
    assert!(allows(&policy, "iot:Publish", "t/a"));
    assert!(allows(&policy, "IOT:publish", "t/a"));
    assert!(!allows(&policy, "iot:Publish", "t/a/secret"));
    assert!(denies_explicitly(&policy, "iot:Publish", "t/a/b/secret"));
    assert!(!denies_explicitly(&policy, "iot:Publish", "u/a"));
    assert!(!allows(&policy, "iot:Publish", "u/a"), "implicitly denied");
    assert!(!allows(&policy, "iot:Subscribe", "t/a"));
    assert!(allows(
        &[statement(true, "iot:*", "*")],
        "iot:RetainPublish",
        "t"
    ));
}

/// The authorizer's policies, through the function's own entry point, for ids that stretch
/// the policy: the longest ids, and ids made of the characters a policy must escape.
#[test]
fn authorizer_policies_grant_exactly_the_table_for_any_id() {
    let verifier = chat21::auth::JwtVerifier::hs256(common::KEY).unwrap();
    let function = "arn:aws:lambda:eu-west-1:123456789012:function:chat21-authorizer";
    let arn = "arn:aws:iot:eu-west-1:123456789012:";
    let now = jsonwebtoken::get_current_timestamp();
    for (app, me, client) in [
        (
            "tilechat".to_string(),
            "user-1".to_string(),
            "c-1".to_string(),
        ),
        ("a".repeat(128), "u".repeat(128), "c".repeat(128)),
        ("$app{x}".into(), "${iot:ClientId}".into(), "*".into()),
        ("app".into(), "jane@example$ü".into(), "?client*".into()),
    ] {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({"sub": me, "app_id": app, "exp": now + 7_200}),
            &jsonwebtoken::EncodingKey::from_secret(common::KEY),
        )
        .unwrap();
        let password = base64::engine::general_purpose::STANDARD.encode(&token);
        let event = json!({"protocols": ["tls", "mqtt"], "protocolData": {"mqtt": {
            "username": "JWT", "password": password, "clientId": client}}});
        let response = authorizer_response(&verifier, function, now, &event);
        assert_eq!(response["isAuthenticated"], true, "{me}: {response}");
        let principal = response["principalId"].as_str().unwrap();
        assert!((1..=128).contains(&principal.len()));
        assert!(principal.chars().all(|c| c.is_ascii_alphanumeric()));
        let documents = response["policyDocuments"].as_array().unwrap();
        let sizes: Vec<usize> = documents.iter().map(|d| d.to_string().len()).collect();
        println!(
            "policy of {} + {} chars of ids: {sizes:?} characters",
            app.len(),
            me.len()
        );
        assert!(documents.len() <= 10 && sizes.iter().all(|s| *s <= 2_048));
        let disconnect = response["disconnectAfterInSeconds"].as_u64().unwrap();
        assert!((300..=7_200).contains(&disconnect));
        check_policy_against_realtime_table(documents, arn, &app, &me, &client);
    }
}
