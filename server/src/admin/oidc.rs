//! A service's applications (its OpenID Connect clients) for people (a card
//! on the service's admin page; the JSON API is `applications.rs`), and the
//! rotation of the provider's signing keys, for both. Both go through
//! `oidc::client` and `oidc::keys`, which write the audit record with each
//! change.

use std::collections::HashMap;

use askama::Template;

use axum::{
    extract::{rejection::PathRejection, Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect},
    routing::{get, post},
    Json, Router,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    api::{self, AdminAuth},
    form::{AdminForm, CsrfField, CsrfForm},
    groups::GroupItem,
    kit::{self, AreYouSure, PageResult},
    store,
};
use crate::{
    audit::Actor,
    error::{Error, Result},
    http::extract::ClientInfo,
    http::responses::AdminErrors,
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
        .route("/admin/api/oidc/keys", get(list_keys))
        .route("/admin/api/oidc/keys/rotate", post(rotate_keys))
        .route("/admin/services/{id}/applications", post(create_form))
        .route("/admin/services/{id}/applications/{client_id}", post(change_form))
        .route("/admin/services/{id}/applications/{client_id}/secret", post(rotate_secret_form))
        .route("/admin/services/{id}/applications/{client_id}/delete", post(delete_form))
        .route("/admin/oidc/keys/rotate", post(rotate_keys_form))
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

/// One application on the service page's "Applications" card.
#[derive(Debug)]
pub(super) struct ApplicationItem {
    pub(super) client_id: String,
    pub(super) name: String,
    pub(super) public: bool,
    pub(super) alg: &'static str,
    /// A refresh token with every code.
    pub(super) refresh_tokens: bool,
    pub(super) ask_consent: bool,
    pub(super) redirect_uris: Vec<String>,
    pub(super) post_logout_redirect_uris: Vec<String>,
    /// The groups it admits, sorted: every account when empty.
    pub(super) allowed_groups: Vec<String>,
    /// The service's groups as its form's checkboxes.
    pub(super) choices: Vec<super::groups::Choice>,
}

impl ApplicationItem {
    /// The redirect URIs as its form's text area holds them: one per line.
    pub(super) fn redirect_text(&self) -> String {
        self.redirect_uris.join("\n")
    }

    pub(super) fn post_logout_text(&self) -> String {
        self.post_logout_redirect_uris.join("\n")
    }
}

impl ApplicationItem {
    fn new(client: Client, allowed_groups: Vec<String>, groups: &[GroupItem]) -> Self {
        Self {
            public: client.is_public(),
            alg: client.alg.as_str(),
            refresh_tokens: client.refresh_tokens,
            ask_consent: client.ask_consent,
            client_id: client.client_id,
            name: client.name,
            redirect_uris: client.redirect_uris,
            post_logout_redirect_uris: client.post_logout_redirect_uris,
            choices: super::groups::choices(groups, &allowed_groups),
            allowed_groups,
        }
    }
}

/// The applications of `service_id`, the first made first, each with the
/// service's `groups` as its form's checkboxes.
pub(super) async fn items(state: &AppState, service_id: &str, groups: &[GroupItem]) -> Result<Vec<ApplicationItem>> {
    let mut allowed = crate::oidc::groups::of_applications(&state.db, service_id).await?;
    Ok(client::all_of_service(&state.db, service_id)
        .await?
        .into_iter()
        .map(|client| {
            let names = allowed.remove(&client.client_id).unwrap_or_default();
            ApplicationItem::new(client, names, groups)
        })
        .collect())
}

/// An application's form, to add one or to change one: its name, and its
/// settings with one URI per line.
#[derive(Debug, Deserialize)]
struct ApplicationForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    redirect_uris: String,
    #[serde(default)]
    post_logout_redirect_uris: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    public: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    /// A checkbox: present when ticked.
    #[serde(default)]
    refresh_tokens: Option<String>,
    #[serde(default)]
    ask_consent: Option<String>,
    /// The rest: a checkbox `allowed_group.{id}` for each group of the
    /// service, its value the group's name.
    #[serde(flatten)]
    fields: HashMap<String, String>,
}

impl CsrfField for ApplicationForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl ApplicationForm {
    /// The name and the settings, checked as the API checks them; the
    /// groups ticked are the whole set the application admits.
    fn parse(self) -> Result<(String, client::Settings)> {
        let name = client::parse_name(&self.name)?;
        let allowed = super::groups::ticked(&self.fields, "allowed_group.");
        let settings = client::Settings::parse(SettingsJson {
            redirect_uris: lines(&self.redirect_uris),
            post_logout_redirect_uris: lines(&self.post_logout_redirect_uris),
            public: self.public.is_some(),
            id_token_signed_response_alg: self.alg,
            refresh_tokens: Some(self.refresh_tokens.is_some()),
            ask_consent: Some(self.ask_consent.is_some()),
        })?;
        Ok((name, settings.admitting(Some(allowed))))
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
    application_name: String,
    client_id: String,
    secret: Option<String>,
    issuer: String,
}

/// The service page, with a notice.
fn back_to(service_id: &str, done: &str) -> PageResult {
    Ok(Redirect::to(&format!("/admin/services/{service_id}?done={done}")).into_response())
}

/// Adds an application; a confidential one's secret is shown once.
async fn create_form(
    State(state): State<AppState>,
    info: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form }: AdminForm<ApplicationForm>,
) -> PageResult {
    let service = store::service(&state.db, &kit::path(id)?).await?;
    let (name, settings) = form.parse()?;
    let by = kit::by(&state, session.actor(), &info);
    let (client, secret) = client::create(&state.db, &service.id, &name, &settings, &by).await?;
    tracing::info!(service = %service.id, client = %client.client_id, "application created");
    match secret {
        Some(secret) => show_secret(&state, service, client, secret),
        None => back_to(&service.id, "application_created"),
    }
}

