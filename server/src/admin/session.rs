//! Admin sign-in for the web page: session cookies, CSRF tokens, and the
//! checks every admin form goes through.
//!
//! The session cookie holds 256 random bits; the database keeps only their
//! SHA-256, so a leaked database does not hand out sessions. Each session has
//! its own CSRF token, which every form repeats in a hidden field. Before
//! there is a session, the sign-in form is protected by a double-submit
//! cookie, so that another site cannot sign a browser in to this admin page
//! (login CSRF).

use std::fmt;

use axum::http::{header, HeaderMap, HeaderValue};
use base64::Engine as _;
use rand::{rngs::OsRng, RngCore as _};
use sha2::{Digest as _, Sha256};

use crate::{
    db::Db,
    error::{Error, Result},
    state::Settings,
};

/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "sesame_admin";
/// The double-submit cookie that guards the sign-in form.
pub(crate) const PRE_SESSION_COOKIE: &str = "sesame_admin_csrf";
/// An admin session lasts 12 hours, then the admin signs in again.
pub(crate) const SESSION_SECS: i64 = 12 * 60 * 60;
/// The sign-in form's CSRF cookie lasts an hour; an older form is reloaded.
pub(crate) const PRE_SESSION_SECS: i64 = 60 * 60;

/// 32 random bytes as base64url (43 characters).
pub(crate) fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Compares two secrets in constant time by comparing their SHA-256 digests:
/// where two digests first differ says nothing about the secrets.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// Our secrets are base64url of 32 bytes; any other cookie value is ignored
/// rather than looked up or echoed into a page.
pub(crate) fn well_formed(secret: &str) -> bool {
    secret.len() == 43 && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The value of cookie `name`, if the request carries it.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// A `Set-Cookie` value for the admin pages: HttpOnly, SameSite=Strict, only
/// sent under /admin, and Secure whenever the public origin is HTTPS. A
/// `max_age` of 0 deletes the cookie.
pub(crate) fn set_cookie(settings: &Settings, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if settings.secure_cookies() { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age={max_age}{secure}"))
        .expect("cookie values are base64url and names are constants")
}

/// Refuses a request whose `Origin` header names another site. Browsers send
/// it on every cross-site POST, so this stops forged forms even where
/// SameSite cookies are not enforced. A request without it (an old browser,
/// a script) is left to the CSRF token.
pub(crate) fn check_origin(settings: &Settings, headers: &HeaderMap) -> Result<()> {
    match headers.get(header::ORIGIN) {
        Some(origin) if origin.as_bytes() != settings.origin.as_str().as_bytes() => Err(Error::CsrfRejected),
        _ => Ok(()),
    }
}

/// A live admin session.
pub(crate) struct AdminSession {
    id_hash: Vec<u8>,
    csrf_token: String,
}

impl AdminSession {
    /// Starts a session and returns it with the cookie value that names it.
    pub(crate) async fn create(db: &Db, now: i64) -> Result<(String, Self)> {
        // Sign-ins are rare, so this is a cheap moment to forget old sessions.
        sqlx::query("DELETE FROM admin_session WHERE expires_at <= $1").bind(now).execute(&db.pool).await?;
        let cookie = random_secret();
        let session = Self { id_hash: hash(&cookie), csrf_token: random_secret() };
        sqlx::query("INSERT INTO admin_session (id_hash, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(&session.id_hash)
            .bind(&session.csrf_token)
            .bind(now)
            .bind(now + SESSION_SECS)
            .execute(&db.pool)
            .await?;
        Ok((cookie, session))
    }

    /// The session named by the request's cookie, if it is live.
    pub(crate) async fn find(db: &Db, headers: &HeaderMap, now: i64) -> Result<Option<Self>> {
        let Some(cookie) = cookie(headers, SESSION_COOKIE).filter(|c| well_formed(c)) else {
            return Ok(None);
        };
        let id_hash = hash(cookie);
        let csrf_token: Option<String> =
            sqlx::query_scalar("SELECT csrf_token FROM admin_session WHERE id_hash = $1 AND expires_at > $2")
                .bind(&id_hash)
                .bind(now)
                .fetch_optional(&db.pool)
                .await?;
        Ok(csrf_token.map(|csrf_token| Self { id_hash, csrf_token }))
    }

    /// The token every form of this session must send back.
    pub(crate) fn csrf_token(&self) -> &str {
        &self.csrf_token
    }

    pub(crate) fn check_csrf(&self, presented: &str) -> Result<()> {
        if same_secret(presented, &self.csrf_token) {
            Ok(())
        } else {
            Err(Error::CsrfRejected)
        }
    }

    /// Ends the session on the server, so a copied cookie dies with it.
    pub(crate) async fn end(self, db: &Db) -> Result<()> {
        sqlx::query("DELETE FROM admin_session WHERE id_hash = $1").bind(&self.id_hash).execute(&db.pool).await?;
        Ok(())
    }
}

impl fmt::Debug for AdminSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminSession(<redacted>)")
    }
}

fn hash(cookie: &str) -> Vec<u8> {
    Sha256::digest(cookie.as_bytes()).to_vec()
}
