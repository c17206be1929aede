//! JWT authentication (API.md "Authentication"): where the token comes from, how it is checked,
//! and what it says about the caller.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::ids::Id;
use crate::model::Caller;

/// Tolerated clock skew on `exp` unless configured (`JWT_LEEWAY_SECS`); the JWT library's own
/// default of 60 s would keep expired tokens working for a minute.
pub const DEFAULT_LEEWAY_SECS: u64 = 5;
/// The most skew a configuration may allow.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// Checks tokens with one configured key and one pinned algorithm.
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    app_id: Option<String>,
    #[serde(default)]
    tiledesk_api_roles: Option<Value>,
}

impl JwtVerifier {
    /// HS256 with Chat21's shared secret (`JWT_KEY`).
    pub fn hs256(secret: &[u8]) -> Result<JwtVerifier> {
        if secret.is_empty() {
            return Err(Error::internal("the JWT key is empty"));
        }
        Ok(Self::new(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// RS256 with a PEM public key, for tokens from an identity provider.
    pub fn rs256_pem(pem: &[u8]) -> Result<JwtVerifier> {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| {
            Error::internal(format!("the JWT public key is not an RSA PEM key: {e}"))
        })?;
        Ok(Self::new(key, Algorithm::RS256))
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> JwtVerifier {
        // Only the configured algorithm is accepted: `alg: none`, or HS256 against an RS256
        // key, fail here.
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = DEFAULT_LEEWAY_SECS;
        // Tiledesk tokens carry `aud: ["rabbitmq", <uid>]`; Chat21 ignored it, so do we.
        validation.validate_aud = false;
        JwtVerifier { key, validation }
    }

    /// Accepts tokens up to `seconds` past their `exp` (or before their `nbf`): clock skew
    /// between the token's issuer and this server.
    pub fn with_leeway(mut self, seconds: u64) -> JwtVerifier {
        self.validation.leeway = seconds;
        self
    }

    /// The seconds of clock skew tolerated on `exp`.
    pub fn leeway(&self) -> u64 {
        self.validation.leeway
    }

    /// Verifies a token and returns the caller it names.
    pub fn verify(&self, token: &str) -> Result<Caller> {
        self.verify_until(token).map(|(caller, _)| caller)
    }

    /// Verifies a token and returns the caller it names and its `exp` (seconds since the
    /// epoch): a connection authenticated by it must not outlive it.
    pub fn verify_until(&self, token: &str) -> Result<(Caller, u64)> {
        let data = decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::InvalidSignature => "the token signature is invalid",
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    "the token is signed with an algorithm this server does not accept"
                }
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim (exp, sub)",
                _ => "the token is malformed",
            };
            Error::Unauthorized(why.to_string())
        })?;
        let claims = data.claims;
        let app_id = claims
            .app_id
            .ok_or_else(|| Error::Unauthorized("the token lacks the app_id claim".into()))?;
        let invalid = |_| Error::Unauthorized("the token's sub or app_id is not a valid id".into());
        let user_id = Id::parse("sub", claims.sub).map_err(invalid)?;
        let app_id = Id::parse("app_id", app_id).map_err(invalid)?;
        let admin = match &claims.tiledesk_api_roles {
            Some(Value::String(role)) => role == "admin",
            Some(Value::Array(roles)) => roles.iter().any(|r| r.as_str() == Some("admin")),
            _ => false,
        };
        let caller = Caller {
            user_id,
            app_id,
            admin,
        };
        Ok((caller, claims.exp))
    }
}

/// The token of a request: the `Authorization` header (raw, `Bearer ` or `JWT `), else the
/// `jwt`, `JWT` or `token` query parameter kept for old clients.
pub fn token_from<'a>(
    authorization: Option<&'a str>,
    query: impl Fn(&str) -> Option<&'a str>,
) -> Option<&'a str> {
    if let Some(header) = authorization.map(str::trim).filter(|h| !h.is_empty()) {
        for prefix in ["Bearer ", "bearer ", "JWT ", "jwt "] {
            if let Some(rest) = header.strip_prefix(prefix) {
                return Some(rest.trim());
            }
        }
        return Some(header);
    }
    ["jwt", "JWT", "token"]
        .into_iter()
        .find_map(query)
        .filter(|t| !t.is_empty())
}

