//! Adding an authenticator to an existing account (PROTOCOL.md §11, §12):
//! from the signed-in account page, and from an admin's recovery link. Each
//! test names the property it guards; every one runs on SQLite, and on
//! PostgreSQL when `SESAME_TEST_POSTGRES_URL` is set.

use axum::{
    body::Body,
    http::{header, Method, Request, StatusCode},
};
use rand::rngs::OsRng;
use serde_json::{json, Value};
use sesame_proto::{
    AccountKey, AccountName, ChallengeId, ConfirmationCode, DenyRequest, EnrollRequest, KeyLabel, LoginRequest,
    RegisterRequest, ServiceId,
};

use crate::support::{each_backend, TestApp, TestResponse, ORIGIN, USER_AGENT};

const TOKEN: &str = "test-admin-token-0123456789";

pub(crate) fn name(text: &str) -> AccountName {
    AccountName::parse(text).expect("valid name")
}

/// A request as a browser on our own origin sends it, with `fields` as a
/// form body when given.
fn browser(
    method: Method,
    uri: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
    fields: &[(&str, &str)],
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri).header(header::USER_AGENT, USER_AGENT);
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    if let Some(origin) = origin {
        builder = builder.header(header::ORIGIN, origin);
    }
    let body = fields.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(Body::from(body)).expect("request")
}

pub(crate) async fn admin_api(app: &TestApp, method: Method, uri: &str, body: Option<&str>) -> TestResponse {
    let mut builder =
        Request::builder().method(method).uri(uri).header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    if body.is_some() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    app.send(builder.body(Body::from(body.unwrap_or_default().to_owned())).expect("request")).await
}

/// Registers `account` through a whole challenge; returns its key.
pub(crate) async fn register(app: &TestApp, service: &ServiceId, account: &str) -> AccountKey {
    let started = app.start(service).await;
    let key = AccountKey::generate(&mut OsRng);
    let request = RegisterRequest::sign(&app.verify(&started.token), &name(account), &key);
    let response = app.post_json("/api/authenticator/register", &request).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    key
}

/// A login with `key` on a fresh challenge, as the authenticator sends it.
pub(crate) async fn login(app: &TestApp, service: &ServiceId, account: &str, key: &AccountKey) -> TestResponse {
    let started = app.start(service).await;
    let request = LoginRequest::sign(&app.verify(&started.token), &name(account), key);
    app.post_json("/api/authenticator/login", &request).await
}

/// Signs a browser in as `account` with `key`; returns its session cookie
/// as `name=value`.
pub(crate) async fn session(app: &TestApp, service: &ServiceId, account: &str, key: &AccountKey) -> String {
    let started = app.start(service).await;
    let request = LoginRequest::sign(&app.verify(&started.token), &name(account), key);
    assert_eq!(app.post_json("/api/authenticator/login", &request).await.status, StatusCode::OK);
    let redeemed = app.post(&format!("/api/challenges/{}/session", started.id), Some(&started.cookie)).await;
    assert_eq!(redeemed.status, StatusCode::OK, "{}", redeemed.text());
    let cookie_name = format!("sesame_session_{service}");
    format!("{cookie_name}={}", redeemed.cookie(&cookie_name).expect("a session cookie"))
}

/// A waiting enrollment page as the browser got it.
#[derive(Debug)]
pub(crate) struct Waiting {
    cid: String,
    pub(crate) token: String,
    /// The binding cookie, `name=value`.
    pub(crate) cookie: String,
    page: TestResponse,
}

impl Waiting {
    fn of(page: TestResponse) -> Self {
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let line = page
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("sesame_browser_"))
            .expect("the page sets a binding cookie");
        assert!(line.contains("SameSite=Strict") && line.contains("HttpOnly"), "{line}");
        let cookie = line.split(';').next().expect("name=value").to_owned();
        let cid = cookie.trim_start_matches("sesame_browser_").split('=').next().expect("id").to_owned();
        let text = page.text();
        let token = between(&text, r#"<code id="token" class="token">"#, "<").to_owned();
        Self { cid, token, cookie, page }
    }

    fn challenge_id(&self) -> ChallengeId {
        self.cid.parse().expect("a challenge id")
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("no {start:?} in {text}")) + start.len();
    text[from..].split(end).next().expect("an end")
}

