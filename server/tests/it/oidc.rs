//! The OpenID Connect provider through the router: client settings, the
//! code flow with a simulated authenticator, and every refusal with its own
//! error. The end-to-end test with a real relying-party library, a real
//! browser and the real binaries lives in the tests crate.

use std::collections::HashMap;

use axum::{
    body::Body,
    http::{header, Method, Request, StatusCode},
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine as _};
use jsonwebtoken::{jwk::JwkSet, DecodingKey, Validation};
use rand::rngs::OsRng;
use serde_json::{json, Value};
use sesame_proto::{AccountKey, AccountName, DenyRequest, LoginRequest, RegisterRequest, ServiceId};
use sha2::{Digest as _, Sha256};

use crate::support::{each_backend, TestApp, TestResponse, ORIGIN, USER_AGENT};

const ADMIN: &str = "Bearer test-admin-token-0123456789";
const REDIRECT: &str = "https://app.example/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// A client as the admin API made it.
#[derive(Debug, Clone)]
struct Rp {
    service: ServiceId,
    client_id: String,
    secret: Option<String>,
}

async fn send(
    app: &TestApp,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> TestResponse {
    let mut builder = Request::builder().method(method).uri(uri).header(header::USER_AGENT, USER_AGENT);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    app.send(builder.body(body.map(Body::from).unwrap_or_else(Body::empty)).expect("request")).await
}

async fn configure(app: &TestApp, service: &ServiceId, settings: Value) -> TestResponse {
    send(
        app,
        Method::PUT,
        &format!("/admin/api/services/{service}/oidc"),
        &[("authorization", ADMIN), ("content-type", "application/json")],
        Some(settings.to_string()),
    )
    .await
}

async fn client(app: &TestApp, public: bool) -> Rp {
    let service = app.create_service("Example Mail").await;
    let response = configure(
        app,
        &service,
        json!({"redirect_uris": [REDIRECT], "post_logout_redirect_uris": ["https://app.example/bye"], "public": public}),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let json = response.json();
    Rp {
        service,
        client_id: json["client_id"].as_str().expect("client_id").to_owned(),
        secret: json["client_secret"].as_str().map(str::to_owned),
    }
}

fn challenge_of(verifier: &str) -> String {
    B64.encode(Sha256::digest(verifier.as_bytes()))
}

fn authorize_url(rp: &Rp, extra: &str) -> String {
    format!(
        "/oidc/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid%20profile&state=st-123&nonce=n-456&code_challenge={}&code_challenge_method=S256{extra}",
        rp.client_id,
        urlencode(REDIRECT),
        challenge_of(VERIFIER)
    )
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The login page an authorization request shows: its token, challenge id
/// and binding cookie.
#[derive(Debug)]
struct Page {
    token: String,
    cid: String,
    cookie: String,
}

fn page(response: &TestResponse) -> Page {
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let html = response.text();
    let between = |start: &str, end: &str| {
        let from = html.find(start).unwrap_or_else(|| panic!("{start} in the page")) + start.len();
        html[from..].split(end).next().expect("end").to_owned()
    };
    let token = between(r#"<code id="token" class="token">"#, "<");
    let cid = between(r#"data-finish-url="/oidc/finish/"#, "\"");
    let name = format!("sesame_browser_{cid}");
    let cookie = format!("{name}={}", response.cookie(&name).expect("binding cookie"));
    Page { token, cid, cookie }
}

fn account(name: &str) -> AccountName {
    AccountName::parse(name).expect("name")
}

async fn register(app: &TestApp, page: &Page, name: &str) -> AccountKey {
    let key = AccountKey::generate(&mut OsRng);
    let token = app.verify(&page.token);
    let response =
        app.post_json("/api/authenticator/register", &RegisterRequest::sign(&token, &account(name), &key)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    key
}

async fn finish(app: &TestApp, page: &Page) -> TestResponse {
    send(
        app,
        Method::POST,
        &format!("/oidc/finish/{}", page.cid),
        &[("cookie", &page.cookie), ("origin", ORIGIN)],
        None,
    )
    .await
}

/// The query of a redirect to the client.
fn redirected(response: &TestResponse) -> HashMap<String, String> {
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.text());
    let location = response.headers[header::LOCATION].to_str().expect("location");
    assert!(location.starts_with(REDIRECT), "{location}");
    let url = url::Url::parse(location).expect("url");
    url.query_pairs().into_owned().collect()
}

async fn exchange(app: &TestApp, rp: &Rp, code: &str, verifier: Option<&str>) -> TestResponse {
    let mut form =
        format!("grant_type=authorization_code&code={}&redirect_uri={}", urlencode(code), urlencode(REDIRECT));
    if let Some(verifier) = verifier {
        form.push_str(&format!("&code_verifier={verifier}"));
    }
    form.push_str(&format!("&client_id={}", rp.client_id));
    if let Some(secret) = &rp.secret {
        form.push_str(&format!("&client_secret={}", urlencode(secret)));
    }
    send(app, Method::POST, "/oidc/token", &[("content-type", "application/x-www-form-urlencoded")], Some(form)).await
}

/// Signs in at `rp` as a new account `name`, through the login page.
async fn code_for(app: &TestApp, rp: &Rp, name: &str) -> (HashMap<String, String>, TestResponse) {
    let shown = page(&app.get(&authorize_url(rp, ""), None).await);
    register(app, &shown, name).await;
    let response = finish(app, &shown).await;
    (redirected(&response), response)
}

fn oauth_error(response: &TestResponse, status: StatusCode, code: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    let json = response.json();
    assert_eq!(json["error"], code, "{json}");
    assert!(json["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{json}");
}

async fn verify_id_token(app: &TestApp, rp: &Rp, id_token: &str) -> Value {
    let set: JwkSet = serde_json::from_slice(&app.get("/oidc/jwks", None).await.body).expect("JWKS");
    let header = jsonwebtoken::decode_header(id_token).expect("header");
    let jwk = set.find(header.kid.as_deref().expect("kid")).expect("the kid is published");
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[ORIGIN]);
    validation.set_audience(&[&rp.client_id]);
    // The manual clock is in 2026; the real one may be anywhere.
    validation.validate_exp = false;
    jsonwebtoken::decode::<Value>(id_token, &DecodingKey::from_jwk(jwk).expect("key"), &validation)
        .expect("a valid ID token")
        .claims
}

#[tokio::test]
async fn discovery_describes_the_provider() {
    let app = TestApp::new().await;
    let doc = app.get("/.well-known/openid-configuration", None).await.json();
    assert_eq!(doc["issuer"], ORIGIN);
    assert_eq!(doc["authorization_endpoint"], format!("{ORIGIN}/oidc/authorize"));
    assert_eq!(doc["token_endpoint"], format!("{ORIGIN}/oidc/token"));
    assert_eq!(doc["jwks_uri"], format!("{ORIGIN}/oidc/jwks"));
    assert_eq!(doc["end_session_endpoint"], format!("{ORIGIN}/oidc/logout"));
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(doc["id_token_signing_alg_values_supported"], json!(["RS256", "EdDSA"]));
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    let set = app.get("/oidc/jwks", None).await.json();
    let algs: Vec<&str> = set["keys"].as_array().expect("keys").iter().filter_map(|k| k["alg"].as_str()).collect();
    // A current and a next key for each algorithm.
    assert_eq!(algs.iter().filter(|a| **a == "RS256").count(), 2, "{set}");
    assert_eq!(algs.iter().filter(|a| **a == "EdDSA").count(), 2, "{set}");
    assert!(set["keys"].as_array().expect("keys").iter().all(|k| k.get("d").is_none() && k["kid"].is_string()));
}

#[tokio::test]
async fn a_whole_sign_in_gives_a_verified_id_token_and_userinfo() {
    each_backend(|app| async move {
        let rp = client(&app, false).await;
        let (params, response) = code_for(&app, &rp, "alice").await;
        assert_eq!(params["state"], "st-123");
        assert_eq!(params["iss"], ORIGIN);
        // Signing in at the provider leaves a session there too.
        assert!(response.set_cookie(&format!("sesame_session_{}", rp.service)).is_some());
        let answer = exchange(&app, &rp, &params["code"], Some(VERIFIER)).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
        let tokens = answer.json();
        assert_eq!(tokens["token_type"], "Bearer");
        assert_eq!(tokens["scope"], "openid profile");
        let claims = verify_id_token(&app, &rp, tokens["id_token"].as_str().expect("id_token")).await;
        let subject: String = sqlx::query_scalar("SELECT subject FROM account WHERE name = 'alice'")
            .fetch_one(&app.sql)
            .await
            .expect("subject");
        assert_eq!(claims["sub"], subject.as_str());
        assert_ne!(claims["sub"], "alice");
        assert_eq!(claims["preferred_username"], "alice");
        assert_eq!(claims["nonce"], "n-456");
        assert_eq!(claims["auth_time"], crate::support::START);
        assert_eq!(claims["amr"], json!(["swk"]));
        let bearer = format!("Bearer {}", tokens["access_token"].as_str().expect("access_token"));
        let info = send(&app, Method::GET, "/oidc/userinfo", &[("authorization", &bearer)], None).await;
        assert_eq!(info.json(), json!({"sub": subject, "preferred_username": "alice"}));
    })
    .await;
}

#[tokio::test]
async fn an_ed25519_client_gets_eddsa_id_tokens() {
    let app = TestApp::new().await;
    let rp = client(&app, false).await;
    let response =
        configure(&app, &rp.service, json!({"redirect_uris": [REDIRECT], "id_token_signed_response_alg": "EdDSA"}))
            .await;
    assert_eq!(response.json()["id_token_signed_response_alg"], "EdDSA");
    // An update keeps the client id and shows no secret.
    assert_eq!(response.json()["client_id"], rp.client_id.as_str());
    assert!(response.json().get("client_secret").is_none());
    let (params, _) = code_for(&app, &rp, "bob").await;
    let tokens = exchange(&app, &rp, &params["code"], Some(VERIFIER)).await.json();
    let id_token = tokens["id_token"].as_str().expect("id_token");
    assert_eq!(jsonwebtoken::decode_header(id_token).expect("header").alg, jsonwebtoken::Algorithm::EdDSA);
    assert_eq!(verify_id_token(&app, &rp, id_token).await["preferred_username"], "bob");
}

#[tokio::test]
async fn a_public_client_must_use_pkce_and_needs_no_secret() {
    let app = TestApp::new().await;
    let rp = client(&app, true).await;
    assert!(rp.secret.is_none());
    let url = format!(
        "/oidc/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid&state=s1",
        rp.client_id,
        urlencode(REDIRECT)
    );
    let params = redirected(&app.get(&url, None).await);
    assert_eq!(params["error"], "invalid_request");
    assert_eq!(params["state"], "s1");
    let (params, _) = code_for(&app, &rp, "carol").await;
    let answer = exchange(&app, &rp, &params["code"], Some(VERIFIER)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}

#[tokio::test]
async fn an_unknown_client_gets_a_page_and_no_redirect() {
    let app = TestApp::new().await;
    let rp = Rp { service: ServiceId::random(&mut OsRng), client_id: "nobody".to_owned(), secret: None };
    let response = app.get(&authorize_url(&rp, ""), None).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert!(response.headers.get(header::LOCATION).is_none());
    assert!(response.text().contains("invalid_client"), "{}", response.text());
}

#[tokio::test]
async fn a_redirect_uri_that_is_not_registered_exactly_is_never_followed() {
    let app = TestApp::new().await;
    let rp = client(&app, false).await;
    for wrong in [
        "https://app.example/callback/",
        "https://app.example/callback?x=1",
        "https://app.example/callbac",
        "https://APP.example/callback",
        "https://evil.example/callback",
    ] {
        let url = authorize_url(&rp, "").replace(&urlencode(REDIRECT), &urlencode(wrong));
        let response = app.get(&url, None).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{wrong}");
        assert!(response.headers.get(header::LOCATION).is_none(), "{wrong}");
        assert!(response.text().contains("invalid_redirect_uri"), "{wrong}");
    }
}

#[tokio::test]
async fn request_errors_go_back_to_the_client_with_state_and_iss() {
    let app = TestApp::new().await;
    let rp = client(&app, false).await;
    for (change, code) in [
        (("response_type=code", "response_type=token"), "unsupported_response_type"),
        (("scope=openid%20profile", "scope=profile"), "invalid_scope"),
        (("code_challenge_method=S256", "code_challenge_method=plain"), "invalid_request"),
        (("&nonce=n-456", "&nonce=n-456&nonce=again"), "invalid_request"),
        (("&nonce=n-456", "&nonce=n-456&prompt=none%20login"), "invalid_request"),
        (("&nonce=n-456", "&nonce=n-456&request=eyJ"), "request_not_supported"),
        (("&nonce=n-456", "&nonce=n-456&max_age=soon"), "invalid_request"),
        (("&nonce=n-456", "&nonce=n-456&prompt=none"), "login_required"),
    ] {
        let url = authorize_url(&rp, "").replace(change.0, change.1);
        let params = redirected(&app.get(&url, None).await);
        assert_eq!(params["error"], code, "{change:?}");
        assert_eq!(params["state"], "st-123", "{change:?}");
        assert_eq!(params["iss"], ORIGIN, "{change:?}");
    }
}

/// A NUL byte in `state` or `nonce` failed on PostgreSQL, whose text cannot
/// hold one, as a database error (500) when the request was stored.
#[tokio::test]
async fn control_characters_in_state_or_nonce_go_back_as_invalid_request() {
    each_backend(|app| async move {
        let rp = client(&app, false).await;
        for change in
            [("state=st-123", "state=st%00123"), ("nonce=n-456", "nonce=n%00456"), ("nonce=n-456", "nonce=n%0A456")]
        {
            let params = redirected(&app.get(&authorize_url(&rp, "").replace(change.0, change.1), None).await);
            assert_eq!(params["error"], "invalid_request", "{change:?}");
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM oidc_request").await, 0);
    })
    .await;
}

#[tokio::test]
async fn pkce_must_match() {
    let app = TestApp::new().await;
    let rp = client(&app, false).await;
    let (params, _) = code_for(&app, &rp, "dave").await;
    oauth_error(&exchange(&app, &rp, &params["code"], None).await, StatusCode::BAD_REQUEST, "invalid_grant");
    let wrong = "x".repeat(43);
    oauth_error(&exchange(&app, &rp, &params["code"], Some(&wrong)).await, StatusCode::BAD_REQUEST, "invalid_grant");
    // Refusals do not spend the code: the right verifier still works.
    assert_eq!(exchange(&app, &rp, &params["code"], Some(VERIFIER)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_its_tokens() {
    each_backend(|app| async move {
        let rp = client(&app, false).await;
        let (params, _) = code_for(&app, &rp, "erin").await;
        let first = exchange(&app, &rp, &params["code"], Some(VERIFIER)).await.json();
        let bearer = format!("Bearer {}", first["access_token"].as_str().expect("access_token"));
        assert_eq!(
            send(&app, Method::GET, "/oidc/userinfo", &[("authorization", &bearer)], None).await.status,
            StatusCode::OK
        );
        oauth_error(
            &exchange(&app, &rp, &params["code"], Some(VERIFIER)).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        );
        let after = send(&app, Method::GET, "/oidc/userinfo", &[("authorization", &bearer)], None).await;
        oauth_error(&after, StatusCode::UNAUTHORIZED, "invalid_token");
        assert!(after.headers[header::WWW_AUTHENTICATE].to_str().expect("header").contains("invalid_token"));
    })
    .await;
}

#[tokio::test]
async fn a_code_expires_after_sixty_seconds() {
    let app = TestApp::new().await;
    let rp = client(&app, false).await;
    let (params, _) = code_for(&app, &rp, "frank").await;
    app.clock.advance(60);
    oauth_error(&exchange(&app, &rp, &params["code"], Some(VERIFIER)).await, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn client_authentication_is_checked() {
    let app = TestApp::new().await;
    let rp = client(&app, false).await;
    let (params, _) = code_for(&app, &rp, "gina").await;
    let wrong = Rp { secret: Some("not-the-secret".to_owned()), ..rp.clone() };
    oauth_error(
        &exchange(&app, &wrong, &params["code"], Some(VERIFIER)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    let missing = Rp { secret: None, ..rp.clone() };
    oauth_error(
        &exchange(&app, &missing, &params["code"], Some(VERIFIER)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    // HTTP Basic works, and a wrong one is answered with a Basic challenge.
    let form = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={VERIFIER}",
        urlencode(&params["code"]),
        urlencode(REDIRECT)
    );
    let basic = |secret: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{secret}", rp.client_id)))
    };
    let headers = |auth: &str| {
        vec![
            ("content-type".to_owned(), "application/x-www-form-urlencoded".to_owned()),
            ("authorization".to_owned(), auth.to_owned()),
        ]
    };
    let refused = {
        let h = headers(&basic("wrong"));
        let h: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        send(&app, Method::POST, "/oidc/token", &h, Some(form.clone())).await
    };
    oauth_error(&refused, StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(refused.headers[header::WWW_AUTHENTICATE].to_str().expect("header").starts_with("Basic"));
    let accepted = {
        let h = headers(&basic(rp.secret.as_deref().expect("secret")));
        let h: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        send(&app, Method::POST, "/oidc/token", &h, Some(form)).await
    };
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text());
}

#[tokio::test]
async fn a_code_is_good_only_for_the_client_it_was_issued_to() {
    let app = TestApp::new().await;
    let rp = client(&app, false).await;
    let other = {
        let service = app.create_service("Other App").await;
        let json = configure(&app, &service, json!({"redirect_uris": [REDIRECT]})).await.json();
        Rp {
            service,
            client_id: json["client_id"].as_str().expect("id").to_owned(),
            secret: json["client_secret"].as_str().map(str::to_owned),
        }
    };
    let (params, _) = code_for(&app, &rp, "hank").await;
    oauth_error(
        &exchange(&app, &other, &params["code"], Some(VERIFIER)).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    assert_eq!(exchange(&app, &rp, &params["code"], Some(VERIFIER)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_denied_or_cancelled_sign_in_comes_back_as_access_denied() {
    let app = TestApp::new().await;
    let rp = client(&app, false).await;
    let shown = page(&app.get(&authorize_url(&rp, ""), None).await);
    let token = app.verify(&shown.token);
    let denied =
        app.post_json("/api/authenticator/deny", &DenyRequest::sign(&token, &AccountKey::generate(&mut OsRng))).await;
    assert_eq!(denied.status, StatusCode::OK, "{}", denied.text());
    let params = redirected(&finish(&app, &shown).await);
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "st-123");
    assert!(!params.contains_key("code"));

    let shown = page(&app.get(&authorize_url(&rp, ""), None).await);
    let cancel =
        send(&app, Method::POST, &format!("/api/challenges/{}/cancel", shown.cid), &[("cookie", &shown.cookie)], None)
            .await;
    assert_eq!(cancel.status, StatusCode::OK, "{}", cancel.text());
    assert_eq!(redirected(&finish(&app, &shown).await)["error"], "access_denied");
}

#[tokio::test]
async fn only_the_browser_that_started_the_page_can_finish_it() {
    let app = TestApp::new().await;
    let rp = client(&app, false).await;
    let shown = page(&app.get(&authorize_url(&rp, ""), None).await);
    register(&app, &shown, "ivy").await;
    let stranger = Page { cookie: String::new(), ..shown };
    let response = finish(&app, &stranger).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert!(response.headers.get(header::LOCATION).is_none());
    let shown = Page { cookie: format!("sesame_browser_{}=AAAA", stranger.cid), ..stranger };
    assert_eq!(finish(&app, &shown).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_signed_in_browser_gets_a_code_at_once_unless_a_new_sign_in_is_asked_for() {
    let app = TestApp::new().await;
    let rp = client(&app, false).await;
    let (_, response) = code_for(&app, &rp, "jack").await;
    let name = format!("sesame_session_{}", rp.service);
    let session = format!("{name}={}", response.cookie(&name).expect("session cookie"));
    app.clock.advance(100);
    let again = redirected(&app.get(&authorize_url(&rp, ""), Some(&session)).await);
    let tokens = exchange(&app, &rp, &again["code"], Some(VERIFIER)).await.json();
    let claims = verify_id_token(&app, &rp, tokens["id_token"].as_str().expect("id_token")).await;
    // auth_time is when the person last proved it, not now.
    assert_eq!(claims["auth_time"], crate::support::START);
    // prompt=login and a max_age already passed both show the page again.
    page(&app.get(&authorize_url(&rp, "&prompt=login"), Some(&session)).await);
    page(&app.get(&authorize_url(&rp, "&max_age=50"), Some(&session)).await);
    redirected(&app.get(&authorize_url(&rp, "&max_age=500"), Some(&session)).await);
}

#[tokio::test]
async fn a_login_with_an_existing_account_works_through_the_page() {
    let app = TestApp::new().await;
    let rp = client(&app, false).await;
    let shown = page(&app.get(&authorize_url(&rp, ""), None).await);
    let key = register(&app, &shown, "kate").await;
    finish(&app, &shown).await;
    let shown = page(&app.get(&authorize_url(&rp, "&prompt=login"), None).await);
    let token = app.verify(&shown.token);
    let response = app.post_json("/api/authenticator/login", &LoginRequest::sign(&token, &account("kate"), &key)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let params = redirected(&finish(&app, &shown).await);
    let tokens = exchange(&app, &rp, &params["code"], Some(VERIFIER)).await.json();
    assert_eq!(
        verify_id_token(&app, &rp, tokens["id_token"].as_str().expect("id")).await["preferred_username"],
        "kate"
    );
    // The page can be finished once.
    assert_eq!(finish(&app, &shown).await.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn client_settings_are_validated() {
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    for bad in [
        json!({"redirect_uris": []}),
        json!({"redirect_uris": ["http://app.example/cb"]}),
        json!({"redirect_uris": ["https://app.example/cb#frag"]}),
        json!({"redirect_uris": ["/relative"]}),
        json!({"redirect_uris": ["https://app.example/cb"], "id_token_signed_response_alg": "HS256"}),
        json!({"redirect_uris": ["javascript:alert(1)"]}),
    ] {
        configure(&app, &service, bad.clone()).await.assert_error(StatusCode::BAD_REQUEST, "invalid_client_settings");
    }
    let response = configure(&app, &service, json!({"redirect_uris": "nope"})).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST, "{}", response.text());
    // Loopback HTTP and a native app's private-use scheme are fine.
    let ok =
        configure(&app, &service, json!({"redirect_uris": ["http://127.0.0.1:8000/cb", "com.example.app:/cb"]})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    // Nothing was written by the refusals: the one audit record is the creation.
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_event WHERE action LIKE 'oidc_%'").await, 1);
    let unknown = configure(&app, &ServiceId::random(&mut OsRng), json!({"redirect_uris": [REDIRECT]})).await;
    unknown.assert_error(StatusCode::NOT_FOUND, "unknown_service");
    let unauthenticated = send(&app, Method::GET, &format!("/admin/api/services/{service}/oidc"), &[], None).await;
    unauthenticated.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn the_secret_is_shown_once_rotates_and_the_client_can_be_turned_off() {
    let app = TestApp::new().await;
    let rp = client(&app, false).await;
    let path = format!("/admin/api/services/{}/oidc", rp.service);
    let shown = send(&app, Method::GET, &path, &[("authorization", ADMIN)], None).await.json();
    assert!(shown.get("client_secret").is_none(), "{shown}");
    assert_eq!(shown["redirect_uris"], json!([REDIRECT]));
    let rotated = send(&app, Method::POST, &format!("{path}/secret"), &[("authorization", ADMIN)], None).await.json();
    let new_secret = rotated["client_secret"].as_str().expect("new secret").to_owned();
    assert_ne!(Some(new_secret.as_str()), rp.secret.as_deref());
    let (params, _) = code_for(&app, &rp, "liam").await;
    oauth_error(
        &exchange(&app, &rp, &params["code"], Some(VERIFIER)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    let fresh = Rp { secret: Some(new_secret), ..rp.clone() };
    assert_eq!(exchange(&app, &fresh, &params["code"], Some(VERIFIER)).await.status, StatusCode::OK);
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT secret_hash FROM oidc_application").fetch_one(&app.sql).await.expect("hash");
    assert_eq!(stored.len(), 32, "only a digest is stored");
    assert_eq!(
        send(&app, Method::DELETE, &path, &[("authorization", ADMIN)], None).await.status,
        StatusCode::NO_CONTENT
    );
    send(&app, Method::GET, &path, &[("authorization", ADMIN)], None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "oidc_not_configured");
    let gone = app.get(&authorize_url(&rp, ""), None).await;
    assert_eq!(gone.status, StatusCode::BAD_REQUEST);
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_event WHERE action LIKE 'oidc_%' ORDER BY id")
            .fetch_all(&app.sql)
            .await
            .expect("audit");
    assert_eq!(actions, ["oidc_client_created", "oidc_secret_rotated", "oidc_client_removed"]);
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_verifiable() {
    let app = TestApp::new().await;
    let rp = client(&app, false).await;
    let (params, _) = code_for(&app, &rp, "mia").await;
    let before =
        exchange(&app, &rp, &params["code"], Some(VERIFIER)).await.json()["id_token"].as_str().expect("id").to_owned();
    let rotated = send(&app, Method::POST, "/admin/api/oidc/keys/rotate", &[("authorization", ADMIN)], None).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
    let states: Vec<&str> = rotated
        .json()
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["state"].as_str())
        .map(|s| if s == "retired" { "retired" } else { "other" })
        .collect();
    assert_eq!(states.iter().filter(|s| **s == "retired").count(), 2);
    // Tokens signed before still verify against the published set, and new
    // ones are signed by another key.
    verify_id_token(&app, &rp, &before).await;
    let (params, _) = code_for(&app, &rp, "noah").await;
    let after =
        exchange(&app, &rp, &params["code"], Some(VERIFIER)).await.json()["id_token"].as_str().expect("id").to_owned();
    verify_id_token(&app, &rp, &after).await;
    let kid = |t: &str| jsonwebtoken::decode_header(t).expect("header").kid;
    assert_ne!(kid(&before), kid(&after));
}

#[tokio::test]
async fn userinfo_refuses_missing_and_unknown_tokens() {
    let app = TestApp::new().await;
    let missing = app.get("/oidc/userinfo", None).await;
    oauth_error(&missing, StatusCode::UNAUTHORIZED, "invalid_token");
    assert_eq!(missing.headers[header::WWW_AUTHENTICATE], "Bearer realm=\"sesame\"");
    let unknown = send(&app, Method::GET, "/oidc/userinfo", &[("authorization", "Bearer nope")], None).await;
    oauth_error(&unknown, StatusCode::UNAUTHORIZED, "invalid_token");
}

#[tokio::test]
async fn the_token_endpoint_refuses_malformed_requests() {
    let app = TestApp::new().await;
    let rp = client(&app, false).await;
    let form = |body: &str| {
        send(
            &app,
            Method::POST,
            "/oidc/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(body.to_owned()),
        )
    };
    let secret = urlencode(rp.secret.as_deref().expect("secret"));
    oauth_error(
        &form(&format!("client_id={}&client_secret={secret}&grant_type=password", rp.client_id)).await,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    );
    oauth_error(
        &form(&format!("client_id={}&client_secret={secret}&grant_type=authorization_code", rp.client_id)).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    oauth_error(
        &form(&format!(
            "client_id={}&client_secret={secret}&grant_type=authorization_code&code=nope&redirect_uri=x",
            rp.client_id
        ))
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    oauth_error(&form("grant_type=authorization_code").await, StatusCode::UNAUTHORIZED, "invalid_client");
    let json =
        send(&app, Method::POST, "/oidc/token", &[("content-type", "application/json")], Some("{}".to_owned())).await;
    oauth_error(&json, StatusCode::BAD_REQUEST, "invalid_request");
}

/// PostgreSQL's text cannot hold a NUL byte: looking such a client id up
/// failed there as a database error (500). No client can have one, so the
/// client is unknown, on both databases.
#[tokio::test]
async fn a_client_id_that_no_client_could_have_is_an_unknown_client() {
    each_backend(|app| async move {
        client(&app, true).await;
        let form = [("content-type", "application/x-www-form-urlencoded")];
        let body = "grant_type=authorization_code&code=x&redirect_uri=x&client_id=a%00b".to_owned();
        oauth_error(
            &send(&app, Method::POST, "/oidc/token", &form, Some(body)).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        );
        // "a\0b:secret" in HTTP Basic.
        let basic = [("authorization", "Basic YQBiOnNlY3JldA=="), form[0]];
        let body = "grant_type=authorization_code&code=x&redirect_uri=x".to_owned();
        oauth_error(
            &send(&app, Method::POST, "/oidc/token", &basic, Some(body)).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        );
        let page =
            send(&app, Method::GET, "/oidc/authorize?response_type=code&scope=openid&client_id=a%00b", &[], None).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.text());
        assert!(page.text().contains("invalid_client"), "{}", page.text());
    })
    .await;
}

#[tokio::test]
async fn logout_with_an_id_token_hint_ends_the_session_and_goes_back() {
    let app = TestApp::new().await;
    let rp = client(&app, false).await;
    let (params, response) = code_for(&app, &rp, "olga").await;
    let name = format!("sesame_session_{}", rp.service);
    let session = format!("{name}={}", response.cookie(&name).expect("session"));
    let id_token =
        exchange(&app, &rp, &params["code"], Some(VERIFIER)).await.json()["id_token"].as_str().expect("id").to_owned();
    // Without a hint, the person is asked.
    let asked = app.get(&format!("/oidc/logout?client_id={}", rp.client_id), Some(&session)).await;
    assert_eq!(asked.status, StatusCode::OK);
    assert!(asked.text().contains("confirm-logout"));
    // A redirect URI that is not registered is refused outright.
    let wrong = app
        .get(
            &format!(
                "/oidc/logout?id_token_hint={id_token}&post_logout_redirect_uri={}",
                urlencode("https://evil.example/")
            ),
            Some(&session),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.headers.get(header::LOCATION).is_none());
    let out = app
        .get(
            &format!(
                "/oidc/logout?id_token_hint={id_token}&post_logout_redirect_uri={}&state=bye-1",
                urlencode("https://app.example/bye")
            ),
            Some(&session),
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.text());
    assert_eq!(out.headers[header::LOCATION], "https://app.example/bye?state=bye-1");
    assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 0);
    // The next authorization request needs a new sign-in.
    page(&app.get(&authorize_url(&rp, ""), Some(&session)).await);
}

/// On PostgreSQL a client removed while its authorization request is parked
/// breaks the request's foreign key: that must read as `invalid_client`, on
/// a page and with no redirect, not as a server error. Requests are rows
/// where pending challenges are (several instances); on one instance they
/// are held in memory, and the finish finds the client gone.
#[tokio::test]
async fn a_client_removed_while_its_request_is_parked_on_postgres_is_invalid_client() {
    if crate::support::postgres_url().is_none() {
        eprintln!("SESAME_TEST_POSTGRES_URL is not set: no PostgreSQL to race on");
        return;
    }
    let app = TestApp::builder(crate::support::Backend::Postgres)
        .pending(sesame_server::challenge::pending::Pending::Table)
        .build()
        .await;
    let rp = client(&app, true).await;
    let mut removing = app.sql.begin().await.expect("begin");
    sqlx::query("DELETE FROM oidc_application WHERE client_id = $1")
        .bind(&rp.client_id)
        .execute(&mut *removing)
        .await
        .expect("remove the client");
    let url = authorize_url(&rp, "");
    let (response, ()) = tokio::join!(app.get(&url, None), async {
        crate::support::until_waiting_on_locks(&app.sql, 1).await;
        removing.commit().await.expect("commit the removal");
    });
    assert_eq!(response.status, StatusCode::BAD_REQUEST, "{}", response.text());
    assert!(response.headers.get(header::LOCATION).is_none());
    assert!(response.text().contains("invalid_client"), "{}", response.text());
    assert_eq!(app.count("SELECT COUNT(*) FROM oidc_request").await, 0);
    app.cleanup_handle().run().await;
}

/// On PostgreSQL two key rotations at once (a double click, two admins)
/// must both succeed, one after the other, and leave one current, one next
/// and one retired key per algorithm: never two keys promoted at once.
#[tokio::test]
async fn a_key_rotation_racing_another_on_postgres_waits_for_it() {
    let Some(app) = crate::support::postgres_for_a_race().await else { return };
    let rotate = || send(&app, Method::POST, "/admin/api/oidc/keys/rotate", &[("authorization", ADMIN)], None);
    assert_eq!(rotate().await.status, StatusCode::OK);
    // Another rotation, in flight: every step but its commit.
    let mut other = app.sql.begin().await.expect("begin");
    for step in [
        "DELETE FROM oidc_signing_key WHERE state = 'retired'",
        "UPDATE oidc_signing_key SET state = 'retired' WHERE state = 'current'",
        "UPDATE oidc_signing_key SET state = 'current' WHERE state = 'next'",
        "INSERT INTO oidc_signing_key (kid, alg, state, private_der, public_jwk, created_at) \
         SELECT kid || 'b', alg, 'next', private_der, public_jwk, created_at FROM oidc_signing_key \
         WHERE state = 'current'",
    ] {
        sqlx::query(step).execute(&mut *other).await.unwrap_or_else(|e| panic!("{step}: {e}"));
    }
    let (rotated, ()) = tokio::join!(rotate(), async {
        crate::support::until_waiting_on_locks(&app.sql, 1).await;
        other.commit().await.expect("commit the other rotation");
    });
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
    for state in ["current", "next", "retired"] {
        let count = app.count(&format!("SELECT COUNT(*) FROM oidc_signing_key WHERE state = '{state}'")).await;
        assert_eq!(count, 2, "{state} keys, one per algorithm");
    }
    app.cleanup_handle().run().await;
}

/// On PostgreSQL, removing a key while a code it signed in with is being
/// exchanged: the exchange holds its code and then checks the key (the
/// token's foreign key), while the removal's cascade takes the key and then
/// its codes. The removal must wait for the exchange rather than deadlock
/// with it (PostgreSQL would end one of the two with an error).
#[tokio::test]
async fn removing_a_key_while_its_code_is_exchanged_on_postgres_waits_for_the_exchange() {
    let Some(app) = crate::support::postgres_for_a_race().await else { return };
    let rp = client(&app, true).await;
    code_for(&app, &rp, "mia").await;
    let key_id: String = sqlx::query_scalar("SELECT id FROM account_key").fetch_one(&app.sql).await.expect("mia's key");
    // An exchange, in flight: its code spent, its token still to be written.
    let mut exchange = app.sql.begin().await.expect("begin");
    sqlx::query("UPDATE oidc_code SET used_at = created_at").execute(&mut *exchange).await.expect("spend the code");
    let uri = format!("/admin/api/services/{}/accounts/mia/keys/{key_id}", rp.service);
    let (removed, ()) = tokio::join!(send(&app, Method::DELETE, &uri, &[("authorization", ADMIN)], None), async {
        crate::support::until_waiting_on_locks(&app.sql, 1).await;
        sqlx::query(
            "INSERT INTO oidc_token (token_hash, code_hash, client_id, service_id, account, key_id, scope, \
             created_at, expires_at) SELECT code_hash, code_hash, client_id, service_id, account, key_id, scope, \
             created_at, expires_at FROM oidc_code",
        )
        .execute(&mut *exchange)
        .await
        .expect("the token's foreign key finds the key, without a deadlock");
        exchange.commit().await.expect("the exchange commits");
    });
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text());
    // The key took its code and the token with it.
    assert_eq!(app.count("SELECT COUNT(*) FROM oidc_token").await, 0);
    app.cleanup_handle().run().await;
}

mod applications;
mod consent;
mod form_post;
mod groups;
mod profiles;
mod refresh;
