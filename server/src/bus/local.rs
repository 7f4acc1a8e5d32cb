//! The per-instance map from challenge to the streams waiting on it.
//!
//! Each challenge has its own `watch` channel, so a sign-in wakes only the
//! streams of that challenge, and a notice sent between a stream's subscribe
//! and its wait is never missed. The channel holds when the last notice was
//! published (wall-clock microseconds, 0 when unknown), which is all the
//! delivery-time metric needs.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use sesame_proto::ChallengeId;
use tokio::sync::{mpsc, watch};

/// The per-instance fan-out from challenge id to waiting streams.
#[derive(Debug, Clone, Default)]
pub struct LocalBus {
    waiters: Arc<Mutex<HashMap<ChallengeId, watch::Sender<u64>>>>,
    /// Told about every challenge whose last local waiter went away, so that
    /// a shared bus can stop listening for it.
    released: Option<mpsc::UnboundedSender<ChallengeId>>,
}

impl LocalBus {
    /// A map that reports each challenge left without waiters to `released`.
    pub(crate) fn with_release_hook(released: mpsc::UnboundedSender<ChallengeId>) -> Self {
        Self { waiters: Arc::default(), released: Some(released) }
    }

    /// Registers interest in `id`. The returned subscription sees every
    /// notice sent after this call returns.
    pub fn subscribe(&self, id: ChallengeId) -> Subscription {
        let mut waiters = self.waiters.lock().expect("bus lock poisoned");
        let receiver = waiters.entry(id).or_insert_with(|| watch::channel(0).0).subscribe();
        Subscription { id, receiver, bus: self.clone() }
    }

    /// Wakes the streams waiting on `id` on this instance, if any: a notice
    /// published here and now.
    pub fn notify(&self, id: &ChallengeId) {
        self.deliver(id, crate::metrics::now_micros());
    }

    /// Wakes the streams waiting on `id` with a notice published at
    /// `published_at` (microseconds since the epoch, 0 when unknown).
    pub(crate) fn deliver(&self, id: &ChallengeId, published_at: u64) {
        crate::metrics::bus_received();
        let waiters = self.waiters.lock().expect("bus lock poisoned");
        if let Some(sender) = waiters.get(id) {
            sender.send_replace(published_at);
        }
    }

    /// Wakes every stream on this instance. Used after a lost connection to
    /// the shared bus, when any notice may have been missed.
    pub fn notify_all(&self) {
        let waiters = self.waiters.lock().expect("bus lock poisoned");
        for sender in waiters.values() {
            sender.send_replace(0);
        }
    }

    /// Challenge ids with at least one waiting stream.
    pub fn ids(&self) -> Vec<ChallengeId> {
        self.waiters.lock().expect("bus lock poisoned").keys().copied().collect()
    }

    /// Whether any stream on this instance waits on `id`.
    pub fn is_waited_on(&self, id: &ChallengeId) -> bool {
        self.waiters.lock().expect("bus lock poisoned").contains_key(id)
    }

    /// How many challenges have at least one waiting stream.
    pub fn waiting(&self) -> usize {
        self.waiters.lock().expect("bus lock poisoned").len()
    }

    fn release(&self, id: &ChallengeId) {
        let mut waiters = self.waiters.lock().expect("bus lock poisoned");
        // Our own receiver is dropped after this runs, so 1 means "only us".
        if waiters.get(id).is_some_and(|s| s.receiver_count() <= 1) {
            waiters.remove(id);
            if let Some(released) = &self.released {
                // The receiving side lives as long as the shared bus; once it
                // is gone there is nothing left to unsubscribe.
                let _ = released.send(*id);
            }
        }
    }
}

/// One stream's interest in one challenge. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    id: ChallengeId,
    receiver: watch::Receiver<u64>,
    bus: LocalBus,
}

impl Subscription {
    /// Waits for the next notice. Notices that arrived since the last call
    /// are not lost; several of them wake this once.
    pub async fn changed(&mut self) {
        // The sender lives in the map while we hold a receiver, so this only
        // fails if the map entry was removed under us; treat it as a notice.
        let _ = self.receiver.changed().await;
    }

    /// When the last notice was published, in microseconds since the
    /// epoch; 0 when unknown.
    pub fn published_at(&self) -> u64 {
        *self.receiver.borrow()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.bus.release(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn notice_sent_before_waiting_is_not_lost() {
        let bus = LocalBus::default();
        let id = ChallengeId([1; 16]);
        let mut sub = bus.subscribe(id);
        bus.notify(&id);
        tokio::time::timeout(Duration::from_secs(5), sub.changed()).await.expect("the notice was lost");
    }

    #[tokio::test]
    async fn notices_reach_only_their_challenge() {
        let bus = LocalBus::default();
        let mut a = bus.subscribe(ChallengeId([1; 16]));
        bus.notify(&ChallengeId([2; 16]));
        assert!(tokio::time::timeout(Duration::from_millis(50), a.changed()).await.is_err());
    }

    #[tokio::test]
    async fn dropping_the_last_subscription_forgets_the_challenge() {
        let bus = LocalBus::default();
        let a = bus.subscribe(ChallengeId([1; 16]));
        let b = bus.subscribe(ChallengeId([1; 16]));
        drop(a);
        assert_eq!(bus.waiting(), 1);
        drop(b);
        assert_eq!(bus.waiting(), 0);
    }
}
