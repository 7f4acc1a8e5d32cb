//! Per-address limits: request rates (in memory, or in Redis so that every
//! instance counts against one limit) and open event streams.
//!
//! A rate limit of N a minute lets an address make N requests at once, and
//! then one more every 60/N seconds: the allowance refills continuously up to
//! N. This is the generic cell rate algorithm (GCRA). It keeps one number per
//! address, the time at which the allowance will be full again, so the same
//! check is one atomic script in Redis and tells exactly when to retry.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sesame_proto::ChallengeId;

use crate::{
    bus::RedisBus,
    error::{Error, Result},
};

/// Above this many tracked addresses, those with a full allowance are
/// forgotten.
const PRUNE_ABOVE: usize = 10_000;
/// How long a check waits for Redis before it counts in memory instead: a
/// slow Redis must not slow every sign-in down.
const REDIS_PATIENCE: Duration = Duration::from_millis(500);

/// One GCRA step in Redis, atomic because scripts run alone. The time comes
/// from Redis, so instances whose clocks differ still agree. The key lives
/// only until the allowance is full again.
///
/// KEYS[1]: the address's key; ARGV[1]: microseconds per request; ARGV[2]: N.
/// Returns 0 when the request is allowed, otherwise the microseconds to wait.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - tolerance > now then return tat - tolerance - now end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000))
return 0
";

/// A rate limit per client address. Zero turns it off.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    /// Names the limit's keys in Redis.
    name: &'static str,
    per_minute: u32,
    /// When each address's allowance is full again (its theoretical arrival
    /// time, in GCRA's terms).
    local: Arc<Mutex<HashMap<IpAddr, Instant>>>,
    shared: Option<Shared>,
}

#[derive(Clone)]
struct Shared {
    bus: RedisBus,
    script: Arc<redis::Script>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared(redis)")
    }
}

impl RateLimiter {
    pub fn new(name: &'static str, per_minute: u32) -> Self {
        Self { name, per_minute, local: Arc::default(), shared: None }
    }

    /// Keeps the counts in the Redis server behind `bus`, on the bus's own
    /// connection, so that instances sharing Redis share the limit. While
    /// Redis cannot answer, each instance counts in memory.
    pub fn in_redis(mut self, bus: RedisBus) -> Self {
        self.shared = Some(Shared { bus, script: Arc::new(redis::Script::new(GCRA_SCRIPT)) });
        self
    }

    /// The time between two requests once the burst is spent.
    fn interval(&self) -> Duration {
        Duration::from_secs(60) / self.per_minute
    }

    /// Counts one request from `ip`, or refuses it with the seconds to wait.
    pub async fn check(&self, ip: IpAddr) -> Result<()> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let wait = match &self.shared {
            Some(shared) => match self.check_redis(shared, ip).await {
                Ok(wait) => wait,
                Err(reason) => {
                    tracing::warn!(limit = self.name, %reason, "cannot use Redis for a rate limit; counting in memory");
                    self.check_local(ip, Instant::now())
                }
            },
            None => self.check_local(ip, Instant::now()),
        };
        match wait {
            None => Ok(()),
            // Whole seconds, rounded up, so a client that waits as told is
            // let through.
            Some(wait) => {
                crate::metrics::rate_limited(self.name);
                Err(Error::RateLimited { retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0) })
            }
        }
    }

    fn check_local(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let interval = self.interval();
        let tolerance = interval * (self.per_minute - 1);
        let mut full_at = self.local.lock().expect("rate limiter lock poisoned");
        if full_at.len() > PRUNE_ABOVE {
            full_at.retain(|_, at| *at > now);
        }
        let tat = full_at.get(&ip).copied().filter(|at| *at > now).unwrap_or(now);
        let allowed_at = tat.checked_sub(tolerance).unwrap_or(now);
        if allowed_at > now {
            return Some(allowed_at - now);
        }
        full_at.insert(ip, tat + interval);
        None
    }

    async fn check_redis(&self, shared: &Shared, ip: IpAddr) -> Result<Option<Duration>, String> {
        let mut connection = shared.bus.connection().ok_or("Redis is unreachable")?;
        let mut invocation = shared.script.key(format!("sesame:rate:{}:{ip}", self.name));
        invocation.arg(self.interval().as_micros() as u64).arg(self.per_minute);
        let wait: u64 = tokio::time::timeout(REDIS_PATIENCE, invocation.invoke_async(&mut connection))
            .await
            .map_err(|_| "Redis did not answer in time".to_owned())?
            .map_err(|e| e.to_string())?;
        Ok((wait > 0).then(|| Duration::from_micros(wait)))
    }
}

/// Caps on open event streams, per challenge and per client address, on this
/// instance. A page needs one stream; the caps stop one client from holding
/// hundreds of subscriptions open. Zero turns a cap off.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    per_challenge: usize,
    per_address: usize,
    open: Arc<Mutex<OpenStreams>>,
}

#[derive(Debug, Default)]
struct OpenStreams {
    by_challenge: HashMap<ChallengeId, usize>,
    by_address: HashMap<IpAddr, usize>,
}

