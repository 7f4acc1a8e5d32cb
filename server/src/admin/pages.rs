//! The admin web page's two views: the list of services (with the admin's
//! own authenticators, the live admin sessions and the newest audit
//! records), and one service's page (its accounts a page at a time, their
//! keys, its sign-in events, applications, groups and settings).
//!
//! What the pages' forms do is elsewhere: signing in and out in `signin`,
//! a service's changes in `services`, and the rest beside the feature it
//! manages. Notices after a form's redirect travel as fixed codes in the
//! query string, never as text ([`Notice`]), so a crafted link cannot put
//! words on the admin page.

use askama::Template;
use axum::{
    extract::{
        rejection::{PathRejection, QueryRejection},
        Path, Query, State,
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect},
    routing::get,
    Router,
};

use super::{
    kit::{now, path, render, PageResult},
    log::AuditJson,
    notice::Notice,
    session::AdminSession,
    signin::sign_in_page,
    store,
};
use crate::{
    audit,
    state::{AppState, RouterState},
};

pub(super) fn router<S: RouterState>() -> Router<S> {
    Router::new().route("/admin", get(index)).route("/admin/services/{id}", get(service_page))
}

#[derive(Debug)]
struct ServiceItem {
    id: String,
    name: String,
    login_url: String,
    accounts: i64,
}

#[derive(Template)]
#[template(path = "admin/services.html")]
struct ServicesView {
    csrf: String,
    done: Option<&'static str>,
    error: Option<String>,
    services: Vec<ServiceItem>,
    /// Accounts of the built-in admin service: keys that may sign in here.
    authenticators: Vec<AccountItem>,
    sessions: Vec<SessionItem>,
    /// The newest admin actions; askama escapes every field.
    audit: Vec<AuditJson>,
}

/// A live admin session, as the sessions list shows it.
#[derive(Debug)]
struct SessionItem {
    handle: String,
    opened_by: String,
    ip: String,
    user_agent: String,
    created_at: String,
    expires_at: String,
    current: bool,
}

async fn index(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Notice>, QueryRejection>,
) -> PageResult {
    let Some(session) = AdminSession::find(&state, &headers).await? else {
        return sign_in_page(&state, &headers, StatusCode::OK, None);
    };
    let notice = Notice::from(query);
    let services: Vec<ServiceItem> = store::list_services(&state.db)
        .await?
        .into_iter()
        .map(|s| ServiceItem {
            login_url: store::login_url(&state.settings.origin, &s.id),
            id: s.id,
            name: s.name,
            accounts: s.accounts,
        })
        .collect();
    let authenticators =
        store::admin_accounts(&state.db, now(&state)).await?.into_iter().map(AccountItem::from).collect();
    let current = session.handle();
    let sessions = AdminSession::list(&state.db, &state.admin_token, now(&state))
        .await?
        .into_iter()
        .map(|s| SessionItem {
            current: s.handle == current,
            opened_by: s
                .authenticator
                .map_or_else(|| "the admin token".to_owned(), |name| format!("authenticator {name}")),
            handle: s.handle,
            ip: s.ip,
            user_agent: s.user_agent,
            created_at: store::rfc3339(s.created_at),
            expires_at: store::rfc3339(s.expires_at),
        })
        .collect();
    let audit = audit::list(&state.db, &audit::Filter::default(), audit::DEFAULT_LIMIT)
        .await?
        .into_iter()
        .map(AuditJson::from)
        .collect();
    let view = ServicesView {
        csrf: session.csrf_token().to_owned(),
        done: notice.done(),
        error: notice.error_naming(|name| services.iter().any(|s| s.name == name)),
        services,
        authenticators,
        sessions,
        audit,
    };
    render(StatusCode::OK, &view)
}

#[derive(Debug)]
struct AccountItem {
    name: String,
    created_at: String,
    last_login_at: String,
}

impl From<store::Account> for AccountItem {
    fn from(a: store::Account) -> Self {
        let last_login_at = if a.pending {
            "never: waits for confirmation".to_owned()
        } else {
            a.last_login_at.map_or_else(|| "never".to_owned(), store::rfc3339)
        };
        Self { name: a.name, created_at: store::rfc3339(a.created_at), last_login_at }
    }
}

