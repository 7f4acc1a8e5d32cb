//! Where a challenge lives until it ends.
//!
//! A pending challenge is needed only while its page waits, and nothing about
//! it has to outlive the process that issued it: if that process dies, the
//! challenge must not be answerable anyway. So on a single instance (the
//! in-process bus) pending challenges are held in memory, [`Pending::Memory`],
//! and the database sees a challenge once, when it ends, as one `INSERT` of
//! its final state. Everything a sign-in must keep across a restart (the
//! account, the key's use, the completed challenge a session is redeemed
//! from, the session) is still written, and committed before anyone is told.
//!
//! With several instances (Redis carries the results) an answer may reach
//! another instance than the page, so pending challenges stay rows of the
//! `challenge` table, [`Pending::Table`], and leave `pending` through a
//! conditional `UPDATE`, as before. docs/OPERATIONS.md explains the choice.
//!
//! Single use in memory: an answer first *claims* the entry, under the map's
//! lock, and only a claim lets it write the final state. The claim is given
//! back if the answer's transaction does not commit (a name already taken,
//! a key removed meanwhile, a failed write), so the challenge is pending
//! again, exactly as a rolled-back `UPDATE` leaves a row. Of racing answers
//! one claims; the others see the challenge as taken (`challenge_used`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use sesame_proto::{wire::Status, ChallengeId, UnixTime};

use super::row::{ChallengeRow, Final};
use crate::clock::Clock;

/// How often [`purge_every`] runs.
const PURGE_EVERY: Duration = Duration::from_secs(10);

/// How many challenges one instance holds in memory at most, pending or
/// recently ended: ten times the 50,000 waiting browsers one instance is
/// built for, and at about 2.7 KiB each with the map's share (measured by
/// the soak, docs/BENCHMARKS.md) still a bounded amount of memory.
/// Past it, new challenges are refused (`unavailable`) until old ones go.
pub const CAPACITY: usize = 500_000;

/// How long a pending challenge stays in memory after it expires, at most,
/// so that a page that reconnects late still reads `expired` rather than an
/// unknown challenge. A shorter challenge retention shortens this too.
pub const GRACE_SECS: u64 = 5 * 60;

/// How long an ended challenge stays in memory after it ended, at most: long
/// enough for the streams it wakes to read it here. It is a row by then,
/// which later readers get from the database.
pub const ENDED_SECS: u64 = 30;

/// Where this instance keeps pending challenges.
#[derive(Debug, Clone)]
pub enum Pending {
    /// In this process: one instance.
    Memory(Arc<Memory>),
    /// As rows of the `challenge` table: several instances.
    Table,
}

impl Pending {
    /// In memory, each challenge kept `keep_secs` after it expires (at most
    /// [`GRACE_SECS`]).
    pub fn memory(keep_secs: u64) -> Self {
        Self::memory_holding(keep_secs, CAPACITY)
    }

    /// [`Pending::memory`] holding at most `capacity` challenges instead of
    /// [`CAPACITY`]: for tests of what happens when it is full.
    pub fn memory_holding(keep_secs: u64, capacity: usize) -> Self {
        Self::Memory(Arc::new(Memory { keep_secs: keep_secs.min(GRACE_SECS), capacity, entries: Mutex::default() }))
    }
}

/// Pending and recently ended challenges, by id.
pub struct Memory {
    /// How long a challenge is kept after it expires.
    keep_secs: u64,
    /// How many challenges it holds at most.
    capacity: usize,
    entries: Mutex<HashMap<ChallengeId, Entry>>,
}

impl Default for Memory {
    fn default() -> Self {
        Self { keep_secs: GRACE_SECS, capacity: CAPACITY, entries: Mutex::default() }
    }
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory").field("held", &self.len()).field("capacity", &self.capacity).finish()
    }
}

#[derive(Debug)]
struct Entry {
    row: ChallengeRow,
    /// An answer holds this pending challenge and is writing its outcome.
    claimed: bool,
}

/// What [`Memory::claim`] found.
#[derive(Debug)]
pub enum Claim {
    /// The caller now holds the challenge.
    Claimed,
    /// The challenge is not pending, or another answer holds it: its row as
    /// it is.
    Taken(Box<ChallengeRow>),
    /// Not held here.
    Unknown,
}

impl Memory {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<ChallengeId, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds a new pending challenge. False when the instance is full.
    pub fn insert(&self, row: ChallengeRow) -> bool {
        let mut entries = self.entries();
        if entries.len() >= self.capacity {
            return false;
        }
        entries.insert(row.id, Entry { row, claimed: false });
        true
    }

    /// The challenge as held now.
    pub fn get(&self, id: &ChallengeId) -> Option<ChallengeRow> {
        self.entries().get(id).map(|entry| entry.row.clone())
    }

