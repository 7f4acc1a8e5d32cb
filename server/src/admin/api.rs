//! The admin JSON API, for scripts: `Authorization: Bearer <admin token>`,
//! JSON in and out, errors as `{"error", "message"}`.
//!
//! Here: the token's check ([`AdminAuth`]) and what every handler of the API
//! shares, and the services themselves. A service's accounts and keys are
//! in `api_accounts`, its sign-in events and the audit log in `log`, and the
//! rest beside the feature it manages (`links`, `profiles`, `groups`,
//! `applications`, `oidc`).

use axum::{
    extract::{rejection::PathRejection, FromRef, FromRequestParts, Path, State},
    http::{header, request::Parts, StatusCode},
    routing::{delete, get},
    Json, Router,
};
use serde::{Deserialize, Serialize};
use sesame_proto::{wire::ErrorBody, ServiceName};
use tracing::instrument;
use utoipa::ToSchema;

use super::store;
use crate::{
    audit::{Actor, By},
    challenge::Challenges,
    challenge::SignInState,
    error::{Error, Result},
    http::extract::{ApiJson, ClientInfo},
    http::responses::{AdminErrors, BadPath, TooLarge},
    signin::passkey::{self, store::KeyKinds},
    state::AppState,
};

pub(super) fn router<S: SignInState>() -> Router<S> {
    Router::new()
        .route("/admin/api/services", get(list_services).post(create_service))
        .route("/admin/api/services/{id}", delete(delete_service).patch(change_service))
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
