//! An OpenID Connect provider (Core 1.0, Discovery 1.0, RFC 6749, RFC 7636,
//! RFC 9207), so that any application that speaks OIDC can offer "Log in
//! with Sesame".
//!
//! The issuer is the server's public origin. Each service may be a client
//! ([`client`]). The authorization endpoint shows the service's own login
//! page, with the request parked beside the page's challenge ([`grant`]);
//! when the page's sign-in ends, the browser goes back to the client with a
//! code or an error. ID tokens are JWTs signed by keys kept in the database
//! ([`keys`]); access tokens are opaque and good only at the userinfo
//! endpoint.

mod admission;
mod authorize;
pub mod client;
mod consent;
mod error;
pub mod grant;
pub mod groups;
pub mod keys;
mod logout;
pub mod parked;
pub mod refresh;
pub(crate) mod revoke;
pub(crate) mod token;
mod tokens;
mod toward;

use std::sync::Arc;

use axum::{
    extract::{FromRef, State},
    http::{header, HeaderValue, Method},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Serialize;
use tower_http::cors::{Any, CorsLayer};
use utoipa::ToSchema;

use crate::{challenge::SignInState, error::Result, state::AppState};
pub use keys::{Alg, KeyCache};

/// How long a code lives unless configured shorter: the most the design
/// allows.
pub const CODE_TTL_SECS: u64 = 60;
/// How long an access token is good at the userinfo endpoint.
pub const ACCESS_TOKEN_SECS: i64 = 60 * 60;
/// How long an ID token is valid.
pub const ID_TOKEN_SECS: i64 = 60 * 60;

/// The provider's own state, shared by every request: the routes take it
/// as `State<Provider>`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Provider {
    pub keys: Arc<KeyCache>,
    /// Seconds a code lives, at most [`CODE_TTL_SECS`].
    pub code_ttl_secs: u64,
    /// Authorization requests waiting on their login page, when pending
    /// challenges are held in memory ([`parked`]).
    pub parked: Arc<parked::Parked>,
}

/// A router state that also hands out the provider: what its routes, and
/// the admin's, run on.
pub trait OidcState: SignInState {
    fn provider(&self) -> &Provider;
}

impl<S: OidcState> FromRef<S> for Provider {
    fn from_ref(state: &S) -> Self {
        state.provider().clone()
    }
}

impl Default for Provider {
    fn default() -> Self {
        Self { keys: Arc::default(), code_ttl_secs: CODE_TTL_SECS, parked: Arc::default() }
    }
}

impl Provider {
    pub fn with_code_ttl(code_ttl_secs: u64) -> Self {
        Self { code_ttl_secs: code_ttl_secs.clamp(1, CODE_TTL_SECS), ..Self::default() }
    }
}

pub fn router<S: OidcState>() -> Router<S> {
    // Discovery, the key set, the token, revocation and userinfo endpoints are
    // called from single-page applications on other origins. They carry no
    // cookies and trust only what the request itself proves (a client
    // secret, a PKCE verifier, a bearer token), so any origin may call them.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]);
    let api = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oidc/jwks", get(jwks))
        .route("/oidc/token", post(token::token))
        .route("/oidc/revoke", post(revoke::revoke))
        .route("/oidc/userinfo", get(token::userinfo).post(token::userinfo))
        .layer(cors);
    Router::new()
        .merge(api)
        .route("/oidc/authorize", get(authorize::get).post(authorize::post))
        .route("/oidc/finish/{cid}", post(authorize::finish))
        .route("/oidc/consent", post(authorize::decide))
        .route("/services/{id}/account/applications", get(consent::approvals_page))
        .route("/services/{id}/account/applications/withdraw", post(consent::withdraw_form))
        .route("/static/form_post.js", get(authorize::form_post_js))
        .route("/oidc/logout", get(logout::get).post(logout::post))
}

/// The scopes Sesame knows, in the order a granted scope lists them: each
/// releases claims (OIDC.md), and `offline_access` asks for a refresh token.
pub(crate) const SCOPES: [&str; 5] = ["openid", "profile", "email", "groups", "offline_access"];