    /// Takes pending, unexpired challenge `id` for one answer.
    pub fn claim(&self, id: &ChallengeId, now: UnixTime) -> Claim {
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(id) else { return Claim::Unknown };
        if entry.claimed || entry.row.status != Status::Pending || entry.row.is_overdue(now) {
            return Claim::Taken(Box::new(entry.row.clone()));
        }
        entry.claimed = true;
        Claim::Claimed
    }

    /// Gives a claim back: the answer wrote nothing.
    pub fn release(&self, id: &ChallengeId) {
        if let Some(entry) = self.entries().get_mut(id) {
            entry.claimed = false;
        }
    }

    /// Records the outcome a claim wrote, once it is committed.
    pub fn finish(&self, id: &ChallengeId, outcome: &Final, now: UnixTime) {
        if let Some(entry) = self.entries().get_mut(id) {
            outcome.apply(&mut entry.row, now);
            entry.claimed = false;
        }
    }

    /// Takes `row`, just read from the database, as the truth about its
    /// challenge: it had ended there though memory did not learn it.
    pub fn adopt(&self, row: ChallengeRow) {
        if let Some(entry) = self.entries().get_mut(&row.id) {
            entry.row = row;
            entry.claimed = false;
        }
    }

    /// Marks a pending challenge as seen by an authenticator; true if that
    /// changed its hint.
    pub fn mark_opened(&self, id: &ChallengeId, now: UnixTime) -> bool {
        match self.entries().get_mut(id) {
            Some(entry) if entry.row.status == Status::Pending && entry.row.hint == "outstanding" => {
                if entry.row.is_overdue(now) {
                    return false;
                }
                entry.row.hint = "opened".to_owned();
                true
            }
            _ => false,
        }
    }

    /// Lets challenge `id` register a new account.
    pub fn open_registration(&self, id: &ChallengeId) {
        if let Some(entry) = self.entries().get_mut(id) {
            entry.row.allow_register = true;
        }
    }

    /// Moves an overdue, unclaimed pending challenge to `expired`, and
    /// returns it as it now is, for the database to record. None when it is
    /// not held here, not overdue, or already taken.
    pub fn expire(&self, id: &ChallengeId, now: UnixTime) -> Option<ChallengeRow> {
        let mut entries = self.entries();
        let entry = entries.get_mut(id)?;
        if entry.claimed || !entry.row.is_overdue(now) {
            return None;
        }
        Final::expired().apply(&mut entry.row, now);
        Some(entry.row.clone())
    }

    /// Forgets pending challenges that expired, and ended ones that ended,
    /// longer ago than they are kept. Returns how many went.
    pub fn purge(&self, now: UnixTime) -> usize {
        let pending_cutoff = now.as_secs().saturating_sub(self.keep_secs) as i64;
        let ended_cutoff = now.as_secs().saturating_sub(self.keep_secs.min(ENDED_SECS)) as i64;
        let mut entries = self.entries();
        let before = entries.len();
        entries.retain(|_, entry| {
            entry.claimed
                || match entry.row.status {
                    Status::Pending => entry.row.expires_at > pending_cutoff,
                    _ => entry.row.finished_at.unwrap_or(entry.row.expires_at) > ended_cutoff,
                }
        });
        before - entries.len()
    }

