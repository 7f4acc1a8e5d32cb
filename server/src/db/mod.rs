//! Storage: a pool over SQLite or PostgreSQL (and, on SQLite, a writer
//! connection for registrations beside it, and the connections of
//! [`sql`] on a sign-in's path), and the migrations of each.
//!
//! The server runs the same SQL on both, through sqlx's `Any` driver, and on
//! a sign-in's path on SQLite through [`sql`], so every query sticks
//! to the common ground: `$n` parameters, BIGINT times, TEXT ids, BLOB/BYTEA
//! bytes and `ON CONFLICT`/`RETURNING`.
//!
//! On SQLite, a write transaction that starts with a read can fail with
//! SQLITE_BUSY at once, without waiting for the busy timeout, when another
//! writer commits first. Every write transaction here therefore starts with
//! its write (a conditional UPDATE or an INSERT), which takes the write lock
//! up front and lets the busy timeout do its job.

use std::{path::Path, str::FromStr as _, sync::Arc, time::Duration};

use anyhow::Context as _;
use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions},
    AnyPool, Executor as _,
};

pub(crate) mod locks;
pub mod sql;
mod timed;
pub mod writer;

pub use timed::{timed, Timed};

use self::{sql::Readers, writer::Writer};

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    /// The pool for the writes of a registration, an enrollment and a
    /// rekey. On SQLite it is one connection of its own, and a write on it
    /// takes the turn of [`Db::writes`] first: SQLite takes one writer at a
    /// time, and a writer that finds the lock taken sleeps in its busy
    /// handler (1, 2, 5, 10 … up to 100 ms), which put a tail of 100 ms on
    /// sign-ins under load. Taking turns, writers go as soon as the last
    /// one is done. On PostgreSQL it is the main pool itself.
    ///
    /// Code that holds a connection of this pool must not wait for another
    /// connection, of this pool or (since on PostgreSQL they are the same)
    /// of [`Db::pool`]: reads on the side go through the connection it
    /// holds.
    pub writer: AnyPool,
    /// The writes of a sign-in (an ended challenge, a redemption): on
    /// SQLite committed in groups by a connection of their own, driven
    /// directly, whose turn the writes on [`Db::writer`] take first; on
    /// PostgreSQL each on its own (see [`writer`]).
    pub writes: Writer,
    /// On SQLite, the connections that read on a sign-in's path, on the
    /// calling thread (see [`sql`]).
    pub readers: Option<Arc<Readers>>,
    pub backend: Backend,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/server/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/server/postgres");

impl Db {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            anyhow::bail!("unsupported database URL (use sqlite://PATH or postgres://…)");
        };
        let options = AnyConnectOptions::from_str(url).context("invalid database URL")?;
        let pool = open_pool(options.clone(), backend, if backend == Backend::Sqlite { 8 } else { 16 }).await?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await.context("database migration failed")?;
        let (writer, writes, readers) = match backend {
            Backend::Sqlite => {
                let file = sqlite_file(url)?;
                let writes = Writer::group(&file).context("cannot open the database to write")?;
                (open_pool(options, backend, 1).await?, writes, Some(Arc::new(Readers::new(file))))
            }
            Backend::Postgres => (pool.clone(), Writer::pool(pool.clone()), None),
        };
        Ok(Self { pool, writer, writes, readers, backend })
    }

    /// The default embedded database: `sesame.db` in `data_dir`.
    pub fn sqlite_url(data_dir: &Path) -> String {
        format!("sqlite://{}?mode=rwc", data_dir.join("sesame.db").display())
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
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).context("invalid database URL")?;
    let file = options.get_filename();
    anyhow::ensure!(
        !file.to_string_lossy().starts_with("file:sqlx-in-memory"),
        "an in-memory SQLite database cannot be shared by the server's connections; use sqlite://PATH"
    );
    Ok(file.to_owned())
}

/// A pool of at most `max` connections to the database of `options`.
async fn open_pool(options: AnyConnectOptions, backend: Backend, max: u32) -> anyhow::Result<AnyPool> {
    AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        // A connection to an embedded file cannot drop, so pinging it at
        // every acquire (a round trip to sqlx's worker thread each time)
        // buys nothing. A PostgreSQL connection can die with its server,
        // and the ping keeps that from failing a request.
        .test_before_acquire(backend == Backend::Postgres)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // WAL lets readers run beside the one writer; the busy
                    // timeout makes writers queue instead of failing.
                    // `synchronous = FULL` syncs the WAL at every commit:
                    // under NORMAL a power loss can roll back a
                    // registration that was already answered 200, and an
                    // account whose key only the authenticator holds is
                    // then lost for good.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                         PRAGMA synchronous = FULL;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|e| match crate::tls::certificate_problem(&e) {
            // One line that says what to fix, rather than rustls's enum.
            Some(problem) => anyhow::anyhow!("refusing the {backend:?} database: {problem}"),
            None => anyhow::Error::new(e).context(format!("cannot connect to the {backend:?} database")),
        })
}
