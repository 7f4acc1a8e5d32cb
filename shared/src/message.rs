//! The authenticator's answers to a token: register, log in, deny.
//!
//! Each is a JSON object on the wire whose signature covers a byte string
//! built here. Every byte string starts with its own tag, so a signature made
//! for one purpose never verifies as another, and each repeats the token's
//! origin and service id so that the binding is explicit in what is signed
//! and does not rest on the token layout alone.

use serde::{Deserialize, Serialize};

use crate::{encoding::put_short, AccountKey, AccountName, AccountPublicKey, Error, FreshToken, Signature, Token};

pub(crate) const REGISTER_TAG: &[u8] = b"sesame/1/register\0";
pub(crate) const LOGIN_TAG: &[u8] = b"sesame/1/login\0";
pub(crate) const DENY_TAG: &[u8] = b"sesame/1/deny\0";

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

pub(crate) fn register_bytes(token: &Token, account: &AccountName, key: &AccountPublicKey) -> Vec<u8> {
    let mut out = signed_prefix(REGISTER_TAG, token);
    put_short(&mut out, account.as_str().as_bytes());
    out.extend_from_slice(key.0.as_bytes());
    out
}

pub(crate) fn login_bytes(token: &Token, account: &AccountName) -> Vec<u8> {
    let mut out = signed_prefix(LOGIN_TAG, token);
    put_short(&mut out, account.as_str().as_bytes());
    out
}

pub(crate) fn deny_bytes(token: &Token, key: &AccountPublicKey) -> Vec<u8> {
    let mut out = signed_prefix(DENY_TAG, token);
    out.extend_from_slice(key.0.as_bytes());
    out
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
}

impl RegisterRequest {
    pub fn sign(token: &Token, account: &AccountName, key: &AccountKey) -> Self {
        let public_key = key.public_key();
        let signature = key.sign(&register_bytes(token, account, &public_key));
        Self {
            token: token.as_str().to_owned(),
            account: account.as_str().to_owned(),
            public_key: public_key.to_base64(),
            signature: signature.to_base64(),
        }
    }

    /// Checks the proof of possession against the token the server has
    /// already verified and found fresh.
    pub fn verify(&self, fresh: FreshToken<'_>) -> Result<VerifiedRegistration, Error> {
        let account = AccountName::parse(&self.account)?;
        let public_key = AccountPublicKey::from_base64(&self.public_key)?;
        check(&public_key, &register_bytes(fresh.token(), &account, &public_key), &self.signature)?;
        Ok(VerifiedRegistration { account, public_key, _proof: () })
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
}

impl LoginRequest {
    pub fn sign(token: &Token, account: &AccountName, key: &AccountKey) -> Self {
        let signature = key.sign(&login_bytes(token, account));
        Self {
            token: token.as_str().to_owned(),
            account: account.as_str().to_owned(),
            signature: signature.to_base64(),
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
        check(registered, &login_bytes(fresh.token(), &account), &self.signature)?;
        Ok(VerifiedLogin { account, _proof: () })
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

/// Proof that a registration was signed by the key it registers, for this
/// fresh token.
#[derive(Debug)]
pub struct VerifiedRegistration {
    account: AccountName,
    public_key: AccountPublicKey,
    _proof: (),
}

impl VerifiedRegistration {
    pub fn account(&self) -> &AccountName {
        &self.account
    }

    pub fn public_key(&self) -> &AccountPublicKey {
        &self.public_key
    }
}

/// Proof that a login was signed by the account's registered key, for this
/// fresh token.
#[derive(Debug)]
pub struct VerifiedLogin {
    account: AccountName,
    _proof: (),
}

impl VerifiedLogin {
    pub fn account(&self) -> &AccountName {
        &self.account
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
