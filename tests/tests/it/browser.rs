//! The login and admin pages in a real headless Chromium, approved with the
//! real `sesame` binary: what a person sees, without reloading the page.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use fantoccini::Locator;
use serde_json::Value;
use sesame_proto::{ServerPublicKey, Token, UnverifiedToken};
use sesame_tests::{
    decode_qr_png, stderr, stdout, workspace_root, Browser, Chrome, Result, Server, ServerOptions, Service, Sesame,
    ADMIN_TOKEN,
};

const SIGNED_IN: &str = "Signed in as alice";
const WAITING: &str = "Scan the QR code or paste the token into your Sesame authenticator.";
const DENIED: &str = "The sign-in was refused in the authenticator.";
const EXPIRED: &str = "The request timed out. Start again.";

/// Screenshots small enough to commit stay in docs/images for the README.
const README_IMAGE_LIMIT: usize = 200 * 1024;

/// A server with one service, and a browser on its login page showing a
/// token.
async fn login_page(test: &str, options: ServerOptions) -> Result<(Server, Service, Chrome, String)> {
    let server = Server::start_with(options).await?;
    let service = server.create_service("Lighthouse").await?;
    let chrome = Chrome::start(test).await?;
    chrome.client.goto(&service.login_url).await?;
    let token = shown_token(&chrome).await?;
    Ok((server, service, chrome, token))
}

/// The token text the page shows now.
async fn shown_token(chrome: &Chrome) -> Result<String> {
    chrome.wait_text("#token", "a token", Duration::from_secs(10), |t| t.starts_with("sesame1.")).await
}

/// Sets a marker in the page's JavaScript state; it survives only as long as
/// the page is not reloaded.
async fn mark_page(chrome: &Chrome) -> Result<()> {
    chrome.js("window.__marker = 1; return true;").await?;
    Ok(())
}

async fn page_is_marked(chrome: &Chrome) -> Result<bool> {
    Ok(chrome.js("return window.__marker === 1;").await? == Value::Bool(true))
}

/// Runs `sesame ARGS…` and fails with its stderr unless it succeeds.
fn approve(sesame: &Sesame, args: &[&str]) -> Result<String> {
    let out = sesame.run(args);
    ensure!(out.status.success(), "sesame {} failed: {}", args[0], stderr(&out));
    Ok(stdout(&out))
}

/// Checks that `text` is a token signed by this server for this service.
async fn verify_token(server: &Server, service: &Service, text: &str) -> Result<Token> {
    let identity: Value = reqwest::get(server.url("/.well-known/sesame")).await?.error_for_status()?.json().await?;
    let key = ServerPublicKey::from_base64(identity["public_key"].as_str().context("public_key")?)?;
    // `text` may be the bare token or the link a QR code holds.
    let token = UnverifiedToken::read(text)?.verify(&key)?;
    ensure!(token.claims().service_id.to_string() == service.id, "token for another service");
    ensure!(token.claims().origin.as_str() == server.origin, "token for another origin");
    Ok(token)
}

/// The base of a token: what stays the same while its code rotates.
fn base(token: &str) -> &str {
    token.rsplit_once('.').map_or(token, |(base, _)| base)
}

/// Takes a screenshot while the token text stays the same before and after
/// it, and returns that text with what the QR code in the screenshot says.
/// Retries when a rotation falls between the two reads.
async fn token_and_qr(chrome: &Chrome) -> Result<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = shown_token(chrome).await?;
        let png = chrome.screenshot().await?;
        let after = shown_token(chrome).await?;
        if before == after {
            let codes = decode_qr_png(&png)?;
            let [code] = codes.as_slice() else {
                let path = sesame_tests::browser_artifacts_dir().join(format!("{}-no-qr.png", chrome.name));
                std::fs::write(&path, &png)?;
                bail!("expected one QR code on the page, found {} (screenshot {})", codes.len(), path.display());
            };
            return Ok((before, code.clone()));
        }
        if Instant::now() > deadline {
            bail!("the token never held still for a screenshot");
        }
    }
}

