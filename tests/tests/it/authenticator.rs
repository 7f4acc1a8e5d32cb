//! The `sesame` authenticator binary against a real `sesame-server`: register,
//! log in and deny as the waiting browser sees them, QR scanning of the real
//! login page, key pinning, encryption at rest, and one-line errors.

use std::{process::Output, time::Duration};

use serde_json::Value;
use sesame_proto::{AccountKey, AccountName, LoginRequest, ServerPublicKey, UnverifiedToken};
use sesame_tests::{stderr, stdout, Browser, Chrome, Result, Server, ServerOptions, Service, Sesame};

/// Asserts a successful run and returns its `--json` result.
fn json_ok(output: &Output) -> Value {
    assert!(output.status.success(), "sesame failed: {}{}", stdout(output), stderr(output));
    serde_json::from_str(stdout(output).trim()).expect("sesame --json prints one JSON value")
}

/// Asserts the failure contract: exit status 1 and exactly one line on
/// stderr, `sesame: …`, containing `needle`.
fn assert_fails_with(output: &Output, needle: &str) -> String {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "stdout: {} stderr: {err}", stdout(output));
    let lines: Vec<_> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {err}");
    assert!(lines[0].starts_with("sesame: "), "{err}");
    assert!(lines[0].contains(needle), "expected {needle:?} in: {err}");
    lines[0].to_owned()
}

async fn setup(name: &str) -> Result<(Server, Service, Browser)> {
    let server = Server::start().await?;
    let service = server.create_service(name).await?;
    let browser = Browser::new(&server);
    Ok((server, service, browser))
}

#[tokio::test]
async fn register_then_login_then_deny_reach_their_final_states() -> Result<()> {
    let (server, service, browser) = setup("Example").await?;
    let sesame = Sesame::new();

    let challenge = browser.start_challenge(&service.id).await?;
    let out = sesame.run(&["--json", "register", &challenge.token, "--name", "alice", "--yes"]);
    let result = json_ok(&out);
    // The first contact pins the server's key, and says so, with its id.
    let key_id = server.public_key().await?.key_id().to_string();
    let said = stderr(&out);
    assert!(said.contains(&format!("First contact with {}: its key {key_id} is now pinned", server.origin)), "{said}");
    assert_eq!(result["status"], "completed");
    assert_eq!(result["purpose"], "register");
    assert_eq!(result["account"], "alice");
    assert_eq!(result["service_id"], service.id.as_str());
    assert_eq!(result["service_name"], "Example");
    assert_eq!(result["origin"], server.origin.as_str());
    let status = browser.status(&challenge).await?;
    assert_eq!((status["status"].as_str(), status["account"].as_str()), (Some("completed"), Some("alice")));

    let challenge = browser.start_challenge(&service.id).await?;
    let out = sesame.run(&["--json", "login", &challenge.token, "--yes"]);
    assert!(!stderr(&out).contains("First contact"), "only the first contact says it: {}", stderr(&out));
    let result = json_ok(&out);
    assert_eq!((result["purpose"].as_str(), result["account"].as_str()), (Some("login"), Some("alice")));
    let status = browser.status(&challenge).await?;
    assert_eq!((status["status"].as_str(), status["hint"].as_str()), (Some("completed"), Some("login")));

    let challenge = browser.start_challenge(&service.id).await?;
    let result = json_ok(&sesame.run(&["--json", "deny", &challenge.token]));
    assert_eq!(result["status"], "denied");
    assert_eq!(browser.status(&challenge).await?["status"], "denied");

    let accounts = json_ok(&sesame.run(&["--json", "accounts"]));
    assert_eq!(accounts.as_array().map(Vec::len), Some(1));
    assert_eq!(accounts[0]["account"], "alice");
    assert_eq!(accounts[0]["confirmed"], true);
    let on_server = server.admin().accounts(&service.id).await?;
    assert_eq!(on_server.len(), 1);
    assert_eq!(on_server[0]["name"], "alice");
    Ok(())
}

