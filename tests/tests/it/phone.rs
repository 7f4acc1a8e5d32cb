//! Signing in with a phone: a laptop's browser shows the login page, a
//! phone's browser (Chromium playing a 360 px touch screen, with an
//! emulated built-in authenticator) opens the link in the page's QR code,
//! as a phone's camera would, and Sesame's web authenticator approves it.

use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use fantoccini::Locator;
use serde_json::Value;
use sesame_proto::UnverifiedToken;
use sesame_tests::{
    decode_qr_png, free_port, stderr, stdout, y4m_of, Chrome, Result, Server, ServerOptions, Service, Sesame,
};

const SIGNED_IN: &str = "Signed in as alice";

/// A server whose public origin is `http://localhost:PORT`: WebAuthn takes
/// no IP address as its relying party, and `http://localhost` is a secure
/// context, as HTTPS is. The long code window lets a slow machine take its
/// time between reading a QR code and answering it.
async fn localhost_server() -> Result<Server> {
    let port = free_port();
    Server::start_with(ServerOptions {
        port: Some(port),
        public_url: Some(format!("http://localhost:{port}")),
        code_window: Some(300),
        ..ServerOptions::default()
    })
    .await
}

/// A laptop's browser on `service`'s login page, showing a token.
async fn laptop(name: &str, service: &Service) -> Result<Chrome> {
    let chrome = Chrome::start(name).await?;
    chrome.client.goto(&service.login_url).await?;
    waiting_token(&chrome).await?;
    Ok(chrome)
}

async fn waiting_token(chrome: &Chrome) -> Result<String> {
    chrome.wait_text("#token", "a token", Duration::from_secs(10), |t| t.starts_with("sesame1.")).await
}

/// What the QR code on `chrome`'s page says, read from a screenshot as a
/// phone's camera would read the screen; checked to be a link to this
/// server's web authenticator carrying one of its tokens.
async fn link_in_qr(chrome: &Chrome, server: &Server) -> Result<String> {
    let png = chrome.screenshot().await?;
    let texts = decode_qr_png(&png)?;
    let link = texts.into_iter().next().context("no QR code in the screenshot")?;
    let token = link.strip_prefix(&format!("{}/app#", server.origin)).with_context(|| format!("not a link: {link}"))?;
    UnverifiedToken::parse(token)?.verify(&server.public_key().await?)?;
    Ok(link)
}

/// The number the laptop's page shows for its sign-in.
async fn shown_number(chrome: &Chrome) -> Result<String> {
    chrome.wait_text("#number", "a number", Duration::from_secs(10), |t| t.len() == 2).await
}

async fn type_into(chrome: &Chrome, css: &str, text: &str) -> Result<()> {
    let field = chrome.client.find(Locator::Css(css)).await?;
    field.clear().await?;
    field.send_keys(text).await?;
    Ok(())
}

fn testid(id: &str) -> String {
    format!("[data-testid=\"{id}\"]")
}

/// A phone with a built-in authenticator, `prf` saying whether it derives
/// keys from a credential (WebAuthn PRF).
async fn phone(name: &str, prf: bool, extra: &[String]) -> Result<(Chrome, String)> {
    let chrome = Chrome::start_phone(name, extra).await?;
    let authenticator = chrome.add_phone_authenticator(prf, true).await?;
    Ok((chrome, authenticator))
}

/// Opens `link` on the phone, as its camera app would hand it over, and
/// waits for the app to say who is asking.
async fn open_link(phone: &Chrome, link: &str, service: &str) -> Result<()> {
    phone.client.goto(link).await?;
    phone.wait_contains(&testid("req-service"), service).await?;
    // The token leaves the address bar and the history at once.
    let address = phone.client.current_url().await?;
    ensure!(address.fragment().is_none(), "the token stayed in the address: {address}");
    Ok(())
}

