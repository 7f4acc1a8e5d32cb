//! One test per protocol property, named for what it shows. Each asserts the
//! exact error, not just that something failed.

use sesame_proto::{
    AccountName, DenyRequest, Error, FreshnessSecret, LoginRequest, RegisterRequest, ServerPublicKey, UnixTime,
    UnverifiedToken,
};

use crate::fixture::{self, check_response, check_token, response_cases, token_cases, NOW, WINDOW};

fn token_case(name: &str) -> Result<(), Error> {
    let case = token_cases().into_iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no case {name}"));
    let result = check_token(&case.token, &fixture::server_key().public_key(), case.now).map(drop);
    assert_eq!(result, Err(case.error.clone()), "case {name}");
    result
}

fn response_case(name: &str) -> Result<(), Error> {
    let case = response_cases().into_iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no case {name}"));
    let result = check_response(&case.purpose, &case.request);
    assert_eq!(result, Err(case.error.clone()), "case {name}");
    result
}

// Property 1: the server signs every token; its fields cannot be changed.

#[test]
fn accepts_genuine_token_with_fresh_code() {
    let token = check_token(&fixture::token_text(), &fixture::server_key().public_key(), NOW).expect("genuine");
    assert_eq!(token.claims(), &fixture::claims(0xa1, "Example Mail"));
    assert_eq!(token.step(), 3);
}

#[test]
fn rejects_tampered_service_name() {
    assert_eq!(token_case("tampered_service_name"), Err(Error::BadTokenSignature));
}

#[test]
fn rejects_tampered_service_id() {
    assert_eq!(token_case("tampered_service_id"), Err(Error::BadTokenSignature));
}

#[test]
fn rejects_tampered_signature() {
    assert_eq!(token_case("tampered_signature"), Err(Error::BadTokenSignature));
}

#[test]
fn rejects_token_signed_by_another_server() {
    assert_eq!(token_case("other_server_key"), Err(Error::UnknownSigningKey));
}

#[test]
fn rejects_forgery_that_claims_the_right_key_id() {
    assert_eq!(token_case("forged_with_our_key_id"), Err(Error::BadTokenSignature));
}

#[test]
fn the_issuing_server_recognises_its_own_token_without_verifying_again() {
    let key = fixture::server_key().public_key();
    let unverified = UnverifiedToken::parse(&fixture::token_text()).expect("decodes");
    assert_eq!(unverified.claimed_challenge_id(), fixture::claims(0xa1, "Example Mail").challenge_id);
    let token = unverified.verify_as_issued(&fixture::base_token(), &key).expect("the stored base matches");
    assert_eq!(token, fixture::token());
}

#[test]
fn a_forgery_checked_against_the_stored_base_still_fails_its_signature() {
    // The stored base belongs to the same challenge, but the presented text
    // differs from it, so it is verified in full and fails as `verify` would.
    for (name, error) in [
        ("tampered_service_name", Error::BadTokenSignature),
        ("tampered_signature", Error::BadTokenSignature),
        ("forged_with_our_key_id", Error::BadTokenSignature),
        ("other_server_key", Error::UnknownSigningKey),
    ] {
        let case = token_cases().into_iter().find(|c| c.name == name).expect("the case exists");
        let unverified = UnverifiedToken::parse(&case.token).expect("decodes");
        let result = unverified.verify_as_issued(&fixture::base_token(), &fixture::server_key().public_key());
        assert_eq!(result.map(drop), Err(error), "case {name}");
    }
}

#[test]
fn a_stored_base_under_another_key_is_refused() {
    let base = fixture::base_token();
    let other = fixture::other_server_key().public_key();
    assert_eq!(
        sesame_proto::BaseToken::from_stored(base.as_str().to_owned(), &other).map(drop),
        Err(Error::UnknownSigningKey)
    );
    let same = sesame_proto::BaseToken::from_stored(base.as_str().to_owned(), &fixture::server_key().public_key());
    assert_eq!(same, Ok(base));
}

#[test]
fn token_for_a_typical_service_fits_in_300_characters() {
    let text = fixture::token_text();
    assert!(text.len() <= 300, "{} characters", text.len());
}

#[test]
fn tokens_carry_128_bit_nonces_that_make_them_unique() {
    let mut claims = fixture::claims(0xa1, "Example Mail");
    let a = fixture::server_key().issue(claims.clone()).unwrap();
    claims.nonce.0[15] ^= 1;
    let b = fixture::server_key().issue(claims).unwrap();
    assert_ne!(a.as_str(), b.as_str());
    assert_eq!(std::mem::size_of_val(&a.claims().nonce.0), 16);
}

