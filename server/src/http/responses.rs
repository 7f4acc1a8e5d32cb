//! The API's error contract, declared once: the rows of the OpenAPI document
//! that many operations share, as types a `#[utoipa::path]` lists among its
//! `responses(...)`. Every row's body is an `ErrorBody`
//! (`{"error": code, "message": text}`); what differs between operations
//! stays written at each one.

use std::collections::BTreeMap;

use sesame_proto::wire::ErrorBody;
use utoipa::{
    openapi::{content::ContentBuilder, header::HeaderBuilder, response::ResponseBuilder, Ref, RefOr, Response},
    IntoResponses, PartialSchema as _, ToSchema as _,
};

/// What every signed answer of an authenticator can meet before its own
/// refusals (PROTOCOL.md §6.6, §7), and the answers' rate limit.
#[derive(Debug)]
pub struct AnswerErrors;

impl IntoResponses for AnswerErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        rows([
            (
                400,
                error(
                    "The body is not the expected JSON (`invalid_json`, `invalid_body`, `unsupported_media_type`), \
                       or the token or a field is malformed: the codes of PROTOCOL.md §7.",
                ),
            ),
            (401, error("`bad_signature`.")),
            (410, error("`token_expired`, `stale_code`, `challenge_expired`.")),
            (413, error(TOO_LARGE)),
            (429, rate_limited("too many answers from this address.")),
        ])
    }
}

/// What every call of the admin API can meet: a missing or wrong token, and
/// the limit on wrong ones.
#[derive(Debug)]
pub struct AdminErrors;

impl IntoResponses for AdminErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        rows([
            (401, error("`unauthorized`: the admin token is missing or wrong.")),
            (429, rate_limited("too many wrong admin tokens from this address.")),
        ])
    }
}

/// What every route of a challenge that only its browser may follow can
/// meet: a path that does not decode, no binding cookie, another browser's.
#[derive(Debug)]
pub struct BrowserErrors;

impl IntoResponses for BrowserErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        rows([
            (400, error("`invalid_request`: the path does not decode (bad percent-encoding or UTF-8).")),
            (401, error("`binding_required`.")),
            (403, error("`wrong_browser`.")),
        ])
    }
}

/// A path segment (a service id, an account name) that does not decode.
#[derive(Debug)]
pub struct BadPath;

impl IntoResponses for BadPath {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        rows([(400, error("`invalid_path`: a path segment does not decode."))])
    }
}

/// A body over the server's limit.
#[derive(Debug)]
pub struct TooLarge;

impl IntoResponses for TooLarge {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        rows([(413, error(TOO_LARGE))])
    }
}

const TOO_LARGE: &str = "`body_too_large`.";

fn rows<const N: usize>(rows: [(u16, Response); N]) -> BTreeMap<String, RefOr<Response>> {
    rows.into_iter().map(|(status, response)| (status.to_string(), RefOr::T(response))).collect()
}

/// An error answer: an `ErrorBody` with the codes `description` names.
fn error(description: &str) -> Response {
    error_builder(description).build()
}

fn error_builder(description: &str) -> ResponseBuilder {
    let body = ContentBuilder::new().schema(Some(Ref::from_schema_name(ErrorBody::name()))).build();
    ResponseBuilder::new().description(description).content("application/json", body)
}

/// `429 rate_limited` for `what`, with the `Retry-After` header.
fn rate_limited(what: &str) -> Response {
    let retry_after = HeaderBuilder::new()
        .schema(u64::schema())
        .description(Some("Seconds until the same request may pass."))
        .build();
    error_builder(&format!("`rate_limited`: {what}")).header("Retry-After", retry_after).build()
}
