//! The writer against a real SQLite file.

use std::sync::Arc;

use sqlx::{sqlite::SqlitePoolOptions, SqlitePool};
use tokio::sync::Notify;

use super::*;
use crate::db::sql::{query, Violation};

/// A SQLite file with one table, and the writer over a connection to it,
/// as `Db::connect` opens it; the pool reads what it wrote.
async fn sqlite() -> (tempfile::TempDir, SqlitePool, Writer) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
    let pool = SqlitePoolOptions::new().max_connections(1).connect(&url).await.unwrap();
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

async fn keys(pool: &SqlitePool) -> Vec<String> {
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
    let units: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>> =
        vec![Box::pin(insert(&writer, "lost")), Box::pin(run(&writer, "ROLLBACK")), Box::pin(insert(&writer, "next"))];
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
