//! Public key decoding: an accepted key has exactly the bytes it was read
//! from, both key types agree, and a refusal is one of the two key errors.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_proto::{AccountPublicKey, Error, ServerPublicKey, Signature};

fuzz_target!(|data: &[u8]| {
    let account = AccountPublicKey::from_bytes(data);
    let server = ServerPublicKey::from_bytes(data);
    assert_eq!(account.as_ref().map(AccountPublicKey::to_bytes), server.as_ref().map(ServerPublicKey::to_bytes));
    match account {
        Ok(key) => {
            assert_eq!(&key.to_bytes()[..], data);
            assert_eq!(AccountPublicKey::from_base64(&key.to_base64()), Ok(key));
        }
        Err(error) => assert!(matches!(error, Error::InvalidPublicKey | Error::WeakPublicKey), "{error:?}"),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = AccountPublicKey::from_base64(text);
        let _ = ServerPublicKey::from_base64(text);
        let _ = Signature::from_base64(text);
    }
});
