//! Keys as people see and change them: the lists of the account page and
//! the admin API, a key's name, and its removal with what goes with it.

use sesame_proto::{AccountName, AccountPublicKey, KeyLabel};

use super::{is_key_id, KeyState};
use crate::{
    audit::{self, Action, By, Record},
    db::{
        locks::{self, Doomed},
        sql::{query, Row},
        Db,
    },
    error::{Error, Result},
};

/// A key as the admin API and the account page list it.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub id: String,
    pub label: String,
    pub state: KeyState,
    /// The key id of PROTOCOL.md §2.2, hex; `None` for a stored key that no
    /// longer decodes.
    pub fingerprint: Option<String>,
    pub device_ip: String,
    pub device_user_agent: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// The address of the browser the key last signed in; empty before its
    /// first sign-in, and for a key last used before the server kept it.
    pub last_used_ip: String,
    /// `sesame`, or `passkey` for a passkey (`signin/passkey`), which has
    /// no fingerprint.
    pub kind: String,
}

/// The columns [`key_info`] reads, of `account_key k`.
const KEY_COLUMNS: &str = "k.id, k.label, k.state, k.public_key, k.device_ip, k.device_user_agent, k.created_at, \
                           k.last_used_at, k.last_used_ip, k.kind";

/// The keys of an existing account, oldest first; `unknown_account` when
/// the service has no such account. One query: the LEFT JOIN returns the
/// account's row even when it holds no key.
pub async fn list(db: &Db, service_id: &str, account: &str) -> Result<Vec<KeyInfo>> {
    // A name that could never have been registered names no account.
    let account = AccountName::parse(account).map_err(|_| Error::UnknownAccount)?;
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM account a LEFT JOIN account_key k ON k.service_id = a.service_id \
         AND k.account = a.name WHERE a.service_id = $1 AND a.name = $2 ORDER BY k.created_at, k.id"
    );
    let select = query(&sql).bind(service_id).bind(account.as_str());
    // The account's row, with no key, reads as `None`.
    let rows = db.fetch_all(select, key_info).await?;
    if rows.is_empty() {
        return Err(Error::UnknownAccount);
    }
    Ok(rows.into_iter().flatten().collect())
}

/// The keys of `accounts` of a service, by account name, each account's
/// oldest first: one query for a page that lists them. An account with no
/// key has no entry.
pub async fn of_service(
    db: &Db,
    service_id: &str,
    accounts: &[String],
) -> Result<std::collections::HashMap<String, Vec<KeyInfo>>> {
    if accounts.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let sql = format!(
        "SELECT {KEY_COLUMNS}, k.account FROM account_key k WHERE k.service_id = $1 AND k.account IN ({}) \
         ORDER BY k.account, k.created_at, k.id",
        crate::db::placeholders(2, accounts.len())
    );
    let mut select = query(&sql).bind(service_id);
    for account in accounts {
        select = select.bind(account.as_str());
    }
    let rows = db
        .fetch_all(select, |row| match key_info(row)? {
            Some(key) => Ok(Some((row.text("account")?, key))),
            None => Ok(None),
        })
        .await?;
    let mut by_account: std::collections::HashMap<String, Vec<KeyInfo>> = std::collections::HashMap::new();
    for (account, key) in rows.into_iter().flatten() {
        by_account.entry(account).or_default().push(key);
    }
    Ok(by_account)
}

/// A key from a row of [`KEY_COLUMNS`]; `None` for a row with no key (an
/// outer join's empty side).
fn key_info(row: &dyn Row) -> Result<Option<KeyInfo>> {
    let Some(id) = row.opt_text("id")? else { return Ok(None) };
    let public_key = row.blob("public_key")?;
    Ok(Some(KeyInfo {
        id,
        label: row.text("label")?,
        state: KeyState::parse(&row.text("state")?)?,
        fingerprint: AccountPublicKey::from_bytes(&public_key).ok().map(|k| k.key_id().to_string()),
        device_ip: row.text("device_ip")?,
        device_user_agent: row.text("device_user_agent")?,
        created_at: row.int("created_at")?,
        last_used_at: row.opt_int("last_used_at")?,
        last_used_ip: row.text("last_used_ip")?,
        kind: row.text("kind")?,
    }))
}

