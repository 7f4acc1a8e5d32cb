//! `sesame-bench` still runs: a few sign-ins through each flow (OpenID
//! Connect included, with its ID tokens verified) and set-up, and a few
//! waiting browsers, with the binaries the other tests use. It checks that
//! the benchmark completes and reports, never how fast (timing belongs to
//! the benchmark, not to tests).

use std::process::Command;

use sesame_tests::{server_bin, stderr, stdout, Result};

/// Runs the benchmark with `args` and returns what it printed.
fn bench(args: &[&str]) -> Result<String> {
    let bins = server_bin().parent().expect("the binaries' folder").to_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_sesame-bench")).args(args).env("SESAME_TEST_BIN_DIR", bins).output()?;
    anyhow::ensure!(out.status.success(), "sesame-bench {args:?} failed: {}{}", stdout(&out), stderr(&out));
    Ok(stdout(&out))
}

/// The median rate it reports, which must be a number above zero.
fn reported_rate(printed: &str) -> f64 {
    let line = printed.lines().find(|l| l.starts_with("complete sign-ins:")).expect("a rate line");
    let rate: f64 = line.split_whitespace().nth(3).and_then(|v| v.parse().ok()).expect("a median");
    assert!(rate > 0.0, "{printed}");
    rate
}

#[tokio::test]
async fn the_benchmark_runs_on_the_embedded_default_through_both_flows_with_waiters() -> Result<()> {
    let printed = bench(&["12", "3", "20", "--runs", "2"])?;
    reported_rate(&printed);
    assert_eq!(printed.lines().filter(|l| l.starts_with("run ")).count(), 2, "{printed}");
    assert!(printed.contains("20 waiting browsers:"), "{printed}");
    reported_rate(&bench(&["12", "3", "0", "--runs", "1", "--flow", "page"])?);
    // Paced: 12 sign-ins at 40 a second take about 0.3 s, and say how many
    // started late.
    let paced = bench(&["12", "3", "0", "--runs", "1", "--rate", "40"])?;
    reported_rate(&paced);
    assert!(paced.contains("40 a second, at most 3 at a time") && paced.contains("started late"), "{paced}");
    Ok(())
}

/// What the OIDC flow says of the ID tokens it checked: how many verified,
/// of how many sampled; it must be all of them, and some, with no error.
fn verified_id_tokens(printed: &str) -> (usize, usize) {
    let line = printed.lines().find(|l| l.starts_with("ID tokens verified:")).expect("an ID token line");
    let words: Vec<&str> = line.split_whitespace().collect();
    let verified: usize = words[3].parse().expect("a count");
    let sampled: usize = words[5].parse().expect("a count");
    assert!(sampled > 0 && verified == sampled && line.ends_with(", 0 errors"), "{printed}");
    (verified, sampled)
}

#[tokio::test]
async fn the_benchmark_runs_complete_oidc_sign_ins_and_verifies_their_id_tokens() -> Result<()> {
    // 12 flows in 2 runs: flows 0 and 10 of each run are checked in full.
    let printed = bench(&["12", "3", "0", "--runs", "2", "--flow", "oidc"])?;
    reported_rate(&printed);
    assert!(printed.contains("OpenID Connect code flow") && printed.contains("whole flow p50"), "{printed}");
    assert_eq!(verified_id_tokens(&printed), (4, 4));
    let eddsa = bench(&["12", "3", "0", "--runs", "1", "--flow", "oidc", "--alg", "EdDSA"])?;
    reported_rate(&eddsa);
    assert!(eddsa.contains("(EdDSA ID tokens)"), "{eddsa}");
    assert_eq!(verified_id_tokens(&eddsa), (2, 2));
    // Two instances: each code is issued by one and redeemed at the other.
    let cluster = bench(&["12", "3", "0", "--runs", "1", "--flow", "oidc", "--setup", "cluster"])?;
    reported_rate(&cluster);
    assert_eq!(verified_id_tokens(&cluster), (2, 2));
    Ok(())
}

#[test]
fn the_benchmark_refuses_a_bad_argument_and_names_it() -> Result<()> {
    let cases: [(&[&str], &str); 5] = [
        (&["10", "1", "0", "--rate", "0"], "--rate"),
        (&["10", "1", "0", "--rate", "NaN"], "--rate"),
        (&["ten"], "\"ten\""),
        (&["--flow", "x"], "--flow"),
        (&["--alg", "HS256"], "--alg"),
    ];
    for (args, named) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_sesame-bench"))
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0")
            .output()?;
        assert!(!out.status.success(), "{args:?} was accepted");
        let first = stderr(&out).lines().next().unwrap_or_default().to_owned();
        assert!(first.starts_with("Error:") && first.contains(named), "{args:?}: {}", stderr(&out));
    }
    Ok(())
}

#[test]
fn the_benchmark_explains_its_arguments_and_measures_only_waiters_without_sign_ins() -> Result<()> {
    let out = Command::new(env!("CARGO_BIN_EXE_sesame-bench")).arg("--help").output()?;
    assert!(out.status.success(), "{}", stderr(&out));
    let usage = stdout(&out);
    for option in
        ["SIGN_INS", "CONCURRENCY", "WAITERS", "--runs", "--flow", "oidc", "--setup", "--rate", "--metrics", "--alg"]
    {
        assert!(usage.contains(option), "--help does not mention {option}: {usage}");
    }
    // No sign-ins: no sign-in figures (a median of nothing is NaN), only
    // the waiters'.
    let printed = bench(&["0", "1", "5", "--runs", "1"])?;
    assert!(printed.contains("5 waiting browsers:"), "{printed}");
    assert!(!printed.contains("sign-ins/s") && !printed.contains("NaN"), "{printed}");
    Ok(())
}

#[tokio::test]
async fn the_benchmark_runs_on_two_instances_with_postgres_and_redis_and_scrapes_metrics() -> Result<()> {
    let printed = bench(&["12", "3", "0", "--runs", "1", "--setup", "cluster", "--metrics"])?;
    reported_rate(&printed);
    assert!(printed.contains("2 instances on PostgreSQL + Redis"), "{printed}");
    Ok(())
}
