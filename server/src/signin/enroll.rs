//! Adding an authenticator to an existing account from the browser
//! (docs/PROTOCOL.md §11, §12): the account page of a signed-in person, the
//! page a recovery link opens, and the page where the new key is confirmed
//! or refused.
//!
//! Both ways in issue an *enrollment challenge* for one account and show it
//! like the login page does (`login.js` follows it in `enroll` mode). The
//! authenticator that answers adds a pending key; the browser that started
//! the challenge, and only it (its binding cookie, `SameSite=Strict`, and an
//! `Origin` check on every POST), then sees the key's six-digit code and
//! confirms it only when the new authenticator shows the same one. Someone
//! who glimpsed the QR code and answered first gets a code the owner's
//! authenticator does not show, so the owner refuses it.
//!
//! Nothing here opens a session: the new authenticator signs in afterwards,
//! like any other.
//!
//! The account page also shows the account's profile (display name and
//! email) with a form that changes it; an email changed there is not
//! verified (`signin::profile`). Its list of keys, and the forms that rename
//! and remove them, are `signin::devices`.

use askama::Template;
use axum::{
    extract::{
        rejection::{FormRejection, QueryRejection},
        Path, Query, State,
    },
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Form, Router,
};
use serde::Deserialize;
use sesame_proto::{wire::Status, Origin, ServiceId};

use crate::{
    challenge::{self, session, Challenges, Purpose, SignInState},
    clock::rfc3339,
    error::{error_page, Error},
    http::cookie,
    http::extract::ClientInfo,
    signin::devices::KeyRow,
    signin::keys::{self, KeyState},
    signin::pages::{app_link, qr_svg},
    signin::profile::{self, Change},
    signin::recovery,
    state::AppState,
};

pub fn router<S: SignInState>() -> Router<S> {
    Router::new()
        .route("/services/{id}/account", get(account_page))
        .route("/services/{id}/account/enroll", post(start_enrollment))
        .route("/services/{id}/account/profile", post(set_profile))
        .route("/services/{id}/recover/{secret}", get(open_recovery_link))
        .route("/services/{id}/enroll/{cid}", get(enrollment_page))
        .route("/services/{id}/enroll/{cid}/confirm", post(confirm))
        .route("/services/{id}/enroll/{cid}/reject", post(reject))
}

/// An [`Error`] shown as a page a person can read, with the status and code
/// the JSON API would give.
#[derive(Debug)]
pub(super) struct PageError(Error);

impl<E: Into<Error>> From<E> for PageError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        error_page(self.0)
    }
}

pub(super) type PageResult = Result<Response, PageError>;

/// These pages name an account, its keys, or a challenge: never cache them.
pub(super) fn render(status: StatusCode, view: &impl Template) -> PageResult {
    let html = view.render().map_err(|e| Error::Internal(anyhow::anyhow!("template: {e}")))?;
    Ok((status, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Html(html)).into_response())
}

pub(super) fn service_id(id: &str) -> Result<ServiceId, Error> {
    id.parse().map_err(|_| Error::UnknownService)
}

pub(super) fn now(state: &AppState) -> i64 {
    state.clock.now().as_secs() as i64
}

/// The account this browser is signed in as at the service, if any.
async fn signed_in(state: &AppState, service_id: &ServiceId, headers: &HeaderMap) -> Result<Option<String>, Error> {
    Ok(session::of_browser(state, service_id, headers).await?.map(|who| who.account))
}

/// Back to the service's login page, which signs the browser in first: a
/// `303 See Other`, so that a form's POST becomes a GET there.
pub(super) fn to_login(service_id: &ServiceId) -> Response {
    Redirect::to(&format!("/services/{service_id}")).into_response()
}

#[derive(Template)]
#[template(path = "account.html")]
pub(super) struct AccountView {
    service_id: String,
    service_name: String,
    account: String,
    pub(super) keys: Vec<KeyRow>,
    /// What the profile form shows: the stored values, or after a refusal
    /// what was sent. Empty when unset.
    display_name: String,
    email: String,
    email_verified: bool,
    /// A fixed notice after a redirect (`?done=profile_saved`), never text
    /// from the URL.
    done: Option<&'static str>,
    /// Why the profile form was refused.
    error: Option<Refusal>,
    /// Whether the service takes passkeys: the page offers to add one.
    passkeys: bool,
}

/// A refused profile form: the error's code and message.
#[derive(Debug)]
struct Refusal {
    code: &'static str,
    message: String,
}

