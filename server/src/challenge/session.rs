//! Sessions: a completed challenge redeemed for one, its cookie minted,
//! found again by that cookie ("who is signed in to this service here"),
//! and ended.
//!
//! A session is stored by the SHA-256 of its cookie's value, never the value
//! itself. Redeeming is single-use across instances: the challenge is spent
//! by a conditional UPDATE in the same transaction that writes the session.

use axum::http::{HeaderMap, HeaderValue};
use sesame_proto::{wire::Status, ChallengeId, Origin, ServiceId, UnixTime};

use super::{
    row::{columns, ChallengeRow},
    session_cookie,
    store::Challenges,
    SESSION_SECS,
};
use crate::{
    db::{
        sql::{self, query, Conn, Constraint as _, Violation},
        writer::Running,
        Db,
    },
    error::{Error, Result},
    http::cookie::{self, SameSite},
    state::AppState,
};

/// Marks a completed challenge as used up by whatever it was redeemed for,
/// once: of racing callers exactly one gets `Ok`, the rest
/// `already_redeemed`.
pub async fn mark_redeemed(db: &Db, id: &ChallengeId, now: UnixTime) -> Result<()> {
    let update = query(
        "UPDATE challenge SET redeemed_at = $2 WHERE id = $1 AND status = 'completed' AND redeemed_at IS NULL \
         AND enroll_account IS NULL",
    );
    let done = db.write_statement(update.bind(id.to_string()).bind(now.as_secs() as i64)).await?;
    if done == 0 {
        return Err(Error::AlreadyRedeemed);
    }
    Ok(())
}

/// Turns a completed challenge into a session, once. `session_hash` is the
/// SHA-256 of the session cookie's value. `also`, when given, is one more
/// statement written with the session, all or nothing (the code of an
/// OIDC sign-in): one write, and on SQLite one sync, instead of two.
pub async fn redeem(
    challenges: &Challenges,
    id: &ChallengeId,
    now: UnixTime,
    session_hash: &[u8; 32],
    session_expires_at: i64,
    also: Option<sql::Query<'static>>,
) -> Result<ChallengeRow> {
    redeem_where(challenges, id, None, now, session_hash, session_expires_at, also).await
}

/// [`redeem`] for the browser whose binding cookie has the digest
/// `binding_hash`, checked in the same statement, so that the browser's
/// own redemption needs no read first. Another browser gets `wrong_browser`.
pub async fn redeem_bound(
    challenges: &Challenges,
    id: &ChallengeId,
    binding_hash: &[u8; 32],
    now: UnixTime,
    session_hash: &[u8; 32],
    session_expires_at: i64,
) -> Result<ChallengeRow> {
    redeem_where(challenges, id, Some(binding_hash), now, session_hash, session_expires_at, None).await
}

