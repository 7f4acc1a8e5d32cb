//! The admin page's view of one account's authenticators: its keys, each
//! with a "Remove" button, and a form that makes a recovery link for it
//! (docs/PROTOCOL.md §12). The link is shown once, on a page that is never
//! cached; the database keeps only a hash of its secret.
//!
//! A service's profiles page (`/admin/services/{id}/profiles`) shows each
//! account's display name and email, verified or not, with a form that sets
//! both (`profile_form` in `templates/admin/accounts.html`); the accounts
//! table of the service page links each account to it.

use askama::Template;
use axum::{
    extract::{
        rejection::{PathRejection, QueryRejection},
        Path, Query, State,
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect},
    routing::{get, post},
    Router,
};
use serde::Deserialize;

use super::{
    form::{AdminForm, CsrfField},
    kit::{by, path, render, AreYouSure, PageResult},
    notice::Notice,
    session::AdminSession,
    store,
};
use crate::{
    error::{Error, Result},
    http::extract::ClientInfo,
    signin::keys::{self, KeyState},
    signin::profile::{self, Change},
    signin::recovery,
    state::AppState,
    state::RouterState,
};

pub(super) fn router<S: RouterState>() -> Router<S> {
    Router::new()
        .route("/admin/services/{id}/keys/remove", post(remove_key))
        .route("/admin/services/{id}/recovery", post(create_link))
        .route("/admin/services/{id}/recovery/revoke", post(revoke_link))
        .route("/admin/services/{id}/profiles", get(profiles_page))
        .route("/admin/services/{id}/accounts/profile", post(set_profile))
}

/// The lifetimes the form offers, in seconds, with their labels; the last
/// is the longest a link may live.
pub(super) const LIFETIMES: [(i64, &str); 4] =
    [(15 * 60, "15 minutes"), (60 * 60, "1 hour"), (4 * 60 * 60, "4 hours"), (recovery::MAX_TTL_SECS, "24 hours")];

#[derive(Debug)]
pub(super) struct KeyRow {
    pub(super) id: String,
    pub(super) label: String,
    pub(super) fingerprint: String,
    pub(super) pending: bool,
    pub(super) added_at: String,
    pub(super) last_used_at: String,
}

/// A recovery link that can still be used, as the service page lists it.
#[derive(Debug)]
pub(super) struct LinkRow {
    pub(super) id: String,
    pub(super) created_by: String,
    pub(super) created_at: String,
    pub(super) expires_at: String,
    pub(super) revoke_other_keys: bool,
}

/// One account, its keys and its usable recovery links, as the service
/// page lists them.
#[derive(Debug)]
pub(super) struct AccountKeys {
    pub(super) name: String,
    pub(super) keys: Vec<KeyRow>,
    pub(super) links: Vec<LinkRow>,
}

/// The keys and usable recovery links of each of `accounts` at
/// `service_id`, in one query each.
pub(super) async fn of_accounts(state: &AppState, service_id: &str, accounts: &[String]) -> Result<Vec<AccountKeys>> {
    let mut by_account = keys::of_service(&state.db, service_id, accounts).await?;
    let now = state.clock.now().as_secs() as i64;
    let mut links = recovery::usable_of_service(&state.db, service_id, accounts, now).await?;
    Ok(accounts
        .iter()
        .map(|name| AccountKeys {
            name: name.clone(),
            links: links
                .remove(name)
                .unwrap_or_default()
                .into_iter()
                .map(|l| LinkRow {
                    id: l.id,
                    created_by: l.created_by,
                    created_at: store::rfc3339(l.created_at),
                    expires_at: store::rfc3339(l.expires_at),
                    revoke_other_keys: l.revoke_other_keys,
                })
                .collect(),
            keys: by_account
                .remove(name)
                .unwrap_or_default()
                .into_iter()
                .map(|k| KeyRow {
                    fingerprint: match (k.kind.as_str(), k.fingerprint.as_deref()) {
                        ("passkey", _) => "passkey".to_owned(),
                        (_, Some(fingerprint)) => keys::grouped(fingerprint),
                        (_, None) => "(unreadable)".to_owned(),
                    },
                    id: k.id,
                    label: k.label,
                    pending: k.state == KeyState::Pending,
                    added_at: store::rfc3339(k.created_at),
                    last_used_at: k.last_used_at.map_or_else(|| "never".to_owned(), store::rfc3339),
                })
                .collect(),
        })
        .collect())
}

