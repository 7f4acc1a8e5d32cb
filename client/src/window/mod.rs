//! `sesame ui`: the authenticator's window, a small web app that this
//! binary serves on loopback and the user's browser shows.
//!
//! It works on the same keystore, through the same code, as the command
//! line: [`crate::commands::trusted`] pins and verifies, and the `submit_*`
//! functions of `approve` sign. Only the way the user is asked differs.
//!
//! Any web page the user visits can send requests to a loopback port, so
//! the window trusts nothing about a request until [`guard`] has checked it:
//! the per-run secret (exchanged for a cookie), the `Host` and the `Origin`.

mod api;
mod guard;
mod serve;

use std::{
    io::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::DefaultBodyLimit,
    http::{header, HeaderValue},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use rand::{rngs::OsRng, RngCore as _};
use tokio::{net::TcpListener, sync::Mutex};

use crate::{commands::App, opt::UiOptions, store::Keyring, store::Store, tls::ExtraRoots, Error};

/// The largest JSON request. Tokens, names and passphrases are far smaller.
const MAX_JSON_BYTES: usize = 64 * 1024;
/// The largest picture: a phone photo or a full-screen screenshot.
const MAX_IMAGE_BYTES: usize = 16 * 1024 * 1024;

/// The per-run secrets. Neither is ever written anywhere but the printed
/// address and the browser's cookie jar.
struct Secrets {
    /// In the printed address; exchanged once per browser for the cookie.
    url: String,
    /// The cookie's value. A different value from the address's, so that
    /// the address in the browser's history is not the credential itself.
    cookie: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Everything the window's handlers share.
#[derive(Debug, Clone)]
pub(crate) struct WindowState(Arc<Inner>);

#[derive(Debug)]
pub(crate) struct Inner {
    store: Store,
    db_path: PathBuf,
    roots: ExtraRoots,
    insecure_http: bool,
    /// `127.0.0.1:PORT`: the only `Host` answered.
    host: String,
    /// `http://127.0.0.1:PORT`: the only `Origin` whose POSTs are taken.
    origin: String,
    /// Named after the port, because browsers share cookies between all
    /// ports of a host: two windows must not overwrite each other's.
    cookie_name: String,
    secrets: Secrets,
    /// The key that opens sealed account keys, once the passphrase was
    /// typed in this run. The passphrase itself is never kept.
    keyring: Mutex<Option<Arc<Keyring>>>,
}

impl std::ops::Deref for WindowState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl WindowState {
    fn new(app: &App, bound: SocketAddr) -> Self {
        let host = bound.to_string();
        Self(Arc::new(Inner {
            store: app.store.clone(),
            db_path: app.db_path.clone(),
            roots: app.roots.clone(),
            insecure_http: app.insecure_http,
            origin: format!("http://{host}"),
            cookie_name: format!("sesame_window_{}", bound.port()),
            host,
            secrets: Secrets { url: random_hex(), cookie: random_hex() },
            keyring: Mutex::new(None),
        }))
    }

    /// The address to open: the only way into this run's window.
    fn entry_url(&self) -> String {
        format!("{}/?secret={}", self.origin, self.secrets.url)
    }

    /// The keyring: the one unlocked with the passphrase in this run, or
    /// else the key in the system keyring, or [`Keyring::Plain`]. Those two
    /// are looked up each time rather than kept, in case `sesame passphrase`
    /// changes them meanwhile.
    async fn keyring(&self) -> Result<Arc<Keyring>, Error> {
        if let Some(keyring) = self.keyring.lock().await.as_ref() {
            return Ok(keyring.clone());
        }
        Ok(Arc::new(self.store.unlock(|| Err(Error::Locked)).await?))
    }
}

/// The window's routes, behind the guard.
pub(crate) fn app(state: WindowState) -> Router {
    let pages = Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", include_str!("../../static/window.html")) }))
        .route(
            "/static/window.css",
            get(|| async { asset("text/css; charset=utf-8", include_str!("../../static/window.css")) }),
        )
        .route(
            "/static/window.js",
            get(|| async { asset("text/javascript; charset=utf-8", include_str!("../../static/window.js")) }),
        );
    let scan = Router::new().route("/api/scan", post(api::scan)).layer(DefaultBodyLimit::max(MAX_IMAGE_BYTES));
    // A backup is a few kilobytes per account: the picture's limit is ample.
    let import = Router::new().route("/api/import", post(api::import)).layer(DefaultBodyLimit::max(MAX_IMAGE_BYTES));
    Router::new()
        .merge(pages)
        .merge(api::router())
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .merge(scan)
        .merge(import)
        .fallback(|| async { Error::NotFound })
        .layer(middleware::from_fn(guard::shape_errors))
        .layer(middleware::from_fn_with_state(state.clone(), guard::check))
        .layer(middleware::from_fn(guard::refuse_oversize_body))
        .layer(middleware::from_fn(guard::security_headers))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

/// Where to listen: `--listen`, or loopback on a free port. A non-loopback
/// address needs `--allow-non-loopback`, and an unspecified one (0.0.0.0)
/// is refused outright: the `Host` check needs the one address the browser
/// will name.
fn listen_address(options: &UiOptions) -> Result<SocketAddr, Error> {
    let address = options.listen.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
    if address.ip().is_unspecified() {
        return Err(Error::InvalidInput(format!(
            "cannot listen on {address}: name the one address the browser will use, e.g. 127.0.0.1:8765"
        )));
    }
    if !address.ip().is_loopback() && !options.allow_non_loopback {
        return Err(Error::InvalidInput(format!(
            "refusing to listen on {address}, which is not a loopback address: anyone who reaches it could use your keys; pass --allow-non-loopback if you mean it"
        )));
    }
    Ok(address)
}

/// Opens `url` in the default browser, if there is one; the address was
/// printed already, so failing here costs nothing.
fn open_browser(url: &str) {
    let opener: &[&str] = if cfg!(target_os = "macos") {
        &["open"]
    } else if cfg!(windows) {
        &["cmd", "/C", "start", ""]
    } else {
        &["xdg-open"]
    };
    let spawned = std::process::Command::new(opener[0])
        .args(&opener[1..])
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        // Reaped on a thread of its own, so that it leaves no zombie.
        Ok(mut child) => drop(std::thread::spawn(move || child.wait())),
        Err(_) => eprintln!("No browser could be opened: open the address above yourself."),
    }
}

/// Runs the window until Ctrl-C.
pub(crate) async fn run(app: &App, options: &UiOptions) -> Result<(), Error> {
    let address = listen_address(options)?;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| Error::InvalidInput(format!("cannot listen on {address}: {e}")))?;
    let bound = listener.local_addr()?;
    let state = WindowState::new(app, bound);
    let url = state.entry_url();
    // The first line on stdout, for whoever started us: a script, a test,
    // or a person who opens it by hand.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{url}")?;
    stdout.flush()?;
    eprintln!("Sesame's window is at the address above (keystore {}). Press Ctrl-C to stop.", app.db_path.display());
    if !options.no_browser {
        open_browser(&url);
    }
    let limits = serve::Limits { header_read_timeout: Duration::from_secs(10), max_connections: 64 };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve::serve(listener, self::app(state), limits, shutdown).await
}