// Strict decoding.

#[test]
fn rejects_truncated_token() {
    assert_eq!(token_case("truncated_body"), Err(Error::Truncated));
    assert_eq!(token_case("missing_code"), Err(Error::Truncated));
    assert_eq!(token_case("short_code"), Err(Error::Truncated));
}

#[test]
fn rejects_trailing_bytes() {
    assert_eq!(token_case("trailing_bytes"), Err(Error::TrailingBytes));
    assert_eq!(token_case("long_code"), Err(Error::TrailingBytes));
}

#[test]
fn rejects_non_canonical_base64() {
    assert_eq!(token_case("padded_base64"), Err(Error::BadEncoding));
    assert_eq!(token_case("standard_alphabet"), Err(Error::BadEncoding));
}

#[test]
fn rejects_non_zero_trailing_bits() {
    // Two base64 characters carry 12 bits for one byte: the last 4 must be 0.
    let text = fixture::token_text();
    let (base, fresh) = text.rsplit_once('.').unwrap();
    let last = fresh.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let index = alphabet.find(last).unwrap();
    let sibling = alphabet.chars().nth(index ^ 1).unwrap();
    let tweaked = format!("{base}.{}{sibling}", &fresh[..fresh.len() - 1]);
    assert_eq!(UnverifiedToken::parse(&tweaked).map(drop), Err(Error::BadEncoding));
}

#[test]
fn rejects_other_prefixes_and_versions() {
    assert_eq!(token_case("wrong_prefix"), Err(Error::NotAToken));
    assert_eq!(token_case("unsupported_version"), Err(Error::UnsupportedVersion(2)));
    assert_eq!(UnverifiedToken::parse("hello").map(drop), Err(Error::NotAToken));
}

#[test]
fn rejects_oversized_token_before_decoding() {
    assert_eq!(token_case("too_long"), Err(Error::TokenTooLong));
}

#[test]
fn rejects_non_canonical_origin_and_bad_rotation() {
    assert_eq!(token_case("uppercase_origin"), Err(Error::InvalidOrigin));
    assert_eq!(token_case("zero_rotation"), Err(Error::InvalidRotation));
}

#[test]
fn rejects_token_whose_origin_has_an_ipv6_literal_that_is_no_address() {
    for name in ["ipv6_lone_colon", "ipv6_one_digit", "ipv6_dotted_pair", "ipv6_nine_groups"] {
        assert_eq!(token_case(name), Err(Error::InvalidOrigin), "{name}");
    }
}

#[test]
fn rejects_token_whose_ipv6_origin_is_not_in_canonical_form() {
    assert_eq!(token_case("ipv6_mixed_notation"), Err(Error::InvalidOrigin));
    assert_eq!(token_case("ipv6_not_compressed"), Err(Error::InvalidOrigin));
}

#[test]
fn rejects_token_whose_origin_port_has_a_plus_sign() {
    assert_eq!(token_case("port_with_plus"), Err(Error::InvalidOrigin));
    assert_eq!(token_case("port_plus_zero"), Err(Error::InvalidOrigin));
}

#[test]
fn rejects_token_whose_host_has_an_empty_label_or_a_short_ipv4() {
    assert_eq!(token_case("empty_label"), Err(Error::InvalidOrigin));
    assert_eq!(token_case("short_ipv4"), Err(Error::InvalidOrigin));
}

#[test]
fn text_without_the_prefix_is_not_a_token_whatever_else_is_wrong() {
    assert_eq!(token_case("too_long_without_prefix"), Err(Error::NotAToken));
    assert_eq!(token_case("not_a_token_nor_base64"), Err(Error::NotAToken));
    assert_eq!(token_case("unit_separator_is_not_white_space"), Err(Error::NotAToken));
}

#[test]
fn missing_or_empty_code_part_is_truncated_before_the_version_is_read() {
    assert_eq!(token_case("no_code_part_and_bad_version"), Err(Error::Truncated));
    assert_eq!(token_case("empty_code_part"), Err(Error::Truncated));
}

#[test]
fn both_parts_are_decoded_from_base64_before_any_byte_is_read() {
    assert_eq!(token_case("bad_version_and_bad_code_encoding"), Err(Error::BadEncoding));
}

