//! The Redis bus against a real `redis-server` that each test starts on its
//! own port, never the machine's shared one.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use sesame_proto::ChallengeId;
use sesame_server::{
    bus::{Bus, Subscription},
    Error,
};
use tempfile::TempDir;

/// Long enough for a loaded CI machine; a correct bus answers far sooner.
const PATIENCE: Duration = Duration::from_secs(10);

/// A private `redis-server` that can be killed and started again on the same
/// port.
pub(crate) struct RedisServer {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl RedisServer {
    pub(crate) fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("local addr").port();
        let mut server = Self { port, dir: tempfile::tempdir().expect("temp dir"), child: None };
        server.restart();
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); install it, e.g. `apt-get install redis-server`")
            });
        self.child = Some(child);
        let deadline = std::time::Instant::now() + PATIENCE;
        let client = redis::Client::open(self.url()).expect("redis url");
        while client.get_connection().and_then(|mut c| redis::cmd("PING").query::<String>(&mut c)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not come up on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn query(&self, cmd: &redis::Cmd) -> redis::Value {
        let client = redis::Client::open(self.url()).expect("redis url");
        let mut connection = client.get_connection().expect("connect to the test redis-server");
        cmd.query(&mut connection).expect("redis query")
    }

    /// Connections that carry `name` (as set with CLIENT SETNAME).
    fn connections_named(&self, name: &str) -> usize {
        let list = match self.query(redis::cmd("CLIENT").arg("LIST")) {
            redis::Value::BulkString(bytes) => String::from_utf8(bytes).expect("CLIENT LIST is text"),
            redis::Value::VerbatimString { text, .. } => text,
            other => panic!("unexpected CLIENT LIST reply {other:?}"),
        };
        let needle = format!(" name={name} ");
        list.lines().filter(|line| line.contains(&needle)).count()
    }

    /// Challenge channels some client is subscribed to.
    fn challenge_channels(&self) -> usize {
        match self.query(redis::cmd("PUBSUB").arg("CHANNELS").arg("sesame:challenge:*")) {
            redis::Value::Array(channels) => channels.len(),
            other => panic!("unexpected PUBSUB CHANNELS reply {other:?}"),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn id(n: u8) -> ChallengeId {
    ChallengeId([n; 16])
}

async fn woken(sub: &mut Subscription) -> bool {
    tokio::time::timeout(PATIENCE, sub.changed()).await.is_ok()
}

async fn stays_quiet(sub: &mut Subscription) -> bool {
    tokio::time::timeout(Duration::from_millis(300), sub.changed()).await.is_err()
}

/// Polls `check` until it holds, for at most [`PATIENCE`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn publish_on_one_instance_wakes_only_that_challenge_on_another() {
    let redis = RedisServer::start();
    let a = Bus::redis(&redis.url(), "sesame-test-a").await.expect("bus a");
    let b = Bus::redis(&redis.url(), "sesame-test-b").await.expect("bus b");
    let mut wanted = a.subscribe(id(1)).await.expect("subscribe on a");
    let mut wanted_too = a.subscribe(id(1)).await.expect("second subscriber on a");
    let mut other = a.subscribe(id(2)).await.expect("subscribe on a");

    b.publish(id(1)).await.expect("publish on b");

    assert!(woken(&mut wanted).await, "the subscriber on a missed the notice published on b");
    assert!(woken(&mut wanted_too).await, "the second subscriber on a missed the notice");
    assert!(stays_quiet(&mut other).await, "a notice for challenge 1 woke challenge 2");
}

#[tokio::test]
async fn subscribers_on_the_publishing_instance_are_woken_too() {
    let redis = RedisServer::start();
    let a = Bus::redis(&redis.url(), "sesame-test-self").await.expect("bus");
    let mut sub = a.subscribe(id(3)).await.expect("subscribe");
    a.publish(id(3)).await.expect("publish");
    assert!(woken(&mut sub).await);
}

#[tokio::test]
async fn many_subscriptions_share_one_connection_and_are_released() {
    let redis = RedisServer::start();
    let bus = Bus::redis(&redis.url(), "sesame-test-many").await.expect("bus");
    let mut subs = Vec::new();
    for n in 0..200u8 {
        subs.push(bus.subscribe(id(n)).await.expect("subscribe"));
    }
    assert_eq!(redis.challenge_channels(), 200);
    assert_eq!(redis.connections_named("sesame-test-many"), 1);

    subs.truncate(50);
    eventually("150 released channels are unsubscribed", || redis.challenge_channels() == 50).await;
    drop(subs);
    eventually("every released channel is unsubscribed", || redis.challenge_channels() == 0).await;
    assert_eq!(redis.connections_named("sesame-test-many"), 1);
}

#[tokio::test]
async fn bus_is_unavailable_while_redis_is_down_and_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let a = Bus::redis(&redis.url(), "sesame-test-down-a").await.expect("bus a");
    let b = Bus::redis(&redis.url(), "sesame-test-down-b").await.expect("bus b");
    let mut sub = a.subscribe(id(7)).await.expect("subscribe");

    redis.kill();
    // The driver notices the closed socket at once; give it a moment so the
    // calls below meet a bus that knows Redis is gone.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let publish = tokio::time::timeout(PATIENCE, b.publish(id(7))).await.expect("publish hung while Redis was down");
    assert!(matches!(publish, Err(Error::Unavailable)), "publish while Redis is down: {publish:?}");
    let subscribe =
        tokio::time::timeout(PATIENCE, a.subscribe(id(8))).await.expect("subscribe hung while Redis was down");
    assert!(matches!(subscribe, Err(Error::Unavailable)), "subscribe while Redis is down: {:?}", subscribe.err());

    redis.restart();
    // Resubscribing wakes every waiter, so it re-reads the stored state.
    assert!(woken(&mut sub).await, "the subscriber was not woken after the bus resubscribed");
    eventually("bus a is connected again", || redis.connections_named("sesame-test-down-a") == 1).await;
    assert_eq!(redis.challenge_channels(), 1, "challenge 7 was not resubscribed");

    // The publisher reconnects on its own too.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while b.publish(id(7)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "bus b never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(woken(&mut sub).await, "a notice published after the restart was missed");
    let mut fresh = a.subscribe(id(8)).await.expect("subscribe after recovery");
    b.publish(id(8)).await.expect("publish after recovery");
    assert!(woken(&mut fresh).await);
}

#[tokio::test]
async fn a_malformed_url_is_refused_at_start() {
    let err = Bus::redis("not a url", "sesame-test-bad").await.expect_err("a bad URL must be refused");
    assert!(err.to_string().contains("--redis-url"), "{err}");
}

#[tokio::test]
async fn an_unreachable_redis_at_start_is_retried_not_fatal() {
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut redis = RedisServer { port, dir: tempfile::tempdir().expect("temp dir"), child: None };
    let bus = Bus::redis(&redis.url(), "sesame-test-late").await.expect("a down Redis must not stop start-up");
    assert!(matches!(bus.subscribe(id(9)).await, Err(Error::Unavailable)));
    redis.restart();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut sub = loop {
        match bus.subscribe(id(9)).await {
            Ok(sub) => break sub,
            Err(_) => {
                assert!(tokio::time::Instant::now() < deadline, "the bus never connected");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    bus.publish(id(9)).await.expect("publish");
    assert!(woken(&mut sub).await);
}
