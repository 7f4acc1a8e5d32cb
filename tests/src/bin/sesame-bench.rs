//! `sesame-bench`: measures real `sesame-server` processes against the
//! targets of the design brief, with the load generator on the same machine.
//!
//! ```text
//! cargo run --release -p sesame-tests --bin sesame-bench -- \
//!     [SIGN_INS] [CONCURRENCY] [WAITERS] [--runs N] [--flow api|page|oidc] [--setup embedded|cluster]
//!     [--rate PER_SECOND] [--metrics] [--alg RS256|EdDSA]
//! ```
//!
//! 1. Complete sign-ins, `--runs` times (default 3): each one starts a
//!    challenge (through the JSON API, or by loading the real login page with
//!    `--flow page`), opens its event stream, signs a login, submits it, waits
//!    for the `completed` event and redeems the session, as a browser and an
//!    authenticator would. Each run reports sign-ins per second, the submit →
//!    SSE event latency (p50, p99), the CPU time per sign-in of every server
//!    process (user + system, from /proc) and of the load generator itself;
//!    the last lines give the median and the min–max of the runs.
//!    `--flow oidc` makes each one a complete OpenID Connect sign-in
//!    instead, relying party included (see [`oidc`]): the latency is then
//!    the whole flow's, and the last line says how many sampled ID tokens
//!    verified.
//! 2. Waiting browsers: holds WAITERS event streams open on one instance
//!    while their codes rotate, and reports that instance's memory and CPU.
//!
//! `--setup embedded` (the default) runs one instance on its embedded SQLite
//! database and in-process bus. `--setup cluster` runs two instances on one
//! PostgreSQL database (a fresh one on the server that `SESAME_TEST_POSTGRES_URL`
//! names) and one Redis: each browser talks to one instance and its
//! authenticator to the other, so every result crosses Redis. The server CPU
//! then includes PostgreSQL's backends for that database and Redis.
//!
//! `--rate` paces the sign-ins: they start at that many a second, evenly
//! spaced, however fast the server answers (as long as CONCURRENCY workers
//! can keep up), instead of each worker starting the next as soon as the
//! last is done. Without it the server runs flat out, and at saturation
//! the latency is the queue's (CONCURRENCY sign-ins in flight, divided by
//! the rate); with it, below saturation, the latency is the server's own
//! under that load. Each run says how many sign-ins started more than a
//! millisecond late because every worker was busy: if many did, the server
//! did not keep up with the rate, and the run measured a queue after all.
//!
//! `--metrics` turns on each instance's `--metrics-listen` and scrapes it
//! once a second while the sign-ins run, fifteen times as often as
//! Prometheus does by default. The difference in server CPU per sign-in
//! between a run with it and one without is the cost of the metrics.
//!
//! The clients are lean, so that the load generator leaves the CPU to the
//! server: one HTTP client and one signing key per concurrent worker, kept
//! for the whole run, connections reused, cookies handled by hand.
//!
//! It prints figures; it asserts nothing. Timing belongs here, not in tests.

