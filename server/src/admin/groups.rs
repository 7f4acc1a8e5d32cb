//! A service's groups in the JSON API and on the admin page: made, renamed,
//! deleted, and an account's set of groups. Each change goes through
//! `oidc::groups`, which writes its audit record; the groups an application
//! admits are part of its settings (`applications.rs`, `oidc.rs`).
//!
//! On the page, the service page has a "Groups" card (its forms are here)
//! and the profiles page sets each account's groups with a checkbox per
//! group.

use std::collections::HashMap;

use axum::{
    extract::{rejection::PathRejection, Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect},
    routing::{get, patch, post},
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
    error::Result,
    http::extract::{ApiJson, ClientInfo},
    http::responses::{AdminErrors, BadPath, TooLarge},
    oidc::groups::{self, Group},
    state::{AppState, RouterState},
};

pub(super) fn router<S: RouterState>() -> Router<S> {
    Router::new()
        .route("/admin/api/services/{id}/groups", get(list_groups).post(create_group))
        .route("/admin/api/services/{id}/groups/{group_id}", patch(rename_group).delete(delete_group))
        .route("/admin/api/services/{id}/accounts/{name}/groups", get(get_account_groups).put(put_account_groups))
        .route("/admin/services/{id}/groups", post(create_form))
        .route("/admin/services/{id}/groups/{group_id}", post(rename_form))
        .route("/admin/services/{id}/groups/{group_id}/delete", post(delete_form))
        .route("/admin/services/{id}/accounts/groups", post(account_groups_form))
}

/// A group as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Group)]
struct GroupJson {
    /// Random, and never changes; a rename changes only the name.
    id: String,
    name: String,
    /// How many accounts belong to it.
    members: i64,
    /// RFC 3339.
    created_at: String,
}

impl From<Group> for GroupJson {
    fn from(g: Group) -> Self {
        Self { id: g.id, name: g.name, members: g.members, created_at: store::rfc3339(g.created_at) }
    }
}

/// A group's name, to make or rename it.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = GroupName)]
#[serde(deny_unknown_fields)]
struct NameBody {
    /// 1 to 64 bytes of printable text, not padded with white space, without
    /// bidirectional or zero-width characters; unique within the service.
    name: String,
}

/// An account's groups: the whole set, by name.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = AccountGroups)]
#[serde(deny_unknown_fields)]
struct GroupsBody {
    /// Names of the service's groups, sorted in an answer; repeats are
    /// dropped.
    groups: Vec<String>,
}

