//! `sesame-bench`'s command line.

use anyhow::{bail, Context as _};

/// What `--help` prints.
const USAGE: &str = "\
usage: sesame-bench [SIGN_INS] [CONCURRENCY] [WAITERS] [--runs N] [--flow api|page|oidc]
                    [--setup embedded|cluster] [--rate PER_SECOND] [--metrics] [--alg RS256|EdDSA]
                    [--cycles N]

  SIGN_INS       complete sign-ins a run (default 2000; 0 measures only waiters)
  CONCURRENCY    sign-ins in flight at once (default 32)
  WAITERS        event streams held open afterwards, to measure (default 2000)
  --runs N       runs of SIGN_INS each, summed up as median and min-max (default 3)
  --flow         api: start through the JSON API (default); page: load the login page;
                 oidc: a complete OpenID Connect sign-in, code exchange and userinfo included
  --setup        embedded: one instance on SQLite (default); cluster: two on PostgreSQL and Redis
  --rate         start this many sign-ins a second, evenly spaced, instead of flat out
  --metrics      turn on each instance's metrics listener and scrape it every second
  --alg          with --flow oidc: what the client's ID tokens are signed with (default RS256)
  --cycles N     instead of holding WAITERS streams once, open and close them N times and report
                 the server's memory after each (a soak; the server's challenges then live 10 s)

SESAME_TEST_BIN_DIR names a folder with sesame-server and sesame to measure instead of building them.
";

/// What the command line asked for.
#[derive(Debug)]
pub(crate) struct Args {
    pub(crate) sign_ins: usize,
    pub(crate) concurrency: usize,
    pub(crate) waiters: usize,
    pub(crate) runs: usize,
    pub(crate) flow: Flow,
    pub(crate) cluster: bool,
    pub(crate) metrics: bool,
    /// The OIDC client's ID-token algorithm.
    pub(crate) alg: &'static str,
    /// Sign-ins started a second; `None`: as fast as they complete.
    pub(crate) rate: Option<f64>,
    /// Soak cycles of WAITERS streams opened and closed; 0: none.
    pub(crate) cycles: usize,
}

impl Args {
    pub(crate) fn parse() -> anyhow::Result<Self> {
        let mut numbers = Vec::new();
        let (mut runs, mut flow, mut cluster, mut metrics, mut rate) = (3, Flow::Api, false, false, None);
        let (mut alg, mut cycles) = ("RS256", 0);
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--help" | "-h" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                "--runs" => runs = args.next().context("--runs takes a number")?.parse().context("--runs")?,
                "--flow" => {
                    flow = match args.next().as_deref() {
                        Some("api") => Flow::Api,
                        Some("page") => Flow::Page,
                        Some("oidc") => Flow::Oidc,
                        _ => bail!("--flow is api, page or oidc"),
                    }
                }
                "--setup" => match args.next().as_deref() {
                    Some("embedded") => cluster = false,
                    Some("cluster") => cluster = true,
                    _ => bail!("--setup is embedded or cluster"),
                },
                "--metrics" => metrics = true,
                "--cycles" => cycles = args.next().context("--cycles takes a number")?.parse().context("--cycles")?,
                "--alg" => {
                    alg = match args.next().as_deref() {
                        Some("RS256") => "RS256",
                        Some("EdDSA") => "EdDSA",
                        _ => bail!("--alg is RS256 or EdDSA"),
                    }
                }
                "--rate" => {
                    let per_second: f64 = args.next().context("--rate takes a number")?.parse().context("--rate")?;
                    if !(per_second.is_finite() && per_second > 0.0) {
                        bail!("--rate is a number of sign-ins a second, above 0");
                    }
                    rate = Some(per_second);
                }
                number => numbers.push(number.parse::<usize>().with_context(|| format!("unknown argument {arg:?}"))?),
            }
        }
        let mut numbers = numbers.into_iter();
        Ok(Self {
            sign_ins: numbers.next().unwrap_or(2_000),
            concurrency: numbers.next().unwrap_or(32).max(1),
            waiters: numbers.next().unwrap_or(2_000),
            runs: runs.max(1),
            flow,
            cluster,
            metrics,
            alg,
            rate,
            cycles,
        })
    }
}

/// How each sign-in starts and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// A challenge through the JSON API, redeemed for a session.
    Api,
    /// The login page, redeemed for a session.
    Page,
    /// A complete OpenID Connect sign-in ([`oidc`]).
    Oidc,
}
