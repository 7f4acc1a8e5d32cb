//! OpenID Connect settings of a service, for scripts (the JSON API) and for
//! people (a card on the service's admin page), and the rotation of the
//! provider's signing keys. Both sides go through `oidc::client` and
//! `oidc::keys`, which write the audit record with each change.

use askama::Template;

use axum::{
    extract::{rejection::PathRejection, Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect},
    routing::{get, post},
    Json, Router,
};
use serde::{Deserialize, Serialize};
use sesame_proto::wire::ErrorBody;
use utoipa::ToSchema;

use super::{
    api::{self, path, AdminAuth},
    form::{AdminForm, CsrfField, CsrfForm},
    kit::{self, AreYouSure, PageResult},
    store,
};
use crate::{
    audit::Actor,
    error::{Error, Result},
    http::extract::{ApiJson, ClientInfo},
    http::responses::{AdminErrors, BadPath, TooLarge},
    oidc::OidcState,
    oidc::Provider,
    oidc::{
        client::{self, Client, SettingsJson},
        keys,
    },
    state::AppState,
};

pub(super) fn router<S: OidcState>() -> Router<S> {
    Router::new()
        .route("/admin/api/services/{id}/oidc", get(get_client).put(put_client).delete(delete_client))
        .route("/admin/api/services/{id}/oidc/secret", post(rotate_secret))
        .route("/admin/api/oidc/keys", get(list_keys))
        .route("/admin/api/oidc/keys/rotate", post(rotate_keys))
        .route("/admin/services/{id}/oidc", post(save_form))
        .route("/admin/services/{id}/oidc/secret", post(rotate_secret_form))
        .route("/admin/services/{id}/oidc/delete", post(delete_form))
        .route("/admin/oidc/keys/rotate", post(rotate_keys_form))
}

/// A client as the API returns it. `client_secret` is there only in the
/// answer that made the secret; `null` for a public client.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OidcClient)]
struct ClientJson {
    client_id: String,
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

fn client_json(state: &AppState, client: Client, secret: Shown) -> ClientJson {
    let issuer = state.settings.origin.to_string();
    ClientJson {
        client_id: client.client_id.clone(),
        client_secret: secret,
        public: client.is_public(),
        id_token_signed_response_alg: client.alg.as_str(),
        discovery_url: format!("{issuer}/.well-known/openid-configuration"),
        issuer,
        redirect_uris: client.redirect_uris,
        post_logout_redirect_uris: client.post_logout_redirect_uris,
    }
}

/// A service's OpenID Connect client, never with its secret.
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
    let client = client::of_service(&state.db, &service.id).await?.ok_or(Error::OidcNotConfigured)?;
    Ok(Json(client_json(&state, client, Shown::Hidden)))
}

/// Makes a service an OpenID Connect client, or changes its settings.
///
/// A changed client keeps its `client_id`.
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
    let settings = client::Settings::parse(body)?;
    let (client, secret) = client::configure(&state.db, &service.id, &settings, &api::by(&state, &info)).await?;
    let shown = match (client.is_public(), secret) {
        (true, _) => Shown::Value(None),
        (false, Some(secret)) => Shown::Value(Some(secret)),
        (false, None) => Shown::Hidden,
    };
    tracing::info!(service = %service.id, client = %client.client_id, "oidc client configured");
    Ok(Json(client_json(&state, client, shown)))
}

/// Turns OpenID Connect off for a service.
///
/// Its client, pending requests, codes and access tokens go.
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
    client::remove(&state.db, &service.id, &api::by(&state, &info)).await?;
    tracing::info!(service = %service.id, "oidc client removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Gives a confidential client a new secret.
///
/// The old one stops working at once.
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
    let (client, secret) = client::rotate_secret(&state.db, &service.id, &api::by(&state, &info)).await?;
    tracing::info!(service = %service.id, "oidc client secret rotated");
    Ok(Json(client_json(&state, client, Shown::Value(Some(secret)))))
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OidcSigningKey)]
struct KeyJson {
    kid: String,
    /// `RS256` or `EdDSA`.
    alg: String,
    /// `next`, `current` or `retired`.
    state: String,
    /// RFC 3339.
    created_at: String,
}

