//! A service's applications (its OpenID Connect clients) in the JSON API:
//! list, create, read, change, remove, and a new secret. Each change goes
//! through `oidc::client`, which writes its audit record.
//!
//! The older routes under `/admin/api/services/{id}/oidc` address the
//! service's first application, as they did its one client.

use axum::{
    extract::{rejection::PathRejection, Path, State},
    http::StatusCode,
    routing::{get, post},
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
    error::{Error, Result},
    http::extract::{ApiJson, ClientInfo},
    http::responses::{AdminErrors, BadPath, TooLarge},
    oidc::{
        client::{self, Client, SettingsJson},
        groups,
    },
    state::{AppState, RouterState},
};

pub(super) fn router<S: RouterState>() -> Router<S> {
    Router::new()
        .route("/admin/api/services/{id}/applications", get(list_applications).post(create_application))
        .route(
            "/admin/api/services/{id}/applications/{client_id}",
            get(get_application).put(put_application).delete(delete_application),
        )
        .route("/admin/api/services/{id}/applications/{client_id}/secret", post(rotate_application_secret))
        .route("/admin/api/services/{id}/oidc", get(get_client).put(put_client).delete(delete_client))
        .route("/admin/api/services/{id}/oidc/secret", post(rotate_secret))
}

/// A client as the API returns it. `client_secret` is there only in the
/// answer that made the secret; `null` for a public client.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OidcClient)]
struct ClientJson {
    client_id: String,
    /// What the authorization page calls the application.
    name: String,
    /// Only in the answer that made the secret; `null` in a `PUT` answer
    /// for a public client. Sesame keeps only its SHA-256.
    #[serde(skip_serializing_if = "Shown::is_hidden")]
    #[schema(value_type = Option<String>)]
    client_secret: Shown,
    redirect_uris: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
    public: bool,
    /// `RS256` or `EdDSA`.
    #[schema(value_type = String)]
    id_token_signed_response_alg: &'static str,
    /// Whether every code comes with a refresh token, `offline_access` or not.
    refresh_tokens: bool,
    /// Whether each person is asked, once per set of scopes, before the
    /// application learns anything.
    ask_consent: bool,
    /// The groups whose members the application admits, sorted; empty when
    /// it admits every account of the service.
    allowed_groups: Vec<String>,
    issuer: String,
    discovery_url: String,
}

/// Whether and how the secret appears in an answer.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Shown {
    /// Left out: this answer did not make a secret.
    Hidden,
    /// `null` (a public client) or the new secret.
    Value(Option<String>),
}

impl Shown {
    fn is_hidden(&self) -> bool {
        matches!(self, Self::Hidden)
    }
}

/// `client` as the API returns it, with the groups it admits.
async fn answer(state: &AppState, client: Client, secret: Shown) -> Result<ClientJson> {
    let allowed = groups::of_application(&state.db, &client.client_id).await?;
    Ok(client_json(state, client, secret, allowed))
}

fn client_json(state: &AppState, client: Client, secret: Shown, allowed_groups: Vec<String>) -> ClientJson {
    let issuer = state.settings.origin.to_string();
    ClientJson {
        allowed_groups,
        client_id: client.client_id.clone(),
        name: client.name.clone(),
        client_secret: secret,
        public: client.is_public(),
        id_token_signed_response_alg: client.alg.as_str(),
        refresh_tokens: client.refresh_tokens,
        ask_consent: client.ask_consent,
        discovery_url: format!("{issuer}/.well-known/openid-configuration"),
        issuer,
        redirect_uris: client.redirect_uris,
        post_logout_redirect_uris: client.post_logout_redirect_uris,
    }
}

