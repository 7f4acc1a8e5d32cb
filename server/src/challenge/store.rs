//! Challenge storage: every query that reads or moves a challenge lives here,
//! so the browser API, the login page and the authenticator API share one
//! set of state transitions.
//!
//! A pending challenge is held in memory on a single instance and in the
//! `challenge` table when several instances share the database (see
//! [`super::pending`]); an ended one is always a row of that table. Either
//! way a challenge leaves `pending` once: in memory through a claim taken
//! under a lock, in the table through a conditional UPDATE (`… WHERE status
//! = 'pending'`), so of any number of racing transitions exactly one wins.
//! Each transaction starts with its write (see `db.rs` for why this matters
//! on SQLite).

use sesame_proto::{wire::Status, ChallengeId, MatchNumber, ServiceId, UnixTime};
use sqlx::{Any, Row as _, Transaction};
use tokio::sync::OwnedMutexGuard;

use super::pending::{Claim, Pending};
use crate::{
    db::{timed, CachedService, Db},
    error::{Error, Result},
    sql::{self, Conn, Row, Violation},
    writer::Running,
};

/// A challenge row as stored.
#[derive(Clone)]
pub struct ChallengeRow {
    pub id: ChallengeId,
    pub service_id: ServiceId,
    pub base_token: String,
    pub code_secret: Vec<u8>,
    pub binding_hash: Vec<u8>,
    pub allow_register: bool,
    pub ip: String,
    pub user_agent: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub status: Status,
    pub hint: String,
    pub purpose: Option<String>,
    pub account: Option<String>,
    /// The key that completed a registration or a login.
    pub key_id: Option<String>,
    pub finished_at: Option<i64>,
    pub redeemed_at: Option<i64>,
    /// For an enrollment challenge, the existing account it adds a key to.
    pub enroll_account: Option<String>,
    /// For an enrollment challenge opened from a recovery link, that link.
    pub recovery_id: Option<String>,
    /// The number its page shows, when its service asks for one
    /// (PROTOCOL.md §14). Held while the challenge is pending; an ended row
    /// needs it no more.
    pub number: Option<MatchNumber>,
}

impl std::fmt::Debug for ChallengeRow {
    // The code secret and the binding hash stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChallengeRow")
            .field("id", &self.id)
            .field("service_id", &self.service_id)
            .field("status", &self.status)
            .field("hint", &self.hint)
            .finish_non_exhaustive()
    }
}

impl ChallengeRow {
    /// `new` as it starts: pending and outstanding, taking a new account
    /// if `allow_register`, asking for `number` if there is one.
    pub fn pending(new: &NewChallenge<'_>, allow_register: bool, number: Option<MatchNumber>) -> Self {
        Self {
            id: new.id,
            service_id: new.service_id,
            base_token: new.base_token.to_owned(),
            code_secret: new.code_secret.to_vec(),
            binding_hash: new.binding_hash.to_vec(),
            allow_register,
            ip: new.ip.to_owned(),
            user_agent: new.user_agent.to_owned(),
            created_at: new.created_at,
            expires_at: new.expires_at,
            status: Status::Pending,
            hint: "outstanding".to_owned(),
            purpose: None,
            account: None,
            key_id: None,
            finished_at: None,
            redeemed_at: None,
            enroll_account: new.enroll_account.map(str::to_owned),
            recovery_id: new.recovery_id.map(str::to_owned),
            number,
        }
    }

    /// Pending in the table, but past its expiry: it only waits for someone
    /// to write down that it expired.
    pub fn is_overdue(&self, now: UnixTime) -> bool {
        self.status == Status::Pending && now.as_secs() as i64 >= self.expires_at
    }

    fn from_row(row: &dyn Row) -> Result<Self> {
        let corrupt = |what: &str| Error::Internal(anyhow::anyhow!("stored challenge has a corrupt {what}"));
        Ok(Self {
            id: row.text("id")?.parse().map_err(|_| corrupt("id"))?,
            service_id: row.text("service_id")?.parse().map_err(|_| corrupt("service id"))?,
            base_token: row.text("base_token")?,
            code_secret: row.blob("code_secret")?,
            binding_hash: row.blob("binding_hash")?,
            allow_register: row.int("allow_register")? != 0,
            ip: row.text("ip")?,
            user_agent: row.text("user_agent")?,
            created_at: row.int("created_at")?,
            expires_at: row.int("expires_at")?,
            status: Status::parse(&row.text("status")?).ok_or_else(|| corrupt("status"))?,
            hint: row.text("hint")?,
            purpose: row.opt_text("purpose")?,
            account: row.opt_text("account")?,
            key_id: row.opt_text("key_id")?,
            finished_at: row.opt_int("finished_at")?,
            redeemed_at: row.opt_int("redeemed_at")?,
            enroll_account: row.opt_text("enroll_account")?,
            recovery_id: row.opt_text("recovery_id")?,
            number: row
                .opt_int("number")?
                .map(|n| u32::try_from(n).ok().and_then(|n| MatchNumber::new(n).ok()).ok_or_else(|| corrupt("number")))
                .transpose()?,
        })
    }
}

