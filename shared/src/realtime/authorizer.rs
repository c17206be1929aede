//! The IoT Core custom authorizer (REALTIME.md "Connection", "On AWS"): the JWT from the MQTT
//! CONNECT password, checked by the HTTP API's own verifier, becomes an IoT policy that grants
//! exactly the table "What a client may do" for the token's user and tenant.
//!
//! IoT Core hands the password base64-encoded; it invokes this on every CONNECT and again
//! every `refreshAfterInSeconds`, and closes the connection after `disconnectAfterInSeconds`.
//! Anything wrong with the request or the token is `isAuthenticated: false` (CONNACK "not
//! authorized"), never an error: an error would also refuse the client, but look like an
//! outage in the metrics.

use base64::Engine;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::auth::JwtVerifier;
use crate::model::Caller;

/// IoT Core's bounds on `disconnectAfterInSeconds` and `refreshAfterInSeconds`.
pub const MIN_SESSION_SECS: u64 = 300;
pub const MAX_SESSION_SECS: u64 = 86_400;
/// How often IoT Core asks again while a connection lasts: a changed key (or algorithm) takes
/// effect on open connections within this time. The policy itself never changes.
pub const REFRESH_SECS: u64 = 3_600;
/// IoT Core's limits on the policies of one connection.
pub const MAX_POLICY_CHARS: usize = 2_048;
pub const MAX_POLICY_DOCUMENTS: usize = 10;

/// What IoT Core expects back (its custom authorizer response).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerResponse {
    pub is_authenticated: bool,
    pub principal_id: String,
    pub disconnect_after_in_seconds: u64,
    pub refresh_after_in_seconds: u64,
    pub policy_documents: Vec<Value>,
}

impl AuthorizerResponse {
    /// A refusal: the client gets CONNACK "not authorized".
    pub fn refused() -> AuthorizerResponse {
        AuthorizerResponse {
            is_authenticated: false,
            principal_id: "refused".into(),
            disconnect_after_in_seconds: MIN_SESSION_SECS,
            refresh_after_in_seconds: MIN_SESSION_SECS,
            policy_documents: Vec::new(),
        }
    }
}

/// The ARN prefix of this account's IoT resources: `arn:{partition}:iot:{region}:{account}:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IotArns {
    prefix: String,
}

impl IotArns {
    pub fn new(partition: &str, region: &str, account: &str) -> IotArns {
        IotArns {
            prefix: format!("arn:{partition}:iot:{region}:{account}:"),
        }
    }

    /// From the authorizer function's own ARN (Lambda hands it with every invocation), so
    /// that the policy names this partition, region and account without any configuration.
    pub fn of_function(function_arn: &str) -> Option<IotArns> {
        let parts: Vec<&str> = function_arn.split(':').collect();
        match parts.as_slice() {
            ["arn", partition, "lambda", region, account, "function", ..]
                if [partition, region, account].iter().all(|p| is_arn_part(p)) =>
            {
                Some(IotArns::new(partition, region, account))
            }
            _ => None,
        }
    }

    /// Any region and account of the `aws` partition: only used if the function's ARN cannot
    /// be read (IoT Core evaluates the policy in its own account anyway).
    pub fn anywhere() -> IotArns {
        IotArns::new("aws", "*", "*")
    }

    fn resource(&self, kind: &str, rest: &str) -> String {
        format!("{}{kind}/{rest}", self.prefix)
    }
}

fn is_arn_part(part: &str) -> bool {
    !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// `principalId` must be 1–128 ASCII letters and digits; ids may hold anything printable.
/// The SHA-256 of `{app}/{user}` (ids never contain `/`), in hex: one principal per user and
/// tenant, the same on every connection (the authorizer logs which user it is).
pub fn principal_id(app: &str, user: &str) -> String {
    let digest = Sha256::digest(format!("{app}/{user}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A literal inside an IoT policy resource: `*` and `?` are wildcards and `${…}` a policy
/// variable, so those characters are written as IoT's special-character variables. (Ids
/// never contain `*` or `?`; client ids and `$` in ids may.)
pub fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '$' => out.push_str("${$}"),
            '*' => out.push_str("${*}"),
            '?' => out.push_str("${?}"),
            c => out.push(c),
        }
    }
    out
}

/// Why a connection is refused (logged, never sent: MQTT 3.1.1 has one "not authorized").
pub type Refusal = String;

/// What a verified token grants.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub caller: Caller,
    pub client_id: Option<String>,
    /// Seconds until the token's `exp`, capped at IoT Core's 24 hours.
    pub session_secs: u64,
}

/// The token: the CONNECT password, base64 as IoT Core hands it.
fn password_of(event: &Value) -> Result<String, Refusal> {
    let encoded = event
        .pointer("/protocolData/mqtt/password")
        .and_then(Value::as_str)
        .ok_or("no MQTT password (the JWT) in the CONNECT")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| "the password is not base64 (IoT Core encodes it)")?;
    let text = String::from_utf8(bytes).map_err(|_| "the password is not text")?;
    let token = text.trim();
    // Chat21 clients send the raw token; some send it as an Authorization header value.
    let token = ["JWT ", "Bearer "]
        .iter()
        .find_map(|p| token.strip_prefix(p))
        .unwrap_or(token);
    Ok(token.trim().to_string())
}

