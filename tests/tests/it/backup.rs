//! `sesame-server backup`: a copy taken while the server works restores into
//! a server that signs in accounts made before it; an existing file is kept
//! unless `--force`, and a failed backup leaves nothing behind.

use std::{
    ffi::OsStr,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use sesame_tests::{eventually, server_command, stderr, stdout, Browser, Result, Server, ServerOptions, Sesame};

fn backup(data_dir: &Path, out: &Path, force: bool) -> Result<std::process::Output> {
    let mut args = vec![OsStr::new("--data-dir"), data_dir.as_os_str(), OsStr::new("backup"), OsStr::new("--out")];
    args.push(out.as_os_str());
    if force {
        args.push(OsStr::new("--force"));
    }
    server_command(&args)
}

/// Asserts a failure with one line on stderr that says `needle`.
fn fails_with(output: &std::process::Output, needle: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line expected:\n{err}");
    assert!(err.starts_with("sesame-server: ") && err.contains(needle), "expected {needle:?} in {err}");
}

/// The permission bits of `path`.
fn mode(path: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("a readable folder")
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_into_a_server_that_signs_in_an_earlier_account() -> Result<()> {
    let server = Server::start().await?;
    let service = server.create_service("Kept").await?;
    let browser = Browser::new(&server);
    let sesame = Sesame::new();
    let challenge = browser.start_challenge(&service.id).await?;
    let out = sesame.run(&["--json", "register", &challenge.token, "--name", "alice", "--yes"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // Writers keep going while the backup runs: each new challenge is an
    // INSERT that commits.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, written, browser, id) = (stop.clone(), written.clone(), browser.clone(), service.id.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                browser.start_challenge(&id).await?;
                written.fetch_add(1, Ordering::Relaxed);
            }
            sesame_tests::Result::Ok(())
        })
    };
    eventually(Duration::from_secs(10), || async { (written.load(Ordering::Relaxed) >= 20).then_some(()) }).await?;
    let folder = tempfile::tempdir()?;
    let copy = folder.path().join("sesame-backup.db");
    let data_dir = server.data_dir.path().to_owned();
    let before = written.load(Ordering::Relaxed);
    let (copy_path, output) = {
        let copy = copy.clone();
        tokio::task::spawn_blocking(move || backup(&data_dir, &copy, false).map(|o| (copy, o))).await??
    };
    let during = written.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    load.await??;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).starts_with("Backed up "), "{}", stdout(&output));
    assert!(during > 0, "the load kept writing while the backup ran");
    assert_eq!(files_in(folder.path()), ["sesame-backup.db"], "nothing else is left beside the copy");
    assert_eq!(mode(&copy_path)?, 0o600, "the copy holds the server's keys: its owner's alone");

    // Restore: stop the server, put the copy in a new data directory, and
    // start a server on it at the same address (the origin in the tokens).
    let options = ServerOptions { port: Some(server.port), ..ServerOptions::default() };
    drop(server);
    let restored = tempfile::Builder::new().prefix("sesame-restored-").tempdir()?;
    std::fs::copy(&copy_path, restored.path().join("sesame.db"))?;
    let server = Server::start_in(restored, options).await?;
    let browser = Browser::new(&server);
    let challenge = browser.start_challenge(&service.id).await?;
    let out = sesame.run(&["--json", "login", &challenge.token, "--account", "alice", "--yes"]);
    assert!(out.status.success(), "the pinned key and alice's key came back: {}{}", stdout(&out), stderr(&out));
    assert_eq!(browser.status(&challenge).await?["account"], "alice");
    Ok(())
}

#[tokio::test]
async fn an_existing_file_is_kept_unless_force_and_a_failed_backup_leaves_nothing() -> Result<()> {
    let server = Server::start().await?;
    server.create_service("Kept").await?;
    let folder = tempfile::tempdir()?;
    let copy = folder.path().join("backup.db");
    std::fs::write(&copy, "an older backup")?;
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;

    fails_with(&backup(server.data_dir.path(), &copy, false)?, "already exists; pass --force to replace it");
    assert_eq!(std::fs::read_to_string(&copy)?, "an older backup", "the existing file is untouched");

    let output = backup(server.data_dir.path(), &copy, true)?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(std::fs::read(&copy)?.starts_with(b"SQLite format 3\0"), "--force replaced it with a database");
    assert_eq!(mode(&copy)?, 0o600, "the replaced file's mode does not carry over");

    // No database where the data directory says: nothing is written.
    let empty = tempfile::tempdir()?;
    let elsewhere = folder.path().join("none.db");
    fails_with(&backup(empty.path(), &elsewhere, false)?, "no database at");
    // A folder that does not exist: the copy cannot be written, and nothing
    // is left of it.
    let nowhere = folder.path().join("missing").join("backup.db");
    fails_with(&backup(server.data_dir.path(), &nowhere, false)?, "cannot write the backup");
    assert_eq!(files_in(folder.path()), ["backup.db"]);

    let output = server_command(&[
        OsStr::new("--database-url"),
        OsStr::new("postgres://db.internal/sesame"),
        OsStr::new("backup"),
        OsStr::new("--out"),
        elsewhere.as_os_str(),
    ])?;
    fails_with(&output, "pg_dump");
    Ok(())
}
