//! Storage guarantees: commits that survive a power loss, and upgrades that
//! keep every account and key, and every OpenID Connect client with what it
//! issued.

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

/// A database laid out by the migrations up to `last` only, as the release
/// that shipped `last` left it.
pub(crate) async fn migrated_to(url: &str, backend: Backend, last: i64) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new().max_connections(1).connect(url).await.expect("connect");
    let mut old = match backend {
        Backend::Sqlite => sqlx::migrate!("../migrations/server/sqlite"),
        Backend::Postgres => sqlx::migrate!("../migrations/server/postgres"),
    };
    old.migrations = old.migrations.iter().filter(|m| m.version <= last).cloned().collect::<Vec<_>>().into();
    old.run(&pool).await.unwrap_or_else(|e| panic!("migrations up to {last:04}: {e}"));
    pool
}

/// Runs `upgrade` on a fresh SQLite file, then, when a PostgreSQL server is
/// given, on a fresh database of its own.
pub(crate) async fn on_each_backend<F, Fut>(upgrade: F)
where
    F: Fn(String, Backend) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    upgrade(Db::sqlite_url(dir.path()), Backend::Sqlite).await;

    let Some(base) = postgres_url() else { return };
    let mut id = [0u8; 8];
    OsRng.fill_bytes(&mut id);
    let name = format!("sesame_test_{}", hex::encode(id));
    let mut admin = sqlx::AnyConnection::connect(&format!("{base}/postgres")).await.expect("PostgreSQL");
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create database");
    upgrade(format!("{base}/{name}"), Backend::Postgres).await;
    admin.execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str()).await.expect("drop database");
}

async fn upgrade_keeps(url: String, backend: Backend) {
    let url = url.as_str();
    let old = migrated_to(url, backend, 1).await;
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
    assert_eq!(stored.sesame.len(), 1);
    assert_eq!((stored.sesame[0].public_key, stored.sesame[0].state), (key, KeyState::Active));
    let (subject, last_used): (Option<String>, Option<i64>) = sqlx::query_as(
        "SELECT a.subject, k.last_used_at FROM account a JOIN account_key k ON k.account = a.name \
         WHERE a.name = 'alice'",
    )
    .fetch_one(&sqlx::AnyPool::connect(url).await.expect("connect"))
    .await
    .expect("account row");
    assert_eq!(subject.map(|s| s.len()), Some(32), "every account gets an opaque subject");
    assert_eq!(last_used, Some(START as i64 + 60));
    let profile =
        sesame_server::signin::profile::of_account(&db, &service.to_string(), "alice").await.expect("profile");
    assert_eq!(profile, Default::default(), "an account from before profiles has an empty one");
}

#[tokio::test]
async fn upgrading_from_the_first_schema_keeps_every_account_and_key() {
    on_each_backend(upgrade_keeps).await;
}

