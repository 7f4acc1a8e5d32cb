//! The statements of a sign-in, written once for both databases and run on
//! whichever connection the caller holds.
//!
//! Everything else in the server talks to the database through sqlx. On
//! SQLite, sqlx runs each connection on a thread of its own, and every
//! statement, `BEGIN` and `COMMIT` is a message to that thread and an answer
//! back: two thread wake-ups, usually two context switches. On the path of a
//! sign-in that was about a third of the server's CPU (docs/BENCHMARKS.md).
//! There, SQLite is driven directly instead ([`rusqlite`]), on the thread
//! that needs the answer:
//!
//! - writes on the writer's own thread ([`super::writer`]), which receives
//!   whole units of work, so a unit costs one hand-over however many
//!   statements it runs;
//! - the one read of a sign-in (the account's keys) on the calling thread,
//!   through [`Readers`]: an indexed lookup in a file under WAL, which never
//!   waits for the writer.
//!
//! PostgreSQL, where each statement is a network round trip anyway, runs the
//! same SQL through sqlx ([`Conn::Sqlx`]). The SQL is common to both: `$n`
//! parameters, which SQLite takes as named parameters, bound here by name.
//!
//! Each statement is timed into `sesame_db_query_duration_seconds`, like
//! sqlx's, and logged at `DEBUG` under the target `sesame_server::sql` (sqlx
//! logs its own under `sqlx::query`).

/// A statement whose text differs between the backends only by a row lock
/// that PostgreSQL needs and SQLite has no syntax for: `$before`, then
/// `$lock` when `$postgres`, then `$after`. On PostgreSQL a statement reads
/// a snapshot taken as it starts, so a check of another row sees a change
/// committing meanwhile only through a lock on that row; SQLite has one
/// writer at a time. Both texts are constants.
macro_rules! locking {
    ($postgres:expr, $before:literal, $lock:literal, $after:literal) => {
        if $postgres {
            concat!($before, $lock, $after)
        } else {
            concat!($before, $after)
        }
    };
}
pub(crate) use locking;
use std::{
    borrow::Cow,
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use rusqlite::{
    types::{ToSqlOutput, Value, ValueRef},
    OpenFlags,
};
use sqlx::{any::AnyRow, AnyConnection, Connection as _, Row as _};

use super::timed::timed;
use crate::error::{Error, Result};

/// How long a connection of ours waits for SQLite's lock before it gives
/// up, as sqlx's connections do (`db/mod.rs`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a read on a request's thread waits for SQLite's lock. Under
/// WAL a reader waits only in rare moments (a crashed writer's recovery);
/// past this it is answered `500` rather than hold a worker thread longer.
const READ_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// A value bound to a statement's `$n`. A NULL keeps its type, which
/// PostgreSQL needs (`$5 IS NULL OR binding_hash = $5`).
#[derive(Debug, Clone)]
pub enum Arg {
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
    Int(Option<i64>),
    Bool(bool),
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Self::Text(Some(v))
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_owned()))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Self::Text(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Self::Text(v.map(str::to_owned))
    }
}
impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Self {
        Self::Blob(Some(v))
    }
}
impl From<Option<Vec<u8>>> for Arg {
    fn from(v: Option<Vec<u8>>) -> Self {
        Self::Blob(v)
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

/// Bound on SQLite as it is, without a copy: SQLite copies what it keeps.
impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Self::Text(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Self::Blob(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            Self::Int(Some(v)) => ToSqlOutput::Owned(Value::Integer(*v)),
            Self::Bool(v) => ToSqlOutput::Owned(Value::Integer(i64::from(*v))),
            Self::Text(None) | Self::Blob(None) | Self::Int(None) => ToSqlOutput::Owned(Value::Null),
        })
    }
}

/// A statement and its arguments: `query(sql).bind(a).bind(b)` binds `$1`
/// and `$2`.
#[derive(Debug)]
#[must_use = "a query does nothing until it runs on a connection"]
pub struct Query<'q> {
    sql: &'q str,
    args: Vec<Arg>,
}

pub fn query(sql: &str) -> Query<'_> {
    Query { sql, args: Vec::new() }
}

