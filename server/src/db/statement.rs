//! The vocabulary of a statement, whichever connection runs it ([`super::sql`]
//! runs them): [`query`] and its arguments, a [`Row`] read by column name
//! and type, a [`Failure`] that names the constraint it broke, and
//! [`Constraint::on`], which turns that into the refusal it means. And the
//! one timer of every statement, [`Stopwatch`].

use std::time::Instant;

use sqlx::{postgres::PgRow, sqlite::SqliteRow, Postgres, Row as _, Sqlite};

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

    /// Refuses, before it runs, a statement with text that holds a NUL
    /// character: PostgreSQL's text cannot hold one, so no stored text has
    /// one, and a request that brings one (in a filter, a name, an id)
    /// would otherwise end in a database error, a 500, there and in nothing
    /// on SQLite. On both databases alike it is `invalid_text`, a 400. It
    /// counts as a broken constraint, so that in a group commit it fails its
    /// own statement only.
    pub(super) fn refuse_nul(&self) -> std::result::Result<(), Failure> {
        if self.args.iter().any(|arg| matches!(arg, Arg::Text(Some(text)) if text.contains('\0'))) {
            return Err(Failure {
                violation: Some(Violation::NulInText),
                error: Error::bad_request("invalid_text", "text may not contain a NUL character"),
            });
        }
        Ok(())
    }
}

/// Binds a [`Query`]'s arguments to sqlx's query for one database.
macro_rules! into_sqlx {
    ($name:ident, $db:ty) => {
        impl<'q> Query<'q> {
            pub(super) fn $name(self) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
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
    /// Text with a NUL character, which PostgreSQL cannot hold
    /// ([`Query::refuse_nul`]): refused before the statement runs.
    NulInText,
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
