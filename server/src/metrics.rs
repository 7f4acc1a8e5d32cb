//! Prometheus metrics: every series Sesame exports, and their exposition,
//! which the separate metrics listener (`serve::metrics`) serves with
//! `/healthz` and `/readyz`.
//!
//! Recording goes through the `metrics` facade, and the text exposition comes
//! from `metrics-exporter-prometheus`. The facade lets any module count
//! something with one call and no handle threaded through `AppState`, and
//! when `--metrics-listen` is absent no recorder is installed, so every call
//! is a no-op. The exporter writes the classic Prometheus text format, which
//! every scraper reads and `promtool check metrics` checks as is.
//!
//! Labels are few and bounded: route templates (never raw paths), methods,
//! status classes, stable error codes and fixed names. No challenge id,
//! account, service or address ever becomes a label. On the hot path
//! (requests, answers) the counters are looked up once per label set and
//! kept, because the facade would otherwise allocate a label vector at every
//! call.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{
        atomic::{AtomicBool, Ordering},
        LazyLock, OnceLock, RwLock,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use axum::{
    extract::{MatchedPath, Request},
    http::{header, Method},
    middleware::Next,
    response::{IntoResponse, Response},
};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sesame_proto::UnixTime;

/// Bucket bounds, in seconds.
const REQUEST_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const QUERY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// A person reads the page, picks up a phone and approves: seconds to
/// minutes, up to the longest challenge (10 minutes).
const APPROVAL_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0];
/// Writes that shared one SQLite commit: 1 alone, up to the writer's cap of 64.
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
const DELIVERY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Whether a recorder is installed. Without one the request middleware
/// does nothing at all, not even look up its no-op handles.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// How often histogram samples are folded into their buckets. Without it
/// they pile up in memory between two scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process-wide recorder and describes every series. Call it
/// once, before the state is built, so that no handle is taken from the
/// no-op recorder first.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("sesame_http_request_duration_seconds".into()), REQUEST_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("sesame_db_query_duration_seconds".into()), QUERY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("sesame_challenge_approval_seconds".into()), APPROVAL_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("sesame_answer_delivery_seconds".into()), DELIVERY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("sesame_db_group_commit_writes".into()), GROUP_BUCKETS)?;
    let handle = builder.install_recorder().context("cannot install the metrics recorder")?;
    ENABLED.store(true, Ordering::Relaxed);
    describe();
    gauge!("sesame_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(UPKEEP_EVERY);
        loop {
            ticks.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// The help text of each series, which the exposition prints as `# HELP`.
fn describe() {
    describe_gauge!("sesame_build_info", "Always 1; the version label names the running sesame-server.");
    describe_counter!(
        "sesame_http_requests_total",
        "HTTP requests answered on the public port, by route template, method and status class."
    );
    describe_histogram!(
        "sesame_http_request_duration_seconds",
        "Time from a request's arrival to its response head, by route template (for event streams: until the \
         stream opens)."
    );
    describe_counter!(
        "sesame_challenges_created_total",
        "Challenges issued, by purpose (sign_in, admin_sign_in, admin_authenticator, oidc, other)."
    );
    describe_counter!(
        "sesame_answers_total",
        "Authenticator answers (register, login, deny), by outcome: ok, denied, or the error code of the refusal."
    );
    describe_histogram!(
        "sesame_challenge_approval_seconds",
        "Time from a challenge's creation to its approval (a completed registration or login), in whole seconds."
    );
    describe_histogram!(
        "sesame_answer_delivery_seconds",
        "Time from publishing a challenge's final state to sending it on a waiting event stream."
    );
    describe_gauge!("sesame_event_streams_open", "Event streams open on this instance.");
    describe_gauge!(
        "sesame_challenges_held",
        "Challenges this instance holds in memory (one instance, no Redis): pending, and just ended. \
         Sampled every 10 s."
    );
    describe_counter!("sesame_bus_messages_published_total", "Notices this instance published on the bus.");
    describe_counter!("sesame_bus_messages_received_total", "Notices that reached this instance's bus.");
    describe_counter!(
        "sesame_bus_publish_failures_total",
        "Notices that could not be published at once (Redis away); they are sent after the reconnection."
    );
    describe_counter!("sesame_bus_reconnects_total", "Connections to Redis made again after one was lost.");
    describe_histogram!(
        "sesame_db_query_duration_seconds",
        "Time each database statement took, from the call to its last row."
    );
    describe_histogram!(
        "sesame_db_group_commit_writes",
        "Sign-in writes that shared one commit of SQLite's writer (1: the write was alone). SQLite only."
    );
    describe_counter!("sesame_sweeps_total", "Sweeps of old rows, by outcome (ok, failed).");
    describe_counter!("sesame_swept_rows_total", "Rows deleted by the sweep, by table.");
    describe_counter!(
        "sesame_rate_limited_total",
        "Requests refused by a limit: challenges, submissions (per minute and address), streams (open at once)."
    );
}

/// The Prometheus exposition of everything recorded: what `/metrics` on
/// the metrics listener answers (`serve::metrics_router`).
pub fn exposition(handle: &PrometheusHandle) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response()
}

tokio::task_local! {
    /// The route template of the request being handled, for counters whose
    /// label depends on where they were reached from.
    static ROUTE: &'static str;
}

/// Middleware on the public router: counts each request by route template,
/// method and status class, times it, and counts authenticator answers by
/// outcome.
pub async fn track(request: Request, next: Next) -> Response {
    if !ENABLED.load(Ordering::Relaxed) {
        return next.run(request).await;
    }
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| intern(p.as_str()));
    let method = method_label(request.method());
    let response = ROUTE.scope(route, next.run(request)).await;
    let status = response.status();
    let class = match status.as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    };
    requests(route, method, class).increment(1);
    durations(route).record(started.elapsed().as_secs_f64());
    if let Some(kind) = answer_kind(route) {
        let outcome = match response.extensions().get::<crate::error::ErrorCode>() {
            Some(code) => code.0,
            None if !status.is_success() => "error",
            None if kind == "deny" => "denied",
            None => "ok",
        };
        answers(kind, outcome).increment(1);
    }
    response
}

