//! A relying party: a small web application that offers "Log in with
//! Sesame" through the `openidconnect` crate, as any application would, with
//! nothing of Sesame's own code. It finds the provider by discovery, sends
//! the browser there with PKCE S256, a nonce and a state, and on the way
//! back checks the state and `iss`, exchanges the code, validates the ID
//! token (signature through the JWKS, `alg`, `iss`, `aud`, `exp`, `nonce`),
//! asks userinfo, and shows who signed in.
//!
//! It is served on `localhost`, while the provider is on `127.0.0.1`: two
//! sites, as in a real deployment, so that the provider's cookies and the
//! application's never meet.

use std::{
    collections::HashMap,
    net::TcpListener,
    sync::{Arc, Mutex},
};

use anyhow::Context as _;
use axum::{
    extract::{Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
    Router,
};
use openidconnect::{
    core::{CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata},
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IssuerUrl, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, TokenResponse as _,
};
use serde::Deserialize;

use crate::{oidc::OidcClient, Result};

/// The client as `from_provider_metadata` builds it: an authorization
/// endpoint, and a token and userinfo endpoint if discovery named them.
type Client =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// The name of the cookie that binds a sign-in to the browser that started it.
const STATE_COOKIE: &str = "rp_state";

/// A port for the relying party, bound before its client is registered,
/// since the redirect URI names it.
#[derive(Debug)]
pub struct RpListener {
    listener: TcpListener,
    pub base: String,
}

impl RpListener {
    pub fn bind() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let base = format!("http://localhost:{}", listener.local_addr()?.port());
        Ok(Self { listener, base })
    }

    /// The URI to register with the provider.
    pub fn redirect_uri(&self) -> String {
        format!("{}/callback", self.base)
    }
}

/// What one trip through the provider ended in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything checked out.
    SignedIn(Identity),
    /// The provider sent an OAuth error back, such as `access_denied`.
    Refused { error: String },
    /// Something did not check out; the text says what.
    Failed(String),
}

/// Who signed in, from the validated ID token and from userinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sub: String,
    pub preferred_username: Option<String>,
    pub userinfo_sub: String,
    pub userinfo_username: Option<String>,
    /// The `alg` of the ID token's header.
    pub alg: String,
    pub amr: Vec<String>,
    pub auth_time: Option<i64>,
}

/// How the relying party is registered with the provider.
#[derive(Debug, Clone)]
pub struct RpSettings {
    /// The provider's issuer: the Sesame server's public origin.
    pub issuer: String,
    pub client: OidcClient,
    /// The only algorithm the ID token may be signed with.
    pub alg: CoreJwsSigningAlgorithm,
    /// `client_secret_post` instead of `client_secret_basic` (confidential
    /// clients only).
    pub secret_in_body: bool,
}

struct Rp {
    client: Client,
    http: reqwest::Client,
    issuer: String,
    alg: CoreJwsSigningAlgorithm,
    /// What each started sign-in must be checked against, by state.
    pending: Mutex<HashMap<String, (Nonce, PkceCodeVerifier)>>,
    outcomes: Mutex<Vec<Outcome>>,
}

/// A running relying party; stops when dropped.
#[derive(Debug)]
pub struct RelyingParty {
    pub base: String,
    rp: Arc<Rp>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Rp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rp").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl RelyingParty {
    /// Discovers the provider and starts serving on `listener`.
    pub async fn start(listener: RpListener, settings: RpSettings) -> Result<Self> {
        // No redirects: the openidconnect crate asks for that, so that a
        // token or userinfo request cannot be sent somewhere else.
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
        let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(settings.issuer.clone())?, &http)
            .await
            .context("the relying party cannot discover the provider")?;
        let secret = settings.client.client_secret.clone().map(ClientSecret::new);
        let client =
            CoreClient::from_provider_metadata(metadata, ClientId::new(settings.client.client_id.clone()), secret)
                .set_redirect_uri(RedirectUrl::new(format!("{}/callback", listener.base))?)
                .set_auth_type(if settings.secret_in_body { AuthType::RequestBody } else { AuthType::BasicAuth });
        let rp = Arc::new(Rp {
            client,
            http,
            issuer: settings.issuer,
            alg: settings.alg,
            pending: Mutex::new(HashMap::new()),
            outcomes: Mutex::new(Vec::new()),
        });
        let app = Router::new().route("/login", get(login)).route("/callback", get(callback)).with_state(rp.clone());
        listener.listener.set_nonblocking(true)?;
        let tcp = tokio::net::TcpListener::from_std(listener.listener)?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(tcp, app).await;
        });
        Ok(Self { base: listener.base, rp, task })
    }

    /// Where a browser starts signing in.
    pub fn login_url(&self) -> String {
        format!("{}/login", self.base)
    }

    /// Where a browser starts signing in with `prompt=login`, so that a
    /// live session at the provider is not enough.
    pub fn fresh_login_url(&self) -> String {
        format!("{}/login?prompt=login", self.base)
    }

    /// Every sign-in that came back, oldest first.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.rp.outcomes.lock().expect("the outcome list is never poisoned").clone()
    }
}

