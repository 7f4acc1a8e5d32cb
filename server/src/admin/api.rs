//! The admin JSON API, for scripts: `Authorization: Bearer <admin token>`,
//! JSON in and out, errors as `{"error", "message"}`.

use axum::{
    extract::{
        rejection::{PathRejection, QueryRejection},
        FromRef, FromRequestParts, Path, Query, State,
    },
    http::{header, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get},
    Json, Router,
};
use serde::{Deserialize, Serialize};
use sesame_proto::{wire::ErrorBody, ServiceName};
use tracing::instrument;
use utoipa::{IntoParams, ToSchema};

use super::store;
use crate::{
    audit::{self, Actor, By},
    challenge::Challenges,
    challenge::SignInState,
    error::{Error, Result},
    http::extract::{ApiJson, ClientInfo},
    http::responses::{AdminErrors, BadPath, TooLarge},
    signin::{
        keys,
        passkey::{self, store::KeyKinds},
    },
    state::AppState,
};

pub(super) fn router<S: SignInState>() -> Router<S> {
    Router::new()
        .route("/admin/api/services", get(list_services).post(create_service))
        .route("/admin/api/services/{id}", delete(delete_service).patch(change_service))
        .route("/admin/api/services/{id}/accounts", get(list_accounts))
        .route("/admin/api/services/{id}/accounts/{name}", delete(delete_account))
        .route("/admin/api/services/{id}/accounts/{name}/keys", get(list_keys))
        .route("/admin/api/services/{id}/accounts/{name}/keys/{key_id}", delete(delete_key))
        .route("/admin/api/services/{id}/events", get(list_events))
        .route("/admin/api/audit", get(list_audit))
}

/// Proof that the request carried the admin bearer token.
#[derive(Debug)]
pub(crate) struct AdminAuth(());

impl<S> FromRequestParts<S> for AdminAuth
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = Error;

    #[instrument(skip_all)]
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let state = &AppState::from_ref(state);
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if presented.is_some_and(|token| state.admin_token.matches(token)) {
            return Ok(Self(()));
        }
        // Only failures count against the address, so that a script using
        // the right token is never slowed down, while guessing a short
        // operator-chosen token is.
        let client = ClientInfo::from_request_parts(parts, state).await?;
        state.limits.submissions.check(client.ip).await?;
        Err(Error::AdminAuthRequired)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = NewService)]
struct CreateService {
    /// 1 to 64 bytes of printable text, not padded with spaces.
    name: String,
    /// Whether sign-ins ask for the number the login page shows
    /// (PROTOCOL.md §14). On unless `false`.
    #[serde(default)]
    number_matching: Option<bool>,
}

/// A change to a service's settings; what is left out stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ServiceChange)]
#[serde(deny_unknown_fields)]
struct ChangeService {
    /// Whether sign-ins ask for the number the login page shows
    /// (PROTOCOL.md §14). Challenges already waiting keep theirs.
    number_matching: Option<bool>,
    /// Which kinds of key sign in: `sesame` (the QR sign-in), `passkey` or
    /// `both`. Ceremonies already started keep theirs.
    key_kinds: Option<String>,
    /// Whether a passkey must verify its user (a PIN, biometrics).
    require_user_verification: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Service)]
struct ServiceJson {
    id: String,
    name: String,
    /// The service's login page.
    login_url: String,
    /// Whether sign-ins ask for the number the login page shows
    /// (PROTOCOL.md §14).
    number_matching: bool,
    /// Which kinds of key sign in: `sesame`, `passkey` or `both`.
    key_kinds: String,
    /// Whether a passkey must verify its user.
    require_user_verification: bool,
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
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SignInEvent)]
struct EventJson {
    /// `register`, `login`, `denied`, `cancelled` or `expired`.
    kind: String,
    #[schema(required = true)]
    account: Option<String>,
    ip: String,
    user_agent: String,
    /// RFC 3339.
    at: String,
}

fn service_json(state: &AppState, service: store::Service) -> ServiceJson {
    let login_url = store::login_url(&state.settings.origin, &service.id);
    ServiceJson {
        id: service.id,
        name: service.name,
        login_url,
        number_matching: service.number_matching,
        key_kinds: service.key_kinds,
        require_user_verification: service.require_user_verification,
    }
}

