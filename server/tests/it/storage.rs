//! Storage guarantees: commits that survive a power loss, and upgrades that
//! keep every account and key.

use rand::{rngs::OsRng, RngCore as _};
use sesame_proto::{AccountKey, ServiceId};
use sesame_server::{
    db::{Backend, Db},
    signin::keys::{self, KeyState},
};
use sqlx::{any::AnyPoolOptions, Connection as _, Executor as _};

use crate::support::{each_backend, postgres_url, START};

#[tokio::test]
async fn sqlite_syncs_every_commit_to_disk() {
    each_backend(|app| async move {
        // Capture the whole app, not just the fields used below: its temp
        // dir must outlive the connections.
        let app = app;
        if app.state.db.backend != Backend::Sqlite {
            return;
        }
        // Every pooled connection, not just the first one.
        let mut held = Vec::new();
        for n in 0..3 {
            let mut conn = app.sql.acquire().await.unwrap_or_else(|e| panic!("connection {n}: {e}"));
            let level: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *conn).await.expect("pragma");
            assert_eq!(level, 2, "synchronous must be FULL (2)");
            held.push(conn);
        }
    })
    .await;
}

/// A database laid out by the first release (migration 0001 only).
async fn first_release(url: &str, backend: Backend) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new().max_connections(1).connect(url).await.expect("connect");
    let mut first = match backend {
        Backend::Sqlite => sqlx::migrate!("../migrations/server/sqlite"),
        Backend::Postgres => sqlx::migrate!("../migrations/server/postgres"),
    };
    first.migrations = first.migrations.iter().filter(|m| m.version == 1).cloned().collect::<Vec<_>>().into();
    first.run(&pool).await.expect("migration 0001");
    pool
}

async fn upgrade_keeps(url: &str, backend: Backend) {
    let old = first_release(url, backend).await;
    let service = ServiceId::random(&mut OsRng);
    let key = AccountKey::generate(&mut OsRng).public_key();
    old.execute(
        sqlx::query("INSERT INTO service (id, name, created_at) VALUES ($1, 'Mail', $2)")
            .bind(service.to_string())
            .bind(START as i64),
    )
    .await
    .expect("service");
    old.execute(
        sqlx::query(
            "INSERT INTO account (service_id, name, public_key, created_at, last_login_at) VALUES ($1, 'alice', $2, $3, $4)",
        )
        .bind(service.to_string())
        .bind(key.to_bytes().to_vec())
        .bind(START as i64)
        .bind(START as i64 + 60),
    )
    .await
    .expect("account");
    old.close().await;

    let db = Db::connect(url).await.expect("upgrade to the current schema");
    let stored = keys::of_account(&db, &service, "alice").await.expect("keys");
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].public_key, stored[0].state), (key, KeyState::Active));
    let (subject, last_used): (Option<String>, Option<i64>) = sqlx::query_as(
        "SELECT a.subject, k.last_used_at FROM account a JOIN account_key k ON k.account = a.name \
         WHERE a.name = 'alice'",
    )
    .fetch_one(&sqlx::AnyPool::connect(url).await.expect("connect"))
    .await
    .expect("account row");
    assert_eq!(subject.map(|s| s.len()), Some(32), "every account gets an opaque subject");
    assert_eq!(last_used, Some(START as i64 + 60));
}

#[tokio::test]
async fn upgrading_from_the_first_schema_keeps_every_account_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    upgrade_keeps(&Db::sqlite_url(dir.path()), Backend::Sqlite).await;

    let Some(base) = postgres_url() else { return };
    let mut id = [0u8; 8];
    OsRng.fill_bytes(&mut id);
    let name = format!("sesame_test_{}", hex::encode(id));
    let mut admin = sqlx::AnyConnection::connect(&format!("{base}/postgres")).await.expect("PostgreSQL");
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create database");
    upgrade_keeps(&format!("{base}/{name}"), Backend::Postgres).await;
    admin.execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str()).await.expect("drop database");
}
