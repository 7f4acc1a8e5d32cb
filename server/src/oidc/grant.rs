//! What an authorization grant goes through in storage: the request that
//! waits on a login page, the code it turns into, and the access token the
//! code is exchanged for.
//!
//! Codes and tokens are stored as SHA-256 digests. A code is consumed by a
//! conditional UPDATE, so that of any number of redemptions racing on any
//! number of instances exactly one changes the row; a code seen again after
//! that is a replay, and revokes the tokens issued from it.

use sesame_proto::ChallengeId;

use super::tokens::insert_access_token;
pub use super::tokens::{digest, new_secret};
pub use crate::challenge::session::SignedIn;
use crate::{
    db::{
        sql::{query, Conn, Constraint as _, Query, Violation},
        writer::Running,
        Db,
    },
    error::{Error, Result},
    signin::profile::Profile,
};

/// An authorization request, as the authorize endpoint accepted it.
#[derive(Debug, Clone)]
pub struct Request {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    /// The answer is posted by the browser (`response_mode=form_post`)
    /// rather than put in the redirect's query.
    pub form_post: bool,
}

impl Request {
    fn response_mode(&self) -> &'static str {
        if self.form_post {
            "form_post"
        } else {
            "query"
        }
    }
}

/// Parks `request` until the login page showing challenge `id` finishes.
pub async fn park(db: &Db, id: &ChallengeId, request: &Request, now: i64) -> Result<()> {
    let insert = query(
        "INSERT INTO oidc_request (challenge_id, client_id, redirect_uri, scope, state, nonce, code_challenge, \
         created_at, response_mode) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id.to_string())
    .bind(request.client_id.as_str())
    .bind(request.redirect_uri.as_str())
    .bind(request.scope.as_str())
    .bind(request.state.as_deref())
    .bind(request.nonce.as_deref())
    .bind(request.code_challenge.as_deref())
    .bind(now)
    .bind(request.response_mode());
    db.write_statement(insert)
        .await
        // The client was removed since the authorize endpoint read it.
        .on(Violation::ForeignKey, Error::OidcUnknownClient)?;
    Ok(())
}

/// Takes the request parked under challenge `id`, once: a second finish of
/// the same page finds nothing.
pub async fn take(db: &Db, id: &ChallengeId) -> Result<Option<Request>> {
    let delete = query(
        "DELETE FROM oidc_request WHERE challenge_id = $1 \
         RETURNING client_id, redirect_uri, scope, state, nonce, code_challenge, response_mode",
    )
    .bind(id.to_string());
    let taken = db.write_returning(delete, |row| {
        Ok(Request {
            client_id: row.text("client_id")?,
            redirect_uri: row.text("redirect_uri")?,
            scope: row.text("scope")?,
            state: row.opt_text("state")?,
            nonce: row.opt_text("nonce")?,
            code_challenge: row.opt_text("code_challenge")?,
            form_post: row.text("response_mode")? == "form_post",
        })
    });
    Ok(taken.await?)
}

/// Whether challenge `id` carries an authorization request.
pub async fn is_parked(db: &Db, id: &ChallengeId) -> Result<bool> {
    let found = db
        .fetch_optional(
            query("SELECT challenge_id FROM oidc_request WHERE challenge_id = $1").bind(id.to_string()),
            |row| row.text("challenge_id"),
        )
        .await?;
    Ok(found.is_some())
}

/// Issues a code for `request`, valid for `ttl_secs`.
pub async fn issue_code(db: &Db, request: &Request, who: &SignedIn, now: i64, ttl_secs: i64) -> Result<String> {
    let (code, insert) = new_code(request, who, now, ttl_secs);
    db.write_statement(insert)
        .await
        // The account or key went between the sign-in and now.
        .on(Violation::ForeignKey, Error::UnknownAccount)?;
    Ok(code)
}

/// A new code for `request`, valid for `ttl_secs`, and the statement that
/// stores it, for the caller to run: [`issue_code`], or the write of a
/// fresh sign-in's session (`session::redeem`).
pub fn new_code(request: &Request, who: &SignedIn, now: i64, ttl_secs: i64) -> (String, Query<'static>) {
    let (code, hash) = new_secret();
    let insert = query(
        "INSERT INTO oidc_code (code_hash, client_id, service_id, account, key_id, redirect_uri, scope, nonce, \
         code_challenge, auth_time, created_at, expires_at, amr) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(hash)
    .bind(request.client_id.as_str())
    .bind(who.service_id.as_str())
    .bind(who.account.as_str())
    .bind(who.key_id.as_deref())
    .bind(request.redirect_uri.as_str())
    .bind(request.scope.as_str())
    .bind(request.nonce.as_deref())
    .bind(request.code_challenge.as_deref())
    .bind(who.auth_time)
    .bind(now)
    .bind(now + ttl_secs)
    .bind(who.amr.clone());
    (code, insert)
}

/// A stored code, before any check.
#[derive(Debug, Clone)]
pub struct Code {
    pub hash: Vec<u8>,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub signed_in: SignedIn,
    pub expires_at: i64,
    pub used: bool,
    /// The account's OIDC subject.
    pub subject: String,
    /// The account's profile now, for the claims the scope releases.
    pub profile: Profile,
    /// The account's groups now, read only when the scope releases them.
    pub groups: Vec<String>,
}

pub async fn find_code(db: &Db, code: &str) -> Result<Option<Code>> {
    let hash = digest(code);
    // On the sign-in's own read path ([`Db::read_here`]).
    let found = db
        .read_here(
            query(
                "SELECT c.client_id, c.service_id, c.account, c.key_id, c.redirect_uri, c.scope, c.nonce, \
             c.code_challenge, c.auth_time, c.expires_at, c.used_at, c.amr, a.subject, a.display_name, a.email, \
             a.email_verified FROM oidc_code c \
             JOIN account a ON a.service_id = c.service_id AND a.name = c.account WHERE c.code_hash = $1",
            )
            .bind(hash.clone()),
            |row| {
                Ok(Code {
                    hash: hash.clone(),
                    client_id: row.text("client_id")?,
                    redirect_uri: row.text("redirect_uri")?,
                    scope: row.text("scope")?,
                    nonce: row.opt_text("nonce")?,
                    code_challenge: row.opt_text("code_challenge")?,
                    signed_in: SignedIn::from_row(row)?,
                    expires_at: row.int("expires_at")?,
                    used: row.opt_int("used_at")?.is_some(),
                    subject: row.text("subject")?,
                    profile: Profile::from_row(row)?,
                    groups: Vec::new(),
                })
            },
        )
        .await?;
    let Some(mut code) = found.into_iter().next() else { return Ok(None) };
    code.groups = super::groups::released(db, &code.scope, &code.signed_in.service_id, &code.signed_in.account).await?;
    Ok(Some(code))
}

/// What a redemption came to.
#[derive(Debug)]
pub enum Redeemed {
    /// This redemption consumed the code; here are the access token and,
    /// when asked for, the first refresh token.
    Tokens { access: String, refresh: Option<String> },
    /// Someone consumed the code first: this is a replay, and what was
    /// issued from the code has been revoked.
    Replayed,
}

/// Consumes `code` and issues an access token for it, and with
/// `with_refresh` the first refresh token of its chain, all or nothing: the
/// tokens exist exactly when the code is spent.
///
/// It is a write of the sign-in writer ([`Db::write`]), as a redemption of
/// a challenge is: on SQLite it shares its commit and sync with the writes
/// queued beside it, where a transaction of its own around the writer
/// (`Db::begin_write`) synced alone and held every other write up while it
/// ran. Its statements need a transaction, and open one, except in a group
/// commit, whose transaction holds SQLite's write lock (nothing comes
/// between them) and rolls back whole if the second fails.
pub async fn redeem(db: &Db, code: &Code, now: i64, token_ttl_secs: i64, with_refresh: bool) -> Result<Redeemed> {
    let redemption = Redemption {
        hash: code.hash.clone(),
        client_id: code.client_id.clone(),
        scope: code.scope.clone(),
        signed_in: code.signed_in.clone(),
        now,
        token_ttl_secs,
        with_refresh,
    };
    let redeemed = db
        .write(move |mut conn, running| {
            Box::pin(async move {
                match running {
                    Running::InGroup => redemption.run(&mut conn).await,
                    Running::Alone => {
                        // On an error the transaction is dropped, which rolls it back.
                        let mut tx = conn.begin().await?;
                        let redeemed = redemption.run(&mut tx.conn()).await?;
                        match redeemed {
                            Redeemed::Tokens { .. } => tx.commit().await?,
                            Redeemed::Replayed => tx.rollback().await?,
                        }
                        Ok(redeemed)
                    }
                }
            })
        })
        .await?;
    if let Redeemed::Replayed = redeemed {
        revoke(db, &code.hash).await?;
    }
    Ok(redeemed)
}

/// A redemption as [`redeem`] was asked for it, owned, for the writer.
struct Redemption {
    hash: Vec<u8>,
    client_id: String,
    scope: String,
    signed_in: SignedIn,
    now: i64,
    token_ttl_secs: i64,
    with_refresh: bool,
}

impl Redemption {
    /// Spends the code, then writes the tokens; writes nothing when the
    /// code was spent already (or has expired since it was read).
    async fn run(&self, conn: &mut Conn<'_>) -> Result<Redeemed> {
        let consumed = conn
            .execute(
                query("UPDATE oidc_code SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2")
                    .bind(self.hash.clone())
                    .bind(self.now),
            )
            .await?;
        if consumed == 0 {
            return Ok(Redeemed::Replayed);
        }
        let access = insert_access_token(
            conn,
            &self.hash,
            &self.client_id,
            &self.scope,
            &self.signed_in,
            (self.now, self.token_ttl_secs),
        )
        .await?;
        let refresh = match self.with_refresh {
            true => {
                let chain =
                    super::refresh::Chain { code_hash: &self.hash, client_id: &self.client_id, scope: &self.scope };
                Some(super::refresh::start(conn, &chain, &self.signed_in, self.now).await?)
            }
            false => None,
        };
        Ok(Redeemed::Tokens { access, refresh })
    }
}

/// Revokes every token issued from the code with digest `code_hash`, access
/// and refresh tokens alike (RFC 6749 §4.1.2: a code used twice revokes
/// what it gave).
pub async fn revoke(db: &Db, code_hash: &[u8]) -> Result<()> {
    tracing::warn!("an authorization code was used twice; the tokens issued from it are revoked");
    super::refresh::revoke_chain(db, code_hash).await
}

/// The client access token `token` was issued to, if it is stored.
pub async fn access_token_client(db: &Db, token: &str) -> Result<Option<String>> {
    let select = query("SELECT client_id FROM oidc_token WHERE token_hash = $1").bind(digest(token));
    db.fetch_optional(select, |row| row.text("client_id")).await
}

/// Revokes access token `token` alone.
pub async fn revoke_access_token(db: &Db, token: &str) -> Result<()> {
    db.write_statement(query("DELETE FROM oidc_token WHERE token_hash = $1").bind(digest(token))).await?;
    Ok(())
}

/// Who an access token speaks for.
#[derive(Debug, Clone)]
pub struct TokenOwner {
    pub subject: String,
    pub account: String,
    pub scope: String,
    /// The account's profile now, for the claims the scope releases.
    pub profile: Profile,
    /// The account's groups now, read only when the scope releases them.
    pub groups: Vec<String>,
}

pub async fn token_owner(db: &Db, token: &str, now: i64) -> Result<Option<TokenOwner>> {
    // On the sign-in's own read path ([`Db::read_here`]).
    let found = db.read_here(
        query(
            "SELECT a.subject, t.service_id, t.account, t.scope, a.display_name, a.email, a.email_verified FROM oidc_token t \
             JOIN account a ON a.service_id = t.service_id AND a.name = t.account \
             WHERE t.token_hash = $1 AND t.expires_at > $2",
        )
        .bind(digest(token))
        .bind(now),
        |row| {
            let owner = TokenOwner {
                subject: row.text("subject")?,
                account: row.text("account")?,
                scope: row.text("scope")?,
                profile: Profile::from_row(row)?,
                groups: Vec::new(),
            };
            Ok((owner, row.text("service_id")?))
        },
    );
    let Some((mut owner, service_id)) = found.await?.into_iter().next() else { return Ok(None) };
    owner.groups = super::groups::released(db, &owner.scope, &service_id, &owner.account).await?;
    Ok(Some(owner))
}

/// The OIDC subject of an account.
pub async fn subject(db: &Db, service_id: &str, account: &str) -> Result<Option<String>> {
    db.fetch_optional(
        query("SELECT subject FROM account WHERE service_id = $1 AND name = $2").bind(service_id).bind(account),
        |row| row.text("subject"),
    )
    .await
}