/// Copies a screenshot to docs/images for the README when
/// `SESAME_UPDATE_README_IMAGES` is set, so that ordinary runs leave the
/// committed images alone. It must stay small enough to commit.
fn keep_for_readme(png: &std::path::Path, name: &str) -> Result<()> {
    if std::env::var_os("SESAME_UPDATE_README_IMAGES").is_none() {
        return Ok(());
    }
    let bytes = std::fs::read(png)?;
    ensure!(bytes.len() < README_IMAGE_LIMIT, "{} is {} bytes, too big for docs/images", png.display(), bytes.len());
    let dir = workspace_root().join("docs").join("images");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name), bytes)?;
    Ok(())
}

#[tokio::test]
async fn approving_signs_the_waiting_page_in_and_the_session_survives_a_reload() -> Result<()> {
    let (_server, _service, chrome, token) = login_page("signed-in", ServerOptions::default()).await?;
    chrome.wait_contains("#status", WAITING).await?;
    let waiting = chrome.save_screenshot("waiting").await?;
    mark_page(&chrome).await?;

    let sesame = Sesame::new();
    approve(&sesame, &["register", &token, "--name", "alice", "--yes"])?;

    chrome.wait_contains("#login", SIGNED_IN).await?;
    ensure!(page_is_marked(&chrome).await?, "the page was reloaded instead of updated in place");
    let signed_in = chrome.save_screenshot("signed-in").await?;
    keep_for_readme(&waiting, "login-page.png")?;
    keep_for_readme(&signed_in, "signed-in.png")?;

    // The session cookie, not the page's state, says who is signed in.
    chrome.client.refresh().await?;
    chrome.wait_contains("#login", SIGNED_IN).await?;
    ensure!(!page_is_marked(&chrome).await?, "the page did not reload");
    ensure!(chrome.visible_text("#token").await.is_none(), "a signed-in page shows no token");

    chrome.click("#login form button[type=submit]").await?;
    shown_token(&chrome).await?;
    chrome.wait_contains("#status", WAITING).await?;
    let qr = chrome.client.find(Locator::Css("#qr svg")).await?;
    ensure!(qr.is_displayed().await?, "the QR code is back after signing out");
    ensure!(!chrome.visible_text("#login").await.unwrap_or_default().contains(SIGNED_IN), "still signed in");
    chrome.close().await
}

#[tokio::test]
async fn the_qr_code_in_a_screenshot_logs_in() -> Result<()> {
    let server = Server::start().await?;
    let service = server.create_service("Lighthouse").await?;
    let sesame = Sesame::new();
    // Register through another challenge, as another browser would.
    let other = Browser::new(&server).start_challenge(&service.id).await?;
    approve(&sesame, &["register", &other.token, "--name", "alice", "--yes"])?;

    let chrome = Chrome::start("qr-login").await?;
    chrome.client.goto(&service.login_url).await?;
    let (shown, scanned) = token_and_qr(&chrome).await?;
    assert_eq!(scanned, format!("{}/app#{shown}", server.origin), "the QR code links the token shown beside it");
    let token = verify_token(&server, &service, &scanned).await?;
    assert_eq!(token.claims().service_name.as_str(), "Lighthouse");

    approve(&sesame, &["login", &scanned, "--account", "alice", "--yes"])?;
    chrome.wait_contains("#login", SIGNED_IN).await?;
    chrome.close().await
}

#[tokio::test]
async fn denying_shows_the_refusal_without_a_reload() -> Result<()> {
    let (_server, _service, chrome, token) = login_page("denied", ServerOptions::default()).await?;
    mark_page(&chrome).await?;

    approve(&Sesame::new(), &["deny", &token])?;

    chrome.wait_contains("#status", DENIED).await?;
    ensure!(page_is_marked(&chrome).await?, "the page was reloaded instead of updated in place");
    ensure!(chrome.visible_text("#restart").await.is_some(), "Start again is offered");
    ensure!(!chrome.visible_text("#login").await.unwrap_or_default().contains("Signed in"), "not signed in");
    chrome.save_screenshot("denied").await?;
    chrome.close().await
}

