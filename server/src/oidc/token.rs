//! The token endpoint (the `authorization_code` grant, RFC 6749 §4.1.3 with
//! PKCE, RFC 7636 §4.6) and the userinfo endpoint (OIDC Core §5.3).

use axum::{
    extract::{rejection::FormRejection, State},
    http::{header, HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
    Form, Json,
};
use base64::{
    engine::general_purpose::{STANDARD as B64_STD, URL_SAFE_NO_PAD as B64},
    Engine as _,
};
use serde::{Deserialize, Serialize};
use sesame_proto::wire::ErrorBody;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use utoipa::ToSchema;

use super::{
    client::{self, Client},
    error::{Failure, OAuthError, OAuthErrorBody},
    grant::{self, Redeemed},
    Provider, ACCESS_TOKEN_SECS, ID_TOKEN_SECS,
};
use crate::{http::extract::ClientInfo, http::responses::TooLarge, state::AppState};

// Every field is optional here so that a missing one gets OAuth's
// `invalid_request`, not a generic rejection; the schema says which ones a
// request needs.
/// The form a client posts to the token endpoint (RFC 6749 §4.1.3).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = TokenRequest)]
pub(super) struct TokenForm {
    /// `authorization_code`, the one grant offered.
    #[schema(required = true, value_type = String)]
    grant_type: Option<String>,
    /// The code from the authorization response.
    #[schema(required = true, value_type = String)]
    code: Option<String>,
    /// The `redirect_uri` of the authorization request, exactly.
    #[schema(required = true, value_type = String)]
    redirect_uri: Option<String>,
    /// A public client, or a confidential one that authenticates with the
    /// form (`client_secret_post`), names itself here.
    client_id: Option<String>,
    /// `client_secret_post`; never together with HTTP Basic.
    client_secret: Option<String>,
    /// PKCE (RFC 7636): 43 to 128 characters of `A-Z a-z 0-9 - . _ ~`.
    code_verifier: Option<String>,
}

/// A successful token response (RFC 6749 §5.1, OIDC Core §3.1.3.3).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TokenResponse)]
struct TokenAnswer {
    /// Opaque; good only at the userinfo endpoint.
    access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String)]
    token_type: &'static str,
    /// Seconds the access token lives.
    expires_in: i64,
    /// A JWT signed with the client's `id_token_signed_response_alg`.
    id_token: String,
    scope: String,
}

/// The claims of an ID token (OIDC Core §2).
#[derive(Debug, Serialize)]
struct IdClaims<'a> {
    iss: String,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    /// RFC 8176: proof of possession of a key held in software.
    amr: [&'static str; 1],
    preferred_username: &'a str,
}

