//! What `sesame export` reads from the keystore and `sesame import` writes
//! into it.

use sesame_proto::AccountKey;
use zeroize::Zeroizing;

use super::{open_secret, seal_secret, Account, Keyring, Store, ACCOUNT_COLUMNS};
use crate::{
    backup::{AccountEntry, Contents, PinEntry},
    vault::account_aad,
    Error,
};

/// A pinned server key as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PinRow {
    pub origin: String,
    pub public_key: Vec<u8>,
    pub key_id: String,
    pub pinned_at: i64,
}

/// An account row with its stored secret.
#[derive(sqlx::FromRow)]
struct KeyRow {
    #[sqlx(flatten)]
    account: Account,
    secret: Vec<u8>,
    sealed: bool,
}

/// What an import did, account by account.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub imported: Vec<String>,
    /// Already here with the same key: left as they were.
    pub skipped: Vec<String>,
    /// Here with another key, which the backup's replaced (`--replace`).
    pub replaced: Vec<String>,
    /// Here with a newer key than the backup's, which was kept, also with
    /// `--replace`: each with why, in words.
    pub kept_newer: Vec<KeptNewer>,
    pub pins_imported: usize,
    pub pins_skipped: usize,
    pub pins_replaced: usize,
}

/// An account whose key here became its key after the backup's did.
#[derive(Debug, Clone)]
pub struct KeptNewer {
    /// `alice at Example (https://login.example.com)`.
    pub account: String,
    /// When the key here became the account's (or, for a key from before
    /// that was recorded, when the account was made here).
    pub here_since: i64,
    /// When the backup's key became the account's (or, where the backup
    /// does not say, when the backup was written).
    pub backup_since: i64,
}

/// What happened to one row.
enum Merge {
    Inserted,
    Same,
    Conflict,
    KeptNewer(KeptNewer),
}

