//! The web console of `chat21-local` (`GET /console`): one page, written in `console/` (HTML,
//! CSS and plain JavaScript, no build step), served as one self-contained document, that signs
//! in as a user and chats through the HTTP API and MQTT over WebSocket as a Chat21 client does.
//!
//! While the server runs on its development key (no `JWT_KEY`), `POST /console/token` mints
//! short-lived user tokens for the page (the key is public anyway: it is in this repository and
//! printed at start-up). With a real key that route does not exist (404) and the page asks for
//! a token instead.

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use chat21::error::Error;
use chat21::ids::Id;
use chat21::input::Fields;

/// The page.
pub const PATH: &str = "/console";
/// Mints a token (development key only).
pub const TOKEN_PATH: &str = "/console/token";
/// How long a minted token lives; the page mints a new one before it ends.
pub const TOKEN_TTL_SECS: u64 = 3600;
/// A token request is two ids: anything larger is not one.
const MAX_TOKEN_BODY: usize = 4 * 1024;

const INDEX: &str = include_str!("console/index.html");
/// Where the page's configuration goes: `index.html` opened from a file keeps `{}` and falls
/// back to its defaults.
const CONFIG_SLOT: &str = r#"<script id="console-config" type="application/json">{}</script>"#;
/// The page's own files, inlined where `index.html` links them (opened from a file, it loads
/// them as siblings), so the served page is one document with no other request.
const ASSETS: [(&str, &str, &str, &str); 6] = [
    (
        r#"<link rel="stylesheet" href="console.css">"#,
        "<style>\n",
        include_str!("console/console.css"),
        "</style>",
    ),
    (
        r#"<script src="mqtt.js"></script>"#,
        "<script>\n",
        include_str!("console/mqtt.js"),
        "</script>",
    ),
    (
        r#"<script src="api.js"></script>"#,
        "<script>\n",
        include_str!("console/api.js"),
        "</script>",
    ),
    (
        r#"<script src="view.js"></script>"#,
        "<script>\n",
        include_str!("console/view.js"),
        "</script>",
    ),
    (
        r#"<script src="live.js"></script>"#,
        "<script>\n",
        include_str!("console/live.js"),
        "</script>",
    ),
    (
        r#"<script src="console.js"></script>"#,
        "<script>\n",
        include_str!("console/console.js"),
        "</script>",
    ),
];

/// The console's routes, built once at start-up.
pub struct Console {
    page: Bytes,
    /// The development key, when the server runs on it: only then are tokens minted.
    dev_key: Option<Vec<u8>>,
}

impl Console {
    /// `mqtt_ws_port` is the port the page's MQTT URL defaults to (on the page's own host);
    /// `dev_key` is `Some` only while the server runs on its development key.
    pub fn new(mqtt_ws_port: u16, dev_key: Option<&[u8]>) -> Console {
        Console {
            page: Bytes::from(page(mqtt_ws_port, dev_key.is_some())),
            dev_key: dev_key.map(<[u8]>::to_vec),
        }
    }

    /// True for the paths the console answers (the page, and everything under `/console/`).
    pub fn serves(path: &str) -> bool {
        path == PATH || path.starts_with("/console/")
    }

    /// Answers a request whose path [`Console::serves`].
    pub async fn respond(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Incoming,
    ) -> Response<Full<Bytes>> {
        match (path, &self.dev_key) {
            (PATH, _) if method == Method::GET => self.page(),
            (PATH, _) => not_allowed(method, "GET"),
            (TOKEN_PATH, Some(key)) if method == Method::POST => {
                match token(key, headers, body).await {
                    Ok(answer) => json_response(StatusCode::OK, answer.to_string()),
                    Err(e) => super::error(&e),
                }
            }
            (TOKEN_PATH, Some(_)) => not_allowed(method, "POST"),
            _ => super::error(&Error::not_found("no such route")),
        }
    }

    fn page(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.page.clone()));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        // It carries this process's ports.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        response
    }
}

