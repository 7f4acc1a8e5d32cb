//! Recovery links: how someone who lost every authenticator gets back into
//! their account without becoming a new one.
//!
//! An admin makes a link for one account. It is a URL with a 256-bit secret,
//! shown once; the database keeps only the secret's SHA-256, so a copy of
//! the database opens nothing. Opening the link shows an enrollment
//! challenge for that account (docs/PROTOCOL.md §12), and the link is used
//! up when a key enrolled through it is confirmed on that page
//! (`keys::confirm_enrollment`), in the same transaction. A link lives at
//! most [`MAX_TTL_SECS`], and an admin may revoke it before then.
//!
//! Its creation, revocation and use each write an audit record.

use crate::{
    audit::{self, Action, By, Record},
    db::{
        sql::{query, Constraint as _, Row, Violation},
        Db,
    },
    error::{Error, Result},
    http::cookie,
    signin::keys,
};

/// The longest a recovery link may live: a day.
pub const MAX_TTL_SECS: i64 = 24 * 60 * 60;
/// The shortest: long enough to read an email and open it.
pub const MIN_TTL_SECS: i64 = 60;

/// A link just made: the only time its secret exists outside the browser
/// that opens it.
#[derive(Debug)]
pub struct Created {
    pub id: String,
    /// The path of the link, `/services/{id}/recover/{secret}`: the caller
    /// puts the origin in front.
    pub path: String,
    pub expires_at: i64,
}

