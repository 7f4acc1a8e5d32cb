//! Where the writes of a sign-in go, and how they become durable.
//!
//! A sign-in writes twice: the ended challenge, and the session it is
//! redeemed for. Each must be on disk before it is answered (SQLite runs with
//! `synchronous = FULL`), and on SQLite every commit is a sync of the WAL on
//! the one writer connection. One sync per write made that connection the
//! bottleneck under load: each answer waited for every sync queued before
//! it.
//!
//! [`Writer::write`] takes a unit of work (the statements of one write,
//! atomic on their own) and returns once it is durable:
//!
//! - On **SQLite**, one thread owns the writer connection, and drives
//!   SQLite directly ([`super::direct`]): a unit is handed to it once, however
//!   many statements it runs. The units that queue up while it commits are
//!   run together, in one transaction, and share one commit and one sync:
//!   group commit. Nothing is answered before its commit is synced, so
//!   durability is what it was. A unit is told whether it runs in a group
//!   ([`Running::InGroup`]). One of several statements stays all or nothing
//!   either with a transaction of its own (`Conn::begin`), or, in a group,
//!   because the group holds SQLite's write lock and any failure of its
//!   later statements spoils the group (below). A unit that finds no
//!   company runs alone, outside any transaction of the writer's, exactly
//!   as it would without the group. The few writes that go around the
//!   writer, through sqlx (a registration, an admin's change), take its
//!   turn first ([`Writer::turn`], through `Db::begin_write`).
//! - On **PostgreSQL**, a unit runs alone on a connection of the pool and
//!   commits on its own: the server takes concurrent commits and groups
//!   their syncs itself.
//!
//! A unit's own refusal (a constraint the statement checked, such as a
//! challenge already used) undoes only that statement, in SQLite as
//! everywhere: the others of its group commit. Any other database error
//! may have ended SQLite's transaction under the group's feet, so it spoils
//! the group: the transaction is rolled back, the units already run are
//! answered with an error, and the ones not yet run go into the next group.
//! SQLite may also have rolled back on its own (a full disk, an I/O error);
//! the writer asks SQLite whether a transaction is still open rather than
//! assume it, so the next group always starts clean.
//!
//! Units of one group see each other's writes before the commit, as
//! statements of one transaction do: a second redemption of the same
//! challenge in the group is refused. Should the group then be spoiled, the
//! first is rolled back too, and the refused one was refused for nothing;
//! its caller may try again. That takes a failure of the disk, and answers
//! nobody wrongly with success.

use std::{
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use futures_util::{future::BoxFuture, FutureExt as _};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex, OwnedMutexGuard};

use super::{direct, sql::Conn};
use crate::error::{Error, Result};

/// The most units one commit takes.
const MAX_GROUP: usize = 64;

/// The units that may wait for the SQLite writer; more wait for room.
const QUEUE: usize = 1024;

/// A handle to the writes of sign-ins; cheap to clone.
#[derive(Debug, Clone)]
pub struct Writer(Inner);

#[derive(Debug, Clone)]
enum Inner {
    /// PostgreSQL: a connection of this pool per unit.
    Pool(PgPool),
    /// SQLite: the thread that owns the writer connection.
    Group {
        units: mpsc::Sender<Unit>,
        /// Units sent and not yet run.
        waiting: Arc<AtomicUsize>,
        /// Held by the writer for each group, and by the writes that go
        /// around it through sqlx ([`Writer::turn`]).
        turn: Arc<Mutex<()>>,
    },
}

/// Where a unit of work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Running {
    /// On a connection of its own, outside any transaction: its statements
    /// commit on their own, or it opens a transaction of its own.
    Alone,
    /// Inside the transaction of a group commit on SQLite, which holds the
    /// write lock until all the group's units have run: nothing else writes
    /// between two of its statements.
    InGroup,
}

/// A unit of work, type-erased for the writer's queue: it runs on the
/// connection it is given and tells how it went.
type Unit = Box<dyn for<'c> FnOnce(Conn<'c>, Running) -> BoxFuture<'c, Ran> + Send>;

/// A unit that has run, whose caller waits for the group's commit.
struct Ran {
    /// Whether it wrote anything (a unit whose caller had gone did not).
    wrote: bool,
    /// Whether its error may have ended the group's transaction.
    spoils: bool,
    /// Answers the caller: with the unit's own result once the group has
    /// committed, or with why the group did not.
    answer: Box<dyn FnOnce(std::result::Result<(), String>) + Send>,
}

impl Writer {
    /// Each unit on a connection of `pool`.
    pub fn pool(pool: PgPool) -> Self {
        Self(Inner::Pool(pool))
    }

