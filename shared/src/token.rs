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
/// The path of the web authenticator. A QR code holds a link to it with the
/// token in the fragment (PROTOCOL.md §3.6), so that a phone's camera opens
/// the authenticator, and the fragment never reaches a server or a log.
pub const APP_PATH: &str = "/app";
/// Longest link accepted: the longest origin, the path, `#` and the longest
/// token.
pub const MAX_LINK_LEN: usize = crate::MAX_ORIGIN_LEN + APP_PATH.len() + 1 + MAX_TOKEN_LEN;

/// The link that opens the web authenticator at `origin` with `token`
/// (PROTOCOL.md §3.6): what the QR code of a login page holds.
pub fn link(origin: &Origin, token: &str) -> String {
    format!("{origin}{APP_PATH}#{token}")
}
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
        check_times(self.issued_at, self.expires_at, self.rotation_secs)
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

    /// When the code for `step` was first shown, or `None` when that lies
    /// beyond the last second a `u64` can hold. Exact: it never saturates.
    fn step_time(&self, step: u32) -> Option<UnixTime> {
        // At most (2^32 − 1) × 60, so the product cannot overflow.
        let offset = u64::from(step) * u64::from(self.rotation_secs);
        self.issued_at.checked_add(offset)
    }
}

/// The rules of the `expires_at` and `rotation` rows of PROTOCOL.md §3.2, in
/// that order.
fn check_times(issued_at: UnixTime, expires_at: UnixTime, rotation_secs: u8) -> Result<(), Error> {
    if expires_at <= issued_at || expires_at.saturating_since(issued_at) > MAX_LIFETIME_SECS {
        return Err(Error::LifetimeTooLong);
    }
    if rotation_secs == 0 || rotation_secs > 60 {
        return Err(Error::InvalidRotation);
    }
    Ok(())
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
    /// it never came from outside, and it was signed when it was issued, so
    /// its signature is not checked again (that would cost a `verify_strict`
    /// per event stream). A text under another key id is still refused, as a
    /// token of a key the server no longer holds.
    pub fn from_stored(text: String, key: &ServerPublicKey) -> Result<Self, Error> {
        let unverified = UnverifiedToken::parse_base(&text)?;
        if unverified.key_id != key.key_id() {
            return Err(Error::UnknownSigningKey);
        }
        Ok(Self { text, claims: unverified.claims })
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

/// The fields of `base_bytes` as they lie, before any rule about their
/// values is checked.
struct Layout<'a> {
    key_id: KeyId,
    issued_at: UnixTime,
    expires_at: UnixTime,
    rotation_secs: u8,
    challenge_id: ChallengeId,
    nonce: Nonce,
    service_id: ServiceId,
    origin: &'a [u8],
    service_name: &'a [u8],
    body: &'a [u8],
    signature: ed25519_dalek::Signature,
}

impl<'a> Layout<'a> {
    /// Reads the version, then every field front to back. Only the version
    /// is judged on the way: another version may lay its bytes out in
    /// another way, so nothing after it means anything.
    fn read(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut reader = Reader::new(bytes);
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
        let origin = reader.short()?;
        let service_name = reader.short()?;
        let body = &bytes[..bytes.len() - reader.remaining()];
        let signature = ed25519_dalek::Signature::from_bytes(&reader.array::<SIGNATURE_LEN>()?);
        reader.finish()?;
        Ok(Self {
            key_id,
            issued_at,
            expires_at,
            rotation_secs,
            challenge_id,
            nonce,
            service_id,
            origin,
            service_name,
            body,
            signature,
        })
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

/// `text` without its white space (PROTOCOL.md §3.4 step 1): every
/// character with Unicode's White_Space property, wherever it stands, which
/// is what `char::is_whitespace` tests. Borrowed when there is none.
fn without_white_space(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(char::is_whitespace) {
        text.chars().filter(|c| !c.is_whitespace()).collect::<String>().into()
    } else {
        text.into()
    }
}

impl UnverifiedToken {
    /// Strictly decodes a full token (base and code), following the steps of
    /// PROTOCOL.md §3.4 in their order, so that an input with several faults
    /// always gets the same error. White space anywhere in the text, as a
    /// paste from a mail or a terminal may carry (line breaks, indents), is
    /// removed; anything else that is not the one canonical encoding is
    /// refused.
    pub fn parse(text: &str) -> Result<Self, Error> {
        Self::parse_trimmed(&without_white_space(text))
    }

    /// Reads what a person pasted or scanned: a bare token, or a link to
    /// the web authenticator that carries one in its fragment (PROTOCOL.md
    /// §3.6). A link must name the origin the token itself names, so that
    /// a link to one server cannot carry another server's sign-in.
    pub fn read(input: &str) -> Result<Self, Error> {
        let input = &*without_white_space(input);
        if input.starts_with(PREFIX) {
            return Self::parse_trimmed(input);
        }
        if !input.starts_with("https://") && !input.starts_with("http://") {
            return Err(Error::NotAToken);
        }
        if input.len() > MAX_LINK_LEN {
            return Err(Error::TokenTooLong);
        }
        let (address, token) = input.split_once('#').ok_or(Error::BadLink)?;
        let origin =
            address.strip_suffix(APP_PATH).and_then(|origin| Origin::parse(origin).ok()).ok_or(Error::BadLink)?;
        let token = Self::parse_trimmed(token)?;
        // Compared before any key is looked up or fetched: a mismatch is a
        // relayed sign-in, and nothing about it should be pinned.
        if token.claims.origin != origin {
            return Err(Error::LinkOriginMismatch);
        }
        Ok(token)
    }

    /// [`UnverifiedToken::parse`] of a text that has no white space left.
    fn parse_trimmed(text: &str) -> Result<Self, Error> {
        let rest = text.strip_prefix(PREFIX).ok_or(Error::NotAToken)?;
        if text.len() > MAX_TOKEN_LEN {
            return Err(Error::TokenTooLong);
        }
        // base64url has no '.', so a second dot fails as bad encoding below.
        let (base, fresh) = rest
            .split_once('.')
            .filter(|(base, fresh)| !base.is_empty() && !fresh.is_empty())
            .ok_or(Error::Truncated)?;
        // Both texts are decoded before any byte is read: a copy that lost
        // or changed characters says so, rather than whatever its bytes
        // happen to mean.
        let base_bytes = B64.decode(base).map_err(|_| Error::BadEncoding)?;
        let fresh_bytes = B64.decode(fresh).map_err(|_| Error::BadEncoding)?;
        let layout = Layout::read(&base_bytes)?;
        let mut reader = Reader::new(&fresh_bytes);
        let step = reader.u32()?;
        let code = reader.array::<CODE_LEN>()?;
        reader.finish()?;
        Self::from_layout(text, &layout, Some((step, code)))
    }

    /// Decodes the signed part alone, as the server stored it.
    fn parse_base(text: &str) -> Result<Self, Error> {
        let encoded = text.strip_prefix(PREFIX).ok_or(Error::NotAToken)?;
        let bytes = B64.decode(encoded).map_err(|_| Error::BadEncoding)?;
        Self::from_layout(text, &Layout::read(&bytes)?, None)
    }

    /// Checks each field's rule, in the order of the table of §3.2.
    fn from_layout(text: &str, layout: &Layout<'_>, fresh: Option<(u32, [u8; CODE_LEN])>) -> Result<Self, Error> {
        check_times(layout.issued_at, layout.expires_at, layout.rotation_secs)?;
        let origin = std::str::from_utf8(layout.origin).map_err(|_| Error::InvalidOrigin)?;
        let origin = Origin::parse(origin)?;
        let service_name = std::str::from_utf8(layout.service_name).map_err(|_| Error::InvalidServiceName)?;
        let service_name = ServiceName::parse(service_name)?;
        let claims = TokenClaims {
            origin,
            service_id: layout.service_id,
            service_name,
            challenge_id: layout.challenge_id,
            nonce: layout.nonce,
            issued_at: layout.issued_at,
            expires_at: layout.expires_at,
            rotation_secs: layout.rotation_secs,
        };
        Ok(Self {
            text: text.to_owned(),
            key_id: layout.key_id,
            claims,
            signed: signed_bytes(layout.body),
            signature: layout.signature,
            fresh,
        })
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

    /// The challenge the token claims to belong to. Unverified: use it only
    /// to look up what the server stored for that challenge.
    pub fn claimed_challenge_id(&self) -> ChallengeId {
        self.claims.challenge_id
    }

    /// Like [`UnverifiedToken::verify`], for the server that issued the
    /// token: when its signed part is byte for byte the base token the
    /// server stored for the challenge, the signature is the server's own and
    /// is not checked again. Any other text is verified in full, so a forged
    /// or altered token gets exactly the error `verify` gives.
    pub fn verify_as_issued(self, stored_base: &BaseToken, key: &ServerPublicKey) -> Result<Token, Error> {
        let issued = self.text.strip_prefix(stored_base.as_str()).is_some_and(|rest| rest.starts_with('.'));
        if !issued || self.key_id != key.key_id() {
            return self.verify(key);
        }
        let (step, code) = self.fresh.unwrap_or((0, [0; CODE_LEN]));
        Ok(Token { text: self.text, claims: self.claims, step, code })
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

    /// When the code in this token was first shown on the page, or `None`
    /// when its step names a time past the largest `u64`, when no page can
    /// have shown it.
    pub fn shown_at(&self) -> Option<UnixTime> {
        self.claims.step_time(self.step)
    }

    /// Refuses a token that has expired or was issued in the future. `leeway`
    /// allows for a clock that differs from the server's; the server itself
    /// passes 0.
    ///
    /// The sums are exact, as PROTOCOL.md §3.4 asks: a sum past the largest
    /// `u64` is later than every `now`, where saturating would clip it.
    pub fn check_lifetime(&self, now: UnixTime, leeway_secs: u64) -> Result<(), Error> {
        if self.claims.expires_at.checked_add(leeway_secs).is_some_and(|end| now >= end) {
            return Err(Error::Expired);
        }
        if now.checked_add(leeway_secs).is_some_and(|latest| self.claims.issued_at > latest) {
            return Err(Error::NotYetValid);
        }
        Ok(())
    }
}
