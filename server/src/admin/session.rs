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

use axum::http::{HeaderMap, HeaderValue};

use crate::{
    cookie,
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

/// A `Set-Cookie` value for the admin pages: HttpOnly, SameSite=Strict, only
/// sent under /admin, and Secure whenever the public origin is HTTPS. A
/// `max_age` of 0 deletes the cookie.
pub(crate) fn set_cookie(settings: &Settings, name: &str, value: &str, max_age: i64) -> HeaderValue {
    cookie::set(settings, name, value, "SameSite=Strict; Path=/admin", Some(max_age))
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
        let value = cookie::new_secret();
        let session = Self { id_hash: hash(&value), csrf_token: cookie::new_secret() };
        sqlx::query("INSERT INTO admin_session (id_hash, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(&session.id_hash)
            .bind(&session.csrf_token)
            .bind(now)
            .bind(now + SESSION_SECS)
            .execute(&db.pool)
            .await?;
        Ok((value, session))
    }

    /// The session named by the request's cookie, if it is live.
    pub(crate) async fn find(db: &Db, headers: &HeaderMap, now: i64) -> Result<Option<Self>> {
        let Some(value) = cookie::secret(headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        let id_hash = hash(value);
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
        if cookie::same_secret(presented, &self.csrf_token) {
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

fn hash(value: &str) -> Vec<u8> {
    cookie::digest(value).to_vec()
}
