//! Consent: what a person allowed each application to learn (migration
//! 0015). The first time an application asks for a set of scopes, the
//! person sees what it will learn and approves or refuses; an approval
//! covers that application and every request that asks for no more, until
//! the person withdraws it on their account page. `prompt=consent` asks
//! again all the same.

use askama::Template;
use axum::{
    extract::{
        rejection::{FormRejection, QueryRejection},
        Path, Query, State,
    },
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{Html, IntoResponse as _, Redirect, Response},
    Form,
};
use serde::Deserialize;
use sesame_proto::ServiceId;

use super::{
    client::Client,
    grant::{Request, SignedIn},
    toward::{self, again},
};
use crate::{
    challenge::{session, Challenges},
    db::{sql::query, Db},
    error::{error_page, Error, Result},
    http::cookie,
    state::AppState,
};

/// What a scope lets an application learn, in the words of the consent and
/// login pages.
pub(super) fn meaning(scope: &str) -> Option<&'static str> {
    Some(match scope {
        "openid" => "that it is you each time you sign in, and your account name",
        "profile" => "your display name",
        "email" => "your email address",
        "groups" => "the groups you belong to",
        "offline_access" => "to keep you signed in while you are away (a refresh token)",
        _ => return None,
    })
}

/// Whether `client` may learn what `scope` (space-separated) releases about
/// `who` without asking: it does not ask for consent, or `who` already
/// approved no less.
pub(super) async fn given(db: &Db, client: &Client, who: &SignedIn, scope: &str) -> Result<bool> {
    Ok(!client.ask_consent || covers(db, client, who, scope).await?)
}

/// Whether `who` already approved `scope` (space-separated) for `client`.
async fn covers(db: &Db, client: &Client, who: &SignedIn, scope: &str) -> Result<bool> {
    let select = query("SELECT scope FROM oidc_consent WHERE client_id = $1 AND service_id = $2 AND account = $3")
        .bind(client.client_id.as_str())
        .bind(who.service_id.as_str())
        .bind(who.account.as_str());
    let Some(approved) = db.fetch_optional(select, |row| row.text("scope")).await? else { return Ok(false) };
    let approved: Vec<&str> = approved.split(' ').collect();
    Ok(scope.split(' ').filter(|s| !s.is_empty()).all(|s| approved.contains(&s)))
}

/// Records that `who` approved `scope` for `client` at `now`, beside what
/// they approved before.
pub(super) async fn approve(db: &Db, client: &Client, who: &SignedIn, scope: &str, now: i64) -> Result<()> {
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    let select = query("SELECT scope FROM oidc_consent WHERE client_id = $1 AND service_id = $2 AND account = $3")
        .bind(client.client_id.as_str())
        .bind(who.service_id.as_str())
        .bind(who.account.as_str());
    let before = conn.fetch_optional(select, |row| row.text("scope")).await?.unwrap_or_default();
    let all: Vec<&str> = before.split(' ').chain(scope.split(' ')).filter(|s| !s.is_empty()).collect();
    let union = super::SCOPES.iter().filter(|s| all.contains(s)).copied().collect::<Vec<_>>().join(" ");
    let upsert = query(
        "INSERT INTO oidc_consent (client_id, service_id, account, scope, granted_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (client_id, service_id, account) DO UPDATE SET scope = $4, granted_at = $5",
    )
    .bind(client.client_id.as_str())
    .bind(who.service_id.as_str())
    .bind(who.account.as_str())
    .bind(union)
    .bind(now);
    conn.execute(upsert).await?;
    write.commit().await
}

/// An approval, as the account page lists it.
#[derive(Debug, Clone)]
pub(super) struct Approval {
    pub client_id: String,
    /// The application's name.
    pub application: String,
    pub scope: String,
    pub granted_at: i64,
}

/// Every approval `account` of `service_id` gave, by application name.
pub(super) async fn of_account(db: &Db, service_id: &str, account: &str) -> Result<Vec<Approval>> {
    let select = query(
        "SELECT c.client_id, a.name, c.scope, c.granted_at FROM oidc_consent c \
         JOIN oidc_application a ON a.client_id = c.client_id \
         WHERE c.service_id = $1 AND c.account = $2 ORDER BY a.name",
    )
    .bind(service_id)
    .bind(account);
    db.fetch_all(select, |row| {
        Ok(Approval {
            client_id: row.text("client_id")?,
            application: row.text("name")?,
            scope: row.text("scope")?,
            granted_at: row.int("granted_at")?,
        })
    })
    .await
}

