//! The other JSON bodies of the protocol: what decodes must encode and
//! decode again to the same value, and a context request's token is checked
//! as the server checks it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};
use sesame_proto::wire::{ChallengeContext, ContextRequest, ErrorBody, Outcome, ServerKeyInfo, Status};
use sesame_proto_fuzz::{check_token, code_secret, NOW, WINDOW};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(data).ok()?;
    let text = serde_json::to_vec(&value).expect("a decoded body encodes");
    assert_eq!(serde_json::from_slice::<T>(&text).expect("an encoded body decodes"), value);
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    if let Some(request) = round_trip::<ContextRequest>(data) {
        if let Ok(token) = check_token(&request.token, NOW) {
            let _ = code_secret().verify(&token, NOW, WINDOW);
        }
    }
    round_trip::<ChallengeContext>(data);
    round_trip::<Outcome>(data);
    round_trip::<ErrorBody>(data);
    round_trip::<ServerKeyInfo>(data);
    if let Some(status) = round_trip::<Status>(data) {
        assert_eq!(Status::parse(status.as_str()), Some(status));
    }
});
