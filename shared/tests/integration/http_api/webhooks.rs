//! The webhook routes (admins only): every refusal with its status and the envelope, nothing
//! changed by any of them; the success shapes; tenants kept apart.

use super::*;
use chat21::ops::webhooks::{AllowedHosts, MAX_WEBHOOKS};

const HOOKS: &str = "/api/app1/webhooks";
const HOOK: &str = "/api/app1/webhooks/w1";
const URL: &str = "https://hooks.example.com/chat21";

fn boss() -> String {
    token_for("boss", APP, true)
}

fn put_body() -> Value {
    json!({"url": URL, "events": ["message-sent"]})
}

/// The usual world, and a webhook `w1` the admin registered.
async fn with_hook() -> World {
    let w = world().await;
    w.ok("PUT", HOOK, &boss(), Some(put_body())).await;
    w
}

/// Every webhook route, with a body that succeeds for an admin of app1.
fn routes() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("GET", HOOKS, None),
        ("GET", HOOK, None),
        ("PUT", HOOK, Some(put_body())),
        ("DELETE", HOOK, None),
    ]
}

#[tokio::test]
async fn webhook_routes_are_for_admins_of_the_paths_tenant() {
    for (method, path, body) in routes() {
        let w = with_hook().await;
        let body = body.map(|b| b.to_string().into_bytes());
        let expired = sign(
            json!({"sub": "boss", "app_id": APP, "tiledesk_api_roles": "admin",
                                  "exp": get_current_timestamp() - 3600}),
        );
        let cases = [
            case("no token", method, path, None, body.clone(), 401),
            case(
                "an expired admin token",
                method,
                path,
                Some(expired),
                body.clone(),
                401,
            ),
            case(
                "alg none",
                method,
                path,
                Some(unsigned(json!({"sub": "boss", "app_id": APP,
                                     "tiledesk_api_roles": "admin", "exp": in_an_hour()}))),
                body.clone(),
                401,
            ),
            case(
                "a user of the tenant",
                method,
                path,
                Some(token("u1")),
                body.clone(),
                403,
            ),
            case(
                "a user with another role",
                method,
                path,
                Some(sign(
                    json!({"sub": "u1", "app_id": APP, "exp": in_an_hour(),
                                 "tiledesk_api_roles": "agent"}),
                )),
                body.clone(),
                403,
            ),
            case(
                "an admin of another tenant",
                method,
                path,
                Some(token_for("boss", "app2", true)),
                body.clone(),
                403,
            ),
            case(
                "an admin of this tenant on another tenant's path",
                method,
                path.replacen("/api/app1/", "/api/app2/", 1),
                Some(boss()),
                body.clone(),
                403,
            ),
        ];
        w.refuse_all(&cases).await;
        // The control: the admin's call succeeds.
        let (status, answer) = w.call(method, path, Some(&boss()), body.as_deref()).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
        assert_eq!(answer["success"], json!(true));
    }
}

