//! Passkeys (WebAuthn) beside Sesame keys: signing in with one, registering
//! a new account with one, and adding one to an account.
//!
//! Each is a ceremony of two requests. The start stores the library's state
//! in the database (`passkey_ceremony`), bound to the browser by a cookie
//! of its own as a challenge is, and hands the browser the options for
//! `navigator.credentials`; the finish takes the state back, once, and
//! checks the browser's answer against it. State in the database, not in
//! memory, lets the two requests reach different instances.
//!
//! A passkey's sign-in makes the session a QR sign-in makes: the same
//! cookie, the same sign-in event, the key and the account stamped as used.
//! Its `amr` says what kind of key it was (RFC 8176).

pub mod register;
pub mod relying;
pub mod store;

use axum::{
    extract::{FromRef, Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{AppendHeaders, IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sesame_proto::{wire::ErrorBody, AccountName, ChallengeId, KeyLabel, ServiceId};
use utoipa::ToSchema;
use webauthn_rs_core::proto::{
    AuthenticationState, Credential, PublicKeyCredential, RegisterPublicKeyCredential, RegistrationState,
};

use crate::{
    challenge::session::{self, Minted},
    error::{Error, Result},
    http::{
        cookie::{self, SameSite},
        extract::{ApiJson, ClientInfo},
        responses::BrowserErrors,
    },
    signin::{keys, pages::asset},
    state::{AppState, RouterState},
};
pub use relying::RelyingParty;
use relying::CEREMONY_SECS;
use store::{NewCeremony, NewPasskey, Policy, Purpose};

/// A router state that also hands out the relying party, built once with
/// the app: what the passkey routes run on. A handler takes it as
/// `State<RelyingParty>`.
pub trait PasskeyState: RouterState {
    fn relying_party(&self) -> &RelyingParty;
}

impl<S: PasskeyState> FromRef<S> for RelyingParty {
    fn from_ref(state: &S) -> Self {
        state.relying_party().clone()
    }
}

pub fn router<S: PasskeyState>() -> Router<S> {
    Router::new()
        .route("/api/services/{id}/passkeys/sign-in/start", post(sign_in_start))
        .route("/api/services/{id}/passkeys/sign-in/finish", post(sign_in_finish))
        .route("/api/services/{id}/passkeys/register/start", post(register::register_start))
        .route("/api/services/{id}/passkeys/register/finish", post(register::register_finish))
        .route("/api/services/{id}/passkeys/add/start", post(register::add_start))
        .route("/api/services/{id}/passkeys/add/finish", post(register::add_finish))
        .route("/static/passkeys.js", get(|| async { asset("text/javascript; charset=utf-8", PASSKEYS_JS) }))
}

const PASSKEYS_JS: &str = include_str!("../../../static/passkeys.js");

/// At start-up: one warning, naming how many, when stored passkeys were
/// registered under another relying party id than the host of
/// `--public-url`. A browser offers a passkey only to the id it was made
/// for, so those sign nobody in here (docs/OPERATIONS.md).
pub async fn on_start(state: &AppState) -> Result<()> {
    let rp_id = relying::rp_id(&state.settings.origin)?;
    let foreign = store::foreign(&state.db, &rp_id).await?;
    if foreign > 0 {
        tracing::warn!(
            count = foreign,
            rp_id = %rp_id,
            "{foreign} passkeys were registered under another relying party id than {rp_id} (the host of the \
             public URL): browsers will not offer them here, and they sign nobody in until the public URL is \
             what it was, or their owners add new ones"
        );
    }
    Ok(())
}

/// The cookie that binds ceremony `id` to the browser that started it.
fn ceremony_cookie(id: &str) -> String {
    format!("sesame_passkey_{id}")
}

/// The RFC 8176 methods of a passkey's use: `swk` for one that may be
/// synced between devices (backup eligible), `hwk` for one bound to its
/// device; `user` when the authenticator verified its user.
pub fn amr(backup_eligible: bool, user_verified: bool) -> String {
    let key = if backup_eligible { "swk" } else { "hwk" };
    if user_verified {
        format!("{key} user")
    } else {
        key.to_owned()
    }
}

/// An account's WebAuthn user handle: the bytes of its random subject,
/// which never changes and is never reused.
fn user_handle(subject: &str) -> Vec<u8> {
    hex::decode(subject).unwrap_or_else(|_| subject.as_bytes().to_vec())
}

/// The service in a path, and its policy, when it takes passkeys.
async fn passkey_service(state: &AppState, id: &str) -> Result<(ServiceId, Policy)> {
    let service_id: ServiceId = id.parse().map_err(|_| Error::UnknownService)?;
    let policy = store::policy(&state.db, &service_id).await?;
    if policy.builtin || !policy.key_kinds.passkeys() {
        return Err(Error::PasskeysNotAllowed);
    }
    Ok((service_id, policy))
}

/// What a ceremony's start stores besides its service.
struct Opening<'a> {
    purpose: Purpose,
    /// The name being registered, or the account a passkey is added to.
    account: Option<&'a str>,
    label: &'a str,
    /// The state the finish needs, serialized.
    kept: String,
    /// What the browser gets for `navigator.credentials`.
    options: serde_json::Value,
}

/// A ceremony's start, stored, and the browser's answer: the options, and
/// the binding cookie.
async fn open(state: &AppState, service_id: &ServiceId, policy: &Policy, opening: Opening<'_>) -> Result<Response> {
    let id = ChallengeId::random(&mut rand::rngs::OsRng).to_string();
    let binding = cookie::new_secret();
    let now = state.clock.now().as_secs() as i64;
    let new = NewCeremony {
        id: &id,
        binding_hash: &cookie::digest(&binding),
        service_id,
        purpose: opening.purpose,
        account: opening.account,
        label: opening.label,
        state: &opening.kept,
        now,
        expires_at: now + CEREMONY_SECS as i64,
    };
    store::open_ceremony(&state.db, &new).await?;
    let set =
        cookie::set(&state.settings.origin, &ceremony_cookie(&id), &binding, SameSite::Strict, CEREMONY_SECS as i64);
    let body = Started { ceremony: id, options: opening.options, sesame_keys: policy.key_kinds.sesame_keys() };
    Ok((
        StatusCode::OK,
        [(header::SET_COOKIE, set), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(body),
    )
        .into_response())
}

/// Takes the ceremony a finish names, for this browser only.
async fn take(
    state: &AppState,
    headers: &HeaderMap,
    ceremony: &str,
    service_id: &ServiceId,
    purpose: Purpose,
) -> Result<store::Ceremony> {
    // Only an id the start could have made: anything else names nothing.
    if ceremony.parse::<ChallengeId>().is_err() {
        return Err(Error::UnknownCeremony);
    }
    let secret =
        cookie::secret(&state.settings.origin, headers, &ceremony_cookie(ceremony)).ok_or(Error::BindingRequired)?;
    let now = state.clock.now().as_secs() as i64;
    store::take_ceremony(&state.db, ceremony, &cookie::digest(secret), service_id, purpose, now).await
}

/// The `Set-Cookie` that drops a finished ceremony's binding.
fn clear_binding(state: &AppState, ceremony: &str) -> HeaderValue {
    cookie::clear(&state.settings.origin, &ceremony_cookie(ceremony), SameSite::Strict)
}

/// A finish's request past the checks that every finish makes, with the
/// ceremony it answers taken.
struct Answered<C> {
    service_id: ServiceId,
    policy: Policy,
    /// The browser's credential, decoded.
    credential: C,
    /// The ceremony's id: the sign-in event names it, and its binding
    /// cookie is named after it.
    ceremony_id: String,
    ceremony: store::Ceremony,
}

impl<C> Answered<C> {
    /// The account a registration or an addition is for: the name being
    /// registered, or the account signed in (checked by [`answered`]).
    fn account(&self) -> Result<&str> {
        self.ceremony
            .account
            .as_deref()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("a ceremony without its account")))
    }
}

/// The checks every finish makes, in one place and one order so that the
/// three finishes cannot drift apart: the address's allowance, the
/// `Origin` header, the service and its policy, for an addition the
/// browser's session, the credential's shape, and last the ceremony, taken
/// for this browser only. Taking it comes last because it is final: a
/// request that an earlier check refuses leaves the ceremony for a retry.
/// An addition's ceremony must have been started by the account signed in
/// now (another sign-in in between: `wrong_account`).
async fn answered<C: DeserializeOwned>(
    state: &AppState,
    id: &str,
    client: &ClientInfo,
    headers: &HeaderMap,
    finish: Finish,
    purpose: Purpose,
) -> Result<Answered<C>> {
    state.limits.submissions.check(client.ip).await?;
    cookie::check_origin(&state.settings.origin, headers)?;
    let (service_id, policy) = passkey_service(state, id).await?;
    let signed_in = match purpose {
        Purpose::Add => Some(session::of_browser(state, &service_id, headers).await?.ok_or(Error::SignInRequired)?),
        Purpose::SignIn | Purpose::Register => None,
    };
    let credential = decode(finish.credential)?;
    let ceremony = take(state, headers, &finish.ceremony, &service_id, purpose).await?;
    if signed_in.is_some_and(|who| ceremony.account.as_deref() != Some(who.account.as_str())) {
        return Err(Error::WrongAccount);
    }
    Ok(Answered { service_id, policy, credential, ceremony_id: finish.ceremony, ceremony })
}

fn decode<T: DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value).map_err(|_| {
        Error::bad_request(
            "invalid_credential",
            "credential must be the PublicKeyCredential, its binary members in base64url",
        )
    })
}

