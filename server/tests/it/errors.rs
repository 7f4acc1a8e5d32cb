//! Errors the router makes on its own (an unknown route, a wrong method) are
//! JSON under the APIs and readable pages elsewhere, like every other error.

use axum::http::{header, Method, StatusCode};

use crate::support::{request, TestApp};

#[tokio::test]
async fn unknown_api_routes_answer_json_not_found() {
    let app = TestApp::new().await;
    for uri in ["/api/nothing", "/api/challenges/abc/nothing", "/admin/api/nothing", "/.well-known/nothing"] {
        app.get(uri, None).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn wrong_methods_on_api_routes_answer_json_and_name_the_allowed_ones() {
    let app = TestApp::new().await;
    let cases = [
        (Method::GET, "/api/authenticator/context"),
        (Method::DELETE, "/api/challenges/0123456789abcdef0123456789abcdef"),
        (Method::PUT, "/admin/api/services"),
        (Method::POST, "/.well-known/sesame"),
    ];
    for (method, uri) in cases {
        let reply = app.send(request(method.clone(), uri, None, None)).await;
        reply.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        assert!(reply.headers.contains_key(header::ALLOW), "{method} {uri}: {:?}", reply.headers);
    }
}

/// Every JSON endpoint the OpenAPI document lists, sent each kind of
/// malformed body, answers with Sesame's own sentence: which member is
/// wrong and why, and nothing of how the server is built (no framework
/// text, no Rust type, no SQL).
#[tokio::test]
async fn every_json_endpoint_explains_a_malformed_body_without_internals() {
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    // The recovery-link endpoint looks the account up before its body.
    crate::enroll::register(&app, &service, "alice").await;
    let document: serde_json::Value = serde_json::from_str(sesame_server::openapi::document()).expect("the document");
    let mut endpoints = Vec::new();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            if operation["requestBody"]["content"].get("application/json").is_some() {
                let uri = path.replace("{id}", &service.to_string()).replace("{name}", "alice");
                endpoints.push((method.to_uppercase(), uri));
            }
        }
    }
    assert!(endpoints.len() >= 10, "{endpoints:?}");
    // Each passkey ceremony's endpoints are among them, but the sign-in's
    // start, which reads no body (checked below).
    let passkeys = format!("/api/services/{service}/passkeys");
    for step in ["sign-in/finish", "register/start", "register/finish", "add/start", "add/finish"] {
        let endpoint = ("POST".to_owned(), format!("{passkeys}/{step}"));
        assert!(endpoints.contains(&endpoint), "{step} is missing: {endpoints:?}");
    }
    let sign_in_start = &document["paths"]["/api/services/{id}/passkeys/sign-in/start"]["post"];
    assert!(sign_in_start.is_object() && sign_in_start.get("requestBody").is_none(), "{sign_in_start}");
    let bodies: [(&[u8], &str); 5] = [
        (b"{not json", "invalid_json"),
        (b"[]", "invalid_json"),
        (b"\"a string\"", "invalid_json"),
        (br#"{"token": 5, "name": 5, "number_matching": "yes", "ttl_secs": "x", "redirect_uris": 5}"#, "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
    ];
    const FORBIDDEN: [&str; 11] = [
        "Failed to",
        "deserialize",
        "struct",
        "target type",
        "axum",
        "serde",
        "sqlx",
        "SELECT",
        "::",
        "Request",
        "Json",
    ];
    for (method, uri) in &endpoints {
        for (body, code) in bodies {
            let mut sent = request(method.parse().expect("a method"), uri, None, Some(body.to_vec()));
            let bearer = "Bearer test-admin-token-0123456789".parse().expect("header value");
            sent.headers_mut().insert(header::AUTHORIZATION, bearer);
            let reply = app.send(sent).await;
            reply.assert_error(StatusCode::BAD_REQUEST, code);
            let message = reply.json()["message"].as_str().expect("a message").to_owned();
            for fragment in FORBIDDEN {
                assert!(!message.contains(fragment), "{method} {uri} {:?}: {message}", String::from_utf8_lossy(body));
            }
        }
    }
    // The passkey sign-in's start ignores a body, malformed or not: it
    // starts the ceremony all the same.
    sqlx::query("UPDATE service SET key_kinds = 'both' WHERE id = $1")
        .bind(service.to_string())
        .execute(&app.sql)
        .await
        .expect("take passkeys");
    for (body, _) in bodies {
        let reply =
            app.send(request(Method::POST, &format!("{passkeys}/sign-in/start"), None, Some(body.to_vec()))).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}: {}", String::from_utf8_lossy(body), reply.text());
        assert!(reply.json()["ceremony"].is_string(), "{}", reply.text());
    }
    // What serde says stays: which member, and what it should be.
    let reply = app.post_json("/api/authenticator/login", &serde_json::json!([])).await;
    assert!(reply.json()["message"].as_str().expect("a message").contains("a JSON object"), "{}", reply.text());
    let reply = app.post_json("/api/authenticator/login", &serde_json::json!({"token": 5})).await;
    let message = reply.json()["message"].as_str().expect("a message").to_owned();
    assert!(message.contains("token") && message.contains("expected a string"), "{message}");
}

#[tokio::test]
async fn unknown_pages_and_wrong_methods_on_pages_answer_html() {
    let app = TestApp::new().await;
    let missing = app.get("/nothing/here", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(missing.text().contains("No such page") && missing.text().contains("not_found"), "{}", missing.text());

    let wrong = app.send(request(Method::GET, "/admin/signin", None, None)).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(wrong.text().contains("method_not_allowed"), "{}", wrong.text());
}

#[tokio::test]
async fn api_errors_made_by_handlers_keep_their_own_codes() {
    let app = TestApp::new().await;
    app.get("/api/challenges/0123456789abcdef0123456789abcdef", None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "binding_required");
    app.post("/api/services/0123456789abcdef0123456789abcdef/challenges", None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_service");
}

#[tokio::test]
async fn a_declared_oversize_body_is_refused_in_the_callers_format() {
    let app = TestApp::new().await;
    let oversize = |uri: &str| {
        axum::http::Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_LENGTH, "17000")
            .body(axum::body::Body::from(vec![b' '; 17000]))
            .expect("request")
    };
    app.send(oversize("/api/authenticator/context"))
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    let page = app.send(oversize("/admin/signin")).await;
    assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(page.text().contains("body_too_large"), "{}", page.text());
    assert_eq!(page.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
}

/// Text with a NUL character, which PostgreSQL cannot hold, is `invalid_text`
/// on both databases: never a database error. The audit log's filters were
/// where a fuzzer found it; the refusal sits under every statement.
#[tokio::test]
async fn text_with_a_nul_character_is_a_bad_request_on_both_databases() {
    crate::support::each_backend(|app| async move {
        let bearer = "Bearer test-admin-token-0123456789";
        for filter in ["action=key%00removed", "actor=token%00", "service=U%C2%A3%00m"] {
            let mut get = request(Method::GET, &format!("/admin/api/audit?{filter}"), None, None);
            get.headers_mut().insert(header::AUTHORIZATION, bearer.parse().expect("header value"));
            app.send(get).await.assert_error(StatusCode::BAD_REQUEST, "invalid_text");
        }
        // Without one, the same filters answer an empty list.
        let mut get = request(Method::GET, "/admin/api/audit?action=key_removed&actor=token", None, None);
        get.headers_mut().insert(header::AUTHORIZATION, bearer.parse().expect("header value"));
        let listed = app.send(get).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    })
    .await;
}
