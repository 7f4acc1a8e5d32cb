//! The authenticator's HTTP interface (docs/PROTOCOL.md §5–§7, §12, §13):
//! the server's identity, "who is asking", and the signed register, login,
//! deny, enroll and rekey answers.
//!
//! Every answer goes through the same checks in the order of §6.6, so that a
//! given bad request always gets the same error code, and the challenge is
//! consumed last, in one conditional UPDATE, after everything that can fail
//! without writing has been checked.

use axum::{
    extract::State,
    routing::{get, post},
    Json, Router,
};
use sesame_proto::{
    wire::{ChallengeContext, ChallengePurpose, ContextRequest, ErrorBody, Outcome, ServerKeyInfo, Status},
    BaseToken, DenyRequest, EnrollRequest, FreshToken, FreshnessSecret, LoginRequest, MatchNumber, RegisterRequest,
    RekeyRequest, Token, UnixTime, UnverifiedToken, VerifiedLogin, VerifiedRegistration,
};

use crate::{
    audit,
    challenge::{
        row::{refusal, ChallengeRow, Final},
        Challenges, SignInState,
    },
    error::{Error, Result},
    http::extract::{ApiJson, ClientInfo},
    http::responses::AnswerErrors,
    signin::keys::{self, KeyState, StoredKey},
    state::AppState,
};

pub fn router<S: SignInState>() -> Router<S> {
    Router::new()
        .route("/.well-known/sesame", get(server_key))
        .route("/api/authenticator/context", post(context))
        .route("/api/authenticator/register", post(register))
        .route("/api/authenticator/login", post(login))
        .route("/api/authenticator/deny", post(deny))
        .route("/api/authenticator/enroll", post(enroll))
        .route("/api/authenticator/rekey", post(rekey))
}

/// The server's identity key.
///
/// An authenticator pins it on first use (PROTOCOL.md §5).
#[utoipa::path(
    get,
    path = "/.well-known/sesame",
    operation_id = "server_key",
    tag = "authenticator",
    responses((status = 200, description = "The identity key.", body = ServerKeyInfo)),
)]
async fn server_key(State(state): State<AppState>) -> Json<ServerKeyInfo> {
    let key = state.identity.public_key();
    Json(ServerKeyInfo {
        version: sesame_proto::token::VERSION,
        origin: state.settings.origin.to_string(),
        key_id: key.key_id().to_string(),
        public_key: key.to_base64(),
    })
}

/// A token whose signature, origin and lifetime are good, with the challenge
/// it names.
struct Checked {
    token: Token,
    row: ChallengeRow,
    secret: FreshnessSecret,
}

impl Checked {
    /// The token with its rotating code checked against the challenge's
    /// secret.
    fn fresh(&self, state: &AppState) -> Result<FreshToken<'_>> {
        Ok(self.secret.verify(&self.token, state.clock.now(), state.settings.code_window_secs)?)
    }

    /// The number a verified answer signed, against the one the page shows
    /// (PROTOCOL.md §14). A wrong number ends the challenge, so that it
    /// cannot be guessed again; a missing or unasked one leaves it pending,
    /// for an authenticator that can do better.
    async fn match_number(&self, challenges: &Challenges, signed: Option<MatchNumber>) -> Result<()> {
        match (self.row.number, signed) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(Error::NumberRequired),
            (None, Some(_)) => Err(Error::UnexpectedNumber),
            (Some(shown), Some(signed)) if shown == signed => Ok(()),
            (Some(_), Some(_)) => {
                challenges.finish(&self.row, challenges.now(), &Final::wrong_number()).await?;
                Err(Error::WrongNumber)
            }
        }
    }

    /// The key that a registration or an enrollment answering this
    /// challenge stores for `account`.
    fn new_key<'a>(
        &'a self,
        verified: &'a VerifiedRegistration,
        account: &'a str,
        key_id: &'a str,
        device: &'a ClientInfo,
        now: UnixTime,
    ) -> keys::NewAccount<'a> {
        keys::NewAccount {
            service_id: &self.row.service_id,
            account,
            key_id,
            public_key: verified.public_key(),
            label: verified.label(),
            challenge_id: &self.row.id,
            device,
            now: now.as_secs() as i64,
        }
    }
}

