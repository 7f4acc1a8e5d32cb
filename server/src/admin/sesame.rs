//! Signing in to the admin page with a Sesame authenticator, as an account
//! of the built-in "Sesame admin" service.
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
//! The waiting page has no script: the admin approves in the authenticator,
//! then presses "Continue", which either finishes or shows a fresh code.

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
use qrcode::{render::svg, EcLevel, QrCode};
use serde::Deserialize;
use sesame_proto::{wire::Status, BaseToken, FreshnessSecret};

use super::{
    pages::{form, form_session, path, render, sign_in_page, AccountForm, PageError, PageResult},
    session::{self, AdminSession, PRE_SESSION_COOKIE, SESSION_COOKIE, SESSION_SECS},
    store,
};
use crate::{
    challenge::{self, store::ChallengeRow},
    cookie,
    error::{Error, Result},
    extract::ClientInfo,
    AppState,
};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/sesame", post(start_sign_in))
        .route("/admin/sesame/{cid}", post(continue_sign_in))
        .route("/admin/authenticators", post(start_adding))
        .route("/admin/authenticators/{cid}", post(continue_adding))
        .route("/admin/authenticators/delete", post(delete_authenticator))
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

#[derive(Template)]
#[template(path = "admin/sesame.html")]
struct WaitingView {
    adding: bool,
    token: String,
    /// Inline SVG drawn by the `qrcode` crate from the token: only shapes,
    /// no user data.
    qr_svg: String,
    action: String,
    csrf: String,
    message: Option<&'static str>,
}

fn now(state: &AppState) -> i64 {
    state.clock.now().as_secs() as i64
}

/// The sign-in form's double-submit check, as in `pages::sign_in`.
fn check_pre_session(state: &AppState, headers: &HeaderMap, presented: &str) -> Result<()> {
    cookie::check_origin(&state.settings, headers)?;
    let expected = cookie::secret(headers, PRE_SESSION_COOKIE);
    if !expected.is_some_and(|expected| cookie::same_secret(expected, presented)) {
        return Err(Error::CsrfRejected);
    }
    Ok(())
}

fn qr_svg(token: &str) -> Result<String> {
    let code = QrCode::with_error_correction_level(token.as_bytes(), EcLevel::M)
        .map_err(|e| Error::Internal(anyhow::anyhow!("cannot make a QR code: {e}")))?;
    let svg = code.render::<svg::Color<'_>>().min_dimensions(256, 256).quiet_zone(true).build();
    // Inline SVG in HTML takes no XML declaration.
    Ok(svg.find("<svg").map_or(svg.clone(), |start| svg[start..].to_owned()))
}

/// The token as it should be shown now: the signed base with the current
/// step's code.
fn current_token(state: &AppState, row: &ChallengeRow) -> Result<String> {
    let base = BaseToken::from_stored(row.base_token.clone(), state.identity.public_key())?;
    let secret: [u8; 32] = row
        .code_secret
        .as_slice()
        .try_into()
        .map_err(|_| Error::Internal(anyhow::anyhow!("stored challenge has a corrupt code secret")))?;
    Ok(base.at_step(&FreshnessSecret::from_bytes(secret), base.step_at(state.clock.now())))
}

fn waiting(adding: bool, token: String, action: String, csrf: String, message: Option<&'static str>) -> PageResult {
    let view = WaitingView { adding, qr_svg: qr_svg(&token)?, token, action, csrf, message };
    render(StatusCode::OK, &view)
}

/// The challenge `cid`, for the browser that started it, if it belongs to the
/// admin service.
async fn admin_challenge(state: &AppState, headers: &HeaderMap, cid: &str) -> Result<ChallengeRow> {
    let row = challenge::for_browser(state, cid, headers).await?;
    if row.service_id.to_string() != store::admin_service(&state.db, now(state)).await? {
        return Err(Error::UnknownChallenge);
    }
    Ok(row)
}

const NOT_YET: &str = "Not approved yet. Approve in your authenticator (here is a fresh code), then continue.";
const ENDED: &str = "That sign-in was refused, cancelled or timed out. Start again.";

