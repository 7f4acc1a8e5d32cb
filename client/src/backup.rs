//! Keystore backups: the plaintext format (`sesame-keystore-backup`, version
//! 1, described in docs/BACKUP.md) and the age passphrase encryption around
//! it.
//!
//! The plaintext is JSON rather than a copy of the SQLite file: it is the
//! same whatever the keystore's schema or passphrase, and a person who has
//! only `age -d` can read their keys in it. The keys inside are not sealed a
//! second time: age is the only encryption, so the file stands on its own.

use std::{
    fmt,
    io::{Read, Write},
    path::Path,
};

use age::secrecy::SecretString;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sesame_proto::{AccountKey, AccountName, Origin, ServerPublicKey, ServiceId, ServiceName};
use zeroize::Zeroizing;

use crate::{vault::Passphrase, Error};

/// The `format` field of every backup.
pub const FORMAT: &str = "sesame-keystore-backup";
/// The version this build writes, and the only one it reads.
pub const VERSION: u64 = 1;
/// A backup passphrase protects a file that may travel, against guesses made
/// offline: fewer characters than this are refused.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
/// No keystore comes near this; a larger plaintext is not one of ours.
const MAX_PLAINTEXT: usize = 64 * 1024 * 1024;
/// What every age file starts with (age-encryption.org/v1).
const AGE_MAGIC: &[u8] = b"age-encryption.org/";

/// A private key as base64url text: wiped on drop, never printed.
pub struct SeedText(Zeroizing<String>);

impl SeedText {
    fn of(key: &AccountKey) -> Self {
        Self(Zeroizing::new(URL_SAFE_NO_PAD.encode(key.to_seed().as_ref())))
    }

    /// The key, if the text is 32 bytes of base64url.
    fn key(&self) -> Option<AccountKey> {
        let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(self.0.as_bytes()).ok()?);
        let seed: &[u8; 32] = bytes.as_slice().try_into().ok()?;
        Some(AccountKey::from_seed(seed))
    }
}

impl fmt::Debug for SeedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeedText(<redacted>)")
    }
}

impl Serialize for SeedText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SeedText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| Self(Zeroizing::new(text)))
    }
}

/// The plaintext of a backup, field for field (docs/BACKUP.md). Readers
/// ignore fields they do not know; a change that an older reader would
/// misread gets a new version.
#[derive(Debug, Serialize, Deserialize)]
pub struct Document {
    pub format: String,
    pub version: u64,
    /// The program that wrote it, e.g. `sesame 0.1.0`; for people only.
    pub generator: String,
    pub exported_at: i64,
    pub pins: Vec<PinRecord>,
    pub accounts: Vec<AccountRecord>,
}

/// A server key pinned for an origin.
#[derive(Debug, Serialize, Deserialize)]
pub struct PinRecord {
    pub origin: String,
    /// base64url, no padding, 32 bytes.
    pub public_key: String,
    /// 16 hex digits, as `sesame` shows it; checked against `public_key`.
    pub key_id: String,
    pub pinned_at: i64,
}

/// One account and its private key.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccountRecord {
    pub origin: String,
    pub service_id: String,
    pub service_name: String,
    pub account: String,
    /// base64url, no padding, 32 bytes; checked against `private_key`.
    pub public_key: String,
    /// The 32-byte Ed25519 private key (RFC 8032's seed), base64url.
    pub private_key: SeedText,
    pub confirmed: bool,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// When the key became the account's. Absent from backups of older
    /// versions, and for keys from before the keystore recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_since: Option<i64>,
}

/// Just the fields that say what a document is, read first so that another
/// file or a newer version is named as such, not as a damaged backup.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    version: Option<u64>,
}

/// An account read from a backup and checked: names that parse, a key that
/// matches its public half.
#[derive(Debug)]
pub struct AccountEntry {
    pub origin: Origin,
    pub service_id: ServiceId,
    pub service_name: ServiceName,
    pub account: AccountName,
    pub key: AccountKey,
    pub confirmed: bool,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// When the key became the account's, if the backup says.
    pub key_since: Option<i64>,
}

