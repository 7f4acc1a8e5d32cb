//! "Log in with Sesame": a relying party built on the `openidconnect` crate
//! signs a person in through a real headless Chromium, the real `sesame`
//! binary approving on the provider's login page; and the provider's
//! published metadata and subjects, checked over plain HTTP.

mod errors;
mod race;

use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use openidconnect::core::CoreJwsSigningAlgorithm;
use serde_json::{json, Value};
use sesame_tests::{
    eventually,
    oidc::{userinfo, AuthRequest, Callback, ClientAuth, OidcBrowser, OidcClient, Pkce, Redemption},
    rp::{Identity, Outcome, RelyingParty, RpListener, RpSettings},
    stderr, Chrome, Result, Server, Service, Sesame,
};

/// Where the HTTP tests' client says it lives. Nothing listens there: those
/// tests follow no redirect, they read it.
const REDIRECT_URI: &str = "https://app.example.test/callback";

pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// A server with one service that is an OIDC client, for tests that speak
/// HTTP only.
struct Provider {
    server: Server,
    service: Service,
    client: OidcClient,
    /// One authenticator for every sign-in of the test.
    sesame: Sesame,
}

impl Provider {
    async fn start() -> Result<Self> {
        Self::on(Server::start().await?).await
    }

    async fn on(server: Server) -> Result<Self> {
        let service = server.create_service("Lighthouse").await?;
        let client = server.admin().enable_oidc(&service.id, &confidential(&[REDIRECT_URI])).await?;
        Ok(Self { server, service, client, sesame: Sesame::new() })
    }

    /// A browser that keeps its cookies and follows no redirect.
    fn browser(&self) -> OidcBrowser {
        OidcBrowser::new(&self.server)
    }

    /// Signs a new account `name` in through the authorization endpoint for
    /// `request`, and returns where the browser was sent.
    async fn register(&self, request: &AuthRequest, name: &str) -> Result<Callback> {
        self.browser().sign_in(request, &self.sesame, &["register", "--name", name, "--yes"]).await
    }

    /// A code for a new account, with the request it answers.
    async fn code(&self, name: &str) -> Result<(String, AuthRequest, Pkce)> {
        let pkce = Pkce::new();
        let request = AuthRequest::new(&self.client, &pkce);
        let callback = self.register(&request, name).await?;
        Ok((callback.code()?.to_owned(), request, pkce))
    }

    /// Redeems `code` with the client's secret in Basic auth.
    async fn redeem(&self, code: &str, pkce: &Pkce) -> Result<sesame_tests::oidc::Answer> {
        Redemption {
            auth: ClientAuth::basic(&self.client)?,
            code,
            redirect_uri: REDIRECT_URI,
            code_verifier: Some(&pkce.verifier),
        }
        .send(&reqwest::Client::new(), &self.server.base)
        .await
    }
}

/// Settings for a confidential client with these redirect URIs.
fn confidential(redirect_uris: &[&str]) -> Value {
    json!({ "redirect_uris": redirect_uris, "post_logout_redirect_uris": [], "public": false })
}

/// A server, a service whose OIDC client signs ID tokens with `alg`, and a
/// relying party registered as that client.
async fn relying_party(alg: &str, public: bool) -> Result<(Server, Service, OidcClient, RelyingParty)> {
    let server = Server::start().await?;
    let service = server.create_service("Lighthouse").await?;
    let listener = RpListener::bind()?;
    let settings = json!({
        "redirect_uris": [listener.redirect_uri()],
        "post_logout_redirect_uris": [format!("{}/", listener.base)],
        "public": public,
        "id_token_signed_response_alg": alg,
    });
    let client = server.admin().enable_oidc(&service.id, &settings).await?;
    assert_eq!(client.id_token_signed_response_alg.as_deref(), Some(alg));
    assert_eq!(client.public, public);
    assert_eq!(client.client_secret.is_none(), public, "a secret exactly for a confidential client");
    let alg = match alg {
        "RS256" => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        "EdDSA" => CoreJwsSigningAlgorithm::EdDsa,
        other => bail!("no such algorithm in these tests: {other}"),
    };
    let settings = RpSettings {
        issuer: server.origin.clone(),
        client: client.clone(),
        alg,
        secret_in_body: false,
        scopes: Vec::new(),
    };
    let rp = RelyingParty::start(listener, settings).await?;
    Ok((server, service, client, rp))
}

