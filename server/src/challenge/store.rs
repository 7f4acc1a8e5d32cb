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
//! Each transaction starts with its write (see `db/mod.rs` for why this matters
//! on SQLite).
//!
//! [`Challenges`] is the handle to all of it: the database, where pending
//! challenges are kept, the cache of service names, the bus that tells the
//! waiting pages, and the clock.

use std::sync::Arc;

use sesame_proto::{ChallengeId, MatchNumber, ServiceId, UnixTime};

use super::{
    pending::{Claim, Pending},
    row::{columns, refusal, ChallengeRow, Final, NewChallenge},
    services::{CachedService, ServiceNames},
    write::{self, uncancelled, Consumed, WriteAround},
};
use crate::{
    bus::Bus,
    clock::Clock,
    db::{
        locks,
        sql::{self, query, Conn, Constraint as _, Row, Violation},
        Db,
    },
    error::{Error, Result},
};

/// The challenges of this instance: every read and move of a challenge goes
/// through here. Cheap to clone: one `Arc`, so that what holds it (every
/// open event stream does) holds one count, not one per part.
#[derive(Debug, Clone)]
pub struct Challenges(Arc<Parts>);

#[derive(Debug)]
struct Parts {
    db: Db,
    pending: Pending,
    services: ServiceNames,
    bus: Bus,
    clock: Arc<dyn Clock>,
}

impl Challenges {
    /// Challenges kept in `pending` over `db`, published on `bus`.
    pub fn new(db: Db, bus: Bus, clock: Arc<dyn Clock>, pending: Pending) -> Self {
        Self(Arc::new(Parts { db, pending, services: ServiceNames::default(), bus, clock }))
    }

    /// The database they are kept in.
    pub fn db(&self) -> &Db {
        &self.0.db
    }

    /// The clock the challenges expire by.
    pub fn now(&self) -> UnixTime {
        self.0.clock.now()
    }

    /// Where pending challenges are kept.
    pub fn pending(&self) -> &Pending {
        &self.0.pending
    }

    /// The same challenges, with pending ones kept in `pending` instead
    /// (tests that compare the two on one database).
    pub fn keeping_pending(&self, pending: Pending) -> Self {
        let Parts { db, bus, clock, .. } = &*self.0;
        Self::new(db.clone(), bus.clone(), clock.clone(), pending)
    }

    /// What this instance has cached of service `id`, if anything.
    pub fn cached_service(&self, id: &ServiceId) -> Option<CachedService> {
        self.0.services.get(id)
    }

    /// Drops the cached entry of a service that changed or went.
    pub fn forget_service(&self, id: &ServiceId) {
        self.0.services.forget(id);
    }
}

impl Challenges {
    /// The name of a service, or `unknown_service`. Read from the database once
    /// per service and instance (see [`ServiceNames`] for why that is safe).
    pub async fn service_name(&self, id: &ServiceId) -> Result<String> {
        Ok(self.service(id).await?.name.to_string())
    }

    /// What a challenge needs of its service, or `unknown_service`; cached like
    /// [`Self::service_name`].
    pub async fn service(&self, id: &ServiceId) -> Result<CachedService> {
        if let Some(service) = self.0.services.get(id) {
            return Ok(service);
        }
        let select = query("SELECT name, builtin, number_matching FROM service WHERE id = $1").bind(id.to_string());
        let read = |row: &dyn Row| {
            Ok(CachedService {
                name: row.text("name")?.into(),
                builtin: row.bool("builtin")?,
                number_matching: row.bool("number_matching")?,
            })
        };
        let service = self.0.db.fetch_optional(select, read).await?.ok_or(Error::UnknownService)?;
        self.0.services.insert(*id, service.clone());
        Ok(service)
    }

