//! The audit log page: every admin action, newest first, a page at a time,
//! filtered by action, actor and service, with services named.

use askama::Template;
use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse as _, Redirect},
    routing::get,
    Router,
};
use serde::Deserialize;

use super::{
    api::AuditJson,
    kit::{render, PageResult},
    session::AdminSession,
    store,
};
use crate::{
    audit::{self, Action},
    error::Error,
    state::{AppState, RouterState},
};

pub(super) fn router<S: RouterState>() -> Router<S> {
    Router::new().route("/admin/audit", get(page))
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