/// A token pasted at the terminal across lines, indented, as a mail client
/// or a terminal wraps it, is read whole: `sesame process` asks for the
/// rest until the lines make a token, and registers with it.
#[tokio::test]
async fn a_token_pasted_across_lines_at_the_terminal_is_read_whole() -> Result<()> {
    let (_server, service, browser) = setup("Example").await?;
    let sesame = Sesame::new();
    let challenge = browser.start_challenge(&service.id).await?;
    let (head, tail) = challenge.token.split_at(70);
    let tail = format!("    {tail}");
    let args = ["--db".as_ref(), sesame.db.as_os_str(), "process".as_ref()];
    let answers =
        [("Paste the token", head), ("the rest of it", &tail), ("Your choice", "r"), ("New account name", "alice")];
    let (ok, screen) = sesame_tests::on_terminal_answering(&sesame_tests::sesame_bin(), &args, &answers)?;
    anyhow::ensure!(ok && screen.contains("Sign-in request from"), "{screen}");
    let status = browser.status(&challenge).await?;
    assert_eq!((status["status"].as_str(), status["account"].as_str()), (Some("completed"), Some("alice")));
    Ok(())
}

#[tokio::test]
async fn used_and_expired_tokens_fail_with_one_line() -> Result<()> {
    let (_server, service, browser) = setup("Example").await?;
    let sesame = Sesame::new();
    let challenge = browser.start_challenge(&service.id).await?;
    json_ok(&sesame.run(&["--json", "register", &challenge.token, "--name", "alice", "--yes"]));
    let again = sesame.run(&["login", &challenge.token, "--yes"]);
    assert_fails_with(&again, "already completed");
    let again = sesame.run(&["--json", "login", &challenge.token, "--yes"]);
    let body: Value = serde_json::from_str(stdout(&again).trim())?;
    assert_eq!(body["error"], "challenge_used");

    // A one-second challenge: the server says it expired, although the
    // authenticator's own leeway would still accept it.
    let quick = Server::start_with(ServerOptions { challenge_ttl: Some(1), ..ServerOptions::default() }).await?;
    let service = quick.create_service("Quick").await?;
    let browser = Browser::new(&quick);
    let challenge = browser.start_challenge(&service.id).await?;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let out = Sesame::new().run(&["register", &challenge.token, "--name", "bob", "--yes"]);
    assert_fails_with(&out, "expired: reload the login page");
    Ok(())
}

#[tokio::test]
async fn unreachable_server_is_one_line_error() -> Result<()> {
    let (server, service, browser) = setup("Example").await?;
    let challenge = browser.start_challenge(&service.id).await?;
    let origin = server.origin.clone();
    drop(server);
    let out = Sesame::new().run(&["login", &challenge.token, "--yes"]);
    assert_fails_with(&out, &format!("cannot reach {origin}: "));
    Ok(())
}

#[tokio::test]
async fn refuses_confirmation_without_terminal_or_yes() -> Result<()> {
    let (_server, service, browser) = setup("Example").await?;
    let challenge = browser.start_challenge(&service.id).await?;
    let out = Sesame::new().run(&["register", &challenge.token, "--name", "alice"]);
    assert_fails_with(&out, "needs confirmation");
    // Nothing reached the server: the page still waits, not even "opened".
    let status = browser.status(&challenge).await?;
    assert_eq!((status["status"].as_str(), status["hint"].as_str()), (Some("pending"), Some("outstanding")));
    Ok(())
}