/// The query of the account page: a notice's fixed code.
#[derive(Debug, Default, Deserialize)]
struct AccountQuery {
    done: Option<String>,
}

impl AccountQuery {
    fn notice(&self) -> Option<&'static str> {
        match self.done.as_deref()? {
            "profile_saved" => Some("Your profile is saved."),
            "passkey_added" => Some("The passkey is on your account: it signs in from now on."),
            "key_renamed" => Some("The new name is saved."),
            "key_removed" => {
                Some("The key is removed: it signs nobody in any more, and the sessions it opened have ended.")
            }
            _ => None,
        }
    }
}

async fn account_page(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    Path(id): Path<String>,
    query: Result<Query<AccountQuery>, QueryRejection>,
    headers: HeaderMap,
) -> PageResult {
    let service_id = service_id(&id)?;
    let Some(account) = signed_in(&state, &service_id, &headers).await? else {
        return Ok(to_login(&service_id));
    };
    let mut view = account_view(&state, &challenges, &service_id, account).await?;
    view.done = query.map(|Query(q)| q).unwrap_or_default().notice();
    render(StatusCode::OK, &view)
}

/// The account page of `account`, as stored.
pub(super) async fn account_view(
    state: &AppState,
    challenges: &Challenges,
    service_id: &ServiceId,
    account: String,
) -> Result<AccountView, Error> {
    let id = service_id.to_string();
    let keys = keys::list(&state.db, &id, &account).await?.into_iter().map(KeyRow::from).collect();
    let profile = profile::of_account(&state.db, &id, &account).await?;
    let service_name = challenges.service_name(service_id).await?;
    Ok(AccountView {
        service_id: id,
        service_name,
        account,
        keys,
        display_name: profile.display_name.unwrap_or_default(),
        email: profile.email.unwrap_or_default(),
        email_verified: profile.email_verified,
        done: None,
        error: None,
        passkeys: super::passkey::store::policy(&state.db, service_id).await?.key_kinds.passkeys(),
    })
}

#[derive(Debug, Deserialize)]
struct ProfileForm {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
}

/// The profile form of the account page: sets the display name and email
/// of the signed-in account, and goes back to the page. An email set or
/// changed here is not verified. A refused value shows the page again with
/// what was sent and why.
async fn set_profile(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Form<ProfileForm>, FormRejection>,
) -> PageResult {
    let service_id = service_id(&id)?;
    // As for "Add another authenticator": the session cookie is
    // SameSite=Lax, and the Origin check refuses cross-site forms outright.
    cookie::check_origin(&state.settings.origin, &headers)?;
    let Some(account) = signed_in(&state, &service_id, &headers).await? else {
        return Ok(to_login(&service_id));
    };
    let Ok(Form(body)) = body else {
        return Err(Error::bad_request("invalid_form", "the form was incomplete or malformed; reload the page").into());
    };
    let change = match Change::from_form(&body.display_name, &body.email) {
        Ok(change) => change,
        Err(Error::BadRequest { code, message }) => {
            let mut view = account_view(&state, &challenges, &service_id, account).await?;
            view.error = Some(Refusal { code, message });
            view.display_name = body.display_name;
            view.email = body.email;
            return render(StatusCode::BAD_REQUEST, &view);
        }
        Err(other) => return Err(other.into()),
    };
    profile::set_by_person(&state.db, &id, &account, &change).await?;
    tracing::info!(service = %service_id, "account profile set from the account page");
    Ok(Redirect::to(&format!("/services/{service_id}/account?done=profile_saved")).into_response())
}

/// The waiting page of an enrollment challenge.
#[derive(Template)]
#[template(path = "enroll.html")]
struct WaitingView {
    service_id: String,
    service_name: String,
    account: String,
    /// Opened from a recovery link rather than the account page.
    recovery: bool,
    token: String,
    /// Inline SVG drawn by the `qrcode` crate from the token's link: only
    /// shapes.
    qr_svg: String,
    /// What `login.js` appends each new token to for its QR code.
    app_link: String,
    status: String,
    events_url: String,
    cancel_url: String,
    /// This challenge's page, which shows the confirmation once it completes.
    enroll_url: String,
    /// Where "Start again" goes; absent, the page reloads (a recovery link
    /// opens a fresh challenge each time).
    restart_url: Option<String>,
    expires_at: i64,
}

