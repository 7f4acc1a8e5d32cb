//! The end-to-end harness: real `sesame-server` and `sesame` processes, a
//! browser-like HTTP client with a cookie jar, and test-owned Redis and
//! PostgreSQL databases.
//!
//! Every test gets its own data directory, port, database and Redis server, so
//! tests run in parallel and leftovers of one run never meet the next.

use std::{
    io::{BufRead as _, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::Value;
use tempfile::TempDir;

pub mod oidc;
pub mod proxy;
pub mod rp;

pub type Result<T> = anyhow::Result<T>;

/// The admin token every test server is started with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// The workspace root (the folder that holds the workspace `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate sits in the workspace").to_owned()
}

/// Builds the two binaries once per test process and returns the folder that
/// holds them. Running `cargo build` here, rather than trusting whatever is in
/// `target/`, means a test never runs against a stale binary, unless
/// `SESAME_TEST_BIN_DIR` names a folder of binaries to use instead.
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // A folder of binaries built beforehand, for instance to measure an
        // older build against a newer one with the same benchmark.
        if let Some(dir) = std::env::var_os("SESAME_TEST_BIN_DIR") {
            return PathBuf::from(dir);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        // Under `cargo run` or `cargo test` this process carries the
        // variables cargo sets for a running crate (CARGO_MANIFEST_DIR and
        // the like). A dependency's build script watches some of them, so
        // passing them on would make this nested build recompile the world
        // each time; it must see the environment of a plain `cargo build`.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let set_by_cargo = ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_BIN_", "CARGO_CRATE_", "CARGO_PRIMARY_"]
                .iter()
                .any(|prefix| name.starts_with(prefix));
            if set_by_cargo || name == "OUT_DIR" {
                command.env_remove(name.as_ref());
            }
        }
        // Debug builds ask for what `cargo test --workspace` builds (every
        // package, tests included), so that cargo unifies the dependencies'
        // features as it did for the test run: the build is then already
        // done. Naming only the two packages would unify fewer features and
        // rebuild every shared dependency a second time. A release build
        // (the benchmark) needs only the binaries.
        let profile: &[&str] = if cfg!(debug_assertions) {
            &["--workspace", "--bins", "--tests"]
        } else {
            &["--release", "-p", "sesame-server", "-p", "sesame", "--bins"]
        };
        let status = command
            .args(["build", "--quiet"])
            .args(profile)
            .current_dir(workspace_root())
            .status()
            .expect("cannot run cargo to build the binaries");
        assert!(status.success(), "building sesame-server and sesame failed");
        // Test executables live in target/<profile>/deps/, other binaries of
        // this crate (the benchmark) in target/<profile>/.
        let exe = std::env::current_exe().expect("the test executable has a path");
        let dir = exe.parent().expect("an executable sits in a folder");
        if dir.ends_with("deps") { dir.parent().expect("deps sits in target/<profile>") } else { dir }.to_owned()
    })
}

pub fn server_bin() -> PathBuf {
    bin_dir().join("sesame-server")
}

pub fn sesame_bin() -> PathBuf {
    bin_dir().join("sesame")
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free port")
}

/// Options for [`Server::start`]. Defaults suit most tests: SQLite in a temp
/// dir, in-process bus, rate limits off.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub port: Option<u16>,
    pub public_url: Option<String>,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub challenge_ttl: Option<u64>,
    pub rotation: Option<u8>,
    pub code_window: Option<u64>,
    /// Requests per minute per IP; `None` turns limits off for tests.
    pub rate_limit: Option<u32>,
    /// `SESAME_LOG`; `None` means `info,sesame_server=debug`.
    pub log_filter: Option<String>,
    pub extra_args: Vec<String>,
}

/// A running `sesame-server` process, killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:PORT`, where the test reaches it.
    pub base: String,
    /// The origin in its tokens (`--public-url`, or `base`).
    pub origin: String,
    pub data_dir: TempDir,
    pub options: ServerOptions,
}

impl Server {
    pub async fn start() -> Result<Self> {
        Self::start_with(ServerOptions::default()).await
    }

    pub async fn start_with(options: ServerOptions) -> Result<Self> {
        let data_dir = tempfile::Builder::new().prefix("sesame-e2e-").tempdir()?;
        Self::spawn(options, data_dir).await
    }

