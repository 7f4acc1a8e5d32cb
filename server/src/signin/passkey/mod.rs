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

pub mod relying;
pub mod store;

use axum::{
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{AppendHeaders, IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::{Deserialize, Serialize};
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
        extract::ClientInfo,
        responses::BrowserErrors,
    },
    signin::{keys, pages::asset},
    state::{AppState, RouterState},
};
use relying::{RelyingParty, CEREMONY_SECS};
use store::{NewCeremony, NewPasskey, Policy, Purpose};

pub fn router<S: RouterState>() -> Router<S> {
    Router::new()
        .route("/api/services/{id}/passkeys/sign-in/start", post(sign_in_start))
        .route("/api/services/{id}/passkeys/sign-in/finish", post(sign_in_finish))
        .route("/api/services/{id}/passkeys/register/start", post(register_start))
        .route("/api/services/{id}/passkeys/register/finish", post(register_finish))
        .route("/api/services/{id}/passkeys/add/start", post(add_start))
        .route("/api/services/{id}/passkeys/add/finish", post(add_finish))
        .route("/services/{id}/account/passkeys/{key_id}/remove", post(remove))
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

fn decode<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T> {
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

fn restored<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
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
async fn sign_in_start(State(state): State<AppState>, Path(id): Path<String>, client: ClientInfo) -> Result<Response> {
    // The policy first: a login page of a service without passkeys asks
    // on every load, and must not spend its address's allowance for it.
    let (service_id, policy) = passkey_service(&state, &id).await?;
    state.limits.challenges.check(client.ip).await?;
    let rp = RelyingParty::of(&state.settings.origin)?;
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
    Path(id): Path<String>,
    client: ClientInfo,
    headers: HeaderMap,
    body: std::result::Result<Json<Finish>, axum::extract::rejection::JsonRejection>,
) -> Result<Response> {
    let Json(body) = body?;
    state.limits.submissions.check(client.ip).await?;
    cookie::check_origin(&state.settings.origin, &headers)?;
    let (service_id, policy) = passkey_service(&state, &id).await?;
    let answer: PublicKeyCredential = decode(body.credential)?;
    let ceremony = take(&state, &headers, &body.ceremony, &service_id, Purpose::SignIn).await?;
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
    let rp = RelyingParty::of(&state.settings.origin)?;
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
        ceremony_id: &body.ceremony,
        client: &client,
        now,
    };
    if let Err(e) = store::record_sign_in(&state.db, &sign_in).await {
        if matches!(e, Error::PasskeyRefused(relying::COUNTER_REFUSED)) {
            store::counter_refused(&state.db, &stored, result.counter(), &client, now).await?;
        }
        return Err(e);
    }
    signed_in(&state, &service_id, &policy, stored.account, &session, &body.ceremony, StatusCode::OK)
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

/// What a registration's ceremony keeps besides the library's state: the
/// subject the new account will have, which is its user handle.
#[derive(Debug, Serialize, Deserialize)]
struct KeptRegistration {
    state: RegistrationState,
    subject: String,
}

/// Starts registering a new account with a passkey.
#[utoipa::path(
    post,
    path = "/api/services/{id}/passkeys/register/start",
    operation_id = "passkey_register_start",
    tag = "passkeys",
    params(("id" = String, Path, description = "The service id.")),
    request_body = RegisterStart,
    responses(
        (status = 200, description = "The options for `navigator.credentials.create()`, and the binding cookie.", body = Started),
        (status = 400, description = "`invalid_account_name`, `invalid_label`, `invalid_json`, or `invalid_request` for a path that does not decode.", body = ErrorBody),
        (status = 403, description = "`passkeys_not_allowed`, `registration_closed`.", body = ErrorBody),
        (status = 404, description = "`unknown_service`.", body = ErrorBody),
        (status = 409, description = "`account_exists`: the name, or one that looks like it, is taken.", body = ErrorBody),
        (status = 429, description = "`rate_limited`.", body = ErrorBody),
    ),
)]
async fn register_start(
    State(state): State<AppState>,
    Path(id): Path<String>,
    client: ClientInfo,
    body: std::result::Result<Json<RegisterStart>, axum::extract::rejection::JsonRejection>,
) -> Result<Response> {
    let Json(body) = body?;
    state.limits.challenges.check(client.ip).await?;
    let (service_id, policy) = passkey_service(&state, &id).await?;
    let account = AccountName::parse(&body.account)?;
    let label = label(body.label.as_deref())?;
    // Refused now rather than after the person made a passkey for it.
    store::name_free(&state.db, &service_id, account.as_str(), state.clock.now().as_secs() as i64).await?;
    let subject = keys::new_id();
    let rp = RelyingParty::of(&state.settings.origin)?;
    let (options, rs) =
        rp.start_registration(&user_handle(&subject), account.as_str(), policy.require_user_verification, Vec::new())?;
    let kept = kept(&KeptRegistration { state: rs, subject })?;
    let opening = Opening { purpose: Purpose::Register, account: Some(account.as_str()), label: &label, kept, options };
    open(&state, &service_id, &policy, opening).await
}