/// What a new challenge row holds.
#[derive(Debug)]
pub struct NewChallenge<'a> {
    pub id: ChallengeId,
    pub service_id: ServiceId,
    pub base_token: &'a str,
    pub code_secret: &'a [u8; 32],
    pub binding_hash: &'a [u8; 32],
    pub ip: &'a str,
    pub user_agent: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
    /// Set for an enrollment challenge: the account it adds a key to.
    pub enroll_account: Option<&'a str>,
    /// Set for an enrollment challenge opened from a recovery link.
    pub recovery_id: Option<&'a str>,
    /// Drawn for every challenge; kept only when its service asks for a
    /// number (PROTOCOL.md §14) and it is a sign-in.
    pub number: MatchNumber,
}

/// A final state and what it records.
#[derive(Debug, Clone)]
pub struct Final {
    pub status: Status,
    pub hint: &'static str,
    pub purpose: Option<&'static str>,
    pub account: Option<String>,
    /// The key that registered or signed in.
    pub key_id: Option<String>,
    /// For a login, the public key its signature was verified with: the
    /// login is written only while the key `key_id` still holds it, so that
    /// a rekey committing meanwhile refuses the old key (PROTOCOL.md §13).
    pub signed_with: Option<[u8; 32]>,
}

impl Final {
    pub fn registered(account: String, key_id: String) -> Self {
        Self::completed("register", account, key_id)
    }

    /// A login by `account`, signed with `public_key`, key `key_id`'s.
    pub fn logged_in(account: String, key_id: String, public_key: [u8; 32]) -> Self {
        Self { signed_with: Some(public_key), ..Self::completed("login", account, key_id) }
    }

    /// A key added to `account`, which waits for the page's confirmation.
    pub fn enrolled(account: String, key_id: String) -> Self {
        Self::completed("enroll", account, key_id)
    }

    fn completed(purpose: &'static str, account: String, key_id: String) -> Self {
        Self {
            status: Status::Completed,
            hint: purpose,
            purpose: Some(purpose),
            account: Some(account),
            key_id: Some(key_id),
            signed_with: None,
        }
    }

    pub fn denied() -> Self {
        Self {
            status: Status::Denied,
            hint: "user_denied",
            purpose: None,
            account: None,
            key_id: None,
            signed_with: None,
        }
    }

    /// The authenticator sent another number than the page shows
    /// (PROTOCOL.md §14): the sign-in is refused for good, so that the
    /// number cannot be guessed twice.
    pub fn wrong_number() -> Self {
        Self { hint: "wrong_number", ..Self::denied() }
    }

    pub fn cancelled() -> Self {
        Self {
            status: Status::Cancelled,
            hint: "user_cancel",
            purpose: None,
            account: None,
            key_id: None,
            signed_with: None,
        }
    }

    pub fn expired() -> Self {
        Self { status: Status::Expired, hint: "expired", purpose: None, account: None, key_id: None, signed_with: None }
    }

    /// `row` as this outcome leaves it.
    pub fn apply(&self, row: &mut ChallengeRow, now: UnixTime) {
        row.status = self.status;
        row.hint = self.hint.to_owned();
        row.purpose = self.purpose.map(str::to_owned);
        row.account = self.account.clone();
        row.key_id = self.key_id.clone();
        row.finished_at = Some(now.as_secs() as i64);
    }
}

/// The columns of a [`ChallengeRow`], as a literal, so that the statements
/// that read them are constants. sqlx's `Any` driver cannot decode SQLite's
/// BOOLEAN, so the flag is read as an integer on both databases.
macro_rules! columns {
    () => {
        "id, service_id, base_token, code_secret, binding_hash, \
         CASE WHEN allow_register THEN 1 ELSE 0 END AS allow_register, ip, user_agent, created_at, expires_at, \
         status, hint, purpose, account, key_id, finished_at, redeemed_at, enroll_account, recovery_id, number"
    };
}

/// The name of a service, or `unknown_service`. Read from the database once
/// per service and instance (see `db::ServiceNames` for why that is safe).
pub async fn service_name(db: &Db, id: &ServiceId) -> Result<String> {
    Ok(service(db, id).await?.name.to_string())
}

