//! The authenticator's answers to a token: register, log in, deny, enroll a
//! key into an existing account, and log in while replacing the key (rekey).
//!
//! Each is a JSON object on the wire whose signature covers a byte string
//! built here. Every byte string starts with its own tag, so a signature made
//! for one purpose never verifies as another, and each repeats the token's
//! origin and service id so that the binding is explicit in what is signed
//! and does not rest on the token layout alone.

use serde::{Deserialize, Serialize};

use crate::{
    encoding::put_short, AccountKey, AccountName, AccountPublicKey, Error, FreshToken, KeyLabel, MatchNumber,
    Signature, Token,
};

pub(crate) const REGISTER_TAG: &[u8] = b"sesame/1/register\0";
pub(crate) const LOGIN_TAG: &[u8] = b"sesame/1/login\0";
pub(crate) const DENY_TAG: &[u8] = b"sesame/1/deny\0";
pub(crate) const ENROLL_TAG: &[u8] = b"sesame/1/enroll\0";
pub(crate) const REKEY_TAG: &[u8] = b"sesame/1/rekey\0";

/// `tag ‖ u16 len ‖ token ‖ u8 len ‖ origin ‖ service id`: the prefix every
/// response signs.
fn signed_prefix(tag: &[u8], token: &Token) -> Vec<u8> {
    let text = token.as_str().as_bytes();
    let claims = token.claims();
    let mut out = Vec::with_capacity(tag.len() + text.len() + 200);
    out.extend_from_slice(tag);
    out.extend_from_slice(&u16::try_from(text.len()).expect("tokens are at most 512 bytes").to_be_bytes());
    out.extend_from_slice(text);
    put_short(&mut out, claims.origin.as_str().as_bytes());
    out.extend_from_slice(&claims.service_id.0);
    out
}

/// The number the person typed (PROTOCOL.md §14) closes the signed bytes
/// of every answer that signs someone in or adds a key, when the challenge
/// asks for one; without it the bytes are what they always were.
fn put_number(out: &mut Vec<u8>, number: Option<MatchNumber>) {
    if let Some(number) = number {
        out.push(number.get());
    }
}

pub(crate) fn register_bytes(
    token: &Token,
    account: &AccountName,
    key: &AccountPublicKey,
    number: Option<MatchNumber>,
) -> Vec<u8> {
    account_key_bytes(REGISTER_TAG, token, account, key, number)
}

pub(crate) fn login_bytes(token: &Token, account: &AccountName, number: Option<MatchNumber>) -> Vec<u8> {
    let mut out = signed_prefix(LOGIN_TAG, token);
    put_short(&mut out, account.as_str().as_bytes());
    put_number(&mut out, number);
    out
}

pub(crate) fn deny_bytes(token: &Token, key: &AccountPublicKey) -> Vec<u8> {
    let mut out = signed_prefix(DENY_TAG, token);
    out.extend_from_slice(key.0.as_bytes());
    out
}

/// `tag ‖ prefix ‖ str8(account) ‖ key [‖ number]`: register, enroll and
/// rekey sign the same shape under their own tags, so that each binds the
/// purpose, the service, the account and the key.
fn account_key_bytes(
    tag: &[u8],
    token: &Token,
    account: &AccountName,
    key: &AccountPublicKey,
    number: Option<MatchNumber>,
) -> Vec<u8> {
    let mut out = signed_prefix(tag, token);
    put_short(&mut out, account.as_str().as_bytes());
    out.extend_from_slice(key.0.as_bytes());
    put_number(&mut out, number);
    out
}

pub(crate) fn enroll_bytes(
    token: &Token,
    account: &AccountName,
    key: &AccountPublicKey,
    number: Option<MatchNumber>,
) -> Vec<u8> {
    account_key_bytes(ENROLL_TAG, token, account, key, number)
}

pub(crate) fn rekey_bytes(
    token: &Token,
    account: &AccountName,
    new_key: &AccountPublicKey,
    number: Option<MatchNumber>,
) -> Vec<u8> {
    account_key_bytes(REKEY_TAG, token, account, new_key, number)
}

/// An optional number as sent, checked.
fn number(value: Option<u32>) -> Result<Option<MatchNumber>, Error> {
    value.map(MatchNumber::new).transpose()
}

/// An optional label as sent, checked.
fn label(text: Option<&str>) -> Result<Option<KeyLabel>, Error> {
    text.map(KeyLabel::parse).transpose()
}