#[test]
fn the_version_is_read_before_the_rest_of_the_layout() {
    assert_eq!(token_case("bad_version_and_truncated"), Err(Error::UnsupportedVersion(2)));
}

#[test]
fn the_whole_layout_is_read_before_any_field_is_judged() {
    assert_eq!(token_case("cut_after_expires_at_with_zero_lifetime"), Err(Error::Truncated));
    assert_eq!(token_case("bad_origin_and_short_code"), Err(Error::Truncated));
}

#[test]
fn ignores_white_space_around_a_pasted_token() {
    let text = format!("  {}\n", fixture::token_text());
    let token = check_token(&text, &fixture::server_key().public_key(), NOW).expect("trimmed");
    assert_eq!(token.as_str(), fixture::token_text());
}

// Property 3: every signed message is domain-separated and bound.

#[test]
fn accepts_genuine_register_login_and_deny() {
    let token = fixture::token();
    let key = fixture::account_key();
    let secret = fixture::code_secret();
    let fresh = secret.verify(&token, UnixTime::from_secs(NOW), WINDOW).unwrap();
    let reg = RegisterRequest::sign(&token, &fixture::alice(), &key).verify(fresh).expect("register verifies");
    assert_eq!(reg.account().as_str(), "alice");
    assert_eq!(reg.public_key(), &key.public_key());
    let login = LoginRequest::sign(&token, &fixture::alice(), &key).verify(fresh, &key.public_key()).expect("login");
    assert_eq!(login.account().as_str(), "alice");
    DenyRequest::sign(&token, &key).verify(fresh).expect("deny verifies");
}

#[test]
fn rejects_signature_for_other_purpose() {
    assert_eq!(response_case("login_signature_as_register"), Err(Error::BadSignature));
    assert_eq!(response_case("register_signature_as_login"), Err(Error::BadSignature));
    assert_eq!(response_case("deny_signature_as_login"), Err(Error::BadSignature));
}

#[test]
fn rejects_signature_for_other_service() {
    assert_eq!(response_case("login_signed_for_other_service"), Err(Error::BadSignature));
    assert_eq!(response_case("register_signed_for_other_service"), Err(Error::BadSignature));
}

#[test]
fn rejects_signature_for_other_origin() {
    assert_eq!(response_case("login_signed_for_other_origin"), Err(Error::BadSignature));
}

#[test]
fn rejects_signature_for_other_account() {
    assert_eq!(response_case("login_for_other_account"), Err(Error::BadSignature));
}

#[test]
fn rejects_signature_for_other_token_text() {
    assert_eq!(response_case("login_signed_for_other_step"), Err(Error::BadSignature));
}

#[test]
fn rejects_login_by_another_key() {
    let token = fixture::token();
    let fresh = fixture::code_secret().verify(&token, UnixTime::from_secs(NOW), WINDOW).unwrap();
    let intruder = sesame_proto::AccountKey::from_seed(&fixture::seed(8));
    let request = LoginRequest::sign(&token, &fixture::alice(), &intruder);
    assert_eq!(request.verify(fresh, &fixture::account_key().public_key()).map(drop), Err(Error::BadSignature));
}

#[test]
fn rejects_public_key_whose_y_is_not_reduced_modulo_p() {
    assert_eq!(response_case("unreduced_public_key"), Err(Error::InvalidPublicKey));
    assert_eq!(response_case("unreduced_deny_key"), Err(Error::InvalidPublicKey));
}

#[test]
fn rejects_public_key_with_x_zero_and_the_sign_bit_set() {
    assert_eq!(response_case("negative_zero_x_public_key"), Err(Error::InvalidPublicKey));
}

#[test]
fn rejects_weak_or_malformed_keys_and_signatures() {
    assert_eq!(response_case("weak_public_key"), Err(Error::WeakPublicKey));
    assert_eq!(response_case("short_public_key"), Err(Error::InvalidPublicKey));
    assert_eq!(response_case("short_signature"), Err(Error::InvalidSignatureEncoding));
    assert_eq!(response_case("account_name_with_newline"), Err(Error::InvalidAccountName));
}

// Property 5: freshness and expiry, against an injected clock.

#[test]
fn rejects_expired_token() {
    assert_eq!(token_case("expired"), Err(Error::Expired));
}

#[test]
fn rejects_token_from_the_future() {
    assert_eq!(token_case("not_yet_valid"), Err(Error::NotYetValid));
}