/// §6.6 up to (not including) the challenge state: decoding, key and
/// signature, origin, lifetime, existence.
async fn check_token(state: &AppState, challenges: &Challenges, text: &str) -> Result<Checked> {
    let unverified = UnverifiedToken::parse(text)?;
    // The challenge is read before the signature is checked, so that a
    // token the server stored is recognised instead of verified again (an
    // Ed25519 verification saved per answer). Its errors wait until after
    // the signature, origin and lifetime checks, to keep the order of §6.6.
    let stored = challenges.load(&unverified.claimed_challenge_id()).await;
    let base = stored
        .as_ref()
        .ok()
        .and_then(|row| BaseToken::from_stored(row.base_token.clone(), state.identity.public_key()).ok());
    let token = match base {
        Some(base) => unverified.verify_as_issued(&base, state.identity.public_key())?,
        None => unverified.verify(state.identity.public_key())?,
    };
    let claims = token.claims();
    if claims.origin != state.settings.origin {
        return Err(Error::WrongOrigin(claims.origin.to_string()));
    }
    token.check_lifetime(state.clock.now(), 0)?;
    let row = challenges.settle(stored?).await?;
    // Our own signature makes a mismatch impossible unless the service was
    // deleted and its id reused; treat it as a challenge that is gone.
    if row.service_id != claims.service_id {
        return Err(Error::UnknownChallenge);
    }
    let secret = row.code_secret.clone();
    Ok(Checked { token, row, secret })
}

/// §6.6 for an answer: the token checks, then the challenge must still be
/// pending.
async fn check_answer(state: &AppState, challenges: &Challenges, text: &str) -> Result<Checked> {
    let checked = check_token(state, challenges, text).await?;
    if let Some(refusal) = refusal(&checked.row, state.clock.now()) {
        return Err(refusal);
    }
    Ok(checked)
}

const ENROLLMENT_ONLY: &str = "this request adds an authenticator to an existing account; answer it with enroll";

/// [`check_answer`] for a register, login or rekey: the challenge must be a
/// sign-in, not an enrollment (which only adds a key, PROTOCOL.md §12).
async fn check_sign_in(state: &AppState, challenges: &Challenges, text: &str) -> Result<Checked> {
    let checked = check_answer(state, challenges, text).await?;
    if checked.row.enroll_account.is_some() {
        return Err(Error::WrongPurpose(ENROLLMENT_ONLY));
    }
    Ok(checked)
}

/// Who is asking.
///
/// Checks the token as for an answer and marks the challenge as opened
/// (PROTOCOL.md §6.2). A challenge that has ended is reported, not refused.
#[utoipa::path(
    post,
    path = "/api/authenticator/context",
    operation_id = "authenticator_context",
    tag = "authenticator",
    request_body = ContextRequest,
    responses(
        (status = 200, description = "Who is asking.", body = ChallengeContext),
        (status = 404, description = "`unknown_challenge`.", body = ErrorBody),
        AnswerErrors,
    ),
)]
async fn context(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    client: ClientInfo,
    ApiJson(req): ApiJson<ContextRequest>,
) -> Result<Json<ChallengeContext>> {
    state.limits.submissions.check(client.ip).await?;
    let checked = check_token(&state, &challenges, &req.token).await?;
    checked.fresh(&state)?;
    let mut row = checked.row;
    // A final state is reported, not refused: the authenticator tells the
    // user the request is over instead of asking them to approve it.
    if row.status == Status::Pending && challenges.mark_opened(&row.id, state.clock.now()).await? {
        challenges.publish(row.id).await;
        row.hint = "opened".to_owned();
    }
    let claims = checked.token.claims();
    Ok(Json(ChallengeContext {
        challenge_id: row.id,
        origin: claims.origin.to_string(),
        service_id: claims.service_id,
        service_name: claims.service_name.to_string(),
        status: row.status,
        ip: row.ip,
        user_agent: row.user_agent,
        requested_at: sesame_proto::UnixTime::from_secs(row.created_at as u64),
        expires_at: claims.expires_at,
        purpose: if row.enroll_account.is_some() { ChallengePurpose::Enroll } else { ChallengePurpose::SignIn },
        account: row.enroll_account,
        number_matching: row.number.is_some(),
    }))
}

