//! The authorization endpoint (OIDC Core §3.1.2) and the end of the login
//! page it shows.
//!
//! Until the client and the redirect URI are known good, every error is a
//! page and never a redirect (RFC 6749 §4.1.2.1): an open redirector would
//! let anyone send a browser anywhere with Sesame's name on the link. After
//! that, errors go back to the client with `error`, `state` and `iss`.

use askama::Template;
use axum::{
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use sesame_proto::wire::Status;

use super::{
    admission,
    client::{self, Client},
    consent,
    grant::{self, Request, SignedIn},
    token::is_pkce_value,
    toward, Provider,
};
use crate::{
    challenge::{
        self,
        pending::{self, Pending},
        session, Challenges, SESSION_SECS,
    },
    error::{error_page, Error, Result},
    http::cookie::{self, SameSite},
    http::extract::ClientInfo,
    signin::pages,
    state::AppState,
};

/// The longest `state` and `nonce` accepted. They travel in URLs and are
/// stored until the page finishes; real clients send 20 to 60 characters.
const MAX_ECHO_BYTES: usize = 1024;

/// Where errors go once the client and redirect URI are trusted.
#[derive(Debug)]
struct Back<'a> {
    redirect_uri: &'a str,
    state: Option<&'a str>,
    issuer: String,
    /// The answer is a form the browser posts to the redirect URI
    /// (`response_mode=form_post`), not a redirect with a query.
    form_post: bool,
}

impl Back<'_> {
    /// `params`, `state` and `iss` for the client: added to the query of
    /// `redirect_uri`, or posted to it.
    fn to(&self, params: &[(&str, &str)]) -> Response {
        let mut fields: Vec<(String, String)> =
            params.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
        if let Some(state) = self.state {
            fields.push(("state".to_owned(), state.to_owned()));
        }
        fields.push(("iss".to_owned(), self.issuer.clone()));
        if self.form_post {
            return form_post(self.redirect_uri, fields);
        }
        let Ok(mut url) = url::Url::parse(self.redirect_uri) else {
            // Checked when the client was configured; cannot happen.
            return error_page(Error::OidcRedirectUri);
        };
        url.query_pairs_mut().extend_pairs(&fields);
        see_other(url.as_str())
    }

    fn error(&self, code: &str, description: &str) -> Response {
        self.to(&[("error", code), ("error_description", description)])
    }
}

/// The page of `response_mode=form_post` (OAuth 2.0 Form Post Response
/// Mode): a form of `fields` that the browser posts to `redirect_uri` at
/// once, or when the person presses its button. It must not be cached, and
/// its form may go only to the client.
#[derive(Debug, Template)]
#[template(path = "form_post.html")]
struct FormPostView {
    action: String,
    fields: Vec<(String, String)>,
}

fn form_post(redirect_uri: &str, fields: Vec<(String, String)>) -> Response {
    let view = FormPostView { action: redirect_uri.to_owned(), fields };
    toward::page(&view, redirect_uri).unwrap_or_else(error_page)
}

/// The script that posts the form of [`form_post`].
pub(super) async fn form_post_js() -> Response {
    crate::signin::pages::asset("text/javascript; charset=utf-8", FORM_POST_JS)
}

const FORM_POST_JS: &str = include_str!("../../static/form_post.js");

fn see_other(location: &str) -> Response {
    let Ok(location) = HeaderValue::from_str(location) else {
        return error_page(Error::OidcRedirectUri);
    };
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
    )
        .into_response()
}

/// The request's parameters, each at most once (RFC 6749 §3.1).
#[derive(Debug)]
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(text: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(text).into_owned().collect())
    }

    /// The value of `name`; `Err` when it is given more than once. An empty
    /// value counts as absent (OIDC Core §3.1.2.1).
    fn one(&self, name: &str) -> std::result::Result<Option<&str>, String> {
        let mut values = self.0.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(format!("{name} is given more than once"));
        }
        Ok(first.filter(|v| !v.is_empty()))
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }
}

pub(super) async fn get(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    State(provider): State<Provider>,
    client: ClientInfo,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    authorize(&state, &challenges, &provider, &client, &headers, &params).await.unwrap_or_else(error_page)
}

/// OIDC Core §3.1.2.1: the endpoint takes POST forms too.
pub(super) async fn post(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    State(provider): State<Provider>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = Params::parse(&body);
    authorize(&state, &challenges, &provider, &client, &headers, &params).await.unwrap_or_else(error_page)
}

