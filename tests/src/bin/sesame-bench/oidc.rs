//! `--flow oidc`: a complete OpenID Connect sign-in, as a relying party, a
//! browser and an authenticator make it together.
//!
//! 1. The relying party sends the browser to the authorization endpoint:
//!    code flow, `openid profile`, a fresh `state` and `nonce`, PKCE S256,
//!    for a confidential client.
//! 2. The browser loads the login page it answers with, opens the event
//!    stream of the page's challenge, and the authenticator signs a login
//!    for the page's token and submits it.
//! 3. On the `completed` event the browser posts the page's finish form, as
//!    the page's script does, and is sent back to the relying party with a
//!    code (its `state` and `iss` checked).
//! 4. The relying party redeems the code at the token endpoint with its
//!    secret (HTTP Basic) and the PKCE verifier, and asks the userinfo
//!    endpoint with the access token.
//! 5. One flow in [`VERIFY_EVERY`] has its ID token checked as a relying
//!    party must: signature against the published key set, `alg`, `iss`,
//!    `aud`, `exp` and `nonce` (with the `openidconnect` crate), and its
//!    `sub` against userinfo's.
//!
//! With two instances, the browser and the authenticator talk to different
//! ones (as in the other flows), and the relying party redeems the code at
//! the authenticator's instance and asks userinfo at the browser's, so that
//! a code issued by one instance is spent on the other.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _};
use openidconnect::{
    core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm},
    ClientId, ClientSecret, IssuerUrl, Nonce,
};
use reqwest::{
    header::{COOKIE, LOCATION, ORIGIN},
    StatusCode, Url,
};
use serde::Deserialize;
use serde_json::json;
use sesame_proto::{LoginRequest, UnverifiedToken};
use sesame_tests::{
    oidc::{random_text, Pkce},
    Server,
};

use super::{binding_cookie, Worker};

/// One flow in this many has its ID token verified in full.
pub(crate) const VERIFY_EVERY: usize = 10;

/// Where the provider sends the browser back. Nothing listens there: the
/// browser follows no redirect, and the relying party reads the code from
/// the `Location` the provider answers with.
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";

/// The relying party: a confidential client of the benchmark's service.
#[derive(Debug)]
pub(crate) struct RelyingParty {
    client_id: String,
    secret: String,
    /// The issuer every ID token must name: the instances' public origin.
    issuer: String,
    /// The provider's published keys, fetched once, as a relying party
    /// caches them.
    keys: CoreJsonWebKeySet,
    /// What the client has its ID tokens signed with.
    alg: CoreJwsSigningAlgorithm,
}

impl RelyingParty {
    /// Makes `service_id` an OIDC client with a secret, its ID tokens
    /// signed with `alg` (`RS256` or `EdDSA`), and fetches the key set (the
    /// first fetch also makes the signing keys).
    pub(crate) async fn register(server: &Server, service_id: &str, alg: &str) -> anyhow::Result<Self> {
        let settings = json!({ "redirect_uris": [REDIRECT_URI], "id_token_signed_response_alg": alg });
        let client = server.admin().enable_oidc(service_id, &settings).await?;
        let keys = reqwest::get(server.url("/oidc/jwks")).await?.error_for_status()?.json().await?;
        Ok(Self {
            secret: client.secret()?.to_owned(),
            client_id: client.client_id,
            issuer: server.origin.clone(),
            keys,
            alg: match alg {
                "EdDSA" => CoreJwsSigningAlgorithm::EdDsa,
                _ => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            },
        })
    }
}

/// The token endpoint's answer, as far as the relying party uses it.
#[derive(Debug, Deserialize)]
struct Tokens {
    access_token: String,
    id_token: String,
}

/// The login page of the authorization endpoint, as far as its script uses
/// it.
struct Page {
    token: String,
    events_url: String,
    finish_url: String,
    cookie: String,
}

impl Worker {
    /// One complete OIDC sign-in, the `n`th of the run; returns how long
    /// it took, from the authorization request to userinfo's answer.
    pub(crate) async fn oidc_sign_in(&self, rp: &RelyingParty, n: usize) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let (pkce, state, nonce) = (Pkce::new(), random_text(), random_text());
        let authorize = Url::parse_with_params(
            &format!("{}/oidc/authorize", self.browser_base),
            [
                ("client_id", rp.client_id.as_str()),
                ("redirect_uri", REDIRECT_URI),
                ("response_type", "code"),
                ("scope", "openid profile"),
                ("state", &state),
                ("nonce", &nonce),
                ("code_challenge", &pkce.challenge),
                ("code_challenge_method", "S256"),
            ],
        )?;
        let page = self.authorization_page(authorize).await?;

