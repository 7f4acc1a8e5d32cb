//! Signing in to the admin page with a Sesame authenticator, as an account
//! of the built-in "Sesame admin" service, and adding such authenticators.
//!
//! Anyone may start an admin sign-in, but such a challenge takes no new
//! accounts (the challenge store closes registration for built-in services),
//! so only a key registered earlier can complete it. A key is registered
//! from a challenge that a signed-in admin starts with "Add an
//! authenticator", which alone opens registration. Either way the browser
//! that started the challenge must hold its binding cookie to use the result,
//! and turning it into an admin session is a single conditional UPDATE, so a
//! completed challenge yields at most one session.
//!
//! A registered admin key starts pending (see `keys`): the token on the
//! admin's screen may have been glimpsed, and whoever registers first wins
//! the challenge. So the page shows the new key's fingerprint, the device
//! that sent it and the six-digit code of docs/PROTOCOL.md §11, and the key
//! signs in only after the admin confirms that their own authenticator shows
//! the same code.
//!
//! The waiting pages follow the challenge over its event stream (`admin.js`)
//! and continue by themselves when it ends; without script, the Continue
//! button does the same.

use askama::Template;
use axum::{
    extract::{
        rejection::{FormRejection, PathRejection},
        Path, State,
    },
    http::{header, HeaderMap, StatusCode},
    response::{AppendHeaders, IntoResponse, Redirect},
    routing::post,
    Form, Router,
};
use serde::Deserialize;
use sesame_proto::wire::Status;

use super::{
    form::{AccountForm, AdminForm, CsrfField, CsrfForm},
    kit::{by, form, path, render, AreYouSure, PageResult},
    session::{self, AdminSession, Credential, PRE_SESSION_COOKIE, SESSION_COOKIE, SESSION_SECS},
    signin::sign_in_page,
    store,
};
use crate::{
    audit::{self, Action, Record},
    challenge::{self, row::ChallengeRow, Challenges, SignInState},
    error::{Error, Result},
    http::cookie,
    http::extract::ClientInfo,
    signin::keys,
    signin::pages::{app_link, qr_svg},
    state::AppState,
};

pub(super) fn router<S: SignInState>() -> Router<S> {
    Router::new()
        .route("/admin/sesame", post(start_sign_in))
        .route("/admin/sesame/{cid}", post(continue_sign_in))
        .route("/admin/authenticators", post(start_adding))
        .route("/admin/authenticators/{cid}", post(continue_adding))
        .route("/admin/authenticators/{cid}/confirm", post(confirm_key))
        .route("/admin/authenticators/{cid}/reject", post(reject_key))
        .route("/admin/authenticators/delete", post(delete_authenticator))
}

#[derive(Template)]
#[template(path = "admin/sesame.html")]
struct WaitingView {
    adding: bool,
    /// The challenge's event stream, which `admin.js` follows.
    events_url: String,
    token: String,
    /// Inline SVG drawn by the `qrcode` crate from the token's link: only
    /// shapes, no user data.
    qr_svg: String,
    /// What `admin.js` appends each new token to for its QR code.
    app_link: String,
    action: String,
    csrf: String,
    message: Option<&'static str>,
}

fn now(state: &AppState) -> i64 {
    state.clock.now().as_secs() as i64
}

/// The sign-in form's double-submit check, as in `signin::sign_in`.
fn check_pre_session(state: &AppState, headers: &HeaderMap, presented: &str) -> Result<()> {
    cookie::check_origin(&state.settings.origin, headers)?;
    let expected = cookie::secret(&state.settings.origin, headers, PRE_SESSION_COOKIE);
    if !expected.is_some_and(|expected| cookie::same_secret(expected, presented)) {
        return Err(Error::CsrfRejected);
    }
    Ok(())
}

fn waiting(
    state: &AppState,
    adding: bool,
    cid: &sesame_proto::ChallengeId,
    token: String,
    csrf: String,
    message: Option<&'static str>,
) -> PageResult {
    let action = if adding { format!("/admin/authenticators/{cid}") } else { format!("/admin/sesame/{cid}") };
    let events_url = format!("/api/challenges/{cid}/events");
    let origin = &state.settings.origin;
    let view = WaitingView {
        adding,
        events_url,
        qr_svg: qr_svg(origin, &token)?,
        app_link: app_link(origin),
        token,
        action,
        csrf,
        message,
    };
    render(StatusCode::OK, &view)
}

