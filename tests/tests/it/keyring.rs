//! Keys encrypted by default: a new keystore's keys are sealed with a random
//! key kept in the system keyring, here a real Secret Service
//! (gnome-keyring-daemon, which scripts/test installs) on a session bus of
//! the test's own. Where no keyring can be reached the keys stay plain and
//! the warning says why; a keystore whose entry is gone says so in one line.

use std::{
    ffi::{OsStr, OsString},
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use anyhow::{bail, ensure, Context as _};
use base64::Engine as _;
use reqwest::header;
use serde_json::{json, Value};
use sesame_tests::{age_on_terminal, stderr, stdout, Browser, Result, Server, Service, Sesame};
use tempfile::TempDir;

const BACKUP_PASSPHRASE: &str = "four random words here";

/// A session bus and a Secret Service on it, in a folder of their own: the
/// keyring's files, the bus socket, and the daemons' home. Killed on drop.
struct SecretService {
    dir: TempDir,
    bus: Option<Child>,
    keyring: Option<Child>,
    address: OsString,
}

impl SecretService {
    /// Starts `dbus-daemon` with a configuration that activates nothing
    /// (so no other keyring daemon can take the name), then
    /// `gnome-keyring-daemon`, which creates and unlocks its login keyring
    /// with the password it reads on stdin, as a CI setup does.
    fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("sesame-keyring-").tempdir()?;
        let socket = dir.path().join("bus");
        let config = dir.path().join("session.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )?;
        let mut bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start dbus-daemon (package dbus-daemon)")?;
        let mut line = String::new();
        BufReader::new(bus.stdout.take().context("stdout is piped")?).read_line(&mut line)?;
        let address = OsString::from(line.trim());
        ensure!(!address.is_empty(), "dbus-daemon printed no address");
        let mut service = Self { dir, bus: Some(bus), keyring: None, address };
        let home = service.dir.path().join("home");
        std::fs::create_dir_all(&home)?;
        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--components=secrets", "--unlock"])
            .env("HOME", &home)
            .env("XDG_DATA_HOME", home.join("data"))
            .env("XDG_RUNTIME_DIR", service.dir.path())
            .env("DBUS_SESSION_BUS_ADDRESS", &service.address)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start gnome-keyring-daemon (package gnome-keyring)")?;
        let mut stdin = keyring.stdin.take().context("stdin is piped")?;
        stdin.write_all(b"test keyring password")?;
        drop(stdin);
        service.keyring = Some(keyring);
        service.wait_until_ready()?;
        Ok(service)
    }

    /// `dbus-send` on this bus, printing the reply.
    fn dbus_send(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("dbus-send")
            .arg(format!("--bus={}", self.address.to_string_lossy()))
            .args(["--print-reply", "--reply-timeout=5000"])
            .args(args)
            .output()
            .context("cannot run dbus-send")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until the daemon owns the Secret Service's name and its
    /// default collection (the login keyring) exists. Asking for the name's
    /// owner first activates nothing.
    fn wait_until_ready(&self) -> Result<()> {
        for _ in 0..400 {
            let owned = self.dbus_send(&[
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.secrets",
            ])?;
            if owned.contains("boolean true") {
                let alias = self.dbus_send(&[
                    "--dest=org.freedesktop.secrets",
                    "/org/freedesktop/secrets",
                    "org.freedesktop.Secret.Service.ReadAlias",
                    "string:default",
                ])?;
                if alias.contains("/collection/") {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("gnome-keyring-daemon did not offer an unlocked default collection")
    }

    /// The environment that points `sesame` at this keyring.
    fn env(&self) -> [(&'static str, &OsStr); 1] {
        [("DBUS_SESSION_BUS_ADDRESS", self.address.as_os_str())]
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        for child in [self.keyring.take(), self.bus.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A session bus address where nothing listens: no keyring to reach.
fn no_bus(sesame: &Sesame) -> OsString {
    OsString::from(format!("unix:path={}", sesame.dir.path().join("no-bus").display()))
}

fn succeeded(output: &Output) -> String {
    assert!(output.status.success(), "sesame failed: {}{}", stdout(output), stderr(output));
    stdout(output)
}

/// Asserts exit status 1 and exactly one line on stderr, which it returns.
fn one_line_failure(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "stdout: {} stderr: {}", stdout(output), stderr(output));
    let text = stderr(output);
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    text
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// A server with one service.
async fn service() -> Result<(Server, Service)> {
    let server = Server::start().await?;
    let service = server.create_service("Example").await?;
    Ok((server, service))
}

/// Registers `name` with `env`, and returns stderr.
async fn register(
    server: &Server,
    service: &Service,
    sesame: &Sesame,
    name: &str,
    env: &[(&str, &OsStr)],
) -> Result<String> {
    let challenge = Browser::new(server).start_challenge(&service.id).await?;
    let out = sesame.run_with_env(&["register", &challenge.token, "--name", name, "--yes"], env);
    succeeded(&out);
    Ok(stderr(&out))
}

/// Logs in as `name` with `env`; returns the output, and whether the server
/// saw the sign-in completed.
async fn login(
    server: &Server,
    service: &Service,
    sesame: &Sesame,
    name: &str,
    env: &[(&str, &OsStr)],
) -> Result<(Output, bool)> {
    let browser = Browser::new(server);
    let challenge = browser.start_challenge(&service.id).await?;
    let out = sesame.run_with_env(&["login", &challenge.token, "--account", name, "--yes"], env);
    let status = browser.status(&challenge).await?;
    Ok((out, status["status"] == "completed"))
}

/// The private keys (32-byte seeds) of every account, read from a backup
/// that `sesame export` writes and the standard `age` tool opens.
fn seeds(sesame: &Sesame, env: &[(&str, &OsStr)]) -> Result<Vec<Vec<u8>>> {
    let file = sesame.dir.path().join("seeds.age");
    let plain = sesame.dir.path().join("seeds.json");
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&plain);
    let mut env = env.to_vec();
    env.push(("SESAME_BACKUP_PASSPHRASE", OsStr::new(BACKUP_PASSPHRASE)));
    succeeded(&sesame.run_with_env(&["export", "--out", path_str(&file)], &env));
    let (ok, screen) =
        age_on_terminal(&[OsStr::new("-d"), OsStr::new("-o"), plain.as_os_str(), file.as_os_str()], BACKUP_PASSPHRASE)?;
    ensure!(ok, "age -d failed: {screen}");
    let document: Value = serde_json::from_slice(&std::fs::read(&plain)?)?;
    std::fs::remove_file(&plain)?;
    let mut seeds = Vec::new();
    for account in document["accounts"].as_array().context("accounts")? {
        let text = account["private_key"].as_str().context("a private key")?;
        seeds.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text)?);
    }
    ensure!(!seeds.is_empty(), "the backup holds keys");
    Ok(seeds)
}

/// Whether the keystore file holds any of `seeds` as they are.
fn file_holds_any(db: &PathBuf, seeds: &[Vec<u8>]) -> Result<bool> {
    let bytes = std::fs::read(db)?;
    Ok(seeds.iter().any(|seed| bytes.windows(seed.len()).any(|w| w == seed.as_slice())))
}

#[tokio::test]
async fn keyring_new_keystore_is_encrypted_and_signs_in_without_a_passphrase() -> Result<()> {
    let (server, service) = service().await?;
    let keyring = SecretService::start()?;
    let sesame = Sesame::new();
    assert!(sesame.passphrase.is_none(), "no passphrase is ever given");

    let said = register(&server, &service, &sesame, "alice", &keyring.env()).await?;
    assert!(!said.contains("unencrypted"), "no warning when the keyring keeps the key: {said}");
    let (out, completed) = login(&server, &service, &sesame, "alice", &keyring.env()).await?;
    succeeded(&out);
    assert!(completed, "alice signed in with the key the keyring opened");
    assert!(!stderr(&out).contains("assphrase"), "nothing asked for a passphrase: {}", stderr(&out));

    // The file holds the key only sealed.
    let seeds = seeds(&sesame, &keyring.env())?;
    assert!(!file_holds_any(&sesame.db, &seeds)?, "the keystore holds a plain private key");

    // Without the keyring the keys do not open, in one line that says what
    // to do; and --no-keyring refuses to use it.
    let dead = no_bus(&sesame);
    let (out, completed) = login(&server, &service, &sesame, "alice", &[("DBUS_SESSION_BUS_ADDRESS", &dead)]).await?;
    let line = one_line_failure(&out);
    assert!(!completed);
    assert!(
        line.starts_with("sesame: the system keyring, which keeps this keystore's key, cannot be reached (")
            && line.ends_with("): run sesame in your desktop session, where the keyring is available\n"),
        "{line}"
    );
    let mut env = keyring.env().to_vec();
    env.push(("SESAME_NO_KEYRING", OsStr::new("1")));
    let (out, _) = login(&server, &service, &sesame, "alice", &env).await?;
    assert_eq!(
        one_line_failure(&out),
        format!(
            "sesame: the key of the keystore {} is kept in the system keyring, which --no-keyring (SESAME_NO_KEYRING) forbids using: run without it\n",
            sesame.db.display()
        )
    );

    // A passphrase instead: the keys are re-sealed under it, and the
    // keyring is no longer needed.
    let mut env = vec![("DBUS_SESSION_BUS_ADDRESS", keyring.address.as_os_str())];
    env.push(("SESAME_PASSPHRASE", OsStr::new("a passphrase instead")));
    assert_eq!(
        succeeded(&sesame.run_with_env(&["passphrase"], &env)),
        "Set a passphrase in place of the key in the system keyring; 1 key(s) re-encrypted.\n"
    );
    assert!(!file_holds_any(&sesame.db, &seeds)?);
    let (out, completed) = login(
        &server,
        &service,
        &sesame,
        "alice",
        &[("DBUS_SESSION_BUS_ADDRESS", &dead), ("SESAME_PASSPHRASE", OsStr::new("a passphrase instead"))],
    )
    .await?;
    succeeded(&out);
    assert!(completed, "the passphrase opens the keys without any keyring");
    Ok(())
}

#[tokio::test]
async fn keyring_absent_keeps_new_keys_plain_and_warns_why() -> Result<()> {
    let (server, service) = service().await?;
    let sesame = Sesame::new();
    let dead = no_bus(&sesame);
    let said = register(&server, &service, &sesame, "alice", &[("DBUS_SESSION_BUS_ADDRESS", &dead)]).await?;
    let note = said.lines().find(|l| l.starts_with("note:")).unwrap_or_default().to_owned();
    let prefix = format!(
        "note: your keys are stored unencrypted in {}: no system keyring could be reached (",
        sesame.db.display()
    );
    assert!(
        note.starts_with(&prefix)
            && note.ends_with("); to encrypt them, set a passphrase with: sesame passphrase (or, where a keyring is available, run: sesame keyring)"),
        "{said}"
    );
    assert!(file_holds_any(&sesame.db, &seeds(&sesame, &[("DBUS_SESSION_BUS_ADDRESS", &dead)])?)?, "the key is plain");

    // A keyring that appears later changes nothing by itself: the keystore
    // holds keys, and stays as it is, without a second warning.
    let keyring = SecretService::start()?;
    let (out, completed) = login(&server, &service, &sesame, "alice", &keyring.env()).await?;
    succeeded(&out);
    assert!(completed);
    assert!(!stderr(&out).contains("note:"), "{}", stderr(&out));
    let before = seeds(&sesame, &keyring.env())?;
    assert!(file_holds_any(&sesame.db, &before)?, "still plain until asked");

    // `sesame keyring` moves it.
    assert_eq!(
        succeeded(&sesame.run_with_env(&["keyring"], &keyring.env())),
        "Encrypted 1 key(s) with a key kept in the system keyring; no passphrase is asked for any more. A backup (sesame export) is the way to move them to another computer.\n"
    );
    assert!(!file_holds_any(&sesame.db, &before)?, "sealed now");
    let (out, completed) = login(&server, &service, &sesame, "alice", &keyring.env()).await?;
    succeeded(&out);
    assert!(completed, "the moved key signs in");

    // --no-keyring on a new keystore: plain, and the warning names it.
    let scripted = Sesame::new();
    let mut env = keyring.env().to_vec();
    env.push(("SESAME_NO_KEYRING", OsStr::new("true")));
    let said = register(&server, &service, &scripted, "bob", &env).await?;
    assert!(
        said.contains(&format!(
            "note: your keys are stored unencrypted in {} (--no-keyring); to encrypt them, set a passphrase with: sesame passphrase\n",
            scripted.db.display()
        )),
        "{said}"
    );
    assert!(file_holds_any(&scripted.db, &seeds(&scripted, &env)?)?, "the key is plain");
    Ok(())
}

#[tokio::test]
async fn keyring_entry_missing_is_one_line_and_fails() -> Result<()> {
    let (server, service) = service().await?;
    let sesame = Sesame::new();
    {
        let keyring = SecretService::start()?;
        register(&server, &service, &sesame, "alice", &keyring.env()).await?;
    }
    // Another keyring: the entry this keystore names is not in it, as after
    // the keystore was copied to another computer, or the entry deleted.
    let other = SecretService::start()?;
    let (out, completed) = login(&server, &service, &sesame, "alice", &other.env()).await?;
    assert!(!completed);
    let line = one_line_failure(&out);
    let prefix = format!(
        "sesame: the key of the keystore {} is missing from the system keyring (entry \"Sesame authenticator\" for ",
        sesame.db.display()
    );
    assert!(
        line.starts_with(&prefix)
            && line.ends_with("): it was deleted, or the keystore was copied from another computer; move the keystore aside and restore your keys into a new one with: sesame import BACKUP\n"),
        "{line}"
    );
    let out = sesame.run_with_env(&["--json", "accounts"], &other.env());
    let listed: Value = serde_json::from_str(&succeeded(&out))?;
    assert_eq!(listed[0]["account"], "alice", "listing needs no key, and the keystore is untouched");
    Ok(())
}

#[tokio::test]
async fn keyring_window_opens_the_keys_the_same_way() -> Result<()> {
    let (server, service) = service().await?;
    let keyring = SecretService::start()?;
    let sesame = Sesame::new();
    let ui = sesame.ui_with_env(&[], &keyring.env())?;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let first = client.get(&ui.url).send().await?;
    let cookie = first.headers()[header::SET_COOKIE].to_str()?.split(';').next().context("a cookie")?.to_owned();
    let status = |client: &reqwest::Client| {
        client.get(format!("{}/api/status", ui.origin)).header(header::COOKIE, &cookie).send()
    };
    let post = |path: &str, body: Value| {
        client
            .post(format!("{}{path}", ui.origin))
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, &ui.origin)
            .json(&body)
            .send()
    };
    let browser = Browser::new(&server);
    let challenge = browser.start_challenge(&service.id).await?;
    let answer = post("/api/register", json!({"token": challenge.token, "name": "alice"})).await?;
    ensure!(answer.status().is_success(), "register: {}", answer.text().await?);
    let now: Value = status(&client).await?.json().await?;
    assert_eq!((now["protection"].as_str(), now["locked"].as_bool()), (Some("system_keyring"), Some(false)));

    let challenge = browser.start_challenge(&service.id).await?;
    let answer = post("/api/login", json!({"token": challenge.token, "account": "alice"})).await?;
    ensure!(answer.status().is_success(), "login: {}", answer.text().await?);
    assert_eq!(browser.status(&challenge).await?["status"], "completed");
    drop(ui);
    assert!(!file_holds_any(&sesame.db, &seeds(&sesame, &keyring.env())?)?, "the window sealed the key too");
    Ok(())
}