/// One instance holds its pending challenges in memory (docs/OPERATIONS.md,
/// "Pending challenges"): a `kill -9` and restart forgets them, so the token
/// shown before can no longer be answered, and the page, whose stream
/// reconnects to a challenge the server does not know, offers a new one.
#[tokio::test]
async fn a_restart_forgets_a_pending_challenge_and_the_page_starts_a_new_one() -> Result<()> {
    const FORGOTTEN: &str = "The server no longer knows this sign-in request. Start again.";
    let (server, _service, chrome, first) = login_page("restarted", ServerOptions::default()).await?;
    mark_page(&chrome).await?;
    let sesame = Sesame::new();

    let _server = server.restart().await?;
    let out = sesame.run(&["register", &first, "--name", "alice", "--yes"]);
    ensure!(!out.status.success(), "a token from before the restart was answered");
    ensure!(stderr(&out).contains("does not know this sign-in request"), "{}", stderr(&out));

    chrome.wait_text("#status", "the page to notice", Duration::from_secs(30), |t| t == FORGOTTEN).await?;
    ensure!(page_is_marked(&chrome).await?, "the page was reloaded instead of updated in place");
    chrome.click("#restart").await?;
    let second = chrome
        .wait_text("#token", "a new token", Duration::from_secs(10), |t| {
            t.starts_with("sesame1.") && base(t) != base(&first)
        })
        .await?;
    approve(&sesame, &["register", &second, "--name", "alice", "--yes"])?;
    chrome.wait_contains("#login", SIGNED_IN).await?;
    chrome.close().await
}

/// A login page whose server goes away says so within seconds and hides
/// its code, which could no longer be answered; when the server is back it
/// shows a fresh code, in place, and the sign-in goes on. The pending
/// challenge outlives the restart because the instance keeps it in
/// PostgreSQL, as a cluster does.
#[tokio::test]
async fn the_login_page_says_it_lost_the_server_and_shows_a_fresh_code_when_it_is_back() -> Result<()> {
    const LOST: &str = "Lost the connection to the server";
    let db = sesame_tests::PgDatabase::create()?;
    let redis = sesame_tests::Redis::start()?;
    let options =
        ServerOptions { database_url: Some(db.url.clone()), redis_url: Some(redis.url()), ..ServerOptions::default() };
    let (server, _service, chrome, first) = login_page("lost-server", options).await?;
    mark_page(&chrome).await?;
    let qr_hidden = || chrome.js("return document.getElementById('qr').hidden;");
    ensure!(qr_hidden().await? == Value::Bool(false), "the code shows while the server answers");

    let back = tokio::spawn(server.restart_after(Duration::from_secs(8)));
    let noticed = Instant::now();
    chrome.wait_text("#status", "the page to notice", Duration::from_secs(5), |t| t.starts_with(LOST)).await?;
    ensure!(noticed.elapsed() < Duration::from_secs(5), "noticed after {:?}", noticed.elapsed());
    ensure!(qr_hidden().await? == Value::Bool(true), "the code is hidden while the server is away");
    chrome.save_screenshot("lost-server").await?;

    let _server = back.await??;
    let fresh = chrome
        .wait_text("#token", "a fresh code", Duration::from_secs(20), |t| t.starts_with("sesame1.") && t != first)
        .await?;
    chrome.wait_contains("#status", WAITING).await?;
    ensure!(qr_hidden().await? == Value::Bool(false), "the code shows again");
    ensure!(page_is_marked(&chrome).await?, "the page was reloaded instead of updated in place");
    approve(&Sesame::new(), &["register", &fresh, "--name", "alice", "--yes"])?;
    chrome.wait_contains("#login", SIGNED_IN).await?;
    chrome.close().await
}

/// What a browser does when a tab goes to the background (`hidden`) or
/// comes back.
async fn set_hidden(chrome: &Chrome, hidden: bool) -> Result<()> {
    let script = format!(
        "Object.defineProperty(document, 'hidden', {{ value: {hidden}, configurable: true }}); \
         document.dispatchEvent(new Event('visibilitychange')); return true;"
    );
    chrome.js(&script).await?;
    Ok(())
}

