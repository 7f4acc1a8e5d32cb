//! Keystore tests on real SQLite files in temporary directories.

use std::os::unix::fs::PermissionsExt;

use rand::rngs::OsRng;
use sesame_proto::{AccountKey, AccountName, Origin, ServerKey, ServiceId, ServiceName, UnixTime};

use super::*;
use crate::vault::{KdfParams, Passphrase};

const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);

struct Fixture {
    dir: tempfile::TempDir,
    origin: Origin,
    service_id: ServiceId,
    service_name: ServiceName,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            origin: Origin::parse("https://login.example.com").expect("origin"),
            service_id: ServiceId([3; 16]),
            service_name: ServiceName::parse("Example").expect("service name"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("keys").join("sesame.db")
    }

    async fn open(&self) -> Store {
        Store::open(&self.path()).await.expect("open keystore")
    }

    async fn add(&self, store: &Store, keyring: &Keyring, name: &str) -> (AccountName, AccountKey) {
        let account = AccountName::parse(name).expect("account name");
        let key = AccountKey::generate(&mut OsRng);
        let slot = Slot { origin: &self.origin, service_id: &self.service_id, account: &account };
        store.insert_unconfirmed(keyring, slot, &self.service_name, &key, NOW).await.expect("insert");
        (account, key)
    }

    fn slot<'a>(&'a self, account: &'a AccountName) -> Slot<'a> {
        Slot { origin: &self.origin, service_id: &self.service_id, account }
    }

    /// Every byte SQLite keeps for this keystore, journal files included.
    fn raw_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for entry in fs::read_dir(self.path().parent().expect("parent")).expect("read dir") {
            bytes.extend(fs::read(entry.expect("entry").path()).expect("read file"));
        }
        bytes
    }
}

fn pass(text: &str) -> Passphrase {
    Passphrase::new(text.to_owned())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn keys_round_trip_without_passphrase() {
    let fx = Fixture::new();
    let store = fx.open().await;
    let (account, key) = fx.add(&store, &Keyring::Plain, "alice").await;
    let back = store.key(&Keyring::Plain, fx.slot(&account)).await.expect("read key");
    assert_eq!(back.to_seed(), key.to_seed());
    let listed = store.accounts_at(&fx.origin, &fx.service_id).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "alice");
    assert!(!listed[0].confirmed);
    store.confirm(fx.slot(&account), NOW).await.expect("confirm");
    assert!(store.accounts().await.expect("list")[0].confirmed);
}

#[tokio::test]
async fn keystore_file_and_directory_are_owner_only() {
    let fx = Fixture::new();
    let store = fx.open().await;
    fx.add(&store, &Keyring::Plain, "alice").await;
    store.close().await;
    let file_mode = fs::metadata(fx.path()).expect("file").permissions().mode() & 0o777;
    let dir_mode = fs::metadata(fx.path().parent().expect("dir")).expect("dir").permissions().mode() & 0o777;
    assert_eq!(file_mode, 0o600);
    assert_eq!(dir_mode, 0o700);
}