/// Registers a new account with a new key (PROTOCOL.md §6.3).
#[utoipa::path(
    post,
    path = "/api/authenticator/register",
    operation_id = "authenticator_register",
    tag = "authenticator",
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "Registered; `key_state` is `pending` when the key waits for confirmation.", body = Outcome),
        (status = 403, description = "`registration_closed`; `number_required` or `wrong_number` (PROTOCOL.md §14).", body = ErrorBody),
        (status = 404, description = "`unknown_challenge`.", body = ErrorBody),
        (status = 409, description = "`challenge_used`; `account_exists` (the name, or one that looks like it, is taken); `key_registered`.", body = ErrorBody),
        AnswerErrors,
    ),
)]
async fn register(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    client: ClientInfo,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<Json<Outcome>> {
    state.limits.submissions.check(client.ip).await?;
    let checked = check_sign_in(&state, &challenges, &req.token).await?;
    let verified = req.verify(checked.fresh(&state)?)?;
    checked.match_number(&challenges, verified.number()).await?;
    if !checked.row.allow_register {
        return Err(Error::RegistrationClosed);
    }
    let account = verified.account().as_str().to_owned();
    let key_id = keys::new_id();
    let now = state.clock.now();

    let (mut write, consumed) =
        challenges.write_around(&checked.row, now, &Final::registered(account.clone(), key_id.clone())).await?;
    let new = checked.new_key(&verified, &account, &key_id, &client, now);
    // On an error the transaction rolls back and the challenge is pending
    // again, so the user can pick another name with the same token.
    let key_state = keys::register(&mut write.conn(), &new).await?;
    // Only admin authenticators start pending; their arrival is an admin
    // action, recorded with the registration. Other services pay nothing.
    if key_state == KeyState::Pending {
        let actor = audit::Actor::Authenticator(account.clone());
        let by = audit::By { actor: &actor, client: &client, at: now.as_secs() as i64 };
        let detail = format!("key {key_id}, waiting for confirmation");
        audit::record(&mut write.conn(), &by, audit::Record::new(audit::Action::AuthenticatorAdded, &account, &detail))
            .await?;
    }
    write.commit(consumed).await?;
    crate::metrics::challenge_approved(checked.row.created_at, now);
    Ok(Json(Outcome {
        status: Status::Completed,
        purpose: Some("register".to_owned()),
        account: Some(account),
        key_state: (key_state == KeyState::Pending).then(|| key_state.as_str().to_owned()),
        new_keys: Vec::new(),
    }))
}

/// The proof of this login, with the account's key that made its signature.
/// A pending key that made it is refused with its own error, so its owner
/// learns why.
fn verify_login<'k>(
    state: &AppState,
    checked: &Checked,
    req: &LoginRequest,
    keys: &'k [StoredKey],
) -> Result<(VerifiedLogin, &'k StoredKey)> {
    let mut refusal = None;
    for key in keys {
        match req.verify(checked.fresh(state)?, &key.public_key) {
            Ok(_) if key.state == KeyState::Pending => return Err(Error::KeyPending),
            Ok(verified) => return Ok((verified, key)),
            Err(e) => refusal = Some(e),
        }
    }
    Err(refusal.map_or(Error::UnknownAccount, Error::from))
}