/// The discovery document (OpenID Connect Discovery 1.0 §3).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OpenIdConfiguration)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: String,
    jwks_uri: String,
    end_session_endpoint: String,
    revocation_endpoint: String,
    scopes_supported: [&'static str; SCOPES.len()],
    response_types_supported: [&'static str; 1],
    response_modes_supported: [&'static str; 2],
    grant_types_supported: [&'static str; 2],
    subject_types_supported: [&'static str; 1],
    id_token_signing_alg_values_supported: [&'static str; 2],
    token_endpoint_auth_methods_supported: [&'static str; 3],
    revocation_endpoint_auth_methods_supported: [&'static str; 3],
    code_challenge_methods_supported: [&'static str; 1],
    claims_supported: [&'static str; 13],
    prompt_values_supported: [&'static str; 4],
    claims_parameter_supported: bool,
    request_parameter_supported: bool,
    request_uri_parameter_supported: bool,
    authorization_response_iss_parameter_supported: bool,
}

/// The provider's discovery document.
///
/// OpenID Connect Discovery 1.0 §4.
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    operation_id = "openid_configuration",
    tag = "oidc",
    responses((status = 200, description = "The discovery document; it may be cached for an hour.", body = Discovery)),
)]
async fn discovery(State(state): State<AppState>) -> Response {
    let issuer = state.settings.origin.to_string();
    let doc = Discovery {
        authorization_endpoint: format!("{issuer}/oidc/authorize"),
        token_endpoint: format!("{issuer}/oidc/token"),
        userinfo_endpoint: format!("{issuer}/oidc/userinfo"),
        jwks_uri: format!("{issuer}/oidc/jwks"),
        end_session_endpoint: format!("{issuer}/oidc/logout"),
        revocation_endpoint: format!("{issuer}/oidc/revoke"),
        issuer,
        scopes_supported: SCOPES,
        response_types_supported: ["code"],
        response_modes_supported: ["query", "form_post"],
        grant_types_supported: ["authorization_code", "refresh_token"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: [Alg::Rs256.as_str(), Alg::EdDsa.as_str()],
        token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post", "none"],
        revocation_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post", "none"],
        code_challenge_methods_supported: ["S256"],
        claims_supported: [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "amr",
            "preferred_username",
            "name",
            "email",
            "email_verified",
            "groups",
        ],
        prompt_values_supported: ["none", "login", "consent", "select_account"],
        claims_parameter_supported: false,
        request_parameter_supported: false,
        request_uri_parameter_supported: false,
        authorization_response_iss_parameter_supported: true,
    };
    cached(Json(doc).into_response(), "public, max-age=3600")
}

/// The published ID-token signing keys.
///
/// Every published key: the next, current and retired key of each
/// algorithm. Relying parties may cache the set for an hour; rotations must
/// be further apart than that.
#[utoipa::path(
    get,
    path = "/oidc/jwks",
    operation_id = "jwks",
    tag = "oidc",
    responses((status = 200, description = "The published ID-token signing keys; the set may be cached for an hour.", body = JwkSetSchema)),
)]
async fn jwks(State(state): State<AppState>) -> Result<Response> {
    let set = keys::published(&state.db, state.clock.now().as_secs() as i64).await?;
    Ok(cached(Json(set).into_response(), "public, max-age=3600"))
}

// The handler returns `jsonwebtoken`'s own `JwkSet`, which has no schema:
// this one describes what that type writes for the keys `keys` makes, and
// the schemathesis test holds the real answers to it.
/// The published key set (RFC 7517 §5).
#[derive(ToSchema)]
#[schema(as = JwkSet)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct JwkSetSchema {
    keys: Vec<JwkSchema>,
}

/// A public signing key (RFC 7517 §4): RSA (RFC 7518 §6.3: `n`, `e`) or
/// Ed25519 (RFC 8037 §2: `crv`, `x`).
#[derive(ToSchema)]
#[schema(as = Jwk)]
#[allow(dead_code)] // Only its schema is used.
struct JwkSchema {
    /// `RSA` or `OKP`.
    kty: String,
    /// Always `sig`.
    r#use: String,
    /// `RS256` or `EdDSA`.
    alg: String,
    kid: String,
    /// RSA: the modulus, base64url.
    n: Option<String>,
    /// RSA: the exponent, base64url.
    e: Option<String>,
    /// Ed25519: `Ed25519`.
    crv: Option<String>,
    /// Ed25519: the public key, base64url.
    x: Option<String>,
}

fn cached(mut response: Response, policy: &'static str) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    response
}