/// What a challenge needs of its service, or `unknown_service`; cached like
/// [`service_name`].
pub async fn service(db: &Db, id: &ServiceId) -> Result<CachedService> {
    if let Some(service) = db.service_names.get(id) {
        return Ok(service);
    }
    // sqlx's `Any` driver cannot decode SQLite's BOOLEAN.
    let row = sqlx::query(
        "SELECT name, CASE WHEN builtin THEN 1 ELSE 0 END AS builtin, \
         CASE WHEN number_matching THEN 1 ELSE 0 END AS number_matching FROM service WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(timed(&db.pool))
    .await?
    .ok_or(Error::UnknownService)?;
    let service = CachedService {
        name: row.try_get::<String, _>("name")?.into(),
        builtin: row.try_get::<i64, _>("builtin")? != 0,
        number_matching: row.try_get::<i64, _>("number_matching")? != 0,
    };
    db.service_names.insert(*id, service.clone());
    Ok(service)
}

/// Stores a new pending challenge, and answers the number its page must
/// show, if its service asks for one.
pub async fn insert(db: &Db, new: &NewChallenge<'_>) -> Result<Option<MatchNumber>> {
    let memory = match &db.pending {
        Pending::Memory(memory) => memory,
        Pending::Table => return insert_row(db, new).await,
    };
    // The built-in "Sesame admin" service takes no new accounts from a
    // challenge anyone can start; the admin page opens registration for the
    // challenges that a signed-in admin starts (see admin/sesame.rs). An
    // enrollment challenge registers no new account anywhere, and asks for
    // no number: its key waits for the page's confirmation instead (§11).
    //
    // The cached setting is exact here: pending challenges live in memory
    // only on a single instance, and that instance forgets its cache entry
    // when an admin changes the setting.
    let service = service(db, &new.service_id).await?;
    let sign_in = new.enroll_account.is_none();
    let number = (service.number_matching && sign_in).then_some(new.number);
    let row = ChallengeRow::pending(new, !service.builtin && sign_in, number);
    if !memory.insert(row) {
        tracing::warn!(capacity = memory.capacity(), "too many challenges are waiting; refusing a new one");
        return Err(Error::Unavailable);
    }
    Ok(number)
}

/// A new pending challenge as a row of the table. The service's settings
/// are read by the INSERT itself, since another instance may have changed
/// them since this one cached the service.
async fn insert_row(db: &Db, new: &NewChallenge<'_>) -> Result<Option<MatchNumber>> {
    let number: Option<i64> = sqlx::query_scalar(
        // See [`insert`] for who may register and who is asked for a number.
        "INSERT INTO challenge (id, service_id, base_token, code_secret, binding_hash, allow_register, ip, user_agent, \
         created_at, expires_at, enroll_account, recovery_id, number) VALUES ($1, $2, $3, $4, $5, \
         COALESCE((SELECT NOT builtin FROM service WHERE id = $2), $6) AND $11 IS NULL, $7, $8, $9, $10, $11, $12, \
         CASE WHEN $11 IS NULL AND (SELECT number_matching FROM service WHERE id = $2) THEN $13 END) \
         RETURNING number",
    )
    .bind(new.id.to_string())
    .bind(new.service_id.to_string())
    .bind(new.base_token.to_owned())
    .bind(new.code_secret.to_vec())
    .bind(new.binding_hash.to_vec())
    .bind(true)
    .bind(new.ip.to_owned())
    .bind(new.user_agent.to_owned())
    .bind(new.created_at)
    .bind(new.expires_at)
    .bind(new.enroll_account.map(str::to_owned))
    .bind(new.recovery_id.map(str::to_owned))
    .bind(i64::from(new.number.get()))
    .fetch_one(timed(&db.pool))
    .await
    // The service was deleted between the lookup and the insert.
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => Error::UnknownService,
        _ => Error::Database(e),
    })?;
    Ok(number.map(|_| new.number))
}

/// The challenge exactly as it is held: from memory while this instance
/// holds it, otherwise its row.
pub async fn load(db: &Db, id: &ChallengeId) -> Result<ChallengeRow> {
    match held(db, id) {
        Some(row) => Ok(row),
        None => load_row(db, id).await,
    }
}

/// [`load`] on `conn`, for code that holds a connection.
async fn load_on(db: &Db, conn: &mut Conn<'_>, id: &ChallengeId) -> Result<ChallengeRow> {
    match held(db, id) {
        Some(row) => Ok(row),
        None => load_row_on(conn, id).await,
    }
}

/// The challenge as this instance holds it in memory, if it does.
fn held(db: &Db, id: &ChallengeId) -> Option<ChallengeRow> {
    match &db.pending {
        Pending::Memory(memory) => memory.get(id),
        Pending::Table => None,
    }
}

async fn load_row(db: &Db, id: &ChallengeId) -> Result<ChallengeRow> {
    load_row_on(&mut Conn::Sqlx(&mut *db.pool.acquire().await?), id).await
}

/// The row of `id`, read on `conn`: code that holds a connection reads on
/// it rather than wait for a second one from a pool it may have exhausted.
async fn load_row_on(conn: &mut Conn<'_>, id: &ChallengeId) -> Result<ChallengeRow> {
    const SQL: &str = concat!("SELECT ", columns!(), " FROM challenge WHERE id = $1");
    conn.fetch_optional(sql::query(SQL).bind(id.to_string()), ChallengeRow::from_row)
        .await?
        .ok_or(Error::UnknownChallenge)
}