/// What a register and an enroll request share: a new key that signs its
/// own arrival under the request's tag.
struct NewKeyProof<'r> {
    tag: &'static [u8],
    account: &'r str,
    public_key: &'r str,
}

impl NewKeyProof<'_> {
    /// Checks the fields in the order of PROTOCOL.md §6.6: account, key,
    /// label, number, then the signature.
    fn verify(
        &self,
        fresh: FreshToken<'_>,
        signature: &str,
        label: Option<&str>,
        number: Option<u32>,
    ) -> Result<VerifiedRegistration, Error> {
        let account = AccountName::parse(self.account)?;
        let public_key = AccountPublicKey::from_base64(self.public_key)?;
        let label = self::label(label)?;
        let number = self::number(number)?;
        check(&public_key, &account_key_bytes(self.tag, fresh.token(), &account, &public_key, number), signature)?;
        Ok(VerifiedRegistration { account, public_key, label, number, _proof: () })
    }
}

fn check(key: &AccountPublicKey, message: &[u8], signature: &str) -> Result<(), Error> {
    let signature = Signature::from_base64(signature)?;
    key.0.verify_strict(message, &signature.0).map_err(|_| Error::BadSignature)
}

/// `POST /api/authenticator/register`: create `account` with a new public key.
/// The signature by that key proves the authenticator holds it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The token text exactly as scanned or pasted.
    pub token: String,
    /// The new account's name: 1 to 64 bytes of printable text.
    pub account: String,
    /// The new Ed25519 public key, base64url without padding.
    pub public_key: String,
    /// Ed25519 signature by that key (PROTOCOL.md §4), base64url without padding.
    pub signature: String,
    /// What the person calls this authenticator, such as its host name
    /// (PROTOCOL.md §4.1). Not signed; the server only shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The number the person typed, when the challenge asks for one
    /// (PROTOCOL.md §14). Signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
}

impl RegisterRequest {
    pub fn sign(token: &Token, account: &AccountName, key: &AccountKey) -> Self {
        Self::sign_matched(token, account, key, None)
    }

    /// [`RegisterRequest::sign`] for a challenge that asks for the number
    /// its page shows (PROTOCOL.md §14).
    pub fn sign_matched(token: &Token, account: &AccountName, key: &AccountKey, number: Option<MatchNumber>) -> Self {
        let public_key = key.public_key();
        let signature = key.sign(&register_bytes(token, account, &public_key, number));
        Self {
            token: token.as_str().to_owned(),
            account: account.as_str().to_owned(),
            public_key: public_key.to_base64(),
            signature: signature.to_base64(),
            label: None,
            number: number.map(|n| u32::from(n.get())),
        }
    }

    /// The same request, carrying `label`.
    pub fn with_label(self, label: Option<&KeyLabel>) -> Self {
        Self { label: label.map(|l| l.as_str().to_owned()), ..self }
    }

    /// Checks the proof of possession against the token the server has
    /// already verified and found fresh.
    pub fn verify(&self, fresh: FreshToken<'_>) -> Result<VerifiedRegistration, Error> {
        let proof = NewKeyProof { tag: REGISTER_TAG, account: &self.account, public_key: &self.public_key };
        proof.verify(fresh, &self.signature, self.label.as_deref(), self.number)
    }
}

/// `POST /api/authenticator/login`: sign in as an existing account.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The token text exactly as scanned or pasted.
    pub token: String,
    /// The account signing in.
    pub account: String,
    /// Ed25519 signature by the account's key (PROTOCOL.md §4), base64url
    /// without padding.
    pub signature: String,
    /// The number the person typed, when the challenge asks for one
    /// (PROTOCOL.md §14). Signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
}

impl LoginRequest {
    pub fn sign(token: &Token, account: &AccountName, key: &AccountKey) -> Self {
        Self::sign_matched(token, account, key, None)
    }

    /// [`LoginRequest::sign`] for a challenge that asks for the number its
    /// page shows (PROTOCOL.md §14).
    pub fn sign_matched(token: &Token, account: &AccountName, key: &AccountKey, number: Option<MatchNumber>) -> Self {
        let signature = key.sign(&login_bytes(token, account, number));
        Self {
            token: token.as_str().to_owned(),
            account: account.as_str().to_owned(),
            signature: signature.to_base64(),
            number: number.map(|n| u32::from(n.get())),
        }
    }

