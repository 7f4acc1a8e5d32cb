//! Errors of the token and userinfo endpoints, in the shape OAuth clients
//! parse (RFC 6749 §5.2, RFC 6750 §3): `error` and `error_description`, with
//! Sesame's usual `message` beside them so that both kinds of reader find
//! what they look for.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;

use crate::error::{Error, ErrorCode};

/// A refusal an OAuth client understands.
#[derive(Debug)]
pub(super) struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: String,
    /// The `WWW-Authenticate` challenge to send, if any.
    challenge: Option<String>,
}

impl OAuthError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self { status, code, description: description.into(), challenge: None }
    }

    pub(super) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub(super) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub(super) fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    pub(super) fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", description)
    }

    /// Client authentication failed. RFC 6749 §5.2: 401, with a `Basic`
    /// challenge when the client tried HTTP Basic.
    pub(super) fn invalid_client(description: impl Into<String>, basic: bool) -> Self {
        let mut error = Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description);
        if basic {
            error.challenge = Some("Basic realm=\"sesame\"".to_owned());
        }
        error
    }

    /// A bearer token that is missing, unknown or expired (RFC 6750 §3.1).
    pub(super) fn invalid_token(description: impl Into<String>, presented: bool) -> Self {
        let description = description.into();
        let mut error = Self::new(StatusCode::UNAUTHORIZED, "invalid_token", description.clone());
        error.challenge = Some(if presented {
            format!("Bearer realm=\"sesame\", error=\"invalid_token\", error_description=\"{description}\"")
        } else {
            "Bearer realm=\"sesame\"".to_owned()
        });
        error
    }
}

/// An OAuth error (RFC 6749 §5.2, RFC 6750 §3), with Sesame's `message`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OAuthError)]
pub(super) struct OAuthErrorBody<'a> {
    /// The OAuth error code.
    error: &'static str,
    error_description: &'a str,
    /// The same text as `error_description`.
    message: &'a str,
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body =
            OAuthErrorBody { error: self.code, error_description: &self.description, message: &self.description };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// What the token and userinfo handlers return on failure: a refusal in
/// OAuth's shape, or a server-side failure in Sesame's usual one.
#[derive(Debug)]
pub(super) enum Failure {
    OAuth(OAuthError),
    Server(Error),
}

impl From<OAuthError> for Failure {
    fn from(e: OAuthError) -> Self {
        Self::OAuth(e)
    }
}

impl<E: Into<Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::Server(e.into())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Self::OAuth(e) => e.into_response(),
            Self::Server(e) => e.into_response(),
        }
    }
}