#[derive(Deserialize)]
struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    key_id: String,
    /// As in [`super::form::CsrfForm::confirmed`].
    #[serde(default)]
    confirmed: String,
}

impl CsrfField for KeyForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Removes one key; the sessions it opened end with it.
async fn remove_key(
    State(state): State<AppState>,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form: body }: AdminForm<KeyForm>,
) -> PageResult {
    let service = store::service(&state.db, &path(id)?).await?;
    if body.confirmed != "yes" {
        return AreYouSure {
            title: "Remove this authenticator?",
            summary: format!(
                "The key {} of {} will be removed: that authenticator can no longer sign in, and the sessions it \
                 opened end at once.",
                body.key_id, body.name
            ),
            lost: Vec::new(),
            action: format!("/admin/services/{}/keys/remove", service.id),
            csrf: &body.csrf,
            fields: vec![("name", &body.name), ("key_id", &body.key_id)],
            button: "Remove the authenticator",
            back: format!("/admin/services/{}", service.id),
        }
        .page();
    }
    keys::remove(&state.db, &service.id, &body.name, &body.key_id, &by(&state, session.actor(), &client)).await?;
    tracing::info!(service = %service.id, key = %body.key_id, "account key removed");
    Ok(Redirect::to(&format!("/admin/services/{}?done=key_removed", service.id)).into_response())
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    link_id: String,
}

impl CsrfField for RevokeForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Revokes a recovery link that has not been used: it opens nothing from
/// now on, and a page already open from it can no longer confirm a key.
async fn revoke_link(
    State(state): State<AppState>,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form: body }: AdminForm<RevokeForm>,
) -> PageResult {
    let service = store::service(&state.db, &path(id)?).await?;
    recovery::revoke(&state.db, &service.id, &body.name, &body.link_id, &by(&state, session.actor(), &client)).await?;
    tracing::info!(service = %service.id, link = %body.link_id, "recovery link revoked from the admin page");
    Ok(Redirect::to(&format!("/admin/services/{}?done=link_revoked", service.id)).into_response())
}

#[derive(Deserialize)]
struct LinkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    ttl_secs: String,
    /// A checkbox: present (any value) when ticked.
    #[serde(default)]
    revoke_other_keys: Option<String>,
}

impl CsrfField for LinkForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The link, shown this once.
#[derive(Template)]
#[template(path = "admin/recovery_link.html")]
struct LinkView {
    service_id: String,
    service_name: String,
    account: String,
    url: String,
    expires_at: String,
    revoke_other_keys: bool,
}

/// Makes a recovery link and shows it. The answer is the page itself, not
/// a redirect, because the URL must appear exactly once; `render` marks it
/// `no-store`, so neither the browser's cache nor a proxy keeps it.
async fn create_link(
    State(state): State<AppState>,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form: body }: AdminForm<LinkForm>,
) -> PageResult {
    let service = store::service(&state.db, &path(id)?).await?;
    let ttl = body.ttl_secs.trim().parse::<i64>().map_err(|_| {
        Error::bad_request("invalid_ttl", "choose how long the link may be used, up to 24 hours; reload the page")
    })?;
    let revoke = body.revoke_other_keys.is_some();
    let created =
        recovery::create(&state.db, &service.id, &body.name, ttl, revoke, &by(&state, session.actor(), &client))
            .await?;
    tracing::info!(service = %service.id, link = %created.id, "recovery link created from the admin page");
    let view = LinkView {
        url: format!("{}{}", state.settings.origin, created.path),
        expires_at: store::rfc3339(created.expires_at),
        service_id: service.id,
        service_name: service.name,
        account: body.name,
        revoke_other_keys: revoke,
    };
    render(StatusCode::OK, &view)
}