impl<'q> Query<'q> {
    pub fn bind(mut self, arg: impl Into<Arg>) -> Self {
        self.args.push(arg.into());
        self
    }

    fn into_sqlx(self) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        let mut q = sqlx::query(self.sql);
        for arg in self.args {
            q = match arg {
                Arg::Text(v) => q.bind(v),
                Arg::Blob(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
            };
        }
        q
    }
}

/// A row, read by column name, whichever database it came from.
pub trait Row {
    fn text(&self, column: &str) -> Result<String>;
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    fn blob(&self, column: &str) -> Result<Vec<u8>>;
    fn int(&self, column: &str) -> Result<i64>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;
}

impl Row for AnyRow {
    fn text(&self, column: &str) -> Result<String> {
        Ok(self.try_get(column)?)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        Ok(self.try_get(column)?)
    }
    fn blob(&self, column: &str) -> Result<Vec<u8>> {
        Ok(self.try_get(column)?)
    }
    fn int(&self, column: &str) -> Result<i64> {
        Ok(self.try_get(column)?)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        Ok(self.try_get(column)?)
    }
}

impl Row for rusqlite::Row<'_> {
    fn text(&self, column: &str) -> Result<String> {
        self.get(column).map_err(sqlite_error)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        self.get(column).map_err(sqlite_error)
    }
    fn blob(&self, column: &str) -> Result<Vec<u8>> {
        self.get(column).map_err(sqlite_error)
    }
    fn int(&self, column: &str) -> Result<i64> {
        self.get(column).map_err(sqlite_error)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        self.get(column).map_err(sqlite_error)
    }
}

/// A constraint a failed statement broke, when that is why it failed: the
/// callers turn these into the refusals they mean (`challenge_used`,
/// `unknown_account` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    Unique,
    ForeignKey,
}

/// Why a statement failed: a constraint it broke, or anything else.
#[derive(Debug)]
pub struct Failure {
    pub violation: Option<Violation>,
    pub error: Error,
}

impl From<Failure> for Error {
    fn from(failure: Failure) -> Self {
        failure.error
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        let violation = match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => Some(Violation::Unique),
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => Some(Violation::ForeignKey),
            _ => None,
        };
        Self { violation, error: Error::Database(e) }
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi;
        let violation = match e.sqlite_error().map(|e| e.extended_code) {
            Some(ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => Some(Violation::Unique),
            Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => Some(Violation::ForeignKey),
            _ => None,
        };
        Self { violation, error: sqlite_error(e) }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self { violation: None, error }
    }
}

/// A SQLite error of our own connections, as the server reports database
/// errors: a 500, which spoils a group commit ([`super::writer`]).
fn sqlite_error(e: rusqlite::Error) -> Error {
    Error::Internal(anyhow::Error::new(e).context("database"))
}

