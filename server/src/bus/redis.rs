//! Notices between instances through Redis pub/sub, on one connection.
//!
//! Each instance holds a single RESP3 connection, whatever the number of
//! waiting browsers: RESP3 lets one connection both publish and receive the
//! messages of its subscriptions (as push frames), so SUBSCRIBE, UNSUBSCRIBE,
//! PUBLISH and PING all share it. A driver task owns every change to the set
//! of subscribed channels, which keeps SUBSCRIBE and UNSUBSCRIBE for the same
//! challenge in order without a lock held across a round trip, and lets many
//! subscriptions share one pipelined round trip under load.
//!
//! When the connection is lost the driver reconnects with a short backoff,
//! subscribes again to every challenge still waited on, and then wakes every
//! local stream: a notice published while we were away is lost for good, but
//! the stored state is not, and each stream reads it again. Notices this
//! instance could not publish while Redis was away are kept and published as
//! soon as it is back, so a stream on another instance that was resubscribed
//! first still hears about a result stored here in the meantime.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use ::redis::{
    aio::MultiplexedConnection, AsyncConnectionConfig, Client, IntoConnectionInfo as _, ProtocolVersion, PushInfo,
    PushKind, TlsCertificates, Value,
};
use anyhow::Context as _;
use sesame_proto::ChallengeId;
use tokio::sync::{mpsc, oneshot};

use super::{challenge_of, channel_name, LocalBus, Subscription};
use crate::error::{Error, Result};

/// How long a subscribe or publish may wait for Redis before the caller gets
/// `Unavailable`. A browser would rather see an error than a page that hangs.
const TIMEOUT: Duration = Duration::from_secs(2);
/// First and longest pause between two attempts to reach Redis again.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A quiet connection is probed this often, so that a peer that vanished
/// without closing the socket is noticed.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Most commands sent in one pipeline, so that a resubscription of many
/// thousands of channels does not build one huge buffer.
const PIPELINE_MAX: usize = 1000;
/// Most notices kept for publishing after an outage. Beyond that, waiting
/// streams still see the result when their own instance resubscribes, or by
/// polling.
const UNSENT_MAX: usize = 100_000;

/// The Redis-backed bus. Clones share the connection.
#[derive(Debug, Clone)]
pub struct RedisBus {
    local: LocalBus,
    requests: mpsc::UnboundedSender<SubscribeRequest>,
    /// The live connection, for PUBLISH; `None` while Redis is unreachable.
    connection: Arc<Mutex<Option<MultiplexedConnection>>>,
    /// Challenges whose notice could not be published yet.
    unsent: Arc<Mutex<HashSet<ChallengeId>>>,
}

/// "Make sure Redis sends us `id`'s notices, then answer."
#[derive(Debug)]
struct SubscribeRequest {
    id: ChallengeId,
    done: oneshot::Sender<bool>,
}

