//! The admin page's changes to services: one created, one deleted with
//! everything in it, its number matching and the kinds of key it takes
//! set, one of its accounts deleted.
//!
//! Every change is a POST form carrying the session's CSRF token, refused
//! when the browser says it comes from another origin ([`AdminForm`]), and
//! answered with a 303 back to a page (post/redirect/get), so reloading
//! never repeats it. A deletion first shows what it would take with it and
//! asks ([`AreYouSure`]).

use axum::{
    extract::{rejection::PathRejection, Path, State},
    response::{IntoResponse, Redirect},
    routing::post,
    Router,
};
use serde::Deserialize;
use sesame_proto::ServiceName;

use super::{
    form::{AccountForm, AdminForm, CsrfField, CsrfForm},
    kit::{by, count, now, path, AreYouSure, PageResult},
    store,
};
use crate::{
    challenge::{Challenges, SignInState},
    error::Error,
    http::extract::ClientInfo,
    signin::passkey::store::{set_policy, KeyKinds},
    state::AppState,
};

pub(super) fn router<S: SignInState>() -> Router<S> {
    Router::new()
        .route("/admin/services", post(create_service))
        .route("/admin/services/{id}/delete", post(delete_service))
        .route("/admin/services/{id}/number-matching", post(set_number_matching))
        .route("/admin/services/{id}/passkeys", post(set_passkeys))
        .route("/admin/services/{id}/accounts/delete", post(delete_account))
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    number_matching: Option<String>,
}

impl CsrfField for CreateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn create_service(
    State(state): State<AppState>,
    client: ClientInfo,
    AdminForm { session, form: body }: AdminForm<CreateForm>,
) -> PageResult {
    let Ok(name) = ServiceName::parse(&body.name) else {
        return Ok(Redirect::to("/admin?error=invalid_service_name").into_response());
    };
    let number_matching = body.number_matching.is_some();
    match store::create_service(&state.db, &name, number_matching, &by(&state, session.actor(), &client)).await {
        Ok(service) => {
            tracing::info!(id = %service.id, "service created");
            Ok(Redirect::to("/admin?done=created").into_response())
        }
        Err(Error::ServiceNameTaken { existing, .. }) => {
            // The page names the service only if one of that name is there.
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("error", "service_exists")
                .append_pair("existing", &existing)
                .finish();
            Ok(Redirect::to(&format!("/admin?{query}")).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

async fn delete_service(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form }: AdminForm<CsrfForm>,
) -> PageResult {
    let id = path(id)?;
    if form.confirmed != "yes" {
        let service = store::service(&state.db, &id).await?;
        let held = store::service_footprint(&state.db, &id, now(&state)).await?;
        let mut lost = vec![
            count(held.accounts, "account", "accounts"),
            count(held.keys, "authenticator key", "authenticator keys"),
            format!("{} signed in now", count(held.sessions, "session", "sessions")),
            count(held.recovery_links, "open recovery link", "open recovery links"),
            "its sign-in history".to_owned(),
        ];
        if held.applications > 0 {
            let credentials =
                if held.applications == 1 { "its client id and secret" } else { "their client ids and secrets" };
            lost.push(format!(
                "{}, with {credentials}: nothing that uses them can sign anyone in any more",
                count(held.applications, "application", "applications")
            ));
        }
        return AreYouSure {
            title: "Delete this service?",
            summary: format!("The service {} will be deleted with everything in it.", service.name),
            lost,
            action: format!("/admin/services/{id}/delete"),
            csrf: &form.csrf,
            fields: Vec::new(),
            button: "Delete the service",
            back: format!("/admin/services/{id}"),
        }
        .page();
    }
    store::delete_service(&state.db, &challenges, &id, &by(&state, session.actor(), &client)).await?;
    tracing::info!(%id, "service deleted");
    Ok(Redirect::to("/admin?done=service_deleted").into_response())
}

#[derive(Deserialize)]
struct NumberMatchingForm {
    #[serde(default)]
    csrf: String,
    /// `1` to turn it on, `0` to turn it off: the form says which, so that
    /// sending it twice does not undo it.
    #[serde(default)]
    on: String,
}

impl CsrfField for NumberMatchingForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn set_number_matching(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form: body }: AdminForm<NumberMatchingForm>,
) -> PageResult {
    let id = path(id)?;
    let on = match body.on.as_str() {
        "1" => true,
        "0" => false,
        _ => return Err(Error::bad_request("invalid_form", "the form must say whether to turn it on or off").into()),
    };
    store::set_number_matching(&state.db, &challenges, &id, on, &by(&state, session.actor(), &client)).await?;
    tracing::info!(service = %id, on, "number matching changed");
    let done = if on { "number_matching_on" } else { "number_matching_off" };
    Ok(Redirect::to(&format!("/admin/services/{id}?done={done}")).into_response())
}

#[derive(Deserialize)]
struct PasskeysForm {
    #[serde(default)]
    csrf: String,
    /// `sesame`, `passkey` or `both`.
    #[serde(default)]
    key_kinds: String,
    /// Present (a ticked checkbox) when passkeys must verify their user.
    #[serde(default)]
    require_user_verification: Option<String>,
}

impl CsrfField for PasskeysForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Which kinds of key sign in to a service, and whether a passkey must
/// verify its user.
async fn set_passkeys(
    State(state): State<AppState>,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form: body }: AdminForm<PasskeysForm>,
) -> PageResult {
    let id = path(id)?;
    let kinds = KeyKinds::parse(&body.key_kinds)
        .ok_or_else(|| Error::bad_request("invalid_key_kinds", "choose Sesame keys, passkeys, or both"))?;
    let verify = body.require_user_verification.is_some();
    let by = by(&state, session.actor(), &client);
    set_policy(&state.db, &id, kinds, verify, &by).await?;
    tracing::info!(service = %id, key_kinds = kinds.as_str(), verify, "key kinds changed");
    Ok(Redirect::to(&format!("/admin/services/{id}?done=key_kinds_changed")).into_response())
}

/// The account name travels in the form, not the URL, so names with `/`,
/// `?` or `#` need no URL encoding.
async fn delete_account(
    State(state): State<AppState>,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form: body }: AdminForm<AccountForm>,
) -> PageResult {
    let id = path(id)?;
    if body.confirmed != "yes" {
        store::service(&state.db, &id).await?;
        let held = store::account_footprint(&state.db, &id, &body.name, now(&state)).await?;
        if held.accounts == 0 {
            return Err(Error::UnknownAccount.into());
        }
        return AreYouSure {
            title: "Delete this account?",
            summary: format!("The account {} will be deleted.", body.name),
            lost: vec![
                count(held.keys, "authenticator key", "authenticator keys"),
                format!("{} signed in now", count(held.sessions, "session", "sessions")),
                count(held.recovery_links, "open recovery link", "open recovery links"),
            ],
            action: format!("/admin/services/{id}/accounts/delete"),
            csrf: &body.csrf,
            fields: vec![("name", &body.name)],
            button: "Delete the account",
            back: format!("/admin/services/{id}"),
        }
        .page();
    }
    store::delete_account(&state.db, &id, &body.name, &by(&state, session.actor(), &client)).await?;
    tracing::info!(service = %id, "account deleted");
    Ok(Redirect::to(&format!("/admin/services/{id}?done=account_deleted")).into_response())
}