/// The challenge as it is at `now`: a pending challenge past its expiry is
/// first moved to `expired` (and that is published), so every reader agrees.
pub async fn current(state: &crate::AppState, id: &ChallengeId) -> Result<ChallengeRow> {
    settle(state, load(&state.db, id).await?).await
}

/// `row`, just read, as it is at `now`: see [`current`]. Only an overdue
/// row costs another read.
pub async fn settle(state: &crate::AppState, row: ChallengeRow) -> Result<ChallengeRow> {
    let now = state.clock.now();
    if !row.is_overdue(now) {
        return Ok(row);
    }
    if expire(&state.db, &row.id, now).await? {
        publish(state, row.id).await;
    }
    load(&state.db, &row.id).await
}

/// Records that `id` expired, if it is still pending and past its time.
/// Returns whether this call made the change.
/// The sign-in event is written by the database's trigger in the same
/// statement (migrations 0006 and 0008).
pub async fn expire(db: &Db, id: &ChallengeId, now: UnixTime) -> Result<bool> {
    if let Pending::Memory(memory) = &db.pending {
        let Some(row) = memory.expire(id, now) else { return Ok(false) };
        // The expiry has happened, in memory, whatever becomes of its
        // record: a failure here loses only the row and its event.
        let id = *id;
        let recorded = db
            .writes
            .write(move |mut conn, _| {
                Box::pin(async move {
                    Ok(match insert_ended(&mut conn, &row, None).await? {
                        Written::Yes | Written::KeyGone => None,
                        // It had ended in the database after all: that is
                        // the truth.
                        Written::AlreadyEnded => Some(load_row_on(&mut conn, &id).await?),
                    })
                })
            })
            .await;
        match recorded {
            Ok(Some(stored)) => memory.adopt(stored),
            Ok(None) => {}
            Err(e) => tracing::warn!(challenge = %id, error = %e, "could not record an expired challenge"),
        }
        return Ok(true);
    }
    let done = sqlx::query(
        "UPDATE challenge SET status = 'expired', hint = 'expired', finished_at = $2 \
         WHERE id = $1 AND status = 'pending' AND expires_at <= $2",
    )
    .bind(id.to_string())
    .bind(now.as_secs() as i64)
    .execute(timed(&db.pool))
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// What became of [`insert_ended`].
enum Written {
    Yes,
    /// A login whose key is no longer active: nothing was written.
    KeyGone,
    /// The challenge already has its row: it ended before, though memory
    /// did not learn it (a request cut off while it committed).
    AlreadyEnded,
}

/// An ended challenge's row, written once, when it ends. A login's row is
/// only written while the key that made it is still active and still holds
/// `signed_with`, the public key the login was verified with; the
/// database's triggers record the sign-in event and the key's use in the
/// same statement (migration 0008).
async fn insert_ended(conn: &mut Conn<'_>, row: &ChallengeRow, signed_with: Option<&[u8; 32]>) -> Result<Written> {
    // On PostgreSQL the check locks the key's row until the commit. Without
    // a lock it reads a snapshot taken as the statement starts: a change to
    // the key (its removal, its return to pending, a rekey) that commits
    // while this statement runs would go unseen, and the login be recorded
    // for a key that is no longer active, or no longer this public key. With
    // it, the check waits for that change and sees its outcome, and a change
    // that comes later waits for this commit. The lock is `FOR NO KEY
    // UPDATE`, the one the trigger's stamp of the key's use (`last_used_at`)
    // needs anyway: with `FOR SHARE`, two logins with one key would each hold
    // a share and wait for the other's to stamp it, a deadlock.
    let sql = sql::locking!(
        conn.is_postgres(),
        "INSERT INTO challenge (id, service_id, base_token, code_secret, binding_hash, allow_register, ip, \
         user_agent, created_at, expires_at, status, hint, purpose, account, key_id, finished_at, enroll_account, \
         recovery_id) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18 \
         WHERE $13 IS NULL OR $13 <> 'login' \
         OR EXISTS (SELECT 1 FROM account_key WHERE id = $15 AND public_key = $19 AND state = 'active'",
        " FOR NO KEY UPDATE",
        ")"
    );
    let done = conn
        .execute(
            sql::query(sql)
                .bind(row.id.to_string())
                .bind(row.service_id.to_string())
                .bind(row.base_token.clone())
                .bind(row.code_secret.clone())
                .bind(row.binding_hash.clone())
                .bind(row.allow_register)
                .bind(row.ip.clone())
                .bind(row.user_agent.clone())
                .bind(row.created_at)
                .bind(row.expires_at)
                .bind(row.status.as_str())
                .bind(row.hint.clone())
                .bind(row.purpose.clone())
                .bind(row.account.clone())
                .bind(row.key_id.clone())
                .bind(row.finished_at)
                .bind(row.enroll_account.clone())
                .bind(row.recovery_id.clone())
                .bind(signed_with.map(|key| key.to_vec())),
        )
        .await;
    match done {
        Ok(1) => Ok(Written::Yes),
        Ok(_) => Ok(Written::KeyGone),
        Err(failure) => match failure.violation {
            Some(Violation::Unique) => Ok(Written::AlreadyEnded),
            // The service was deleted while its challenge waited.
            Some(Violation::ForeignKey) => Err(Error::UnknownService),
            None => Err(failure.into()),
        },
    }
}

/// A challenge taken out of `pending` by a statement that has not committed
/// yet. [`Consumed::commit`] commits its transaction, [`Consumed::committed`]
/// records a statement that committed on its own; dropped instead (with its
/// transaction, which rolls back), it leaves the challenge pending again.
#[derive(Debug)]
#[must_use = "commit it, or the challenge is given back"]
pub struct Consumed {
    /// The claim on the in-memory entry, with the outcome to record there.
    claim: Option<(std::sync::Arc<super::pending::Memory>, ChallengeId, Final, UnixTime)>,
    /// The challenge, to publish once committed.
    id: ChallengeId,
}

impl Consumed {
    /// Commits `tx`, then makes the outcome visible in memory, then
    /// publishes it. `turn`, the writer's turn that `tx` was opened under
    /// ([`crate::writer::Writer::turn`]), is given back once the commit is
    /// done.
    ///
    /// A request whose client goes away is dropped at its next `.await`;
    /// the commit, the outcome it records and its publication run in a task
    /// of their own, so that this cannot split them (the row committed,
    /// memory still saying pending, or the waiting page never told), and
    /// the turn is held until SQLite's lock is free.
    pub async fn commit(
        self,
        state: &crate::AppState,
        tx: Transaction<'static, Any>,
        turn: Option<OwnedMutexGuard<()>>,
    ) -> Result<()> {
        let state = state.clone();
        uncancelled(async move {
            tx.commit().await?;
            drop(turn);
            let id = self.id;
            self.committed();
            publish(&state, id).await;
            Ok(())
        })
        .await
    }

    /// Makes the outcome visible in memory, once the statement that wrote it
    /// has committed outside any transaction.
    pub fn committed(mut self) {
        if let Some((memory, id, outcome, now)) = self.claim.take() {
            memory.finish(&id, &outcome, now);
        }
    }
}

impl Drop for Consumed {
    fn drop(&mut self) {
        if let Some((memory, id, _, _)) = self.claim.take() {
            memory.release(&id);
        }
    }
}

/// Moves pending, unexpired challenge `row` to `outcome` inside the caller's
/// transaction, or explains why not: `challenge_used`, `challenge_expired`,
/// or `unknown_account` for a login whose key was removed after it was read.
/// The database's triggers record the sign-in event, and a login's use of
/// its key, in the same statement (migrations 0006 and 0008).
///
/// In a transaction, this must be its first statement.
pub async fn consume(
    db: &Db,
    conn: &mut Conn<'_>,
    row: &ChallengeRow,
    now: UnixTime,
    outcome: &Final,
) -> Result<Consumed> {
    let memory = match &db.pending {
        Pending::Memory(memory) => memory,
        Pending::Table => return consume_row(conn, &row.id, now, outcome).await,
    };
    match memory.claim(&row.id, now) {
        Claim::Claimed => {}
        Claim::Taken(held) => return Err(refusal(&held, now).unwrap_or(Error::ChallengeClaimed)),
        // Not in memory: a challenge that ended before this instance
        // forgot it, or one from before a restart.
        Claim::Unknown => {
            return Err(match load_row_on(conn, &row.id).await {
                Ok(row) => refusal(&row, now).unwrap_or(Error::ChallengeExpired),
                Err(e) => e,
            })
        }
    }
    // From here the claim is given back if anything fails.
    let consumed = Consumed { claim: Some((memory.clone(), row.id, outcome.clone(), now)), id: row.id };
    let mut ended = row.clone();
    outcome.apply(&mut ended, now);
    match insert_ended(conn, &ended, outcome.signed_with.as_ref()).await? {
        Written::Yes => Ok(consumed),
        Written::KeyGone => Err(Error::UnknownAccount),
        Written::AlreadyEnded => {
            drop(consumed);
            let stored = load_row_on(conn, &row.id).await?;
            let refused = refusal(&stored, now).unwrap_or(Error::ChallengeExpired);
            memory.adopt(stored);
            Err(refused)
        }
    }
}

async fn consume_row(conn: &mut Conn<'_>, id: &ChallengeId, now: UnixTime, outcome: &Final) -> Result<Consumed> {
    let now_secs = now.as_secs() as i64;
    // The key's row is locked on PostgreSQL, as in `insert_ended`; it is
    // taken before the challenge's row, so racing answers queue at the key.
    let sql = sql::locking!(
        conn.is_postgres(),
        "UPDATE challenge SET status = $2, hint = $3, purpose = $4, account = $5, finished_at = $6, key_id = $7 \
         WHERE id = $1 AND status = 'pending' AND expires_at > $6 AND ($4 IS NULL OR $4 <> 'login' \
         OR EXISTS (SELECT 1 FROM account_key WHERE id = $7 AND public_key = $8 AND state = 'active'",
        " FOR NO KEY UPDATE",
        "))"
    );
    let done = conn
        .execute(
            sql::query(sql)
                .bind(id.to_string())
                .bind(outcome.status.as_str())
                .bind(outcome.hint)
                .bind(outcome.purpose)
                .bind(outcome.account.clone())
                .bind(now_secs)
                .bind(outcome.key_id.clone())
                .bind(outcome.signed_with.map(|key| key.to_vec())),
        )
        .await?;
    if done == 1 {
        return Ok(Consumed { claim: None, id: *id });
    }
    // Read on the connection held: on PostgreSQL the writer is the main
    // pool, which many failing answers at once could otherwise exhaust.
    Err(match load_row_on(conn, id).await {
        // Still pending and in time: the login's key is gone.
        Ok(row) if refusal(&row, now).is_none() => Error::UnknownAccount,
        Ok(row) => refusal(&row, now).unwrap_or(Error::ChallengeExpired),
        Err(e) => e,
    })
}

/// Moves a challenge to a final state on its own (a login, deny, cancel)
/// and publishes it, or explains why it could not, as [`consume`] does.
/// That is one statement, a write of the sign-in writer
/// ([`crate::writer`]), which needs no transaction of its own. Like
/// [`Consumed::commit`], it runs in a task of its own, which a request cut
/// off cannot split: an answer whose client went away is still published.
pub async fn finish(state: &crate::AppState, row: &ChallengeRow, now: UnixTime, outcome: &Final) -> Result<()> {
    let (state, row, outcome) = (state.clone(), row.clone(), outcome.clone());
    uncancelled(async move {
        let (db, id) = (state.db.clone(), row.id);
        let consumed = state
            .db
            .writes
            .write(move |mut conn, _| Box::pin(async move { consume(&db, &mut conn, &row, now, &outcome).await }))
            .await?;
        consumed.committed();
        publish(&state, id).await;
        Ok(())
    })
    .await
}

/// A transaction that goes around the sign-in writer, on sqlx's writer
/// connection (a registration, an enrollment, a rekey: each writes an
/// account, a key or an audit record beside the challenge), under the
/// writer's turn ([`crate::writer::Writer::turn`]). It derefs to the
/// transaction.
///
/// [`WriteAround::commit`] commits it and publishes the challenge it
/// consumed. Dropped instead (an error, or a request cut off), it is rolled
/// back in a task of its own, and only then is the turn given back: a
/// transaction merely dropped would be rolled back only when sqlx next uses
/// its connection, and the writer would meanwhile find SQLite's lock taken.
#[derive(Debug)]
pub struct WriteAround {
    /// Open until committed.
    tx: Option<Transaction<'static, Any>>,
    turn: Option<OwnedMutexGuard<()>>,
}

impl WriteAround {
    /// Takes the writer's turn, begins, and consumes the challenge `row`
    /// with `outcome` first thing in the transaction ([`consume`]).
    pub async fn consume(db: &Db, row: &ChallengeRow, now: UnixTime, outcome: &Final) -> Result<(Self, Consumed)> {
        let turn = db.writes.turn().await;
        let mut write = Self { tx: Some(db.writer.begin().await?), turn };
        let consumed = consume(db, &mut Conn::Sqlx(&mut write), row, now, outcome).await?;
        Ok((write, consumed))
    }

    /// Commits, then records and publishes what `consumed` did
    /// ([`Consumed::commit`]).
    pub async fn commit(mut self, state: &crate::AppState, consumed: Consumed) -> Result<()> {
        let tx = self.tx.take().expect("a write is open until it is committed");
        consumed.commit(state, tx, self.turn.take()).await
    }
}

impl std::ops::Deref for WriteAround {
    type Target = Transaction<'static, Any>;

    fn deref(&self) -> &Self::Target {
        self.tx.as_ref().expect("a write is open until it is committed")
    }
}

impl std::ops::DerefMut for WriteAround {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.tx.as_mut().expect("a write is open until it is committed")
    }
}

