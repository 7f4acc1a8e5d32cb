//! Cost of the protocol's cryptography, per operation.
//!
//! `cargo bench -p sesame-proto` prints a figure per line. It asserts nothing:
//! speed is measured here, never in tests. The server's floor for one sign-in
//! is one `issue` plus one response verification (about 105 µs on a 2-core
//! machine per the design brief); one rotation step is one `at_step`.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use sesame_proto::{
    AccountKey, AccountName, ChallengeId, FreshnessSecret, LoginRequest, Nonce, Origin, RegisterRequest, ServerKey,
    ServiceId, ServiceName, TokenClaims, UnixTime, UnverifiedToken,
};

fn measure(name: &str, mut op: impl FnMut()) {
    // Warm up, then run for about half a second.
    for _ in 0..100 {
        op();
    }
    let started = Instant::now();
    let mut runs = 0u32;
    while started.elapsed() < Duration::from_millis(500) {
        for _ in 0..100 {
            op();
        }
        runs += 100;
    }
    let per_op = started.elapsed() / runs;
    println!("{name:<44} {per_op:>10.2?}");
}

fn main() {
    let server = ServerKey::from_seed(&[1; 32]);
    let public = server.public_key();
    let secret = FreshnessSecret::from_bytes([3; 32]);
    let now = UnixTime::from_secs(1_767_225_610);
    let claims = TokenClaims {
        origin: Origin::parse("https://login.example.com").expect("valid origin"),
        service_id: ServiceId([0xa1; 16]),
        service_name: ServiceName::parse("Example Mail").expect("valid name"),
        challenge_id: ChallengeId([0xc1; 16]),
        nonce: Nonce([0x5a; 16]),
        issued_at: UnixTime::from_secs(1_767_225_600),
        expires_at: UnixTime::from_secs(1_767_225_900),
        rotation_secs: 3,
    };
    let base = server.issue(claims.clone()).expect("issues");
    let text = base.at_step(&secret, 3);
    let token = UnverifiedToken::parse(&text).expect("parses").verify(&public).expect("verifies");
    let key = AccountKey::from_seed(&[4; 32]);
    let account = AccountName::parse("alice").expect("valid name");
    let login = LoginRequest::sign(&token, &account, &key);
    let register = RegisterRequest::sign(&token, &account, &key);

    measure("issue token (Ed25519 sign)", || {
        black_box(server.issue(black_box(claims.clone())).expect("issues"));
    });
    measure("rotation step (one HMAC)", || {
        black_box(base.at_step(&secret, black_box(7)));
    });
    measure("parse + verify_strict token", || {
        black_box(UnverifiedToken::parse(black_box(&text)).expect("parses").verify(&public).expect("verifies"));
    });
    measure("check fresh code", || {
        black_box(secret.verify(black_box(&token), now, 30).expect("fresh"));
    });
    measure("verify login (verify_strict)", || {
        let fresh = secret.verify(&token, now, 30).expect("fresh");
        black_box(login.verify(fresh, &key.public_key()).expect("verifies"));
    });
    measure("verify register (key parse + verify_strict)", || {
        let fresh = secret.verify(&token, now, 30).expect("fresh");
        black_box(register.verify(fresh).expect("verifies"));
    });
    measure("server floor: issue + verify login", || {
        black_box(server.issue(claims.clone()).expect("issues"));
        let fresh = secret.verify(&token, now, 30).expect("fresh");
        black_box(login.verify(fresh, &key.public_key()).expect("verifies"));
    });
}
