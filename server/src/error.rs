//! The server's one error type. It alone decides status codes and the stable
//! `error` codes of the JSON bodies, and the page a browser is shown for the
//! same error; handlers just use `?`.

use askama::Template;
use axum::{
    extract::rejection::JsonRejection,
    http::{header, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
    Json,
};
use sesame_proto::{wire::ErrorBody, wire::Status};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The `Retry-After` of `too_many_streams`.
const STREAM_RETRY_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A token or signed answer that the protocol crate refused.
    #[error(transparent)]
    Protocol(#[from] sesame_proto::Error),

    #[error("the token was issued for {0}, not for this server")]
    WrongOrigin(String),

    #[error("no such service")]
    UnknownService,
    #[error("no such sign-in request")]
    UnknownChallenge,
    #[error("no such account at this service")]
    UnknownAccount,
    /// `name` is the name of the service `existing`, or looks like it
    /// (names.rs).
    #[error("{}", taken(.name, "a service", "the existing service", .existing, ""))]
    ServiceNameTaken { name: String, existing: String },
    /// `name` is the name of the account `existing` of the service, or
    /// looks like it (names.rs).
    #[error("{}", taken(.name, "an account", "the existing account", .existing, " at this service"))]
    AccountExists { name: String, existing: String },
    #[error("this service does not accept new accounts from this page")]
    RegistrationClosed,
    #[error("this key is already registered at this service")]
    KeyRegistered,
    #[error("this key waits for confirmation on the page that added it")]
    KeyPending,
    #[error("no key from this request waits for confirmation")]
    NothingToConfirm,
    #[error("this account has no such key")]
    UnknownKey,
    /// An answer of one kind to a challenge of the other: a sign-in answer
    /// to an enrollment challenge, or an enrollment to a sign-in challenge.
    #[error("{0}")]
    WrongPurpose(&'static str),
    #[error("this request adds a key to another account")]
    WrongAccount,
    #[error("type the number shown on the page that is signing in; this authenticator did not send one")]
    NumberRequired,
    #[error("this sign-in asks for no number; answer without one")]
    UnexpectedNumber,
    #[error(
        "that is not the number shown on the page that is signing in, so the sign-in was stopped; start again there"
    )]
    WrongNumber,
    #[error("sign in to this service as the account again, then confirm the new authenticator")]
    SignInRequired,
    /// A change to an account's keys needs a recent sign-in
    /// (`session::RECENT_SIGN_IN_SECS`), so that a browser left signed in
    /// cannot add a stranger's key or remove the owner's.
    #[error(
        "you signed in more than 10 minutes ago: to change the keys of your account, sign out and sign in again \
         with one of them first"
    )]
    SignInAgain,
    #[error("no such recovery link, or it was revoked")]
    UnknownRecoveryLink,
    #[error("this recovery link has expired or was already used; ask your administrator for a new one")]
    RecoveryLinkSpent,
    #[error("no application is registered with this client_id")]
    OidcUnknownClient,
    #[error("the redirect_uri is missing or is not one registered for this client, so Sesame will not send you there")]
    OidcRedirectUri,
    #[error("OpenID Connect is not set up for this service")]
    OidcNotConfigured,
    #[error("this service has no application with this client_id")]
    UnknownApplication,
    #[error("this service has no group with this id")]
    UnknownGroup,
    /// The service's policy (`key_kinds`) lets no passkey sign in.
    #[error("this service does not take passkeys")]
    PasskeysNotAllowed,
    /// The service's policy lets only passkeys sign in.
    #[error("this service takes passkeys only, not Sesame keys")]
    SesameKeysNotAllowed,
    #[error("no such passkey request, or it expired or was already used; start again")]
    UnknownCeremony,
    #[error("this passkey is not registered at this service")]
    UnknownPasskey,
    /// A WebAuthn response that does not verify; the words say which check
    /// failed, never more.
    #[error("the passkey's answer was refused: {0}")]
    PasskeyRefused(&'static str),

    #[error("this sign-in request has expired; start again")]
    ChallengeExpired,
    /// The challenge already reached a final state: a replay, or a race lost.
    #[error("this sign-in request was already {}", .0.as_str())]
    ChallengeFinished(Status),
    /// Another answer holds the challenge while it records its outcome: a
    /// race lost, as far as this answer is concerned.
    #[error("another answer to this sign-in request is being recorded")]
    ChallengeClaimed,
    #[error("the sign-in has not completed")]
    NotCompleted,
    #[error("this sign-in was already turned into a session")]
    AlreadyRedeemed,

    #[error("this needs the admin token")]
    AdminAuthRequired,
    #[error("only the browser that started this sign-in may follow it")]
    BindingRequired,
    #[error("this sign-in was started by another browser")]
    WrongBrowser,
    #[error("the form is stale or was not sent by this site; reload the page")]
    CsrfRejected,
    /// Over a rate limit; a request may succeed again after this many
    /// seconds, which the answer's `Retry-After` header repeats.
    #[error("too many requests; try again in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("too many event streams are open for this sign-in or from this address; close some and try again")]
    TooManyStreams,
    #[error("the server has too many open connections; try again shortly")]
    TooManyConnections,
    #[error("there is nothing at this address")]
    NotFound,
    #[error("this address does not take that method")]
    MethodNotAllowed,

    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("the request body is larger than the server accepts")]
    PayloadTooLarge,

    #[error("the server is temporarily unable to deliver results; try again shortly")]
    Unavailable,
    /// `/readyz`: these dependencies did not answer.
    #[error("not ready: {} did not answer", .0.join(" and "))]
    NotReady(Vec<&'static str>),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use sesame_proto::Error as P;
        match self {
            Self::Protocol(e) => {
                let status = match e {
                    P::Expired | P::StaleCode => StatusCode::GONE,
                    P::BadSignature => StatusCode::UNAUTHORIZED,
                    _ => StatusCode::BAD_REQUEST,
                };
                (status, e.code())
            }
            Self::WrongOrigin(_) => (StatusCode::BAD_REQUEST, "wrong_origin"),
            Self::UnknownService => (StatusCode::NOT_FOUND, "unknown_service"),
            Self::UnknownChallenge => (StatusCode::NOT_FOUND, "unknown_challenge"),
            Self::UnknownAccount => (StatusCode::NOT_FOUND, "unknown_account"),
            Self::ServiceNameTaken { .. } => (StatusCode::CONFLICT, "service_exists"),
            Self::AccountExists { .. } => (StatusCode::CONFLICT, "account_exists"),
            Self::RegistrationClosed => (StatusCode::FORBIDDEN, "registration_closed"),
            Self::KeyRegistered => (StatusCode::CONFLICT, "key_registered"),
            Self::KeyPending => (StatusCode::FORBIDDEN, "key_pending"),
            Self::NothingToConfirm => (StatusCode::CONFLICT, "nothing_to_confirm"),
            Self::UnknownKey => (StatusCode::NOT_FOUND, "unknown_key"),
            Self::PasskeysNotAllowed => (StatusCode::FORBIDDEN, "passkeys_not_allowed"),
            Self::SesameKeysNotAllowed => (StatusCode::FORBIDDEN, "sesame_keys_not_allowed"),
            Self::UnknownCeremony => (StatusCode::NOT_FOUND, "unknown_ceremony"),
            Self::UnknownPasskey => (StatusCode::UNAUTHORIZED, "unknown_passkey"),
            Self::PasskeyRefused(_) => (StatusCode::UNAUTHORIZED, "passkey_refused"),
            Self::WrongPurpose(_) => (StatusCode::FORBIDDEN, "wrong_purpose"),
            Self::WrongAccount => (StatusCode::FORBIDDEN, "wrong_account"),
            Self::NumberRequired => (StatusCode::FORBIDDEN, "number_required"),
            Self::UnexpectedNumber => (StatusCode::BAD_REQUEST, "unexpected_number"),
            Self::WrongNumber => (StatusCode::FORBIDDEN, "wrong_number"),
            Self::SignInRequired => (StatusCode::UNAUTHORIZED, "sign_in_required"),
            Self::SignInAgain => (StatusCode::FORBIDDEN, "sign_in_again"),
            Self::UnknownRecoveryLink => (StatusCode::NOT_FOUND, "unknown_recovery_link"),
            Self::RecoveryLinkSpent => (StatusCode::GONE, "recovery_link_spent"),
            Self::OidcUnknownClient => (StatusCode::BAD_REQUEST, "invalid_client"),
            Self::OidcRedirectUri => (StatusCode::BAD_REQUEST, "invalid_redirect_uri"),
            Self::OidcNotConfigured => (StatusCode::NOT_FOUND, "oidc_not_configured"),
            Self::UnknownApplication => (StatusCode::NOT_FOUND, "unknown_application"),
            Self::UnknownGroup => (StatusCode::NOT_FOUND, "unknown_group"),
            Self::ChallengeExpired => (StatusCode::GONE, "challenge_expired"),
            Self::ChallengeFinished(_) | Self::ChallengeClaimed => (StatusCode::CONFLICT, "challenge_used"),
            Self::NotCompleted => (StatusCode::CONFLICT, "not_completed"),
            Self::AlreadyRedeemed => (StatusCode::CONFLICT, "already_redeemed"),
            Self::AdminAuthRequired => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::BindingRequired => (StatusCode::UNAUTHORIZED, "binding_required"),
            Self::WrongBrowser => (StatusCode::FORBIDDEN, "wrong_browser"),
            Self::CsrfRejected => (StatusCode::FORBIDDEN, "csrf_rejected"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::TooManyStreams => (StatusCode::TOO_MANY_REQUESTS, "too_many_streams"),
            Self::TooManyConnections => (StatusCode::SERVICE_UNAVAILABLE, "too_many_connections"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            Self::Database(sqlx::Error::PoolTimedOut) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Database(_) | Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest { code, message: message.into() }
    }

    /// Seconds after which the same request may succeed, for `Retry-After`.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            // A stream ends with its sign-in, a few minutes at most; a page
            // that retries sooner only finds the same streams still open.
            Self::TooManyStreams => Some(STREAM_RETRY_SECS),
            Self::TooManyConnections => Some(1),
            _ => None,
        }
    }
}