/// The challenge `cid`, for the browser that started it, if it belongs to the
/// admin service.
async fn admin_challenge(
    state: &AppState,
    challenges: &Challenges,
    headers: &HeaderMap,
    cid: &str,
) -> Result<ChallengeRow> {
    let row = challenge::for_browser(state, challenges, cid, headers).await?;
    if row.service_id.to_string() != store::admin_service(&state.db, now(state)).await? {
        return Err(Error::UnknownChallenge);
    }
    Ok(row)
}

const NOT_YET: &str = "Not approved yet. Approve in your authenticator (here is a fresh code), then continue.";
const ENDED: &str = "That sign-in was refused, cancelled or timed out. Start again.";

async fn start_sign_in(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Result<Form<CsrfForm>, FormRejection>,
) -> PageResult {
    let csrf = form(body)?.csrf;
    check_pre_session(&state, &headers, &csrf)?;
    let service = store::admin_service(&state.db, now(&state)).await?;
    let issued = challenge::issue(&state, &challenges, &service, &client).await?;
    let page = waiting(&state, false, &issued.id, issued.token, csrf, None)?;
    Ok(([(header::SET_COOKIE, issued.binding_cookie)], page).into_response())
}

async fn continue_sign_in(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    client: ClientInfo,
    headers: HeaderMap,
    cid: Result<Path<String>, PathRejection>,
    body: Result<Form<CsrfForm>, FormRejection>,
) -> PageResult {
    let csrf = form(body)?.csrf;
    check_pre_session(&state, &headers, &csrf)?;
    let row = admin_challenge(&state, &challenges, &headers, &path(cid)?).await?;
    match row.status {
        Status::Pending => {
            let token = challenge::current_token(&state, &row)?;
            waiting(&state, false, &row.id, token, csrf, Some(NOT_YET))
        }
        Status::Completed => {
            // Only a login opens a session; the key that made it names the
            // session, which ends when that key is removed.
            let key_id = match (row.purpose.as_deref(), &row.key_id) {
                (Some("login"), Some(key_id)) => key_id,
                _ => return Err(Error::NotCompleted.into()),
            };
            // One completed challenge, one session: the first request to
            // mark it redeemed wins.
            challenge::session::mark_redeemed(&state.db, &row.id, state.clock.now()).await?;
            let (value, session) =
                AdminSession::create(&state.db, Credential::Key(key_id), &client, now(&state)).await?;
            tracing::info!(challenge = %row.id, "admin signed in with an authenticator");
            let (actor, handle) = (session.actor(), session.handle());
            // After the session exists, which its creation checks; a crash
            // in between loses this record, never invents one.
            let record = Record::new(Action::AdminSignedIn, &handle, "with an authenticator");
            audit::record_alone(&state.db, &by(&state, actor, &client), record).await?;
            let set = AppendHeaders([
                (header::SET_COOKIE, session::set_cookie(&state.settings, SESSION_COOKIE, &value, SESSION_SECS)),
                (header::SET_COOKIE, session::set_cookie(&state.settings, PRE_SESSION_COOKIE, "", 0)),
            ]);
            Ok((set, Redirect::to("/admin")).into_response())
        }
        _ => sign_in_page(&state, &headers, StatusCode::CONFLICT, Some(ENDED)),
    }
}

async fn start_adding(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    client: ClientInfo,
    AdminForm { session, .. }: AdminForm<CsrfForm>,
) -> PageResult {
    let service = store::admin_service(&state.db, now(&state)).await?;
    let issued = challenge::issue(&state, &challenges, &service, &client).await?;
    // Only this challenge, started by a signed-in admin, may register a key.
    // Nobody has its token yet, so opening it after the insert is not racy.
    challenges.open_registration(&issued.id).await?;
    let page = waiting(&state, true, &issued.id, issued.token, session.csrf_token().to_owned(), None)?;
    Ok(([(header::SET_COOKIE, issued.binding_cookie)], page).into_response())
}

