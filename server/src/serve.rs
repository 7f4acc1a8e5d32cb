//! The accept loop: hyper's HTTP/1 and HTTP/2 server under the router, with
//! the limits that `axum::serve` does not have.
//!
//! `axum::serve` never times out a request head, so a client that sends half
//! a request (or nothing) holds its connection for ever, and it accepts every
//! connection the kernel hands it until file descriptors run out. Here a
//! connection must deliver its request head within a deadline, and the number
//! of open connections is capped; the connections beyond the cap get a clear
//! `503 too_many_connections` instead of silence.
//!
//! With TLS (`listener.rs`), the handshake runs in the connection's own
//! task, within a deadline as long as a request head's, so that a slow or
//! silent client never holds up the accept loop.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context as _;
use axum::{extract::ConnectInfo, response::IntoResponse as _, Router};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{
        conn::auto::Builder,
        graceful::{GracefulShutdown, Watcher},
    },
    service::TowerToHyperService,
};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::{error::Error, state::AppState};

/// Limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// How long a client has to send a complete request head, on a new
    /// connection and between two requests of a kept-alive one.
    pub header_read_timeout: Duration,
    /// Most connections served at once. Zero means no limit.
    pub max_connections: usize,
    /// How long a shutdown waits for open requests (event streams among
    /// them) before it drops them.
    pub drain: Duration,
}

/// Connections over the limit that are still answered with a 503; beyond
/// these they are closed at once, so refusing cannot itself exhaust the
/// server.
const MAX_REFUSING: usize = 64;

/// Serves `app` on `listener` until `shutdown` completes, then lets open
/// requests finish for at most `options.drain`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    serve_tls(listener, None, app, options, shutdown).await
}

/// [`serve`], over TLS when `tls` is given.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let open = Arc::new(Semaphore::new(if options.max_connections == 0 {
        Semaphore::MAX_PERMITS
    } else {
        options.max_connections
    }));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let graceful = GracefulShutdown::new();
    // Logged once each time the limit is reached, not once per connection.
    let mut at_limit = false;
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a moment rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Without TCP_NODELAY, a small SSE event written right after the
        // previous one waits for the browser's delayed ACK (40 ms on Linux):
        // the result of a sign-in would reach the page tens of milliseconds
        // late.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
        if let Ok(permit) = open.clone().try_acquire_owned() {
            at_limit = false;
            let service = app.clone().map_request(move |mut request: axum::http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
            let (builder, tls, watcher) = (builder.clone(), tls.clone(), graceful.watcher());
            tokio::spawn(async move {
                if let Some(io) = transport(tcp, tls.as_ref(), options.header_read_timeout).await {
                    connection(&builder, io, service, options.header_read_timeout, watcher).await;
                }
                drop(permit);
            });
        } else if let Ok(permit) = refusing.clone().try_acquire_owned() {
            crate::metrics::rate_limited("connections");
            if !std::mem::replace(&mut at_limit, true) {
                tracing::warn!(max = options.max_connections, "connection limit reached; answering 503");
            }
            let service = tower::service_fn(|_: axum::http::Request<Incoming>| async {
                Ok::<_, Infallible>(Error::TooManyConnections.into_response())
            });
            let mut refuse = builder.clone();
            refuse.http1().keep_alive(false);
            let (tls, watcher) = (tls.clone(), graceful.watcher());
            tokio::spawn(async move {
                // An HTTP/2 client would otherwise keep the refusing
                // connection; the handshake counts within the same time.
                let _ = tokio::time::timeout(options.header_read_timeout, async {
                    if let Some(io) = transport(tcp, tls.as_ref(), options.header_read_timeout).await {
                        connection(&refuse, io, service, options.header_read_timeout, watcher).await;
                    }
                })
                .await;
                drop(permit);
            });
        }
        // Otherwise `tcp` is dropped here, which closes it.
    }
    drop(listener);
    if tokio::time::timeout(options.drain, graceful.shutdown()).await.is_err() {
        tracing::info!("requests still open after {:?}; closing them", options.drain);
    }
    Ok(())
}

/// What a connection runs over: TCP, or TLS over TCP.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}

/// The connection's transport: `tcp` itself, or, with `tls`, the TLS
/// stream once its handshake is done. `None` when the handshake failed or
/// did not finish within `timeout`.
async fn transport(tcp: TcpStream, tls: Option<&TlsAcceptor>, timeout: Duration) -> Option<Box<dyn Transport>> {
    let Some(acceptor) = tls else {
        return Some(Box::new(tcp));
    };
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(Box::new(stream)),
        // A scanner, a client that does not trust the certificate, plain
        // HTTP sent to the TLS port: the client's problem, not the server's.
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("no TLS handshake within {timeout:?}");
            None
        }
    }
}

/// Serves one connection. The HTTP/1 header timeout starts only once hyper
/// knows the connection speaks HTTP/1, and HTTP/2 has none, so a client that
/// sends nothing, or a few bytes of a preface, is also closed when no
/// request has begun within the timeout.
async fn connection<S>(
    builder: &Builder<TokioExecutor>,
    io: Box<dyn Transport>,
    service: S,
    header_read_timeout: Duration,
    watcher: Watcher,
) where
    S: tower::Service<axum::http::Request<Incoming>, Response = axum::response::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let started = Arc::new(AtomicBool::new(false));
    let seen = started.clone();
    let service = service.map_request(move |request| {
        seen.store(true, Ordering::Relaxed);
        request
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    let connection = watcher.watch(connection);
    tokio::pin!(connection);
    let outcome = tokio::select! {
        outcome = &mut connection => outcome,
        () = tokio::time::sleep(header_read_timeout) => {
            if !started.load(Ordering::Relaxed) {
                return;
            }
            connection.await
        }
    };
    if let Err(e) = outcome {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// The metrics listener's routes: `/metrics`, and the health checks, so that
/// a monitoring network can probe an instance without reaching the public
/// port.
pub fn metrics_router(state: AppState, handle: PrometheusHandle) -> Router {
    let exposition = axum::routing::get(move || {
        let handle = handle.clone();
        async move { crate::metrics::exposition(&handle) }
    });
    crate::ops::health::router()
        .route("/metrics", exposition)
        .fallback(|| async { Error::NotFound.into_response() })
        .with_state(state)
}

/// Serves the metrics listener for as long as the process runs.
pub async fn metrics(addr: SocketAddr, state: AppState, handle: PrometheusHandle) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen for metrics on {addr}"))?;
    tracing::info!(listen = %addr, "metrics listener started");
    // A scraper and a few probes; nothing here needs thousands of
    // connections, and a misbehaving client must not starve the others.
    let options =
        ServeOptions { header_read_timeout: Duration::from_secs(10), max_connections: 64, drain: Duration::ZERO };
    tokio::spawn(serve(listener, metrics_router(state, handle), options, std::future::pending()));
    Ok(())
}
