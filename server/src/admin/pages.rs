//! The admin web page: sign-in, the list of services, and one service's
//! accounts and sign-in events.
//!
//! Every change is a POST form carrying the session's CSRF token, refused
//! when the browser says it comes from another origin, and answered with a
//! 303 back to a page (post/redirect/get), so reloading never repeats it.
//! Notices after a redirect travel as fixed codes in the query string, never
//! as text, so a crafted link cannot put words on the admin page.

use askama::Template;
use axum::{
    extract::{
        rejection::{FormRejection, PathRejection, QueryRejection},
        Path, Query, State,
    },
    http::{header, HeaderMap, StatusCode},
    response::{AppendHeaders, IntoResponse, Redirect},
    routing::{get, post},
    Form, Router,
};
use serde::Deserialize;
use sesame_proto::ServiceName;

use super::{
    api::AuditJson,
    form::{AdminForm, CsrfField, CsrfForm},
    kit::{by, count, form, now, path, render, AreYouSure, PageResult},
    notice::Notice,
    session::{self, AdminSession, Credential, PRE_SESSION_COOKIE, PRE_SESSION_SECS, SESSION_COOKIE, SESSION_SECS},
    store,
};
use crate::{
    audit::{self, Action, Actor, Record},
    challenge::Challenges,
    challenge::SignInState,
    error::Error,
    http::cookie,
    http::extract::ClientInfo,
    state::AppState,
};

pub(super) fn router<S: SignInState>() -> Router<S> {
    Router::new()
        .route("/admin", get(index))
        .route("/admin/signin", post(sign_in))
        .route("/admin/signout", post(sign_out))
        .route("/admin/sessions/end", post(end_session))
        .route("/admin/services", post(create_service))
        .route("/admin/services/{id}", get(service_page))
        .route("/admin/services/{id}/delete", post(delete_service))
        .route("/admin/services/{id}/number-matching", post(set_number_matching))
        .route("/admin/services/{id}/passkeys", post(set_passkeys))
        .route("/admin/services/{id}/accounts/delete", post(delete_account))
}

#[derive(Template)]
#[template(path = "admin/signin.html")]
struct SignInView {
    csrf: String,
    error: Option<&'static str>,
}

/// The sign-in form, with its double-submit cookie. A browser that already
/// has a well-formed cookie keeps it, so two open tabs both work.
pub(super) fn sign_in_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&'static str>,
) -> PageResult {
    let csrf = cookie::secret(&state.settings.origin, headers, PRE_SESSION_COOKIE)
        .map_or_else(cookie::new_secret, str::to_owned);
    let cookie = session::set_cookie(&state.settings, PRE_SESSION_COOKIE, &csrf, PRE_SESSION_SECS);
    let page = render(status, &SignInView { csrf, error })?;
    Ok(([(header::SET_COOKIE, cookie)], page).into_response())
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
    error: Option<&'static str>,
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
    let services = store::list_services(&state.db)
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
        error: notice.error(),
        services,
        authenticators,
        sessions,
        audit,
    };
    render(StatusCode::OK, &view)
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

