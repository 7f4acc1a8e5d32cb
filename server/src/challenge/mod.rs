//! Challenges as the browser and the relying party see them: issuing one,
//! following its status, cancelling it and redeeming it for a session.
//!
//! Every route but the first needs the binding cookie of the browser that
//! asked for the challenge: the token alone (which anyone looking at the
//! screen may have) never lets someone watch or redeem a sign-in.

pub mod events;
pub mod pending;
pub mod row;
pub mod services;
pub mod session;
pub mod store;
pub mod write;

use axum::{
    extract::{FromRef, Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{AppendHeaders, IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use rand::rngs::OsRng;
use serde::Serialize;
use sesame_proto::{
    wire::{ErrorBody, Status},
    BaseToken, ChallengeId, FreshnessSecret, MatchNumber, Nonce, ServiceId, ServiceName, TokenClaims, UnixTime,
};
use utoipa::ToSchema;

use crate::{
    error::{Error, Result},
    http::cookie::{self, SameSite},
    http::extract::ClientInfo,
    http::responses::BrowserErrors,
    state::AppState,
    state::RouterState,
};
use row::ChallengeRow;
pub use store::Challenges;

/// A router state that also hands out the challenges: what the sign-in
/// routes, and every feature that starts or follows a challenge, run on.
pub trait SignInState: RouterState {
    fn challenges(&self) -> &Challenges;
}

impl<S: SignInState> FromRef<S> for Challenges {
    fn from_ref(state: &S) -> Self {
        state.challenges().clone()
    }
}

/// The cookie that binds challenge `id` to the browser that asked for it.
/// Each challenge has its own, so that several tabs of one browser can each
/// follow their own sign-in while every binding secret is minted fresh.
pub fn binding_cookie(id: &ChallengeId) -> String {
    format!("sesame_browser_{id}")
}

/// A binding cookie outlives its challenge by this much, so that the page
/// can still read a final state and redeem it; the browser then drops it.
const BINDING_GRACE_SECS: u64 = 5 * 60;

/// The cookie that holds a browser's session at service `id`.
pub fn session_cookie(id: &ServiceId) -> String {
    format!("sesame_session_{id}")
}

/// How long a session lasts.
pub const SESSION_SECS: i64 = 24 * 60 * 60;

pub fn router<S: SignInState>() -> Router<S> {
    Router::new()
        .route("/api/services/{id}/challenges", post(create_handler))
        .route("/api/challenges/{cid}", get(status_handler))
        .route("/api/challenges/{cid}/events", get(events::handler))
        .route("/api/challenges/{cid}/cancel", post(cancel_handler))
        .route("/api/challenges/{cid}/session", post(session_handler))
}

/// A freshly issued challenge, for the API answer and the login page.
#[derive(Debug)]
pub struct Issued {
    pub id: ChallengeId,
    pub service_id: ServiceId,
    pub service_name: String,
    pub base: BaseToken,
    /// The full token text at the current step.
    pub token: String,
    /// The number the page shows, when the service asks for one
    /// (PROTOCOL.md §14).
    pub number: Option<MatchNumber>,
    pub expires_at: UnixTime,
    /// The `Set-Cookie` value for the binding cookie.
    pub binding_cookie: HeaderValue,
}

/// What a challenge is answered with.
#[derive(Debug, Clone, Copy)]
pub enum Purpose<'a> {
    /// Register or log in (or rekey): the login page and the JSON API.
    SignIn,
    /// Add a key to the existing account `account` (docs/PROTOCOL.md §12),
    /// from a signed-in account page or from the recovery link
    /// `recovery_id`.
    Enroll { account: &'a str, recovery_id: Option<&'a str> },
}

/// Issues a sign-in challenge for `service_id` to the browser `client`.
/// The login page and the JSON API both come through here.
pub async fn issue(state: &AppState, challenges: &Challenges, service_id: &str, client: &ClientInfo) -> Result<Issued> {
    issue_for(state, challenges, service_id, client, Purpose::SignIn).await
}

/// Issues a challenge for `purpose` at `service_id` to the browser `client`.
pub async fn issue_for(
    state: &AppState,
    challenges: &Challenges,
    service_id: &str,
    client: &ClientInfo,
    purpose: Purpose<'_>,
) -> Result<Issued> {
    let service_id: ServiceId = service_id.parse().map_err(|_| Error::UnknownService)?;
    // The limit comes before any database work, so a flood costs little.
    state.limits.challenges.check(client.ip).await?;
    let service_name = challenges.service_name(&service_id).await?;
    let name = ServiceName::parse(&service_name)
        .map_err(|_| Error::Internal(anyhow::anyhow!("service {service_id} has a name the protocol cannot carry")))?;

    // Always a fresh secret, never one the request brought: a value planted
    // in the victim's browser beforehand must not bind the victim's
    // challenge to the attacker.
    let binding = cookie::new_secret();
    let binding_hash = cookie::digest(&binding);

    let now = state.clock.now();
    let expires_at = now.saturating_add(state.settings.challenge_ttl_secs);
    let id = ChallengeId::random(&mut OsRng);
    let claims = TokenClaims {
        origin: state.settings.origin.clone(),
        service_id,
        service_name: name,
        challenge_id: id,
        nonce: Nonce::random(&mut OsRng),
        issued_at: now,
        expires_at,
        rotation_secs: state.settings.rotation_secs,
    };
    let base = state.identity.key().issue(claims)?;
    let secret = FreshnessSecret::generate(&mut OsRng);
    let number = challenges
        .insert(&row::NewChallenge {
            id,
            service_id,
            base_token: base.as_str(),
            code_secret: secret.as_bytes(),
            binding_hash: &binding_hash,
            ip: &client.ip.to_string(),
            user_agent: &client.user_agent,
            created_at: now.as_secs() as i64,
            expires_at: expires_at.as_secs() as i64,
            enroll_account: match purpose {
                Purpose::Enroll { account, .. } => Some(account),
                Purpose::SignIn => None,
            },
            recovery_id: match purpose {
                Purpose::Enroll { recovery_id, .. } => recovery_id,
                Purpose::SignIn => None,
            },
            number: MatchNumber::random(&mut OsRng),
        })
        .await?;
    crate::metrics::challenge_created();
    let token = base.at_step(&secret, 0);
    let lifetime = state.settings.challenge_ttl_secs.saturating_add(BINDING_GRACE_SECS);
    let binding_cookie = cookie::set(
        &state.settings.origin,
        &binding_cookie(&id),
        &binding,
        SameSite::Strict,
        i64::try_from(lifetime).unwrap_or(i64::MAX),
    );
    Ok(Issued { id, service_id, service_name, base, token, number, expires_at, binding_cookie })
}

/// The token as it should be shown now: the signed base with the current
/// step's code.
pub fn current_token(state: &AppState, row: &ChallengeRow) -> Result<String> {
    let base = BaseToken::from_stored(row.base_token.clone(), state.identity.public_key())?;
    Ok(base.at_step(&row.code_secret, base.step_at(state.clock.now())))
}

/// A new challenge, for the page that shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NewChallenge)]
struct Created {
    challenge_id: ChallengeId,
    /// The token text to show, for copying.
    token: String,
    /// What the QR code holds: the web authenticator's address with the
    /// token in its fragment (PROTOCOL.md §3.6). Each new token makes a new
    /// link.
    link: String,
    /// The number to show beside the QR code, which the person types into
    /// the authenticator (PROTOCOL.md §14); absent when the service does
    /// not ask for one. Only this browser ever gets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u8>, minimum = 10, maximum = 99)]
    number: Option<u8>,
    /// Where to poll the challenge's status.
    status_url: String,
    /// Where to follow it as Server-Sent Events.
    events_url: String,
    /// When the challenge expires, in Unix seconds.
    expires_at: u64,
}

/// Starts a sign-in for a service.
///
/// Issues a challenge and sets the binding cookie
/// `sesame_browser_{challenge_id}` that the other challenge routes require.
#[utoipa::path(
    post,
    path = "/api/services/{id}/challenges",
    operation_id = "create_challenge",
    tag = "challenges",
    params(("id" = String, Path, description = "The service id.")),
    responses(
        (status = 201, description = "The challenge, and its binding cookie.", body = Created, headers(
            ("Set-Cookie" = String, description = "The binding cookie `sesame_browser_{challenge_id}` (with the `__Host-` prefix on HTTPS): HttpOnly, SameSite=Strict."),
        )),
        (status = 400, description = "`invalid_request`: the path does not decode (bad percent-encoding or UTF-8).", body = ErrorBody),
        (status = 404, description = "`unknown_service`.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many challenges from this address.", body = ErrorBody, headers(
            ("Retry-After" = u64, description = "Seconds until the same request may pass."),
        )),
    ),
)]
async fn create_handler(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    Path(service_id): Path<String>,
    client: ClientInfo,
) -> Result<Response> {
    let issued = issue(&state, &challenges, &service_id, &client).await?;
    let origin = &state.settings.origin;
    let body = Created {
        challenge_id: issued.id,
        link: sesame_proto::token::link(origin, &issued.token),
        token: issued.token,
        number: issued.number.map(MatchNumber::get),
        status_url: format!("{origin}/api/challenges/{}", issued.id),
        events_url: format!("{origin}/api/challenges/{}/events", issued.id),
        expires_at: issued.expires_at.as_secs(),
    };
    Ok((
        StatusCode::CREATED,
        [(header::SET_COOKIE, issued.binding_cookie), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(body),
    )
        .into_response())
}

/// What the status URL and the `status` events say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = ChallengeStatus)]
pub struct StatusView {
    pub status: Status,
    /// Refines the status (PROTOCOL.md §8), e.g. `outstanding` or `opened`.
    pub hint: String,
    /// A sentence for the page to show.
    pub message: String,
    /// The account, once the status is `completed`; `null` before.
    #[schema(required = true)]
    pub account: Option<String>,
    /// `register`, `login` or `enroll`, once the status is `completed`;
    /// `null` before.
    #[schema(required = true)]
    pub purpose: Option<String>,
}

impl StatusView {
    pub fn of(row: &ChallengeRow) -> Self {
        let account = if row.status == Status::Completed { row.account.clone() } else { None };
        Self {
            status: row.status,
            hint: row.hint.clone(),
            message: message(row.status, &row.hint, account.as_deref(), row.enroll_account.is_some()),
            purpose: if row.status == Status::Completed { row.purpose.clone() } else { None },
            account,
        }
    }
}

/// The plain-language line the page shows for each state (PROTOCOL.md §8),
/// on a sign-in page or, `enrolling`, on a page that adds an authenticator
/// to an account.
pub fn message(status: Status, hint: &str, account: Option<&str>, enrolling: bool) -> String {
    match (status, hint, enrolling) {
        (Status::Pending, "opened", _) => {
            "Your authenticator has the request. Check the details there and approve.".to_owned()
        }
        (Status::Pending, _, false) => "Scan the QR code or paste the token into your Sesame authenticator.".to_owned(),
        (Status::Pending, _, true) => {
            "Scan the QR code or paste the token into the authenticator you want to add.".to_owned()
        }
        (Status::Completed, "enroll", _) => {
            format!("A new authenticator asks to join {}. Confirm it below.", account.unwrap_or_default())
        }
        (Status::Completed, _, _) => format!("Signed in as {}.", account.unwrap_or_default()),
        (Status::Denied, "wrong_number", false) => {
            "The number chosen in the authenticator was not the one on this page, so the sign-in was stopped. Start again."
                .to_owned()
        }
        (Status::Denied, _, false) => "The sign-in was refused in the authenticator.".to_owned(),
        (Status::Denied, _, true) => "The authenticator refused to be added.".to_owned(),
        (Status::Expired, _, _) => "The request timed out. Start again.".to_owned(),
        (Status::Cancelled, _, false) => "You cancelled the sign-in.".to_owned(),
        (Status::Cancelled, _, true) => "You cancelled adding an authenticator.".to_owned(),
    }
}

/// The challenge id in a URL, or `unknown_challenge`.
fn parse_id(cid: &str) -> Result<ChallengeId> {
    cid.parse().map_err(|_| Error::UnknownChallenge)
}

/// The binding cookie's secret for challenge `id`, or `binding_required`.
fn binding<'h>(state: &AppState, headers: &'h HeaderMap, id: &ChallengeId) -> Result<&'h str> {
    cookie::secret(&state.settings.origin, headers, &binding_cookie(id)).ok_or(Error::BindingRequired)
}