/// A connection that runs the statements of a sign-in.
#[derive(Debug)]
pub enum Conn<'c> {
    /// Through sqlx: PostgreSQL, and SQLite inside a transaction that sqlx
    /// opened (a registration).
    Sqlx(&'c mut AnyConnection),
    /// SQLite, driven directly on this thread.
    Sqlite(&'c mut rusqlite::Connection),
}

impl Conn<'_> {
    /// Whether this is a PostgreSQL connection: concurrent writers there
    /// see each other's commits only through row locks, where SQLite takes
    /// one writer at a time.
    pub fn is_postgres(&self) -> bool {
        match self {
            Self::Sqlx(conn) => conn.backend_name() == "PostgreSQL",
            Self::Sqlite(_) => false,
        }
    }

    /// Runs `query` and returns how many rows it changed.
    pub async fn execute(&mut self, query: Query<'_>) -> std::result::Result<u64, Failure> {
        match self {
            Self::Sqlx(conn) => Ok(query.into_sqlx().execute(timed(&mut **conn)).await?.rows_affected()),
            Self::Sqlite(conn) => {
                let _stopwatch = Stopwatch::start(query.sql);
                Ok(prepare(conn, &query)?.raw_execute()? as u64)
            }
        }
    }

    /// Runs `query` and maps the first row it returns, if any.
    pub async fn fetch_optional<T>(
        &mut self,
        query: Query<'_>,
        map: impl FnOnce(&dyn Row) -> Result<T>,
    ) -> std::result::Result<Option<T>, Failure> {
        match self {
            Self::Sqlx(conn) => match query.into_sqlx().fetch_optional(timed(&mut **conn)).await? {
                Some(row) => Ok(Some(map(&row)?)),
                None => Ok(None),
            },
            Self::Sqlite(conn) => {
                let _stopwatch = Stopwatch::start(query.sql);
                let mut statement = prepare(conn, &query)?;
                let mut rows = statement.raw_query();
                let first = match rows.next()? {
                    Some(row) => Some(map(row)?),
                    None => None,
                };
                // The rest of the rows are not wanted, but a statement is
                // only finished, and reset, once stepped to its end.
                while rows.next()?.is_some() {}
                Ok(first)
            }
        }
    }

    /// Runs `query` and maps every row it returns.
    pub async fn fetch_all<T>(
        &mut self,
        query: Query<'_>,
        mut map: impl FnMut(&dyn Row) -> Result<T>,
    ) -> std::result::Result<Vec<T>, Failure> {
        match self {
            Self::Sqlx(conn) => {
                let rows = query.into_sqlx().fetch_all(timed(&mut **conn)).await?;
                Ok(rows.iter().map(|row| map(row)).collect::<Result<_>>()?)
            }
            Self::Sqlite(conn) => Ok(sqlite_fetch_all(conn, &query, map)?),
        }
    }

    /// Opens a transaction of its own on this connection, or a savepoint
    /// inside the transaction already open on it; dropped without
    /// [`Tx::commit`], it rolls back.
    pub async fn begin(&mut self) -> Result<Tx<'_>> {
        Ok(match self {
            Self::Sqlx(conn) => Tx::Sqlx(conn.begin().await?),
            Self::Sqlite(conn) => {
                let nested = !conn.is_autocommit();
                run(conn, if nested { "SAVEPOINT unit" } else { "BEGIN" }).map_err(sqlite_error)?;
                Tx::Sqlite(SqliteTx { conn, nested, open: true })
            }
        })
    }
}

/// A transaction opened by [`Conn::begin`].
#[derive(Debug)]
pub enum Tx<'c> {
    Sqlx(sqlx::Transaction<'c, sqlx::Any>),
    Sqlite(SqliteTx<'c>),
}

/// A transaction on SQLite, rolled back when dropped open. (rusqlite's own
/// holds a shared reference to its connection, which cannot cross an
/// `.await` in a future that must be `Send`.)
#[derive(Debug)]
pub struct SqliteTx<'c> {
    conn: &'c mut rusqlite::Connection,
    /// A savepoint inside a transaction that was already open.
    nested: bool,
    open: bool,
}

impl SqliteTx<'_> {
    fn end(&mut self, commit: bool) -> Result<()> {
        let sql = match (self.nested, commit) {
            (false, true) => "COMMIT",
            (false, false) => "ROLLBACK",
            (true, true) => "RELEASE unit",
            // Rolled back to, a savepoint is still open; release it too.
            (true, false) => "ROLLBACK TO unit; RELEASE unit",
        };
        run(self.conn, sql).map_err(sqlite_error)?;
        self.open = false;
        Ok(())
    }
}

impl Drop for SqliteTx<'_> {
    fn drop(&mut self) {
        if self.open {
            if let Err(e) = self.end(false) {
                tracing::warn!(error = %e, "could not roll back a transaction");
            }
        }
    }
}

impl Tx<'_> {
    /// The connection, to run statements in the transaction.
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlx(tx) => Conn::Sqlx(tx),
            Self::Sqlite(tx) => Conn::Sqlite(tx.conn),
        }
    }

    pub async fn commit(self) -> Result<()> {
        match self {
            Self::Sqlx(tx) => tx.commit().await?,
            Self::Sqlite(mut tx) => tx.end(true)?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        match self {
            Self::Sqlx(tx) => tx.rollback().await?,
            Self::Sqlite(mut tx) => tx.end(false)?,
        }
        Ok(())
    }
}

/// Runs `sql`, which takes no arguments and returns no rows (`BEGIN
/// IMMEDIATE`, `COMMIT`), on `conn`.
pub fn run(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    let _stopwatch = Stopwatch::start(sql);
    conn.execute_batch(sql)
}

