//! Helpers shared by the server's tests: a fresh database per test (SQLite
//! always, PostgreSQL too when `SESAME_TEST_POSTGRES_URL` is set), a manual
//! clock, HTTP through `app(app).oneshot`, and a simulated authenticator
//! that signs with `sesame-proto` like the real one.

#![allow(dead_code, unreachable_pub)]

use std::{future::Future, sync::Arc, time::Duration};

use axum::{
    body::Body,
    http::{header, HeaderMap, Method, Request, StatusCode},
    Router,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine as _};
use futures_util::StreamExt as _;
use http_body_util::BodyExt as _;
use rand::{rngs::OsRng, RngCore as _};
use serde_json::Value;
use sesame_proto::{BaseToken, Origin, ServerKey, ServiceId, Token, UnixTime, UnverifiedToken};
use sesame_server::{
    app,
    bus::Bus,
    challenge::{
        pending::{self, Pending},
        row::ChallengeRow,
        Challenges,
    },
    clock::{Clock, ManualClock},
    db::Db,
    http::limit::StreamLimits,
    oidc::Provider,
    serve::{self, ServeOptions},
    signin::passkey::RelyingParty,
    state::{AdminToken, Identity, Limits, Settings, Shared},
    App, AppState,
};
use sqlx::{Connection as _, Executor as _};
use tempfile::TempDir;
use tower::ServiceExt as _;

pub const ORIGIN: &str = "http://sesame.test";
pub const START: u64 = 1_767_225_600;
pub const USER_AGENT: &str = "TestBrowser/1.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// SQLite always; PostgreSQL as well when `SESAME_TEST_POSTGRES_URL` names a
/// server (for example `postgres://postgres@127.0.0.1:5432`).
pub fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    if postgres_url().is_some() {
        all.push(Backend::Postgres);
    }
    all
}

/// A PostgreSQL test app for a race, or None (said on stderr) when no
/// PostgreSQL is configured: the races these tests stage need its row locks.
pub async fn postgres_for_a_race() -> Option<TestApp> {
    if postgres_url().is_none() {
        eprintln!("SESAME_TEST_POSTGRES_URL is not set: no PostgreSQL to race on");
        return None;
    }
    Some(TestApp::builder(Backend::Postgres).build().await)
}

