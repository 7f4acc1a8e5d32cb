//! The one error type of the authenticator. Each variant reads as one clear
//! line after `sesame: `, and has a stable code for `--json` output.

use std::path::PathBuf;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use crate::ui::safe;

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", token_text(.0))]
    Token(#[from] sesame_proto::Error),
    #[error("refusing the plain-HTTP origin {0}: only https:// (or loopback http://) is safe; pass --insecure-http to accept it anyway")]
    InsecureOrigin(String),
    #[error("the server key for {origin} has changed since it was pinned on {pinned_at}: someone may be impersonating the server; if the change is genuine, run: sesame unpin {origin}")]
    PinnedKeyChanged { origin: String, pinned_at: String },
    #[error("{origin} does not prove its identity: {reason}")]
    BadIdentity { origin: String, reason: String },
    #[error("cannot reach {origin}: {reason}")]
    Unreachable { origin: String, reason: String },
    #[error("refusing {origin}: {reason}")]
    BadCertificate { origin: String, reason: &'static str },
    #[error("cannot use the CA file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("{origin} gave an answer that is not Sesame's ({reason})")]
    BadResponse { origin: String, reason: String },
    #[error("{}", rejection_text(.code, .message))]
    Rejected { code: String, message: String },
    #[error("the server no longer knows account {account}; remove the local key with: sesame remove {account} --service {service_id} --origin {origin}")]
    UnknownAccount { account: String, service_id: String, origin: String },
    #[error("the server no longer takes this device's key for {account}: it was removed from the account, or replaced by a key change on another device. To sign in here again, add this device from the account page on a signed-in device (\"Add another authenticator\") or with a recovery link, after removing the old key with: sesame remove {account} --service {service_id} --origin {origin}")]
    KeyNotOnAccount { account: String, service_id: String, origin: String },
    /// `reason` is the server's own sentence, which names the existing
    /// account when the name only looks like it.
    #[error("{service} refused the name {account}: {reason}; choose another name")]
    AccountExists { account: String, service: String, reason: String },
    #[error("the registration of {account} may or may not have reached the server ({reason}); the key is kept: try sesame login, or sesame remove if it fails")]
    OutcomeUnknown { account: String, reason: String },
    #[error("this sign-in request is already {0}: reload the login page to start again")]
    AlreadyFinal(&'static str),
    #[error("you have no account at {service} ({origin}) yet; register one with: sesame register TOKEN --name NAME")]
    NoLocalAccount { service: String, origin: String },
    #[error("you have several accounts at {service}: {names}; choose one with --account NAME")]
    AmbiguousAccount { service: String, names: String },
    #[error("you have no local key for account {account} at {service}; your accounts there: {names}")]
    UnknownLocalAccount { account: String, service: String, names: String },
    #[error("you already have a key for account {account} at {service}; log in with: sesame login TOKEN --account {account}")]
    LocalAccountExists { account: String, service: String },
    #[error("no local account {account} matches service {service}{}", origin.as_deref().map(|o| format!(" at {o}")).unwrap_or_default())]
    NoSuchLocalAccount { account: String, service: String, origin: Option<String> },
    #[error("account {account} exists at several services matching {service}: {origins}; choose one with --origin")]
    AmbiguousService { account: String, service: String, origins: String },
    #[error("no server key is pinned for {0}")]
    NotPinned(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("wrong passphrase")]
    WrongPassphrase,
    #[error("the keystore is locked: set SESAME_PASSPHRASE or run in a terminal to type the passphrase")]
    PassphraseRequired,
    #[error("the passphrases do not match")]
    PassphraseMismatch,
    #[error("the key of the keystore {} is missing from the system keyring (entry \"{}\" for {keystore_id}): it was deleted, or the keystore was copied from another computer; move the keystore aside and restore your keys into a new one with: sesame import BACKUP", path.display(), crate::system_keyring::SERVICE)]
    KeyringEntryMissing { path: PathBuf, keystore_id: String },
    #[error("the system keyring's entry for the keystore {} holds another key: it was changed outside sesame; restore your keys into a new keystore with: sesame import BACKUP", .0.display())]
    KeyringWrongKey(PathBuf),
    #[error("the system keyring is locked ({0}): unlock it, for instance by logging in to your desktop session, then try again")]
    KeyringLocked(String),
    #[error("the system keyring, which keeps this keystore's key, cannot be reached ({0}): run sesame in your desktop session, where the keyring is available")]
    KeyringUnavailable(String),
    #[error("the key of the keystore {} is kept in the system keyring, which --no-keyring (SESAME_NO_KEYRING) forbids using: run without it", .0.display())]
    KeyringOptedOut(PathBuf),
    #[error("{0} needs confirmation: run it in a terminal, or pass --yes")]
    NeedsConfirmation(&'static str),
    #[error("{0} needs a terminal to ask what to do; use sesame register, login or deny instead")]
    NeedsTerminal(&'static str),
    #[error("cancelled; nothing was sent")]
    Cancelled,
    #[error("cannot read {path}: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("no Sesame QR code found in {0}")]
    NoQrCode(String),
    #[error("the keystore is locked: enter your passphrase first")]
    Locked,
    #[error("{message}")]
    Forbidden { code: &'static str, message: &'static str },
    #[error("there is nothing at this address")]
    NotFound,
    #[error("the request is too large")]
    PayloadTooLarge,
    #[error("{} already exists; pass --force to overwrite it", .0.display())]
    BackupExists(PathBuf),
    #[error("cannot {action} {}: {reason}", path.display())]
    BackupFile { path: PathBuf, action: &'static str, reason: String },
    #[error("the keystore {} holds no accounts: there is nothing to export", .0.display())]
    NothingToExport(PathBuf),
    #[error("{} is not a Sesame backup: {reason}; nothing was imported", path.display())]
    NotABackup { path: PathBuf, reason: String },
    #[error("the backup {} is damaged: {reason}; nothing was imported", path.display())]
    DamagedBackup { path: PathBuf, reason: String },
    #[error("{} is a version {version} backup, which this sesame cannot read (upgrade sesame); nothing was imported", path.display())]
    BackupVersion { path: PathBuf, version: u64 },
    #[error("wrong passphrase for the backup {}; nothing was imported", .0.display())]
    WrongBackupPassphrase(PathBuf),
    #[error("the backup passphrase is too short: use at least {0} characters, for instance four or five random words")]
    WeakBackupPassphrase(usize),
    #[error("a backup needs its passphrase: set SESAME_BACKUP_PASSPHRASE or run in a terminal to type it")]
    BackupPassphraseRequired,
    #[error("nothing was imported: the backup and this keystore differ on {conflicts}; to take the backup's, run again with --replace{}", kept_text(.kept_newer))]
    ImportConflict { conflicts: String, kept_newer: String },
    #[error("the key change of account {account} at {service} is unsettled: sign in with it once (sesame login), then try again")]
    RekeyUnsettled { account: String, service: String },
    #[error("this request adds a new authenticator to the account {account}; answer it with: sesame enroll TOKEN")]
    EnrollmentToken { account: String },
    #[error("this request signs in; it adds no authenticator to an account: use sesame login or sesame register")]
    NotAnEnrollment,
    /// What to do: pass `--number`, or type it into the window.
    #[error("this sign-in asks for the number shown on the page that is signing in: {0}")]
    NumberNeeded(&'static str),
    #[error("this sign-in asks for no number; leave out --number")]
    NumberNotAsked,
    #[error("keystore: {0}")]
    Keystore(String),
    #[error("keystore {path}: {reason}")]
    KeystoreFile { path: PathBuf, reason: String },
    #[error("keystore: {}", database_failure(.0))]
    Db(#[from] sqlx::Error),
    #[error("keystore migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The stable code of this error in `--json` output. Errors the server
    /// reported keep the server's code (docs/PROTOCOL.md §7).
    pub fn code(&self) -> &str {
        match self {
            Self::Token(e) => e.code(),
            Self::InsecureOrigin(_) => "insecure_origin",
            Self::PinnedKeyChanged { .. } => "pinned_key_changed",
            Self::BadIdentity { .. } => "bad_server_identity",
            Self::Unreachable { .. } => "unreachable",
            Self::BadCertificate { .. } => "bad_certificate",
            Self::CaFile { .. } => "bad_ca_file",
            Self::BadResponse { .. } => "bad_response",
            Self::Rejected { code, .. } => code,
            Self::UnknownAccount { .. } => "unknown_account",
            Self::KeyNotOnAccount { .. } => "bad_signature",
            Self::AccountExists { .. } => "account_exists",
            Self::OutcomeUnknown { .. } => "outcome_unknown",
            Self::AlreadyFinal(_) => "challenge_used",
            Self::NoLocalAccount { .. } => "no_local_account",
            Self::AmbiguousAccount { .. } => "ambiguous_account",
            Self::UnknownLocalAccount { .. } => "unknown_local_account",
            Self::LocalAccountExists { .. } => "local_account_exists",
            Self::NoSuchLocalAccount { .. } => "no_such_local_account",
            Self::AmbiguousService { .. } => "ambiguous_service",
            Self::NotPinned(_) => "not_pinned",
            Self::InvalidInput(_) => "invalid_input",
            Self::WrongPassphrase => "wrong_passphrase",
            Self::PassphraseRequired => "passphrase_required",
            Self::PassphraseMismatch => "passphrase_mismatch",
            Self::KeyringEntryMissing { .. } => "keyring_entry_missing",
            Self::KeyringWrongKey(_) => "keyring_wrong_key",
            Self::KeyringLocked(_) => "keyring_locked",
            Self::KeyringUnavailable(_) => "keyring_unavailable",
            Self::KeyringOptedOut(_) => "keyring_opted_out",
            Self::NeedsConfirmation(_) => "needs_confirmation",
            Self::NeedsTerminal(_) => "needs_terminal",
            Self::Cancelled => "cancelled",
            Self::Image { .. } => "bad_image",
            Self::NoQrCode(_) => "no_qr_code",
            Self::Locked => "locked",
            Self::Forbidden { code, .. } => code,
            Self::NotFound => "not_found",
            Self::PayloadTooLarge => "payload_too_large",
            Self::BackupExists(_) => "backup_exists",
            Self::BackupFile { .. } => "backup_file",
            Self::NothingToExport(_) => "nothing_to_export",
            Self::NotABackup { .. } => "not_a_backup",
            Self::DamagedBackup { .. } => "damaged_backup",
            Self::BackupVersion { .. } => "backup_version",
            Self::WrongBackupPassphrase(_) => "wrong_backup_passphrase",
            Self::WeakBackupPassphrase(_) => "weak_passphrase",
            Self::BackupPassphraseRequired => "backup_passphrase_required",
            Self::ImportConflict { .. } => "import_conflict",
            Self::RekeyUnsettled { .. } => "rekey_unsettled",
            Self::EnrollmentToken { .. } | Self::NotAnEnrollment => "wrong_purpose",
            Self::NumberNeeded(_) => "number_required",
            Self::NumberNotAsked => "unexpected_number",
            Self::Keystore(_) | Self::KeystoreFile { .. } | Self::Db(_) | Self::Migrate(_) => "keystore",
            Self::Io(_) => "io",
        }
    }

    /// The HTTP status of this error in the window's API: 4xx when the
    /// request or the user's choice is at fault, 502 when the origin is, 500
    /// when this keystore is.
    pub(crate) fn http_status(&self) -> StatusCode {
        match self {
            Self::Token(_)
            | Self::InsecureOrigin(_)
            | Self::InvalidInput(_)
            | Self::PassphraseMismatch
            | Self::AmbiguousAccount { .. }
            | Self::AmbiguousService { .. }
            | Self::NeedsConfirmation(_)
            | Self::NeedsTerminal(_)
            | Self::Cancelled
            | Self::Image { .. }
            | Self::NothingToExport(_)
            | Self::NotABackup { .. }
            | Self::DamagedBackup { .. }
            | Self::BackupVersion { .. }
            | Self::WeakBackupPassphrase(_)
            | Self::NumberNeeded(_)
            | Self::NumberNotAsked => StatusCode::BAD_REQUEST,
            Self::Locked | Self::PassphraseRequired | Self::BackupPassphraseRequired => StatusCode::UNAUTHORIZED,
            Self::WrongPassphrase | Self::WrongBackupPassphrase(_) | Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound
            | Self::NoLocalAccount { .. }
            | Self::UnknownLocalAccount { .. }
            | Self::NoSuchLocalAccount { .. }
            | Self::NotPinned(_) => StatusCode::NOT_FOUND,
            Self::PinnedKeyChanged { .. }
            | Self::UnknownAccount { .. }
            | Self::KeyNotOnAccount { .. }
            | Self::AccountExists { .. }
            | Self::LocalAccountExists { .. }
            | Self::BackupExists(_)
            | Self::ImportConflict { .. }
            | Self::RekeyUnsettled { .. }
            | Self::AlreadyFinal(_) => StatusCode::CONFLICT,
            Self::EnrollmentToken { .. } | Self::NotAnEnrollment => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NoQrCode(_) | Self::Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadIdentity { .. }
            | Self::Unreachable { .. }
            | Self::BadCertificate { .. }
            | Self::BadResponse { .. }
            | Self::OutcomeUnknown { .. } => StatusCode::BAD_GATEWAY,
            Self::KeyringLocked(_) | Self::KeyringUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::CaFile { .. }
            | Self::KeyringEntryMissing { .. }
            | Self::KeyringWrongKey(_)
            | Self::KeyringOptedOut(_)
            | Self::Keystore(_)
            | Self::KeystoreFile { .. }
            | Self::BackupFile { .. }
            | Self::Db(_)
            | Self::Migrate(_)
            | Self::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The window's API answers every error as `{"error": code, "message":
/// text}`, the same line the command line prints.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.code(), "message": one_line(&self.to_string())});
        // The window says in its own words what to do about a conflict:
        // it has a checkbox where the command line has --replace.
        if let Self::ImportConflict { conflicts, kept_newer } = &self {
            body["conflicts"] = json!(one_line(conflicts));
            if !kept_newer.is_empty() {
                body["kept_newer"] = json!(one_line(kept_newer));
            }
        }
        (self.http_status(), Json(body)).into_response()
    }
}

/// What `--replace` leaves as it is: keys here that are newer than the
/// backup's (store/backup.rs).
fn kept_text(kept_newer: &str) -> String {
    if kept_newer.is_empty() {
        String::new()
    } else {
        format!(", which keeps the newer key here of {kept_newer}: the backup's is older, and the server no longer takes it")
    }
}

/// Local token errors, with the way out where there is one.
fn token_text(error: &sesame_proto::Error) -> String {
    use sesame_proto::Error as E;
    match error {
        E::Expired => "the token has expired: reload the login page and try again".into(),
        E::StaleCode => "the token's code is too old: copy or scan the one the login page shows now".into(),
        E::BadTokenSignature => "the token's signature is not valid: it was altered or forged".into(),
        E::NotYetValid => "the token was issued in the future: check this computer's clock".into(),
        other => other.to_string(),
    }
}

/// The server's refusals, by their stable code (docs/PROTOCOL.md §7). The
/// server's own message is only used for codes this version does not know.
fn rejection_text(code: &str, message: &str) -> String {
    match code {
        "token_expired" | "challenge_expired" => {
            "the sign-in request has expired: reload the login page and try again".into()
        }
        "stale_code" => "the token's code is too old: copy or scan the one the login page shows now".into(),
        "bad_code" | "bad_token_signature" | "bad_encoding" | "truncated" | "trailing_bytes" => {
            format!("the server says the token was altered or forged ({code})")
        }
        "unknown_signing_key" => {
            "the server no longer uses the key that signed this token: reload the login page".into()
        }
        "wrong_origin" => "the token names another origin than the server it came from".into(),
        "challenge_used" => "this sign-in request was already used: reload the login page to start again".into(),
        "unknown_challenge" => "the server does not know this sign-in request: reload the login page".into(),
        "unknown_service" => "the server no longer has this service".into(),
        "registration_closed" => "this service does not accept new accounts from this request".into(),
        "key_pending" => {
            "this key waits for confirmation: confirm its code on the page where it was added, then try again".into()
        }
        "key_registered" => "this key is already registered at this service under another account".into(),
        "wrong_purpose" => "the server says this request is for something else than this answer".into(),
        "wrong_account" => "the server says this request adds an authenticator to another account".into(),
        "bad_signature" => "the server refused the signature: the local key does not match the account".into(),
        "rate_limited" => "the server is rate limiting requests: wait a minute and try again".into(),
        "unavailable" => "the server is temporarily unavailable: try again shortly".into(),
        "internal" => "the server failed with an internal error; nothing was changed: try again, and tell the service's operator if it persists".into(),
        _ => format!("the server refused the request: {} ({code})", one_line(message)),
    }
}

/// Collapses any line breaks, so that every error stays on one line, and
/// neutralises control characters: an error may quote a server, and a
/// hostile one could otherwise rewrite the terminal (fake a success line,
/// set the window title) through ANSI or OSC escapes.
/// What went wrong with the keystore's database, in words a user can act on:
/// SQLite's own text ("(code: 26) file is not a database") says what, not
/// what to do.
fn database_failure(error: &sqlx::Error) -> String {
    let code = match error {
        sqlx::Error::Database(e) => e.code().and_then(|code| code.parse::<i32>().ok()),
        _ => None,
    };
    // The primary result code is the low byte of an extended one.
    let said = match code.map(|code| code & 0xff) {
        Some(5 | 6) => "it is in use by another sesame; try again when that one is done",
        Some(8) => "it is read-only; sesame needs to write to it",
        Some(10) => "the disk could not be read or written",
        Some(11) => "the file is damaged; restore your keys from a backup (sesame import)",
        Some(13) => "the disk is full",
        Some(14) => "the file cannot be opened: check that its folder exists and that you may write there",
        Some(26) => "the file is not a Sesame keystore (not an SQLite database); pass another --db",
        _ => return error.to_string(),
    };
    said.to_owned()
}

pub(crate) fn one_line(text: &str) -> String {
    safe(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_that_is_no_keystore_is_named_as_such_not_in_sqlites_words() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "these are not keys, and not a database either: ".repeat(100)).expect("write");
        let error = crate::store::Store::open(&path).await.expect_err("not a keystore");
        let line = crate::error_line(&error);
        assert!(line.contains("not a Sesame keystore"), "{line}");
        assert!(!line.contains("code: 26"), "{line}");
    }

    #[test]
    fn a_server_message_with_escapes_prints_as_one_line_without_them() {
        let error = Error::Rejected {
            code: "odd\u{1b}[2K".into(),
            message: "\u{1b}]0;owned\u{7}\r\n\u{1b}[32msesame: signed in\u{9b}0m".into(),
        };
        let line = crate::error_line(&error);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert_eq!(
            line,
            "the server refused the request: \u{FFFD}]0;owned\u{FFFD} \u{FFFD}[32msesame: signed in\u{FFFD}0m (odd\u{FFFD}[2K)"
        );
    }
}
