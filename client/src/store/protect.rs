//! How the account keys are protected at rest, and moving between the ways:
//! sealed by a random key kept in the system keyring (the default for a new
//! keystore), sealed by a key derived from a passphrase, or plain (where no
//! keyring could be reached, or with `--no-keyring`).
//!
//! A keystore that holds keys keeps its way until the person changes it
//! (`sesame passphrase`, `sesame keyring`): an existing plain keystore stays
//! plain, with its warning, and nothing is moved behind anyone's back.

use rand::{rngs::OsRng, RngCore as _};
use sqlx::SqliteConnection;

use super::{open_secret, secs, Keyring, Store};
use crate::{
    system_keyring::{self, Failure},
    ui,
    vault::{account_aad, KdfParams, KdfRecord, Passphrase, SealKey},
    Error,
};

/// How this keystore's account keys are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// Unencrypted.
    Plain,
    /// Sealed by a key derived from the passphrase.
    Passphrase,
    /// Sealed by a random key kept in the system keyring.
    SystemKeyring,
}

impl Protection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Passphrase => "passphrase",
            Self::SystemKeyring => "system_keyring",
        }
    }
}

/// Why this run left a new keystore's keys unencrypted: the system keyring
/// could not be reached, or it was not to be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlainBecause {
    NoKeyring(String),
    OptedOut,
}

/// The entry of a keystore in the system keyring, as the keystore records it.
struct KeyringRecord {
    keystore_id: String,
    verifier: Vec<u8>,
}

