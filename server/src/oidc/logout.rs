//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): an
//! application sends the browser here to end its Sesame session, and may
//! have it sent back.
//!
//! Ending a session on anyone's say-so would let any site sign people out,
//! so the logout happens at once only when the request carries an ID token
//! this provider signed for the person signed in (`id_token_hint`), or when
//! the person confirms on a page of this origin. As at the authorization
//! endpoint, a redirect goes only to a URI registered for the client.

use askama::Template;
use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
};
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;

use super::{client, grant, keys::Alg};
use crate::challenge::Challenges;
use crate::{
    challenge::session,
    error::{error_page, Error, Result},
    http::cookie::{self},
    state::AppState,
};

/// The page that asks, and the page that says it is done.
#[derive(Debug, Template)]
#[template(path = "logout.html")]
struct LogoutView {
    service_name: String,
    /// Asking for confirmation (a form), or saying it is done.
    confirm: bool,
    client_id: String,
    post_logout_redirect_uri: String,
    state: String,
}

#[derive(Debug, Default)]
struct Params {
    id_token_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    confirm: bool,
}

impl Params {
    fn parse(text: &[u8]) -> Self {
        let mut params = Self::default();
        for (name, value) in url::form_urlencoded::parse(text) {
            let value = Some(value.into_owned()).filter(|v| !v.is_empty());
            match name.as_ref() {
                "id_token_hint" => params.id_token_hint = value,
                "client_id" => params.client_id = value,
                "post_logout_redirect_uri" => params.post_logout_redirect_uri = value,
                "state" => params.state = value,
                "confirm" => params.confirm = value.is_some(),
                _ => {}
            }
        }
        params
    }
}

pub(super) async fn get(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    logout(&state, &challenges, &headers, params, false).await.unwrap_or_else(error_page)
}

pub(super) async fn post(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = Params::parse(&body);
    logout(&state, &challenges, &headers, params, true).await.unwrap_or_else(error_page)
}

fn invalid(message: &str) -> Error {
    Error::bad_request("invalid_request", message)
}

async fn logout(
    state: &AppState,
    challenges: &Challenges,
    headers: &HeaderMap,
    params: Params,
    posted: bool,
) -> Result<Response> {
    let hint = match &params.id_token_hint {
        Some(token) => Some(verify_hint(state, token).await?),
        None => None,
    };
    let client_id = match (&hint, &params.client_id) {
        (Some(hint), Some(id)) if hint.aud != *id => {
            return Err(invalid("client_id is not the audience of id_token_hint"));
        }
        (Some(hint), _) => hint.aud.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => {
            return Err(invalid("a logout request must name the application: send id_token_hint or client_id"))
        }
    };
    let client = client::by_client_id(&state.db, &client_id).await?.ok_or(Error::OidcUnknownClient)?;
    if let Some(uri) = &params.post_logout_redirect_uri {
        if !client.allows_post_logout_redirect(uri) {
            return Err(Error::OidcRedirectUri);
        }
    }
    let service_id = client.service_id.parse().map_err(|_| Error::UnknownService)?;
    let session_hash = session::cookie_digest(&state.settings.origin, headers, &service_id);
    let now = state.clock.now().as_secs() as i64;
    let signed_in = match &session_hash {
        Some(digest) => session::lookup(&state.db, &client.service_id, digest, now).await?,
        None => None,
    };
    let subject = match &signed_in {
        Some(who) => grant::subject(&state.db, &who.service_id, &who.account).await?,
        None => None,
    };
    // The hint speaks for the person signed in, or nobody is signed in.
    let hint_matches = hint.as_ref().is_some_and(|h| subject.is_none() || subject.as_deref() == Some(h.sub.as_str()));
    let confirmed = posted && params.confirm && cookie::check_origin(&state.settings.origin, headers).is_ok();
    let service_name = challenges.service_name(&service_id).await?;
    if !(hint_matches || confirmed || signed_in.is_none()) {
        let view = LogoutView {
            service_name,
            confirm: true,
            client_id: client.client_id,
            post_logout_redirect_uri: params.post_logout_redirect_uri.unwrap_or_default(),
            state: params.state.unwrap_or_default(),
        };
        return page(&view);
    }
    if let Some(digest) = &session_hash {
        session::delete(&state.db, digest).await?;
    }
    let clear = session::clear_cookie(&state.settings.origin, &service_id);
    let mut response = match &params.post_logout_redirect_uri {
        Some(uri) => {
            let mut url = url::Url::parse(uri).map_err(|_| Error::OidcRedirectUri)?;
            if let Some(state) = &params.state {
                url.query_pairs_mut().append_pair("state", state);
            }
            let location = HeaderValue::from_str(url.as_str()).map_err(|_| Error::OidcRedirectUri)?;
            (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
        }
        None => page(&LogoutView {
            service_name,
            confirm: false,
            client_id: String::new(),
            post_logout_redirect_uri: String::new(),
            state: String::new(),
        })?,
    };
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, clear);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn page(view: &LogoutView) -> Result<Response> {
    let html = view.render().map_err(|e| Error::Internal(anyhow::anyhow!("template: {e}")))?;
    let mut response = Html(html).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The confirmation form is answered with a redirect to the application,
    // and browsers hold form redirects to `form-action` too.
    if !view.post_logout_redirect_uri.is_empty() {
        let target = super::toward::form_target(&view.post_logout_redirect_uri);
        if let Ok(csp) = HeaderValue::from_str(&crate::http::middleware::csp_with_form_action(&target)) {
            response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
        }
    }
    Ok(response)
}

/// What a verified `id_token_hint` says.
#[derive(Debug, Deserialize)]
struct Hint {
    sub: String,
    aud: String,
}

/// Checks that `token` is an ID token this provider signed (with any
/// published key), for this issuer. An expired one is fine: logout comes
/// after expiry often enough (RP-Initiated Logout §2).
async fn verify_hint(state: &AppState, token: &str) -> Result<Hint> {
    let bad = || invalid("id_token_hint is not an ID token from this provider");
    let header = jsonwebtoken::decode_header(token).map_err(|_| bad())?;
    let kid = header.kid.ok_or_else(bad)?;
    let alg = match header.alg {
        jsonwebtoken::Algorithm::RS256 => Alg::Rs256,
        jsonwebtoken::Algorithm::EdDSA => Alg::EdDsa,
        _ => return Err(bad()),
    };
    let set = super::keys::published(&state.db, state.clock.now().as_secs() as i64).await?;
    let jwk = set.find(&kid).ok_or_else(bad)?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| bad())?;
    let mut validation = Validation::new(match alg {
        Alg::Rs256 => jsonwebtoken::Algorithm::RS256,
        Alg::EdDsa => jsonwebtoken::Algorithm::EdDSA,
    });
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    validation.set_issuer(&[state.settings.origin.as_str()]);
    let data = jsonwebtoken::decode::<Hint>(token, &key, &validation).map_err(|_| bad())?;
    Ok(data.claims)
}