/// Checks the CONNECT of `event` at `now` (seconds since the epoch).
pub fn check(verifier: &JwtVerifier, now: u64, event: &Value) -> Result<Grant, Refusal> {
    let token = password_of(event)?;
    let (caller, exp) = verifier.verify_until(&token).map_err(|e| e.to_string())?;
    let left = exp.saturating_sub(now);
    if left < MIN_SESSION_SECS {
        // IoT Core cannot close a connection sooner than 5 minutes after it opens: a token
        // this close to its `exp` would outlive it.
        return Err(format!(
            "the token expires in {left} s; IoT Core keeps a connection at least {MIN_SESSION_SECS} s"
        ));
    }
    let client_id = event
        .pointer("/protocolData/mqtt/clientId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    Ok(Grant {
        caller,
        client_id,
        session_secs: left.min(MAX_SESSION_SECS),
    })
}

/// The policy statements of REALTIME.md's table, as `(action, resource)` pairs.
pub fn statements(arns: &IotArns, grant: &Grant) -> Vec<(&'static str, String)> {
    let app = literal(&grant.caller.app_id);
    let me = literal(&grant.caller.user_id);
    let tree = format!("apps/{app}/users/{me}");
    let client = grant.client_id.as_deref().map_or("*".into(), literal);
    let topic = |rest: String| arns.resource("topic", &rest);
    vec![
        ("iot:Connect", arns.resource("client", &client)),
        // Any filter inside the user's own tree (Chat21 subscribes `…/{me}/#`).
        (
            "iot:Subscribe",
            arns.resource("topicfilter", &format!("{tree}/*")),
        ),
        ("iot:Receive", topic(format!("{tree}/*"))),
        (
            "iot:Publish",
            topic(format!(
                "apps/{app}/outgoing/users/{me}/messages/*/outgoing"
            )),
        ),
        ("iot:Publish", topic(format!("{tree}/messages/*/*/update"))),
        (
            "iot:Publish",
            topic(format!("{tree}/conversations/*/update")),
        ),
        (
            "iot:Publish",
            topic(format!("{tree}/conversations/*/archive")),
        ),
        ("iot:Publish", topic(format!("{tree}/presence/*"))),
        // Retained (and retained will) messages: presence only.
        ("iot:RetainPublish", topic(format!("{tree}/presence/*"))),
    ]
}