/// One account's profile, as the profiles page shows it; empty for unset.
#[derive(Debug)]
pub(super) struct ProfileRow {
    pub(super) name: String,
    pub(super) display_name: String,
    pub(super) email: String,
    pub(super) email_verified: bool,
    /// The service's groups, ticked for those the account belongs to.
    pub(super) groups: Vec<super::groups::Choice>,
}

#[derive(Template)]
#[template(path = "admin/profiles.html")]
struct ProfilesView {
    csrf: String,
    done: Option<&'static str>,
    id: String,
    name: String,
    rows: Vec<ProfileRow>,
    /// One account was asked for (`?name=`), not a page of them.
    one: bool,
    /// The pages before and after this one, from 1.
    previous: Option<i64>,
    next: Option<i64>,
}

/// The query of the profiles page besides its notice: one account's name.
#[derive(Debug, Default, Deserialize)]
struct ProfilesQuery {
    name: Option<String>,
}

/// A service's profiles: a page of its accounts (`?page=N`, as the service
/// page pages them), or one account (`?name=`), each with its display name
/// and email and the form that sets them.
async fn profiles_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    notice: Result<Query<Notice>, QueryRejection>,
    query: Result<Query<ProfilesQuery>, QueryRejection>,
) -> PageResult {
    let Some(session) = AdminSession::find(&state, &headers).await? else {
        return Ok(Redirect::to("/admin").into_response());
    };
    let service = store::service(&state.db, &path(id)?).await?;
    let notice = Notice::from(notice);
    let one = query.map(|Query(q)| q.name).unwrap_or_default();
    let (names, previous, next) = match &one {
        Some(name) => (vec![name.clone()], None, None),
        None => {
            let page = notice.page()?;
            let listed = store::accounts_page(&state.db, &service.id, page).await?;
            let next =
                (page.saturating_add(1).saturating_mul(store::ACCOUNTS_PER_PAGE) < listed.total).then_some(page + 2);
            (listed.accounts.into_iter().map(|a| a.name).collect::<Vec<_>>(), (page > 0).then_some(page), next)
        }
    };
    let mut profiles = profile::of_accounts(&state.db, &service.id, &names).await?;
    let all_groups = super::groups::items(&state, &service.id).await?;
    let mut memberships = crate::oidc::groups::of_accounts(&state.db, &service.id, &names).await?;
    let rows: Vec<ProfileRow> = names
        .into_iter()
        .filter_map(|name| {
            let profile = profiles.remove(&name)?;
            let groups = super::groups::choices(&all_groups, &memberships.remove(&name).unwrap_or_default());
            Some(ProfileRow {
                name,
                display_name: profile.display_name.unwrap_or_default(),
                email: profile.email.unwrap_or_default(),
                email_verified: profile.email_verified,
                groups,
            })
        })
        .collect();
    if one.is_some() && rows.is_empty() {
        return Err(Error::UnknownAccount.into());
    }
    let view = ProfilesView {
        csrf: session.csrf_token().to_owned(),
        done: notice.done(),
        id: service.id,
        name: service.name,
        rows,
        one: one.is_some(),
        previous,
        next,
    };
    render(StatusCode::OK, &view)
}

#[derive(Deserialize)]
struct ProfileForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
}

impl CsrfField for ProfileForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Sets an account's display name and email; an email set here is
/// verified. An empty field clears its value.
async fn set_profile(
    State(state): State<AppState>,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    AdminForm { session, form: body }: AdminForm<ProfileForm>,
) -> PageResult {
    let service = store::service(&state.db, &path(id)?).await?;
    let change = Change::from_form(&body.display_name, &body.email)?;
    profile::set_by_admin(&state.db, &service.id, &body.name, &change, &by(&state, session.actor(), &client)).await?;
    tracing::info!(service = %service.id, "account profile set from the admin page");
    let name: String = url::form_urlencoded::byte_serialize(body.name.as_bytes()).collect();
    Ok(Redirect::to(&format!("/admin/services/{}/profiles?name={name}&done=profile_saved", service.id)).into_response())
}
