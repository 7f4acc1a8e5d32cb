//! The origin parser: what it accepts is kept verbatim and is canonical.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_proto::{Origin, MAX_ORIGIN_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(origin) = Origin::parse(text) else { return };
    assert_eq!(origin.as_str(), text);
    assert!(text.len() <= MAX_ORIGIN_LEN);
    assert!(text.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()), "{text:?}");
    assert!(!origin.is_loopback() || text.starts_with("http://") || text.starts_with("https://"));
    let json = serde_json::to_string(&origin).expect("an origin encodes");
    assert_eq!(serde_json::from_str::<Origin>(&json).ok(), Some(origin));
});
