//! Several `sesame-server` instances behind one public origin, sharing a
//! PostgreSQL database and a Redis server that each test owns: results cross
//! instances, Redis connections stay constant, a Redis restart loses nothing,
//! and a replay race across instances has exactly one winner.

use std::time::Duration;

use serde_json::Value;
use sesame_proto::{AccountKey, AccountName, LoginRequest, RegisterRequest, ServerPublicKey, Token, UnverifiedToken};
use sesame_tests::{Browser, Challenge, EventStream, PgDatabase, Redis, Result, Server, ServerOptions, Service};

/// The origin every instance puts in its tokens, as behind a load balancer.
/// Tests reach each instance directly with [`Server::route`].
const PUBLIC_URL: &str = "http://login.sesame.test";

const PATIENCE: Duration = Duration::from_secs(15);

/// Two instances on one database and one Redis.
struct Cluster {
    // Declared first so they stop before the database is dropped.
    a: Server,
    b: Server,
    redis: Redis,
    _db: PgDatabase,
    service: Service,
    server_key: ServerPublicKey,
}

impl Cluster {
    async fn start() -> Result<Self> {
        let db = PgDatabase::create()?;
        let redis = Redis::start()?;
        let options = ServerOptions {
            public_url: Some(PUBLIC_URL.into()),
            database_url: Some(db.url.clone()),
            redis_url: Some(redis.url()),
            ..ServerOptions::default()
        };
        let a = Server::start_with(options.clone()).await?;
        let b = Server::start_with(options).await?;
        // Created on A, used through B: the instances share the services.
        let service = a.create_service("Example").await?;
        let identity_a: Value = reqwest::get(a.url("/.well-known/sesame")).await?.json().await?;
        let identity_b: Value = reqwest::get(b.url("/.well-known/sesame")).await?.json().await?;
        assert_eq!(identity_a["public_key"], identity_b["public_key"], "instances on one database share the key");
        let server_key = ServerPublicKey::from_base64(identity_a["public_key"].as_str().unwrap_or_default())?;
        Ok(Self { a, b, redis, _db: db, service, server_key })
    }

    /// A browser that starts a challenge on `server` and opens its event
    /// stream there, reading up to the first status (`pending`).
    async fn waiting_browser(&self, server: &Server) -> Result<(Browser, Challenge, EventStream)> {
        let browser = Browser::new(server);
        let challenge = routed(server, browser.start_challenge(&self.service.id).await?);
        let mut events = browser.events(&challenge, None).await?;
        let first = events.next_named("status", PATIENCE).await?;
        assert_eq!(first.json()["status"], "pending");
        Ok((browser, challenge, events))
    }

    fn token(&self, challenge: &Challenge) -> Result<Token> {
        Ok(UnverifiedToken::parse(&challenge.token)?.verify(&self.server_key)?)
    }

    /// Registers `name` for `challenge` by posting a signed answer to
    /// `server`; returns the new account key.
    async fn register(&self, server: &Server, challenge: &Challenge, name: &str) -> Result<AccountKey> {
        let key = AccountKey::generate(&mut rand::rngs::OsRng);
        let request = RegisterRequest::sign(&self.token(challenge)?, &AccountName::parse(name)?, &key);
        let res = reqwest::Client::new().post(server.url("/api/authenticator/register")).json(&request).send().await?;
        let status = res.status();
        let body: Value = res.json().await?;
        assert_eq!(status, 200, "register through {}: {body}", server.base);
        Ok(key)
    }
}

/// The challenge's URLs, pointed at `server` instead of the public origin.
fn routed(server: &Server, mut challenge: Challenge) -> Challenge {
    challenge.status_url = server.route(&challenge.status_url);
    challenge.events_url = server.route(&challenge.events_url);
    challenge
}

/// Reads the stream until its next status event, and returns its data.
async fn next_status(events: &mut EventStream) -> Result<Value> {
    Ok(events.next_named("status", PATIENCE).await?.json())
}

#[tokio::test]
async fn result_submitted_to_one_instance_reaches_the_browser_on_the_other() -> Result<()> {
    let cluster = Cluster::start().await?;
    let (_browser, challenge, mut events) = cluster.waiting_browser(&cluster.a).await?;
    let key = cluster.register(&cluster.b, &challenge, "alice").await?;
    let status = next_status(&mut events).await?;
    assert_eq!((status["status"].as_str(), status["account"].as_str()), (Some("completed"), Some("alice")));

    // And the other way round, with a login.
    let (_browser, challenge, mut events) = cluster.waiting_browser(&cluster.b).await?;
    let login = LoginRequest::sign(&cluster.token(&challenge)?, &AccountName::parse("alice")?, &key);
    let res = reqwest::Client::new().post(cluster.a.url("/api/authenticator/login")).json(&login).send().await?;
    assert_eq!(res.status(), 200);
    let status = next_status(&mut events).await?;
    assert_eq!((status["status"].as_str(), status["hint"].as_str()), (Some("completed"), Some("login")));
    Ok(())
}