/// Defaults of `--max-streams-per-challenge` and `--max-streams-per-address`.
pub const STREAMS_PER_CHALLENGE: usize = 100;
pub const STREAMS_PER_ADDRESS: usize = 1000;

impl Default for StreamLimits {
    fn default() -> Self {
        Self::new(STREAMS_PER_CHALLENGE, STREAMS_PER_ADDRESS)
    }
}

impl StreamLimits {
    pub fn new(per_challenge: usize, per_address: usize) -> Self {
        Self { per_challenge, per_address, open: Arc::default() }
    }

    /// Counts a stream as open until the returned guard is dropped, or
    /// refuses it with `too_many_streams`.
    pub fn open(&self, challenge: ChallengeId, ip: IpAddr) -> Result<StreamGuard> {
        let mut open = self.open.lock().expect("stream limits lock poisoned");
        let on_challenge = open.by_challenge.get(&challenge).copied().unwrap_or(0);
        let from_address = open.by_address.get(&ip).copied().unwrap_or(0);
        if over(on_challenge, self.per_challenge) || over(from_address, self.per_address) {
            crate::metrics::rate_limited("streams");
            return Err(Error::TooManyStreams);
        }
        *open.by_challenge.entry(challenge).or_default() += 1;
        *open.by_address.entry(ip).or_default() += 1;
        crate::metrics::streams_open(1.0);
        Ok(StreamGuard { open: self.open.clone(), challenge, ip })
    }
}

fn over(count: usize, cap: usize) -> bool {
    cap != 0 && count >= cap
}

/// One open stream; dropping it closes the count.
#[derive(Debug)]
pub struct StreamGuard {
    open: Arc<Mutex<OpenStreams>>,
    challenge: ChallengeId,
    ip: IpAddr,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("stream limits lock poisoned");
        decrement(&mut open.by_challenge, &self.challenge);
        decrement(&mut open.by_address, &self.ip);
        crate::metrics::streams_open(-1.0);
    }
}

/// Counts that reach zero are removed, so the maps hold only open streams.
fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn allows_the_whole_minute_at_once_then_one_per_interval() {
        let limiter = RateLimiter::new("test", 60);
        let start = Instant::now();
        for n in 0..60 {
            assert_eq!(limiter.check_local(A, start), None, "request {n} of the burst");
        }
        assert_eq!(limiter.check_local(A, start), Some(Duration::from_secs(1)));
        assert_eq!(limiter.check_local(A, start + Duration::from_millis(400)), Some(Duration::from_millis(600)));
        assert_eq!(limiter.check_local(A, start + Duration::from_secs(1)), None);
        assert!(limiter.check_local(A, start + Duration::from_secs(1)).is_some());
        assert_eq!(limiter.check_local(B, start), None, "another address has its own allowance");
    }

    #[test]
    fn refills_completely_after_a_minute() {
        let limiter = RateLimiter::new("test", 30);
        let start = Instant::now();
        for _ in 0..30 {
            assert_eq!(limiter.check_local(A, start), None);
        }
        let later = start + Duration::from_secs(60);
        for n in 0..30 {
            assert_eq!(limiter.check_local(A, later), None, "request {n} after a quiet minute");
        }
        assert_eq!(limiter.check_local(A, later), Some(Duration::from_secs(2)));
    }

    #[tokio::test]
    async fn refusal_names_whole_seconds_to_wait() {
        let limiter = RateLimiter::new("test", 1);
        limiter.check(A).await.expect("the first request of the minute");
        assert!(matches!(limiter.check(A).await, Err(Error::RateLimited { retry_after: 59 | 60 })));
    }

    #[tokio::test]
    async fn zero_means_unlimited() {
        let limiter = RateLimiter::new("test", 0);
        for _ in 0..1000 {
            limiter.check(A).await.expect("no limit");
        }
    }

    #[test]
    fn stream_caps_count_per_challenge_and_per_address_until_dropped() {
        let limits = StreamLimits::new(2, 3);
        let one = ChallengeId([1; 16]);
        let two = ChallengeId([2; 16]);
        let first = limits.open(one, A).expect("first stream");
        let _second = limits.open(one, B).expect("second stream");
        assert!(matches!(limits.open(one, A), Err(Error::TooManyStreams)));
        let _third = limits.open(two, A).expect("another challenge");
        let _fourth = limits.open(two, A).expect("A's third stream");
        assert!(matches!(limits.open(ChallengeId([3; 16]), A), Err(Error::TooManyStreams)));
        drop(first);
        limits.open(one, A).expect("a closed stream frees its place");
    }

    #[test]
    fn closed_streams_leave_nothing_behind() {
        let limits = StreamLimits::new(0, 0);
        let guards: Vec<_> =
            (0..1000u16).map(|n| limits.open(ChallengeId([n as u8; 16]), A).expect("no cap")).collect();
        drop(guards);
        let open = limits.open.lock().expect("stream limits lock");
        assert!(open.by_challenge.is_empty() && open.by_address.is_empty(), "{open:?}");
    }
}