/// "Add another authenticator" on the account page.
/// The page "Add another authenticator" opens. Its browser holds the new
/// binding cookie and, still, its session: `cookie` sends both, as a
/// browser would.
pub(crate) async fn start_enrollment(app: &TestApp, service: &ServiceId, session: &str) -> Waiting {
    let uri = format!("/services/{service}/account/enroll");
    let mut waiting = Waiting::of(app.send(browser(Method::POST, &uri, Some(session), Some(ORIGIN), &[])).await);
    waiting.cookie = format!("{}; {session}", waiting.cookie);
    waiting
}

/// Opens a recovery link (its URL's path) in a fresh browser.
async fn open_link(app: &TestApp, url: &str) -> TestResponse {
    let path = url.strip_prefix(ORIGIN).expect("an absolute URL on our origin");
    app.send(browser(Method::GET, path, None, None, &[])).await
}

/// The new authenticator's answer to an enrollment token.
pub(crate) async fn enroll(
    app: &TestApp,
    token: &str,
    account: &str,
    key: &AccountKey,
    label: Option<&str>,
) -> TestResponse {
    let label = label.map(|l| KeyLabel::parse(l).expect("label"));
    let request = EnrollRequest::sign(&app.verify(token), &name(account), key, label.as_ref());
    app.post_json("/api/authenticator/enroll", &request).await
}

pub(crate) async fn enrollment_page(
    app: &TestApp,
    service: &ServiceId,
    w: &Waiting,
    cookie: Option<&str>,
) -> TestResponse {
    app.send(browser(Method::GET, &format!("/services/{service}/enroll/{}", w.cid), cookie, None, &[])).await
}

