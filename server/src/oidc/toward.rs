//! The pages of Sesame's own that stand on an authorization request's way
//! back to its application (the form_post answer, the consent page, the
//! page that says an account is not admitted): each posts a form whose
//! answer ends at the application, and none may be cached.

use askama::Template;
use axum::{
    http::{header, HeaderValue},
    response::{Html, IntoResponse as _, Response},
};

use super::grant::Request;
use crate::error::{Error, Result};

/// The CSP source that allows a form to end up at `redirect_uri`: its
/// origin, or its scheme for a native app's private-use scheme. Browsers
/// hold the redirects that answer a form to `form-action` too.
pub(super) fn form_target(redirect_uri: &str) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => url.origin().ascii_serialization(),
        Ok(url) => format!("{}:", url.scheme()),
        Err(_) => String::new(),
    }
}

/// `view` as a page that may not be cached and whose forms may end up at
/// `redirect_uri`.
pub(super) fn page(view: &impl Template, redirect_uri: &str) -> Result<Response> {
    let html = view.render().map_err(|e| Error::Internal(anyhow::anyhow!("template: {e}")))?;
    let mut response = Html(html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let csp = crate::http::middleware::csp_with_form_action(&form_target(redirect_uri));
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    Ok(response)
}

/// The authorization request `request`, as form fields, with `prompt=none`:
/// everything the endpoint checks before a live session answers it. A page
/// that posts them back to the endpoint has it answered afresh, exactly as
/// the request asked (its redirect URI, `state`, response mode).
pub(super) fn again(request: &Request) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("response_type", "code".to_owned()),
        ("client_id", request.client_id.clone()),
        ("redirect_uri", request.redirect_uri.clone()),
        ("scope", request.scope.clone()),
        ("prompt", "none".to_owned()),
    ];
    if request.form_post {
        fields.push(("response_mode", "form_post".to_owned()));
    }
    for (name, value) in [("state", &request.state), ("nonce", &request.nonce)] {
        if let Some(value) = value {
            fields.push((name, value.clone()));
        }
    }
    if let Some(challenge) = &request.code_challenge {
        fields.push(("code_challenge", challenge.clone()));
        fields.push(("code_challenge_method", "S256".to_owned()));
    }
    fields
}
