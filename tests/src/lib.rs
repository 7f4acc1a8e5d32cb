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

mod age;
mod backup;
mod browser;
mod cluster;
pub mod listener;
mod metrics;
pub mod oidc;
pub mod proxy;
pub mod rp;
mod tls;
mod window;

pub use self::{age::*, backup::*, browser::*, metrics::*, tls::*, window::*};

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
    /// A certificate for the server's own listener (`--tls-cert`,
    /// `--tls-key`): it then speaks TLS, and the test reaches it as
    /// `https://localhost:PORT`.
    pub tls: Option<listener::ListenerCert>,
    pub extra_args: Vec<String>,
}

/// A running `sesame-server` process, killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:PORT`, where the test reaches it, or
    /// `https://localhost:PORT` with [`ServerOptions::tls`].
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
        let (base, default_origin) = match options.tls {
            // The server's own default: https:// and its listen address.
            Some(_) => (format!("https://localhost:{port}"), format!("https://127.0.0.1:{port}")),
            None => (format!("http://127.0.0.1:{port}"), format!("http://127.0.0.1:{port}")),
        };
        let origin = options.public_url.clone().unwrap_or(default_origin);
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
        if let Some(tls) = &options.tls {
            cmd.arg("--tls-cert").arg(&tls.cert).arg("--tls-key").arg(&tls.key);
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
        let client = self.client_builder()?.build()?;
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
    pub async fn restart(self) -> Result<Self> {
        self.restart_after(Duration::ZERO).await
    }

    /// Kills the process, waits `pause` (the server is down), and starts it
    /// again on the same port with the same options.
    pub async fn restart_after(mut self, pause: Duration) -> Result<Self> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        tokio::time::sleep(pause).await;
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

    /// An HTTP client for this server: with TLS, one that trusts the test
    /// CA that issued its certificate, and nothing else.
    pub fn client_builder(&self) -> Result<reqwest::ClientBuilder> {
        let builder = reqwest::Client::builder();
        let Some(tls) = &self.options.tls else {
            return Ok(builder);
        };
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&tls.ca)?)?;
        Ok(builder.tls_built_in_root_certs(false).add_root_certificate(ca))
    }

    fn client(&self) -> reqwest::Client {
        self.client_builder().and_then(|b| Ok(b.build()?)).expect("a reqwest client for the test server builds")
    }

    /// Sends the process `SIGHUP`.
    pub fn hang_up(&self) -> Result<()> {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::HUP)?;
        Ok(())
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }

    /// An HTTP client carrying the admin bearer token.
    pub fn admin(&self) -> Admin {
        Admin { client: self.client(), base: self.base.clone() }
    }

    pub async fn create_service(&self, name: &str) -> Result<Service> {
        self.admin().create_service(name).await
    }

    /// The server's public key, from `/.well-known/sesame`, as an
    /// authenticator pins it.
    pub async fn public_key(&self) -> Result<sesame_proto::ServerPublicKey> {
        let info: Value =
            self.client().get(self.url("/.well-known/sesame")).send().await?.error_for_status()?.json().await?;
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
        let res = self
            .client()
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
        let client = server.client_builder().expect("the test CA reads");
        Self::with_client(Self::browser_like(client), &server.base)
    }

    pub fn at(base: &str) -> Self {
        Self::with_client(Self::browser_like(reqwest::Client::builder()), base)
    }

    /// `builder` with a cookie jar and a browser's user agent.
    fn browser_like(builder: reqwest::ClientBuilder) -> reqwest::Client {
        builder
            .cookie_store(true)
            .user_agent("Mozilla/5.0 (X11; Linux x86_64) SesameTestBrowser/1.0")
            .build()
            .expect("a reqwest client builds")
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

/// A session bus address where nothing answers: the authenticators of the
/// tests find no system keyring unless a test starts one of its own
/// (tests/it/keyring.rs), so that a developer's own keyring never gets
/// their entries.
pub const NO_SESSION_BUS: &str = "unix:path=/nonexistent/sesame-tests-no-session-bus";

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
        // And so does a keyring: never the developer's own session bus.
        cmd.env("DBUS_SESSION_BUS_ADDRESS", NO_SESSION_BUS);
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