fn sqlite_fetch_all<T>(
    conn: &rusqlite::Connection,
    query: &Query<'_>,
    mut map: impl FnMut(&dyn Row) -> Result<T>,
) -> std::result::Result<Vec<T>, Failure> {
    let _stopwatch = Stopwatch::start(query.sql);
    let mut statement = prepare(conn, query)?;
    let mut rows = statement.raw_query();
    let mut all = Vec::new();
    while let Some(row) = rows.next()? {
        all.push(map(row)?);
    }
    Ok(all)
}

/// The names of the first parameters, spelled out rather than formatted at
/// every bind.
const PARAMETERS: [&str; 20] = [
    "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15", "$16", "$17",
    "$18", "$19", "$20",
];

/// `query` prepared (from the connection's cache) with its arguments bound
/// to their `$n`.
fn prepare<'c>(conn: &'c rusqlite::Connection, query: &Query<'_>) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    let mut statement = conn.prepare_cached(query.sql)?;
    let mut bound = 0;
    for (i, arg) in query.args.iter().enumerate() {
        // SQLite numbers named parameters by their first appearance, so the
        // name decides, not the position.
        let name = PARAMETERS.get(i).map_or_else(|| format!("${}", i + 1).into(), |&n| Cow::Borrowed(n));
        if let Some(index) = statement.parameter_index(&name)? {
            statement.raw_bind_parameter(index, arg)?;
            bound += 1;
        }
    }
    // A `$n` left unbound would be NULL on SQLite, and an error on
    // PostgreSQL.
    debug_assert_eq!(bound, statement.parameter_count(), "unbound parameters in {}", query.sql);
    Ok(statement)
}

/// Times a statement on a connection of ours into
/// `sesame_db_query_duration_seconds`, as [`super::timed`] times sqlx's,
/// and logs it once done (or dropped unfinished: the time was spent all the
/// same).
struct Stopwatch<'s> {
    timer: super::timed::Stopwatch,
    sql: &'s str,
}

impl<'s> Stopwatch<'s> {
    fn start(sql: &'s str) -> Self {
        Self { timer: super::timed::Stopwatch(Instant::now()), sql }
    }
}

impl Drop for Stopwatch<'_> {
    fn drop(&mut self) {
        tracing::debug!(
            target: "sesame_server::sql",
            statement = self.sql,
            elapsed_us = self.timer.0.elapsed().as_micros() as u64,
            "statement"
        );
    }
}

/// Opens a connection of ours to the SQLite file at `path`, set up as
/// sqlx's are (`db/mod.rs`): WAL, foreign keys, a full sync at each commit.
pub fn open(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")?;
    // The statements of a sign-in, and a few more.
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Connections that read the SQLite file on the calling thread: a read
/// under WAL never waits for a writer, and an indexed lookup costs less
/// than handing it to another thread and back.
#[derive(Debug)]
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
    /// The connections kept open between reads: one per thread that may
    /// read at once (tokio's workers, one per core). More are opened when
    /// more read at once, and closed after.
    keep: usize,
}

impl Readers {
    pub fn new(path: PathBuf) -> Self {
        let keep = std::thread::available_parallelism().map_or(4, usize::from);
        Self { path, idle: Mutex::new(Vec::new()), keep }
    }

    /// Maps every row of `query`.
    pub fn fetch_all<T>(&self, query: Query<'_>, map: impl FnMut(&dyn Row) -> Result<T>) -> Result<Vec<T>> {
        let conn = self.take()?;
        let read = sqlite_fetch_all(&conn, &query, map);
        self.give_back(conn);
        Ok(read?)
    }

    fn take(&self) -> Result<rusqlite::Connection> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop() {
            return Ok(conn);
        }
        let conn = open(&self.path).map_err(|e| Error::Internal(e.context("cannot open the database to read")))?;
        conn.execute_batch("PRAGMA query_only = ON;").map_err(sqlite_error)?;
        conn.busy_timeout(READ_BUSY_TIMEOUT).map_err(sqlite_error)?;
        Ok(conn)
    }

    fn give_back(&self, conn: rusqlite::Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.keep {
            idle.push(conn);
        }
    }
}