/// Authenticates a call to a route of tenant `app_id`: a verified token for that tenant.
pub fn authenticate(verifier: &JwtVerifier, token: Option<&str>, app_id: &str) -> Result<Caller> {
    let token = token.ok_or_else(|| {
        Error::Unauthorized("missing token: send it in the Authorization header".into())
    })?;
    let caller = verifier.verify(token)?;
    if caller.app_id != *app_id {
        return Err(Error::forbidden(
            "the token belongs to another app (tenant) than the one in the path",
        ));
    }
    Ok(caller)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    pub const KEY: &[u8] = b"unit-test-key";

    pub fn sign(claims: Value, key: &[u8]) -> String {
        encode(&Header::default(), &claims, &EncodingKey::from_secret(key)).unwrap()
    }

    fn far() -> u64 {
        jsonwebtoken::get_current_timestamp() + 3600
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::hs256(KEY).unwrap()
    }

    #[test]
    fn accepts_a_plain_chat21_token() {
        let t = sign(json!({"sub": "u1", "app_id": "default", "exp": far()}), KEY);
        let c = verifier().verify(&t).unwrap();
        assert_eq!(
            c,
            Caller {
                user_id: Id::parse("sub", "u1").unwrap(),
                app_id: Id::parse("app_id", "default").unwrap(),
                admin: false
            }
        );
    }

    #[test]
    fn accepts_tiledesk_tokens_with_extra_claims_and_roles() {
        let t = sign(
            json!({"sub": "bot", "app_id": "t1", "exp": far(), "aud": ["rabbitmq", "bot"],
                   "scope": ["rabbitmq.read:*"], "kid": "x", "jti": "j", "client_id": "c",
                   "tiledesk_api_roles": ["user", "admin"]}),
            KEY,
        );
        assert!(verifier().verify(&t).unwrap().admin);
        let t = sign(
            json!({"sub": "a", "app_id": "t1", "exp": far(), "tiledesk_api_roles": "admin"}),
            KEY,
        );
        assert!(verifier().verify(&t).unwrap().admin);
        let t = sign(
            json!({"sub": "a", "app_id": "t1", "exp": far(), "tiledesk_api_roles": "user"}),
            KEY,
        );
        assert!(!verifier().verify(&t).unwrap().admin);
    }

    #[test]
    fn refuses_bad_tokens_with_401() {
        let past = jsonwebtoken::get_current_timestamp() - 3600;
        let cases = [
            (
                "expired",
                sign(json!({"sub": "u", "app_id": "a", "exp": past}), KEY),
            ),
            (
                "other key",
                sign(json!({"sub": "u", "app_id": "a", "exp": far()}), b"other"),
            ),
            ("no exp", sign(json!({"sub": "u", "app_id": "a"}), KEY)),
            ("no sub", sign(json!({"app_id": "a", "exp": far()}), KEY)),
            ("no app_id", sign(json!({"sub": "u", "exp": far()}), KEY)),
            (
                "sub with #",
                sign(json!({"sub": "u#x", "app_id": "a", "exp": far()}), KEY),
            ),
            ("garbage", "not.a.token".to_string()),
            ("empty", String::new()),
        ];
        for (name, token) in cases {
            let err = verifier().verify(&token).unwrap_err();
            assert_eq!(err.status(), 401, "{name}: {err}");
        }
    }

    #[test]
    fn expiry_leeway_is_small_and_configurable() {
        let now = jsonwebtoken::get_current_timestamp();
        let expired_ago =
            |secs: u64| sign(json!({"sub": "u", "app_id": "a", "exp": now - secs}), KEY);
        assert_eq!(verifier().leeway(), DEFAULT_LEEWAY_SECS);
        assert!(verifier().verify(&expired_ago(30)).is_err(), "not 60 s");
        assert!(verifier().verify(&expired_ago(2)).is_ok());
        let strict = verifier().with_leeway(0);
        assert_eq!(strict.verify(&expired_ago(2)).unwrap_err().status(), 401);
        let lax = verifier().with_leeway(120);
        assert!(lax.verify(&expired_ago(60)).is_ok());
    }

    #[test]
    fn refuses_alg_none_and_other_algorithms() {
        use base64::Engine;
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let claims = b64(json!({"sub": "u", "app_id": "a", "exp": far()}));
        let none = format!("{}.{}.", b64(json!({"alg": "none", "typ": "JWT"})), claims);
        assert_eq!(verifier().verify(&none).unwrap_err().status(), 401);
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &json!({"sub": "u", "app_id": "a", "exp": far()}),
            &EncodingKey::from_secret(KEY),
        )
        .unwrap();
        assert_eq!(verifier().verify(&hs384).unwrap_err().status(), 401);
    }

    /// A key pair made for these tests only (`testdata/`).
    const RSA_PRIVATE: &[u8] = include_bytes!("testdata/rs256-test-private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("testdata/rs256-test-public.pem");

    #[test]
    fn rs256_tokens_from_an_identity_provider() {
        let verifier = JwtVerifier::rs256_pem(RSA_PUBLIC).unwrap();
        let claims = json!({"sub": "u1", "app_id": "a", "exp": far()});
        let signed = encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        )
        .unwrap();
        assert_eq!(verifier.verify(&signed).unwrap().user_id, "u1");
        // The classic confusion: an HS256 token whose secret is the public key.
        let confused = sign(claims, RSA_PUBLIC);
        assert_eq!(verifier.verify(&confused).unwrap_err().status(), 401);
        // And an HS256 verifier does not accept RS256 tokens.
        assert_eq!(
            JwtVerifier::hs256(KEY)
                .unwrap()
                .verify(&signed)
                .unwrap_err()
                .status(),
            401
        );
        assert!(JwtVerifier::rs256_pem(b"not a key").is_err());
    }

    #[test]
    fn token_sources() {
        let none = |_: &str| None;
        assert_eq!(token_from(Some("abc"), none), Some("abc"));
        assert_eq!(token_from(Some("Bearer abc"), none), Some("abc"));
        assert_eq!(token_from(Some("JWT abc"), none), Some("abc"));
        assert_eq!(
            token_from(None, |k| (k == "token").then_some("q")),
            Some("q")
        );
        assert_eq!(token_from(None, |k| (k == "JWT").then_some("q")), Some("q"));
        assert_eq!(token_from(None, none), None);
    }

    #[test]
    fn wrong_tenant_is_403_missing_token_401() {
        let t = sign(json!({"sub": "u", "app_id": "a", "exp": far()}), KEY);
        assert_eq!(
            authenticate(&verifier(), Some(&t), "b")
                .unwrap_err()
                .status(),
            403
        );
        assert_eq!(
            authenticate(&verifier(), None, "a").unwrap_err().status(),
            401
        );
        assert!(authenticate(&verifier(), Some(&t), "a").is_ok());
    }
}