/// Changes an application's name and settings. One turned confidential
/// gets a secret, shown once.
async fn change_form(
    State(state): State<AppState>,
    info: ClientInfo,
    ids: Result<Path<(String, String)>, PathRejection>,
    AdminForm { session, form }: AdminForm<ApplicationForm>,
) -> PageResult {
    let (service, client) = super::applications::application_at(&state, ids).await?;
    let (name, settings) = form.parse()?;
    let by = kit::by(&state, session.actor(), &info);
    let (client, secret) =
        client::change(&state.db, &service.id, &client.client_id, Some(&name), &settings, &by).await?;
    tracing::info!(service = %service.id, client = %client.client_id, "application changed");
    match secret {
        Some(secret) => show_secret(&state, service, client, secret),
        None => back_to(&service.id, "application_saved"),
    }
}

async fn rotate_secret_form(
    State(state): State<AppState>,
    info: ClientInfo,
    ids: Result<Path<(String, String)>, PathRejection>,
    AdminForm { session, form }: AdminForm<CsrfForm>,
) -> PageResult {
    let (service, client) = super::applications::application_at(&state, ids).await?;
    if client.is_public() {
        return Err(Error::bad_request("public_client", "a public client has no secret to rotate").into());
    }
    if form.confirmed != "yes" {
        return AreYouSure {
            title: "Make a new client secret?",
            summary: format!("The application {} of {} will get a new client secret.", client.name, service.name),
            lost: vec![
                "the current secret, at once: whatever uses it cannot sign anyone in until it is given the new one"
                    .to_owned(),
            ],
            action: format!("/admin/services/{}/applications/{}/secret", service.id, client.client_id),
            csrf: &form.csrf,
            fields: Vec::new(),
            button: "Make a new secret",
            back: format!("/admin/services/{}", service.id),
        }
        .page();
    }
    let by = kit::by(&state, session.actor(), &info);
    let (client, secret) = client::rotate_secret(&state.db, &service.id, &client.client_id, &by).await?;
    tracing::info!(service = %service.id, client = %client.client_id, "application secret rotated");
    show_secret(&state, service, client, secret)
}

fn show_secret(state: &AppState, service: store::Service, client: Client, secret: String) -> PageResult {
    let view = SecretView {
        service_id: service.id,
        service_name: service.name,
        application_name: client.name,
        client_id: client.client_id,
        secret: Some(secret),
        issuer: state.settings.origin.to_string(),
    };
    kit::render(StatusCode::OK, &view)
}

async fn delete_form(
    State(state): State<AppState>,
    info: ClientInfo,
    ids: Result<Path<(String, String)>, PathRejection>,
    AdminForm { session, form }: AdminForm<CsrfForm>,
) -> PageResult {
    let (service, client) = super::applications::application_at(&state, ids).await?;
    if form.confirmed != "yes" {
        let others = client::all_of_service(&state.db, &service.id).await?.len().saturating_sub(1);
        let credentials = if client.is_public() {
            "its client id: whatever uses it can no longer sign anyone in"
        } else {
            "its client id and secret: whatever uses them can no longer sign anyone in"
        };
        let lost = vec![
            credentials.to_owned(),
            "the sign-ins waiting for it, and the codes, access tokens and refresh tokens issued to it".to_owned(),
        ];
        return AreYouSure {
            title: "Remove this application?",
            summary: format!(
                "The application {} of {} will be removed. The service keeps {}.",
                client.name,
                service.name,
                match others {
                    0 => "its accounts and its sessions".to_owned(),
                    1 => "its accounts, its sessions and its other application".to_owned(),
                    n => format!("its accounts, its sessions and its {n} other applications"),
                },
            ),
            lost,
            action: format!("/admin/services/{}/applications/{}/delete", service.id, client.client_id),
            csrf: &form.csrf,
            fields: Vec::new(),
            button: "Remove the application",
            back: format!("/admin/services/{}", service.id),
        }
        .page();
    }
    client::remove(&state.db, &service.id, &client.client_id, &kit::by(&state, session.actor(), &info)).await?;
    tracing::info!(service = %service.id, client = %client.client_id, "application removed");
    back_to(&service.id, "application_removed")
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
    let first = match client::first_of_service(&state.db, service_id).await {
        Ok(first) => first,
        Err(Error::OidcNotConfigured) => {
            let settings = client::Settings::parse(SettingsJson {
                redirect_uris: DEMO_REDIRECT_URIS.iter().map(|u| (*u).to_owned()).collect(),
                post_logout_redirect_uris: DEMO_POST_LOGOUT_URIS.iter().map(|u| (*u).to_owned()).collect(),
                public: false,
                id_token_signed_response_alg: None,
                refresh_tokens: Some(false),
                ask_consent: Some(false),
            })?;
            client::create(&state.db, service_id, "Demo", &settings, &by).await?.0
        }
        Err(e) => return Err(e.into()),
    };
    Ok(client::rotate_secret(&state.db, service_id, &first.client_id, &by).await?)
}

/// oauth2-proxy's default callback, and a typical local web app's.
const DEMO_REDIRECT_URIS: [&str; 2] = ["http://localhost:4180/oauth2/callback", "http://localhost:8000/callback"];
const DEMO_POST_LOGOUT_URIS: [&str; 2] = ["http://localhost:4180/", "http://localhost:8000/"];