/// The ID-token signing keys.
#[utoipa::path(
    get,
    path = "/admin/api/oidc/keys",
    operation_id = "list_oidc_signing_keys",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The keys.", body = Vec<KeyJson>),
        AdminErrors,
    ),
)]
async fn list_keys(_: AdminAuth, State(state): State<AppState>) -> Result<Json<Vec<KeyJson>>> {
    keys_json(&state).await
}

async fn keys_json(state: &AppState) -> Result<Json<Vec<KeyJson>>> {
    let listed = keys::list(&state.db).await?;
    Ok(Json(
        listed
            .into_iter()
            .map(|k| KeyJson { kid: k.kid, alg: k.alg, state: k.state, created_at: store::rfc3339(k.created_at) })
            .collect(),
    ))
}

/// One rotation step of the ID-token signing keys (OIDC.md).
#[utoipa::path(
    post,
    path = "/admin/api/oidc/keys/rotate",
    operation_id = "rotate_oidc_signing_keys",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The keys after the rotation.", body = Vec<KeyJson>),
        AdminErrors,
    ),
)]
async fn rotate_keys(
    _: AdminAuth,
    State(state): State<AppState>,
    State(provider): State<Provider>,
    info: ClientInfo,
) -> Result<Json<Vec<KeyJson>>> {
    keys::rotate(&state.db, &api::by(&state, &info)).await?;
    provider.keys.clear();
    tracing::info!("oidc signing keys rotated");
    keys_json(&state).await
}

/// The card on the service page.
#[derive(Debug)]
pub(super) struct OidcItem {
    pub(super) client_id: String,
    pub(super) public: bool,
    pub(super) alg: &'static str,
    pub(super) redirect_uris: String,
    pub(super) post_logout_redirect_uris: String,
}

impl From<Client> for OidcItem {
    fn from(client: Client) -> Self {
        Self {
            client_id: client.client_id.clone(),
            public: client.is_public(),
            alg: client.alg.as_str(),
            redirect_uris: client.redirect_uris.join("\n"),
            post_logout_redirect_uris: client.post_logout_redirect_uris.join("\n"),
        }
    }
}

pub(super) async fn item(state: &AppState, service_id: &str) -> Result<Option<OidcItem>> {
    Ok(client::of_service(&state.db, service_id).await?.map(OidcItem::from))
}

/// The settings form: one URI per line.
#[derive(Debug, Deserialize)]
struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    redirect_uris: String,
    #[serde(default)]
    post_logout_redirect_uris: String,
    #[serde(default)]
    public: Option<String>,
    #[serde(default)]
    alg: Option<String>,
}

impl CsrfField for SettingsForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|line| !line.is_empty()).map(str::to_owned).collect()
}

/// The one page that shows a client secret: right after it was made.
#[derive(Template)]
#[template(path = "admin/oidc_secret.html")]
struct SecretView {
    service_id: String,
    service_name: String,
    client_id: String,
    secret: Option<String>,
    issuer: String,
}

async fn save_form(
    State(state): State<AppState>,
    info: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form }: AdminForm<SettingsForm>,
) -> PageResult {
    let service = store::service(&state.db, &kit::path(id)?).await?;
    let settings = client::Settings::parse(SettingsJson {
        redirect_uris: lines(&form.redirect_uris),
        post_logout_redirect_uris: lines(&form.post_logout_redirect_uris),
        public: form.public.is_some(),
        id_token_signed_response_alg: form.alg,
    })?;
    let (client, secret) =
        client::configure(&state.db, &service.id, &settings, &kit::by(&state, session.actor(), &info)).await?;
    match secret {
        Some(secret) => show_secret(&state, service, client, secret),
        None => Ok(Redirect::to(&format!("/admin/services/{}?done=oidc_saved", service.id)).into_response()),
    }
}

async fn rotate_secret_form(
    State(state): State<AppState>,
    info: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form }: AdminForm<CsrfForm>,
) -> PageResult {
    let service = store::service(&state.db, &kit::path(id)?).await?;
    if form.confirmed != "yes" {
        return AreYouSure {
            title: "Make a new client secret?",
            summary: format!("The OpenID Connect client of {} will get a new secret.", service.name),
            lost: vec![
                "the current secret, at once: the applications that use it cannot sign anyone in until they are \
                 given the new one"
                    .to_owned(),
            ],
            action: format!("/admin/services/{}/oidc/secret", service.id),
            csrf: &form.csrf,
            fields: Vec::new(),
            button: "Make a new secret",
            back: format!("/admin/services/{}", service.id),
        }
        .page();
    }
    let (client, secret) =
        client::rotate_secret(&state.db, &service.id, &kit::by(&state, session.actor(), &info)).await?;
    show_secret(&state, service, client, secret)
}

