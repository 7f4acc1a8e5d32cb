//! The keystore: one SQLite file holding account keys, pinned server keys,
//! and what unlocks the keys: the passphrase's salt and verifier, or the id
//! and verifier of the key kept in the system keyring.
//!
//! The file is opened in rollback-journal mode with `secure_delete`, not WAL:
//! one user runs one command at a time, and a WAL file would keep old copies
//! of pages, such as a key that was stored before a passphrase was set.

use std::{
    fs::{self, DirBuilder, OpenOptions},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use sesame_proto::{AccountKey, AccountName, Origin, ServerPublicKey, ServiceId, ServiceName, UnixTime};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use zeroize::Zeroizing;

use crate::{
    vault::{account_aad, SealKey},
    Error,
};

mod backup;
mod protect;

pub use backup::{ImportReport, KeptNewer, PinRow};
pub use protect::{PlainBecause, Protection};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/client");

/// An open keystore.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
    /// Whether the system keyring may be used (`--no-keyring` says no).
    system_keyring: bool,
    /// Set when this run left a new keystore plain, and why.
    plain_because: Arc<Mutex<Option<PlainBecause>>>,
}

/// What unlocking the keystore gives: the key that seals account keys, or
/// nothing when they are stored unencrypted.
#[derive(Debug)]
pub enum Keyring {
    Plain,
    Sealed(SealKey),
}

/// A server key pinned for an origin.
#[derive(Debug, Clone)]
pub struct Pin {
    pub public_key: ServerPublicKey,
    pub pinned_at: UnixTime,
}

/// An account as stored, without its private key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Account {
    pub origin: String,
    pub service_id: String,
    pub service_name: String,
    pub name: String,
    pub public_key: Vec<u8>,
    pub confirmed: bool,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// A key change (rekey) was sent and its outcome is not yet known here.
    pub rekey_pending: bool,
    /// When the key became the account's (migrations/client/0004); `None`
    /// for a key from before that was recorded.
    pub key_since: Option<i64>,
}

/// The columns of [`Account`].
pub(crate) const ACCOUNT_COLUMNS: &str = "origin, service_id, service_name, name, public_key, confirmed, created_at, \
                                          last_used_at, next_public_key IS NOT NULL AS rekey_pending, key_since";

/// Where one account lives: the row's primary key.
#[derive(Debug, Clone, Copy)]
pub struct Slot<'a> {
    pub origin: &'a Origin,
    pub service_id: &'a ServiceId,
    pub account: &'a AccountName,
}

fn secs(time: UnixTime) -> i64 {
    i64::try_from(time.as_secs()).unwrap_or(i64::MAX)
}

/// Creates the directory (0700) and the file (0600) before SQLite sees them,
/// so the keys are never readable by other users, not even for a moment.
fn prepare_file(path: &Path) -> Result<(), Error> {
    let fail = |e: std::io::Error| Error::KeystoreFile { path: path.to_owned(), reason: e.to_string() };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(fail)?;
    }
    match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // A file copied in or made by an older version: take it back to
            // owner-only rather than leave keys readable by others.
            let mode = fs::metadata(path).map_err(fail)?.permissions().mode();
            if mode & 0o077 != 0 {
                fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(fail)?;
            }
            Ok(())
        }
        Err(e) => Err(fail(e)),
    }
}

impl Store {
    /// The default keystore: `sesame/sesame.db` in the user's data directory.
    pub fn default_path() -> Result<PathBuf, Error> {
        dirs::data_dir()
            .map(|d| d.join("sesame").join("sesame.db"))
            .ok_or_else(|| Error::Keystore("no data directory for this user; pass --db PATH".into()))
    }

