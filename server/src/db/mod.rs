//! Storage: the one face through which the server reads and writes its
//! database, SQLite or PostgreSQL, and the migrations of each.
//!
//! Every statement is a [`sql::query`] run on a [`sql::Conn`], and every
//! connection comes from a lane of [`Db`] named for what it is for, so that
//! no caller picks a pool:
//!
//! - [`Db::read`]: a connection to read on. On SQLite it cannot write
//!   (`PRAGMA query_only`).
//! - [`Db::read_here`]: one read on the calling thread, for the one read of
//!   a sign-in ([`direct::Readers`]).
//! - [`Db::begin_write`]: a transaction for a change outside a sign-in (an
//!   admin's, a registration's). On SQLite it runs on a connection of its
//!   own, under the sign-in writer's turn.
//! - [`Db::write`] and [`Db::write_for_caller`]: the writes of a sign-in,
//!   committed in groups on SQLite ([`writer`]).
//!
//! On SQLite every write therefore takes one turn: one writer at a time, as
//! SQLite allows, none sleeping in SQLite's busy handler for another. A
//! write transaction that starts with a read could otherwise fail with
//! SQLITE_BUSY at once, without waiting for the busy timeout, when another
//! writer commits first; a write from outside the server (a backup, an
//! operator's `sqlite3`) is still waited for by the busy timeout.
//!
//! PostgreSQL's row locks, and the order they are taken in, are in
//! [`locks`].

use std::{path::Path, str::FromStr as _, sync::Arc, time::Duration};

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use sqlx::{
    pool::PoolConnection,
    postgres::PgConnectOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
    PgPool, Postgres, Sqlite, SqlitePool,
};
use tokio::sync::OwnedMutexGuard;

mod direct;
pub(crate) mod locks;
pub mod sql;
mod statement;
pub mod writer;

use self::{
    direct::Readers,
    sql::{Conn, Failure, Query, Row, Tx},
    writer::{Running, Writer},
};
use crate::error::Result;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A pool of sqlx's connections, to one database or the other.
#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    async fn acquire(&self) -> Result<Pooled> {
        Ok(match self {
            Self::Sqlite(pool) => Pooled::Sqlite(pool.acquire().await?),
            Self::Postgres(pool) => Pooled::Postgres(pool.acquire().await?),
        })
    }

    async fn begin(&self) -> Result<Tx<'static>> {
        match self {
            Self::Sqlite(pool) => Tx::on_sqlite(pool).await,
            Self::Postgres(pool) => Tx::on_postgres(pool).await,
        }
    }

    async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

/// A connection of a pool, given back when dropped.
#[derive(Debug)]
pub enum Pooled {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl Pooled {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlite(conn) => Conn::Sqlite(conn),
            Self::Postgres(conn) => Conn::Postgres(conn),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Db {
    /// Reads, and on PostgreSQL writes too.
    pool: Pool,
    /// On SQLite, the one connection of [`Db::begin_write`], taken under the
    /// turn of [`Db::write`]: SQLite takes one writer at a time, and a
    /// writer that finds the lock taken sleeps in its busy handler (1, 2, 5,
    /// 10 … up to 100 ms), which put a tail of 100 ms on sign-ins under
    /// load. Taking turns, writers go as soon as the last one is done. On
    /// PostgreSQL it is the main pool itself.
    ///
    /// Code that holds a write must not wait for another connection (on
    /// PostgreSQL they are of the same pool): reads on the side go through
    /// the write's own connection.
    writer: Pool,
    /// The writes of a sign-in (an ended challenge, a redemption): on
    /// SQLite committed in groups by a connection of their own, driven
    /// directly, whose turn the writes of [`Db::begin_write`] take first;
    /// on PostgreSQL each on its own (see [`writer`]).
    writes: Writer,
    /// On SQLite, the connections that read on a sign-in's path, on the
    /// calling thread (see [`direct`]).
    readers: Option<Arc<Readers>>,
    pub backend: Backend,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/server/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/server/postgres");

impl Db {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            Self::connect_sqlite(url).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::connect_postgres(url).await
        } else {
            anyhow::bail!("unsupported database URL (use sqlite://PATH or postgres://…)");
        }
    }

