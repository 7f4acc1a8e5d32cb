//! What happened, as an admin reads it: the audit log of admin actions,
//! newest first, a page at a time, filtered by action, actor and service,
//! in the JSON API and on its page (services named); and a service's recent
//! sign-in events in the JSON API (the service's page shows them too).

use askama::Template;
use axum::{
    extract::{
        rejection::{PathRejection, QueryRejection},
        Path, Query, State,
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse as _, Redirect},
    routing::get,
    Json, Router,
};
use serde::{Deserialize, Serialize};
use sesame_proto::wire::ErrorBody;
use utoipa::{IntoParams, ToSchema};

use super::{
    api::{path, AdminAuth},
    kit::{render, PageResult},
    session::AdminSession,
    store,
};
use crate::{
    audit::{self, Action},
    error::{Error, Result},
    http::responses::{AdminErrors, BadPath},
    state::{AppState, RouterState},
};

pub(super) fn router<S: RouterState>() -> Router<S> {
    Router::new()
        .route("/admin/audit", get(page))
        .route("/admin/api/audit", get(list_audit))
        .route("/admin/api/services/{id}/events", get(list_events))
}

/// The filters, as the page's GET form sends them: an empty field is no
/// filter.
#[derive(Debug, Default, Deserialize)]
struct LogQuery {
    before: Option<i64>,
    #[serde(default)]
    action: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    service: String,
}

fn given(text: &str) -> Option<&str> {
    Some(text.trim()).filter(|text| !text.is_empty())
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct LogView {
    events: Vec<AuditJson>,
    actions: Vec<&'static str>,
    services: Vec<(String, String)>,
    action: String,
    actor: String,
    service: String,
    /// The next, older page, with the same filters.
    older: Option<String>,
}

async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> PageResult {
    // Without a session the page sends the browser to sign in.
    if AdminSession::find(&state, &headers).await?.is_none() {
        return Ok(Redirect::to("/admin").into_response());
    }
    let Query(query) = query.map_err(|_| Error::bad_request("invalid_query", "before must be a whole number"))?;
    let filter = audit::Filter {
        before: query.before,
        action: given(&query.action),
        actor: given(&query.actor),
        service: given(&query.service),
    };
    let events: Vec<AuditJson> =
        audit::list(&state.db, &filter, audit::DEFAULT_LIMIT).await?.into_iter().map(AuditJson::from).collect();
    let older = (events.len() as i64 == audit::DEFAULT_LIMIT).then(|| {
        let last = events.last().map_or(0, |e| e.id);
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("before", &last.to_string())
            .append_pair("action", &query.action)
            .append_pair("actor", &query.actor)
            .append_pair("service", &query.service)
            .finish();
        format!("/admin/audit?{query}")
    });
    let services = store::list_services(&state.db).await?.into_iter().map(|s| (s.id, s.name)).collect();
    let view = LogView {
        events,
        actions: Action::ALL.iter().map(|a| a.as_str()).collect(),
        services,
        action: query.action,
        actor: query.actor,
        service: query.service,
        older,
    };
    render(StatusCode::OK, &view)
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
