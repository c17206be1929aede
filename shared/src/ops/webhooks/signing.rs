//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): every POST carries
//! `webhook-id`, `webhook-timestamp` (seconds) and `webhook-signature: v1,<base64>`, the
//! HMAC-SHA256 of `"{id}.{timestamp}.{body}"` with the endpoint's secret. A receiver recomputes
//! it, compares in constant time and refuses timestamps too far from its clock (replays).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

type HmacSha256 = hmac::Hmac<Sha256>;

/// The convention's prefix of a base64-encoded secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes of a generated secret (the convention asks for 24 to 64).
const GENERATED_BYTES: usize = 24;
const MIN_KEY_BYTES: usize = 24;
const MAX_KEY_BYTES: usize = 64;
/// Characters of a secret given as plain text (its UTF-8 bytes are the key).
const MIN_PLAIN_CHARS: usize = 16;
pub const MAX_SECRET_CHARS: usize = 256;

/// A signing secret: as given (what admins see and receivers configure), and the key bytes.
/// `whsec_<base64>` is decoded (the Standard Webhooks convention); any other text is used
/// as its UTF-8 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    text: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Reads a secret, naming `field` in the error.
    pub fn parse(field: &str, text: &str) -> Result<Secret> {
        let bad = |why: &str| Error::bad_request(format!("`{field}` {why}"));
        if text.chars().count() > MAX_SECRET_CHARS {
            return Err(bad(&format!(
                "is longer than {MAX_SECRET_CHARS} characters"
            )));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("must not contain spaces or control characters"));
        }
        let key = match text.strip_prefix(SECRET_PREFIX) {
            Some(encoded) => {
                let key = STANDARD
                    .decode(encoded)
                    .or_else(|_| STANDARD_NO_PAD.decode(encoded))
                    .map_err(|_| bad("starts with `whsec_` but the rest is not base64"))?;
                if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
                    return Err(bad(&format!(
                        "must encode {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes after `whsec_`"
                    )));
                }
                key
            }
            None if text.chars().count() < MIN_PLAIN_CHARS => {
                return Err(bad(&format!(
                    "must be `whsec_<base64>` or at least {MIN_PLAIN_CHARS} characters"
                )));
            }
            None => text.as_bytes().to_vec(),
        };
        Ok(Secret {
            text: text.to_string(),
            key,
        })
    }

    /// A new random secret, `whsec_` + 24 random bytes in base64.
    pub fn generate() -> Result<Secret> {
        let mut key = vec![0u8; GENERATED_BYTES];
        getrandom::fill(&mut key)
            .map_err(|e| Error::internal(format!("no randomness for a secret: {e}")))?;
        Ok(Secret {
            text: format!("{SECRET_PREFIX}{}", STANDARD.encode(&key)),
            key,
        })
    }

    /// The secret as given (or generated).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn mac(&self, id: &str, timestamp: u64, body: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length: this never fails.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` header value: `v1,<base64 HMAC-SHA256>`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// Whether one of the space-separated signatures of a `webhook-signature` header is
    /// ours for this id, timestamp and body (constant-time comparison).
    pub fn verify(&self, id: &str, timestamp: u64, body: &[u8], header: &str) -> bool {
        header.split(' ').any(|signature| {
            let Some(encoded) = signature.strip_prefix("v1,") else {
                return false;
            };
            let Ok(tag) = STANDARD.decode(encoded) else {
                return false;
            };
            self.mac(id, timestamp, body).verify_slice(&tag).is_ok()
        })
    }
}

/// The `webhook-id` of an event: derived from its body, so it is the same on every attempt
/// and for every copy of the event the topic hands over twice (receivers drop duplicates).
pub fn webhook_id(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn the_specifications_example_signs_alike() {
        let secret = Secret::parse("secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signature = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(secret.verify("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, &signature));
        let both = format!("v1,bm9wZQ== {signature}");
        assert!(secret.verify("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, &both));
        for (id, ts, body) in [
            ("msg_other", 1614265330, &body[..]),
            ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, &body[..]),
            ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b"{}"),
        ] {
            assert!(!secret.verify(id, ts, body, &signature));
        }
        assert!(!secret.verify("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, "v2,x"));
    }

    #[test]
    fn secrets_are_whsec_base64_or_long_plain_text() {
        let plain = Secret::parse("s", "a-plain-secret-of-some-length").unwrap();
        assert_eq!(plain.key, b"a-plain-secret-of-some-length");
        assert_eq!(plain.as_str(), "a-plain-secret-of-some-length");
        for bad in [
            "short",
            "whsec_!!!notbase64",
            "whsec_c2hvcnQ=",
            "with space in the middle of it",
            &"x".repeat(MAX_SECRET_CHARS + 1),
        ] {
            let e = Secret::parse("secret", bad).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
            assert!(e.to_string().contains("`secret`"), "{e}");
        }
        let generated = Secret::generate().unwrap();
        assert!(generated.as_str().starts_with(SECRET_PREFIX));
        assert_eq!(
            Secret::parse("s", generated.as_str()).unwrap().key,
            generated.key
        );
        assert_ne!(Secret::generate().unwrap(), generated);
        assert_eq!(format!("{generated:?}"), "Secret(..)", "never logged");
    }

    #[test]
    fn ids_are_stable_per_body() {
        assert_eq!(webhook_id("{}"), webhook_id("{}"));
        assert_ne!(webhook_id("{}"), webhook_id("{ }"));
        assert!(webhook_id("{}").starts_with("msg_"));
        assert_eq!(webhook_id("{}").len(), 4 + 32);
    }
}
