//! Adding an authenticator to an account with the real binaries
//! (docs/PROTOCOL.md §11, §12): from the account page in headless Chromium,
//! through an admin's recovery link, and removing a key on one instance of a
//! cluster stops it on the other at once.

use std::{process::Output, time::Duration};

use anyhow::{ensure, Context as _};
use serde_json::{json, Value};
use sesame_tests::{
    free_port, stderr, stdout, Browser, Chrome, PgDatabase, Redis, Result, Server, ServerOptions, Service, Sesame,
};

/// What `sesame --json …` printed, success or refusal alike.
fn json_of(output: &Output) -> Value {
    serde_json::from_str(stdout(output).trim())
        .unwrap_or_else(|e| panic!("sesame printed no JSON ({e}): {}{}", stdout(output), stderr(output)))
}

pub(crate) fn json_ok(output: &Output) -> Value {
    assert!(output.status.success(), "sesame failed: {}{}", stdout(output), stderr(output));
    json_of(output)
}

/// Signs in as `account` with `sesame`'s key on a fresh challenge from
/// `browser`; returns the CLI's JSON answer and whether it exited 0.
pub(crate) async fn login(
    browser: &Browser,
    service: &Service,
    sesame: &Sesame,
    account: &str,
) -> Result<(bool, Value)> {
    let challenge = browser.start_challenge(&service.id).await?;
    let out = sesame.run(&["--json", "login", &challenge.token, "--account", account, "--yes"]);
    Ok((out.status.success(), json_of(&out)))
}

/// The token the page shows now.
pub(crate) async fn shown_token(chrome: &Chrome) -> Result<String> {
    chrome.wait_text("#token", "a token", Duration::from_secs(10), |t| t.starts_with("sesame1.")).await
}

/// Enrolls `sesame` with the token on the page, checks that the page moves
/// on to the same confirmation code as the CLI printed, and confirms.
pub(crate) async fn enroll_and_confirm(chrome: &Chrome, sesame: &Sesame, label: &str) -> Result<String> {
    let token = shown_token(chrome).await?;
    let answer = json_ok(&sesame.run(&["--json", "enroll", &token, "--label", label, "--yes"]));
    ensure!(answer["purpose"] == "enroll" && answer["key_state"] == "pending", "{answer}");
    let code = answer["confirmation_code"].as_str().context("a confirmation code")?.to_owned();
    ensure!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    let shown = chrome
        .wait_text("#confirmation-code", "the confirmation code", Duration::from_secs(10), |t| !t.is_empty())
        .await?;
    ensure!(shown == format!("{} {}", &code[..3], &code[3..]), "the page shows {shown:?}, the CLI printed {code}");
    chrome.wait_contains("#confirm", label).await?;
    chrome.click("#confirm-button").await?;
    chrome.wait_contains("#result-message", &format!("{label} can now sign in as")).await
}