    async fn connect_sqlite(url: &str) -> anyhow::Result<Self> {
        let file = sqlite_file(url)?;
        // WAL lets readers run beside the one writer; the busy timeout
        // makes writers queue instead of failing. `synchronous = FULL`
        // syncs the WAL at every commit: under NORMAL a power loss can roll
        // back a registration that was already answered 200, and an account
        // whose key only the authenticator holds is then lost for good.
        let options = SqliteConnectOptions::from_str(url)
            .context("invalid database URL")?
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Full);
        let writer = pool_options(Backend::Sqlite, 1)
            .connect_with(options.clone())
            .await
            .map_err(|e| refused(e, Backend::Sqlite))?;
        SQLITE_MIGRATIONS.run(&writer).await.context("database migration failed")?;
        let pool = pool_options(Backend::Sqlite, 8)
            .connect_with(options.pragma("query_only", "ON"))
            .await
            .map_err(|e| refused(e, Backend::Sqlite))?;
        let writes = Writer::group(&file).context("cannot open the database to write")?;
        Ok(Self {
            pool: Pool::Sqlite(pool),
            writer: Pool::Sqlite(writer),
            writes,
            readers: Some(Arc::new(Readers::new(file))),
            backend: Backend::Sqlite,
        })
    }

    async fn connect_postgres(url: &str) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(url).context("invalid database URL")?;
        let pool = pool_options(Backend::Postgres, 16)
            .connect_with(options)
            .await
            .map_err(|e| refused(e, Backend::Postgres))?;
        POSTGRES_MIGRATIONS.run(&pool).await.context("database migration failed")?;
        let writes = Writer::pool(pool.clone());
        let pool = Pool::Postgres(pool);
        Ok(Self { writer: pool.clone(), writes, pool, readers: None, backend: Backend::Postgres })
    }

    /// The default embedded database: `sesame.db` in `data_dir`.
    pub fn sqlite_url(data_dir: &Path) -> String {
        format!("sqlite://{}?mode=rwc", data_dir.join("sesame.db").display())
    }

    /// A connection to read on.
    pub async fn read(&self) -> Result<Pooled> {
        self.pool.acquire().await
    }

    /// Maps every row of `query`, read on a connection of [`Db::read`].
    pub async fn fetch_all<T>(&self, query: Query<'_>, map: impl FnMut(&dyn Row) -> Result<T>) -> Result<Vec<T>> {
        Ok(self.read().await?.conn().fetch_all(query, map).await?)
    }

    /// Maps the first row of `query`, if any, read on a connection of
    /// [`Db::read`].
    pub async fn fetch_optional<T>(
        &self,
        query: Query<'_>,
        map: impl FnOnce(&dyn Row) -> Result<T>,
    ) -> Result<Option<T>> {
        Ok(self.read().await?.conn().fetch_optional(query, map).await?)
    }

    /// Maps the one row `query` must return, read on a connection of
    /// [`Db::read`].
    pub async fn fetch_one<T>(&self, query: Query<'_>, map: impl FnOnce(&dyn Row) -> Result<T>) -> Result<T> {
        Ok(self.read().await?.conn().fetch_one(query, map).await?)
    }

    /// Maps every row of `query`, a read of a sign-in's path: on SQLite on
    /// the calling thread ([`direct::Readers`]), on PostgreSQL on a connection of
    /// the pool.
    pub async fn read_here<T>(&self, query: Query<'_>, map: impl FnMut(&dyn Row) -> Result<T>) -> Result<Vec<T>> {
        match &self.readers {
            Some(readers) => readers.fetch_all(query, map),
            None => self.fetch_all(query, map).await,
        }
    }

    /// A transaction for a change outside a sign-in, under the sign-in
    /// writer's turn on SQLite. Dropped uncommitted, it rolls back, and the
    /// turn is given back only then.
    ///
    /// While it is open, never wait for [`Db::write`], which waits for the
    /// turn, nor for a connection of [`Db::read`] (on PostgreSQL, the same
    /// pool): read through the write's own connection.
    pub async fn begin_write(&self) -> Result<Write> {
        let turn = self.writes.turn().await;
        Ok(Write { tx: Some(self.writer.begin().await?), turn })
    }

    /// A write of a sign-in: see [`Writer::write`].
    pub async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Conn<'c>, Running) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.writes.write(work).await
    }

    /// Runs `query`, one statement that needs no transaction, as a write of
    /// a sign-in, and returns how many rows it changed. A constraint it
    /// breaks is its own refusal ([`sql::Constraint`]), which spoils no
    /// group commit.
    pub async fn write_statement(&self, query: Query<'static>) -> std::result::Result<u64, Failure> {
        self.write(move |mut conn, _| Box::pin(async move { refusal_apart(conn.execute(query).await) })).await?
    }

    /// [`Db::write_statement`] for a statement that returns a row
    /// (`RETURNING`), mapped by `map`.
    pub async fn write_returning<T: Send + 'static>(
        &self,
        query: Query<'static>,
        map: impl FnOnce(&dyn Row) -> Result<T> + Send + 'static,
    ) -> std::result::Result<Option<T>, Failure> {
        self.write(move |mut conn, _| Box::pin(async move { refusal_apart(conn.fetch_optional(query, map).await) }))
            .await?
    }

    /// A write of a sign-in done only for its caller's answer: see
    /// [`Writer::write_for_caller`].
    pub async fn write_for_caller<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Conn<'c>, Running) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.writes.write_for_caller(work).await
    }

    /// How many writes of sign-ins wait for the SQLite writer.
    pub fn waiting_writes(&self) -> usize {
        self.writes.waiting()
    }

    /// Closes every connection (a server shutting down, a test ending).
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// A statement's outcome as a unit of the sign-in writer answers it: a
/// broken constraint is the statement's own refusal, which SQLite undoes
/// alone; any other failure is the unit's error, which may have ended the
/// group's transaction.
fn refusal_apart<T>(ran: std::result::Result<T, Failure>) -> Result<std::result::Result<T, Failure>> {
    match ran {
        Ok(value) => Ok(Ok(value)),
        Err(failure) if failure.violation.is_some() => Ok(Err(failure)),
        Err(failure) => Err(failure.error),
    }
}

