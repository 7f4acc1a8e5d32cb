//! `export` and `import`: the keystore to and from an age-encrypted backup
//! file (docs/BACKUP.md).

use std::{
    fs::File,
    io::{Read as _, Write as _},
    path::Path,
};

use serde_json::json;
use tempfile::NamedTempFile;

use super::App;
use crate::{
    backup::{self, AccountRecord, Document, PinRecord},
    store::{ImportReport, KeptNewer, Keyring, Store},
    ui,
    vault::Passphrase,
    Error,
};

/// The backup passphrase is its own, apart from the keystore's: a backup
/// can be opened years later, on another computer, by someone who only has
/// `age`.
const PASSPHRASE_ENV: &str = "SESAME_BACKUP_PASSPHRASE";

/// A file larger than this is no backup of ours (the plaintext limit plus
/// age's overhead), and is refused before it is read into memory.
const MAX_FILE: u64 = 65 * 1024 * 1024;

fn file_error<'a>(path: &'a Path, action: &'static str) -> impl Fn(std::io::Error) -> Error + 'a {
    move |e| Error::BackupFile { path: path.to_owned(), action, reason: e.to_string() }
}

/// The passphrase to encrypt with: `SESAME_BACKUP_PASSPHRASE`, or typed
/// twice; strong enough for a file that may travel.
fn new_passphrase(app: &App) -> Result<Passphrase, Error> {
    let passphrase = match std::env::var(PASSPHRASE_ENV) {
        Ok(text) => Passphrase::new(text),
        Err(_) => {
            let first = app.console.typed_secret("Backup passphrase: ")?.ok_or(Error::BackupPassphraseRequired)?;
            backup::check_strength(&first)?;
            let second =
                app.console.typed_secret("Repeat the backup passphrase: ")?.ok_or(Error::BackupPassphraseRequired)?;
            if first.as_str() != second.as_str() {
                return Err(Error::PassphraseMismatch);
            }
            first
        }
    };
    backup::check_strength(&passphrase)?;
    Ok(passphrase)
}

/// The passphrase to decrypt with: `SESAME_BACKUP_PASSPHRASE`, or typed.
fn passphrase(app: &App) -> Result<Passphrase, Error> {
    match std::env::var(PASSPHRASE_ENV) {
        Ok(text) => Ok(Passphrase::new(text)),
        Err(_) => app.console.typed_secret("Backup passphrase: ")?.ok_or(Error::BackupPassphraseRequired),
    }
}

pub(crate) async fn export(app: &App, out: &Path, force: bool) -> Result<(), Error> {
    // Everything that can be refused without a passphrase is refused first.
    let (mut temp, dir) = temp_beside(out, force)?;
    if app.store.accounts().await?.is_empty() {
        return Err(Error::NothingToExport(app.db_path.clone()));
    }
    let keyring = app.store.unlock(|| app.console.passphrase("Keystore passphrase: ")).await?;
    let document = document(&app.store, &keyring).await?;
    let passphrase = new_passphrase(app)?;
    let write = |file: &mut File| -> std::io::Result<()> {
        backup::write(&document, &passphrase, &mut *file)?;
        file.flush()?;
        file.sync_all()
    };
    write(temp.as_file_mut()).map_err(file_error(out, "write"))?;
    put_in_place(temp, out, dir, force)?;

    let (accounts, pins) = (document.accounts.len(), document.pins.len());
    let text = format!(
        "Exported {accounts} account(s) and {pins} pinned server key(s) to {}. Keep the backup passphrase apart from the file: together they sign in as you.",
        out.display()
    );
    app.out.result(&json!({"exported": out.display().to_string(), "accounts": accounts, "pins": pins}), &text);
    Ok(())
}

/// The backup is written beside its final name and renamed into place only
/// once complete and on disk: a failure at any point leaves no partial
/// file, and the temporary one (mode 0600) is removed on drop. Returns it
/// and the folder it is in.
fn temp_beside(out: &Path, force: bool) -> Result<(NamedTempFile, &Path), Error> {
    let refuse = |reason: &str| Error::BackupFile { path: out.to_owned(), action: "write", reason: reason.to_owned() };
    if !force && out.symlink_metadata().is_ok() {
        return Err(Error::BackupExists(out.to_owned()));
    }
    if out.is_dir() {
        return Err(refuse("it is a folder"));
    }
    let dir = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(refuse("its folder does not exist"));
    }
    let name = out.file_name().ok_or_else(|| refuse("it names no file"))?;
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)
        // tempfile's own text names the temporary file, which the user
        // never asked for: the kind of failure says enough.
        .map_err(|e| file_error(out, "write")(std::io::Error::from(e.kind())))?;
    Ok((temp, dir))
}