    /// Units queued for a connection of their own to the SQLite file at
    /// `path`, committed in groups by a thread of its own, which ends when
    /// the last handle is dropped.
    ///
    /// The thread drives the units' futures on this tokio runtime's handle.
    /// A unit on SQLite waits for nothing but SQLite, which it drives
    /// directly, and must not wait for anything else: every write waits
    /// while it does, and on a current-thread runtime (tests) I/O and
    /// timers only make progress while that runtime's own thread runs it.
    pub fn group(path: &Path) -> anyhow::Result<Self> {
        let conn = direct::open(path)?;
        let (units, queue) = mpsc::channel(QUEUE);
        let turn = Arc::new(Mutex::new(()));
        let runtime = tokio::runtime::Handle::current();
        let (held, path) = (turn.clone(), path.to_owned());
        std::thread::Builder::new()
            .name("sesame-writer".into())
            .spawn(move || runtime.block_on(commit_in_groups(path, conn, queue, held)))?;
        Ok(Self(Inner::Group { units, turn, waiting: Arc::default() }))
    }

    /// The writer's turn, for a write that goes around it on a connection
    /// of sqlx's to the same file (`Db::begin_write`):
    /// while it is held, no group runs, so neither side sleeps in SQLite's
    /// busy handler waiting for the other. Hold it until that write has
    /// committed or rolled back, and no longer; while holding it, never
    /// wait for [`Writer::write`], which waits for the turn. On PostgreSQL
    /// there is no turn to take.
    pub async fn turn(&self) -> Option<OwnedMutexGuard<()>> {
        match &self.0 {
            Inner::Pool(_) => None,
            Inner::Group { turn, .. } => Some(turn.clone().lock_owned().await),
        }
    }

    /// How many units wait for the SQLite writer, not yet run; always 0 on
    /// PostgreSQL.
    pub fn waiting(&self) -> usize {
        match &self.0 {
            Inner::Pool(_) => 0,
            Inner::Group { waiting, .. } => waiting.load(Ordering::Relaxed),
        }
    }

    /// Runs `work` and returns its result once what it wrote is durable. An
    /// error means nothing of it was written.
    ///
    /// On SQLite the work runs on the writer's thread, whatever becomes of
    /// the caller; its result is dropped if the caller has gone. Work whose
    /// result must be acted on once it is committed (an in-memory claim to
    /// settle) must therefore be awaited from a task that cannot be cut off.
    pub async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Conn<'c>, Running) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.queue(work, false).await
    }

    /// [`Writer::write`] for work done only for its caller's answer (a
    /// session, whose cookie nobody else would receive): if the caller has
    /// gone by the time its turn comes, the work is not done. (On
    /// PostgreSQL it runs in the caller's task, which is then dropped with
    /// it.)
    pub async fn write_for_caller<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Conn<'c>, Running) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.queue(work, true).await
    }

    async fn queue<T, F>(&self, work: F, only_for_caller: bool) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Conn<'c>, Running) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let (units, waiting) = match &self.0 {
            Inner::Pool(pool) => return work(Conn::Postgres(&mut *pool.acquire().await?), Running::Alone).await,
            Inner::Group { units, waiting, .. } => (units, waiting),
        };
        let (tell, told) = oneshot::channel();
        let queued = Queued::new(waiting);
        let unit: Unit = Box::new(move |conn, running| {
            drop(queued);
            Box::pin(async move {
                if only_for_caller && tell.is_closed() {
                    return Ran { wrote: false, spoils: false, answer: Box::new(|_| {}) };
                }
                let result = work(conn, running).await;
                Ran {
                    wrote: result.is_ok(),
                    spoils: matches!(result, Err(Error::Database(_) | Error::Internal(_))),
                    answer: Box::new(move |group| {
                        let answer = match (result, group) {
                            (Ok(value), Ok(())) => Ok(value),
                            (Err(e), _) => Err(e),
                            (Ok(_), Err(why)) => Err(Error::Internal(anyhow::anyhow!(why))),
                        };
                        // The caller may have gone: then nobody is waiting.
                        let _ = tell.send(answer);
                    }),
                }
            })
        });
        units.send(unit).await.map_err(|_| anyhow::anyhow!("the database writer has stopped"))?;
        told.await.map_err(|_| anyhow::anyhow!("the database writer dropped a write"))?
    }
}

/// A unit counted in [`Writer::waiting`] until it runs or is dropped.
struct Queued(Arc<AtomicUsize>);

impl Queued {
    fn new(waiting: &Arc<AtomicUsize>) -> Self {
        waiting.fetch_add(1, Ordering::Relaxed);
        Self(waiting.clone())
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The SQLite writer's loop: takes whatever has queued up, at most
/// [`MAX_GROUP`] units, and commits it together.
async fn commit_in_groups(
    path: PathBuf,
    mut conn: rusqlite::Connection,
    mut queue: mpsc::Receiver<Unit>,
    turn: Arc<Mutex<()>>,
) {
    let mut waiting = Vec::with_capacity(MAX_GROUP);
    loop {
        if waiting.is_empty() && queue.recv_many(&mut waiting, MAX_GROUP).await == 0 {
            return;
        }
        let _turn = turn.lock().await;
        // What queued up while the turn was taken joins this group.
        while waiting.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(unit) => waiting.push(unit),
                Err(_) => break,
            }
        }
        // A group starts outside any transaction, or not at all: a unit
        // alone would otherwise write into a transaction nobody commits.
        if !conn.is_autocommit() {
            start_clean(&path, &mut conn);
        }
        if !conn.is_autocommit() {
            drop_all(&mut waiting, "the writer's connection is stuck in a transaction");
            continue;
        }
        run_group(&mut conn, &mut waiting).await;
        // A failure may have left a transaction open (a unit's own, or
        // SQLite's after an I/O error): end it now, while the turn is held.
        if !conn.is_autocommit() {
            start_clean(&path, &mut conn);
        }
    }
}