/// Waits until `count` connections to `pool`'s PostgreSQL database wait on
/// a lock: the moment a race staged by a test has its contender blocked.
/// Waiting on `pg_stat_activity` rather than sleeping keeps the race
/// deterministic.
pub async fn until_waiting_on_locks(pool: &sqlx::AnyPool, count: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .expect("pg_stat_activity");
        if waiting >= count {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{count} connections never waited on a lock");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub fn postgres_url() -> Option<String> {
    std::env::var("SESAME_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()).map(|u| u.trim_end_matches('/').to_owned())
}

/// Runs `test` once per available backend, each with a fresh database.
pub async fn each_backend<F, Fut>(test: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    for backend in backends() {
        let app = TestApp::builder(backend).build().await;
        let cleanup = app.cleanup_handle();
        test(app).await;
        cleanup.run().await;
    }
}

/// How a test app is set up.
#[derive(Debug)]
pub struct Builder {
    backend: Backend,
    settings: Settings,
    limits: Limits,
    clock: Option<Arc<dyn Clock>>,
    redis_url: Option<String>,
    pending: Option<Pending>,
}

impl Builder {
    pub fn rotation(mut self, secs: u8) -> Self {
        self.settings.rotation_secs = secs;
        self
    }

    pub fn ttl(mut self, secs: u64) -> Self {
        self.settings.challenge_ttl_secs = secs;
        self
    }

    pub fn rate_limit(mut self, per_minute: u32) -> Self {
        self.limits = Limits::per_minute(per_minute).with_streams(self.limits.streams);
        self
    }

    pub fn streams(mut self, limits: StreamLimits) -> Self {
        self.limits = self.limits.with_streams(limits);
        self
    }

    /// Keeps pending challenges in `pending`, rather than as the server
    /// would (in memory without Redis, in the table with it).
    pub fn pending(mut self, pending: Pending) -> Self {
        self.pending = Some(pending);
        self
    }

    /// Delivers results, and keeps rate limits, through this Redis server.
    pub fn redis(mut self, url: &str) -> Self {
        self.redis_url = Some(url.to_owned());
        self
    }

    /// Uses the system clock instead of the manual one (for real-time SSE
    /// rotation).
    pub fn system_clock(mut self) -> Self {
        self.clock = Some(Arc::new(sesame_server::clock::SystemClock));
        self
    }

    pub async fn build(self) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, pg_name) = match self.backend {
            Backend::Sqlite => (Db::sqlite_url(dir.path()), None),
            Backend::Postgres => {
                let base = postgres_url().expect("SESAME_TEST_POSTGRES_URL is set");
                let mut id = [0u8; 8];
                OsRng.fill_bytes(&mut id);
                let name = format!("sesame_test_{}", hex::encode(id));
                sqlx::any::install_default_drivers();
                let mut admin =
                    sqlx::AnyConnection::connect(&format!("{base}/postgres")).await.expect("connect to PostgreSQL");
                admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create the test database");
                admin.close().await.expect("close");
                (format!("{base}/{name}"), Some((base, name)))
            }
        };
        let db = Db::connect(&url).await.expect("connect and migrate");
        let sql = outside(&url).await;
        let manual = ManualClock::new(UnixTime::from_secs(START));
        let clock = self.clock.unwrap_or_else(|| Arc::new(manual.clone()));
        // As the server does: pending challenges in memory on one instance.
        let (bus, pending) = match &self.redis_url {
            Some(url) => (Bus::redis(url, "sesame-test").await.expect("a Redis bus"), Pending::Table),
            None => (Bus::local(), Pending::memory(pending::GRACE_SECS)),
        };
        let pending = self.pending.unwrap_or(pending);
        let state = AppState::new(Shared {
            db,
            limits: self.limits.shared_through(&bus),
            bus,
            clock,
            identity: Arc::new(Identity::new(ServerKey::generate(&mut OsRng))),
            settings: Arc::new(self.settings),
            admin_token: Arc::new(AdminToken::new("test-admin-token-0123456789")),
        });
        let App { state, challenges, oidc, relying_party } =
            App::new(state, pending, Provider::default()).expect("the app");
        TestApp { state, challenges, oidc, relying_party, sql, clock: manual, url, _dir: dir, pg_name }
    }
}

