//! What any route answers to what it cannot serve: the JSON error envelope for every refusal
//! (also for requests hyper cannot parse), `Allow` on 405.

use serde_json::json;

use crate::support::{
    APP, Response, assert_error, direct, http, now_secs, raw, signed, start, token,
};

#[test]
fn errors_are_json_envelopes_over_the_wire() {
    let server = start();
    let t1 = token("u1", APP, false);
    let json_type = [
        ("Authorization", t1.as_str()),
        ("Content-Type", "application/json"),
    ];
    let port = server.port;

    let banner = http(port, "GET", "/", &[], b"");
    assert_eq!(banner.status, 200);
    assert!(
        banner
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        banner.headers
    );
    assert!(
        banner.text().starts_with("Chat21 HTTP API"),
        "{}",
        banner.text()
    );

    let cases: Vec<(&str, Response, u16, &str)> = vec![
        (
            "unknown path",
            http(port, "GET", "/nope/at/all", &[], b""),
            404,
            "not_found",
        ),
        (
            "unknown api path",
            server.call("GET", &format!("/api/{APP}/u1/unknown"), Some(&t1), None),
            404,
            "not_found",
        ),
        (
            "wrong method",
            server.call("GET", &format!("/api/{APP}/messages"), Some(&t1), None),
            405,
            "method_not_allowed",
        ),
        (
            "missing token",
            server.call("GET", &format!("/api/{APP}/u1/conversations"), None, None),
            401,
            "unauthorized",
        ),
        (
            "token signed with another key",
            server.call(
                "GET",
                &format!("/api/{APP}/u1/conversations"),
                Some(&signed(
                    &json!({"sub": "u1", "app_id": APP, "exp": now_secs() + 3600}),
                    jsonwebtoken::Algorithm::HS256,
                    "another key",
                )),
                None,
            ),
            401,
            "unauthorized",
        ),
        (
            "other tenant's token",
            server.call(
                "GET",
                &format!("/api/{APP}/u1/conversations"),
                Some(&token("u1", "app2", false)),
                None,
            ),
            403,
            "forbidden",
        ),
        (
            "someone else's conversations",
            server.call("GET", &format!("/api/{APP}/u2/conversations"), Some(&t1), None),
            403,
            "forbidden",
        ),
        (
            "malformed JSON",
            http(
                port,
                "POST",
                &format!("/api/{APP}/messages"),
                &json_type,
                b"{\"recipient_id\": ",
            ),
            400,
            "invalid_request",
        ),
        (
            "missing required field",
            server.call(
                "POST",
                &format!("/api/{APP}/messages"),
                Some(&t1),
                Some(json!({"recipient_id": "u2"})),
            ),
            400,
            "invalid_request",
        ),
        (
            "body over 256 KiB",
            http(
                port,
                "POST",
                &format!("/api/{APP}/messages"),
                &json_type,
                format!(
                    "{{\"sender_fullname\":\"A\",\"recipient_id\":\"u2\",\"recipient_fullname\":\"B\",\"text\":\"{}\"}}",
                    "a".repeat(300 * 1024)
                )
                .as_bytes(),
            ),
            413,
            "payload_too_large",
        ),
        (
            "text/plain body",
            http(
                port,
                "POST",
                &format!("/api/{APP}/messages"),
                &[("Authorization", t1.as_str()), ("Content-Type", "text/plain")],
                direct("u2", "hi").to_string().as_bytes(),
            ),
            415,
            "unsupported_media_type",
        ),
    ];
    for (name, response, status, code) in cases {
        assert_eq!(response.status, status, "{name}: {}", response.text());
        assert_error(&response, status);
        assert_eq!(response.json()["code"], code, "{name}");
    }
    // Still serving after all that.
    let list = server.conversations("u1", &t1);
    assert!(list.is_empty(), "{list:?}");
}

#[test]
fn requests_hyper_cannot_parse_get_json_errors_too() {
    let server = start();
    let port = server.port;
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(512 * 1024)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..200)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("a bad request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
        ("a bad header line", b"GET / HTTP/1.1\r\nno colon here\r\n\r\n".to_vec(), 400),
        ("an oversized header", huge_header.into_bytes(), 431),
        ("too many headers", many_headers.into_bytes(), 431),
        (
            "bad chunking",
            format!(
                "POST /api/{APP}/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZZ\r\n{{}}\r\n0\r\n\r\n"
            )
            .into_bytes(),
            400,
        ),
    ];
    for (what, request, status) in cases {
        let response = raw(port, &request);
        assert_eq!(response.status, status, "{what}: {}", response.text());
        assert!(
            response
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{what}: {:?}",
            response.headers
        );
        let body = response.json();
        assert_eq!(body["success"], json!(false), "{what}");
        assert!(
            body["code"].is_string() && body["message"].is_string(),
            "{what}: {body}"
        );
    }
    // The server is still serving.
    assert_eq!(http(port, "GET", "/", &[], b"").status, 200);
}

#[test]
fn a_method_the_path_lacks_is_405_with_allow() {
    let server = start();
    let response = http(
        server.port,
        "PATCH",
        &format!("/api/{APP}/groups/g1"),
        &[],
        b"",
    );
    assert_error(&response, 405);
    assert_eq!(response.header("allow"), Some("GET, PUT"));
}
