//! RFC 8032 §7.1: the Ed25519 implementation under the protocol is the
//! standard one.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    secret_key: String,
    public_key: String,
    message: String,
    signature: String,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("../../vectors/rfc8032.json");
    serde_json::from_str::<File>(text).expect("rfc8032.json parses").vectors
}

#[test]
fn rfc8032_vectors_sign_and_verify_strictly() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 3);
    for v in vectors {
        let seed: [u8; 32] = hex::decode(&v.secret_key).unwrap().try_into().unwrap();
        let key = SigningKey::from_bytes(&seed);
        assert_eq!(hex::encode(key.verifying_key().as_bytes()), v.public_key, "{}: public key", v.name);
        let message = hex::decode(&v.message).unwrap();
        let signature = key.sign(&message);
        assert_eq!(hex::encode(signature.to_bytes()), v.signature, "{}: signature", v.name);
        let public: [u8; 32] = hex::decode(&v.public_key).unwrap().try_into().unwrap();
        let public = VerifyingKey::from_bytes(&public).unwrap();
        public.verify_strict(&message, &signature).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let mut bad = message.clone();
        bad.push(0);
        assert!(public.verify_strict(&bad, &signature).is_err(), "{}: a changed message must fail", v.name);
    }
}