/// The message of a name refused as a duplicate: the name itself is taken,
/// or `name` looks like the name `existing` (names.rs).
fn taken(name: &str, a_thing: &str, the_thing: &str, existing: &str, place: &str) -> String {
    if name == existing {
        format!("{a_thing} named \"{name}\" already exists{place}")
    } else {
        format!("the name \"{name}\" is too close to {the_thing} \"{existing}\"{place}")
    }
}

/// The details of a failure stay in the log, never in the response: the
/// response carries only the stable code and the variant's own message. The
/// log line itself is written by the trace middleware, which sees this
/// extension, so that `into_response` stays free of side effects.
#[derive(Debug, Clone)]
pub struct LoggedError(pub std::sync::Arc<String>);

/// The body of `not_ready`: the usual two fields, and the dependencies that
/// did not answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = NotReady)]
pub(crate) struct NotReadyBody {
    /// Always `not_ready`.
    error: String,
    message: String,
    /// `database` and/or `redis`, in that order.
    #[schema(value_type = Vec<String>)]
    down: Vec<&'static str>,
}

/// The stable code of an error response, for pages that show it.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            Self::Database(sqlx::Error::PoolTimedOut) => Error::Unavailable.to_string(),
            _ => self.to_string(),
        };
        let error = code.to_owned();
        let mut response = match &self {
            // The one error body with a third field: what is down, for
            // dashboards that want more than the sentence.
            Self::NotReady(down) => (status, Json(NotReadyBody { error, message, down: down.clone() })).into_response(),
            _ => (status, Json(ErrorBody { error, message })).into_response(),
        };
        response.extensions_mut().insert(ErrorCode(code));
        if let Some(secs) = self.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // `not_ready` is the answer a probe asked for, not a failure of the
        // request; `/readyz` logs the change of readiness itself, once.
        if status.is_server_error() && !matches!(self, Self::NotReady(_)) {
            let detail = match &self {
                Self::Database(e) => format!("database: {e}"),
                Self::Internal(e) => format!("internal: {e:#}"),
                other => other.to_string(),
            };
            response.extensions_mut().insert(LoggedError(std::sync::Arc::new(detail)));
        }
        response
    }
}