#[tokio::test]
async fn a_signed_in_person_adds_a_second_authenticator_from_the_account_page() -> Result<()> {
    let server = Server::start().await?;
    let service = server.create_service("Lighthouse").await?;
    let chrome = Chrome::start("enroll-self-service").await?;
    let (laptop, phone) = (Sesame::new(), Sesame::new());

    // Sign in on the real login page.
    chrome.client.goto(&service.login_url).await?;
    let token = shown_token(&chrome).await?;
    json_ok(&laptop.run(&["--json", "register", &token, "--name", "alice", "--yes"]));
    chrome.wait_contains("#login", "Signed in as alice").await?;

    // Times are whole seconds, and keys added within one second of each
    // other are each told of the other (PROTOCOL.md §6.4): let the second
    // pass, so that what the sign-ins below are told is exact.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    chrome.client.goto(&server.url(&format!("/services/{}/account", service.id))).await?;
    chrome.wait_contains("#account-name", "alice").await?;
    chrome.click("#add-authenticator").await?;
    chrome.wait_contains("#waiting", "Scan this with the authenticator you want to add").await?;
    chrome.wait_contains("#account-name", "alice").await?;
    let result = enroll_and_confirm(&chrome, &phone, "phone").await?;
    ensure!(result.contains("phone can now sign in as alice."), "{result}");
    chrome.save_screenshot("confirmed").await?;

    // Both authenticators sign in now. The phone, the newest key, hears of
    // no other; the laptop hears of the phone at its next sign-in, once
    // (PROTOCOL.md §6.4).
    let browser = Browser::new(&server);
    let (ok, answer) = login(&browser, &service, &phone, "alice").await?;
    ensure!(ok && answer["account"] == "alice" && answer["new_keys"] == json!([]), "{answer}");
    // Times are whole seconds, and a key added in the second of a sign-in is
    // told of at the next one too: let that second pass, so that "once" is
    // what this checks.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let challenge = browser.start_challenge(&service.id).await?;
    let out = laptop.run(&["login", &challenge.token, "--account", "alice", "--yes"]);
    ensure!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let notice = stdout(&out).lines().find(|l| l.starts_with("A new authenticator")).map(str::to_owned);
    let notice = notice.with_context(|| format!("no notice of the phone: {}", stdout(&out)))?;
    let account_page = server.url(&format!("/services/{}/account", service.id));
    ensure!(
        notice.starts_with("A new authenticator \"phone\" was added to alice on ")
            && notice.contains(" from 127.0.0.1. ")
            && notice.ends_with(&format!("remove it on the account page: {account_page}")),
        "{notice}"
    );
    let (ok, answer) = login(&browser, &service, &laptop, "alice").await?;
    ensure!(ok && answer["new_keys"] == json!([]), "told twice: {answer}");
    // The account page lists both keys.
    chrome.client.goto(&server.url(&format!("/services/{}/account", service.id))).await?;
    let keys = chrome.wait_contains("#keys", "phone").await?;
    ensure!(keys.matches("active").count() == 2, "{keys}");
    chrome.close().await
}

#[tokio::test]
async fn a_recovery_link_replaces_every_lost_authenticator_once() -> Result<()> {
    let server = Server::start().await?;
    let service = server.create_service("Lighthouse").await?;
    let browser = Browser::new(&server);
    let (lost, new) = (Sesame::new(), Sesame::new());
    let challenge = browser.start_challenge(&service.id).await?;
    json_ok(&lost.run(&["--json", "register", &challenge.token, "--name", "alice", "--yes"]));

    let uri = format!("/admin/api/services/{}/accounts/alice/enrollments", service.id);
    let res = server
        .admin()
        .request(reqwest::Method::POST, &uri)
        .json(&json!({"ttl_secs": 3600, "revoke_other_keys": true}))
        .send()
        .await?;
    ensure!(res.status() == reqwest::StatusCode::CREATED, "{}", res.text().await?);
    let link: Value = res.json().await?;
    let url = link["url"].as_str().context("url")?.to_owned();
    let secret = url.rsplit('/').next().context("secret")?.to_owned();

    let chrome = Chrome::start("enroll-recovery").await?;
    chrome.client.goto(&url).await?;
    chrome.wait_contains("#waiting", "Scan this with the authenticator you want to add").await?;
    let result = enroll_and_confirm(&chrome, &new, "spare").await?;
    ensure!(result.contains("and the account's other authenticators were removed"), "{result}");
    chrome.close().await?;

    let (ok, answer) = login(&browser, &service, &lost, "alice").await?;
    ensure!(!ok && answer["error"] == "bad_signature", "the lost key is refused: {answer}");
    let (ok, answer) = login(&browser, &service, &new, "alice").await?;
    ensure!(ok && answer["account"] == "alice", "{answer}");

    // The link worked once.
    let again = reqwest::get(&url).await?;
    ensure!(again.status() == reqwest::StatusCode::GONE, "{}", again.status());
    ensure!(again.text().await?.contains("recovery_link_spent"), "a page that names the error");
    // The secret never reaches the log; the route does.
    let log = server.log();
    ensure!(!log.contains(&secret), "the recovery secret is in the server log");
    ensure!(log.contains("/services/{id}/recover/{secret}"), "the log records the route: {log}");
    Ok(())
}

