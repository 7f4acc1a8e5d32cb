//! How many SQL statements one complete sign-in costs, counted from what
//! the server logs for every statement it runs, on any connection
//! (`sesame_server::sql` at `DEBUG`):
//! on one instance over SQLite (the embedded default) and over PostgreSQL,
//! where pending challenges are held in memory, and on PostgreSQL with
//! Redis, where they are rows that several instances share.
//!
//! A sign-in here is what a browser and an authenticator do: start a
//! challenge, open its event stream, answer with a login, see the
//! `completed` event, redeem the session. The bound is a ceiling: a change
//! that adds a statement to that path fails this test.

use std::time::Duration;

use serde_json::Value;
use sesame_proto::{AccountKey, AccountName, LoginRequest, UnverifiedToken};
use sesame_tests::{Browser, PgDatabase, Redis, Result, Server, ServerOptions};

/// Statements (BEGIN, COMMIT and ROLLBACK not counted) one sign-in may run
/// on a single instance, where pending challenges are held in memory: the
/// account's keys, the ended challenge (whose triggers record the event and
/// the key's use), the redemption and the session. docs/BENCHMARKS.md.
const MAX_STATEMENTS: usize = 4;
/// With several instances (Redis), pending challenges are rows, which the
/// issue, the stream, the answer and the woken stream each touch once more.
const MAX_STATEMENTS_SHARED: usize = 8;
/// Explicit transactions one sign-in may open: the redemption's. The login
/// is one statement, which commits by itself.
const MAX_TRANSACTIONS: usize = 1;

#[tokio::test]
async fn one_sign_in_on_sqlite_runs_at_most_the_allowed_statements() -> Result<()> {
    let server = Server::start_with(counting(ServerOptions::default())).await?;
    check_one_sign_in(&server, MAX_STATEMENTS).await
}

#[tokio::test]
async fn one_sign_in_on_postgres_runs_at_most_the_allowed_statements() -> Result<()> {
    let db = PgDatabase::create()?;
    let options = ServerOptions { database_url: Some(db.url.clone()), ..Default::default() };
    let server = Server::start_with(counting(options)).await?;
    check_one_sign_in(&server, MAX_STATEMENTS).await
}

#[tokio::test]
async fn one_sign_in_on_postgres_with_redis_runs_at_most_the_allowed_statements() -> Result<()> {
    let db = PgDatabase::create()?;
    let redis = Redis::start()?;
    let options =
        ServerOptions { database_url: Some(db.url.clone()), redis_url: Some(redis.url()), ..Default::default() };
    let server = Server::start_with(counting(options)).await?;
    check_one_sign_in(&server, MAX_STATEMENTS_SHARED).await
}

/// Logs every statement, as JSON lines that name their target. The sweep
/// is off: its start-up run could otherwise land its statements in the
/// counted sign-in.
fn counting(options: ServerOptions) -> ServerOptions {
    ServerOptions {
        log_filter: Some("info,sesame_server::sql=debug".into()),
        extra_args: vec!["--log-format".into(), "json".into(), "--sweep-interval".into(), "0".into()],
        ..options
    }
}

async fn check_one_sign_in(server: &Server, max_statements: usize) -> Result<()> {
    let service = server.create_service("Counted").await?;
    let server_key = server.public_key().await?;
    let key = AccountKey::generate(&mut rand::rngs::OsRng);
    let account = AccountName::parse("counted").expect("a valid name");
    let browser = Browser::new(server);
    let authenticator = reqwest::Client::new();

    // A registration first, so that the counted sign-in is a login, and the
    // service has been seen once, as on any instance that has served before.
    server.register(&service.id, &account, &key).await?;

    let before = server.log().len();
    let challenge = browser.start_challenge(&service.id).await?;
    let mut events = browser.events(&challenge, None).await?;
    let token = UnverifiedToken::parse(&challenge.token)?.verify(&server_key)?;
    let res = authenticator
        .post(server.url("/api/authenticator/login"))
        .json(&LoginRequest::sign(&token, &account, &key))
        .send()
        .await?;
    assert!(res.status().is_success(), "login answered {}", res.status());
    while events.next_named("status", Duration::from_secs(10)).await?.json()["status"] != "completed" {}
    let url = browser.url(&format!("/api/challenges/{}/session", challenge.challenge_id));
    let res = browser.client.post(url).send().await?;
    assert!(res.status().is_success(), "redeeming answered {}", res.status());

    let log = server.log();
    let statements: Vec<String> = log[before..]
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "sesame_server::sql")
        .filter_map(|line| line["fields"]["statement"].as_str().map(str::to_owned))
        .collect();
    let is_transaction = |s: &String| ["BEGIN", "COMMIT", "ROLLBACK"].iter().any(|t| s.to_uppercase().starts_with(t));
    let (transactions, statements): (Vec<String>, Vec<String>) = statements.into_iter().partition(is_transaction);
    // The count is only worth something if the log really holds the
    // statements: the session the browser just got must be among them.
    assert!(
        statements.iter().any(|s| s.starts_with("INSERT INTO session")),
        "no statement was logged: {statements:#?}"
    );
    assert!(
        statements.len() <= max_statements,
        "one sign-in ran {} statements, more than {max_statements}: {statements:#?}",
        statements.len()
    );
    assert!(transactions.len() <= 2 * MAX_TRANSACTIONS, "transactions: {transactions:#?}");
    println!("{} statements: {statements:#?}", statements.len());
    Ok(())
}