/// Finishes registering a new account with a passkey, and signs it in.
#[utoipa::path(
    post,
    path = "/api/services/{id}/passkeys/register/finish",
    operation_id = "passkey_register_finish",
    tag = "passkeys",
    params(("id" = String, Path, description = "The service id.")),
    request_body = Finish,
    security(("passkey_cookie" = [])),
    responses(
        (status = 201, description = "The account, signed in.", body = SignedInView),
        (status = 400, description = "`invalid_credential`, `invalid_json`, or `invalid_request` for a path that does not decode.", body = ErrorBody),
        (status = 401, description = "`binding_required`, `passkey_refused`.", body = ErrorBody),
        (status = 403, description = "`passkeys_not_allowed`.", body = ErrorBody),
        (status = 404, description = "`unknown_service`, `unknown_ceremony`.", body = ErrorBody),
        (status = 409, description = "`account_exists`, `key_registered`.", body = ErrorBody),
        BrowserErrors,
    ),
)]
async fn register_finish(
    State(state): State<AppState>,
    Path(id): Path<String>,
    client: ClientInfo,
    headers: HeaderMap,
    body: std::result::Result<Json<Finish>, axum::extract::rejection::JsonRejection>,
) -> Result<Response> {
    let Json(body) = body?;
    state.limits.submissions.check(client.ip).await?;
    cookie::check_origin(&state.settings.origin, &headers)?;
    let (service_id, policy) = passkey_service(&state, &id).await?;
    let answer: RegisterPublicKeyCredential = decode(body.credential)?;
    let ceremony = take(&state, &headers, &body.ceremony, &service_id, Purpose::Register).await?;
    let account = ceremony.account.ok_or_else(|| Error::Internal(anyhow::anyhow!("a registration without a name")))?;
    let kept: KeptRegistration = restored(&ceremony.state)?;
    let rp = RelyingParty::of(&state.settings.origin)?;
    let credential = rp.finish_registration(&answer, &kept.state)?;
    let session = Minted::fresh();
    let amr = amr(credential.backup_eligible, credential.user_verified);
    let key_id = keys::new_id();
    let made = Made::of(&credential, &rp)?;
    let new = made.new_passkey(&service_id, &account, &key_id, &ceremony.label, &client, &state);
    let opened = store::Registered { subject: &kept.subject, session_hash: &session.digest, amr: &amr };
    store::register(&state.db, &new, &opened, &body.ceremony).await?;
    signed_in(&state, &service_id, &policy, account, &session, &body.ceremony, StatusCode::CREATED)
}

/// Starts adding a passkey to the account signed in at the service.
#[utoipa::path(
    post,
    path = "/api/services/{id}/passkeys/add/start",
    operation_id = "passkey_add_start",
    tag = "passkeys",
    params(("id" = String, Path, description = "The service id.")),
    request_body = AddStart,
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "The options for `navigator.credentials.create()`, and the binding cookie.", body = Started),
        (status = 400, description = "`invalid_label`, `invalid_json`, or `invalid_request` for a path that does not decode.", body = ErrorBody),
        (status = 401, description = "`sign_in_required`: no live session at the service.", body = ErrorBody),
        (status = 403, description = "`passkeys_not_allowed`, `forbidden_origin`.", body = ErrorBody),
        (status = 404, description = "`unknown_service`.", body = ErrorBody),
        (status = 429, description = "`rate_limited`.", body = ErrorBody),
    ),
)]
async fn add_start(
    State(state): State<AppState>,
    Path(id): Path<String>,
    client: ClientInfo,
    headers: HeaderMap,
    body: std::result::Result<Json<AddStart>, axum::extract::rejection::JsonRejection>,
) -> Result<Response> {
    let Json(body) = body?;
    state.limits.challenges.check(client.ip).await?;
    cookie::check_origin(&state.settings.origin, &headers)?;
    let (service_id, policy) = passkey_service(&state, &id).await?;
    let who = session::of_browser(&state, &service_id, &headers).await?.ok_or(Error::SignInRequired)?;
    let label = label(body.label.as_deref())?;
    let (subject, existing) = store::of_account(&state.db, &service_id, &who.account).await?;
    let rp = RelyingParty::of(&state.settings.origin)?;
    let exclude = existing.into_iter().map(Into::into).collect();
    let (options, rs) =
        rp.start_registration(&user_handle(&subject), &who.account, policy.require_user_verification, exclude)?;
    let opening =
        Opening { purpose: Purpose::Add, account: Some(&who.account), label: &label, kept: kept(&rs)?, options };
    open(&state, &service_id, &policy, opening).await
}