/// The confirmation page's hidden key id.
pub(crate) fn key_id_on(page: &TestResponse) -> String {
    between(&page.text(), r#"name="key_id" value=""#, "\"").to_owned()
}

pub(crate) async fn confirm(app: &TestApp, service: &ServiceId, w: &Waiting, key_id: &str) -> TestResponse {
    let uri = format!("/services/{service}/enroll/{}/confirm", w.cid);
    app.send(browser(Method::POST, &uri, Some(&w.cookie), Some(ORIGIN), &[("key_id", key_id)])).await
}

pub(crate) async fn reject(app: &TestApp, service: &ServiceId, w: &Waiting) -> TestResponse {
    let uri = format!("/services/{service}/enroll/{}/reject", w.cid);
    app.send(browser(Method::POST, &uri, Some(&w.cookie), Some(ORIGIN), &[])).await
}

/// An HTML error page with this status, naming this error code.
fn assert_page_error(page: &TestResponse, status: StatusCode, code: &str) {
    assert_eq!(page.status, status, "{}", page.text());
    assert!(page.headers[header::CONTENT_TYPE].to_str().expect("ascii").starts_with("text/html"));
    assert!(page.text().contains(code), "{}", page.text());
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
}

/// Makes a recovery link through the admin API; returns its JSON.
async fn make_link(app: &TestApp, service: &ServiceId, account: &str, body: Value) -> Value {
    let uri = format!("/admin/api/services/{service}/accounts/{account}/enrollments");
    let response = admin_api(app, Method::POST, &uri, Some(&body.to_string())).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    response.json()
}

#[tokio::test]
async fn self_service_enrollment_adds_a_key_only_after_the_page_confirms_it() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let session = session(&app, &service, "alice", &laptop).await;

        // The signed-in page links to the account page, which lists the key.
        let home = app.get(&format!("/services/{service}"), Some(&session)).await;
        assert!(home.text().contains(&format!(r#"href="/services/{service}/account""#)), "{}", home.text());
        let account = app.get(&format!("/services/{service}/account"), Some(&session)).await;
        assert_eq!(account.status, StatusCode::OK, "{}", account.text());
        assert_eq!(account.headers[header::CACHE_CONTROL], "no-store");
        let grouped = laptop.public_key().key_id().to_string();
        let grouped = grouped.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).expect("hex")).collect::<Vec<_>>();
        assert!(account.text().contains(&grouped.join(" ")), "fingerprint in groups of four: {}", account.text());
        assert!(account.text().contains("Add another authenticator"));

        let waiting = start_enrollment(&app, &service, &session).await;
        let text = waiting.page.text();
        assert!(text.contains("Scan this with the authenticator you want to add"), "{text}");
        assert!(text.contains(r#"<span id="account-name">alice</span>"#), "{text}");
        assert!(text.contains(r#"data-mode="enroll""#) && text.contains("/static/login.js"), "{text}");
        assert!(text.contains("<svg"), "a QR code drawn on the server");
        assert_eq!(waiting.page.headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(app.verify(&waiting.token).claims().challenge_id, waiting.challenge_id());

        // The new authenticator answers: its key waits, and signs nobody in.
        let phone = AccountKey::generate(&mut OsRng);
        let answer = enroll(&app, &waiting.token, "alice", &phone, Some("phone")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        assert_eq!(
            answer.json(),
            json!({"status": "completed", "purpose": "enroll", "account": "alice", "key_state": "pending"})
        );
        login(&app, &service, "alice", &phone).await.assert_error(StatusCode::FORBIDDEN, "key_pending");
        // Neither the JSON redemption nor the page gives this browser a
        // session for the enrollment.
        app.post(&format!("/api/challenges/{}/session", waiting.cid), Some(&waiting.cookie))
            .await
            .assert_error(StatusCode::CONFLICT, "not_completed");
        let status = app.get(&format!("/api/challenges/{}", waiting.cid), Some(&waiting.cookie)).await.json();
        assert_eq!((status["status"].as_str(), status["purpose"].as_str()), (Some("completed"), Some("enroll")));

        // The page shows the code the new authenticator computes.
        let page = enrollment_page(&app, &service, &waiting, Some(&waiting.cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        assert!(page.headers.get_all(header::SET_COOKIE).iter().next().is_none(), "no cookie, so no session");
        let code = ConfirmationCode::of(&waiting.challenge_id(), &phone.public_key());
        assert!(page.text().contains(&format!(r#"id="confirmation-code">{code}<"#)), "{}", page.text());
        assert!(page.text().contains("phone") && page.text().contains(USER_AGENT));
        assert!(page.text().contains("Confirm — my authenticator shows the same code"));

        // The binding cookie alone, after the session ended (signed out
        // here, or on another tab), confirms nothing.
        let binding_only = waiting.cookie.split("; ").next().expect("the binding cookie").to_owned();
        let uri = format!("/services/{service}/enroll/{}/confirm", waiting.cid);
        let key_id = key_id_on(&page);
        let refused =
            app.send(browser(Method::POST, &uri, Some(&binding_only), Some(ORIGIN), &[("key_id", &key_id)])).await;
        assert_page_error(&refused, StatusCode::UNAUTHORIZED, "sign_in_required");
        login(&app, &service, "alice", &phone).await.assert_error(StatusCode::FORBIDDEN, "key_pending");

        let done = confirm(&app, &service, &waiting, &key_id).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.text());
        assert!(done.text().contains("phone can now sign in as alice."), "{}", done.text());
        assert!(done.headers.get_all(header::SET_COOKIE).iter().next().is_none());
        assert_eq!(login(&app, &service, "alice", &phone).await.status, StatusCode::OK);
        assert_eq!(login(&app, &service, "alice", &laptop).await.status, StatusCode::OK);
        // Reloaded, the page says it is done; the challenge is still no session.
        let again = enrollment_page(&app, &service, &waiting, Some(&waiting.cookie)).await;
        assert!(again.text().contains("Authenticator added"), "{}", again.text());
        app.post(&format!("/api/challenges/{}/session", waiting.cid), Some(&waiting.cookie))
            .await
            .assert_error(StatusCode::CONFLICT, "not_completed");
        let account = app.get(&format!("/services/{service}/account"), Some(&session)).await;
        assert_eq!(account.text().matches("<code>").count(), 2, "{}", account.text());
        // The new key is in the audit log, and nothing else is.
        let audit = admin_api(&app, Method::GET, "/admin/api/audit", None).await.json();
        let [record] = audit.as_array().expect("a list").as_slice() else { panic!("one record: {audit}") };
        assert_eq!(
            (&record["action"], &record["actor"], &record["target"], &record["detail"]),
            (
                &json!("key_enrolled"),
                &json!("account:alice"),
                &json!("alice"),
                &json!(format!("service {service}, key {key_id}"))
            )
        );
    })
    .await;
}

/// An enrollment's page and its status speak of adding an authenticator,
/// not of signing in, when it waits, is refused and is cancelled.
#[tokio::test]
async fn an_enrollment_speaks_of_adding_an_authenticator_not_of_signing_in() {
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    let key = register(&app, &service, "alice").await;
    let session = session(&app, &service, "alice", &key).await;

    let refused = start_enrollment(&app, &service, &session).await;
    let page = refused.page.text();
    assert!(page.contains("paste the token into the authenticator you want to add"), "{page}");
    assert!(!page.contains("your Sesame authenticator."), "the sign-in wording: {page}");
    let deny = DenyRequest::sign(&app.verify(&refused.token), &AccountKey::generate(&mut OsRng));
    assert_eq!(app.post_json("/api/authenticator/deny", &deny).await.status, StatusCode::OK);
    let status = app.get(&format!("/api/challenges/{}", refused.cid), Some(&refused.cookie)).await.json();
    assert_eq!(status["message"], "The authenticator refused to be added.", "{status}");

    let cancelled = start_enrollment(&app, &service, &session).await;
    let response = app.post(&format!("/api/challenges/{}/cancel", cancelled.cid), Some(&cancelled.cookie)).await;
    assert_eq!(response.json()["message"], "You cancelled adding an authenticator.", "{}", response.text());
}

#[tokio::test]
async fn enrollment_and_sign_in_challenges_never_complete_each_other() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let key = register(&app, &service, "alice").await;
        register(&app, &service, "bob").await;
        let session = session(&app, &service, "alice", &key).await;
        let waiting = start_enrollment(&app, &service, &session).await;
        let token = app.verify(&waiting.token);
        let stranger = AccountKey::generate(&mut OsRng);

        // An enrollment for alice adds no key to bob.
        enroll(&app, &waiting.token, "bob", &stranger, None).await.assert_error(StatusCode::FORBIDDEN, "wrong_account");
        // Nor does it register or sign anyone in.
        let register = RegisterRequest::sign(&token, &name("carol"), &stranger);
        app.post_json("/api/authenticator/register", &register)
            .await
            .assert_error(StatusCode::FORBIDDEN, "wrong_purpose");
        let login = LoginRequest::sign(&token, &name("alice"), &key);
        app.post_json("/api/authenticator/login", &login).await.assert_error(StatusCode::FORBIDDEN, "wrong_purpose");
        // A sign-in challenge adds no key.
        let started = app.start(&service).await;
        enroll(&app, &started.token, "alice", &stranger, None)
            .await
            .assert_error(StatusCode::FORBIDDEN, "wrong_purpose");

        assert_eq!(app.stored(&waiting.cid).await.0, "pending", "refusals leave the enrollment open");
        assert_eq!(app.stored(&started.id).await.0, "pending");
        assert_eq!(app.count("SELECT COUNT(*) FROM account").await, 2);
        assert_eq!(app.count("SELECT COUNT(*) FROM account_key").await, 2);
    })
    .await;
}

#[tokio::test]
async fn only_the_browser_that_started_an_enrollment_can_confirm_it() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let key = register(&app, &service, "alice").await;
        let session = session(&app, &service, "alice", &key).await;

        // No session: the account page and its form send the browser to sign in.
        let page = app.get(&format!("/services/{service}/account"), None).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(page.headers[header::LOCATION], format!("/services/{service}"));
        let uri = format!("/services/{service}/account/enroll");
        let post = app.send(browser(Method::POST, &uri, None, Some(ORIGIN), &[])).await;
        assert_eq!(post.status, StatusCode::SEE_OTHER);
        // Another site's form is refused even with the session cookie.
        let forged = app.send(browser(Method::POST, &uri, Some(&session), Some("https://evil.example"), &[])).await;
        assert_page_error(&forged, StatusCode::FORBIDDEN, "csrf_rejected");
        assert!(!app.every_challenge().await.iter().any(|c| c.enroll_account.is_some()));

        let waiting = start_enrollment(&app, &service, &session).await;
        let phone = AccountKey::generate(&mut OsRng);
        assert_eq!(enroll(&app, &waiting.token, "alice", &phone, None).await.status, StatusCode::OK);
        let mine = enrollment_page(&app, &service, &waiting, Some(&waiting.cookie)).await;
        let key_id = key_id_on(&mine);

        // Whoever has the link but not the binding cookie sees nothing.
        assert_page_error(
            &enrollment_page(&app, &service, &waiting, None).await,
            StatusCode::UNAUTHORIZED,
            "binding_required",
        );
        let other = app.start(&service).await;
        let theirs = other.cookie_for(&waiting.cid);
        assert_page_error(
            &enrollment_page(&app, &service, &waiting, Some(&theirs)).await,
            StatusCode::FORBIDDEN,
            "wrong_browser",
        );
        let confirm_uri = format!("/services/{service}/enroll/{}/confirm", waiting.cid);
        let fields = [("key_id", key_id.as_str())];
        let refused = app.send(browser(Method::POST, &confirm_uri, None, Some(ORIGIN), &fields)).await;
        assert_page_error(&refused, StatusCode::UNAUTHORIZED, "binding_required");
        let refused = app.send(browser(Method::POST, &confirm_uri, Some(&theirs), Some(ORIGIN), &fields)).await;
        assert_page_error(&refused, StatusCode::FORBIDDEN, "wrong_browser");
        let reject_uri = format!("/services/{service}/enroll/{}/reject", waiting.cid);
        let refused = app.send(browser(Method::POST, &reject_uri, Some(&theirs), Some(ORIGIN), &[])).await;
        assert_page_error(&refused, StatusCode::FORBIDDEN, "wrong_browser");
        // Nor does another site's form, though the browser's cookie goes with it.
        let cross = app
            .send(browser(Method::POST, &confirm_uri, Some(&waiting.cookie), Some("https://evil.example"), &fields))
            .await;
        assert_page_error(&cross, StatusCode::FORBIDDEN, "csrf_rejected");
        // A service's page does not serve another service's challenge.
        let elsewhere = app.create_service("Elsewhere").await;
        assert_page_error(
            &enrollment_page(&app, &elsewhere, &waiting, Some(&waiting.cookie)).await,
            StatusCode::NOT_FOUND,
            "unknown_challenge",
        );
        // A sign-in challenge is no enrollment page either.
        let sign_in = app.get(&format!("/services/{service}/enroll/{}", other.id), Some(&other.cookie)).await;
        assert_page_error(&sign_in, StatusCode::NOT_FOUND, "unknown_challenge");

        login(&app, &service, "alice", &phone).await.assert_error(StatusCode::FORBIDDEN, "key_pending");
        assert_eq!(confirm(&app, &service, &waiting, &key_id).await.status, StatusCode::OK);
        assert_eq!(login(&app, &service, "alice", &phone).await.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn a_glimpsed_enrollment_token_gives_the_attacker_a_code_the_owner_refuses() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let session = session(&app, &service, "alice", &laptop).await;
        let waiting = start_enrollment(&app, &service, &session).await;

        // Someone who saw the QR code answers first, with their own key.
        let attacker = AccountKey::generate(&mut OsRng);
        assert_eq!(enroll(&app, &waiting.token, "alice", &attacker, Some("phone")).await.status, StatusCode::OK);
        // The owner's authenticator is too late; the code it would show is
        // not the one on the page.
        let phone = AccountKey::generate(&mut OsRng);
        enroll(&app, &waiting.token, "alice", &phone, Some("phone"))
            .await
            .assert_error(StatusCode::CONFLICT, "challenge_used");
        let page = enrollment_page(&app, &service, &waiting, Some(&waiting.cookie)).await;
        let theirs = ConfirmationCode::of(&waiting.challenge_id(), &attacker.public_key()).to_string();
        let owners = ConfirmationCode::of(&waiting.challenge_id(), &phone.public_key()).to_string();
        assert_ne!(theirs, owners);
        assert!(page.text().contains(&theirs) && !page.text().contains(&owners), "{}", page.text());

        let refused = reject(&app, &service, &waiting).await;
        assert_eq!(refused.status, StatusCode::OK, "{}", refused.text());
        assert!(refused.text().contains("alice is as it was"), "{}", refused.text());
        // The attacker's key is gone; alice and her laptop are untouched.
        assert_eq!(login(&app, &service, "alice", &attacker).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(login(&app, &service, "alice", &laptop).await.status, StatusCode::OK);
        assert_eq!(app.count("SELECT COUNT(*) FROM account_key").await, 1);
        assert_eq!(app.get(&format!("/services/{service}/account"), Some(&session)).await.status, StatusCode::OK);
        // Nothing is left to confirm, by that key id or any other.
        let confirmed = confirm(&app, &service, &waiting, &key_id_on(&page)).await;
        assert_page_error(&confirmed, StatusCode::CONFLICT, "nothing_to_confirm");
        let again = enrollment_page(&app, &service, &waiting, Some(&waiting.cookie)).await;
        assert!(again.text().contains("Authenticator refused"), "{}", again.text());
    })
    .await;
}

#[tokio::test]
async fn a_recovery_link_works_once() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let link = make_link(&app, &service, "alice", json!({})).await;
        let url = link["url"].as_str().expect("url");
        assert!(url.starts_with(&format!("{ORIGIN}/services/{service}/recover/")), "{url}");
        assert_eq!(link["expires_at"], "2026-01-02T00:00:00Z", "a day by default");

        // Two browsers open it; the first to confirm uses it up.
        let first = Waiting::of(open_link(&app, url).await);
        assert_eq!(first.page.headers[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(first.page.headers[header::CACHE_CONTROL], "no-store");
        assert!(first.page.text().contains("Scan this with the authenticator you want to add"));
        let second = Waiting::of(open_link(&app, url).await);
        let (phone, spare) = (AccountKey::generate(&mut OsRng), AccountKey::generate(&mut OsRng));
        assert_eq!(enroll(&app, &first.token, "alice", &phone, None).await.status, StatusCode::OK);
        assert_eq!(enroll(&app, &second.token, "alice", &spare, None).await.status, StatusCode::OK);
        let page = enrollment_page(&app, &service, &first, Some(&first.cookie)).await;
        let done = confirm(&app, &service, &first, &key_id_on(&page)).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.text());
        assert!(done.text().contains("can now sign in as alice."), "{}", done.text());

        let page = enrollment_page(&app, &service, &second, Some(&second.cookie)).await;
        assert_page_error(
            &confirm(&app, &service, &second, &key_id_on(&page)).await,
            StatusCode::GONE,
            "recovery_link_spent",
        );
        login(&app, &service, "alice", &spare).await.assert_error(StatusCode::FORBIDDEN, "key_pending");
        assert_page_error(&open_link(&app, url).await, StatusCode::GONE, "recovery_link_spent");
        // Without revoke_other_keys, the old key stays.
        assert_eq!(login(&app, &service, "alice", &phone).await.status, StatusCode::OK);
        assert_eq!(login(&app, &service, "alice", &laptop).await.status, StatusCode::OK);
        // A made-up secret is no link.
        let made_up = format!("{ORIGIN}/services/{service}/recover/{}", crate::support::random_b64(32));
        let unknown = open_link(&app, &made_up).await;
        assert_page_error(&unknown, StatusCode::NOT_FOUND, "unknown_recovery_link");
        assert_eq!(unknown.headers[header::REFERRER_POLICY], "no-referrer");
    })
    .await;
}

#[tokio::test]
async fn a_recovery_link_expires_and_a_page_opened_before_cannot_confirm_after() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        register(&app, &service, "alice").await;
        let link = make_link(&app, &service, "alice", json!({"ttl_secs": 600})).await;
        let url = link["url"].as_str().expect("url");
        let waiting = Waiting::of(open_link(&app, url).await);
        let phone = AccountKey::generate(&mut OsRng);
        assert_eq!(enroll(&app, &waiting.token, "alice", &phone, None).await.status, StatusCode::OK);
        let page = enrollment_page(&app, &service, &waiting, Some(&waiting.cookie)).await;

        app.clock.advance(600);
        assert_page_error(&open_link(&app, url).await, StatusCode::GONE, "recovery_link_spent");
        let late = confirm(&app, &service, &waiting, &key_id_on(&page)).await;
        assert_page_error(&late, StatusCode::GONE, "recovery_link_spent");
        login(&app, &service, "alice", &phone).await.assert_error(StatusCode::FORBIDDEN, "key_pending");
        let listed =
            admin_api(&app, Method::GET, &format!("/admin/api/services/{service}/accounts/alice/enrollments"), None)
                .await;
        assert_eq!(listed.json()[0]["state"], "expired");
        assert_eq!(listed.json()[0]["used_at"], Value::Null);
    })
    .await;
}

