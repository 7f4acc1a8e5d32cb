//! A relying party: a small web application that offers "Log in with
//! Sesame" through the `openidconnect` crate, as any application would, with
//! nothing of Sesame's own code. It finds the provider by discovery, sends
//! the browser there with PKCE S256, a nonce and a state, and on the way
//! back checks the state and `iss`, exchanges the code, validates the ID
//! token (signature through the JWKS, `alg`, `iss`, `aud`, `exp`, `nonce`),
//! asks userinfo, and shows who signed in. It keeps a session of its own, and
//! its `/logout` ends it and sends the browser to the provider's
//! `end_session_endpoint` (RP-Initiated Logout) with the ID token as hint.
//!
//! It is served on `localhost`, while the provider is on `127.0.0.1`: two
//! sites, as in a real deployment, so that the provider's cookies and the
//! application's never meet. Two relying parties both on `localhost` do
//! share cookies (cookies ignore the port), so each names its cookies after
//! its port.

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
    core::{CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreJwsSigningAlgorithm},
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndSessionUrl, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, LogoutRequest, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier,
    PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, Scope, TokenResponse as _,
};
use serde::Deserialize;

use crate::{oidc::OidcClient, Result};

/// The client as `from_provider_metadata` builds it: an authorization
/// endpoint, and a token and userinfo endpoint if discovery named them.
type Client =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// The name of the cookie that binds a sign-in to the browser that started
/// it, before the port.
const STATE_COOKIE: &str = "rp_state";

/// The name of the relying party's own session cookie, before the port.
const SESSION_COOKIE: &str = "rp_session";

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

    /// The URI to register as where the provider may send the browser after
    /// a logout.
    pub fn post_logout_redirect_uri(&self) -> String {
        format!("{}/signed-out", self.base)
    }
}

/// What one trip through the provider ended in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything checked out.
    SignedIn(Box<Identity>),
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
    /// The scope the token answer says was granted.
    pub granted_scope: Option<String>,
    /// `name`, `email` and `email_verified` of the ID token, there with the
    /// scopes `profile` and `email` when the account has them.
    pub name: Option<String>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    /// The same three from userinfo.
    pub userinfo_name: Option<String>,
    pub userinfo_email: Option<String>,
    pub userinfo_email_verified: Option<bool>,
    /// `groups` of the ID token and of userinfo, there with the scope
    /// `groups`. The library's standard claims have no such member: it is
    /// read from the token it validated, and from userinfo's JSON, as an
    /// application that maps roles from it would.
    pub groups: Option<Vec<String>>,
    pub userinfo_groups: Option<Vec<String>>,
}

/// The `groups` member of a JSON object, if it is a list of strings.
fn groups_of(json: &serde_json::Value) -> Option<Vec<String>> {
    json.get("groups")?.as_array()?.iter().map(|g| g.as_str().map(str::to_owned)).collect()
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
    /// Scopes to ask for beside `openid`, such as `profile` and `email`.
    pub scopes: Vec<String>,
}

struct Rp {
    client: Client,
    http: reqwest::Client,
    issuer: String,
    alg: CoreJwsSigningAlgorithm,
    scopes: Vec<String>,
    base: String,
    /// Discovery's `end_session_endpoint`, if it names one.
    end_session: Option<EndSessionUrl>,
    state_cookie: String,
    session_cookie: String,
    /// What each started sign-in must be checked against, by state.
    pending: Mutex<HashMap<String, (Nonce, PkceCodeVerifier)>>,
    outcomes: Mutex<Vec<Outcome>>,
    /// The ID token of each of the relying party's own sessions, by the
    /// value of its session cookie: the hint for a logout.
    sessions: Mutex<HashMap<String, CoreIdToken>>,
    /// The states of logouts sent to the provider and not yet back.
    logouts: Mutex<Vec<String>>,
    /// How many logouts came back from the provider with their state.
    signed_out: Mutex<usize>,
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
        let metadata = ProviderMetadataWithLogout::discover_async(IssuerUrl::new(settings.issuer.clone())?, &http)
            .await
            .context("the relying party cannot discover the provider")?;
        let end_session = metadata.additional_metadata().end_session_endpoint.clone();
        let secret = settings.client.client_secret.clone().map(ClientSecret::new);
        let client =
            CoreClient::from_provider_metadata(metadata, ClientId::new(settings.client.client_id.clone()), secret)
                .set_redirect_uri(RedirectUrl::new(format!("{}/callback", listener.base))?)
                .set_auth_type(if settings.secret_in_body { AuthType::RequestBody } else { AuthType::BasicAuth });
        let port = listener.listener.local_addr()?.port();
        let rp = Arc::new(Rp {
            client,
            http,
            issuer: settings.issuer,
            alg: settings.alg,
            scopes: settings.scopes,
            base: listener.base.clone(),
            end_session,
            state_cookie: format!("{STATE_COOKIE}_{port}"),
            session_cookie: format!("{SESSION_COOKIE}_{port}"),
            pending: Mutex::new(HashMap::new()),
            outcomes: Mutex::new(Vec::new()),
            sessions: Mutex::new(HashMap::new()),
            logouts: Mutex::new(Vec::new()),
            signed_out: Mutex::new(0),
        });
        let app = Router::new()
            .route("/login", get(login))
            .route("/callback", get(callback))
            .route("/logout", get(logout))
            .route("/signed-out", get(signed_out))
            .with_state(rp.clone());
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