impl RedisBus {
    /// Starts the driver. The first connection attempt is awaited, so that a
    /// server started next to a healthy Redis is ready at once; a failure is
    /// logged and retried in the background.
    pub async fn connect(url: &str, name: &str, ca: Option<&[u8]>) -> anyhow::Result<Self> {
        let mut info = url.into_connection_info().context("--redis-url is not a valid Redis URL")?;
        // Push frames on an ordinary connection need RESP3 (Redis 6 or later),
        // whatever the URL asked for.
        info.redis.protocol = ProtocolVersion::RESP3;
        let client = match ca {
            None => Client::open(info),
            Some(_) if !url.starts_with("rediss://") => anyhow::bail!("--redis-ca-file needs a rediss:// URL"),
            Some(pem) => {
                Client::build_with_tls(info, TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) })
            }
        }
        .context("--redis-url is not a valid Redis URL")?;
        let (released_tx, released) = mpsc::unbounded_channel();
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let local = LocalBus::with_release_hook(released_tx);
        let connection = Arc::new(Mutex::new(None));
        let unsent = Arc::new(Mutex::new(HashSet::new()));
        let mut driver = Driver {
            client,
            name: name.to_owned(),
            local: local.clone(),
            connection: connection.clone(),
            unsent: unsent.clone(),
            requests: requests_rx,
            released,
            subscribed: HashSet::new(),
        };
        let first = driver.connect().await;
        // An unreachable Redis is waited for, but one that presents a
        // certificate we do not trust will not change its mind: stop here,
        // and never fall back to plain text.
        if let Err(e) = &first {
            if let Some(problem) = crate::tls::certificate_problem(e) {
                anyhow::bail!("refusing Redis at --redis-url: {problem}");
            }
        }
        // Ready for commands as soon as this returns, not only once the
        // driver task has run.
        if let Ok((live, _)) = &first {
            *connection.lock().expect("bus lock poisoned") = Some(live.clone());
        }
        tokio::spawn(driver.run(first));
        Ok(Self { local, requests, connection, unsent })
    }

    pub(super) async fn subscribe(&self, id: ChallengeId) -> Result<Subscription> {
        // Registered locally first: a message that arrives as soon as Redis
        // confirms must find its waiter.
        let subscription = self.local.subscribe(id);
        let (done, confirmed) = oneshot::channel();
        self.requests.send(SubscribeRequest { id, done }).map_err(|_| Error::Unavailable)?;
        match tokio::time::timeout(TIMEOUT, confirmed).await {
            Ok(Ok(true)) => Ok(subscription),
            _ => Err(Error::Unavailable),
        }
    }

    /// Publishes a notice for `id`. When Redis cannot take it, the notice is
    /// kept for after the reconnection and the caller gets `Unavailable`.
    pub(super) async fn publish(&self, id: ChallengeId) -> Result<()> {
        let connection = self.connection.lock().expect("bus lock poisoned").clone();
        let outcome = match connection {
            None => Err("Redis is unreachable".to_owned()),
            Some(mut connection) => {
                let mut publish = ::redis::cmd("PUBLISH");
                // The payload is the publish time, for the delivery-time
                // metric of whichever instance receives it.
                publish.arg(channel_name(&id)).arg(crate::metrics::now_micros());
                match tokio::time::timeout(TIMEOUT, publish.exec_async(&mut connection)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("Redis did not answer in time".to_owned()),
                }
            }
        };
        outcome.map_err(|reason| {
            let mut unsent = self.unsent.lock().expect("bus lock poisoned");
            if unsent.len() < UNSENT_MAX {
                unsent.insert(id);
            }
            tracing::warn!(%reason, "cannot publish to Redis; the notice is kept for the reconnection");
            crate::metrics::bus_publish_failed();
            Error::Unavailable
        })
    }

    /// The live connection, for the other Redis commands of this instance
    /// (the shared rate limits); `None` while Redis is unreachable.
    pub(crate) fn connection(&self) -> Option<MultiplexedConnection> {
        self.connection.lock().expect("bus lock poisoned").clone()
    }

    /// Whether Redis answers a PING on the bus's own connection within
    /// `timeout`. No second connection: the probe sees what the bus sees.
    pub(crate) async fn answers(&self, timeout: Duration) -> bool {
        let Some(mut connection) = self.connection() else {
            return false;
        };
        let ping = ::redis::cmd("PING");
        matches!(tokio::time::timeout(timeout, ping.exec_async(&mut connection)).await, Ok(Ok(())))
    }

    /// The local map behind this bus, for tests and metrics.
    pub fn local(&self) -> &LocalBus {
        &self.local
    }
}

/// The task that owns the Redis connection's subscriptions.
struct Driver {
    client: Client,
    name: String,
    local: LocalBus,
    connection: Arc<Mutex<Option<MultiplexedConnection>>>,
    unsent: Arc<Mutex<HashSet<ChallengeId>>>,
    requests: mpsc::UnboundedReceiver<SubscribeRequest>,
    released: mpsc::UnboundedReceiver<ChallengeId>,
    /// Channels Redis has confirmed on the current connection.
    subscribed: HashSet<ChallengeId>,
}

