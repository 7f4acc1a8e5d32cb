//! Replacing an account's key while signing in (`sesame login --rekey`,
//! docs/PROTOCOL.md §13), with the real binaries: the swap, the old key's
//! refusal, replays, and a `kill`ed authenticator at both moments where it
//! and the server disagree.

use std::process::Output;

use serde_json::{json, Value};
use sesame_proto::{
    AccountKey, AccountName, LoginRequest, RegisterRequest, RekeyRequest, ServerPublicKey, Token, UnverifiedToken,
};
use sesame_tests::{stderr, stdout, Browser, Result, Server, Service, Sesame};

fn json_ok(output: &Output) -> Value {
    assert!(output.status.success(), "sesame failed: {}{}", stdout(output), stderr(output));
    serde_json::from_str(stdout(output).trim()).expect("sesame --json prints one JSON value")
}

/// The failure contract: exit status 1 and one line on stderr with `needle`.
fn assert_fails_with(output: &Output, needle: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "stdout: {} stderr: {err}", stdout(output));
    assert_eq!(err.lines().count(), 1, "expected one line on stderr, got: {err}");
    assert!(err.starts_with("sesame: ") && err.contains(needle), "expected {needle:?} in: {err}");
}

async fn setup() -> Result<(Server, Service, Browser, Sesame)> {
    let server = Server::start().await?;
    let service = server.create_service("Example").await?;
    let browser = Browser::new(&server);
    let sesame = Sesame::new();
    let challenge = browser.start_challenge(&service.id).await?;
    json_ok(&sesame.run(&["--json", "register", &challenge.token, "--name", "alice", "--yes"]));
    Ok((server, service, browser, sesame))
}

/// A copy of `sesame`'s keystore as it is now: an authenticator that still
/// holds today's key after the original has moved on.
fn snapshot(sesame: &Sesame) -> Sesame {
    let copy = Sesame::new();
    std::fs::copy(&sesame.db, &copy.db).expect("copying the keystore");
    copy
}

async fn key_fingerprints(server: &Server, service: &Service) -> Result<Vec<(String, String)>> {
    let keys: Vec<Value> = server
        .admin()
        .request(reqwest::Method::GET, &format!("/admin/api/services/{}/accounts/alice/keys", service.id))
        .send()
        .await?
        .json()
        .await?;
    Ok(keys
        .iter()
        .map(|k| {
            (k["id"].as_str().unwrap_or_default().to_owned(), k["fingerprint"].as_str().unwrap_or_default().to_owned())
        })
        .collect())
}

fn local_state(sesame: &Sesame) -> (String, bool) {
    let accounts = json_ok(&sesame.run(&["--json", "accounts"]));
    (accounts[0]["public_key"].as_str().unwrap_or_default().to_owned(), accounts[0]["rekey_pending"] == true)
}

#[tokio::test]
async fn rekey_signs_in_and_replaces_the_key_so_the_old_one_is_refused() -> Result<()> {
    let (server, service, browser, sesame) = setup().await?;
    let before = snapshot(&sesame);
    let keys_before = key_fingerprints(&server, &service).await?;
    let (old_public, _) = local_state(&sesame);

    let challenge = browser.start_challenge(&service.id).await?;
    let result = json_ok(&sesame.run(&["--json", "login", &challenge.token, "--rekey", "--yes"]));
    assert_eq!((result["purpose"].as_str(), result["rekeyed"].as_bool()), (Some("login"), Some(true)));
    // The browser is signed in as by any login.
    let status = browser.status(&challenge).await?;
    assert_eq!((status["status"].as_str(), status["purpose"].as_str()), (Some("completed"), Some("login")));

    // The server holds one key for alice still, under the same id, with a
    // new fingerprint; the keystore holds the new key and nothing pending.
    let keys_after = key_fingerprints(&server, &service).await?;
    assert_eq!(keys_after.len(), 1);
    assert_eq!(keys_after[0].0, keys_before[0].0);
    assert_ne!(keys_after[0].1, keys_before[0].1);
    let (new_public, pending) = local_state(&sesame);
    assert_ne!(new_public, old_public);
    assert!(!pending);

    let challenge = browser.start_challenge(&service.id).await?;
    let result = json_ok(&sesame.run(&["--json", "login", &challenge.token, "--yes"]));
    assert_eq!(result["rekeyed"], false);

    // A copy of the keystore from before the change can no longer sign in;
    // it is told why and what to do, and its refused login leaves the page
    // waiting.
    let challenge = browser.start_challenge(&service.id).await?;
    let refused = before.run(&["login", &challenge.token, "--yes"]);
    assert_fails_with(&refused, "no longer takes this device's key for alice");
    assert_fails_with(&refused, &format!("sesame remove alice --service {}", service.id));
    assert_eq!(browser.status(&challenge).await?["status"], "pending");
    Ok(())
}