impl Drop for WriteAround {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let turn = self.turn.take();
            tokio::spawn(async move {
                if let Err(e) = tx.rollback().await {
                    tracing::warn!(error = %e, "could not roll back a failed write");
                }
                drop(turn);
            });
        }
    }
}

/// Runs `work` to its end even if the caller is dropped meanwhile.
async fn uncancelled(work: impl std::future::Future<Output = Result<()>> + Send + 'static) -> Result<()> {
    tokio::spawn(work).await.map_err(|e| Error::Internal(anyhow::anyhow!("a write task failed: {e}")))?
}

/// Why an answer to this challenge can no longer be taken, if it cannot.
pub fn refusal(row: &ChallengeRow, now: UnixTime) -> Option<Error> {
    match row.status {
        Status::Expired => Some(Error::ChallengeExpired),
        Status::Pending if row.is_overdue(now) => Some(Error::ChallengeExpired),
        Status::Pending => None,
        other => Some(Error::ChallengeFinished(other)),
    }
}

/// Marks a pending challenge as seen by an authenticator. Returns whether the
/// hint changed (only then is there something to publish).
pub async fn mark_opened(db: &Db, id: &ChallengeId, now: UnixTime) -> Result<bool> {
    if let Pending::Memory(memory) = &db.pending {
        return Ok(memory.mark_opened(id, now));
    }
    let done = sqlx::query(
        "UPDATE challenge SET hint = 'opened' WHERE id = $1 AND status = 'pending' AND hint = 'outstanding' \
         AND expires_at > $2",
    )
    .bind(id.to_string())
    .bind(now.as_secs() as i64)
    .execute(timed(&db.pool))
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// Lets challenge `id` register a new account. Only the admin page calls
/// this, for a challenge a signed-in admin has just started (see
/// `admin/sesame.rs`).
pub async fn open_registration(db: &Db, id: &ChallengeId) -> Result<()> {
    if let Pending::Memory(memory) = &db.pending {
        memory.open_registration(id);
        return Ok(());
    }
    sqlx::query("UPDATE challenge SET allow_register = TRUE WHERE id = $1")
        .bind(id.to_string())
        .execute(timed(&db.pool))
        .await?;
    Ok(())
}

/// Marks a completed challenge as used up by whatever it was redeemed for,
/// once: of racing callers exactly one gets `Ok`, the rest
/// `already_redeemed`.
pub async fn mark_redeemed(db: &Db, id: &ChallengeId, now: UnixTime) -> Result<()> {
    let done = sqlx::query(
        "UPDATE challenge SET redeemed_at = $2 WHERE id = $1 AND status = 'completed' AND redeemed_at IS NULL \
         AND enroll_account IS NULL",
    )
    .bind(id.to_string())
    .bind(now.as_secs() as i64)
    .execute(timed(&db.pool))
    .await?
    .rows_affected();
    if done == 0 {
        return Err(Error::AlreadyRedeemed);
    }
    Ok(())
}

/// Turns a completed challenge into a session, once. `session_hash` is the
/// SHA-256 of the session cookie's value.
pub async fn redeem(
    db: &Db,
    id: &ChallengeId,
    now: UnixTime,
    session_hash: &[u8; 32],
    session_expires_at: i64,
) -> Result<ChallengeRow> {
    redeem_where(db, id, None, now, session_hash, session_expires_at).await
}

/// [`redeem`] for the browser whose binding cookie has the digest
/// `binding_hash`, checked in the same statement, so that the browser's
/// own redemption needs no read first. Another browser gets `wrong_browser`.
pub async fn redeem_bound(
    db: &Db,
    id: &ChallengeId,
    binding_hash: &[u8; 32],
    now: UnixTime,
    session_hash: &[u8; 32],
    session_expires_at: i64,
) -> Result<ChallengeRow> {
    redeem_where(db, id, Some(binding_hash), now, session_hash, session_expires_at).await
}

async fn redeem_where(
    db: &Db,
    id: &ChallengeId,
    binding_hash: Option<&[u8; 32]>,
    now: UnixTime,
    session_hash: &[u8; 32],
    session_expires_at: i64,
) -> Result<ChallengeRow> {
    let redemption = Redemption {
        id: *id,
        binding_hash: binding_hash.copied(),
        now: now.as_secs() as i64,
        session_hash: *session_hash,
        session_expires_at,
    };
    let db = db.clone();
    let writes = db.writes.clone();
    writes
        .write_for_caller(move |mut conn, running| {
            Box::pin(async move { redeem_on(&db, &mut conn, running, &redemption).await })
        })
        .await
}

/// A redemption as [`redeem_where`] was asked for it.
#[derive(Debug, Clone, Copy)]
struct Redemption {
    id: ChallengeId,
    /// The browser's binding cookie's digest, when it must match.
    binding_hash: Option<[u8; 32]>,
    now: i64,
    session_hash: [u8; 32],
    session_expires_at: i64,
}

/// [`redeem_where`] on `conn`.
///
/// Its two statements need a transaction around them, and have one of their
/// own, except in a group commit of SQLite's writer: there the group's
/// transaction holds SQLite's write lock, so nothing can come between them,
/// and should the second fail, the error spoils the group, which rolls back
/// with the session. That spares a savepoint on every redemption under
/// load.
async fn redeem_on(db: &Db, conn: &mut Conn<'_>, running: Running, r: &Redemption) -> Result<ChallengeRow> {
    let spent = match running {
        Running::InGroup => spend(conn, r).await?,
        Running::Alone => {
            // On an error the transaction is dropped, which rolls it back.
            let mut tx = conn.begin().await?;
            let spent = spend(&mut tx.conn(), r).await?;
            match spent {
                Spent::Yes(_) => tx.commit().await?,
                Spent::Refused | Spent::Raced => tx.rollback().await?,
            }
            spent
        }
    };
    match spent {
        Spent::Yes(row) => Ok(*row),
        Spent::Raced if running == Running::InGroup => {
            Err(Error::Internal(anyhow::anyhow!("a challenge was spent between two statements of one group commit")))
        }
        Spent::Raced => Err(Error::AlreadyRedeemed),
        Spent::Refused => {
            let row = load_on(db, conn, &r.id).await?;
            // Digests of 256-bit secrets: comparing them leaks nothing useful.
            if r.binding_hash.is_some_and(|hash| row.binding_hash != hash) {
                return Err(Error::WrongBrowser);
            }
            // A completed enrollment added a key; it signs nobody in.
            Err(match row.status {
                Status::Completed if row.enroll_account.is_none() => Error::AlreadyRedeemed,
                _ => Error::NotCompleted,
            })
        }
    }
}

/// What became of [`spend`].
enum Spent {
    /// The session is written and the challenge spent: the row as it is now.
    Yes(Box<ChallengeRow>),
    /// Nothing was written: the challenge is not completed, already spent,
    /// or (with a binding to check) another browser's.
    Refused,
    /// The session was written, but the challenge was spent by a racing
    /// redemption before it could be: roll back.
    Raced,
}

/// Writes the session of challenge `r.id` if the challenge can be redeemed
/// (completed, not yet redeemed, not an enrollment, and, with a binding to
/// check, this browser's), then marks the challenge redeemed.
///
/// The session comes first, so that a refusal has written nothing: an
/// account or key deleted since the sign-in fails its foreign key, and the
/// challenge stays unredeemed. Two redemptions at once may both write a
/// session on PostgreSQL; the `UPDATE` lets only one of them spend the
/// challenge (the other waits for its row lock, then finds it spent), and
/// the loser rolls back.
async fn spend(conn: &mut Conn<'_>, r: &Redemption) -> Result<Spent> {
    // Without a binding to check, `$5 IS NULL` lets every row through.
    let inserted = conn
        .execute(
            sql::query(
                "INSERT INTO session (id_hash, service_id, account, key_id, created_at, expires_at) \
                 SELECT $1, service_id, account, key_id, $2, $3 FROM challenge \
                 WHERE id = $4 AND status = 'completed' AND redeemed_at IS NULL AND enroll_account IS NULL \
                 AND ($5 IS NULL OR binding_hash = $5)",
            )
            .bind(r.session_hash.to_vec())
            .bind(r.now)
            .bind(r.session_expires_at)
            .bind(r.id.to_string())
            .bind(r.binding_hash.map(|h| h.to_vec())),
        )
        .await;
    match inserted {
        Ok(1) => {}
        Ok(_) => return Ok(Spent::Refused),
        // The account or its key was deleted after it signed in: there is
        // nobody to give a session to.
        Err(failure) if failure.violation == Some(Violation::ForeignKey) => return Err(Error::UnknownAccount),
        Err(failure) => return Err(failure.into()),
    }
    // RETURNING hands back the row as the update left it: no second read.
    const SQL: &str =
        concat!("UPDATE challenge SET redeemed_at = $2 WHERE id = $1 AND redeemed_at IS NULL RETURNING ", columns!());
    let row = conn.fetch_optional(sql::query(SQL).bind(r.id.to_string()).bind(r.now), ChallengeRow::from_row).await?;
    Ok(match row {
        Some(row) => Spent::Yes(Box::new(row)),
        None => Spent::Raced,
    })
}

/// The account a live session cookie belongs to, at this service.
pub async fn session_account(
    db: &Db,
    service_id: &ServiceId,
    session_hash: &[u8; 32],
    now: UnixTime,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT account FROM session WHERE id_hash = $1 AND service_id = $2 AND expires_at > $3")
        .bind(session_hash.to_vec())
        .bind(service_id.to_string())
        .bind(now.as_secs() as i64)
        .fetch_optional(timed(&db.pool))
        .await?)
}

pub async fn delete_session(db: &Db, session_hash: &[u8; 32]) -> Result<()> {
    sqlx::query("DELETE FROM session WHERE id_hash = $1").bind(session_hash.to_vec()).execute(timed(&db.pool)).await?;
    Ok(())
}

/// Tells the waiting streams. The stored state is the truth, so a failed
/// publish is only logged: pollers and reconnecting streams still see it.
pub async fn publish(state: &crate::AppState, id: ChallengeId) {
    if let Err(e) = state.bus.publish(id).await {
        tracing::warn!(challenge = %id, error = %e, "could not publish a challenge change");
    }
}
