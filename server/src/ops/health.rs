//! Liveness and readiness, for process supervisors and load balancers.
//!
//! `/healthz` answers as long as the process serves HTTP and touches nothing
//! else, so a supervisor never restarts a healthy server because its database
//! is away. `/readyz` asks each dependency one cheap question, with a short
//! timeout, so a load balancer can stop sending sign-ins to an instance that
//! could not complete them.

use std::{
    sync::atomic::{AtomicU8, Ordering},
    time::Duration,
};

use axum::{
    extract::{FromRef, State},
    routing::get,
    Json, Router,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    db::sql::query,
    error::{Error, NotReadyBody, Result},
    state::AppState,
};

/// How long each dependency has to answer. Load balancers probe every few
/// seconds and time out themselves; a slower answer counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AppState: FromRef<S>,
{
    Router::new().route("/healthz", get(live)).route("/readyz", get(ready))
}

/// Liveness.
///
/// Answers while the process serves HTTP; touches no dependency.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "health",
    responses((status = 200, description = "The process serves HTTP.", content_type = "text/plain", body = String, example = "ok")),
)]
async fn live() -> &'static str {
    "ok"
}

#[derive(Debug, Serialize, ToSchema)]
struct Ready {
    /// Always `ready`.
    #[schema(value_type = String, pattern = "^ready$")]
    status: &'static str,
}

/// Readiness.
///
/// Whether the database answers and, with `--redis-url`, Redis, each within
/// 2 seconds.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "health",
    responses(
        (status = 200, description = "Every dependency answers.", body = Ready),
        (status = 503, description = "`not_ready`: `down` names what did not answer.", body = NotReadyBody),
    ),
)]
async fn ready(State(state): State<AppState>) -> Result<Json<Ready>> {
    // Both probes at once, so a dead database and a dead Redis cost one
    // timeout, not two.
    let (database, redis) = tokio::join!(database_answers(&state), state.bus.answers(PROBE_TIMEOUT));
    let down: Vec<&'static str> =
        [(!database).then_some("database"), (!redis).then_some("redis")].into_iter().flatten().collect();
    log_transition(u8::from(!database) | (u8::from(!redis) << 1), &down);
    if down.is_empty() {
        Ok(Json(Ready { status: "ready" }))
    } else {
        Err(Error::NotReady(down))
    }
}

/// `SELECT 1` on a connection to read on: it needs a connection (a new one
/// when the old ones died) and a round trip, and reads no table.
async fn database_answers(state: &AppState) -> bool {
    let probe = async {
        state.db.read().await?.conn().execute(query("SELECT 1")).await?;
        Ok::<_, Error>(())
    };
    matches!(tokio::time::timeout(PROBE_TIMEOUT, probe).await, Ok(Ok(())))
}

/// What the last probe found down (bit 0: the database, bit 1: Redis).
static LAST_DOWN: AtomicU8 = AtomicU8::new(0);

/// Logs a change of readiness once, when it happens: a load balancer probes
/// every few seconds, and a line per probe would bury the one that matters.
/// The 503 answers themselves are not logged as errors.
fn log_transition(down_now: u8, down: &[&'static str]) {
    if LAST_DOWN.swap(down_now, Ordering::Relaxed) == down_now {
        return;
    }
    if down.is_empty() {
        tracing::info!("ready again: every dependency answers");
    } else {
        tracing::warn!(down = %down.join(","), "not ready: {} did not answer", down.join(" and "));
    }
}