#[tokio::test]
async fn a_revoked_recovery_link_opens_nothing_and_its_open_page_cannot_confirm() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        register(&app, &service, "alice").await;
        let link = make_link(&app, &service, "alice", json!({"revoke_other_keys": true})).await;
        let url = link["url"].as_str().expect("url");
        let waiting = Waiting::of(open_link(&app, url).await);
        let phone = AccountKey::generate(&mut OsRng);
        assert_eq!(enroll(&app, &waiting.token, "alice", &phone, None).await.status, StatusCode::OK);
        let page = enrollment_page(&app, &service, &waiting, Some(&waiting.cookie)).await;

        let uri =
            format!("/admin/api/services/{service}/accounts/alice/enrollments/{}", link["id"].as_str().expect("id"));
        assert_eq!(admin_api(&app, Method::DELETE, &uri, None).await.status, StatusCode::NO_CONTENT);
        admin_api(&app, Method::DELETE, &uri, None).await.assert_error(StatusCode::NOT_FOUND, "unknown_recovery_link");

        assert_page_error(&open_link(&app, url).await, StatusCode::NOT_FOUND, "unknown_recovery_link");
        let late = confirm(&app, &service, &waiting, &key_id_on(&page)).await;
        assert_page_error(&late, StatusCode::GONE, "recovery_link_spent");
        assert_eq!(app.count("SELECT COUNT(*) FROM account_key WHERE state = 'active'").await, 1, "nothing removed");
        login(&app, &service, "alice", &phone).await.assert_error(StatusCode::FORBIDDEN, "key_pending");
    })
    .await;
}