/// Opens `url` (the relying party's sign-in) in `chrome` and returns the
/// token the provider's login page shows, after checking that it is that
/// page.
async fn open_sign_in(chrome: &Chrome, url: &str, server: &Server) -> Result<String> {
    chrome.client.goto(url).await?;
    let token = chrome.wait_text("#token", "a token", PATIENCE, |t| t.starts_with("sesame1.")).await?;
    let url = chrome.client.current_url().await?;
    ensure!(
        url.as_str().starts_with(&format!("{}/oidc/authorize?", server.origin)),
        "the browser is not on the provider's authorization endpoint: {url}"
    );
    chrome.wait_contains("#service-name", "Lighthouse").await?;
    ensure!(chrome.client.find(fantoccini::Locator::Css("#qr svg")).await?.is_displayed().await?, "no QR code shown");
    Ok(token)
}

/// Waits until the relying party has its `n`th outcome, and returns it.
pub(crate) async fn nth_outcome(rp: &RelyingParty, n: usize) -> Result<Outcome> {
    eventually(PATIENCE, || async { rp.outcomes().get(n - 1).cloned() })
        .await
        .with_context(|| format!("the browser never came back to the relying party; outcomes: {:?}", rp.outcomes()))
}

/// The identity in an outcome, or an error saying what went wrong.
pub(crate) fn signed_in(outcome: Outcome) -> Result<Identity> {
    match outcome {
        Outcome::SignedIn(who) => Ok(*who),
        other => bail!("the relying party did not sign anyone in: {other:?}"),
    }
}

/// Runs `sesame ARGS…` and fails with its stderr unless it succeeds.
pub(crate) fn approve(sesame: &Sesame, args: &[&str]) -> Result<()> {
    let out = sesame.run(args);
    ensure!(out.status.success(), "sesame {} failed: {}", args[0], stderr(&out));
    Ok(())
}

/// The whole flow in a browser: register and come back signed in; come
/// back again at once on the session Sesame keeps; then, asked to sign in
/// afresh, log in with the authenticator. The subject never changes.
async fn browser_round_trip(test: &str, alg: &str, public: bool) -> Result<()> {
    let (server, _service, _client, rp) = relying_party(alg, public).await?;
    let chrome = Chrome::start(test).await?;
    let sesame = Sesame::new();

    let token = open_sign_in(&chrome, &rp.login_url(), &server).await?;
    chrome.save_screenshot("provider").await?;
    approve(&sesame, &["register", &token, "--name", "alice", "--yes"])?;
    let first = signed_in(nth_outcome(&rp, 1).await?)?;
    // What the person sees is what the relying party validated.
    let shown = chrome.wait_text("#sub", "the subject", PATIENCE, |t| !t.is_empty()).await?;
    assert_eq!(shown, first.sub);
    assert_eq!(chrome.visible_text("#username").await.as_deref(), Some("alice"));
    assert_eq!(chrome.visible_text("#alg").await.as_deref(), Some(alg));
    chrome.save_screenshot("relying-party").await?;

    assert_eq!(first.preferred_username.as_deref(), Some("alice"));
    assert_eq!(first.userinfo_sub, first.sub, "userinfo speaks of the ID token's subject");
    assert_eq!(first.userinfo_username.as_deref(), Some("alice"));
    assert_eq!(first.alg, alg);
    assert_eq!(first.amr, ["swk"], "proof of possession of a key the authenticator keeps in software");
    ensure!(first.auth_time.is_some(), "auth_time is there");
    ensure!(!first.sub.contains("alice"), "the subject is opaque, not the name: {}", first.sub);

    // Sesame remembers the sign-in: the next trip needs no authenticator,
    // and says when the person last approved.
    chrome.client.goto(&rp.login_url()).await?;
    let again = signed_in(nth_outcome(&rp, 2).await?)?;
    assert_eq!((&again.sub, &again.auth_time), (&first.sub, &first.auth_time), "the session's sign-in");

    // prompt=login: the login page again, and a login with the account
    // that now exists.
    let token = open_sign_in(&chrome, &rp.fresh_login_url(), &server).await?;
    approve(&sesame, &["login", &token, "--account", "alice", "--yes"])?;
    let fresh = signed_in(nth_outcome(&rp, 3).await?)?;
    assert_eq!(fresh.sub, first.sub, "the subject is stable");
    assert_eq!(fresh.preferred_username.as_deref(), Some("alice"));
    ensure!(fresh.auth_time >= first.auth_time, "auth_time is the new sign-in's");
    chrome.close().await
}

#[tokio::test]
async fn a_relying_party_signs_a_person_in_with_an_rs256_id_token_in_a_real_browser() -> Result<()> {
    browser_round_trip("oidc-rs256", "RS256", false).await
}

#[tokio::test]
async fn a_public_relying_party_signs_a_person_in_with_an_eddsa_id_token_in_a_real_browser() -> Result<()> {
    browser_round_trip("oidc-eddsa", "EdDSA", true).await
}