/// Registers alice from `phone` on the sign-in the laptop's page shows, as
/// a person does: the link in its QR code, the number beside it, a name.
async fn register_alice_from(phone: &Chrome, laptop: &Chrome, server: &Server) -> Result<()> {
    let link = link_in_qr(laptop, server).await?;
    let number = shown_number(laptop).await?;
    open_link(phone, &link, "Lighthouse").await?;
    type_into(phone, &testid("number-input"), &number).await?;
    type_into(phone, &testid("register-name"), "alice").await?;
    phone.click(&testid("register-button")).await?;
    phone.wait_contains(&testid("result"), "Registered alice at Lighthouse").await?;
    laptop.wait_contains("#login", SIGNED_IN).await?;
    Ok(())
}

/// Signs the laptop out, back to a login page with a new sign-in.
async fn sign_out(laptop: &Chrome) -> Result<()> {
    laptop.click("#signed-in form button").await?;
    waiting_token(laptop).await?;
    Ok(())
}

/// What the phone keeps of each account key, and whether Web Crypto lets
/// any of it out: a key stored wrapped has no CryptoKey to export, one
/// stored as a CryptoKey must refuse.
async fn stored_keys(phone: &Chrome) -> Result<Vec<Value>> {
    let found = phone
        .js_async(
            r#"const done = arguments[arguments.length - 1];
            const open = indexedDB.open('sesame');
            open.onerror = () => done({ error: String(open.error) });
            open.onsuccess = () => {
              const all = open.result.transaction('accounts').objectStore('accounts').getAll();
              all.onsuccess = async () => {
                const out = [];
                for (const record of all.result) {
                  const key = record.private_key;
                  let exported = 'no key to export';
                  if (key) {
                    try { await crypto.subtle.exportKey('pkcs8', key); exported = 'EXPORTED'; }
                    catch (e) { exported = 'refused: ' + e.name; }
                  }
                  out.push({ account: record.account, wrapped: !!record.wrapped,
                             extractable: key ? key.extractable : null, exported });
                }
                done(out);
              };
            };"#,
        )
        .await?;
    found.as_array().cloned().with_context(|| format!("no keys read: {found}"))
}

/// The page fits a 360 px screen: nothing wider than the window.
async fn fits_the_screen(phone: &Chrome) -> Result<()> {
    let wide = phone.js("return document.documentElement.scrollWidth > window.innerWidth;").await?;
    ensure!(wide == Value::Bool(false), "the app is wider than the phone's screen");
    Ok(())
}