/// Signs in with an existing account (PROTOCOL.md §6.4).
#[utoipa::path(
    post,
    path = "/api/authenticator/login",
    operation_id = "authenticator_login",
    tag = "authenticator",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in.", body = Outcome),
        (status = 403, description = "`key_pending`: the key waits for confirmation; `number_required` or `wrong_number` (PROTOCOL.md §14).", body = ErrorBody),
        (status = 404, description = "`unknown_challenge`, `unknown_account`.", body = ErrorBody),
        (status = 409, description = "`challenge_used`.", body = ErrorBody),
        AnswerErrors,
    ),
)]
async fn login(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    client: ClientInfo,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<Outcome>> {
    state.limits.submissions.check(client.ip).await?;
    let checked = check_sign_in(&state, &challenges, &req.token).await?;
    checked.fresh(&state)?;
    let account = req.account()?;
    let account_keys = keys::of_account(&state.db, &checked.row.service_id, account.as_str()).await?;
    let (verified, key) = verify_login(&state, &checked, &req, &account_keys.sesame)?;
    checked.match_number(&challenges, verified.number()).await?;
    let name = verified.account().as_str().to_owned();
    let now = state.clock.now();

    // One statement, which needs no transaction: the ended challenge is
    // written only while the key is still active (else `unknown_account`),
    // and the database's trigger records the key's use.
    challenges
        .finish(&checked.row, now, &Final::logged_in(name.clone(), key.id.clone(), key.public_key.to_bytes()))
        .await?;
    crate::metrics::challenge_approved(checked.row.created_at, now);
    Ok(Json(Outcome {
        status: Status::Completed,
        purpose: Some("login".to_owned()),
        account: Some(name),
        key_state: None,
        new_keys: account_keys.added_since_last_use(key),
    }))
}

/// Refuses the sign-in (PROTOCOL.md §6.5).
#[utoipa::path(
    post,
    path = "/api/authenticator/deny",
    operation_id = "authenticator_deny",
    tag = "authenticator",
    request_body = DenyRequest,
    responses(
        (status = 200, description = "Denied.", body = Outcome),
        (status = 404, description = "`unknown_challenge`.", body = ErrorBody),
        (status = 409, description = "`challenge_used`.", body = ErrorBody),
        AnswerErrors,
    ),
)]
async fn deny(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    client: ClientInfo,
    ApiJson(req): ApiJson<DenyRequest>,
) -> Result<Json<Outcome>> {
    state.limits.submissions.check(client.ip).await?;
    let checked = check_answer(&state, &challenges, &req.token).await?;
    req.verify(checked.fresh(&state)?)?;
    challenges.finish(&checked.row, state.clock.now(), &Final::denied()).await?;
    Ok(Json(Outcome { status: Status::Denied, purpose: None, account: None, key_state: None, new_keys: Vec::new() }))
}