/// Path segments that do not decode (bad percent-encoding) get our JSON
/// error, not axum's plain text.
pub(super) fn path<T>(extracted: Result<Path<T>, PathRejection>) -> Result<T> {
    extracted.map(|Path(value)| value).map_err(|_| Error::bad_request("invalid_path", "the URL path is malformed"))
}

/// Who the audit log names for a call: the bearer of the admin token.
pub(super) fn by<'a>(state: &AppState, client: &'a ClientInfo) -> By<'a> {
    By { actor: &Actor::Token, client, at: state.clock.now().as_secs() as i64 }
}

/// Creates a service.
#[utoipa::path(
    post,
    path = "/admin/api/services",
    operation_id = "create_service",
    tag = "admin",
    request_body = CreateService,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "The new service.", body = ServiceJson),
        (status = 400, description = "`invalid_service_name`, or a body that is not the expected JSON (`invalid_json`, `invalid_body`, `unsupported_media_type`).", body = ErrorBody),
        (status = 409, description = "`service_exists`: the name, or one that looks like it, is taken.", body = ErrorBody),
        AdminErrors,
        TooLarge,
    ),
)]
async fn create_service(
    _: AdminAuth,
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<CreateService>,
) -> Result<(StatusCode, Json<ServiceJson>)> {
    // The protocol crate's message speaks of a token's field; this is a name
    // someone typed.
    let name = ServiceName::parse(&body.name).map_err(|_| {
        Error::bad_request(
            "invalid_service_name",
            "the service name must be 1 to 64 bytes of printable text, without white space at either end",
        )
    })?;
    let number_matching = body.number_matching.unwrap_or(true);
    let service = store::create_service(&state.db, &name, number_matching, &by(&state, &client)).await?;
    tracing::info!(id = %service.id, "service created");
    Ok((StatusCode::CREATED, Json(service_json(&state, service))))
}

/// Lists the services, in creation order.
#[utoipa::path(
    get,
    path = "/admin/api/services",
    operation_id = "list_services",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The services.", body = Vec<ServiceJson>),
        AdminErrors,
    ),
)]
async fn list_services(_: AdminAuth, State(state): State<AppState>) -> Result<Json<Vec<ServiceJson>>> {
    let services = store::list_services(&state.db).await?;
    Ok(Json(services.into_iter().map(|s| service_json(&state, s)).collect()))
}

/// Changes a service's settings.
#[utoipa::path(
    patch,
    path = "/admin/api/services/{id}",
    operation_id = "change_service",
    tag = "admin",
    params(("id" = String, Path, description = "The service id.")),
    request_body = ChangeService,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The service as changed.", body = ServiceJson),
        (status = 400, description = "`invalid_path`, `invalid_key_kinds`, or a body that is not the expected JSON (`invalid_json`, `invalid_body`, `unsupported_media_type`).", body = ErrorBody),
        (status = 404, description = "`unknown_service`.", body = ErrorBody),
        AdminErrors,
        TooLarge,
    ),
)]
async fn change_service(
    _: AdminAuth,
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<ChangeService>,
) -> Result<Json<ServiceJson>> {
    let id = path(id)?;
    let kinds = body
        .key_kinds
        .as_deref()
        .map(|text| {
            KeyKinds::parse(text)
                .ok_or_else(|| Error::bad_request("invalid_key_kinds", "key_kinds must be sesame, passkey or both"))
        })
        .transpose()?;
    let mut service = match body.number_matching {
        Some(on) => store::set_number_matching(&state.db, &challenges, &id, on, &by(&state, &client)).await?,
        None => store::service(&state.db, &id).await?,
    };
    if kinds.is_some() || body.require_user_verification.is_some() {
        let kinds = kinds.or_else(|| KeyKinds::parse(&service.key_kinds)).unwrap_or(KeyKinds::Sesame);
        let verify = body.require_user_verification.unwrap_or(service.require_user_verification);
        passkey::store::set_policy(&state.db, &id, kinds, verify, &by(&state, &client)).await?;
        service.key_kinds = kinds.as_str().to_owned();
        service.require_user_verification = verify;
    }
    Ok(Json(service_json(&state, service)))
}

