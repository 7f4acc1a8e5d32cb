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
    if !is_canonical_encoding(bytes) {
        return Err(Error::InvalidPublicKey);
    }
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| Error::InvalidPublicKey)?;
    if key.is_weak() {
        return Err(Error::WeakPublicKey);
    }
    Ok(key)
}

/// The two checks of RFC 8032 §5.1.3 that ed25519-dalek leaves out: the
/// field element y must be below p = 2^255 − 19 (step 1), and x = 0 must not
/// come with the sign bit set (step 4). Without them one point has several
/// encodings, and `verify_strict` hashes the encoding as given, so a key
/// written as y + p would be a second, distinct key for the same point.
fn is_canonical_encoding(bytes: &[u8; 32]) -> bool {
    let sign = bytes[31] & 0x80 != 0;
    let mut y = *bytes;
    y[31] &= 0x7f;
    // y ≥ p exactly when y is one of p..2^255 − 1: its top byte is 0x7f,
    // the 30 bytes below it are 0xff and its lowest byte is at least 0xed.
    let at_least_p = y[31] == 0x7f && y[1..31].iter().all(|&b| b == 0xff) && y[0] >= 0xed;
    // x = 0 exactly when y² = 1, that is y = 1 or y = p − 1.
    let y_is_one = y[0] == 1 && y[1..].iter().all(|&b| b == 0);
    let y_is_p_minus_one = y[31] == 0x7f && y[1..31].iter().all(|&b| b == 0xff) && y[0] == 0xec;
    !at_least_p && !(sign && (y_is_one || y_is_p_minus_one))
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
    fn rejects_public_key_whose_y_is_not_reduced() {
        // y = p + 10: a point of large order once reduced, which
        // ed25519-dalek decodes without complaint.
        let mut key = [0xff; 32];
        key[0] = 0xed + 10;
        key[31] = 0x7f;
        assert!(VerifyingKey::from_bytes(&key).is_ok(), "the library alone accepts it");
        assert_eq!(AccountPublicKey::from_bytes(&key), Err(Error::InvalidPublicKey));
        assert_eq!(ServerPublicKey::from_bytes(&key), Err(Error::InvalidPublicKey));
        assert_eq!(AccountPublicKey::from_base64(&B64.encode(key)), Err(Error::InvalidPublicKey));
    }

    #[test]
    fn rejects_public_key_with_x_zero_and_the_sign_bit_set() {
        // y = 1 and y = p − 1 have x = 0, whose only encoding has sign 0.
        // With sign 0 they are the small-order points (0, 1) and (0, −1).
        let mut one = [0u8; 32];
        one[0] = 1;
        let mut minus_one = [0xff; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        for mut key in [one, minus_one] {
            assert_eq!(AccountPublicKey::from_bytes(&key), Err(Error::WeakPublicKey), "{key:02x?}");
            key[31] |= 0x80;
            assert_eq!(AccountPublicKey::from_bytes(&key), Err(Error::InvalidPublicKey), "{key:02x?}");
            assert_eq!(ServerPublicKey::from_bytes(&key), Err(Error::InvalidPublicKey), "{key:02x?}");
        }
    }

    #[test]
    fn rejects_public_key_of_wrong_length() {
        assert_eq!(AccountPublicKey::from_bytes(&[1; 31]), Err(Error::InvalidPublicKey));
        assert_eq!(AccountPublicKey::from_base64("AAAA"), Err(Error::InvalidPublicKey));
    }
}
