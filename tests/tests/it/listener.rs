//! TLS and HTTP/2 on Sesame's own listener (`--tls-cert`, `--tls-key`):
//! certificates that cannot serve stop the start with one line; renewed
//! files, and `SIGHUP`, bring the new certificate without a restart, while
//! broken ones leave the old one serving; ALPN offers HTTP/2, over which
//! Chromium keeps ten login pages waiting and still opens the admin page.

use std::{ffi::OsStr, time::Duration};

use anyhow::{bail, ensure, Context as _};
use fantoccini::Locator;
use sesame_tests::{
    eventually, free_port,
    listener::{certificate_der, get_over_http2, handshake, replace, ListenerCa, HOST},
    server_start_failure, Browser, Chrome, Result, Scrape, Server, ServerOptions, ADMIN_TOKEN,
};

/// Long enough for any reload or page to happen on a loaded machine; only a
/// stall runs into it.
const PATIENCE: Duration = Duration::from_secs(30);

/// Both protocols, as a browser offers them.
const H2_AND_H1: &[&str] = &["h2", "http/1.1"];

/// A server whose listener presents `ca`'s files, looking at them every
/// `check_interval` seconds (0: only on SIGHUP).
async fn tls_server(ca: &ListenerCa, check_interval: u64) -> Result<Server> {
    Server::start_with(ServerOptions {
        tls: Some(ca.files.clone()),
        extra_args: vec!["--tls-check-interval".into(), check_interval.to_string()],
        ..ServerOptions::default()
    })
    .await
}

/// The certificate a new connection to `server` is shown.
async fn served(server: &Server, ca: &ListenerCa) -> Result<Vec<u8>> {
    Ok(handshake(server.port, &ca.files.ca, H2_AND_H1).await?.certificate)
}

/// Makes `change` to the files and waits until the server has refused to
/// reload them, once more than before, for a reason that says `reason`.
/// Returns its log.
async fn refused(server: &Server, reason: &str, change: impl FnOnce() -> Result<()>) -> Result<String> {
    let count = || {
        let log = server.log();
        log.lines()
            .filter(|l| l.contains("cannot reload the TLS certificate; the previous one keeps serving"))
            .filter(|l| l.contains(reason))
            .count()
    };
    let before = count();
    change()?;
    eventually(PATIENCE, || async { (count() > before).then_some(()) })
        .await
        .with_context(|| format!("no reload was refused for {reason:?}:\n{}", server.log()))?;
    Ok(server.log())
}