/// Renames the finished backup to `out`; without `force`, never over a file
/// that appeared meanwhile.
fn put_in_place(temp: NamedTempFile, out: &Path, dir: &Path, force: bool) -> Result<(), Error> {
    let persisted = if force { temp.persist(out) } else { temp.persist_noclobber(out) };
    persisted.map_err(|e| match e.error.kind() {
        std::io::ErrorKind::AlreadyExists => Error::BackupExists(out.to_owned()),
        _ => file_error(out, "write")(e.error),
    })?;
    // The rename is durable only once the folder is on disk too.
    File::open(dir).and_then(|d| d.sync_all()).map_err(file_error(out, "write"))
}

/// The whole keystore as a backup document, keys opened with `keyring`.
/// The window exports through here too.
pub(crate) async fn document(store: &Store, keyring: &Keyring) -> Result<Document, Error> {
    let keys = store.accounts_with_keys(keyring).await?;
    let pins = store.pins().await?;
    let pins: Vec<PinRecord> = pins
        .iter()
        .map(|pin| PinRecord {
            origin: pin.origin.clone(),
            public_key: base64_url(&pin.public_key),
            key_id: pin.key_id.clone(),
            pinned_at: pin.pinned_at,
        })
        .collect();
    let accounts: Vec<AccountRecord> = keys.iter().map(|(account, key)| AccountRecord::new(account, key)).collect();
    let now = i64::try_from(ui::now().as_secs()).unwrap_or(i64::MAX);
    Ok(Document::new(now, pins, accounts))
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) async fn import(app: &App, file: &Path, replace: bool) -> Result<(), Error> {
    let bytes = read_file(file)?;
    backup::check_envelope(file, &bytes)?;
    let keyring = app.store.unlock(|| app.console.passphrase("Keystore passphrase: ")).await?;
    let passphrase = passphrase(app)?;
    let contents = backup::read(file, &bytes, &passphrase)?;
    let report = app.store.import(&keyring, &contents, replace).await?;
    app.notice_unencrypted(&keyring).await?;
    app.out.result(&report_json(&report), &summary(file, &report));
    Ok(())
}

fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    let file = File::open(path).map_err(file_error(path, "read"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1).read_to_end(&mut bytes).map_err(file_error(path, "read"))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(Error::NotABackup {
            path: path.to_owned(),
            reason: "it is larger than any keystore backup".into(),
        });
    }
    Ok(bytes)
}

/// One line: what was imported, what was already here, what was replaced.
pub(crate) fn summary(file: &Path, report: &ImportReport) -> String {
    let mut text = format!(
        "Imported {} account(s) from {}, skipped {} already present",
        report.imported.len(),
        file.display(),
        report.skipped.len()
    );
    if !report.replaced.is_empty() {
        text.push_str(&format!(", replaced {} with the backup's key", report.replaced.len()));
    }
    text.push_str(&format!("; {} pinned server key(s) added", report.pins_imported));
    if report.pins_replaced > 0 {
        text.push_str(&format!(", {} replaced", report.pins_replaced));
    }
    text.push('.');
    for kept in &report.kept_newer {
        text.push_str(&format!(" {}", kept_line(kept)));
    }
    text
}

/// Why the key here of one account was kept: the backup's is older. A
/// replacement would trade the working key for one the server no longer
/// takes, so nothing offers it (docs/BACKUP.md).
fn kept_line(kept: &KeptNewer) -> String {
    let when = |secs: i64| ui::local_time(sesame_proto::UnixTime::from_secs(u64::try_from(secs).unwrap_or(0)));
    format!(
        "Kept this keystore's key of {}: it is newer than the backup's (the account's key since {}, the backup's since {}), and after a key change or a new registration the server no longer takes the older key, so replacing it would lose the working one; to restore the backup's anyway, remove this key first.",
        kept.account,
        when(kept.here_since),
        when(kept.backup_since)
    )
}

pub(crate) fn report_json(report: &ImportReport) -> serde_json::Value {
    json!({
        "imported": report.imported.len(),
        "skipped": report.skipped.len(),
        "replaced": report.replaced.len(),
        "pins_imported": report.pins_imported,
        "pins_skipped": report.pins_skipped,
        "pins_replaced": report.pins_replaced,
        "imported_accounts": report.imported,
        "skipped_accounts": report.skipped,
        "replaced_accounts": report.replaced,
        "kept_newer": report.kept_newer.len(),
        "kept_newer_accounts": report.kept_newer.iter().map(|k| k.account.clone()).collect::<Vec<_>>(),
    })
}
