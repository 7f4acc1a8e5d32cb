//! The admin side: the JSON API with its bearer token, and the web page with
//! its sign-in, session cookie and CSRF tokens.

use std::sync::Arc;

use axum::{
    body::Body,
    http::{header, HeaderMap, Method, Request, StatusCode},
    Router,
};
use clap::Parser as _;
use http_body_util::BodyExt as _;
use rand::rngs::OsRng;
use serde_json::{json, Value};
use sesame_proto::{Origin, ServerKey, UnixTime};
use tempfile::TempDir;
use tower::ServiceExt as _;

use crate::support;
use sesame_server::{
    bus::Bus,
    clock::ManualClock,
    db::Db,
    state::{AdminToken, Identity, Limits, Settings},
    AppState, Config,
};

/// The token `support::TestApp` sets, so both harnesses take one token.
const TOKEN: &str = "test-admin-token-0123456789";
const ORIGIN: &str = "http://127.0.0.1:8080";
/// 2026-01-01T00:00:00Z
const START: u64 = 1_767_225_600;
const XSS: &str = "<script>alert(1)</script>";

struct Harness {
    app: Router,
    state: AppState,
    _guard: Guard,
}

/// What keeps a harness's database alive.
enum Guard {
    Dir(TempDir),
    App(Box<support::TestApp>),
}

impl Harness {
    /// A harness over one of the shared test apps (SQLite or PostgreSQL).
    fn over(app: support::TestApp) -> Self {
        Self { app: sesame_server::app(app.state.clone()), state: app.state.clone(), _guard: Guard::App(Box::new(app)) }
    }
}

async fn harness_with(origin: &str, rate_limit: u32) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::connect(&Db::sqlite_url(dir.path())).await.expect("database");
    let state = AppState {
        db,
        bus: Bus::local(),
        clock: Arc::new(ManualClock::new(UnixTime::from_secs(START))),
        identity: Arc::new(Identity::new(ServerKey::generate(&mut OsRng))),
        settings: Arc::new(Settings::new(Origin::parse(origin).expect("origin"))),
        admin_token: Arc::new(AdminToken::new(TOKEN)),
        limits: Limits::per_minute(rate_limit),
    };
    Harness { app: sesame_server::app(state.clone()), state, _guard: Guard::Dir(dir) }
}

async fn harness() -> Harness {
    harness_with(ORIGIN, 0).await
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn error_code(&self) -> String {
        self.json()["error"].as_str().expect("an error code").to_owned()
    }

    /// The value a `Set-Cookie` header gives cookie `name`, with its
    /// attributes.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ascii cookie").to_owned())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    fn location(&self) -> &str {
        self.headers.get(header::LOCATION).expect("a redirect").to_str().expect("ascii location")
    }
}

impl Harness {
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        Reply { status, headers, text: String::from_utf8(bytes.to_vec()).expect("UTF-8 body") }
    }

    async fn api(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        self.api_with(method, uri, body, Some(TOKEN)).await
    }

    async fn api_with(&self, method: Method, uri: &str, body: Option<Value>, token: Option<&str>) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(value) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(value.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).expect("request")).await
    }

    async fn create(&self, name: &str) -> Value {
        let reply = self.api(Method::POST, "/admin/api/services", Some(json!({ "name": name }))).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.json()
    }

    async fn add_account(&self, service_id: &str, name: &str, created_at: i64, last_login_at: Option<i64>) {
        sqlx::query(
            "INSERT INTO account (service_id, name, public_key, created_at, last_login_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(service_id)
        .bind(name)
        .bind(vec![7u8; 32])
        .bind(created_at)
        .bind(last_login_at)
        .execute(&self.state.db.pool)
        .await
        .expect("insert account");
    }

    async fn add_event(&self, service_id: &str, kind: &str, account: Option<&str>, user_agent: &str, at: i64) {
        sqlx::query(
            "INSERT INTO sign_in_event (service_id, challenge_id, kind, account, ip, user_agent, at) \
             VALUES ($1, $2, $3, $4, '203.0.113.7', $5, $6)",
        )
        .bind(service_id)
        .bind("ab".repeat(16))
        .bind(kind)
        .bind(account)
        .bind(user_agent)
        .bind(at)
        .execute(&self.state.db.pool)
        .await
        .expect("insert event");
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.state.db.pool).await.expect("count")
    }

    async fn page(&self, uri: &str, cookie: Option<&str>) -> Reply {
        let mut request = Request::builder().uri(uri);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        self.send(request.body(Body::empty()).expect("request")).await
    }

    async fn post_form(&self, uri: &str, cookie: Option<&str>, fields: &[(&str, &str)]) -> Reply {
        self.post_form_from(uri, cookie, fields, None).await
    }

    async fn post_form_from(
        &self,
        uri: &str,
        cookie: Option<&str>,
        fields: &[(&str, &str)],
        origin: Option<&str>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        let body = fields.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&");
        self.send(request.body(Body::from(body)).expect("request")).await
    }

    /// Loads the sign-in form: the double-submit cookie (as `name=value`) and
    /// the hidden field's value.
    async fn sign_in_form(&self) -> (String, String) {
        let reply = self.page("/admin", None).await;
        assert_eq!(reply.status, StatusCode::OK);
        let set = reply.set_cookie("sesame_admin_csrf").expect("the sign-in form sets its CSRF cookie");
        let cookie = set.split(';').next().expect("name=value").to_owned();
        (cookie, hidden_csrf(&reply.text))
    }

    /// Signs in through the form; returns the session cookie (as
    /// `name=value`) and the session's CSRF token.
    async fn sign_in(&self) -> (String, String) {
        let (pre_cookie, pre_csrf) = self.sign_in_form().await;
        let reply = self.post_form("/admin/signin", Some(&pre_cookie), &[("csrf", &pre_csrf), ("token", TOKEN)]).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
        assert_eq!(reply.location(), "/admin");
        let set = reply.set_cookie("sesame_admin").expect("a session cookie");
        let cookie = set.split(';').next().expect("name=value").to_owned();
        let page = self.page("/admin", Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK);
        (cookie, hidden_csrf(&page.text))
    }
}

