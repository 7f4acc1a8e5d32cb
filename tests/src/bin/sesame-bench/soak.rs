//! `--cycles N`: opens WAITERS event streams, closes them all, and again,
//! N times, reporting the server's resident memory after each cycle. What
//! one burst of streams leaves behind shows in the first cycle; a leak
//! shows as growth over the following ones.
//!
//! A closed stream's challenge is not garbage: its page may come back for
//! it until it expires, and a little after (the pending challenges' grace).
//! So the servers of a soak run with a 10-second challenge lifetime and
//! 1 second of retention: the challenges of one cycle leave memory within
//! the next ones, and what stays is what the streams themselves left.

use std::time::Duration;

use reqwest::header::COOKIE;
use sesame_tests::{Challenge, EventStream, Server};

use super::{binding_cookie, rss_kib};

/// The server options a soak adds.
pub(crate) const SERVER_ARGS: [&str; 4] = ["--challenge-ttl", "10", "--challenge-retention", "1"];

/// How long after closing its streams a cycle reads the memory: time for
/// the server to see every connection end.
const SETTLE: Duration = Duration::from_secs(2);

pub(crate) async fn cycles(server: &Server, service_id: &str, count: usize, cycles: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().user_agent("Mozilla/5.0 SesameBench/1.0").build()?;
    let start = rss_kib(server.pid())?;
    println!("soak: {cycles} cycles of {count} event streams opened and closed; resident memory at start {start} KiB");
    let mut after = Vec::with_capacity(cycles);
    for cycle in 1..=cycles {
        let mut streams = Vec::with_capacity(count);
        for _ in 0..count {
            let url = format!("{}/api/services/{service_id}/challenges", server.base);
            let res = client.post(url).send().await?;
            let cookie = binding_cookie(&res)?;
            let challenge: Challenge = res.json().await?;
            let res = client.get(server.route(&challenge.events_url)).header(COOKIE, cookie).send().await?;
            anyhow::ensure!(res.status().is_success(), "events answered {}", res.status());
            streams.push(EventStream::new(res));
        }
        let open = rss_kib(server.pid())?;
        drop(streams);
        tokio::time::sleep(SETTLE).await;
        let closed = rss_kib(server.pid())?;
        println!("cycle {cycle}: {open} KiB with the streams open, {closed} KiB after they closed");
        after.push(closed);
    }
    if let (Some(first), Some(rest)) = (after.first(), after.get(1..).filter(|r| !r.is_empty())) {
        let (low, high) = (rest.iter().min().copied().unwrap_or(0), rest.iter().max().copied().unwrap_or(0));
        let last = rest.last().copied().unwrap_or(0);
        println!(
            "soak: after the first cycle {first} KiB; after the others {low}–{high} KiB; last minus first {} KiB",
            last as i64 - *first as i64
        );
    }
    Ok(())
}