use std::{
    process::Command,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use reqwest::header::{COOKIE, SET_COOKIE};
use sesame_proto::{AccountKey, AccountName, LoginRequest, RegisterRequest, ServerPublicKey, UnverifiedToken};
use sesame_tests::{Challenge, EventStream, PgDatabase, Redis, Server, ServerOptions};

// A binary's root looks for its modules beside it, in `bin/`, where every
// file would be a binary of its own.
#[path = "sesame-bench/args.rs"]
mod args;
#[path = "sesame-bench/oidc.rs"]
mod oidc;
#[path = "sesame-bench/soak.rs"]
mod soak;

use args::{Args, Flow};

/// The processes under test, and what they run on.
struct Setup {
    servers: Vec<Server>,
    redis: Option<Redis>,
    db: Option<PgDatabase>,
    /// Each instance's `/metrics`, with `--metrics`.
    metrics: Vec<String>,
}

impl Setup {
    async fn start(cluster: bool, with_metrics: bool, soak: bool) -> anyhow::Result<Self> {
        // Every simulated browser comes from 127.0.0.1: lift the per-address
        // caps, and make room for every waiting browser's connection. Logs
        // at the production default, `info`.
        let mut extra_args = ["--max-streams-per-address", "0", "--max-connections", "0"].map(String::from).to_vec();
        if soak {
            extra_args.extend(soak::SERVER_ARGS.map(String::from));
        }
        let options = ServerOptions { log_filter: Some("info".into()), extra_args, ..ServerOptions::default() };
        let mut metrics = Vec::new();
        // Each instance gets a metrics listener of its own, when asked.
        let mut start = |mut options: ServerOptions| {
            if with_metrics {
                let address = format!("127.0.0.1:{}", sesame_tests::free_port());
                metrics.push(format!("http://{address}/metrics"));
                options.extra_args.extend(["--metrics-listen".to_owned(), address]);
            }
            Server::start_with(options)
        };
        if !cluster {
            let server = start(options).await?;
            return Ok(Self { servers: vec![server], redis: None, db: None, metrics });
        }
        let db = PgDatabase::create()?;
        let redis = Redis::start()?;
        // One public origin, as behind a load balancer: a token issued by one
        // instance is answered at the other.
        let options = ServerOptions {
            public_url: Some("http://login.sesame.test".into()),
            database_url: Some(db.url.clone()),
            redis_url: Some(redis.url()),
            ..options
        };
        let a = start(options.clone()).await?;
        let b = start(options).await?;
        Ok(Self { servers: vec![a, b], redis: Some(redis), db: Some(db), metrics })
    }

    /// Every process whose CPU a sign-in costs: the instances, Redis, and
    /// the PostgreSQL backends that serve this database.
    fn pids(&self) -> anyhow::Result<Vec<u32>> {
        let mut pids: Vec<u32> = self.servers.iter().map(Server::pid).collect();
        pids.extend(self.redis.as_ref().and_then(Redis::pid));
        if let Some(db) = &self.db {
            let sql = format!("SELECT pid FROM pg_stat_activity WHERE datname = '{}'", db.name);
            let url = format!("{}/postgres", sesame_tests::postgres_server_url().trim_end_matches('/'));
            let out = Command::new("psql").arg(url).args(["-At", "-c", &sql]).output().context("psql")?;
            pids.extend(String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        Ok(pids)
    }

    fn cpu_ticks(&self) -> anyhow::Result<u64> {
        // A process that ended between listing and reading counts nothing.
        Ok(self.pids()?.into_iter().filter_map(|pid| cpu_ticks(&format!("/proc/{pid}/stat")).ok()).sum())
    }
}

/// One simulated person: a browser and an authenticator, each with its own
/// HTTP client, and the account key the authenticator holds; and, for the
/// OIDC flow, the relying party the person signs in to.
struct Worker {
    browser: reqwest::Client,
    authenticator: reqwest::Client,
    relying_party: reqwest::Client,
    /// Where the browser goes, and where the authenticator answers.
    browser_base: String,
    answer_base: String,
    origin: String,
    service_id: String,
    server_key: ServerPublicKey,
    key: AccountKey,
    account: AccountName,
    /// OIDC flows whose ID token was checked, and those that passed.
    sampled: AtomicUsize,
    verified: AtomicUsize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build measures the debug server; use --release for real figures");
    }
    let setup = Setup::start(args.cluster, args.metrics, args.cycles > 0).await?;
    let first = &setup.servers[0];
    let service = first.create_service("Benchmark").await?;
    let info: sesame_proto::wire::ServerKeyInfo =
        reqwest::get(first.url("/.well-known/sesame")).await?.error_for_status()?.json().await?;
    let server_key = ServerPublicKey::from_base64(&info.public_key)?;
    let rp = match args.flow {
        Flow::Oidc => Some(Arc::new(oidc::RelyingParty::register(first, &service.id, args.alg).await?)),
        _ => None,
    };

    // One account per worker, registered before the clock starts, so that
    // every measured sign-in is a login.
    let mut workers = Vec::with_capacity(args.concurrency);
    for i in 0..args.concurrency {
        let n = setup.servers.len();
        let worker = Worker {
            // Redirects are read, not followed: the OIDC flow's last one
            // goes to the relying party, which is this program.
            browser: reqwest::Client::builder()
                .user_agent("Mozilla/5.0 SesameBench/1.0")
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            authenticator: reqwest::Client::new(),
            relying_party: reqwest::Client::new(),
            browser_base: setup.servers[i % n].base.clone(),
            answer_base: setup.servers[(i + 1) % n].base.clone(),
            origin: first.origin.clone(),
            service_id: service.id.clone(),
            server_key,
            key: AccountKey::generate(&mut rand::rngs::OsRng),
            account: AccountName::parse(&format!("bench-{i}")).context("account name")?,
            sampled: AtomicUsize::new(0),
            verified: AtomicUsize::new(0),
        };
        worker.register().await?;
        workers.push(Arc::new(worker));
    }

    let flow = match args.flow {
        Flow::Api => "JSON API",
        Flow::Page => "login page",
        Flow::Oidc if args.alg == "EdDSA" => "OpenID Connect code flow (EdDSA ID tokens)",
        Flow::Oidc => "OpenID Connect code flow",
    };
    let setup_name = if args.cluster { "2 instances on PostgreSQL + Redis" } else { "embedded SQLite" };
    let metrics = if args.metrics { ", metrics scraped every second" } else { "" };
    let pace = match args.rate {
        Some(rate) => format!("{rate} a second, at most {} at a time", args.concurrency),
        None => format!("{} at a time", args.concurrency),
    };
    if args.sign_ins > 0 {
        println!(
            "sesame-bench: {} runs of {} sign-ins through the {flow}, {pace}, {setup_name}{metrics}; then {} waiting browsers",
            args.runs, args.sign_ins, args.waiters
        );
    } else {
        println!("sesame-bench: {} waiting browsers, {setup_name}", args.waiters);
    }
    if args.sign_ins > 0 {
        sign_ins(&args, &setup, &workers, rp).await?;
    }
    if args.waiters > 0 && args.cycles > 0 {
        soak::cycles(first, &service.id, args.waiters, args.cycles).await?;
    } else if args.waiters > 0 {
        waiting_browsers(first, &service.id, args.waiters).await?;
    }
    Ok(())
}

/// The sign-in runs, each reported, then summed up.
async fn sign_ins(
    args: &Args,
    setup: &Setup,
    workers: &[Arc<Worker>],
    rp: Option<Arc<oidc::RelyingParty>>,
) -> anyhow::Result<()> {
    let mut runs = Vec::with_capacity(args.runs);
    let latency = if rp.is_some() { "whole flow" } else { "submit -> SSE" };
    for run in 1..=args.runs {
        let figures = measure(setup, workers, (args.sign_ins, args.flow), rp.clone(), args.rate).await?;
        let late = match args.rate {
            Some(_) => format!(", {} started late", figures.late),
            None => String::new(),
        };
        println!(
            "run {run}: {:.0} sign-ins/s, server CPU {:.0} µs/sign-in, bench CPU {:.0} µs/sign-in, {latency} p50 {:.2} ms, p99 {:.2} ms{late}",
            figures.rate, figures.server_us, figures.bench_us, figures.p50_ms, figures.p99_ms
        );
        runs.push(figures);
    }
    let summary = |name: &str, unit: &str, pick: fn(&Figures) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        let median = values[values.len() / 2];
        println!("{name:<26} median {median:.2} {unit} (min {:.2}, max {:.2})", values[0], values[values.len() - 1]);
    };
    summary("complete sign-ins:", "per second", |f| f.rate);
    summary("server CPU per sign-in:", "µs", |f| f.server_us);
    summary("bench CPU per sign-in:", "µs", |f| f.bench_us);
    summary(&format!("{latency} p50:"), "ms", |f| f.p50_ms);
    summary(&format!("{latency} p99:"), "ms", |f| f.p99_ms);
    if rp.is_some() {
        let count = |pick: fn(&Worker) -> &AtomicUsize| workers.iter().map(|w| pick(w).load(Ordering::Relaxed)).sum();
        let (sampled, verified): (usize, usize) = (count(|w| &w.sampled), count(|w| &w.verified));
        println!("ID tokens verified: {verified} of {sampled} sampled (one flow in {}), 0 errors", oidc::VERIFY_EVERY);
    }
    Ok(())
}

/// The figures of one run.
#[derive(Debug)]
struct Figures {
    rate: f64,
    server_us: f64,
    bench_us: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Paced sign-ins that started more than a millisecond after their time.
    late: usize,
}

async fn measure(
    setup: &Setup,
    workers: &[Arc<Worker>],
    (sign_ins, flow): (usize, Flow),
    rp: Option<Arc<oidc::RelyingParty>>,
    rate: Option<f64>,
) -> anyhow::Result<Figures> {
    let server_before = setup.cpu_ticks()?;
    let bench_before = cpu_ticks("/proc/self/stat")?;
    let started = Instant::now();
    let scraper = tokio::spawn(scrape_every_second(setup.metrics.clone()));
    let taken = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = workers
        .iter()
        .map(|worker| {
            let (worker, taken, rp) = (worker.clone(), taken.clone(), rp.clone());
            tokio::spawn(async move {
                let (mut latencies, mut late) = (Vec::new(), 0);
                loop {
                    let n = taken.fetch_add(1, Ordering::AcqRel);
                    if n >= sign_ins {
                        break;
                    }
                    if let Some(rate) = rate {
                        let due = tokio::time::Instant::from_std(started + Duration::from_secs_f64(n as f64 / rate));
                        if tokio::time::Instant::now() > due + Duration::from_millis(1) {
                            late += 1;
                        }
                        tokio::time::sleep_until(due).await;
                    }
                    latencies.push(match &rp {
                        Some(rp) => worker.oidc_sign_in(rp, n).await?,
                        None => worker.sign_in(flow).await?,
                    });
                }
                anyhow::Ok((latencies, late))
            })
        })
        .collect();
    let (mut latencies, mut late) = (Vec::with_capacity(sign_ins), 0);
    for task in tasks {
        let (some, behind) = task.await??;
        latencies.extend(some);
        late += behind;
    }
    let elapsed = started.elapsed();
    // The scraper runs until stopped; if it has ended, a scrape failed.
    if scraper.is_finished() {
        scraper.await??;
    } else {
        scraper.abort();
    }
    let per_sign_in = |ticks: u64| ticks as f64 / TICKS_PER_SEC * 1e6 / sign_ins as f64;
    let server_us = per_sign_in(setup.cpu_ticks()?.saturating_sub(server_before));
    let bench_us = per_sign_in(cpu_ticks("/proc/self/stat")?.saturating_sub(bench_before));
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(Figures {
        rate: sign_ins as f64 / elapsed.as_secs_f64(),
        server_us,
        bench_us,
        p50_ms: ms(percentile(&latencies, 50)),
        p99_ms: ms(percentile(&latencies, 99)),
        late,
    })
}

/// Scrapes each of `urls` once a second, as a (keen) Prometheus would,
/// until aborted. A failed scrape ends the benchmark's trust in the figures.
async fn scrape_every_second(urls: Vec<String>) -> anyhow::Result<()> {
    if urls.is_empty() {
        return Ok(());
    }
    let client = reqwest::Client::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        for url in &urls {
            let res = client.get(url).send().await?;
            if !res.status().is_success() {
                bail!("scraping {url} answered {}", res.status());
            }
            res.bytes().await?;
        }
    }
}

