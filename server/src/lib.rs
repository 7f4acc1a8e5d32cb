//! `sesame-server`: services, their login pages, challenges and live results.
//!
//! [`app`] builds the whole HTTP surface from an [`AppState`]; [`run`] turns a
//! [`Config`] into a listening server. Tests call [`app`] directly.

pub mod admin;
pub mod audit;
pub mod authenticator;
pub mod backup;
pub mod bus;
pub mod challenge;
pub mod clock;
pub mod config;
pub mod cookie;
pub mod db;
pub mod enroll;
pub mod error;
pub mod extract;
pub(crate) mod health;
pub mod keys;
pub mod limit;
pub mod metrics;
pub mod middleware;
pub mod oidc;
pub mod openapi;
pub mod pages;
pub mod recovery;
pub mod serve;
pub mod sql;
pub mod state;
pub mod sweep;
pub mod tls;
pub mod webapp;
pub mod writer;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{
    extract::DefaultBodyLimit,
    http::{header, HeaderValue, Request, Response},
    Router,
};
use sesame_proto::Origin;
use tower_http::{classify::ServerErrorsFailureClass, set_header::SetResponseHeaderLayer, trace::TraceLayer};
use tracing::Span;

use crate::{
    bus::Bus,
    clock::{Clock, SystemClock},
    db::Db,
    error::LoggedError,
    limit::StreamLimits,
    serve::ServeOptions,
    state::{AdminToken, Identity, Limits, Settings, Shared},
    sweep::Retention,
};
pub use crate::{config::Config, error::Error, middleware::MAX_BODY_BYTES, state::AppState};

/// Pages may load scripts, styles and images only from this server, may not
/// be framed, and forms may post only here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// [`CSP`] with forms also allowed to end up at `target` (a CSP source).
pub(crate) fn csp_with_form_action(target: &str) -> String {
    CSP.replace("form-action 'self'", &format!("form-action 'self' {target}"))
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(pages::router())
        .merge(enroll::router())
        .merge(challenge::router())
        .merge(authenticator::router())
        .merge(admin::router())
        .merge(oidc::router())
        .merge(openapi::router())
        .merge(webapp::router())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Inside the trace layer, so that the shaped answers are what the
        // request log records.
        .layer(axum::middleware::from_fn(middleware::refuse_oversize_body))
        .layer(axum::middleware::from_fn(middleware::shape_errors))
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
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
        .with_state(state)
}

/// The origin placed in tokens: `--public-url`, or `http://` plus the listen
/// address.
pub fn origin_from(config: &Config) -> anyhow::Result<Origin> {
    let text = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("http://{}", config.listen),
    };
    Origin::parse(&text).map_err(|_| {
        anyhow::anyhow!("--public-url must be an origin like https://login.example.com (scheme, lowercase host, optional port, no path), not {text:?}")
    })
}

/// Builds the state from the config: connects, migrates, loads the key.
pub async fn state_from(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<(AppState, Option<String>)> {
    let origin = origin_from(config)?;
    let url = match &config.database_url {
        Some(url) => url.clone(),
        None => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("cannot create the data directory {}", config.data_dir.display()))?;
            Db::sqlite_url(&config.data_dir)
        }
    };
    tls::install_crypto_provider();
    let url = tls::database_url(&url, config.database_ca_file.as_deref())?;
    let db = Db::connect(&url).await?;
    let identity = Identity::load_or_create(&db, clock.now().as_secs() as i64).await?;
    let redis_ca = match &config.redis_ca_file {
        Some(_) if config.redis_url.is_none() => anyhow::bail!("--redis-ca-file needs --redis-url"),
        Some(path) => Some(tls::read_ca_file(path, "--redis-ca-file")?),
        None => None,
    };
    let (bus, db) = match &config.redis_url {
        // One instance: its pending challenges need not leave the process.
        None => (Bus::local(), db.with_pending_in_memory(config.challenge_retention)),
        // The pid names this instance's connection in Redis's CLIENT LIST, so
        // an operator can tell the instances apart.
        Some(url) => {
            (Bus::redis_with_ca(url, &format!("sesame-{}", std::process::id()), redis_ca.as_deref()).await?, db)
        }
    };
    let (admin_token, generated) = match &config.admin_token {
        Some(token) if token.len() >= 16 => (AdminToken::new(token), None),
        Some(_) => anyhow::bail!("--admin-token must be at least 16 characters"),
        None => {
            let token = AdminToken::generate();
            (AdminToken::new(&token), Some(token))
        }
    };
    let settings = Settings {
        origin,
        challenge_ttl_secs: config.challenge_ttl,
        rotation_secs: config.rotation,
        code_window_secs: config.code_window,
        trusted_proxies: config.trusted_proxies.clone().into(),
    };
    let state = AppState::new(Shared {
        db,
        bus: bus.clone(),
        clock,
        identity: Arc::new(identity),
        settings: Arc::new(settings),
        admin_token: Arc::new(admin_token),
        oidc: Arc::new(oidc::Provider::with_code_ttl(config.oidc_code_ttl)),
        limits: Limits::per_minute(config.rate_limit)
            .shared_through(&bus)
            .with_streams(StreamLimits::new(config.max_streams_per_challenge, config.max_streams_per_address)),
    });
    Ok((state, generated))
}

/// Runs the server until Ctrl-C or SIGTERM, then drains open requests.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Before the state: handles taken earlier would stay no-ops.
    let metrics = config.metrics_listen.map(|addr| metrics::install().map(|handle| (addr, handle))).transpose()?;
    let (state, generated_token) = state_from(&config, Arc::new(SystemClock)).await?;
    if let Some((addr, handle)) = metrics {
        serve::metrics(addr, state.clone(), handle).await?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let origin = state.settings.origin.clone();
    tracing::info!(listen = %config.listen, %origin, "sesame-server started");
    println!("Sesame is listening on {} (public origin {origin})", config.listen);
    println!("Admin page: {origin}/admin");
    if let Some(token) = &generated_token {
        println!("Admin token (generated for this run; pass --admin-token to keep one): {token}");
    }
    admin::on_start(&state, &config).await?;
    if let challenge::pending::Pending::Memory(memory) = &state.db.pending {
        tokio::spawn(challenge::pending::purge_every(memory.clone(), state.clock.clone()));
    }
    if config.sweep_interval > 0 {
        let retention = Retention {
            challenge_secs: config.challenge_retention,
            event_secs: config.event_retention_days.saturating_mul(24 * 60 * 60),
            events_per_service: config.events_per_service,
            audit_secs: config.audit_retention_days.saturating_mul(24 * 60 * 60),
        };
        tokio::spawn(sweep::every(state.clone(), Duration::from_secs(config.sweep_interval), retention));
    }
    let options = ServeOptions {
        header_read_timeout: Duration::from_secs(config.header_read_timeout),
        max_connections: config.max_connections,
        drain: DRAIN,
    };
    serve::serve(listener, app(state), options, shutdown_signal()).await
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
