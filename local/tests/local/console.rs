//! The web console of the real binary over real HTTP: the page answers without a token, carries
//! the server's MQTT port and whether it mints tokens; the token route exists only on the
//! development key, mints user tokens the API accepts, and refuses what every route refuses.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::support::{APP, Response, command, http, start, start_with};

fn post(port: u16, path: &str, content_type: Option<&str>, body: &[u8]) -> Response {
    let headers: Vec<(&str, &str)> = content_type
        .map(|c| vec![("Content-Type", c)])
        .unwrap_or_default();
    http(port, "POST", path, &headers, body)
}

fn mint(port: u16, body: &Value) -> Response {
    post(
        port,
        "/console/token",
        Some("application/json"),
        body.to_string().as_bytes(),
    )
}

/// The one JSON error envelope, with `code`.
fn assert_refused(response: &Response, status: u16, code: &str, mentions: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{}",
        response.text()
    );
    let body = response.json();
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(mentions),
        "{message:?} should mention {mentions:?}"
    );
}

/// The page's injected configuration.
fn config(page: &str) -> Value {
    let open = r#"<script id="console-config" type="application/json">"#;
    let start = page.find(open).expect("the configuration slot") + open.len();
    let end = start + page[start..].find("</script>").expect("its end");
    serde_json::from_str(&page[start..end]).expect("JSON configuration")
}

#[test]
fn the_console_page_is_served_without_a_token_as_one_document() {
    let server = start();
    let page = http(server.port, "GET", "/console", &[], b"");
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let html = page.text();
    assert!(html.contains("<title>Chat21 console</title>"));
    assert_eq!(
        config(&html),
        json!({"mqtt_ws_port": server.ws_port, "dev_tokens": false})
    );
    // Its scripts and style are inside it: no other request is needed.
    assert!(!html.contains("<script src="), "an external script");
    assert!(
        !html.contains("rel=\"stylesheet\""),
        "an external style sheet"
    );
    assert!(
        html.contains("class MqttClient"),
        "the MQTT client is inlined"
    );
    // The ids docs/console.md lists for automation are there.
    for id in [
        "sign-in",
        "user-id",
        "app-id",
        "token",
        "api-url",
        "mqtt-url",
        "sign-in-button",
        "connection-status",
        "conversations",
        "archived-conversations",
        "timeline",
        "message-text",
        "send",
        "mark-read",
        "archive",
        "new-direct-user",
        "new-group-name",
        "new-group-members",
        "group-members",
        "add-member-id",
        "typing",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "no #{id}");
    }
    // Only GET, and nothing else lives under /console/.
    let posted = post(server.port, "/console", None, b"");
    assert_refused(&posted, 405, "method_not_allowed", "POST");
    assert_eq!(posted.header("allow"), Some("GET"));
    let other = http(server.port, "GET", "/console/other", &[], b"");
    assert_refused(&other, 404, "not_found", "no such route");
}

#[test]
fn with_a_real_jwt_key_there_is_no_token_route() {
    let server = start();
    let answer = mint(server.port, &json!({"user_id": "u1", "app_id": APP}));
    assert_refused(&answer, 404, "not_found", "no such route");
    let get = http(server.port, "GET", "/console/token", &[], b"");
    assert_refused(&get, 404, "not_found", "no such route");
}

#[test]
fn on_the_development_key_the_console_mints_user_tokens_for_an_hour() {
    let server = start_with(command());
    let page = http(server.port, "GET", "/console", &[], b"").text();
    assert_eq!(config(&page)["dev_tokens"], true);

    let answer = mint(
        server.port,
        &json!({"user_id": "console-user", "app_id": APP}),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["success"], true);
    assert_eq!(body["user_id"], "console-user");
    assert_eq!(body["app_id"], APP);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = body["exp"].as_u64().expect("exp");
    assert!(
        (now + 3590..=now + 3610).contains(&exp),
        "exp {exp}, now {now}"
    );
    let token = body["token"].as_str().expect("a token");

    // The API takes it for that user, and only that user: it is no admin token.
    let own = http(
        server.port,
        "GET",
        &format!("/api/{APP}/console-user/conversations"),
        &[("Authorization", token)],
        b"",
    );
    assert_eq!(own.status, 200, "{}", own.text());
    let other = http(
        server.port,
        "GET",
        &format!("/api/{APP}/someone-else/conversations"),
        &[("Authorization", token)],
        b"",
    );
    assert_refused(&other, 403, "forbidden", "");
    let tenant = http(
        server.port,
        "GET",
        "/api/another-app/console-user/conversations",
        &[("Authorization", token)],
        b"",
    );
    assert_refused(&tenant, 403, "forbidden", "");
}

#[test]
fn the_token_route_refuses_bad_ids_and_bodies() {
    let server = start_with(command());
    let long = "x".repeat(129);
    for (body, mentions) in [
        (json!({"app_id": APP}), "user_id"),
        (json!({"user_id": "u1"}), "app_id"),
        (json!({"user_id": "a/b", "app_id": APP}), "user_id"),
        (json!({"user_id": "", "app_id": APP}), "user_id"),
        (json!({"user_id": long, "app_id": APP}), "user_id"),
        (json!({"user_id": "u\u{0}1", "app_id": APP}), "user_id"),
        (json!({"user_id": "u+1", "app_id": APP}), "user_id"),
        (json!({"user_id": 7, "app_id": APP}), "user_id"),
        (json!({"user_id": "u1", "app_id": "a#b"}), "app_id"),
        (json!({"user_id": "u1", "app_id": null}), "app_id"),
        (json!(["u1", APP]), "JSON object"),
    ] {
        let answer = mint(server.port, &body);
        assert_refused(&answer, 400, "invalid_request", mentions);
        assert!(answer.json().get("token").is_none());
    }
    let not_json = post(
        server.port,
        "/console/token",
        Some("application/json"),
        b"{user_id",
    );
    assert_refused(&not_json, 400, "invalid_request", "not valid JSON");
    let empty = post(server.port, "/console/token", None, b"");
    assert_refused(&empty, 400, "invalid_request", "user_id");
    let typed = post(
        server.port,
        "/console/token",
        Some("text/plain"),
        br#"{"user_id": "u1", "app_id": "app1"}"#,
    );
    assert_refused(&typed, 415, "unsupported_media_type", "text/plain");
    let huge = json!({"user_id": "u1", "app_id": APP, "pad": "x".repeat(5000)});
    assert_refused(&mint(server.port, &huge), 413, "payload_too_large", "");
    let get = http(server.port, "GET", "/console/token", &[], b"");
    assert_refused(&get, 405, "method_not_allowed", "GET");
    assert_eq!(get.header("allow"), Some("POST"));
}