#[tokio::test]
async fn a_certificate_that_cannot_serve_stops_the_start_with_one_line() -> Result<()> {
    let ca = ListenerCa::new()?;
    let (cert, key) = (&ca.files.cert, &ca.files.key);
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("notes.txt");
    std::fs::write(&not_pem, "not a certificate\n")?;
    let damaged = dir.path().join("damaged.pem");
    std::fs::write(&damaged, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")?;
    let other = ca.issue("other")?;
    let show = |path: &std::path::Path| path.display().to_string();
    let cases: Vec<(Vec<&OsStr>, String)> = vec![
        (
            vec!["--tls-cert".as_ref(), missing.as_ref(), "--tls-key".as_ref(), key.as_ref()],
            format!("cannot read --tls-cert {}: No such file or directory (os error 2)", show(&missing)),
        ),
        (
            vec!["--tls-cert".as_ref(), cert.as_ref(), "--tls-key".as_ref(), missing.as_ref()],
            format!("cannot read --tls-key {}: No such file or directory (os error 2)", show(&missing)),
        ),
        (
            vec!["--tls-cert".as_ref(), not_pem.as_ref(), "--tls-key".as_ref(), key.as_ref()],
            format!("--tls-cert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", show(&not_pem)),
        ),
        (
            vec!["--tls-cert".as_ref(), cert.as_ref(), "--tls-key".as_ref(), not_pem.as_ref()],
            format!("--tls-key {} holds no PEM private key (-----BEGIN PRIVATE KEY-----)", show(&not_pem)),
        ),
        (
            vec!["--tls-cert".as_ref(), cert.as_ref(), "--tls-key".as_ref(), other.key.as_ref()],
            format!("--tls-key {} is not the key of the certificate in --tls-cert {}", show(&other.key), show(cert)),
        ),
        (
            vec!["--tls-cert".as_ref(), damaged.as_ref(), "--tls-key".as_ref(), key.as_ref()],
            format!("the first certificate in --tls-cert {} is not valid", show(&damaged)),
        ),
        (vec!["--tls-cert".as_ref(), cert.as_ref()], "--tls-cert needs --tls-key, the file of its private key".into()),
        (vec!["--tls-key".as_ref(), key.as_ref()], "--tls-key needs --tls-cert, the file of its certificate".into()),
    ];
    for (args, expected) in cases {
        let (code, stderr) = server_start_failure(&args)?;
        assert_eq!(code, Some(1), "{expected}: {stderr}");
        let expected = format!("sesame-server: {expected}");
        ensure!(
            stderr.starts_with(&expected) && stderr.lines().count() == 1,
            "{stderr:?} is not the one line {expected:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_listener_speaks_tls_with_http2_through_alpn_and_plain_http_without_it() -> Result<()> {
    let ca = ListenerCa::new()?;
    let server = tls_server(&ca, 5).await?;

    // A browser's offer gets HTTP/2, and a request over it is answered.
    let h2 = handshake(server.port, &ca.files.ca, H2_AND_H1).await?;
    assert_eq!(h2.alpn.as_deref(), Some("h2"));
    assert_eq!(h2.certificate, ca.installed()?, "the listener presents the certificate of --tls-cert");
    assert_eq!(get_over_http2(h2.stream, "/healthz").await?, (200, reqwest::Version::HTTP_2));
    // A client of HTTP/1.1 only still gets it.
    let h1 = handshake(server.port, &ca.files.ca, &["http/1.1"]).await?;
    assert_eq!(h1.alpn.as_deref(), Some("http/1.1"));

    // Without --public-url the origin is https:// and the listen address;
    // the login page is served over HTTPS (HTTP/1.1 here).
    let service = server.create_service("Intranet").await?;
    let origin = format!("https://127.0.0.1:{}", server.port);
    let path =
        service.login_url.strip_prefix(&origin).with_context(|| format!("{} is not on {origin}", service.login_url))?;
    let page = Browser::new(&server).get_text(path).await?;
    ensure!(page.contains("Intranet"), "the login page over HTTPS: {page}");
    // Plain HTTP to the TLS port gets no answer.
    let plain_to_tls = reqwest::get(format!("http://127.0.0.1:{}/healthz", server.port)).await;
    ensure!(plain_to_tls.is_err(), "plain HTTP was answered on the TLS listener: {plain_to_tls:?}");

    // Without the options, the listener speaks plain HTTP/1.1 and no TLS.
    let plain = Server::start().await?;
    let res = reqwest::get(plain.url("/healthz")).await?;
    assert_eq!((res.status().as_u16(), res.version()), (200, reqwest::Version::HTTP_11));
    ensure!(
        handshake(plain.port, &ca.files.ca, H2_AND_H1).await.is_err(),
        "a plain listener completed a TLS handshake"
    );
    Ok(())
}

#[tokio::test]
async fn renewed_files_are_served_without_a_restart_and_broken_ones_leave_the_old_certificate() -> Result<()> {
    let ca = ListenerCa::new()?;
    let server = tls_server(&ca, 1).await?;
    assert_eq!(served(&server, &ca).await?, ca.installed()?);

    // A renewal, as an ACME client writes it.
    let renewed = ca.issue("renewed")?;
    ca.install(&renewed)?;
    let renewed_der = certificate_der(&renewed.cert)?;
    eventually(PATIENCE, || async { (served(&server, &ca).await.ok()? == renewed_der).then_some(()) })
        .await
        .with_context(|| format!("the renewed certificate was never served:\n{}", server.log()))?;
    ensure!(server.log().contains("TLS certificate reloaded"), "{}", server.log());

    // A certificate file that is not PEM.
    refused(&server, "holds no PEM certificate", || replace(&ca.files.cert, b"not a certificate\n")).await?;
    assert_eq!(served(&server, &ca).await?, renewed_der, "the previous certificate keeps serving");

    // A certificate with the key of another one.
    let stranger = ca.issue("stranger")?;
    refused(&server, "is not the key of the certificate in --tls-cert", || {
        replace(&ca.files.key, &std::fs::read(&stranger.key)?)?;
        replace(&ca.files.cert, &std::fs::read(&renewed.cert)?)
    })
    .await?;
    assert_eq!(served(&server, &ca).await?, renewed_der, "the previous certificate keeps serving");

    // A missing file.
    refused(&server, "cannot read --tls-key", || Ok(std::fs::remove_file(&ca.files.key)?)).await?;
    assert_eq!(served(&server, &ca).await?, renewed_der, "the previous certificate keeps serving");
    Ok(())
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_a_broken_one_leaves_the_old_serving() -> Result<()> {
    let ca = ListenerCa::new()?;
    // Files are not looked at by themselves: only SIGHUP reloads.
    let server = tls_server(&ca, 0).await?;
    let first = ca.installed()?;
    let renewed = ca.issue("renewed")?;
    ca.install(&renewed)?;
    assert_eq!(served(&server, &ca).await?, first, "nothing reloads before SIGHUP");

    server.hang_up()?;
    let renewed_der = certificate_der(&renewed.cert)?;
    eventually(PATIENCE, || async { (served(&server, &ca).await.ok()? == renewed_der).then_some(()) })
        .await
        .with_context(|| format!("SIGHUP did not bring the renewed certificate:\n{}", server.log()))?;

    refused(&server, "the first certificate in --tls-cert", || {
        replace(&ca.files.cert, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")?;
        server.hang_up()
    })
    .await?;
    assert_eq!(served(&server, &ca).await?, renewed_der, "the previous certificate keeps serving");
    Ok(())
}

/// The number of event streams open on the server.
async fn open_streams(metrics: &str) -> Result<f64> {
    Ok(Scrape::get(metrics).await?.value("sesame_event_streams_open", &[]))
}

#[tokio::test]
async fn a_browser_keeps_ten_login_pages_open_over_the_tls_listener_and_still_opens_the_admin_page() -> Result<()> {
    let ca = ListenerCa::new()?;
    let port = free_port();
    let metrics_port = free_port();
    let server = Server::start_with(ServerOptions {
        port: Some(port),
        public_url: Some(format!("https://{HOST}:{port}")),
        tls: Some(ca.files.clone()),
        extra_args: vec!["--metrics-listen".into(), format!("127.0.0.1:{metrics_port}")],
        ..ServerOptions::default()
    })
    .await?;
    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    let service = server.create_service("Intranet").await?;
    let trust = format!("--ignore-certificate-errors-spki-list={}", ca.files.spki_sha256);
    let chrome = Chrome::start_with("tls-listener", &[trust]).await?;

    // Ten login pages, each in a window of its own (so that none is a
    // hidden tab), each waiting on its event stream. Over HTTP/1.1 the
    // seventh would wait for one of Chromium's six connections for ever.
    for page in 0..10 {
        if page > 0 {
            let window = chrome.client.new_window(false).await?;
            chrome.client.switch_to_window(window.handle).await?;
        }
        chrome.client.goto(&service.login_url).await?;
        chrome.wait_text("#token", "a token", PATIENCE, |t| t.starts_with("sesame1.")).await?;
    }
    let protocol = chrome.js("return performance.getEntriesByType('navigation')[0].nextHopProtocol;").await?;
    assert_eq!(protocol, "h2", "the login pages came over HTTP/2");
    let ten = eventually(PATIENCE, || async { (open_streams(&metrics).await.ok()? == 10.0).then_some(()) }).await;
    if ten.is_err() {
        bail!("ten event streams did not open; {:?} are", open_streams(&metrics).await);
    }

    // The admin page, and signing in to it, while all ten stay open.
    let window = chrome.client.new_window(false).await?;
    chrome.client.switch_to_window(window.handle).await?;
    chrome.client.goto(&server.url("/admin")).await?;
    chrome.client.wait().at_most(PATIENCE).for_element(Locator::Id("token")).await?;
    chrome.client.find(Locator::Id("token")).await?.send_keys(ADMIN_TOKEN).await?;
    chrome.click("form[action='/admin/signin'] button[type=submit]").await?;
    chrome.wait_text("h1", "the services page", PATIENCE, |t| t.contains("Services")).await?;
    chrome.save_screenshot("admin-beside-ten-login-pages").await?;
    assert_eq!(open_streams(&metrics).await?, 10.0, "the ten login pages kept their streams");
    chrome.close().await
}
