//! What stands between the window and every other web page the user opens.
//!
//! A loopback port is reachable from any page in the browser: a hostile site
//! can send it requests (CSRF), or point its own host name at 127.0.0.1 and
//! read the answers as same-origin (DNS rebinding). So, in this order:
//! 1. the `Host` must be the address the window bound, which defeats DNS
//!    rebinding (the rebound name is in `Host`);
//! 2. the per-run secret from the printed address is exchanged for an
//!    HttpOnly, SameSite=Strict cookie, as Jupyter does, and every other
//!    request must carry that cookie: no other site can, and no other
//!    user's process can guess it;
//! 3. a POST must come from the window's own `Origin`, so that even a
//!    same-site page on another loopback port cannot make it act.
//!
//! Every answer also forbids framing and carries a strict CSP.

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};

use super::{WindowState, MAX_IMAGE_BYTES};
use crate::Error;

/// Scripts, styles and requests only from the window itself; pictures also
/// from `blob:` (a pasted screenshot's preview) and the camera's stream.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
                   media-src 'self' blob: mediastream:; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn forbidden(code: &'static str, message: &'static str) -> Response {
    Error::Forbidden { code, message }.into_response()
}

/// The value of `name` in the request's cookies.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The `secret` query parameter, if any.
fn url_secret(request: &Request) -> Option<&str> {
    request.uri().query()?.split('&').find_map(|pair| pair.strip_prefix("secret="))
}

/// Host, then secret or cookie, then Origin (see the module docs).
pub(super) async fn check(State(state): State<WindowState>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok());
    if host != Some(state.host.as_str()) {
        return forbidden(
            "foreign_host",
            "this request names another host than the window's address; open the address sesame ui printed",
        );
    }
    if let Some(given) = url_secret(&request) {
        if request.method() != Method::GET || !same_secret(given, &state.secrets.url) {
            return forbidden("bad_secret", "this address is not the one sesame ui printed for this run");
        }
        // The secret leaves the address bar at once; from now on the cookie
        // speaks for this browser. No Max-Age: it ends with the browser
        // session, and it is useless after this run anyway.
        let cookie = format!("{}={}; Path=/; HttpOnly; SameSite=Strict", state.cookie_name, state.secrets.cookie);
        let mut response = Redirect::to("/").into_response();
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        return response;
    }
    let holds_cookie =
        cookie(request.headers(), &state.cookie_name).is_some_and(|value| same_secret(value, &state.secrets.cookie));
    if !holds_cookie {
        return forbidden(
            "no_session",
            "open the window with the full address sesame ui printed (it carries this run's secret)",
        );
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let origin = request.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
        if origin != Some(state.origin.as_str()) {
            return forbidden("foreign_origin", "this request comes from another web page than the window");
        }
    }
    next.run(request).await
}

/// Refuses a declared oversize body before it is read: the body limit alone
/// would first wait for it, so a client could hold a connection by promising
/// much and sending slowly.
pub(super) async fn refuse_oversize_body(request: Request, next: Next) -> Response {
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_IMAGE_BYTES as u64) {
        return Error::PayloadTooLarge.into_response();
    }
    next.run(request).await
}

/// Every answer: no framing, a strict CSP, no caching (answers name
/// accounts), and no referrer (the first address held the secret).
pub(super) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    headers.insert("permissions-policy", HeaderValue::from_static("camera=(self), microphone=()"));
    response
}

/// Gives the `{"error", "message"}` body to the errors axum makes on its own
/// (a body that is not JSON, a wrong method, a body over the limit).
pub(super) async fn shape_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => Error::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge,
        StatusCode::METHOD_NOT_ALLOWED => Error::InvalidInput("this address does not take that method".into()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::InvalidInput("send the body as application/json".into()),
        _ => Error::InvalidInput("the request is malformed".into()),
    };
    let mut shaped = error.into_response();
    if let Some(allow) = response.headers().get(header::ALLOW) {
        shaped.headers_mut().insert(header::ALLOW, allow.clone());
    }
    shaped
}