    /// Where a browser signs out: of the relying party, and through the
    /// provider's `end_session_endpoint`, of Sesame.
    pub fn logout_url(&self) -> String {
        format!("{}/logout", self.base)
    }

    /// Every sign-in that came back, oldest first.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.rp.outcomes.lock().expect("the outcome list is never poisoned").clone()
    }

    /// How many logouts the provider sent back with the state they left with.
    pub fn signed_out(&self) -> usize {
        *self.rp.signed_out.lock().expect("never poisoned")
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
        .set_pkce_challenge(challenge)
        .add_scopes(rp.scopes.iter().cloned().map(Scope::new));
    if query.prompt.as_deref() == Some("login") {
        request = request.add_prompt(CoreAuthPrompt::Login);
    }
    let (url, state, nonce) = request.url();
    rp.pending.lock().expect("never poisoned").insert(state.secret().clone(), (nonce, verifier));
    let cookie = format!("{}={}; Path=/; HttpOnly; SameSite=Lax", rp.state_cookie, state.secret());
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
    let (outcome, id_token) = match finish(&rp, &headers, query).await {
        Ok((outcome, id_token)) => (outcome, id_token),
        Err(e) => (Outcome::Failed(format!("{e:#}")), None),
    };
    rp.outcomes.lock().expect("never poisoned").push(outcome.clone());
    // A sign-in starts the relying party's own session, which keeps the ID
    // token for the logout.
    let session = id_token.map(|token| {
        let id = CsrfToken::new_random().secret().clone();
        rp.sessions.lock().expect("never poisoned").insert(id.clone(), token);
        format!("{}={id}; Path=/; HttpOnly; SameSite=Lax", rp.session_cookie)
    });
    let (status, body) = match outcome {
        Outcome::SignedIn(who) => (
            StatusCode::OK,
            format!(
                "<h1>Signed in</h1><dl><dt>sub</dt><dd id=\"sub\">{}</dd><dt>preferred_username</dt>\
                 <dd id=\"username\">{}</dd><dt>alg</dt><dd id=\"alg\">{}</dd><dt>name</dt>\
                 <dd id=\"name\">{}</dd><dt>email</dt><dd id=\"email\">{}</dd></dl>",
                escape(&who.sub),
                escape(who.preferred_username.as_deref().unwrap_or("")),
                escape(&who.alg),
                escape(who.name.as_deref().unwrap_or("")),
                escape(who.email.as_deref().unwrap_or(""))
            ),
        ),
        Outcome::Refused { error } => {
            (StatusCode::OK, format!("<h1>Not signed in</h1><p id=\"error\">{}</p>", escape(&error)))
        }
        Outcome::Failed(why) => {
            (StatusCode::BAD_GATEWAY, format!("<h1>Failed</h1><p id=\"failure\">{}</p>", escape(&why)))
        }
    };
    let mut response = (status, Html(page(&body))).into_response();
    if let Some(cookie) = session.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

fn page(body: &str) -> String {
    format!("<!doctype html><title>Relying party</title>{body}")
}

/// Ends the relying party's session and sends the browser to the provider's
/// `end_session_endpoint` with the session's ID token as `id_token_hint`,
/// asking to come back to `/signed-out`.
async fn logout(State(rp): State<Arc<Rp>>, headers: HeaderMap) -> Response {
    let token =
        cookie(&headers, &rp.session_cookie).and_then(|id| rp.sessions.lock().expect("never poisoned").remove(id));
    let Some(token) = token else {
        return (StatusCode::OK, Html(page("<h1 id=\"not-signed-in\">Not signed in</h1>"))).into_response();
    };
    let Some(end_session) = rp.end_session.clone() else {
        let body = "<h1>Failed</h1><p id=\"failure\">discovery names no end_session_endpoint</p>";
        return (StatusCode::BAD_GATEWAY, Html(page(body))).into_response();
    };
    let back = match PostLogoutRedirectUrl::new(format!("{}/signed-out", rp.base)) {
        Ok(url) => url,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let state = CsrfToken::new_random();
    rp.logouts.lock().expect("never poisoned").push(state.secret().clone());
    let url = LogoutRequest::from(end_session)
        .set_id_token_hint(&token)
        .set_client_id(rp.client.client_id().clone())
        .set_post_logout_redirect_uri(back)
        .set_state(state)
        .http_get_url();
    let clear = format!("{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0", rp.session_cookie);
    ([(header::SET_COOKIE, clear)], Redirect::to(url.as_str())).into_response()
}

#[derive(Debug, Deserialize)]
struct SignedOutQuery {
    state: Option<String>,
}

/// Where the provider sends the browser back after a logout, with the
/// state the logout left with.
async fn signed_out(State(rp): State<Arc<Rp>>, Query(query): Query<SignedOutQuery>) -> Response {
    let known = query.state.is_some_and(|state| {
        let mut logouts = rp.logouts.lock().expect("never poisoned");
        let before = logouts.len();
        logouts.retain(|s| *s != state);
        logouts.len() < before
    });
    if !known {
        let body = "<h1>Failed</h1><p id=\"failure\">the logout's state is unknown or was used</p>";
        return (StatusCode::BAD_REQUEST, Html(page(body))).into_response();
    }
    *rp.signed_out.lock().expect("never poisoned") += 1;
    (StatusCode::OK, Html(page("<h1 id=\"signed-out\">Signed out</h1>"))).into_response()
}

/// Every check a careful relying party makes, in order. A sign-in comes with
/// its ID token, for the relying party's session.
async fn finish(rp: &Rp, headers: &HeaderMap, query: CallbackQuery) -> Result<(Outcome, Option<CoreIdToken>)> {
    let state = query.state.context("no state came back")?;
    anyhow::ensure!(cookie(headers, &rp.state_cookie) == Some(state.as_str()), "the state is not this browser's");
    let (nonce, verifier) =
        rp.pending.lock().expect("never poisoned").remove(&state).context("the state is unknown or was used")?;
    // RFC 9207: the answer names its issuer, so that a mix-up attack shows.
    anyhow::ensure!(query.iss.as_deref() == Some(rp.issuer.as_str()), "iss is {:?}, not {:?}", query.iss, rp.issuer);
    if let Some(error) = query.error {
        return Ok((Outcome::Refused { error }, None));
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
    let granted_scope = tokens.scopes().map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "));
    // The payload of the token just validated, and userinfo as JSON.
    let payload = id_token.to_string().split('.').nth(1).map(str::to_owned).context("a JWT has a payload")?;
    let payload: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .context("the payload is base64url")?,
    )?;
    let userinfo_url = rp.client.user_info_url().context("discovery named a userinfo endpoint")?.url().clone();
    let raw_info: serde_json::Value =
        rp.http.get(userinfo_url).bearer_auth(tokens.access_token().secret()).send().await?.json().await?;
    let who = Identity {
        sub: claims.subject().to_string(),
        preferred_username: claims.preferred_username().map(|n| n.to_string()),
        userinfo_sub: info.subject().to_string(),
        userinfo_username: info.preferred_username().map(|n| n.to_string()),
        alg,
        amr: claims.auth_method_refs().map(|v| v.iter().map(|m| m.to_string()).collect()).unwrap_or_default(),
        auth_time: claims.auth_time().map(|t| t.timestamp()),
        granted_scope,
        name: claims.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
        email: claims.email().map(|e| e.to_string()),
        email_verified: claims.email_verified(),
        userinfo_name: info.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
        userinfo_email: info.email().map(|e| e.to_string()),
        userinfo_email_verified: info.email_verified(),
        groups: groups_of(&payload),
        userinfo_groups: groups_of(&raw_info),
    };
    Ok((Outcome::SignedIn(Box::new(who)), Some(id_token.clone())))
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