/// Removes one key of an account. The sessions it opened go with it (`ON
/// DELETE CASCADE`), in the same statement. Removing the last key leaves the
/// account, which can no longer sign in until it gets a key again.
pub(crate) async fn remove(db: &Db, service_id: &str, account: &str, key_id: &str, by: &By<'_>) -> Result<()> {
    // Neither a name that could never have been registered nor an id that
    // [`new_id`] could not have made names a key.
    if AccountName::parse(account).is_err() || !is_key_id(key_id) {
        return Err(Error::UnknownKey);
    }
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    // The account's own key, before anything is locked by its id: nobody
    // locks, even for a moment, the rows of a key that is not theirs.
    let owned = query("SELECT id FROM account_key WHERE service_id = $1 AND account = $2 AND id = $3")
        .bind(service_id)
        .bind(account)
        .bind(key_id);
    if conn.fetch_optional(owned, |row| row.text("id")).await?.is_none() {
        return Err(Error::UnknownKey);
    }
    locks::before_delete(&mut conn, Doomed::Key(key_id)).await?;
    let done = conn
        .execute(
            query("DELETE FROM account_key WHERE service_id = $1 AND account = $2 AND id = $3")
                .bind(service_id)
                .bind(account)
                .bind(key_id),
        )
        .await?;
    if done == 0 {
        // Dropped uncommitted, the write rolls back.
        return Err(Error::UnknownKey);
    }
    let detail = format!("service {service_id}, key {key_id}");
    audit::record(&mut conn, by, Record::new(Action::KeyRemoved, account, &detail)).await?;
    write.commit().await?;
    Ok(())
}

/// Names the key `key_id` of an account `label`, or clears its name
/// (`None`), for its signed-in owner; `unknown_key` when the account has no
/// such key, of either kind. The audit record is written `by` in the same
/// transaction.
pub(crate) async fn rename(
    db: &Db,
    service_id: &str,
    account: &str,
    key_id: &str,
    label: Option<&KeyLabel>,
    by: &By<'_>,
) -> Result<()> {
    if AccountName::parse(account).is_err() || !is_key_id(key_id) {
        return Err(Error::UnknownKey);
    }
    let label = label.map_or("", KeyLabel::as_str);
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    let update = query("UPDATE account_key SET label = $4 WHERE service_id = $1 AND account = $2 AND id = $3")
        .bind(service_id)
        .bind(account)
        .bind(key_id)
        .bind(label);
    if conn.execute(update).await? == 0 {
        // Dropped uncommitted, the write rolls back.
        return Err(Error::UnknownKey);
    }
    // A label is what the admin page shows beside the key anyway; quoted,
    // so that a label cannot pass for more of the detail.
    let detail = match label {
        "" => format!("service {service_id}, key {key_id}, name cleared"),
        named => format!("service {service_id}, key {key_id}, named {named:?}"),
    };
    audit::record(&mut conn, by, Record::new(Action::KeyRenamed, account, &detail)).await?;
    write.commit().await?;
    Ok(())
}

/// A key of an account, with what its removal would end.
#[derive(Debug, Clone)]
pub struct Removal {
    pub key: KeyInfo,
    /// The live sessions the key opened: they end with it.
    pub sessions: i64,
    /// The key is the account's only active one: once it is gone, nobody
    /// signs in as the account until it gets a key again (a recovery link,
    /// or an admin).
    pub last_active: bool,
}

/// The key `key_id` of an account, and what removing it at `now` would
/// end, in one statement; `unknown_key` when the account has no such key.
/// It is what a person is asked about: [`remove`] does not depend on it.
pub async fn removal(db: &Db, service_id: &str, account: &str, key_id: &str, now: i64) -> Result<Removal> {
    if AccountName::parse(account).is_err() || !is_key_id(key_id) {
        return Err(Error::UnknownKey);
    }
    let sql = format!(
        "SELECT {KEY_COLUMNS}, \
         (SELECT COUNT(*) FROM session s WHERE s.key_id = k.id AND s.expires_at > $4) AS sessions, \
         (SELECT COUNT(*) FROM account_key o WHERE o.service_id = k.service_id AND o.account = k.account \
          AND o.state = 'active' AND o.id <> k.id) AS other_active \
         FROM account_key k WHERE k.service_id = $1 AND k.account = $2 AND k.id = $3"
    );
    let select = query(&sql).bind(service_id).bind(account).bind(key_id).bind(now);
    let read = |row: &dyn Row| {
        let Some(key) = key_info(row)? else { return Err(Error::UnknownKey) };
        let last_active = key.state == KeyState::Active && row.int("other_active")? == 0;
        Ok(Removal { key, sessions: row.int("sessions")?, last_active })
    };
    db.fetch_optional(select, read).await?.ok_or(Error::UnknownKey)
}
