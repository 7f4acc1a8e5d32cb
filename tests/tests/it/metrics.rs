//! Prometheus metrics on `--metrics-listen`: sign-ins move the counters, the
//! exposition passes `promtool check metrics`, nothing identifying becomes a
//! label, and the public port has no `/metrics`.

use std::time::Duration;

use serde_json::Value;
use sesame_proto::{AccountKey, AccountName, LoginRequest, UnverifiedToken};
use sesame_tests::{
    free_port, promtool_check, stderr, stdout, Browser, Redis, Result, Scrape, Server, ServerOptions, Sesame,
};

/// A server with metrics on a port of its own; returns it and the metrics
/// base URL.
async fn with_metrics(mut options: ServerOptions) -> Result<(Server, String)> {
    let port = free_port();
    options.extra_args.extend(["--metrics-listen".to_owned(), format!("127.0.0.1:{port}")]);
    let server = Server::start_with(options).await?;
    Ok((server, format!("http://127.0.0.1:{port}")))
}

fn succeeds(output: &std::process::Output) -> Value {
    assert!(output.status.success(), "sesame failed: {}{}", stdout(output), stderr(output));
    serde_json::from_str(stdout(output).trim()).expect("sesame --json prints one JSON value")
}

#[tokio::test]
async fn a_sign_in_through_redis_moves_the_counters_and_promtool_accepts_the_exposition() -> Result<()> {
    let redis = Redis::start()?;
    let (server, metrics) =
        with_metrics(ServerOptions { redis_url: Some(redis.url()), ..ServerOptions::default() }).await?;
    let service = server.create_service("Metered").await?;
    let browser = Browser::new(&server);
    let sesame = Sesame::new();

    // Register while the page's event stream waits, so the result travels
    // through Redis to the stream.
    let first = browser.start_challenge(&service.id).await?;
    let mut events = browser.events(&first, None).await?;
    events.next_named("status", Duration::from_secs(5)).await?;
    succeeds(&sesame.run(&["--json", "register", &first.token, "--name", "alice", "--yes"]));
    let done = sesame_tests::final_status(&mut events, Duration::from_secs(10)).await?;
    assert_eq!(done["status"], "completed");
    drop(events);

    let second = browser.start_challenge(&service.id).await?;
    succeeds(&sesame.run(&["--json", "login", &second.token, "--yes"]));
    // Answers the server refuses: one for a challenge already used (the
    // authenticator itself would stop before sending it), one malformed.
    let login = server.url("/api/authenticator/login");
    let replay = serde_json::json!({"token": second.token, "account": "alice", "signature": "AAAA"});
    let res = reqwest::Client::new().post(&login).json(&replay).send().await?;
    assert_eq!(res.status(), 409);
    let res = reqwest::Client::new().post(&login).json(&serde_json::json!({})).send().await?;
    assert_eq!(res.json::<Value>().await?["error"], "invalid_json");
    let third = browser.start_challenge(&service.id).await?;
    succeeds(&sesame.run(&["--json", "deny", &third.token]));

    let scrape = Scrape::get(&format!("{metrics}/metrics")).await?;
    let challenges_route = [("route", "/api/services/{id}/challenges"), ("method", "POST"), ("status", "2xx")];
    assert_eq!(scrape.value("sesame_http_requests_total", &challenges_route), 3.0, "{}", scrape.text);
    assert_eq!(scrape.value("sesame_challenges_created_total", &[("purpose", "sign_in")]), 3.0);
    let answers = |kind, outcome| scrape.value("sesame_answers_total", &[("kind", kind), ("outcome", outcome)]);
    assert_eq!(answers("register", "ok"), 1.0, "{}", scrape.text);
    assert_eq!(answers("login", "ok"), 1.0);
    assert_eq!(answers("login", "challenge_used"), 1.0);
    assert_eq!(answers("login", "invalid_json"), 1.0);
    assert_eq!(answers("deny", "denied"), 1.0);
    assert_eq!(scrape.value("sesame_challenge_approval_seconds_count", &[]), 2.0);
    assert_eq!(scrape.value("sesame_answer_delivery_seconds_count", &[]), 1.0, "{}", scrape.text);
    assert!(scrape.value("sesame_bus_messages_published_total", &[]) >= 3.0);
    assert!(scrape.value("sesame_bus_messages_received_total", &[]) >= 1.0);
    assert!(scrape.value("sesame_db_query_duration_seconds_count", &[]) > 10.0, "{}", scrape.text);
    assert_eq!(scrape.value("sesame_sweeps_total", &[("outcome", "ok")]), 1.0, "one sweep at start-up");
    assert!(scrape.has("sesame_event_streams_open"));
    // With Redis, pending challenges are rows: none is held in memory.
    assert!(!scrape.has("sesame_challenges_held"), "{}", scrape.text);
    assert_eq!(scrape.value("sesame_build_info", &[]), 1.0);

    // Nothing that names a person, a challenge, a service or an address.
    let identifying = [service.id.as_str(), &first.challenge_id, "alice", "127.0.0.1", "Metered"];
    for value in scrape.label_values() {
        assert!(!identifying.iter().any(|id| value.contains(id)), "label value {value:?} identifies something");
    }
    promtool_check(&scrape.text)?;

    // The counters only grow: a second scrape after another request.
    browser.start_challenge(&service.id).await?;
    let later = Scrape::get(&format!("{metrics}/metrics")).await?;
    assert_eq!(later.value("sesame_challenges_created_total", &[("purpose", "sign_in")]), 4.0);
    Ok(())
}

