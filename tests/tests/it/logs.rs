//! The server's log as a collector sees it: stderr going to a file, not a
//! terminal.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use sesame_tests::{eventually, free_port, server_bin, Result, ADMIN_TOKEN};

/// Runs `sesame-server` with `args` and stderr to a file, makes a few
/// requests (one of them an error), stops it and returns what it logged.
async fn logged_with(args: &[&str]) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let stderr = std::fs::File::create(dir.path().join("stderr"))?;
    let mut child = Command::new(server_bin())
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--admin-token")
        .arg(ADMIN_TOKEN)
        .args(args)
        .env("SESAME_LOG", "info,sesame_server=debug")
        .env_remove("SESAME_LOG_FORMAT")
        .env_remove("SESAME_DATABASE_URL")
        .env_remove("SESAME_REDIS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    let outcome = async {
        let client = reqwest::Client::new();
        eventually(Duration::from_secs(30), || async {
            client.get(format!("{base}/healthz")).send().await.ok().filter(|r| r.status().is_success())
        })
        .await?;
        let missing = client.get(format!("{base}/api/nothing")).send().await?;
        assert_eq!(missing.status(), 404);
        Result::Ok(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    outcome?;
    Ok(std::fs::read_to_string(dir.path().join("stderr"))?)
}

#[tokio::test]
async fn text_logs_to_a_file_carry_no_colour_codes() -> Result<()> {
    let log = logged_with(&[]).await?;
    assert!(log.contains("sesame-server started"), "{log}");
    assert!(!log.contains('\u{1b}'), "an escape byte in the log:\n{log:?}");
    Ok(())
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() -> Result<()> {
    let log = logged_with(&["--log-format", "json"]).await?;
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}")))
        .collect();
    assert!(lines.iter().any(|l| l["fields"]["message"] == "sesame-server started" && l["level"] == "INFO"), "{log}");
    // Request logs name the route pattern, never the raw path.
    assert!(lines.iter().any(|l| l["span"]["route"] == "/healthz" && l["span"]["method"] == "GET"), "{log}");
    assert!(!log.contains("/api/nothing"), "{log}");
    Ok(())
}
