//! Token revocation (RFC 7009): a client tells Sesame that it no longer
//! needs a token, for example when someone signs out of it.
//!
//! A refresh token is revoked with its whole chain and every access token
//! issued from it (RFC 7009 §2.1 asks for the access tokens of the grant);
//! an access token alone. A token that is unknown, expired or already
//! revoked is answered like a revoked one (§2.2): the client's goal is met
//! either way, and the answer tells nobody which tokens exist. A token of
//! another client is refused, after that client authenticated.

use axum::{
    extract::{rejection::FormRejection, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse as _, Response},
    Form,
};
use serde::Deserialize;
use sesame_proto::wire::ErrorBody;
use utoipa::ToSchema;

use super::{
    error::{Failure, OAuthError, OAuthErrorBody},
    grant, refresh,
    token::authenticate,
};
use crate::{http::extract::ClientInfo, http::responses::TooLarge, state::AppState};

/// The form a client posts to the revocation endpoint (RFC 7009 §2.1).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = RevocationRequest)]
pub(super) struct RevokeForm {
    /// The access or refresh token to revoke.
    #[schema(required = true, value_type = String)]
    token: Option<String>,
    /// `access_token` or `refresh_token`; only a hint, since Sesame tells
    /// them apart itself. An unknown hint is ignored.
    token_type_hint: Option<String>,
    /// A public client, or a confidential one that authenticates with the
    /// form, names itself here.
    client_id: Option<String>,
    /// `client_secret_post`; never together with HTTP Basic.
    client_secret: Option<String>,
}

/// The revocation endpoint.
///
/// RFC 7009. The client authenticates as at the token endpoint.
#[utoipa::path(
    post,
    path = "/oidc/revoke",
    operation_id = "revoke",
    tag = "oidc",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("client_secret_basic" = [])),
    responses(
        (status = 200, description = "The token is revoked, or was never valid: either way it no longer works.", headers(
            ("Cache-Control" = String, description = "`no-store`."),
        )),
        (status = 400, description = "`invalid_request` (no `token`), `invalid_grant` (a token issued to another client).", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`, with `WWW-Authenticate: Basic` when the client used HTTP Basic.", body = OAuthErrorBody, headers(
            ("WWW-Authenticate" = String, description = "`Basic realm=\"sesame\"` when the client tried HTTP Basic."),
        )),
        (status = 429, description = "`rate_limited`: too many failed client authentications from this address.", body = ErrorBody, headers(
            ("Retry-After" = u64, description = "Seconds until the same request may pass."),
        )),
        TooLarge,
    ),
)]
pub(super) async fn revoke(
    State(state): State<AppState>,
    client_info: ClientInfo,
    headers: HeaderMap,
    form: Result<Form<RevokeForm>, FormRejection>,
) -> Result<Response, Failure> {
    let Form(form) =
        form.map_err(|_| OAuthError::invalid_request("the body must be an application/x-www-form-urlencoded form"))?;
    let client = authenticate(&state, &client_info, &headers, &form.client_id, &form.client_secret).await?;
    let token = form.token.as_deref().filter(|t| !t.is_empty());
    let token = token.ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
    let _ = form.token_type_hint;
    let another = || Failure::from(OAuthError::invalid_grant("the token was issued to another client"));
    if let Some(found) = refresh::find(&state.db, token).await? {
        if found.client_id != client.client_id {
            return Err(another());
        }
        refresh::revoke_chain(&state.db, &found.code_hash).await?;
    } else if let Some(owner) = grant::access_token_client(&state.db, token).await? {
        if owner != client.client_id {
            return Err(another());
        }
        grant::revoke_access_token(&state.db, token).await?;
    }
    tracing::info!(client = %client.client_id, "a token is revoked at the client's request");
    let mut response = StatusCode::OK.into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