/// A service's first application, never with its secret.
///
/// Older than the `applications` routes; the same as reading the first
/// application they list.
#[utoipa::path(
    get,
    path = "/admin/api/services/{id}/oidc",
    operation_id = "get_oidc_client",
    tag = "admin",
    params(("id" = String, Path, description = "The service id.")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The client.", body = ClientJson),
        (status = 404, description = "`unknown_service`, `oidc_not_configured`.", body = ErrorBody),
        AdminErrors,
        BadPath,
    ),
)]
async fn get_client(
    _: AdminAuth,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ClientJson>> {
    let service = store::service(&state.db, &path(id)?).await?;
    let client = client::first_of_service(&state.db, &service.id).await?;
    Ok(Json(answer(&state, client, Shown::Hidden).await?))
}

/// Changes a service's first application, or makes one, named after the
/// service, when it has none.
///
/// A changed client keeps its `client_id` and name. Older than the
/// `applications` routes.
#[utoipa::path(
    put,
    path = "/admin/api/services/{id}/oidc",
    operation_id = "put_oidc_client",
    tag = "admin",
    params(("id" = String, Path, description = "The service id.")),
    request_body = SettingsJson,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The client; with `client_secret` when this request made one.", body = ClientJson),
        (status = 400, description = "`invalid_client_settings`, `invalid_path`, or a body that is not the expected JSON (`invalid_json`, `invalid_body`, `unsupported_media_type`).", body = ErrorBody),
        (status = 404, description = "`unknown_service`.", body = ErrorBody),
        AdminErrors,
        TooLarge,
    ),
)]
async fn put_client(
    _: AdminAuth,
    State(state): State<AppState>,
    info: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<SettingsJson>,
) -> Result<Json<ClientJson>> {
    let service = store::service(&state.db, &path(id)?).await?;
    let by = api::by(&state, &info);
    let (client, secret, settings) = match client::first_of_service(&state.db, &service.id).await {
        Ok(first) => {
            let settings = client::Settings::parse(body.keeping(&first))?;
            let (client, secret) =
                client::change(&state.db, &service.id, &first.client_id, None, &settings, &by).await?;
            (client, secret, settings)
        }
        Err(Error::OidcNotConfigured) => {
            let settings = client::Settings::parse(body)?;
            let (client, secret) = client::create(&state.db, &service.id, &service.name, &settings, &by).await?;
            (client, secret, settings)
        }
        Err(e) => return Err(e),
    };
    tracing::info!(service = %service.id, client = %client.client_id, "oidc client configured");
    Ok(Json(answer(&state, client, shown(secret, &settings)).await?))
}

