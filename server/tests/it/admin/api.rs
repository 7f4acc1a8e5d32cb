//! The admin JSON API: bearer token, JSON errors, cascades.

use super::*;

#[tokio::test]
async fn api_creates_a_service_with_id_name_and_login_url() {
    let h = harness().await;
    let body = h.create("Example").await;
    let id = body["id"].as_str().expect("id");
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{id}");
    assert_eq!(body["name"], "Example");
    assert_eq!(body["login_url"], format!("{ORIGIN}/services/{id}"));
    // New services ask for the login page's number (PROTOCOL.md §14).
    assert_eq!(body["number_matching"], true);
    // Sesame keys only until an admin turns passkeys on.
    assert_eq!(body["key_kinds"], "sesame");
    assert_eq!(body["require_user_verification"], false);
    assert_eq!(body.as_object().expect("object").len(), 6);
}

#[tokio::test]
async fn api_refuses_a_taken_name_with_409() {
    let h = harness().await;
    h.create("Example").await;
    let reply = h.api(Method::POST, "/admin/api/services", Some(json!({"name": "Example"}))).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.error_code(), "service_exists");
    assert_eq!(h.count("SELECT COUNT(*) FROM service WHERE NOT builtin").await, 1);
}

#[tokio::test]
async fn api_refuses_invalid_names_with_400() {
    let h = harness().await;
    let too_long = "x".repeat(65);
    for name in ["", " padded", "padded ", "bell\u{7}", "new\nline", "bidi\u{202e}", too_long.as_str()] {
        let reply = h.api(Method::POST, "/admin/api/services", Some(json!({ "name": name }))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name:?}");
        assert_eq!(reply.error_code(), "invalid_service_name", "{name:?}");
        assert!(reply.json()["message"].as_str().is_some_and(|m| m.starts_with("the service name must")), "{name:?}");
    }
    assert_eq!(h.count("SELECT COUNT(*) FROM service WHERE NOT builtin").await, 0);
    // Markup and SQL characters are valid names; they are escaped, not refused.
    h.create("x'); DROP TABLE service; --").await;
    h.create(XSS).await;
    h.create(&"x".repeat(64)).await;
}

#[tokio::test]
async fn api_lists_services_in_creation_order() {
    let h = harness().await;
    let empty = h.api(Method::GET, "/admin/api/services", None).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.json(), json!([]));
    let b = h.create("Zeta").await;
    sqlx::query("UPDATE service SET created_at = created_at - 10").execute(&h.sql).await.expect("age");
    let a = h.create("Alpha").await;
    let list = h.api(Method::GET, "/admin/api/services", None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json(), json!([b, a]));
}

#[tokio::test]
async fn api_lists_accounts_with_rfc3339_times() {
    let h = harness().await;
    let service = h.create("Example").await;
    let id = service["id"].as_str().expect("id");
    h.add_account(id, "alice", START as i64, Some(START as i64 + 3661)).await;
    h.add_account(id, "bob", START as i64 + 60, None).await;
    let reply = h.api(Method::GET, &format!("/admin/api/services/{id}/accounts"), None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!([
            {"name": "alice", "created_at": "2026-01-01T00:00:00Z", "last_login_at": "2026-01-01T01:01:01Z"},
            {"name": "bob", "created_at": "2026-01-01T00:01:00Z", "last_login_at": null},
        ])
    );
}

/// `limit` and `offset` page the accounts, oldest first, and `Link` names
/// the next page until the last; without them every account comes back.
#[tokio::test]
async fn api_pages_accounts_with_limit_offset_and_a_next_link() {
    support::each_backend(|app| async move {
        let h = Harness::over(app);
        let id = h.create("Crowded").await["id"].as_str().expect("id").to_owned();
        for i in 0..5 {
            h.add_account(&id, &format!("user-{i}"), START as i64 + i, None).await;
        }
        let base = format!("/admin/api/services/{id}/accounts");
        let names = |reply: &Reply| -> Vec<String> {
            reply
                .json()
                .as_array()
                .expect("an array")
                .iter()
                .map(|a| a["name"].as_str().expect("name").to_owned())
                .collect()
        };
        let next = |reply: &Reply| reply.headers.get(header::LINK).map(|v| v.to_str().expect("ascii").to_owned());

        let all = h.api(Method::GET, &base, None).await;
        assert_eq!(names(&all), ["user-0", "user-1", "user-2", "user-3", "user-4"]);
        assert_eq!(next(&all), None);

        // Follow the links from the first page to the last.
        let mut uri = format!("{base}?limit=2");
        let mut pages = Vec::new();
        loop {
            let reply = h.api(Method::GET, &uri, None).await;
            assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.text);
            pages.push(names(&reply));
            let Some(link) = next(&reply) else { break };
            let target = link.strip_prefix('<').and_then(|l| l.strip_suffix(">; rel=\"next\"")).expect("a next link");
            uri = target.to_owned();
        }
        assert_eq!(pages, [vec!["user-0", "user-1"], vec!["user-2", "user-3"], vec!["user-4"]]);
        assert_eq!(uri, format!("{base}?limit=2&offset=4"));

        // A page that ends exactly at the last account names no next page.
        let exact = h.api(Method::GET, &format!("{base}?limit=5"), None).await;
        assert_eq!(names(&exact).len(), 5);
        assert_eq!(next(&exact), None);
        let past = h.api(Method::GET, &format!("{base}?limit=2&offset=9"), None).await;
        assert_eq!((past.status, past.json()), (StatusCode::OK, json!([])));

        for (query, code) in [
            ("limit=0", "invalid_limit"),
            ("limit=1001", "invalid_limit"),
            ("offset=-1", "invalid_offset"),
            ("limit=two", "invalid_query"),
            ("offset=99999999999999999999", "invalid_query"),
        ] {
            let refused = h.api(Method::GET, &format!("{base}?{query}"), None).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{query}: {}", refused.text);
            assert_eq!(refused.error_code(), code, "{query}");
        }
    })
    .await;
}

