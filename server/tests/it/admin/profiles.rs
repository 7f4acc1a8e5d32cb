//! Account profiles (display name and email) through the admin API and the
//! admin page: set, read and cleared, every refusal with its code and
//! nothing written, the audit record, and the profile going with its
//! account.

use super::*;

/// A service with account alice; returns the service id and the profile's
/// API path.
async fn with_alice(h: &Harness) -> (String, String) {
    let service = h.create("Example").await["id"].as_str().expect("id").to_owned();
    h.add_account(&service, "alice", START as i64, None).await;
    let uri = format!("/admin/api/services/{service}/accounts/alice/profile");
    (service, uri)
}

fn profile(display_name: Option<&str>, email: Option<&str>, email_verified: bool) -> Value {
    json!({"display_name": display_name, "email": email, "email_verified": email_verified})
}

async fn audited(h: &Harness) -> i64 {
    h.count("SELECT COUNT(*) FROM audit_event WHERE action = 'profile_changed'").await
}

#[tokio::test]
async fn api_sets_reads_and_clears_a_profile_and_audits_each_change() {
    support::each_backend(|app| async move {
        let h = Harness::over(app);
        let (service, uri) = with_alice(&h).await;

        // An account starts without a profile.
        let empty = h.api(Method::GET, &uri, None).await;
        assert_eq!(empty.status, StatusCode::OK, "{}", empty.text);
        assert_eq!(empty.json(), profile(None, None, false));

        // An email set by an admin is verified.
        let body = json!({"display_name": "Alice Liddell", "email": "alice@example.com"});
        let set = h.api(Method::PUT, &uri, Some(body)).await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.text);
        let expected = profile(Some("Alice Liddell"), Some("alice@example.com"), true);
        assert_eq!(set.json(), expected);
        assert_eq!(h.api(Method::GET, &uri, None).await.json(), expected);

        let audit = h.api(Method::GET, "/admin/api/audit?limit=1", None).await.json();
        assert_eq!(audit[0]["action"], "profile_changed");
        assert_eq!(audit[0]["actor"], "token");
        assert_eq!(audit[0]["target"], "alice");
        let detail = audit[0]["detail"].as_str().expect("detail");
        assert_eq!(detail, format!("service {service}, display name set, email set"));
        assert!(!detail.contains("example.com"), "the record never holds the values: {detail}");
        // The audit page's service filter finds it.
        let filter = format!("/admin/api/audit?service={service}&action=profile_changed");
        assert_eq!(h.api(Method::GET, &filter, None).await.json().as_array().map(Vec::len), Some(1));

        // `null` clears a value; leaving a member out does too.
        let cleared = h.api(Method::PUT, &uri, Some(json!({"display_name": null, "email": "alice@example.com"}))).await;
        assert_eq!(cleared.json(), profile(None, Some("alice@example.com"), true));
        let none = h.api(Method::PUT, &uri, Some(json!({}))).await;
        assert_eq!(none.json(), profile(None, None, false), "{}", none.text);
        assert_eq!(h.api(Method::GET, &uri, None).await.json(), profile(None, None, false));
        assert_eq!(audited(&h).await, 3);

        // Names with markup are names like any other; the JSON carries them
        // as they are.
        let markup = h.api(Method::PUT, &uri, Some(json!({"display_name": XSS, "email": null}))).await;
        assert_eq!(markup.json()["display_name"], XSS);
    })
    .await;
}

