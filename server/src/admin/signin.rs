//! Signing in to the admin page with the admin token, signing out, and
//! ending any admin session from the sessions list. (Signing in with a
//! Sesame authenticator instead is `sesame`.)
//!
//! The sign-in form has no session yet to carry a CSRF token for, so it
//! carries a double-submit one: a cookie of its own, set with the form,
//! that the posted form must repeat.

use askama::Template;
use axum::{
    extract::{rejection::FormRejection, State},
    http::{header, HeaderMap, StatusCode},
    response::{AppendHeaders, IntoResponse, Redirect},
    routing::post,
    Form, Router,
};
use serde::Deserialize;

use super::{
    form::{AdminForm, CsrfField, CsrfForm},
    kit::{by, form, now, render, PageResult},
    session::{self, AdminSession, Credential, PRE_SESSION_COOKIE, PRE_SESSION_SECS, SESSION_COOKIE, SESSION_SECS},
};
use crate::{
    audit::{self, Action, Actor, Record},
    error::Error,
    http::cookie,
    http::extract::ClientInfo,
    state::{AppState, RouterState},
};

pub(super) fn router<S: RouterState>() -> Router<S> {
    Router::new()
        .route("/admin/signin", post(sign_in))
        .route("/admin/signout", post(sign_out))
        .route("/admin/sessions/end", post(end_session))
}

#[derive(Template)]
#[template(path = "admin/signin.html")]
struct SignInView {
    csrf: String,
    error: Option<&'static str>,
}

/// The sign-in form, with its double-submit cookie. A browser that already
/// has a well-formed cookie keeps it, so two open tabs both work.
pub(super) fn sign_in_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&'static str>,
) -> PageResult {
    let csrf = cookie::secret(&state.settings.origin, headers, PRE_SESSION_COOKIE)
        .map_or_else(cookie::new_secret, str::to_owned);
    let cookie = session::set_cookie(&state.settings, PRE_SESSION_COOKIE, &csrf, PRE_SESSION_SECS);
    let page = render(status, &SignInView { csrf, error })?;
    Ok(([(header::SET_COOKIE, cookie)], page).into_response())
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

async fn sign_in(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Result<Form<SignInForm>, FormRejection>,
) -> PageResult {
    cookie::check_origin(&state.settings.origin, &headers)?;
    let body = form(body)?;
    let expected = cookie::secret(&state.settings.origin, &headers, PRE_SESSION_COOKIE);
    if !expected.is_some_and(|expected| cookie::same_secret(expected, &body.csrf)) {
        return Err(Error::CsrfRejected.into());
    }
    if let Err(limited) = state.limits.submissions.check(client.ip).await {
        let mut page = sign_in_page(
            &state,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many attempts from this address. Wait a minute and try again."),
        )?;
        if let Some(secs) = limited.retry_after() {
            page.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        return Ok(page);
    }
    if !state.admin_token.matches(body.token.trim()) {
        tracing::info!(ip = %client.ip, "admin sign-in refused");
        // What was typed is never recorded: it may be the token with a typo.
        let record = Record::new(Action::AdminSignInRefused, "", "wrong admin token");
        audit::record_alone(&state.db, &by(&state, &Actor::Anonymous, &client), record).await?;
        return sign_in_page(&state, &headers, StatusCode::UNAUTHORIZED, Some("That is not the admin token."));
    }
    let credential = Credential::Token(&state.admin_token);
    let (value, session) = AdminSession::create(&state.db, credential, &client, now(&state)).await?;
    tracing::info!(ip = %client.ip, "admin signed in");
    // After the session exists, which its creation checks; a crash in
    // between loses this record, never invents one.
    let handle = session.handle();
    let record = Record::new(Action::AdminSignedIn, &handle, "with the admin token");
    audit::record_alone(&state.db, &by(&state, session.actor(), &client), record).await?;
    let set = AppendHeaders([
        (header::SET_COOKIE, session::set_cookie(&state.settings, SESSION_COOKIE, &value, SESSION_SECS)),
        (header::SET_COOKIE, session::set_cookie(&state.settings, PRE_SESSION_COOKIE, "", 0)),
    ]);
    Ok((set, Redirect::to("/admin")).into_response())
}

async fn sign_out(
    State(state): State<AppState>,
    client: ClientInfo,
    AdminForm { session, .. }: AdminForm<CsrfForm>,
) -> PageResult {
    let actor = session.actor().clone();
    session.end(&state.db, &by(&state, &actor, &client)).await?;
    let clear = session::set_cookie(&state.settings, SESSION_COOKIE, "", 0);
    Ok(([(header::SET_COOKIE, clear)], Redirect::to("/admin")).into_response())
}

#[derive(Deserialize)]
struct SessionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    handle: String,
}

impl CsrfField for SessionForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Ends any live admin session, this one included (the next page then asks
/// to sign in).
async fn end_session(
    State(state): State<AppState>,
    client: ClientInfo,
    AdminForm { session, form: body }: AdminForm<SessionForm>,
) -> PageResult {
    if !AdminSession::end_by_handle(&state.db, &body.handle, &by(&state, session.actor(), &client)).await? {
        return Err(Error::bad_request("unknown_session", "that session has already ended").into());
    }
    tracing::info!("admin session ended from the sessions list");
    Ok(Redirect::to("/admin?done=session_ended").into_response())
}