#[tokio::test]
async fn put_webhook_refuses_bad_bodies() {
    let w = with_hook().await;
    let b = boss();
    let put = |what: &str, body: Option<Vec<u8>>, status: u16| {
        case(
            what,
            "PUT",
            "/api/app1/webhooks/w2",
            Some(b.clone()),
            body,
            status,
        )
    };
    let long_url = format!("https://hooks.example.com/{}", "a".repeat(2048));
    let mut cases = vec![
        put("no body", None, 400),
        put("not JSON", raw("{"), 400),
        put("whitespace only", raw("  "), 400),
        put("an array", bytes(json!([URL])), 400),
        put("no url", bytes(json!({"events": ["message-sent"]})), 400),
        put("url null", bytes(json!({"url": null})), 400),
        put("url a number", bytes(json!({"url": 7})), 400),
        put(
            "events an object",
            bytes(with(put_body(), "events", json!({"a": 1}))),
            400,
        ),
        put(
            "events a string",
            bytes(with(put_body(), "events", json!("message-sent"))),
            400,
        ),
        put(
            "events empty",
            bytes(with(put_body(), "events", json!([]))),
            400,
        ),
        put(
            "an unknown event type",
            bytes(with(put_body(), "events", json!(["message-sent", "nope"]))),
            400,
        ),
        put(
            "an event type not a string",
            bytes(with(put_body(), "events", json!([1]))),
            400,
        ),
        put(
            "a secret too short",
            bytes(with(put_body(), "secret", json!("short"))),
            400,
        ),
        put(
            "a secret with spaces",
            bytes(with(
                put_body(),
                "secret",
                json!("a secret with spaces in it"),
            )),
            400,
        ),
        put(
            "whsec_ not base64",
            bytes(with(
                put_body(),
                "secret",
                json!("whsec_!!!!!!!!!!!!!!!!!!!!"),
            )),
            400,
        ),
        put(
            "whsec_ of 5 bytes",
            bytes(with(put_body(), "secret", json!("whsec_aGVsbG8="))),
            400,
        ),
        put(
            "a secret too long",
            bytes(with(put_body(), "secret", json!("s".repeat(257)))),
            400,
        ),
        put(
            "a secret not a string",
            bytes(with(put_body(), "secret", json!(12345678901234567u64))),
            400,
        ),
        put(
            "a body over 256 KiB",
            bytes(with(put_body(), "pad", json!("x".repeat(300 * 1024)))),
            413,
        ),
    ];
    for (why, url) in [
        ("empty", ""),
        ("no scheme", "hooks.example.com/x"),
        ("ftp", "ftp://hooks.example.com/x"),
        ("file", "file:///etc/passwd"),
        ("credentials", "https://user:pass@hooks.example.com/x"),
        ("a user name", "https://user@hooks.example.com/x"),
        ("a fragment", "https://hooks.example.com/x#frag"),
        ("a space", "https://hooks.example.com/a b"),
        ("a newline", "https://hooks.example.com/a\n"),
        ("no host", "https:///x"),
        ("relative", "/x"),
        ("over 2048 characters", long_url.as_str()),
    ] {
        cases.push(put(
            &format!("a url with {why}"),
            bytes(with(put_body(), "url", json!(url))),
            400,
        ));
    }
    for (why, encoded) in [
        ("#", "a%23b"),
        (".", "a.b"),
        ("*", "a%2Ab"),
        ("129 characters", &"x".repeat(129)),
    ] {
        for method in ["GET", "PUT", "DELETE"] {
            cases.push(case(
                format!("{method} a webhook id with {why}"),
                method,
                format!("/api/app1/webhooks/{encoded}"),
                Some(b.clone()),
                (method == "PUT").then(|| put_body().to_string().into_bytes()),
                400,
            ));
        }
    }
    w.refuse_all(&cases).await;

    // Not declared as JSON.
    let headers = [
        ("authorization", b.as_str()),
        ("content-type", "text/plain"),
    ];
    let body = put_body().to_string();
    let response = crate::common::call_raw(
        &w.api,
        None,
        "PUT",
        "/api/app1/webhooks/w2",
        &headers,
        Some(body.as_bytes()),
    );
    w.refused_raw("put a webhook as text/plain", 415, response)
        .await;
}

#[tokio::test]
async fn unknown_webhooks_are_404_and_tenants_are_apart() {
    let w = with_hook().await;
    let b = boss();
    let cases = [
        case(
            "get an unknown webhook",
            "GET",
            "/api/app1/webhooks/nope",
            Some(b.clone()),
            None,
            404,
        ),
        case(
            "delete an unknown webhook",
            "DELETE",
            "/api/app1/webhooks/nope",
            Some(b.clone()),
            None,
            404,
        ),
        case(
            "another tenant's webhook, by its admin",
            "GET",
            "/api/app2/webhooks/w1",
            Some(token_for("boss", "app2", true)),
            None,
            404,
        ),
        case(
            "delete another tenant's webhook, by its admin",
            "DELETE",
            "/api/app2/webhooks/w1",
            Some(token_for("boss", "app2", true)),
            None,
            404,
        ),
    ];
    w.refuse_all(&cases).await;
    let theirs = w
        .ok(
            "GET",
            "/api/app2/webhooks",
            &token_for("boss", "app2", true),
            None,
        )
        .await;
    assert_eq!(theirs["result"], json!([]));
}

