//! Ed25519 keys: the server's identity key and the authenticator's account
//! keys, their public halves, key ids and signatures.

use std::fmt;

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::{encoding::B64, Error};

/// Short identifier of a server public key: the first 8 bytes of
/// `SHA-256("sesame/1/key-id" || 0x00 || public_key)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    fn of(key: &VerifyingKey) -> Self {
        let digest = Sha256::new().chain_update(b"sesame/1/key-id\0").chain_update(key.as_bytes()).finalize();
        let mut id = [0; 8];
        id.copy_from_slice(&digest[..8]);
        Self(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Parses 32 bytes as an Ed25519 public key, refusing encodings that are not
/// points and small-order ("weak") points, whose signatures prove nothing.
fn verifying_key(bytes: &[u8]) -> Result<VerifyingKey, Error> {
    let bytes: &[u8; 32] = bytes.try_into().map_err(|_| Error::InvalidPublicKey)?;
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| Error::InvalidPublicKey)?;
    if key.is_weak() {
        return Err(Error::WeakPublicKey);
    }
    Ok(key)
}

fn decode_b64_key(text: &str) -> Result<VerifyingKey, Error> {
    let bytes = B64.decode(text).map_err(|_| Error::InvalidPublicKey)?;
    verifying_key(&bytes)
}

/// The server's identity key. It signs every token it issues.
pub struct ServerKey(SigningKey);

impl ServerKey {
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self(SigningKey::generate(rng))
    }

    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The 32-byte secret seed, for storage. Wiped from memory on drop.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    pub fn public_key(&self) -> ServerPublicKey {
        ServerPublicKey(self.0.verifying_key())
    }

    pub(crate) fn sign(&self, message: &[u8]) -> ed25519_dalek::Signature {
        self.0.sign(message)
    }
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ServerKey").field(&"<redacted>").finish()
    }
}

/// A server's public identity key, as the authenticator pins it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ServerPublicKey(pub(crate) VerifyingKey);

impl ServerPublicKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        verifying_key(bytes).map(Self)
    }

    pub fn from_base64(text: &str) -> Result<Self, Error> {
        decode_b64_key(text).map(Self)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0.as_bytes())
    }

    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.0)
    }
}

impl fmt::Debug for ServerPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerPublicKey({})", self.to_base64())
    }
}

/// The authenticator's private key for one account at one service.
pub struct AccountKey(SigningKey);

impl AccountKey {
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self(SigningKey::generate(rng))
    }

    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    pub fn public_key(&self) -> AccountPublicKey {
        AccountPublicKey(self.0.verifying_key())
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message))
    }
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AccountKey").field(&"<redacted>").finish()
    }
}

/// The public half of an account key, as the server stores it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AccountPublicKey(pub(crate) VerifyingKey);

impl AccountPublicKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        verifying_key(bytes).map(Self)
    }

    pub fn from_base64(text: &str) -> Result<Self, Error> {
        decode_b64_key(text).map(Self)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0.as_bytes())
    }

    /// The key's fingerprint, derived as for server keys (§2.2); shown when a
    /// person must tell one key from another.
    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.0)
    }
}

impl fmt::Debug for AccountPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountPublicKey({})", self.to_base64())
    }
}

/// An Ed25519 signature made by an account key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub(crate) ed25519_dalek::Signature);

impl Signature {
    pub fn from_base64(text: &str) -> Result<Self, Error> {
        let bytes = B64.decode(text).map_err(|_| Error::InvalidSignatureEncoding)?;
        let bytes: [u8; 64] = bytes.try_into().map_err(|_| Error::InvalidSignatureEncoding)?;
        Ok(Self(ed25519_dalek::Signature::from_bytes(&bytes)))
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_private_keys() {
        let server = ServerKey::from_seed(&[7; 32]);
        let account = AccountKey::from_seed(&[7; 32]);
        let seed_hex: String = [7u8; 32].iter().map(|b| format!("{b:02x}")).collect();
        for text in [format!("{server:?}"), format!("{account:?}")] {
            assert!(text.contains("<redacted>"), "{text}");
            assert!(!text.contains(&seed_hex) && !text.contains("[7, 7"), "{text}");
        }
    }

    #[test]
    fn rejects_small_order_public_key() {
        // The identity point (0, 1), encoded as y = 1: order 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(AccountPublicKey::from_bytes(&identity), Err(Error::WeakPublicKey));
        assert_eq!(ServerPublicKey::from_bytes(&identity), Err(Error::WeakPublicKey));
    }

    #[test]
    fn rejects_public_key_of_wrong_length() {
        assert_eq!(AccountPublicKey::from_bytes(&[1; 31]), Err(Error::InvalidPublicKey));
        assert_eq!(AccountPublicKey::from_base64("AAAA"), Err(Error::InvalidPublicKey));
    }
}