fn kept<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Internal(anyhow::anyhow!("cannot keep a ceremony's state: {e}")))
}

fn restored<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Internal(anyhow::anyhow!("a stored ceremony's state: {e}")))
}

/// A started ceremony.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PasskeyCeremony)]
struct Started {
    /// Names the ceremony at its finish; the binding cookie
    /// `sesame_passkey_{ceremony}` goes with it.
    ceremony: String,
    /// For `navigator.credentials.get()` or `.create()`: `{"publicKey": …}`,
    /// its binary members in base64url.
    #[schema(value_type = Object)]
    options: serde_json::Value,
    /// Whether the service also takes Sesame keys (its QR sign-in).
    sesame_keys: bool,
}

/// A ceremony's finish: the browser's answer.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = PasskeyAnswer)]
#[serde(deny_unknown_fields)]
struct Finish {
    ceremony: String,
    /// The `PublicKeyCredential` the browser returned, its binary members
    /// (`rawId`, and those of `response`) in base64url.
    #[schema(value_type = Object)]
    credential: serde_json::Value,
}

/// A new account's name, and what to call its passkey.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = PasskeyRegistration)]
#[serde(deny_unknown_fields)]
struct RegisterStart {
    account: String,
    /// What the account page calls the passkey; "Passkey" when absent.
    label: Option<String>,
}

