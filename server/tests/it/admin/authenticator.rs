//! Signing in to the admin page with a Sesame authenticator.

use sesame_proto::{AccountKey, AccountName, LoginRequest, RegisterRequest, UnverifiedToken};

use super::*;

/// The token text on a waiting page.
fn token_on(html: &str) -> String {
    let start = html.find(r#"<p class="token">"#).unwrap_or_else(|| panic!("no token in {html}")) + 17;
    html[start..].split('<').next().expect("token text").to_owned()
}

fn action_on(html: &str) -> String {
    let marker = r#"<form method="post" action=""#;
    let start = html.find(marker).expect("a form") + marker.len();
    html[start..].split('"').next().expect("closing quote").to_owned()
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().expect("name=value").to_owned()
}

async fn answer(h: &Harness, path: &str, body: Value) -> Reply {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    h.send(request).await
}

async fn register(h: &Harness, token: &str, name: &str, key: &AccountKey) -> Reply {
    let token = UnverifiedToken::parse(token).expect("token").verify(h.state.identity.public_key()).expect("ours");
    let request = RegisterRequest::sign(&token, &AccountName::parse(name).expect("name"), key);
    answer(h, "/api/authenticator/register", serde_json::to_value(request).expect("json")).await
}

async fn login(h: &Harness, token: &str, name: &str, key: &AccountKey) -> Reply {
    let token = UnverifiedToken::parse(token).expect("token").verify(h.state.identity.public_key()).expect("ours");
    let request = LoginRequest::sign(&token, &AccountName::parse(name).expect("name"), key);
    answer(h, "/api/authenticator/login", serde_json::to_value(request).expect("json")).await
}

/// A signed-in admin adds `key` as `name`.
async fn add(h: &Harness, name: &str, key: &AccountKey) {
    let (session, csrf) = h.sign_in().await;
    let page = h.post_form("/admin/authenticators", Some(&session), &[("csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let binding = cookie_pair(&page.set_cookie("sesame_browser").expect("binding cookie"));
    let reply = register(h, &token_on(&page.text), name, key).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let cookies = format!("{session}; {binding}");
    let done = h.post_form(&action_on(&page.text), Some(&cookies), &[("csrf", &csrf)]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    assert_eq!(done.location(), "/admin?done=authenticator_added");
}

/// Starts an admin sign-in in a fresh browser: its cookies (double-submit
/// and binding), its CSRF value and the waiting page.
async fn start(h: &Harness) -> (String, String, Reply) {
    let (pre_cookie, pre_csrf) = h.sign_in_form().await;
    let page = h.post_form("/admin/sesame", Some(&pre_cookie), &[("csrf", &pre_csrf)]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let binding = cookie_pair(&page.set_cookie("sesame_browser").expect("binding cookie"));
    (format!("{pre_cookie}; {binding}"), pre_csrf, page)
}

#[tokio::test]
async fn signs_in_with_an_added_authenticator() {
    let h = harness().await;
    let key = AccountKey::generate(&mut OsRng);
    add(&h, "laptop", &key).await;
    let (session, _) = h.sign_in().await;
    assert!(h.page("/admin", Some(&session)).await.text.contains("<td>laptop</td>"));

    let (cookies, csrf, page) = start(&h).await;
    let action = action_on(&page.text);
    // Continuing before approving shows a fresh code and no session.
    let early = h.post_form(&action, Some(&cookies), &[("csrf", &csrf)]).await;
    assert_eq!(early.status, StatusCode::OK);
    assert!(early.text.contains("Not approved yet"), "{}", early.text);
    assert!(early.set_cookie("sesame_admin").is_none());

    let reply = login(&h, &token_on(&early.text), "laptop", &key).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    // Another browser, without the binding cookie, cannot use the result.
    let (other_pre, other_csrf) = h.sign_in_form().await;
    let stolen = h.post_form(&action, Some(&other_pre), &[("csrf", &other_csrf)]).await;
    assert_eq!(stolen.status, StatusCode::UNAUTHORIZED);
    assert!(stolen.set_cookie("sesame_admin").is_none());

    let done = h.post_form(&action, Some(&cookies), &[("csrf", &csrf)]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    let admin = cookie_pair(&done.set_cookie("sesame_admin").expect("admin session"));
    assert!(h.page("/admin", Some(&admin)).await.text.contains("New service"));
    // One completed sign-in gives one session.
    let again = h.post_form(&action, Some(&cookies), &[("csrf", &csrf)]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.set_cookie("sesame_admin").is_none());
}

#[tokio::test]
async fn a_public_admin_challenge_takes_no_new_keys() {
    let h = harness().await;
    let (_, _, page) = start(&h).await;
    let reply = register(&h, &token_on(&page.text), "intruder", &AccountKey::generate(&mut OsRng)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert_eq!(reply.error_code(), "registration_closed");
    assert_eq!(h.count("SELECT COUNT(*) FROM account").await, 0);

    // Nor does one started through the public challenge API.
    let id: String = sqlx::query_scalar("SELECT id FROM service WHERE builtin")
        .fetch_one(&h.state.db.pool)
        .await
        .expect("the admin service exists");
    let started =
        h.send(Request::post(format!("/api/services/{id}/challenges")).body(Body::empty()).expect("request")).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.text);
    let token = started.json()["token"].as_str().expect("token").to_owned();
    let reply = register(&h, &token, "intruder", &AccountKey::generate(&mut OsRng)).await;
    assert_eq!(reply.error_code(), "registration_closed");
    // The built-in service is not one the API manages.
    assert_eq!(h.api(Method::GET, "/admin/api/services", None).await.json(), json!([]));
    let delete = h.api(Method::DELETE, &format!("/admin/api/services/{id}"), None).await;
    assert_eq!(delete.error_code(), "unknown_service");
}

#[tokio::test]
async fn a_removed_authenticator_cannot_sign_in() {
    let h = harness().await;
    let key = AccountKey::generate(&mut OsRng);
    add(&h, "old phone", &key).await;
    let (session, csrf) = h.sign_in().await;
    let refused = h.post_form("/admin/authenticators/delete", Some(&session), &[("name", "old phone")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let reply =
        h.post_form("/admin/authenticators/delete", Some(&session), &[("csrf", &csrf), ("name", "old phone")]).await;
    assert_eq!(reply.location(), "/admin?done=authenticator_removed");
    let (_, _, page) = start(&h).await;
    let reply = login(&h, &token_on(&page.text), "old phone", &key).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error_code(), "unknown_account");
}

#[tokio::test]
async fn adding_needs_a_signed_in_admin_and_the_csrf_token() {
    let h = harness().await;
    let anonymous = h.post_form("/admin/authenticators", None, &[("csrf", "x")]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let (session, _) = h.sign_in().await;
    let forged = h.post_form("/admin/authenticators", Some(&session), &[("csrf", "x")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(h.count("SELECT COUNT(*) FROM challenge").await, 0);
}