#[tokio::test]
async fn revoke_other_keys_removes_the_other_keys_and_ends_their_sessions() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let old_session = session(&app, &service, "alice", &laptop).await;
        let bob = register(&app, &service, "bob").await;
        let bobs_session = session(&app, &service, "bob", &bob).await;
        let account = format!("/services/{service}/account");
        assert_eq!(app.get(&account, Some(&old_session)).await.status, StatusCode::OK);

        let link = make_link(&app, &service, "alice", json!({"revoke_other_keys": true, "ttl_secs": 3600})).await;
        let waiting = Waiting::of(open_link(&app, link["url"].as_str().expect("url")).await);
        let phone = AccountKey::generate(&mut OsRng);
        assert_eq!(enroll(&app, &waiting.token, "alice", &phone, Some("phone")).await.status, StatusCode::OK);
        let page = enrollment_page(&app, &service, &waiting, Some(&waiting.cookie)).await;
        let done = confirm(&app, &service, &waiting, &key_id_on(&page)).await;
        assert!(
            done.text()
                .contains("phone can now sign in as alice, and the account&#39;s other authenticators were removed.")
                || done.text().contains(
                    "phone can now sign in as alice, and the account&#x27;s other authenticators were removed."
                ),
            "{}",
            done.text()
        );

        // The old key and the session it opened are gone at once.
        assert_eq!(login(&app, &service, "alice", &laptop).await.status, StatusCode::UNAUTHORIZED);
        let page = app.get(&account, Some(&old_session)).await;
        assert_eq!(page.headers[header::LOCATION], format!("/services/{service}"), "the old session ended");
        assert_eq!(login(&app, &service, "alice", &phone).await.status, StatusCode::OK);
        // Another account is not touched.
        assert_eq!(app.get(&account, Some(&bobs_session)).await.status, StatusCode::OK);
        assert_eq!(login(&app, &service, "bob", &bob).await.status, StatusCode::OK);
        let listed =
            admin_api(&app, Method::GET, &format!("/admin/api/services/{service}/accounts/alice/enrollments"), None)
                .await;
        assert_eq!(listed.json()[0]["state"], "used");
        assert_eq!(listed.json()[0]["revoke_other_keys"], true);
    })
    .await;
}

