//! The backup format and its age envelope, without a keystore.

use rand::rngs::OsRng;

use super::*;

const PASSPHRASE: &str = "correct horse battery staple";

fn pass(text: &str) -> Passphrase {
    Passphrase::new(text.to_owned())
}

fn record(key: &AccountKey, name: &str) -> AccountRecord {
    AccountRecord {
        origin: "https://login.example.com".into(),
        service_id: "03030303030303030303030303030303".into(),
        service_name: "Example".into(),
        account: name.into(),
        public_key: key.public_key().to_base64(),
        private_key: SeedText::of(key),
        confirmed: true,
        created_at: 1_767_225_600,
        last_used_at: None,
        key_since: Some(1_767_225_600),
    }
}

fn document(accounts: Vec<AccountRecord>) -> Document {
    Document::new(1_767_225_700, Vec::new(), accounts)
}

fn path() -> &'static Path {
    Path::new("keys.age")
}

fn json(document: &Document) -> Vec<u8> {
    serde_json::to_vec(document).expect("serialize")
}

#[test]
fn a_backup_decrypts_with_its_passphrase_to_the_same_keys() {
    let key = AccountKey::generate(&mut OsRng);
    let mut file = Vec::new();
    write(&document(vec![record(&key, "alice")]), &pass(PASSPHRASE), &mut file).expect("write");
    assert!(file.starts_with(b"age-encryption.org/v1\n-> scrypt "), "a passphrase age file");
    let contents = read(path(), &file, &pass(PASSPHRASE)).expect("read");
    assert_eq!(contents.accounts.len(), 1);
    assert_eq!(contents.accounts[0].account.as_str(), "alice");
    assert_eq!(contents.accounts[0].key.to_seed(), key.to_seed());
}

#[test]
fn rejects_wrong_passphrase() {
    let key = AccountKey::generate(&mut OsRng);
    let mut file = Vec::new();
    write(&document(vec![record(&key, "alice")]), &pass(PASSPHRASE), &mut file).expect("write");
    let result = read(path(), &file, &pass("not the passphrase at all"));
    assert!(matches!(result, Err(Error::WrongBackupPassphrase(_))), "{result:?}");
}

#[test]
fn rejects_a_file_that_is_not_age() {
    let result = check_envelope(path(), b"SQLite format 3\0");
    assert!(matches!(result, Err(Error::NotABackup { .. })), "{result:?}");
}

#[test]
fn rejects_a_key_that_does_not_match_its_public_key() {
    let (key, other) = (AccountKey::generate(&mut OsRng), AccountKey::generate(&mut OsRng));
    let mut forged = record(&key, "alice");
    forged.public_key = other.public_key().to_base64();
    let result = parse(path(), &json(&document(vec![forged])));
    let Err(Error::DamagedBackup { reason, .. }) = result else { panic!("{result:?}") };
    assert_eq!(reason, "the private key of alice at Example (https://login.example.com) does not match its public key");
}

#[test]
fn rejects_the_same_account_twice() {
    let key = AccountKey::generate(&mut OsRng);
    let result = parse(path(), &json(&document(vec![record(&key, "alice"), record(&key, "alice")])));
    let Err(Error::DamagedBackup { reason, .. }) = result else { panic!("{result:?}") };
    assert_eq!(reason, "account alice at Example (https://login.example.com) is there twice");
}

#[test]
fn names_another_json_file_and_a_newer_version_as_such() {
    let other = parse(path(), br#"{"format": "something-else", "version": 1}"#);
    assert!(matches!(other, Err(Error::NotABackup { .. })), "{other:?}");
    let newer = parse(path(), br#"{"format": "sesame-keystore-backup", "version": 2, "accounts": "?"}"#);
    assert!(matches!(newer, Err(Error::BackupVersion { version: 2, .. })), "{newer:?}");
}

#[test]
fn errors_about_a_malformed_key_never_quote_it() {
    let key = AccountKey::generate(&mut OsRng);
    let mut text = String::from_utf8(json(&document(vec![record(&key, "alice")]))).expect("utf-8");
    let seed = URL_SAFE_NO_PAD.encode(key.to_seed().as_ref());
    // A number where text belongs: serde_json would quote what it found.
    text = text.replace("\"confirmed\":true", &format!("\"confirmed\":\"{seed}\""));
    let error = parse(path(), text.as_bytes()).expect_err("malformed");
    assert!(matches!(error, Error::DamagedBackup { .. }), "{error:?}");
    assert!(!error.to_string().contains(&seed), "{error}");
    assert!(!format!("{error:?}").contains(&seed), "{error:?}");
}

#[test]
fn debug_output_of_a_record_redacts_the_private_key() {
    let key = AccountKey::generate(&mut OsRng);
    let shown = format!("{:?}", record(&key, "alice"));
    assert!(shown.contains("SeedText(<redacted>)"), "{shown}");
    assert!(!shown.contains(&URL_SAFE_NO_PAD.encode(key.to_seed().as_ref())), "{shown}");
}

#[test]
fn refuses_a_short_backup_passphrase() {
    assert!(matches!(check_strength(&pass("elevenchars")), Err(Error::WeakBackupPassphrase(12))));
    assert!(check_strength(&pass("twelve chars")).is_ok());
}
