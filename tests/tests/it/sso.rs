//! Single sign-on across the applications of one service (docs/OIDC.md §2):
//! two applications made through the admin API, each a relying party of its
//! own built on the `openidconnect` crate, one headless Chromium, and the
//! real `sesame` authenticator approving once. The server's own metrics tell
//! whether a login page was shown or an authenticator answered.

use anyhow::{ensure, Context as _};
use openidconnect::core::CoreJwsSigningAlgorithm;
use serde_json::{json, Value};
use sesame_tests::{
    oidc::OidcClient,
    rp::{Outcome, RelyingParty, RpListener, RpSettings},
    Chrome, Result, Scrape, Server, ServerOptions, Service, Sesame,
};

use crate::oidc::{approve, nth_outcome, signed_in, PATIENCE};

const SERVICE: &str = "Lighthouse";
const LOGBOOK: &str = "Logbook";
const CHART_ROOM: &str = "Chart room";

/// An application of `service` named `name`, made through the admin API as
/// an operator does, with `more` settings beside its URIs, and a relying
/// party configured with its client id and secret that asks for
/// `openid profile email groups`.
async fn application(
    server: &Server,
    service: &Service,
    name: &str,
    more: Value,
) -> Result<(OidcClient, RelyingParty)> {
    let listener = RpListener::bind()?;
    let mut settings = json!({
        "name": name,
        "redirect_uris": [listener.redirect_uri()],
        "post_logout_redirect_uris": [listener.post_logout_redirect_uri()],
        "public": false,
    });
    for (key, value) in more.as_object().context("more settings are an object")? {
        settings[key] = value.clone();
    }
    let client = server.admin().create_application(&service.id, &settings).await?;
    ensure!(client.client_secret.is_some(), "a confidential application gets its secret when it is made");
    let settings = RpSettings {
        issuer: server.origin.clone(),
        client: client.clone(),
        alg: CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        secret_in_body: false,
        scopes: vec!["profile".into(), "email".into(), "groups".into()],
    };
    Ok((client, RelyingParty::start(listener, settings).await?))
}

/// What the server counted of the browser's trips and the authenticator's
/// work, from its metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Trips {
    /// Login pages the authorization endpoint showed (its `2xx` answers).
    login_pages: f64,
    /// Browsers it sent straight back (its `3xx` answers).
    sent_back: f64,
    /// Challenges issued, for any purpose.
    challenges: f64,
    /// Answers from authenticators, of any kind and outcome.
    answers: f64,
}

async fn trips(metrics: &str) -> Result<Trips> {
    let scrape = Scrape::get(metrics).await?;
    let authorize = |status| {
        scrape
            .value("sesame_http_requests_total", &[("route", "/oidc/authorize"), ("method", "GET"), ("status", status)])
    };
    Ok(Trips {
        login_pages: authorize("2xx"),
        sent_back: authorize("3xx"),
        challenges: scrape.value("sesame_challenges_created_total", &[]),
        answers: scrape.value("sesame_answers_total", &[]),
    })
}

/// Opens `url` (a relying party's sign-in) and returns the token of the
/// provider's login page, after checking that it is that page and that it
/// names the service and `application`.
async fn login_page(chrome: &Chrome, url: &str, server: &Server, application: &str) -> Result<String> {
    chrome.client.goto(url).await?;
    let token = chrome.wait_text("#token", "a token", PATIENCE, |t| t.starts_with("sesame1.")).await?;
    let at = chrome.client.current_url().await?;
    ensure!(
        at.as_str().starts_with(&format!("{}/oidc/authorize?", server.origin)),
        "the browser is not on the provider's authorization endpoint: {at}"
    );
    chrome.wait_contains("#service-name", SERVICE).await?;
    let shown = chrome.wait_text("#application-name", application, PATIENCE, |t| t == application).await?;
    assert_eq!(shown, application, "the login page names the application");
    Ok(token)
}

/// The page the browser is on is `rp`'s, at `path`.
async fn on_page_of(chrome: &Chrome, rp: &RelyingParty, path: &str) -> Result<()> {
    let at = chrome.client.current_url().await?;
    ensure!(at.as_str().starts_with(&format!("{}{path}", rp.base)), "the browser is at {at}, not {}{path}", rp.base);
    Ok(())
}