/// The token as the server signed it, for requests built by hand.
async fn verified(server: &Server, text: &str) -> Result<Token> {
    let identity: Value = reqwest::get(server.url("/.well-known/sesame")).await?.json().await?;
    let key = ServerPublicKey::from_base64(identity["public_key"].as_str().unwrap_or_default())?;
    Ok(UnverifiedToken::parse(text)?.verify(&key)?)
}

async fn post(server: &Server, path: &str, body: &impl serde::Serialize) -> Result<(u16, Value)> {
    let response = reqwest::Client::new().post(server.url(path)).json(body).send().await?;
    Ok((response.status().as_u16(), response.json().await?))
}

#[tokio::test]
async fn replayed_forged_and_conflicting_rekeys_are_refused_and_change_nothing() -> Result<()> {
    let server = Server::start().await?;
    let service = server.create_service("Example").await?;
    let browser = Browser::new(&server);
    let alice = AccountName::parse("alice")?;
    let bob = AccountName::parse("bob")?;
    let key = AccountKey::generate(&mut rand::rngs::OsRng);
    let bob_key = AccountKey::generate(&mut rand::rngs::OsRng);
    for (name, key) in [(&alice, &key), (&bob, &bob_key)] {
        let challenge = browser.start_challenge(&service.id).await?;
        let token = verified(&server, &challenge.token).await?;
        let (status, _) =
            post(&server, "/api/authenticator/register", &RegisterRequest::sign(&token, name, key)).await?;
        assert_eq!(status, 200);
    }
    let new = AccountKey::generate(&mut rand::rngs::OsRng);

    let challenge = browser.start_challenge(&service.id).await?;
    let token = verified(&server, &challenge.token).await?;
    // Forged: the new key signs both parts, so the account never agreed.
    let forged = RekeyRequest::sign(&token, &alice, &new, &new);
    let (status, body) = post(&server, "/api/authenticator/rekey", &forged).await?;
    assert_eq!((status, body["error"].as_str()), (401, Some("bad_signature")));
    // No proof that the new key is held: the current key signs both parts.
    let mut unproven = RekeyRequest::sign(&token, &alice, &key, &new);
    unproven.new_signature = unproven.signature.clone();
    let (status, body) = post(&server, "/api/authenticator/rekey", &unproven).await?;
    assert_eq!((status, body["error"].as_str()), (401, Some("bad_signature")));
    // A new key that another account already holds.
    let taken = RekeyRequest::sign(&token, &alice, &key, &bob_key);
    let (status, body) = post(&server, "/api/authenticator/rekey", &taken).await?;
    assert_eq!((status, body["error"].as_str()), (409, Some("key_registered")));
    // None of those consumed the challenge: the genuine rekey still lands.
    let genuine = RekeyRequest::sign(&token, &alice, &key, &new);
    let (status, body) = post(&server, "/api/authenticator/rekey", &genuine).await?;
    assert_eq!((status, &body), (200, &json!({"status": "completed", "purpose": "login", "account": "alice"})));
    // A replay finds the challenge used.
    let (status, body) = post(&server, "/api/authenticator/rekey", &genuine).await?;
    assert_eq!((status, body["error"].as_str()), (409, Some("challenge_used")));

    // Only the new key signs in now.
    let challenge = browser.start_challenge(&service.id).await?;
    let token = verified(&server, &challenge.token).await?;
    let (status, body) = post(&server, "/api/authenticator/login", &LoginRequest::sign(&token, &alice, &key)).await?;
    assert_eq!((status, body["error"].as_str()), (401, Some("bad_signature")));
    let (status, _) = post(&server, "/api/authenticator/login", &LoginRequest::sign(&token, &alice, &new)).await?;
    assert_eq!(status, 200);
    // Bob's key was never touched.
    let challenge = browser.start_challenge(&service.id).await?;
    let token = verified(&server, &challenge.token).await?;
    let (status, _) = post(&server, "/api/authenticator/login", &LoginRequest::sign(&token, &bob, &bob_key)).await?;
    assert_eq!(status, 200);
    Ok(())
}

/// Runs `sesame login --rekey` set to abort, as if killed, at `point`.
fn killed_rekey(sesame: &Sesame, token: &str, point: &str) -> Output {
    let out = sesame.run_with_env(&["login", token, "--rekey", "--yes"], &[("SESAME_CRASH_AT", point.as_ref())]);
    assert!(!out.status.success(), "the rekey was meant to stop at {point}: {}", stdout(&out));
    out
}