        // The page follows its challenge; the authenticator answers it.
        let res = self
            .browser
            .get(&page.events_url)
            .header("accept", "text/event-stream")
            .header(COOKIE, &page.cookie)
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("events answered {}", res.status());
        }
        let mut events = sesame_tests::EventStream::new(res);
        let token = UnverifiedToken::parse(&page.token)?.verify(&self.server_key)?;
        self.submit("login", &LoginRequest::sign(&token, &self.account, &self.key)).await?;
        while events.next_named("status", Duration::from_secs(10)).await?.json()["status"] != "completed" {}
        drop(events);

        // The page's script posts the finish form; the provider sends the
        // browser back with the code.
        let res = self
            .browser
            .post(&page.finish_url)
            .header(COOKIE, &page.cookie)
            .header(ORIGIN, &self.origin)
            .send()
            .await?;
        if res.status() != StatusCode::SEE_OTHER {
            bail!("finishing answered {}: {}", res.status(), res.text().await?);
        }
        let location = res.headers().get(LOCATION).context("finishing sent no Location")?.to_str()?;
        let back = Url::parse(location)?;
        let param = |name: &str| back.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        ensure!(location.starts_with(REDIRECT_URI), "sent back to {location}");
        ensure!(param("state").as_deref() == Some(state.as_str()), "the state came back changed: {location}");
        ensure!(param("iss").as_deref() == Some(rp.issuer.as_str()), "the iss came back wrong: {location}");
        let code = param("code").with_context(|| format!("no code: {location}"))?;

        // The relying party: the code for tokens, then userinfo.
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", pkce.verifier.as_str()),
        ];
        let res = self
            .relying_party
            .post(format!("{}/oidc/token", self.answer_base))
            .basic_auth(&rp.client_id, Some(&rp.secret))
            .form(&form)
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("the token endpoint answered {}: {}", res.status(), res.text().await?);
        }
        let tokens: Tokens = res.json().await?;
        let res = self
            .relying_party
            .get(format!("{}/oidc/userinfo", self.browser_base))
            .bearer_auth(&tokens.access_token)
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("userinfo answered {}: {}", res.status(), res.text().await?);
        }
        let info: serde_json::Value = res.json().await?;
        let elapsed = started.elapsed();
        if n % VERIFY_EVERY == 0 {
            self.sampled.fetch_add(1, Ordering::Relaxed);
            verify(rp, &tokens.id_token, &nonce, &info)?;
            self.verified.fetch_add(1, Ordering::Relaxed);
        }
        Ok(elapsed)
    }

    /// Loads the authorization endpoint's login page and reads what its
    /// script reads.
    async fn authorization_page(&self, url: Url) -> anyhow::Result<Page> {
        let res = self.browser.get(url).send().await?;
        if res.status() != StatusCode::OK {
            bail!("the authorization endpoint answered {}: {}", res.status(), res.text().await?);
        }
        let cookie = binding_cookie(&res)?;
        let html = res.text().await?;
        let between = |start: &str, end: &str| -> anyhow::Result<String> {
            let from = html.find(start).context("the login page lacks an expected part")? + start.len();
            let to = html[from..].find(end).context("the login page is cut short")? + from;
            Ok(html[from..to].replace("&#x2f;", "/").replace("&#47;", "/"))
        };
        Ok(Page {
            token: between("<code id=\"token\" class=\"token\">", "</code>")?,
            events_url: self.route(&between("data-events-url=\"", "\"")?),
            finish_url: self.route(&between("data-finish-url=\"", "\"")?),
            cookie,
        })
    }
}

/// Checks an ID token as a relying party must, and that it speaks of the
/// account userinfo speaks of.
fn verify(rp: &RelyingParty, id_token: &str, nonce: &str, info: &serde_json::Value) -> anyhow::Result<()> {
    let verifier = CoreIdTokenVerifier::new_confidential_client(
        ClientId::new(rp.client_id.clone()),
        ClientSecret::new(rp.secret.clone()),
        IssuerUrl::new(rp.issuer.clone())?,
        rp.keys.clone(),
    )
    .set_allowed_algs([rp.alg.clone()]);
    let token: CoreIdToken = id_token.parse().context("the ID token does not parse")?;
    let claims = token.claims(&verifier, &Nonce::new(nonce.to_owned())).context("the ID token does not verify")?;
    ensure!(
        info["sub"].as_str() == Some(claims.subject().as_str()),
        "userinfo speaks of {}, the ID token of {}",
        info["sub"],
        claims.subject().as_str()
    );
    Ok(())
}
