//! `shared/vectors/confirmation.json`: the confirmation codes of §11, as an
//! independent implementation computed them, checked against the crate.

use serde_json::Value;
use sesame_proto::{AccountKey, AccountPublicKey, ChallengeId, ConfirmationCode};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/confirmation.json");

#[test]
fn confirmation_codes_match_the_vectors() {
    let vectors: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let cases = vectors["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let challenge: ChallengeId = case["challenge_id"].as_str().unwrap().parse().unwrap();
        let key = AccountPublicKey::from_base64(case["public_key_b64"].as_str().unwrap()).unwrap();
        let code = ConfirmationCode::of(&challenge, &key);
        assert_eq!(code.digits(), case["code"].as_str().unwrap(), "{case}");
        assert_eq!(code.to_string(), case["shown"].as_str().unwrap(), "{case}");
    }
}

#[test]
fn another_key_or_another_challenge_gives_another_code() {
    let challenge: ChallengeId = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1".parse().unwrap();
    let other_challenge: ChallengeId = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c2".parse().unwrap();
    let key = AccountKey::from_seed(&[7; 32]).public_key();
    let other_key = AccountKey::from_seed(&[8; 32]).public_key();
    let code = ConfirmationCode::of(&challenge, &key);
    assert_ne!(code, ConfirmationCode::of(&challenge, &other_key));
    assert_ne!(code, ConfirmationCode::of(&other_challenge, &key));
}

#[test]
fn codes_are_always_six_digits() {
    let challenge: ChallengeId = "00000000000000000000000000000000".parse().unwrap();
    for seed in 0..64u8 {
        let code = ConfirmationCode::of(&challenge, &AccountKey::from_seed(&[seed; 32]).public_key());
        assert_eq!(code.digits().len(), 6);
        assert!(code.digits().bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(code.to_string().replace(' ', ""), code.digits());
    }
}
