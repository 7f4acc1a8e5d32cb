//! The window's accept loop, with the limits the server has too: a request
//! head must arrive within a deadline, and open connections are capped.
//!
//! `axum::serve` has neither, so a local program that opens connections and
//! sends nothing could otherwise hold the window's file descriptors for
//! ever. HTTP/1 only: the window has one user and no streams.

use std::{future::Future, sync::Arc, time::Duration};

use axum::{extract::Request, Router};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tower::ServiceExt as _;

use crate::Error;

#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// How long a client has to send a complete request head, on a new
    /// connection and between two requests of a kept-alive one.
    pub(super) header_read_timeout: Duration,
    /// Most connections served at once; the ones beyond are closed.
    pub(super) max_connections: usize,
}

/// How long Ctrl-C waits for requests still open (an approval on its way to
/// the server) before the keystore is closed.
const DRAIN: Duration = Duration::from_secs(5);

pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a moment rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Over the cap the connection is dropped, which closes it.
        let Ok(permit) = open.clone().try_acquire_owned() else { continue };
        let service = app.clone().map_request(|request: Request<Incoming>| request.map(axum::body::Body::new));
        let connection = builder.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
    Ok(())
}