/// The authenticator's answer routes and the kind of answer each takes.
fn answer_kind(route: &str) -> Option<&'static str> {
    match route {
        "/api/authenticator/register" => Some("register"),
        "/api/authenticator/login" => Some("login"),
        "/api/authenticator/deny" => Some("deny"),
        _ => None,
    }
}

/// What a challenge created on `route` is for.
fn purpose(route: &str) -> &'static str {
    match route {
        "/api/services/{id}/challenges" | "/services/{id}" => "sign_in",
        "/admin/sesame" => "admin_sign_in",
        "/admin/authenticators" => "admin_authenticator",
        r if r.contains("oidc") || r.contains("authorize") => "oidc",
        _ => "other",
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Route templates as `&'static str`. The router has a fixed set of them,
/// so each is leaked once, the first time it is seen.
fn intern(route: &str) -> &'static str {
    static ROUTES: LazyLock<RwLock<HashMap<&'static str, ()>>> = LazyLock::new(RwLock::default);
    if let Some((known, ())) = ROUTES.read().expect("metrics lock poisoned").get_key_value(route) {
        return known;
    }
    let mut routes = ROUTES.write().expect("metrics lock poisoned");
    if let Some((known, ())) = routes.get_key_value(route) {
        return known;
    }
    let leaked: &'static str = Box::leak(route.to_owned().into_boxed_str());
    routes.insert(leaked, ());
    leaked
}

/// Handles looked up once per label set and then reused.
struct Handles<K, M> {
    map: RwLock<HashMap<K, M>>,
}

impl<K: Hash + Eq + Copy, M: Clone> Handles<K, M> {
    fn new() -> Self {
        Self { map: RwLock::default() }
    }

    fn get(&self, key: K, make: impl FnOnce() -> M) -> M {
        if let Some(handle) = self.map.read().expect("metrics lock poisoned").get(&key) {
            return handle.clone();
        }
        self.map.write().expect("metrics lock poisoned").entry(key).or_insert_with(make).clone()
    }
}

fn requests(route: &'static str, method: &'static str, class: usize) -> Counter {
    static HANDLES: LazyLock<Handles<(&'static str, &'static str, usize), Counter>> = LazyLock::new(Handles::new);
    HANDLES.get(
        (route, method, class),
        || counter!("sesame_http_requests_total", "route" => route, "method" => method, "status" => CLASSES[class]),
    )
}

fn durations(route: &'static str) -> Histogram {
    static HANDLES: LazyLock<Handles<&'static str, Histogram>> = LazyLock::new(Handles::new);
    HANDLES.get(route, || histogram!("sesame_http_request_duration_seconds", "route" => route))
}

fn answers(kind: &'static str, outcome: &'static str) -> Counter {
    static HANDLES: LazyLock<Handles<(&'static str, &'static str), Counter>> = LazyLock::new(Handles::new);
    HANDLES.get((kind, outcome), || counter!("sesame_answers_total", "kind" => kind, "outcome" => outcome))
}

/// A challenge was issued; its purpose comes from the route that issued it.
pub fn challenge_created() {
    static HANDLES: LazyLock<Handles<&'static str, Counter>> = LazyLock::new(Handles::new);
    let purpose = purpose(ROUTE.try_with(|route| *route).unwrap_or(""));
    HANDLES.get(purpose, || counter!("sesame_challenges_created_total", "purpose" => purpose)).increment(1);
}

