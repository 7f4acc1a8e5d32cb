//! Freshness codes: the part of the token that changes every few seconds.
//!
//! Following BankID's animated QR, the server signs a token once and then
//! appends, at each time step, `HMAC-SHA256(secret, tag ‖ challenge id ‖
//! step)` cut to 80 bits. The secret is made per challenge and never leaves
//! the server, so a code proves that whoever signs the token saw it on the
//! page within the last few seconds, and a photo of yesterday's screen is
//! worth nothing. One HMAC per step costs about a microsecond, against about
//! 38 µs for re-signing the whole token.

use std::fmt;

use hmac::{Hmac, Mac as _};
use rand_core::CryptoRngCore;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{ChallengeId, Error, Token, UnixTime};

/// Bytes of HMAC output kept in a code.
pub const CODE_LEN: usize = 10;
const FRESH_TAG: &[u8] = b"sesame/1/fresh\0";

/// A challenge's 256-bit code secret. Held only by the server.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct FreshnessSecret([u8; 32]);

impl FreshnessSecret {
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut bytes = [0; 32];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self, challenge_id: &ChallengeId, step: u32) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(FRESH_TAG);
        mac.update(&challenge_id.0);
        mac.update(&step.to_be_bytes());
        mac
    }

    pub(crate) fn code(&self, challenge_id: &ChallengeId, step: u32) -> [u8; CODE_LEN] {
        let tag = self.mac(challenge_id, step).finalize().into_bytes();
        let mut code = [0; CODE_LEN];
        code.copy_from_slice(&tag[..CODE_LEN]);
        code
    }

    /// Checks that `token` carries a genuine code that was on the page no more
    /// than `window_secs` ago. The code is compared in constant time.
    ///
    /// The code is checked before its age so that a forged code is always
    /// reported as forged, whatever step it names.
    pub fn verify<'t>(&self, token: &'t Token, now: UnixTime, window_secs: u64) -> Result<FreshToken<'t>, Error> {
        let claims = token.claims();
        self.mac(&claims.challenge_id, token.step()).verify_truncated_left(token.code()).map_err(|_| Error::BadCode)?;
        // Only the server can mint codes, and it never mints one ahead of
        // time; a code from the future means a clock went backwards. A step
        // past the end of u64 time is in the future of every `now`.
        let shown_at = token.shown_at().ok_or(Error::BadCode)?;
        if shown_at > now || shown_at >= claims.expires_at {
            return Err(Error::BadCode);
        }
        if now.saturating_since(shown_at) > window_secs {
            return Err(Error::StaleCode);
        }
        Ok(FreshToken(token))
    }
}

impl fmt::Debug for FreshnessSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FreshnessSecret").field(&"<redacted>").finish()
    }
}

/// Proof that a token's code was checked and is fresh. Only
/// [`FreshnessSecret::verify`] makes one, and the server verifies responses
/// against it, so a response can never be accepted for a stale token.
#[derive(Debug, Clone, Copy)]
pub struct FreshToken<'t>(&'t Token);

impl<'t> FreshToken<'t> {
    pub fn token(&self) -> &'t Token {
        self.0
    }
}
