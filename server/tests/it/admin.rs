//! The admin side: the JSON API with its bearer token, and the web page with
//! its sign-in, session cookie and CSRF tokens. This file holds the harness;
//! the tests sit in the submodules.

mod api;
mod applications;
mod audit;
mod authenticator;
mod groups;
mod keys;
mod page;
mod passkeys;
mod profiles;
mod recovery;

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
use tower::ServiceExt as _;

use crate::support;
use sesame_server::{
    bus::Bus,
    challenge::pending::{Pending, GRACE_SECS},
    clock::ManualClock,
    db::Db,
    oidc::Provider,
    state::{AdminToken, Identity, Limits, Settings, Shared},
    App, AppState, Config,
};

/// The token `support::TestApp` sets, so both harnesses take one token.
const TOKEN: &str = "test-admin-token-0123456789";
const ORIGIN: &str = "http://127.0.0.1:8080";
/// 2026-01-01T00:00:00Z
const START: u64 = 1_767_225_600;
const XSS: &str = "<script>alert(1)</script>";
/// The field a destructive admin form carries once the person confirmed it
/// on the page that asks first.
const CONFIRMED: (&str, &str) = ("confirmed", "yes");

struct Harness {
    app: Router,
    state: AppState,
    challenges: sesame_server::challenge::Challenges,
    /// The test's own connections to the database (`TestApp::sql`).
    sql: sqlx::AnyPool,
    /// Keeps the database (a temp dir, or a shared test app) alive.
    _guard: Box<dyn std::any::Any + Send>,
}

impl Harness {
    /// A harness over one of the shared test apps (SQLite or PostgreSQL).
    fn over(app: support::TestApp) -> Self {
        Self::serving(app.app(), app.sql.clone(), Box::new(app))
    }

    /// A harness serving `app`, whose database the test reaches through
    /// `sql`; `guard` keeps what it needs alive.
    fn serving(app: App, sql: sqlx::AnyPool, guard: Box<dyn std::any::Any + Send>) -> Self {
        Self {
            state: app.state.clone(),
            challenges: app.challenges.clone(),
            app: sesame_server::app(app),
            sql,
            _guard: guard,
        }
    }

    /// A single instance over `state`, as the server runs without Redis.
    fn single(state: AppState, sql: sqlx::AnyPool, guard: Box<dyn std::any::Any + Send>) -> Self {
        Self::serving(App::new(state, Pending::memory(GRACE_SECS), Provider::default()).expect("the app"), sql, guard)
    }
}

async fn harness_with(origin: &str, rate_limit: u32) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    // One instance with the in-process bus: pending challenges in memory.
    let url = Db::sqlite_url(dir.path());
    let db = Db::connect(&url).await.expect("database");
    let state = AppState::new(Shared {
        db,
        bus: Bus::local(),
        clock: Arc::new(ManualClock::new(UnixTime::from_secs(START))),
        identity: Arc::new(Identity::new(ServerKey::generate(&mut OsRng))),
        settings: Arc::new(Settings::new(Origin::parse(origin).expect("origin"))),
        admin_token: Arc::new(AdminToken::new(TOKEN)),
        limits: Limits::per_minute(rate_limit),
    });
    Harness::single(state, support::outside(&url).await, Box::new(dir))
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

    /// The binding cookie a page that started a challenge sets, as
    /// `name=value`.
    fn binding(&self) -> String {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ascii cookie"))
            .find(|v| v.starts_with("sesame_browser_"))
            .and_then(|v| v.split(';').next())
            .expect("a binding cookie")
            .to_owned()
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
            "INSERT INTO account (service_id, name, subject, created_at, last_login_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(service_id)
        .bind(name)
        .bind(sesame_server::signin::keys::new_id())
        .bind(created_at)
        .bind(last_login_at)
        .execute(&self.sql)
        .await
        .expect("insert account");
        let key = sesame_proto::AccountKey::generate(&mut OsRng).public_key();
        sqlx::query(
            "INSERT INTO account_key (id, service_id, account, public_key, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(sesame_server::signin::keys::new_id())
        .bind(service_id)
        .bind(name)
        .bind(key.to_bytes().to_vec())
        .bind(created_at)
        .execute(&self.sql)
        .await
        .expect("insert key");
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
        .execute(&self.sql)
        .await
        .expect("insert event");
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.sql).await.expect("count")
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
        let prefix = if self.state.settings.secure_cookies() { "__Host-" } else { "" };
        let set =
            reply.set_cookie(&format!("{prefix}sesame_admin_csrf")).expect("the sign-in form sets its CSRF cookie");
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
