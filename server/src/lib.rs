//! `sesame-server`: services, their login pages, challenges and live results.
//!
//! [`app`] builds the whole HTTP surface from an [`App`]; [`run`] turns a
//! [`Config`] into a listening server. Tests call [`app`] directly.

// Features.
pub mod admin;
pub mod challenge;
pub mod names;
pub mod oidc;
pub mod signin;
// The state, and storage.
pub mod audit;
pub mod bus;
pub mod config;
pub mod db;
pub mod state;
// Utilities.
pub mod clock;
pub mod error;
pub mod http;
pub mod metrics;
pub mod tls;
// Assembly and operations.
pub mod listener;
pub mod openapi;
pub mod ops;
pub mod serve;
pub mod webapp;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{
    extract::DefaultBodyLimit,
    http::{header, HeaderValue, Request, Response},
    Router,
};
use tower_http::{classify::ServerErrorsFailureClass, set_header::SetResponseHeaderLayer, trace::TraceLayer};
use tracing::Span;

use crate::{
    bus::Bus,
    challenge::{pending::Pending, Challenges, SignInState},
    clock::{Clock, SystemClock},
    error::LoggedError,
    oidc::OidcState,
    ops::sweep::Retention,
    serve::ServeOptions,
    signin::passkey::{PasskeyState, RelyingParty},
    state::RouterState,
};
pub use crate::{
    config::Config,
    error::Error,
    http::middleware::MAX_BODY_BYTES,
    state::{origin_from, AppState},
};

/// The whole HTTP surface.
pub fn app(app: App) -> Router {
    Router::new()
        .merge(ops::health::router())
        .merge(signin::pages::router())
        .merge(signin::enroll::router())
        .merge(signin::devices::router())
        .merge(signin::passkey::router())
        .merge(challenge::router())
        .merge(signin::authenticator::router())
        .merge(admin::router())
        .merge(oidc::router())
        .merge(openapi::router())
        .merge(webapp::router())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Inside the trace layer, so that the shaped answers are what the
        // request log records.
        .layer(axum::middleware::from_fn(http::middleware::refuse_oversize_body))
        .layer(axum::middleware::from_fn(http::middleware::shape_errors))
        // Outside both, so that it sees their refusals too.
        .layer(axum::middleware::from_fn(http::middleware::close_after_refused_body))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(http::middleware::CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        // Not `no-referrer`: under it browsers send `Origin: null` on the
        // page's own form POSTs, and the Origin checks would refuse them.
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        // Outside the error shaping, so that it counts the status and error
        // code the client got; inside the trace span.
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(
            // Spans record the method and the route pattern, never the raw
            // path or query, and no headers: tokens and cookies stay out of
            // the logs.
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let route = req
                        .extensions()
                        .get::<axum::extract::MatchedPath>()
                        .map_or("<unmatched>", |p| p.as_str())
                        .to_owned();
                    tracing::info_span!("request", method = %req.method(), route)
                })
                .on_request(())
                .on_response(|res: &Response<_>, latency: Duration, _span: &Span| {
                    if let Some(LoggedError(detail)) = res.extensions().get::<LoggedError>() {
                        tracing::error!(status = res.status().as_u16(), ?latency, "{detail}");
                    } else {
                        tracing::debug!(status = res.status().as_u16(), ?latency, "done");
                    }
                })
                // A 5xx status is logged above, with its detail, when it is a
                // failure at all (a `not_ready` answer is not): the default
                // would log every one again, `/readyz` at every probe. Only
                // a body that fails midway is left to report here.
                .on_failure(|failure: ServerErrorsFailureClass, latency: Duration, _span: &Span| {
                    if let ServerErrorsFailureClass::Error(error) = failure {
                        tracing::warn!(?latency, %error, "response body failed");
                    }
                }),
        )
        .with_state(app)
}

/// Everything the routes share. A handler takes the parts it needs
/// (`State<AppState>`, `State<Challenges>`, `State<oidc::Provider>`,
/// `State<RelyingParty>`) through `FromRef`, so that no feature depends on
/// this whole, and the state below the features holds no feature's parts.
#[derive(Debug, Clone)]
pub struct App {
    pub state: AppState,
    pub challenges: Challenges,
    pub oidc: oidc::Provider,
    /// The passkeys' WebAuthn relying party, which `--public-url` makes.
    pub relying_party: RelyingParty,
}