/// A service's groups, by name, with their member counts.
#[utoipa::path(
    get,
    path = "/admin/api/services/{id}/groups",
    operation_id = "list_groups",
    tag = "admin",
    params(("id" = String, Path, description = "The service id.")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The groups.", body = Vec<GroupJson>),
        (status = 404, description = "`unknown_service`.", body = ErrorBody),
        AdminErrors,
        BadPath,
    ),
)]
async fn list_groups(
    _: AdminAuth,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<GroupJson>>> {
    let service = store::service(&state.db, &path(id)?).await?;
    Ok(Json(groups::of_service(&state.db, &service.id).await?.into_iter().map(GroupJson::from).collect()))
}

/// Makes a group of a service.
///
/// Audited as `group_created`.
#[utoipa::path(
    post,
    path = "/admin/api/services/{id}/groups",
    operation_id = "create_group",
    tag = "admin",
    params(("id" = String, Path, description = "The service id.")),
    request_body = NameBody,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "The group.", body = GroupJson),
        (status = 400, description = "`invalid_group_name`, `group_name_taken`, `invalid_path`, or a body that is not the expected JSON (`invalid_json`, `invalid_body`, `unsupported_media_type`).", body = ErrorBody),
        (status = 404, description = "`unknown_service`.", body = ErrorBody),
        AdminErrors,
        TooLarge,
    ),
)]
async fn create_group(
    _: AdminAuth,
    State(state): State<AppState>,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<(StatusCode, Json<GroupJson>)> {
    let service = store::service(&state.db, &path(id)?).await?;
    let name = groups::parse_name(&body.name)?;
    let group = groups::create(&state.db, &service.id, &name, &api::by(&state, &client)).await?;
    tracing::info!(service = %service.id, group = %group.id, "group created");
    Ok((StatusCode::CREATED, Json(group.into())))
}

/// Renames a group.
///
/// Its id, members and the applications that admit it stay. Audited as
/// `group_renamed`.
#[utoipa::path(
    patch,
    path = "/admin/api/services/{id}/groups/{group_id}",
    operation_id = "rename_group",
    tag = "admin",
    params(("id" = String, Path, description = "The service id."), ("group_id" = String, Path, description = "The group id.")),
    request_body = NameBody,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The group, renamed.", body = GroupJson),
        (status = 400, description = "`invalid_group_name`, `group_name_taken`, `invalid_path`, or a body that is not the expected JSON (`invalid_json`, `invalid_body`, `unsupported_media_type`).", body = ErrorBody),
        (status = 404, description = "`unknown_service`, `unknown_group` (also for another service's group).", body = ErrorBody),
        AdminErrors,
        TooLarge,
    ),
)]
async fn rename_group(
    _: AdminAuth,
    State(state): State<AppState>,
    client: ClientInfo,
    ids: Result<Path<(String, String)>, PathRejection>,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<Json<GroupJson>> {
    let (id, group_id) = path(ids)?;
    let service = store::service(&state.db, &id).await?;
    let name = groups::parse_name(&body.name)?;
    let group = groups::rename(&state.db, &service.id, &group_id, &name, &api::by(&state, &client)).await?;
    tracing::info!(service = %service.id, group = %group.id, "group renamed");
    Ok(Json(group.into()))
}

/// Deletes a group.
///
/// Its memberships go, and the applications that admitted it no longer do;
/// one left with no group admits every account. Audited as `group_deleted`.
#[utoipa::path(
    delete,
    path = "/admin/api/services/{id}/groups/{group_id}",
    operation_id = "delete_group",
    tag = "admin",
    params(("id" = String, Path, description = "The service id."), ("group_id" = String, Path, description = "The group id.")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "`unknown_service`, `unknown_group` (also for another service's group).", body = ErrorBody),
        AdminErrors,
        BadPath,
    ),
)]
async fn delete_group(
    _: AdminAuth,
    State(state): State<AppState>,
    client: ClientInfo,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode> {
    let (id, group_id) = path(ids)?;
    let service = store::service(&state.db, &id).await?;
    groups::delete(&state.db, &service.id, &group_id, &api::by(&state, &client)).await?;
    tracing::info!(service = %service.id, group = %group_id, "group deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The groups an account belongs to.
#[utoipa::path(
    get,
    path = "/admin/api/services/{id}/accounts/{name}/groups",
    operation_id = "get_account_groups",
    tag = "admin",
    params(("id" = String, Path, description = "The service id."), ("name" = String, Path, description = "The account name, percent-encoded.")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The account's groups, sorted.", body = GroupsBody),
        (status = 404, description = "`unknown_service`, `unknown_account`.", body = ErrorBody),
        AdminErrors,
        BadPath,
    ),
)]
async fn get_account_groups(
    _: AdminAuth,
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<GroupsBody>> {
    let (id, name) = path(ids)?;
    let service = store::service(&state.db, &id).await?;
    Ok(Json(GroupsBody { groups: groups::of_existing_account(&state.db, &service.id, &name).await? }))
}

/// Sets the groups an account belongs to: the whole set.
///
/// Names that are no group of the service refuse the whole request. Audited
/// as `account_groups_changed`.
#[utoipa::path(
    put,
    path = "/admin/api/services/{id}/accounts/{name}/groups",
    operation_id = "put_account_groups",
    tag = "admin",
    params(("id" = String, Path, description = "The service id."), ("name" = String, Path, description = "The account name, percent-encoded.")),
    request_body = GroupsBody,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The account's groups as set, sorted.", body = GroupsBody),
        (status = 400, description = "`unknown_group` (a name that is no group of this service), `invalid_path`, or a body that is not the expected JSON (`invalid_json`, `invalid_body`, `unsupported_media_type`).", body = ErrorBody),
        (status = 404, description = "`unknown_service`, `unknown_account`.", body = ErrorBody),
        AdminErrors,
        TooLarge,
    ),
)]
async fn put_account_groups(
    _: AdminAuth,
    State(state): State<AppState>,
    client: ClientInfo,
    ids: Result<Path<(String, String)>, PathRejection>,
    ApiJson(body): ApiJson<GroupsBody>,
) -> Result<Json<GroupsBody>> {
    let (id, name) = path(ids)?;
    let service = store::service(&state.db, &id).await?;
    let by = api::by(&state, &client);
    let set = groups::set_account(&state.db, &service.id, &name, &body.groups, &by).await?;
    tracing::info!(service = %service.id, "account groups set");
    Ok(Json(GroupsBody { groups: set }))
}

// ---- the admin page ----

/// One group on the service page's "Groups" card.
#[derive(Debug)]
pub(super) struct GroupItem {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) members: i64,
}

/// A group offered as a checkbox: an account's groups, or those an
/// application admits.
#[derive(Debug, Clone)]
pub(super) struct Choice {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) checked: bool,
}

/// The groups of `service_id`, by name.
pub(super) async fn items(state: &AppState, service_id: &str) -> Result<Vec<GroupItem>> {
    let all = groups::of_service(&state.db, service_id).await?;
    Ok(all.into_iter().map(|g| GroupItem { id: g.id, name: g.name, members: g.members }).collect())
}

