//! How the end of a challenge is written: [`Consumed`], a challenge taken
//! out of `pending` whose write has yet to commit, and [`WriteAround`], the
//! transaction of a registration, an enrollment or a rekey, which writes an
//! account or a key beside the challenge it consumes. Both commit, then make
//! the outcome visible and publish it, in a task a request cut off cannot
//! split.

use std::sync::Arc;

use sesame_proto::{ChallengeId, UnixTime};

use super::{pending::Memory, row::Final};
use crate::{
    bus::Bus,
    db::{sql::Conn, Write},
    error::{Error, Result},
};

/// A challenge taken out of `pending` by a statement that has not committed
/// yet. [`Consumed::commit`] commits its transaction, [`Consumed::committed`]
/// records a statement that committed on its own; dropped instead (with its
/// transaction, which rolls back), it leaves the challenge pending again.
#[derive(Debug)]
#[must_use = "commit it, or the challenge is given back"]
pub struct Consumed {
    /// The claim on the in-memory entry, with the outcome to record there.
    claim: Option<(Arc<Memory>, ChallengeId, Final, UnixTime)>,
    /// The challenge, to publish once committed, and where.
    id: ChallengeId,
    bus: Bus,
}

impl Consumed {
    /// `id`, claimed in `memory` for `outcome` at `now`: given back if this
    /// is dropped uncommitted.
    pub(super) fn claimed(memory: Arc<Memory>, id: ChallengeId, outcome: Final, now: UnixTime, bus: Bus) -> Self {
        Self { claim: Some((memory, id, outcome, now)), id, bus }
    }

    /// `id`, moved by a conditional UPDATE of its row: nothing to give back.
    pub(super) fn row(id: ChallengeId, bus: Bus) -> Self {
        Self { claim: None, id, bus }
    }

    /// Commits `write`, then makes the outcome visible in memory, then
    /// publishes it. The writer's turn that `write` holds is given back once
    /// the commit is done.
    ///
    /// A request whose client goes away is dropped at its next `.await`;
    /// the commit, the outcome it records and its publication run in a task
    /// of their own, so that this cannot split them (the row committed,
    /// memory still saying pending, or the waiting page never told), and
    /// the turn is held until SQLite's lock is free.
    pub async fn commit(self, write: Write) -> Result<()> {
        uncancelled(async move {
            write.commit().await?;
            let (id, bus) = (self.id, self.bus.clone());
            self.committed();
            publish(&bus, id).await;
            Ok(())
        })
        .await
    }

    /// Makes the outcome visible in memory, once the statement that wrote it
    /// has committed outside any transaction.
    pub fn committed(mut self) {
        if let Some((memory, id, outcome, now)) = self.claim.take() {
            memory.finish(&id, &outcome, now);
        }
    }
}

impl Drop for Consumed {
    fn drop(&mut self) {
        if let Some((memory, id, _, _)) = self.claim.take() {
            memory.release(&id);
        }
    }
}

/// A transaction that goes around the sign-in writer (a registration, an
/// enrollment, a rekey: each writes an account, a key or an audit record
/// beside the challenge it consumes), under the writer's turn
/// ([`crate::db::Db::begin_write`]).
///
/// [`WriteAround::commit`] commits it and publishes the challenge it
/// consumed. Dropped instead (an error, or a request cut off), it is rolled
/// back, and only then is the turn given back.
#[derive(Debug)]
pub struct WriteAround(Write);

impl WriteAround {
    /// `write`, opened to consume a challenge
    /// ([`super::Challenges::write_around`] opens one).
    pub(super) fn new(write: Write) -> Self {
        Self(write)
    }

    /// The connection, to write beside the challenge.
    pub fn conn(&mut self) -> Conn<'_> {
        self.0.conn()
    }

    /// Commits, then records and publishes what `consumed` did
    /// ([`Consumed::commit`]).
    pub async fn commit(self, consumed: Consumed) -> Result<()> {
        consumed.commit(self.0).await
    }
}

/// Tells the waiting streams. The stored state is the truth, so a failed
/// publish is only logged: pollers and reconnecting streams still see it.
pub(super) async fn publish(bus: &Bus, id: ChallengeId) {
    if let Err(e) = bus.publish(id).await {
        tracing::warn!(challenge = %id, error = %e, "could not publish a challenge change");
    }
}

/// Runs `work` to its end even if the caller is dropped meanwhile.
pub(super) async fn uncancelled(work: impl std::future::Future<Output = Result<()>> + Send + 'static) -> Result<()> {
    tokio::spawn(work).await.map_err(|e| Error::Internal(anyhow::anyhow!("a write task failed: {e}")))?
}