/// A registration or login completed the challenge created at `created_at`
/// (Unix seconds, as stored).
pub fn challenge_approved(created_at: i64, now: UnixTime) {
    static APPROVAL: OnceLock<Histogram> = OnceLock::new();
    let secs = (now.as_secs() as i64).saturating_sub(created_at).max(0);
    APPROVAL.get_or_init(|| histogram!("sesame_challenge_approval_seconds")).record(secs as f64);
}

/// The final state of a challenge was sent on an event stream; the notice
/// that woke the stream was published at `published_at` (microseconds since
/// the epoch, 0 when unknown, as after a reconnection).
pub fn answer_delivered(published_at: u64) {
    static DELIVERY: OnceLock<Histogram> = OnceLock::new();
    if published_at == 0 {
        return;
    }
    // Instances' clocks may differ by a little; a notice from "the future"
    // counts as delivered at once, and one older than a challenge can live
    // is not from this publish at all.
    let age = now_micros().saturating_sub(published_at);
    if age <= 10 * 60 * 1_000_000 {
        DELIVERY.get_or_init(|| histogram!("sesame_answer_delivery_seconds")).record(age as f64 / 1e6);
    }
}

/// Wall-clock microseconds since the epoch: the timestamp a notice carries,
/// comparable across instances (unlike `Instant`).
pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// An event stream opened (`1.0`) or closed (`-1.0`).
pub fn streams_open(change: f64) {
    static OPEN: OnceLock<metrics::Gauge> = OnceLock::new();
    OPEN.get_or_init(|| gauge!("sesame_event_streams_open")).increment(change);
}

/// How many challenges this instance holds in memory now.
pub fn challenges_held(count: usize) {
    static HELD: OnceLock<metrics::Gauge> = OnceLock::new();
    HELD.get_or_init(|| gauge!("sesame_challenges_held")).set(count as f64);
}

pub fn bus_published() {
    static PUBLISHED: OnceLock<Counter> = OnceLock::new();
    PUBLISHED.get_or_init(|| counter!("sesame_bus_messages_published_total")).increment(1);
}

pub fn bus_received() {
    static RECEIVED: OnceLock<Counter> = OnceLock::new();
    RECEIVED.get_or_init(|| counter!("sesame_bus_messages_received_total")).increment(1);
}

pub fn bus_publish_failed() {
    counter!("sesame_bus_publish_failures_total").increment(1);
}

pub fn bus_reconnected() {
    counter!("sesame_bus_reconnects_total").increment(1);
}

/// A request refused by the limit named `limit`.
pub fn rate_limited(limit: &'static str) {
    static HANDLES: LazyLock<Handles<&'static str, Counter>> = LazyLock::new(Handles::new);
    HANDLES.get(limit, || counter!("sesame_rate_limited_total", "limit" => limit)).increment(1);
}

/// One sweep finished: how many rows it deleted from each table, or that
/// it failed.
pub fn swept(rows_by_table: Option<&[(&'static str, u64)]>) {
    let Some(tables) = rows_by_table else {
        counter!("sesame_sweeps_total", "outcome" => "failed").increment(1);
        return;
    };
    counter!("sesame_sweeps_total", "outcome" => "ok").increment(1);
    for &(table, rows) in tables {
        counter!("sesame_swept_rows_total", "table" => table).increment(rows);
    }
}

/// One database statement took `elapsed` (see `db::sql`). Without a
/// recorder (metrics off) this records nothing.
pub fn query_finished(elapsed: std::time::Duration) {
    histogram!("sesame_db_query_duration_seconds").record(elapsed.as_secs_f64());
}

/// SQLite's writer committed `writes` writes together (see `writer`).
pub fn group_committed(writes: usize) {
    histogram!("sesame_db_group_commit_writes").record(writes as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_labelled_by_the_route_that_issued_them() {
        assert_eq!(purpose("/services/{id}"), "sign_in");
        assert_eq!(purpose("/api/services/{id}/challenges"), "sign_in");
        assert_eq!(purpose("/admin/sesame"), "admin_sign_in");
        assert_eq!(purpose("/admin/authenticators"), "admin_authenticator");
        assert_eq!(purpose("/oidc/authorize"), "oidc");
        assert_eq!(purpose(""), "other");
    }

    #[test]
    fn a_route_template_is_interned_once() {
        let first = intern("/api/challenges/{cid}");
        let second = intern(&String::from("/api/challenges/{cid}"));
        assert!(std::ptr::eq(first, second));
    }

    #[test]
    fn unusual_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"PURGE").expect("a valid method")), "other");
    }
}
