//! The server's authenticator endpoints (docs/PROTOCOL.md §6), over reqwest
//! with rustls.
//!
//! Redirects are not followed: every request goes to the token's own origin,
//! and a redirect elsewhere would send a signed answer to a party the token
//! did not name. An answer is read piece by piece up to [`MAX_ANSWER`], so a
//! hostile origin cannot make the authenticator hold more than that.

use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use sesame_proto::{
    wire::{ChallengeContext, ContextRequest, ErrorBody, Outcome, ServerKeyInfo},
    DenyRequest, EnrollRequest, LoginRequest, Origin, RegisterRequest, RekeyRequest,
};

use crate::{
    error::one_line,
    tls::{self, ExtraRoots},
    ui::safe,
    Error,
};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer read. Sesame's answers are well under 4 KiB; the
/// rest of the room is for a proxy's error page.
pub(crate) const MAX_ANSWER: usize = 64 * 1024;

/// Why a submission failed, with what the register command needs to know:
/// whether the server may have acted on it.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server answered with an error: it did not act on the request.
    Refused { code: String, message: String },
    /// The request never left (no connection): nothing happened.
    NotSent(String),
    /// The origin's TLS certificate was refused, so nothing was sent.
    Certificate(&'static str),
    /// The request may have reached the server, but the connection failed
    /// before an answer came.
    Lost(String),
    /// The server reported a fault (5xx with a Sesame error body). It says
    /// nothing changed, but a submission is treated as unknown all the same.
    Fault { code: String, message: String },
    /// An answer came, but not a Sesame one (a 5xx from a proxy, or
    /// unreadable JSON): the server may or may not have acted.
    Garbled(String),
}

/// A client for one origin.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    client: reqwest::Client,
    origin: Origin,
}

/// The innermost cause of a transport error, which is the readable part
/// ("Connection refused"), on one line.
fn cause(error: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = error;
    while let Some(next) = source.source() {
        source = next;
    }
    if error.is_timeout() {
        return "timed out".into();
    }
    one_line(&source.to_string())
}

/// The body of `response`, refused once it passes [`MAX_ANSWER`]: up front
/// when the length is declared, else as soon as the chunks read add up to
/// more.
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, Failure> {
    let too_large = || Failure::Garbled(format!("the answer is larger than {} KiB", MAX_ANSWER / 1024));
    if response.content_length().is_some_and(|length| length > MAX_ANSWER as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| Failure::Lost(cause(&e)))? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl Remote {
    pub(crate) fn new(origin: &Origin, roots: &ExtraRoots) -> Result<Self, Error> {
        let client = roots
            .apply(reqwest::Client::builder())
            .user_agent(concat!("sesame/", env!("CARGO_PKG_VERSION")))
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Unreachable { origin: origin.to_string(), reason: cause(&e) })?;
        Ok(Self { client, origin: origin.clone() })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    async fn send<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: Option<&B>) -> Result<T, Failure> {
        let request = match body {
            Some(body) => self.client.post(self.url(path)).json(body),
            None => self.client.get(self.url(path)),
        };
        let response = request.send().await.map_err(|e| {
            if let Some(problem) = tls::certificate_problem(&e) {
                Failure::Certificate(problem)
            } else if e.is_connect() {
                Failure::NotSent(cause(&e))
            } else {
                Failure::Lost(cause(&e))
            }
        })?;
        let status = response.status();
        let bytes = read_capped(response).await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| Failure::Garbled(format!("unreadable answer (HTTP {status}): {e}")));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            // A Sesame error body from a 4xx: the server refused and did
            // nothing. A 5xx may come from a proxy that lost the answer.
            // The server chose these strings: they are cleaned here, where
            // they enter, and again when any error line is printed.
            Ok(body) if status.is_client_error() => {
                Err(Failure::Refused { code: safe(&body.error), message: safe(&body.message) })
            }
            Ok(body) => Err(Failure::Fault { code: safe(&body.error), message: safe(&body.message) }),
            Err(_) if status.is_client_error() => {
                Err(Failure::Refused { code: format!("http_{}", status.as_u16()), message: format!("HTTP {status}") })
            }
            Err(_) => Err(Failure::Garbled(format!("HTTP {status}"))),
        }
    }

    /// Turns a failure into the user's error, for requests that change
    /// nothing on the server (identity, context) or after the caller has
    /// dealt with the outcome.
    pub(crate) fn error(&self, failure: Failure) -> Error {
        match failure {
            Failure::Refused { code, message } | Failure::Fault { code, message } => Error::Rejected { code, message },
            Failure::NotSent(reason) | Failure::Lost(reason) => {
                Error::Unreachable { origin: self.origin.to_string(), reason }
            }
            Failure::Certificate(reason) => Error::BadCertificate { origin: self.origin.to_string(), reason },
            Failure::Garbled(reason) => Error::BadResponse { origin: self.origin.to_string(), reason },
        }
    }

    /// `GET /.well-known/sesame`: the server's identity key.
    pub(crate) async fn identity(&self) -> Result<ServerKeyInfo, Error> {
        self.send::<(), _>("/.well-known/sesame", None).await.map_err(|f| self.error(f))
    }

    /// `POST /api/authenticator/context`: who is asking.
    pub(crate) async fn context(&self, token: &str) -> Result<ChallengeContext, Error> {
        let body = ContextRequest { token: token.to_owned() };
        self.send("/api/authenticator/context", Some(&body)).await.map_err(|f| self.error(f))
    }

    pub(crate) async fn register(&self, request: &RegisterRequest) -> Result<Outcome, Failure> {
        self.send("/api/authenticator/register", Some(request)).await
    }

    pub(crate) async fn login(&self, request: &LoginRequest) -> Result<Outcome, Failure> {
        self.send("/api/authenticator/login", Some(request)).await
    }

    pub(crate) async fn deny(&self, request: &DenyRequest) -> Result<Outcome, Failure> {
        self.send("/api/authenticator/deny", Some(request)).await
    }

    pub(crate) async fn enroll(&self, request: &EnrollRequest) -> Result<Outcome, Failure> {
        self.send("/api/authenticator/enroll", Some(request)).await
    }

    pub(crate) async fn rekey(&self, request: &RekeyRequest) -> Result<Outcome, Failure> {
        self.send("/api/authenticator/rekey", Some(request)).await
    }
}