fn waiting(
    origin: &Origin,
    service_id: &ServiceId,
    service_name: String,
    row_or_issued: (&sesame_proto::ChallengeId, i64),
    account: &str,
    recovery: bool,
    token: String,
) -> PageResult {
    let (cid, expires_at) = row_or_issued;
    let view = WaitingView {
        service_id: service_id.to_string(),
        service_name,
        account: account.to_owned(),
        recovery,
        qr_svg: qr_svg(origin, &token)?,
        app_link: app_link(origin),
        token,
        status: challenge::message(Status::Pending, "outstanding", None, true),
        events_url: format!("/api/challenges/{cid}/events"),
        cancel_url: format!("/api/challenges/{cid}/cancel"),
        enroll_url: format!("/services/{service_id}/enroll/{cid}"),
        restart_url: (!recovery).then(|| format!("/services/{service_id}/account")),
        expires_at,
    };
    render(StatusCode::OK, &view)
}

/// A fresh enrollment challenge's waiting page, with its binding cookie.
fn waiting_for(origin: &Origin, issued: challenge::Issued, account: &str, recovery: bool) -> PageResult {
    let mut page = waiting(
        origin,
        &issued.service_id,
        issued.service_name,
        (&issued.id, issued.expires_at.as_secs() as i64),
        account,
        recovery,
        issued.token,
    )?;
    page.headers_mut().append(header::SET_COOKIE, issued.binding_cookie);
    Ok(page)
}

/// "Add another authenticator" on the account page.
async fn start_enrollment(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    Path(id): Path<String>,
    client: ClientInfo,
    headers: HeaderMap,
) -> PageResult {
    let service_id = service_id(&id)?;
    // The session cookie is SameSite=Lax, which already keeps it off
    // cross-site POSTs; the Origin check refuses them outright.
    cookie::check_origin(&state.settings.origin, &headers)?;
    let Some(who) = session::of_browser(&state, &service_id, &headers).await? else {
        return Ok(to_login(&service_id));
    };
    // A key added from a browser left signed in would be a stranger's.
    who.recent(now(&state))?;
    let account = who.account;
    let purpose = Purpose::Enroll { account: &account, recovery_id: None };
    let issued = challenge::issue_for(&state, &challenges, &id, &client, purpose).await?;
    tracing::info!(challenge = %issued.id, "enrollment started from the account page");
    waiting_for(&state.settings.origin, issued, &account, false)
}

