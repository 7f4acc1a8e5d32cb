//! Passkeys beside Sesame keys, the way a person uses them: headless
//! Chromium with a DevTools virtual authenticator (a built-in one that
//! holds passkeys and verifies its user) on a server whose public origin is
//! `http://localhost:PORT` (WebAuthn takes no IP address as its relying
//! party).

use std::time::Duration;

use anyhow::{ensure, Context as _};
use fantoccini::Locator;
use serde_json::{json, Value};
use sesame_tests::{
    free_port,
    rp::{RelyingParty, RpListener, RpSettings},
    stderr, stdout, Browser, Chrome, PgDatabase, Redis, Result, Server, ServerOptions, Service, Sesame,
};

use crate::oidc::{nth_outcome, signed_in};

const WAIT: Duration = Duration::from_secs(20);

fn localhost(port: u16) -> ServerOptions {
    ServerOptions { port: Some(port), public_url: Some(format!("http://localhost:{port}")), ..ServerOptions::default() }
}

async fn localhost_server() -> Result<Server> {
    Server::start_with(localhost(free_port())).await
}

/// A service whose admin lets `kinds` of key sign in (`sesame`, `passkey`
/// or `both`), through the admin API.
async fn service(server: &Server, name: &str, kinds: &str, verify: bool) -> Result<Service> {
    let service = server.create_service(name).await?;
    let change = json!({ "key_kinds": kinds, "require_user_verification": verify });
    let res = server
        .admin()
        .request(reqwest::Method::PATCH, &format!("/admin/api/services/{}", service.id))
        .json(&change)
        .send()
        .await?;
    let status = res.status();
    let body: Value = res.json().await?;
    ensure!(status == 200 && body["key_kinds"] == kinds, "PATCH answered {status}: {body}");
    Ok(service)
}

/// Chromium with a built-in authenticator that verifies its user when
/// `verified`; returns the authenticator's id.
async fn chrome(name: &str, verified: bool) -> Result<(Chrome, String)> {
    let chrome = Chrome::start(name).await?;
    let authenticator = chrome.add_phone_authenticator(false, verified).await?;
    Ok((chrome, authenticator))
}

/// Waits until the login page knows whether the service takes passkeys,
/// and returns what it learnt: `both`, `only` or `off`.
async fn passkeys_offered(chrome: &Chrome) -> Result<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let said = chrome.js("return document.getElementById('login').dataset.passkeys || ''").await?;
        if let Some(said) = said.as_str().filter(|s| !s.is_empty()) {
            return Ok(said.to_owned());
        }
        ensure!(tokio::time::Instant::now() < deadline, "the login page never asked about passkeys");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn type_into(chrome: &Chrome, css: &str, text: &str) -> Result<()> {
    let field = chrome.client.find(Locator::Css(css)).await?;
    field.clear().await?;
    field.send_keys(text).await?;
    Ok(())
}

/// Creates account `name` with a passkey on the login page the browser is
/// on, and waits until it is signed in.
async fn register_with_passkey(chrome: &Chrome, name: &str) -> Result<()> {
    ensure!(passkeys_offered(chrome).await? != "off", "the page offers no passkeys");
    type_into(chrome, "#passkey-name", name).await?;
    chrome.click("#passkey-register").await?;
    Ok(())
}

