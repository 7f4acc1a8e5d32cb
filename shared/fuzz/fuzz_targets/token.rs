//! The token decoder, signature check, lifetime and code checks, on any text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_proto::{Origin, UnixTime, UnverifiedToken};
use sesame_proto_fuzz::{check_token, code_secret, server_key, NOW, WINDOW};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(parsed) = UnverifiedToken::parse(text) else { return };
    // What decoding accepts is canonical: its origin is an origin on its own.
    let origin = parsed.claimed_origin().clone();
    assert_eq!(Origin::parse(origin.as_str()), Ok(origin));
    let Ok(token) = parsed.verify(server_key()) else { return };
    // The kept text is the input without its white space, and decodes to
    // the same claims.
    assert_eq!(token.as_str(), text.chars().filter(|c| !c.is_whitespace()).collect::<String>());
    let again = check_token(token.as_str(), token.claims().issued_at);
    assert_eq!(again.as_ref().map(|t| t.claims()), Ok(token.claims()));
    for now in [NOW, UnixTime::from_secs(0), UnixTime::from_secs(u64::MAX)] {
        for leeway in [0, 60, u64::MAX] {
            let _ = token.check_lifetime(now, leeway);
        }
        if let Ok(fresh) = code_secret().verify(&token, now, WINDOW) {
            assert!(fresh.token().shown_at().is_some_and(|shown| shown <= now));
        }
    }
});
