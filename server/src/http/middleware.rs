//! Layers around the whole router: a declared oversize body is refused before
//! it is read, and every error the router or an extractor makes on its own
//! (an unknown route, a wrong method, a rejected path) is given the body its
//! caller expects: JSON under the APIs, an HTML page elsewhere.

use axum::{
    extract::Request,
    http::{header, HeaderValue, StatusCode, Version},
    middleware::Next,
    response::{IntoResponse as _, Response},
};

use crate::error::{error_page, Error, ErrorCode};

/// Largest request body accepted anywhere. Every body Sesame takes is a few
/// hundred bytes of JSON or a short form.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Refuses a request whose `Content-Length` is above the body limit at once.
/// The body limit alone would first wait for the body, so a client could
/// hold a connection by promising a large body and sending it slowly.
pub async fn refuse_oversize_body(request: Request, next: Next) -> Response {
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return if expects_json(request.uri().path()) {
            Error::PayloadTooLarge.into_response()
        } else {
            error_page(Error::PayloadTooLarge)
        };
    }
    next.run(request).await
}

/// Marks every error answer to a request that carried a body with
/// `Connection: close` (HTTP/1.x only; HTTP/2 has no such header).
///
/// A refusal that comes before the body is read (an Origin check, a missing
/// session or token, a declared oversize body) leaves the rest of the body
/// on the connection, and the server then closes the connection after the
/// answer; RFC 9112 §9.6 asks that the answer say so. Whether a handler read
/// the body is not known here, so every error answer to a request with a
/// body says it: a client that sent a refused body opens a new connection
/// for its next request, which costs nothing that matters.
pub async fn close_after_refused_body(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let carries_body = declared.is_some_and(|length| length > 0) || headers.contains_key(header::TRANSFER_ENCODING);
    let http1 = request.version() <= Version::HTTP_11;
    let mut response = next.run(request).await;
    let refused = response.status().is_client_error() || response.status().is_server_error();
    if carries_body && http1 && refused {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Paths whose callers are programs that read JSON. `/metrics` is among
/// them: a scraper pointed at the public port gets a JSON 404, since metrics
/// are served only on `--metrics-listen`.
fn expects_json(path: &str) -> bool {
    path == "/metrics"
        || ["/api/", "/admin/api/", "/.well-known/", "/oidc/token", "/oidc/userinfo", "/oidc/jwks"]
            .iter()
            .any(|prefix| path.starts_with(prefix))
}

/// Gives a body to the error responses that our handlers did not make:
/// axum answers an unknown route, a wrong method or a rejected extractor with
/// an empty or plain-text body.
pub async fn shape_errors(request: Request, next: Next) -> Response {
    let json = expects_json(request.uri().path());
    let response = next.run(request).await;
    let status = response.status();
    let ours = response.extensions().get::<ErrorCode>().is_some()
        || response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html") || v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || ours {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => Error::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => Error::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            Error::bad_request("unsupported_media_type", "send the body as application/json")
        }
        s if s.is_client_error() => Error::bad_request("invalid_request", "the request is malformed"),
        _ => Error::Internal(anyhow::anyhow!("unlabelled {status} from the router")),
    };
    let mut shaped = if json { error.into_response() } else { error_page(error) };
    // `Allow` tells the caller which methods the route takes.
    if let Some(allow) = response.headers().get(header::ALLOW) {
        shaped.headers_mut().insert(header::ALLOW, allow.clone());
    }
    shaped
}

/// Pages may load scripts, styles and images only from this server, may not
/// be framed, and forms may post only here.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// [`CSP`] with forms also allowed to end up at `target` (a CSP source).
pub(crate) fn csp_with_form_action(target: &str) -> String {
    CSP.replace("form-action 'self'", &format!("form-action 'self' {target}"))
}
