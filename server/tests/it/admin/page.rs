//! The admin web page: sign-in, CSRF on every form, escaping.

use super::*;

#[tokio::test]
async fn page_without_session_shows_the_sign_in_form() {
    let h = harness().await;
    let reply = h.page("/admin", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text.contains(r#"type="password""#), "{}", reply.text);
    assert!(reply.text.contains(r#"action="/admin/signin""#));
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    let cookie = reply.set_cookie("sesame_admin_csrf").expect("CSRF cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain-HTTP origin: {cookie}");
    // The hidden field repeats the cookie.
    assert!(cookie.starts_with(&format!("sesame_admin_csrf={};", hidden_csrf(&reply.text))));
}

#[tokio::test]
async fn page_sign_in_with_the_right_token_sets_the_session_cookie() {
    let h = harness_with("https://login.example.com", 0).await;
    let (pre_cookie, pre_csrf) = h.sign_in_form().await;
    let reply = h
        .post_form_from(
            "/admin/signin",
            Some(&pre_cookie),
            &[("csrf", &pre_csrf), ("token", TOKEN)],
            Some("https://login.example.com"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    // On HTTPS the cookie takes the `__Host-` prefix, which browsers keep
    // from being planted by a sibling subdomain or over plain HTTP.
    let cookie = reply.set_cookie("__Host-sesame_admin").expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/;", "Secure", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert_eq!(h.count("SELECT COUNT(*) FROM admin_session").await, 1);
    let stored: i64 = sqlx::query_scalar("SELECT expires_at - created_at FROM admin_session")
        .fetch_one(&h.sql)
        .await
        .expect("session row");
    assert_eq!(stored, 12 * 3600);
    let value = cookie.split(';').next().expect("name=value");
    let page = h.page("/admin", Some(value)).await;
    assert!(page.text.contains("New service"), "{}", page.text);
    assert!(page.text.contains(r#"action="/admin/signout""#));
}

#[tokio::test]
async fn page_sign_in_refuses_a_wrong_token() {
    let h = harness().await;
    let (pre_cookie, pre_csrf) = h.sign_in_form().await;
    let reply = h.post_form("/admin/signin", Some(&pre_cookie), &[("csrf", &pre_csrf), ("token", "guess")]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.text.contains("That is not the admin token."), "{}", reply.text);
    assert!(reply.set_cookie("sesame_admin").is_none());
    assert_eq!(h.count("SELECT COUNT(*) FROM admin_session").await, 0);
}

#[tokio::test]
async fn page_sign_in_refuses_forged_forms() {
    let h = harness().await;
    let (pre_cookie, pre_csrf) = h.sign_in_form().await;
    let other = "A".repeat(43);
    type Case<'a> = (Option<&'a str>, Vec<(&'a str, &'a str)>, Option<&'a str>);
    let cases: [Case; 4] = [
        (None, vec![("csrf", &pre_csrf), ("token", TOKEN)], None),
        (Some(&pre_cookie), vec![("token", TOKEN)], None),
        (Some(&pre_cookie), vec![("csrf", &other), ("token", TOKEN)], None),
        (Some(&pre_cookie), vec![("csrf", &pre_csrf), ("token", TOKEN)], Some("https://evil.example")),
    ];
    for (cookie, fields, origin) in cases {
        let reply = h.post_form_from("/admin/signin", cookie, &fields, origin).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{cookie:?} {fields:?} {origin:?}");
        assert!(reply.text.contains("the form is stale or was not sent by this site"), "{}", reply.text);
        assert!(reply.set_cookie("sesame_admin").is_none());
    }
    assert_eq!(h.count("SELECT COUNT(*) FROM admin_session").await, 0);
}

#[tokio::test]
async fn page_sign_in_is_rate_limited() {
    let h = harness_with(ORIGIN, 5).await;
    let (pre_cookie, pre_csrf) = h.sign_in_form().await;
    for _ in 0..5 {
        let reply = h.post_form("/admin/signin", Some(&pre_cookie), &[("csrf", &pre_csrf), ("token", "guess")]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let reply = h.post_form("/admin/signin", Some(&pre_cookie), &[("csrf", &pre_csrf), ("token", TOKEN)]).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(reply.set_cookie("sesame_admin").is_none());
}

#[tokio::test]
async fn page_lists_services_when_signed_in() {
    let h = harness().await;
    let service = h.create("Example").await;
    let id = service["id"].as_str().expect("id");
    h.add_account(id, "alice", START as i64, None).await;
    let (cookie, _) = h.sign_in().await;
    let page = h.page("/admin", Some(&cookie)).await;
    assert!(page.text.contains("Example"));
    assert!(page.text.contains(&format!(r#"href="/admin/services/{id}""#)));
    assert!(page.text.contains(&format!(r#"href="{ORIGIN}/services/{id}""#)));
    assert!(page.text.contains("<td>1</td>"), "account count: {}", page.text);
}

#[tokio::test]
async fn page_creates_a_service_only_with_the_right_csrf_token() {
    let h = harness().await;
    let (cookie, csrf) = h.sign_in().await;
    let wrong = "B".repeat(43);
    for fields in [vec![("name", "Example")], vec![("csrf", wrong.as_str()), ("name", "Example")]] {
        let reply = h.post_form("/admin/services", Some(&cookie), &fields).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{fields:?}");
        assert!(reply.text.contains("the form is stale or was not sent by this site"));
    }
    let foreign =
        h.post_form_from("/admin/services", Some(&cookie), &[("csrf", &csrf), ("name", "Example")], Some("null")).await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    let signed_out = h.post_form("/admin/services", None, &[("csrf", &csrf), ("name", "Example")]).await;
    assert_eq!(signed_out.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.count("SELECT COUNT(*) FROM service WHERE NOT builtin").await, 0);

    let reply =
        h.post_form_from("/admin/services", Some(&cookie), &[("csrf", &csrf), ("name", "Example")], Some(ORIGIN)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert_eq!(reply.location(), "/admin?done=created");
    assert_eq!(h.count("SELECT COUNT(*) FROM service WHERE name = 'Example'").await, 1);
    let page = h.page(reply.location(), Some(&cookie)).await;
    assert!(page.text.contains("Service created."));

    let duplicate = h.post_form("/admin/services", Some(&cookie), &[("csrf", &csrf), ("name", "Example")]).await;
    assert_eq!(duplicate.location(), "/admin?error=service_exists&existing=Example");
    // A look-alike is refused naming the service it looks like.
    let alike = h.post_form("/admin/services", Some(&cookie), &[("csrf", &csrf), ("name", "EXAMPLE")]).await;
    assert_eq!(alike.location(), "/admin?error=service_exists&existing=Example");
    let page = h.page(alike.location(), Some(&cookie)).await;
    assert!(page.text.contains("the name of the service &#34;Example&#34;"), "{}", page.text);
    // A link that names no service on the page puts no words there.
    let crafted = h.page("/admin?error=service_exists&existing=Pay+here", Some(&cookie)).await;
    assert!(!crafted.text.contains("Pay here"), "{}", crafted.text);
    assert!(crafted.text.contains("A service with that name, or with one that looks the same, already exists."));
    let invalid = h.post_form("/admin/services", Some(&cookie), &[("csrf", &csrf), ("name", " ")]).await;
    assert_eq!(invalid.location(), "/admin?error=invalid_service_name");
    assert_eq!(h.count("SELECT COUNT(*) FROM service WHERE NOT builtin").await, 1);
}

#[tokio::test]
async fn page_refuses_malformed_forms_without_leaking_internals() {
    let h = harness().await;
    let (cookie, _) = h.sign_in().await;
    let request = Request::post("/admin/services")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .expect("request");
    let reply = h.send(request).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text.contains("the form was incomplete or malformed"), "{}", reply.text);
    assert!(!reply.text.to_lowercase().contains("deserialize"), "{}", reply.text);
}

#[tokio::test]
async fn page_deletes_a_service_only_with_the_right_csrf_token() {
    let h = harness().await;
    let service = h.create("Example").await;
    let id = service["id"].as_str().expect("id");
    let (cookie, csrf) = h.sign_in().await;
    let uri = format!("/admin/services/{id}/delete");
    for fields in [vec![], vec![("csrf", "nope")]] {
        let reply = h.post_form(&uri, Some(&cookie), &fields).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{fields:?}");
    }
    assert_eq!(h.count("SELECT COUNT(*) FROM service WHERE NOT builtin").await, 1);
    // The button asks first, on a page of its own, and deletes nothing.
    let asked = h.post_form(&uri, Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!(asked.status, StatusCode::OK);
    assert!(asked.text.contains("Delete this service?") && asked.text.contains("no account"), "{}", asked.text);
    assert_eq!(h.count("SELECT COUNT(*) FROM service WHERE NOT builtin").await, 1);
    // Its own form carries the same CSRF token and the confirmation.
    assert!(asked.text.contains(&format!(r#"name="csrf" value="{csrf}""#)), "{}", asked.text);
    assert!(asked.text.contains(r#"name="confirmed" value="yes""#), "{}", asked.text);
    let forged = h.post_form(&uri, Some(&cookie), &[("csrf", "nope"), CONFIRMED]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let reply = h.post_form(&uri, Some(&cookie), &[("csrf", &csrf), CONFIRMED]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location(), "/admin?done=service_deleted");
    assert_eq!(h.count("SELECT COUNT(*) FROM service WHERE NOT builtin").await, 0);
    let again = h.post_form(&uri, Some(&cookie), &[("csrf", &csrf), CONFIRMED]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn page_shows_accounts_and_events_and_deletes_accounts() {
    let h = harness().await;
    let service = h.create("Example").await;
    let id = service["id"].as_str().expect("id");
    h.add_account(id, "alice", START as i64, Some(START as i64 + 60)).await;
    h.add_account(id, "bob", START as i64, None).await;
    h.add_event(id, "login", Some("alice"), "Mozilla/5.0 Firefox", START as i64 + 60).await;
    let (cookie, csrf) = h.sign_in().await;
    let page = h.page(&format!("/admin/services/{id}"), Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    for text in ["alice", "bob", "2026-01-01T00:01:00Z", "never", "203.0.113.7", "Mozilla/5.0 Firefox", "login"] {
        assert!(page.text.contains(text), "{text} missing: {}", page.text);
    }

    let uri = format!("/admin/services/{id}/accounts/delete");
    let refused = h.post_form(&uri, Some(&cookie), &[("csrf", "x"), ("name", "alice")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let asked = h.post_form(&uri, Some(&cookie), &[("csrf", &csrf), ("name", "alice")]).await;
    assert_eq!(asked.status, StatusCode::OK);
    assert!(asked.text.contains("Delete this account?") && asked.text.contains("no session signed in now"));
    assert!(asked.text.contains(r#"name="name" value="alice""#), "{}", asked.text);
    assert_eq!(h.count("SELECT COUNT(*) FROM account").await, 2);
    let reply = h.post_form(&uri, Some(&cookie), &[("csrf", &csrf), ("name", "alice"), CONFIRMED]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location(), format!("/admin/services/{id}?done=account_deleted"));
    assert_eq!(h.count("SELECT COUNT(*) FROM account").await, 1);
    let missing = h.post_form(&uri, Some(&cookie), &[("csrf", &csrf), ("name", "alice")]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // Without a session the service page sends the browser to sign in.
    let anonymous = h.page(&format!("/admin/services/{id}"), None).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.location(), "/admin");
}

#[tokio::test]
async fn page_escapes_markup_in_names() {
    let h = harness().await;
    let service = h.create(XSS).await;
    let id = service["id"].as_str().expect("id");
    h.add_account(id, XSS, START as i64, None).await;
    h.add_event(id, "login", Some(XSS), XSS, START as i64).await;
    let (cookie, _) = h.sign_in().await;
    for uri in ["/admin".to_owned(), format!("/admin/services/{id}")] {
        let page = h.page(&uri, Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.text.contains(XSS), "{uri}: {}", page.text);
        // Askama writes `<` and `>` as the numeric references `&#60;` and
        // `&#62;`, which mean exactly what `&lt;` and `&gt;` do.
        let escaped = "&#60;script&#62;alert(1)&#60;/script&#62;";
        assert!(page.text.contains(escaped) || page.text.contains("&lt;script&gt;"), "{uri}: {}", page.text);
    }
}

#[tokio::test]
async fn page_ignores_notice_text_it_did_not_write() {
    let h = harness().await;
    let (cookie, _) = h.sign_in().await;
    let page = h.page("/admin?done=Your+session+expired%2C+call+us&error=%3Cb%3E", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text.contains("call us"));
    assert!(!page.text.contains("<b>"));
}

#[tokio::test]
async fn page_sign_out_ends_the_session() {
    let h = harness().await;
    let (cookie, csrf) = h.sign_in().await;
    let refused = h.post_form("/admin/signout", Some(&cookie), &[("csrf", "x")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let reply = h.post_form("/admin/signout", Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(reply.set_cookie("sesame_admin").expect("cleared").contains("Max-Age=0"));
    assert_eq!(h.count("SELECT COUNT(*) FROM admin_session").await, 0);
    // The old cookie, replayed, no longer opens anything.
    let page = h.page("/admin", Some(&cookie)).await;
    assert!(page.text.contains(r#"type="password""#));
    let create = h.post_form("/admin/services", Some(&cookie), &[("csrf", &csrf), ("name", "Late")]).await;
    assert_eq!(create.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn page_session_expires_after_twelve_hours() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = Db::sqlite_url(dir.path());
    let clock = ManualClock::new(UnixTime::from_secs(START));
    let state = AppState::new(Shared {
        db: Db::connect(&url).await.expect("database"),
        bus: Bus::local(),
        clock: Arc::new(clock.clone()),
        identity: Arc::new(Identity::new(ServerKey::generate(&mut OsRng))),
        settings: Arc::new(Settings::new(Origin::parse(ORIGIN).expect("origin"))),
        admin_token: Arc::new(AdminToken::new(TOKEN)),
        limits: Limits::per_minute(0),
    });
    let h = Harness::single(state, support::outside(&url).await, Box::new(dir));
    let (cookie, _) = h.sign_in().await;
    clock.advance(12 * 3600 - 1);
    assert!(h.page("/admin", Some(&cookie)).await.text.contains("New service"));
    clock.advance(1);
    assert!(h.page("/admin", Some(&cookie)).await.text.contains(r#"type="password""#));
}

/// A service's page lists its accounts a hundred at a time, oldest first,
/// each page with only its own accounts' keys, and says where it is.
#[tokio::test]
async fn page_lists_a_services_accounts_a_hundred_at_a_time() {
    support::each_backend(|app| async move {
        let h = Harness::over(app);
        let service = h.create("Crowded").await["id"].as_str().expect("id").to_owned();
        for i in 0..105 {
            h.add_account(&service, &format!("user-{i:03}"), START as i64 + i, None).await;
        }
        let (cookie, _) = h.sign_in().await;
        let listed = |page: &Reply, name: &str| page.text.contains(&format!(r#"name="name" value="{name}""#));

        let first = h.page(&format!("/admin/services/{service}"), Some(&cookie)).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text);
        assert!(listed(&first, "user-000") && listed(&first, "user-099"), "{}", first.text);
        assert!(!listed(&first, "user-100"), "the first page lists more than a hundred accounts");
        assert!(first.text.contains("Accounts 1–100 of 105"), "{}", first.text);
        assert!(first.text.contains(&format!(r#"href="/admin/services/{service}?page=2">Next"#)), "{}", first.text);
        assert!(!first.text.contains(">Previous<"), "{}", first.text);

        let second = h.page(&format!("/admin/services/{service}?page=2"), Some(&cookie)).await;
        assert_eq!(second.status, StatusCode::OK, "{}", second.text);
        assert!(listed(&second, "user-100") && listed(&second, "user-104"), "{}", second.text);
        assert!(!listed(&second, "user-099"), "the second page repeats the first");
        assert!(second.text.contains("Accounts 101–105 of 105"), "{}", second.text);
        assert!(second.text.contains(&format!(r#"href="/admin/services/{service}?page=1">Previous"#)));
        assert!(!second.text.contains(">Next<"), "{}", second.text);
        // The keys section lists this page's accounts only.
        assert!(second.text.contains("<h3>user-104</h3>") && !second.text.contains("<h3>user-000</h3>"));

        let past = h.page(&format!("/admin/services/{service}?page=7"), Some(&cookie)).await;
        assert_eq!(past.status, StatusCode::OK, "{}", past.text);
        assert!(past.text.contains("No accounts on this page: there are 105."), "{}", past.text);
        assert!(past.text.contains(&format!(r#"href="/admin/services/{service}?page=2">Previous"#)));
        for bad in ["0", "-1", "two", "99999999999999999999"] {
            let refused = h.page(&format!("/admin/services/{service}?page={bad}"), Some(&cookie)).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "page={bad}: {}", refused.text);
        }
    })
    .await;
}

/// A service with no more accounts than fit on a page shows no pager.
#[tokio::test]
async fn page_of_a_small_service_has_no_pager() {
    let h = harness().await;
    let service = h.create("Small").await["id"].as_str().expect("id").to_owned();
    h.add_account(&service, "alice", START as i64, None).await;
    let (cookie, _) = h.sign_in().await;
    let page = h.page(&format!("/admin/services/{service}"), Some(&cookie)).await;
    assert!(page.text.contains(r#"name="name" value="alice""#), "{}", page.text);
    assert!(!page.text.contains("Pages of accounts"), "{}", page.text);
}

/// Every destructive button of the admin page asks first, on a page of its
/// own that says what goes, escapes the names it shows, and does nothing
/// until the confirmation comes back with the session's CSRF token.
#[tokio::test]
async fn every_destructive_button_asks_first_and_does_nothing_until_confirmed() {
    let h = harness().await;
    let service = h.create(XSS).await;
    let id = service["id"].as_str().expect("id");
    let configured = h
        .api(
            Method::POST,
            &format!("/admin/api/services/{id}/applications"),
            Some(serde_json::json!({"name": XSS, "redirect_uris": ["https://app.example/callback"]})),
        )
        .await;
    assert_eq!(configured.status, StatusCode::CREATED, "{}", configured.text);
    let client_id = configured.json()["client_id"].as_str().expect("client_id").to_owned();
    let secret_hash = || async {
        sqlx::query_scalar::<_, Vec<u8>>("SELECT secret_hash FROM oidc_application")
            .fetch_one(&h.sql)
            .await
            .expect("the client's secret")
    };
    let secret_before = secret_hash().await;
    let (cookie, csrf) = h.sign_in().await;
    let audited = h.count("SELECT COUNT(*) FROM audit_event").await;
    let application = format!("/admin/services/{id}/applications/{client_id}");
    let asks = [
        (
            format!("/admin/services/{id}/delete"),
            "Delete this service?",
            "1 application, with its client id and secret",
        ),
        (format!("{application}/secret"), "Make a new client secret?", "the current secret"),
        (format!("{application}/delete"), "Remove this application?", "its client id and secret"),
        ("/admin/oidc/keys/rotate".to_owned(), "Rotate the signing keys?", "never rotate twice within an hour"),
    ];
    for (uri, title, consequence) in asks {
        let asked = h.post_form(&uri, Some(&cookie), &[("csrf", &csrf)]).await;
        assert_eq!(asked.status, StatusCode::OK, "{uri}: {}", asked.text);
        assert!(asked.text.contains(title) && asked.text.contains(consequence), "{uri}: {}", asked.text);
        assert!(!asked.text.contains(XSS), "{uri}: the name is shown raw");
        assert!(asked.text.contains(&format!(r#"action="{uri}""#)), "{uri}: {}", asked.text);
    }
    // Nothing happened: the service, its application and its secret are as they were.
    assert_eq!(h.count("SELECT COUNT(*) FROM service WHERE NOT builtin").await, 1);
    assert_eq!(h.count("SELECT COUNT(*) FROM oidc_application").await, 1);
    assert_eq!(secret_hash().await, secret_before);
    assert_eq!(h.count("SELECT COUNT(*) FROM audit_event").await, audited, "nothing was audited: nothing was done");

    // Confirmed, the application goes.
    let removed = h.post_form(&format!("{application}/delete"), Some(&cookie), &[("csrf", &csrf), CONFIRMED]).await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.text);
    assert_eq!(h.count("SELECT COUNT(*) FROM oidc_application").await, 0);
}
