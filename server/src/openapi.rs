//! The OpenAPI 3.1 document of the JSON API, served at `GET
//! /api/openapi.json`.
//!
//! It is built from the handlers' own `#[utoipa::path]` attributes and the
//! types they take and return, so a changed field or status code changes
//! the document with it. `docs/openapi.json` is the same text; a test fails
//! when the two differ, and `SESAME_UPDATE_OPENAPI=1` rewrites the file.

use std::sync::LazyLock;

use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use crate::{
    admin, challenge, oidc,
    ops::health,
    signin::{authenticator, passkey},
};

/// The JSON API. HTML pages, the admin page's forms and the OIDC browser
/// endpoints (authorize, logout) are not part of it.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Sesame",
        description = "The JSON API of `sesame-server`: challenges for browsers and relying parties, the \
authenticator's endpoints, the admin API, health checks and the OpenID Connect provider's JSON endpoints. \
docs/API.md and docs/PROTOCOL.md explain them.\n\n\
Errors are `{\"error\": code, \"message\": text}`, except at the OAuth token and userinfo endpoints, which answer \
as RFC 6749 §5.2 and RFC 6750 §3 say. Besides the answers listed per operation, any request may get \
`503 too_many_connections` (with `Retry-After`) when the instance is at its connection limit, \
`503 unavailable` when a dependency is down, `500 internal` on a server fault, `413 body_too_large` for a \
body over 16 KiB, `404 not_found` for a path that does not exist and `405 method_not_allowed` (with `Allow`) \
for a method the path does not take.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        health::live,
        health::ready,
        serve,
        challenge::create_handler,
        challenge::status_handler,
        challenge::events::handler,
        challenge::cancel_handler,
        challenge::session_handler,
        authenticator::server_key,
        authenticator::context,
        authenticator::register,
        authenticator::login,
        authenticator::deny,
        authenticator::enroll,
        authenticator::rekey,
        passkey::sign_in_start,
        passkey::sign_in_finish,
        passkey::register::register_start,
        passkey::register::register_finish,
        passkey::register::add_start,
        passkey::register::add_finish,
        admin::api::create_service,
        admin::api::list_services,
        admin::api::change_service,
        admin::api::delete_service,
        admin::api_accounts::list_accounts,
        admin::api_accounts::delete_account,
        admin::api_accounts::list_keys,
        admin::profiles::get_profile,
        admin::profiles::put_profile,
        admin::groups::list_groups,
        admin::groups::create_group,
        admin::groups::rename_group,
        admin::groups::delete_group,
        admin::groups::get_account_groups,
        admin::groups::put_account_groups,
        admin::api_accounts::delete_key,
        admin::links::create_link,
        admin::links::list_links,
        admin::links::revoke_link,
        admin::log::list_events,
        admin::log::list_audit,
        admin::applications::list_applications,
        admin::applications::create_application,
        admin::applications::get_application,
        admin::applications::put_application,
        admin::applications::delete_application,
        admin::applications::rotate_application_secret,
        admin::applications::get_client,
        admin::applications::put_client,
        admin::applications::delete_client,
        admin::applications::rotate_secret,
        admin::oidc::list_keys,
        admin::oidc::rotate_keys,
        oidc::discovery,
        oidc::jwks,
        oidc::token::token,
        oidc::revoke::revoke,
        oidc::token::userinfo,
    ),
    modifiers(&SecuritySchemes, &DistinctOperationIds),
    tags(
        (name = "challenges", description = "Sign-ins as the browser and the relying party see them."),
        (name = "authenticator", description = "What an authenticator calls (PROTOCOL.md §6)."),
        (name = "passkeys", description = "Passkeys (WebAuthn) beside Sesame keys: sign-in, registration, adding one to an account."),
        (name = "admin", description = "Services, accounts, OIDC clients and the audit log, for scripts."),
        (name = "oidc", description = "The OpenID Connect provider's JSON endpoints (OIDC.md)."),
        (name = "health", description = "Liveness and readiness, for supervisors and load balancers."),
        (name = "meta", description = "This document."),
    ),
)]
pub struct ApiDoc;

/// The security schemes the operations name.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token the server runs with (`--admin-token`). A missing or wrong one gets \
                         `401 unauthorized`, and wrong ones count against the address's rate limit.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "binding_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "sesame_browser_{challenge_id}",
                "The cookie that creating a challenge sets, one per challenge, named after it (with the \
                 `__Host-` prefix on an HTTPS origin). Without it: `401 binding_required`; with another \
                 browser's value: `403 wrong_browser`.",
            ))),
        );
        components.add_security_scheme(
            "passkey_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "sesame_passkey_{ceremony}",
                "The cookie that starting a passkey ceremony sets, one per ceremony, named after it (with \
                 the `__Host-` prefix on an HTTPS origin). Without it: `401 binding_required`; with another \
                 browser's value: `404 unknown_ceremony`.",
            ))),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "sesame_session_{service_id}",
                "The browser's session at the service (with the `__Host-` prefix on an HTTPS origin). \
                 Without a live one: `401 sign_in_required`.",
            ))),
        );
        components.add_security_scheme(
            "client_secret_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "A confidential client's `client_id` and `client_secret`, each form-urlencoded \
                         (RFC 6749 §2.3.1). The form's `client_secret` is the other way; public clients \
                         send neither.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "access_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An access token from the token endpoint, in the header only (RFC 6750 §2.1)."))
                    .build(),
            ),
        );
    }
}

/// Operation ids must be unique, and a handler that takes several methods
/// (userinfo takes GET and POST) gives each the same one: all but the first
/// get their method as a suffix.
struct DistinctOperationIds;

impl Modify for DistinctOperationIds {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        for item in api.paths.paths.values_mut() {
            let mut seen = Vec::new();
            let operations = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ];
            for (method, operation) in operations {
                let Some(id) = operation.as_mut().and_then(|o| o.operation_id.as_mut()) else { continue };
                if seen.contains(id) {
                    id.push('_');
                    id.push_str(method);
                } else {
                    seen.push(id.clone());
                }
            }
        }
    }
}

/// The document as served and as committed: pretty JSON and a final newline.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let mut text = ApiDoc::openapi().to_pretty_json().expect("an OpenAPI document always serialises");
    text.push('\n');
    text
});

/// The document's text, the same bytes as `docs/openapi.json`.
pub fn document() -> &'static str {
    &DOCUMENT
}

pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/api/openapi.json", get(serve))
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "openapi_document",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document, the same as docs/openapi.json.", content_type = "application/json", body = Object)),
)]
async fn serve() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], document()).into_response()
}
