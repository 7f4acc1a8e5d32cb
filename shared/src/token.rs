//! The challenge token: what the login page shows and the authenticator signs.
//!
//! A token is `sesame1.` + base64url(body ‖ signature) + `.` +
//! base64url(step ‖ code). The first part is signed once by the server when
//! the challenge is created; the second part changes every few seconds and is
//! an HMAC only the server can compute (see [`crate::fresh`]). This is not a
//! JWT: the layout is fixed, there is no algorithm field to negotiate, and it
//! is about half the size, so it fits a QR code a phone camera reads easily.

use base64::Engine as _;

use crate::{
    encoding::{put_short, Reader, B64},
    fresh::{FreshnessSecret, CODE_LEN},
    ChallengeId, Error, KeyId, Nonce, Origin, ServerKey, ServerPublicKey, ServiceId, ServiceName, UnixTime,
};

/// The only protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Every token starts with this.
pub const PREFIX: &str = "sesame1.";
/// Longest token text accepted, before any decoding is attempted.
pub const MAX_TOKEN_LEN: usize = 512;
/// A challenge never lives longer than this, whatever the server says.
pub const MAX_LIFETIME_SECS: u64 = 600;
/// Domain separation tag of the server's token signature.
pub(crate) const TOKEN_TAG: &[u8] = b"sesame/1/token\0";

const SIGNATURE_LEN: usize = 64;
const FRESH_LEN: usize = 4 + CODE_LEN;

/// What a token says. Built by the server; read back by anyone from a
/// verified [`Token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    pub origin: Origin,
    pub service_id: ServiceId,
    pub service_name: ServiceName,
    pub challenge_id: ChallengeId,
    pub nonce: Nonce,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    /// Seconds between two codes; the page shows a new token this often.
    pub rotation_secs: u8,
}

impl TokenClaims {
    fn check(&self) -> Result<(), Error> {
        if self.rotation_secs == 0 || self.rotation_secs > 60 {
            return Err(Error::InvalidRotation);
        }
        if self.expires_at <= self.issued_at || self.expires_at.saturating_since(self.issued_at) > MAX_LIFETIME_SECS {
            return Err(Error::LifetimeTooLong);
        }
        Ok(())
    }

    fn body(&self, key_id: KeyId) -> Vec<u8> {
        let mut body = Vec::with_capacity(256);
        body.push(VERSION);
        body.extend_from_slice(&key_id.0);
        body.extend_from_slice(&self.issued_at.as_secs().to_be_bytes());
        body.extend_from_slice(&self.expires_at.as_secs().to_be_bytes());
        body.push(self.rotation_secs);
        body.extend_from_slice(&self.challenge_id.0);
        body.extend_from_slice(&self.nonce.0);
        body.extend_from_slice(&self.service_id.0);
        put_short(&mut body, self.origin.as_str().as_bytes());
        put_short(&mut body, self.service_name.as_str().as_bytes());
        body
    }

    /// When the code for `step` was first shown.
    fn step_time(&self, step: u32) -> UnixTime {
        self.issued_at.saturating_add(u64::from(step) * u64::from(self.rotation_secs))
    }
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    [TOKEN_TAG, body].concat()
}

impl ServerKey {
    /// Signs `claims` into the fixed part of a token.
    pub fn issue(&self, claims: TokenClaims) -> Result<BaseToken, Error> {
        claims.check()?;
        let mut bytes = claims.body(self.public_key().key_id());
        let signature = self.sign(&signed_bytes(&bytes));
        bytes.extend_from_slice(&signature.to_bytes());
        let text = format!("{PREFIX}{}", B64.encode(&bytes));
        Ok(BaseToken { text, claims })
    }
}

/// The signed, fixed part of a token, held by the server for the life of a
/// challenge. [`BaseToken::at_step`] adds the rotating code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseToken {
    text: String,
    claims: TokenClaims,
}

impl BaseToken {
    /// Rebuilds a base token the server stored earlier. The text is trusted:
    /// it never came from outside.
    pub fn from_stored(text: String, key: &ServerPublicKey) -> Result<Self, Error> {
        let claims = UnverifiedToken::parse_parts(&text, None)?.verify(key)?.claims;
        Ok(Self { text, claims })
    }