/// Signs out on the signed-in page, and waits until the browser has left
/// it. The login page that follows offers the passkey in autofill
/// (conditional UI), which the virtual authenticator answers at once, as a
/// person who picks it from the list would: it may sign in again by itself.
async fn sign_out(chrome: &Chrome) -> Result<()> {
    chrome.js("window.sesameTestOldPage = true; return null").await?;
    chrome.click("form[action$='/signout'] button").await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let old = chrome.js("return window.sesameTestOldPage === true").await.unwrap_or(Value::Bool(true));
        if old == Value::Bool(false) {
            return Ok(());
        }
        ensure!(tokio::time::Instant::now() < deadline, "the browser stayed on the signed-in page");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The passkeys the virtual authenticator holds.
async fn credentials(chrome: &Chrome, authenticator: &str) -> Result<Vec<Value>> {
    let got = chrome.cdp("WebAuthn.getCredentials", json!({ "authenticatorId": authenticator })).await?;
    Ok(got["credentials"].as_array().cloned().unwrap_or_default())
}

#[tokio::test]
async fn a_person_registers_with_a_passkey_signs_out_and_signs_in_without_a_name() -> Result<()> {
    let server = localhost_server().await?;
    let service = service(&server, "Lighthouse", "both", false).await?;
    let (chrome, authenticator) = chrome("passkeys-register", true).await?;
    chrome.client.goto(&service.login_url).await?;
    ensure!(passkeys_offered(&chrome).await? == "both", "a service that takes both shows both");
    ensure!(chrome.visible_text("#token").await.is_some(), "the QR sign-in is still there");
    let autofill = chrome.js("return document.getElementById('passkey-name').autocomplete").await?;
    ensure!(autofill == "username webauthn", "the name field offers passkeys in autofill: {autofill}");
    chrome.save_screenshot("login").await?;

    register_with_passkey(&chrome, "alice").await?;
    chrome.wait_contains("#login", "Signed in as alice").await?;
    let held = credentials(&chrome, &authenticator).await?;
    ensure!(held.len() == 1 && held[0]["isResidentCredential"] == true, "one discoverable passkey: {held:?}");

    // Signed out, the login page offers the passkey in the browser's
    // autofill, and no name is typed: it signs alice in.
    sign_out(&chrome).await?;
    chrome.wait_contains("#login", "Signed in as alice").await?;
    chrome.save_screenshot("signed-in").await?;
    let accounts = server.admin().accounts(&service.id).await?;
    ensure!(accounts.len() == 1 && accounts[0]["last_login_at"].is_string(), "{accounts:?}");
    chrome.close().await
}

#[tokio::test]
async fn each_service_takes_the_kinds_of_key_its_admin_allows() -> Result<()> {
    let server = localhost_server().await?;
    let (chrome, _) = chrome("passkeys-policy", true).await?;

    // Sesame keys only: no passkey on the page, and the API refuses one.
    let qr_only = service(&server, "Harbour", "sesame", false).await?;
    chrome.client.goto(&qr_only.login_url).await?;
    ensure!(passkeys_offered(&chrome).await? == "off", "a Sesame-only service offers no passkey");
    ensure!(chrome.visible_text("#passkey-sign-in").await.is_none(), "the passkey button is hidden");
    let browser = Browser::new(&server);
    let res = browser
        .client
        .post(server.url(&format!("/api/services/{}/passkeys/sign-in/start", qr_only.id)))
        .json(&json!({}))
        .send()
        .await?;
    let (status, body): (_, Value) = (res.status(), res.json().await?);
    ensure!(status == 403 && body["error"] == "passkeys_not_allowed", "{status}: {body}");

    // Passkeys only: no QR code, and the sesame command is refused.
    let passkeys_only = service(&server, "Lighthouse", "passkey", false).await?;
    chrome.client.goto(&passkeys_only.login_url).await?;
    ensure!(passkeys_offered(&chrome).await? == "only", "a passkey-only service says so");
    ensure!(chrome.visible_text("#token").await.is_none(), "no token to scan on a passkey-only service");
    let challenge = browser.start_challenge(&passkeys_only.id).await?;
    let out = Sesame::new().run(&["--json", "register", &challenge.token, "--name", "bob", "--yes"]);
    ensure!(!out.status.success(), "sesame registered at a passkey-only service: {}", stdout(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    ensure!(said.contains("sesame_keys_not_allowed") || said.contains("passkeys only"), "{said}");
    // A passkey registers there.
    register_with_passkey(&chrome, "alice").await?;
    chrome.wait_contains("#login", "Signed in as alice").await?;
    chrome.close().await
}

#[tokio::test]
async fn user_verification_required_and_not_done_is_refused() -> Result<()> {
    let server = localhost_server().await?;
    let service = service(&server, "Lighthouse", "both", true).await?;
    let (chrome, authenticator) = chrome("passkeys-verification", true).await?;
    chrome.client.goto(&service.login_url).await?;
    register_with_passkey(&chrome, "alice").await?;
    chrome.wait_contains("#login", "Signed in as alice").await?;

    // A wrong fingerprint from now on: the authenticator signs without
    // verifying, and the service refuses it.
    // (A browser asked for verification does not even send an answer
    // without it; the server's own refusal of one is tested in the server's
    // tests, with a software authenticator.)
    chrome.set_user_verified(&authenticator, false).await?;
    sign_out(&chrome).await?;
    chrome.click("#passkey-sign-in").await?;
    let said = chrome
        .wait_text("#passkey-status", "a refusal", WAIT, |t| {
            t.contains("No passkey was used") || t.contains("user verification")
        })
        .await?;
    ensure!(chrome.visible_text("#passkey-sign-in").await.is_some(), "still on the login page: {said}");
    chrome.save_screenshot("refused").await?;
    // Verified again, the button signs in.
    chrome.set_user_verified(&authenticator, true).await?;
    chrome.click("#passkey-sign-in").await?;
    chrome.wait_contains("#login", "Signed in as alice").await?;
    chrome.close().await
}

#[tokio::test]
async fn an_application_signs_a_person_in_through_a_passkey_and_its_id_token_says_so() -> Result<()> {
    let server = localhost_server().await?;
    let service = service(&server, "Lighthouse", "both", false).await?;
    let listener = RpListener::bind()?;
    let settings = json!({
        "name": "Logbook",
        "redirect_uris": [listener.redirect_uri()],
        "post_logout_redirect_uris": [listener.post_logout_redirect_uri()],
        "public": false,
        "ask_consent": false,
    });
    let client = server.admin().create_application(&service.id, &settings).await?;
    let settings = RpSettings {
        issuer: server.origin.clone(),
        client,
        alg: openidconnect::core::CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        secret_in_body: false,
        scopes: Vec::new(),
    };
    let rp = RelyingParty::start(listener, settings).await?;
    let (chrome, _) = chrome("passkeys-oidc", true).await?;

    // A new account, made with a passkey on the application's login page.
    chrome.client.goto(&rp.login_url()).await?;
    chrome.wait_contains("#application-name", "Logbook").await?;
    register_with_passkey(&chrome, "alice").await?;
    let first = signed_in(nth_outcome(&rp, 1).await?)?;
    ensure!(first.preferred_username.as_deref() == Some("alice"), "{first:?}");
    // A passkey bound to its device, and the user verified (RFC 8176).
    ensure!(first.amr == ["hwk", "user"], "amr: {:?}", first.amr);

    // Asked to sign in afresh (prompt=login): the login page again, whose
    // autofill offers the passkey, and the passkey alone signs in.
    chrome.client.goto(&rp.fresh_login_url()).await?;
    let second = signed_in(nth_outcome(&rp, 2).await?)?;
    ensure!(second.sub == first.sub && second.amr == ["hwk", "user"], "{second:?}");
    ensure!(second.auth_time >= first.auth_time, "{second:?}");
    chrome.close().await
}

#[tokio::test]
async fn a_removed_passkey_no_longer_signs_in_on_another_instance_either() -> Result<()> {
    let db = PgDatabase::create()?;
    let redis = Redis::start()?;
    let port = free_port();
    let shared = ServerOptions { database_url: Some(db.url.clone()), redis_url: Some(redis.url()), ..localhost(port) };
    let a = Server::start_with(shared.clone()).await?;
    // The second instance serves the same public origin, as behind a load
    // balancer.
    let b = Server::start_with(ServerOptions { port: None, ..shared }).await?;
    let service = service(&a, "Lighthouse", "both", false).await?;
    let (chrome, _) = chrome("passkeys-removed", true).await?;
    chrome.client.goto(&service.login_url).await?;
    register_with_passkey(&chrome, "alice").await?;
    chrome.wait_contains("#login", "Signed in as alice").await?;

    // The admin removes it on the other instance.
    let keys: Vec<Value> = b
        .admin()
        .request(reqwest::Method::GET, &format!("/admin/api/services/{}/accounts/alice/keys", service.id))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let key = keys.first().and_then(|k| k["id"].as_str()).context("alice's passkey")?.to_owned();
    let res = b
        .admin()
        .request(reqwest::Method::DELETE, &format!("/admin/api/services/{}/accounts/alice/keys/{key}", service.id))
        .send()
        .await?;
    ensure!(res.status() == 204, "removing the passkey answered {}", res.status());

    // Its session went with it, and it signs nobody in any more: the
    // login page's autofill offers it (the browser still holds it), and
    // the server refuses it.
    chrome.client.goto(&service.login_url).await?;
    ensure!(passkeys_offered(&chrome).await? == "both", "the login page again, not the signed-in one");
    chrome.click("#passkey-sign-in").await?;
    chrome.wait_contains("#passkey-status", "not registered").await?;
    chrome.close().await
}

#[tokio::test]
async fn an_account_registered_with_sesame_adds_a_passkey_and_signs_in_with_either() -> Result<()> {
    let server = localhost_server().await?;
    let service = service(&server, "Lighthouse", "both", false).await?;
    let (chrome, authenticator) = chrome("passkeys-add", true).await?;
    let sesame = Sesame::new();

    // Registered with the sesame command from the login page's token.
    chrome.client.goto(&service.login_url).await?;
    let token = chrome.wait_text("#token", "a token", WAIT, |t| t.starts_with("sesame1.")).await?;
    let out = sesame.run(&["--json", "register", &token, "--name", "alice", "--yes"]);
    ensure!(out.status.success(), "sesame register failed: {}{}", stdout(&out), stderr(&out));
    chrome.wait_contains("#login", "Signed in as alice").await?;

    // A passkey, added from the account page.
    let account_page = format!("{}/services/{}/account", server.origin, service.id);
    chrome.client.goto(&account_page).await?;
    chrome.wait_contains("#account-name", "alice").await?;
    type_into(&chrome, "#passkey-label", "This laptop").await?;
    chrome.click("#add-passkey").await?;
    chrome.wait_contains("#account", "The passkey is on your account").await?;
    let keys = chrome.wait_contains("#keys", "This laptop").await?;
    ensure!(keys.contains("passkey"), "the passkey is listed with the Sesame key: {keys}");
    ensure!(credentials(&chrome, &authenticator).await?.len() == 1, "the authenticator holds the passkey");
    chrome.save_screenshot("account").await?;

    // Either signs in: the passkey in the browser, once signed out...
    chrome.client.goto(&service.login_url).await?;
    sign_out(&chrome).await?;
    chrome.wait_contains("#login", "Signed in as alice").await?;
    // ...and the Sesame key, for a browser's challenge.
    let browser = Browser::new(&server);
    let challenge = browser.start_challenge(&service.id).await?;
    let out = sesame.run(&["--json", "login", &challenge.token, "--account", "alice", "--yes"]);
    ensure!(out.status.success(), "sesame login failed: {}{}", stdout(&out), stderr(&out));
    // The Sesame key had not signed in since the passkey came: it is told
    // of it (PROTOCOL.md §6.4).
    let answer: Value = serde_json::from_str(stdout(&out).trim())?;
    let told = answer["new_keys"].as_array().context("new_keys")?;
    ensure!(told.iter().any(|k| k["kind"] == "passkey" && k["label"] == "This laptop"), "{answer}");

    // Removed from the account page, the passkey signs nobody in. Its row
    // says where it last signed in from: this browser.
    chrome.client.goto(&account_page).await?;
    let keys_uri = format!("/admin/api/services/{}/accounts/alice/keys", service.id);
    let keys: Vec<Value> = server.admin().request(reqwest::Method::GET, &keys_uri).send().await?.json().await?;
    let passkey = keys.iter().find(|k| k["kind"] == "passkey").context("the passkey")?["id"].as_str().context("id")?;
    let row = format!("#keys tr[data-key-id='{passkey}']");
    chrome.wait_contains(&format!("{row} td.last-used"), "from ").await?;
    // The page that asks first says that the session in use is the
    // passkey's own (it signed in last), and that the Sesame key remains.
    chrome.click(&format!("{row} a.remove")).await?;
    chrome.wait_contains("#key", "This laptop").await?;
    chrome.wait_contains("#own-session", "signs you out").await?;
    ensure!(chrome.visible_text("#last-key").await.is_none(), "the Sesame key is still there");
    // Removed, it ends the session: the browser lands on the login page,
    // whose autofill still offers the passkey, and the server refuses it.
    chrome.click("#remove-key-button").await?;
    chrome.wait_contains("#login", "Or with a passkey").await?;
    let accounts = server.admin().accounts(&service.id).await?;
    ensure!(accounts.len() == 1, "the account stays, with its Sesame key: {accounts:?}");
    chrome.click("#passkey-sign-in").await?;
    chrome.wait_contains("#passkey-status", "not registered").await?;
    chrome.close().await
}