/// Removes a service's first application.
///
/// Its pending requests, codes and access tokens go. Older than the
/// `applications` routes.
#[utoipa::path(
    delete,
    path = "/admin/api/services/{id}/oidc",
    operation_id = "delete_oidc_client",
    tag = "admin",
    params(("id" = String, Path, description = "The service id.")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "`unknown_service`, `oidc_not_configured`.", body = ErrorBody),
        AdminErrors,
        BadPath,
    ),
)]
async fn delete_client(
    _: AdminAuth,
    State(state): State<AppState>,
    info: ClientInfo,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode> {
    let service = store::service(&state.db, &path(id)?).await?;
    let first = client::first_of_service(&state.db, &service.id).await?;
    client::remove(&state.db, &service.id, &first.client_id, &api::by(&state, &info)).await?;
    tracing::info!(service = %service.id, client = %first.client_id, "oidc client removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Gives a service's first application, when confidential, a new secret.
///
/// The old one stops working at once. Older than the `applications` routes.
#[utoipa::path(
    post,
    path = "/admin/api/services/{id}/oidc/secret",
    operation_id = "rotate_oidc_client_secret",
    tag = "admin",
    params(("id" = String, Path, description = "The service id.")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The client with its new `client_secret`.", body = ClientJson),
        (status = 400, description = "`public_client`: a public client has no secret; `invalid_path`.", body = ErrorBody),
        (status = 404, description = "`unknown_service`, `oidc_not_configured`.", body = ErrorBody),
        AdminErrors,
    ),
)]
async fn rotate_secret(
    _: AdminAuth,
    State(state): State<AppState>,
    info: ClientInfo,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ClientJson>> {
    let service = store::service(&state.db, &path(id)?).await?;
    let first = client::first_of_service(&state.db, &service.id).await?;
    let (client, secret) =
        client::rotate_secret(&state.db, &service.id, &first.client_id, &api::by(&state, &info)).await?;
    tracing::info!(service = %service.id, client = %client.client_id, "oidc client secret rotated");
    Ok(Json(answer(&state, client, Shown::Value(Some(secret))).await?))
}

/// What an answer that changed a client shows of its secret: `null` for a
/// public client, the secret this change made, or nothing.
fn shown(secret: Option<String>, settings: &client::Settings) -> Shown {
    match (settings.is_public(), secret) {
        (true, _) => Shown::Value(None),
        (false, Some(secret)) => Shown::Value(Some(secret)),
        (false, None) => Shown::Hidden,
    }
}

/// An application as an admin creates or changes it: a name and the
/// client's settings.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ApplicationSettings)]
#[serde(deny_unknown_fields)]
struct ApplicationJson {
    /// What the authorization page calls the application: 1 to 64 bytes
    /// of printable text, unique within the service. Required to create;
    /// kept when absent from a change.
    #[serde(default)]
    name: Option<String>,
    /// 1 to 20 absolute URIs, compared as exact strings.
    redirect_uris: Vec<String>,
    /// 0 to 20 absolute URIs.
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    /// A client without a secret, which must use PKCE.
    #[serde(default)]
    public: bool,
    /// `RS256` (when absent) or `EdDSA`.
    #[serde(default)]
    id_token_signed_response_alg: Option<String>,
    /// A refresh token with every code, whether or not the application
    /// asks for `offline_access`. Left out, a new application gets none
    /// and a changed one keeps its setting.
    #[serde(default)]
    refresh_tokens: Option<bool>,
    /// Ask each person, once per set of scopes, before the application
    /// learns anything. Left out, a new application asks and a changed one
    /// keeps its setting; `false` is for the service's own applications,
    /// which need no one's approval.
    #[serde(default)]
    ask_consent: Option<bool>,
    /// The names of the service's groups whose members the application
    /// admits, the whole set; `[]` admits every account of the service. Left
    /// out, a new application admits everyone and a changed one keeps its
    /// groups.
    #[serde(default)]
    allowed_groups: Option<Vec<String>>,
}

impl ApplicationJson {
    /// The settings of a new application (`current` is `None`) or of a
    /// change of `current`, which keeps the policies the body leaves out.
    fn settings(self, current: Option<&Client>) -> Result<client::Settings> {
        let json = SettingsJson {
            redirect_uris: self.redirect_uris,
            post_logout_redirect_uris: self.post_logout_redirect_uris,
            public: self.public,
            id_token_signed_response_alg: self.id_token_signed_response_alg,
            refresh_tokens: self.refresh_tokens,
            ask_consent: self.ask_consent,
        };
        let json = match current {
            Some(current) => json.keeping(current),
            // A new application asks for consent unless told otherwise.
            None => SettingsJson { ask_consent: json.ask_consent.or(Some(true)), ..json },
        };
        Ok(client::Settings::parse(json)?.admitting(self.allowed_groups))
    }
}

/// The service and the application that a path names, or why not.
pub(super) async fn application_at(
    state: &AppState,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<(store::Service, Client)> {
    let (id, client_id) = path(ids)?;
    let service = store::service(&state.db, &id).await?;
    let client = client::of_service(&state.db, &service.id, &client_id).await?;
    Ok((service, client))
}

/// A service's applications, the first made first, never with their
/// secrets.
#[utoipa::path(
    get,
    path = "/admin/api/services/{id}/applications",
    operation_id = "list_applications",
    tag = "admin",
    params(("id" = String, Path, description = "The service id.")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The applications.", body = Vec<ClientJson>),
        (status = 404, description = "`unknown_service`.", body = ErrorBody),
        AdminErrors,
        BadPath,
    ),
)]
async fn list_applications(
    _: AdminAuth,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<ClientJson>>> {
    let service = store::service(&state.db, &path(id)?).await?;
    let all = client::all_of_service(&state.db, &service.id).await?;
    let mut allowed = groups::of_applications(&state.db, &service.id).await?;
    Ok(Json(
        all.into_iter()
            .map(|client| {
                let groups = allowed.remove(&client.client_id).unwrap_or_default();
                client_json(&state, client, Shown::Hidden, groups)
            })
            .collect(),
    ))
}

/// Makes a new application of a service.
///
/// A person signed in to the service is signed in for each of its
/// applications (single sign-on).
#[utoipa::path(
    post,
    path = "/admin/api/services/{id}/applications",
    operation_id = "create_application",
    tag = "admin",
    params(("id" = String, Path, description = "The service id.")),
    request_body = ApplicationJson,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "The application, with its `client_secret` (`null` for a public client).", body = ClientJson),
        (status = 400, description = "`invalid_application_name`, `application_name_taken`, `invalid_client_settings`, `unknown_group` (a name in `allowed_groups` that is no group of the service), `invalid_path`, or a body that is not the expected JSON (`invalid_json`, `invalid_body`, `unsupported_media_type`).", body = ErrorBody),
        (status = 404, description = "`unknown_service`.", body = ErrorBody),
        AdminErrors,
        TooLarge,
    ),
)]
async fn create_application(
    _: AdminAuth,
    State(state): State<AppState>,
    info: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<ApplicationJson>,
) -> Result<(StatusCode, Json<ClientJson>)> {
    let service = store::service(&state.db, &path(id)?).await?;
    let name = client::parse_name(body.name.as_deref().unwrap_or_default())?;
    let settings = body.settings(None)?;
    let (client, secret) = client::create(&state.db, &service.id, &name, &settings, &api::by(&state, &info)).await?;
    tracing::info!(service = %service.id, client = %client.client_id, "application created");
    Ok((StatusCode::CREATED, Json(answer(&state, client, Shown::Value(secret)).await?)))
}