/// A pool of connections of its own to the database at `url`, beside the
/// app's: a test reads and plants rows through it as an operator would
/// with `sqlite3` or `psql`, never through the app's own lanes.
pub async fn outside(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let sqlite = url.starts_with("sqlite:");
    sqlx::any::AnyPoolOptions::new()
        .max_connections(4)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if sqlite {
                    conn.execute("PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;").await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .expect("connect to the test database")
}

#[derive(Debug)]
pub struct TestApp {
    pub state: AppState,
    pub challenges: Challenges,
    pub oidc: Provider,
    pub relying_party: RelyingParty,
    /// The test's own connections to the app's database (see [`outside`]).
    pub sql: sqlx::AnyPool,
    /// Moves the app's time unless it was built with `system_clock`.
    pub clock: ManualClock,
    /// The database's URL, for a second instance over it.
    url: String,
    _dir: TempDir,
    pg_name: Option<(String, String)>,
}

/// Drops a test's PostgreSQL database once the test is done with it.
#[derive(Debug)]
pub struct Cleanup {
    db: Db,
    pool: sqlx::AnyPool,
    pg_name: Option<(String, String)>,
}

impl Cleanup {
    pub async fn run(self) {
        self.pool.close().await;
        self.db.close().await;
        if let Some((base, name)) = self.pg_name {
            let mut admin =
                sqlx::AnyConnection::connect(&format!("{base}/postgres")).await.expect("connect to PostgreSQL");
            admin
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await
                .expect("drop the test database");
        }
    }
}

impl TestApp {
    pub fn builder(backend: Backend) -> Builder {
        let mut settings = Settings::new(Origin::parse(ORIGIN).expect("valid origin"));
        settings.challenge_ttl_secs = 300;
        Builder { backend, settings, limits: Limits::per_minute(0), clock: None, redis_url: None, pending: None }
    }

    /// A SQLite app with default settings.
    pub async fn new() -> Self {
        Self::builder(Backend::Sqlite).build().await
    }

    /// The URL of this app's database.
    pub fn database_url(&self) -> String {
        self.url.clone()
    }

    /// A second instance of this app's deployment: the same database,
    /// reached through `db`, its own connections; pending challenges as
    /// rows, as instances that share a database keep them. It leaves the
    /// database to this app's cleanup.
    pub fn sibling(&self, db: Db) -> TestApp {
        let state = self.state.with(|shared| shared.db = db);
        let App { state, challenges, oidc, relying_party } =
            App::new(state, Pending::Table, Provider::default()).expect("the app");
        TestApp {
            state,
            challenges,
            oidc,
            relying_party,
            sql: self.sql.clone(),
            clock: self.clock.clone(),
            url: self.url.clone(),
            _dir: tempfile::tempdir().expect("temp dir"),
            pg_name: None,
        }
    }

    pub fn cleanup_handle(&self) -> Cleanup {
        Cleanup { db: self.state.db.clone(), pool: self.sql.clone(), pg_name: self.pg_name.clone() }
    }

    /// The whole app, as the server assembles it.
    pub fn app(&self) -> App {
        App {
            state: self.state.clone(),
            challenges: self.challenges.clone(),
            oidc: self.oidc.clone(),
            relying_party: self.relying_party.clone(),
        }
    }

    pub fn router(&self) -> Router {
        app(self.app())
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self.router().oneshot(request).await.expect("the router never fails");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.expect("body").to_bytes().to_vec();
        TestResponse { status, headers, body }
    }

    pub async fn get(&self, uri: &str, cookie: Option<&str>) -> TestResponse {
        self.send(request(Method::GET, uri, cookie, None)).await
    }

    pub async fn post(&self, uri: &str, cookie: Option<&str>) -> TestResponse {
        self.send(request(Method::POST, uri, cookie, None)).await
    }

    pub async fn post_json(&self, uri: &str, body: &impl serde::Serialize) -> TestResponse {
        let body = serde_json::to_vec(body).expect("serialise");
        self.send(request(Method::POST, uri, None, Some(body))).await
    }

    /// Creates a service directly in the database.
    pub async fn create_service(&self, name: &str) -> ServiceId {
        let id = ServiceId::random(&mut OsRng);
        sqlx::query("INSERT INTO service (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(id.to_string())
            .bind(name.to_owned())
            .bind(START as i64)
            .execute(&self.sql)
            .await
            .expect("insert service");
        id
    }

    /// Starts a sign-in as a fresh browser would, through the JSON API.
    pub async fn start(&self, service: &ServiceId) -> Started {
        self.start_with(service, None).await
    }

    pub async fn start_with(&self, service: &ServiceId, cookie: Option<&str>) -> Started {
        let response = self.post(&format!("/api/services/{service}/challenges"), cookie).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
        let json = response.json();
        let id = json["challenge_id"].as_str().expect("id").to_owned();
        let name = format!("sesame_browser_{id}");
        let cookie = response.cookie(&name).expect("binding cookie set");
        Started {
            token: json["token"].as_str().expect("token").to_owned(),
            cookie: format!("{name}={cookie}"),
            id,
            json,
        }
    }

    /// The token text the page shows now (what the SSE stream would push).
    pub async fn current_token(&self, cid: &str) -> String {
        let row = self.held(cid).await;
        let base = BaseToken::from_stored(row.base_token, self.state.identity.public_key()).expect("stored token");
        let secret = row.code_secret;
        base.at_step(&secret, base.step_at(self.state.clock.now()))
    }

    /// The authenticator's view of a token: parsed and verified against the
    /// server key (which a real authenticator would have pinned).
    pub fn verify(&self, text: &str) -> Token {
        UnverifiedToken::parse(text).expect("parse").verify(self.state.identity.public_key()).expect("verify")
    }

    /// Challenge `cid` as the server holds it: in memory while it is pending
    /// on one instance, otherwise its row.
    pub async fn held(&self, cid: &str) -> ChallengeRow {
        self.challenges.load(&cid.parse().expect("a challenge id")).await.expect("a challenge")
    }

    /// `(status, hint, account)` as held.
    pub async fn stored(&self, cid: &str) -> (String, String, Option<String>) {
        let row = self.held(cid).await;
        (row.status.as_str().to_owned(), row.hint, row.account)
    }

    /// Every challenge the server knows: those it holds in memory, and the
    /// rows of the challenge table.
    pub async fn every_challenge(&self) -> Vec<ChallengeRow> {
        let mut all = match self.challenges.pending() {
            Pending::Memory(memory) => memory.snapshot(),
            Pending::Table => Vec::new(),
        };
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM challenge").fetch_all(&self.sql).await.expect("ids");
        for id in ids {
            if !all.iter().any(|row| row.id.to_string() == id) {
                all.push(self.held(&id).await);
            }
        }
        all
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.sql).await.expect("count")
    }

    /// Serves the app on a real socket with the server's own accept loop,
    /// for SSE. Returns the base URL.
    pub async fn serve(&self) -> String {
        self.serve_with(ServeOptions {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 0,
            drain: Duration::from_secs(1),
        })
        .await
    }

    pub async fn serve_with(&self, options: ServeOptions) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let router = self.router();
        tokio::spawn(async move {
            serve::serve(listener, router, options, std::future::pending()).await.expect("serve");
        });
        format!("http://{addr}")
    }
}

