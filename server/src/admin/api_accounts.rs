//! A service's accounts and their keys in the admin JSON API: the accounts
//! listed a page at a time, one deleted with everything it holds, and its
//! keys listed or one removed. The admin page does the same through the
//! same queries (`store`, `signin::keys`).

use axum::{
    extract::{
        rejection::{PathRejection, QueryRejection},
        Path, Query, State,
    },
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get},
    Json, Router,
};
use serde::{Deserialize, Serialize};
use sesame_proto::wire::ErrorBody;
use utoipa::{IntoParams, ToSchema};

use super::{
    api::{by, path, AdminAuth},
    store,
};
use crate::{
    error::{Error, Result},
    http::extract::ClientInfo,
    http::responses::{AdminErrors, BadPath},
    signin::keys,
    state::{AppState, RouterState},
};

pub(super) fn router<S: RouterState>() -> Router<S> {
    Router::new()
        .route("/admin/api/services/{id}/accounts", get(list_accounts))
        .route("/admin/api/services/{id}/accounts/{name}", delete(delete_account))
        .route("/admin/api/services/{id}/accounts/{name}/keys", get(list_keys))
        .route("/admin/api/services/{id}/accounts/{name}/keys/{key_id}", delete(delete_key))
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Account)]
struct AccountJson {
    name: String,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339; `null` before the first login.
    #[schema(required = true)]
    last_login_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AccountKey)]
struct KeyJson {
    id: String,
    label: String,
    /// `active`, or `pending` while the key waits for confirmation.
    #[schema(value_type = String)]
    state: &'static str,
    /// The key id of PROTOCOL.md §2.2; `null` for a passkey.
    #[schema(required = true)]
    fingerprint: Option<String>,
    /// `sesame` for a Sesame key, `passkey` for a passkey (WebAuthn).
    kind: String,
    /// The address of the authenticator that registered the key.
    device_ip: String,
    /// Its user agent.
    device_user_agent: String,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339; `null` before the key's first login.
    #[schema(required = true)]
    last_used_at: Option<String>,
    /// The address of the browser that the key last signed in; empty
    /// before its first login, or when it last signed in before Sesame
    /// recorded the address.
    last_used_ip: String,
}

/// A page of a service's accounts: `?limit=` and `?offset=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AccountsQuery {
    /// How many accounts, 1 to 1000; every account when absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// How many accounts to skip first; 0 when absent.
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// The most accounts one page of `GET …/accounts` returns.
const MAX_ACCOUNTS_LIMIT: i64 = 1000;

/// Lists a service's accounts, oldest first.
///
/// With `limit`, a page of them; a `Link` header with `rel="next"` then
/// names the next page while there is one.
#[utoipa::path(
    get,
    path = "/admin/api/services/{id}/accounts",
    operation_id = "list_accounts",
    tag = "admin",
    params(("id" = String, Path, description = "The service id."), AccountsQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The accounts.", body = Vec<AccountJson>, headers(
            ("Link" = String, description = "With `limit`, while more accounts follow: `<…/accounts?limit=L&offset=O>; rel=\"next\"`."),
        )),
        (status = 400, description = "`invalid_path`: a path segment does not decode; `invalid_limit` or `invalid_offset` (out of range); `invalid_query` (not a whole number).", body = ErrorBody),
        (status = 404, description = "`unknown_service`.", body = ErrorBody),
        AdminErrors,
    ),
)]
async fn list_accounts(
    _: AdminAuth,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<AccountsQuery>, QueryRejection>,
) -> Result<Response> {
    let id = path(id)?;
    let Query(query) = query.map_err(|_| {
        Error::bad_request("invalid_query", "limit and offset must be whole numbers, e.g. ?limit=100&offset=200")
    })?;
    if query.limit.is_some_and(|l| !(1..=MAX_ACCOUNTS_LIMIT).contains(&l)) {
        return Err(Error::bad_request("invalid_limit", format!("limit must be between 1 and {MAX_ACCOUNTS_LIMIT}")));
    }
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(Error::bad_request("invalid_offset", "offset must be 0 or more"));
    }
    // One more than asked tells whether a next page exists.
    let mut accounts = store::list_accounts(&state.db, &id, query.limit.map(|l| l + 1), offset).await?;
    let next = query.limit.filter(|&l| accounts.len() as i64 > l).map(|limit| {
        accounts.truncate(limit as usize);
        let link = format!(
            "</admin/api/services/{id}/accounts?limit={limit}&offset={}>; rel=\"next\"",
            offset.saturating_add(limit)
        );
        HeaderValue::try_from(link)
    });
    let body = Json(
        accounts
            .into_iter()
            .map(|a| AccountJson {
                name: a.name,
                created_at: store::rfc3339(a.created_at),
                last_login_at: a.last_login_at.map(store::rfc3339),
            })
            .collect::<Vec<_>>(),
    );
    Ok(match next {
        Some(link) => ([(header::LINK, link.map_err(|e| Error::Internal(e.into()))?)], body).into_response(),
        None => body.into_response(),
    })
}

