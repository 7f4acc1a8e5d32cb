//! `AdminForm<T>`: a form posted from an admin page by a signed-in admin.
//!
//! Every change on the admin page passes the same checks, in this order: the
//! `Origin` header does not name another site, the browser holds a live
//! admin session, the body is a well-formed form, and it carries that
//! session's CSRF token. One extractor does all four, so a handler can
//! neither forget one nor run them in another order.

use axum::{
    extract::{FromRef, FromRequest, Request},
    Form,
};
use serde::{de::DeserializeOwned, Deserialize};
use tracing::instrument;

use super::{
    kit::{form, form_session, PageError},
    session::AdminSession,
};
use crate::state::AppState;

/// A form that carries the session's CSRF token.
pub(super) trait CsrfField {
    fn csrf(&self) -> &str;
}

/// The checked session, and the form it sent.
#[derive(Debug)]
pub(super) struct AdminForm<T> {
    pub(super) session: AdminSession,
    pub(super) form: T,
}

impl<S, T> FromRequest<S> for AdminForm<T>
where
    S: Send + Sync,
    AppState: FromRef<S>,
    T: DeserializeOwned + CsrfField + Send,
{
    type Rejection = PageError;

    #[instrument(skip_all)]
    async fn from_request(request: Request, state: &S) -> Result<Self, PageError> {
        let state = &AppState::from_ref(state);
        let (parts, body) = request.into_parts();
        // The session comes before the body is read: a request without one
        // is told to sign in, whatever it sent.
        let session = form_session(state, &parts.headers).await?;
        let form = form(Form::<T>::from_request(Request::from_parts(parts, body), state).await)?;
        session.check_csrf(form.csrf())?;
        Ok(Self { session, form })
    }
}

/// A form with nothing but the CSRF token: a button.
#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub(super) csrf: String,
    /// `yes` once the person confirmed a destructive action on its own page
    /// (`kit::AreYouSure`).
    #[serde(default)]
    pub(super) confirmed: String,
}

impl CsrfField for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A form that names an account: an account of a service, or an admin
/// authenticator.
#[derive(Deserialize)]
pub(super) struct AccountForm {
    #[serde(default)]
    pub(super) csrf: String,
    #[serde(default)]
    pub(super) name: String,
    /// As in [`CsrfForm::confirmed`].
    #[serde(default)]
    pub(super) confirmed: String,
}

impl CsrfField for AccountForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}