#[derive(Debug)]
struct EventItem {
    kind: String,
    account: String,
    ip: String,
    user_agent: String,
    at: String,
}

/// Where a page of accounts is among all of a service's accounts.
#[derive(Debug)]
struct Pager {
    /// The positions of its first and last account, from 1.
    first: i64,
    last: i64,
    total: i64,
    /// The pages before and after it, from 1, when there are.
    previous: Option<i64>,
    next: Option<i64>,
}

impl Pager {
    /// Page `page` (from 0) of `total` accounts, showing `shown`; `None` when
    /// every account fits on one page.
    fn of(page: i64, shown: usize, total: i64) -> Option<Self> {
        let per_page = store::ACCOUNTS_PER_PAGE;
        if total <= per_page && page == 0 {
            return None;
        }
        let first = page.saturating_mul(per_page) + 1;
        Some(Self {
            first,
            last: first + shown as i64 - 1,
            total,
            // Past the end, "Previous" leads to the last page.
            previous: (page > 0).then(|| page.min((total + per_page - 1) / per_page).max(1)),
            next: (first.saturating_add(per_page) <= total).then_some(page + 2),
        })
    }
}

#[derive(Template)]
#[template(path = "admin/service.html")]
struct ServiceView {
    csrf: String,
    done: Option<&'static str>,
    id: String,
    name: String,
    login_url: String,
    accounts: Vec<AccountItem>,
    /// Where this page of accounts is, when there are several.
    pager: Option<Pager>,
    /// Each account's keys, for the authenticators section.
    account_keys: Vec<super::accounts::AccountKeys>,
    /// The recovery link lifetimes the form offers.
    lifetimes: &'static [(i64, &'static str)],
    events: Vec<EventItem>,
    /// The service's applications (OpenID Connect clients), oldest first.
    applications: Vec<super::oidc::ApplicationItem>,
    /// The service's groups, by name, and the same as unticked checkboxes
    /// for the form that adds an application.
    groups: Vec<super::groups::GroupItem>,
    group_choices: Vec<super::groups::Choice>,
    issuer: String,
    number_matching: bool,
    /// Which kinds of key sign in: `sesame`, `passkey` or `both`.
    key_kinds: String,
    require_user_verification: bool,
}

async fn service_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<Notice>, QueryRejection>,
) -> PageResult {
    let Some(session) = AdminSession::find(&state, &headers).await? else {
        return Ok(Redirect::to("/admin").into_response());
    };
    let service = store::service(&state.db, &path(id)?).await?;
    let notice = Notice::from(query);
    let page = notice.page()?;
    let listed = store::accounts_page(&state.db, &service.id, page).await?;
    let pager = Pager::of(page, listed.accounts.len(), listed.total);
    let accounts: Vec<AccountItem> = listed.accounts.into_iter().map(AccountItem::from).collect();
    let names: Vec<String> = accounts.iter().map(|a| a.name.clone()).collect();
    let account_keys = super::accounts::of_accounts(&state, &service.id, &names).await?;
    let events = store::recent_events(&state.db, &service.id)
        .await?
        .into_iter()
        .map(|e| EventItem {
            kind: e.kind,
            account: e.account.unwrap_or_default(),
            ip: e.ip,
            user_agent: e.user_agent,
            at: store::rfc3339(e.at),
        })
        .collect();
    let groups = super::groups::items(&state, &service.id).await?;
    let view = ServiceView {
        csrf: session.csrf_token().to_owned(),
        done: notice.done(),
        login_url: store::login_url(&state.settings.origin, &service.id),
        applications: super::oidc::items(&state, &service.id, &groups).await?,
        group_choices: super::groups::choices(&groups, &[]),
        groups,
        issuer: state.settings.origin.to_string(),
        number_matching: service.number_matching,
        key_kinds: service.key_kinds,
        require_user_verification: service.require_user_verification,
        id: service.id,
        name: service.name,
        accounts,
        pager,
        account_keys,
        lifetimes: &super::accounts::LIFETIMES,
        events,
    };
    render(StatusCode::OK, &view)
}
