//! What the fuzz targets share: the keys, code secret and clock of
//! `shared/vectors/protocol.json`, so that inputs seeded from the vectors get
//! past the signature and reach the checks behind it.

use std::sync::OnceLock;

use sesame_proto::{
    AccountKey, AccountPublicKey, Error, FreshnessSecret, ServerKey, ServerPublicKey, Token, UnixTime, UnverifiedToken,
};

/// The vectors' `now` and `code_window`.
pub const NOW: UnixTime = UnixTime::from_secs(1_767_225_610);
pub const WINDOW: u64 = 30;

/// The fixture's seeds: byte i of seed `label` is `label × 31 + i`.
fn seed(label: u8) -> [u8; 32] {
    std::array::from_fn(|i| label.wrapping_mul(31).wrapping_add(i as u8))
}

pub fn server_key() -> &'static ServerPublicKey {
    static KEY: OnceLock<ServerPublicKey> = OnceLock::new();
    KEY.get_or_init(|| ServerKey::from_seed(&seed(1)).public_key())
}

pub fn account_key() -> &'static AccountPublicKey {
    static KEY: OnceLock<AccountPublicKey> = OnceLock::new();
    KEY.get_or_init(|| AccountKey::from_seed(&seed(4)).public_key())
}

pub fn code_secret() -> &'static FreshnessSecret {
    static SECRET: OnceLock<FreshnessSecret> = OnceLock::new();
    SECRET.get_or_init(|| FreshnessSecret::from_bytes(seed(3)))
}

/// What the server checks of a token before it looks at the challenge, as
/// in PROTOCOL.md §3.4, with the server's zero leeway.
pub fn check_token(text: &str, now: UnixTime) -> Result<Token, Error> {
    let token = UnverifiedToken::parse(text)?.verify(server_key())?;
    token.check_lifetime(now, 0)?;
    Ok(token)
}