/// Percent-encodes everything but letters and digits.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn hidden_csrf(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).unwrap_or_else(|| panic!("no CSRF field in {html}")) + marker.len();
    html[start..].split('"').next().expect("closing quote").to_owned()
}

// ---- JSON API ----

#[tokio::test]
async fn api_creates_a_service_with_id_name_and_login_url() {
    let h = harness().await;
    let body = h.create("Example").await;
    let id = body["id"].as_str().expect("id");
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{id}");
    assert_eq!(body["name"], "Example");
    assert_eq!(body["login_url"], format!("{ORIGIN}/services/{id}"));
    assert_eq!(body.as_object().expect("object").len(), 3);
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
    sqlx::query("UPDATE service SET created_at = created_at - 10").execute(&h.state.db.pool).await.expect("age");
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
    .execute(&h.state.db.pool)
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

// ---- web page ----

#[tokio::test]
async fn page_without_session_shows_the_sign_in_form() {
    let h = harness().await;
    let reply = h.page("/admin", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text.contains(r#"type="password""#), "{}", reply.text);
    assert!(reply.text.contains(r#"action="/admin/signin""#));
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    let cookie = reply.set_cookie("sesame_admin_csrf").expect("CSRF cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
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
    let cookie = reply.set_cookie("sesame_admin").expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Secure", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert_eq!(h.count("SELECT COUNT(*) FROM admin_session").await, 1);
    let stored: i64 = sqlx::query_scalar("SELECT expires_at - created_at FROM admin_session")
        .fetch_one(&h.state.db.pool)
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
    assert_eq!(duplicate.location(), "/admin?error=service_exists");
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
    let reply = h.post_form(&uri, Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location(), "/admin?done=service_deleted");
    assert_eq!(h.count("SELECT COUNT(*) FROM service WHERE NOT builtin").await, 0);
    let again = h.post_form(&uri, Some(&cookie), &[("csrf", &csrf)]).await;
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
    let reply = h.post_form(&uri, Some(&cookie), &[("csrf", &csrf), ("name", "alice")]).await;
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
    let clock = ManualClock::new(UnixTime::from_secs(START));
    let state = AppState {
        db: Db::connect(&Db::sqlite_url(dir.path())).await.expect("database"),
        bus: Bus::local(),
        clock: Arc::new(clock.clone()),
        identity: Arc::new(Identity::new(ServerKey::generate(&mut OsRng))),
        settings: Arc::new(Settings::new(Origin::parse(ORIGIN).expect("origin"))),
        admin_token: Arc::new(AdminToken::new(TOKEN)),
        limits: Limits::per_minute(0),
    };
    let h = Harness { app: sesame_server::app(state.clone()), state, _guard: Guard::Dir(dir) };
    let (cookie, _) = h.sign_in().await;
    clock.advance(12 * 3600 - 1);
    assert!(h.page("/admin", Some(&cookie)).await.text.contains("New service"));
    clock.advance(1);
    assert!(h.page("/admin", Some(&cookie)).await.text.contains(r#"type="password""#));
}

// ---- start-up ----

#[tokio::test]
async fn demo_creates_one_demo_service_however_often_it_starts() {
    let h = harness().await;
    let config = Config::parse_from(["sesame-server", "--demo"]);
    sesame_server::admin::on_start(&h.state, &config).await.expect("first start");
    sesame_server::admin::on_start(&h.state, &config).await.expect("second start");
    let list = h.api(Method::GET, "/admin/api/services", None).await.json();
    assert_eq!(list.as_array().expect("list").len(), 1);
    assert_eq!(list[0]["name"], "Demo");

    let plain = harness().await;
    sesame_server::admin::on_start(&plain.state, &Config::parse_from(["sesame-server"])).await.expect("start");
    assert_eq!(plain.count("SELECT COUNT(*) FROM service WHERE NOT builtin").await, 0);
}

// ---- signing in to the admin page with an authenticator ----

mod with_authenticator {
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
        let reply = h
            .post_form("/admin/authenticators/delete", Some(&session), &[("csrf", &csrf), ("name", "old phone")])
            .await;
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
}