#[tokio::test]
async fn at_most_20_webhooks_then_409() {
    let w = empty();
    let b = boss();
    for i in 0..MAX_WEBHOOKS {
        let (status, body) = w
            .call(
                "PUT",
                &format!("{HOOKS}/w{i:02}"),
                Some(&b),
                Some(put_body().to_string().as_bytes()),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    w.refused(&case(
        "a 21st webhook",
        "PUT",
        format!("{HOOKS}/one-more"),
        Some(b.clone()),
        bytes(put_body()),
        409,
    ))
    .await;
    // Replacing one is still fine, and a deletion makes room.
    let (status, _) = w
        .call(
            "PUT",
            &format!("{HOOKS}/w00"),
            Some(&b),
            Some(put_body().to_string().as_bytes()),
        )
        .await;
    assert_eq!(status, 200);
    w.ok("DELETE", &format!("{HOOKS}/w00"), &b, None).await;
    let (status, _) = w
        .call(
            "PUT",
            &format!("{HOOKS}/one-more"),
            Some(&b),
            Some(put_body().to_string().as_bytes()),
        )
        .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn hosts_outside_the_allow_list_are_400() {
    let h = crate::common::Harness::sqlite();
    let mut deps = h.deps.clone();
    deps.settings.webhook_hosts = AllowedHosts::parse("*.tiledesk.com, 127.0.0.1").unwrap();
    let w = World {
        api: api_on(deps),
        h,
    };
    let b = boss();
    let cases: Vec<Case> = [
        "https://hooks.example.com/x",
        "https://tiledesk.com/x",
        "http://localhost:8080/x",
        "http://169.254.169.254/latest/meta-data",
    ]
    .iter()
    .map(|url| {
        case(
            format!("a url at {url}"),
            "PUT",
            HOOK,
            Some(b.clone()),
            bytes(json!({"url": url})),
            400,
        )
    })
    .collect();
    w.refuse_all(&cases).await;
    for url in [
        "https://api.tiledesk.com/v3/webhook",
        "http://127.0.0.1:9/x",
    ] {
        w.ok("PUT", HOOK, &b, Some(json!({"url": url}))).await;
    }
}

#[tokio::test]
async fn webhooks_answer_what_they_store() {
    let w = world().await;
    let b = boss();
    let (status, created) = w
        .call(
            "PUT",
            HOOK,
            Some(&b),
            Some(json!({"url": URL}).to_string().as_bytes()),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let hook = &created["webhook"];
    assert_eq!(hook["id"], "w1");
    assert_eq!(hook["app_id"], APP);
    assert_eq!(hook["url"], URL);
    let every: Vec<&str> = chat21::model::EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect();
    assert_eq!(hook["events"], json!(every), "every type by default");
    let secret = hook["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    chat21::ops::webhooks::Secret::parse("secret", &secret).unwrap();
    assert_eq!(hook["created_at"], hook["updated_at"]);

    // Replaced: 200, the secret kept when none is given, the creation time kept.
    let (status, replaced) = w
        .call(
            "PUT",
            HOOK,
            Some(&b),
            Some(
                json!({"url": "https://other.example/x", "events": ["join-member", "join-member"]})
                    .to_string()
                    .as_bytes(),
            ),
        )
        .await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["webhook"]["secret"], secret.as_str());
    assert_eq!(replaced["webhook"]["events"], json!(["join-member"]));
    assert_eq!(replaced["webhook"]["created_at"], hook["created_at"]);
    // A given secret replaces it.
    let given = "a-secret-of-my-own-choosing";
    let again = w
        .ok("PUT", HOOK, &b, Some(json!({"url": URL, "secret": given})))
        .await;
    assert_eq!(again["webhook"]["secret"], given);

    let one = w.ok("GET", HOOK, &b, None).await;
    assert_eq!(one["result"], again["webhook"]);
    let list = w.ok("GET", HOOKS, &b, None).await;
    assert_eq!(list["result"], json!([again["webhook"]]));
    let deleted = w.ok("DELETE", HOOK, &b, None).await;
    assert_eq!(deleted, json!({"success": true}));
    assert_eq!(w.ok("GET", HOOKS, &b, None).await["result"], json!([]));
}

/// The snapshot every refusal is checked against sees a webhook change.
#[tokio::test]
async fn the_snapshot_sees_webhooks() {
    let w = world().await;
    let before = snapshot(&w.h).await;
    w.ok("PUT", HOOK, &boss(), Some(put_body())).await;
    assert_ne!(before, snapshot(&w.h).await);
}