impl From<JsonRejection> for Error {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                Self::bad_request("unsupported_media_type", "send the body as application/json")
            }
            JsonRejection::JsonDataError(e) => Self::bad_request("invalid_json", json_shape_message(&e.body_text())),
            JsonRejection::JsonSyntaxError(_) => Self::bad_request("invalid_json", "the body is not valid JSON"),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            _ => Self::bad_request("invalid_body", "the body could not be read"),
        }
    }
}

/// What a body that is JSON, but not of the expected shape, is told: serde's
/// account of which member is wrong and why, without the framework's
/// framing nor the server's Rust type names (`expected struct
/// LoginRequest` becomes `expected a JSON object`).
fn json_shape_message(text: &str) -> String {
    // axum's text is "Failed to deserialize the JSON body into the target
    // type: <serde's message>".
    let mut rest = text.split_once(": ").map_or(text, |(_, detail)| detail);
    let mut said = String::new();
    while let Some(at) = rest.find("expected ") {
        let (before, after) = rest.split_at(at + "expected ".len());
        said.push_str(before);
        rest = after;
        let kinds = [
            ("tuple struct ", "an array"),
            ("unit struct ", "null"),
            ("newtype struct ", "a value"),
            ("struct ", "a JSON object"),
            ("enum ", "one of the documented values"),
        ];
        if let Some((tail, plain)) = kinds.iter().find_map(|(kind, plain)| Some((rest.strip_prefix(kind)?, plain))) {
            said.push_str(plain);
            rest = tail.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_');
        }
    }
    said.push_str(rest);
    format!("the body is not the expected JSON: {said}")
}