#[tokio::test]
async fn metrics_live_only_on_their_own_listener_beside_the_health_checks() -> Result<()> {
    let (server, metrics) = with_metrics(ServerOptions::default()).await?;

    let public = reqwest::get(server.url("/metrics")).await?;
    assert_eq!(public.status(), 404);
    let body: Value = public.json().await?;
    assert_eq!(body["error"], "not_found");

    assert_eq!(reqwest::get(format!("{metrics}/healthz")).await?.status(), 200);
    let ready = reqwest::get(format!("{metrics}/readyz")).await?;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await?["status"], "ready");
    let other = reqwest::get(format!("{metrics}/admin")).await?;
    assert_eq!(other.status(), 404);
    assert_eq!(other.json::<Value>().await?["error"], "not_found");
    // Readiness stays on the public port too, for load balancers.
    assert_eq!(reqwest::get(server.url("/readyz")).await?.status(), 200);
    Ok(())
}

/// One instance without Redis holds its pending challenges in memory, and
/// says how many (sampled every 10 s).
#[tokio::test]
async fn one_instance_reports_the_challenges_it_holds_in_memory() -> Result<()> {
    let (server, metrics) = with_metrics(ServerOptions::default()).await?;
    let service = server.create_service("Held").await?;
    let browser = Browser::new(&server);
    for _ in 0..3 {
        browser.start_challenge(&service.id).await?;
    }
    let held = sesame_tests::eventually(Duration::from_secs(30), || async {
        let scrape = Scrape::get(&format!("{metrics}/metrics")).await.ok()?;
        let held = scrape.value("sesame_challenges_held", &[]);
        (held >= 3.0).then_some(held)
    })
    .await?;
    assert_eq!(held, 3.0);
    Ok(())
}