#[tokio::test]
async fn two_hundred_waiting_browsers_share_one_redis_connection() -> Result<()> {
    let cluster = Cluster::start().await?;
    let mut waiting = Vec::new();
    for _ in 0..200 {
        waiting.push(cluster.waiting_browser(&cluster.a).await?);
    }
    assert_eq!(cluster.redis.challenge_channels()?, 200, "one channel per waiting challenge");
    let name_a = format!("sesame-{}", cluster.a.pid());
    let name_b = format!("sesame-{}", cluster.b.pid());
    assert_eq!(cluster.redis.connections_named(&name_a)?, 1, "instance A holds one Redis connection");
    assert_eq!(cluster.redis.connections_named(&name_b)?, 1, "instance B holds one Redis connection");

    // Routing still works at that size, and wakes only its own stream.
    let (_, challenge, events) = &mut waiting[137];
    cluster.register(&cluster.b, challenge, "bob").await?;
    assert_eq!(next_status(events).await?["status"], "completed");
    let (_, _, neighbour) = &mut waiting[138];
    let quiet = neighbour.next_named("status", Duration::from_millis(500)).await;
    assert!(quiet.is_err(), "another challenge's stream got a status: {quiet:?}");
    Ok(())
}

#[tokio::test]
async fn redis_restart_loses_no_result() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let mut waiting = Vec::new();
    for _ in 0..4 {
        waiting.push(cluster.waiting_browser(&cluster.a).await?);
    }

    cluster.redis.stop();
    // While Redis is down the answer is still taken and stored (its notice
    // cannot go out), polling sees it, and a new wait is refused with 503.
    cluster.register(&cluster.b, &waiting[0].1, "carol").await?;
    let (browser, challenge, _) = &waiting[0];
    assert_eq!(browser.status(challenge).await?["status"], "completed");
    let starter = Browser::new(&cluster.a);
    let fresh = routed(&cluster.a, starter.start_challenge(&cluster.service.id).await?);
    let res = starter.client.get(&fresh.events_url).send().await?;
    assert_eq!(res.status(), 503);
    assert_eq!(res.json::<Value>().await?["error"], "unavailable");

    cluster.redis.restart()?;
    // Submitted the moment Redis is back, before the instances are known to
    // have reconnected.
    for (n, (_, challenge, _)) in waiting.iter().enumerate().skip(1) {
        cluster.register(&cluster.b, challenge, &format!("user{n}")).await?;
    }
    for (n, (_, _, events)) in waiting.iter_mut().enumerate() {
        let status = next_status(events).await?;
        assert_eq!(status["status"], "completed", "browser {n}: {status}");
    }
    Ok(())
}

#[tokio::test]
async fn fifty_copies_of_one_login_across_instances_have_one_winner() -> Result<()> {
    let cluster = Cluster::start().await?;
    let (_browser, challenge, _events) = cluster.waiting_browser(&cluster.a).await?;
    let key = cluster.register(&cluster.a, &challenge, "dave").await?;

    let (browser, challenge, mut events) = cluster.waiting_browser(&cluster.b).await?;
    let login = LoginRequest::sign(&cluster.token(&challenge)?, &AccountName::parse("dave")?, &key);
    let client = reqwest::Client::new();
    let sends = (0..50).map(|n| {
        let server = if n % 2 == 0 { &cluster.a } else { &cluster.b };
        let request = client.post(server.url("/api/authenticator/login")).json(&login);
        async move {
            let res = request.send().await?;
            let status = res.status().as_u16();
            let body: Value = res.json().await?;
            Ok::<_, anyhow::Error>((status, body))
        }
    });
    let answers = futures_util::future::try_join_all(sends).await?;
    let winners = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(winners, 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!((*status, body["error"].as_str()), (409, Some("challenge_used")), "{body}");
    }
    assert_eq!(next_status(&mut events).await?["account"], "dave");
    assert_eq!(browser.status(&challenge).await?["status"], "completed");
    Ok(())
}