/// A recovery link. The secret is in the path, so the route, not the path,
/// is what the request log records (`lib.rs`), and the page tells the
/// browser to send no `Referer` from it.
async fn open_recovery_link(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    Path((id, secret)): Path<(String, String)>,
    client: ClientInfo,
) -> Response {
    let mut response =
        recovery_page(&state, &challenges, &id, &secret, &client).await.unwrap_or_else(IntoResponse::into_response);
    response.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn recovery_page(
    state: &AppState,
    challenges: &Challenges,
    id: &str,
    secret: &str,
    client: &ClientInfo,
) -> PageResult {
    let service_id = service_id(id)?;
    let link = recovery::open(&state.db, &service_id.to_string(), secret, now(state)).await?;
    let purpose = Purpose::Enroll { account: &link.account, recovery_id: Some(&link.id) };
    let issued = challenge::issue_for(state, challenges, id, client, purpose).await?;
    tracing::info!(challenge = %issued.id, link = %link.id, "recovery link opened");
    waiting_for(&state.settings.origin, issued, &link.account, true)
}

/// The enrollment challenge `cid` of service `id`, for the browser that
/// started it and no other.
async fn enrollment(
    state: &AppState,
    challenges: &Challenges,
    id: &str,
    cid: &str,
    headers: &HeaderMap,
) -> Result<(challenge::row::ChallengeRow, String), Error> {
    let service_id = service_id(id)?;
    let row = challenge::for_browser(state, challenges, cid, headers).await?;
    match &row.enroll_account {
        Some(account) if row.service_id == service_id => {
            let account = account.clone();
            Ok((row, account))
        }
        _ => Err(Error::UnknownChallenge),
    }
}

/// The new key, as its owner must judge it before it may sign in.
#[derive(Template)]
#[template(path = "enroll_confirm.html")]
struct ConfirmView {
    service_name: String,
    account: String,
    action: String,
    key_id: String,
    label: String,
    /// The code of PROTOCOL.md §11, `123 456`.
    code: String,
    fingerprint: String,
    device_ip: String,
    device_user_agent: String,
    added_at: String,
    recovery: bool,
}

/// A short page that says how an enrollment ended.
#[derive(Template)]
#[template(path = "enroll_result.html")]
struct ResultView {
    service_id: String,
    title: &'static str,
    message: String,
    ok: bool,
}

fn result(service_id: &ServiceId, ok: bool, title: &'static str, message: String) -> PageResult {
    render(StatusCode::OK, &ResultView { service_id: service_id.to_string(), title, message, ok })
}

/// Waiting, confirming, or done: whatever the challenge is at now.
async fn enrollment_page(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    Path((id, cid)): Path<(String, String)>,
    headers: HeaderMap,
) -> PageResult {
    let (row, account) = enrollment(&state, &challenges, &id, &cid, &headers).await?;
    if let Some(refusal) = challenge::row::refusal(&row, state.clock.now()).filter(|_| row.status != Status::Completed)
    {
        return Err(refusal.into());
    }
    let service_name = challenges.service_name(&row.service_id).await?;
    if row.status == Status::Pending {
        let token = challenge::current_token(&state, &row)?;
        return waiting(
            &state.settings.origin,
            &row.service_id,
            service_name,
            (&row.id, row.expires_at),
            &account,
            row.recovery_id.is_some(),
            token,
        );
    }
    if let Some(key) = keys::pending(&state.db, &row.id).await? {
        let view = ConfirmView {
            service_name,
            action: format!("/services/{}/enroll/{}", row.service_id, row.id),
            code: key.code(&row.id).to_string(),
            fingerprint: keys::fingerprint(&key.public_key),
            account: key.account,
            key_id: key.id,
            label: key.label,
            device_ip: key.device_ip,
            device_user_agent: key.device_user_agent,
            added_at: rfc3339(key.created_at),
            recovery: row.recovery_id.is_some(),
        };
        return render(StatusCode::OK, &view);
    }
    // Confirmed or refused already, here or in another tab: the key that
    // completed the challenge is active, or gone.
    let active = match &row.key_id {
        Some(key_id) => keys::list(&state.db, &row.service_id.to_string(), &account)
            .await
            .map(|keys| keys.iter().any(|k| &k.id == key_id && k.state == KeyState::Active))
            .unwrap_or(false),
        None => false,
    };
    if active {
        result(&row.service_id, true, "Authenticator added", format!("The new authenticator can sign in as {account}."))
    } else {
        result(&row.service_id, false, "Authenticator refused", format!("No authenticator was added to {account}."))
    }
}

#[derive(Debug, Deserialize)]
struct KeyForm {
    #[serde(default)]
    key_id: String,
}

/// The codes match: the key may sign in.
async fn confirm(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    Path((id, cid)): Path<(String, String)>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Result<Form<KeyForm>, FormRejection>,
) -> PageResult {
    // The binding cookie is SameSite=Strict; the Origin check also refuses
    // a cross-site form where that is not enforced.
    cookie::check_origin(&state.settings.origin, &headers)?;
    let (row, account) = enrollment(&state, &challenges, &id, &cid, &headers).await?;
    // From the account page, the browser must still be signed in as the
    // account: whoever uses it after its owner signed out cannot add a key.
    // A recovery link's page has no session; the link itself is the proof.
    if row.recovery_id.is_none() && signed_in(&state, &row.service_id, &headers).await?.as_deref() != Some(&account) {
        return Err(Error::SignInRequired.into());
    }
    let Ok(Form(body)) = body else {
        return Err(Error::bad_request("invalid_form", "the form was incomplete or malformed; reload the page").into());
    };
    let confirmed = keys::confirm_enrollment(&state.db, &row, &body.key_id, &client, now(&state)).await?;
    tracing::info!(challenge = %row.id, others_removed = confirmed.others_removed, "enrolled key confirmed");
    let who = if confirmed.label.is_empty() { "The new authenticator".to_owned() } else { confirmed.label };
    let mut message = format!("{who} can now sign in as {}", confirmed.account);
    if row.recovery_id.is_some() && confirmed.others_removed > 0 {
        message.push_str(", and the account's other authenticators were removed");
    }
    message.push('.');
    result(&row.service_id, true, "Authenticator added", message)
}

/// The codes differ, or the device is not the person's: the key goes, and
/// the account stays as it was (a recovery link stays usable).
async fn reject(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    Path((id, cid)): Path<(String, String)>,
    headers: HeaderMap,
) -> PageResult {
    cookie::check_origin(&state.settings.origin, &headers)?;
    let (row, account) = enrollment(&state, &challenges, &id, &cid, &headers).await?;
    keys::reject_enrollment(&state.db, &row.id).await?;
    tracing::warn!(challenge = %row.id, "enrolled key refused at confirmation");
    result(
        &row.service_id,
        false,
        "Authenticator refused",
        format!("The authenticator was not added, and {account} is as it was."),
    )
}