/// The client of an authorization request and the way back to it: the two
/// things that make a redirect safe. Errors here are pages, never
/// redirects.
async fn way_back<'p>(state: &AppState, params: &'p Params) -> Result<(Client, Back<'p>)> {
    let client_id = params.one("client_id").map_err(|_| Error::OidcUnknownClient)?.ok_or(Error::OidcUnknownClient)?;
    let client = client::by_client_id(&state.db, client_id).await?.ok_or(Error::OidcUnknownClient)?;
    let redirect_uri = params.one("redirect_uri").map_err(|_| Error::OidcRedirectUri)?.ok_or(Error::OidcRedirectUri)?;
    if !client.allows_redirect(redirect_uri) {
        return Err(Error::OidcRedirectUri);
    }
    let issuer = state.settings.origin.to_string();
    // A repeated or oversized state is not echoed: it is not one value.
    let echo = params.one("state").ok().flatten().filter(|s| s.len() <= MAX_ECHO_BYTES);
    // The answer goes back as asked, errors included; a mode that is not
    // one Sesame offers gets its error in the query.
    let form_post = params.one("response_mode") == Ok(Some("form_post"));
    Ok((client, Back { redirect_uri, state: echo, issuer, form_post }))
}

async fn authorize(
    state: &AppState,
    challenges: &Challenges,
    provider: &Provider,
    browser: &ClientInfo,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Response> {
    let (client, back) = way_back(state, params).await?;
    let redirect_uri = back.redirect_uri;
    let request = match validate(&client, redirect_uri, params) {
        Ok(request) => request,
        Err((code, description)) => return Ok(back.error(code, &description)),
    };
    let prompt = params.one("prompt").ok().flatten().unwrap_or_default();
    let max_age = params.one("max_age").ok().flatten().map(str::parse::<i64>).transpose().ok().flatten();
    let now = state.clock.now().as_secs() as i64;
    let must_log_in = prompt.split(' ').any(|p| p == "login") || max_age == Some(0);
    if !must_log_in {
        if let Some(who) = live_session(state, &client, headers).await? {
            if max_age.is_none_or(|max| now - who.auth_time <= max) {
                // An application that admits only some groups refuses the
                // others: on a page first, unless prompt=none forbids one.
                if let Some(refusal) = admission::check(state, challenges, &client, &who).await? {
                    return match prompt {
                        "none" => Ok(back.error("access_denied", admission::DESCRIPTION)),
                        _ => refusal.page(&request),
                    };
                }
                // The person says once what the application may learn.
                let asked = prompt.split(' ').any(|p| p == "consent");
                if asked || !consent::given(&state.db, &client, &who, &request.scope).await? {
                    return match prompt {
                        "none" => Ok(back.error("consent_required", "the person has not yet allowed this application")),
                        _ => consent::page(challenges, &client, &who, &request).await,
                    };
                }
                let code = grant::issue_code(&state.db, &request, &who, now, provider.code_ttl_secs as i64).await?;
                return Ok(back.to(&[("code", &code)]));
            }
        }
    }
    if prompt == "none" {
        return Ok(back.error("login_required", "no sign-in at Sesame, and prompt=none forbids asking for one"));
    }
    let issued = challenge::issue(state, challenges, &client.service_id, browser).await?;
    // Beside the challenge: in memory where it is pending in memory, else
    // in the table every instance reads (`parked`).
    match challenges.pending() {
        Pending::Memory(_) => {
            let until = issued.expires_at.as_secs().saturating_add(pending::GRACE_SECS) as i64;
            provider.parked.park(issued.id, request.clone(), now, until)?;
        }
        Pending::Table => grant::park(&state.db, &issued.id, &request, now).await?,
    }
    let finish_url = format!("/oidc/finish/{}", issued.id);
    let learns = request.scope.split(' ').filter_map(consent::meaning).collect();
    let application = pages::ForApplication { finish_url, name: client.name.clone(), learns };
    let mut response = pages::login_response(&state.settings.origin, issued, Some(application))?;
    // The page's finish form is answered with a redirect to the client, and
    // browsers hold form redirects to `form-action` too.
    if let Ok(csp) =
        HeaderValue::from_str(&crate::http::middleware::csp_with_form_action(&toward::form_target(redirect_uri)))
    {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    Ok(response)
}

/// Checks everything but the client and the redirect URI, which are known
/// good. An error is `(code, description)` for the redirect.
fn validate(
    client: &Client,
    redirect_uri: &str,
    params: &Params,
) -> std::result::Result<Request, (&'static str, String)> {
    let invalid = |description: String| ("invalid_request", description);
    for name in ["response_type", "scope", "state", "nonce", "code_challenge", "code_challenge_method", "prompt"] {
        params.one(name).map_err(invalid)?;
    }
    if params.has("request") {
        return Err(("request_not_supported", "request objects are not supported".to_owned()));
    }
    if params.has("request_uri") {
        return Err(("request_uri_not_supported", "request_uri is not supported".to_owned()));
    }
    if params.has("registration") {
        return Err(("registration_not_supported", "registration is not supported".to_owned()));
    }
    let one = |name: &str| params.one(name).ok().flatten();
    match one("response_type") {
        Some("code") => {}
        Some(_) => return Err(("unsupported_response_type", "only response_type=code is supported".to_owned())),
        None => return Err(invalid("response_type is missing".to_owned())),
    }
    let form_post = match one("response_mode") {
        None | Some("query") => false,
        Some("form_post") => true,
        Some(mode) => return Err(invalid(format!("response_mode {mode:?} is not supported; use query or form_post"))),
    };
    let requested: Vec<&str> = one("scope").unwrap_or_default().split(' ').filter(|s| !s.is_empty()).collect();
    if !requested.contains(&"openid") {
        return Err(("invalid_scope", "scope must contain openid".to_owned()));
    }
    // Scopes Sesame does not know are ignored (RFC 6749 §3.3); the token
    // answer says what was granted, always in the order of `SCOPES`.
    let scope = super::SCOPES.iter().filter(|s| requested.contains(s)).copied().collect::<Vec<_>>().join(" ");
    let state = one("state");
    let nonce = one("nonce");
    if state.is_some_and(|s| s.len() > MAX_ECHO_BYTES) || nonce.is_some_and(|n| n.len() > MAX_ECHO_BYTES) {
        return Err(invalid(format!("state and nonce may be at most {MAX_ECHO_BYTES} bytes long")));
    }
    // RFC 6749 (Appendix A.5) makes `state` visible characters and spaces.
    // Control characters in either are refused before the request is
    // stored: PostgreSQL's text cannot hold a NUL byte.
    if [state, nonce].into_iter().flatten().any(|value| value.chars().any(char::is_control)) {
        return Err(invalid("state and nonce may not contain control characters".to_owned()));
    }
    let code_challenge = one("code_challenge");
    match (code_challenge, one("code_challenge_method")) {
        (Some(_), Some("S256")) => {}
        (Some(_), None) | (Some(_), Some("plain")) => {
            return Err(invalid("code_challenge_method must be S256; plain is not accepted".to_owned()))
        }
        (Some(_), Some(_)) => return Err(invalid("code_challenge_method must be S256".to_owned())),
        (None, Some(_)) => return Err(invalid("code_challenge_method without code_challenge".to_owned())),
        (None, None) if client.is_public() => {
            return Err(invalid("a public client must use PKCE: send code_challenge with S256".to_owned()))
        }
        (None, None) => {}
    }
    if code_challenge.is_some_and(|c| c.len() != 43 || !is_pkce_value(c)) {
        return Err(invalid("code_challenge must be the 43-character base64url SHA-256 of the verifier".to_owned()));
    }
    let prompt = one("prompt").unwrap_or_default();
    let prompts: Vec<&str> = prompt.split(' ').filter(|p| !p.is_empty()).collect();
    if let Some(unknown) = prompts.iter().find(|p| !["none", "login", "consent", "select_account"].contains(p)) {
        return Err(invalid(format!("prompt {unknown:?} is not supported")));
    }
    if prompts.contains(&"none") && prompts.len() > 1 {
        return Err(invalid("prompt=none cannot be combined with other values".to_owned()));
    }
    if let Some(max_age) = one("max_age") {
        if max_age.parse::<u32>().is_err() {
            return Err(invalid("max_age must be a whole number of seconds".to_owned()));
        }
    }
    Ok(Request {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scope,
        state: state.map(str::to_owned),
        nonce: nonce.map(str::to_owned),
        code_challenge: code_challenge.map(str::to_owned),
        form_post,
    })
}

/// The person's answer on the consent page (`consent::page`): an approval
/// is recorded, then the authorization request is answered again as the
/// endpoint answers it (its fields carry `prompt=none`), with a code; a
/// refusal goes back to the application as `access_denied`. Only a browser
/// signed in to the service, and only from this origin.
pub(super) async fn decide(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    State(provider): State<Provider>,
    browser: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    decide_or_error(&state, &challenges, &provider, &browser, &headers, &body).await.unwrap_or_else(error_page)
}

async fn decide_or_error(
    state: &AppState,
    challenges: &Challenges,
    provider: &Provider,
    browser: &ClientInfo,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response> {
    cookie::check_origin(&state.settings.origin, headers)?;
    let params = Params::parse(body);
    let (client, back) = way_back(state, &params).await?;
    let request = match validate(&client, back.redirect_uri, &params) {
        Ok(request) => request,
        Err((code, description)) => return Ok(back.error(code, &description)),
    };
    let Some(who) = live_session(state, &client, headers).await? else {
        return Ok(back.error("login_required", "the sign-in at Sesame ended before the person answered"));
    };
    if params.one("decision") != Ok(Some("allow")) {
        return Ok(back.error("access_denied", "the person did not allow the application to learn this"));
    }
    let now = state.clock.now().as_secs() as i64;
    consent::approve(&state.db, &client, &who, &request.scope, now).await?;
    authorize(state, challenges, provider, browser, headers, &params).await
}

/// The browser's live Sesame session at the client's service, if any.
async fn live_session(state: &AppState, client: &Client, headers: &HeaderMap) -> Result<Option<SignedIn>> {
    let Ok(service_id) = client.service_id.parse() else { return Ok(None) };
    session::of_browser(state, &service_id, headers).await
}

/// Where the login page goes when its sign-in ends: back to the client with
/// a code, or with `access_denied`. Only the browser that started the
/// challenge can get here (its binding cookie), and only from this origin.
pub(super) async fn finish(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    State(provider): State<Provider>,
    Path(cid): Path<String>,
    headers: HeaderMap,
) -> Response {
    finish_or_error(&state, &challenges, &provider, &cid, &headers).await.unwrap_or_else(error_page)
}

async fn finish_or_error(
    state: &AppState,
    challenges: &Challenges,
    provider: &Provider,
    cid: &str,
    headers: &HeaderMap,
) -> Result<Response> {
    cookie::check_origin(&state.settings.origin, headers)?;
    let row = challenge::for_browser(state, challenges, cid, headers).await?;
    if row.status == Status::Pending {
        return Err(Error::NotCompleted);
    }
    let now = state.clock.now();
    let request = match challenges.pending() {
        Pending::Memory(_) => provider.parked.take(&row.id, now.as_secs() as i64),
        Pending::Table => grant::take(&state.db, &row.id).await?,
    };
    let request = request.ok_or(Error::AlreadyRedeemed)?;
    let client = client::by_client_id(&state.db, &request.client_id).await?.ok_or(Error::OidcUnknownClient)?;
    if !client.allows_redirect(&request.redirect_uri) {
        // The admin removed this redirect URI while the page waited.
        return Err(Error::OidcRedirectUri);
    }
    let back = Back {
        redirect_uri: &request.redirect_uri,
        state: request.state.as_deref(),
        issuer: state.settings.origin.to_string(),
        form_post: request.form_post,
    };
    let why = match row.status {
        Status::Completed => None,
        Status::Denied => Some("the sign-in was refused in the authenticator"),
        Status::Cancelled => Some("the sign-in was cancelled on the login page"),
        Status::Expired => Some("the sign-in request expired"),
        Status::Pending => Some("the sign-in has not completed"),
    };
    if let Some(why) = why {
        return Ok(back.error("access_denied", why));
    }
    let who = SignedIn {
        service_id: row.service_id.to_string(),
        account: row.account.clone().unwrap_or_default(),
        key_id: row.key_id.clone(),
        auth_time: now.as_secs() as i64,
        // A Sesame key: a key held in software (RFC 8176).
        amr: "swk".to_owned(),
    };
    // Signed in, but perhaps not admitted (then the page that says so), or
    // not yet allowed by the person (then the consent page), each with the
    // session all the same; else a code.
    let refusal = admission::check(state, challenges, &client, &who).await?;
    let allowed = refusal.is_none() && consent::given(&state.db, &client, &who, &request.scope).await?;
    let code = allowed.then(|| grant::new_code(&request, &who, now.as_secs() as i64, provider.code_ttl_secs as i64));
    let (code, insert) = code.unzip();
    // A session at Sesame too, so that the next authorization request from
    // any client of this service needs no new QR sign-in (unless it asks):
    // written with the code, in one write.
    let session = session::Minted::fresh();
    let expires_at = now.as_secs() as i64 + SESSION_SECS;
    let row = session::redeem(challenges, &row.id, now, &session.digest, expires_at, insert).await?;
    let mut response = match (refusal, code) {
        (Some(refusal), _) => refusal.page(&request)?,
        (None, Some(code)) => back.to(&[("code", &code)]),
        (None, None) => consent::page(challenges, &client, &who, &request).await?,
    };
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, session.set_cookie(&state.settings.origin, &row.service_id));
    headers.append(
        header::SET_COOKIE,
        cookie::clear(&state.settings.origin, &challenge::binding_cookie(&row.id), SameSite::Strict),
    );
    Ok(response)
}
