//! Sesame deployed as docs/OPERATIONS.md says: its nginx configuration, taken
//! from the document itself, with TLS from a CA made by the test and HTTP/2
//! towards the browser, in front of two instances on PostgreSQL and Redis.
//! Headless Chromium waits on the login page over `https://`, and the real
//! `sesame` signs it in, trusting the CA as a user would. Certificates that
//! do not verify are refused with one line that says why.

use std::{ffi::OsStr, path::Path, time::Duration};

use anyhow::{ensure, Context as _};
use serde_json::Value;
use sesame_tests::{
    eventually, free_port,
    proxy::{documented_nginx_config, Leaf, Nginx, TestCa, Validity},
    stderr, Browser, Chrome, PgDatabase, Redis, Result, Server, ServerOptions, Service, Sesame,
};

/// The public host name. A name, not an address, so that the certificate
/// names it as a real one would; `localhost` because both Chromium and the
/// system resolver find it without help.
const HOST: &str = "localhost";

const PATIENCE: Duration = Duration::from_secs(15);

/// The documented configuration, pointed at this test's instances,
/// certificate and port.
fn nginx_config(port: u16, upstreams: [&Server; 2], leaf: &Leaf) -> Result<String> {
    let [a, b] = upstreams.map(|s| format!("127.0.0.1:{}", s.port));
    let listen = format!("listen 127.0.0.1:{port} ssl");
    let server_name = format!("server_name {HOST};");
    let (cert, key) = (leaf.cert.display().to_string(), leaf.key.display().to_string());
    documented_nginx_config(&[
        ("10.0.0.11:8080", &a),
        ("10.0.0.12:8080", &b),
        ("listen 443 ssl", &listen),
        ("server_name login.example.com;", &server_name),
        ("/etc/ssl/sesame/fullchain.pem", &cert),
        ("/etc/ssl/sesame/privkey.pem", &key),
    ])
}

/// Two instances on one PostgreSQL database and one Redis, behind nginx.
struct Deployment {
    // Declared first, so that nginx and the instances stop before the
    // database is dropped.
    _nginx: Nginx,
    a: Server,
    b: Server,
    _redis: Redis,
    _db: PgDatabase,
    ca: TestCa,
    leaf: Leaf,
    origin: String,
    service: Service,
}

impl Deployment {
    async fn start() -> Result<Self> {
        let ca = TestCa::new("Example Corp Internal CA")?;
        let leaf = ca.issue("login", HOST, Validity::Current)?;
        let port = free_port();
        let origin = format!("https://{HOST}:{port}");
        let db = PgDatabase::create()?;
        let redis = Redis::start()?;
        let options = ServerOptions {
            public_url: Some(origin.clone()),
            database_url: Some(db.url.clone()),
            redis_url: Some(redis.url()),
            rotation: Some(1),
            extra_args: vec!["--trusted-proxy".into(), "127.0.0.1".into()],
            ..ServerOptions::default()
        };
        let a = Server::start_with(options.clone()).await?;
        let b = Server::start_with(options).await?;
        let nginx = Nginx::start(&nginx_config(port, [&a, &b], &leaf)?, port)?;
        let service = a.create_service("Intranet").await?;
        Ok(Self { _nginx: nginx, a, b, _redis: redis, _db: db, ca, leaf, origin, service })
    }

    /// A browser-like client on the public origin that trusts the test's CA
    /// and nothing else.
    fn https_browser(&self) -> Result<Browser> {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(self.ca.pem_file())?)?;
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .cookie_store(true)
            .user_agent("Mozilla/5.0 (X11; Linux x86_64) SesameTestBrowser/1.0")
            .build()?;
        Ok(Browser::with_client(client, &self.origin))
    }
}