impl AccountEntry {
    /// How messages name it: `alice at Example (https://login.example.com)`.
    pub fn label(&self) -> String {
        format!("{} at {} ({})", self.account, self.service_name, self.origin)
    }
}

/// A pin read from a backup and checked.
#[derive(Debug)]
pub struct PinEntry {
    pub origin: Origin,
    pub key: ServerPublicKey,
    pub pinned_at: i64,
}

/// What a backup holds, checked and ready to import.
#[derive(Debug)]
pub struct Contents {
    /// When the backup was written: no key in it became the account's
    /// later, so it stands in for a key's time where the backup has none.
    pub exported_at: i64,
    pub pins: Vec<PinEntry>,
    pub accounts: Vec<AccountEntry>,
}

impl Document {
    pub fn new(exported_at: i64, pins: Vec<PinRecord>, accounts: Vec<AccountRecord>) -> Self {
        Self {
            format: FORMAT.to_owned(),
            version: VERSION,
            generator: concat!("sesame ", env!("CARGO_PKG_VERSION")).to_owned(),
            exported_at,
            pins,
            accounts,
        }
    }
}

impl AccountRecord {
    pub fn new(account: &crate::store::Account, key: &AccountKey) -> Self {
        Self {
            origin: account.origin.clone(),
            service_id: account.service_id.clone(),
            service_name: account.service_name.clone(),
            account: account.name.clone(),
            public_key: key.public_key().to_base64(),
            private_key: SeedText::of(key),
            confirmed: account.confirmed,
            created_at: account.created_at,
            last_used_at: account.last_used_at,
            key_since: account.key_since,
        }
    }
}

/// Checks that a backup passphrase is fit to protect a file that may
/// travel.
pub fn check_strength(passphrase: &Passphrase) -> Result<(), Error> {
    if passphrase.as_str().chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(Error::WeakBackupPassphrase(MIN_PASSPHRASE_CHARS));
    }
    Ok(())
}

/// Encrypts `document` to `passphrase` as an age file written to `out`. The
/// JSON goes straight into age's encrypting writer, so no plaintext copy of
/// the whole keystore is ever held in memory.
pub fn write(document: &Document, passphrase: &Passphrase, out: impl Write) -> std::io::Result<()> {
    let secret = SecretString::from(passphrase.as_str().to_owned());
    let mut writer = age::Encryptor::with_user_passphrase(secret).wrap_output(out)?;
    serde_json::to_writer_pretty(&mut writer, document)?;
    writer.finish()?;
    Ok(())
}

/// Refuses, before any passphrase is asked, a file that is not a passphrase
/// age file at all.
pub fn check_envelope(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let not_backup = |reason: &str| Error::NotABackup { path: path.to_owned(), reason: reason.to_owned() };
    if !bytes.starts_with(AGE_MAGIC) {
        return Err(not_backup("it is not an age-encrypted file"));
    }
    let decryptor = age::Decryptor::new_buffered(bytes).map_err(|e| damaged_by(path, &e))?;
    if !decryptor.is_scrypt() {
        return Err(not_backup("it is encrypted to age keys, not to a passphrase"));
    }
    Ok(())
}

/// Decrypts and checks a backup. Nothing in an error names a key: a message
/// may quote where the JSON is wrong, never what it holds.
pub fn read(path: &Path, bytes: &[u8], passphrase: &Passphrase) -> Result<Contents, Error> {
    check_envelope(path, bytes)?;
    let identity = age::scrypt::Identity::new(SecretString::from(passphrase.as_str().to_owned()));
    let decryptor = age::Decryptor::new_buffered(bytes).map_err(|e| damaged_by(path, &e))?;
    let reader = decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity)).map_err(|e| match e {
        age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed => {
            Error::WrongBackupPassphrase(path.to_owned())
        }
        other => damaged_by(path, &other),
    })?;
    // The plaintext is shorter than the file, so this buffer never grows
    // and leaves no copy of the keys behind in freed memory.
    let mut plain = Zeroizing::new(Vec::with_capacity(bytes.len().min(MAX_PLAINTEXT + 1)));
    reader
        .take(MAX_PLAINTEXT as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|_| damaged(path, "it is cut short or altered"))?;
    if plain.len() > MAX_PLAINTEXT {
        return Err(damaged(path, "it is larger than any keystore"));
    }
    parse(path, &plain)
}