impl Store {
    async fn kdf_record(&self) -> Result<Option<KdfRecord>, Error> {
        // salt, m_cost, t_cost, p_cost, verifier
        type Row = (Vec<u8>, i64, i64, i64, Vec<u8>);
        let row: Option<Row> =
            sqlx::query_as("SELECT salt, m_cost, t_cost, p_cost, verifier FROM passphrase WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(salt, m, t, p, verifier)| KdfRecord {
            salt,
            params: KdfParams {
                m_cost_kib: u32::try_from(m).unwrap_or(0),
                t_cost: u32::try_from(t).unwrap_or(0),
                p_cost: u32::try_from(p).unwrap_or(0),
            },
            verifier,
        }))
    }

    async fn keyring_record(&self) -> Result<Option<KeyringRecord>, Error> {
        let row: Option<(String, Vec<u8>)> =
            sqlx::query_as("SELECT keystore_id, verifier FROM system_keyring WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(keystore_id, verifier)| KeyringRecord { keystore_id, verifier }))
    }

    pub async fn has_passphrase(&self) -> Result<bool, Error> {
        Ok(self.kdf_record().await?.is_some())
    }

    pub async fn protection(&self) -> Result<Protection, Error> {
        Ok(if self.has_passphrase().await? {
            Protection::Passphrase
        } else if self.keyring_record().await?.is_some() {
            Protection::SystemKeyring
        } else {
            Protection::Plain
        })
    }

    /// Why this run's keys are unencrypted, when a new keystore was left
    /// plain by this run.
    pub fn plain_because(&self) -> Option<PlainBecause> {
        self.plain_because.lock().ok().and_then(|held| held.clone())
    }

    fn remember_plain(&self, because: PlainBecause) {
        if let Ok(mut held) = self.plain_because.lock() {
            *held = Some(because);
        }
    }

    async fn holds_keys(&self) -> Result<bool, Error> {
        let (any,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM account)").fetch_one(&self.pool).await?;
        Ok(any)
    }

    /// Unlocks the keystore: with the passphrase, asked for only when one is
    /// set (a wrong one is refused by the verifier before any key is read),
    /// or with the key in the system keyring. A keystore that holds no key
    /// yet and has no passphrase gets a key in the system keyring now, if
    /// one can be reached and it may be used.
    pub async fn unlock(&self, passphrase: impl FnOnce() -> Result<Passphrase, Error>) -> Result<Keyring, Error> {
        if let Some(record) = self.kdf_record().await? {
            return Ok(Keyring::Sealed(SealKey::unlock(&passphrase()?, &record)?));
        }
        if let Some(record) = self.keyring_record().await? {
            return self.key_from_system_keyring(record).await;
        }
        if self.holds_keys().await? {
            return Ok(Keyring::Plain);
        }
        self.start_in_system_keyring().await
    }

    async fn key_from_system_keyring(&self, record: KeyringRecord) -> Result<Keyring, Error> {
        if !self.system_keyring {
            return Err(Error::KeyringOptedOut(self.path.clone()));
        }
        match system_keyring::load(&record.keystore_id).await {
            Ok(text) => SealKey::from_keyring_text(&text, &record.verifier)
                .map(Keyring::Sealed)
                .ok_or_else(|| Error::KeyringWrongKey(self.path.clone())),
            Err(Failure::Missing) if !self.holds_keys().await? => {
                // Nothing was sealed with the lost key: start afresh.
                sqlx::query("DELETE FROM system_keyring").execute(&self.pool).await?;
                self.start_in_system_keyring().await
            }
            Err(Failure::Missing) => {
                Err(Error::KeyringEntryMissing { path: self.path.clone(), keystore_id: record.keystore_id })
            }
            Err(Failure::Locked(reason)) => Err(Error::KeyringLocked(reason)),
            Err(Failure::Unavailable(reason)) => Err(Error::KeyringUnavailable(reason)),
        }
    }

    /// Gives a keystore that holds no key a random key in the system
    /// keyring. Where that cannot be done, the keystore stays plain and the
    /// reason is kept for the warning.
    async fn start_in_system_keyring(&self) -> Result<Keyring, Error> {
        if !self.system_keyring {
            self.remember_plain(PlainBecause::OptedOut);
            return Ok(Keyring::Plain);
        }
        let (key, verifier) = SealKey::random()?;
        let keystore_id = new_keystore_id();
        if let Err(failure) = system_keyring::store(&keystore_id, key.to_keyring_text()).await {
            let reason = match failure {
                Failure::Missing => "it keeps no entries".to_owned(),
                Failure::Locked(reason) | Failure::Unavailable(reason) => reason,
            };
            self.remember_plain(PlainBecause::NoKeyring(reason));
            return Ok(Keyring::Plain);
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "INSERT INTO system_keyring (id, keystore_id, verifier, set_at) SELECT 1, ?, ?, ? \
             WHERE NOT EXISTS (SELECT 1 FROM passphrase) AND NOT EXISTS (SELECT 1 FROM system_keyring) \
             AND NOT EXISTS (SELECT 1 FROM account)",
        )
        .bind(&keystore_id)
        .bind(verifier)
        .bind(secs(ui::now()))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            drop(tx);
            let _ = system_keyring::delete(&keystore_id).await;
            return Err(Error::Keystore("another sesame set this keystore up at the same time; try again".into()));
        }
        tx.commit().await?;
        Ok(Keyring::Sealed(key))
    }

    /// Sets or changes the passphrase: every account key is re-sealed under
    /// the new one in a single transaction, so a crash leaves either all old
    /// or all new. A key in the system keyring is then deleted from it.
    /// Returns how many keys were re-sealed.
    pub async fn set_passphrase(&self, current: &Keyring, new: &Passphrase, params: KdfParams) -> Result<usize, Error> {
        let (key, record) = SealKey::create(new, params)?;
        let old_entry = self.keyring_record().await?;
        // IMMEDIATE takes the write lock up front, so another run cannot slip
        // a key in between the read and the writes.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let count = reseal(&mut tx, current, &key).await?;
        sqlx::query(
            "INSERT INTO passphrase (id, salt, m_cost, t_cost, p_cost, verifier, set_at) \
             VALUES (1, ?, ?, ?, ?, ?, unixepoch()) \
             ON CONFLICT (id) DO UPDATE SET salt = excluded.salt, m_cost = excluded.m_cost, \
             t_cost = excluded.t_cost, p_cost = excluded.p_cost, verifier = excluded.verifier, set_at = excluded.set_at",
        )
        .bind(record.salt)
        .bind(i64::from(record.params.m_cost_kib))
        .bind(i64::from(record.params.t_cost))
        .bind(i64::from(record.params.p_cost))
        .bind(record.verifier)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM system_keyring").execute(&mut *tx).await?;
        tx.commit().await?;
        self.vacuum().await?;
        if let Some(old) = old_entry {
            // It opens nothing any more; an entry left behind is only clutter.
            let _ = system_keyring::delete(&old.keystore_id).await;
        }
        Ok(count)
    }

    /// Moves the keystore's keys under a new random key kept in the system
    /// keyring: from plain, or from a passphrase, which is forgotten.
    /// Returns how many keys were re-sealed.
    pub async fn move_to_system_keyring(&self, current: &Keyring) -> Result<usize, Error> {
        if self.keyring_record().await?.is_some() {
            return Err(Error::InvalidInput(format!(
                "the key of the keystore {} is already in the system keyring",
                self.path.display()
            )));
        }
        if !self.system_keyring {
            return Err(Error::KeyringOptedOut(self.path.clone()));
        }
        let (key, verifier) = SealKey::random()?;
        let keystore_id = new_keystore_id();
        system_keyring::store(&keystore_id, key.to_keyring_text()).await.map_err(|failure| match failure {
            Failure::Locked(reason) => Error::KeyringLocked(reason),
            Failure::Missing => Error::KeyringUnavailable("it keeps no entries".into()),
            Failure::Unavailable(reason) => Error::KeyringUnavailable(reason),
        })?;
        let moved = async {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let count = reseal(&mut tx, current, &key).await?;
            sqlx::query("DELETE FROM passphrase").execute(&mut *tx).await?;
            sqlx::query("INSERT INTO system_keyring (id, keystore_id, verifier, set_at) VALUES (1, ?, ?, ?)")
                .bind(&keystore_id)
                .bind(verifier)
                .bind(secs(ui::now()))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, Error>(count)
        }
        .await;
        match moved {
            Ok(count) => {
                self.vacuum().await?;
                Ok(count)
            }
            Err(e) => {
                let _ = system_keyring::delete(&keystore_id).await;
                Err(e)
            }
        }
    }

    /// secure_delete already zeroed the old cells; VACUUM also rewrites the
    /// file so that no free page keeps an old copy.
    async fn vacuum(&self) -> Result<(), Error> {
        sqlx::query("VACUUM").execute(&self.pool).await?;
        Ok(())
    }
}

/// A random id for a keystore's entry in the system keyring.
fn new_keystore_id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Re-seals every account key (and the new key of a key change in flight)
/// from `current` under `key`. Returns how many accounts there were.
async fn reseal(tx: &mut SqliteConnection, current: &Keyring, key: &SealKey) -> Result<usize, Error> {
    type Row = (String, String, String, Vec<u8>, Option<Vec<u8>>, bool);
    let rows: Vec<Row> = sqlx::query_as("SELECT origin, service_id, name, secret, next_secret, sealed FROM account")
        .fetch_all(&mut *tx)
        .await?;
    for (origin, service_id, name, secret, next_secret, sealed) in &rows {
        let aad = account_aad(origin, service_id, name);
        let seed = open_secret(current, secret, *sealed, &aad)?;
        let next = match next_secret {
            Some(next) => Some(key.seal(&open_secret(current, next, *sealed, &aad)?, &aad)?),
            None => None,
        };
        sqlx::query(
            "UPDATE account SET secret = ?, next_secret = ?, sealed = 1 \
             WHERE origin = ? AND service_id = ? AND name = ?",
        )
        .bind(key.seal(&seed, &aad)?)
        .bind(next)
        .bind(origin)
        .bind(service_id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    }
    Ok(rows.len())
}