/// The token endpoint.
///
/// The `authorization_code` grant, with PKCE (RFC 6749 §4.1.3, RFC 7636
/// §4.6). A confidential client authenticates with HTTP Basic or with the
/// form, never both; a public client only names itself.
#[utoipa::path(
    post,
    path = "/oidc/token",
    operation_id = "token",
    tag = "oidc",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("client_secret_basic" = [])),
    responses(
        (status = 200, description = "The tokens.", body = TokenAnswer, headers(
            ("Cache-Control" = String, description = "`no-store`."),
        )),
        (status = 400, description = "`invalid_request`, `invalid_grant` (an unknown, expired, used or another client's code; a wrong `redirect_uri`; a missing or wrong `code_verifier`), `unsupported_grant_type`.", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`, with `WWW-Authenticate: Basic` when the client used HTTP Basic.", body = OAuthErrorBody, headers(
            ("WWW-Authenticate" = String, description = "`Basic realm=\"sesame\"` when the client tried HTTP Basic."),
        )),
        (status = 429, description = "`rate_limited`: too many failed client authentications from this address.", body = ErrorBody, headers(
            ("Retry-After" = u64, description = "Seconds until the same request may pass."),
        )),
        TooLarge,
    ),
)]
pub(super) async fn token(
    State(state): State<AppState>,
    State(provider): State<Provider>,
    client_info: ClientInfo,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, Failure> {
    let Form(form) =
        form.map_err(|_| OAuthError::invalid_request("the body must be an application/x-www-form-urlencoded form"))?;
    let client = authenticate(&state, &client_info, &headers, &form).await?;
    match form.grant_type.as_deref() {
        Some("authorization_code") => {}
        Some(_) => {
            return Err(OAuthError::unsupported_grant_type("only the authorization_code grant is offered").into())
        }
        None => return Err(OAuthError::invalid_request("grant_type is missing").into()),
    }
    let code_text = form.code.as_deref().ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
    let now = state.clock.now().as_secs() as i64;
    let code = grant::find_code(&state.db, code_text)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the code is unknown, or its account is gone"))?;
    // Another client's code is refused without spending it: whoever holds
    // it cannot use it here, and its own client still can.
    if code.client_id != client.client_id {
        return Err(OAuthError::invalid_grant("the code was issued to another client").into());
    }
    if code.used {
        grant::revoke(&state.db, &code.hash).await?;
        return Err(
            OAuthError::invalid_grant("the code was already used; the tokens issued from it are revoked").into()
        );
    }
    if code.expires_at <= now {
        return Err(OAuthError::invalid_grant("the code has expired").into());
    }
    if form.redirect_uri.as_deref() != Some(code.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant("redirect_uri differs from the one in the authorization request").into());
    }
    check_pkce(code.code_challenge.as_deref(), form.code_verifier.as_deref())?;
    let access_token = match grant::redeem(&state.db, &code, now, ACCESS_TOKEN_SECS).await? {
        Redeemed::AccessToken(token) => token,
        Redeemed::Replayed => {
            return Err(
                OAuthError::invalid_grant("the code was already used; the tokens issued from it are revoked").into()
            )
        }
    };
    let claims = IdClaims {
        iss: state.settings.origin.to_string(),
        sub: &code.subject,
        aud: &client.client_id,
        exp: now + ID_TOKEN_SECS,
        iat: now,
        auth_time: code.signed_in.auth_time,
        nonce: code.nonce.as_deref(),
        amr: ["swk"],
        preferred_username: &code.signed_in.account,
    };
    let key = provider.keys.signing(&state.db, client.alg, now).await?;
    let answer = TokenAnswer {
        access_token,
        token_type: "Bearer",
        expires_in: ACCESS_TOKEN_SECS,
        id_token: key.sign(&claims)?,
        scope: code.scope.clone(),
    };
    tracing::info!(client = %client.client_id, "oidc tokens issued");
    Ok(no_store(Json(answer).into_response()))
}

/// RFC 6749 §2.3.1 and OIDC Core §9: HTTP Basic or the form, never both; a
/// public client names itself and proves nothing here (PKCE does that).
async fn authenticate(
    state: &AppState,
    client_info: &ClientInfo,
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<Client, Failure> {
    let basic = basic_credentials(headers)?;
    let used_basic = basic.is_some();
    let (client_id, secret) = match (basic, &form.client_id, &form.client_secret) {
        (Some(_), _, Some(_)) => {
            return Err(OAuthError::invalid_request("use one client authentication method, not two").into())
        }
        (Some((id, secret)), form_id, None) => {
            if form_id.as_ref().is_some_and(|form_id| *form_id != id) {
                return Err(
                    OAuthError::invalid_request("client_id differs from the one in the Authorization header").into()
                );
            }
            (id, Some(secret))
        }
        (None, Some(id), secret) => (id.clone(), secret.clone()),
        (None, None, _) => return Err(OAuthError::invalid_client("the client did not say who it is", false).into()),
    };
    let refuse = |why: &'static str| async move {
        // Failures count against the address, as wrong admin tokens do,
        // so that guessing secrets is slow.
        match state.limits.submissions.check(client_info.ip).await {
            Ok(()) => Failure::from(OAuthError::invalid_client(why, used_basic)),
            Err(limited) => Failure::from(limited),
        }
    };
    let Some(client) = client::by_client_id(&state.db, &client_id).await? else {
        return Err(refuse("unknown client").await);
    };
    match (client.is_public(), secret) {
        (true, None) => Ok(client),
        (true, Some(_)) => Err(refuse("a public client has no secret").await),
        (false, None) => Err(refuse("this client must authenticate with its secret").await),
        (false, Some(secret)) if client.secret_matches(&secret) => Ok(client),
        (false, Some(_)) => Err(refuse("wrong client secret").await),
    }
}