async fn sign_in(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Result<Form<SignInForm>, FormRejection>,
) -> PageResult {
    cookie::check_origin(&state.settings.origin, &headers)?;
    let body = form(body)?;
    let expected = cookie::secret(&state.settings.origin, &headers, PRE_SESSION_COOKIE);
    if !expected.is_some_and(|expected| cookie::same_secret(expected, &body.csrf)) {
        return Err(Error::CsrfRejected.into());
    }
    if let Err(limited) = state.limits.submissions.check(client.ip).await {
        let mut page = sign_in_page(
            &state,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many attempts from this address. Wait a minute and try again."),
        )?;
        if let Some(secs) = limited.retry_after() {
            page.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        return Ok(page);
    }
    if !state.admin_token.matches(body.token.trim()) {
        tracing::info!(ip = %client.ip, "admin sign-in refused");
        // What was typed is never recorded: it may be the token with a typo.
        let record = Record::new(Action::AdminSignInRefused, "", "wrong admin token");
        audit::record_alone(&state.db, &by(&state, &Actor::Anonymous, &client), record).await?;
        return sign_in_page(&state, &headers, StatusCode::UNAUTHORIZED, Some("That is not the admin token."));
    }
    let credential = Credential::Token(&state.admin_token);
    let (value, session) = AdminSession::create(&state.db, credential, &client, now(&state)).await?;
    tracing::info!(ip = %client.ip, "admin signed in");
    // After the session exists, which its creation checks; a crash in
    // between loses this record, never invents one.
    let handle = session.handle();
    let record = Record::new(Action::AdminSignedIn, &handle, "with the admin token");
    audit::record_alone(&state.db, &by(&state, session.actor(), &client), record).await?;
    let set = AppendHeaders([
        (header::SET_COOKIE, session::set_cookie(&state.settings, SESSION_COOKIE, &value, SESSION_SECS)),
        (header::SET_COOKIE, session::set_cookie(&state.settings, PRE_SESSION_COOKIE, "", 0)),
    ]);
    Ok((set, Redirect::to("/admin")).into_response())
}

async fn sign_out(
    State(state): State<AppState>,
    client: ClientInfo,
    AdminForm { session, .. }: AdminForm<CsrfForm>,
) -> PageResult {
    let actor = session.actor().clone();
    session.end(&state.db, &by(&state, &actor, &client)).await?;
    let clear = session::set_cookie(&state.settings, SESSION_COOKIE, "", 0);
    Ok(([(header::SET_COOKIE, clear)], Redirect::to("/admin")).into_response())
}

#[derive(Deserialize)]
struct SessionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    handle: String,
}

impl CsrfField for SessionForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Ends any live admin session, this one included (the next page then asks
/// to sign in).
async fn end_session(
    State(state): State<AppState>,
    client: ClientInfo,
    AdminForm { session, form: body }: AdminForm<SessionForm>,
) -> PageResult {
    if !AdminSession::end_by_handle(&state.db, &body.handle, &by(&state, session.actor(), &client)).await? {
        return Err(Error::bad_request("unknown_session", "that session has already ended").into());
    }
    tracing::info!("admin session ended from the sessions list");
    Ok(Redirect::to("/admin?done=session_ended").into_response())
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    number_matching: Option<String>,
}

impl CsrfField for CreateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn create_service(
    State(state): State<AppState>,
    client: ClientInfo,
    AdminForm { session, form: body }: AdminForm<CreateForm>,
) -> PageResult {
    let Ok(name) = ServiceName::parse(&body.name) else {
        return Ok(Redirect::to("/admin?error=invalid_service_name").into_response());
    };
    let number_matching = body.number_matching.is_some();
    match store::create_service(&state.db, &name, number_matching, &by(&state, session.actor(), &client)).await {
        Ok(service) => {
            tracing::info!(id = %service.id, "service created");
            Ok(Redirect::to("/admin?done=created").into_response())
        }
        Err(Error::ServiceNameTaken { .. }) => Ok(Redirect::to("/admin?error=service_exists").into_response()),
        Err(e) => Err(e.into()),
    }
}

async fn delete_service(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form }: AdminForm<CsrfForm>,
) -> PageResult {
    let id = path(id)?;
    if form.confirmed != "yes" {
        let service = store::service(&state.db, &id).await?;
        let held = store::service_footprint(&state.db, &id, now(&state)).await?;
        let mut lost = vec![
            count(held.accounts, "account", "accounts"),
            count(held.keys, "authenticator key", "authenticator keys"),
            format!("{} signed in now", count(held.sessions, "session", "sessions")),
            count(held.recovery_links, "open recovery link", "open recovery links"),
            "its sign-in history".to_owned(),
        ];
        if held.applications > 0 {
            let credentials =
                if held.applications == 1 { "its client id and secret" } else { "their client ids and secrets" };
            lost.push(format!(
                "{}, with {credentials}: nothing that uses them can sign anyone in any more",
                count(held.applications, "application", "applications")
            ));
        }
        return AreYouSure {
            title: "Delete this service?",
            summary: format!("The service {} will be deleted with everything in it.", service.name),
            lost,
            action: format!("/admin/services/{id}/delete"),
            csrf: &form.csrf,
            fields: Vec::new(),
            button: "Delete the service",
            back: format!("/admin/services/{id}"),
        }
        .page();
    }
    store::delete_service(&state.db, &challenges, &id, &by(&state, session.actor(), &client)).await?;
    tracing::info!(%id, "service deleted");
    Ok(Redirect::to("/admin?done=service_deleted").into_response())
}

