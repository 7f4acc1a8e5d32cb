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

use sqlx::{postgres::PgRow, sqlite::SqliteRow, Connection as _, PgConnection, Postgres, Sqlite, SqliteConnection};

pub use super::statement::{query, Arg, Constraint, Failure, Query, Row, Violation};
use super::{
    direct::{self, SqliteTx},
    statement::Stopwatch,
};
use crate::error::{Error, Result};

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
        query.refuse_nul()?;
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
        query.refuse_nul()?;
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
        query.refuse_nul()?;
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
