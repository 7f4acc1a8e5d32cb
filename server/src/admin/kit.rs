//! The admin pages' kit: the error page, rendering, and what every form
//! handler needs (its body or path checked, its session found, the audit
//! record's author). Pages and forms use it; it uses none of them.

use askama::Template;
use axum::{
    extract::{
        rejection::{FormRejection, PathRejection},
        Path,
    },
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
    Form,
};

use super::session::AdminSession;
use crate::{
    audit::{Actor, By},
    error::{Error, LoggedError},
    http::cookie,
    http::extract::ClientInfo,
    state::AppState,
};

pub(super) type PageResult = Result<Response, PageError>;

/// An [`Error`] shown as an HTML page, with the status the JSON API would use.
#[derive(Debug)]
pub(crate) struct PageError(Error);

impl<E: Into<Error>> From<E> for PageError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

#[derive(Template)]
#[template(path = "admin/error.html")]
struct ErrorView {
    status: u16,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        // The variant's own text is safe to show: internal details live only
        // in `LoggedError`, which the JSON response carries for the log.
        let message = match &self.0 {
            Error::Database(sqlx::Error::PoolTimedOut) => Error::Unavailable.to_string(),
            other => other.to_string(),
        };
        let json = self.0.into_response();
        let status = json.status();
        let view = ErrorView { status: status.as_u16(), message };
        let body = view.render().unwrap_or_else(|_| "The admin page could not be shown.".to_owned());
        let mut response = (status, no_store(), Html(body)).into_response();
        if let Some(retry_after) = json.headers().get(header::RETRY_AFTER) {
            response.headers_mut().insert(header::RETRY_AFTER, retry_after.clone());
        }
        if let Some(logged) = json.extensions().get::<LoggedError>() {
            response.extensions_mut().insert(logged.clone());
        }
        response
    }
}

/// Admin pages show secrets (CSRF tokens) and private data: never cache them.
fn no_store() -> [(header::HeaderName, &'static str); 1] {
    [(header::CACHE_CONTROL, "no-store")]
}

pub(super) fn render(status: StatusCode, view: &impl Template) -> PageResult {
    let body = view.render().map_err(|e| Error::Internal(anyhow::anyhow!("template: {e}")))?;
    Ok((status, no_store(), Html(body)).into_response())
}

pub(super) fn now(state: &AppState) -> i64 {
    state.clock.now().as_secs() as i64
}

/// Who the audit log names for a request: `actor`, from `client`, now.
pub(super) fn by<'a>(state: &AppState, actor: &'a Actor, client: &'a ClientInfo) -> By<'a> {
    By { actor, client, at: now(state) }
}

/// Form bodies that do not parse get a plain 400 page, not axum's text.
pub(super) fn form<T>(extracted: Result<Form<T>, FormRejection>) -> Result<T, PageError> {
    match extracted {
        Ok(Form(value)) => Ok(value),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Error::PayloadTooLarge.into()),
        Err(_) => {
            Err(Error::bad_request("invalid_form", "the form was incomplete or malformed; reload the page").into())
        }
    }
}

pub(super) fn path<T>(extracted: Result<Path<T>, PathRejection>) -> Result<T, PageError> {
    extracted
        .map(|Path(value)| value)
        .map_err(|_| Error::bad_request("invalid_path", "the URL path is malformed").into())
}

/// The session behind a form, after the origin check; a POST without one is
/// told to sign in.
pub(super) async fn form_session(state: &AppState, headers: &HeaderMap) -> Result<AdminSession, PageError> {
    cookie::check_origin(&state.settings.origin, headers)?;
    AdminSession::find(state, headers).await?.ok_or(PageError(Error::AdminAuthRequired))
}

/// What a destructive action is about to do, asked on a page of its own
/// before it is done: the action's form again, with `confirmed=yes`. It
/// needs no JavaScript, and the second post passes every check of the
/// first (origin, session, CSRF token).
#[derive(Template)]
#[template(path = "admin/are_you_sure.html")]
pub(super) struct AreYouSure<'a> {
    pub(super) title: &'a str,
    /// One sentence: what is about to go.
    pub(super) summary: String,
    /// What goes with it, one line each (counts, consequences).
    pub(super) lost: Vec<String>,
    /// The action's URL, posted again once confirmed.
    pub(super) action: String,
    pub(super) csrf: &'a str,
    /// The action's own form fields, sent again as they came.
    pub(super) fields: Vec<(&'a str, &'a str)>,
    /// The button that does it.
    pub(super) button: &'a str,
    /// Where "Keep it" goes.
    pub(super) back: String,
}

impl AreYouSure<'_> {
    pub(super) fn page(&self) -> PageResult {
        render(StatusCode::OK, self)
    }
}

/// "3 accounts", "1 account", "no account".
pub(super) fn count(n: i64, one: &str, many: &str) -> String {
    match n {
        0 => format!("no {one}"),
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}