/// A browser's challenge: its id, first token and binding cookie.
#[derive(Debug)]
pub struct Started {
    pub id: String,
    pub token: String,
    /// `sesame_browser_<id>=…`, ready for a `Cookie` header.
    pub cookie: String,
    pub json: Value,
}

impl Started {
    /// This browser's binding secret presented for challenge `cid`: what a
    /// browser that started another challenge could forge at best.
    pub fn cookie_for(&self, cid: &str) -> String {
        format!("sesame_browser_{cid}={}", self.cookie.split_once('=').expect("name=value").1)
    }
}

pub fn request(method: Method, uri: &str, cookie: Option<&str>, json: Option<Vec<u8>>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri).header(header::USER_AGENT, USER_AGENT);
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    let body = match json {
        Some(bytes) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from(bytes)
        }
        None => Body::empty(),
    };
    builder.body(body).expect("request")
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The stable error code of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error code in {}", self.text())).to_owned()
    }

    /// Asserts the status and the error code together.
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!((self.status, self.error().as_str()), (status, code), "{}", self.text());
    }

    /// The value a `Set-Cookie` header gives cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookie(name).map(|line| {
            let first = line.split(';').next().unwrap_or_default();
            first.split_once('=').map(|(_, v)| v.to_owned()).unwrap_or_default()
        })
    }

    /// The whole `Set-Cookie` line for cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub id: String,
    pub data: Value,
}

/// Reads events from a real `text/event-stream` response.
pub struct SseReader {
    stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    buffer: String,
}

impl std::fmt::Debug for SseReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SseReader")
    }
}

impl SseReader {
    /// Opens `url` with the binding cookie (and `Last-Event-ID` if given).
    pub async fn open(url: &str, cookie: &str, last_event_id: Option<&str>) -> Self {
        let mut request =
            reqwest::Client::new().get(url).header("cookie", cookie).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("connect");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self { stream: Box::pin(response.bytes_stream()), buffer: String::new() }
    }

    /// The next event, or `None` when the server ended the stream. Waits at
    /// most 10 s so that a missing event fails the test instead of hanging.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if event.is_empty() {
                    continue; // a keep-alive comment
                }
                let data = serde_json::from_str(&data).expect("event data is JSON");
                return Some(SseEvent { event, id, data });
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("no event within 10 s")?
                .expect("stream error");
            self.buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

/// `len` random bytes, base64url: for forged values.
pub fn random_b64(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    OsRng.fill_bytes(&mut bytes);
    B64.encode(bytes)
}