#[tokio::test]
async fn a_phone_registers_from_the_laptops_qr_code_and_signs_in_again_with_the_number() -> Result<()> {
    let server = localhost_server().await?;
    let service = server.admin().create_matching_service("Lighthouse").await?;
    let laptop = laptop("phone-laptop", &service).await?;
    let (phone, _) = phone("phone", true, &[]).await?;

    // The laptop shows a QR code; the phone's camera opens its link.
    let link = link_in_qr(&laptop, &server).await?;
    let number = shown_number(&laptop).await?;
    open_link(&phone, &link, "Lighthouse").await?;
    phone.wait_contains(&testid("pin-notice"), "pinned its server key").await?;
    assert_eq!(phone.visible_text(&testid("req-origin")).await.as_deref(), Some(server.origin.as_str()));
    fits_the_screen(&phone).await?;
    phone.save_screenshot("request").await?;

    type_into(&phone, &testid("number-input"), &number).await?;
    type_into(&phone, &testid("register-name"), "alice").await?;
    phone.click(&testid("register-button")).await?;
    phone.wait_contains(&testid("result"), "Registered alice at Lighthouse").await?;
    laptop.wait_contains("#login", SIGNED_IN).await?;
    phone.save_screenshot("registered").await?;

    // The key cannot be copied out: it is kept only wrapped under the
    // phone's unlock.
    let keys = stored_keys(&phone).await?;
    ensure!(keys.len() == 1, "{keys:?}");
    assert_eq!(keys[0]["wrapped"], true, "{keys:?}");
    assert_eq!(keys[0]["exported"], "no key to export", "{keys:?}");
    phone.click(&testid("nav-about")).await?;
    phone.wait_contains(&testid("protection"), "encrypted with your phone's unlock").await?;

    // Later: the laptop signs out and in again; a wrong number ends that
    // sign-in on both screens.
    sign_out(&laptop).await?;
    let link = link_in_qr(&laptop, &server).await?;
    let number = shown_number(&laptop).await?;
    let wrong = if number == "10" { "11" } else { "10" };
    open_link(&phone, &link, "Lighthouse").await?;
    type_into(&phone, &testid("number-input"), wrong).await?;
    phone.click(&testid("login-button")).await?;
    phone.wait_contains(&testid("status"), "not the number shown on the page").await?;
    laptop.wait_contains("#status", "not the one on this page").await?;

    // Starting again gives a new number; the right one signs in.
    laptop.click("#restart").await?;
    let fresh = laptop.wait_text("#number", "a new number", Duration::from_secs(10), |t| t.len() == 2).await?;
    let link = link_in_qr(&laptop, &server).await?;
    open_link(&phone, &link, "Lighthouse").await?;
    type_into(&phone, &testid("number-input"), &fresh).await?;
    phone.click(&testid("login-button")).await?;
    phone.wait_contains(&testid("result"), "Signed in as alice at Lighthouse").await?;
    laptop.wait_contains("#login", SIGNED_IN).await?;

    // The same link again is over, and says so.
    open_link(&phone, &link, "Lighthouse").await?;
    phone.wait_contains(&testid("req-over"), "already").await?;

    // The phone lists the account with the fingerprint of the key the
    // server holds, and removes it once that is confirmed.
    phone.click(&testid("nav-accounts")).await?;
    let listed = phone.wait_contains(&testid("accounts-list"), "alice").await?;
    let path = format!("/admin/api/services/{}/accounts/alice/keys", service.id);
    let keys: Value = server.admin().request(reqwest::Method::GET, &path).send().await?.json().await?;
    let fingerprint = keys[0]["fingerprint"].as_str().context("a fingerprint")?.replace(' ', "");
    ensure!(listed.replace(' ', "").contains(&fingerprint), "{listed:?} does not show {fingerprint}");
    phone.click(&testid("remove-account")).await?;
    phone.click(&testid("remove-confirm")).await?;
    phone.wait_contains(&testid("status"), "Removed the key of alice").await?;
    ensure!(stored_keys(&phone).await?.is_empty(), "the key is still stored");
    Ok(())
}

#[tokio::test]
async fn without_prf_the_key_stays_unexportable_and_a_failed_unlock_sends_nothing() -> Result<()> {
    let server = localhost_server().await?;
    let service = server.admin().create_matching_service("Lighthouse").await?;
    let laptop = laptop("phone-uv-laptop", &service).await?;
    let (phone, authenticator) = phone("phone-uv", false, &[]).await?;
    register_alice_from(&phone, &laptop, &server).await?;

    let keys = stored_keys(&phone).await?;
    ensure!(keys.len() == 1, "{keys:?}");
    assert_eq!(keys[0]["wrapped"], false, "{keys:?}");
    assert_eq!(keys[0]["extractable"], false, "{keys:?}");
    let exported = keys[0]["exported"].as_str().unwrap_or_default();
    ensure!(exported.starts_with("refused"), "Web Crypto let the key out: {keys:?}");
    phone.click(&testid("nav-about")).await?;
    phone.wait_contains(&testid("protection"), "does not encrypt them").await?;

    // The phone's unlock fails: nothing is signed, the laptop keeps waiting.
    phone.set_user_verified(&authenticator, false).await?;
    sign_out(&laptop).await?;
    let link = link_in_qr(&laptop, &server).await?;
    let number = shown_number(&laptop).await?;
    open_link(&phone, &link, "Lighthouse").await?;
    type_into(&phone, &testid("number-input"), &number).await?;
    phone.click(&testid("login-button")).await?;
    phone.wait_contains(&testid("status"), "nothing was signed").await?;
    let status = laptop.visible_text("#status").await.unwrap_or_default();
    ensure!(status.contains("Your authenticator has the request"), "the laptop moved on: {status}");

    // With the unlock back, the same request goes through.
    phone.set_user_verified(&authenticator, true).await?;
    phone.click(&testid("login-button")).await?;
    laptop.wait_contains("#login", SIGNED_IN).await?;
    Ok(())
}