#[tokio::test]
async fn second_authenticator_cannot_log_in_as_the_first_ones_account() -> Result<()> {
    let (server, service, browser) = setup("Example").await?;
    let first = Sesame::new();
    let challenge = browser.start_challenge(&service.id).await?;
    json_ok(&first.run(&["--json", "register", &challenge.token, "--name", "alice", "--yes"]));

    let second = Sesame::new();
    let challenge = browser.start_challenge(&service.id).await?;
    let out = second.run(&["--json", "login", &challenge.token, "--account", "alice", "--yes"]);
    assert_fails_with(&out, "you have no account at Example");
    assert_eq!(serde_json::from_str::<Value>(stdout(&out).trim())?["error"], "no_local_account");

    // Registering the taken name is refused, and leaves no key behind.
    let out = second.run(&["register", &challenge.token, "--name", "alice", "--yes"]);
    assert_fails_with(&out, "Example refused the name alice: an account named \"alice\" already exists");
    assert_eq!(json_ok(&second.run(&["--json", "accounts"])), serde_json::json!([]));
    // So is a name that only looks like it (a Cyrillic "а"): the line names
    // the account it is too close to.
    let out = second.run(&["register", &challenge.token, "--name", "\u{430}lice", "--yes"]);
    assert_fails_with(&out, "is too close to the existing account \"alice\"");
    assert_eq!(json_ok(&second.run(&["--json", "accounts"])), serde_json::json!([]));

    // A login for alice forged with another key is refused by the server.
    let identity: Value = reqwest::get(server.url("/.well-known/sesame")).await?.json().await?;
    let server_key = ServerPublicKey::from_base64(identity["public_key"].as_str().unwrap_or_default())?;
    let token = UnverifiedToken::parse(&challenge.token)?.verify(&server_key)?;
    let forged =
        LoginRequest::sign(&token, &AccountName::parse("alice")?, &AccountKey::generate(&mut rand::rngs::OsRng));
    let res = reqwest::Client::new().post(server.url("/api/authenticator/login")).json(&forged).send().await?;
    assert_eq!(res.status().as_u16(), 401);
    assert_eq!(res.json::<Value>().await?["error"], "bad_signature");
    assert_eq!(browser.status(&challenge).await?["status"], "pending");
    Ok(())
}

#[tokio::test]
async fn token_signed_by_another_key_for_a_pinned_origin_is_refused() -> Result<()> {
    let (server, service, browser) = setup("Example").await?;
    let sesame = Sesame::new();
    let challenge = browser.start_challenge(&service.id).await?;
    json_ok(&sesame.run(&["--json", "register", &challenge.token, "--name", "alice", "--yes"]));

    // Another server, with its own identity key, claiming the same origin.
    let options = ServerOptions { public_url: Some(server.origin.clone()), ..ServerOptions::default() };
    let impostor = Server::start_with(options).await?;
    let impostor_service = impostor.create_service("Example").await?;
    let challenge = Browser::new(&impostor).start_challenge(&impostor_service.id).await?;
    let out = sesame.run(&["login", &challenge.token, "--yes"]);
    let line = assert_fails_with(&out, &format!("the server key for {} has changed", server.origin));
    assert!(line.contains(&format!("sesame unpin {}", server.origin)), "{line}");

    // Even after unpinning, the impostor's token is refused: the key is
    // fetched from the origin itself, which serves the genuine key.
    json_ok(&sesame.run(&["--json", "unpin", &server.origin]));
    let out = sesame.run(&["login", &challenge.token, "--yes"]);
    assert_fails_with(&out, "signed by a key other than the server's");
    let challenge = browser.start_challenge(&service.id).await?;
    assert_eq!(json_ok(&sesame.run(&["--json", "login", &challenge.token, "--yes"]))["account"], "alice");
    Ok(())
}

#[tokio::test]
async fn with_passphrase_the_keystore_holds_no_plaintext_key() -> Result<()> {
    let (_server, service, browser) = setup("Example").await?;
    let mut sesame = Sesame::new();
    sesame.passphrase = Some("open sesame".into());
    json_ok(&sesame.run(&["--json", "passphrase"]));
    let challenge = browser.start_challenge(&service.id).await?;
    json_ok(&sesame.run(&["--json", "register", &challenge.token, "--name", "alice", "--yes"]));

    // No 32-byte window of any keystore file is the seed of alice's key.
    let accounts = json_ok(&sesame.run(&["--json", "accounts"]));
    let public_key = accounts[0]["public_key"].as_str().expect("a public key").to_owned();
    for entry in std::fs::read_dir(sesame.dir.path())? {
        let bytes = std::fs::read(entry?.path())?;
        for window in bytes.windows(32) {
            let seed: &[u8; 32] = window.try_into()?;
            assert_ne!(AccountKey::from_seed(seed).public_key().to_base64(), public_key, "a plaintext key is on disk");
        }
    }

    // A wrong passphrase is refused before the server is asked anything.
    sesame.passphrase = Some("open barley".into());
    let challenge = browser.start_challenge(&service.id).await?;
    let out = sesame.run(&["login", &challenge.token, "--yes"]);
    assert_eq!(assert_fails_with(&out, "wrong passphrase"), "sesame: wrong passphrase");
    assert_eq!(browser.status(&challenge).await?["hint"], "outstanding");

    sesame.passphrase = Some("open sesame".into());
    assert_eq!(json_ok(&sesame.run(&["--json", "login", &challenge.token, "--yes"]))["account"], "alice");
    Ok(())
}