/// Loads the challenge for the browser that started it, and no other.
pub async fn for_browser(
    state: &AppState,
    challenges: &Challenges,
    cid: &str,
    headers: &HeaderMap,
) -> Result<ChallengeRow> {
    let id = parse_id(cid)?;
    let binding = binding(state, headers, &id)?;
    let row = challenges.current(&id).await?;
    // Digests of 256-bit secrets: comparing them leaks nothing useful.
    if row.binding_hash != cookie::digest(binding) {
        return Err(Error::WrongBrowser);
    }
    Ok(row)
}

/// The challenge's status, for clients that poll.
///
/// Only the browser that holds its binding cookie may read it.
#[utoipa::path(
    get,
    path = "/api/challenges/{cid}",
    operation_id = "challenge_status",
    tag = "challenges",
    params(("cid" = String, Path, description = "The challenge id.")),
    security(("binding_cookie" = [])),
    responses(
        (status = 200, description = "The current status; a challenge whose time is up is reported as `expired`.", body = StatusView),
        (status = 400, description = "`invalid_request`: the path does not decode (bad percent-encoding or UTF-8).", body = ErrorBody),
        (status = 401, description = "`binding_required`: no binding cookie for this challenge.", body = ErrorBody),
        (status = 403, description = "`wrong_browser`: another browser's binding cookie.", body = ErrorBody),
        (status = 404, description = "`unknown_challenge`.", body = ErrorBody),
    ),
)]
async fn status_handler(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    Path(cid): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let row = for_browser(&state, &challenges, &cid, &headers).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(StatusView::of(&row))).into_response())
}