/// A link as the admin API lists it, without its secret (which is not kept).
#[derive(Debug, Clone)]
pub struct LinkInfo {
    pub id: String,
    pub revoke_other_keys: bool,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A link that may open an enrollment challenge now.
#[derive(Debug, Clone)]
pub struct OpenLink {
    pub id: String,
    pub account: String,
    pub revoke_other_keys: bool,
    pub expires_at: i64,
}

/// Makes a recovery link for `account` at the (non-built-in) service
/// `service_id`, valid for `ttl_secs`, and records it `by`.
pub(crate) async fn create(
    db: &Db,
    service_id: &str,
    account: &str,
    ttl_secs: i64,
    revoke_other_keys: bool,
    by: &By<'_>,
) -> Result<Created> {
    if !(MIN_TTL_SECS..=MAX_TTL_SECS).contains(&ttl_secs) {
        return Err(Error::bad_request(
            "invalid_ttl",
            format!("ttl_secs must be between {MIN_TTL_SECS} and {MAX_TTL_SECS} (a day)"),
        ));
    }
    // A name that could never have been registered names no account.
    if sesame_proto::AccountName::parse(account).is_err() {
        return Err(Error::UnknownAccount);
    }
    let id = keys::new_id();
    let secret = cookie::new_secret();
    let expires_at = by.at.saturating_add(ttl_secs);
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    // The admin service's accounts are admin authenticators, which only a
    // signed-in admin adds; the SELECT finds no row for them, nor for an
    // account that does not exist.
    let insert = query(
        "INSERT INTO account_recovery (id, secret_hash, service_id, account, revoke_other_keys, created_by, \
         created_at, expires_at) \
         SELECT $1, $2, a.service_id, a.name, $5, $6, $7, $8 FROM account a JOIN service s ON s.id = a.service_id \
         WHERE a.service_id = $3 AND a.name = $4 AND NOT s.builtin",
    )
    .bind(id.as_str())
    .bind(cookie::digest(&secret).to_vec())
    .bind(service_id)
    .bind(account)
    .bind(revoke_other_keys)
    .bind(by.actor.to_string())
    .bind(by.at)
    .bind(expires_at);
    let done = conn
        .execute(insert)
        .await
        // Deleted between the statement's snapshot and its foreign-key check.
        .on(Violation::ForeignKey, Error::UnknownAccount)?;
    if done == 0 {
        // Dropped uncommitted, the write rolls back.
        return Err(Error::UnknownAccount);
    }
    let detail = format!(
        "service {service_id}, link {id}, expires {expires_at}{}",
        if revoke_other_keys { ", revokes the other keys" } else { "" }
    );
    audit::record(&mut conn, by, Record::new(Action::RecoveryLinkCreated, account, &detail)).await?;
    write.commit().await?;
    Ok(Created { path: format!("/services/{service_id}/recover/{secret}"), id, expires_at })
}

/// The link whose secret is `secret` at `service_id`, if it may still be
/// used at `now`: `unknown_recovery_link` for no such link (or a revoked
/// one), `recovery_link_spent` for one that expired or was used.
pub async fn open(db: &Db, service_id: &str, secret: &str, now: i64) -> Result<OpenLink> {
    let select = query(
        "SELECT id, account, revoke_other_keys, expires_at, used_at, revoked_at \
         FROM account_recovery WHERE secret_hash = $1 AND service_id = $2",
    )
    .bind(cookie::digest(secret).to_vec())
    .bind(service_id);
    let (link, used_at, revoked_at) = db
        .fetch_optional(select, |row| {
            let link = OpenLink {
                id: row.text("id")?,
                account: row.text("account")?,
                revoke_other_keys: row.bool("revoke_other_keys")?,
                expires_at: row.int("expires_at")?,
            };
            Ok((link, row.opt_int("used_at")?, row.opt_int("revoked_at")?))
        })
        .await?
        .ok_or(Error::UnknownRecoveryLink)?;
    if revoked_at.is_some() {
        return Err(Error::UnknownRecoveryLink);
    }
    if used_at.is_some() || link.expires_at <= now {
        return Err(Error::RecoveryLinkSpent);
    }
    Ok(link)
}

/// The columns of a [`LinkInfo`], which [`link_info`] reads.
const LINK_COLUMNS: &str = "id, revoke_other_keys, created_by, created_at, expires_at, used_at, revoked_at";

/// The [`LinkInfo`] in `row`, of [`LINK_COLUMNS`].
fn link_info(row: &dyn Row) -> Result<LinkInfo> {
    Ok(LinkInfo {
        id: row.text("id")?,
        revoke_other_keys: row.bool("revoke_other_keys")?,
        created_by: row.text("created_by")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        used_at: row.opt_int("used_at")?,
        revoked_at: row.opt_int("revoked_at")?,
    })
}

/// The links made for an account, newest first.
pub async fn list(db: &Db, service_id: &str, account: &str) -> Result<Vec<LinkInfo>> {
    let sql = format!(
        "SELECT {LINK_COLUMNS} FROM account_recovery WHERE service_id = $1 AND account = $2 \
         ORDER BY created_at DESC, id"
    );
    db.fetch_all(query(&sql).bind(service_id).bind(account), link_info).await
}

/// The links of `accounts` at `service_id` that can still be used at `now`
/// (neither used, revoked nor expired), by account, oldest first: for the
/// admin page, in one query.
pub async fn usable_of_service(
    db: &Db,
    service_id: &str,
    accounts: &[String],
    now: i64,
) -> Result<std::collections::HashMap<String, Vec<LinkInfo>>> {
    if accounts.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let sql = format!(
        "SELECT account, {LINK_COLUMNS} FROM account_recovery WHERE service_id = $1 AND used_at IS NULL \
         AND revoked_at IS NULL AND expires_at > $2 AND account IN ({}) ORDER BY created_at, id",
        crate::db::placeholders(3, accounts.len())
    );
    let mut select = query(&sql).bind(service_id).bind(now);
    for account in accounts {
        select = select.bind(account.as_str());
    }
    let rows = db.fetch_all(select, |row| Ok((row.text("account")?, link_info(row)?))).await?;
    let mut by_account = std::collections::HashMap::<String, Vec<LinkInfo>>::new();
    for (account, link) in rows {
        by_account.entry(account).or_default().push(link);
    }
    Ok(by_account)
}

/// Revokes a link that has not been used, and records it `by`. A revoked
/// link opens nothing, and a page already open from it can no longer
/// confirm a key.
pub(crate) async fn revoke(db: &Db, service_id: &str, account: &str, id: &str, by: &By<'_>) -> Result<()> {
    // Neither a name that could never have been registered nor an id that
    // `keys::new_id` could not have made names a link (and PostgreSQL
    // would fail on a NUL byte instead of finding nothing).
    if sesame_proto::AccountName::parse(account).is_err() || !keys::is_key_id(id) {
        return Err(Error::UnknownRecoveryLink);
    }
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    let update = query(
        "UPDATE account_recovery SET revoked_at = $4 \
         WHERE id = $1 AND service_id = $2 AND account = $3 AND revoked_at IS NULL AND used_at IS NULL",
    )
    .bind(id)
    .bind(service_id)
    .bind(account)
    .bind(by.at);
    let done = conn.execute(update).await?;
    if done == 0 {
        // Dropped uncommitted, the write rolls back.
        return Err(Error::UnknownRecoveryLink);
    }
    let detail = format!("service {service_id}, link {id}");
    audit::record(&mut conn, by, Record::new(Action::RecoveryLinkRevoked, account, &detail)).await?;
    write.commit().await?;
    Ok(())
}