    async fn spawn(options: ServerOptions, data_dir: TempDir) -> Result<Self> {
        let port = options.port.unwrap_or_else(free_port);
        let base = format!("http://127.0.0.1:{port}");
        let origin = options.public_url.clone().unwrap_or_else(|| base.clone());
        let mut cmd = Command::new(server_bin());
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir.path())
            .arg("--admin-token")
            .arg(ADMIN_TOKEN)
            .arg("--rate-limit")
            .arg(options.rate_limit.unwrap_or(0).to_string())
            .env("SESAME_LOG", options.log_filter.as_deref().unwrap_or("info,sesame_server=debug"))
            .env_remove("SESAME_DATABASE_URL")
            .env_remove("SESAME_REDIS_URL");
        let optional = [
            ("--public-url", options.public_url.clone()),
            ("--database-url", options.database_url.clone()),
            ("--redis-url", options.redis_url.clone()),
            ("--challenge-ttl", options.challenge_ttl.map(|v| v.to_string())),
            ("--rotation", options.rotation.map(|v| v.to_string())),
            ("--code-window", options.code_window.map(|v| v.to_string())),
        ];
        for (flag, value) in optional {
            if let Some(value) = value {
                cmd.arg(flag).arg(value);
            }
        }
        cmd.args(&options.extra_args);
        let log = std::fs::File::create(data_dir.path().join("server.log"))?;
        cmd.stdout(log.try_clone()?).stderr(log).stdin(Stdio::null());
        let child = cmd.spawn().context("cannot start sesame-server")?;
        let mut server = Self { child, port, base, origin, data_dir, options };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("sesame-server exited with {status} before it was ready:\n{}", self.log());
            }
            if let Ok(res) = client.get(self.url("/healthz")).send().await {
                if res.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("sesame-server did not become ready in 30 s:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the process (SIGKILL) and starts it again on the same port and
    /// data directory.
    pub async fn restart(mut self) -> Result<Self> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `Server` implements `Drop`, so its fields cannot be moved out: swap
        // the data directory for an empty one that the drop below removes.
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::Builder::new().prefix("sesame-e2e-").tempdir()?);
        let mut options = self.options.clone();
        options.port = Some(self.port);
        drop(self);
        Self::spawn(options, data_dir).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }

    /// An HTTP client carrying the admin bearer token.
    pub fn admin(&self) -> Admin {
        Admin { client: reqwest::Client::new(), base: self.base.clone() }
    }

    pub async fn create_service(&self, name: &str) -> Result<Service> {
        self.admin().create_service(name).await
    }

    /// The server's public key, from `/.well-known/sesame`, as an
    /// authenticator pins it.
    pub async fn public_key(&self) -> Result<sesame_proto::ServerPublicKey> {
        let info: Value = reqwest::get(self.url("/.well-known/sesame")).await?.error_for_status()?.json().await?;
        Ok(sesame_proto::ServerPublicKey::from_base64(info["public_key"].as_str().unwrap_or_default())?)
    }

    /// Registers `account` with `key` at service `service_id` through the
    /// JSON API, as a fresh browser and an authenticator would.
    pub async fn register(
        &self,
        service_id: &str,
        account: &sesame_proto::AccountName,
        key: &sesame_proto::AccountKey,
    ) -> Result<()> {
        let challenge = Browser::new(self).start_challenge(service_id).await?;
        let token = sesame_proto::UnverifiedToken::parse(&challenge.token)?.verify(&self.public_key().await?)?;
        let res = reqwest::Client::new()
            .post(self.url("/api/authenticator/register"))
            .json(&sesame_proto::RegisterRequest::sign(&token, account, key))
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("register answered {}: {}", res.status(), res.text().await?);
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- sesame-server log ({}) ---\n{}", self.base, self.log());
        }
    }
}

/// A service as the admin API returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub login_url: String,
}

/// The admin JSON API.
#[derive(Debug, Clone)]
pub struct Admin {
    client: reqwest::Client,
    base: String,
}

impl Admin {
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).bearer_auth(ADMIN_TOKEN)
    }

    /// Creates a service without number matching (docs/PROTOCOL.md §14),
    /// which is on by default: most tests are about other properties and
    /// answer with `sesame login --yes` alone. Number matching has tests of
    /// its own, on [`Admin::create_matching_service`].
    pub async fn create_service(&self, name: &str) -> Result<Service> {
        self.create(serde_json::json!({ "name": name, "number_matching": false })).await
    }

    /// Creates a service as an admin does by default: with number matching.
    pub async fn create_matching_service(&self, name: &str) -> Result<Service> {
        self.create(serde_json::json!({ "name": name })).await
    }

    async fn create(&self, body: Value) -> Result<Service> {
        let name = body["name"].clone();
        let res = self.request(reqwest::Method::POST, "/admin/api/services").json(&body).send().await?;
        if res.status() != reqwest::StatusCode::CREATED {
            bail!("creating service {name} answered {}: {}", res.status(), res.text().await?);
        }
        Ok(res.json().await?)
    }

    pub async fn accounts(&self, service_id: &str) -> Result<Vec<Value>> {
        let res =
            self.request(reqwest::Method::GET, &format!("/admin/api/services/{service_id}/accounts")).send().await?;
        Ok(res.error_for_status()?.json().await?)
    }
}

/// What `POST /api/services/{id}/challenges` answers.
#[derive(Debug, Clone, Deserialize)]
pub struct Challenge {
    pub challenge_id: String,
    pub token: String,
    /// What the QR code holds: `{origin}/app#{token}`.
    pub link: String,
    /// The number the page shows, when the service asks for one.
    #[serde(default)]
    pub number: Option<u8>,
    pub status_url: String,
    pub events_url: String,
    pub expires_at: u64,
}

/// A browser as far as the server can tell: a cookie jar and a user agent.
#[derive(Debug, Clone)]
pub struct Browser {
    pub client: reqwest::Client,
    base: String,
}

impl Browser {
    pub fn new(server: &Server) -> Self {
        Self::at(&server.base)
    }

    pub fn at(base: &str) -> Self {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .user_agent("Mozilla/5.0 (X11; Linux x86_64) SesameTestBrowser/1.0")
            .build()
            .expect("a reqwest client builds");
        Self::with_client(client, base)
    }