async fn start_sign_in(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Result<Form<CsrfForm>, FormRejection>,
) -> PageResult {
    let csrf = form(body)?.csrf;
    check_pre_session(&state, &headers, &csrf)?;
    let service = store::admin_service(&state.db, now(&state)).await?;
    let issued = challenge::issue(&state, &service, &client, &headers).await?;
    let page = waiting(false, issued.token, format!("/admin/sesame/{}", issued.id), csrf, None)?;
    Ok(([(header::SET_COOKIE, issued.binding_cookie)], page).into_response())
}

async fn continue_sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    cid: Result<Path<String>, PathRejection>,
    body: Result<Form<CsrfForm>, FormRejection>,
) -> PageResult {
    let csrf = form(body)?.csrf;
    check_pre_session(&state, &headers, &csrf)?;
    let row = admin_challenge(&state, &headers, &path(cid)?).await?;
    match row.status {
        Status::Pending => {
            let token = current_token(&state, &row)?;
            waiting(false, token, format!("/admin/sesame/{}", row.id), csrf, Some(NOT_YET))
        }
        Status::Completed => {
            // One completed challenge, one session: the first request to
            // set `redeemed_at` wins.
            let done = sqlx::query(
                "UPDATE challenge SET redeemed_at = $2 WHERE id = $1 AND status = 'completed' AND redeemed_at IS NULL",
            )
            .bind(row.id.to_string())
            .bind(now(&state))
            .execute(&state.db.pool)
            .await
            .map_err(Error::from)?;
            if done.rows_affected() == 0 {
                return Err(Error::AlreadyRedeemed.into());
            }
            let (value, _) = AdminSession::create(&state.db, now(&state)).await?;
            tracing::info!(challenge = %row.id, "admin signed in with an authenticator");
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
    client: ClientInfo,
    headers: HeaderMap,
    body: Result<Form<CsrfForm>, FormRejection>,
) -> PageResult {
    let session = form_session(&state, &headers).await?;
    session.check_csrf(&form(body)?.csrf)?;
    let service = store::admin_service(&state.db, now(&state)).await?;
    let issued = challenge::issue(&state, &service, &client, &headers).await?;
    // Only this challenge, started by a signed-in admin, may register a key.
    // Nobody has its token yet, so opening it after the insert is not racy.
    sqlx::query("UPDATE challenge SET allow_register = TRUE WHERE id = $1")
        .bind(issued.id.to_string())
        .execute(&state.db.pool)
        .await
        .map_err(Error::from)?;
    let action = format!("/admin/authenticators/{}", issued.id);
    let page = waiting(true, issued.token, action, session.csrf_token().to_owned(), None)?;
    Ok(([(header::SET_COOKIE, issued.binding_cookie)], page).into_response())
}

async fn continue_adding(
    State(state): State<AppState>,
    headers: HeaderMap,
    cid: Result<Path<String>, PathRejection>,
    body: Result<Form<CsrfForm>, FormRejection>,
) -> PageResult {
    let session = form_session(&state, &headers).await?;
    session.check_csrf(&form(body)?.csrf)?;
    let row = admin_challenge(&state, &headers, &path(cid)?).await?;
    match (row.status, row.purpose.as_deref()) {
        (Status::Pending, _) => {
            let token = current_token(&state, &row)?;
            let action = format!("/admin/authenticators/{}", row.id);
            waiting(true, token, action, session.csrf_token().to_owned(), Some(NOT_YET))
        }
        (Status::Completed, Some("register")) => Ok(Redirect::to("/admin?done=authenticator_added").into_response()),
        _ => Ok(Redirect::to("/admin?error=authenticator_not_added").into_response()),
    }
}

async fn delete_authenticator(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Form<AccountForm>, FormRejection>,
) -> Result<impl IntoResponse, PageError> {
    let session = form_session(&state, &headers).await?;
    let body = form(body)?;
    session.check_csrf(&body.csrf)?;
    store::delete_admin_account(&state.db, &body.name, now(&state)).await?;
    tracing::info!("admin authenticator removed");
    Ok(Redirect::to("/admin?done=authenticator_removed"))
}