/// A checkbox for each of `all`, ticked for those named in `chosen`.
pub(super) fn choices(all: &[GroupItem], chosen: &[String]) -> Vec<Choice> {
    all.iter().map(|g| Choice { id: g.id.clone(), name: g.name.clone(), checked: chosen.contains(&g.name) }).collect()
}

/// The names ticked in a form whose checkboxes are named `{prefix}{group
/// id}` and carry the group's name.
pub(super) fn ticked(fields: &HashMap<String, String>, prefix: &str) -> Vec<String> {
    fields.iter().filter(|(key, _)| key.starts_with(prefix)).map(|(_, name)| name.clone()).collect()
}

#[derive(Deserialize)]
struct NameForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

impl CsrfField for NameForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

fn back_to(service_id: &str, done: &str) -> PageResult {
    Ok(Redirect::to(&format!("/admin/services/{service_id}?done={done}")).into_response())
}

/// Makes a group; the name is trimmed.
async fn create_form(
    State(state): State<AppState>,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form }: AdminForm<NameForm>,
) -> PageResult {
    let service = store::service(&state.db, &kit::path(id)?).await?;
    let name = groups::parse_name(form.name.trim())?;
    let group = groups::create(&state.db, &service.id, &name, &kit::by(&state, session.actor(), &client)).await?;
    tracing::info!(service = %service.id, group = %group.id, "group created from the admin page");
    back_to(&service.id, "group_created")
}

/// Renames a group; the name is trimmed.
async fn rename_form(
    State(state): State<AppState>,
    client: ClientInfo,
    ids: Result<Path<(String, String)>, PathRejection>,
    AdminForm { session, form }: AdminForm<NameForm>,
) -> PageResult {
    let (id, group_id) = kit::path(ids)?;
    let service = store::service(&state.db, &id).await?;
    let name = groups::parse_name(form.name.trim())?;
    let by = kit::by(&state, session.actor(), &client);
    groups::rename(&state.db, &service.id, &group_id, &name, &by).await?;
    tracing::info!(service = %service.id, group = %group_id, "group renamed from the admin page");
    back_to(&service.id, "group_renamed")
}

/// Deletes a group, once confirmed on a page that says what goes with it.
async fn delete_form(
    State(state): State<AppState>,
    client: ClientInfo,
    ids: Result<Path<(String, String)>, PathRejection>,
    AdminForm { session, form }: AdminForm<CsrfForm>,
) -> PageResult {
    let (id, group_id) = kit::path(ids)?;
    let service = store::service(&state.db, &id).await?;
    if form.confirmed != "yes" {
        let all = groups::of_service(&state.db, &service.id).await?;
        let group = all.into_iter().find(|g| g.id == group_id).ok_or(crate::error::Error::UnknownGroup)?;
        let admitting = groups::of_applications(&state.db, &service.id).await?;
        let applications = admitting.values().filter(|names| names.contains(&group.name)).count();
        let mut lost = vec![format!(
            "its {}: those accounts stay, in their other groups",
            kit::count(group.members, "membership", "memberships")
        )];
        if applications > 0 {
            lost.push(format!(
                "its place among the groups {} admit: an application left with no group admits every account",
                kit::count(applications as i64, "application", "applications")
            ));
        }
        return AreYouSure {
            title: "Delete this group?",
            summary: format!("The group {} of {} will be deleted.", group.name, service.name),
            lost,
            action: format!("/admin/services/{}/groups/{group_id}/delete", service.id),
            csrf: &form.csrf,
            fields: Vec::new(),
            button: "Delete the group",
            back: format!("/admin/services/{}", service.id),
        }
        .page();
    }
    groups::delete(&state.db, &service.id, &group_id, &kit::by(&state, session.actor(), &client)).await?;
    tracing::info!(service = %service.id, group = %group_id, "group deleted from the admin page");
    back_to(&service.id, "group_deleted")
}

/// The form that sets an account's groups: the account's name, and a
/// checkbox `group.{id}` for each group, its value the group's name.
#[derive(Deserialize)]
struct MembershipForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(flatten)]
    fields: HashMap<String, String>,
}

impl CsrfField for MembershipForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Sets an account's groups to those ticked.
async fn account_groups_form(
    State(state): State<AppState>,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form }: AdminForm<MembershipForm>,
) -> PageResult {
    let service = store::service(&state.db, &kit::path(id)?).await?;
    let names = ticked(&form.fields, "group.");
    let by = kit::by(&state, session.actor(), &client);
    groups::set_account(&state.db, &service.id, &form.name, &names, &by).await?;
    tracing::info!(service = %service.id, "account groups set from the admin page");
    let name: String = url::form_urlencoded::byte_serialize(form.name.as_bytes()).collect();
    Ok(Redirect::to(&format!("/admin/services/{}/profiles?name={name}&done=groups_saved", service.id)).into_response())
}
