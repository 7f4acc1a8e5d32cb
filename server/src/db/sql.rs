//! The one face of every statement the server runs: [`query`] binds its
//! `$n` arguments, a [`Conn`] runs it, and a [`Row`] reads its columns by
//! name and type, whichever database and driver is behind the connection.
//! A statement that broke a constraint fails with a [`Failure`] naming it,
//! which the caller turns into what it means with [`Constraint::on`].
//!
//! A connection is one of three: sqlx's, to SQLite or to PostgreSQL, or
//! ours to SQLite, driven directly. On SQLite, sqlx runs each connection on
//! a thread of its own, and every statement, `BEGIN` and `COMMIT` is a
//! message to that thread and an answer back: two thread wake-ups, usually
//! two context switches. On the path of a sign-in that was about a third of
//! the server's CPU (docs/BENCHMARKS.md). There, SQLite is driven directly
//! instead ([`super::direct`]), on the thread that needs the answer:
//!
//! - writes on the writer's own thread ([`super::writer`]), which receives
//!   whole units of work, so a unit costs one hand-over however many
//!   statements it runs;
//! - the one read of a sign-in (the account's keys) on the calling thread,
//!   through `Readers`: an indexed lookup in a file under WAL, which never
//!   waits for the writer.
//!
//! PostgreSQL, where each statement is a network round trip anyway, runs the
//! same SQL through sqlx ([`Conn::Postgres`]). The SQL is common to both:
//! `$n` parameters, which SQLite takes as named parameters, bound here by
//! name; BIGINT times, TEXT ids, BLOB/BYTEA bytes, BOOLEAN flags (INTEGER 0
//! or 1 on SQLite, read as `bool` either way).
//!
//! Each statement, on any connection, is timed here into
//! `sesame_db_query_duration_seconds` and logged at `DEBUG` under the target
//! `sesame_server::sql`.

use std::time::Instant;

use sqlx::{
    postgres::PgRow, sqlite::SqliteRow, Connection as _, PgConnection, Postgres, Row as _, Sqlite, SqliteConnection,
};

use super::direct::{self, SqliteTx};
use crate::error::{Error, Result};

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

/// A statement and its arguments: `query(sql).bind(a).bind(b)` binds `$1`
/// and `$2`.
#[derive(Debug)]
#[must_use = "a query does nothing until it runs on a connection"]
pub struct Query<'q> {
    pub(super) sql: &'q str,
    pub(super) args: Vec<Arg>,
}

pub fn query(sql: &str) -> Query<'_> {
    Query { sql, args: Vec::new() }
}

impl<'q> Query<'q> {
    pub fn bind(mut self, arg: impl Into<Arg>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// The SQL text, for the log and the timer.
    pub fn sql(&self) -> &'q str {
        self.sql
    }
}