    pub fn claims(&self) -> &TokenClaims {
        &self.claims
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The step whose code is current at `now`.
    pub fn step_at(&self, now: UnixTime) -> u32 {
        let elapsed = now.saturating_since(self.claims.issued_at);
        u32::try_from(elapsed / u64::from(self.claims.rotation_secs)).unwrap_or(u32::MAX)
    }

    /// The full token text for `step`, as the page shows it.
    pub fn at_step(&self, secret: &FreshnessSecret, step: u32) -> String {
        let mut fresh = [0u8; FRESH_LEN];
        fresh[..4].copy_from_slice(&step.to_be_bytes());
        fresh[4..].copy_from_slice(&secret.code(&self.claims.challenge_id, step));
        format!("{}.{}", self.text, B64.encode(fresh))
    }
}

/// A token that has been decoded but whose signature has not been checked.
///
/// The authenticator needs its origin and key id to find the pinned key
/// before it can verify; nothing else about it may be trusted.
#[derive(Debug, Clone)]
pub struct UnverifiedToken {
    text: String,
    key_id: KeyId,
    claims: TokenClaims,
    signed: Vec<u8>,
    signature: ed25519_dalek::Signature,
    fresh: Option<(u32, [u8; CODE_LEN])>,
}

impl UnverifiedToken {
    /// Strictly decodes a full token (base and code). White space around the
    /// text, as a paste may carry, is ignored; anything else that is not the
    /// one canonical encoding is refused.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        if text.len() > MAX_TOKEN_LEN {
            return Err(Error::TokenTooLong);
        }
        let (base, fresh) = text.rsplit_once('.').filter(|(base, _)| base.len() > PREFIX.len()).ok_or_else(|| {
            if text.starts_with(PREFIX) {
                Error::Truncated
            } else {
                Error::NotAToken
            }
        })?;
        let fresh_bytes = B64.decode(fresh).map_err(|_| Error::BadEncoding)?;
        let mut reader = Reader::new(&fresh_bytes);
        let step = reader.u32()?;
        let code = reader.array::<CODE_LEN>()?;
        reader.finish()?;
        let mut token = Self::parse_parts(base, Some((step, code)))?;
        token.text = text.to_owned();
        Ok(token)
    }

    fn parse_parts(base: &str, fresh: Option<(u32, [u8; CODE_LEN])>) -> Result<Self, Error> {
        if base.len() > MAX_TOKEN_LEN {
            return Err(Error::TokenTooLong);
        }
        let encoded = base.strip_prefix(PREFIX).ok_or(Error::NotAToken)?;
        let bytes = B64.decode(encoded).map_err(|_| Error::BadEncoding)?;
        let mut reader = Reader::new(&bytes);
        let version = reader.u8()?;
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let key_id = KeyId(reader.array()?);
        let issued_at = UnixTime::from_secs(reader.u64()?);
        let expires_at = UnixTime::from_secs(reader.u64()?);
        let rotation_secs = reader.u8()?;
        let challenge_id = ChallengeId(reader.array()?);
        let nonce = Nonce(reader.array()?);
        let service_id = ServiceId(reader.array()?);
        let origin = Origin::parse(reader.short_str(Error::InvalidOrigin)?)?;
        let service_name = ServiceName::parse(reader.short_str(Error::InvalidServiceName)?)?;
        let body_len = bytes.len() - reader.remaining();
        let signature = ed25519_dalek::Signature::from_bytes(&reader.array::<SIGNATURE_LEN>()?);
        reader.finish()?;
        let claims =
            TokenClaims { origin, service_id, service_name, challenge_id, nonce, issued_at, expires_at, rotation_secs };
        claims.check()?;
        Ok(Self { text: base.to_owned(), key_id, claims, signed: signed_bytes(&bytes[..body_len]), signature, fresh })
    }

    /// The origin the token claims to come from. Unverified: use it only to
    /// look up the key pinned for that origin.
    pub fn claimed_origin(&self) -> &Origin {
        &self.claims.origin
    }

    /// The id of the key the token claims to be signed with. Unverified.
    pub fn claimed_key_id(&self) -> KeyId {
        self.key_id
    }

    /// Checks the server's signature with `verify_strict`. On success the
    /// result is a [`Token`], whose claims can be believed.
    pub fn verify(self, key: &ServerPublicKey) -> Result<Token, Error> {
        if key.key_id() != self.key_id {
            return Err(Error::UnknownSigningKey);
        }
        key.0.verify_strict(&self.signed, &self.signature).map_err(|_| Error::BadTokenSignature)?;
        let (step, code) = self.fresh.unwrap_or((0, [0; CODE_LEN]));
        Ok(Token { text: self.text, claims: self.claims, step, code })
    }
}

/// A token whose server signature has been verified. Its code has not been
/// checked: only the server can do that ([`FreshnessSecret::verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    text: String,
    claims: TokenClaims,
    step: u32,
    code: [u8; CODE_LEN],
}

impl Token {
    /// The exact text that was parsed. Responses sign these bytes.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn claims(&self) -> &TokenClaims {
        &self.claims
    }

    pub fn step(&self) -> u32 {
        self.step
    }

    pub(crate) fn code(&self) -> &[u8; CODE_LEN] {
        &self.code
    }

    /// When the code in this token was first shown on the page.
    pub fn shown_at(&self) -> UnixTime {
        self.claims.step_time(self.step)
    }

    /// Refuses a token that has expired or was issued in the future. `leeway`
    /// allows for a clock that differs from the server's; the server itself
    /// passes 0.
    pub fn check_lifetime(&self, now: UnixTime, leeway_secs: u64) -> Result<(), Error> {
        if now >= self.claims.expires_at.saturating_add(leeway_secs) {
            return Err(Error::Expired);
        }
        if self.claims.issued_at > now.saturating_add(leeway_secs) {
            return Err(Error::NotYetValid);
        }
        Ok(())
    }
}