async fn continue_adding(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    headers: HeaderMap,
    cid: Result<Path<String>, PathRejection>,
    AdminForm { session, .. }: AdminForm<CsrfForm>,
) -> PageResult {
    let row = admin_challenge(&state, &challenges, &headers, &path(cid)?).await?;
    let csrf = session.csrf_token().to_owned();
    match (row.status, row.purpose.as_deref()) {
        (Status::Pending, _) => {
            let token = challenge::current_token(&state, &row)?;
            waiting(&state, true, &row.id, token, csrf, Some(NOT_YET))
        }
        (Status::Completed, Some("register")) => match keys::pending(&state.db, &row.id).await? {
            Some(key) => {
                let view = ConfirmView {
                    action: format!("/admin/authenticators/{}", row.id),
                    csrf,
                    code: key.code(&row.id).to_string(),
                    fingerprint: keys::fingerprint(&key.public_key),
                    account: key.account,
                    key_id: key.id,
                    device_ip: key.device_ip,
                    device_user_agent: key.device_user_agent,
                    added_at: store::rfc3339(key.created_at),
                };
                render(StatusCode::OK, &view)
            }
            // Confirmed or refused already, in this tab or another.
            None => Ok(Redirect::to("/admin").into_response()),
        },
        _ => Ok(Redirect::to("/admin?error=authenticator_not_added").into_response()),
    }
}

/// The new key, as the admin must judge it before it may sign in.
#[derive(Template)]
#[template(path = "admin/confirm.html")]
struct ConfirmView {
    action: String,
    csrf: String,
    account: String,
    key_id: String,
    /// The key id of §2.2, in groups of four hex digits.
    fingerprint: String,
    /// The code of §11, which the admin's own authenticator shows.
    code: String,
    device_ip: String,
    device_user_agent: String,
    added_at: String,
}

#[derive(Deserialize)]
struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key_id: String,
}

impl CsrfField for KeyForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The admin saw the same code in their authenticator: the key may sign in.
/// Only the browser that started the challenge may confirm it, with its
/// session's CSRF token, and only the exact key it was shown.
async fn confirm_key(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    client: ClientInfo,
    headers: HeaderMap,
    cid: Result<Path<String>, PathRejection>,
    AdminForm { session, form: body }: AdminForm<KeyForm>,
) -> PageResult {
    let row = admin_challenge(&state, &challenges, &headers, &path(cid)?).await?;
    keys::confirm(&state.db, &row.id, &body.key_id, &by(&state, session.actor(), &client)).await?;
    tracing::info!(challenge = %row.id, "admin authenticator confirmed");
    Ok(Redirect::to("/admin?done=authenticator_added").into_response())
}

/// The codes differ, or the admin does not recognise the device: the key
/// and the account its registration created are removed.
async fn reject_key(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    client: ClientInfo,
    headers: HeaderMap,
    cid: Result<Path<String>, PathRejection>,
    AdminForm { session, .. }: AdminForm<CsrfForm>,
) -> PageResult {
    let row = admin_challenge(&state, &challenges, &headers, &path(cid)?).await?;
    keys::reject(&state.db, &row.id, &by(&state, session.actor(), &client)).await?;
    tracing::warn!(challenge = %row.id, "admin authenticator refused at confirmation");
    Ok(Redirect::to("/admin?done=authenticator_rejected").into_response())
}

async fn delete_authenticator(
    State(state): State<AppState>,
    client: ClientInfo,
    AdminForm { session, form: body }: AdminForm<AccountForm>,
) -> PageResult {
    if body.confirmed != "yes" {
        return AreYouSure {
            title: "Remove this admin authenticator?",
            summary: format!(
                "The admin authenticator {} will be removed: it can no longer sign in to this page, and every \
                 admin session it opened ends at once.",
                body.name
            ),
            lost: Vec::new(),
            action: "/admin/authenticators/delete".to_owned(),
            csrf: &body.csrf,
            fields: vec![("name", &body.name)],
            button: "Remove the authenticator",
            back: "/admin".to_owned(),
        }
        .page();
    }
    store::delete_admin_account(&state.db, &body.name, &by(&state, session.actor(), &client)).await?;
    tracing::info!("admin authenticator removed");
    Ok(Redirect::to("/admin?done=authenticator_removed").into_response())
}