fn damaged(path: &Path, reason: &str) -> Error {
    Error::DamagedBackup { path: path.to_owned(), reason: reason.to_owned() }
}

fn damaged_by(path: &Path, error: &age::DecryptError) -> Error {
    use age::DecryptError as E;
    match error {
        E::ExcessiveWork { required, .. } => {
            damaged(path, &format!("it asks for more passphrase work (scrypt 2^{required}) than this computer allows"))
        }
        E::UnknownFormat => damaged(path, "it uses an age format version this program does not know"),
        E::InvalidMac => damaged(path, "its age header was altered"),
        _ => damaged(path, "it is cut short or altered"),
    }
}

/// Parses the plaintext: first what it claims to be, then every record.
fn parse(path: &Path, plain: &[u8]) -> Result<Contents, Error> {
    let not_backup =
        || Error::NotABackup { path: path.to_owned(), reason: "it decrypts, but holds no keystore backup".into() };
    let header: Header = serde_json::from_slice(plain).map_err(|_| not_backup())?;
    if header.format.as_deref() != Some(FORMAT) {
        return Err(not_backup());
    }
    match header.version {
        Some(VERSION) => {}
        Some(version) => return Err(Error::BackupVersion { path: path.to_owned(), version }),
        None => return Err(damaged(path, "it has no version")),
    }
    // serde_json's messages can quote a value, and a value may be a key:
    // only the position is kept.
    let document: Document = serde_json::from_slice(plain).map_err(|e| {
        damaged(path, &format!("its contents do not match the format at line {}, column {}", e.line(), e.column()))
    })?;
    check(path, document)
}

fn check(path: &Path, document: Document) -> Result<Contents, Error> {
    let mut pins = Vec::with_capacity(document.pins.len());
    for pin in &document.pins {
        let origin = Origin::parse(&pin.origin).map_err(|_| damaged(path, "a pinned origin is not valid"))?;
        let bad = |what: &str| damaged(path, &format!("the server key pinned for {origin} {what}"));
        let key = ServerPublicKey::from_base64(&pin.public_key).map_err(|_| bad("is not valid"))?;
        if key.key_id().to_string() != pin.key_id {
            return Err(bad("does not match its key id"));
        }
        if pins.iter().any(|p: &PinEntry| p.origin == origin) {
            return Err(bad("is there twice"));
        }
        pins.push(PinEntry { origin, key, pinned_at: pin.pinned_at });
    }
    let mut accounts = Vec::with_capacity(document.accounts.len());
    for record in &document.accounts {
        let entry = check_account(path, record)?;
        if accounts.iter().any(|a: &AccountEntry| {
            a.origin == entry.origin && a.service_id == entry.service_id && a.account == entry.account
        }) {
            return Err(damaged(path, &format!("account {} is there twice", entry.label())));
        }
        accounts.push(entry);
    }
    Ok(Contents { exported_at: document.exported_at, pins, accounts })
}

fn check_account(path: &Path, record: &AccountRecord) -> Result<AccountEntry, Error> {
    let invalid = |what: &str| damaged(path, &format!("an account's {what} is not valid"));
    let origin = Origin::parse(&record.origin).map_err(|_| invalid("origin"))?;
    let service_id: ServiceId = record.service_id.parse().map_err(|_| invalid("service id"))?;
    let service_name = ServiceName::parse(&record.service_name).map_err(|_| invalid("service name"))?;
    let account = AccountName::parse(&record.account).map_err(|_| invalid("name"))?;
    let label = format!("{account} at {service_name} ({origin})");
    let key = record
        .private_key
        .key()
        .ok_or_else(|| damaged(path, &format!("the private key of {label} is not 32 bytes of base64url")))?;
    if key.public_key().to_base64() != record.public_key {
        return Err(damaged(path, &format!("the private key of {label} does not match its public key")));
    }
    Ok(AccountEntry {
        origin,
        service_id,
        service_name,
        account,
        key,
        confirmed: record.confirmed,
        created_at: record.created_at,
        last_used_at: record.last_used_at,
        key_since: record.key_since,
    })
}

#[cfg(test)]
mod tests;