/// Over plain HTTP a login page in a background tab lets its event stream
/// go (a browser keeps six connections to a server, and each open page
/// held one), hides its code, and follows again with a fresh code when it
/// is shown. The server's own gauge of open streams shows the stream go and
/// come back.
#[tokio::test]
async fn a_hidden_login_page_lets_its_stream_go_and_follows_again_when_shown() -> Result<()> {
    let port = sesame_tests::free_port();
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let mut options = ServerOptions::default();
    options.extra_args.extend(["--metrics-listen".to_owned(), format!("127.0.0.1:{port}")]);
    let (_server, _service, chrome, first) = login_page("hidden-tab", options).await?;
    let open_streams = || async {
        Ok::<_, anyhow::Error>(sesame_tests::Scrape::get(&metrics).await?.value("sesame_event_streams_open", &[]))
    };
    let until = |want: f64| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = open_streams().await?;
            if now == want {
                return Ok::<_, anyhow::Error>(());
            }
            ensure!(Instant::now() < deadline, "{now} streams open, not {want}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    until(1.0).await?;
    set_hidden(&chrome, true).await?;
    until(0.0).await?;
    ensure!(chrome.js("return document.getElementById('qr').hidden;").await? == Value::Bool(true), "code hidden");

    set_hidden(&chrome, false).await?;
    until(1.0).await?;
    let fresh = chrome
        .wait_text("#token", "a fresh code", Duration::from_secs(10), |t| t.starts_with("sesame1.") && t != first)
        .await?;
    ensure!(chrome.js("return document.getElementById('qr').hidden;").await? == Value::Bool(false), "code shown");
    approve(&Sesame::new(), &["register", &fresh, "--name", "alice", "--yes"])?;
    chrome.wait_contains("#login", SIGNED_IN).await?;
    chrome.close().await
}

#[tokio::test]
async fn an_expired_challenge_offers_to_start_again_and_the_new_one_works() -> Result<()> {
    let options = ServerOptions { challenge_ttl: Some(3), ..ServerOptions::default() };
    let (_server, _service, chrome, first) = login_page("expired", options).await?;
    mark_page(&chrome).await?;

    chrome.wait_text("#status", "the expiry", Duration::from_secs(15), |t| t == EXPIRED).await?;
    ensure!(page_is_marked(&chrome).await?, "the page was reloaded instead of updated in place");
    let restart = chrome.client.find(Locator::Id("restart")).await?;
    ensure!(restart.is_displayed().await?, "Start again is offered");
    assert_eq!(restart.text().await?, "Start again");
    chrome.save_screenshot("expired").await?;

    restart.click().await?;
    let second = chrome
        .wait_text("#token", "a new token", Duration::from_secs(10), |t| {
            t.starts_with("sesame1.") && base(t) != base(&first)
        })
        .await?;
    chrome.wait_contains("#status", WAITING).await?;
    approve(&Sesame::new(), &["register", &second, "--name", "alice", "--yes"])?;
    chrome.wait_contains("#login", SIGNED_IN).await?;
    ensure!(page_is_marked(&chrome).await?, "starting again did not reload the page");
    chrome.close().await
}

#[tokio::test]
async fn the_token_and_its_qr_code_rotate() -> Result<()> {
    let options = ServerOptions { rotation: Some(1), ..ServerOptions::default() };
    let (server, service, chrome, _) = login_page("rotation", options).await?;

    let (first, first_qr) = token_and_qr(&chrome).await?;
    assert_eq!(first_qr, format!("{}/app#{first}", server.origin), "the QR code links the token shown beside it");
    chrome.wait_text("#token", "the next token", Duration::from_secs(10), |t| t != first).await?;
    let (second, second_qr) = token_and_qr(&chrome).await?;
    assert_eq!(second_qr, format!("{}/app#{second}", server.origin), "the redrawn QR code links the new token");

    assert_ne!(second_qr, first_qr, "the QR code changed");
    assert_eq!(base(&second), base(&first), "same challenge, new code");
    let (a, b) = (verify_token(&server, &service, &first).await?, verify_token(&server, &service, &second).await?);
    ensure!(b.step() > a.step(), "the step moves forward: {} then {}", a.step(), b.step());

    // A rotated code still signs in.
    approve(&Sesame::new(), &["register", &second_qr, "--name", "alice", "--yes"])?;
    chrome.wait_contains("#login", SIGNED_IN).await?;
    chrome.close().await
}

#[tokio::test]
async fn the_admin_page_creates_a_service_whose_login_page_works() -> Result<()> {
    let server = Server::start().await?;
    let chrome = Chrome::start("admin").await?;
    chrome.client.goto(&server.url("/admin")).await?;

    chrome.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id("token")).await?;
    chrome.client.find(Locator::Id("token")).await?.send_keys(ADMIN_TOKEN).await?;
    chrome.click("form[action='/admin/signin'] button[type=submit]").await?;
    chrome.wait_contains("h1", "Services").await?;

    chrome.client.find(Locator::Id("name")).await?.send_keys("Bakery").await?;
    chrome.click("form[action='/admin/services'] button[type=submit]").await?;
    let link = "//tr[td/a[normalize-space()='Bakery']]/td[3]/a";
    let link = chrome.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::XPath(link)).await?;
    chrome.save_screenshot("admin").await?;

    let listed: Vec<Service> = server
        .admin()
        .request(reqwest::Method::GET, "/admin/api/services")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let [bakery] = listed.as_slice() else { bail!("expected one service, got {listed:?}") };
    assert_eq!(bakery.name, "Bakery");
    assert_eq!(link.text().await?, bakery.login_url);

    link.click().await?;
    chrome.wait_contains("#service-name", "Bakery").await?;
    let (shown, scanned) = token_and_qr(&chrome).await?;
    assert_eq!(scanned, format!("{}/app#{shown}", server.origin), "the QR code links the token shown beside it");
    verify_token(&server, bakery, &scanned).await?;
    chrome.close().await
}