/// Sign-ins that arrive together share the commits of SQLite's writer, and
/// each is written, and counted, exactly once: its ended challenge and its
/// redemption. (That concurrent writes do form groups, and what a failed
/// one does to its group, is tested on the writer itself.)
#[tokio::test]
async fn sign_ins_at_once_on_sqlite_all_complete_and_each_write_is_committed_once() -> Result<()> {
    const SIGN_INS: usize = 24;
    let (server, metrics) = with_metrics(ServerOptions::default()).await?;
    let service = server.create_service("Grouped").await?;
    let server_key = server.public_key().await?;
    let authenticator = reqwest::Client::new();
    let mut accounts = Vec::new();
    for i in 0..SIGN_INS {
        let key = AccountKey::generate(&mut rand::rngs::OsRng);
        let account = AccountName::parse(&format!("user{i}")).expect("a valid name");
        server.register(&service.id, &account, &key).await?;
        accounts.push((account, key));
    }
    let writes = |scrape: &Scrape| {
        (
            scrape.value("sesame_db_group_commit_writes_sum", &[]),
            scrape.value("sesame_db_group_commit_writes_count", &[]),
        )
    };
    let (writes_before, commits_before) = writes(&Scrape::get(&format!("{metrics}/metrics")).await?);

    // Every browser starts a challenge, its authenticator logs in, and the
    // browser redeems its session: all at once.
    let sign_ins = accounts.iter().map(|(account, key)| {
        let (server, service, server_key, authenticator) = (&server, &service, &server_key, &authenticator);
        async move {
            let browser = Browser::new(server);
            let challenge = browser.start_challenge(&service.id).await?;
            let token = UnverifiedToken::parse(&challenge.token)?.verify(server_key)?;
            let res = authenticator
                .post(server.url("/api/authenticator/login"))
                .json(&LoginRequest::sign(&token, account, key))
                .send()
                .await?;
            assert_eq!(res.status(), 200, "login: {}", res.text().await?);
            let url = browser.url(&format!("/api/challenges/{}/session", challenge.challenge_id));
            let res = browser.client.post(url).send().await?;
            assert_eq!(res.status(), 200, "redeeming: {}", res.text().await?);
            Result::Ok(())
        }
    });
    for signed_in in futures_util::future::join_all(sign_ins).await {
        signed_in?;
    }

    let (writes_after, commits_after) = writes(&Scrape::get(&format!("{metrics}/metrics")).await?);
    let (written, commits) = (writes_after - writes_before, commits_after - commits_before);
    println!("{written} writes in {commits} commits");
    assert_eq!(written, 2.0 * SIGN_INS as f64, "an ended challenge and a session a sign-in");
    assert!((1.0..=written).contains(&commits), "{commits} commits for {written} writes");
    Ok(())
}

#[tokio::test]
async fn a_server_without_metrics_listen_exposes_nothing() -> Result<()> {
    let server = Server::start().await?;
    let res = reqwest::get(server.url("/metrics")).await?;
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await?["error"], "not_found");
    Ok(())
}

#[tokio::test]
async fn rate_limit_refusals_are_counted_by_limit() -> Result<()> {
    let (server, metrics) = with_metrics(ServerOptions { rate_limit: Some(1), ..ServerOptions::default() }).await?;
    let service = server.create_service("Limited").await?;
    let browser = Browser::new(&server);
    browser.start_challenge(&service.id).await?;
    let refused = browser.client.post(server.url(&format!("/api/services/{}/challenges", service.id))).send().await?;
    assert_eq!(refused.status(), 429);

    let scrape = Scrape::get(&format!("{metrics}/metrics")).await?;
    assert_eq!(scrape.value("sesame_rate_limited_total", &[("limit", "challenges")]), 1.0, "{}", scrape.text);
    let refused_route = [("route", "/api/services/{id}/challenges"), ("status", "4xx")];
    assert_eq!(scrape.value("sesame_http_requests_total", &refused_route), 1.0);
    Ok(())
}

#[tokio::test]
async fn readyz_logs_a_change_of_readiness_once_not_at_every_probe() -> Result<()> {
    let mut redis = Redis::start()?;
    let server = Server::start_with(ServerOptions { redis_url: Some(redis.url()), ..ServerOptions::default() }).await?;
    redis.stop();
    for _ in 0..3 {
        assert_eq!(reqwest::get(server.url("/readyz")).await?.status(), 503);
    }
    let log = server.log();
    assert_eq!(log.matches("not ready: redis did not answer").count(), 1, "{log}");
    assert!(!log.lines().any(|l| l.contains("ERROR") && l.contains("/readyz")), "{log}");

    redis.restart()?;
    sesame_tests::eventually(Duration::from_secs(15), || async {
        let res = reqwest::get(server.url("/readyz")).await.ok()?;
        (res.status() == 200).then_some(())
    })
    .await?;
    assert_eq!(server.log().matches("ready again").count(), 1, "{}", server.log());
    Ok(())
}