impl Store {
    /// Every pinned server key.
    pub async fn pins(&self) -> Result<Vec<PinRow>, Error> {
        Ok(sqlx::query_as("SELECT origin, public_key, key_id, pinned_at FROM server_pin ORDER BY origin")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Every account with its private key, opened with `keyring`. One
    /// query, so the backup is one consistent picture of the keystore.
    pub async fn accounts_with_keys(&self, keyring: &Keyring) -> Result<Vec<(Account, AccountKey)>, Error> {
        let rows: Vec<KeyRow> = sqlx::query_as(&format!(
            "SELECT {ACCOUNT_COLUMNS}, secret, sealed FROM account ORDER BY origin, service_name, name"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut keys = Vec::with_capacity(rows.len());
        for KeyRow { account, secret, sealed } in rows {
            // Which of its two keys the server holds is not known yet; a
            // backup of the wrong one would be a backup of nothing.
            if account.rekey_pending {
                return Err(Error::RekeyUnsettled { account: account.name, service: account.service_name });
            }
            let secret = Zeroizing::new(secret);
            let aad = account_aad(&account.origin, &account.service_id, &account.name);
            let seed = open_secret(keyring, &secret, sealed, &aad)?;
            let seed: &[u8; 32] = seed
                .as_slice()
                .try_into()
                .map_err(|_| Error::Keystore(format!("the key of account {} has the wrong length", account.name)))?;
            let key = AccountKey::from_seed(seed);
            if key.public_key().to_bytes().as_slice() != account.public_key {
                return Err(Error::Keystore(format!(
                    "the key of account {} does not match its public key",
                    account.name
                )));
            }
            keys.push((account, key));
        }
        Ok(keys)
    }

    /// Merges a backup in one transaction: all of it, or, at the first
    /// account or pin that differs from what is here and without `replace`,
    /// none of it. Keys are sealed with `keyring`, this keystore's own.
    ///
    /// A backup's key that is older than the confirmed key here is no
    /// difference to settle: the key here replaced it later (a key change,
    /// or a new registration or enrollment after the account's key was
    /// removed), and the server that took the key here no longer takes the
    /// backup's. Replacing would trade a working key for a dead one, so the
    /// key here is kept, with or without `replace`, and the report says so.
    pub async fn import(&self, keyring: &Keyring, contents: &Contents, replace: bool) -> Result<ImportReport, Error> {
        // IMMEDIATE takes the write lock up front: what is compared below
        // cannot change before the writes that depend on it.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut report = ImportReport::default();
        let mut conflicts = Vec::new();
        for pin in &contents.pins {
            match merge_pin(&mut tx, pin, replace).await? {
                Merge::Inserted => report.pins_imported += 1,
                Merge::Same => report.pins_skipped += 1,
                Merge::Conflict if replace => report.pins_replaced += 1,
                Merge::Conflict => conflicts.push(format!("the server key pinned for {}", pin.origin)),
                // Pins carry no time to compare: merge_pin never says this.
                Merge::KeptNewer(_) => report.pins_skipped += 1,
            }
        }
        for entry in &contents.accounts {
            match merge_account(&mut tx, keyring, entry, contents.exported_at, replace).await? {
                Merge::Inserted => report.imported.push(entry.label()),
                Merge::Same => report.skipped.push(entry.label()),
                Merge::Conflict if replace => report.replaced.push(entry.label()),
                Merge::Conflict => conflicts.push(format!("the key of {}", entry.label())),
                Merge::KeptNewer(kept) => report.kept_newer.push(kept),
            }
        }
        if !conflicts.is_empty() {
            // Dropping the transaction rolls it back.
            let kept: Vec<String> = report.kept_newer.iter().map(|k| k.account.clone()).collect();
            return Err(Error::ImportConflict { conflicts: list(&conflicts), kept_newer: list(&kept) });
        }
        tx.commit().await?;
        Ok(report)
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;

async fn merge_pin(tx: &mut Tx<'_>, pin: &PinEntry, replace: bool) -> Result<Merge, Error> {
    let key = pin.key.to_bytes().to_vec();
    let inserted = sqlx::query(
        "INSERT INTO server_pin (origin, public_key, key_id, pinned_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (origin) DO NOTHING",
    )
    .bind(pin.origin.as_str())
    .bind(&key)
    .bind(pin.key.key_id().to_string())
    .bind(pin.pinned_at)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Merge::Inserted);
    }
    let (here,): (Vec<u8>,) = sqlx::query_as("SELECT public_key FROM server_pin WHERE origin = ?")
        .bind(pin.origin.as_str())
        .fetch_one(&mut **tx)
        .await?;
    if here == key {
        return Ok(Merge::Same);
    }
    if replace {
        sqlx::query("UPDATE server_pin SET public_key = ?, key_id = ?, pinned_at = ? WHERE origin = ?")
            .bind(&key)
            .bind(pin.key.key_id().to_string())
            .bind(pin.pinned_at)
            .bind(pin.origin.as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(Merge::Conflict)
}

async fn merge_account(
    tx: &mut Tx<'_>,
    keyring: &Keyring,
    entry: &AccountEntry,
    exported_at: i64,
    replace: bool,
) -> Result<Merge, Error> {
    let service_id = entry.service_id.to_string();
    let aad = account_aad(entry.origin.as_str(), &service_id, entry.account.as_str());
    let (secret, sealed) = seal_secret(keyring, &entry.key, &aad)?;
    let public_key = entry.key.public_key().to_bytes().to_vec();
    let inserted = sqlx::query(
        "INSERT INTO account (origin, service_id, service_name, name, public_key, secret, sealed, confirmed, created_at, \
         last_used_at, key_since) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (origin, service_id, name) DO NOTHING",
    )
    .bind(entry.origin.as_str())
    .bind(&service_id)
    .bind(entry.service_name.as_str())
    .bind(entry.account.as_str())
    .bind(&public_key)
    .bind(secret.as_slice())
    .bind(sealed)
    .bind(entry.confirmed)
    .bind(entry.created_at)
    .bind(entry.last_used_at)
    .bind(entry.key_since)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Merge::Inserted);
    }
    // Where a time is not known, the one that stands in errs towards
    // asking: `created_at` is no later than the key here became the
    // account's, and `exported_at` no earlier than the backup's did.
    let (here, confirmed, here_since): (Vec<u8>, bool, i64) = sqlx::query_as(
        "SELECT public_key, confirmed, coalesce(key_since, created_at) FROM account \
         WHERE origin = ? AND service_id = ? AND name = ?",
    )
    .bind(entry.origin.as_str())
    .bind(&service_id)
    .bind(entry.account.as_str())
    .fetch_one(&mut **tx)
    .await?;
    if here == public_key {
        return Ok(Merge::Same);
    }
    let backup_since = entry.key_since.unwrap_or(exported_at).min(exported_at);
    if confirmed && here_since > backup_since {
        return Ok(Merge::KeptNewer(KeptNewer { account: entry.label(), here_since, backup_since }));
    }
    if replace {
        // secure_delete zeroes the cells of the key this overwrites.
        sqlx::query(
            "UPDATE account SET service_name = ?, public_key = ?, secret = ?, sealed = ?, confirmed = ?, \
             created_at = ?, last_used_at = ?, key_since = ?, next_public_key = NULL, next_secret = NULL \
             WHERE origin = ? AND service_id = ? AND name = ?",
        )
        .bind(entry.service_name.as_str())
        .bind(&public_key)
        .bind(secret.as_slice())
        .bind(sealed)
        .bind(entry.confirmed)
        .bind(entry.created_at)
        .bind(entry.last_used_at)
        .bind(entry.key_since)
        .bind(entry.origin.as_str())
        .bind(&service_id)
        .bind(entry.account.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(Merge::Conflict)
}

/// `a`, `a and b`, `a, b and c`; past five, how many more.
fn list(items: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut shown: Vec<String> = items.iter().take(SHOWN).cloned().collect();
    if items.len() > SHOWN {
        shown.push(format!("{} more", items.len() - SHOWN));
    }
    match shown.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}
