//! The one timer of every statement the server runs through sqlx (those
//! run directly on SQLite are timed in [`super::sql`], with the same
//! [`Stopwatch`]).

/// An executor that times each statement it runs into
/// `sesame_db_query_duration_seconds`: every query of the server through
/// sqlx goes through [`timed`], on the pool and inside transactions alike
/// (those of [`super::sql`] on SQLite are timed there).
///
/// sqlx times statements too, but only to log them, and it builds a
/// formatted copy of the SQL for every statement whose log event is enabled;
/// turning those events on to read their times cost about a tenth of the
/// server's CPU (docs/BENCHMARKS.md). Taking the time here costs two clock
/// reads, and nothing at all is recorded while metrics are off.
#[derive(Debug)]
pub struct Timed<E>(E);

/// `executor`, timed: `.execute(timed(&db.pool))`, `.fetch_one(timed(&mut *tx))`.
pub fn timed<E>(executor: E) -> Timed<E> {
    Timed(executor)
}

/// Records one statement's time when it finishes, or when it is dropped
/// unfinished (a cancelled request still spent that time).
pub(crate) struct Stopwatch(pub(crate) std::time::Instant);

impl Drop for Stopwatch {
    fn drop(&mut self) {
        crate::metrics::query_finished(self.0.elapsed());
    }
}

impl<'c, E> sqlx::Executor<'c> for Timed<E>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    type Database = sqlx::Any;

    fn fetch_many<'e, 'q: 'e, Q>(
        self,
        query: Q,
    ) -> futures_util::stream::BoxStream<
        'e,
        Result<sqlx::Either<sqlx::any::AnyQueryResult, sqlx::any::AnyRow>, sqlx::Error>,
    >
    where
        'c: 'e,
        Q: 'q + sqlx::Execute<'q, sqlx::Any>,
    {
        use futures_util::StreamExt as _;
        let stopwatch = Stopwatch(std::time::Instant::now());
        // The stopwatch lives as long as the stream: it stops when the
        // caller has read the last row or drops the stream.
        self.0
            .fetch_many(query)
            .map(move |item| {
                let _running = &stopwatch;
                item
            })
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, Q>(
        self,
        query: Q,
    ) -> futures_util::future::BoxFuture<'e, Result<Option<sqlx::any::AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        Q: 'q + sqlx::Execute<'q, sqlx::Any>,
    {
        use futures_util::FutureExt as _;
        let stopwatch = Stopwatch(std::time::Instant::now());
        self.0
            .fetch_optional(query)
            .map(move |result| {
                drop(stopwatch);
                result
            })
            .boxed()
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [sqlx::any::AnyTypeInfo],
    ) -> futures_util::future::BoxFuture<'e, Result<sqlx::any::AnyStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.0.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> futures_util::future::BoxFuture<'e, Result<sqlx::Describe<sqlx::Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.0.describe(sql)
    }
}
