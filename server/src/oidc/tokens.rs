//! The secrets the provider hands out (codes, access and refresh tokens):
//! 256 random bits each, given once and stored only as their SHA-256; and
//! the access tokens, which both a code and a refresh token issue.

use rand::{rngs::OsRng, RngCore as _};
use sha2::{Digest as _, Sha256};

use crate::{
    challenge::session::SignedIn,
    db::sql::{query, Conn},
    error::Result,
};

/// A 256-bit random value as text, and its digest for storage.
pub fn new_secret() -> (String, Vec<u8>) {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine as _};
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let text = B64.encode(bytes);
    let digest = digest(&text);
    (text, digest)
}

pub fn digest(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes()).to_vec()
}

/// Issues an access token for `who` at `client_id`, descending from the
/// code with digest `code_hash`, valid `ttl_secs` from `now`.
pub(super) async fn insert_access_token(
    conn: &mut Conn<'_>,
    code_hash: &[u8],
    client_id: &str,
    scope: &str,
    who: &SignedIn,
    (now, ttl_secs): (i64, i64),
) -> Result<String> {
    let (token, token_hash) = new_secret();
    let insert = query(
        "INSERT INTO oidc_token (token_hash, code_hash, client_id, service_id, account, key_id, scope, created_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(token_hash)
    .bind(code_hash.to_vec())
    .bind(client_id)
    .bind(who.service_id.as_str())
    .bind(who.account.as_str())
    .bind(who.key_id.as_deref())
    .bind(scope)
    .bind(now)
    .bind(now + ttl_secs);
    conn.execute(insert).await?;
    Ok(token)
}