/// Withdraws the approval `account` of `service_id` gave `client_id`, if
/// any, and with it every refresh and access token the application holds
/// for the account: it learns nothing more without asking again. Returns
/// whether there was an approval.
pub(super) async fn withdraw(db: &Db, service_id: &str, account: &str, client_id: &str) -> Result<bool> {
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    let mut gone = 0;
    for table in ["oidc_consent", "oidc_refresh_token", "oidc_token"] {
        let delete = format!("DELETE FROM {table} WHERE client_id = $1 AND service_id = $2 AND account = $3");
        let done = conn.execute(query(&delete).bind(client_id).bind(service_id).bind(account)).await?;
        if table == "oidc_consent" {
            gone = done;
        }
    }
    write.commit().await?;
    Ok(gone > 0)
}

#[derive(Debug, Template)]
#[template(path = "oidc_consent.html")]
struct ConsentView<'a> {
    service_id: &'a str,
    service: String,
    account: &'a str,
    application: &'a str,
    /// What each scope asked for lets the application learn.
    learns: Vec<&'static str>,
    /// The authorization request again, with `prompt=none`: the answer
    /// posts it to `/oidc/consent` with the person's decision.
    fields: Vec<(&'static str, String)>,
}

/// The consent page: what `client` will learn about `who` under `request`'s
/// scopes, with Allow and Don't allow.
pub(super) async fn page(
    challenges: &Challenges,
    client: &Client,
    who: &SignedIn,
    request: &Request,
) -> Result<Response> {
    let service_id = who.service_id.parse().map_err(|_| Error::UnknownService)?;
    let view = ConsentView {
        service_id: &who.service_id,
        service: challenges.service_name(&service_id).await?,
        account: &who.account,
        application: &client.name,
        learns: request.scope.split(' ').filter_map(meaning).collect(),
        fields: again(request),
    };
    toward::page(&view, &request.redirect_uri)
}

/// An approval as the person's page shows it.
#[derive(Debug)]
struct ApprovalView {
    client_id: String,
    application: String,
    /// What the approved scopes let it learn, in words.
    learns: String,
    /// RFC 3339.
    since: String,
}

#[derive(Debug, Template)]
#[template(path = "oidc_approvals.html")]
struct ApprovalsView {
    service_id: String,
    service: String,
    account: String,
    approvals: Vec<ApprovalView>,
    notice: Option<&'static str>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Done {
    #[serde(default)]
    done: Option<String>,
}

/// The person's page of the applications they allowed, each with
/// Withdraw: only for a browser signed in to the service.
pub(super) async fn approvals_page(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    Path(id): Path<String>,
    done: Result<Query<Done>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let done = done.ok().and_then(|Query(done)| done.done);
    approvals(&state, &challenges, &id, done.as_deref(), &headers).await.unwrap_or_else(error_page)
}

async fn approvals(
    state: &AppState,
    challenges: &Challenges,
    id: &str,
    done: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response> {
    let service_id: ServiceId = id.parse().map_err(|_| Error::UnknownService)?;
    let Some(who) = session::of_browser(state, &service_id, headers).await? else {
        return Ok(Redirect::to(&format!("/services/{service_id}")).into_response());
    };
    let approvals = of_account(&state.db, &who.service_id, &who.account).await?;
    let view = ApprovalsView {
        service_id: service_id.to_string(),
        service: challenges.service_name(&service_id).await?,
        account: who.account.clone(),
        approvals: approvals
            .into_iter()
            .map(|a| ApprovalView {
                learns: a.scope.split(' ').filter_map(meaning).collect::<Vec<_>>().join("; "),
                since: crate::clock::rfc3339(a.granted_at),
                client_id: a.client_id,
                application: a.application,
            })
            .collect(),
        notice: (done == Some("withdrawn")).then_some("Withdrawn: the application asks again next time."),
    };
    let html = view.render().map_err(|e| Error::Internal(anyhow::anyhow!("template: {e}")))?;
    let mut response = (StatusCode::OK, Html(html)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub(super) struct WithdrawForm {
    client_id: String,
}

/// Withdraws an approval of the signed-in person, from their page only
/// (same origin, their session).
pub(super) async fn withdraw_form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<WithdrawForm>, FormRejection>,
) -> Response {
    withdrawn(&state, &id, &headers, form).await.unwrap_or_else(error_page)
}

async fn withdrawn(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    form: Result<Form<WithdrawForm>, FormRejection>,
) -> Result<Response> {
    cookie::check_origin(&state.settings.origin, headers)?;
    let Form(form) = form.map_err(|_| Error::bad_request("invalid_form", "the form must name the application"))?;
    let service_id: ServiceId = id.parse().map_err(|_| Error::UnknownService)?;
    let who = session::of_browser(state, &service_id, headers).await?.ok_or(Error::SignInRequired)?;
    if !withdraw(&state.db, &who.service_id, &who.account, &form.client_id).await? {
        return Err(Error::UnknownApplication);
    }
    tracing::info!(client = %form.client_id, "a person withdrew an application's approval");
    let back = format!("/services/{service_id}/account/applications?done=withdrawn");
    let mut response = Redirect::to(&back).into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    Ok(response)
}