#[tokio::test]
async fn the_apps_own_camera_reads_the_laptops_qr_code_and_denying_tells_the_laptop() -> Result<()> {
    let server = localhost_server().await?;
    let service = server.admin().create_matching_service("Lighthouse").await?;
    let laptop = laptop("phone-camera-laptop", &service).await?;
    let dir = tempfile::tempdir()?;
    let video = y4m_of(&laptop.screenshot().await?, dir.path())?;
    let camera = [
        "--use-fake-device-for-media-stream".to_owned(),
        "--use-fake-ui-for-media-stream".to_owned(),
        format!("--use-file-for-fake-video-capture={}", video.display()),
    ];
    let (phone, _) = phone("phone-camera", true, &camera).await?;
    phone.client.goto(&format!("{}/app", server.origin)).await?;
    phone.click(&testid("scan-start")).await?;
    // Decoding frames in JavaScript is slow on a busy machine: give it time.
    phone.wait_text(&testid("req-service"), "the service", Duration::from_secs(40), |t| t == "Lighthouse").await?;
    phone.click(&testid("deny-button")).await?;
    phone.wait_contains(&testid("result"), "Refused").await?;
    laptop.wait_contains("#status", "refused in the authenticator").await?;
    Ok(())
}

#[tokio::test]
async fn a_phone_whose_storage_was_cleared_offers_no_account_and_pins_afresh() -> Result<()> {
    let server = localhost_server().await?;
    let service = server.admin().create_matching_service("Lighthouse").await?;
    let laptop = laptop("phone-cleared-laptop", &service).await?;
    let (phone, _) = phone("phone-cleared", true, &[]).await?;
    register_alice_from(&phone, &laptop, &server).await?;

    // The browser's site data is cleared, as a person or the browser may.
    let params = serde_json::json!({ "origin": server.origin, "storageTypes": "indexeddb" });
    phone.cdp("Storage.clearDataForOrigin", params).await?;
    sign_out(&laptop).await?;
    let link = link_in_qr(&laptop, &server).await?;
    phone.client.goto(&link).await?;
    // The phone knows no account here any more, and no server key either.
    phone.wait_contains(&testid("pin-notice"), "pinned its server key").await?;
    let accounts = phone.js("return document.getElementById('login-account').options.length;").await?;
    assert_eq!(accounts, Value::from(0), "a cleared phone still offers an account");
    let status = laptop.visible_text("#status").await.unwrap_or_default();
    ensure!(!status.contains("Signed in"), "{status}");
    Ok(())
}

#[tokio::test]
async fn a_denied_camera_gets_a_sentence_and_pasting_still_works() -> Result<()> {
    let server = localhost_server().await?;
    let service = server.admin().create_matching_service("Lighthouse").await?;
    let laptop = laptop("phone-no-camera-laptop", &service).await?;
    // A camera exists, but the person says no to it.
    let denied = ["--use-fake-device-for-media-stream".to_owned(), "--deny-permission-prompts".to_owned()];
    let (phone, _) = phone("phone-no-camera", true, &denied).await?;
    phone.client.goto(&format!("{}/app", server.origin)).await?;
    phone.click(&testid("scan-start")).await?;
    phone.wait_contains(&testid("status"), "camera was not allowed").await?;
    let link = link_in_qr(&laptop, &server).await?;
    type_into(&phone, &testid("token-input"), &link).await?;
    phone.click(&testid("continue")).await?;
    phone.wait_contains(&testid("req-service"), "Lighthouse").await?;
    Ok(())
}