    /// Stores a new pending challenge, and answers the number its page must
    /// show, if its service asks for one.
    pub async fn insert(&self, new: &NewChallenge<'_>) -> Result<Option<MatchNumber>> {
        let memory = match &self.0.pending {
            Pending::Memory(memory) => memory,
            Pending::Table => return self.insert_row(new).await,
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
        let service = self.service(&new.service_id).await?;
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
    async fn insert_row(&self, new: &NewChallenge<'_>) -> Result<Option<MatchNumber>> {
        let insert = query(
            // See `insert` for who may register and who is asked for a number.
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
        .bind(i64::from(new.number.get()));
        let number = self
            .0
            .db
            .write(move |mut conn, _| {
                Box::pin(async move {
                    let number = conn.fetch_one(insert, |row| row.opt_int("number")).await;
                    // The service was deleted between the lookup and the insert.
                    Ok(number.on(Violation::ForeignKey, Error::UnknownService)?)
                })
            })
            .await?;
        Ok(number.map(|_| new.number))
    }

    /// The challenge exactly as it is held: from memory while this instance
    /// holds it, otherwise its row.
    pub async fn load(&self, id: &ChallengeId) -> Result<ChallengeRow> {
        match self.held(id) {
            Some(row) => Ok(row),
            None => self.load_row(id).await,
        }
    }

    /// [`Self::load`] on `conn`, for code that holds a connection.
    pub(super) async fn load_on(&self, conn: &mut Conn<'_>, id: &ChallengeId) -> Result<ChallengeRow> {
        match self.held(id) {
            Some(row) => Ok(row),
            None => load_row_on(conn, id).await,
        }
    }

    /// The challenge as this instance holds it in memory, if it does.
    fn held(&self, id: &ChallengeId) -> Option<ChallengeRow> {
        match &self.0.pending {
            Pending::Memory(memory) => memory.get(id),
            Pending::Table => None,
        }
    }

    async fn load_row(&self, id: &ChallengeId) -> Result<ChallengeRow> {
        load_row_on(&mut self.0.db.read().await?.conn(), id).await
    }

    /// The challenge as it is at `now`: a pending challenge past its expiry is
    /// first moved to `expired` (and that is published), so every reader agrees.
    pub async fn current(&self, id: &ChallengeId) -> Result<ChallengeRow> {
        self.settle(self.load(id).await?).await
    }

    /// `row`, just read, as it is at `now`: see [`Self::current`]. Only an overdue
    /// row costs another read.
    pub async fn settle(&self, row: ChallengeRow) -> Result<ChallengeRow> {
        let now = self.0.clock.now();
        if !row.is_overdue(now) {
            return Ok(row);
        }
        if self.expire(&row.id, now).await? {
            self.publish(row.id).await;
        }
        self.load(&row.id).await
    }

    /// Records that `id` expired, if it is still pending and past its time.
    /// Returns whether this call made the change.
    /// The sign-in event is written by the database's trigger in the same
    /// statement (migrations 0006 and 0008).
    pub async fn expire(&self, id: &ChallengeId, now: UnixTime) -> Result<bool> {
        if let Pending::Memory(memory) = &self.0.pending {
            let Some(row) = memory.expire(id, now) else { return Ok(false) };
            // The expiry has happened, in memory, whatever becomes of its
            // record: a failure here loses only the row and its event.
            let id = *id;
            let recorded = self
                .0
                .db
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
        let update = query(
            "UPDATE challenge SET status = 'expired', hint = 'expired', finished_at = $2 \
             WHERE id = $1 AND status = 'pending' AND expires_at <= $2",
        );
        let done = self.0.db.write_statement(update.bind(id.to_string()).bind(now.as_secs() as i64)).await?;
        Ok(done == 1)
    }

    /// Moves pending, unexpired challenge `row` to `outcome` inside the caller's
    /// transaction, or explains why not: `challenge_used`, `challenge_expired`,
    /// or `unknown_account` for a login whose key was removed after it was read.
    /// The database's triggers record the sign-in event, and a login's use of
    /// its key, in the same statement (migrations 0006 and 0008).
    ///
    /// In a transaction, this must be its first statement.
    pub async fn consume(
        &self,
        conn: &mut Conn<'_>,
        row: &ChallengeRow,
        now: UnixTime,
        outcome: &Final,
    ) -> Result<Consumed> {
        let memory = match &self.0.pending {
            Pending::Memory(memory) => memory,
            Pending::Table => return consume_row(conn, &row.id, now, outcome, &self.0.bus).await,
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
        let consumed = Consumed::claimed(memory.clone(), row.id, outcome.clone(), now, self.0.bus.clone());
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

    /// Takes the writer's turn, begins a transaction around the sign-in
    /// writer ([`WriteAround`]), and consumes the challenge `row` with
    /// `outcome` first thing in it ([`Self::consume`]).
    pub async fn write_around(
        &self,
        row: &ChallengeRow,
        now: UnixTime,
        outcome: &Final,
    ) -> Result<(WriteAround, Consumed)> {
        let mut write = WriteAround::new(self.0.db.begin_write().await?);
        let consumed = self.consume(&mut write.conn(), row, now, outcome).await?;
        Ok((write, consumed))
    }

    /// Moves a challenge to a final state on its own (a login, deny, cancel)
    /// and publishes it, or explains why it could not, as [`Self::consume`] does.
    /// That is one statement, a write of the sign-in writer
    /// ([`crate::db::writer`]), which needs no transaction of its own. Like
    /// [`Consumed::commit`], it runs in a task of its own, which a request cut
    /// off cannot split: an answer whose client went away is still published.
    pub async fn finish(&self, row: &ChallengeRow, now: UnixTime, outcome: &Final) -> Result<()> {
        let (this, row, outcome) = (self.clone(), row.clone(), outcome.clone());
        uncancelled(async move {
            let (challenges, id) = (this.clone(), row.id);
            let consumed = this
                .0
                .db
                .write(move |mut conn, _| {
                    Box::pin(async move { challenges.consume(&mut conn, &row, now, &outcome).await })
                })
                .await?;
            consumed.committed();
            this.publish(id).await;
            Ok(())
        })
        .await
    }

    /// Marks a pending challenge as seen by an authenticator. Returns whether the
    /// hint changed (only then is there something to publish).
    pub async fn mark_opened(&self, id: &ChallengeId, now: UnixTime) -> Result<bool> {
        if let Pending::Memory(memory) = &self.0.pending {
            return Ok(memory.mark_opened(id, now));
        }
        let update = query(
            "UPDATE challenge SET hint = 'opened' WHERE id = $1 AND status = 'pending' AND hint = 'outstanding' \
             AND expires_at > $2",
        );
        let done = self.0.db.write_statement(update.bind(id.to_string()).bind(now.as_secs() as i64)).await?;
        Ok(done == 1)
    }

    /// Lets challenge `id` register a new account. Only the admin page calls
    /// this, for a challenge a signed-in admin has just started (see
    /// `admin/sesame.rs`).
    pub async fn open_registration(&self, id: &ChallengeId) -> Result<()> {
        if let Pending::Memory(memory) = &self.0.pending {
            memory.open_registration(id);
            return Ok(());
        }
        let update = query("UPDATE challenge SET allow_register = TRUE WHERE id = $1");
        self.0.db.write_statement(update.bind(id.to_string())).await?;
        Ok(())
    }

    /// Tells the waiting streams. The stored state is the truth, so a failed
    /// publish is only logged: pollers and reconnecting streams still see it.
    pub async fn publish(&self, id: ChallengeId) {
        write::publish(&self.0.bus, id).await;
    }
}

/// The row of `id`, read on `conn`: code that holds a connection reads on
/// it rather than wait for a second one from a pool it may have exhausted.
async fn load_row_on(conn: &mut Conn<'_>, id: &ChallengeId) -> Result<ChallengeRow> {
    const SQL: &str = concat!("SELECT ", columns!(), " FROM challenge WHERE id = $1");
    conn.fetch_optional(sql::query(SQL).bind(id.to_string()), ChallengeRow::from_row)
        .await?
        .ok_or(Error::UnknownChallenge)
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
    // The check of the key locks its row on PostgreSQL: see the statement.
    let sql = locks::RECORD_LOGIN.on(conn);
    let done = conn
        .execute(
            sql::query(sql)
                .bind(row.id.to_string())
                .bind(row.service_id.to_string())
                .bind(row.base_token.clone())
                .bind(row.code_secret.as_bytes().to_vec())
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
            Some(Violation::NulInText) | None => Err(failure.into()),
        },
    }
}

async fn consume_row(
    conn: &mut Conn<'_>,
    id: &ChallengeId,
    now: UnixTime,
    outcome: &Final,
    bus: &Bus,
) -> Result<Consumed> {
    let now_secs = now.as_secs() as i64;
    // The key's row is locked on PostgreSQL, before the challenge's: see
    // the statement.
    let sql = locks::CONSUME_LOGIN.on(conn);
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
        return Ok(Consumed::row(*id, bus.clone()));
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
