//! The HTTP API as API Gateway calls it: tokens signed with the test key, the route table
//! picking the route, the Lambda handler answering.

use chat21::ops::Deps;

use super::APP;

/// The key the HTTP-level tests sign their tokens with.
pub const KEY: &[u8] = b"test-key";

pub fn token_for(sub: &str, app: &str, admin: bool) -> String {
    let mut claims = serde_json::json!({
        "sub": sub,
        "app_id": app,
        "exp": jsonwebtoken::get_current_timestamp() + 3600,
    });
    if admin {
        claims["tiledesk_api_roles"] = "admin".into();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY),
    )
    .unwrap()
}

pub fn token(sub: &str) -> String {
    token_for(sub, APP, false)
}

pub fn api_on(deps: Deps) -> chat21::entry::http::Api {
    chat21::entry::http::Api {
        deps,
        verifier: chat21::auth::JwtVerifier::hs256(KEY).unwrap(),
    }
}

/// Calls the API as API Gateway would: the route table picks the route and path parameters,
/// the query string becomes query parameters. Returns the status and the JSON body.
pub async fn call(
    api: &chat21::entry::http::Api,
    method: &str,
    path_and_query: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, serde_json::Value) {
    let mut headers = Vec::new();
    if let Some(token) = token {
        headers.push(("authorization", token));
    }
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let (status, _, text) = call_raw(api, None, method, path_and_query, &headers, body).await;
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}

/// A request with exactly the given headers, and optionally a forced route (the banner
/// function also serves API Gateway's catch-all route). Returns the status, the
/// Content-Type and the body text.
pub async fn call_raw(
    api: &chat21::entry::http::Api,
    route: Option<chat21::routes::Route>,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> (u16, Option<String>, String) {
    use chat21::lambda_http::{Body, RequestExt};
    use chat21::routes::{self, Match};
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let (route, params) = match (route, routes::find(method, path)) {
        (Some(route), _) => (route, std::collections::HashMap::new()),
        (None, Match::Found(route, params)) => (route, params),
        (None, other) => panic!("{method} {path} is not routed: {other:?}"),
    };
    let mut builder = http::Request::builder().method(method).uri(path_and_query);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = body.map_or(Body::Empty, |b| Body::Binary(b.to_vec()));
    let query: chat21::lambda_http::aws_lambda_events::query_map::QueryMap = query.parse().unwrap();
    let request = builder
        .body(body)
        .unwrap()
        .with_path_parameters(params)
        .with_query_string_parameters(query);
    let response = chat21::entry::http::handle(api, route, request).await;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes: &[u8] = response.body().as_ref();
    (
        status,
        content_type,
        String::from_utf8_lossy(bytes).into_owned(),
    )
}