#[tokio::test]
async fn api_answers_unknown_service_for_missing_or_malformed_ids() {
    let h = harness().await;
    for id in ["0".repeat(32), "not-an-id".to_owned(), "AB".repeat(16)] {
        let reply = h.api(Method::GET, &format!("/admin/api/services/{id}/accounts"), None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(reply.error_code(), "unknown_service");
        let reply = h.api(Method::DELETE, &format!("/admin/api/services/{id}"), None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(reply.error_code(), "unknown_service");
    }
}

#[tokio::test]
async fn api_deletes_an_account_and_its_sessions() {
    let h = harness().await;
    let service = h.create("Example").await;
    let id = service["id"].as_str().expect("id");
    h.add_account(id, "alice", START as i64, None).await;
    h.add_account(id, "a/b c", START as i64, None).await;
    sqlx::query(
        "INSERT INTO session (id_hash, service_id, account, created_at, expires_at) VALUES ($1, $2, 'alice', 0, 1)",
    )
    .bind(vec![1u8; 32])
    .bind(id)
    .execute(&h.sql)
    .await
    .expect("insert session");
    let uri = format!("/admin/api/services/{id}/accounts/alice");
    let reply = h.api(Method::DELETE, &uri, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    assert_eq!(reply.text, "");
    assert_eq!(h.count("SELECT COUNT(*) FROM session").await, 0);
    let again = h.api(Method::DELETE, &uri, None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.error_code(), "unknown_account");
    // A name with a slash and a space arrives percent-encoded.
    let reply = h.api(Method::DELETE, &format!("/admin/api/services/{id}/accounts/a%2Fb%20c"), None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let list = h.api(Method::GET, &format!("/admin/api/services/{id}/accounts"), None).await;
    assert_eq!(list.json(), json!([]));
}

#[tokio::test]
async fn api_deletes_a_service_with_everything_it_owns() {
    let h = harness().await;
    let doomed = h.create("Doomed").await;
    let kept = h.create("Kept").await;
    let (doomed_id, kept_id) = (doomed["id"].as_str().expect("id"), kept["id"].as_str().expect("id"));
    h.add_account(doomed_id, "alice", START as i64, None).await;
    h.add_account(kept_id, "bob", START as i64, None).await;
    h.add_event(doomed_id, "login", Some("alice"), "ua", START as i64).await;
    h.add_event(kept_id, "login", Some("bob"), "ua", START as i64).await;

    let reply = h.api(Method::DELETE, &format!("/admin/api/services/{doomed_id}"), None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    assert_eq!(h.count("SELECT COUNT(*) FROM account").await, 1);
    assert_eq!(h.count("SELECT COUNT(*) FROM sign_in_event").await, 1);
    let accounts = h.api(Method::GET, &format!("/admin/api/services/{doomed_id}/accounts"), None).await;
    assert_eq!(accounts.status, StatusCode::NOT_FOUND);
    assert_eq!(accounts.error_code(), "unknown_service");
    let again = h.api(Method::DELETE, &format!("/admin/api/services/{doomed_id}"), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(h.api(Method::GET, "/admin/api/services", None).await.json(), json!([kept]));
}

#[tokio::test]
async fn api_lists_recent_events_newest_first() {
    let h = harness().await;
    let service = h.create("Example").await;
    let id = service["id"].as_str().expect("id");
    h.add_event(id, "register", Some("alice"), "Firefox", START as i64).await;
    h.add_event(id, "denied", None, "Chrome", START as i64 + 5).await;
    let reply = h.api(Method::GET, &format!("/admin/api/services/{id}/events"), None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!([
            {"kind": "denied", "account": null, "ip": "203.0.113.7", "user_agent": "Chrome", "at": "2026-01-01T00:00:05Z"},
            {"kind": "register", "account": "alice", "ip": "203.0.113.7", "user_agent": "Firefox", "at": "2026-01-01T00:00:00Z"},
        ])
    );
}

#[tokio::test]
async fn api_requires_the_admin_token() {
    let h = harness().await;
    let id = "0".repeat(32);
    let routes = [
        (Method::GET, "/admin/api/services".to_owned()),
        (Method::POST, "/admin/api/services".to_owned()),
        (Method::DELETE, format!("/admin/api/services/{id}")),
        (Method::GET, format!("/admin/api/services/{id}/accounts")),
        (Method::DELETE, format!("/admin/api/services/{id}/accounts/alice")),
        (Method::GET, format!("/admin/api/services/{id}/events")),
    ];
    for (method, uri) in routes {
        for token in [None, Some("wrong-token"), Some(""), Some(&TOKEN[1..])] {
            let reply = h.api_with(method.clone(), &uri, Some(json!({"name": "Sneaky"})), token).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {uri} {token:?}");
            assert_eq!(reply.error_code(), "unauthorized");
        }
    }
    // Basic auth with the right secret is still not the bearer scheme.
    let request = Request::get("/admin/api/services")
        .header(header::AUTHORIZATION, format!("Basic {TOKEN}"))
        .body(Body::empty())
        .expect("request");
    assert_eq!(h.send(request).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.count("SELECT COUNT(*) FROM service WHERE NOT builtin").await, 0);
}

#[tokio::test]
async fn api_rate_limits_wrong_tokens() {
    let h = harness_with(ORIGIN, 5).await;
    for _ in 0..5 {
        let reply = h.api_with(Method::GET, "/admin/api/services", None, Some("wrong")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let reply = h.api_with(Method::GET, "/admin/api/services", None, Some("wrong")).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.error_code(), "rate_limited");
    // The right token is never slowed down.
    assert_eq!(h.api(Method::GET, "/admin/api/services", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn api_refuses_malformed_bodies_with_json_errors() {
    let h = harness().await;
    let post = |content_type: &'static str, body: String| {
        Request::post("/admin/api/services")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .expect("request")
    };
    let reply = h.send(post("application/json", "{\"name\": ".to_owned())).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "invalid_json");
    let reply = h.send(post("application/json", "{\"nom\": \"x\"}".to_owned())).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "invalid_json");
    let reply = h.send(post("text/plain", "{\"name\": \"x\"}".to_owned())).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "unsupported_media_type");
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(20_000));
    let reply = h.send(post("application/json", huge)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.error_code(), "body_too_large");
    assert_eq!(h.count("SELECT COUNT(*) FROM service WHERE NOT builtin").await, 0);
}

#[tokio::test]
async fn api_works_the_same_on_every_database() {
    support::each_backend(|app| async move {
        let h = Harness::over(app);
        let origin = h.state.settings.origin.to_string();
        let service = h.create("Example").await;
        let id = service["id"].as_str().expect("id").to_owned();
        assert_eq!(service["login_url"], format!("{origin}/services/{id}"));
        let taken = h.api(Method::POST, "/admin/api/services", Some(json!({"name": "Example"}))).await;
        assert_eq!(taken.status, StatusCode::CONFLICT);
        assert_eq!(taken.error_code(), "service_exists");

        h.add_account(&id, "alice", START as i64, Some(START as i64 + 1)).await;
        h.add_event(&id, "login", Some("alice"), "ua", START as i64 + 1).await;
        let accounts = h.api(Method::GET, &format!("/admin/api/services/{id}/accounts"), None).await;
        assert_eq!(accounts.json()[0]["last_login_at"], "2026-01-01T00:00:01Z");
        let events = h.api(Method::GET, &format!("/admin/api/services/{id}/events"), None).await;
        assert_eq!(events.json()[0]["kind"], "login");

        // The built-in admin service and the demo service are made once.
        let config = Config::parse_from(["sesame-server", "--demo"]);
        sesame_server::admin::on_start(&h.state, &config).await.expect("first start");
        sesame_server::admin::on_start(&h.state, &config).await.expect("second start");
        assert_eq!(h.count("SELECT COUNT(*) FROM service WHERE builtin").await, 1);
        // Both were made in the same second, so the name breaks the tie.
        let names: Vec<Value> =
            h.api(Method::GET, "/admin/api/services", None).await.json().as_array().expect("list").to_vec();
        assert_eq!(names.iter().map(|s| s["name"].clone()).collect::<Vec<_>>(), [json!("Demo"), json!("Example")]);

        let (cookie, _) = h.sign_in().await;
        assert!(h.page("/admin", Some(&cookie)).await.text.contains("Demo"));
        let deleted = h.api(Method::DELETE, &format!("/admin/api/services/{id}"), None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        assert_eq!(h.count("SELECT COUNT(*) FROM account").await, 0);
        assert_eq!(h.count("SELECT COUNT(*) FROM sign_in_event").await, 0);
    })
    .await;
}