fn show_secret(state: &AppState, service: store::Service, client: Client, secret: String) -> PageResult {
    let view = SecretView {
        service_id: service.id,
        service_name: service.name,
        client_id: client.client_id,
        secret: Some(secret),
        issuer: state.settings.origin.to_string(),
    };
    kit::render(StatusCode::OK, &view)
}

async fn delete_form(
    State(state): State<AppState>,
    info: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form }: AdminForm<CsrfForm>,
) -> PageResult {
    let service = store::service(&state.db, &kit::path(id)?).await?;
    if form.confirmed != "yes" {
        return AreYouSure {
            title: "Turn OpenID Connect off?",
            summary: format!("The OpenID Connect client of {} will be removed.", service.name),
            lost: vec![
                "its client id and secret: the applications that use them can no longer sign anyone in".to_owned(),
                "the codes and access tokens issued to them".to_owned(),
            ],
            action: format!("/admin/services/{}/oidc/delete", service.id),
            csrf: &form.csrf,
            fields: Vec::new(),
            button: "Turn it off",
            back: format!("/admin/services/{}", service.id),
        }
        .page();
    }
    client::remove(&state.db, &service.id, &kit::by(&state, session.actor(), &info)).await?;
    Ok(Redirect::to(&format!("/admin/services/{}?done=oidc_removed", service.id)).into_response())
}

async fn rotate_keys_form(
    State(state): State<AppState>,
    State(provider): State<Provider>,
    info: ClientInfo,
    AdminForm { session, form }: AdminForm<CsrfForm>,
) -> PageResult {
    if form.confirmed != "yes" {
        return AreYouSure {
            title: "Rotate the signing keys?",
            summary: "The published next keys will sign ID tokens from now on.".to_owned(),
            lost: vec![
                "the keys retired by the last rotation, which leave the published key set: ID tokens they signed no \
                 longer verify"
                    .to_owned(),
                "relying parties that cache the key set may refuse new ID tokens until they fetch it again: never \
                 rotate twice within an hour"
                    .to_owned(),
            ],
            action: "/admin/oidc/keys/rotate".to_owned(),
            csrf: &form.csrf,
            fields: Vec::new(),
            button: "Rotate the keys",
            back: "/admin".to_owned(),
        }
        .page();
    }
    keys::rotate(&state.db, &kit::by(&state, session.actor(), &info)).await?;
    provider.keys.clear();
    Ok(Redirect::to("/admin?done=keys_rotated").into_response())
}

/// The `--demo` service's client: made on the first start with redirect
/// URIs for common local relying parties, and given a fresh secret on every
/// start so that the printed configuration always works.
pub(super) async fn demo_client(state: &AppState, service_id: &str) -> anyhow::Result<(Client, String)> {
    let info = ClientInfo { ip: std::net::Ipv4Addr::LOCALHOST.into(), user_agent: "sesame-server --demo".to_owned() };
    let by = crate::audit::By { actor: &Actor::System, client: &info, at: state.clock.now().as_secs() as i64 };
    if client::of_service(&state.db, service_id).await?.is_none() {
        let settings = client::Settings::parse(SettingsJson {
            redirect_uris: DEMO_REDIRECT_URIS.iter().map(|u| (*u).to_owned()).collect(),
            post_logout_redirect_uris: DEMO_POST_LOGOUT_URIS.iter().map(|u| (*u).to_owned()).collect(),
            public: false,
            id_token_signed_response_alg: None,
        })?;
        client::configure(&state.db, service_id, &settings, &by).await?;
    }
    Ok(client::rotate_secret(&state.db, service_id, &by).await?)
}

/// oauth2-proxy's default callback, and a typical local web app's.
const DEMO_REDIRECT_URIS: [&str; 2] = ["http://localhost:4180/oauth2/callback", "http://localhost:8000/callback"];
const DEMO_POST_LOGOUT_URIS: [&str; 2] = ["http://localhost:4180/", "http://localhost:8000/"];
