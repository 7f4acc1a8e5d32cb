//! The periodic sweep: old challenges, expired sessions, old sign-in events
//! and old audit records are deleted, so that no table grows without bound.
//!
//! Every instance may run the sweep at the same time. Each step is a DELETE
//! whose condition holds for good once it holds (a row only gets older, and
//! an event only gets more newer events above it), so two sweeps can at worst
//! both try to delete the same row, and one of them finds nothing. The one
//! condition that can stop holding, a registration left unconfirmed, is
//! checked under locks on PostgreSQL (see [`unconfirmed`]). Rows go in
//! batches, so a first sweep of a large table never holds SQLite's write lock
//! for long.

use std::time::Duration;

use sesame_proto::UnixTime;

use crate::{
    db::{
        locks::{self, Doomed},
        sql::query,
        Backend, Db,
    },
    error::Result,
    state::AppState,
};

/// Rows deleted per statement.
const BATCH: i64 = 5000;

/// How long finished rows are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// A challenge is deleted this long after it expired (and so after it
    /// ended): its status can still be read, and a completed one redeemed,
    /// until then.
    pub challenge_secs: u64,
    /// Sign-in events older than this are deleted.
    pub event_secs: u64,
    /// Each service keeps at most its newest this many sign-in events.
    pub events_per_service: u64,
    /// Records of the admin audit log older than this are deleted.
    pub audit_secs: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            challenge_secs: 24 * 60 * 60,
            event_secs: 90 * 24 * 60 * 60,
            events_per_service: 10_000,
            audit_secs: 365 * 24 * 60 * 60,
        }
    }
}

/// What one sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub challenges: u64,
    pub sessions: u64,
    pub admin_sessions: u64,
    pub events: u64,
    /// Accounts whose only keys waited for confirmation longer than a
    /// challenge is kept (nobody can confirm them any more).
    pub unconfirmed_accounts: u64,
    /// Other keys that waited that long.
    pub unconfirmed_keys: u64,
    pub audit_events: u64,
    /// OpenID Connect requests abandoned on their login page, spent or
    /// expired codes, expired access tokens, and refresh tokens whose chain
    /// ended.
    pub oidc: u64,
    /// Recovery links that expired longer than a challenge is kept.
    pub recovery_links: u64,
    /// Passkey ceremonies started and never finished, once expired.
    pub passkey_ceremonies: u64,
}

