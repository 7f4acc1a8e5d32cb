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
//!   SQLite directly ([`super::sql`]): a unit is handed to it once, however
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
//!   writer, through sqlx (a registration), take its turn first
//!   ([`Writer::turn`]).
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
use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot, Mutex, OwnedMutexGuard};

use super::sql::{self, Conn};
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
    Pool(AnyPool),
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
    pub fn pool(pool: AnyPool) -> Self {
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
        let conn = sql::open(path)?;
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
    /// of sqlx's to the same file (a registration, with its audit record):
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
            Inner::Pool(pool) => return work(Conn::Sqlx(&mut *pool.acquire().await?), Running::Alone).await,
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
    if let Err(e) = sql::run(conn, "ROLLBACK") {
        tracing::warn!(error = %e, "could not roll back after a failed write");
    }
    if conn.is_autocommit() {
        return;
    }
    match sql::open(path) {
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
    if let Err(e) = sql::run(conn, "BEGIN IMMEDIATE") {
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
            if let Err(e) = sql::run(conn, "ROLLBACK") {
                tracing::warn!(error = %e, "could not roll back a spoiled group commit");
            }
        }
        Err("rolled back with a failed write of the same group commit".to_owned())
    } else {
        sql::run(conn, "COMMIT").map_err(|e| format!("the group commit failed: {e}"))
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
    match AssertUnwindSafe(unit(Conn::Sqlite(&mut *conn), running)).catch_unwind().await {
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
mod tests {
    use std::sync::Arc;

    use sqlx::any::AnyPoolOptions;
    use tokio::sync::Notify;

    use super::*;
    use crate::db::sql::{query, Violation};

    /// A SQLite file with one table, and the writer over a connection to it,
    /// as `Db::connect` opens it; the pool reads what it wrote.
    async fn sqlite() -> (tempfile::TempDir, AnyPool, Writer) {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        let pool = AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await.unwrap();
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY)").execute(&pool).await.unwrap();
        let writer = Writer::group(&dir.path().join("w.db")).unwrap();
        (dir, pool, writer)
    }

    /// A unit that inserts `k`; a second insert of the same `k` is refused
    /// as a constraint, which is the unit's own business (`key_registered`).
    fn insert(writer: &Writer, k: &'static str) -> impl std::future::Future<Output = Result<()>> {
        let writer = writer.clone();
        async move {
            writer
                .write(move |mut conn, _| {
                    Box::pin(async move {
                        match conn.execute(query("INSERT INTO t (k) VALUES ($1)").bind(k)).await {
                            Ok(_) => Ok(()),
                            Err(failure) if failure.violation == Some(Violation::Unique) => Err(Error::KeyRegistered),
                            Err(failure) => Err(failure.into()),
                        }
                    })
                })
                .await
        }
    }

    async fn keys(pool: &AnyPool) -> Vec<String> {
        sqlx::query_scalar("SELECT k FROM t ORDER BY k").fetch_all(pool).await.unwrap()
    }

    /// Holds the writer with one unit until `go` is notified, so that the
    /// units sent meanwhile queue up and run as one group.
    async fn hold(writer: &Writer, go: Arc<Notify>) -> tokio::task::JoinHandle<Result<()>> {
        let (started, running) = oneshot::channel();
        let writer = writer.clone();
        let held = tokio::spawn(async move {
            writer
                .write(move |_conn, _| {
                    Box::pin(async move {
                        let _ = started.send(());
                        go.notified().await;
                        Ok(())
                    })
                })
                .await
        });
        running.await.unwrap();
        held
    }

    /// Sends each of `units` to the writer in order, waiting until each is
    /// on its queue, and returns their handles.
    async fn queue<F>(writer: &Writer, units: Vec<F>) -> Vec<tokio::task::JoinHandle<Result<()>>>
    where
        F: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        let Inner::Group { units: sender, .. } = &writer.0 else { panic!("not a group writer") };
        let mut handles = Vec::new();
        for unit in units {
            let queued = QUEUE - sender.capacity();
            handles.push(tokio::spawn(unit));
            while QUEUE - sender.capacity() == queued {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        handles
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn units_that_queue_up_commit_together_and_each_gets_its_own_answer() {
        let (_dir, pool, writer) = sqlite().await;
        insert(&writer, "taken").await.unwrap();
        let go = Arc::new(Notify::new());
        let held = hold(&writer, go.clone()).await;
        let handles = queue(&writer, vec![insert(&writer, "a"), insert(&writer, "taken"), insert(&writer, "b")]).await;
        go.notify_one();
        held.await.unwrap().unwrap();
        let answers: Vec<_> = futures_util::future::join_all(handles).await.into_iter().map(Result::unwrap).collect();
        assert!(answers[0].is_ok(), "{:?}", answers[0]);
        // A unit's own refusal undoes its statement only.
        assert!(matches!(answers[1], Err(Error::KeyRegistered)), "{:?}", answers[1]);
        assert!(answers[2].is_ok(), "{:?}", answers[2]);
        assert_eq!(keys(&pool).await, ["a", "b", "taken"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_rolls_back_its_group_and_the_writes_after_it_commit_in_the_next() {
        let (_dir, pool, writer) = sqlite().await;
        let go = Arc::new(Notify::new());
        let held = hold(&writer, go.clone()).await;
        let spoiler = {
            let writer = writer.clone();
            async move {
                writer
                    .write(|mut conn, _| {
                        Box::pin(async move {
                            conn.execute(query("INSERT INTO t (k) VALUES ('spoiler')")).await?;
                            // Not a refusal of its own: an error that may
                            // have ended the transaction.
                            conn.execute(query("SELECT * FROM no_such_table")).await?;
                            Ok(())
                        })
                    })
                    .await
            }
        };
        let units: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>> =
            vec![Box::pin(insert(&writer, "before")), Box::pin(spoiler), Box::pin(insert(&writer, "after"))];
        let handles = queue(&writer, units).await;
        go.notify_one();
        held.await.unwrap().unwrap();
        let answers: Vec<_> = futures_util::future::join_all(handles).await.into_iter().map(Result::unwrap).collect();
        let before = format!("{:?}", answers[0].as_ref().unwrap_err());
        assert!(before.contains("rolled back with a failed write"), "{before}");
        assert!(matches!(answers[1], Err(Error::Internal(_))), "{:?}", answers[1]);
        assert!(answers[2].is_ok(), "{:?}", answers[2]);
        assert_eq!(keys(&pool).await, ["after"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_for_a_caller_who_has_gone_is_not_done_and_any_other_write_is() {
        let (_dir, pool, writer) = sqlite().await;
        let go = Arc::new(Notify::new());
        let held = hold(&writer, go.clone()).await;
        let inserting = |k: &'static str, only_for_caller: bool| {
            let writer = writer.clone();
            async move {
                if only_for_caller {
                    writer
                        .write_for_caller(move |mut conn, _| {
                            Box::pin(async move {
                                conn.execute(query("INSERT INTO t (k) VALUES ($1)").bind(k)).await?;
                                Ok(())
                            })
                        })
                        .await
                } else {
                    insert(&writer, k).await
                }
            }
        };
        let handles = queue(&writer, vec![inserting("abandoned", true), inserting("kept", false)]).await;
        // Both callers go away while their writes wait.
        for handle in handles {
            handle.abort();
            assert!(handle.await.unwrap_err().is_cancelled());
        }
        go.notify_one();
        held.await.unwrap().unwrap();
        // Units run in order: once this one is done, so are those before it.
        insert(&writer, "after").await.unwrap();
        assert_eq!(keys(&pool).await, ["after", "kept"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_group_runs_while_a_write_around_the_writer_holds_its_turn() {
        let (_dir, pool, writer) = sqlite().await;
        let turn = writer.turn().await.expect("a SQLite writer has a turn to take");
        let waiting = tokio::spawn(insert(&writer, "waited"));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "a group ran while the turn was held");
        assert!(keys(&pool).await.is_empty());
        drop(turn);
        waiting.await.unwrap().unwrap();
        assert_eq!(keys(&pool).await, ["waited"]);
    }

    /// A unit that runs `sql` as its own statement and says it went well.
    fn run(writer: &Writer, sql: &'static str) -> impl std::future::Future<Output = Result<()>> {
        let writer = writer.clone();
        async move {
            writer
                .write(move |mut conn, _| {
                    Box::pin(async move {
                        conn.execute(query(sql)).await?;
                        Ok(())
                    })
                })
                .await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_of_a_unit_in_a_group_is_a_savepoint_that_rolls_back_alone() {
        let (_dir, pool, writer) = sqlite().await;
        let go = Arc::new(Notify::new());
        let held = hold(&writer, go.clone()).await;
        let undone = {
            let writer = writer.clone();
            async move {
                writer
                    .write(|mut conn, _| {
                        Box::pin(async move {
                            let mut tx = conn.begin().await?;
                            tx.conn().execute(query("INSERT INTO t (k) VALUES ('undone')")).await?;
                            tx.rollback().await
                        })
                    })
                    .await
            }
        };
        let units: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>> =
            vec![Box::pin(insert(&writer, "a")), Box::pin(undone), Box::pin(insert(&writer, "b"))];
        let handles = queue(&writer, units).await;
        go.notify_one();
        held.await.unwrap().unwrap();
        for answer in futures_util::future::join_all(handles).await {
            answer.unwrap().unwrap();
        }
        assert_eq!(keys(&pool).await, ["a", "b"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_whose_transaction_ended_under_it_is_answered_as_rolled_back() {
        let (_dir, pool, writer) = sqlite().await;
        let go = Arc::new(Notify::new());
        let held = hold(&writer, go.clone()).await;
        // As SQLite does on its own after an I/O error, while the unit
        // that ran into it thinks it went well.
        let units: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>> = vec![
            Box::pin(insert(&writer, "lost")),
            Box::pin(run(&writer, "ROLLBACK")),
            Box::pin(insert(&writer, "next")),
        ];
        let handles = queue(&writer, units).await;
        go.notify_one();
        held.await.unwrap().unwrap();
        let answers: Vec<_> = futures_util::future::join_all(handles).await.into_iter().map(Result::unwrap).collect();
        assert!(answers[0].is_err() && answers[1].is_err(), "{answers:?}");
        // The write after it was not run in autocommit and then answered
        // as rolled back: it went into the next group.
        assert!(answers[2].is_ok(), "{:?}", answers[2]);
        assert_eq!(keys(&pool).await, ["next"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_alone_that_leaves_its_transaction_open_is_refused_and_the_next_commits() {
        let (_dir, pool, writer) = sqlite().await;
        let left_open = writer
            .write(|mut conn, _| {
                Box::pin(async move {
                    conn.execute(query("BEGIN")).await?;
                    conn.execute(query("INSERT INTO t (k) VALUES ('uncommitted')")).await?;
                    Ok(())
                })
            })
            .await;
        let left_open = format!("{:?}", left_open.unwrap_err());
        assert!(left_open.contains("left its transaction open"), "{left_open}");
        insert(&writer, "after").await.unwrap();
        assert_eq!(keys(&pool).await, ["after"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_loses_only_itself_and_the_writer_goes_on() {
        let (_dir, pool, writer) = sqlite().await;
        let panicked = writer.write::<(), _>(|_conn, _| Box::pin(async { panic!("a bug in one write") })).await;
        let panicked = format!("{:?}", panicked.unwrap_err());
        assert!(panicked.contains("dropped a write"), "{panicked}");
        insert(&writer, "later").await.unwrap();
        assert_eq!(keys(&pool).await, ["later"]);
    }
}
