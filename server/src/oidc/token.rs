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
    grant::{self, Redeemed, SignedIn},
    refresh::{self, Rotated},
    Provider, ACCESS_TOKEN_SECS, ID_TOKEN_SECS,
};
use crate::{http::extract::ClientInfo, http::responses::TooLarge, signin::profile::Profile, state::AppState};

// Every field is optional here so that a missing one gets OAuth's
// `invalid_request`, not a generic rejection; the schema says which ones a
// request needs.
/// The form a client posts to the token endpoint (RFC 6749 §4.1.3).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = TokenRequest)]
pub(super) struct TokenForm {
    /// `authorization_code` or `refresh_token`.
    #[schema(required = true, value_type = String)]
    grant_type: Option<String>,
    /// For `grant_type=authorization_code`: the code from the authorization
    /// response.
    code: Option<String>,
    /// For `grant_type=authorization_code`: the `redirect_uri` of the
    /// authorization request, exactly.
    redirect_uri: Option<String>,
    /// A public client, or a confidential one that authenticates with the
    /// form (`client_secret_post`), names itself here.
    client_id: Option<String>,
    /// `client_secret_post`; never together with HTTP Basic.
    client_secret: Option<String>,
    /// PKCE (RFC 7636): 43 to 128 characters of `A-Z a-z 0-9 - . _ ~`.
    code_verifier: Option<String>,
    /// For `grant_type=refresh_token`: the refresh token to spend.
    refresh_token: Option<String>,
    /// For `grant_type=refresh_token`: fewer scopes than the sign-in
    /// granted, if wanted.
    scope: Option<String>,
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
    /// With `offline_access`, or for an application configured to get one:
    /// good for one use at this endpoint (`grant_type=refresh_token`),
    /// which gives the next.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
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
    /// RFC 8176, from the session: `swk` for a Sesame key; for a passkey
    /// `hwk` or `swk`, with `user` when the user was verified.
    amr: Vec<&'a str>,
    preferred_username: &'a str,
    /// The display name, with the `profile` scope, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    /// With the `email` scope, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    /// With the `groups` scope: the account's group names, sorted.
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<&'a [String]>,
}

/// The claims of a profile that a granted scope releases (OIDC Core §5.4):
/// `profile` the display name as `name`, `email` the address and whether it
/// is verified, each only when set; `groups` the account's groups, an empty
/// list for none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Released<'a> {
    name: Option<&'a str>,
    email: Option<&'a str>,
    email_verified: Option<bool>,
    groups: Option<&'a [String]>,
}

impl<'a> Released<'a> {
    fn of(scope: &str, profile: &'a Profile, groups: &'a [String]) -> Self {
        let granted = |wanted: &str| scope.split(' ').any(|s| s == wanted);
        let email = profile.email.as_deref().filter(|_| granted("email"));
        Self {
            name: profile.display_name.as_deref().filter(|_| granted("profile")),
            email,
            email_verified: email.map(|_| profile.email_verified),
            groups: granted(super::groups::SCOPE).then_some(groups),
        }
    }
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
    let client = authenticate(&state, &client_info, &headers, &form.client_id, &form.client_secret).await?;
    let now = state.clock.now().as_secs() as i64;
    let granted = match form.grant_type.as_deref() {
        Some("authorization_code") => by_code(&state, &client, &form, now).await?,
        Some("refresh_token") => by_refresh(&state, &client, &form, now).await?,
        Some(_) => {
            return Err(OAuthError::unsupported_grant_type(
                "the grants offered are authorization_code and refresh_token",
            )
            .into())
        }
        None => return Err(OAuthError::invalid_request("grant_type is missing").into()),
    };
    let released = Released::of(&granted.scope, &granted.profile, &granted.groups);
    let claims = IdClaims {
        iss: state.settings.origin.to_string(),
        sub: &granted.subject,
        aud: &client.client_id,
        exp: now + ID_TOKEN_SECS,
        iat: now,
        auth_time: granted.signed_in.auth_time,
        nonce: granted.nonce.as_deref(),
        amr: granted.signed_in.amr.split(' ').collect(),
        preferred_username: &granted.signed_in.account,
        name: released.name,
        email: released.email,
        email_verified: released.email_verified,
        groups: released.groups,
    };
    let key = provider.keys.signing(&state.db, client.alg, now).await?;
    let answer = TokenAnswer {
        access_token: granted.access,
        token_type: "Bearer",
        expires_in: ACCESS_TOKEN_SECS,
        refresh_token: granted.refresh,
        id_token: key.sign(&claims)?,
        scope: granted.scope,
    };
    tracing::info!(client = %client.client_id, "oidc tokens issued");
    Ok(no_store(Json(answer).into_response()))
}

/// What a grant gave, and about whom.
#[derive(Debug)]
struct Granted {
    access: String,
    refresh: Option<String>,
    scope: String,
    signed_in: SignedIn,
    /// The account's OIDC subject.
    subject: String,
    /// The authorization request's, for the ID token of the code's answer
    /// only (OIDC Core §12.2).
    nonce: Option<String>,
    /// The account's profile, read with its subject.
    profile: Profile,
    /// The account's groups, when the scope releases them.
    groups: Vec<String>,
}

