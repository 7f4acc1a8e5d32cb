//! The OpenAPI document: what `/api/openapi.json` serves is the committed
//! `docs/openapi.json`, it is OpenAPI 3.1 with every reference resolved, and
//! every operation it lists is one the router serves.

use std::path::PathBuf;

use axum::http::{header, Method, StatusCode};
use serde_json::Value;

use crate::support::{request, TestApp};

/// Set to rewrite `docs/openapi.json` from the served document.
const UPDATE: &str = "SESAME_UPDATE_OPENAPI";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

async fn served() -> String {
    let app = TestApp::new().await;
    let response = app.get("/api/openapi.json", None).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.headers[header::CONTENT_TYPE], "application/json");
    response.text()
}

#[tokio::test]
async fn the_served_document_is_the_committed_docs_openapi_json() {
    let served = served().await;
    let path = committed_path();
    if std::env::var_os(UPDATE).is_some() {
        std::fs::write(&path, &served).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if served != committed {
        let line = served.lines().zip(committed.lines()).position(|(a, b)| a != b).map_or_else(
            || "one is a prefix of the other".to_owned(),
            |i| format!("first difference at line {}", i + 1),
        );
        panic!(
            "docs/openapi.json is not the document the server serves ({line}); \
             regenerate it with `{UPDATE}=1 cargo test -p sesame-server --test it openapi` and commit it"
        );
    }
}

/// Every `$ref` in `value`.
fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(target)) => out.push(target.clone()),
                    _ => references(item, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_every_reference_resolved_and_distinct_operation_ids() {
    let doc: Value = serde_json::from_str(&served().await).expect("the document is JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "{}", doc["openapi"]);
    let mut targets = Vec::new();
    references(&doc, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        let pointer = target.strip_prefix('#').unwrap_or_else(|| panic!("{target} points outside the document"));
        assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
    }
    // Every scheme an operation asks for is defined, and no two operations
    // share an id.
    let mut ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no id"));
            assert!(ids.insert(id.to_owned()), "{method} {path} repeats the operation id {id}");
            for requirement in operation["security"].as_array().into_iter().flatten() {
                for scheme in requirement.as_object().expect("a requirement").keys() {
                    assert!(
                        doc["components"]["securitySchemes"][scheme].is_object(),
                        "{method} {path} names the undefined security scheme {scheme}"
                    );
                }
            }
        }
    }
}

/// A value for a path parameter: an id of the right shape, which names
/// nothing.
fn placeholder(name: &str) -> &'static str {
    match name {
        "id" | "cid" => "0123456789abcdef0123456789abcdef",
        _ => "nobody",
    }
}

/// `path` with each `{parameter}` replaced by `value(parameter)`.
fn fill(path: &str, value: impl Fn(&str) -> &'static str) -> String {
    let mut uri = path.to_owned();
    while let Some(start) = uri.find('{') {
        let end = uri[start..].find('}').expect("a closed parameter") + start;
        let filled = value(&uri[start + 1..end]);
        uri.replace_range(start..=end, filled);
    }
    uri
}

/// Every operation of the document, as `(path, method, operation)`.
fn operations(doc: &Value) -> Vec<(String, Method, Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let method: Method = method.to_uppercase().parse().expect("an HTTP method");
            all.push((path.clone(), method, operation.clone()));
        }
    }
    all
}

#[tokio::test]
async fn every_documented_operation_is_served_by_the_router() {
    let doc: Value = serde_json::from_str(&served().await).expect("the document is JSON");
    let app = TestApp::new().await;
    let mut checked = 0;
    for (path, method, _) in operations(&doc) {
        let uri = fill(&path, placeholder);
        let response = app.send(request(method.clone(), &uri, None, None)).await;
        // The router's own answers for what it does not serve; every
        // handler answers with a code of its own.
        let unrouted = matches!(response.status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED)
            && response.json()["error"]
                .as_str()
                .is_some_and(|code| ["not_found", "method_not_allowed"].contains(&code));
        assert!(!unrouted, "{method} {uri} is documented but not routed: {}", response.text());
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} operations documented");
}

/// Schemathesis sends only well-formed percent-encoding; a path segment
/// that does not decode must still get an answer the document lists.
#[tokio::test]
async fn a_path_that_does_not_decode_gets_a_documented_answer() {
    let doc: Value = serde_json::from_str(&served().await).expect("the document is JSON");
    let app = TestApp::new().await;
    for (path, method, operation) in operations(&doc).into_iter().filter(|(path, ..)| path.contains('{')) {
        let uri = fill(&path, |_| "%FF");
        let mut builder = axum::http::Request::builder().method(method.clone()).uri(&uri);
        // Past the admin API's token check, to the path itself.
        builder = builder.header(header::AUTHORIZATION, "Bearer test-admin-token-0123456789");
        let response = app.send(builder.body(axum::body::Body::empty()).expect("request")).await;
        let status = response.status.as_u16().to_string();
        assert!(
            operation["responses"].get(&status).is_some(),
            "{method} {uri} answered {status}, which the document does not list: {}",
            response.text()
        );
    }
}