#[tokio::test]
async fn tightens_permissions_of_an_existing_keystore() {
    let fx = Fixture::new();
    fx.open().await.close().await;
    fs::set_permissions(fx.path(), fs::Permissions::from_mode(0o644)).expect("chmod");
    fx.open().await.close().await;
    assert_eq!(fs::metadata(fx.path()).expect("file").permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn refuses_second_key_for_the_same_account() {
    let fx = Fixture::new();
    let store = fx.open().await;
    fx.add(&store, &Keyring::Plain, "alice").await;
    let account = AccountName::parse("alice").expect("name");
    let again = store
        .insert_unconfirmed(
            &Keyring::Plain,
            fx.slot(&account),
            &fx.service_name,
            &AccountKey::generate(&mut OsRng),
            NOW,
        )
        .await;
    assert!(matches!(again, Err(Error::LocalAccountExists { .. })), "{again:?}");
}

#[tokio::test]
async fn with_passphrase_the_file_holds_no_private_key() {
    let fx = Fixture::new();
    let store = fx.open().await;
    // One key stored before the passphrase was set, one after.
    let (alice, before) = fx.add(&store, &Keyring::Plain, "alice").await;
    store.set_passphrase(&Keyring::Plain, &pass("open sesame"), KdfParams::INSECURE_FAST).await.expect("set");
    let keyring = store.unlock(|| Ok(pass("open sesame"))).await.expect("unlock");
    let (bob, after) = fx.add(&store, &keyring, "bob").await;
    store.close().await;

    let raw = fx.raw_bytes();
    assert!(!contains(&raw, before.to_seed().as_ref()), "alice's seed is in the file");
    assert!(!contains(&raw, after.to_seed().as_ref()), "bob's seed is in the file");

    let store = fx.open().await;
    let keyring = store.unlock(|| Ok(pass("open sesame"))).await.expect("unlock");
    assert_eq!(store.key(&keyring, fx.slot(&alice)).await.expect("alice").to_seed(), before.to_seed());
    assert_eq!(store.key(&keyring, fx.slot(&bob)).await.expect("bob").to_seed(), after.to_seed());
}

#[tokio::test]
async fn rejects_wrong_passphrase_before_reading_keys() {
    let fx = Fixture::new();
    let store = fx.open().await;
    store.set_passphrase(&Keyring::Plain, &pass("open sesame"), KdfParams::INSECURE_FAST).await.expect("set");
    let wrong = store.unlock(|| Ok(pass("open barley"))).await;
    assert!(matches!(wrong, Err(Error::WrongPassphrase)), "{wrong:?}");
}

#[tokio::test]
async fn locked_keystore_without_passphrase_input_says_so() {
    let fx = Fixture::new();
    let store = fx.open().await;
    store.set_passphrase(&Keyring::Plain, &pass("open sesame"), KdfParams::INSECURE_FAST).await.expect("set");
    let locked = store.unlock(|| Err(Error::PassphraseRequired)).await;
    assert!(matches!(locked, Err(Error::PassphraseRequired)), "{locked:?}");
}

#[tokio::test]
async fn changing_the_passphrase_re_encrypts_every_key() {
    let fx = Fixture::new();
    let store = fx.open().await;
    store.set_passphrase(&Keyring::Plain, &pass("first"), KdfParams::INSECURE_FAST).await.expect("set");
    let first = store.unlock(|| Ok(pass("first"))).await.expect("unlock");
    let (alice, key) = fx.add(&store, &first, "alice").await;
    let sealed_before: Vec<u8> =
        sqlx::query_scalar("SELECT secret FROM account").fetch_one(&store.pool).await.expect("secret");

    let count = store.set_passphrase(&first, &pass("second"), KdfParams::INSECURE_FAST).await.expect("change");
    assert_eq!(count, 1);
    let sealed_after: Vec<u8> =
        sqlx::query_scalar("SELECT secret FROM account").fetch_one(&store.pool).await.expect("secret");
    assert_ne!(sealed_before, sealed_after);

    assert!(matches!(store.unlock(|| Ok(pass("first"))).await, Err(Error::WrongPassphrase)));
    let second = store.unlock(|| Ok(pass("second"))).await.expect("unlock with the new passphrase");
    assert_eq!(store.key(&second, fx.slot(&alice)).await.expect("key").to_seed(), key.to_seed());
}

#[tokio::test]
async fn pins_first_key_and_keeps_it() {
    let fx = Fixture::new();
    let store = fx.open().await;
    let first = ServerKey::from_seed(&[1; 32]).public_key();
    let second = ServerKey::from_seed(&[2; 32]).public_key();
    assert!(store.pin(&fx.origin).await.expect("pin").is_none());
    assert_eq!(store.add_pin(&fx.origin, &first, NOW).await.expect("add").public_key, first);
    // A second pin for the same origin does not replace the first.
    assert_eq!(store.add_pin(&fx.origin, &second, NOW).await.expect("add").public_key, first);
    assert!(store.unpin(&fx.origin).await.expect("unpin"));
    assert!(!store.unpin(&fx.origin).await.expect("unpin again"));
    assert!(store.pin(&fx.origin).await.expect("pin").is_none());
}

#[tokio::test]
async fn notices_are_shown_once() {
    let fx = Fixture::new();
    let store = fx.open().await;
    assert!(store.first_notice("unencrypted_keys", NOW).await.expect("first"));
    store.close().await;
    let store = fx.open().await;
    assert!(!store.first_notice("unencrypted_keys", NOW).await.expect("second"));
}

fn entry(fx: &Fixture, name: &str, key: &AccountKey) -> crate::backup::AccountEntry {
    crate::backup::AccountEntry {
        origin: fx.origin.clone(),
        service_id: fx.service_id,
        service_name: fx.service_name.clone(),
        account: AccountName::parse(name).expect("account name"),
        key: AccountKey::from_seed(&key.to_seed()),
        confirmed: true,
        created_at: 1_700_000_000,
        last_used_at: Some(1_700_000_100),
        key_since: Some(1_700_000_000),
    }
}

/// A backup written at 1_700_000_200.
fn contents(accounts: Vec<crate::backup::AccountEntry>) -> crate::backup::Contents {
    crate::backup::Contents { exported_at: 1_700_000_200, pins: Vec::new(), accounts }
}

#[tokio::test]
async fn import_into_an_encrypted_keystore_seals_keys_with_its_passphrase() {
    let fx = Fixture::new();
    let store = fx.open().await;
    store.set_passphrase(&Keyring::Plain, &pass("open sesame"), KdfParams::INSECURE_FAST).await.expect("set");
    let keyring = store.unlock(|| Ok(pass("open sesame"))).await.expect("unlock");
    let key = AccountKey::generate(&mut OsRng);
    let report = store.import(&keyring, &contents(vec![entry(&fx, "alice", &key)]), false).await.expect("import");
    assert_eq!(report.imported, ["alice at Example (https://login.example.com)"]);
    store.close().await;

    assert!(!contains(&fx.raw_bytes(), key.to_seed().as_ref()), "the imported seed is in the file");
    let store = fx.open().await;
    let keyring = store.unlock(|| Ok(pass("open sesame"))).await.expect("unlock");
    let alice = AccountName::parse("alice").expect("name");
    assert_eq!(store.key(&keyring, fx.slot(&alice)).await.expect("key").to_seed(), key.to_seed());
    let listed = &store.accounts().await.expect("list")[0];
    assert_eq!((listed.confirmed, listed.created_at, listed.last_used_at), (true, 1_700_000_000, Some(1_700_000_100)));
}

#[tokio::test]
async fn a_conflicting_account_imports_nothing_unless_replace() {
    let fx = Fixture::new();
    let store = fx.open().await;
    let (alice, here) = fx.add(&store, &Keyring::Plain, "alice").await;
    let (theirs, bob) = (AccountKey::generate(&mut OsRng), AccountKey::generate(&mut OsRng));
    let backup = contents(vec![entry(&fx, "bob", &bob), entry(&fx, "alice", &theirs)]);

    let refused = store.import(&Keyring::Plain, &backup, false).await;
    let Err(Error::ImportConflict { conflicts, .. }) = refused else { panic!("{refused:?}") };
    assert_eq!(conflicts, "the key of alice at Example (https://login.example.com)");
    assert_eq!(store.accounts().await.expect("list").len(), 1, "bob was not imported");
    assert_eq!(store.key(&Keyring::Plain, fx.slot(&alice)).await.expect("key").to_seed(), here.to_seed());

    let report = store.import(&Keyring::Plain, &backup, true).await.expect("import with replace");
    assert_eq!((report.imported.len(), report.replaced.len(), report.skipped.len()), (1, 1, 0));
    assert_eq!(store.key(&Keyring::Plain, fx.slot(&alice)).await.expect("key").to_seed(), theirs.to_seed());
}

#[tokio::test]
async fn an_identical_account_is_skipped_and_left_as_it_was() {
    let fx = Fixture::new();
    let store = fx.open().await;
    let (_, key) = fx.add(&store, &Keyring::Plain, "alice").await;
    let report =
        store.import(&Keyring::Plain, &contents(vec![entry(&fx, "alice", &key)]), false).await.expect("import");
    assert_eq!((report.imported.len(), report.skipped.len()), (0, 1));
    let listed = &store.accounts().await.expect("list")[0];
    assert!(!listed.confirmed, "the row here was not overwritten");
}

#[tokio::test]
async fn a_different_pinned_key_is_a_conflict_too() {
    let fx = Fixture::new();
    let store = fx.open().await;
    let ours = ServerKey::from_seed(&[1; 32]).public_key();
    let theirs = ServerKey::from_seed(&[2; 32]).public_key();
    store.add_pin(&fx.origin, &ours, NOW).await.expect("pin");
    let pin = crate::backup::PinEntry { origin: fx.origin.clone(), key: theirs, pinned_at: 1_700_000_000 };
    let backup = crate::backup::Contents { exported_at: 1_700_000_200, pins: vec![pin], accounts: Vec::new() };
    let refused = store.import(&Keyring::Plain, &backup, false).await;
    let Err(Error::ImportConflict { conflicts, .. }) = refused else { panic!("{refused:?}") };
    assert_eq!(conflicts, "the server key pinned for https://login.example.com");
    assert_eq!(store.pin(&fx.origin).await.expect("pin").expect("pinned").public_key, ours);
    let report = store.import(&Keyring::Plain, &backup, true).await.expect("replace");
    assert_eq!(report.pins_replaced, 1);
    assert_eq!(store.pin(&fx.origin).await.expect("pin").expect("pinned").public_key, theirs);
}

// ---- which key is newer -------------------------------------------------

/// alice here, confirmed, her key hers since `since`.
async fn confirmed_alice(fx: &Fixture, store: &Store, since: UnixTime) -> AccountKey {
    let (alice, key) = fx.add(store, &Keyring::Plain, "alice").await;
    store.confirm(fx.slot(&alice), since).await.expect("confirm");
    sqlx::query("UPDATE account SET key_since = ?").bind(secs(since)).execute(&store.pool).await.expect("since");
    key
}

#[tokio::test]
async fn an_older_key_in_the_backup_never_replaces_the_confirmed_key_here() {
    let fx = Fixture::new();
    let store = fx.open().await;
    // alice's key here dates from after the backup's: a key change since.
    let here = confirmed_alice(&fx, &store, NOW).await;
    let (old, bob) = (AccountKey::generate(&mut OsRng), AccountKey::generate(&mut OsRng));
    let backup = contents(vec![entry(&fx, "alice", &old), entry(&fx, "bob", &bob)]);
    for replace in [false, true] {
        let report = store.import(&Keyring::Plain, &backup, replace).await.expect("import");
        let kept: Vec<_> =
            report.kept_newer.iter().map(|k| (k.account.as_str(), k.here_since, k.backup_since)).collect();
        assert_eq!(kept, [("alice at Example (https://login.example.com)", secs(NOW), 1_700_000_000)]);
        assert!(report.replaced.is_empty(), "replace={replace}");
        let alice = AccountName::parse("alice").expect("name");
        assert_eq!(store.key(&Keyring::Plain, fx.slot(&alice)).await.expect("key").to_seed(), here.to_seed());
    }
    assert_eq!(store.accounts().await.expect("list").len(), 2, "bob came in all the same");
}

#[tokio::test]
async fn a_backup_without_key_times_stands_on_its_export_time() {
    let fx = Fixture::new();
    let store = fx.open().await;
    confirmed_alice(&fx, &store, UnixTime::from_secs(1_700_000_300)).await;
    let mut old = entry(&fx, "alice", &AccountKey::generate(&mut OsRng));
    old.key_since = None;
    let report = store.import(&Keyring::Plain, &contents(vec![old]), false).await.expect("import");
    assert_eq!(report.kept_newer[0].backup_since, 1_700_000_200, "the backup's export time");

    // Changed here before the backup was written: the backup may hold the
    // newer key, and the choice is the person's.
    let fx = Fixture::new();
    let store = fx.open().await;
    confirmed_alice(&fx, &store, UnixTime::from_secs(1_700_000_100)).await;
    let mut newer = entry(&fx, "alice", &AccountKey::generate(&mut OsRng));
    newer.key_since = None;
    let refused = store.import(&Keyring::Plain, &contents(vec![newer]), false).await;
    assert!(matches!(refused, Err(Error::ImportConflict { .. })), "{refused:?}");
}

#[tokio::test]
async fn a_newer_key_in_the_backup_is_a_conflict_that_names_what_replace_keeps() {
    let fx = Fixture::new();
    let store = fx.open().await;
    confirmed_alice(&fx, &store, UnixTime::from_secs(1_600_000_000)).await;
    let (bob, _) = fx.add(&store, &Keyring::Plain, "bob").await;
    store.confirm(fx.slot(&bob), NOW).await.expect("confirm bob");
    let backup = contents(vec![
        entry(&fx, "alice", &AccountKey::generate(&mut OsRng)),
        entry(&fx, "bob", &AccountKey::generate(&mut OsRng)),
    ]);
    let refused = store.import(&Keyring::Plain, &backup, false).await;
    let Err(error @ Error::ImportConflict { .. }) = refused else { panic!("{refused:?}") };
    assert_eq!(
        crate::error_line(&error),
        "nothing was imported: the backup and this keystore differ on the key of alice at Example (https://login.example.com); to take the backup's, run again with --replace, which keeps the newer key here of bob at Example (https://login.example.com): the backup's is older, and the server no longer takes it"
    );
}

// ---- the system keyring, where no keyring is asked --------------------

#[tokio::test]
async fn a_plain_keystore_that_holds_keys_stays_plain_without_asking_any_keyring() {
    let fx = Fixture::new();
    let store = fx.open().await.with_system_keyring(true);
    fx.add(&store, &Keyring::Plain, "alice").await;
    let keyring = store.unlock(|| Err(Error::PassphraseRequired)).await.expect("unlock");
    assert!(matches!(keyring, Keyring::Plain));
    assert_eq!(store.protection().await.expect("protection"), Protection::Plain);
    assert_eq!(store.plain_because(), None, "no keyring was tried");
}

#[tokio::test]
async fn with_no_keyring_a_new_keystore_is_plain_and_says_why() {
    let fx = Fixture::new();
    let store = fx.open().await.with_system_keyring(false);
    let keyring = store.unlock(|| Err(Error::PassphraseRequired)).await.expect("unlock");
    assert!(matches!(keyring, Keyring::Plain));
    assert_eq!(store.plain_because(), Some(PlainBecause::OptedOut));
    assert_eq!(store.protection().await.expect("protection"), Protection::Plain);
}

#[tokio::test]
async fn a_keystore_whose_key_is_in_the_keyring_refuses_no_keyring() {
    let fx = Fixture::new();
    let store = fx.open().await;
    sqlx::query("INSERT INTO system_keyring (id, keystore_id, verifier, set_at) VALUES (1, 'ab', x'00', 0)")
        .execute(&store.pool)
        .await
        .expect("insert");
    assert_eq!(store.protection().await.expect("protection"), Protection::SystemKeyring);
    let refused = store.unlock(|| Err(Error::PassphraseRequired)).await;
    assert!(matches!(refused, Err(Error::KeyringOptedOut(_))), "{refused:?}");
}
