//! Command-line options. Each has a `SESAME_<NAME>` environment variable.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use clap::Parser;

/// Sesame's service server: passwordless sign-in with public keys.
#[derive(Debug, Clone, Parser)]
#[command(name = "sesame-server", version, about)]
pub struct Config {
    /// Address and port to listen on.
    #[arg(long, env = "SESAME_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Public origin of this server, as browsers and authenticators reach it
    /// (for example https://login.example.com). It is placed in every token.
    /// Defaults to http://<listen address>, or https://<listen address> with
    /// --tls-cert.
    #[arg(long, env = "SESAME_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// PEM file of the certificate chain (the server's certificate first)
    /// that the listener presents. With --tls-key the listener speaks TLS and
    /// offers HTTP/2; without both it speaks plain HTTP, for a proxy in front.
    /// Reloaded when the file changes and on SIGHUP.
    #[arg(long, env = "SESAME_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file of the private key of --tls-cert (PKCS #8, PKCS #1 or SEC 1).
    #[arg(long, env = "SESAME_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Seconds between two looks at --tls-cert and --tls-key for a change.
    /// 0: reload only on SIGHUP.
    #[arg(long, env = "SESAME_TLS_CHECK_INTERVAL", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub tls_check_interval: u64,

    /// Directory for the embedded SQLite database.
    #[arg(long, env = "SESAME_DATA_DIR", default_value = "sesame-data", global = true)]
    pub data_dir: PathBuf,

    /// Database URL: sqlite://PATH or postgres://…. Defaults to SQLite in the
    /// data directory.
    #[arg(long, env = "SESAME_DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// PEM file of the CA that signed the PostgreSQL server's certificate,
    /// trusted besides the system's store. It turns on sslmode=verify-full
    /// unless the URL asks for verify-ca.
    #[arg(long, env = "SESAME_DATABASE_CA_FILE")]
    pub database_ca_file: Option<PathBuf>,

    /// Redis URL for pub/sub between several instances. Without it, results
    /// are delivered in-process (one instance only).
    #[arg(long, env = "SESAME_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Address and port for Prometheus metrics (/metrics, with /healthz and
    /// /readyz). Keep it off the public network. Absent: no metrics.
    #[arg(long, env = "SESAME_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// PEM file of the CA that signed the Redis server's certificate, for a
    /// rediss:// URL; trusted instead of the system's store.
    #[arg(long, env = "SESAME_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// Bearer token for the admin API and the admin page. When absent, one is
    /// generated and printed at start-up.
    #[arg(long, env = "SESAME_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Seconds a challenge stays open (at most 600).
    #[arg(long, env = "SESAME_CHALLENGE_TTL", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub challenge_ttl: u64,

    /// Seconds between two codes on the login page.
    #[arg(long, env = "SESAME_ROTATION", default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=60))]
    pub rotation: u8,

    /// Seconds a code stays acceptable after it was shown.
    #[arg(long, env = "SESAME_CODE_WINDOW", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub code_window: u64,

    /// Requests per minute that one client IP may make to issue challenges,
    /// and again to submit answers. 0 turns rate limiting off.
    #[arg(long, env = "SESAME_RATE_LIMIT", default_value_t = 60)]
    pub rate_limit: u32,

    /// Addresses of reverse proxies (such as nginx) in front of this server,
    /// comma-separated. For a request from one of them, the client address is
    /// taken from X-Forwarded-For; from anyone else, that header is ignored.
    #[arg(long = "trusted-proxy", env = "SESAME_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpAddr>,

    /// Create a demo service on first start and print where to click.
    #[arg(long, env = "SESAME_DEMO")]
    pub demo: bool,

    /// Seconds a client has to send a complete request head, on a new
    /// connection and between two requests on a kept-alive one. Slower
    /// connections are closed.
    #[arg(long, env = "SESAME_HEADER_READ_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout: u64,

    /// Most connections served at once; further ones are answered
    /// 503 too_many_connections. Keep it below the open-file limit
    /// (ulimit -n). 0 means no limit.
    #[arg(long, env = "SESAME_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most event streams open at once on one sign-in request, on this
    /// instance; more get 429 too_many_streams. 0 means no limit.
    #[arg(long, env = "SESAME_MAX_STREAMS_PER_CHALLENGE", default_value_t = crate::http::limit::STREAMS_PER_CHALLENGE)]
    pub max_streams_per_challenge: usize,

    /// Most event streams open at once from one client address, on this
    /// instance; more get 429 too_many_streams. 0 means no limit.
    #[arg(long, env = "SESAME_MAX_STREAMS_PER_ADDRESS", default_value_t = crate::http::limit::STREAMS_PER_ADDRESS)]
    pub max_streams_per_address: usize,

    /// Seconds between two sweeps of old rows (challenges, expired sessions,
    /// old sign-in events). 0 turns the sweep off.
    #[arg(long, env = "SESAME_SWEEP_INTERVAL", default_value_t = 600)]
    pub sweep_interval: u64,

    /// Seconds a challenge is kept after it expired; its status can be read
    /// (and a completed one turned into a session) until then.
    #[arg(long, env = "SESAME_CHALLENGE_RETENTION", default_value_t = 86_400)]
    pub challenge_retention: u64,

    /// Days a sign-in event is kept.
    #[arg(long, env = "SESAME_EVENT_RETENTION_DAYS", default_value_t = 90)]
    pub event_retention_days: u64,

    /// Sign-in events kept per service, newest first; older ones are swept.
    #[arg(long, env = "SESAME_EVENTS_PER_SERVICE", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub events_per_service: u64,

    /// Days a record of the admin audit log is kept.
    #[arg(long, env = "SESAME_AUDIT_RETENTION_DAYS", default_value_t = 365)]
    pub audit_retention_days: u64,

    /// Seconds an OpenID Connect authorization code stays redeemable (at
    /// most 60).
    #[arg(long, env = "SESAME_OIDC_CODE_TTL", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub oidc_code_ttl: u64,

    /// Log format on stderr: text for people (coloured only on a
    /// terminal), json for log collectors (one object per line).
    #[arg(long, env = "SESAME_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Without a command, the server runs.
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Config {
    /// The origin `--public-url` defaults to: the listen address, over HTTPS
    /// when the listener has a certificate.
    pub fn default_public_url(&self) -> String {
        let scheme = if self.tls_cert.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.listen)
    }
}

/// What `sesame-server` does besides serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Copy the embedded SQLite database to FILE, consistently, while the
    /// server keeps serving. For PostgreSQL use pg_dump.
    Backup {
        /// Where to write the copy.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