async fn redeem_where(
    challenges: &Challenges,
    id: &ChallengeId,
    binding_hash: Option<&[u8; 32]>,
    now: UnixTime,
    session_hash: &[u8; 32],
    session_expires_at: i64,
    also: Option<sql::Query<'static>>,
) -> Result<ChallengeRow> {
    let redemption = Redemption {
        id: *id,
        binding_hash: binding_hash.copied(),
        now: now.as_secs() as i64,
        session_hash: *session_hash,
        session_expires_at,
    };
    let challenges = challenges.clone();
    let db = challenges.db().clone();
    db.write_for_caller(move |mut conn, running| {
        Box::pin(async move { redeem_on(&challenges, &mut conn, running, &redemption, also).await })
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
async fn redeem_on(
    challenges: &Challenges,
    conn: &mut Conn<'_>,
    running: Running,
    r: &Redemption,
    also: Option<sql::Query<'static>>,
) -> Result<ChallengeRow> {
    let spent = match running {
        Running::InGroup => spend(conn, r, also).await?,
        Running::Alone => {
            // On an error the transaction is dropped, which rolls it back.
            let mut tx = conn.begin().await?;
            let spent = spend(&mut tx.conn(), r, also).await?;
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
            let row = challenges.load_on(conn, &r.id).await?;
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
///
/// Then `also`, if given. Its failure is the whole write's: an internal
/// error, which rolls back the session with it, in a group commit too.
async fn spend(conn: &mut Conn<'_>, r: &Redemption, also: Option<sql::Query<'static>>) -> Result<Spent> {
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
    let Some(row) = row else { return Ok(Spent::Raced) };
    if let Some(also) = also {
        conn.execute(also).await.map_err(|failure| {
            Error::Internal(anyhow::anyhow!("the write beside a session failed: {}", failure.error))
        })?;
    }
    Ok(Spent::Yes(Box::new(row)))
}

/// Who is signed in, and since when: a live session.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub service_id: String,
    pub account: String,
    /// The key that signed in, while it exists.
    pub key_id: Option<String>,
    /// When the person proved it with their authenticator (Unix seconds).
    pub auth_time: i64,
    /// How they proved it, as the ID token's `amr` says it (RFC 8176),
    /// space-separated: `swk` for a Sesame key; for a passkey `hwk` (bound
    /// to its device) or `swk` (one that may be synced), with `user` when
    /// the user was verified.
    pub amr: String,
}

/// How long after a sign-in its session may still change the account's
/// keys: add an authenticator or a passkey, or remove a key. Older, the
/// person signs in again first, as for a password change elsewhere: a
/// browser left signed in must not let whoever sits at it add their own key
/// or lock the owner out.
pub const RECENT_SIGN_IN_SECS: i64 = 600;

impl SignedIn {
    /// Whether the sign-in is recent enough to change the account's keys
    /// ([`RECENT_SIGN_IN_SECS`]); `sign_in_again` when it is not.
    pub fn recent(&self, now: i64) -> Result<()> {
        if now.saturating_sub(self.auth_time) <= RECENT_SIGN_IN_SECS {
            Ok(())
        } else {
            Err(Error::SignInAgain)
        }
    }

    /// Who a stored grant (a code, a refresh token) was made for: a row
    /// with the columns `service_id`, `account`, `key_id`, `auth_time` and
    /// `amr`.
    pub fn from_row(row: &dyn sql::Row) -> Result<Self> {
        Ok(Self {
            service_id: row.text("service_id")?,
            account: row.text("account")?,
            key_id: row.opt_text("key_id")?,
            auth_time: row.int("auth_time")?,
            amr: row.text("amr")?,
        })
    }
}

/// A new session's cookie value, and its digest, which is what is stored.
/// The value is always new: nothing a browser brought from before a
/// sign-in survives it.
pub struct Minted {
    value: String,
    pub digest: [u8; 32],
}

impl Minted {
    /// A value never seen before.
    pub fn fresh() -> Self {
        let value = cookie::new_secret();
        Self { digest: cookie::digest(&value), value }
    }

    /// The `Set-Cookie` that hands the value to the browser, for the
    /// service the session is at.
    pub fn set_cookie(&self, origin: &Origin, service_id: &ServiceId) -> HeaderValue {
        cookie::set(origin, &session_cookie(service_id), &self.value, SameSite::Lax, SESSION_SECS)
    }
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Minted(<redacted>)")
    }
}

/// The digest of the session cookie this browser sent for `service_id`, if
/// it sent one.
pub fn cookie_digest(origin: &Origin, headers: &HeaderMap, service_id: &ServiceId) -> Option<[u8; 32]> {
    cookie::secret(origin, headers, &session_cookie(service_id)).map(cookie::digest)
}

/// The session whose cookie has `session_hash` at service `service_id`,
/// if it is live at `now`.
pub async fn lookup(db: &Db, service_id: &str, session_hash: &[u8; 32], now: i64) -> Result<Option<SignedIn>> {
    let select = query(
        "SELECT account, key_id, created_at, amr FROM session \
         WHERE id_hash = $1 AND service_id = $2 AND expires_at > $3",
    )
    .bind(session_hash.to_vec())
    .bind(service_id)
    .bind(now);
    db.fetch_optional(select, |row| {
        Ok(SignedIn {
            service_id: service_id.to_owned(),
            account: row.text("account")?,
            key_id: row.opt_text("key_id")?,
            auth_time: row.int("created_at")?,
            amr: row.text("amr")?,
        })
    })
    .await
}

/// A session opened without a challenge: by a passkey, whose ceremony
/// stands in for the challenge (`signin/passkey`).
#[derive(Debug)]
pub struct Opened<'a> {
    pub service_id: &'a str,
    pub account: &'a str,
    pub key_id: &'a str,
    pub now: i64,
    pub session_hash: &'a [u8; 32],
    /// As [`SignedIn::amr`].
    pub amr: &'a str,
}

/// Writes the session `opened`, inside the caller's transaction, which has
/// just checked and stamped its key. It expires [`SESSION_SECS`] from now,
/// as a redeemed challenge's does.
pub async fn open_on(conn: &mut Conn<'_>, opened: &Opened<'_>) -> Result<()> {
    let insert = query(
        "INSERT INTO session (id_hash, service_id, account, key_id, created_at, expires_at, amr) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(opened.session_hash.to_vec())
    .bind(opened.service_id)
    .bind(opened.account)
    .bind(opened.key_id)
    .bind(opened.now)
    .bind(opened.now + SESSION_SECS)
    .bind(opened.amr);
    // The key or its account went meanwhile: nobody to give a session to.
    conn.execute(insert).await.on(Violation::ForeignKey, Error::UnknownAccount)?;
    Ok(())
}

/// Who this browser is signed in as at `service_id`, if anyone: the one
/// answer to that question for every page and route.
pub async fn of_browser(state: &AppState, service_id: &ServiceId, headers: &HeaderMap) -> Result<Option<SignedIn>> {
    let Some(digest) = cookie_digest(&state.settings.origin, headers, service_id) else { return Ok(None) };
    lookup(&state.db, &service_id.to_string(), &digest, state.clock.now().as_secs() as i64).await
}

/// The `Set-Cookie` that makes the browser forget its session at
/// `service_id`.
pub fn clear_cookie(origin: &Origin, service_id: &ServiceId) -> HeaderValue {
    cookie::clear(origin, &session_cookie(service_id), SameSite::Lax)
}

/// Ends the session whose cookie has the digest `session_hash` (a sign-out,
/// an application's logout); nothing happens if there is none.
pub async fn delete(db: &Db, session_hash: &[u8; 32]) -> Result<()> {
    db.write_statement(query("DELETE FROM session WHERE id_hash = $1").bind(session_hash.to_vec())).await?;
    Ok(())
}