/// One person, one key, one scan: they are signed in to two applications of
/// the same service, and the second learns their name and email, in a real
/// browser with real relying parties. Logging out at one application ends
/// the service's session, and the other asks for a sign-in again.
#[tokio::test]
async fn one_scan_signs_a_person_in_to_two_applications_of_a_service_and_a_logout_at_one_ends_both() -> Result<()> {
    let port = sesame_tests::free_port();
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let mut options = ServerOptions::default();
    options.extra_args.extend(["--metrics-listen".to_owned(), format!("127.0.0.1:{port}")]);
    let server = Server::start_with(options).await?;
    let service = server.create_service(SERVICE).await?;
    // The service's own applications: nobody is asked to approve them.
    let own = json!({ "ask_consent": false });
    let (logbook_client, logbook) = application(&server, &service, LOGBOOK, own.clone()).await?;
    let (chart_client, chart_room) = application(&server, &service, CHART_ROOM, own).await?;
    assert_ne!(logbook_client.client_id, chart_client.client_id, "each application is a client of its own");
    assert_ne!(logbook_client.client_secret, chart_client.client_secret, "with a secret of its own");
    let chrome = Chrome::start("sso").await?;
    let sesame = Sesame::new();

    // The Logbook sends the browser to Sesame, whose login page names it;
    // the person registers with the authenticator, and is back signed in.
    let token = login_page(&chrome, &logbook.login_url(), &server, LOGBOOK).await?;
    chrome.save_screenshot("logbook-login-page").await?;
    approve(&sesame, &["register", &token, "--name", "alice", "--yes"])?;
    let first = signed_in(nth_outcome(&logbook, 1).await?)?;
    let shown = chrome.wait_text("#sub", "the subject", PATIENCE, |t| !t.is_empty()).await?;
    assert_eq!(shown, first.sub);
    on_page_of(&chrome, &logbook, "/callback").await?;
    assert_eq!(first.preferred_username.as_deref(), Some("alice"));
    assert_eq!(first.userinfo_sub, first.sub);
    assert_eq!(first.granted_scope.as_deref(), Some("openid profile email groups"));
    // The account has no profile yet: the claims are left out, not null.
    assert_eq!((&first.name, &first.email, first.email_verified), (&None, &None, None));
    assert_eq!(first.groups, Some(Vec::new()), "asked for, the groups claim is there, empty: in no group yet");
    assert_eq!((&first.userinfo_name, &first.userinfo_email), (&None, &None));
    let after_scan = trips(&metrics).await?;
    ensure!(after_scan.login_pages == 1.0 && after_scan.answers >= 1.0, "one login page, answered: {after_scan:?}");

    // The operator gives the account a name and an address.
    let profile = json!({ "display_name": "Alice Liddell", "email": "alice@example.com" });
    let set = server.admin().set_profile(&service.id, "alice", &profile).await?;
    assert_eq!(set["email_verified"], json!(true), "an address an admin sets is verified: {set}");
    // And puts it in a group, which the applications map roles from.
    server.admin().create_group(&service.id, "crew").await?;
    server.admin().set_groups(&service.id, "alice", &["crew"]).await?;

    // The Chart room: the same browser comes straight back signed in, with
    // no login page and nothing asked of the authenticator.
    chrome.client.goto(&chart_room.login_url()).await?;
    let second = signed_in(nth_outcome(&chart_room, 1).await?)?;
    let shown = chrome.wait_text("#sub", "the subject", PATIENCE, |t| !t.is_empty()).await?;
    assert_eq!(shown, first.sub, "the Chart room shows the same person");
    on_page_of(&chrome, &chart_room, "/callback").await?;
    assert_eq!(chrome.visible_text("#name").await.as_deref(), Some("Alice Liddell"));
    assert_eq!(chrome.visible_text("#email").await.as_deref(), Some("alice@example.com"));
    chrome.save_screenshot("chart-room-signed-in").await?;
    let after_sso = trips(&metrics).await?;
    assert_eq!(
        after_sso,
        Trips { sent_back: after_scan.sent_back + 1.0, ..after_scan },
        "sent straight back: no login page, no challenge, no answer"
    );
    assert_eq!(second.sub, first.sub, "one person, one subject, for both applications");
    assert_eq!(second.auth_time, first.auth_time, "the sign-in is the one scan's");
    assert_eq!(second.amr, ["swk"]);
    assert_eq!(second.preferred_username.as_deref(), Some("alice"));
    assert_eq!(second.granted_scope.as_deref(), Some("openid profile email groups"));
    assert_eq!(second.name.as_deref(), Some("Alice Liddell"));
    assert_eq!(second.email.as_deref(), Some("alice@example.com"));
    assert_eq!(second.email_verified, Some(true));
    assert_eq!(second.userinfo_sub, first.sub);
    assert_eq!(second.userinfo_name.as_deref(), Some("Alice Liddell"));
    assert_eq!(second.userinfo_email.as_deref(), Some("alice@example.com"));
    assert_eq!(second.userinfo_email_verified, Some(true));
    assert_eq!(second.groups.as_deref(), Some(&["crew".to_owned()][..]), "the ID token names the groups");
    assert_eq!(second.userinfo_groups.as_deref(), Some(&["crew".to_owned()][..]));

    // The person signs out at the Chart room, which sends the browser to
    // Sesame's end_session_endpoint with its ID token as the hint, and is
    // sent back.
    chrome.client.goto(&chart_room.logout_url()).await?;
    chrome.wait_contains("#signed-out", "Signed out").await?;
    on_page_of(&chrome, &chart_room, "/signed-out").await?;
    assert_eq!(chart_room.signed_out(), 1, "the logout came back with its state");

    // The service's session is over: the Logbook's next sign-in shows the
    // login page again, and a login with the key gives the same subject.
    let token = login_page(&chrome, &logbook.login_url(), &server, LOGBOOK)
        .await
        .context("after the logout, the Logbook's sign-in must ask again")?;
    let after_logout = trips(&metrics).await?;
    assert_eq!(after_logout.login_pages, after_sso.login_pages + 1.0, "{after_logout:?}");
    assert_eq!(after_logout.sent_back, after_sso.sent_back, "nobody was sent straight back: {after_logout:?}");
    approve(&sesame, &["login", &token, "--account", "alice", "--yes"])?;
    let third = signed_in(nth_outcome(&logbook, 2).await?)?;
    on_page_of(&chrome, &logbook, "/callback").await?;
    assert_eq!(third.sub, first.sub);
    assert_eq!(third.name.as_deref(), Some("Alice Liddell"), "the Logbook now learns the name too");
    ensure!(third.auth_time >= first.auth_time, "auth_time is the new sign-in's");
    ensure!(trips(&metrics).await?.answers > after_sso.answers, "the authenticator answered again");
    assert_eq!(logbook.outcomes().len(), 2);
    assert_eq!(chart_room.outcomes().len(), 1);
    chrome.close().await
}

