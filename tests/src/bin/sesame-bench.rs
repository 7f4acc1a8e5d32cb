//! `sesame-bench`: measures a real `sesame-server` against the targets of the
//! design brief, with the load generator on the same machine.
//!
//! ```text
//! cargo run --release -p sesame-tests --bin sesame-bench -- [SIGN_INS] [CONCURRENCY] [WAITERS]
//! ```
//!
//! 1. Complete sign-ins: each one starts a challenge, opens its event stream,
//!    signs a login, submits it, waits for the `completed` event and redeems
//!    the session, as a browser and an authenticator would. It reports sign-ins
//!    per second, the submit → SSE event latency (p50, p99) and the server's
//!    CPU time per sign-in (from /proc, user + system).
//! 2. Waiting browsers: holds WAITERS event streams open while their codes
//!    rotate every second, and reports the server's memory and CPU use.
//!
//! It prints figures; it asserts nothing. Timing belongs here, not in tests.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use sesame_proto::{AccountKey, AccountName, LoginRequest, RegisterRequest, ServerPublicKey, UnverifiedToken};
use sesame_tests::{Browser, Challenge, Server, ServerOptions};
use tokio::sync::Semaphore;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().context("arguments are numbers"));
    let sign_ins = args.next().transpose()?.unwrap_or(2_000);
    let concurrency = args.next().transpose()?.unwrap_or(32);
    let waiters = args.next().transpose()?.unwrap_or(2_000);
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build measures the debug server; use --release for real figures");
    }

    // Every simulated browser comes from 127.0.0.1: lift the per-address
    // caps, and make room for every waiting browser's connection.
    let extra_args = ["--max-streams-per-address", "0", "--max-connections", "0"].map(String::from).to_vec();
    let server =
        Server::start_with(ServerOptions { rate_limit: Some(0), extra_args, ..ServerOptions::default() }).await?;
    let service = server.create_service("Benchmark").await?;
    let key = Arc::new(AccountKey::generate(&mut rand::rngs::OsRng));
    let account = AccountName::parse("bench").context("account name")?;
    let client = reqwest::Client::new();
    let server_key = server_key(&client, &server.base).await?;

    // One registration, so that every measured sign-in is a login.
    let browser = Browser::new(&server);
    let challenge = browser.start_challenge(&service.id).await?;
    let token = UnverifiedToken::parse(&challenge.token)?.verify(&server_key)?;
    let request = RegisterRequest::sign(&token, &account, &key);
    submit(&client, &server.base, "register", &request).await?;

    println!("sesame-bench: {sign_ins} sign-ins, {concurrency} at a time; then {waiters} waiting browsers");
    let cpu_before = cpu_ticks(server.pid())?;
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(sign_ins);
    for _ in 0..sign_ins {
        let permit = permits.clone().acquire_owned().await?;
        let (base, service_id, key, account, client) =
            (server.base.clone(), service.id.clone(), key.clone(), account.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let result = sign_in(&base, &service_id, &server_key, &key, &account, &client).await;
            drop(permit);
            result
        }));
    }
    let mut latencies = Vec::with_capacity(sign_ins);
    for task in tasks {
        latencies.push(task.await??);
    }
    let elapsed = started.elapsed();
    let cpu = cpu_ticks(server.pid())? - cpu_before;
    latencies.sort();
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let cpu_us = cpu as f64 / ticks_per_sec * 1e6 / sign_ins as f64;
    println!("complete sign-ins:       {:.0} per second", sign_ins as f64 / elapsed.as_secs_f64());
    println!("server CPU per sign-in:  {cpu_us:.0} µs (user + system)");
    println!("submit -> SSE event:     p50 {:?}, p99 {:?}", percentile(&latencies, 50), percentile(&latencies, 99));

    waiting_browsers(&server, &service.id, waiters).await?;
    Ok(())
}

async fn server_key(client: &reqwest::Client, base: &str) -> anyhow::Result<ServerPublicKey> {
    let info: sesame_proto::wire::ServerKeyInfo =
        client.get(format!("{base}/.well-known/sesame")).send().await?.json().await?;
    Ok(ServerPublicKey::from_base64(&info.public_key)?)
}

async fn submit(client: &reqwest::Client, base: &str, what: &str, body: &impl serde::Serialize) -> anyhow::Result<()> {
    let res = client.post(format!("{base}/api/authenticator/{what}")).json(body).send().await?;
    if !res.status().is_success() {
        bail!("{what} answered {}: {}", res.status(), res.text().await?);
    }
    Ok(())
}

/// One complete sign-in; returns the time from submitting the login to the
/// browser's `completed` event.
async fn sign_in(
    base: &str,
    service_id: &str,
    server_key: &ServerPublicKey,
    key: &AccountKey,
    account: &AccountName,
    client: &reqwest::Client,
) -> anyhow::Result<Duration> {
    let browser = Browser::at(base);
    let challenge: Challenge = browser.start_challenge(service_id).await?;
    let mut events = browser.events(&challenge, None).await?;
    let token = UnverifiedToken::parse(&challenge.token)?.verify(server_key)?;
    let request = LoginRequest::sign(&token, account, key);
    let submitted = Instant::now();
    submit(client, base, "login", &request).await?;
    loop {
        let event = events.next_named("status", Duration::from_secs(10)).await?;
        if event.json()["status"] == "completed" {
            break;
        }
    }
    let latency = submitted.elapsed();
    let res =
        browser.client.post(browser.url(&format!("/api/challenges/{}/session", challenge.challenge_id))).send().await?;
    if !res.status().is_success() {
        bail!("redeeming the session answered {}", res.status());
    }
    Ok(latency)
}

/// Holds `count` event streams open through a few rotations.
async fn waiting_browsers(server: &Server, service_id: &str, count: usize) -> anyhow::Result<()> {
    let rss_before = rss_kib(server.pid())?;
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let browser = Browser::new(server);
        let challenge = browser.start_challenge(service_id).await?;
        streams.push(browser.events(&challenge, None).await?);
    }
    let opened = rss_kib(server.pid())?;
    let cpu_before = cpu_ticks(server.pid())?;
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
    let cpu = (cpu_ticks(server.pid())? - cpu_before) as f64 / 100.0;
    println!(
        "{count} waiting browsers: {} KiB more memory ({:.1} KiB each), {:.0}% of a core over {window:?}, {received} events",
        opened.saturating_sub(rss_before),
        opened.saturating_sub(rss_before) as f64 / count as f64,
        cpu / window.as_secs_f64() * 100.0
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted.get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1))).copied().unwrap_or_default()
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
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