/// What to call a passkey being added.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = PasskeyAddition)]
#[serde(deny_unknown_fields)]
struct AddStart {
    /// What the account page calls the passkey; "Passkey" when absent.
    label: Option<String>,
}

/// A session made by a passkey.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PasskeySession)]
struct SignedInView {
    account: String,
    service_id: String,
    service_name: String,
}

/// A passkey added to an account.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PasskeyAdded)]
struct Added {
    key_id: String,
    label: String,
}

fn label(text: Option<&str>) -> Result<String> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok("Passkey".to_owned()),
        Some(text) => Ok(KeyLabel::parse(text)?.as_str().to_owned()),
    }
}

/// Starts a sign-in with a passkey (discoverable: the browser offers the
/// person's passkeys for this site, no name needed).
#[utoipa::path(
    post,
    path = "/api/services/{id}/passkeys/sign-in/start",
    operation_id = "passkey_sign_in_start",
    tag = "passkeys",
    params(("id" = String, Path, description = "The service id.")),
    responses(
        (status = 200, description = "The options for `navigator.credentials.get()`, and the binding cookie.", body = Started, headers(
            ("Set-Cookie" = String, description = "`sesame_passkey_{ceremony}` (with `__Host-` on HTTPS): HttpOnly, SameSite=Strict, 5 minutes."),
        )),
        (status = 400, description = "`invalid_request`: the path does not decode (bad percent-encoding or UTF-8).", body = ErrorBody),
        (status = 403, description = "`passkeys_not_allowed`: the service takes no passkeys.", body = ErrorBody),
        (status = 404, description = "`unknown_service`.", body = ErrorBody),
        (status = 429, description = "`rate_limited`.", body = ErrorBody),
    ),
)]
async fn sign_in_start(
    State(state): State<AppState>,
    State(rp): State<RelyingParty>,
    Path(id): Path<String>,
    client: ClientInfo,
) -> Result<Response> {
    // The policy first: a login page of a service without passkeys asks
    // on every load, and must not spend its address's allowance for it.
    let (service_id, policy) = passkey_service(&state, &id).await?;
    state.limits.challenges.check(client.ip).await?;
    let (options, ast) = rp.start_sign_in(policy.require_user_verification)?;
    let options = serde_json::to_value(options).map_err(|e| Error::Internal(e.into()))?;
    let opening = Opening { purpose: Purpose::SignIn, account: None, label: "", kept: kept(&ast)?, options };
    open(&state, &service_id, &policy, opening).await
}

