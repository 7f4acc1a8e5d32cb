//! Refresh tokens (RFC 6749 §6), rotated at every use as RFC 9700 §4.14.2
//! asks of tokens a public client holds, and here of every client's.
//!
//! Every refresh token of one sign-in descends from one authorization code
//! and carries its hash: the chain. Using a refresh token spends it and
//! issues the next one with a new access token, in one transaction. A spent
//! token presented again was copied, by the client or by a thief, and which
//! of the two holds the live one cannot be told: the whole chain is revoked,
//! with every access token issued from it, and both must sign in again.
//!
//! A chain ends [`MAX_SECS`] after the sign-in that started it however
//! often it is used, and a token unused for [`IDLE_SECS`] ends with it.
//! Deleting the application, the account, the key that signed in or the
//! service deletes the chain (foreign keys, migration 0012).

use super::tokens::{digest, insert_access_token, new_secret};
use crate::{
    challenge::session::SignedIn,
    db::{
        sql::{query, Conn},
        Db,
    },
    error::Result,
};

/// How long a refresh token lives unused.
pub const IDLE_SECS: i64 = 30 * 24 * 60 * 60;
/// How long a chain lives from the sign-in that started it.
pub const MAX_SECS: i64 = 90 * 24 * 60 * 60;

/// A stored refresh token, before any check.
#[derive(Debug, Clone)]
pub struct Refresh {
    pub hash: Vec<u8>,
    /// The chain: the hash of the code it descends from.
    pub code_hash: Vec<u8>,
    pub client_id: String,
    pub scope: String,
    pub signed_in: SignedIn,
    pub expires_at: i64,
    pub chain_expires_at: i64,
    pub used: bool,
    /// The account's OIDC subject.
    pub subject: String,
    /// The account's profile now, for the claims the scope releases.
    pub profile: crate::signin::profile::Profile,
    /// The account's groups now, read only when the scope releases them.
    pub groups: Vec<String>,
    /// Whether the application still admits the account (it may admit only
    /// some groups, and the account may have left them).
    pub admitted: bool,
}

/// Starts the chain of a sign-in, in the transaction that spends its code:
/// returns its first refresh token.
pub(super) async fn start(conn: &mut Conn<'_>, chain: &Chain<'_>, who: &SignedIn, now: i64) -> Result<String> {
    let chain_expires_at = who.auth_time.max(now - MAX_SECS) + MAX_SECS;
    insert(conn, chain.code_hash, chain.client_id, chain.scope, who, now, chain_expires_at).await
}

/// What a chain descends from: the code its sign-in was redeemed with.
#[derive(Debug)]
pub(super) struct Chain<'a> {
    pub(super) code_hash: &'a [u8],
    pub(super) client_id: &'a str,
    pub(super) scope: &'a str,
}