/// Adds a key to the account an enrollment challenge names (PROTOCOL.md
/// §12). The key waits for the browser that started the challenge to
/// confirm it (§11).
#[utoipa::path(
    post,
    path = "/api/authenticator/enroll",
    operation_id = "authenticator_enroll",
    tag = "authenticator",
    request_body = EnrollRequest,
    responses(
        (status = 200, description = "Enrolled; `key_state` is `pending` until the page confirms the key.", body = Outcome),
        (status = 403, description = "`wrong_purpose`: a sign-in challenge; `wrong_account`: the challenge enrolls into another account; `number_required` or `wrong_number` (PROTOCOL.md §14).", body = ErrorBody),
        (status = 404, description = "`unknown_challenge`, `unknown_account`.", body = ErrorBody),
        (status = 409, description = "`challenge_used`, `key_registered`.", body = ErrorBody),
        AnswerErrors,
    ),
)]
async fn enroll(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    client: ClientInfo,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> Result<Json<Outcome>> {
    state.limits.submissions.check(client.ip).await?;
    let checked = check_answer(&state, &challenges, &req.token).await?;
    let Some(enroll_account) = checked.row.enroll_account.clone() else {
        return Err(Error::WrongPurpose("this request signs in; only an enrollment request adds a key to an account"));
    };
    let verified = req.verify(checked.fresh(&state)?)?;
    checked.match_number(&challenges, verified.number()).await?;
    if verified.account().as_str() != enroll_account {
        return Err(Error::WrongAccount);
    }
    let id = checked.row.id;
    let key_id = keys::new_id();
    let now = state.clock.now();

    let (mut write, consumed) =
        challenges.write_around(&checked.row, now, &Final::enrolled(enroll_account.clone(), key_id.clone())).await?;
    let new = checked.new_key(&verified, &enroll_account, &key_id, &client, now);
    // On an error the challenge stays pending: a key that is already
    // registered can be replaced by another from the same token.
    keys::enroll(&mut write.conn(), &new).await?;
    write.commit(consumed).await?;
    tracing::info!(challenge = %id, key = %key_id, "a key was enrolled and waits for confirmation");
    Ok(Json(Outcome {
        status: Status::Completed,
        purpose: Some("enroll".to_owned()),
        account: Some(enroll_account),
        key_state: Some(KeyState::Pending.as_str().to_owned()),
        new_keys: Vec::new(),
    }))
}

/// Signs in and replaces the key that signed with a new one, in one answer
/// (PROTOCOL.md §13). The swap is one conditional UPDATE in the transaction
/// that consumes the challenge: afterwards the old key is refused, and a
/// replay finds the challenge used.
#[utoipa::path(
    post,
    path = "/api/authenticator/rekey",
    operation_id = "authenticator_rekey",
    tag = "authenticator",
    request_body = RekeyRequest,
    responses(
        (status = 200, description = "Signed in, and the account's key replaced.", body = Outcome),
        (status = 403, description = "`key_pending`: the key waits for confirmation; `wrong_purpose`: an enrollment challenge; `number_required` or `wrong_number` (PROTOCOL.md §14).", body = ErrorBody),
        (status = 404, description = "`unknown_challenge`, `unknown_account`.", body = ErrorBody),
        (status = 409, description = "`challenge_used`, `key_registered`: the new key is already registered at the service.", body = ErrorBody),
        AnswerErrors,
    ),
)]
async fn rekey(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    client: ClientInfo,
    ApiJson(req): ApiJson<RekeyRequest>,
) -> Result<Json<Outcome>> {
    state.limits.submissions.check(client.ip).await?;
    let checked = check_sign_in(&state, &challenges, &req.token).await?;
    let fresh = checked.fresh(&state)?;
    let account = req.account()?;
    let account_keys = keys::of_account(&state.db, &checked.row.service_id, account.as_str()).await?;
    let mut refusal = None;
    let mut found = None;
    for key in &account_keys.sesame {
        match req.verify(fresh, &key.public_key) {
            Ok(_) if key.state == KeyState::Pending => return Err(Error::KeyPending),
            Ok(verified) => {
                found = Some((verified, key));
                break;
            }
            Err(e) => refusal = Some(e),
        }
    }
    let (verified, key) = found.ok_or_else(|| refusal.map_or(Error::UnknownAccount, Error::from))?;
    checked.match_number(&challenges, verified.number()).await?;
    if account_keys.sesame.iter().any(|k| k.public_key == *verified.new_public_key()) {
        return Err(Error::KeyRegistered);
    }
    let name = verified.account().as_str().to_owned();
    let id = checked.row.id;
    let now = state.clock.now();

    let (mut write, consumed) = challenges
        .write_around(&checked.row, now, &Final::logged_in(name.clone(), key.id.clone(), key.public_key.to_bytes()))
        .await?;
    if !keys::rekey(&mut write.conn(), &key.id, &key.public_key, verified.new_public_key(), now.as_secs() as i64)
        .await?
    {
        // The key was replaced by a racing rekey after it was read: this
        // answer's key no longer signs in. (A removed key was refused by
        // `consume`.) Dropping the write rolls it back.
        return Err(Error::Protocol(sesame_proto::Error::BadSignature));
    }
    write.commit(consumed).await?;
    crate::metrics::challenge_approved(checked.row.created_at, now);
    tracing::info!(challenge = %id, key = %key.id, "an account key was replaced");
    Ok(Json(Outcome {
        status: Status::Completed,
        purpose: Some("login".to_owned()),
        account: Some(name),
        key_state: None,
        new_keys: account_keys.added_since_last_use(key),
    }))
}