/// Binds a [`Query`]'s arguments to sqlx's query for one database.
macro_rules! into_sqlx {
    ($name:ident, $db:ty) => {
        impl<'q> Query<'q> {
            fn $name(self) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
                let mut q = sqlx::query::<$db>(self.sql);
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
    };
}
into_sqlx!(into_sqlite, Sqlite);
into_sqlx!(into_postgres, Postgres);

/// A row, read by column name and type, whichever database it came from.
/// Times are BIGINT Unix seconds, read with [`Row::int`].
pub trait Row {
    fn text(&self, column: &str) -> Result<String>;
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    fn blob(&self, column: &str) -> Result<Vec<u8>>;
    fn opt_blob(&self, column: &str) -> Result<Option<Vec<u8>>>;
    fn int(&self, column: &str) -> Result<i64>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;
    /// A BOOLEAN column, or a condition (`x IS NULL`, `EXISTS (…)`): an
    /// INTEGER 0 or 1 on SQLite.
    fn bool(&self, column: &str) -> Result<bool>;
}

/// [`Row`] for a row of sqlx's.
macro_rules! sqlx_row {
    ($row:ty) => {
        impl Row for $row {
            fn text(&self, column: &str) -> Result<String> {
                Ok(self.try_get(column)?)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>> {
                Ok(self.try_get(column)?)
            }
            fn blob(&self, column: &str) -> Result<Vec<u8>> {
                Ok(self.try_get(column)?)
            }
            fn opt_blob(&self, column: &str) -> Result<Option<Vec<u8>>> {
                Ok(self.try_get(column)?)
            }
            fn int(&self, column: &str) -> Result<i64> {
                Ok(self.try_get(column)?)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>> {
                Ok(self.try_get(column)?)
            }
            fn bool(&self, column: &str) -> Result<bool> {
                Ok(self.try_get(column)?)
            }
        }
    };
}
sqlx_row!(SqliteRow);
sqlx_row!(PgRow);

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

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self { violation: None, error }
    }
}

/// Turns a broken constraint into the refusal it means, chained once per
/// constraint the statement may break, before the `?` that makes the rest
/// an [`Error`]:
///
/// ```ignore
/// conn.execute(insert).await.on(Violation::Unique, Error::AccountTaken).on(Violation::ForeignKey, Error::UnknownService)?;
/// ```
pub trait Constraint<T> {
    /// `refusal` in place of a failure that broke a `violation` constraint.
    fn on(self, violation: Violation, refusal: Error) -> std::result::Result<T, Failure>;
}

impl<T> Constraint<T> for std::result::Result<T, Failure> {
    fn on(self, violation: Violation, refusal: Error) -> std::result::Result<T, Failure> {
        match self {
            Err(failure) if failure.violation == Some(violation) => Err(Failure { violation: None, error: refusal }),
            other => other,
        }
    }
}

/// A connection that runs statements.
#[derive(Debug)]
pub enum Conn<'c> {
    /// sqlx's, to SQLite: the pool's, and the writer's outside the
    /// sign-in writer ([`super::Db::begin_write`]).
    Sqlite(&'c mut SqliteConnection),
    /// sqlx's, to PostgreSQL.
    Postgres(&'c mut PgConnection),
    /// Ours, to SQLite, driven directly on this thread.
    Direct(&'c mut rusqlite::Connection),
}

impl Conn<'_> {
    /// Whether this is a PostgreSQL connection: concurrent writers there
    /// see each other's commits only through row locks, where SQLite takes
    /// one writer at a time.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// This connection again, for a call that takes it by value.
    pub fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlite(conn) => Conn::Sqlite(conn),
            Self::Postgres(conn) => Conn::Postgres(conn),
            Self::Direct(conn) => Conn::Direct(conn),
        }
    }

    /// Runs `query` and returns how many rows it changed.
    pub async fn execute(&mut self, query: Query<'_>) -> std::result::Result<u64, Failure> {
        match self {
            Self::Sqlite(conn) => {
                let _stopwatch = Stopwatch::start(query.sql);
                Ok(query.into_sqlite().execute(&mut **conn).await?.rows_affected())
            }
            Self::Postgres(conn) => {
                let _stopwatch = Stopwatch::start(query.sql);
                Ok(query.into_postgres().execute(&mut **conn).await?.rows_affected())
            }
            Self::Direct(conn) => {
                let _stopwatch = Stopwatch::start(query.sql);
                Ok(direct::prepare(conn, &query)?.raw_execute()? as u64)
            }
        }
    }

    /// Runs `query` and maps the first row it returns, if any.
    pub async fn fetch_optional<T>(
        &mut self,
        query: Query<'_>,
        map: impl FnOnce(&dyn Row) -> Result<T>,
    ) -> std::result::Result<Option<T>, Failure> {
        let row = match self {
            Self::Sqlite(conn) => {
                let _stopwatch = Stopwatch::start(query.sql);
                query.into_sqlite().fetch_optional(&mut **conn).await?.map(Rowed::Sqlite)
            }
            Self::Postgres(conn) => {
                let _stopwatch = Stopwatch::start(query.sql);
                query.into_postgres().fetch_optional(&mut **conn).await?.map(Rowed::Postgres)
            }
            Self::Direct(conn) => {
                let _stopwatch = Stopwatch::start(query.sql);
                let mut statement = direct::prepare(conn, &query)?;
                let mut rows = statement.raw_query();
                let first = match rows.next()? {
                    Some(row) => Some(map(row)?),
                    None => None,
                };
                // The rest of the rows are not wanted, but a statement is
                // only finished, and reset, once stepped to its end.
                while rows.next()?.is_some() {}
                return Ok(first);
            }
        };
        Ok(row.map(|row| map(row.as_row())).transpose()?)
    }

    /// Runs `query` and maps the one row it must return; none is
    /// [`Error::Database`]'s `RowNotFound`, a 500.
    pub async fn fetch_one<T>(
        &mut self,
        query: Query<'_>,
        map: impl FnOnce(&dyn Row) -> Result<T>,
    ) -> std::result::Result<T, Failure> {
        self.fetch_optional(query, map).await?.ok_or_else(|| Error::Database(sqlx::Error::RowNotFound).into())
    }

    /// Runs `query` and maps every row it returns.
    pub async fn fetch_all<T>(
        &mut self,
        query: Query<'_>,
        mut map: impl FnMut(&dyn Row) -> Result<T>,
    ) -> std::result::Result<Vec<T>, Failure> {
        match self {
            Self::Sqlite(conn) => {
                let _stopwatch = Stopwatch::start(query.sql);
                let rows = query.into_sqlite().fetch_all(&mut **conn).await?;
                Ok(rows.iter().map(|row| map(row)).collect::<Result<_>>()?)
            }
            Self::Postgres(conn) => {
                let _stopwatch = Stopwatch::start(query.sql);
                let rows = query.into_postgres().fetch_all(&mut **conn).await?;
                Ok(rows.iter().map(|row| map(row)).collect::<Result<_>>()?)
            }
            Self::Direct(conn) => Ok(direct::fetch_all(conn, &query, map)?),
        }
    }

    /// Opens a transaction of its own on this connection, or a savepoint
    /// inside the transaction already open on it; dropped without
    /// [`Tx::commit`], it rolls back.
    pub async fn begin(&mut self) -> Result<Tx<'_>> {
        Ok(match self {
            Self::Sqlite(conn) => {
                let _stopwatch = Stopwatch::start("BEGIN");
                Tx::Sqlite(conn.begin().await?)
            }
            Self::Postgres(conn) => {
                let _stopwatch = Stopwatch::start("BEGIN");
                Tx::Postgres(conn.begin().await?)
            }
            Self::Direct(conn) => Tx::Direct(SqliteTx::begin(conn)?),
        })
    }
}