    /// Opens (creating if needed) the keystore at `path` and runs its
    /// migrations. The system keyring is not used until
    /// [`Store::with_system_keyring`] allows it.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        prepare_file(path)?;
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .journal_mode(SqliteJournalMode::Delete)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .pragma("secure_delete", "ON")
            .foreign_keys(true);
        // One connection: a command does one thing at a time, and
        // transactions must see their own writes.
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool, path: path.to_owned(), system_keyring: false, plain_because: Arc::default() })
    }

    /// Allows (or forbids) keeping the keystore's key in the system keyring.
    pub fn with_system_keyring(mut self, allowed: bool) -> Self {
        self.system_keyring = allowed;
        self
    }

    /// The file this keystore is in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the file, so that nothing is left in SQLite's buffers.
    pub async fn close(self) {
        self.pool.close().await;
    }

    // ---- pinned server keys -------------------------------------------

    pub async fn pin(&self, origin: &Origin) -> Result<Option<Pin>, Error> {
        let row: Option<(Vec<u8>, i64)> =
            sqlx::query_as("SELECT public_key, pinned_at FROM server_pin WHERE origin = ?")
                .bind(origin.as_str())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(key, at)| {
            let public_key = ServerPublicKey::from_bytes(&key)
                .map_err(|_| Error::Keystore(format!("the key pinned for {origin} is not valid")))?;
            Ok(Pin { public_key, pinned_at: UnixTime::from_secs(u64::try_from(at).unwrap_or(0)) })
        })
        .transpose()
    }

    /// Pins `key` for `origin` unless a key is already pinned (another run
    /// may have pinned one meanwhile), and returns the pin that holds.
    pub async fn add_pin(&self, origin: &Origin, key: &ServerPublicKey, now: UnixTime) -> Result<Pin, Error> {
        sqlx::query(
            "INSERT INTO server_pin (origin, public_key, key_id, pinned_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (origin) DO NOTHING",
        )
        .bind(origin.as_str())
        .bind(key.to_bytes().to_vec())
        .bind(key.key_id().to_string())
        .bind(secs(now))
        .execute(&self.pool)
        .await?;
        self.pin(origin).await?.ok_or_else(|| Error::Keystore("the pinned key vanished".into()))
    }

    /// Forgets the key pinned for `origin`; false if none was.
    pub async fn unpin(&self, origin: &Origin) -> Result<bool, Error> {
        let done =
            sqlx::query("DELETE FROM server_pin WHERE origin = ?").bind(origin.as_str()).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- account keys -------------------------------------------------

    pub async fn accounts(&self) -> Result<Vec<Account>, Error> {
        Ok(sqlx::query_as(&format!("SELECT {ACCOUNT_COLUMNS} FROM account ORDER BY origin, service_name, name"))
            .fetch_all(&self.pool)
            .await?)
    }

    /// The accounts at one service, most recently used first.
    pub async fn accounts_at(&self, origin: &Origin, service_id: &ServiceId) -> Result<Vec<Account>, Error> {
        Ok(sqlx::query_as(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM account WHERE origin = ? AND service_id = ? \
             ORDER BY coalesce(last_used_at, created_at) DESC, name"
        ))
        .bind(origin.as_str())
        .bind(service_id.to_string())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Stores a new key, not yet confirmed by the server. Refuses if the
    /// slot already holds one (by the primary key, not by a racy look-up).
    pub async fn insert_unconfirmed(
        &self,
        keyring: &Keyring,
        slot: Slot<'_>,
        service_name: &ServiceName,
        key: &AccountKey,
        now: UnixTime,
    ) -> Result<(), Error> {
        let service_id = slot.service_id.to_string();
        let aad = account_aad(slot.origin.as_str(), &service_id, slot.account.as_str());
        let (secret, sealed) = seal_secret(keyring, key, &aad)?;
        let result = sqlx::query(
            "INSERT INTO account (origin, service_id, service_name, name, public_key, secret, sealed, confirmed, created_at, key_since) \
             VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
        )
        .bind(slot.origin.as_str())
        .bind(&service_id)
        .bind(service_name.as_str())
        .bind(slot.account.as_str())
        .bind(key.public_key().to_bytes().to_vec())
        .bind(secret.as_slice())
        .bind(sealed)
        .bind(secs(now))
        .bind(secs(now))
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(Error::LocalAccountExists { account: slot.account.to_string(), service: service_name.to_string() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Marks a key as accepted by the server, and as used now.
    pub async fn confirm(&self, slot: Slot<'_>, now: UnixTime) -> Result<(), Error> {
        sqlx::query(
            "UPDATE account SET confirmed = 1, last_used_at = ? WHERE origin = ? AND service_id = ? AND name = ?",
        )
        .bind(secs(now))
        .bind(slot.origin.as_str())
        .bind(slot.service_id.to_string())
        .bind(slot.account.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes one account key; false if there was none.
    pub async fn delete(&self, origin: &str, service_id: &str, account: &str) -> Result<bool, Error> {
        let done = sqlx::query("DELETE FROM account WHERE origin = ? AND service_id = ? AND name = ?")
            .bind(origin)
            .bind(service_id)
            .bind(account)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The private key of one account.
    pub async fn key(&self, keyring: &Keyring, slot: Slot<'_>) -> Result<AccountKey, Error> {
        let (key, _) = self.keys(keyring, slot).await?;
        Ok(key)
    }

    /// The private key of one account, and the new key of a key change in
    /// flight, if there is one (docs/PROTOCOL.md §13).
    pub async fn keys(&self, keyring: &Keyring, slot: Slot<'_>) -> Result<(AccountKey, Option<AccountKey>), Error> {
        let service_id = slot.service_id.to_string();
        let row: Option<(Vec<u8>, Option<Vec<u8>>, bool)> = sqlx::query_as(
            "SELECT secret, next_secret, sealed FROM account WHERE origin = ? AND service_id = ? AND name = ?",
        )
        .bind(slot.origin.as_str())
        .bind(&service_id)
        .bind(slot.account.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let (secret, next, sealed) = row.ok_or_else(|| Error::Keystore(format!("no key for {}", slot.account)))?;
        let aad = account_aad(slot.origin.as_str(), &service_id, slot.account.as_str());
        let open = |secret: &[u8]| -> Result<AccountKey, Error> {
            let seed = open_secret(keyring, secret, sealed, &aad)?;
            let seed: &[u8; 32] = seed
                .as_slice()
                .try_into()
                .map_err(|_| Error::Keystore("an account key has the wrong length".into()))?;
            Ok(AccountKey::from_seed(seed))
        };
        Ok((open(&secret)?, next.as_deref().map(open).transpose()?))
    }

    /// Stores `next` as the new key of a key change, beside the account's
    /// key, before the server is told. Refuses when a change is already in
    /// flight (the caller reuses that one's key instead).
    pub async fn stage_next_key(&self, keyring: &Keyring, slot: Slot<'_>, next: &AccountKey) -> Result<(), Error> {
        let service_id = slot.service_id.to_string();
        let aad = account_aad(slot.origin.as_str(), &service_id, slot.account.as_str());
        // The row's `sealed` flag covers both secrets; a keyring that does
        // not match it is refused by the WHERE clause.
        let (secret, sealed) = seal_secret(keyring, next, &aad)?;
        let done = sqlx::query(
            "UPDATE account SET next_public_key = ?, next_secret = ? \
             WHERE origin = ? AND service_id = ? AND name = ? AND next_public_key IS NULL AND sealed = ?",
        )
        .bind(next.public_key().to_bytes().to_vec())
        .bind(secret.as_slice())
        .bind(slot.origin.as_str())
        .bind(&service_id)
        .bind(slot.account.as_str())
        .bind(sealed)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() != 1 {
            return Err(Error::Keystore(format!("cannot store a new key for {}", slot.account)));
        }
        Ok(())
    }

    /// The server holds the new key now: it becomes the account's key, from
    /// now on, and the old one is gone (secure_delete zeroes its cells).
    pub async fn promote_next_key(&self, slot: Slot<'_>, now: UnixTime) -> Result<(), Error> {
        sqlx::query(
            "UPDATE account SET public_key = next_public_key, secret = next_secret, next_public_key = NULL, \
             next_secret = NULL, confirmed = 1, last_used_at = ?, key_since = ? \
             WHERE origin = ? AND service_id = ? AND name = ? AND next_public_key IS NOT NULL",
        )
        .bind(secs(now))
        .bind(secs(now))
        .bind(slot.origin.as_str())
        .bind(slot.service_id.to_string())
        .bind(slot.account.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The server refused the key change: it still holds the old key, and
    /// the new one is forgotten.
    pub async fn drop_next_key(&self, slot: Slot<'_>) -> Result<(), Error> {
        sqlx::query(
            "UPDATE account SET next_public_key = NULL, next_secret = NULL \
             WHERE origin = ? AND service_id = ? AND name = ?",
        )
        .bind(slot.origin.as_str())
        .bind(slot.service_id.to_string())
        .bind(slot.account.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Shows a notice once per keystore: true the first time `name` is asked.
    pub async fn first_notice(&self, name: &str, now: UnixTime) -> Result<bool, Error> {
        let done = sqlx::query("INSERT INTO notice (name, shown_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(secs(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// `key`'s seed as the `secret` column holds it under `keyring`, with the
/// `sealed` flag: the counterpart of [`open_secret`].
fn seal_secret(keyring: &Keyring, key: &AccountKey, aad: &[u8]) -> Result<(Zeroizing<Vec<u8>>, bool), Error> {
    let seed = key.to_seed();
    Ok(match keyring {
        Keyring::Plain => (Zeroizing::new(seed.to_vec()), false),
        Keyring::Sealed(seal) => (Zeroizing::new(seal.seal(seed.as_ref(), aad)?), true),
    })
}

fn open_secret(keyring: &Keyring, secret: &[u8], sealed: bool, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    match (sealed, keyring) {
        (false, _) => Ok(Zeroizing::new(secret.to_vec())),
        (true, Keyring::Sealed(seal)) => seal.open(secret, aad),
        (true, Keyring::Plain) => Err(Error::Keystore("a key is encrypted but the keystore says it is not".into())),
    }
}

#[cfg(test)]
mod tests;
