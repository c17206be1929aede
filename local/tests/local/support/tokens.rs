//! The tokens the suites present: the server's own HS256 tokens (signed with [`KEY`]), and any
//! token signed as the test chooses (another key, another algorithm, an `exp` in the past).

use serde_json::{Value, json};

use super::server::{APP, KEY};

/// Now, in seconds since the epoch (a token's `exp` unit).
pub fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// `claims` signed with `algorithm` under `key`.
pub fn signed(claims: &Value, algorithm: jsonwebtoken::Algorithm, key: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(algorithm),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

/// A token of `sub` in tenant `app`, valid for an hour.
pub fn token(sub: &str, app: &str, admin: bool) -> String {
    let mut claims = json!({
        "sub": sub,
        "app_id": app,
        "exp": now_secs() + 3600,
    });
    if admin {
        claims["tiledesk_api_roles"] = json!("admin");
    }
    signed(&claims, jsonwebtoken::Algorithm::HS256, KEY)
}

/// A user token of `user` in [`APP`].
pub fn tok(user: &str) -> String {
    token(user, APP, false)
}