impl Swept {
    /// The rows deleted, by the table the metrics name.
    fn rows_by_table(&self) -> [(&'static str, u64); 10] {
        [
            ("challenge", self.challenges),
            ("session", self.sessions),
            ("admin_session", self.admin_sessions),
            ("sign_in_event", self.events),
            ("account", self.unconfirmed_accounts),
            ("account_key", self.unconfirmed_keys),
            ("audit_event", self.audit_events),
            ("oidc", self.oidc),
            ("account_recovery", self.recovery_links),
            ("passkey_ceremony", self.passkey_ceremonies),
        ]
    }
}

/// Deletes what `retention` no longer keeps at `now`.
pub async fn sweep(db: &Db, now: UnixTime, retention: &Retention) -> Result<Swept> {
    let now = now.as_secs() as i64;
    let challenge_cutoff = now.saturating_sub(retention.challenge_secs as i64);
    let event_cutoff = now.saturating_sub(retention.event_secs as i64);
    let audit_cutoff = now.saturating_sub(retention.audit_secs as i64);
    let (unconfirmed_accounts, unconfirmed_keys) = unconfirmed(db, challenge_cutoff).await?;
    Ok(Swept {
        unconfirmed_accounts,
        unconfirmed_keys,
        challenges: in_batches(
            db,
            "DELETE FROM challenge WHERE id IN (SELECT id FROM challenge WHERE expires_at <= $1 LIMIT $2)",
            challenge_cutoff,
        )
        .await?,
        passkey_ceremonies: in_batches(
            db,
            "DELETE FROM passkey_ceremony WHERE id IN \
             (SELECT id FROM passkey_ceremony WHERE expires_at <= $1 LIMIT $2)",
            now,
        )
        .await?,
        sessions: in_batches(
            db,
            "DELETE FROM session WHERE id_hash IN (SELECT id_hash FROM session WHERE expires_at <= $1 LIMIT $2)",
            now,
        )
        .await?,
        admin_sessions: in_batches(
            db,
            "DELETE FROM admin_session WHERE id_hash IN \
             (SELECT id_hash FROM admin_session WHERE expires_at <= $1 LIMIT $2)",
            now,
        )
        .await?,
        events: in_batches(
            db,
            "DELETE FROM sign_in_event WHERE id IN (SELECT id FROM sign_in_event WHERE at <= $1 LIMIT $2)",
            event_cutoff,
        )
        .await?
            + in_batches(
                db,
                // Ids grow with time, so a rank by id is a rank by age, and
                // a row's rank can only grow as newer events arrive.
                "DELETE FROM sign_in_event WHERE id IN (SELECT id FROM \
                 (SELECT id, ROW_NUMBER() OVER (PARTITION BY service_id ORDER BY id DESC) AS newer \
                 FROM sign_in_event) ranked WHERE newer > $1 LIMIT $2)",
                retention.events_per_service as i64,
            )
            .await?,
        oidc: in_batches(
            db,
            "DELETE FROM oidc_request WHERE challenge_id IN \
             (SELECT challenge_id FROM oidc_request WHERE created_at <= $1 LIMIT $2)",
            challenge_cutoff,
        )
        .await?
            // A code is kept as long as a token issued from it may live, so
            // that a replay still revokes that token.
            + in_batches(
                db,
                "DELETE FROM oidc_code WHERE code_hash IN (SELECT code_hash FROM oidc_code WHERE expires_at <= $1 LIMIT $2)",
                now.saturating_sub(crate::oidc::ACCESS_TOKEN_SECS),
            )
            .await?
            + in_batches(
                db,
                "DELETE FROM oidc_token WHERE token_hash IN \
                 (SELECT token_hash FROM oidc_token WHERE expires_at <= $1 LIMIT $2)",
                now,
            )
            .await?
            // A spent refresh token is kept while its chain lives, so that
            // a copy used later still revokes the chain; a live one that
            // ran out its idle time goes at once.
            + in_batches(
                db,
                "DELETE FROM oidc_refresh_token WHERE token_hash IN (SELECT token_hash FROM oidc_refresh_token \
                 WHERE chain_expires_at <= $1 OR (used_at IS NULL AND expires_at <= $1) LIMIT $2)",
                now,
            )
            .await?,
        audit_events: in_batches(
            db,
            "DELETE FROM audit_event WHERE id IN (SELECT id FROM audit_event WHERE at <= $1 LIMIT $2)",
            audit_cutoff,
        )
        .await?,
        // Kept a while after they expire, so that someone who opens one
        // late is told it expired rather than that it never existed.
        recovery_links: in_batches(
            db,
            "DELETE FROM account_recovery WHERE id IN \
             (SELECT id FROM account_recovery WHERE expires_at <= $1 LIMIT $2)",
            challenge_cutoff,
        )
        .await?,
    })
}

/// The accounts that an unconfirmed registration made, with `$1` the
/// cutoff: one of their keys waits for confirmation since `$1` or before, and
/// none of their keys is active. (A key enrolled into an existing account
/// never makes it one: an account being recovered may have no active key at
/// all. An account without any key, its keys removed by an admin, is not one
/// either.)
macro_rules! abandoned {
    ($account:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM account_key k WHERE k.service_id = ",
            $account,
            ".service_id AND k.account = ",
            $account,
            ".name AND k.state = 'pending' AND k.added_by = 'register' AND k.created_at <= $1) \
             AND NOT EXISTS (SELECT 1 FROM account_key k WHERE k.service_id = ",
            $account,
            ".service_id AND k.account = ",
            $account,
            ".name AND k.state = 'active')"
        )
    };
}