    /// A browser on `base` that uses `client`, for instance one that
    /// trusts a test's own CA.
    pub fn with_client(client: reqwest::Client, base: &str) -> Self {
        Self { client, base: base.to_owned() }
    }

    /// Resolves a URL the server handed out (absolute, or relative to it).
    pub fn url(&self, url: &str) -> String {
        if url.starts_with("http://") || url.starts_with("https://") {
            url.to_owned()
        } else {
            format!("{}{url}", self.base)
        }
    }

    pub async fn start_challenge(&self, service_id: &str) -> Result<Challenge> {
        let res = self.client.post(self.url(&format!("/api/services/{service_id}/challenges"))).send().await?;
        if res.status() != reqwest::StatusCode::CREATED {
            bail!("starting a challenge answered {}: {}", res.status(), res.text().await?);
        }
        Ok(res.json().await?)
    }

    pub async fn status(&self, challenge: &Challenge) -> Result<Value> {
        let res = self.client.get(self.url(&challenge.status_url)).send().await?;
        if !res.status().is_success() {
            bail!("status answered {}: {}", res.status(), res.text().await?);
        }
        Ok(res.json().await?)
    }

    /// Opens the challenge's event stream, optionally resuming after an id.
    pub async fn events(&self, challenge: &Challenge, last_event_id: Option<&str>) -> Result<EventStream> {
        let mut req = self.client.get(self.url(&challenge.events_url)).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let res = req.send().await?;
        if !res.status().is_success() {
            bail!("events answered {}: {}", res.status(), res.text().await?);
        }
        Ok(EventStream::new(res))
    }

    pub async fn get_text(&self, url: &str) -> Result<String> {
        Ok(self.client.get(self.url(url)).send().await?.error_for_status()?.text().await?)
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

type ByteStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// A `text/event-stream` body, read event by event.
pub struct EventStream {
    body: ByteStream,
    buffer: String,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl EventStream {
    /// Reads the body of an event-stream response.
    pub fn new(response: reqwest::Response) -> Self {
        Self { body: Box::pin(response.bytes_stream()), buffer: String::new() }
    }

    /// The next event (comments and keep-alives skipped), or `None` when the
    /// server ended the stream. Fails after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Result<Option<Event>> {
        tokio::time::timeout(timeout, self.next_inner()).await.context("no event arrived in time")?
    }

    /// Skips events until one named `name` arrives.
    pub async fn next_named(&mut self, name: &str, timeout: Duration) -> Result<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await? {
                Some(event) if event.event == name => return Ok(event),
                Some(_) => continue,
                None => bail!("the stream ended before a {name:?} event"),
            }
        }
    }

    async fn next_inner(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event { event: "message".into(), ..Event::default() };
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim_start().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                    } else if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim_start().to_owned());
                    }
                }
                if data.is_empty() && event.id.is_none() {
                    continue; // a comment or keep-alive
                }
                event.data = data.join("\n");
                return Ok(Some(event));
            }
            match self.body.next().await {
                Some(chunk) => self.buffer.push_str(&String::from_utf8_lossy(&chunk?).replace("\r\n", "\n")),
                None => return Ok(None),
            }
        }
    }
}

/// An authenticator: the real `sesame` binary with its own database.
#[derive(Debug)]
pub struct Sesame {
    pub dir: TempDir,
    pub db: PathBuf,
    pub passphrase: Option<String>,
}

impl Sesame {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("sesame-client-").tempdir().expect("a temp dir");
        let db = dir.path().join("keys.db");
        Self { dir, db, passphrase: None }
    }

    /// Runs `sesame --db <own db> ARGS…` with `stdin` as its input.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.run_with(args, stdin, &[])
    }

    /// Runs `sesame --db <own db> ARGS…` with these environment variables
    /// set, such as `SSL_CERT_FILE`.
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Output {
        self.run_with(args, "", env)
    }

    fn run_with(&self, args: &[&str], stdin: &str, env: &[(&str, &std::ffi::OsStr)]) -> Output {
        use std::io::Write as _;
        let mut cmd = Command::new(sesame_bin());
        cmd.arg("--db").arg(&self.db).args(args).env_remove("SESAME_DB").env_remove("SESAME_PASSPHRASE");
        cmd.env_remove("SESAME_NEW_PASSPHRASE").env_remove("SESAME_BACKUP_PASSPHRASE");
        // Trust comes only from what the test passes.
        cmd.env_remove("SESAME_CA_FILE").env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
        cmd.envs(env.iter().copied());
        if let Some(p) = &self.passphrase {
            cmd.env("SESAME_PASSPHRASE", p);
        }
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("sesame runs");
        let mut input = child.stdin.take().expect("stdin is piped");
        input.write_all(stdin.as_bytes()).expect("writing to sesame's stdin");
        drop(input);
        child.wait_with_output().expect("sesame finishes")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }
}

impl Default for Sesame {
    fn default() -> Self {
        Self::new()
    }
}

/// stdout of a finished command, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// stderr of a finished command, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A `redis-server` owned by one test: its own port and directory, nothing
/// kept on disk. Killed on drop.
#[derive(Debug)]
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
}

