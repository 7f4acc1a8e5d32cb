//! The login page of each service, its sign-out form, and the static files
//! the page loads.
//!
//! The page is rendered once with a QR code drawn on the server for the
//! first step; after that `login.js` follows the challenge's event stream and
//! draws each new QR code in the browser, because drawing one per step per
//! waiting page on the server would cost a core at scale.

use askama::Template;
use axum::{
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Router,
};
use qrcode::{render::svg, EcLevel, QrCode};
use sesame_proto::{MatchNumber, Origin, ServiceId};

use crate::{
    challenge::{self, session, Challenges, SignInState},
    error::{error_page, Error, Result},
    http::cookie,
    http::extract::ClientInfo,
    state::AppState,
};

/// Static files change only with a new build; a day of caching is plenty and
/// keeps a redeploy visible soon enough.
const STATIC_CACHE: &str = "public, max-age=86400";

pub fn router<S: SignInState>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/admin") }))
        .route("/services/{id}", get(login_page))
        .route("/services/{id}/signout", post(sign_out))
        .route("/static/login.js", get(|| async { asset("text/javascript; charset=utf-8", LOGIN_JS) }))
        .route("/static/admin.js", get(|| async { asset("text/javascript; charset=utf-8", ADMIN_JS) }))
        .route("/static/qrcode.js", get(|| async { asset("text/javascript; charset=utf-8", QRCODE_JS) }))
        .route("/static/sesame.css", get(|| async { asset("text/css; charset=utf-8", SESAME_CSS) }))
}

const LOGIN_JS: &str = include_str!("../../static/login.js");
const ADMIN_JS: &str = include_str!("../../static/admin.js");
const QRCODE_JS: &str = include_str!("../../static/qrcode.js");
const SESAME_CSS: &str = include_str!("../../static/sesame.css");

pub(crate) fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(STATIC_CACHE)),
        ],
        body,
    )
        .into_response()
}

/// A waiting login page.
#[derive(Debug, Template)]
#[template(path = "login.html")]
struct LoginView {
    service_id: String,
    service_name: String,
    /// The token as text. The page's script draws its QR code, the first
    /// and every later one: drawing it here cost more CPU than the rest of a
    /// sign-in together (docs/BENCHMARKS.md).
    token: String,
    status: String,
    challenges_url: String,
    events_url: String,
    cancel_url: String,
    session_url: String,
    expires_at: u64,
    /// Set on a page shown for an OpenID Connect authorization request:
    /// where the page posts when its sign-in ends, to go back to the client.
    finish_url: Option<String>,
    /// The application an authorization request comes from, by the name
    /// its admin gave it, when this page is one's.
    application: Option<String>,
    /// What that application will learn, in words.
    learns: String,
    /// What a token is appended to for the link its QR code holds
    /// (PROTOCOL.md §3.6): `{origin}/app#`.
    app_link: String,
    /// The same for "approve in this browser", which opens the app in a
    /// tab of its own that it may close when done: `/app?from=page#`.
    same_device_link: String,
    /// The number to type into the authenticator (PROTOCOL.md §14).
    number: Option<u8>,
}

/// The page for a browser that already holds a session for the service.
#[derive(Debug, Template)]
#[template(path = "signed_in.html")]
struct SignedInView {
    service_id: String,
    service_name: String,
    account: String,
}

async fn login_page(
    state: State<AppState>,
    challenges: State<Challenges>,
    id: Path<String>,
    client: ClientInfo,
    headers: HeaderMap,
) -> Response {
    login_page_or_error(state, challenges, id, client, headers).await.unwrap_or_else(error_page)
}

async fn login_page_or_error(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    Path(id): Path<String>,
    client: ClientInfo,
    headers: HeaderMap,
) -> Result<Response> {
    let service_id: ServiceId = id.parse().map_err(|_| Error::UnknownService)?;
    if let Some(who) = session::of_browser(&state, &service_id, &headers).await? {
        let service_name = challenges.service_name(&service_id).await?;
        let view = SignedInView { service_id: service_id.to_string(), service_name, account: who.account };
        return Ok(no_store(render(&view)?));
    }
    let issued = challenge::issue(&state, &challenges, &id, &client).await?;
    login_response(&state.settings.origin, issued, None)
}

