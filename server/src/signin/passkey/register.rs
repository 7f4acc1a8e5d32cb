//! Passkeys that come to an account: a new account registered with one,
//! one added to a signed-in account, and one removed from the account
//! page. The ceremonies, their binding and the policy are the parent's.

use super::*;

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
pub(super) async fn register_start(
    State(state): State<AppState>,
    State(rp): State<RelyingParty>,
    Path(id): Path<String>,
    client: ClientInfo,
    ApiJson(body): ApiJson<RegisterStart>,
) -> Result<Response> {
    state.limits.challenges.check(client.ip).await?;
    let (service_id, policy) = passkey_service(&state, &id).await?;
    let account = AccountName::parse(&body.account)?;
    let label = label(body.label.as_deref())?;
    // Refused now rather than after the person made a passkey for it.
    store::name_free(&state.db, &service_id, account.as_str()).await?;
    let subject = keys::new_id();
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
pub(super) async fn register_finish(
    State(state): State<AppState>,
    State(rp): State<RelyingParty>,
    Path(id): Path<String>,
    client: ClientInfo,
    headers: HeaderMap,
    ApiJson(finish): ApiJson<Finish>,
) -> Result<Response> {
    let answer =
        answered::<RegisterPublicKeyCredential>(&state, &id, &client, &headers, finish, Purpose::Register).await?;
    let account = answer.account()?;
    let kept: KeptRegistration = restored(&answer.ceremony.state)?;
    let credential = rp.finish_registration(&answer.credential, &kept.state)?;
    let session = Minted::fresh();
    let amr = amr(credential.backup_eligible, credential.user_verified);
    let key_id = keys::new_id();
    let made = Made::of(&credential, &rp)?;
    let new = made.new_passkey(&answer.service_id, account, &key_id, &answer.ceremony.label, &client, &state);
    let opened = store::Registered { subject: &kept.subject, session_hash: &session.digest, amr: &amr };
    store::register(&state.db, &new, &opened, &answer.ceremony_id).await?;
    let (service_id, policy, ceremony_id) = (&answer.service_id, &answer.policy, &answer.ceremony_id);
    signed_in(&state, service_id, policy, account.to_owned(), &session, ceremony_id, StatusCode::CREATED)
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
        (status = 403, description = "`passkeys_not_allowed`, `forbidden_origin`, `sign_in_again` (the sign-in is more than 10 minutes old).", body = ErrorBody),
        (status = 404, description = "`unknown_service`.", body = ErrorBody),
        (status = 429, description = "`rate_limited`.", body = ErrorBody),
    ),
)]
pub(super) async fn add_start(
    State(state): State<AppState>,
    State(rp): State<RelyingParty>,
    Path(id): Path<String>,
    client: ClientInfo,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AddStart>,
) -> Result<Response> {
    state.limits.challenges.check(client.ip).await?;
    cookie::check_origin(&state.settings.origin, &headers)?;
    let (service_id, policy) = passkey_service(&state, &id).await?;
    let who = session::of_browser(&state, &service_id, &headers).await?.ok_or(Error::SignInRequired)?;
    // As for any key added from the account page: a recent sign-in.
    who.recent(state.clock.now().as_secs() as i64)?;
    let label = label(body.label.as_deref())?;
    let (subject, existing) = store::of_account(&state.db, &service_id, &who.account).await?;
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
pub(super) async fn add_finish(
    State(state): State<AppState>,
    State(rp): State<RelyingParty>,
    Path(id): Path<String>,
    client: ClientInfo,
    headers: HeaderMap,
    ApiJson(finish): ApiJson<Finish>,
) -> Result<Response> {
    let answer = answered::<RegisterPublicKeyCredential>(&state, &id, &client, &headers, finish, Purpose::Add).await?;
    let rs: RegistrationState = restored(&answer.ceremony.state)?;
    let credential = rp.finish_registration(&answer.credential, &rs)?;
    let key_id = keys::new_id();
    let made = Made::of(&credential, &rp)?;
    let new = made.new_passkey(&answer.service_id, answer.account()?, &key_id, &answer.ceremony.label, &client, &state);
    store::add(&state.db, &new).await?;
    let clear = clear_binding(&state, &answer.ceremony_id);
    let body = Added { key_id, label: answer.ceremony.label.clone() };
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