#[tokio::test]
async fn approving_on_the_phone_that_shows_the_page_opens_the_app_and_comes_back() -> Result<()> {
    let server = localhost_server().await?;
    let service = server.admin().create_matching_service("Lighthouse").await?;
    let phone = Chrome::start_phone("phone-same-device", &[]).await?;
    phone.client.goto(&service.login_url).await?;
    waiting_token(&phone).await?;
    let number = shown_number(&phone).await?;
    let page = phone.client.window().await?;
    phone.click("#same-device").await?;
    let app = phone
        .client
        .windows()
        .await?
        .into_iter()
        .find(|w| *w != page)
        .context("the link opens the app in a tab of its own")?;
    phone.client.switch_to_window(app).await?;
    phone.add_phone_authenticator(true, true).await?;
    phone.wait_contains(&testid("req-service"), "Lighthouse").await?;
    type_into(&phone, &testid("number-input"), &number).await?;
    type_into(&phone, &testid("register-name"), "alice").await?;
    phone.click(&testid("register-button")).await?;
    phone.wait_contains(&testid("result"), "Registered alice").await?;
    phone.click(&testid("back-button")).await?;
    // The app's tab closes itself; the page it came from has signed in.
    let mut open = phone.client.windows().await?.len();
    for _ in 0..50 {
        if open == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        open = phone.client.windows().await?.len();
    }
    ensure!(open == 1, "the app's tab stayed open");
    phone.client.switch_to_window(page).await?;
    phone.wait_contains("#login", SIGNED_IN).await?;
    Ok(())
}