#[test]
fn rejects_code_older_than_the_window() {
    assert_eq!(token_case("stale_code"), Err(Error::StaleCode));
    // The same code one second earlier is still inside the window.
    let base = fixture::base_token();
    let text = base.at_step(&fixture::code_secret(), 0);
    check_token(&text, &fixture::server_key().public_key(), fixture::ISSUED_AT + 30).expect("inside the window");
}

#[test]
fn rejects_code_made_with_another_secret() {
    assert_eq!(token_case("code_under_other_secret"), Err(Error::BadCode));
}

#[test]
fn rejects_code_for_a_step_not_yet_shown() {
    assert_eq!(token_case("future_code"), Err(Error::BadCode));
}

#[test]
fn code_changes_every_step_while_the_signed_part_stays() {
    let base = fixture::base_token();
    let secret = fixture::code_secret();
    let texts: Vec<String> = (0..5).map(|step| base.at_step(&secret, step)).collect();
    for pair in texts.windows(2) {
        assert_ne!(pair[0], pair[1]);
        assert_eq!(pair[0].rsplit_once('.').unwrap().0, pair[1].rsplit_once('.').unwrap().0);
    }
    assert_eq!(base.step_at(UnixTime::from_secs(fixture::ISSUED_AT + 7)), 2);
}

#[test]
fn lifetime_sums_are_exact_at_the_end_of_time() {
    let mut claims = fixture::claims(0xa1, "Example Mail");
    claims.issued_at = UnixTime::from_secs(u64::MAX - 300);
    claims.expires_at = UnixTime::from_secs(u64::MAX - 10);
    let base = fixture::server_key().issue(claims).unwrap();
    let text = base.at_step(&fixture::code_secret(), 0);
    let token = UnverifiedToken::parse(&text).unwrap().verify(&fixture::server_key().public_key()).unwrap();
    // expires_at + 60 is 2^64 + 49: later than every u64 `now`, so not
    // expired; a saturating sum would stop at 2^64 − 1 and say it was.
    assert_eq!(token.check_lifetime(UnixTime::from_secs(u64::MAX), 60), Ok(()));
    assert_eq!(token.check_lifetime(UnixTime::from_secs(u64::MAX), 0), Err(Error::Expired));
    assert_eq!(token.check_lifetime(UnixTime::from_secs(u64::MAX - 361), 60), Err(Error::NotYetValid));
}

#[test]
fn code_whose_step_lies_past_the_end_of_time_is_not_genuine() {
    assert_eq!(token_case("code_step_past_end_of_time"), Err(Error::BadCode));
    assert_eq!(token_case("expired_at_end_of_time"), Err(Error::Expired));
}

#[test]
fn rejects_challenge_lifetime_over_ten_minutes() {
    assert_eq!(token_case("lifetime_too_long"), Err(Error::LifetimeTooLong));
    let mut claims = fixture::claims(0xa1, "Example Mail");
    claims.expires_at = claims.issued_at.saturating_add(601);
    assert_eq!(fixture::server_key().issue(claims).map(drop), Err(Error::LifetimeTooLong));
}

// Property 9: strict verification, proof types, redacted secrets.

#[test]
fn refuses_small_order_key_that_loose_verification_would_accept() {
    // With A = R = the identity point and S = 0, the cofactored equation
    // [S]B = R + [k]A holds for every message: a "signature" that proves
    // nothing. `verify_strict` and our key parsing both refuse it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let loose = ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap();
    let mut sig = [0u8; 64];
    sig[0] = 1;
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    assert!(loose.verify_strict(b"anything", &sig).is_err());
    assert_eq!(ServerPublicKey::from_bytes(&identity).map(drop), Err(Error::WeakPublicKey));
}

#[test]
fn debug_output_never_shows_secrets() {
    let secret = FreshnessSecret::from_bytes([0xee; 32]);
    let text = format!("{secret:?} {:?} {:?}", fixture::server_key(), fixture::account_key());
    assert!(!text.contains("238") && !text.contains("ee, ee") && !text.contains("eeee"), "{text}");
    assert_eq!(text.matches("<redacted>").count(), 3, "{text}");
}

#[test]
fn account_names_with_markup_are_kept_verbatim_for_escaping_later() {
    let name = AccountName::parse("<script>alert(1)</script>").unwrap();
    assert_eq!(name.as_str(), "<script>alert(1)</script>");
}
