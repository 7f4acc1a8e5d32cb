//! Token trust tests: pinned keys, tampering and lifetimes, against a real
//! keystore file. Origins are pinned up front, so no network is used.

use sesame_proto::{
    ChallengeId, Error as ProtoError, FreshnessSecret, Nonce, Origin, ServerKey, ServiceId, ServiceName, TokenClaims,
    UnixTime,
};

use super::*;

const ISSUED: u64 = 1_767_225_600;
const ORIGIN: &str = "https://login.example.com";

fn token(key: &ServerKey, origin: &str) -> String {
    let claims = TokenClaims {
        origin: Origin::parse(origin).expect("origin"),
        service_id: ServiceId([4; 16]),
        service_name: ServiceName::parse("Example").expect("name"),
        challenge_id: ChallengeId([5; 16]),
        nonce: Nonce([6; 16]),
        issued_at: UnixTime::from_secs(ISSUED),
        expires_at: UnixTime::from_secs(ISSUED + 300),
        rotation_secs: 3,
    };
    key.issue(claims).expect("issue").at_step(&FreshnessSecret::from_bytes([7; 32]), 2)
}

async fn pinned_store(key: &ServerKey) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("sesame.db")).await.expect("open");
    let origin = Origin::parse(ORIGIN).expect("origin");
    store.add_pin(&origin, &key.public_key(), UnixTime::from_secs(ISSUED - 86_400)).await.expect("pin");
    (dir, store)
}

async fn check(store: &Store, text: &str, now: u64) -> Result<Token, Error> {
    verify(store, &ExtraRoots::default(), parse(text, false)?, UnixTime::from_secs(now)).await
}

fn proto_error(result: Result<Token, Error>) -> ProtoError {
    match result {
        Err(Error::Token(e)) => e,
        other => panic!("expected a token error, got {other:?}"),
    }
}

#[tokio::test]
async fn accepts_token_signed_by_pinned_key() {
    let key = ServerKey::from_seed(&[1; 32]);
    let (_dir, store) = pinned_store(&key).await;
    let text = token(&key, ORIGIN);
    let verified = check(&store, &text, ISSUED + 10).await.expect("valid token");
    assert_eq!(verified.as_str(), text);
    assert_eq!(verified.claims().service_name.as_str(), "Example");
}

#[tokio::test]
async fn rejects_token_signed_by_another_key_for_pinned_origin() {
    let (_dir, store) = pinned_store(&ServerKey::from_seed(&[1; 32])).await;
    let impostor = token(&ServerKey::from_seed(&[2; 32]), ORIGIN);
    match check(&store, &impostor, ISSUED + 10).await {
        Err(error @ Error::PinnedKeyChanged { .. }) => {
            let text = error.to_string();
            assert!(text.contains(ORIGIN) && text.contains(&format!("sesame unpin {ORIGIN}")), "{text}");
            assert_eq!(error.code(), "pinned_key_changed");
        }
        other => panic!("expected the pinned-key error, got {other:?}"),
    }
}

#[tokio::test]
async fn rejects_tampered_token() {
    let key = ServerKey::from_seed(&[1; 32]);
    let (_dir, store) = pinned_store(&key).await;
    let text = token(&key, ORIGIN);
    // Flip one character inside the signed part, keeping it canonical
    // base64url: 'A' and 'B' differ in a high bit of their 6.
    let position = text.find('.').expect("dot") + 40;
    let mut bytes = text.into_bytes();
    bytes[position] = if bytes[position] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).expect("ascii");
    assert_eq!(proto_error(check(&store, &tampered, ISSUED + 10).await), ProtoError::BadTokenSignature);
}

#[tokio::test]
async fn rejects_expired_token_after_leeway() {
    let key = ServerKey::from_seed(&[1; 32]);
    let (_dir, store) = pinned_store(&key).await;
    let text = token(&key, ORIGIN);
    // Within the 60 s leeway after expiry it still passes.
    check(&store, &text, ISSUED + 300 + LEEWAY_SECS - 1).await.expect("within leeway");
    assert_eq!(proto_error(check(&store, &text, ISSUED + 300 + LEEWAY_SECS).await), ProtoError::Expired);
}

#[tokio::test]
async fn rejects_token_from_the_future() {
    let key = ServerKey::from_seed(&[1; 32]);
    let (_dir, store) = pinned_store(&key).await;
    let text = token(&key, ORIGIN);
    assert_eq!(proto_error(check(&store, &text, ISSUED - LEEWAY_SECS - 1).await), ProtoError::NotYetValid);
}

#[tokio::test]
async fn rejects_malformed_tokens_with_their_codes() {
    let key = ServerKey::from_seed(&[1; 32]);
    let (_dir, store) = pinned_store(&key).await;
    let text = token(&key, ORIGIN);
    let (base, _) = text.rsplit_once('.').expect("code part");
    let cases = [
        ("hello".to_owned(), ProtoError::NotAToken),
        (format!("{text}="), ProtoError::BadEncoding),
        (base.to_owned(), ProtoError::Truncated),
        (format!("sesame1.{}", "x".repeat(600)), ProtoError::TokenTooLong),
        // The prefix is checked before the length (PROTOCOL.md §3.4).
        ("x".repeat(600), ProtoError::NotAToken),
    ];
    for (input, expected) in cases {
        assert_eq!(proto_error(check(&store, &input, ISSUED + 10).await), expected, "{input}");
    }
}

#[tokio::test]
async fn refuses_plain_http_origin_unless_loopback_or_allowed() {
    let key = ServerKey::from_seed(&[1; 32]);
    let remote = token(&key, "http://login.example.com");
    assert!(matches!(parse(&remote, false), Err(Error::InsecureOrigin(_))));
    parse(&remote, true).expect("allowed with --insecure-http");
    parse(&token(&key, "http://127.0.0.1:8080"), false).expect("loopback is fine");
}