#[derive(Deserialize)]
struct NumberMatchingForm {
    #[serde(default)]
    csrf: String,
    /// `1` to turn it on, `0` to turn it off: the form says which, so that
    /// sending it twice does not undo it.
    #[serde(default)]
    on: String,
}

impl CsrfField for NumberMatchingForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn set_number_matching(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form: body }: AdminForm<NumberMatchingForm>,
) -> PageResult {
    let id = path(id)?;
    let on = match body.on.as_str() {
        "1" => true,
        "0" => false,
        _ => return Err(Error::bad_request("invalid_form", "the form must say whether to turn it on or off").into()),
    };
    store::set_number_matching(&state.db, &challenges, &id, on, &by(&state, session.actor(), &client)).await?;
    tracing::info!(service = %id, on, "number matching changed");
    let done = if on { "number_matching_on" } else { "number_matching_off" };
    Ok(Redirect::to(&format!("/admin/services/{id}?done={done}")).into_response())
}

#[derive(Deserialize)]
struct PasskeysForm {
    #[serde(default)]
    csrf: String,
    /// `sesame`, `passkey` or `both`.
    #[serde(default)]
    key_kinds: String,
    /// Present (a ticked checkbox) when passkeys must verify their user.
    #[serde(default)]
    require_user_verification: Option<String>,
}

impl CsrfField for PasskeysForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Which kinds of key sign in to a service, and whether a passkey must
/// verify its user.
async fn set_passkeys(
    State(state): State<AppState>,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form: body }: AdminForm<PasskeysForm>,
) -> PageResult {
    let id = path(id)?;
    let kinds = crate::signin::passkey::store::KeyKinds::parse(&body.key_kinds)
        .ok_or_else(|| Error::bad_request("invalid_key_kinds", "choose Sesame keys, passkeys, or both"))?;
    let verify = body.require_user_verification.is_some();
    let by = by(&state, session.actor(), &client);
    crate::signin::passkey::store::set_policy(&state.db, &id, kinds, verify, &by).await?;
    tracing::info!(service = %id, key_kinds = kinds.as_str(), verify, "key kinds changed");
    Ok(Redirect::to(&format!("/admin/services/{id}?done=key_kinds_changed")).into_response())
}

/// A form that names an account: an account of a service, or an admin
/// authenticator.
#[derive(Deserialize)]
pub(super) struct AccountForm {
    #[serde(default)]
    pub(super) csrf: String,
    #[serde(default)]
    pub(super) name: String,
    /// As in [`CsrfForm::confirmed`].
    #[serde(default)]
    pub(super) confirmed: String,
}

impl CsrfField for AccountForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The account name travels in the form, not the URL, so names with `/`,
/// `?` or `#` need no URL encoding.
async fn delete_account(
    State(state): State<AppState>,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form: body }: AdminForm<AccountForm>,
) -> PageResult {
    let id = path(id)?;
    if body.confirmed != "yes" {
        store::service(&state.db, &id).await?;
        let held = store::account_footprint(&state.db, &id, &body.name, now(&state)).await?;
        if held.accounts == 0 {
            return Err(Error::UnknownAccount.into());
        }
        return AreYouSure {
            title: "Delete this account?",
            summary: format!("The account {} will be deleted.", body.name),
            lost: vec![
                count(held.keys, "authenticator key", "authenticator keys"),
                format!("{} signed in now", count(held.sessions, "session", "sessions")),
                count(held.recovery_links, "open recovery link", "open recovery links"),
            ],
            action: format!("/admin/services/{id}/accounts/delete"),
            csrf: &body.csrf,
            fields: vec![("name", &body.name)],
            button: "Delete the account",
            back: format!("/admin/services/{id}"),
        }
        .page();
    }
    store::delete_account(&state.db, &id, &body.name, &by(&state, session.actor(), &client)).await?;
    tracing::info!(service = %id, "account deleted");
    Ok(Redirect::to(&format!("/admin/services/{id}?done=account_deleted")).into_response())
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