/// Finishes adding a passkey to the account signed in at the service.
#[utoipa::path(
    post,
    path = "/api/services/{id}/passkeys/add/finish",
    operation_id = "passkey_add_finish",
    tag = "passkeys",
    params(("id" = String, Path, description = "The service id.")),
    request_body = Finish,
    security(("session_cookie" = [])),
    responses(
        (status = 201, description = "The passkey is on the account.", body = Added),
        (status = 400, description = "`invalid_credential`, `invalid_json`, or `invalid_request` for a path that does not decode.", body = ErrorBody),
        (status = 401, description = "`sign_in_required`, `binding_required`, `passkey_refused`.", body = ErrorBody),
        (status = 403, description = "`passkeys_not_allowed`, `wrong_account` (the session is another account's now).", body = ErrorBody),
        (status = 404, description = "`unknown_service`, `unknown_ceremony`, `unknown_account`.", body = ErrorBody),
        (status = 409, description = "`key_registered`.", body = ErrorBody),
        BrowserErrors,
    ),
)]
async fn add_finish(
    State(state): State<AppState>,
    Path(id): Path<String>,
    client: ClientInfo,
    headers: HeaderMap,
    body: std::result::Result<Json<Finish>, axum::extract::rejection::JsonRejection>,
) -> Result<Response> {
    let Json(body) = body?;
    state.limits.submissions.check(client.ip).await?;
    cookie::check_origin(&state.settings.origin, &headers)?;
    let (service_id, _) = passkey_service(&state, &id).await?;
    let who = session::of_browser(&state, &service_id, &headers).await?.ok_or(Error::SignInRequired)?;
    let answer: RegisterPublicKeyCredential = decode(body.credential)?;
    let ceremony = take(&state, &headers, &body.ceremony, &service_id, Purpose::Add).await?;
    if ceremony.account.as_deref() != Some(who.account.as_str()) {
        return Err(Error::WrongAccount);
    }
    let rs: RegistrationState = restored(&ceremony.state)?;
    let rp = RelyingParty::of(&state.settings.origin)?;
    let credential = rp.finish_registration(&answer, &rs)?;
    let key_id = keys::new_id();
    let made = Made::of(&credential, &rp)?;
    store::add(&state.db, &made.new_passkey(&service_id, &who.account, &key_id, &ceremony.label, &client, &state))
        .await?;
    let clear = clear_binding(&state, &body.ceremony);
    let body = Added { key_id, label: ceremony.label };
    Ok((
        StatusCode::CREATED,
        AppendHeaders([(header::SET_COOKIE, clear), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]),
        Json(body),
    )
        .into_response())
}

/// A registered credential, as it is stored.
#[derive(Debug)]
struct Made {
    credential_id: Vec<u8>,
    credential: String,
    sign_count: i64,
    backup_eligible: bool,
    backup_state: bool,
    user_verified: bool,
    rp_id: String,
}

impl Made {
    fn of(credential: &Credential, rp: &RelyingParty) -> Result<Self> {
        Ok(Self {
            credential_id: credential.cred_id.as_ref().to_vec(),
            credential: kept(credential)?,
            sign_count: i64::from(credential.counter),
            backup_eligible: credential.backup_eligible,
            backup_state: credential.backup_state,
            user_verified: credential.user_verified,
            rp_id: rp.id().to_owned(),
        })
    }

    fn new_passkey<'a>(
        &'a self,
        service_id: &'a ServiceId,
        account: &'a str,
        key_id: &'a str,
        label: &'a str,
        client: &'a ClientInfo,
        state: &AppState,
    ) -> NewPasskey<'a> {
        NewPasskey {
            service_id,
            account,
            key_id,
            label,
            credential_id: &self.credential_id,
            credential: &self.credential,
            sign_count: self.sign_count,
            backup_eligible: self.backup_eligible,
            backup_state: self.backup_state,
            user_verified: self.user_verified,
            rp_id: &self.rp_id,
            client,
            now: state.clock.now().as_secs() as i64,
        }
    }
}

/// Removes one of the signed-in account's passkeys, from its account page:
/// the sessions it opened go with it, and the audit log records it. A
/// Sesame key is not removed here (an admin removes those).
async fn remove(
    State(state): State<AppState>,
    Path((id, key_id)): Path<(String, String)>,
    client: ClientInfo,
    headers: HeaderMap,
) -> Response {
    remove_or_error(&state, &id, &key_id, &client, &headers).await.unwrap_or_else(crate::error::error_page)
}

async fn remove_or_error(
    state: &AppState,
    id: &str,
    key_id: &str,
    client: &ClientInfo,
    headers: &HeaderMap,
) -> Result<Response> {
    let service_id: ServiceId = id.parse().map_err(|_| Error::UnknownService)?;
    cookie::check_origin(&state.settings.origin, headers)?;
    let who = session::of_browser(state, &service_id, headers).await?.ok_or(Error::SignInRequired)?;
    if !store::is_passkey_of(&state.db, &service_id, &who.account, key_id).await? {
        return Err(Error::UnknownKey);
    }
    let actor = crate::audit::Actor::Account(who.account.clone());
    let by = crate::audit::By { actor: &actor, client, at: state.clock.now().as_secs() as i64 };
    keys::remove(&state.db, &service_id.to_string(), &who.account, key_id, &by).await?;
    let to = format!("/services/{service_id}/account?done=passkey_removed");
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response())
}