impl Drop for RelyingParty {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    /// `login` asks the provider to sign the person in afresh.
    prompt: Option<String>,
}

/// Sends the browser to the provider, remembering the nonce and the PKCE
/// verifier under a fresh state that a cookie binds to this browser.
async fn login(State(rp): State<Arc<Rp>>, Query(query): Query<LoginQuery>) -> Response {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = rp
        .client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge);
    if query.prompt.as_deref() == Some("login") {
        request = request.add_prompt(CoreAuthPrompt::Login);
    }
    let (url, state, nonce) = request.url();
    rp.pending.lock().expect("never poisoned").insert(state.secret().clone(), (nonce, verifier));
    let cookie = format!("{STATE_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax", state.secret());
    ([(header::SET_COOKIE, cookie)], Redirect::to(url.as_str())).into_response()
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

async fn callback(State(rp): State<Arc<Rp>>, headers: HeaderMap, Query(query): Query<CallbackQuery>) -> Response {
    let outcome = match finish(&rp, &headers, query).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Failed(format!("{e:#}")),
    };
    rp.outcomes.lock().expect("never poisoned").push(outcome.clone());
    let (status, body) = match outcome {
        Outcome::SignedIn(who) => (
            StatusCode::OK,
            format!(
                "<h1>Signed in</h1><dl><dt>sub</dt><dd id=\"sub\">{}</dd><dt>preferred_username</dt>\
                 <dd id=\"username\">{}</dd><dt>alg</dt><dd id=\"alg\">{}</dd></dl>",
                escape(&who.sub),
                escape(who.preferred_username.as_deref().unwrap_or("")),
                escape(&who.alg)
            ),
        ),
        Outcome::Refused { error } => {
            (StatusCode::OK, format!("<h1>Not signed in</h1><p id=\"error\">{}</p>", escape(&error)))
        }
        Outcome::Failed(why) => {
            (StatusCode::BAD_GATEWAY, format!("<h1>Failed</h1><p id=\"failure\">{}</p>", escape(&why)))
        }
    };
    (status, Html(format!("<!doctype html><title>Relying party</title>{body}"))).into_response()
}

/// Every check a careful relying party makes, in order.
async fn finish(rp: &Rp, headers: &HeaderMap, query: CallbackQuery) -> Result<Outcome> {
    let state = query.state.context("no state came back")?;
    anyhow::ensure!(cookie(headers, STATE_COOKIE) == Some(state.as_str()), "the state is not this browser's");
    let (nonce, verifier) =
        rp.pending.lock().expect("never poisoned").remove(&state).context("the state is unknown or was used")?;
    // RFC 9207: the answer names its issuer, so that a mix-up attack shows.
    anyhow::ensure!(query.iss.as_deref() == Some(rp.issuer.as_str()), "iss is {:?}, not {:?}", query.iss, rp.issuer);
    if let Some(error) = query.error {
        return Ok(Outcome::Refused { error });
    }
    let code = query.code.context("neither code nor error came back")?;
    let tokens = rp
        .client
        .exchange_code(AuthorizationCode::new(code))?
        .set_pkce_verifier(verifier)
        .request_async(&rp.http)
        .await
        .context("the code exchange failed")?;
    let id_token = tokens.id_token().context("the token response has no ID token")?;
    let id_verifier = rp.client.id_token_verifier().set_allowed_algs([rp.alg.clone()]);
    let claims = id_token.claims(&id_verifier, &nonce).context("the ID token does not validate")?;
    let alg = serde_json::to_value(id_token.signing_alg()?)?.as_str().unwrap_or_default().to_owned();
    let info: openidconnect::core::CoreUserInfoClaims = rp
        .client
        .user_info(tokens.access_token().clone(), Some(claims.subject().clone()))?
        .request_async(&rp.http)
        .await
        .context("userinfo failed")?;
    Ok(Outcome::SignedIn(Identity {
        sub: claims.subject().to_string(),
        preferred_username: claims.preferred_username().map(|n| n.to_string()),
        userinfo_sub: info.subject().to_string(),
        userinfo_username: info.preferred_username().map(|n| n.to_string()),
        alg,
        amr: claims.auth_method_refs().map(|v| v.iter().map(|m| m.to_string()).collect()).unwrap_or_default(),
        auth_time: claims.auth_time().map(|t| t.timestamp()),
    }))
}

/// The value of cookie `name` in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
