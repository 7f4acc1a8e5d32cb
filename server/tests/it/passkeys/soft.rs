//! A software passkey: a P-256 key held by the test, answering WebAuthn
//! ceremonies as a browser and its authenticator would, with the CBOR and
//! the client data built by hand, so that each test can change what a real
//! authenticator never would (the counter, the origin, the flags).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine as _};
use ring::{
    rand::SystemRandom,
    signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING},
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::ORIGIN;

/// User present, user verified, backup eligible, backed up, attested data.
const UP: u8 = 0x01;
const UV: u8 = 0x04;
const BE: u8 = 0x08;
const BS: u8 = 0x10;
const AT: u8 = 0x40;

pub(super) struct SoftPasskey {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    pub(super) credential_id: Vec<u8>,
    pub(super) counter: u32,
    /// The user handle it was registered with.
    pub(super) user_handle: Vec<u8>,
    /// Whether it verifies its user (a PIN, a fingerprint).
    pub(super) verifies: bool,
    pub(super) backup_eligible: bool,
    /// What the browser puts in the client data, and the id whose hash the
    /// authenticator data carries.
    pub(super) origin: String,
    pub(super) rp_id: String,
}

impl SoftPasskey {
    pub(super) fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).expect("key");
        let mut credential_id = vec![0u8; 16];
        ring::rand::SecureRandom::fill(&rng, &mut credential_id).expect("random");
        Self {
            key,
            rng,
            credential_id,
            counter: 0,
            user_handle: Vec::new(),
            verifies: true,
            backup_eligible: false,
            origin: ORIGIN.to_owned(),
            rp_id: "sesame.test".to_owned(),
        }
    }

    fn flags(&self) -> u8 {
        let mut flags = UP;
        if self.verifies {
            flags |= UV;
        }
        if self.backup_eligible {
            flags |= BE | BS;
        }
        flags
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": false}))
            .expect("json")
    }

    /// `navigator.credentials.create()` with `options` (`{"publicKey": …}`).
    pub(super) fn create(&mut self, options: &Value) -> Value {
        let public = &options["publicKey"];
        let challenge = public["challenge"].as_str().expect("challenge");
        self.user_handle = B64.decode(public["user"]["id"].as_str().expect("user id")).expect("user id b64");
        let point = self.key.public_key().as_ref();
        let cose = map(&[
            (uint(1), uint(2)),
            (uint(3), neg(-7)),
            (neg(-1), uint(1)),
            (neg(-2), bytes(&point[1..33])),
            (neg(-3), bytes(&point[33..65])),
        ]);
        let mut auth_data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        auth_data.push(self.flags() | AT);
        auth_data.extend_from_slice(&self.counter.to_be_bytes());
        auth_data.extend_from_slice(&[0u8; 16]);
        auth_data.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend_from_slice(&cose);
        let attestation =
            map(&[(text("fmt"), text("none")), (text("attStmt"), map(&[])), (text("authData"), bytes(&auth_data))]);
        let id = B64.encode(&self.credential_id);
        json!({
            "id": id, "rawId": id, "type": "public-key", "extensions": {},
            "response": {
                "attestationObject": B64.encode(attestation),
                "clientDataJSON": B64.encode(self.client_data("webauthn.create", challenge)),
            },
        })
    }

    /// `navigator.credentials.get()` with `options`: the counter moves on
    /// by one first.
    pub(super) fn get(&mut self, options: &Value) -> Value {
        self.counter += 1;
        let challenge = options["publicKey"]["challenge"].as_str().expect("challenge");
        let client_data = self.client_data("webauthn.get", challenge);
        self.assertion(&client_data, self.authenticator_data())
    }

    pub(super) fn authenticator_data(&self) -> Vec<u8> {
        let mut auth_data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        auth_data.push(self.flags());
        auth_data.extend_from_slice(&self.counter.to_be_bytes());
        auth_data
    }

    /// An assertion over `auth_data` and `client_data` as given, signed.
    pub(super) fn assertion(&self, client_data: &[u8], auth_data: Vec<u8>) -> Value {
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(client_data));
        let signature = self.key.sign(&self.rng, &signed).expect("sign");
        let id = B64.encode(&self.credential_id);
        json!({
            "id": id, "rawId": id, "type": "public-key", "extensions": {},
            "response": {
                "authenticatorData": B64.encode(auth_data),
                "clientDataJSON": B64.encode(client_data),
                "signature": B64.encode(signature.as_ref()),
                "userHandle": B64.encode(&self.user_handle),
            },
        })
    }
}

fn head(major: u8, n: u64) -> Vec<u8> {
    let major = major << 5;
    match n {
        0..=23 => vec![major | n as u8],
        24..=0xff => vec![major | 24, n as u8],
        0x100..=0xffff => {
            let mut v = vec![major | 25];
            v.extend_from_slice(&(n as u16).to_be_bytes());
            v
        }
        _ => {
            let mut v = vec![major | 26];
            v.extend_from_slice(&(n as u32).to_be_bytes());
            v
        }
    }
}

fn uint(n: u64) -> Vec<u8> {
    head(0, n)
}

fn neg(n: i64) -> Vec<u8> {
    head(1, (-1 - n) as u64)
}

fn bytes(b: &[u8]) -> Vec<u8> {
    let mut v = head(2, b.len() as u64);
    v.extend_from_slice(b);
    v
}

fn text(t: &str) -> Vec<u8> {
    let mut v = head(3, t.len() as u64);
    v.extend_from_slice(t.as_bytes());
    v
}

fn map(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut v = head(5, entries.len() as u64);
    for (k, value) in entries {
        v.extend_from_slice(k);
        v.extend_from_slice(value);
    }
    v
}