#[tokio::test]
async fn cancelling_on_the_login_page_sends_the_browser_back_with_access_denied() -> Result<()> {
    let (server, _service, _client, rp) = relying_party("RS256", false).await?;
    let chrome = Chrome::start("oidc-cancel").await?;
    open_sign_in(&chrome, &rp.login_url(), &server).await?;
    chrome.click("#cancel").await?;
    assert_eq!(nth_outcome(&rp, 1).await?, Outcome::Refused { error: "access_denied".into() });
    assert_eq!(chrome.wait_contains("#error", "access_denied").await?, "access_denied");
    chrome.close().await
}

#[tokio::test]
async fn discovery_names_the_issuer_and_what_the_provider_supports() -> Result<()> {
    let server = Server::start().await?;
    let res = reqwest::get(server.url("/.well-known/openid-configuration")).await?;
    assert_eq!(res.status(), 200);
    let meta: Value = res.json().await?;
    let origin = &server.origin;
    assert_eq!(meta["issuer"], json!(origin));
    for (field, path) in [
        ("authorization_endpoint", "/oidc/authorize"),
        ("token_endpoint", "/oidc/token"),
        ("userinfo_endpoint", "/oidc/userinfo"),
        ("jwks_uri", "/oidc/jwks"),
        ("end_session_endpoint", "/oidc/logout"),
    ] {
        assert_eq!(meta[field], json!(format!("{origin}{path}")), "{field}");
    }
    let list = |field: &str| -> Vec<String> {
        meta[field]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    assert_eq!(list("response_types_supported"), ["code"]);
    assert_eq!(list("code_challenge_methods_supported"), ["S256"]);
    for alg in ["RS256", "EdDSA"] {
        ensure!(list("id_token_signing_alg_values_supported").contains(&alg.to_owned()), "{alg} is offered");
    }
    for method in ["client_secret_basic", "client_secret_post", "none"] {
        ensure!(list("token_endpoint_auth_methods_supported").contains(&method.to_owned()), "{method} is offered");
    }
    ensure!(list("scopes_supported").contains(&"openid".to_owned()), "openid is a scope");
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true, "RFC 9207");

    // Every key is published with a kid, and both kinds are there.
    let jwks: Value = reqwest::get(server.url("/oidc/jwks")).await?.error_for_status()?.json().await?;
    let keys = jwks["keys"].as_array().context("keys")?;
    for key in keys {
        ensure!(key["kid"].as_str().is_some_and(|k| !k.is_empty()), "a key without kid: {key}");
        ensure!(key.get("d").is_none() && key.get("p").is_none(), "a private part is published: {key}");
    }
    let kinds: Vec<_> = keys.iter().map(|k| (k["kty"].as_str(), k["alg"].as_str())).collect();
    ensure!(kinds.contains(&(Some("RSA"), Some("RS256"))), "an RS256 key: {kinds:?}");
    ensure!(kinds.contains(&(Some("OKP"), Some("EdDSA"))), "an EdDSA key: {kinds:?}");
    Ok(())
}

/// Redeems the code in `callback` and returns the subject userinfo names.
async fn subject(provider: &Provider, callback: Callback, pkce: Pkce) -> Result<String> {
    let answer = provider.redeem(callback.code()?, &pkce).await?;
    ensure!(answer.status == 200, "redeeming answered {}: {}", answer.status, answer.body);
    let info = userinfo(&provider.server.base, answer.field("access_token")?).await?;
    ensure!(info.status == 200, "userinfo answered {}: {}", info.status, info.body);
    assert_eq!(info.body["preferred_username"], "alice");
    Ok(info.field("sub")?.to_owned())
}

#[tokio::test]
async fn the_subject_is_opaque_stable_and_never_given_to_a_new_account_of_the_same_name() -> Result<()> {
    let provider = Provider::start().await?;
    let pkce = Pkce::new();
    let first =
        subject(&provider, provider.register(&AuthRequest::new(&provider.client, &pkce), "alice").await?, pkce).await?;
    ensure!(first != "alice" && !first.contains("alice"), "the subject is not the name: {first}");

    let pkce = Pkce::new();
    let request = AuthRequest::new(&provider.client, &pkce);
    let again =
        provider.browser().sign_in(&request, &provider.sesame, &["login", "--account", "alice", "--yes"]).await?;
    assert_eq!(subject(&provider, again, pkce).await?, first, "the same account keeps its subject");

    let path = format!("/admin/api/services/{}/accounts/alice", provider.service.id);
    let res = provider.server.admin().request(reqwest::Method::DELETE, &path).send().await?;
    assert_eq!(res.status(), 204);
    // A new person takes the name, with another authenticator.
    let newcomer = Sesame::new();
    let pkce = Pkce::new();
    let request = AuthRequest::new(&provider.client, &pkce);
    let callback = provider.browser().sign_in(&request, &newcomer, &["register", "--name", "alice", "--yes"]).await?;
    let reused = subject(&provider, callback, pkce).await?;
    assert_ne!(reused, first, "a subject is never given to another account");
    Ok(())
}