/// One application of a service, never with its secret.
#[utoipa::path(
    get,
    path = "/admin/api/services/{id}/applications/{client_id}",
    operation_id = "get_application",
    tag = "admin",
    params(
        ("id" = String, Path, description = "The service id."),
        ("client_id" = String, Path, description = "The application's client id."),
    ),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The application.", body = ClientJson),
        (status = 404, description = "`unknown_service`, `unknown_application`.", body = ErrorBody),
        AdminErrors,
        BadPath,
    ),
)]
async fn get_application(
    _: AdminAuth,
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<ClientJson>> {
    let (_, client) = application_at(&state, ids).await?;
    Ok(Json(answer(&state, client, Shown::Hidden).await?))
}

/// Changes an application's name or settings.
///
/// Its `client_id` never changes, and a confidential client keeps its
/// secret; one turned confidential gets one, shown in this answer only.
#[utoipa::path(
    put,
    path = "/admin/api/services/{id}/applications/{client_id}",
    operation_id = "put_application",
    tag = "admin",
    params(
        ("id" = String, Path, description = "The service id."),
        ("client_id" = String, Path, description = "The application's client id."),
    ),
    request_body = ApplicationJson,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The application; with `client_secret` when this request made one.", body = ClientJson),
        (status = 400, description = "`invalid_application_name`, `application_name_taken`, `invalid_client_settings`, `unknown_group` (a name in `allowed_groups` that is no group of the service), `invalid_path`, or a body that is not the expected JSON (`invalid_json`, `invalid_body`, `unsupported_media_type`).", body = ErrorBody),
        (status = 404, description = "`unknown_service`, `unknown_application`.", body = ErrorBody),
        AdminErrors,
        TooLarge,
    ),
)]
async fn put_application(
    _: AdminAuth,
    State(state): State<AppState>,
    info: ClientInfo,
    ids: Result<Path<(String, String)>, PathRejection>,
    ApiJson(body): ApiJson<ApplicationJson>,
) -> Result<Json<ClientJson>> {
    let (service, current) = application_at(&state, ids).await?;
    let name = body.name.as_deref().map(client::parse_name).transpose()?;
    let settings = body.settings(Some(&current))?;
    let by = api::by(&state, &info);
    let (client, secret) =
        client::change(&state.db, &service.id, &current.client_id, name.as_deref(), &settings, &by).await?;
    tracing::info!(service = %service.id, client = %client.client_id, "application changed");
    Ok(Json(answer(&state, client, shown(secret, &settings)).await?))
}

/// Removes an application.
///
/// Its pending requests, codes and access tokens go; the service's other
/// applications and its sessions stay.
#[utoipa::path(
    delete,
    path = "/admin/api/services/{id}/applications/{client_id}",
    operation_id = "delete_application",
    tag = "admin",
    params(
        ("id" = String, Path, description = "The service id."),
        ("client_id" = String, Path, description = "The application's client id."),
    ),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "`unknown_service`, `unknown_application`.", body = ErrorBody),
        AdminErrors,
        BadPath,
    ),
)]
async fn delete_application(
    _: AdminAuth,
    State(state): State<AppState>,
    info: ClientInfo,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode> {
    let (service, client) = application_at(&state, ids).await?;
    client::remove(&state.db, &service.id, &client.client_id, &api::by(&state, &info)).await?;
    tracing::info!(service = %service.id, client = %client.client_id, "application removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Gives a confidential application a new secret.
///
/// The old one stops working at once.
#[utoipa::path(
    post,
    path = "/admin/api/services/{id}/applications/{client_id}/secret",
    operation_id = "rotate_application_secret",
    tag = "admin",
    params(
        ("id" = String, Path, description = "The service id."),
        ("client_id" = String, Path, description = "The application's client id."),
    ),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The application with its new `client_secret`.", body = ClientJson),
        (status = 400, description = "`public_client`: a public client has no secret; `invalid_path`.", body = ErrorBody),
        (status = 404, description = "`unknown_service`, `unknown_application`.", body = ErrorBody),
        AdminErrors,
    ),
)]
async fn rotate_application_secret(
    _: AdminAuth,
    State(state): State<AppState>,
    info: ClientInfo,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<ClientJson>> {
    let (service, current) = application_at(&state, ids).await?;
    let (client, secret) =
        client::rotate_secret(&state.db, &service.id, &current.client_id, &api::by(&state, &info)).await?;
    tracing::info!(service = %service.id, client = %client.client_id, "application secret rotated");
    Ok(Json(answer(&state, client, Shown::Value(Some(secret))).await?))
}
