//! The short code that confirms a new key (docs/PROTOCOL.md §11).
//!
//! A registration that needs someone's approval (an admin authenticator, a
//! device added to an existing account) leaves the new key pending. The page
//! that started the challenge and the authenticator that answered it each
//! compute this code from the challenge and the key, and a person compares
//! the two before confirming. Whoever glimpsed the token and raced the owner
//! to register gets a key the owner's authenticator knows nothing about, so
//! the owner sees no matching code and refuses it.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::{AccountPublicKey, ChallengeId};

/// Six decimal digits, shown as `123 456`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConfirmationCode(u32);

impl ConfirmationCode {
    /// `SHA-256("sesame/1/confirm" ‖ 0x00 ‖ challenge_id ‖ public_key)`, its
    /// first four bytes as a big-endian integer, modulo 1,000,000.
    pub fn of(challenge_id: &ChallengeId, key: &AccountPublicKey) -> Self {
        let digest = Sha256::new()
            .chain_update(b"sesame/1/confirm\0")
            .chain_update(challenge_id.0)
            .chain_update(key.to_bytes())
            .finalize();
        let head = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        Self(head % 1_000_000)
    }

    /// The six digits without the space, as `--json` output carries them.
    pub fn digits(&self) -> String {
        format!("{:06}", self.0)
    }
}

impl fmt::Display for ConfirmationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03} {:03}", self.0 / 1000, self.0 % 1000)
    }
}

impl fmt::Debug for ConfirmationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConfirmationCode({self})")
    }
}