#[tokio::test]
async fn a_key_removed_on_one_instance_is_refused_at_once_on_the_other() -> Result<()> {
    let db = PgDatabase::create()?;
    let redis = Redis::start()?;
    // Both instances name B in their tokens, so the authenticator always
    // answers B, whichever instance issued the challenge.
    let port_b = free_port();
    let options = ServerOptions {
        public_url: Some(format!("http://127.0.0.1:{port_b}")),
        database_url: Some(db.url.clone()),
        redis_url: Some(redis.url()),
        ..ServerOptions::default()
    };
    let a = Server::start_with(options.clone()).await?;
    let b = Server::start_with(ServerOptions { port: Some(port_b), ..options }).await?;
    let service = a.create_service("Cluster").await?;
    let (on_a, on_b) = (Browser::new(&a), Browser::new(&b));
    let (laptop, phone) = (Sesame::new(), Sesame::new());
    let challenge = on_b.start_challenge(&service.id).await?;
    json_ok(&laptop.run(&["--json", "register", &challenge.token, "--name", "alice", "--yes"]));
    let redeemed =
        on_b.client.post(b.url(&format!("/api/challenges/{}/session", challenge.challenge_id))).send().await?;
    ensure!(redeemed.status().is_success(), "{}", redeemed.text().await?);
    let account_page = b.url(&format!("/services/{}/account", service.id));
    let page = on_b.client.get(&account_page).send().await?;
    ensure!(page.status() == reqwest::StatusCode::OK && page.url().as_str() == account_page, "signed in on B");

    // A second key through a recovery link, so that the account keeps one.
    let uri = format!("/admin/api/services/{}/accounts/alice/enrollments", service.id);
    let link: Value = a
        .admin()
        .request(reqwest::Method::POST, &uri)
        .json(&json!({}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let chrome = Chrome::start("enroll-cluster").await?;
    chrome.client.goto(link["url"].as_str().context("url")?).await?;
    enroll_and_confirm(&chrome, &phone, "phone").await?;
    chrome.close().await?;
    for sesame in [&laptop, &phone] {
        let (ok, answer) = login(&on_b, &service, sesame, "alice").await?;
        ensure!(ok, "both keys sign in on B before: {answer}");
    }

    // The admin on A removes the laptop's key.
    let keys_uri = format!("/admin/api/services/{}/accounts/alice/keys", service.id);
    let keys: Vec<Value> = a.admin().request(reqwest::Method::GET, &keys_uri).send().await?.json().await?;
    let laptop_key = keys.iter().find(|k| k["label"] != "phone").context("the laptop's key")?;
    let removed = a
        .admin()
        .request(reqwest::Method::DELETE, &format!("{keys_uri}/{}", laptop_key["id"].as_str().context("id")?))
        .send()
        .await?;
    ensure!(removed.status() == reqwest::StatusCode::NO_CONTENT, "{}", removed.status());

    // On B, at once: the laptop's login is refused and its session is gone;
    // the phone still signs in. Challenges from either instance agree.
    for browser in [&on_b, &on_a] {
        let (ok, answer) = login(browser, &service, &laptop, "alice").await?;
        ensure!(!ok && answer["error"] == "bad_signature", "the removed key is refused: {answer}");
        let (ok, answer) = login(browser, &service, &phone, "alice").await?;
        ensure!(ok, "the other key still works: {answer}");
    }
    let page = on_b.client.get(&account_page).send().await?;
    ensure!(page.url().as_str() != account_page, "the removed key's session ended on B: {}", page.url());
    Ok(())
}