/// Deletes an account with its keys and sessions.
#[utoipa::path(
    delete,
    path = "/admin/api/services/{id}/accounts/{name}",
    operation_id = "delete_account",
    tag = "admin",
    params(("id" = String, Path, description = "The service id."), ("name" = String, Path, description = "The account name, percent-encoded.")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "`unknown_service`, `unknown_account`.", body = ErrorBody),
        AdminErrors,
        BadPath,
    ),
)]
async fn delete_account(
    _: AdminAuth,
    State(state): State<AppState>,
    client: ClientInfo,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode> {
    let (id, name) = path(ids)?;
    store::delete_account(&state.db, &id, &name, &by(&state, &client)).await?;
    tracing::info!(service = %id, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Lists an account's keys, oldest first.
///
/// The account name is one path segment: names with `/` must be
/// percent-encoded, as in every account route.
#[utoipa::path(
    get,
    path = "/admin/api/services/{id}/accounts/{name}/keys",
    operation_id = "list_account_keys",
    tag = "admin",
    params(("id" = String, Path, description = "The service id."), ("name" = String, Path, description = "The account name, percent-encoded.")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The keys.", body = Vec<KeyJson>),
        (status = 404, description = "`unknown_service`, `unknown_account`.", body = ErrorBody),
        AdminErrors,
        BadPath,
    ),
)]
async fn list_keys(
    _: AdminAuth,
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Vec<KeyJson>>> {
    let (id, name) = path(ids)?;
    let service = store::service(&state.db, &id).await?;
    let listed = keys::list(&state.db, &service.id, &name).await?;
    Ok(Json(
        listed
            .into_iter()
            .map(|k| KeyJson {
                id: k.id,
                label: k.label,
                state: k.state.as_str(),
                fingerprint: k.fingerprint,
                kind: k.kind,
                device_ip: k.device_ip,
                device_user_agent: k.device_user_agent,
                created_at: store::rfc3339(k.created_at),
                last_used_at: k.last_used_at.map(store::rfc3339),
                last_used_ip: k.last_used_ip,
            })
            .collect(),
    ))
}

/// Removes one key of an account; the sessions it opened end with it.
#[utoipa::path(
    delete,
    path = "/admin/api/services/{id}/accounts/{name}/keys/{key_id}",
    operation_id = "delete_account_key",
    tag = "admin",
    params(("id" = String, Path, description = "The service id."), ("name" = String, Path, description = "The account name, percent-encoded."), ("key_id" = String, Path, description = "The key id.")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "`unknown_service`, `unknown_key`.", body = ErrorBody),
        AdminErrors,
        BadPath,
    ),
)]
async fn delete_key(
    _: AdminAuth,
    State(state): State<AppState>,
    client: ClientInfo,
    ids: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<StatusCode> {
    let (id, name, key_id) = path(ids)?;
    let service = store::service(&state.db, &id).await?;
    keys::remove(&state.db, &service.id, &name, &key_id, &by(&state, &client)).await?;
    tracing::info!(service = %service.id, key = %key_id, "account key removed");
    Ok(StatusCode::NO_CONTENT)
}
