//! `openapi.yaml` documents exactly the route table — every route (method, path, function)
//! and nothing else — with the limits the code enforces, so it cannot drift from the server.
//! (schemathesis then checks the server's answers against it: `scripts/schemathesis`.)

use std::collections::BTreeSet;
use std::path::Path;

use chat21::ids::MAX_ID_CHARS;
use chat21::input::MAX_PAGE;
use chat21::keys::MAX_TIMESTAMP;
use chat21::ops::groups::MAX_MEMBER_CHANGES;
use chat21::ops::messages::MAX_TEXT_BYTES;
use chat21::routes::ROUTES;
use serde_json::Value;

const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "options", "head"];

fn document() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi.yaml");
    let text = std::fs::read_to_string(&path).expect("read openapi.yaml");
    serde_norway::from_str(&text).expect("openapi.yaml is YAML")
}

/// Follows a local `$ref`.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling {reference}")),
            )
        }
        None => value,
    }
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut found = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                found.push((method.to_uppercase(), path.clone(), operation));
            }
        }
    }
    found
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let documented: BTreeSet<(String, String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, op)| {
            let function = op["x-function"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no x-function"));
            (method, path, function.to_string())
        })
        .collect();
    let routed: BTreeSet<(String, String, String)> = ROUTES
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.path.to_string(),
                r.route.function().to_string(),
            )
        })
        .collect();
    assert_eq!(documented, routed);
}

#[test]
fn every_operation_documents_its_refusals_in_the_one_envelope() {
    let doc = document();
    let envelope = resolve(&doc, &doc["components"]["schemas"]["Error"]);
    assert_eq!(
        envelope["required"],
        serde_json::json!(["success", "code", "message"])
    );
    for (method, path, op) in operations(&doc) {
        let responses = op["responses"].as_object().expect("responses");
        if path == "/" {
            assert!(
                op["security"].as_array().is_some_and(Vec::is_empty),
                "GET / needs no token"
            );
            continue;
        }
        for status in ["400", "401", "403", "404", "500", "503"] {
            let response = responses
                .get(status)
                .unwrap_or_else(|| panic!("{method} {path} does not document {status}"));
            let schema = &resolve(&doc, response)["content"]["application/json"]["schema"];
            let schema = resolve(&doc, schema);
            assert!(
                *schema == *envelope || schema.to_string().contains("#/components/schemas/Error\""),
                "{method} {path} {status} is not the error envelope: {schema}"
            );
        }
    }
}

#[test]
fn the_limits_are_the_codes() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["Id"]["maxLength"], MAX_ID_CHARS as u64);
    for forbidden in ['#', '/', '.', '*'] {
        assert!(
            schemas["Id"]["pattern"]
                .as_str()
                .unwrap()
                .contains(forbidden)
        );
    }
    assert_eq!(schemas["Timestamp"]["maximum"], MAX_TIMESTAMP);
    assert_eq!(schemas["MessageText"]["maxLength"], MAX_TEXT_BYTES as u64);
    let limit = resolve(&doc, &doc["components"]["parameters"]["Limit"]);
    assert_eq!(limit["schema"]["maximum"], MAX_PAGE as u64);
    let create = &schemas["CreateGroupRequest"]["properties"]["group_members"];
    assert_eq!(create["maxProperties"], MAX_MEMBER_CHANGES as u64);
}
