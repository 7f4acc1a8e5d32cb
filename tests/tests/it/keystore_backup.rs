//! `sesame export` and `sesame import`: a backup of one authenticator's
//! keystore restores into another that then signs in to a real server; the
//! standard `age` tool opens it; and every refusal is one line that leaves
//! the keystore as it was.

use std::{
    ffi::OsStr,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Output,
};

use serde_json::Value;
use sesame_proto::AccountKey;
use sesame_tests::{
    age_on_terminal, on_terminal, sesame_bin, stderr, stdout, Browser, Result, Server, Service, Sesame,
};

const BACKUP_PASSPHRASE: &str = "four random words here";

/// `sesame ARGS…` with the backup passphrase in its environment.
fn with_backup_passphrase(sesame: &Sesame, args: &[&str], passphrase: &str) -> Output {
    sesame.run_with_env(args, &[("SESAME_BACKUP_PASSPHRASE", OsStr::new(passphrase))])
}

fn export(sesame: &Sesame, out: &Path) -> Output {
    with_backup_passphrase(sesame, &["export", "--out", path_str(out)], BACKUP_PASSPHRASE)
}

fn import(sesame: &Sesame, file: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["import", path_str(file)];
    args.extend_from_slice(extra);
    with_backup_passphrase(sesame, &args, BACKUP_PASSPHRASE)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

fn succeeded(output: &Output) -> String {
    assert!(output.status.success(), "sesame failed: {}{}", stdout(output), stderr(output));
    stdout(output)
}

/// Asserts exit status 1 and exactly `line` on stderr.
fn fails_with_line(output: &Output, line: &str) {
    assert_eq!(output.status.code(), Some(1), "stdout: {} stderr: {}", stdout(output), stderr(output));
    assert_eq!(stderr(output), format!("{line}\n"));
}

fn accounts(sesame: &Sesame) -> Value {
    serde_json::from_str(succeeded(&sesame.run(&["--json", "accounts"])).trim()).expect("accounts --json is JSON")
}

/// The keystore as the file on disk holds it, and as `accounts` lists it.
fn snapshot(sesame: &Sesame) -> (Vec<u8>, Value) {
    let listed = accounts(sesame);
    (std::fs::read(&sesame.db).expect("the keystore file"), listed)
}

/// A server with one service, and an authenticator that registered `names`
/// there.
async fn registered(names: &[&str]) -> Result<(Server, Service, Sesame)> {
    let server = Server::start().await?;
    let service = server.create_service("Example").await?;
    let sesame = Sesame::new();
    for name in names {
        let challenge = Browser::new(&server).start_challenge(&service.id).await?;
        succeeded(&sesame.run(&["register", &challenge.token, "--name", name, "--yes"]));
    }
    Ok((server, service, sesame))
}

fn backup_path(sesame: &Sesame) -> PathBuf {
    sesame.dir.path().join("keys.age")
}

#[tokio::test]
async fn keystore_backup_restores_into_a_fresh_keystore_that_signs_in() -> Result<()> {
    let (server, service, mut laptop) = registered(&["alice", "bob"]).await?;
    // The old keystore is encrypted: export needs its passphrase, and the
    // backup passphrase is another one.
    laptop.passphrase = Some("laptop passphrase".into());
    succeeded(&laptop.run(&["passphrase"]));
    let file = backup_path(&laptop);
    let out = export(&laptop, &file);
    assert_eq!(
        succeeded(&out),
        format!(
            "Exported 2 account(s) and 1 pinned server key(s) to {}. Keep the backup passphrase apart from the file: together they sign in as you.\n",
            file.display()
        )
    );
    assert_eq!(std::fs::metadata(&file)?.permissions().mode() & 0o777, 0o600);
    let bytes = std::fs::read(&file)?;
    assert!(bytes.starts_with(b"age-encryption.org/v1\n-> scrypt "), "an age passphrase file");
    assert!(!String::from_utf8_lossy(&bytes).contains("alice"), "the backup is encrypted");

    // The new keystore is encrypted with its own passphrase.
    let mut phone = Sesame::new();
    phone.passphrase = Some("phone passphrase".into());
    succeeded(&phone.run(&["passphrase"]));
    let out = import(&phone, &file, &[]);
    assert_eq!(
        succeeded(&out),
        format!(
            "Imported 2 account(s) from {}, skipped 0 already present; 1 pinned server key(s) added.\n",
            file.display()
        )
    );
    let listed = |sesame: &Sesame| -> Vec<(Value, Value, Value)> {
        let all = accounts(sesame);
        all.as_array()
            .expect("a list")
            .iter()
            .map(|a| (a["account"].clone(), a["public_key"].clone(), a["confirmed"].clone()))
            .collect()
    };
    assert_eq!(listed(&phone), listed(&laptop));

    // The imported key signs in: the pin came along, the server sees alice.
    let browser = Browser::new(&server);
    let challenge = browser.start_challenge(&service.id).await?;
    succeeded(&phone.run(&["login", &challenge.token, "--account", "alice", "--yes"]));
    let status = browser.status(&challenge).await?;
    assert_eq!((status["status"].as_str(), status["account"].as_str()), (Some("completed"), Some("alice")));

    // The keys are sealed under the phone's passphrase, not the laptop's.
    phone.passphrase = Some("laptop passphrase".into());
    let challenge = browser.start_challenge(&service.id).await?;
    fails_with_line(&phone.run(&["login", &challenge.token, "--account", "bob", "--yes"]), "sesame: wrong passphrase");

    // Importing the same backup again changes nothing and says so.
    phone.passphrase = Some("phone passphrase".into());
    let out = import(&phone, &file, &[]);
    assert_eq!(
        succeeded(&out),
        format!(
            "Imported 0 account(s) from {}, skipped 2 already present; 0 pinned server key(s) added.\n",
            file.display()
        )
    );
    assert_eq!(server.admin().accounts(&service.id).await?.len(), 2, "no account was created on the server");
    Ok(())
}

#[tokio::test]
async fn keystore_backup_opens_with_the_age_tool_and_holds_the_keys() -> Result<()> {
    let (server, service, sesame) = registered(&["alice"]).await?;
    let file = backup_path(&sesame);
    succeeded(&export(&sesame, &file));
    let plain = sesame.dir.path().join("keys.json");

    let (ok, screen) =
        age_on_terminal(&[OsStr::new("-d"), OsStr::new("-o"), plain.as_os_str(), file.as_os_str()], "not it at all")?;
    assert!(!ok && !plain.exists(), "age decrypted with a wrong passphrase: {screen}");
    let (ok, screen) =
        age_on_terminal(&[OsStr::new("-d"), OsStr::new("-o"), plain.as_os_str(), file.as_os_str()], BACKUP_PASSPHRASE)?;
    assert!(ok, "age -d failed: {screen}");

    let document: Value = serde_json::from_slice(&std::fs::read(&plain)?)?;
    assert_eq!(document["format"], "sesame-keystore-backup");
    assert_eq!(document["version"], 1);
    let pin = &document["pins"][0];
    assert_eq!(pin["origin"], server.origin.as_str());
    let account = &document["accounts"][0];
    let listed = &accounts(&sesame)[0];
    for field in ["origin", "service_id", "service_name", "account", "public_key", "confirmed", "created_at"] {
        assert_eq!(account[field], listed[field], "{field}");
    }
    assert_eq!(account["service_id"], service.id.as_str());
    // The private key is the 32-byte seed of the public key next to it.
    let seed = decode_b64url(account["private_key"].as_str().expect("a private key"));
    let seed: &[u8; 32] = seed.as_slice().try_into()?;
    assert_eq!(AccountKey::from_seed(seed).public_key().to_base64(), listed["public_key"].as_str().unwrap_or(""));
    Ok(())
}

#[tokio::test]
async fn keystore_backup_passphrase_is_typed_twice_to_export_and_once_to_import() -> Result<()> {
    let (_server, _service, laptop) = registered(&["alice"]).await?;
    let file = backup_path(&laptop);
    let sesame_at = |sesame: &Sesame, args: &[&str], prompts: &[&str]| {
        let mut all = vec![OsStr::new("--db"), sesame.db.as_os_str()];
        all.extend(args.iter().map(OsStr::new));
        on_terminal(&sesame_bin(), &all, prompts, BACKUP_PASSPHRASE)
    };
    let (ok, screen) = sesame_at(
        &laptop,
        &["export", "--out", path_str(&file)],
        &["Backup passphrase: ", "Repeat the backup passphrase: "],
    )?;
    assert!(ok, "export at a terminal failed: {screen}");
    assert!(screen.contains("Repeat the backup passphrase: "), "asked twice: {screen}");
    let phone = Sesame::new();
    let (ok, screen) = sesame_at(&phone, &["import", path_str(&file)], &["Backup passphrase: "])?;
    assert!(ok, "import at a terminal failed: {screen}");
    assert!(screen.contains("Imported 1 account(s)"), "{screen}");
    assert_eq!(accounts(&phone)[0]["public_key"], accounts(&laptop)[0]["public_key"]);
    Ok(())
}

fn decode_b64url(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

#[tokio::test]
async fn keystore_backup_refusals_are_one_line_and_change_nothing() -> Result<()> {
    let (_server, _service, laptop) = registered(&["alice"]).await?;
    let file = backup_path(&laptop);
    succeeded(&export(&laptop, &file));
    let (_server2, _service2, phone) = registered(&["carol"]).await?;
    let before = snapshot(&phone);
    let show = file.display();

    let out = with_backup_passphrase(&phone, &["import", path_str(&file)], "not the passphrase");
    fails_with_line(&out, &format!("sesame: wrong passphrase for the backup {show}; nothing was imported"));
    assert!(snapshot(&phone) == before, "a wrong passphrase changed the keystore");

    let bytes = std::fs::read(&file)?;
    let truncated = phone.dir.path().join("truncated.age");
    std::fs::write(&truncated, &bytes[..bytes.len() - 20])?;
    fails_with_line(
        &import(&phone, &truncated, &[]),
        &format!(
            "sesame: the backup {} is damaged: it is cut short or altered; nothing was imported",
            truncated.display()
        ),
    );
    let header_only = phone.dir.path().join("header.age");
    std::fs::write(&header_only, &bytes[..40])?;
    fails_with_line(
        &import(&phone, &header_only, &[]),
        &format!(
            "sesame: the backup {} is damaged: it is cut short or altered; nothing was imported",
            header_only.display()
        ),
    );

    // Another file altogether: the keystore of the laptop itself.
    fails_with_line(
        &import(&phone, &laptop.db, &[]),
        &format!(
            "sesame: {} is not a Sesame backup: it is not an age-encrypted file; nothing was imported",
            laptop.db.display()
        ),
    );
    // An age file, with the right passphrase, of something else.
    let other = phone.dir.path().join("notes.age");
    let notes = phone.dir.path().join("notes.txt");
    std::fs::write(&notes, "{\"shopping\": [\"milk\"]}\n")?;
    let (ok, screen) = age_on_terminal(
        &[OsStr::new("-p"), OsStr::new("-o"), other.as_os_str(), notes.as_os_str()],
        BACKUP_PASSPHRASE,
    )?;
    assert!(ok, "age -p failed: {screen}");
    fails_with_line(
        &import(&phone, &other, &[]),
        &format!(
            "sesame: {} is not a Sesame backup: it decrypts, but holds no keystore backup; nothing was imported",
            other.display()
        ),
    );
    assert!(snapshot(&phone) == before, "a refused import changed the keystore");
    Ok(())
}

#[tokio::test]
async fn keystore_backup_export_keeps_an_existing_file_and_refuses_a_weak_passphrase() -> Result<()> {
    let (_server, _service, sesame) = registered(&["alice"]).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("keys.age");
    std::fs::write(&file, "precious")?;
    fails_with_line(
        &export(&sesame, &file),
        &format!("sesame: {} already exists; pass --force to overwrite it", file.display()),
    );
    assert_eq!(std::fs::read_to_string(&file)?, "precious");

    let out = with_backup_passphrase(&sesame, &["export", "--out", path_str(&file), "--force"], "short");
    fails_with_line(
        &out,
        "sesame: the backup passphrase is too short: use at least 12 characters, for instance four or five random words",
    );
    // Without a passphrase and without a terminal to type one.
    let out = sesame.run(&["export", "--out", path_str(&file), "--force"]);
    fails_with_line(
        &out,
        "sesame: a backup needs its passphrase: set SESAME_BACKUP_PASSPHRASE or run in a terminal to type it",
    );
    assert_eq!(std::fs::read_to_string(&file)?, "precious");
    // No temporary file is left beside it.
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);

    let out = with_backup_passphrase(&sesame, &["export", "--out", path_str(&file), "--force"], BACKUP_PASSPHRASE);
    succeeded(&out);
    assert!(std::fs::read(&file)?.starts_with(b"age-encryption.org/v1\n"));
    assert_eq!(std::fs::metadata(&file)?.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);

    let empty = Sesame::new();
    fails_with_line(
        &export(&empty, &dir.path().join("empty.age")),
        &format!("sesame: the keystore {} holds no accounts: there is nothing to export", empty.db.display()),
    );
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
    Ok(())
}

/// Waits until the clock's second has moved past now, so that what happens
/// next has a later time than what happened before: the keystore records
/// times in seconds.
fn next_second() {
    let second = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let start = second();
    while second() == start {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[tokio::test]
async fn keystore_backup_conflict_imports_nothing_unless_replace() -> Result<()> {
    // The phone registered alice first; the server then deleted her, and
    // the laptop registered alice anew and made a backup: its key is the
    // newer one, and the phone's may as well be taken over.
    let server = Server::start().await?;
    let service = server.create_service("Example").await?;
    let phone = Sesame::new();
    let challenge = Browser::new(&server).start_challenge(&service.id).await?;
    succeeded(&phone.run(&["register", &challenge.token, "--name", "alice", "--yes"]));
    server
        .admin()
        .request(reqwest::Method::DELETE, &format!("/admin/api/services/{}/accounts/alice", service.id))
        .send()
        .await?
        .error_for_status()?;
    next_second();
    let laptop = Sesame::new();
    for name in ["alice", "bob"] {
        let challenge = Browser::new(&server).start_challenge(&service.id).await?;
        succeeded(&laptop.run(&["register", &challenge.token, "--name", name, "--yes"]));
    }
    let file = backup_path(&laptop);
    succeeded(&export(&laptop, &file));
    let before = snapshot(&phone);

    let out = import(&phone, &file, &[]);
    fails_with_line(
        &out,
        &format!(
            "sesame: nothing was imported: the backup and this keystore differ on the key of alice at Example ({}); to take the backup's, run again with --replace",
            server.origin
        ),
    );
    assert!(snapshot(&phone) == before, "a conflicting import changed the keystore");

    let out = import(&phone, &file, &["--replace"]);
    assert_eq!(
        succeeded(&out),
        format!(
            "Imported 1 account(s) from {}, skipped 0 already present, replaced 1 with the backup's key; 0 pinned server key(s) added.\n",
            file.display()
        )
    );
    let keys = |sesame: &Sesame| -> Vec<Value> {
        accounts(sesame).as_array().expect("a list").iter().map(|a| a["public_key"].clone()).collect()
    };
    assert_eq!(keys(&phone), keys(&laptop), "the backup's keys replaced the phone's");
    let browser = Browser::new(&server);
    let challenge = browser.start_challenge(&service.id).await?;
    succeeded(&phone.run(&["login", &challenge.token, "--account", "alice", "--yes"]));
    assert_eq!(browser.status(&challenge).await?["status"], "completed", "the key taken over signs in");
    Ok(())
}

#[tokio::test]
async fn keystore_backup_older_than_a_rekey_never_replaces_the_working_key() -> Result<()> {
    let (server, service, laptop) = registered(&["alice", "bob"]).await?;
    let file = backup_path(&laptop);
    succeeded(&export(&laptop, &file));
    // alice's key changes after the backup: the server now takes only the
    // new key, and the backup's is dead.
    next_second();
    let browser = Browser::new(&server);
    let challenge = browser.start_challenge(&service.id).await?;
    succeeded(&laptop.run(&["login", &challenge.token, "--account", "alice", "--rekey", "--yes"]));
    let working = accounts(&laptop)[0]["public_key"].clone();
    let key_since = accounts(&laptop)[0]["key_since"].as_i64().expect("the time of the key change");

    // Restoring the backup over it keeps the working key, says which
    // account and why, and offers no --replace; --replace keeps it too.
    for extra in [&[][..], &["--replace"][..]] {
        let out = import(&laptop, &file, extra);
        let said = succeeded(&out);
        let prefix = format!(
            "Imported 0 account(s) from {}, skipped 1 already present; 0 pinned server key(s) added. Kept this keystore's key of alice at Example ({}): it is newer than the backup's (the account's key since ",
            file.display(),
            server.origin
        );
        assert!(said.starts_with(&prefix), "{said}");
        assert!(
            said.ends_with("), and after a key change or a new registration the server no longer takes the older key, so replacing it would lose the working one; to restore the backup's anyway, remove this key first.\n"),
            "{said}"
        );
        assert!(!said.contains("--replace") && stderr(&out).is_empty(), "{said}{}", stderr(&out));
        assert_eq!(accounts(&laptop)[0]["public_key"], working, "the working key stays ({extra:?})");
        assert_eq!(accounts(&laptop)[0]["key_since"].as_i64(), Some(key_since));
    }
    let json = laptop.run_with_env(
        &["--json", "import", path_str(&file)],
        &[("SESAME_BACKUP_PASSPHRASE", OsStr::new(BACKUP_PASSPHRASE))],
    );
    let report: Value = serde_json::from_str(succeeded(&json).trim())?;
    assert_eq!(report["kept_newer_accounts"], serde_json::json!([format!("alice at Example ({})", server.origin)]));

    let browser = Browser::new(&server);
    let challenge = browser.start_challenge(&service.id).await?;
    succeeded(&laptop.run(&["login", &challenge.token, "--account", "alice", "--yes"]));
    assert_eq!(browser.status(&challenge).await?["status"], "completed", "the working key still signs in");
    Ok(())
}
