//! Routing "this challenge changed" to the streams that wait on it.
//!
//! A notice carries no data but the time it was published (for the
//! delivery-time metric): the stored challenge is the truth, and a woken
//! stream reads it again. That makes delivery idempotent and lets a lost or
//! duplicated notice do no harm, which is what Redis pub/sub's at-most-once
//! delivery needs. With one instance the notices stay in the process
//! ([`LocalBus`]); with several they travel through Redis ([`RedisBus`]), one
//! channel per challenge, so a sign-in wakes only the streams of that
//! challenge on whichever instance holds them.

mod local;
mod redis;

use std::time::Duration;

use sesame_proto::ChallengeId;

pub use self::{
    local::{LocalBus, Subscription},
    redis::RedisBus,
};
use crate::error::Result;

/// How results travel between instances.
#[derive(Debug, Clone)]
pub enum Bus {
    /// One instance: notices stay in this process.
    Local(LocalBus),
    /// Several instances: notices go through Redis pub/sub.
    Redis(RedisBus),
}

impl Bus {
    pub fn local() -> Self {
        Self::Local(LocalBus::default())
    }

    /// A bus through the Redis server at `url`. `name` labels this instance's
    /// connection in Redis's `CLIENT LIST`. Fails only on a malformed URL: an
    /// unreachable Redis is retried in the background, and until it answers
    /// `subscribe` and `publish` fail with [`crate::Error::Unavailable`].
    pub async fn redis(url: &str, name: &str) -> anyhow::Result<Self> {
        Self::redis_with_ca(url, name, None).await
    }

    /// [`Bus::redis`], trusting only the CA certificates of `ca` (PEM) for a
    /// `rediss://` URL. A certificate that does not verify fails here, at
    /// once, rather than being retried.
    pub async fn redis_with_ca(url: &str, name: &str, ca: Option<&[u8]>) -> anyhow::Result<Self> {
        Ok(Self::Redis(RedisBus::connect(url, name, ca).await?))
    }

    /// Whether the bus can carry notices now: always for the local bus; for
    /// Redis, when it answers a PING within `timeout`.
    pub async fn answers(&self, timeout: Duration) -> bool {
        match self {
            Self::Local(_) => true,
            Self::Redis(redis) => redis.answers(timeout).await,
        }
    }

    /// Subscribes to `id`. When this returns, every later `publish` for `id`,
    /// from any instance, reaches the subscription.
    pub async fn subscribe(&self, id: ChallengeId) -> Result<Subscription> {
        match self {
            Self::Local(local) => Ok(local.subscribe(id)),
            Self::Redis(redis) => redis.subscribe(id).await,
        }
    }

    /// Tells every instance that `id` changed. Call it only after the change
    /// is stored.
    pub async fn publish(&self, id: ChallengeId) -> Result<()> {
        match self {
            Self::Local(local) => local.notify(&id),
            Self::Redis(redis) => redis.publish(id).await?,
        }
        crate::metrics::bus_published();
        Ok(())
    }
}

/// The Redis channel that carries notices for `id`.
pub fn channel_name(id: &ChallengeId) -> String {
    format!("{CHANNEL_PREFIX}{id}")
}

const CHANNEL_PREFIX: &str = "sesame:challenge:";

/// The challenge a Redis channel belongs to; `None` for anyone else's channel.
fn challenge_of(channel: &[u8]) -> Option<ChallengeId> {
    let rest = channel.strip_prefix(CHANNEL_PREFIX.as_bytes())?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        let id = ChallengeId([0xab; 16]);
        let name = channel_name(&id);
        assert_eq!(name, format!("sesame:challenge:{}", "ab".repeat(16)));
        assert_eq!(challenge_of(name.as_bytes()), Some(id));
    }

    #[test]
    fn foreign_channels_are_ignored() {
        assert_eq!(challenge_of(b"other:challenge:abababababababababababababababab"), None);
        assert_eq!(challenge_of(b"sesame:challenge:ABABABABABABABABABABABABABABABAB"), None);
        assert_eq!(challenge_of(b"sesame:challenge:"), None);
    }
}