/// An authorization request's side of a login page: where the page goes on
/// when it is done, and the name of the application that asks.
#[derive(Debug)]
pub(crate) struct ForApplication {
    pub(crate) finish_url: String,
    pub(crate) name: String,
    /// What it will learn, in words, one entry per scope it asked for.
    pub(crate) learns: Vec<&'static str>,
}

/// The waiting login page for a freshly issued challenge, with its binding
/// cookie; with `application`, the page of an authorization request.
pub(crate) fn login_response(
    origin: &Origin,
    issued: challenge::Issued,
    application: Option<ForApplication>,
) -> Result<Response> {
    let (finish_url, application, learns) = match application {
        Some(app) => (Some(app.finish_url), Some(app.name), app.learns.join("; ")),
        None => (None, None, String::new()),
    };
    let cid = issued.id;
    let service_id = issued.service_id;
    let view = LoginView {
        service_id: service_id.to_string(),
        token: issued.token,
        service_name: issued.service_name,
        status: challenge::message(sesame_proto::wire::Status::Pending, "outstanding", None, false),
        challenges_url: format!("/api/services/{service_id}/challenges"),
        events_url: format!("/api/challenges/{cid}/events"),
        cancel_url: format!("/api/challenges/{cid}/cancel"),
        session_url: format!("/api/challenges/{cid}/session"),
        expires_at: issued.expires_at.as_secs(),
        finish_url,
        application,
        learns,
        app_link: app_link(origin),
        same_device_link: format!("{}?from=page#", sesame_proto::token::APP_PATH),
        number: issued.number.map(MatchNumber::get),
    };
    let mut response = no_store(render(&view)?);
    response.headers_mut().append(header::SET_COOKIE, issued.binding_cookie);
    Ok(response)
}

/// Ends this browser's session at the service and goes back to its page.
async fn sign_out(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Result<Response> {
    let service_id: ServiceId = id.parse().map_err(|_| Error::UnknownService)?;
    // SameSite=Lax already keeps the cookie off cross-site POSTs; the Origin
    // check refuses them outright, for browsers that send it.
    cookie::check_origin(&state.settings.origin, &headers)?;
    if let Some(digest) = session::cookie_digest(&state.settings.origin, &headers, &service_id) {
        session::delete(&state.db, &digest).await?;
    }
    let clear = session::clear_cookie(&state.settings.origin, &service_id);
    let mut response = Redirect::to(&format!("/services/{service_id}")).into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    response.headers_mut().insert(header::SET_COOKIE, clear);
    Ok(response)
}

/// The start of every link to the web authenticator; a page's script
/// appends each new token (PROTOCOL.md §3.6).
pub(crate) fn app_link(origin: &Origin) -> String {
    sesame_proto::token::link(origin, "")
}

fn render(view: &impl Template) -> Result<Response> {
    let html = view.render().map_err(|e| Error::Internal(anyhow::anyhow!("template: {e}")))?;
    Ok(Html(html).into_response())
}

/// Pages carry a one-time token and per-browser state: never cache them.
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The QR code of a token: an inline SVG of the link that opens the web
/// authenticator at `origin` with the token (PROTOCOL.md §3.6), so that a
/// phone's camera offers to open it. Level M, so that a photo of a screen
/// still scans. The admin page's waiting views draw theirs here too.
pub(crate) fn qr_svg(origin: &Origin, token: &str) -> Result<String> {
    let link = sesame_proto::token::link(origin, token);
    let code = QrCode::with_error_correction_level(link.as_bytes(), EcLevel::M)
        .map_err(|e| Error::Internal(anyhow::anyhow!("cannot make a QR code: {e}")))?;
    let svg = code.render::<svg::Color<'_>>().min_dimensions(256, 256).quiet_zone(true).build();
    // Inline SVG in HTML takes no XML declaration.
    Ok(svg.find("<svg").map_or(svg.clone(), |start| svg[start..].to_owned()))
}
