//! The one error type of the protocol crate, with a stable code per variant.

/// Why a token or a signed response was refused.
///
/// Every variant has a stable [`Error::code`]; servers send it on the wire and
/// authenticators may match on it, so codes are never renamed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("the token is longer than {max} characters", max = crate::token::MAX_TOKEN_LEN)]
    TokenTooLong,
    #[error("this is not a Sesame token (it must start with \"sesame1.\")")]
    NotAToken,
    #[error("the token is not valid base64url")]
    BadEncoding,
    #[error("the token is cut short")]
    Truncated,
    #[error("the token has bytes after its end")]
    TrailingBytes,
    #[error("the token uses protocol version {0}, which this software does not speak")]
    UnsupportedVersion(u8),
    #[error("the token's origin is not a valid origin")]
    InvalidOrigin,
    #[error("the token's service name is not valid")]
    InvalidServiceName,
    #[error("the token's time step is not valid")]
    InvalidRotation,
    #[error("the token lives longer than the protocol allows")]
    LifetimeTooLong,
    #[error("the token was signed by a key other than the server's")]
    UnknownSigningKey,
    #[error("the token's signature is not valid: it was altered or forged")]
    BadTokenSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token was issued in the future; check the clock")]
    NotYetValid,
    #[error("the token's code is too old: use the code shown on the page now")]
    StaleCode,
    #[error("the token's code is not valid")]
    BadCode,
    #[error("the account name must be 1 to 64 bytes of printable text")]
    InvalidAccountName,
    #[error("the public key is not a valid Ed25519 key")]
    InvalidPublicKey,
    #[error("the public key is a weak (small-order) key")]
    WeakPublicKey,
    #[error("the signature is not 64 bytes of base64url")]
    InvalidSignatureEncoding,
    #[error("the signature does not match: it was made for another token, service, origin, account or purpose")]
    BadSignature,
    #[error("the key label must be 1 to 64 bytes of printable text")]
    InvalidKeyLabel,
    #[error("this is not a Sesame sign-in link (it must be the server's address, then /app#, then the token)")]
    BadLink,
    #[error(
        "the link's address is not the server the token comes from: someone may be passing on another site's sign-in"
    )]
    LinkOriginMismatch,
    #[error("the number must be the two-digit number shown on the page that is signing in (10 to 99)")]
    InvalidNumber,
}

impl Error {
    /// The stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TokenTooLong => "token_too_long",
            Self::NotAToken => "not_a_token",
            Self::BadEncoding => "bad_encoding",
            Self::Truncated => "truncated",
            Self::TrailingBytes => "trailing_bytes",
            Self::UnsupportedVersion(_) => "unsupported_version",
            Self::InvalidOrigin => "invalid_origin",
            Self::InvalidServiceName => "invalid_service_name",
            Self::InvalidRotation => "invalid_rotation",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::UnknownSigningKey => "unknown_signing_key",
            Self::BadTokenSignature => "bad_token_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::StaleCode => "stale_code",
            Self::BadCode => "bad_code",
            Self::InvalidAccountName => "invalid_account_name",
            Self::InvalidPublicKey => "invalid_public_key",
            Self::WeakPublicKey => "weak_public_key",
            Self::InvalidSignatureEncoding => "invalid_signature_encoding",
            Self::BadSignature => "bad_signature",
            Self::InvalidKeyLabel => "invalid_key_label",
            Self::BadLink => "bad_link",
            Self::LinkOriginMismatch => "link_origin_mismatch",
            Self::InvalidNumber => "invalid_number",
        }
    }
}
