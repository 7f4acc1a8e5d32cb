//! An account's profile in the JSON API: its display name and email
//! address, read and set by an admin. Each change goes through
//! `signin::profile`, which writes its audit record; an email an admin sets
//! is verified.

use axum::{
    extract::{rejection::PathRejection, Path, State},
    routing::get,
    Json, Router,
};
use serde::{Deserialize, Serialize};
use sesame_proto::wire::ErrorBody;
use utoipa::ToSchema;

use super::{
    api::{self, path, AdminAuth},
    store,
};
use crate::{
    error::Result,
    http::extract::{ApiJson, ClientInfo},
    http::responses::{AdminErrors, BadPath, TooLarge},
    signin::profile::{self, Change, Profile},
    state::{AppState, RouterState},
};

pub(super) fn router<S: RouterState>() -> Router<S> {
    Router::new().route("/admin/api/services/{id}/accounts/{name}/profile", get(get_profile).put(put_profile))
}

/// An account's profile, as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Profile)]
struct ProfileJson {
    /// The name the `profile` scope releases as `name`; `null` when unset.
    #[schema(required = true)]
    display_name: Option<String>,
    /// The address the `email` scope releases; `null` when unset.
    #[schema(required = true)]
    email: Option<String>,
    /// `true` for an address an admin set, `false` for one the person set
    /// (and when there is none).
    email_verified: bool,
}

impl From<Profile> for ProfileJson {
    fn from(p: Profile) -> Self {
        Self { display_name: p.display_name, email: p.email, email_verified: p.email_verified }
    }
}

/// A whole profile: both members are set as given, `null` (or leaving one
/// out) clearing it.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ProfileChange)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    /// 1 to 64 bytes of printable text, not padded with white space, without
    /// bidirectional or zero-width characters; `null` clears it.
    display_name: Option<String>,
    /// `local@domain`, at most 254 bytes; `null` clears it. An address set
    /// here is verified.
    email: Option<String>,
}

/// An account's profile.
#[utoipa::path(
    get,
    path = "/admin/api/services/{id}/accounts/{name}/profile",
    operation_id = "get_account_profile",
    tag = "admin",
    params(("id" = String, Path, description = "The service id."), ("name" = String, Path, description = "The account name, percent-encoded.")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The profile.", body = ProfileJson),
        (status = 404, description = "`unknown_service`, `unknown_account`.", body = ErrorBody),
        AdminErrors,
        BadPath,
    ),
)]
async fn get_profile(
    _: AdminAuth,
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<ProfileJson>> {
    let (id, name) = path(ids)?;
    let service = store::service(&state.db, &id).await?;
    Ok(Json(profile::of_account(&state.db, &service.id, &name).await?.into()))
}

/// Sets an account's profile.
///
/// Both members are written as given; `null` clears one. An email set here
/// is verified, and the change is audited as `profile_changed`.
#[utoipa::path(
    put,
    path = "/admin/api/services/{id}/accounts/{name}/profile",
    operation_id = "put_account_profile",
    tag = "admin",
    params(("id" = String, Path, description = "The service id."), ("name" = String, Path, description = "The account name, percent-encoded.")),
    request_body = ProfileBody,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The profile as set.", body = ProfileJson),
        (status = 400, description = "`invalid_display_name`, `invalid_email`, `invalid_path`, or a body that is not the expected JSON (`invalid_json`, `invalid_body`, `unsupported_media_type`).", body = ErrorBody),
        (status = 404, description = "`unknown_service`, `unknown_account`.", body = ErrorBody),
        AdminErrors,
        TooLarge,
    ),
)]
async fn put_profile(
    _: AdminAuth,
    State(state): State<AppState>,
    client: ClientInfo,
    ids: Result<Path<(String, String)>, PathRejection>,
    ApiJson(body): ApiJson<ProfileBody>,
) -> Result<Json<ProfileJson>> {
    let (id, name) = path(ids)?;
    let service = store::service(&state.db, &id).await?;
    let change = Change::parse(body.display_name.as_deref(), body.email.as_deref())?;
    let profile = profile::set_by_admin(&state.db, &service.id, &name, &change, &api::by(&state, &client)).await?;
    tracing::info!(service = %service.id, "account profile set");
    Ok(Json(profile.into()))
}
