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
        sql::{query, Constraint as _, Violation},
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
    let (code, hash) = new_secret();
    let insert = query(
        "INSERT INTO oidc_code (code_hash, client_id, service_id, account, key_id, redirect_uri, scope, nonce, \
         code_challenge, auth_time, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
    .bind(now + ttl_secs);
    db.write_statement(insert)
        .await
        // The account or key went between the sign-in and now.
        .on(Violation::ForeignKey, Error::UnknownAccount)?;
    Ok(code)
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
    let found = db
        .fetch_optional(
            query(
                "SELECT c.client_id, c.service_id, c.account, c.key_id, c.redirect_uri, c.scope, c.nonce, \
             c.code_challenge, c.auth_time, c.expires_at, c.used_at, a.subject, a.display_name, a.email, \
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
    let Some(mut code) = found else { return Ok(None) };
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
/// `with_refresh` the first refresh token of its chain, in one transaction:
/// the tokens exist exactly when the code is spent.
pub async fn redeem(db: &Db, code: &Code, now: i64, token_ttl_secs: i64, with_refresh: bool) -> Result<Redeemed> {
    let mut write = db.begin_write().await?;
    let consumed = write
        .conn()
        .execute(
            query("UPDATE oidc_code SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2")
                .bind(code.hash.clone())
                .bind(now),
        )
        .await?;
    if consumed == 0 {
        // Dropped, the write rolls back, and only then gives back the turn
        // that the revocation's own write waits for.
        drop(write);
        revoke(db, &code.hash).await?;
        return Ok(Redeemed::Replayed);
    }
    let mut conn = write.conn();
    let access = insert_access_token(
        &mut conn,
        &code.hash,
        &code.client_id,
        &code.scope,
        &code.signed_in,
        (now, token_ttl_secs),
    )
    .await?;
    let refresh = match with_refresh {
        true => {
            let chain = super::refresh::Chain { code_hash: &code.hash, client_id: &code.client_id, scope: &code.scope };
            Some(super::refresh::start(&mut conn, &chain, &code.signed_in, now).await?)
        }
        false => None,
    };
    write.commit().await?;
    Ok(Redeemed::Tokens { access, refresh })
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
    let found = db.fetch_optional(
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
    let Some((mut owner, service_id)) = found.await? else { return Ok(None) };
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
