//! The periodic sweep on both databases, with the manual clock: what it
//! deletes, what it keeps, and that two instances sweeping at once agree.

use sesame_proto::UnixTime;
use sesame_server::ops::sweep::{sweep, Retention, Swept};

use crate::support::{each_backend, TestApp, START};

const DAY: u64 = 24 * 60 * 60;

const RETENTION: Retention =
    Retention { challenge_secs: DAY, event_secs: 7 * DAY, events_per_service: 3, audit_secs: 30 * DAY };

async fn exec(app: &TestApp, sql: &str, binds: &[i64]) {
    let mut query = sqlx::query(sql);
    for bind in binds {
        query = query.bind(*bind);
    }
    query.execute(&app.sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A challenge created at `created` that expires five minutes later, and
/// ended then unless it is `pending`. The sign-in event the database records
/// for an ended one is removed: each test places its events itself.
async fn challenge(app: &TestApp, service: &str, id: &str, status: &str, created: u64) {
    sqlx::query(
        "INSERT INTO challenge (id, service_id, base_token, code_secret, binding_hash, ip, user_agent, created_at, \
         expires_at, status, finished_at) VALUES ($1, $2, 'token', $3, $4, '127.0.0.1', 'ua', $5, $6, $7, $8)",
    )
    .bind(id.to_owned())
    .bind(service.to_owned())
    .bind(vec![0u8; 32])
    .bind(vec![0u8; 32])
    .bind(created as i64)
    .bind(created as i64 + 300)
    .bind(status.to_owned())
    .bind((status != "pending").then_some(created as i64 + 300))
    .execute(&app.sql)
    .await
    .expect("insert challenge");
    exec(app, &format!("DELETE FROM sign_in_event WHERE challenge_id = '{id}'"), &[]).await;
}

async fn event(app: &TestApp, service: &str, at: u64) {
    sqlx::query(
        "INSERT INTO sign_in_event (service_id, challenge_id, kind, ip, user_agent, at) \
         VALUES ($1, 'c', 'login', '127.0.0.1', 'ua', $2)",
    )
    .bind(service.to_owned())
    .bind(at as i64)
    .execute(&app.sql)
    .await
    .expect("insert event");
}

/// An account with one key in `state`, both created at `created`.
async fn account(app: &TestApp, service: &str, name: &str, state: &str, created: u64) {
    sqlx::query("INSERT INTO account (service_id, name, subject, created_at) VALUES ($1, $2, $3, $4)")
        .bind(service.to_owned())
        .bind(name.to_owned())
        .bind(sesame_server::signin::keys::new_id())
        .bind(created as i64)
        .execute(&app.sql)
        .await
        .expect("insert account");
    sqlx::query(
        "INSERT INTO account_key (id, service_id, account, public_key, state, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(sesame_server::signin::keys::new_id())
    .bind(service.to_owned())
    .bind(name.to_owned())
    .bind(name.as_bytes().repeat(32)[..32].to_vec())
    .bind(state.to_owned())
    .bind(created as i64)
    .execute(&app.sql)
    .await
    .expect("insert key");
}

/// An audit record written at `at`.
async fn audit_event(app: &TestApp, at: u64) {
    exec(
        app,
        "INSERT INTO audit_event (at, actor, action, target, detail, ip, user_agent) \
         VALUES ($1, 'token', 'service_created', 'x', '', '127.0.0.1', 'ua')",
        &[at as i64],
    )
    .await;
}

async fn ids(app: &TestApp, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sql).fetch_all(&app.sql).await.expect("ids")
}

#[tokio::test]
async fn sweep_deletes_what_retention_no_longer_keeps_and_nothing_else() {
    each_backend(|app| async move {
        let a = app.create_service("A").await.to_string();
        let b = app.create_service("B").await.to_string();
        let now = START + 300 + DAY;

        // Expired exactly a retention ago, or still pending past its expiry:
        // both go. One that expired an hour ago stays.
        challenge(&app, &a, &"1".repeat(32), "expired", START).await;
        challenge(&app, &a, &"2".repeat(32), "pending", START).await;
        challenge(&app, &a, &"3".repeat(32), "completed", now - 3600 - 300).await;

        account(&app, &a, "alice", "active", START).await;
        // A pending key from a day ago goes with the account it created; one
        // from an hour ago waits on. An account whose keys an admin removed
        // waits for recovery, and stays.
        account(&app, &a, "stale", "pending", now - DAY).await;
        account(&app, &a, "fresh", "pending", now - 3600).await;
        account(&app, &a, "keyless", "active", START).await;
        exec(&app, "DELETE FROM account_key WHERE account = 'keyless'", &[]).await;
        for (id, expires) in [(1, now), (2, now + 1)] {
            exec(
                &app,
                &format!(
                    "INSERT INTO session (id_hash, service_id, account, created_at, expires_at) \
                     VALUES ('{id}', '{a}', 'alice', $1, $2)"
                ),
                &[START as i64, expires as i64],
            )
            .await;
            exec(
                &app,
                &format!(
                    "INSERT INTO admin_session (id_hash, csrf_token, created_at, expires_at) VALUES ('{id}', 'csrf', $1, $2)"
                ),
                &[START as i64, expires as i64],
            )
            .await;
        }

        // A: one event older than a week, then five recent ones, of which
        // the newest three stay. B: two recent ones, both stay.
        event(&app, &a, START - 30 * DAY).await;
        for n in 0..5 {
            event(&app, &a, START + n).await;
        }
        for n in 0..2 {
            event(&app, &b, START + n).await;
        }

        // Audit records go exactly a retention after they were written.
        audit_event(&app, now - 30 * DAY).await;
        audit_event(&app, now - 30 * DAY + 1).await;

        app.clock.advance(now - START);
        let db = &app.state.db;
        // The time the server's own sweep task would use.
        let at = app.state.clock.now();
        assert_eq!(at, UnixTime::from_secs(now));
        // Two instances sweeping at the same moment: between them every row
        // goes once, and neither fails.
        let (one, two) = tokio::join!(sweep(db, at, &RETENTION), sweep(db, at, &RETENTION));
        let (one, two) = (one.expect("first sweep"), two.expect("second sweep"));
        let total = Swept {
            challenges: one.challenges + two.challenges,
            sessions: one.sessions + two.sessions,
            admin_sessions: one.admin_sessions + two.admin_sessions,
            events: one.events + two.events,
            unconfirmed_accounts: one.unconfirmed_accounts + two.unconfirmed_accounts,
            unconfirmed_keys: one.unconfirmed_keys + two.unconfirmed_keys,
            audit_events: one.audit_events + two.audit_events,
            oidc: one.oidc + two.oidc,
            recovery_links: one.recovery_links + two.recovery_links,
            passkey_ceremonies: one.passkey_ceremonies + two.passkey_ceremonies,
        };
        let expected = Swept {
            challenges: 2,
            sessions: 1,
            admin_sessions: 1,
            events: 3,
            unconfirmed_accounts: 1,
            unconfirmed_keys: 0,
            audit_events: 1,
            oidc: 0,
            recovery_links: 0,
            passkey_ceremonies: 0,
        };
        assert_eq!(total, expected);
        assert_eq!(ids(&app, "SELECT name FROM account ORDER BY name").await, vec!["alice", "fresh", "keyless"]);
        assert_eq!(app.count("SELECT COUNT(*) FROM account_key").await, 2);

        assert_eq!(ids(&app, "SELECT id FROM challenge").await, vec!["3".repeat(32)]);
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 1);
        assert_eq!(app.count(&format!("SELECT COUNT(*) FROM session WHERE expires_at = {}", now + 1)).await, 1);
        assert_eq!(app.count(&format!("SELECT COUNT(*) FROM admin_session WHERE expires_at = {}", now + 1)).await, 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM admin_session").await, 1);
        let kept_a: Vec<i64> = sqlx::query_scalar("SELECT at FROM sign_in_event WHERE service_id = $1 ORDER BY at")
            .bind(a.clone())
            .fetch_all(&app.sql)
            .await
            .expect("events");
        let start = START as i64;
        assert_eq!(kept_a, vec![start + 2, start + 3, start + 4]);
        assert_eq!(app.count(&format!("SELECT COUNT(*) FROM sign_in_event WHERE service_id = '{b}'")).await, 2);
        let kept_audit = format!("SELECT COUNT(*) FROM audit_event WHERE at = {}", now - 30 * DAY + 1);
        assert_eq!(app.count(&kept_audit).await, 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM audit_event").await, 1);

        assert_eq!(sweep(db, at, &RETENTION).await.expect("sweep again"), Swept::default());
    })
    .await;
}

#[tokio::test]
async fn sweep_keeps_everything_young_enough() {
    each_backend(|app| async move {
        let a = app.create_service("A").await.to_string();
        challenge(&app, &a, &"4".repeat(32), "denied", START).await;
        event(&app, &a, START).await;
        // A day after it expired, less a second.
        let at = UnixTime::from_secs(START + 300 + DAY - 1);
        assert_eq!(sweep(&app.state.db, at, &RETENTION).await.expect("sweep"), Swept::default());
        assert_eq!(app.count("SELECT COUNT(*) FROM challenge").await, 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM sign_in_event").await, 1);
    })
    .await;
}

/// A recovery link for `account`, made at `START`, that expires at
/// `expires_at`.
async fn recovery_link(app: &TestApp, service: &str, account: &str, id: &str, expires_at: u64, used: bool) {
    sqlx::query(
        "INSERT INTO account_recovery (id, secret_hash, service_id, account, revoke_other_keys, created_by, \
         created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, FALSE, 'token', $5, $6, $7)",
    )
    .bind(id.to_owned())
    .bind(id.as_bytes().to_vec())
    .bind(service.to_owned())
    .bind(account.to_owned())
    .bind(START as i64)
    .bind(expires_at as i64)
    .bind(used.then_some(START as i64))
    .execute(&app.sql)
    .await
    .expect("insert recovery link");
}

#[tokio::test]
async fn sweep_keeps_an_account_whose_only_key_is_an_unconfirmed_enrolled_one_and_drops_old_recovery_links() {
    each_backend(|app| async move {
        let a = app.create_service("A").await.to_string();
        let now = START + 2 * DAY;
        // An account being recovered: an admin removed its keys, and the
        // key enrolled through a recovery link a day ago was never
        // confirmed. The stale key goes; the account stays, to be recovered
        // again. A registration's unconfirmed key still takes its account.
        account(&app, &a, "recovering", "pending", now - DAY).await;
        exec(&app, "UPDATE account_key SET added_by = 'enroll' WHERE account = 'recovering'", &[]).await;
        account(&app, &a, "registering", "pending", now - DAY).await;

        // Links go a retention after they expired, used or not; younger
        // ones stay, so that whoever opens one late hears it expired.
        recovery_link(&app, &a, "recovering", &"a".repeat(32), now - DAY, false).await;
        recovery_link(&app, &a, "recovering", &"b".repeat(32), now - DAY, true).await;
        recovery_link(&app, &a, "recovering", &"c".repeat(32), now - DAY + 1, false).await;

        let swept = sweep(&app.state.db, UnixTime::from_secs(now), &RETENTION).await.expect("sweep");
        assert_eq!((swept.unconfirmed_accounts, swept.unconfirmed_keys, swept.recovery_links), (1, 1, 2), "{swept:?}");
        assert_eq!(ids(&app, "SELECT name FROM account ORDER BY name").await, vec!["recovering"]);
        assert_eq!(app.count("SELECT COUNT(*) FROM account_key").await, 0);
        assert_eq!(ids(&app, "SELECT id FROM account_recovery").await, vec!["c".repeat(32)]);
    })
    .await;
}

/// On PostgreSQL a registration left unconfirmed can be confirmed, or given
/// another key, while the sweep deletes it; deleting the account would take
/// that key with it. The sweep must wait for the change and then keep the
/// account. So too for a stale enrolled key that its page confirms while the
/// sweep deletes stale keys. Each change is held uncommitted until the sweep
/// waits for it.
#[tokio::test]
async fn sweep_on_postgres_keeps_a_key_confirmed_or_added_while_it_runs() {
    let Some(app) = crate::support::postgres_for_a_race().await else { return };
    let a = app.create_service("A").await.to_string();
    let now = START + 2 * DAY;
    let pool = app.sql.clone();
    let confirm = "UPDATE account_key SET state = 'active' WHERE account = 'late'".to_owned();
    let meanwhile = [
        // The page confirms the registration's key (keys::confirm).
        ("register", confirm.clone()),
        // A key is enrolled into the account and confirmed at once.
        (
            "register",
            format!(
                "INSERT INTO account_key (id, service_id, account, public_key, state, created_at) \
                 VALUES ('{}', '{a}', 'late', '\\x{}', 'active', {now})",
                sesame_server::signin::keys::new_id(),
                "ab".repeat(32)
            ),
        ),
        // The page confirms a key enrolled into the account: the account
        // is no candidate, the stale key is.
        ("enroll", confirm),
    ];
    for (added_by, change) in meanwhile {
        account(&app, &a, "late", "pending", now - DAY).await;
        exec(&app, &format!("UPDATE account_key SET added_by = '{added_by}'"), &[]).await;
        let mut held = pool.begin().await.expect("begin");
        sqlx::query(&change).execute(&mut *held).await.unwrap_or_else(|e| panic!("{change}: {e}"));
        let (swept, ()) = tokio::join!(sweep(&app.state.db, UnixTime::from_secs(now), &RETENTION), async {
            crate::support::until_waiting_on_locks(&pool, 1).await;
            held.commit().await.expect("commit the change");
        });
        let swept = swept.expect("sweep");
        assert_eq!(swept.unconfirmed_accounts, 0, "{added_by}, {change}: {swept:?}");
        assert_eq!(ids(&app, "SELECT name FROM account").await, vec!["late"], "{added_by}, {change}");
        let active = app.count("SELECT COUNT(*) FROM account_key WHERE state = 'active'").await;
        assert_eq!(active, 1, "{added_by}, {change}");
        exec(&app, "DELETE FROM account", &[]).await;
    }
    app.cleanup_handle().run().await;
}
