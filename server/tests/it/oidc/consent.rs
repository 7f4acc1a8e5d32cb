//! Consent: an application whose admin asks for it shows the person what
//! it will learn, once per application and scope set, until withdrawn.

use super::{form_post::hidden_fields, *};

/// The fields of the consent page in `response`, which names `application`.
fn consent_page(response: &TestResponse, application: &str) -> Vec<(String, String)> {
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let html = response.text();
    assert!(html.contains(r#"<form id="consent" method="post" action="/oidc/consent">"#), "no consent page: {html}");
    assert!(html.contains(&format!(r#"<span id="application-name">{application}</span>"#)), "{html}");
    assert_eq!(response.headers[header::CACHE_CONTROL], "no-store");
    hidden_fields(&html)
}

/// The person's answer on the consent page.
async fn answer(app: &TestApp, fields: &[(String, String)], decision: &str, cookie: &str) -> TestResponse {
    let mut form: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    form.push(("decision", decision));
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let headers = [("content-type", "application/x-www-form-urlencoded"), ("cookie", cookie), ("origin", ORIGIN)];
    send(app, Method::POST, "/oidc/consent", &headers, Some(body)).await
}

/// A client of its own service that asks for consent.
async fn asking_client(app: &TestApp) -> Rp {
    let rp = client(app, false).await;
    let settings = json!({"redirect_uris": [REDIRECT], "post_logout_redirect_uris": ["https://app.example/bye"], "ask_consent": true});
    assert_eq!(configure(app, &rp.service, settings).await.status, StatusCode::OK);
    rp
}

fn session_of(response: &TestResponse, rp: &Rp) -> String {
    let name = format!("sesame_session_{}", rp.service);
    format!("{name}={}", response.cookie(&name).expect("a session cookie"))
}

#[tokio::test]
async fn an_application_that_asks_for_consent_asks_once_per_scope_set_until_withdrawn() {
    each_backend(|app| async move {
        let rp = asking_client(&app).await;
        let shown = page(&app.get(&authorize_url(&rp, ""), None).await);
        register(&app, &shown, "carl").await;
        // Signed in, the person sees what the application will learn.
        let finished = finish(&app, &shown).await;
        let session = session_of(&finished, &rp);
        let fields = consent_page(&finished, "Example Mail");
        assert!(finished.text().contains("your display name"), "profile was asked for");
        let allowed = redirected(&answer(&app, &fields, "allow", &session).await);
        assert_eq!(allowed["state"], "st-123");
        assert_eq!(exchange(&app, &rp, &allowed["code"], Some(VERIFIER)).await.status, StatusCode::OK);

        // Once approved, no more pages for as much or less.
        redirected(&app.get(&authorize_url(&rp, ""), Some(&session)).await);
        // More scopes, or prompt=consent, ask again; prompt=none cannot.
        let more = authorize_url(&rp, "").replace("scope=openid%20profile", "scope=openid%20profile%20email");
        consent_page(&app.get(&more, Some(&session)).await, "Example Mail");
        consent_page(&app.get(&authorize_url(&rp, "&prompt=consent"), Some(&session)).await, "Example Mail");
        let none = redirected(&app.get(&format!("{more}&prompt=none"), Some(&session)).await);
        assert_eq!(none["error"], "consent_required");

        // Refused: the application hears access_denied, and nothing is approved.
        let fields = consent_page(&app.get(&more, Some(&session)).await, "Example Mail");
        let denied = redirected(&answer(&app, &fields, "deny", &session).await);
        assert_eq!(denied["error"], "access_denied");
        consent_page(&app.get(&more, Some(&session)).await, "Example Mail");

        // The person sees the approval on their account page and withdraws it.
        let listed = app.get(&format!("/services/{}/account/applications", rp.service), Some(&session)).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
        assert!(listed.text().contains("your display name"), "{}", listed.text());
        let client_id = rp.client_id.as_str();
        let body = format!("client_id={client_id}");
        let headers =
            [("content-type", "application/x-www-form-urlencoded"), ("cookie", session.as_str()), ("origin", ORIGIN)];
        let uri = format!("/services/{}/account/applications/withdraw", rp.service);
        let withdrawn = send(&app, Method::POST, &uri, &headers, Some(body.clone())).await;
        assert_eq!(withdrawn.status, StatusCode::SEE_OTHER, "{}", withdrawn.text());
        consent_page(&app.get(&authorize_url(&rp, ""), Some(&session)).await, "Example Mail");
        assert_eq!(app.count("SELECT COUNT(*) FROM oidc_consent").await, 0);

        // Withdrawing again, from another site, or signed out: refused.
        let again = send(&app, Method::POST, &uri, &headers, Some(body.clone())).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text());
        let foreign = [headers[0], headers[1], ("origin", "https://evil.example")];
        assert_eq!(send(&app, Method::POST, &uri, &foreign, Some(body.clone())).await.status, StatusCode::FORBIDDEN);
        let anonymous = [headers[0], ("origin", ORIGIN)];
        assert_ne!(send(&app, Method::POST, &uri, &anonymous, Some(body)).await.status, StatusCode::SEE_OTHER);
    })
    .await;
}

#[tokio::test]
async fn withdrawing_consent_ends_the_tokens_the_application_holds() {
    let app = TestApp::new().await;
    let rp = asking_client(&app).await;
    let asking = authorize_url(&rp, "").replace("scope=openid%20profile", "scope=openid%20offline_access");
    let shown = page(&app.get(&asking, None).await);
    register(&app, &shown, "dina").await;
    let finished = finish(&app, &shown).await;
    let session = session_of(&finished, &rp);
    let fields = consent_page(&finished, "Example Mail");
    assert!(finished.text().contains("keep you signed in"), "offline_access is named");
    let code = redirected(&answer(&app, &fields, "allow", &session).await)["code"].clone();
    let tokens = exchange(&app, &rp, &code, Some(VERIFIER)).await.json();
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    let headers =
        [("content-type", "application/x-www-form-urlencoded"), ("cookie", session.as_str()), ("origin", ORIGIN)];
    let uri = format!("/services/{}/account/applications/withdraw", rp.service);
    let body = format!("client_id={}", rp.client_id);
    assert_eq!(send(&app, Method::POST, &uri, &headers, Some(body)).await.status, StatusCode::SEE_OTHER);
    assert_eq!(app.count("SELECT COUNT(*) FROM oidc_refresh_token").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM oidc_token").await, 0);
}

#[tokio::test]
async fn a_consent_answer_needs_this_site_and_a_live_session() {
    let app = TestApp::new().await;
    let rp = asking_client(&app).await;
    let shown = page(&app.get(&authorize_url(&rp, ""), None).await);
    register(&app, &shown, "emil").await;
    let finished = finish(&app, &shown).await;
    let session = session_of(&finished, &rp);
    let fields = consent_page(&finished, "Example Mail");
    // Another site's form is refused before anything is recorded.
    let mut form: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    form.push(("decision", "allow"));
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let foreign = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("cookie", session.as_str()),
        ("origin", "https://evil.example"),
    ];
    assert_eq!(send(&app, Method::POST, "/oidc/consent", &foreign, Some(body)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.count("SELECT COUNT(*) FROM oidc_consent").await, 0);
    // Without the session, the application hears that the sign-in ended.
    let ended = redirected(&answer(&app, &fields, "allow", "sesame_session_x=y").await);
    assert_eq!(ended["error"], "login_required");
    assert_eq!(app.count("SELECT COUNT(*) FROM oidc_consent").await, 0);
}

#[tokio::test]
async fn malformed_and_oversized_consent_and_withdrawal_forms_are_refused_with_their_code() {
    let app = TestApp::new().await;
    let rp = asking_client(&app).await;
    let form = [("content-type", "application/x-www-form-urlencoded"), ("origin", ORIGIN)];
    // No client, an unknown one, another client's redirect URI: a page, never a redirect.
    for body in [
        String::new(),
        "client_id=0123456789abcdef0123456789abcdef&decision=allow".to_owned(),
        format!("client_id={}&redirect_uri={}&decision=allow", rp.client_id, urlencode("https://evil.example/cb")),
    ] {
        let refused = send(&app, Method::POST, "/oidc/consent", &form, Some(body.clone())).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}: {}", refused.text());
        assert!(refused.headers.get(header::LOCATION).is_none(), "{body}");
    }
    let huge =
        format!("client_id={}&state={}", rp.client_id, "x".repeat(sesame_server::http::middleware::MAX_BODY_BYTES));
    let too_large = send(&app, Method::POST, "/oidc/consent", &form, Some(huge)).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    // A withdrawal that names no application.
    let uri = format!("/services/{}/account/applications/withdraw", rp.service);
    let unnamed = send(&app, Method::POST, &uri, &form, Some("nothing=here".to_owned())).await;
    assert_eq!(unnamed.status, StatusCode::BAD_REQUEST, "{}", unnamed.text());
    assert!(unnamed.text().contains("invalid_form"), "{}", unnamed.text());
    assert_eq!(app.count("SELECT COUNT(*) FROM oidc_consent").await, 0);
}