impl RouterState for App {
    fn app_state(&self) -> &AppState {
        &self.state
    }
}

impl SignInState for App {
    fn challenges(&self) -> &Challenges {
        &self.challenges
    }
}

impl OidcState for App {
    fn provider(&self) -> &oidc::Provider {
        &self.oidc
    }
}

impl PasskeyState for App {
    fn relying_party(&self) -> &RelyingParty {
        &self.relying_party
    }
}

impl App {
    /// The app over `state`, its pending challenges kept in `pending`. It
    /// fails only when the public origin cannot be a WebAuthn relying
    /// party's.
    pub fn new(state: AppState, pending: Pending, oidc: oidc::Provider) -> anyhow::Result<Self> {
        let relying_party =
            RelyingParty::of(&state.settings.origin).context("the public URL cannot be the passkeys' relying party")?;
        let challenges = Challenges::new(state.db.clone(), state.bus.clone(), state.clock.clone(), pending);
        Ok(Self { state, challenges, oidc, relying_party })
    }

    /// Builds the app from the config: connects, migrates, loads the key.
    /// A single instance (no Redis) keeps its pending challenges in memory;
    /// several keep them in the `challenge` table they share. Returns the
    /// admin token when it was generated for this run.
    pub async fn from_config(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<(Self, Option<String>)> {
        let (state, generated) = state::state_from(config, clock).await?;
        let pending = match state.bus {
            Bus::Local(_) => Pending::memory(config.challenge_retention),
            Bus::Redis(_) => Pending::Table,
        };
        Ok((Self::new(state, pending, oidc::Provider::with_code_ttl(config.oidc_code_ttl))?, generated))
    }
}

/// Runs the server until Ctrl-C or SIGTERM, then drains open requests.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // First: a certificate that cannot serve stops the start before the
    // database is touched.
    let tls = listener::ListenerTls::from_config(&config)?;
    // Before the state: handles taken earlier would stay no-ops.
    let metrics = config.metrics_listen.map(|addr| metrics::install().map(|handle| (addr, handle))).transpose()?;
    let (app, generated_token) = App::from_config(&config, Arc::new(SystemClock)).await?;
    let state = app.state.clone();
    if let Some((addr, handle)) = metrics {
        serve::metrics(addr, state.clone(), handle).await?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let origin = state.settings.origin.clone();
    tracing::info!(listen = %config.listen, %origin, tls = tls.is_some(), "sesame-server started");
    println!("Sesame is listening on {} (public origin {origin})", config.listen);
    println!("Admin page: {origin}/admin");
    if let Some(token) = &generated_token {
        println!("Admin token (generated for this run; pass --admin-token to keep one): {token}");
    }
    admin::on_start(&state, &config).await?;
    signin::passkey::on_start(&state).await?;
    if let Pending::Memory(memory) = app.challenges.pending() {
        tokio::spawn(challenge::pending::purge_every(memory.clone(), state.clock.clone()));
    }
    if config.sweep_interval > 0 {
        let retention = Retention {
            challenge_secs: config.challenge_retention,
            event_secs: config.event_retention_days.saturating_mul(24 * 60 * 60),
            events_per_service: config.events_per_service,
            audit_secs: config.audit_retention_days.saturating_mul(24 * 60 * 60),
        };
        tokio::spawn(ops::sweep::every(state.clone(), Duration::from_secs(config.sweep_interval), retention));
    }
    let options = ServeOptions {
        header_read_timeout: Duration::from_secs(config.header_read_timeout),
        max_connections: config.max_connections,
        drain: DRAIN,
    };
    let acceptor = match tls {
        Some(tls) => {
            let acceptor = tls.acceptor();
            tls.watch(Duration::from_secs(config.tls_check_interval))?;
            Some(acceptor)
        }
        None => None,
    };
    serve::serve_tls(listener, acceptor, self::app(app), options, shutdown_signal()).await
}

/// How long a shutdown waits for open requests. Event streams stay open for
/// minutes; the pages reconnect to another instance on their own.
const DRAIN: Duration = Duration::from_secs(10);

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
