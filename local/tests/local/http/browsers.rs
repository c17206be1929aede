//! What browsers and tools fetch besides the API's answers: CORS (any origin, or a configured
//! list) and `/openapi.yaml`.

use crate::support::{APP, KEY, command, http, start, start_with, token};

#[test]
fn browsers_on_other_origins_may_call_the_api() {
    let server = start();
    let preflight = [
        ("Origin", "https://widget.example"),
        ("Access-Control-Request-Method", "POST"),
        (
            "Access-Control-Request-Headers",
            "authorization,content-type",
        ),
    ];
    let path = format!("/api/{APP}/messages");
    let response = http(server.port, "OPTIONS", &path, &preflight, b"");
    assert_eq!(response.status, 204, "{}", response.text());
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    let methods = response
        .header("access-control-allow-methods")
        .unwrap_or("");
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let headers = response
        .header("access-control-allow-headers")
        .unwrap_or("");
    assert!(headers.contains("authorization") && headers.contains("content-type"));
    assert_eq!(response.header("access-control-max-age"), Some("600"));
    // Ordinary answers (errors too) carry the origin header.
    let t1 = token("u1", APP, false);
    let answer = http(
        server.port,
        "GET",
        &format!("/api/{APP}/u1/conversations"),
        &[("Origin", "https://widget.example"), ("Authorization", &t1)],
        b"",
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("access-control-allow-origin"), Some("*"));
    let refused = http(
        server.port,
        "GET",
        &format!("/api/{APP}/u1/conversations"),
        &[("Origin", "https://widget.example")],
        b"",
    );
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("access-control-allow-origin"), Some("*"));

    // A configured list: listed origins are echoed, others get no CORS headers.
    let mut configured = command();
    configured.env("JWT_KEY", KEY).env(
        "CORS_ALLOW_ORIGINS",
        "https://app.example, http://localhost:4200",
    );
    let listed = start_with(configured);
    let from = |origin| {
        let headers = [("Origin", origin), ("Access-Control-Request-Method", "GET")];
        http(listed.port, "OPTIONS", &path, &headers, b"")
    };
    let ok = from("http://localhost:4200");
    assert_eq!(ok.status, 204);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("http://localhost:4200")
    );
    assert_eq!(ok.header("vary"), Some("Origin"));
    let other = from("https://evil.example");
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(other.header("access-control-allow-methods"), None);

    let mut bad = command();
    bad.env("JWT_KEY", KEY)
        .env("CORS_ALLOW_ORIGINS", "not an origin");
    let output = bad.output().expect("run chat21-local");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("CORS_ALLOW_ORIGINS"));
}

#[test]
fn the_openapi_document_is_served() {
    let server = start();
    let response = http(server.port, "GET", "/openapi.yaml", &[], b"");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/yaml"));
    assert!(
        response.text().starts_with("openapi: 3.1"),
        "{}",
        &response.text()[..40]
    );
}