#[tokio::test]
async fn the_admin_api_refuses_bad_recovery_link_requests_and_writes_nothing() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        register(&app, &service, "alice").await;
        let uri = format!("/admin/api/services/{service}/accounts/alice/enrollments");
        let cases: [(&str, &str, StatusCode, &str); 9] = [
            (&uri, r#"{"ttl_secs": 59}"#, StatusCode::BAD_REQUEST, "invalid_ttl"),
            (&uri, r#"{"ttl_secs": 86401}"#, StatusCode::BAD_REQUEST, "invalid_ttl"),
            (&uri, r#"{"ttl_secs": -1}"#, StatusCode::BAD_REQUEST, "invalid_ttl"),
            (&uri, r#"{"ttl_secs": 600, "revoke": true}"#, StatusCode::BAD_REQUEST, "invalid_json"),
            (&uri, r#"{"ttl_secs": "600"}"#, StatusCode::BAD_REQUEST, "invalid_json"),
            (&uri, r#"{"ttl_secs": 600"#, StatusCode::BAD_REQUEST, "invalid_json"),
            (
                &format!("/admin/api/services/{service}/accounts/bob/enrollments"),
                "{}",
                StatusCode::NOT_FOUND,
                "unknown_account",
            ),
            (
                &format!("/admin/api/services/{}/accounts/alice/enrollments", ServiceId::random(&mut OsRng)),
                "{}",
                StatusCode::NOT_FOUND,
                "unknown_service",
            ),
            (
                &format!("/admin/api/services/{service}/accounts/%00/enrollments"),
                "{}",
                StatusCode::NOT_FOUND,
                "unknown_account",
            ),
        ];
        for (uri, body, status, code) in cases {
            let response = admin_api(&app, Method::POST, uri, Some(body)).await;
            response.assert_error(status, code);
            assert!(response.json()["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", response.text());
        }
        // The built-in admin service's accounts (admin authenticators) get no link.
        let config = <sesame_server::Config as clap::Parser>::parse_from(["sesame-server"]);
        sesame_server::admin::on_start(&app.state, &config).await.expect("the admin service");
        let admin_service: String = sqlx::query_scalar("SELECT id FROM service WHERE builtin")
            .fetch_one(&app.sql)
            .await
            .expect("the admin service");
        sqlx::query("INSERT INTO account (service_id, name, subject, created_at) VALUES ($1, 'root', $2, 0)")
            .bind(&admin_service)
            .bind(sesame_server::signin::keys::new_id())
            .execute(&app.sql)
            .await
            .expect("an admin account");
        let builtin = format!("/admin/api/services/{admin_service}/accounts/root/enrollments");
        admin_api(&app, Method::POST, &builtin, Some("{}"))
            .await
            .assert_error(StatusCode::NOT_FOUND, "unknown_service");
        // No token, no link.
        let anonymous = app.post_json(&uri, &json!({})).await;
        anonymous.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(app.count("SELECT COUNT(*) FROM account_recovery").await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM audit_event").await, 0);
        // Listing an unknown account, or revoking an unknown link, is told apart.
        let missing = format!("/admin/api/services/{service}/accounts/bob/enrollments");
        admin_api(&app, Method::GET, &missing, None).await.assert_error(StatusCode::NOT_FOUND, "unknown_account");
        for link in ["0".repeat(32), "%00".to_owned(), "x".to_owned()] {
            admin_api(&app, Method::DELETE, &format!("{uri}/{link}"), None)
                .await
                .assert_error(StatusCode::NOT_FOUND, "unknown_recovery_link");
        }
    })
    .await;
}

#[tokio::test]
async fn recovery_links_are_listed_without_secrets_and_audited_when_made_revoked_and_used() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        register(&app, &service, "alice").await;
        let uri = format!("/admin/api/services/{service}/accounts/alice/enrollments");
        let revoked = make_link(&app, &service, "alice", json!({"ttl_secs": 60})).await;
        app.clock.advance(1);
        let used = make_link(&app, &service, "alice", json!({"ttl_secs": 86400, "revoke_other_keys": false})).await;
        let revoke_uri = format!("{uri}/{}", revoked["id"].as_str().expect("id"));
        assert_eq!(admin_api(&app, Method::DELETE, &revoke_uri, None).await.status, StatusCode::NO_CONTENT);
        let waiting = Waiting::of(open_link(&app, used["url"].as_str().expect("url")).await);
        let phone = AccountKey::generate(&mut OsRng);
        assert_eq!(enroll(&app, &waiting.token, "alice", &phone, None).await.status, StatusCode::OK);
        let page = enrollment_page(&app, &service, &waiting, Some(&waiting.cookie)).await;
        assert_eq!(confirm(&app, &service, &waiting, &key_id_on(&page)).await.status, StatusCode::OK);

        let listed = admin_api(&app, Method::GET, &uri, None).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
        let secret = used["url"].as_str().expect("url").rsplit('/').next().expect("secret").to_owned();
        assert!(!listed.text().contains(&secret), "the list never holds a secret");
        assert_eq!(
            listed.json(),
            json!([
                {"id": used["id"], "revoke_other_keys": false, "created_by": "token", "created_at": "2026-01-01T00:00:01Z",
                 "expires_at": "2026-01-02T00:00:01Z", "used_at": "2026-01-01T00:00:01Z", "revoked_at": null, "state": "used"},
                {"id": revoked["id"], "revoke_other_keys": false, "created_by": "token", "created_at": "2026-01-01T00:00:00Z",
                 "expires_at": "2026-01-01T00:01:00Z", "used_at": null, "revoked_at": "2026-01-01T00:00:01Z", "state": "revoked"},
            ])
        );
        let audit = admin_api(&app, Method::GET, "/admin/api/audit", None).await.json();
        let actions: Vec<(&str, &str, &str)> = audit
            .as_array()
            .expect("a list")
            .iter()
            .map(|r| (r["action"].as_str().unwrap_or(""), r["actor"].as_str().unwrap_or(""), r["target"].as_str().unwrap_or("")))
            .collect();
        let used_id = used["id"].as_str().expect("id");
        assert_eq!(
            actions,
            [
                ("recovery_link_used", format!("recovery:{used_id}").as_str(), "alice"),
                ("recovery_link_revoked", "token", "alice"),
                ("recovery_link_created", "token", "alice"),
                ("recovery_link_created", "token", "alice"),
            ]
        );
        assert!(!audit.to_string().contains(&secret), "nor does the audit log");
    })
    .await;
}