#[tokio::test]
async fn an_authenticator_killed_after_the_server_swapped_the_key_settles_at_the_next_sign_in() -> Result<()> {
    let (server, service, browser, sesame) = setup().await?;
    let before = snapshot(&sesame);
    let challenge = browser.start_challenge(&service.id).await?;
    killed_rekey(&sesame, &challenge.token, "rekey-answered");
    // The server swapped the key and signed the browser in; the keystore
    // still holds both keys.
    assert_eq!(browser.status(&challenge).await?["status"], "completed");
    let (old_public, pending) = local_state(&sesame);
    assert!(pending);

    // The next sign-in finds the old key refused, signs the same token with
    // the new one, and keeps it.
    let challenge = browser.start_challenge(&service.id).await?;
    let result = json_ok(&sesame.run(&["--json", "login", &challenge.token, "--yes"]));
    assert_eq!(result["rekeyed"], true);
    assert_eq!(browser.status(&challenge).await?["status"], "completed");
    let (new_public, pending) = local_state(&sesame);
    assert!(!pending);
    assert_ne!(new_public, old_public);
    let challenge = browser.start_challenge(&service.id).await?;
    assert_eq!(json_ok(&sesame.run(&["--json", "login", &challenge.token, "--yes"]))["rekeyed"], false);

    let challenge = browser.start_challenge(&service.id).await?;
    assert_fails_with(
        &before.run(&["login", &challenge.token, "--yes"]),
        "no longer takes this device's key for alice",
    );
    assert_eq!(key_fingerprints(&server, &service).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_rekey_retried_after_a_kill_settles_the_first_change_instead_of_making_a_third_key() -> Result<()> {
    let (server, service, browser, sesame) = setup().await?;
    let challenge = browser.start_challenge(&service.id).await?;
    killed_rekey(&sesame, &challenge.token, "rekey-answered");
    let keys_after_first = key_fingerprints(&server, &service).await?;

    // Trying the change again: the old key is refused, so the stored new
    // key (the one the server already holds) signs in and is kept.
    let challenge = browser.start_challenge(&service.id).await?;
    let out = sesame.run(&["login", &challenge.token, "--rekey", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("An earlier key change had reached the server"), "{}", stdout(&out));
    assert_eq!(key_fingerprints(&server, &service).await?, keys_after_first, "no third key");
    assert!(!local_state(&sesame).1);
    let challenge = browser.start_challenge(&service.id).await?;
    json_ok(&sesame.run(&["--json", "login", &challenge.token, "--yes"]));
    Ok(())
}

#[tokio::test]
async fn an_authenticator_killed_before_the_server_heard_keeps_its_key_and_forgets_the_new_one() -> Result<()> {
    let (server, service, browser, sesame) = setup().await?;
    let keys_before = key_fingerprints(&server, &service).await?;
    let challenge = browser.start_challenge(&service.id).await?;
    killed_rekey(&sesame, &challenge.token, "rekey-staged");
    assert_eq!(browser.status(&challenge).await?["status"], "pending");
    let (old_public, pending) = local_state(&sesame);
    assert!(pending);
    // An export would not know which key to keep: it waits for the change
    // to settle.
    let backup = sesame.dir.path().join("backup.age");
    let out = sesame.run_with_env(
        &["export", "--out", backup.to_str().unwrap_or_default()],
        &[("SESAME_BACKUP_PASSPHRASE", "correct horse battery staple".as_ref())],
    );
    assert_fails_with(&out, "unsettled");
    assert!(!backup.exists());

    // The old key still signs in, so the new one is dropped.
    let result = json_ok(&sesame.run(&["--json", "login", &challenge.token, "--yes"]));
    assert_eq!(result["rekeyed"], false);
    assert_eq!(local_state(&sesame), (old_public, false));
    assert_eq!(key_fingerprints(&server, &service).await?, keys_before);

    // And a rekey after that works from a clean state.
    let challenge = browser.start_challenge(&service.id).await?;
    assert_eq!(json_ok(&sesame.run(&["--json", "login", &challenge.token, "--rekey", "--yes"]))["rekeyed"], true);
    Ok(())
}

#[tokio::test]
async fn a_rekey_the_server_refuses_leaves_no_new_key_behind() -> Result<()> {
    let (server, service, browser, sesame) = setup().await?;
    let keys = key_fingerprints(&server, &service).await?;
    // An admin removes alice's key after the page asked: the account is
    // still there, so the request's details come, but the rekey is refused.
    let challenge = browser.start_challenge(&service.id).await?;
    let path = format!("/admin/api/services/{}/accounts/alice/keys/{}", service.id, keys[0].0);
    let removed = server.admin().request(reqwest::Method::DELETE, &path).send().await?;
    assert_eq!(removed.status(), 204);
    assert_fails_with(&sesame.run(&["login", &challenge.token, "--rekey", "--yes"]), "no longer knows account alice");
    let (_, pending) = local_state(&sesame);
    assert!(!pending, "a refused change leaves no new key behind");
    assert_eq!(browser.status(&challenge).await?["status"], "pending");
    Ok(())
}