/// A transaction of [`Db::begin_write`]: on SQLite it holds the writer's
/// turn until it ends.
///
/// Dropped uncommitted (an error, or a request cut off), it is rolled back
/// in a task of its own, and only then is the turn given back: a
/// transaction merely dropped would be rolled back only when sqlx next uses
/// its connection, and the sign-in writer would meanwhile find SQLite's
/// lock taken.
#[derive(Debug)]
pub struct Write {
    /// Open until committed.
    tx: Option<Tx<'static>>,
    turn: Option<OwnedMutexGuard<()>>,
}

impl Write {
    /// The connection, to run statements in the transaction.
    pub fn conn(&mut self) -> Conn<'_> {
        self.tx.as_mut().expect("a write is open until it ends").conn()
    }

    /// Commits, and gives the turn back.
    pub async fn commit(mut self) -> Result<()> {
        self.tx.take().expect("a write is open until it ends").commit().await
    }
}

impl Drop for Write {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let turn = self.turn.take();
            tokio::spawn(async move {
                if let Err(e) = tx.rollback().await {
                    tracing::warn!(error = %e, "could not roll back a failed write");
                }
                drop(turn);
            });
        }
    }
}

/// `$first, $first+1, …`: the placeholders of `count` parameters from
/// `$first` on, for a list in `IN (…)`.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// The file of a `sqlite:` URL. An in-memory database is refused: the
/// server opens more than one connection to its database, and each would
/// see a database of its own (and everything would be lost at exit).
fn sqlite_file(url: &str) -> anyhow::Result<std::path::PathBuf> {
    let options = SqliteConnectOptions::from_str(url).context("invalid database URL")?;
    let file = options.get_filename();
    anyhow::ensure!(
        !file.to_string_lossy().starts_with("file:sqlx-in-memory"),
        "an in-memory SQLite database cannot be shared by the server's connections; use sqlite://PATH"
    );
    Ok(file.to_owned())
}

/// A pool of at most `max` connections, to be opened.
fn pool_options<DB: sqlx::Database>(backend: Backend, max: u32) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        // A connection to an embedded file cannot drop, so pinging it at
        // every acquire (a round trip to sqlx's worker thread each time)
        // buys nothing. A PostgreSQL connection can die with its server,
        // and the ping keeps that from failing a request.
        .test_before_acquire(backend == Backend::Postgres)
}

/// Why the database could not be opened, in one line that says what to fix
/// when it is the server's certificate, rather than rustls's enum.
fn refused(e: sqlx::Error, backend: Backend) -> anyhow::Error {
    match crate::tls::certificate_problem(&e) {
        Some(problem) => anyhow::anyhow!("refusing the {backend:?} database: {problem}"),
        None => anyhow::Error::new(e).context(format!("cannot connect to the {backend:?} database")),
    }
}