/// A row of sqlx's, of either database.
enum Rowed {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Rowed {
    fn as_row(&self) -> &dyn Row {
        match self {
            Self::Sqlite(row) => row,
            Self::Postgres(row) => row,
        }
    }
}

/// A transaction opened by [`Conn::begin`].
#[derive(Debug)]
pub enum Tx<'c> {
    Sqlite(sqlx::Transaction<'c, Sqlite>),
    Postgres(sqlx::Transaction<'c, Postgres>),
    Direct(SqliteTx<'c>),
}

impl Tx<'static> {
    /// A transaction on a connection of `pool`, which it holds until it ends.
    pub(super) async fn on_sqlite(pool: &sqlx::SqlitePool) -> Result<Self> {
        let _stopwatch = Stopwatch::start("BEGIN");
        Ok(Self::Sqlite(pool.begin().await?))
    }

    /// A transaction on a connection of `pool`, which it holds until it ends.
    pub(super) async fn on_postgres(pool: &sqlx::PgPool) -> Result<Self> {
        let _stopwatch = Stopwatch::start("BEGIN");
        Ok(Self::Postgres(pool.begin().await?))
    }
}

impl Tx<'_> {
    /// The connection, to run statements in the transaction.
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlite(tx) => Conn::Sqlite(tx),
            Self::Postgres(tx) => Conn::Postgres(tx),
            Self::Direct(tx) => Conn::Direct(tx.conn()),
        }
    }

    pub async fn commit(self) -> Result<()> {
        match self {
            Self::Sqlite(tx) => {
                let _stopwatch = Stopwatch::start("COMMIT");
                tx.commit().await?
            }
            Self::Postgres(tx) => {
                let _stopwatch = Stopwatch::start("COMMIT");
                tx.commit().await?
            }
            Self::Direct(mut tx) => tx.end(true)?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        match self {
            Self::Sqlite(tx) => {
                let _stopwatch = Stopwatch::start("ROLLBACK");
                tx.rollback().await?
            }
            Self::Postgres(tx) => {
                let _stopwatch = Stopwatch::start("ROLLBACK");
                tx.rollback().await?
            }
            Self::Direct(mut tx) => tx.end(false)?,
        }
        Ok(())
    }
}

/// Times a statement into `sesame_db_query_duration_seconds` and logs it
/// once done, or dropped unfinished (a cancelled request still spent that
/// time): the one timer of every statement the server runs.
///
/// sqlx times statements too, but only to log them, and it builds a
/// formatted copy of the SQL for every statement whose log event is enabled;
/// turning those events on to read their times cost about a tenth of the
/// server's CPU (docs/BENCHMARKS.md). Taking the time here costs two clock
/// reads, and nothing at all is recorded while metrics are off.
pub(super) struct Stopwatch<'s> {
    started: Instant,
    sql: &'s str,
}

impl<'s> Stopwatch<'s> {
    pub(super) fn start(sql: &'s str) -> Self {
        Self { started: Instant::now(), sql }
    }
}

impl Drop for Stopwatch<'_> {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        crate::metrics::query_finished(elapsed);
        tracing::debug!(
            target: "sesame_server::sql",
            statement = self.sql,
            elapsed_us = elapsed.as_micros() as u64,
            "statement"
        );
    }
}