/// Deletes a service with its accounts, challenges, sessions and events.
#[utoipa::path(
    delete,
    path = "/admin/api/services/{id}",
    operation_id = "delete_service",
    tag = "admin",
    params(("id" = String, Path, description = "The service id.")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "`unknown_service`.", body = ErrorBody),
        AdminErrors,
        BadPath,
    ),
)]
async fn delete_service(
    _: AdminAuth,
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode> {
    let id = path(id)?;
    store::delete_service(&state.db, &challenges, &id, &by(&state, &client)).await?;
    tracing::info!(%id, "service deleted");
    Ok(StatusCode::NO_CONTENT)
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

/// A service's most recent sign-in events, newest first, at most 100.
#[utoipa::path(
    get,
    path = "/admin/api/services/{id}/events",
    operation_id = "list_sign_in_events",
    tag = "admin",
    params(("id" = String, Path, description = "The service id.")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The events.", body = Vec<EventJson>),
        (status = 404, description = "`unknown_service`.", body = ErrorBody),
        AdminErrors,
        BadPath,
    ),
)]
async fn list_events(
    _: AdminAuth,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<EventJson>>> {
    let events = store::recent_events(&state.db, &path(id)?).await?;
    Ok(Json(
        events
            .into_iter()
            .map(|e| EventJson {
                kind: e.kind,
                account: e.account,
                ip: e.ip,
                user_agent: e.user_agent,
                at: store::rfc3339(e.at),
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Only records with a smaller id: the `id` of the last record of the
    /// previous page.
    before: Option<i64>,
    /// How many records, 1 to 500; 50 when absent.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// Only this action (a stable code, OPERATIONS.md "Audit log").
    action: Option<String>,
    /// Only this actor, as the records name it (`token`,
    /// `authenticator:<name>`, …).
    actor: Option<String>,
    /// Only what was done to this service or inside it, by id.
    service: Option<String>,
}

/// An audit record as the API returns it and the admin page shows it: the
/// stored one, with its time in RFC 3339.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditRecord)]
pub(super) struct AuditJson {
    /// Grows with time.
    pub(super) id: i64,
    /// RFC 3339.
    pub(super) at: String,
    /// `token`, `authenticator:<account name>` or `anonymous`.
    pub(super) actor: String,
    /// A stable code (OPERATIONS.md, "Audit log").
    pub(super) action: String,
    /// A service id, an account name or an admin session's handle; empty
    /// when there is none.
    pub(super) target: String,
    /// The service's name, when `target` is the id of one that exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) target_name: Option<String>,
    /// Short text for people.
    pub(super) detail: String,
    pub(super) ip: String,
    pub(super) user_agent: String,
}

impl From<audit::Event> for AuditJson {
    fn from(e: audit::Event) -> Self {
        Self {
            id: e.id,
            at: store::rfc3339(e.at),
            actor: e.actor,
            action: e.action,
            target: e.target,
            target_name: e.target_name,
            detail: e.detail,
            ip: e.ip,
            user_agent: e.user_agent,
        }
    }
}

/// The audit log of admin actions, newest first.
///
/// `before` (the id of the last record of the previous page) pages back.
#[utoipa::path(
    get,
    path = "/admin/api/audit",
    operation_id = "list_audit_records",
    tag = "admin",
    params(AuditQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of records; an empty array when there is nothing older.", body = Vec<AuditJson>),
        (status = 400, description = "`invalid_limit` (out of range), `invalid_query` (`before` or `limit` not a whole number).", body = ErrorBody),
        AdminErrors,
    ),
)]
async fn list_audit(
    _: AdminAuth,
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Vec<AuditJson>>> {
    let Query(query) = query.map_err(|_| {
        Error::bad_request("invalid_query", "before and limit must be whole numbers, e.g. ?before=120&limit=50")
    })?;
    let filter = audit::Filter {
        before: query.before,
        action: query.action.as_deref(),
        actor: query.actor.as_deref(),
        service: query.service.as_deref(),
    };
    let events = audit::list(&state.db, &filter, query.limit.unwrap_or(audit::DEFAULT_LIMIT)).await?;
    Ok(Json(events.into_iter().map(AuditJson::from).collect()))
}
