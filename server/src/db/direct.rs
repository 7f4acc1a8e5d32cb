//! SQLite driven directly ([`rusqlite`]), on the thread that needs the
//! answer: the connections of the sign-in writer ([`super::writer`]) and of
//! the reads on a sign-in's path ([`Readers`]), and what [`super::sql`]'s
//! face needs of them (binding, rows, errors, transactions).

use std::{
    borrow::Cow,
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::Duration,
};

use rusqlite::{
    types::{ToSqlOutput, Value, ValueRef},
    OpenFlags,
};

use super::statement::{Arg, Failure, Query, Row, Stopwatch, Violation};
use crate::error::{Error, Result};

/// How long a connection of ours waits for SQLite's lock before it gives
/// up, as sqlx's connections do (`db/mod.rs`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a read on a request's thread waits for SQLite's lock. Under
/// WAL a reader waits only in rare moments (a crashed writer's recovery);
/// past this it is answered `500` rather than hold a worker thread longer.
const READ_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

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
    fn opt_blob(&self, column: &str) -> Result<Option<Vec<u8>>> {
        self.get(column).map_err(sqlite_error)
    }
    fn int(&self, column: &str) -> Result<i64> {
        self.get(column).map_err(sqlite_error)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        self.get(column).map_err(sqlite_error)
    }
    fn bool(&self, column: &str) -> Result<bool> {
        self.get(column).map_err(sqlite_error)
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

/// A SQLite error of our own connections, as the server reports database
/// errors: a 500, which spoils a group commit ([`super::writer`]).
pub(super) fn sqlite_error(e: rusqlite::Error) -> Error {
    Error::Internal(anyhow::Error::new(e).context("database"))
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

impl<'c> SqliteTx<'c> {
    /// Opens a transaction on `conn`, or a savepoint inside the one already
    /// open on it.
    pub(super) fn begin(conn: &'c mut rusqlite::Connection) -> Result<Self> {
        let nested = !conn.is_autocommit();
        run(conn, if nested { "SAVEPOINT unit" } else { "BEGIN" }).map_err(sqlite_error)?;
        Ok(Self { conn, nested, open: true })
    }

    /// The connection, to run statements in the transaction.
    pub(super) fn conn(&mut self) -> &mut rusqlite::Connection {
        self.conn
    }

    pub(super) fn end(&mut self, commit: bool) -> Result<()> {
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

/// Runs `sql`, which takes no arguments and returns no rows (`BEGIN
/// IMMEDIATE`, `COMMIT`), on `conn`.
pub(super) fn run(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    let _stopwatch = Stopwatch::start(sql);
    conn.execute_batch(sql)
}

pub(super) fn fetch_all<T>(
    conn: &rusqlite::Connection,
    query: &Query<'_>,
    mut map: impl FnMut(&dyn Row) -> Result<T>,
) -> std::result::Result<Vec<T>, Failure> {
    query.refuse_nul()?;
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
pub(super) fn prepare<'c>(
    conn: &'c rusqlite::Connection,
    query: &Query<'_>,
) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
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

/// Opens a connection of ours to the SQLite file at `path`, set up as
/// sqlx's are (`db/mod.rs`): WAL, foreign keys, a full sync at each commit.
pub(super) fn open(path: &Path) -> anyhow::Result<rusqlite::Connection> {
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
pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
    /// The connections kept open between reads: one per thread that may
    /// read at once (tokio's workers, one per core). More are opened when
    /// more read at once, and closed after.
    keep: usize,
}

impl Readers {
    pub(super) fn new(path: PathBuf) -> Self {
        let keep = std::thread::available_parallelism().map_or(4, usize::from);
        Self { path, idle: Mutex::new(Vec::new()), keep }
    }

    /// Maps every row of `query`.
    pub(super) fn fetch_all<T>(&self, query: Query<'_>, map: impl FnMut(&dyn Row) -> Result<T>) -> Result<Vec<T>> {
        let conn = self.take()?;
        let read = fetch_all(&conn, &query, map);
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