/// Ends the transaction that a failure left open on `conn`, by rolling it
/// back, or, should that fail too, by replacing the connection (closing
/// the old one rolls back what it held).
fn start_clean(path: &Path, conn: &mut rusqlite::Connection) {
    if let Err(e) = direct::run(conn, "ROLLBACK") {
        tracing::warn!(error = %e, "could not roll back after a failed write");
    }
    if conn.is_autocommit() {
        return;
    }
    match direct::open(path) {
        Ok(fresh) => *conn = fresh,
        Err(e) => tracing::error!(error = %e, "could not reopen the database to write"),
    }
}

/// Runs and commits the units of `waiting`, and answers them. The units
/// left in `waiting` are those not run because an earlier one spoiled the
/// group; they go into the next.
async fn run_group(conn: &mut rusqlite::Connection, waiting: &mut Vec<Unit>) {
    if let [_] = waiting.as_slice() {
        run_alone(waiting.remove(0), conn).await;
    } else {
        run_together(waiting, conn).await;
    }
}

/// Runs a unit that found no company: it commits on its own, as it would
/// without the group.
async fn run_alone(unit: Unit, conn: &mut rusqlite::Connection) {
    let Some(ran) = run_unit(unit, conn, Running::Alone).await else { return };
    // A unit that left its own transaction open has committed nothing;
    // the writer rolls it back before the next group.
    if !conn.is_autocommit() {
        return (ran.answer)(Err("a write left its transaction open, and was rolled back".to_owned()));
    }
    if ran.wrote {
        crate::metrics::group_committed(1);
    }
    (ran.answer)(Ok(()));
}

/// Runs the units of `waiting` in one transaction, commits it and answers
/// them; leaves in `waiting` those it did not run.
async fn run_together(waiting: &mut Vec<Unit>, conn: &mut rusqlite::Connection) {
    // IMMEDIATE takes the write lock at once: a deferred transaction whose
    // first unit only reads (an answer refused on what it read) could
    // otherwise fail outright when a later unit writes after another
    // connection did.
    if let Err(e) = direct::run(conn, "BEGIN IMMEDIATE") {
        return drop_all(waiting, &format!("cannot start a group commit: {e}"));
    }
    let mut units = std::mem::take(waiting).into_iter();
    let mut ran = Vec::with_capacity(units.len());
    let mut spoiled = false;
    for unit in units.by_ref() {
        match run_unit(unit, conn, Running::InGroup).await {
            Some(done) => {
                // Whatever the unit made of its error, a transaction that
                // SQLite ended under it is the group's end.
                spoiled = done.spoils || conn.is_autocommit();
                ran.push(done);
            }
            None => spoiled = true,
        }
        if spoiled {
            break;
        }
    }
    waiting.extend(units);
    let outcome = if spoiled {
        // The spoiler is answered with its own error; its companions learn
        // that they were rolled back with it.
        if !conn.is_autocommit() {
            if let Err(e) = direct::run(conn, "ROLLBACK") {
                tracing::warn!(error = %e, "could not roll back a spoiled group commit");
            }
        }
        Err("rolled back with a failed write of the same group commit".to_owned())
    } else {
        direct::run(conn, "COMMIT").map_err(|e| format!("the group commit failed: {e}"))
    };
    let wrote = ran.iter().filter(|done| done.wrote).count();
    if outcome.is_ok() && wrote > 0 {
        crate::metrics::group_committed(wrote);
    }
    for done in ran {
        (done.answer)(outcome.clone());
    }
}

/// Runs `unit` on `conn`. A unit that panics is dropped, and its caller
/// learns that its write was: the writer goes on for everyone else.
async fn run_unit(unit: Unit, conn: &mut rusqlite::Connection, running: Running) -> Option<Ran> {
    match AssertUnwindSafe(unit(Conn::Direct(&mut *conn), running)).catch_unwind().await {
        Ok(ran) => Some(ran),
        Err(_) => {
            tracing::error!("a write panicked; its group commit is rolled back");
            None
        }
    }
}

/// Gives up the units of `waiting` without running them: each caller learns
/// that its write was dropped, and nothing of it was written.
fn drop_all(waiting: &mut Vec<Unit>, why: &str) {
    tracing::error!(error = why, units = waiting.len(), "the database writer could not run a group of writes");
    waiting.clear();
}

#[cfg(test)]
mod tests;
