//! The admin API's recovery links (docs/PROTOCOL.md §12): making one for an
//! account that lost every authenticator, listing an account's links, and
//! revoking one. The queries live in `recovery`; the admin page's form goes
//! through the same functions.
//!
//! A link's secret exists only in the answer that creates it: the list
//! shows each link's state, never a URL.

use axum::{
    extract::{rejection::PathRejection, Path, State},
    http::StatusCode,
    routing::{delete, post},
    Json, Router,
};
use serde::{Deserialize, Serialize};
use sesame_proto::wire::ErrorBody;
use utoipa::ToSchema;

use super::{
    api::{by, path, AdminAuth},
    store,
};
use crate::{
    error::Result,
    http::extract::{ApiJson, ClientInfo},
    http::responses::{AdminErrors, BadPath, TooLarge},
    signin::recovery::{self, LinkInfo},
    state::AppState,
    state::RouterState,
};

pub(super) fn router<S: RouterState>() -> Router<S> {
    Router::new()
        .route("/admin/api/services/{id}/accounts/{name}/enrollments", post(create_link).get(list_links))
        .route("/admin/api/services/{id}/accounts/{name}/enrollments/{link_id}", delete(revoke_link))
}

/// A day, the longest a link may live, unless the admin asks for less.
const DEFAULT_TTL_SECS: i64 = recovery::MAX_TTL_SECS;

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = NewRecoveryLink)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateLink {
    /// How long the link may be used, in seconds: 60 to 86400 (a day, the
    /// default).
    #[serde(default)]
    #[schema(minimum = 60, maximum = 86400)]
    ttl_secs: Option<i64>,
    /// Whether confirming a key through the link removes every other key of
    /// the account (and ends their sessions). `false` when absent.
    #[serde(default)]
    revoke_other_keys: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = RecoveryLinkCreated)]
struct CreatedJson {
    id: String,
    /// The link to hand to the account's owner. It is shown only here: the
    /// server keeps only a hash of its secret.
    url: String,
    /// RFC 3339.
    expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = RecoveryLink)]
pub(super) struct LinkJson {
    id: String,
    revoke_other_keys: bool,
    /// Who made it, as the audit log names them: `token` or
    /// `authenticator:<account name>`.
    created_by: String,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
    expires_at: String,
    /// RFC 3339; `null` until a key is confirmed through the link.
    #[schema(required = true)]
    used_at: Option<String>,
    /// RFC 3339; `null` unless an admin revoked it.
    #[schema(required = true)]
    revoked_at: Option<String>,
    /// `active`, `used`, `revoked` or `expired`.
    #[schema(value_type = String)]
    state: &'static str,
}

impl LinkJson {
    pub(super) fn of(link: LinkInfo, now: i64) -> Self {
        Self {
            state: state_of(&link, now),
            id: link.id,
            revoke_other_keys: link.revoke_other_keys,
            created_by: link.created_by,
            created_at: store::rfc3339(link.created_at),
            expires_at: store::rfc3339(link.expires_at),
            used_at: link.used_at.map(store::rfc3339),
            revoked_at: link.revoked_at.map(store::rfc3339),
        }
    }
}

/// A link's state at `now`. Use and revocation are final, so they come
/// before the clock.
pub(super) fn state_of(link: &LinkInfo, now: i64) -> &'static str {
    if link.used_at.is_some() {
        "used"
    } else if link.revoked_at.is_some() {
        "revoked"
    } else if link.expires_at <= now {
        "expired"
    } else {
        "active"
    }
}

/// Makes a one-time recovery link for an account.
///
/// Whoever opens the link before it expires can add an authenticator to the
/// account, after confirming a six-digit code on that page
/// (PROTOCOL.md §11, §12). The URL is in this answer only.
#[utoipa::path(
    post,
    path = "/admin/api/services/{id}/accounts/{name}/enrollments",
    operation_id = "create_recovery_link",
    tag = "admin",
    params(("id" = String, Path, description = "The service id."), ("name" = String, Path, description = "The account name, percent-encoded.")),
    request_body = CreateLink,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "The link, shown this once.", body = CreatedJson),
        (status = 400, description = "`invalid_ttl` (outside 60 to 86400), `invalid_path`, or a body that is not the expected JSON (`invalid_json`, `invalid_body`, `unsupported_media_type`).", body = ErrorBody),
        (status = 404, description = "`unknown_service` (the built-in admin service too), `unknown_account`.", body = ErrorBody),
        AdminErrors,
        TooLarge,
    ),
)]
async fn create_link(
    _: AdminAuth,
    State(state): State<AppState>,
    client: ClientInfo,
    ids: Result<Path<(String, String)>, PathRejection>,
    ApiJson(body): ApiJson<CreateLink>,
) -> Result<(StatusCode, Json<CreatedJson>)> {
    let (id, name) = path(ids)?;
    let service = store::service(&state.db, &id).await?;
    let ttl = body.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    let created =
        recovery::create(&state.db, &service.id, &name, ttl, body.revoke_other_keys, &by(&state, &client)).await?;
    tracing::info!(service = %service.id, link = %created.id, "recovery link created");
    let url = format!("{}{}", state.settings.origin, created.path);
    Ok((StatusCode::CREATED, Json(CreatedJson { id: created.id, url, expires_at: store::rfc3339(created.expires_at) })))
}

/// Lists an account's recovery links, newest first, without their secrets.
#[utoipa::path(
    get,
    path = "/admin/api/services/{id}/accounts/{name}/enrollments",
    operation_id = "list_recovery_links",
    tag = "admin",
    params(("id" = String, Path, description = "The service id."), ("name" = String, Path, description = "The account name, percent-encoded.")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The links.", body = Vec<LinkJson>),
        (status = 404, description = "`unknown_service`, `unknown_account`.", body = ErrorBody),
        AdminErrors,
        BadPath,
    ),
)]
async fn list_links(
    _: AdminAuth,
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Vec<LinkJson>>> {
    let (id, name) = path(ids)?;
    let service = store::service(&state.db, &id).await?;
    // The account must exist: an empty list would not tell a typo apart.
    crate::signin::keys::list(&state.db, &service.id, &name).await?;
    let now = state.clock.now().as_secs() as i64;
    let links = recovery::list(&state.db, &service.id, &name).await?;
    Ok(Json(links.into_iter().map(|l| LinkJson::of(l, now)).collect()))
}

/// Revokes an unused recovery link: it opens nothing from now on, and a
/// page already open from it can no longer confirm a key.
#[utoipa::path(
    delete,
    path = "/admin/api/services/{id}/accounts/{name}/enrollments/{link_id}",
    operation_id = "revoke_recovery_link",
    tag = "admin",
    params(("id" = String, Path, description = "The service id."), ("name" = String, Path, description = "The account name, percent-encoded."), ("link_id" = String, Path, description = "The link's id.")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Revoked."),
        (status = 404, description = "`unknown_service`, `unknown_recovery_link` (no such unused, unrevoked link of this account).", body = ErrorBody),
        AdminErrors,
        BadPath,
    ),
)]
async fn revoke_link(
    _: AdminAuth,
    State(state): State<AppState>,
    client: ClientInfo,
    ids: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<StatusCode> {
    let (id, name, link_id) = path(ids)?;
    let service = store::service(&state.db, &id).await?;
    recovery::revoke(&state.db, &service.id, &name, &link_id, &by(&state, &client)).await?;
    tracing::info!(service = %service.id, link = %link_id, "recovery link revoked");
    Ok(StatusCode::NO_CONTENT)
}
