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
//!
//! The same, for a complete OpenID Connect sign-in: the authorization
//! request, its login page and event stream, the login, the page's finish
//! (the session and the code), the code exchange and userinfo.

use std::time::Duration;

use serde_json::{json, Value};
use sesame_proto::{AccountKey, AccountName, LoginRequest, ServerPublicKey, UnverifiedToken};
use sesame_tests::{
    oidc::{userinfo, AuthRequest, ClientAuth, OidcBrowser, OidcClient, Pkce, Redemption},
    Browser, EventStream, PgDatabase, Redis, Result, Server, ServerOptions,
};

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

/// Statements one OIDC sign-in may run on a single instance, where pending
/// challenges and the authorization requests parked beside them are held
/// in memory: the client (at the authorization request, the finish and the
/// token endpoint), the login's two, the session and the code written in
/// one write at the finish (three), the code, its redemption and the access
/// token (three), and userinfo's token. docs/BENCHMARKS.md.
const MAX_OIDC_STATEMENTS: usize = 12;
/// With several instances (Redis), pending challenges and parked requests
/// are rows, which the authorization request, the stream, the answer, the
/// woken stream and the finish touch once more each.
const MAX_OIDC_STATEMENTS_SHARED: usize = 19;
/// Explicit transactions one OIDC sign-in may open: the finish's (the
/// session and its code) and the code's redemption (spent, and the access
/// token), when each runs alone rather than in a group commit.
const MAX_OIDC_TRANSACTIONS: usize = 2;

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

#[tokio::test]
async fn one_oidc_sign_in_on_sqlite_runs_at_most_the_allowed_statements() -> Result<()> {
    let server = Server::start_with(counting(ServerOptions::default())).await?;
    check_one_oidc_sign_in(&server, MAX_OIDC_STATEMENTS).await
}

#[tokio::test]
async fn one_oidc_sign_in_on_postgres_runs_at_most_the_allowed_statements() -> Result<()> {
    let db = PgDatabase::create()?;
    let options = ServerOptions { database_url: Some(db.url.clone()), ..Default::default() };
    let server = Server::start_with(counting(options)).await?;
    check_one_oidc_sign_in(&server, MAX_OIDC_STATEMENTS).await
}

#[tokio::test]
async fn one_oidc_sign_in_on_postgres_with_redis_runs_at_most_the_allowed_statements() -> Result<()> {
    let db = PgDatabase::create()?;
    let redis = Redis::start()?;
    let options =
        ServerOptions { database_url: Some(db.url.clone()), redis_url: Some(redis.url()), ..Default::default() };
    let server = Server::start_with(counting(options)).await?;
    check_one_oidc_sign_in(&server, MAX_OIDC_STATEMENTS_SHARED).await
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

    let (statements, transactions) = logged_since(server, before);
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

/// The statements the server logged after the first `before` bytes of its
/// log, and apart from them the BEGIN, COMMIT and ROLLBACK among them.
fn logged_since(server: &Server, before: usize) -> (Vec<String>, Vec<String>) {
    let log = server.log();
    let statements: Vec<String> = log[before..]
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "sesame_server::sql")
        .filter_map(|line| line["fields"]["statement"].as_str().map(str::to_owned))
        .collect();
    let is_transaction = |s: &String| ["BEGIN", "COMMIT", "ROLLBACK"].iter().any(|t| s.to_uppercase().starts_with(t));
    let (transactions, statements) = statements.into_iter().partition(is_transaction);
    (statements, transactions)
}

/// Where the OIDC client says it lives; nothing listens there.
const REDIRECT_URI: &str = "https://app.example.test/callback";

async fn check_one_oidc_sign_in(server: &Server, max_statements: usize) -> Result<()> {
    let service = server.create_service("Counted").await?;
    let client = server.admin().enable_oidc(&service.id, &json!({ "redirect_uris": [REDIRECT_URI] })).await?;
    let server_key = server.public_key().await?;
    let key = AccountKey::generate(&mut rand::rngs::OsRng);
    let account = AccountName::parse("counted").expect("a valid name");
    server.register(&service.id, &account, &key).await?;
    // A first OIDC sign-in, not counted, so that the counted one finds the
    // signing keys made and everything an instance that has served before
    // would have cached.
    oidc_sign_in(server, &client, &server_key, &account, &key).await?;

    let before = server.log().len();
    let sub = oidc_sign_in(server, &client, &server_key, &account, &key).await?;
    let (statements, transactions) = logged_since(server, before);
    assert!(!sub.is_empty());
    // The session the finish writes must be among what was logged.
    assert!(
        statements.iter().any(|s| s.starts_with("INSERT INTO session")),
        "no statement was logged: {statements:#?}"
    );
    println!(
        "{} statements, {} transaction statements: {statements:#?} {transactions:#?}",
        statements.len(),
        transactions.len()
    );
    assert!(
        statements.len() <= max_statements,
        "one OIDC sign-in ran {} statements, more than {max_statements}: {statements:#?}",
        statements.len()
    );
    assert!(transactions.len() <= 2 * MAX_OIDC_TRANSACTIONS, "transactions: {transactions:#?}");
    Ok(())
}

/// One OIDC sign-in of `account`, through a fresh browser, as in the
/// benchmark's OIDC flow; returns the subject userinfo names.
async fn oidc_sign_in(
    server: &Server,
    client: &OidcClient,
    server_key: &ServerPublicKey,
    account: &AccountName,
    key: &AccountKey,
) -> Result<String> {
    let browser = OidcBrowser::new(server);
    let pkce = Pkce::new();
    let request = AuthRequest::new(client, &pkce);
    let page = browser.open(&request.url(&server.base)?).await?;
    let events_url = page.html.split("data-events-url=\"").nth(1).and_then(|rest| rest.split('"').next());
    let events_url = events_url.expect("the login page names its event stream");
    // A path, or a URL under the public origin.
    let events_url = if events_url.starts_with('/') { server.url(events_url) } else { server.route(events_url) };
    let res = browser.client.get(events_url).header("accept", "text/event-stream").send().await?;
    assert!(res.status().is_success(), "events answered {}", res.status());
    let mut events = EventStream::new(res);
    let token = UnverifiedToken::parse(&page.token)?.verify(server_key)?;
    let res = reqwest::Client::new()
        .post(server.url("/api/authenticator/login"))
        .json(&LoginRequest::sign(&token, account, key))
        .send()
        .await?;
    assert!(res.status().is_success(), "login answered {}", res.status());
    while events.next_named("status", Duration::from_secs(10)).await?.json()["status"] != "completed" {}
    let callback = browser.finish(&page).await?;
    let answer = Redemption {
        auth: ClientAuth::basic(client)?,
        code: callback.code()?,
        redirect_uri: REDIRECT_URI,
        code_verifier: Some(&pkce.verifier),
    }
    .send(&reqwest::Client::new(), &server.base)
    .await?;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let info = userinfo(&server.base, answer.field("access_token")?).await?;
    assert_eq!(info.status, 200, "{:?}", info.body);
    Ok(info.field("sub")?.to_owned())
}