/// The page someone failed to open: the same status, code and message the
/// JSON API would give, as a page a person can read.
#[derive(Debug, Template)]
#[template(path = "error.html")]
struct ErrorView {
    title: &'static str,
    message: String,
    status: u16,
    code: String,
}

/// Renders `error` as a page. The JSON response is built first and only read
/// from, so its status and its log detail (`LoggedError`) carry over.
pub(crate) fn error_page(error: Error) -> Response {
    let message = error.to_string();
    let json = error.into_response();
    let status = json.status();
    let code = json.extensions().get::<ErrorCode>().map_or_else(String::new, |c| c.0.to_owned());
    let title = match code.as_str() {
        "unknown_service" => "No such service",
        "not_found" => "No such page",
        "rate_limited" => "Too many sign-in attempts",
        _ => "This page cannot be shown",
    };
    let view = ErrorView { title, message, status: status.as_u16(), code };
    let body = view.render().unwrap_or_else(|_| "This page cannot be shown.".to_owned());
    // Like every page: it is about this request, never to be cached.
    let mut response = (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response();
    if let Some(retry_after) = json.headers().get(header::RETRY_AFTER) {
        response.headers_mut().insert(header::RETRY_AFTER, retry_after.clone());
    }
    if let Some(logged) = json.extensions().get::<LoggedError>() {
        response.extensions_mut().insert(logged.clone());
    }
    response
}