    /// The account this login is for, so the server can look up its key.
    pub fn account(&self) -> Result<AccountName, Error> {
        AccountName::parse(&self.account)
    }

    /// Checks the signature with the key the server registered for the
    /// account.
    pub fn verify(&self, fresh: FreshToken<'_>, registered: &AccountPublicKey) -> Result<VerifiedLogin, Error> {
        let account = self.account()?;
        let number = number(self.number)?;
        check(registered, &login_bytes(fresh.token(), &account, number), &self.signature)?;
        Ok(VerifiedLogin { account, number, _proof: () })
    }
}

/// `POST /api/authenticator/deny`: refuse the sign-in. Signed by the account
/// key when the authenticator has one for the service, else by a key made for
/// this one answer; either way the signature ties the refusal to this token.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyRequest {
    /// The token text exactly as scanned or pasted.
    pub token: String,
    /// The Ed25519 public key that signs the refusal, base64url without
    /// padding.
    pub public_key: String,
    /// Ed25519 signature by that key (PROTOCOL.md §4), base64url without
    /// padding.
    pub signature: String,
}

impl DenyRequest {
    pub fn sign(token: &Token, key: &AccountKey) -> Self {
        let public_key = key.public_key();
        let signature = key.sign(&deny_bytes(token, &public_key));
        Self { token: token.as_str().to_owned(), public_key: public_key.to_base64(), signature: signature.to_base64() }
    }

    pub fn verify(&self, fresh: FreshToken<'_>) -> Result<VerifiedDeny, Error> {
        let public_key = AccountPublicKey::from_base64(&self.public_key)?;
        check(&public_key, &deny_bytes(fresh.token(), &public_key), &self.signature)?;
        Ok(VerifiedDeny { public_key, _proof: () })
    }
}

/// `POST /api/authenticator/enroll`: add a new key to the existing account
/// that an enrollment challenge names (PROTOCOL.md §12). The signature by
/// the new key proves the authenticator holds it; the key then waits for
/// the browser that started the challenge to confirm it (§11).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The token text exactly as scanned or pasted.
    pub token: String,
    /// The account the challenge enrolls into, as the context answer named it.
    pub account: String,
    /// The new Ed25519 public key, base64url without padding.
    pub public_key: String,
    /// Ed25519 signature by the new key (PROTOCOL.md §12), base64url
    /// without padding.
    pub signature: String,
    /// What the person calls this authenticator. Not signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The number the person typed, when the challenge asks for one
    /// (PROTOCOL.md §14). Signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
}

impl EnrollRequest {
    pub fn sign(token: &Token, account: &AccountName, key: &AccountKey, label: Option<&KeyLabel>) -> Self {
        Self::sign_matched(token, account, key, label, None)
    }

    /// [`EnrollRequest::sign`] for a challenge that asks for the number its
    /// page shows (PROTOCOL.md §14).
    pub fn sign_matched(
        token: &Token,
        account: &AccountName,
        key: &AccountKey,
        label: Option<&KeyLabel>,
        number: Option<MatchNumber>,
    ) -> Self {
        let public_key = key.public_key();
        let signature = key.sign(&enroll_bytes(token, account, &public_key, number));
        Self {
            token: token.as_str().to_owned(),
            account: account.as_str().to_owned(),
            public_key: public_key.to_base64(),
            signature: signature.to_base64(),
            label: label.map(|l| l.as_str().to_owned()),
            number: number.map(|n| u32::from(n.get())),
        }
    }

    /// Checks the proof of possession against the token the server has
    /// already verified and found fresh.
    pub fn verify(&self, fresh: FreshToken<'_>) -> Result<VerifiedRegistration, Error> {
        let proof = NewKeyProof { tag: ENROLL_TAG, account: &self.account, public_key: &self.public_key };
        proof.verify(fresh, &self.signature, self.label.as_deref(), self.number)
    }
}

/// `POST /api/authenticator/rekey`: sign in as an existing account and, in
/// the same answer, replace the key that signs with a new one (PROTOCOL.md
/// §13). Both keys sign the same bytes: the current key shows the account
/// agrees, the new key shows the authenticator holds it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekeyRequest {
    /// The token text exactly as scanned or pasted.
    pub token: String,
    /// The account signing in.
    pub account: String,
    /// The new Ed25519 public key, base64url without padding.
    pub public_key: String,
    /// Ed25519 signature by the account's current key (PROTOCOL.md §13),
    /// base64url without padding.
    pub signature: String,
    /// Ed25519 signature by the new key over the same bytes, base64url
    /// without padding.
    pub new_signature: String,
    /// The number the person typed, when the challenge asks for one
    /// (PROTOCOL.md §14). Signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
}