#[tokio::test]
async fn api_refuses_bad_names_and_emails_with_their_codes_and_writes_nothing() {
    support::each_backend(|app| async move {
        let h = Harness::over(app);
        let (service, uri) = with_alice(&h).await;
        let kept = json!({"display_name": "Alice", "email": "alice@example.com"});
        assert_eq!(h.api(Method::PUT, &uri, Some(kept)).await.status, StatusCode::OK);
        let before = h.api(Method::GET, &uri, None).await.json();
        let records = audited(&h).await;

        let long_name = "x".repeat(65);
        for name in [
            "",
            " Alice",
            "Alice ",
            "Al\u{0}ice",
            "Al\nice",
            "Al\u{7f}ice",
            &long_name,
            "bidi\u{202e}txt",
            "zero\u{200b}width",
        ] {
            let refused = h.api(Method::PUT, &uri, Some(json!({"display_name": name, "email": null}))).await;
            assert_eq!(
                (refused.status, refused.error_code().as_str()),
                (StatusCode::BAD_REQUEST, "invalid_display_name"),
                "{name:?}"
            );
            assert!(refused.json()["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        let long_email = format!("{}@example.com", "l".repeat(243));
        assert_eq!(long_email.len(), 255);
        for email in ["no-at", "a@b", "a@@b.c", "a b@c.d", &long_email, "", "a@b.c\n"] {
            let refused = h.api(Method::PUT, &uri, Some(json!({"display_name": "Alice", "email": email}))).await;
            assert_eq!(
                (refused.status, refused.error_code().as_str()),
                (StatusCode::BAD_REQUEST, "invalid_email"),
                "{email:?}"
            );
        }
        // A body that is not the expected JSON answers as everywhere else.
        let not_json = h
            .send(
                Request::builder()
                    .method(Method::PUT)
                    .uri(&uri)
                    .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from("{"))
                    .expect("request"),
            )
            .await;
        assert_eq!((not_json.status, not_json.error_code().as_str()), (StatusCode::BAD_REQUEST, "invalid_json"));
        let unknown_member = h.api(Method::PUT, &uri, Some(json!({"display_name": "A", "nickname": "a"}))).await;
        assert_eq!(unknown_member.status, StatusCode::BAD_REQUEST, "{}", unknown_member.text);
        let wrong_type = h.api(Method::PUT, &uri, Some(json!({"display_name": 7}))).await;
        assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST, "{}", wrong_type.text);

        // Unknown services and accounts are told apart, reading or writing.
        let body = json!({"display_name": "Bob", "email": null});
        let bob = format!("/admin/api/services/{service}/accounts/bob/profile");
        for method in [Method::GET, Method::PUT] {
            let missing = h.api(method.clone(), &bob, Some(body.clone())).await;
            assert_eq!((missing.status, missing.error_code().as_str()), (StatusCode::NOT_FOUND, "unknown_account"));
            let nowhere =
                h.api(method.clone(), "/admin/api/services/nope/accounts/alice/profile", Some(body.clone())).await;
            assert_eq!((nowhere.status, nowhere.error_code().as_str()), (StatusCode::NOT_FOUND, "unknown_service"));
        }
        let unauthorised = h.api_with(Method::PUT, &uri, Some(body), None).await;
        assert_eq!(unauthorised.status, StatusCode::UNAUTHORIZED);

        assert_eq!(h.api(Method::GET, &uri, None).await.json(), before, "no refusal changed the profile");
        assert_eq!(audited(&h).await, records, "no refusal wrote an audit record");
    })
    .await;
}

#[tokio::test]
async fn an_account_deleted_takes_its_profile_with_it() {
    support::each_backend(|app| async move {
        let h = Harness::over(app);
        let (service, uri) = with_alice(&h).await;
        let body = json!({"display_name": "Alice", "email": "alice@example.com"});
        assert_eq!(h.api(Method::PUT, &uri, Some(body)).await.status, StatusCode::OK);
        let account = format!("/admin/api/services/{service}/accounts/alice");
        assert_eq!(h.api(Method::DELETE, &account, None).await.status, StatusCode::NO_CONTENT);
        assert_eq!(h.api(Method::GET, &uri, None).await.error_code(), "unknown_account");
        let left = "SELECT COUNT(*) FROM account WHERE email IS NOT NULL OR display_name IS NOT NULL";
        assert_eq!(h.count(left).await, 0);
        // The name registered again starts without a profile.
        h.add_account(&service, "alice", START as i64 + 60, None).await;
        assert_eq!(h.api(Method::GET, &uri, None).await.json(), profile(None, None, false));
    })
    .await;
}

#[tokio::test]
async fn page_shows_each_profile_escaped_and_sets_it_with_csrf() {
    let h = harness().await;
    let (service, uri) = with_alice(&h).await;
    h.add_account(&service, "bob", START as i64 + 1, None).await;
    let (cookie, csrf) = h.sign_in().await;

    // The service page links each account to its profile.
    let service_page = h.page(&format!("/admin/services/{service}"), Some(&cookie)).await;
    let link = format!(r#"href="/admin/services/{service}/profiles?name=alice""#);
    assert!(service_page.text.contains(&link), "{}", service_page.text);
    // A name with characters that mean something in a URL is encoded.
    h.add_account(&service, "a&b c#d", START as i64 + 2, None).await;
    let service_page = h.page(&format!("/admin/services/{service}"), Some(&cookie)).await;
    let encoded = format!("/admin/services/{service}/profiles?name=a%26b%20c%23d");
    assert!(service_page.text.contains(&format!(r#"href="{encoded}""#)), "{}", service_page.text);
    let odd = h.page(&encoded, Some(&cookie)).await;
    assert_eq!(odd.status, StatusCode::OK, "{}", odd.text);
    assert!(odd.text.contains("<h3>a&#38;b c#d</h3>"), "{}", odd.text);
    // The admin's own authenticators are not a service's accounts.
    assert!(!h.page("/admin", Some(&cookie)).await.text.contains("/profiles?name="));

    let profiles = format!("/admin/services/{service}/profiles");
    assert_eq!(h.page(&profiles, None).await.location(), "/admin", "signed out: to the sign-in");
    let listed = h.page(&profiles, Some(&cookie)).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(listed.headers[header::CACHE_CONTROL], "no-store");
    assert!(listed.text.contains("<h3>alice</h3>") && listed.text.contains("<h3>bob</h3>"), "{}", listed.text);
    assert!(listed.text.contains("(none)"), "{}", listed.text);

    let form = format!("/admin/services/{service}/accounts/profile");
    let fields = [("csrf", csrf.as_str()), ("name", "alice"), ("display_name", XSS), ("email", " alice@example.com ")];
    let saved = h.post_form(&form, Some(&cookie), &fields).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text);
    assert_eq!(saved.location(), format!("/admin/services/{service}/profiles?name=alice&done=profile_saved"));
    // A form's fields are trimmed; the email an admin sets is verified.
    let stored = h.api(Method::GET, &uri, None).await.json();
    assert_eq!(stored, profile(Some(XSS), Some("alice@example.com"), true));
    let audit = h.api(Method::GET, "/admin/api/audit?limit=1", None).await.json();
    assert_eq!((audit[0]["action"].as_str(), audit[0]["target"].as_str()), (Some("profile_changed"), Some("alice")));

    let shown = h.page(saved.location(), Some(&cookie)).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert!(shown.text.contains("Profile saved."), "{}", shown.text);
    assert!(!shown.text.contains(XSS), "the display name is escaped: {}", shown.text);
    assert!(shown.text.contains("&#60;script&#62;alert(1)"), "{}", shown.text);
    assert!(
        shown.text.contains("alice@example.com <span data-field=\"email-state\">(verified)</span>"),
        "{}",
        shown.text
    );
    assert!(!shown.text.contains("<h3>bob</h3>"), "one account was asked for: {}", shown.text);

    // Empty fields clear the profile.
    let clear = [("csrf", csrf.as_str()), ("name", "alice"), ("display_name", ""), ("email", "")];
    assert_eq!(h.post_form(&form, Some(&cookie), &clear).await.status, StatusCode::SEE_OTHER);
    assert_eq!(h.api(Method::GET, &uri, None).await.json(), profile(None, None, false));

    // Refusals: a bad value, no CSRF token, another site, no session, and
    // an unknown account; none writes anything.
    let records = audited(&h).await;
    let bad = h.post_form(&form, Some(&cookie), &[("csrf", &csrf), ("name", "alice"), ("email", "a@b")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    let forged = h.post_form(&form, Some(&cookie), &[("csrf", "nope"), ("name", "alice"), ("email", "a@b.c")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    let cross = h
        .post_form_from(
            &form,
            Some(&cookie),
            &[("csrf", &csrf), ("name", "alice"), ("email", "a@b.c")],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN, "{}", cross.text);
    let anonymous = h.post_form(&form, None, &[("csrf", &csrf), ("name", "alice"), ("email", "a@b.c")]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{}", anonymous.text);
    let nobody = h.post_form(&form, Some(&cookie), &[("csrf", &csrf), ("name", "carol"), ("email", "a@b.c")]).await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND, "{}", nobody.text);
    assert_eq!(h.page(&format!("{profiles}?name=carol"), Some(&cookie)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.api(Method::GET, &uri, None).await.json(), profile(None, None, false));
    assert_eq!(audited(&h).await, records);
}