/// The whole life of an admin authenticator as an admin lives it: add it
/// from the admin page, compare the code the page shows with the one the
/// authenticator printed, confirm, and sign in with it. The waiting pages
/// follow the challenge live; nobody presses Continue.
#[tokio::test]
async fn an_admin_confirms_a_new_authenticator_by_its_code_then_signs_in_with_it() -> Result<()> {
    let server = Server::start().await?;
    let chrome = Chrome::start("admin-authenticator").await?;
    chrome.client.goto(&server.url("/admin")).await?;
    chrome.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id("token")).await?;
    chrome.client.find(Locator::Id("token")).await?.send_keys(ADMIN_TOKEN).await?;
    chrome.click("form[action='/admin/signin'] button[type=submit]").await?;
    chrome.wait_contains("h1", "Services").await?;

    chrome.click("form[action='/admin/authenticators'] button").await?;
    let token = shown_token(&chrome).await?;
    let sesame = Sesame::new();
    let out = sesame.run(&["--json", "register", &token, "--name", "laptop", "--yes"]);
    ensure!(out.status.success(), "sesame register failed: {}", stderr(&out));
    let printed: Value = serde_json::from_str(stdout(&out).trim())?;
    assert_eq!(printed["key_state"], "pending");
    let digits = printed["confirmation_code"].as_str().context("a confirmation code")?.to_owned();

    // The page moves on by itself and shows the same code.
    let shown = chrome
        .wait_text("#confirmation-code", "the confirmation code", Duration::from_secs(10), |t| !t.is_empty())
        .await?;
    assert_eq!(shown.replace(' ', ""), digits);
    // Before confirmation the key signs nobody in.
    let early = sesame.run(&["login", &admin_sign_in_token(&server).await?, "--yes"]);
    ensure!(!early.status.success(), "a pending key must not sign in");
    assert!(stderr(&early).contains("waits for confirmation"), "{}", stderr(&early));

    chrome.click("form[action$='/confirm'] button").await?;
    chrome.wait_contains(".status", "Authenticator confirmed").await?;
    chrome.click("form[action='/admin/signout'] button").await?;

    chrome.click("form[action='/admin/sesame'] button").await?;
    let token = shown_token(&chrome).await?;
    approve(&sesame, &["login", &token, "--yes"])?;
    chrome.wait_contains("h1", "Services").await?;
    chrome.wait_contains("#sessions", "authenticator laptop (this browser)").await?;
    chrome.close().await
}

/// Starts an admin sign-in through the sign-in form as another browser
/// would, and returns the token it was shown.
async fn admin_sign_in_token(server: &Server) -> Result<String> {
    let browser = reqwest::Client::builder().cookie_store(true).build()?;
    let form = browser.get(server.url("/admin")).send().await?.text().await?;
    let csrf = hidden_field(&form, "csrf")?;
    let page = browser.post(server.url("/admin/sesame")).form(&[("csrf", csrf)]).send().await?.text().await?;
    let start = page.find(r#"id="token">"#).context("a token on the waiting page")? + r#"id="token">"#.len();
    Ok(page[start..].split('<').next().context("token text")?.to_owned())
}

fn hidden_field(html: &str, name: &str) -> Result<String> {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker).with_context(|| format!("no {name} field"))? + marker.len();
    Ok(html[start..].split('"').next().context("closing quote")?.to_owned())
}