fn document(statements: &[(&str, Vec<String>)]) -> Value {
    let statements: Vec<Value> = statements
        .iter()
        .map(|(action, resources)| {
            json!({ "Effect": "Allow", "Action": action, "Resource": resources })
        })
        .collect();
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// Packs the statements into as few policy documents as fit IoT Core's 2,048 characters each
/// (one for ordinary ids; ids of 128 characters need two).
pub fn policy_documents(statements: &[(&str, String)]) -> Result<Vec<Value>, Refusal> {
    let mut documents: Vec<Vec<(&str, Vec<String>)>> = Vec::new();
    for (action, resource) in statements {
        let mut fits_last = false;
        if let Some(last) = documents.last_mut() {
            let mut candidate = last.clone();
            match candidate.iter_mut().find(|(a, _)| a == action) {
                Some((_, resources)) => resources.push(resource.clone()),
                None => candidate.push((action, vec![resource.clone()])),
            }
            if document(&candidate).to_string().len() <= MAX_POLICY_CHARS {
                *last = candidate;
                fits_last = true;
            }
        }
        if !fits_last {
            let alone = vec![(*action, vec![resource.clone()])];
            if document(&alone).to_string().len() > MAX_POLICY_CHARS {
                return Err(format!("a policy resource is too long: {resource}"));
            }
            documents.push(alone);
        }
    }
    if documents.len() > MAX_POLICY_DOCUMENTS {
        return Err(format!(
            "the policy needs {} documents (IoT Core allows {MAX_POLICY_DOCUMENTS})",
            documents.len()
        ));
    }
    Ok(documents.iter().map(|d| document(d)).collect())
}

/// The answer to one authorizer invocation, and why it refused if it did.
pub fn authorize(
    verifier: &JwtVerifier,
    arns: &IotArns,
    now: u64,
    event: &Value,
) -> (AuthorizerResponse, Option<Refusal>) {
    let granted = check(verifier, now, event).and_then(|grant| {
        let documents = policy_documents(&statements(arns, &grant))?;
        Ok((grant, documents))
    });
    match granted {
        Ok((grant, documents)) => (
            AuthorizerResponse {
                is_authenticated: true,
                principal_id: principal_id(&grant.caller.app_id, &grant.caller.user_id),
                disconnect_after_in_seconds: grant.session_secs,
                refresh_after_in_seconds: grant.session_secs.min(REFRESH_SECS),
                policy_documents: documents,
            },
            None,
        ),
        Err(why) => (AuthorizerResponse::refused(), Some(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tests::{KEY, sign};

    const NOW: u64 = 1_800_000_000;

    fn event(password: &str, client: Option<&str>) -> Value {
        let mut mqtt = json!({
            "username": "JWT",
            "password": base64::engine::general_purpose::STANDARD.encode(password),
        });
        if let Some(client) = client {
            mqtt["clientId"] = json!(client);
        }
        json!({ "protocols": ["tls", "mqtt"], "protocolData": { "mqtt": mqtt } })
    }

    fn token(sub: &str, app: &str, exp: u64) -> String {
        sign(json!({"sub": sub, "app_id": app, "exp": exp}), KEY)
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::hs256(KEY).unwrap()
    }

    #[test]
    fn arns_from_the_function() {
        let arns =
            IotArns::of_function("arn:aws-cn:lambda:cn-north-1:123456789012:function:auth:live")
                .unwrap();
        assert_eq!(
            arns.resource("topic", "x"),
            "arn:aws-cn:iot:cn-north-1:123456789012:topic/x"
        );
        assert_eq!(IotArns::of_function("arn:aws:s3:::bucket"), None);
        assert_eq!(IotArns::of_function("nonsense"), None);
    }

    #[test]
    fn principal_ids_are_alphanumeric_and_distinct() {
        let a = principal_id("app", "user.with-odd_chars$");
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(principal_id("a", "bc"), principal_id("ab", "c"));
        assert_eq!(a, principal_id("app", "user.with-odd_chars$"));
    }

    #[test]
    fn wildcards_and_variables_are_literal() {
        assert_eq!(literal("a*b?c$d{e}"), "a${*}b${?}c${$}d{e}");
        assert_eq!(literal("${iot:ClientId}"), "${$}{iot:ClientId}");
    }

    #[test]
    fn sessions_end_at_the_tokens_exp_within_iot_bounds() {
        let v = verifier();
        let grant = check(&v, NOW, &event(&token("u", "a", NOW + 3_600), Some("c1"))).unwrap();
        assert_eq!(grant.session_secs, 3_600);
        assert_eq!(grant.client_id.as_deref(), Some("c1"));
        let long = check(&v, NOW, &event(&token("u", "a", NOW + 999_999), None)).unwrap();
        assert_eq!(long.session_secs, MAX_SESSION_SECS);
        assert_eq!(long.client_id, None);
        let soon = check(&v, NOW, &event(&token("u", "a", NOW + 299), None));
        assert!(soon.unwrap_err().contains("expires"));
        let (response, why) = authorize(&v, &IotArns::anywhere(), NOW, &event("x", None));
        assert!(!response.is_authenticated);
        assert!(why.is_some());
    }

    #[test]
    fn refresh_is_hourly_and_never_after_the_disconnect() {
        let v = verifier();
        let arns = IotArns::anywhere();
        let (r, _) = authorize(&v, &arns, NOW, &event(&token("u", "a", NOW + 86_400), None));
        assert_eq!(
            (r.disconnect_after_in_seconds, r.refresh_after_in_seconds),
            (86_400, 3_600)
        );
        let (r, _) = authorize(&v, &arns, NOW, &event(&token("u", "a", NOW + 600), None));
        assert_eq!(
            (r.disconnect_after_in_seconds, r.refresh_after_in_seconds),
            (600, 600)
        );
    }

    #[test]
    fn bearer_prefixes_and_garbage_passwords() {
        let v = verifier();
        let t = token("u", "a", NOW + 3_600);
        assert!(check(&v, NOW, &event(&format!("JWT {t}"), None)).is_ok());
        let mut not_base64 = event("x", None);
        not_base64["protocolData"]["mqtt"]["password"] = json!("%%%");
        assert!(check(&v, NOW, &not_base64).is_err());
        assert!(check(&v, NOW, &json!({})).is_err());
        assert!(check(&v, NOW, &json!("a string")).is_err());
    }

    #[test]
    fn the_longest_ids_still_fit_iot_policy_limits() {
        let v = verifier();
        let arns = IotArns::new("aws-us-gov", "us-gov-west-1", "123456789012");
        for (user, app, client) in [
            ("u".repeat(128), "a".repeat(128), "c".repeat(128)),
            ("$".repeat(128), "$".repeat(128), "*".repeat(128)),
            ("user-1".into(), "tilechat".into(), "3f1c…".into()),
        ] {
            let t = token(&user, &app, NOW + 3_600);
            let (r, why) = authorize(&v, &arns, NOW, &event(&t, Some(&client)));
            assert!(r.is_authenticated, "{why:?}");
            assert!(r.policy_documents.len() <= MAX_POLICY_DOCUMENTS);
            for d in &r.policy_documents {
                assert!(
                    d.to_string().len() <= MAX_POLICY_CHARS,
                    "{}",
                    d.to_string().len()
                );
            }
        }
        let t = token("user-1", "tilechat", NOW + 3_600);
        let (r, _) = authorize(&v, &arns, NOW, &event(&t, Some("c1")));
        assert_eq!(
            r.policy_documents.len(),
            1,
            "ordinary ids take one document"
        );
    }
}