impl Redis {
    pub fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("sesame-redis-").tempdir()?;
        let mut redis = Self { child: None, port: free_port(), dir };
        redis.spawn()?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server (install it: apt-get install redis-server)")?;
        self.child = Some(child);
        let stdout = self.child.as_mut().and_then(|c| c.stdout.take()).context("redis stdout")?;
        // Wait for "Ready to accept connections" so that tests start against a
        // server that answers.
        let ready = std::thread::spawn(move || {
            BufReader::new(stdout).lines().map_while(|l| l.ok()).any(|line| line.contains("Ready to accept"))
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !ready.is_finished() || !ready.join().unwrap_or(false) {
            bail!("redis-server on port {} did not become ready", self.port);
        }
        Ok(())
    }

    /// The process id of the running `redis-server`, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server and starts a new, empty one on the same port.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    /// Runs `redis-cli -p PORT ARGS…` and returns its output.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The PostgreSQL server tests use: `SESAME_TEST_POSTGRES_URL`, or the
/// conventional local one.
pub fn postgres_server_url() -> String {
    std::env::var("SESAME_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A PostgreSQL database created for one test and dropped after it.
#[derive(Debug)]
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub fn create() -> Result<Self> {
        let name = format!("sesame_test_{:016x}", rand::random::<u64>());
        psql(&format!("CREATE DATABASE {name}"))?;
        let url = format!("{}/{name}", postgres_server_url().trim_end_matches('/'));
        Ok(Self { name, url })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

fn psql(sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .arg(format!("{}/postgres", postgres_server_url().trim_end_matches('/')))
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .context("cannot run psql (install it: apt-get install postgresql-client)")?;
    if !out.status.success() {
        bail!("psql {sql:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Polls `f` until it returns `Some`, for up to `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------------------
// Browser: headless Chromium driven over WebDriver by a chromedriver that each
// test starts for itself.
// ---------------------------------------------------------------------------

/// Chromium, or `SESAME_TEST_CHROMIUM`.
fn chromium_bin() -> PathBuf {
    std::env::var_os("SESAME_TEST_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// chromedriver, or `SESAME_TEST_CHROMEDRIVER`.
fn chromedriver_bin() -> PathBuf {
    std::env::var_os("SESAME_TEST_CHROMEDRIVER").map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from)
}

/// Where browser tests leave their screenshots: `target/test-artifacts/browser/`.
pub fn browser_artifacts_dir() -> PathBuf {
    let dir = workspace_root().join("target").join("test-artifacts").join("browser");
    std::fs::create_dir_all(&dir).expect("the artifacts folder can be created under target/");
    dir
}

/// A `chromedriver` process on its own port, in its own process group so that
/// dropping it also ends every Chromium process it started.
#[derive(Debug)]
pub struct Chromedriver {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl Chromedriver {
    pub async fn start() -> Result<Self> {
        use std::os::unix::process::CommandExt as _;

        let dir = tempfile::Builder::new().prefix("sesame-chrome-").tempdir()?;
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("chromedriver.log"))?;
        let child = Command::new(chromedriver_bin())
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", dir.path().join("chromedriver-verbose.log").display()))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start chromedriver (install it: apt-get install chromium chromium-driver)")?;
        let mut driver = Self { child, port, dir };
        driver.wait_ready().await?;
        Ok(driver)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("chromedriver exited with {status}: {}", self.log());
            }
            if let Ok(res) = client.get(format!("{}/status", self.url())).send().await {
                let ready = res.json::<Value>().await.ok().and_then(|v| v["value"]["ready"].as_bool());
                if ready == Some(true) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not become ready in 20 s: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes under it.
        // A system call, not `kill -KILL -PGID`: procps-ng 4.0.2's `kill`
        // reads a negative id as -1 and signals every process.
        let group = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The user agent of the phone [`Chrome::start_phone`] plays.
pub const PHONE_USER_AGENT: &str =
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Mobile Safari/537.36";

/// A headless Chromium with a fresh profile, driven through WebDriver. It can
/// reach loopback only.
#[derive(Debug)]
pub struct Chrome {
    pub client: fantoccini::Client,
    /// The test's name, which prefixes its screenshots.
    pub name: String,
    // Dropped after the client: the driver kills the browser, then the
    // profile folder goes.
    driver: Chromedriver,
    profile: TempDir,
}

impl Chrome {
    pub async fn start(name: &str) -> Result<Self> {
        Self::start_with(name, &[]).await
    }

    /// Starts Chromium with `extra` command-line switches.
    pub async fn start_with(name: &str, extra: &[String]) -> Result<Self> {
        Self::launch(name, extra, None).await
    }

    /// Starts Chromium as a phone: a 360 px wide touch screen, and a phone's
    /// user agent, so that pages take it for one.
    pub async fn start_phone(name: &str, extra: &[String]) -> Result<Self> {
        let phone = serde_json::json!({
            "deviceMetrics": { "width": 360, "height": 780, "pixelRatio": 2.0, "touch": true, "mobile": true },
            "userAgent": PHONE_USER_AGENT,
        });
        Self::launch(name, extra, Some(phone)).await
    }

    async fn launch(name: &str, extra: &[String], mobile_emulation: Option<Value>) -> Result<Self> {
        let driver = Chromedriver::start().await?;
        let profile = tempfile::Builder::new().prefix("sesame-chrome-profile-").tempdir()?;
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-default-apps".to_owned(),
            // Any host name that slips through resolves to nothing: the
            // tests use 127.0.0.1 and localhost (a TLS origin needs a name)
            // only, and the browser must not go out.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost".to_owned(),
            "--window-size=1200,1000".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let args: Vec<String> = args.into_iter().chain(extra.iter().cloned()).collect();
        let mut caps = serde_json::Map::new();
        let mut options = serde_json::json!({ "binary": chromium_bin(), "args": args });
        if let Some(phone) = mobile_emulation {
            options["mobileEmulation"] = phone;
        }
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = fantoccini::ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver.url())
            .await
            .with_context(|| format!("cannot open a Chromium session: {}", driver.log()))?;
        Ok(Self { client, name: name.to_owned(), driver, profile })
    }

    /// The visible text of the first element matching `css`, or `None` when
    /// there is none or it is hidden.
    pub async fn visible_text(&self, css: &str) -> Option<String> {
        let element = self.client.find(fantoccini::Locator::Css(css)).await.ok()?;
        if !element.is_displayed().await.ok()? {
            return None;
        }
        element.text().await.ok()
    }

    /// Clicks the first element matching `css`, waiting up to 10 s for it to
    /// appear: after a click that navigates, the next page may still be
    /// loading.
    pub async fn click(&self, css: &str) -> Result<()> {
        let element = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(fantoccini::Locator::Css(css))
            .await
            .with_context(|| format!("no {css} to click"))?;
        element.click().await?;
        Ok(())
    }

    /// Polls until the visible text of `css` satisfies `ok`, for up to
    /// `timeout`; returns that text. On failure the error names the last text
    /// seen and a screenshot is saved.
    pub async fn wait_text(
        &self,
        css: &str,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(text) = self.visible_text(css).await {
                if ok(&text) {
                    return Ok(text);
                }
                last = Some(text);
            }
            if Instant::now() > deadline {
                let shot = self.save_screenshot("timeout").await.map(|p| p.display().to_string()).unwrap_or_default();
                bail!("{css} did not show {what} within {timeout:?}; last seen: {last:?} (screenshot {shot})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until the visible text of `css` contains `needle`.
    pub async fn wait_contains(&self, css: &str, needle: &str) -> Result<String> {
        self.wait_text(css, &format!("{needle:?}"), Duration::from_secs(10), |t| t.contains(needle)).await
    }

    /// Runs a script in the page and returns its result.
    pub async fn js(&self, script: &str) -> Result<Value> {
        Ok(self.client.execute(script, Vec::new()).await?)
    }

    /// Runs a script that ends by calling its last argument with the result,
    /// for work the page does asynchronously.
    pub async fn js_async(&self, script: &str) -> Result<Value> {
        Ok(self.client.execute_async(script, Vec::new()).await?)
    }

    /// Sends a Chrome DevTools Protocol command to the current tab, through
    /// chromedriver: what WebDriver itself cannot do, such as a virtual
    /// WebAuthn authenticator.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Result<Value> {
        let session = self.client.session_id().await?.context("no WebDriver session")?;
        let url = format!("{}/session/{session}/goog/cdp/execute", self.driver.url());
        let res =
            reqwest::Client::new().post(url).json(&serde_json::json!({ "cmd": cmd, "params": params })).send().await?;
        let status = res.status();
        let body: Value = res.json().await?;
        ensure!(status.is_success(), "{cmd} failed ({status}): {body}");
        Ok(body["value"].clone())
    }

    /// Gives this tab a phone's built-in authenticator, as DevTools
    /// emulates one: it holds passkeys, checks the person (user
    /// verification, `verified`) and, with `prf`, derives keys from a
    /// credential (the WebAuthn PRF extension). It answers at once, as if the
    /// person touched it. Returns its id for [`Chrome::set_user_verified`].
    pub async fn add_phone_authenticator(&self, prf: bool, verified: bool) -> Result<String> {
        self.cdp("WebAuthn.enable", serde_json::json!({})).await?;
        let added = self
            .cdp(
                "WebAuthn.addVirtualAuthenticator",
                serde_json::json!({ "options": {
                    "protocol": "ctap2",
                    "ctap2Version": "ctap2_1",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserVerified": verified,
                    "hasPrf": prf,
                    "automaticPresenceSimulation": true,
                }}),
            )
            .await?;
        Ok(added["authenticatorId"].as_str().context("an authenticator id")?.to_owned())
    }

    /// Makes the emulated authenticator pass or fail the person's check
    /// from now on, as a wrong fingerprint would.
    pub async fn set_user_verified(&self, authenticator: &str, verified: bool) -> Result<()> {
        let params = serde_json::json!({ "authenticatorId": authenticator, "isUserVerified": verified });
        self.cdp("WebAuthn.setUserVerified", params).await?;
        Ok(())
    }

    /// A PNG of the browser's viewport.
    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        Ok(self.client.screenshot().await?)
    }

    /// Saves a screenshot as `<artifacts>/<test name>-<state>.png`.
    pub async fn save_screenshot(&self, state: &str) -> Result<PathBuf> {
        let path = browser_artifacts_dir().join(format!("{}-{state}.png", self.name));
        std::fs::write(&path, self.screenshot().await?)?;
        Ok(path)
    }

    /// Ends the WebDriver session, which closes Chromium cleanly.
    pub async fn close(self) -> Result<()> {
        let Self { client, driver, profile, .. } = self;
        client.close().await?;
        drop(driver);
        drop(profile);
        Ok(())
    }
}

/// A one-frame Y4M video of `png`, for Chromium's fake camera, made with
/// ffmpeg as a user could.
pub fn y4m_of(png: &[u8], dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let still = dir.join("login-page.png");
    let video = dir.join("login-page.y4m");
    std::fs::write(&still, png)?;
    let out = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(&still)
        // 4:2:0 needs even sides: Chromium reads a frame of an odd-sized
        // Y4M as the wrong number of bytes, and shows black.
        .args(["-frames:v", "1", "-vf", "crop=trunc(iw/2)*2:trunc(ih/2)*2:0:0", "-pix_fmt", "yuv420p"])
        .arg(&video)
        .output()
        .context("cannot run ffmpeg (install it: apt-get install ffmpeg)")?;
    ensure!(out.status.success(), "ffmpeg failed: {}", stderr(&out));
    Ok(video)
}

/// Every QR code found in a PNG, decoded as text.
pub fn decode_qr_png(png: &[u8]) -> Result<Vec<String>> {
    let image = image::load_from_memory_with_format(png, image::ImageFormat::Png)?.to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    prepared
        .detect_grids()
        .into_iter()
        .map(|grid| grid.decode().map(|(_, text)| text).map_err(|e| anyhow::anyhow!("a QR code does not decode: {e}")))
        .collect()
}

// ---------------------------------------------------------------------------
// Scale-out: several instances that share PostgreSQL and Redis.
// ---------------------------------------------------------------------------

impl Server {
    /// The process id. An instance names its Redis connection `sesame-<pid>`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `url` (as the server hands it out, under its public origin) rewritten
    /// to reach this very instance, as a load balancer would route it.
    pub fn route(&self, url: &str) -> String {
        match url.strip_prefix(self.origin.as_str()) {
            Some(path) => self.url(path),
            None => url.to_owned(),
        }
    }
}

impl Redis {
    /// Connections that carry `name` (set with CLIENT SETNAME), from
    /// `CLIENT LIST`.
    pub fn connections_named(&self, name: &str) -> Result<usize> {
        let needle = format!(" name={name} ");
        Ok(self.cli(&["CLIENT", "LIST"])?.lines().filter(|line| line.contains(&needle)).count())
    }

    /// Challenge channels that some instance is subscribed to.
    pub fn challenge_channels(&self) -> Result<usize> {
        Ok(self.cli(&["PUBSUB", "CHANNELS", "sesame:challenge:*"])?.lines().filter(|l| !l.trim().is_empty()).count())
    }
}

// ---------------------------------------------------------------------------
// Metrics: scraping `--metrics-listen` and reading the Prometheus text.
// ---------------------------------------------------------------------------

/// One sample: its metric name, its labels and its value.
type Sample = (String, Vec<(String, String)>, f64);

/// One scrape of `/metrics`: the exposition text and its samples.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// GETs `url` (the metrics listener's `/metrics`) and parses it.
    pub async fn get(url: &str) -> Result<Self> {
        let res = reqwest::get(url).await?;
        if !res.status().is_success() {
            bail!("{url} answered {}", res.status());
        }
        Ok(Self::parse(&res.text().await?))
    }

    /// Parses the Prometheus text format (the subset an exporter writes: no
    /// escaped quotes or commas inside label values).
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split(',')
                        .filter_map(|pair| pair.split_once('='))
                        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), Vec::new()),
            };
            samples.push((name, labels, value));
        }
        Self { text: text.to_owned(), samples }
    }

    /// The sum of the samples named `name` whose labels include `labels`;
    /// 0 when there is none (a counter that never moved is not written).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v)))
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Whether any sample is named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }

    /// Every label value of every sample, to check what never appears.
    pub fn label_values(&self) -> Vec<&str> {
        self.samples.iter().flat_map(|(_, l, _)| l.iter().map(|(_, v)| v.as_str())).collect()
    }
}

/// Runs `promtool check metrics` on `text`; fails with promtool's complaint.
/// promtool comes from the `prometheus` package, which scripts/test installs.
pub fn promtool_check(text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run promtool (install it: apt-get install prometheus)")?;
    child.stdin.take().context("promtool stdin")?.write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "promtool check metrics failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// TLS to the database and Redis: a PostgreSQL cluster and a Redis server of
// the test's own, each presenting a certificate from a test CA.
// ---------------------------------------------------------------------------

/// Runs `cmd` as the `postgres` user when we are root (PostgreSQL refuses to
/// run as root), as ourselves otherwise.
fn as_postgres(program: &Path, args: &[&std::ffi::OsStr]) -> Command {
    let root = rustix::process::getuid().is_root();
    let mut cmd = if root { Command::new("runuser") } else { Command::new(program) };
    if root {
        cmd.args(["-u", "postgres", "--"]).arg(program);
    }
    cmd.args(args);
    cmd
}

/// The newest installed PostgreSQL's `bin` folder (Debian's layout).
fn postgres_bin_dir() -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql (install it: apt-get install postgresql)")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    dirs.pop().context("no PostgreSQL with initdb under /usr/lib/postgresql")
}

/// A PostgreSQL cluster of one test, listening on 127.0.0.1 only, and with
/// `ssl = on` and a given server certificate if asked. Tests can stop it and
/// start it again under a running server. Stopped on drop.
#[derive(Debug)]
pub struct PgCluster {
    pub port: u16,
    dir: TempDir,
    bin: PathBuf,
    /// The server options `pg_ctl start` passes, kept for a restart.
    options: String,
}

impl PgCluster {
    /// A cluster without TLS.
    pub fn start() -> Result<Self> {
        Self::start_with(None)
    }

    /// A cluster that offers TLS with `leaf` as its certificate.
    pub fn start_tls(leaf: &proxy::Leaf) -> Result<Self> {
        Self::start_with(Some(leaf))
    }

    fn start_with(leaf: Option<&proxy::Leaf>) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("sesame-pg-").tempdir()?;
        let bin = postgres_bin_dir()?;
        let data = dir.path().join("data");
        let port = free_port();
        let mut options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", dir.path().display());
        if let Some(leaf) = leaf {
            // The postgres user must own its folder, and may only use a key
            // that no one else can read.
            let (crt, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::copy(&leaf.cert, &crt)?;
            std::fs::copy(&leaf.key, &key)?;
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                crt.display(),
                key.display()
            ));
        }
        if rustix::process::getuid().is_root() {
            let status = Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status()?;
            ensure_success(status, "chown")?;
        }
        let out = as_postgres(
            &bin.join("initdb"),
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "--auth=trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--no-sync".as_ref(),
            ],
        )
        .output()
        .context("cannot run initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let cluster = Self { port, dir, bin, options };
        cluster.restart()?;
        Ok(cluster)
    }

    /// Starts the (stopped) cluster again, on the same port and data.
    pub fn restart(&self) -> Result<()> {
        let log = self.dir.path().join("server.log");
        let out = self
            .pg_ctl(&[
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-o".as_ref(),
                self.options.as_ref(),
                "start".as_ref(),
            ])
            .output()
            .context("cannot run pg_ctl")?;
        if !out.status.success() {
            bail!("pg_ctl start failed: {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        Ok(())
    }

    /// Stops it at once, as a crash or a lost network would, ending every
    /// connection.
    pub fn stop(&self) -> Result<()> {
        let out = self.pg_ctl(&["-m".as_ref(), "immediate".as_ref(), "-w".as_ref(), "stop".as_ref()]).output()?;
        if !out.status.success() {
            bail!("pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    fn pg_ctl(&self, args: &[&std::ffi::OsStr]) -> Command {
        let data = self.dir.path().join("data");
        let mut all: Vec<&std::ffi::OsStr> = vec!["-D".as_ref(), data.as_os_str()];
        all.extend_from_slice(args);
        as_postgres(&self.bin.join("pg_ctl"), &all)
    }

    /// The URL of its `postgres` database over TCP, without any TLS option.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs one query over the Unix socket (no TLS) and returns its output.
    pub fn query(&self, sql: &str) -> Result<String> {
        let out = Command::new("psql")
            .args(["-h"])
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-qtAc", sql])
            .output()
            .context("cannot run psql")?;
        if !out.status.success() {
            bail!("psql {sql:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn ensure_success(status: std::process::ExitStatus, what: &str) -> Result<()> {
    if !status.success() {
        bail!("{what} failed with {status}");
    }
    Ok(())
}

impl Redis {
    /// A Redis that speaks only TLS, with `leaf` as its certificate; clients
    /// need not present one. `restart` brings it back without TLS, so tests
    /// of TLS do not restart it.
    pub fn start_tls(leaf: &proxy::Leaf, ca: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("sesame-redis-tls-").tempdir()?;
        let port = free_port();
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--tls-auth-clients", "no"])
            .arg("--tls-cert-file")
            .arg(&leaf.cert)
            .arg("--tls-key-file")
            .arg(&leaf.key)
            .arg("--tls-ca-cert-file")
            .arg(ca)
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server")?;
        let stdout = child.stdout.take().context("redis stdout")?;
        let redis = Self { child: Some(child), port, dir };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ready = BufReader::new(stdout).lines().map_while(|l| l.ok()).any(|l| l.contains("Ready to accept"));
            let _ = tx.send(ready);
        });
        if !rx.recv_timeout(Duration::from_secs(10)).unwrap_or(false) {
            bail!("redis-server with TLS on port {port} did not become ready (is it built with TLS?)");
        }
        Ok(redis)
    }

    /// `rediss://127.0.0.1:PORT`, for a server started with [`Redis::start_tls`].
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

/// Runs `sesame-server ARGS…` (SQLite in a fresh data directory unless the
/// arguments say otherwise) and expects it to stop by itself within 30 s;
/// returns its exit code and stderr.
pub fn server_start_failure(args: &[&std::ffi::OsStr]) -> Result<(Option<i32>, String)> {
    let data_dir = tempfile::Builder::new().prefix("sesame-e2e-").tempdir()?;
    let mut child = Command::new(server_bin())
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(data_dir.path())
        .arg("--admin-token")
        .arg(ADMIN_TOKEN)
        .args(args)
        .env("SESAME_LOG", "warn")
        .env_remove("SESAME_DATABASE_URL")
        .env_remove("SESAME_REDIS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start sesame-server")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            bail!("sesame-server kept running; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    Ok((out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned()))
}

// ---------------------------------------------------------------------------
// Backups: `sesame-server backup`, and a server on a restored data directory.
// ---------------------------------------------------------------------------

impl Server {
    /// Starts a server on an existing data directory, such as one restored
    /// from a backup.
    pub async fn start_in(data_dir: TempDir, options: ServerOptions) -> Result<Self> {
        Self::spawn(options, data_dir).await
    }
}

/// Runs `sesame-server ARGS…` to completion (a command such as `backup`,
/// not the server), with no database or Redis from the environment.
pub fn server_command(args: &[&std::ffi::OsStr]) -> Result<Output> {
    Command::new(server_bin())
        .args(args)
        .env("SESAME_LOG", "warn")
        .env_remove("SESAME_DATABASE_URL")
        .env_remove("SESAME_REDIS_URL")
        .env_remove("SESAME_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .context("cannot run sesame-server")
}

/// Reads `status` events until one that is no longer `pending` (an
/// authenticator opening the request sends a pending one first), and
/// returns its data.
pub async fn final_status(events: &mut EventStream, timeout: Duration) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let status = events.next_named("status", left).await?.json();
        if status["status"] != "pending" {
            return Ok(status);
        }
    }
}

// ---------------------------------------------------------------------------
// The authenticator's window: `sesame ui`.
// ---------------------------------------------------------------------------

/// A running `sesame ui` on an authenticator's keystore, killed on drop.
#[derive(Debug)]
pub struct SesameUi {
    child: Child,
    /// The address it printed, with the run's secret.
    pub url: String,
    /// `http://127.0.0.1:PORT`, its origin.
    pub origin: String,
    /// `127.0.0.1:PORT`, the only `Host` it answers.
    pub host: String,
}

impl Sesame {
    /// Starts `sesame --db <own db> ui --no-browser ARGS…` and waits for the
    /// address it prints first.
    pub fn ui(&self, args: &[&str]) -> Result<SesameUi> {
        use std::io::BufRead as _;
        let mut child = Command::new(sesame_bin())
            .arg("--db")
            .arg(&self.db)
            .args(["ui", "--no-browser"])
            .args(args)
            .env_remove("SESAME_DB")
            .env_remove("SESAME_PASSPHRASE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start sesame ui")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let mut ui = SesameUi { child, url: String::new(), origin: String::new(), host: String::new() };
        let line = receiver.recv_timeout(Duration::from_secs(20)).context("sesame ui printed no address")?;
        let url = line.trim().to_owned();
        let host = url
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .with_context(|| format!("sesame ui printed {url:?}, not an address"))?
            .to_owned();
        ui.origin = format!("http://{host}");
        ui.host = host;
        ui.url = url;
        Ok(ui)
    }
}

impl Drop for SesameUi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The standard `age` tool, which reads passphrases only from a terminal.
// ---------------------------------------------------------------------------

/// Runs `age ARGS…` on a pseudo-terminal and types `passphrase` at each of
/// its passphrase prompts, as a person would. The `age` package comes from
/// the distribution; scripts/test installs it.
pub fn age_on_terminal(args: &[&std::ffi::OsStr], passphrase: &str) -> Result<(bool, String)> {
    on_terminal(Path::new("age"), args, &["Enter passphrase", "Confirm passphrase"], passphrase)
}

/// Runs `PROGRAM ARGS…` on a pseudo-terminal (`script` from util-linux)
/// and types `answer` each time one of `prompts` appears on it. Returns
/// whether it succeeded and what it printed on the terminal. No passphrase
/// comes from the environment.
pub fn on_terminal(
    program: &Path,
    args: &[&std::ffi::OsStr],
    prompts: &[&str],
    answer: &str,
) -> Result<(bool, String)> {
    use std::io::{Read as _, Write as _};
    // `script -c` takes one shell command line: quote every argument.
    let quoted: Vec<String> = std::iter::once(program.as_os_str())
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', r"'\''")))
        .collect();
    let mut child = Command::new("script")
        .args(["--quiet", "--return", "--command"])
        .arg(quoted.join(" "))
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_remove("SESAME_DB")
        .env_remove("SESAME_PASSPHRASE")
        .env_remove("SESAME_BACKUP_PASSPHRASE")
        .spawn()
        .context("cannot run script (util-linux) to give a program a terminal")?;
    let mut stdout = child.stdout.take().context("stdout is piped")?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 1024];
        while let Ok(n @ 1..) = stdout.read(&mut buffer) {
            if sender.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut stdin = child.stdin.take().context("stdin is piped")?;
    let (mut screen, mut answered) = (String::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Each prompt gets one answer.
        let asked: usize = prompts.iter().map(|p| screen.matches(p).count()).sum();
        while answered < asked {
            stdin.write_all(format!("{answer}\n").as_bytes())?;
            stdin.flush()?;
            answered += 1;
        }
        if let Some(status) = child.try_wait()? {
            // What was printed just before the end.
            while let Ok(chunk) = receiver.recv_timeout(Duration::from_millis(200)) {
                screen.push_str(&String::from_utf8_lossy(&chunk));
            }
            return Ok((status.success(), screen));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} did not finish within 60 s; it printed: {screen}", program.display());
        }
        if let Ok(chunk) = receiver.recv_timeout(Duration::from_millis(50)) {
            screen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
