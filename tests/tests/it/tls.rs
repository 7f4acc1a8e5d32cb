//! TLS to PostgreSQL (`sslmode=verify-full`) and Redis (`rediss://`), each
//! with a CA made by the test: a sign-in works through both, nothing goes in
//! plain text, and a wrong or unreadable CA stops start-up with one line.

use std::{ffi::OsStr, path::Path, time::Duration};

use serde_json::Value;
use sesame_tests::{
    proxy::{TestCa, Validity},
    server_start_failure, stderr, stdout, Browser, PgCluster, Redis, Result, Server, ServerOptions, Sesame,
};

fn os(text: &str) -> &OsStr {
    OsStr::new(text)
}

/// Asserts that start-up failed with exactly one line on stderr, and that
/// it says `needle`.
fn assert_one_line(outcome: (Option<i32>, String), needle: &str) {
    let (code, err) = outcome;
    assert_eq!(code, Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got:\n{err}");
    assert!(lines[0].starts_with("sesame-server: ") && lines[0].contains(needle), "expected {needle:?} in {err}");
}

#[tokio::test]
async fn a_sign_in_runs_through_postgres_and_redis_over_tls_verified_by_the_test_ca() -> Result<()> {
    let ca = TestCa::new("Sesame Test Data CA")?;
    let leaf = ca.issue("data", "127.0.0.1", Validity::Current)?;
    let postgres = PgCluster::start_tls(&leaf)?;
    let redis = Redis::start_tls(&leaf, &ca.pem_file())?;
    let ca_file = ca.pem_file().display().to_string();
    let options = ServerOptions {
        database_url: Some(format!("{}?sslmode=verify-full", postgres.url())),
        redis_url: Some(redis.tls_url()),
        extra_args: vec!["--database-ca-file".into(), ca_file.clone(), "--redis-ca-file".into(), ca_file],
        ..ServerOptions::default()
    };
    let server = Server::start_with(options).await?;
    let service = server.create_service("Encrypted").await?;
    let browser = Browser::new(&server);
    let challenge = browser.start_challenge(&service.id).await?;
    let mut events = browser.events(&challenge, None).await?;
    events.next_named("status", Duration::from_secs(5)).await?;
    let out = Sesame::new().run(&["--json", "register", &challenge.token, "--name", "alice", "--yes"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let done = sesame_tests::final_status(&mut events, Duration::from_secs(10)).await?;
    assert_eq!(done["status"], "completed", "the result came over the TLS Redis");
    let ready: Value = reqwest::get(server.url("/readyz")).await?.json().await?;
    assert_eq!(ready["status"], "ready");

    // Every TCP connection to PostgreSQL is encrypted; none is plain.
    let tcp = "FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.client_addr IS NOT NULL";
    assert_ne!(postgres.query(&format!("SELECT count(*) {tcp} AND s.ssl"))?, "0");
    assert_eq!(postgres.query(&format!("SELECT count(*) {tcp} AND NOT s.ssl"))?, "0");
    assert_eq!(postgres.query("SELECT count(*) FROM account WHERE name = 'alice'")?, "1");
    Ok(())
}

#[tokio::test]
async fn a_postgres_certificate_from_another_ca_stops_start_up_with_one_line() -> Result<()> {
    let ca = TestCa::new("Sesame Test Data CA")?;
    let postgres = PgCluster::start_tls(&ca.issue("data", "127.0.0.1", Validity::Current)?)?;
    let other = TestCa::new("Someone Else's CA")?;
    let url = format!("{}?sslmode=verify-full", postgres.url());
    let outcome = server_start_failure(&[
        os("--database-url"),
        os(&url),
        os("--database-ca-file"),
        other.pem_file().as_os_str(),
    ])?;
    assert_one_line(
        outcome,
        "refusing the Postgres database: its certificate is issued by an authority that is not trusted",
    );
    Ok(())
}

#[tokio::test]
async fn a_redis_certificate_from_another_ca_stops_start_up_with_one_line() -> Result<()> {
    let ca = TestCa::new("Sesame Test Data CA")?;
    let redis = Redis::start_tls(&ca.issue("data", "127.0.0.1", Validity::Current)?, &ca.pem_file())?;
    let other = TestCa::new("Someone Else's CA")?;
    let url = redis.tls_url();
    let outcome =
        server_start_failure(&[os("--redis-url"), os(&url), os("--redis-ca-file"), other.pem_file().as_os_str()])?;
    assert_one_line(
        outcome,
        "refusing Redis at --redis-url: its certificate is issued by an authority that is not trusted",
    );
    Ok(())
}

#[tokio::test]
async fn an_unreadable_ca_file_or_a_plain_url_beside_one_is_refused_with_one_line() -> Result<()> {
    let missing = Path::new("/nonexistent/sesame-ca.pem").as_os_str();
    let pg = "postgres://postgres@127.0.0.1:1/postgres";
    let outcome = server_start_failure(&[os("--database-url"), os(pg), os("--database-ca-file"), missing])?;
    assert_one_line(outcome, "cannot read --database-ca-file /nonexistent/sesame-ca.pem");

    let outcome =
        server_start_failure(&[os("--redis-url"), os("rediss://127.0.0.1:1"), os("--redis-ca-file"), missing])?;
    assert_one_line(outcome, "cannot read --redis-ca-file /nonexistent/sesame-ca.pem");

    let ca = TestCa::new("Sesame Test Data CA")?;
    let outcome = server_start_failure(&[
        os("--redis-url"),
        os("redis://127.0.0.1:1"),
        os("--redis-ca-file"),
        ca.pem_file().as_os_str(),
    ])?;
    assert_one_line(outcome, "--redis-ca-file needs a rediss:// URL");

    let weak = format!("{pg}?sslmode=prefer");
    let outcome =
        server_start_failure(&[os("--database-url"), os(&weak), os("--database-ca-file"), ca.pem_file().as_os_str()])?;
    assert_one_line(outcome, "needs sslmode=verify-full");
    Ok(())
}