    /// Every challenge held, for inspection.
    pub fn snapshot(&self) -> Vec<ChallengeRow> {
        self.entries().values().map(|entry| entry.row.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// How many challenges it holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Purges `memory` every few seconds, for as long as the server runs, and
/// reports how many challenges it holds (`sesame_challenges_held`).
pub async fn purge_every(memory: Arc<Memory>, clock: Arc<dyn Clock>) {
    let mut interval = tokio::time::interval(PURGE_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let gone = memory.purge(clock.now());
        let held = memory.len();
        crate::metrics::challenges_held(held);
        if gone > 0 {
            tracing::debug!(gone, held, "forgot expired challenges");
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::OsRng;
    use sesame_proto::ServiceId;

    use super::*;
    use crate::challenge::row::NewChallenge;

    const NOW: u64 = 1_800_000_000;

    /// A fresh pending challenge that expires at `expires_at`, held in
    /// `memory`.
    fn hold(memory: &Memory, expires_at: u64) -> ChallengeId {
        let new = NewChallenge {
            id: ChallengeId::random(&mut OsRng),
            service_id: ServiceId::random(&mut OsRng),
            base_token: "",
            code_secret: &[0; 32],
            binding_hash: &[0; 32],
            ip: "127.0.0.1",
            user_agent: "",
            created_at: NOW as i64,
            expires_at: expires_at as i64,
            enroll_account: None,
            recovery_id: None,
            number: sesame_proto::MatchNumber::random(&mut OsRng),
        };
        assert!(memory.insert(ChallengeRow::pending(&new, true, None)));
        new.id
    }

    fn at(secs: u64) -> UnixTime {
        UnixTime::from_secs(secs)
    }

    #[test]
    fn one_claim_at_a_time_and_none_after_the_outcome() {
        let memory = Memory::default();
        let id = hold(&memory, NOW + 300);
        assert!(matches!(memory.claim(&id, at(NOW)), Claim::Claimed));
        // A racing answer finds it taken, still pending.
        assert!(matches!(memory.claim(&id, at(NOW)), Claim::Taken(row) if row.status == Status::Pending));
        memory.finish(&id, &Final::logged_in("alice".into(), "k".into(), [0; 32]), at(NOW + 1));
        let Claim::Taken(row) = memory.claim(&id, at(NOW + 1)) else { panic!("claimed a completed challenge") };
        assert_eq!(
            (row.status, row.account.as_deref(), row.finished_at),
            (Status::Completed, Some("alice"), Some(NOW as i64 + 1))
        );
        assert!(matches!(memory.claim(&ChallengeId::random(&mut OsRng), at(NOW)), Claim::Unknown));
    }

    #[test]
    fn a_released_claim_leaves_the_challenge_pending_for_the_next_answer() {
        let memory = Memory::default();
        let id = hold(&memory, NOW + 300);
        assert!(matches!(memory.claim(&id, at(NOW)), Claim::Claimed));
        memory.release(&id);
        assert_eq!(memory.get(&id).map(|row| row.status), Some(Status::Pending));
        assert!(matches!(memory.claim(&id, at(NOW)), Claim::Claimed));
    }

    #[test]
    fn an_overdue_challenge_cannot_be_claimed_and_expires_once_unless_claimed() {
        let memory = Memory::default();
        let id = hold(&memory, NOW + 300);
        assert!(memory.expire(&id, at(NOW + 299)).is_none(), "not yet due");
        assert!(matches!(memory.claim(&id, at(NOW + 300)), Claim::Taken(_)));
        let expired = memory.expire(&id, at(NOW + 300)).expect("expires");
        assert_eq!((expired.status, expired.hint.as_str()), (Status::Expired, "expired"));
        assert!(memory.expire(&id, at(NOW + 301)).is_none(), "expires once");

        // An answer that claimed in time writes its outcome; expiry waits.
        let id = hold(&memory, NOW + 300);
        assert!(matches!(memory.claim(&id, at(NOW + 299)), Claim::Claimed));
        assert!(memory.expire(&id, at(NOW + 300)).is_none());
    }

    #[test]
    fn opened_only_while_pending_and_in_time() {
        let memory = Memory::default();
        let id = hold(&memory, NOW + 300);
        assert!(!memory.mark_opened(&id, at(NOW + 300)), "overdue");
        assert!(memory.mark_opened(&id, at(NOW)));
        assert!(!memory.mark_opened(&id, at(NOW)), "already opened");
        assert_eq!(memory.get(&id).map(|row| row.hint), Some("opened".to_owned()));
    }

    #[test]
    fn purge_forgets_only_what_expired_longer_than_the_grace_ago() {
        let memory = Memory::default();
        let (old_id, claimed_id, young_id) = (hold(&memory, NOW), hold(&memory, NOW), hold(&memory, NOW + 1));
        assert!(matches!(memory.claim(&claimed_id, at(NOW - 1)), Claim::Claimed));
        assert_eq!(memory.purge(at(NOW + GRACE_SECS - 1)), 0);
        assert_eq!(memory.purge(at(NOW + GRACE_SECS)), 1);
        assert!(memory.get(&old_id).is_none());
        // An answer still writing keeps its entry until it is done.
        assert!(memory.get(&claimed_id).is_some() && memory.get(&young_id).is_some());
    }

    #[test]
    fn an_ended_challenge_goes_soon_after_it_ended_since_it_is_a_row_by_then() {
        let memory = Memory::default();
        let id = hold(&memory, NOW + 300);
        assert!(matches!(memory.claim(&id, at(NOW)), Claim::Claimed));
        memory.finish(&id, &Final::denied(), at(NOW + 10));
        assert_eq!(memory.purge(at(NOW + 10 + ENDED_SECS - 1)), 0);
        assert_eq!(memory.purge(at(NOW + 10 + ENDED_SECS)), 1);
        assert!(memory.is_empty());

        // A challenge retention of 0 keeps nothing that has ended.
        let Pending::Memory(memory) = Pending::memory(0) else { unreachable!() };
        let id = hold(&memory, NOW + 300);
        assert!(matches!(memory.claim(&id, at(NOW)), Claim::Claimed));
        memory.finish(&id, &Final::cancelled(), at(NOW));
        assert_eq!(memory.purge(at(NOW)), 1);
    }
}