/// The `authorization_code` grant (RFC 6749 §4.1.3, PKCE RFC 7636 §4.6).
async fn by_code(state: &AppState, client: &Client, form: &TokenForm, now: i64) -> Result<Granted, Failure> {
    let code_text = form.code.as_deref().ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
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
    let with_refresh = client.refresh_tokens || code.scope.split(' ').any(|s| s == "offline_access");
    let (access, refresh) = match grant::redeem(&state.db, &code, now, ACCESS_TOKEN_SECS, with_refresh).await? {
        Redeemed::Tokens { access, refresh } => (access, refresh),
        Redeemed::Replayed => {
            return Err(
                OAuthError::invalid_grant("the code was already used; the tokens issued from it are revoked").into()
            )
        }
    };
    Ok(Granted {
        access,
        refresh,
        scope: code.scope,
        signed_in: code.signed_in,
        subject: code.subject,
        nonce: code.nonce,
        profile: code.profile,
        groups: code.groups,
    })
}

/// The `refresh_token` grant (RFC 6749 §6): the token is spent and the next
/// one of its chain given with a new access token (see `refresh`). A scope,
/// when asked for, may only narrow the one the sign-in granted.
async fn by_refresh(state: &AppState, client: &Client, form: &TokenForm, now: i64) -> Result<Granted, Failure> {
    let text = form.refresh_token.as_deref().ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
    let refresh = refresh::find(&state.db, text)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the refresh token is unknown or revoked"))?;
    // Another client's token is refused without spending it, as a code is.
    if refresh.client_id != client.client_id {
        return Err(OAuthError::invalid_grant("the refresh token was issued to another client").into());
    }
    if !refresh.used && refresh.expires_at <= now {
        return Err(OAuthError::invalid_grant("the refresh token has expired; sign in again").into());
    }
    // The application admits only some groups, and the account has left
    // them. The token is not spent: it works again if the account rejoins.
    if !refresh.used && !refresh.admitted {
        return Err(OAuthError::invalid_grant(
            "the account is no longer a member of any group this application admits",
        )
        .into());
    }
    let granted: Vec<&str> = refresh.scope.split(' ').collect();
    let scope = match form.scope.as_deref().map(|s| s.split(' ').filter(|s| !s.is_empty()).collect::<Vec<_>>()) {
        None => refresh.scope.clone(),
        Some(asked) if asked.iter().all(|s| granted.contains(s)) && asked.contains(&"openid") => {
            super::SCOPES.iter().filter(|s| asked.contains(s)).copied().collect::<Vec<_>>().join(" ")
        }
        Some(_) => {
            return Err(OAuthError::invalid_scope(
                "a refreshed scope may only leave out scopes the sign-in granted, and keeps openid",
            )
            .into())
        }
    };
    match refresh::rotate(&state.db, &refresh, &scope, now, ACCESS_TOKEN_SECS).await? {
        Rotated::Tokens { refresh: next, access } => Ok(Granted {
            access,
            refresh: Some(next),
            scope,
            signed_in: refresh.signed_in,
            subject: refresh.subject,
            nonce: None,
            profile: refresh.profile,
            groups: refresh.groups,
        }),
        Rotated::Refused if refresh.used => Err(OAuthError::invalid_grant(
            "the refresh token was already used; every token of its sign-in is revoked, and the person must sign in again",
        )
        .into()),
        Rotated::Refused => Err(OAuthError::invalid_grant("the refresh token was used or has expired").into()),
    }
}

/// RFC 6749 §2.3.1 and OIDC Core §9: HTTP Basic or the form, never both; a
/// public client names itself and proves nothing here (PKCE does that).
/// Used by the token and the revocation endpoint alike.
pub(super) async fn authenticate(
    state: &AppState,
    client_info: &ClientInfo,
    headers: &HeaderMap,
    form_client_id: &Option<String>,
    form_client_secret: &Option<String>,
) -> Result<Client, Failure> {
    let basic = basic_credentials(headers)?;
    let used_basic = basic.is_some();
    let (client_id, secret) = match (basic, form_client_id, form_client_secret) {
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
    /// The display name, with the `profile` scope, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// The email address, with the `email` scope, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    /// With `email`: `true` when an admin set the address, `false` when the
    /// person did.
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    /// With the `groups` scope: the account's group names, sorted (an
    /// empty list for none).
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<String>>,
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
    let released = Released::of(&owner.scope, &owner.profile, &owner.groups);
    let info = UserInfo {
        name: released.name.map(str::to_owned),
        email: released.email.map(str::to_owned),
        email_verified: released.email_verified,
        groups: released.groups.map(<[String]>::to_vec),
        sub: owner.subject,
        preferred_username: owner.account,
    };
    Ok(no_store(Json(info).into_response()))
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