async fn upgrade_keeps_oidc_client(url: String, backend: Backend) {
    let old = migrated_to(&url, backend, 9).await;
    let service = ServiceId::random(&mut OsRng).to_string();
    let random = || {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        bytes.to_vec()
    };
    let (client_id, secret_hash) = (hex::encode(&random()[..16]), random());
    let (challenge_id, code_hash, token_hash) = (hex::encode(&random()[..16]), random(), random());
    let key_id = hex::encode(&random()[..16]);
    let now = START as i64;
    let statements = [
        sqlx::query("INSERT INTO service (id, name, created_at) VALUES ($1, 'Mail', $2)").bind(&service).bind(now),
        sqlx::query("INSERT INTO account (service_id, name, created_at, subject) VALUES ($1, 'alice', $2, $3)")
            .bind(&service)
            .bind(now)
            .bind(hex::encode(&random()[..16])),
        sqlx::query(
            "INSERT INTO account_key (id, service_id, account, public_key, created_at) VALUES ($1, $2, 'alice', $3, $4)",
        )
        .bind(&key_id)
        .bind(&service)
        .bind(random())
        .bind(now),
        sqlx::query(
            "INSERT INTO oidc_client (service_id, client_id, secret_hash, redirect_uris, post_logout_redirect_uris, \
             id_token_alg, created_at, updated_at) \
             VALUES ($1, $2, $3, '[\"https://mail.example/cb\"]', '[]', 'EdDSA', $4, $5)",
        )
        .bind(&service)
        .bind(&client_id)
        .bind(&secret_hash)
        .bind(now)
        .bind(now + 1),
        sqlx::query(
            "INSERT INTO oidc_request (challenge_id, client_id, redirect_uri, scope, state, nonce, code_challenge, \
             created_at) VALUES ($1, $2, 'https://mail.example/cb', 'openid', 'xyz', 'n-0S6', 'abc', $3)",
        )
        .bind(&challenge_id)
        .bind(&client_id)
        .bind(now + 2),
        sqlx::query(
            "INSERT INTO oidc_code (code_hash, client_id, service_id, account, key_id, redirect_uri, scope, \
             auth_time, created_at, expires_at) \
             VALUES ($1, $2, $3, 'alice', $4, 'https://mail.example/cb', 'openid', $5, $5, $6)",
        )
        .bind(&code_hash)
        .bind(&client_id)
        .bind(&service)
        .bind(&key_id)
        .bind(now + 3)
        .bind(now + 63),
        sqlx::query(
            "INSERT INTO oidc_token (token_hash, code_hash, client_id, service_id, account, key_id, scope, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, 'alice', $5, 'openid', $6, $7)",
        )
        .bind(&token_hash)
        .bind(&code_hash)
        .bind(&client_id)
        .bind(&service)
        .bind(&key_id)
        .bind(now + 4)
        .bind(now + 3604),
    ];
    for (n, statement) in statements.into_iter().enumerate() {
        old.execute(statement).await.unwrap_or_else(|e| panic!("row {n}: {e}"));
    }
    old.close().await;

    Db::connect(&url).await.expect("upgrade to the current schema");
    let sql = AnyPoolOptions::new().max_connections(1).connect(&url).await.expect("connect");
    let application: (String, String, Option<Vec<u8>>, String, String, i64, i64) = sqlx::query_as(
        "SELECT service_id, name, secret_hash, redirect_uris, id_token_alg, created_at, updated_at \
         FROM oidc_application WHERE client_id = $1",
    )
    .bind(&client_id)
    .fetch_one(&sql)
    .await
    .expect("the client is an application");
    assert_eq!(
        application,
        (
            service.clone(),
            "Mail".to_owned(),
            Some(secret_hash),
            r#"["https://mail.example/cb"]"#.to_owned(),
            "EdDSA".to_owned(),
            now,
            now + 1
        ),
        "same client_id, secret, URIs and times, named after its service"
    );
    let issued = || {
        sqlx::query_as::<_, (i64, i64, i64)>(
            "SELECT (SELECT COUNT(*) FROM oidc_request WHERE challenge_id = $1 AND client_id = $4), \
                    (SELECT COUNT(*) FROM oidc_code WHERE code_hash = $2 AND client_id = $4), \
                    (SELECT COUNT(*) FROM oidc_token WHERE token_hash = $3 AND client_id = $4)",
        )
        .bind(&challenge_id)
        .bind(&code_hash)
        .bind(&token_hash)
        .bind(&client_id)
        .fetch_one(&sql)
    };
    assert_eq!(issued().await.expect("issued"), (1, 1, 1), "the request, code and token survive the upgrade");

    sql.execute(sqlx::query("DELETE FROM oidc_application WHERE client_id = $1").bind(&client_id))
        .await
        .expect("delete the application");
    assert_eq!(issued().await.expect("issued"), (0, 0, 0), "deleting the application deletes what it was issued");
    sql.close().await;
}

#[tokio::test]
async fn upgrading_to_applications_keeps_each_oidc_client_and_what_it_issued() {
    on_each_backend(upgrade_keeps_oidc_client).await;
}