/// The served page: `index.html` with its files inlined and this server's configuration.
fn page(mqtt_ws_port: u16, dev_tokens: bool) -> String {
    let mut page = INDEX.to_string();
    for (link, open, content, close) in ASSETS {
        page = page.replace(link, &format!("{open}{content}{close}"));
    }
    // Numbers and booleans only: nothing here can close the script element.
    let config = json!({ "mqtt_ws_port": mqtt_ws_port, "dev_tokens": dev_tokens });
    page.replace(CONFIG_SLOT, &CONFIG_SLOT.replace("{}", &config.to_string()))
}

/// `POST /console/token {"user_id", "app_id"}`: a user token (never an admin's) signed with the
/// development key, valid for [`TOKEN_TTL_SECS`].
async fn token(
    key: &[u8],
    headers: &HeaderMap,
    body: Incoming,
) -> Result<serde_json::Value, Error> {
    let bytes = match Limited::new(body, MAX_TOKEN_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return Err(Error::PayloadTooLarge(format!(
                "a token request is at most {MAX_TOKEN_BODY} bytes"
            )));
        }
        Err(e) => {
            return Err(Error::bad_request(format!(
                "the request body could not be read: {e}"
            )));
        }
    };
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let content_type = content_type.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(Error::UnsupportedMediaType(format!(
                "the body must be JSON (Content-Type: application/json), not {essence:?}"
            )));
        }
    }
    let fields = Fields::parse(&bytes)?;
    let user = fields.required_id("user_id")?;
    let app = fields.required_id("app_id")?;
    let now = jsonwebtoken::get_current_timestamp();
    let (token, exp) = mint(key, &user, &app, now)?;
    Ok(json!({
        "success": true,
        "token": token,
        "user_id": user,
        "app_id": app,
        "exp": exp,
    }))
}

fn mint(key: &[u8], user: &Id, app: &Id, now: u64) -> Result<(String, u64), Error> {
    let exp = now + TOKEN_TTL_SECS;
    let claims = json!({ "sub": user, "app_id": app, "iat": now, "exp": exp });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .map(|token| (token, exp))
    .map_err(|e| Error::internal(format!("signing a console token: {e}")))
}

fn json_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn not_allowed(method: &Method, allow: &'static str) -> Response<Full<Bytes>> {
    let e = Error::MethodNotAllowed(format!("{method} is not allowed on this path"));
    let mut response = super::error(&e);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat21::auth::JwtVerifier;

    #[test]
    fn the_served_page_is_one_document_with_its_configuration() {
        let served = page(15675, true);
        for (link, _, content, _) in ASSETS {
            assert!(INDEX.contains(link), "index.html links {link}");
            assert!(!served.contains(link), "{link} is inlined");
            assert!(
                served.contains(content.trim()),
                "{link}'s file is in the page"
            );
            // An inlined file must not end its own element early.
            assert!(!content.contains("</script") && !content.contains("</style"));
        }
        assert!(INDEX.contains(CONFIG_SLOT));
        assert!(served.contains(
            r#"<script id="console-config" type="application/json">{"dev_tokens":true,"mqtt_ws_port":15675}</script>"#
        ));
        assert!(page(1, false).contains(r#"{"dev_tokens":false,"mqtt_ws_port":1}"#));
        // Nothing is fetched from anywhere: no external script, style or image.
        for external in ["src=\"http", "href=\"http", "src=\"//", "@import"] {
            assert!(!served.contains(external), "the page loads {external}");
        }
    }

    #[test]
    fn a_minted_token_is_a_user_token_the_api_accepts_for_an_hour() {
        let key = b"dev-key";
        let (user, app) = (
            Id::parse("u", "user 1").unwrap(),
            Id::parse("a", "app-1").unwrap(),
        );
        let now = jsonwebtoken::get_current_timestamp();
        let (token, exp) = mint(key, &user, &app, now).unwrap();
        assert_eq!(exp, now + TOKEN_TTL_SECS);
        let (caller, until) = JwtVerifier::hs256(key)
            .unwrap()
            .verify_until(&token)
            .unwrap();
        assert_eq!(caller.user_id, "user 1");
        assert_eq!(caller.app_id, "app-1");
        assert!(!caller.admin);
        assert_eq!(until, exp);
        assert!(
            JwtVerifier::hs256(b"another key")
                .unwrap()
                .verify(&token)
                .is_err()
        );
    }
}