#[tokio::test]
async fn scanning_the_login_page_qr_code_registers_and_logs_in() -> Result<()> {
    let (_server, service, _) = setup("Example").await?;
    let sesame = Sesame::new();
    for (args, purpose) in [(["--name", "alice"], "register"), (["--account", "alice"], "login")] {
        // A fresh browser each time: a signed-in browser gets no login page.
        // The page's script draws the QR code; `sesame scan` reads it from a
        // screenshot of the whole page, as from a photo of the screen.
        let chrome = Chrome::start(&format!("scan-{purpose}")).await?;
        chrome.client.goto(&service.login_url).await?;
        chrome.wait_text("#token", "a token", Duration::from_secs(10), |t| t.starts_with("sesame1.")).await?;
        chrome.client.find(fantoccini::Locator::Css("#qr svg")).await?;
        let png = sesame.dir.path().join(format!("{purpose}.png"));
        std::fs::write(&png, chrome.screenshot().await?)?;
        let path = png.to_str().expect("a UTF-8 temp path");
        let result = json_ok(&sesame.run(&["--json", "scan", path, args[0], args[1], "--yes"]));
        assert_eq!((result["purpose"].as_str(), result["account"].as_str()), (Some(purpose), Some("alice")));
        chrome.wait_contains("#login", "Signed in as alice").await?;
        chrome.close().await?;
    }
    Ok(())
}

#[tokio::test]
async fn account_deleted_on_the_server_points_to_the_remove_command() -> Result<()> {
    let (server, service, browser) = setup("Example").await?;
    let sesame = Sesame::new();
    let challenge = browser.start_challenge(&service.id).await?;
    json_ok(&sesame.run(&["--json", "register", &challenge.token, "--name", "alice", "--yes"]));
    let res = server
        .admin()
        .request(reqwest::Method::DELETE, &format!("/admin/api/services/{}/accounts/alice", service.id))
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 204);

    let challenge = browser.start_challenge(&service.id).await?;
    let out = sesame.run(&["login", &challenge.token, "--yes"]);
    let hint = format!("sesame remove alice --service {} --origin {}", service.id, server.origin);
    let line = assert_fails_with(&out, "the server no longer knows account alice");
    assert!(line.ends_with(&hint), "{line}");

    // The suggested command works as printed, and only once.
    let args: Vec<&str> = hint.split(' ').skip(1).collect();
    json_ok(&sesame.run(&[&["--json"], args.as_slice()].concat()));
    assert_eq!(json_ok(&sesame.run(&["--json", "accounts"])), serde_json::json!([]));
    assert_fails_with(&sesame.run(&args), "no local account alice");
    Ok(())
}

#[tokio::test]
async fn enroll_refuses_a_sign_in_token_before_making_a_key() -> Result<()> {
    let (_server, service, browser) = setup("Example").await?;
    let sesame = Sesame::new();
    let challenge = browser.start_challenge(&service.id).await?;
    let out = sesame.run(&["enroll", &challenge.token, "--yes"]);
    assert_fails_with(&out, "this request signs in; it adds no authenticator to an account");
    let out = sesame.run(&["--json", "enroll", &challenge.token, "--yes"]);
    assert_eq!(serde_json::from_str::<Value>(stdout(&out).trim())?["error"], "wrong_purpose");
    // No key was made, and the page still waits for a sign-in.
    assert_eq!(json_ok(&sesame.run(&["--json", "accounts"])), serde_json::json!([]));
    assert_eq!(browser.status(&challenge).await?["status"], "pending");
    // An invalid label is refused before anything is sent.
    let challenge = browser.start_challenge(&service.id).await?;
    let out = sesame.run(&["register", &challenge.token, "--name", "alice", "--label", "tab\there", "--yes"]);
    assert_fails_with(&out, "key label");
    assert_eq!(browser.status(&challenge).await?["hint"], "outstanding");
    Ok(())
}