async fn insert(
    conn: &mut Conn<'_>,
    code_hash: &[u8],
    client_id: &str,
    scope: &str,
    who: &SignedIn,
    now: i64,
    chain_expires_at: i64,
) -> Result<String> {
    let (token, hash) = new_secret();
    let insert = query(
        "INSERT INTO oidc_refresh_token (token_hash, code_hash, client_id, service_id, account, key_id, scope, \
         auth_time, created_at, expires_at, chain_expires_at, amr) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(hash)
    .bind(code_hash.to_vec())
    .bind(client_id)
    .bind(who.service_id.as_str())
    .bind(who.account.as_str())
    .bind(who.key_id.as_deref())
    .bind(scope)
    .bind(who.auth_time)
    .bind(now)
    .bind((now + IDLE_SECS).min(chain_expires_at))
    .bind(chain_expires_at)
    .bind(who.amr.as_str());
    conn.execute(insert).await?;
    Ok(token)
}

/// The refresh token `token`, if one is stored (spent or not, expired or
/// not: the caller tells them apart), with its account's subject and
/// profile, its groups when its scope releases them, and whether its
/// application still admits the account.
pub async fn find(db: &Db, token: &str) -> Result<Option<Refresh>> {
    let hash = digest(token);
    let sql = format!(
        "SELECT r.code_hash, r.client_id, r.service_id, r.account, r.key_id, r.scope, r.auth_time, r.expires_at, \
         r.chain_expires_at, r.used_at, r.amr, a.subject, a.display_name, a.email, a.email_verified, {} AS admitted \
         FROM oidc_refresh_token r \
         JOIN account a ON a.service_id = r.service_id AND a.name = r.account WHERE r.token_hash = $1",
        super::groups::admits_sql("r.client_id", "r.service_id", "r.account")
    );
    let select = query(&sql).bind(hash.clone());
    let found = db.fetch_optional(select, |row| {
        Ok(Refresh {
            hash: hash.clone(),
            code_hash: row.blob("code_hash")?,
            client_id: row.text("client_id")?,
            scope: row.text("scope")?,
            signed_in: SignedIn::from_row(row)?,
            expires_at: row.int("expires_at")?,
            chain_expires_at: row.int("chain_expires_at")?,
            used: row.opt_int("used_at")?.is_some(),
            subject: row.text("subject")?,
            profile: crate::signin::profile::Profile::from_row(row)?,
            groups: Vec::new(),
            admitted: row.bool("admitted")?,
        })
    });
    let Some(mut refresh) = found.await? else { return Ok(None) };
    let who = &refresh.signed_in;
    refresh.groups = super::groups::released(db, &refresh.scope, &who.service_id, &who.account).await?;
    Ok(Some(refresh))
}

/// What a use of a refresh token came to.
#[derive(Debug)]
pub enum Rotated {
    /// The next refresh token of the chain, and an access token.
    Tokens { refresh: String, access: String },
    /// The token was spent, or ended, before this use took it: a spent one
    /// has revoked its chain.
    Refused,
}

/// Spends `refresh` and issues the next token of its chain and an access
/// token for `scope`, valid `access_ttl_secs`, in one transaction: the new
/// tokens exist exactly when the old one is spent. Of two uses of one token
/// at once, on any instances, one wins; the other finds it spent.
pub async fn rotate(db: &Db, refresh: &Refresh, scope: &str, now: i64, access_ttl_secs: i64) -> Result<Rotated> {
    let mut write = db.begin_write().await?;
    let spend = query(
        "UPDATE oidc_refresh_token SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
    );
    if write.conn().execute(spend.bind(refresh.hash.clone()).bind(now)).await? == 0 {
        // Spent meanwhile, by another use (a copy), or ended: which, read
        // through the write's own connection.
        let state = query("SELECT used_at FROM oidc_refresh_token WHERE token_hash = $1").bind(refresh.hash.clone());
        let spent = write.conn().fetch_optional(state, |row| row.opt_int("used_at")).await?.flatten().is_some();
        // Dropped, the write rolls back, and gives back the turn that the
        // revocation's own write waits for.
        drop(write);
        if spent {
            revoke_chain(db, &refresh.code_hash).await?;
        }
        return Ok(Rotated::Refused);
    }
    let mut conn = write.conn();
    let next = insert(
        &mut conn,
        &refresh.code_hash,
        &refresh.client_id,
        scope,
        &refresh.signed_in,
        now,
        refresh.chain_expires_at,
    )
    .await?;
    let access = insert_access_token(
        &mut conn,
        &refresh.code_hash,
        &refresh.client_id,
        scope,
        &refresh.signed_in,
        (now, access_ttl_secs),
    )
    .await?;
    write.commit().await?;
    Ok(Rotated::Tokens { refresh: next, access })
}

/// Revokes every refresh token of the chain `code_hash` and every access
/// token issued from it.
pub async fn revoke_chain(db: &Db, code_hash: &[u8]) -> Result<()> {
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    let refresh =
        conn.execute(query("DELETE FROM oidc_refresh_token WHERE code_hash = $1").bind(code_hash.to_vec())).await?;
    let access = conn.execute(query("DELETE FROM oidc_token WHERE code_hash = $1").bind(code_hash.to_vec())).await?;
    write.commit().await?;
    tracing::info!(refresh_tokens = refresh, access_tokens = access, "a refresh token chain is revoked");
    Ok(())
}
