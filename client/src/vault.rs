//! Encryption at rest: a key seals every account key with
//! XChaCha20-Poly1305. The key is either random and kept in the operating
//! system's keyring ([`crate::system_keyring`]), or derived from the
//! passphrase with Argon2id.
//!
//! Each sealed key carries associated data naming its row (origin, service,
//! account), so a ciphertext copied onto another row does not open: nobody
//! with write access to the file can swap one account's key for another's.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use rand::{rngs::OsRng, RngCore};
use zeroize::Zeroizing;

use crate::Error;

const NONCE_LEN: usize = 24;
const SALT_LEN: usize = 16;
const VERIFIER_TEXT: &[u8] = b"sesame/1/passphrase-verifier";
const VERIFIER_AAD: &[u8] = b"sesame/1/passphrase-verifier\0";
const ACCOUNT_AAD_TAG: &[u8] = b"sesame/1/account-key\0";
const KEYRING_VERIFIER_AAD: &[u8] = b"sesame/1/system-keyring-verifier\0";

/// A passphrase as typed. Wiped on drop, never printed.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// Argon2id costs, stored next to the salt so that later runs derive the
/// same key whatever the defaults have become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl KdfParams {
    /// About 64 MiB and three passes: a fraction of a second once per run,
    /// and expensive for anyone guessing passphrases against a stolen file.
    pub const DEFAULT: Self = Self { m_cost_kib: 64 * 1024, t_cost: 3, p_cost: 1 };
    /// Cheap costs for the keystore's unit tests. The binary has no way to
    /// select them: a switch that weakens key derivation is a switch someone
    /// will leave on.
    #[cfg(test)]
    pub const INSECURE_FAST: Self = Self { m_cost_kib: 64, t_cost: 1, p_cost: 1 };
}

/// The stored salt, costs and verifier of a passphrase.
#[derive(Debug, Clone)]
pub struct KdfRecord {
    pub salt: Vec<u8>,
    pub params: KdfParams,
    pub verifier: Vec<u8>,
}

/// The key derived from the passphrase. Wiped on drop, never printed.
pub struct SealKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

impl SealKey {
    fn derive(passphrase: &Passphrase, salt: &[u8], params: KdfParams) -> Result<Self, Error> {
        let argon_params = Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
            .map_err(|e| Error::Keystore(format!("invalid key derivation parameters: {e}")))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
            .map_err(|e| Error::Keystore(format!("key derivation failed: {e}")))?;
        Ok(Self(key))
    }

    /// Makes a fresh salt and verifier for `passphrase`.
    pub fn create(passphrase: &Passphrase, params: KdfParams) -> Result<(Self, KdfRecord), Error> {
        let mut salt = vec![0u8; SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        let key = Self::derive(passphrase, &salt, params)?;
        let verifier = key.seal(VERIFIER_TEXT, VERIFIER_AAD)?;
        Ok((key, KdfRecord { salt, params, verifier }))
    }

    /// Derives the key and checks it against the stored verifier, so that a
    /// wrong passphrase is refused before any account key is read.
    pub fn unlock(passphrase: &Passphrase, record: &KdfRecord) -> Result<Self, Error> {
        let key = Self::derive(passphrase, &record.salt, record.params)?;
        match key.open(&record.verifier, VERIFIER_AAD) {
            Ok(text) if text.as_slice() == VERIFIER_TEXT => Ok(key),
            _ => Err(Error::WrongPassphrase),
        }
    }

    /// A random key for the system keyring, with its verifier.
    pub fn random() -> Result<(Self, Vec<u8>), Error> {
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        let key = Self(key);
        let verifier = key.seal(VERIFIER_TEXT, KEYRING_VERIFIER_AAD)?;
        Ok((key, verifier))
    }

    /// The key as the system keyring holds it: base64url text, so that the
    /// entry reads as text in every keyring's tools.
    pub fn to_keyring_text(&self) -> Zeroizing<String> {
        use base64::Engine as _;
        Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0.as_ref()))
    }

    /// Reads a key that [`SealKey::to_keyring_text`] wrote and checks it
    /// against the keystore's verifier; `None` when it is not this
    /// keystore's key.
    pub fn from_keyring_text(text: &str, verifier: &[u8]) -> Option<Self> {
        use base64::Engine as _;
        let bytes = Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim()).ok()?);
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(bytes.get(..32).filter(|_| bytes.len() == 32)?);
        let key = Self(key);
        match key.open(verifier, KEYRING_VERIFIER_AAD) {
            Ok(text) if text.as_slice() == VERIFIER_TEXT => Some(key),
            _ => None,
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_ref().into())
    }

    /// `nonce ‖ ciphertext` of `plain`, bound to `aad`.
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
            .map_err(|_| Error::Keystore("encryption failed".into()))?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    /// Opens what [`SealKey::seal`] made. Fails if the key, the bytes or the
    /// associated data differ.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        if sealed.len() < NONCE_LEN {
            return Err(Error::Keystore("a sealed key is cut short".into()));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
            .map(Zeroizing::new)
            .map_err(|_| Error::Keystore("an account key does not decrypt: the keystore was altered".into()))
    }
}

