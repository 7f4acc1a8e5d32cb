//! Cookies, the random secrets they carry, and the same-origin check that
//! goes with every cookie-authenticated POST.
//!
//! Every secret cookie holds 256 random bits as base64url; the database keeps
//! only their SHA-256, so a leaked database hands out no binding, session or
//! admin session.

use axum::http::{header, HeaderMap, HeaderValue};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine as _};
use rand::{rngs::OsRng, RngCore as _};
use sha2::{Digest as _, Sha256};

use crate::{
    error::{Error, Result},
    state::Settings,
};

/// The value of cookie `name`, from any `Cookie` header.
pub fn get<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// The value of cookie `name` if it is a secret this server could have made;
/// anything else is ignored rather than looked up, reused or echoed.
pub fn secret<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    get(headers, name).filter(|v| is_secret(v))
}

/// 32 random bytes, base64url (43 characters).
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    B64.encode(bytes)
}

fn is_secret(value: &str) -> bool {
    value.len() == 43 && B64.decode(value).is_ok_and(|b| b.len() == 32)
}

/// What the database stores in place of a secret.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Compares two secrets by their digests: where two digests first differ says
/// nothing about the secrets, so the comparison leaks no prefix.
pub fn same_secret(a: &str, b: &str) -> bool {
    digest(a) == digest(b)
}

/// A `Set-Cookie` value: always HttpOnly, `Secure` whenever the public
/// origin is HTTPS. `attributes` adds SameSite and Path; a `max_age` of 0
/// deletes the cookie, `None` makes it last for the browser session.
pub fn set(settings: &Settings, name: &str, value: &str, attributes: &str, max_age: Option<i64>) -> HeaderValue {
    let mut text = format!("{name}={value}; HttpOnly; {attributes}");
    if let Some(secs) = max_age {
        text.push_str(&format!("; Max-Age={secs}"));
    }
    if settings.secure_cookies() {
        text.push_str("; Secure");
    }
    HeaderValue::from_str(&text).expect("cookie names are constants, values base64url, attributes plain ASCII")
}

/// Refuses a request whose `Origin` header names another site. Browsers send
/// it on every cross-site POST, so this stops forged forms even where
/// SameSite cookies are not enforced. A request without it (an old browser,
/// a script) is left to the other defences.
pub fn check_origin(settings: &Settings, headers: &HeaderMap) -> Result<()> {
    match headers.get(header::ORIGIN) {
        Some(origin) if origin.as_bytes() != settings.origin.as_str().as_bytes() => Err(Error::CsrfRejected),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cookie_among_several_headers() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(header::COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(get(&headers, "b"), Some("2"));
        assert_eq!(get(&headers, "c"), Some("3"));
        assert_eq!(get(&headers, "d"), None);
    }

    #[test]
    fn only_well_formed_secrets_are_taken() {
        let good = new_secret();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("s={good}; t=<script>")).unwrap());
        assert_eq!(secret(&headers, "s"), Some(good.as_str()));
        assert_eq!(secret(&headers, "t"), None);
    }
}