/// Deletes what waited for confirmation since `cutoff` or before: first the
/// accounts that such a registration created (their keys go with them),
/// then the remaining stale pending keys. Once the challenge that registered
/// a key is swept, no page can confirm it.
///
/// Unlike the sweep's other conditions, "unconfirmed" can stop holding: the
/// page may confirm the key while the sweep runs. On SQLite, with one writer
/// at a time, a statement's check and its delete see the same database. On
/// PostgreSQL a statement checks on a snapshot taken as it starts, and
/// deleting an account takes its keys with it (`ON DELETE CASCADE`), a key
/// confirmed meanwhile included. So there each account goes in a
/// transaction of its own that first locks what its deletion takes
/// (`db::locks::before_delete`: its links, codes and keys, then its row),
/// and only then checks: the locks wait for a confirmation, a login or an
/// added key in flight, and the check sees what they did. The stale keys themselves go by
/// a statement whose own row's condition PostgreSQL checks again on a row
/// that changed meanwhile.
async fn unconfirmed(db: &Db, cutoff: i64) -> Result<(u64, u64)> {
    let accounts = match db.backend {
        Backend::Sqlite => {
            let sql = concat!(
                "DELETE FROM account WHERE (service_id, name) IN (SELECT a.service_id, a.name FROM account a WHERE ",
                abandoned!("a"),
                " LIMIT $2)"
            );
            in_batches(db, sql, cutoff).await?
        }
        Backend::Postgres => abandoned_accounts_one_by_one(db, cutoff).await?,
    };
    // The row's own conditions stand outside the subquery too: PostgreSQL
    // checks those again on a row that changed while the statement waited
    // for it (a key confirmed meanwhile), not the subquery's.
    let keys = in_batches(
        db,
        "DELETE FROM account_key WHERE state = 'pending' AND created_at <= $1 AND id IN \
         (SELECT id FROM account_key WHERE state = 'pending' AND created_at <= $1 LIMIT $2)",
        cutoff,
    )
    .await?;
    Ok((accounts, keys))
}

/// PostgreSQL's way of deleting the accounts [`abandoned!`] names: see
/// [`unconfirmed`].
async fn abandoned_accounts_one_by_one(db: &Db, cutoff: i64) -> Result<u64> {
    let mut total = 0;
    loop {
        let candidates = db
            .fetch_all(
                query(concat!("SELECT a.service_id, a.name FROM account a WHERE ", abandoned!("a"), " LIMIT $2"))
                    .bind(cutoff)
                    .bind(BATCH),
                |row| Ok((row.text("service_id")?, row.text("name")?)),
            )
            .await?;
        let mut deleted = 0;
        for (service_id, name) in &candidates {
            let mut write = db.begin_write().await?;
            let mut conn = write.conn();
            locks::before_delete(&mut conn, Doomed::Account(service_id, name)).await?;
            deleted += conn
                .execute(
                    query(concat!(
                        "DELETE FROM account WHERE service_id = $2 AND name = $3 AND ",
                        abandoned!("account")
                    ))
                    .bind(cutoff)
                    .bind(service_id.as_str())
                    .bind(name.as_str()),
                )
                .await?;
            write.commit().await?;
        }
        total += deleted;
        // A candidate left alone no longer qualifies, and the next read
        // skips it. A full batch may hide more; but one that deleted
        // nothing (all its candidates changed meanwhile) ends the run, so
        // that it cannot loop: the next sweep takes the rest.
        if candidates.len() < BATCH as usize || deleted == 0 {
            return Ok(total);
        }
    }
}

/// Runs `sql` (with `$1` = `bound` and `$2` = the batch size) until a batch
/// deletes less than a full batch, each batch a write of its own. Returns
/// the rows deleted.
async fn in_batches(db: &Db, sql: &str, bound: i64) -> Result<u64> {
    let mut total = 0;
    loop {
        let mut write = db.begin_write().await?;
        let done = write.conn().execute(query(sql).bind(bound).bind(BATCH)).await?;
        write.commit().await?;
        total += done;
        if done < BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Sweeps every `period`, for as long as the server runs. A failed sweep is
/// logged and tried again at the next tick.
pub async fn every(state: AppState, period: Duration, retention: Retention) {
    let mut ticks = tokio::time::interval(period);
    // A server that was busy or asleep sweeps once, not once per missed tick.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let outcome = sweep(&state.db, state.clock.now(), &retention).await;
        crate::metrics::swept(outcome.as_ref().ok().map(|swept| swept.rows_by_table()).as_ref().map(|t| &t[..]));
        match outcome {
            Ok(swept) if swept == Swept::default() => tracing::debug!("sweep: nothing to delete"),
            Ok(swept) => tracing::info!(?swept, "sweep deleted old rows"),
            Err(e) => tracing::warn!(error = ?e, "sweep failed; trying again at the next one"),
        }
    }
}