/// `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))`.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, Failure> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let malformed = || Failure::from(OAuthError::invalid_client("the Authorization header is malformed", true));
    let text = value.to_str().map_err(|_| malformed())?;
    let Some(encoded) = text.strip_prefix("Basic ") else {
        return Err(malformed());
    };
    let decoded = B64_STD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let unescape = |part: &str| {
        url::form_urlencoded::parse(format!("x={part}").as_bytes()).next().map(|(_, value)| value.into_owned())
    };
    Ok(Some((unescape(id).ok_or_else(malformed)?, unescape(secret).ok_or_else(malformed)?)))
}

/// RFC 7636 §4.6: `BASE64URL(SHA256(verifier)) == challenge`. A code issued
/// without a challenge refuses a verifier too, so that an attacker cannot
/// strip PKCE from a request and still look like PKCE to the client.
fn check_pkce(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), Failure> {
    match (challenge, verifier) {
        (None, None) => Ok(()),
        (None, Some(_)) => {
            Err(OAuthError::invalid_grant("code_verifier sent for a request without code_challenge").into())
        }
        (Some(_), None) => Err(OAuthError::invalid_grant("code_verifier is missing").into()),
        (Some(challenge), Some(verifier)) => {
            if !is_pkce_value(verifier) {
                return Err(OAuthError::invalid_grant(
                    "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
                )
                .into());
            }
            let computed = B64.encode(Sha256::digest(verifier.as_bytes()));
            if !bool::from(computed.as_bytes().ct_eq(challenge.as_bytes())) {
                return Err(OAuthError::invalid_grant("code_verifier does not match code_challenge").into());
            }
            Ok(())
        }
    }
}

/// RFC 7636 §4.1: 43 to 128 unreserved characters.
pub(super) fn is_pkce_value(text: &str) -> bool {
    (43..=128).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The claims about the signed-in account (OIDC Core §5.3).
#[derive(Debug, Serialize, ToSchema)]
struct UserInfo {
    /// Opaque, stable and never reused.
    sub: String,
    /// The account name.
    preferred_username: String,
}

/// The signed-in account's claims.
///
/// OIDC Core §5.3, with the access token in the `Authorization` header only
/// (RFC 6750 §2.1): tokens in URLs end up in logs.
#[utoipa::path(
    method(get, post),
    path = "/oidc/userinfo",
    operation_id = "userinfo",
    tag = "oidc",
    security(("access_token" = [])),
    responses(
        (status = 200, description = "The account's claims.", body = UserInfo),
        (status = 401, description = "`invalid_token` (RFC 6750 §3.1): missing, unknown, expired or revoked.", body = OAuthErrorBody, headers(
            ("WWW-Authenticate" = String, description = "A `Bearer` challenge."),
        )),
    ),
)]
pub(super) async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Failure> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let Some(token) = presented else {
        return Err(OAuthError::invalid_token("send the access token as Authorization: Bearer", false).into());
    };
    let now = state.clock.now().as_secs() as i64;
    let owner = grant::token_owner(&state.db, token, now)
        .await?
        .ok_or_else(|| OAuthError::invalid_token("the access token is unknown, expired or revoked", true))?;
    let info = UserInfo { sub: owner.subject, preferred_username: owner.account };
    Ok(no_store(Json(info).into_response()))
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