/// `SSL_CERT_FILE=path`, as the environment of a `sesame` run.
fn cert_file(path: &Path) -> [(&'static str, &OsStr); 1] {
    [("SSL_CERT_FILE", path.as_os_str())]
}

/// Every cookie the browser holds for the origin is out of reach of
/// scripts, never sent over plain HTTP, and `__Host-` prefixed, so that no
/// sibling host or plain-HTTP page could have planted it. After the sign-in
/// the spent binding cookie is gone and the session cookie is there.
async fn assert_cookies_are_secure(chrome: &Chrome) -> Result<()> {
    // Chromium may store the session cookie a moment after the page has
    // shown the answer that set it.
    let cookies = eventually(PATIENCE, || async {
        let cookies = chrome.client.get_all_cookies().await.ok()?;
        cookies.iter().any(|c| c.name().starts_with("__Host-sesame_session_")).then_some(cookies)
    })
    .await
    .context("expected the session cookie")?;
    for cookie in &cookies {
        let name = cookie.name();
        ensure!(cookie.secure() == Some(true), "cookie {name} is not Secure: {cookie:?}");
        ensure!(cookie.http_only() == Some(true), "cookie {name} is not HttpOnly: {cookie:?}");
        ensure!(name.starts_with("__Host-"), "cookie {name} lacks the __Host- prefix: {cookie:?}");
        ensure!(!name.starts_with("__Host-sesame_browser_"), "the spent binding cookie {name} is still there");
    }
    Ok(())
}

#[tokio::test]
async fn the_documented_nginx_setup_signs_in_a_browser_over_https_and_http2() -> Result<()> {
    let deployment = Deployment::start().await?;
    // Chromium trusts the served certificate by its key, which works the
    // same in headless mode on every machine; the authenticator trusts the
    // CA file, as a user would be told to.
    let trust = format!("--ignore-certificate-errors-spki-list={}", deployment.leaf.spki_sha256);
    let chrome = Chrome::start_with("tls-deployment", &[trust]).await?;
    chrome.client.goto(&deployment.service.login_url).await?;
    ensure!(deployment.service.login_url.starts_with(&deployment.origin), "{}", deployment.service.login_url);
    let token = chrome.wait_text("#token", "a token", PATIENCE, |t| t.starts_with("sesame1.")).await?;
    let protocol = chrome.js("return performance.getEntriesByType('navigation')[0].nextHopProtocol;").await?;
    assert_eq!(protocol, "h2", "the page came over HTTP/2");

    let sesame = Sesame::new();
    let out =
        sesame.run_with_env(&["register", &token, "--name", "alice", "--yes"], &cert_file(&deployment.ca.pem_file()));
    ensure!(out.status.success(), "sesame register failed: {}", stderr(&out));
    chrome.wait_contains("#login", "Signed in as alice").await?;
    assert_cookies_are_secure(&chrome).await?;
    chrome.save_screenshot("signed-in").await?;
    chrome.close().await?;

    // nginx spreads requests over both instances, round robin (or all to
    // one for a while, if it has just seen the other fail).
    let browser = deployment.https_browser()?;
    let served = |server: &Server| server.log().contains("\"/.well-known/sesame\"");
    let both = eventually(PATIENCE, || {
        let browser = browser.clone();
        let done = served(&deployment.a) && served(&deployment.b);
        async move {
            let _ = browser.get_text("/.well-known/sesame").await;
            done.then_some(())
        }
    })
    .await;
    ensure!(both.is_ok(), "one instance served nothing through nginx:\n{}\n{}", deployment.a.log(), deployment.b.log());
    Ok(())
}

#[tokio::test]
async fn events_pass_nginx_unbuffered_and_the_ca_is_trusted_from_the_flag_or_ssl_cert_dir() -> Result<()> {
    let deployment = Deployment::start().await?;
    let browser = deployment.https_browser()?;
    let challenge = browser.start_challenge(&deployment.service.id).await?;
    let mut events = browser.events(&challenge, None).await?;
    // Each event arrives while the stream stays open: a buffering proxy
    // would hold these few hundred bytes until the challenge ended.
    let first = events.next_named("status", PATIENCE).await?;
    assert_eq!(first.json()["status"], "pending");
    let first_code = events.next_named("token", PATIENCE).await?;
    let next_code = events.next_named("token", PATIENCE).await?;
    assert_ne!(first_code.data, next_code.data, "the code rotated while the stream was open");

    // SSL_CERT_FILE replaces the system's store (here with a CA that signed
    // nothing of this deployment); --ca-file adds the company's CA.
    let stranger = TestCa::new("Someone Else's CA")?;
    let sesame = Sesame::new();
    let ca_file = deployment.ca.pem_file();
    let args = ["--ca-file", ca_file.to_str().context("a UTF-8 path")?, "register", &challenge.token];
    let out = sesame.run_with_env(&[&args[..], &["--name", "bob", "--yes"]].concat(), &cert_file(&stranger.pem_file()));
    ensure!(out.status.success(), "sesame register with --ca-file failed: {}", stderr(&out));
    let mut done = events.next_named("status", PATIENCE).await?.json();
    // The authenticator's context request announces itself first ("opened").
    while done["status"] == "pending" {
        done = events.next_named("status", PATIENCE).await?.json();
    }
    assert_eq!((done["status"].as_str(), done["account"].as_str()), (Some("completed"), Some("bob")), "{done}");

    // SSL_CERT_DIR names a folder of CA certificates, as for OpenSSL.
    let folder = tempfile::tempdir()?;
    std::fs::copy(deployment.ca.pem_file(), folder.path().join("company-ca.pem"))?;
    let challenge = browser.start_challenge(&deployment.service.id).await?;
    let args = ["login", &challenge.token, "--account", "bob", "--yes"];
    let out = sesame.run_with_env(&args, &[("SSL_CERT_DIR", folder.path().as_os_str())]);
    ensure!(out.status.success(), "sesame login with SSL_CERT_DIR failed: {}", stderr(&out));
    assert_eq!(browser.status(&challenge).await?["account"], "bob");
    Ok(())
}

#[tokio::test]
async fn certificates_that_do_not_verify_are_each_refused_with_one_line() -> Result<()> {
    let ca = TestCa::new("Example Corp Internal CA")?;
    let stranger = TestCa::new("Someone Else's CA")?;
    let port = free_port();
    let origin = format!("https://{HOST}:{port}");
    let server =
        Server::start_with(ServerOptions { public_url: Some(origin.clone()), ..ServerOptions::default() }).await?;
    let service = server.create_service("Intranet").await?;
    let cases = [
        (stranger.issue("stranger", HOST, Validity::Current)?, "its certificate is issued by an authority this computer does not trust (add your CA with --ca-file or to the system's trust store)"),
        (ca.issue("expired", HOST, Validity::Expired)?, "its certificate has expired"),
        (ca.issue("other-name", "login.other.test", Validity::Current)?, "its certificate is for another name"),
    ];
    for (leaf, reason) in cases {
        let nginx = Nginx::start(&nginx_config(port, [&server, &server], &leaf)?, port)?;
        // The token comes straight from the instance; `sesame` meets the
        // certificate when it fetches the server's identity at the origin.
        let token = Browser::new(&server).start_challenge(&service.id).await?.token;
        let sesame = Sesame::new();
        let out = sesame.run_with_env(&["register", &token, "--name", "alice", "--yes"], &cert_file(&ca.pem_file()));
        assert!(!out.status.success(), "{reason}: sesame accepted the certificate");
        assert_eq!(stderr(&out), format!("sesame: refusing {origin}: {reason}\n"));
        let accounts = sesame.run(&["accounts", "--json"]);
        assert_eq!(serde_json::from_slice::<Value>(&accounts.stdout)?, serde_json::json!([]), "nothing was kept");
        drop(nginx);
    }
    Ok(())
}

#[tokio::test]
async fn a_ca_file_that_is_missing_or_not_pem_is_one_clear_line() -> Result<()> {
    let sesame = Sesame::new();
    let missing = sesame.dir.path().join("missing.pem");
    let not_pem = sesame.dir.path().join("notes.txt");
    std::fs::write(&not_pem, "not a certificate\n")?;
    let damaged = sesame.dir.path().join("damaged.pem");
    std::fs::write(&damaged, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")?;
    let cases = [
        (&missing, "No such file or directory (os error 2)"),
        (&not_pem, "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
        (&damaged, "a certificate in it is not valid"),
    ];
    for (path, reason) in cases {
        let expected = format!("sesame: cannot use the CA file {}: {reason}", path.display());
        let by_flag = sesame.run(&["--ca-file", path.to_str().context("a UTF-8 path")?, "accounts"]);
        let by_env = sesame.run_with_env(&["accounts"], &[("SESAME_CA_FILE", path.as_os_str())]);
        for out in [by_flag, by_env] {
            assert!(!out.status.success(), "{reason}");
            let text = stderr(&out);
            assert!(text.starts_with(&expected) && text.lines().count() == 1, "{text:?} is not {expected:?}");
        }
    }
    Ok(())
}