/// A challenge as the browser holds it: the token on screen, where to
/// follow and redeem it, and its binding cookie.
struct Started {
    token: String,
    events_url: String,
    session_url: String,
    cookie: String,
}

impl Worker {
    async fn register(&self) -> anyhow::Result<()> {
        let started = self.start_api().await?;
        let token = UnverifiedToken::parse(&started.token)?.verify(&self.server_key)?;
        self.submit("register", &RegisterRequest::sign(&token, &self.account, &self.key)).await
    }

    /// One complete sign-in; returns the time from submitting the login to
    /// the browser's `completed` event.
    async fn sign_in(&self, flow: Flow) -> anyhow::Result<Duration> {
        let started = if flow == Flow::Page { self.start_page().await? } else { self.start_api().await? };
        let res = self
            .browser
            .get(&started.events_url)
            .header("accept", "text/event-stream")
            .header(COOKIE, &started.cookie)
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("events answered {}", res.status());
        }
        let mut events = EventStream::new(res);
        let token = UnverifiedToken::parse(&started.token)?.verify(&self.server_key)?;
        let request = LoginRequest::sign(&token, &self.account, &self.key);
        let submitted = Instant::now();
        self.submit("login", &request).await?;
        loop {
            let event = events.next_named("status", Duration::from_secs(10)).await?;
            if event.json()["status"] == "completed" {
                break;
            }
        }
        let latency = submitted.elapsed();
        drop(events);
        let res = self.browser.post(&started.session_url).header(COOKIE, &started.cookie).send().await?;
        if !res.status().is_success() {
            bail!("redeeming the session answered {}", res.status());
        }
        res.bytes().await?;
        Ok(latency)
    }

    async fn start_api(&self) -> anyhow::Result<Started> {
        let url = format!("{}/api/services/{}/challenges", self.browser_base, self.service_id);
        let res = self.browser.post(url).send().await?;
        if res.status() != reqwest::StatusCode::CREATED {
            bail!("starting a challenge answered {}", res.status());
        }
        let cookie = binding_cookie(&res)?;
        let challenge: Challenge = res.json().await?;
        Ok(Started {
            token: challenge.token,
            events_url: self.route(&challenge.events_url),
            session_url: self.route(&format!("/api/challenges/{}/session", challenge.challenge_id)),
            cookie,
        })
    }

    /// Loads the login page, as a browser would, and reads what its script
    /// reads from it.
    async fn start_page(&self) -> anyhow::Result<Started> {
        let res = self.browser.get(format!("{}/services/{}", self.browser_base, self.service_id)).send().await?;
        if !res.status().is_success() {
            bail!("the login page answered {}", res.status());
        }
        let cookie = binding_cookie(&res)?;
        let html = res.text().await?;
        let between = |start: &str, end: &str| -> anyhow::Result<String> {
            let from = html.find(start).context("the login page lacks an expected part")? + start.len();
            let to = html[from..].find(end).context("the login page is cut short")? + from;
            Ok(html[from..to].to_owned())
        };
        Ok(Started {
            token: between("<code id=\"token\" class=\"token\">", "</code>")?,
            events_url: self.route(&between("data-events-url=\"", "\"")?),
            session_url: self.route(&between("data-session-url=\"", "\"")?),
            cookie,
        })
    }

    /// A URL the server handed out (absolute under its public origin, or a
    /// path), as this worker's browser reaches it.
    fn route(&self, url: &str) -> String {
        let path = url.strip_prefix(self.origin.as_str()).unwrap_or(url);
        format!("{}{path}", self.browser_base)
    }

    async fn submit(&self, what: &str, body: &impl serde::Serialize) -> anyhow::Result<()> {
        let url = format!("{}/api/authenticator/{what}", self.answer_base);
        let res = self.authenticator.post(url).json(body).send().await?;
        if !res.status().is_success() {
            bail!("{what} answered {}: {}", res.status(), res.text().await?);
        }
        res.bytes().await?;
        Ok(())
    }
}