/// A connection and the push frames it delivers.
type Live = (MultiplexedConnection, mpsc::UnboundedReceiver<PushInfo>);

/// Why serving a connection ended.
enum Ended {
    Lost,
    /// Every handle to the bus is gone.
    Closed,
}

impl Driver {
    async fn run(mut self, mut first: ::redis::RedisResult<Live>) {
        let mut backoff = MIN_BACKOFF;
        let mut was_up = false;
        loop {
            match first {
                Ok((connection, pushes)) => {
                    if was_up {
                        tracing::info!("reconnected to Redis; resubscribed {} challenges", self.subscribed.len());
                        crate::metrics::bus_reconnected();
                    }
                    backoff = MIN_BACKOFF;
                    was_up = true;
                    *self.connection.lock().expect("bus lock poisoned") = Some(connection.clone());
                    // Anything published while we were away is lost: every
                    // stream reads the stored state again.
                    self.local.notify_all();
                    let ended = self.serve(connection, pushes).await;
                    *self.connection.lock().expect("bus lock poisoned") = None;
                    self.subscribed.clear();
                    match ended {
                        Ended::Closed => return,
                        Ended::Lost => tracing::warn!("lost the Redis connection; reconnecting"),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach Redis; retrying in {backoff:?}");
                    if !self.refuse_for(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            first = self.connect().await;
        }
    }

    /// Opens a connection, names it and subscribes to every challenge still
    /// waited on.
    async fn connect(&mut self) -> ::redis::RedisResult<Live> {
        let (push_tx, pushes) = mpsc::unbounded_channel();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(TIMEOUT)
            .set_response_timeout(TIMEOUT)
            .set_push_sender(push_tx);
        let mut connection = self.client.get_multiplexed_async_connection_with_config(&config).await?;
        ::redis::cmd("CLIENT").arg("SETNAME").arg(&self.name).exec_async(&mut connection).await?;
        self.subscribed.clear();
        let ids = self.local.ids();
        for chunk in ids.chunks(PIPELINE_MAX) {
            let mut pipe = ::redis::pipe();
            for id in chunk {
                pipe.cmd("SUBSCRIBE").arg(channel_name(id));
            }
            pipe.exec_async(&mut connection).await?;
        }
        self.subscribed.extend(ids);
        self.flush_unsent(&mut connection).await?;
        Ok((connection, pushes))
    }

    /// Publishes the notices that could not be sent earlier.
    async fn flush_unsent(&self, connection: &mut MultiplexedConnection) -> ::redis::RedisResult<()> {
        let ids: Vec<ChallengeId> = self.unsent.lock().expect("bus lock poisoned").drain().collect();
        for chunk in ids.chunks(PIPELINE_MAX) {
            let mut pipe = ::redis::pipe();
            for id in chunk {
                // Published late: time 0 keeps the outage out of the
                // delivery-time metric, which the reconnect counter shows.
                pipe.cmd("PUBLISH").arg(channel_name(id)).arg(0);
            }
            if let Err(e) = pipe.exec_async(connection).await {
                self.unsent.lock().expect("bus lock poisoned").extend(ids);
                return Err(e);
            }
        }
        Ok(())
    }

    async fn serve(
        &mut self,
        mut connection: MultiplexedConnection,
        mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    ) -> Ended {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                // Messages first: they are what browsers wait for.
                biased;
                push = pushes.recv() => match push {
                    Some(PushInfo { kind: PushKind::Message, data }) => {
                        if let Some(Value::BulkString(channel)) = data.first() {
                            if let Some(id) = challenge_of(channel) {
                                self.local.deliver(&id, published_at(data.get(1)));
                            }
                        }
                    }
                    Some(PushInfo { kind: PushKind::Disconnection, .. }) | None => return Ended::Lost,
                    Some(_) => {}
                },
                request = self.requests.recv() => {
                    let Some(request) = request else { return Ended::Closed };
                    let mut batch = vec![request];
                    while batch.len() < PIPELINE_MAX {
                        match self.requests.try_recv() {
                            Ok(request) => batch.push(request),
                            Err(_) => break,
                        }
                    }
                    if self.apply(&mut connection, batch, Vec::new()).await.is_err() {
                        return Ended::Lost;
                    }
                }
                Some(id) = self.released.recv() => {
                    if self.apply(&mut connection, Vec::new(), vec![id]).await.is_err() {
                        return Ended::Lost;
                    }
                }
                _ = ping.tick() => {
                    let ping = ::redis::cmd("PING");
                    if !matches!(tokio::time::timeout(TIMEOUT, ping.exec_async(&mut connection)).await, Ok(Ok(()))) {
                        return Ended::Lost;
                    }
                    // A publish that failed on a connection already being
                    // replaced leaves its notice here; send it now.
                    if self.flush_unsent(&mut connection).await.is_err() {
                        return Ended::Lost;
                    }
                }
            }
        }
    }

    /// Brings Redis's subscriptions in line with the local map for the
    /// challenges in `batch` and those released since the last call, in one
    /// pipeline, then answers the batch.
    async fn apply(
        &mut self,
        connection: &mut MultiplexedConnection,
        batch: Vec<SubscribeRequest>,
        mut released: Vec<ChallengeId>,
    ) -> ::redis::RedisResult<()> {
        while let Ok(id) = self.released.try_recv() {
            released.push(id);
        }
        // Unsubscribing goes first on the wire: a challenge released and
        // waited on again within this batch ends up subscribed.
        let leave: HashSet<ChallengeId> =
            released.into_iter().filter(|id| self.subscribed.contains(id) && !self.local.is_waited_on(id)).collect();
        let join: HashSet<ChallengeId> = batch
            .iter()
            .map(|r| r.id)
            .filter(|id| (leave.contains(id) || !self.subscribed.contains(id)) && self.local.is_waited_on(id))
            .collect();
        let mut pipe = ::redis::pipe();
        for id in &leave {
            pipe.cmd("UNSUBSCRIBE").arg(channel_name(id));
        }
        for id in &join {
            pipe.cmd("SUBSCRIBE").arg(channel_name(id));
        }
        let outcome = if leave.is_empty() && join.is_empty() {
            Ok(())
        } else {
            match tokio::time::timeout(TIMEOUT, pipe.exec_async(connection)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(::redis::RedisError::from((::redis::ErrorKind::IoError, "Redis did not answer in time"))),
            }
        };
        let ok = outcome.is_ok();
        if ok {
            for id in &leave {
                self.subscribed.remove(id);
            }
            self.subscribed.extend(join);
        }
        for request in batch {
            let _ = request.done.send(ok);
        }
        outcome
    }

    /// While Redis is unreachable: answers every subscription at once with a
    /// refusal for `pause`, rather than letting callers wait. Returns `false`
    /// once every handle to the bus is gone.
    async fn refuse_for(&mut self, pause: Duration) -> bool {
        let deadline = tokio::time::sleep(pause);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return true,
                request = self.requests.recv() => match request {
                    Some(request) => {
                        let _ = request.done.send(false);
                    }
                    None => return false,
                },
                // Nothing is subscribed on Redis now; resubscription reads
                // the local map afresh.
                Some(_) = self.released.recv() => {}
            }
        }
    }
}

/// The publish time a notice carries; 0 (unknown) for anything else, such
/// as the `1` that earlier versions sent.
fn published_at(payload: Option<&Value>) -> u64 {
    match payload {
        Some(Value::BulkString(bytes)) => std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
        _ => 0,
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("name", &self.name).field("subscribed", &self.subscribed.len()).finish()
    }
}