/// Ends a pending challenge as `cancelled`.
#[utoipa::path(
    post,
    path = "/api/challenges/{cid}/cancel",
    operation_id = "cancel_challenge",
    tag = "challenges",
    params(("cid" = String, Path, description = "The challenge id.")),
    security(("binding_cookie" = [])),
    responses(
        (status = 200, description = "The status after cancelling.", body = StatusView),
        (status = 404, description = "`unknown_challenge`.", body = ErrorBody),
        (status = 409, description = "`challenge_used`: it had already ended.", body = ErrorBody),
        (status = 410, description = "`challenge_expired`.", body = ErrorBody),
        BrowserErrors,
    ),
)]
async fn cancel_handler(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    Path(cid): Path<String>,
    headers: HeaderMap,
) -> Result<Json<StatusView>> {
    let row = for_browser(&state, &challenges, &cid, &headers).await?;
    let now = state.clock.now();
    challenges.finish(&row, now, &row::Final::cancelled()).await?;
    Ok(Json(StatusView::of(&challenges.load(&row.id).await?)))
}

/// The session a completed challenge was turned into.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Session)]
struct SessionView {
    account: String,
    service_id: ServiceId,
    service_name: String,
}

/// Turns a completed challenge into a session at its service, once.
///
/// Sets the session cookie and deletes the binding cookie.
#[utoipa::path(
    post,
    path = "/api/challenges/{cid}/session",
    operation_id = "redeem_challenge",
    tag = "challenges",
    params(("cid" = String, Path, description = "The challenge id.")),
    security(("binding_cookie" = [])),
    responses(
        (status = 200, description = "The session.", body = SessionView, headers(
            ("Set-Cookie" = String, description = "The session cookie `sesame_session_{service_id}` (HttpOnly, SameSite=Lax, 24 hours), and the binding cookie's deletion."),
        )),
        (status = 404, description = "`unknown_challenge`, or `unknown_account` when the account or its key was removed after it signed in.", body = ErrorBody),
        (status = 409, description = "`not_completed`, or `already_redeemed` the second time.", body = ErrorBody),
        BrowserErrors,
    ),
)]
async fn session_handler(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    Path(cid): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    // The binding is checked by the redeeming UPDATE itself: no read first.
    let id = parse_id(&cid)?;
    let binding = cookie::digest(binding(&state, &headers, &id)?);
    let now = state.clock.now();
    let expires_at = now.as_secs() as i64 + SESSION_SECS;
    let session = session::Minted::fresh();
    let row = session::redeem_bound(&challenges, &id, &binding, now, &session.digest, expires_at).await?;
    let service_name = challenges.service_name(&row.service_id).await?;
    // The spent binding goes with the new session: nothing from before the
    // sign-in survives it.
    let set_session = session.set_cookie(&state.settings.origin, &row.service_id);
    let clear_binding = cookie::clear(&state.settings.origin, &binding_cookie(&row.id), SameSite::Strict);
    let body = SessionView { account: row.account.unwrap_or_default(), service_id: row.service_id, service_name };
    Ok((
        AppendHeaders([
            (header::SET_COOKIE, set_session),
            (header::SET_COOKIE, clear_binding),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ]),
        Json(body),
    )
        .into_response())
}
