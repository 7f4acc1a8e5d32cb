//! The register, login and deny bodies: JSON decoding, then verification
//! against the vectors' token, secret and account key.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_proto::{DenyRequest, LoginRequest, RegisterRequest};
use sesame_proto_fuzz::{account_key, check_token, code_secret, NOW, WINDOW};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<RegisterRequest>(data) {
        if let Ok(token) = check_token(&request.token, NOW) {
            if let Ok(fresh) = code_secret().verify(&token, NOW, WINDOW) {
                if let Ok(verified) = request.verify(fresh) {
                    assert_eq!(verified.account().as_str(), request.account);
                    assert_eq!(verified.public_key().to_base64(), request.public_key);
                }
            }
        }
    }
    if let Ok(request) = serde_json::from_slice::<LoginRequest>(data) {
        let _ = request.account();
        if let Ok(token) = check_token(&request.token, NOW) {
            if let Ok(fresh) = code_secret().verify(&token, NOW, WINDOW) {
                if let Ok(verified) = request.verify(fresh, account_key()) {
                    assert_eq!(verified.account().as_str(), request.account);
                }
            }
        }
    }
    if let Ok(request) = serde_json::from_slice::<DenyRequest>(data) {
        if let Ok(token) = check_token(&request.token, NOW) {
            if let Ok(fresh) = code_secret().verify(&token, NOW, WINDOW) {
                if let Ok(verified) = request.verify(fresh) {
                    assert_eq!(verified.public_key().to_base64(), request.public_key);
                }
            }
        }
    }
});