/// `name=value` of the binding cookie a response sets.
fn binding_cookie(res: &reqwest::Response) -> anyhow::Result<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.contains("sesame_browser_"))
        .map(str::to_owned)
        .context("no binding cookie was set")
}

/// Holds `count` event streams open on `server` through a few rotations.
async fn waiting_browsers(server: &Server, service_id: &str, count: usize) -> anyhow::Result<()> {
    let rss_before = rss_kib(server.pid())?;
    // One client for all of them: each open stream holds a connection of
    // its own, and nothing else is kept per waiter on this side.
    let client = reqwest::Client::builder().user_agent("Mozilla/5.0 SesameBench/1.0").build()?;
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let url = format!("{}/api/services/{service_id}/challenges", server.base);
        let res = client.post(url).send().await?;
        let cookie = binding_cookie(&res)?;
        let challenge: Challenge = res.json().await?;
        let res = client.get(server.route(&challenge.events_url)).header(COOKIE, cookie).send().await?;
        if !res.status().is_success() {
            bail!("events answered {}", res.status());
        }
        streams.push(EventStream::new(res));
    }
    let opened = rss_kib(server.pid())?;
    let cpu_before = cpu_ticks(&format!("/proc/{}/stat", server.pid()))?;
    let window = Duration::from_secs(10);
    // Drain every stream while the codes rotate, as pages would.
    let deadline = Instant::now() + window;
    let drains: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let mut received = 0usize;
                while let Ok(Some(_)) = stream.next(deadline.saturating_duration_since(Instant::now())).await {
                    received += 1;
                }
                received
            })
        })
        .collect();
    let mut received = 0;
    for drain in drains {
        received += drain.await?;
    }
    let cpu = cpu_ticks(&format!("/proc/{}/stat", server.pid()))?.saturating_sub(cpu_before) as f64 / TICKS_PER_SEC;
    let grown = opened.saturating_sub(rss_before);
    println!(
        "{count} waiting browsers: {grown} KiB more memory ({:.1} KiB each; 50,000 would take {:.0} MiB), \
         {:.1}% of a core over {window:?}, {received} events",
        grown as f64 / count as f64,
        grown as f64 / count as f64 * 50_000.0 / 1024.0,
        cpu / window.as_secs_f64() * 100.0
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted.get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1))).copied().unwrap_or_default()
}

/// USER_HZ on Linux.
const TICKS_PER_SEC: f64 = 100.0;

/// utime + stime of a process, in clock ticks, from its `stat` file.
fn cpu_ticks(stat_path: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(stat_path)?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').context("malformed /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
}
