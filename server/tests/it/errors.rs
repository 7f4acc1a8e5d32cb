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

/// A body of the wrong shape is told which member is wrong and why, and
/// nothing of how the server is built: no framework text, no Rust type.
#[tokio::test]
async fn json_of_the_wrong_shape_is_explained_without_the_servers_type_names() {
    let app = TestApp::new().await;
    let endpoints = [
        "/api/authenticator/context",
        "/api/authenticator/register",
        "/api/authenticator/login",
        "/api/authenticator/deny",
        "/api/authenticator/enroll",
        "/api/authenticator/rekey",
    ];
    for uri in endpoints {
        for (body, says) in [
            ("[]", "expected a JSON object"),
            ("\"token\"", "expected a JSON object"),
            (r#"{"token": 5}"#, "expected a string"),
            ("{}", "missing field `token`"),
        ] {
            let reply = app.send(request(Method::POST, uri, None, Some(body.as_bytes().to_vec()))).await;
            reply.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
            let message = reply.json()["message"].as_str().expect("a message").to_owned();
            assert!(message.contains(says), "{uri} {body}: {message}");
            for internal in ["Failed to deserialize", "struct", "Request", "target type"] {
                assert!(!message.contains(internal), "{uri} {body}: {message}");
            }
        }
    }
    // The admin API's bodies too.
    let mut create = request(Method::POST, "/admin/api/services", None, Some(br#"{"name": ["x"]}"#.to_vec()));
    let bearer = "Bearer test-admin-token-0123456789".parse().expect("header value");
    create.headers_mut().insert(header::AUTHORIZATION, bearer);
    let reply = app.send(create).await;
    reply.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    assert!(!reply.json()["message"].as_str().expect("a message").contains("Create"), "{}", reply.text());
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
