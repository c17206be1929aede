//! Tokens: every invalid token is 401 on every route, every accepted form works, tenants are enforced.

use super::*;

#[tokio::test]
async fn invalid_tokens_are_401() {
    let w = world().await;
    let mut cases = vec![
        case("no token", "POST", SEND, None, bytes(send_body()), 401),
        case(
            "no token on a read",
            "GET",
            "/api/app1/u1/conversations",
            None,
            None,
            401,
        ),
        case(
            "a bad token in ?token=",
            "GET",
            "/api/app1/u1/conversations?token=garbage",
            None,
            None,
            401,
        ),
        case(
            "an empty ?jwt=",
            "GET",
            "/api/app1/u1/conversations?jwt=",
            None,
            None,
            401,
        ),
    ];
    for (why, t) in invalid_tokens() {
        cases.push(case(
            format!("send, token {why}"),
            "POST",
            SEND,
            Some(t.clone()),
            bytes(send_body()),
            401,
        ));
        cases.push(case(
            format!("list, token {why}"),
            "GET",
            "/api/app1/u1/conversations",
            Some(t.clone()),
            None,
            401,
        ));
        cases.push(case(
            format!("create group, token {why}"),
            "POST",
            GROUPS,
            Some(t),
            bytes(json!({"group_name": "X", "group_members": {"u2": 1}})),
            401,
        ));
    }
    w.refuse_all(&cases).await;
}

#[tokio::test]
async fn every_token_form_is_accepted() {
    let w = world().await;
    let t = token("u1");
    for form in [
        t.clone(),
        format!("Bearer {t}"),
        format!("bearer {t}"),
        format!("JWT {t}"),
        format!("  {t}  "),
    ] {
        let answer = w.ok("POST", SEND, &form, Some(send_body())).await;
        assert_eq!(answer["message"]["sender"], json!("u1"), "{form}");
    }
    for name in ["token", "jwt", "JWT"] {
        let path = format!("/api/app1/u1/conversations?{name}={t}");
        let (status, body) = w.call("GET", &path, None, None).await;
        assert_eq!(status, 200, "?{name}=: {body}");
        assert_eq!(body["success"], json!(true));
        assert!(!body["result"].as_array().unwrap().is_empty(), "{body}");
        let path = format!("{SEND}?{name}={t}");
        let (status, body) = w
            .call(
                "POST",
                &path,
                None,
                Some(send_body().to_string().as_bytes()),
            )
            .await;
        assert_eq!(status, 200, "send with ?{name}=: {body}");
        assert_eq!(body["message"]["sender"], json!("u1"));
    }
    // Tiledesk's extra claims are ignored.
    let tiledesk = sign(json!({
        "sub": "u1", "app_id": APP, "exp": in_an_hour(), "aud": ["rabbitmq", "u1"],
        "scope": ["rabbitmq.read:*"], "kid": "k", "jti": "j", "client_id": "c",
    }));
    w.ok("GET", "/api/app1/u1/conversations", &tiledesk, None)
        .await;
}

/// Every authenticated route, with a body that u1 (the owner of `group-team`) may send, so
/// that with the right token each succeeds.
fn every_route() -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("POST", SEND.to_string(), Some(send_body())),
        ("GET", "/api/app1/u1/conversations".into(), None),
        ("GET", "/api/app1/u1/conversations/archived".into(), None),
        ("GET", "/api/app1/u1/archived_conversations".into(), None),
        ("GET", "/api/app1/u1/conversations/u2".into(), None),
        ("GET", "/api/app1/u1/archived_conversations/u2".into(), None),
        ("GET", "/api/app1/u1/conversations/u2/messages".into(), None),
        ("DELETE", "/api/app1/conversations/u2".into(), None),
        ("POST", "/api/app1/u1/conversations/u2/read".into(), None),
        (
            "POST",
            GROUPS.into(),
            Some(json!({"group_name": "New", "group_members": {"u3": 1}})),
        ),
        ("GET", TEAM_PATH.into(), None),
        (
            "PUT",
            TEAM_PATH.into(),
            Some(json!({"group_name": "Renamed"})),
        ),
        (
            "PUT",
            format!("{TEAM_PATH}/attributes"),
            Some(json!({"attributes": {"x": 1}})),
        ),
        (
            "POST",
            format!("{TEAM_PATH}/members"),
            Some(json!({"member_id": "u3"})),
        ),
        ("DELETE", format!("{TEAM_PATH}/members/u2"), None),
        (
            "PUT",
            format!("{TEAM_PATH}/members"),
            Some(json!({"members": {"u1": 1, "u3": 1}})),
        ),
    ]
}

#[tokio::test]
async fn every_route_needs_a_token_of_the_paths_tenant() {
    for (method, path, body) in every_route() {
        let w = world().await;
        let body = body.map(|b| b.to_string().into_bytes());
        let expired = sign(json!({"sub": "u1", "app_id": APP,
                                  "exp": get_current_timestamp() - 3600}));
        let cases = [
            case("no token", method, &path, None, body.clone(), 401),
            case(
                "an expired token",
                method,
                &path,
                Some(expired),
                body.clone(),
                401,
            ),
            case(
                "alg none",
                method,
                &path,
                Some(unsigned(
                    json!({"sub": "u1", "app_id": APP, "exp": in_an_hour()}),
                )),
                body.clone(),
                401,
            ),
            case(
                "a valid token of another tenant",
                method,
                &path,
                Some(token_for("u1", "app2", false)),
                body.clone(),
                403,
            ),
            case(
                "an admin of another tenant",
                method,
                &path,
                Some(token_for("boss", "app2", true)),
                body.clone(),
                403,
            ),
            case(
                "a token of this tenant on another tenant's path",
                method,
                path.replacen("/api/app1/", "/api/app2/", 1),
                Some(token("u1")),
                body.clone(),
                403,
            ),
        ];
        w.refuse_all(&cases).await;
        // The control: the same call with the right token succeeds.
        let (status, answer) = w
            .call(method, &path, Some(&token("u1")), body.as_deref())
            .await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} with u1's token: {status} {answer}"
        );
        assert_eq!(answer["success"], json!(true), "{method} {path}");
    }
}
