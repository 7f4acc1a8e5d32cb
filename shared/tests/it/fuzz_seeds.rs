//! Seed corpora for the cargo fuzz targets of `shared/fuzz`, made from the
//! vectors, so that fuzzing starts from inputs that reach every check.
//!
//! The test checks that every target gets seeds and that the valid ones are
//! accepted. With `SESAME_FUZZ_CORPUS=<dir>` it also writes them to
//! `<dir>/<target>/`, which is how `scripts/test` seeds a fuzzing run; the
//! corpora are generated, never committed.

use std::{collections::BTreeMap, path::Path};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde_json::{json, Value};
use sesame_proto::{AccountPublicKey, Origin, UnverifiedToken};

const VECTORS: &str = include_str!("../../vectors/protocol.json");

/// Origins beyond the one in the vectors: the edges of PROTOCOL.md §2.1.
const ORIGINS: &[&str] = &[
    "http://127.0.0.1:8080",
    "http://localhost",
    "http://[::1]:9000",
    "http://[::ffff:7f00:1]",
    "http://[1:0:0:1::1]",
    "https://a-b.example:65535",
    "http://[::ffff:127.0.0.1]",
    "http://[1:2:3:4:5:6:7:8:9]",
    "http://a:+80",
    "http://127.1",
    "https://login..example.com",
];

fn seeds() -> BTreeMap<&'static str, Vec<Vec<u8>>> {
    let v: Value = serde_json::from_str(VECTORS).expect("protocol.json parses");
    let text = |value: &Value| value.as_str().expect("a string").to_owned();
    let mut seeds: BTreeMap<&'static str, Vec<Vec<u8>>> = BTreeMap::new();
    let mut add = |target, bytes: Vec<u8>| seeds.entry(target).or_default().push(bytes);

    let token = text(&v["token"]["text"]);
    add("token", token.clone().into_bytes());
    add("token", text(&v["token"]["base_token"]).into_bytes());
    for case in v["invalid_tokens"].as_array().expect("invalid_tokens") {
        add("token", text(&case["token"]).into_bytes());
    }

    let requests = v["responses"].as_array().expect("responses").iter();
    for request in requests.chain(v["invalid_responses"].as_array().expect("invalid_responses")) {
        add("answer", request["request"].to_string().into_bytes());
        if let Some(key) = request["request"]["public_key"].as_str() {
            add("public_key", URL_SAFE_NO_PAD.decode(key).unwrap_or_else(|_| key.as_bytes().to_vec()));
        }
    }

    let claims = &v["token"]["claims"];
    add("json_bodies", json!({ "token": token }).to_string().into_bytes());
    add(
        "json_bodies",
        json!({
            "challenge_id": claims["challenge_id"], "origin": claims["origin"], "service_id": claims["service_id"],
            "service_name": claims["service_name"], "status": "pending", "ip": "203.0.113.7",
            "user_agent": "Mozilla/5.0", "requested_at": claims["issued_at"], "expires_at": claims["expires_at"],
        })
        .to_string()
        .into_bytes(),
    );
    add("json_bodies", br#"{"status":"completed","purpose":"login","account":"alice"}"#.to_vec());
    add("json_bodies", br#"{"error":"bad_code","message":"the token's code is not valid"}"#.to_vec());
    add(
        "json_bodies",
        json!({ "version": 1, "origin": claims["origin"], "key_id": v["server"]["key_id"],
                "public_key": v["server"]["public_key_b64"] })
        .to_string()
        .into_bytes(),
    );
    add("json_bodies", br#""cancelled""#.to_vec());

    add("origin", text(&claims["origin"]).into_bytes());
    for origin in ORIGINS {
        add("origin", origin.as_bytes().to_vec());
    }
    add("public_key", URL_SAFE_NO_PAD.decode(text(&v["server"]["public_key_b64"])).expect("base64url"));
    seeds
}

#[test]
fn fuzz_seeds_cover_every_target_and_start_from_accepted_inputs() {
    let seeds = seeds();
    let targets: Vec<&str> = seeds.keys().copied().collect();
    assert_eq!(targets, ["answer", "json_bodies", "origin", "public_key", "token"]);
    assert!(seeds.values().all(|s| s.len() >= 3), "every target has several seeds");
    let first = |target: &str| String::from_utf8(seeds[target][0].clone()).unwrap();
    UnverifiedToken::parse(&first("token")).expect("the first token seed is the valid vector token");
    Origin::parse(&first("origin")).expect("the first origin seed is valid");
    AccountPublicKey::from_bytes(&seeds["public_key"][0]).expect("the first key seed is the registered key");

    if let Some(dir) = std::env::var_os("SESAME_FUZZ_CORPUS") {
        for (target, inputs) in &seeds {
            let dir = Path::new(&dir).join(target);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, input) in inputs.iter().enumerate() {
                std::fs::write(dir.join(format!("vector-{i:03}")), input).unwrap();
            }
        }
    }
}