impl RekeyRequest {
    pub fn sign(token: &Token, account: &AccountName, current: &AccountKey, new: &AccountKey) -> Self {
        Self::sign_matched(token, account, current, new, None)
    }

    /// [`RekeyRequest::sign`] for a challenge that asks for the number its
    /// page shows (PROTOCOL.md §14).
    pub fn sign_matched(
        token: &Token,
        account: &AccountName,
        current: &AccountKey,
        new: &AccountKey,
        number: Option<MatchNumber>,
    ) -> Self {
        let public_key = new.public_key();
        let message = rekey_bytes(token, account, &public_key, number);
        Self {
            token: token.as_str().to_owned(),
            account: account.as_str().to_owned(),
            public_key: public_key.to_base64(),
            signature: current.sign(&message).to_base64(),
            new_signature: new.sign(&message).to_base64(),
            number: number.map(|n| u32::from(n.get())),
        }
    }

    /// The account this rekey is for, so the server can look up its keys.
    pub fn account(&self) -> Result<AccountName, Error> {
        AccountName::parse(&self.account)
    }

    /// Checks the signature of the account's `registered` key, then the new
    /// key's proof of possession. A new key equal to the registered one is
    /// refused as `key_registered` by the server, not here.
    pub fn verify(&self, fresh: FreshToken<'_>, registered: &AccountPublicKey) -> Result<VerifiedRekey, Error> {
        let account = self.account()?;
        let new_public_key = AccountPublicKey::from_base64(&self.public_key)?;
        let number = number(self.number)?;
        let message = rekey_bytes(fresh.token(), &account, &new_public_key, number);
        check(registered, &message, &self.signature)?;
        check(&new_public_key, &message, &self.new_signature)?;
        Ok(VerifiedRekey { account, new_public_key, number, _proof: () })
    }
}

/// Proof that a registration or an enrollment was signed by the key it
/// registers, for this fresh token.
#[derive(Debug)]
pub struct VerifiedRegistration {
    account: AccountName,
    public_key: AccountPublicKey,
    label: Option<KeyLabel>,
    number: Option<MatchNumber>,
    _proof: (),
}

/// The same proof, for an enrollment.
pub type VerifiedEnrollment = VerifiedRegistration;

impl VerifiedRegistration {
    pub fn account(&self) -> &AccountName {
        &self.account
    }

    pub fn public_key(&self) -> &AccountPublicKey {
        &self.public_key
    }

    pub fn label(&self) -> Option<&KeyLabel> {
        self.label.as_ref()
    }

    /// The number the signature covers, if the answer carried one.
    pub fn number(&self) -> Option<MatchNumber> {
        self.number
    }
}

/// Proof that a rekey was signed by the account's registered key and by the
/// new key, for this fresh token.
#[derive(Debug)]
pub struct VerifiedRekey {
    account: AccountName,
    new_public_key: AccountPublicKey,
    number: Option<MatchNumber>,
    _proof: (),
}

impl VerifiedRekey {
    pub fn account(&self) -> &AccountName {
        &self.account
    }

    pub fn new_public_key(&self) -> &AccountPublicKey {
        &self.new_public_key
    }

    /// The number the signatures cover, if the answer carried one.
    pub fn number(&self) -> Option<MatchNumber> {
        self.number
    }
}

/// Proof that a login was signed by the account's registered key, for this
/// fresh token.
#[derive(Debug)]
pub struct VerifiedLogin {
    account: AccountName,
    number: Option<MatchNumber>,
    _proof: (),
}

impl VerifiedLogin {
    pub fn account(&self) -> &AccountName {
        &self.account
    }

    /// The number the signature covers, if the answer carried one.
    pub fn number(&self) -> Option<MatchNumber> {
        self.number
    }
}

/// Proof that a refusal was signed for this fresh token.
#[derive(Debug)]
pub struct VerifiedDeny {
    public_key: AccountPublicKey,
    _proof: (),
}

impl VerifiedDeny {
    pub fn public_key(&self) -> &AccountPublicKey {
        &self.public_key
    }
}
