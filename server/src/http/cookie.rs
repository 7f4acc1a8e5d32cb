//! Cookies, the random secrets they carry, and the same-origin check that
//! goes with every cookie-authenticated POST.
//!
//! Every secret cookie holds 256 random bits as base64url; the database keeps
//! only their SHA-256, so a leaked database hands out no binding, session or
//! admin session.
//!
//! Every attribute is decided here, once. On an HTTPS origin each name takes
//! the `__Host-` prefix, which browsers accept only from this exact host,
//! over HTTPS, with `Path=/` and no `Domain`: a sibling subdomain or a
//! plain-HTTP response cannot plant or overwrite such a cookie. That is what
//! stops a planted value from fixing a victim's binding or session in
//! advance; the server also never adopts a value a request brings, but mints
//! each one fresh.

use axum::http::{header, HeaderMap, HeaderValue};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine as _};
use rand::{rngs::OsRng, RngCore as _};
use sha2::{Digest as _, Sha256};

use sesame_proto::Origin;

use crate::error::{Error, Result};

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

/// The value of our cookie `base` (see [`name`]) if it is a secret this
/// server could have made; anything else is ignored rather than looked up,
/// reused or echoed.
pub fn secret<'h>(origin: &Origin, headers: &'h HeaderMap, base: &str) -> Option<&'h str> {
    get(headers, &name(origin, base)).filter(|v| is_secret(v))
}

/// The name a cookie goes by: `base`, with the `__Host-` prefix whenever the
/// public origin is HTTPS.
pub fn name(origin: &Origin, base: &str) -> String {
    if origin.is_https() {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

/// How far a cookie follows cross-site navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Never sent on a request another site starts.
    Strict,
    /// Also sent on top-level links from other sites, so that following a
    /// link to a service's page finds its session.
    Lax,
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

/// A `Set-Cookie` value for our cookie `base`: always HttpOnly and
/// `Path=/`, `Secure` (and `__Host-`) whenever the public origin is HTTPS.
/// `max_age` is in seconds.
pub fn set(origin: &Origin, base: &str, value: &str, same_site: SameSite, max_age: i64) -> HeaderValue {
    let same_site = match same_site {
        SameSite::Strict => "Strict",
        SameSite::Lax => "Lax",
    };
    let name = name(origin, base);
    let secure = if origin.is_https() { "; Secure" } else { "" };
    let text = format!("{name}={value}; HttpOnly; SameSite={same_site}; Path=/; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&text).expect("cookie names are ids and constants, values base64url")
}

/// The `Set-Cookie` value that deletes our cookie `base`: the same name and
/// attributes as [`set`], so browsers match and drop it.
pub fn clear(origin: &Origin, base: &str, same_site: SameSite) -> HeaderValue {
    set(origin, base, "", same_site, 0)
}

/// Refuses a request whose `Origin` header names another site. Browsers send
/// it on every cross-site POST, so this stops forged forms even where
/// SameSite cookies are not enforced. A request without it (an old browser,
/// a script) is left to the other defences.
pub fn check_origin(ours: &Origin, headers: &HeaderMap) -> Result<()> {
    match headers.get(header::ORIGIN) {
        Some(origin) if origin.as_bytes() != ours.as_str().as_bytes() => Err(Error::CsrfRejected),
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

    fn origin(text: &str) -> Origin {
        Origin::parse(text).unwrap()
    }

    #[test]
    fn only_well_formed_secrets_are_taken() {
        let good = new_secret();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("s={good}; t=<script>")).unwrap());
        let http = origin("http://127.0.0.1:8080");
        assert_eq!(secret(&http, &headers, "s"), Some(good.as_str()));
        assert_eq!(secret(&http, &headers, "t"), None);
    }

    #[test]
    fn https_cookies_take_the_host_prefix_and_ignore_unprefixed_ones() {
        let https = origin("https://login.example.com");
        let set = set(&https, "sesame_admin", "v", SameSite::Strict, 60);
        assert_eq!(set, "__Host-sesame_admin=v; HttpOnly; SameSite=Strict; Path=/; Max-Age=60; Secure");
        // A cookie planted without the prefix (from a sibling subdomain, or
        // over plain HTTP) is not ours.
        let planted = new_secret();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("sesame_admin={planted}")).unwrap());
        assert_eq!(secret(&https, &headers, "sesame_admin"), None);
    }

    #[test]
    fn plain_http_cookies_have_no_prefix_and_no_secure_flag() {
        let http = origin("http://127.0.0.1:8080");
        assert_eq!(
            clear(&http, "sesame_admin", SameSite::Lax),
            "sesame_admin=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0"
        );
    }
}