/// The associated data that binds a sealed account key to its row.
pub fn account_aad(origin: &str, service_id: &str, account: &str) -> Vec<u8> {
    let mut aad = ACCOUNT_AAD_TAG.to_vec();
    for part in [origin, service_id, account] {
        // Lengths first, so that no two different rows give the same bytes.
        aad.extend_from_slice(&u16::try_from(part.len()).unwrap_or(u16::MAX).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(text: &str) -> Passphrase {
        Passphrase::new(text.to_owned())
    }

    #[test]
    fn right_passphrase_unlocks_and_opens_what_it_sealed() {
        let (key, record) = SealKey::create(&pass("correct horse"), KdfParams::INSECURE_FAST).expect("create");
        let aad = account_aad("https://a.example", "00", "alice");
        let sealed = key.seal(b"seed", &aad).expect("seal");
        let again = SealKey::unlock(&pass("correct horse"), &record).expect("unlock");
        assert_eq!(again.open(&sealed, &aad).expect("open").as_slice(), b"seed");
    }

    #[test]
    fn rejects_wrong_passphrase() {
        let (_, record) = SealKey::create(&pass("correct horse"), KdfParams::INSECURE_FAST).expect("create");
        assert!(matches!(SealKey::unlock(&pass("battery staple"), &record), Err(Error::WrongPassphrase)));
    }

    #[test]
    fn rejects_sealed_key_moved_to_another_row() {
        let (key, _) = SealKey::create(&pass("p"), KdfParams::INSECURE_FAST).expect("create");
        let sealed = key.seal(b"seed", &account_aad("https://a.example", "00", "alice")).expect("seal");
        let moved = key.open(&sealed, &account_aad("https://a.example", "00", "bob"));
        assert!(matches!(moved, Err(Error::Keystore(_))));
    }

    #[test]
    fn a_keyring_key_reads_back_and_only_for_its_own_verifier() {
        let (key, verifier) = SealKey::random().expect("random");
        let aad = account_aad("https://a.example", "00", "alice");
        let sealed = key.seal(b"seed", &aad).expect("seal");
        let text = key.to_keyring_text();
        let again = SealKey::from_keyring_text(&text, &verifier).expect("its own key");
        assert_eq!(again.open(&sealed, &aad).expect("open").as_slice(), b"seed");
        let (_, other_verifier) = SealKey::random().expect("random");
        assert!(SealKey::from_keyring_text(&text, &other_verifier).is_none(), "another keystore's key");
        assert!(SealKey::from_keyring_text("not base64!", &verifier).is_none());
        assert!(SealKey::from_keyring_text("AAAA", &verifier).is_none(), "too short");
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let (key, _) = SealKey::create(&pass("hunter2"), KdfParams::INSECURE_FAST).expect("create");
        assert_eq!(format!("{key:?}"), "SealKey(<redacted>)");
        assert_eq!(format!("{:?}", pass("hunter2")), "Passphrase(<redacted>)");
    }
}