#[tokio::test]
async fn the_app_opens_without_the_server_and_says_so() -> Result<()> {
    let server = localhost_server().await?;
    let (phone, _) = phone("phone-offline", true, &[]).await?;
    let app = format!("{}/app", server.origin);
    phone.client.goto(&app).await?;
    // Once its service worker looks after the page, the app has its copy.
    let mut controlled = false;
    for _ in 0..100 {
        if phone.js("return !!navigator.serviceWorker.controller;").await? == Value::Bool(true) {
            controlled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(controlled, "no service worker took the app");
    drop(server);
    phone.client.goto(&app).await?;
    phone.wait_contains(&testid("offline"), "Offline").await?;
    type_into(&phone, &testid("token-input"), "sesame1.AAAA.AAAA").await?;
    phone.click(&testid("continue")).await?;
    let said = status_sentence(&phone).await?;
    ensure!(!said.contains("undefined") && !said.contains("Error:"), "not a sentence: {said}");
    Ok(())
}

#[tokio::test]
async fn a_phone_joins_an_account_the_command_line_registered_and_both_sign_in() -> Result<()> {
    let server = localhost_server().await?;
    let service = server.admin().create_matching_service("Lighthouse").await?;
    let sesame = Sesame::new();

    // The command line registers alice, with the page's number.
    let laptop = laptop("phone-enroll-laptop", &service).await?;
    let token = waiting_token(&laptop).await?;
    let number = shown_number(&laptop).await?;
    let out = sesame.run(&["register", &token, "--name", "alice", "--number", &number, "--yes"]);
    ensure!(out.status.success(), "sesame register: {}", stderr(&out));
    laptop.wait_contains("#login", SIGNED_IN).await?;

    // Signed in, the laptop adds another authenticator; the phone scans it.
    laptop.click("#account-link").await?;
    laptop.click("#add-authenticator").await?;
    waiting_token(&laptop).await?;
    let link = link_in_qr(&laptop, &server).await?;
    let (phone, _) = phone("phone-enroll", true, &[]).await?;
    open_link(&phone, &link, "Lighthouse").await?;
    phone.wait_contains(&testid("req-account"), "alice").await?;
    phone.click(&testid("enroll-button")).await?;
    let code =
        phone.wait_text(&testid("confirmation-code"), "a code", Duration::from_secs(20), |t| t.len() == 7).await?;
    let shown = laptop.wait_text("#confirmation-code", "the code", Duration::from_secs(20), |t| !t.is_empty()).await?;
    assert_eq!(shown.trim(), code);
    laptop.click("#confirm-button").await?;
    // The confirmation is done once its page says so; leaving before
    // would cut it off.
    laptop.wait_contains("#result-message", "can now sign in as alice").await?;

    // Both authenticators now sign alice in. The laptop is still signed
    // in: it signs out first.
    laptop.client.goto(&service.login_url).await?;
    laptop.click("form[action$='/signout'] button").await?;
    waiting_token(&laptop).await?;
    let link = link_in_qr(&laptop, &server).await?;
    let number = shown_number(&laptop).await?;
    open_link(&phone, &link, "Lighthouse").await?;
    type_into(&phone, &testid("number-input"), &number).await?;
    phone.click(&testid("login-button")).await?;
    laptop.wait_contains("#login", SIGNED_IN).await?;

    laptop.click("#signed-in form button").await?;
    let token = waiting_token(&laptop).await?;
    let number = shown_number(&laptop).await?;
    let out = sesame.run(&["login", &token, "--account", "alice", "--number", &number, "--yes"]);
    ensure!(out.status.success(), "sesame login: {}", stderr(&out));
    // The command line had not signed in since the phone joined: it says so
    // (PROTOCOL.md §6.4).
    ensure!(
        stdout(&out).contains("A new authenticator") && stdout(&out).contains("was added to alice"),
        "{}",
        stdout(&out)
    );
    laptop.wait_contains("#login", SIGNED_IN).await?;

    // A third authenticator joins; the phone, at its next sign-in, shows it
    // as a warning of its own, with the name it was given.
    laptop.click("#account-link").await?;
    laptop.click("#add-authenticator").await?;
    let token = waiting_token(&laptop).await?;
    let spare = Sesame::new();
    let out = spare.run(&["enroll", &token, "--label", "spare", "--yes"]);
    ensure!(out.status.success(), "sesame enroll: {}", stderr(&out));
    laptop.wait_text("#confirmation-code", "the code", Duration::from_secs(20), |t| !t.is_empty()).await?;
    laptop.click("#confirm-button").await?;
    laptop.wait_contains("#result-message", "spare can now sign in as alice").await?;
    laptop.client.goto(&service.login_url).await?;
    laptop.click("form[action$='/signout'] button").await?;
    waiting_token(&laptop).await?;
    let link = link_in_qr(&laptop, &server).await?;
    let number = shown_number(&laptop).await?;
    open_link(&phone, &link, "Lighthouse").await?;
    type_into(&phone, &testid("number-input"), &number).await?;
    phone.click(&testid("login-button")).await?;
    laptop.wait_contains("#login", SIGNED_IN).await?;
    let told = phone.wait_contains(&testid("new-keys"), "A new authenticator \"spare\" was added to alice").await?;
    ensure!(told.contains("remove it on your account page.") && !told.contains("phone"), "{told}");
    let href = phone.client.find(Locator::Css(&format!("{} a", testid("new-keys")))).await?.attr("href").await?;
    ensure!(href.as_deref() == Some(&*format!("{}/account", service.login_url)), "{href:?}");
    phone.save_screenshot("told-of-a-new-key").await?;
    Ok(())
}

/// The sentence the app's status line says once it has decided: not the
/// "Checking the request…" it shows while it looks, which a loaded machine
/// leaves on screen long enough to be read.
async fn status_sentence(phone: &Chrome) -> Result<String> {
    let decided = |t: &str| !t.is_empty() && !t.starts_with("Checking the request");
    phone.wait_text(&testid("status"), "a sentence", Duration::from_secs(10), decided).await
}

#[tokio::test]
async fn the_app_refuses_links_and_tokens_it_must_not_answer_with_one_sentence() -> Result<()> {
    let server = localhost_server().await?;
    let other = Server::start().await?;
    let service = server.admin().create_matching_service("<b>Lighthouse</b>").await?;
    let laptop = laptop("phone-refusals-laptop", &service).await?;
    let (phone, _) = phone("phone-refusals", true, &[]).await?;
    let app = format!("{}/app", server.origin);

    // Markup in a service name is shown as the text it is.
    let link = link_in_qr(&laptop, &server).await?;
    open_link(&phone, &link, "<b>Lighthouse</b>").await?;
    let token = link.split_once('#').context("a fragment")?.1.to_owned();

    // A token of another server: this app talks only to its own.
    let foreign = other.create_service("Elsewhere").await?;
    let challenge = sesame_tests::Browser::new(&other).start_challenge(&foreign.id).await?;
    phone.client.goto(&format!("{app}#{}", challenge.token)).await?;
    let said = status_sentence(&phone).await?;
    ensure!(said.contains(&other.origin), "{said}");

    // A link whose address is not the token's server.
    phone.client.goto(&app).await?;
    type_into(&phone, &testid("token-input"), &format!("{}/app#{token}", other.origin)).await?;
    phone.click(&testid("continue")).await?;
    let said = status_sentence(&phone).await?;
    ensure!(said.contains("not the server the token comes from") || said.contains("link"), "{said}");

    // A tampered token, and text that is no token at all.
    let mut tampered = token.clone().into_bytes();
    tampered[60] = if tampered[60] == b'A' { b'B' } else { b'A' };
    for (input, expect) in [(String::from_utf8(tampered)?, "altered"), ("hello".to_owned(), "not a Sesame")] {
        phone.client.goto(&app).await?;
        type_into(&phone, &testid("token-input"), &input).await?;
        phone.click(&testid("continue")).await?;
        let said = status_sentence(&phone).await?;
        ensure!(said.contains(expect), "{input:?}: {said}");
    }
    // Nothing of it was pinned or stored.
    let keys = stored_keys(&phone).await?;
    ensure!(keys.is_empty(), "{keys:?}");
    Ok(())
}

#[tokio::test]
async fn the_command_line_reads_the_link_and_a_screenshot_of_the_qr_code() -> Result<()> {
    let server = Server::start().await?;
    let service = server.admin().create_matching_service("Lighthouse").await?;
    let laptop = laptop("phone-cli-laptop", &service).await?;
    let link = link_in_qr(&laptop, &server).await?;
    let number = shown_number(&laptop).await?;
    let sesame = Sesame::new();

    // Without the number a script gets one line, and the sign-in waits.
    let out = sesame.run(&["register", &link, "--name", "alice", "--yes"]);
    ensure!(!out.status.success(), "registered without the number");
    let said = stderr(&out);
    ensure!(said.trim().lines().count() == 1 && said.contains("--number"), "{said}");

    // A link to another server carrying this one's token is refused.
    let relayed = link.replace(&server.origin, "http://127.0.0.2:1");
    let out = sesame.run(&["register", &relayed, "--name", "alice", "--number", &number, "--yes"]);
    ensure!(!out.status.success(), "a relayed link was accepted");
    ensure!(stderr(&out).contains("not the server the token comes from"), "{}", stderr(&out));

    // A screenshot of the page scans as its link does.
    let dir = tempfile::tempdir()?;
    let shot = dir.path().join("laptop.png");
    std::fs::write(&shot, laptop.screenshot().await?)?;
    let number = shown_number(&laptop).await?;
    let out = sesame.run(&["scan", shot.to_str().context("path")?, "--name", "alice", "--number", &number, "--yes"]);
    ensure!(out.status.success(), "sesame scan: {}", stderr(&out));
    ensure!(stdout(&out).contains("Registered alice"), "{}", stdout(&out));
    laptop.wait_contains("#login", SIGNED_IN).await?;
    if laptop.visible_text("#number-line").await.is_some() {
        bail!("the number stays on a page that is signed in");
    }
    Ok(())
}