/// An application limited to one group of the service, made as a new
/// application is, so that it also asks each person first. Someone outside
/// the group signs in, is told on Sesame's page why the application turns
/// them away, and the application hears `access_denied`. Once the admin
/// puts them in the group, the same browser, still signed in to the
/// service, is asked to approve what the application will learn, and is
/// then let in; the approval is asked once.
#[tokio::test]
async fn a_restricted_application_turns_a_non_member_away_and_admits_them_once_the_admin_adds_them() -> Result<()> {
    let server = Server::start().await?;
    let service = server.create_service(SERVICE).await?;
    server.admin().create_group(&service.id, "officers").await?;
    let (client, chart_room) =
        application(&server, &service, CHART_ROOM, json!({ "allowed_groups": ["officers"] })).await?;
    assert!(client.ask_consent, "a new application asks for consent unless told otherwise");
    let chrome = Chrome::start("sso-restricted").await?;
    let sesame = Sesame::new();

    let token = login_page(&chrome, &chart_room.login_url(), &server, CHART_ROOM).await?;
    approve(&sesame, &["register", &token, "--name", "bob", "--yes"])?;
    let why = chrome.wait_contains("#denied", "admits only members of").await?;
    ensure!(why.contains("as bob") && why.contains("officers"), "the page says who and which groups: {why}");
    chrome.save_screenshot("restricted-turned-away").await?;
    chrome.click("#denied-continue-button").await?;
    assert_eq!(nth_outcome(&chart_room, 1).await?, Outcome::Refused { error: "access_denied".into() });
    chrome.wait_contains("#error", "access_denied").await?;

    server.admin().set_groups(&service.id, "bob", &["officers"]).await?;
    chrome.client.goto(&chart_room.login_url()).await?;
    let learns = chrome.wait_contains("#consent-claims", "the groups you belong to").await?;
    ensure!(learns.contains("your email address"), "the page lists what each scope releases: {learns}");
    chrome.save_screenshot("restricted-consent").await?;
    chrome.click("#consent-allow").await?;
    let admitted = signed_in(nth_outcome(&chart_room, 2).await?)?;
    on_page_of(&chrome, &chart_room, "/callback").await?;
    assert_eq!(admitted.preferred_username.as_deref(), Some("bob"));
    assert_eq!(admitted.groups.as_deref(), Some(&["officers".to_owned()][..]));

    // Approved once: the next sign-in comes straight back.
    chrome.client.goto(&chart_room.login_url()).await?;
    let again = signed_in(nth_outcome(&chart_room, 3).await?)?;
    on_page_of(&chrome, &chart_room, "/callback").await?;
    assert_eq!((again.sub, again.auth_time), (admitted.sub, admitted.auth_time), "the same sign-in");
    chrome.close().await
}
