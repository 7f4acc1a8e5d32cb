//! Sesame's wire protocol: challenge tokens, the authenticator's signed
//! answers, and their verification.
//!
//! This crate does no I/O and reads no clock; it is shared by the server and
//! the authenticator so that both speak exactly the bytes of
//! `docs/PROTOCOL.md`. Types follow "parse, don't validate": a [`Token`] has
//! had its server signature checked, a [`FreshToken`] has had its rotating
//! code checked too, and verification returns proof types such as
//! [`VerifiedLogin`], never a `bool`.

mod confirm;
mod encoding;
mod error;
pub mod fresh;
mod ids;
mod keys;
mod message;
mod names;
mod number;
mod time;
pub mod token;
pub mod wire;

pub use confirm::ConfirmationCode;
pub use error::Error;
pub use fresh::{FreshToken, FreshnessSecret};
pub use ids::{ChallengeId, InvalidId, Nonce, ServiceId};
pub use keys::{AccountKey, AccountPublicKey, KeyId, ServerKey, ServerPublicKey, Signature};
pub use message::{
    DenyRequest, EnrollRequest, LoginRequest, RegisterRequest, RekeyRequest, VerifiedDeny, VerifiedEnrollment,
    VerifiedLogin, VerifiedRegistration, VerifiedRekey,
};
pub use names::{AccountName, KeyLabel, Origin, ServiceName, MAX_NAME_LEN, MAX_ORIGIN_LEN};
pub use number::MatchNumber;
pub use time::UnixTime;
pub use token::{BaseToken, Token, TokenClaims, UnverifiedToken};