/// Finishes a sign-in with a passkey: the same session as a QR sign-in's.
#[utoipa::path(
    post,
    path = "/api/services/{id}/passkeys/sign-in/finish",
    operation_id = "passkey_sign_in_finish",
    tag = "passkeys",
    params(("id" = String, Path, description = "The service id.")),
    request_body = Finish,
    security(("passkey_cookie" = [])),
    responses(
        (status = 200, description = "Signed in.", body = SignedInView, headers(
            ("Set-Cookie" = String, description = "The session cookie `sesame_session_{service_id}`, and the binding cookie's deletion."),
        )),
        (status = 400, description = "`invalid_credential`, `invalid_json`, or `invalid_request` for a path that does not decode.", body = ErrorBody),
        (status = 401, description = "`binding_required`; `unknown_passkey` (not a passkey of this service, or removed); `passkey_refused` (another challenge, origin or relying party id, a replay, a counter that did not move forwards, user verification required and not done, bad CBOR or client data).", body = ErrorBody),
        (status = 403, description = "`passkeys_not_allowed`.", body = ErrorBody),
        (status = 404, description = "`unknown_service`, `unknown_ceremony` (unknown, expired, used, or another browser's).", body = ErrorBody),
        BrowserErrors,
    ),
)]
async fn sign_in_finish(
    State(state): State<AppState>,
    State(rp): State<RelyingParty>,
    Path(id): Path<String>,
    client: ClientInfo,
    headers: HeaderMap,
    ApiJson(finish): ApiJson<Finish>,
) -> Result<Response> {
    let Answered { service_id, policy, credential: answer, ceremony_id, ceremony } =
        answered::<PublicKeyCredential>(&state, &id, &client, &headers, finish, Purpose::SignIn).await?;
    let ast: AuthenticationState = restored(&ceremony.state)?;
    let stored = store::by_credential_id(&state.db, answer.get_credential_id())
        .await?
        .filter(|stored| stored.service_id == service_id.to_string() && stored.active)
        .ok_or(Error::UnknownPasskey)?;
    // The user handle the authenticator returns must name the account the
    // credential belongs to (WebAuthn §7.2 step 6).
    if answer.get_user_unique_id() != Some(user_handle(&stored.subject).as_slice()) {
        return Err(Error::PasskeyRefused("it names another account"));
    }
    let mut credential: Credential = restored(&stored.credential)?;
    let now = state.clock.now().as_secs() as i64;
    let result = match rp.finish_sign_in(&answer, ast, credential.clone()) {
        Err(Error::PasskeyRefused(relying::COUNTER_REFUSED)) => {
            let sent = counter_of(&answer);
            store::counter_refused(&state.db, &stored, sent, &client, now).await?;
            return Err(Error::PasskeyRefused(relying::COUNTER_REFUSED));
        }
        other => other?,
    };
    credential.counter = result.counter();
    credential.backup_eligible = result.backup_eligible();
    credential.backup_state = result.backup_state();
    let amr = amr(result.backup_eligible(), result.user_verified());
    let session = Minted::fresh();
    let sign_in = store::SignIn {
        stored: &stored,
        credential: &kept(&credential)?,
        sign_count: i64::from(result.counter()),
        backup_eligible: result.backup_eligible(),
        backup_state: result.backup_state(),
        session_hash: &session.digest,
        amr: &amr,
        ceremony_id: &ceremony_id,
        client: &client,
        now,
    };
    if let Err(e) = store::record_sign_in(&state.db, &sign_in).await {
        if matches!(e, Error::PasskeyRefused(relying::COUNTER_REFUSED)) {
            store::counter_refused(&state.db, &stored, result.counter(), &client, now).await?;
        }
        return Err(e);
    }
    signed_in(&state, &service_id, &policy, stored.account, &session, &ceremony_id, StatusCode::OK)
}

/// The signature counter an assertion carries (authenticator data bytes
/// 33 to 36), for the audit record of a refusal; 0 when too short.
fn counter_of(answer: &PublicKeyCredential) -> u32 {
    let data = answer.response.authenticator_data.as_ref();
    data.get(33..37).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The answer of a ceremony that opened a session.
fn signed_in(
    state: &AppState,
    service_id: &ServiceId,
    policy: &Policy,
    account: String,
    session: &Minted,
    ceremony: &str,
    status: StatusCode,
) -> Result<Response> {
    let body = SignedInView { account, service_id: service_id.to_string(), service_name: policy.name.clone() };
    Ok((
        status,
        AppendHeaders([
            (header::SET_COOKIE, session.set_cookie(&state.settings.origin, service_id)),
            (header::SET_COOKIE, clear_binding(state, ceremony)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ]),
        Json(body),
    )
        .into_response())
}
