//! Admin sign-in for the web page: session cookies, CSRF tokens, and the
//! checks every admin form goes through.
//!
//! The session cookie holds 256 random bits; the database keeps only their
//! SHA-256, so a leaked database does not hand out sessions. Each session has
//! its own CSRF token, which every form repeats in a hidden field. Before
//! there is a session, the sign-in form is protected by a double-submit
//! cookie, so that another site cannot sign a browser in to this admin page
//! (login CSRF).
//!
//! A session lives only as long as the credential that opened it: one opened
//! by an admin authenticator names its key, and the key's removal deletes it
//! (`ON DELETE CASCADE`); one opened with the admin token records a digest of
//! that token, and is live only while the server runs with the same token.

use std::fmt;

use axum::http::{HeaderMap, HeaderValue};

use crate::{
    audit::{self, Action, Actor, By, Record},
    db::{sql::query, Db},
    error::{Error, Result},
    http::cookie::{self, SameSite},
    http::extract::ClientInfo,
    state::AppState,
    state::{AdminToken, Settings},
};

/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "sesame_admin";
/// The double-submit cookie that guards the sign-in form.
pub(crate) const PRE_SESSION_COOKIE: &str = "sesame_admin_csrf";
/// An admin session lasts 12 hours, then the admin signs in again.
pub(crate) const SESSION_SECS: i64 = 12 * 60 * 60;
/// The sign-in form's CSRF cookie lasts an hour; an older form is reloaded.
pub(crate) const PRE_SESSION_SECS: i64 = 60 * 60;

/// A `Set-Cookie` value for the admin pages: SameSite=Strict, with every
/// other attribute from [`cookie::set`]. A `max_age` of 0 deletes the cookie.
pub(crate) fn set_cookie(settings: &Settings, name: &str, value: &str, max_age: i64) -> HeaderValue {
    cookie::set(&settings.origin, name, value, SameSite::Strict, max_age)
}

/// What opened an admin session, and so what ends it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Credential<'a> {
    /// The admin token the server runs with.
    Token(&'a AdminToken),
    /// The admin authenticator key with this id.
    Key(&'a str),
}

/// An admin session as the sessions list shows it.
#[derive(Debug, Clone)]
pub(crate) struct SessionInfo {
    /// Names the session in the "end" form: the hex of its id hash, which
    /// cannot be turned back into the cookie.
    pub(crate) handle: String,
    /// The admin authenticator that opened it; `None` for the admin token.
    pub(crate) authenticator: Option<String>,
    pub(crate) ip: String,
    pub(crate) user_agent: String,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
}

/// A live admin session.
pub(crate) struct AdminSession {
    id_hash: Vec<u8>,
    csrf_token: String,
    /// Who opened it, for the audit log.
    actor: Actor,
}

impl AdminSession {
    /// Starts a session for `client`, opened by `credential`, and returns it
    /// with the cookie value that names it. The value is always new: a
    /// session is never made from anything the browser brought.
    pub(crate) async fn create(
        db: &Db,
        credential: Credential<'_>,
        client: &ClientInfo,
        now: i64,
    ) -> Result<(String, Self)> {
        let value = cookie::new_secret();
        let mut session = Self { id_hash: hash(&value), csrf_token: cookie::new_secret(), actor: Actor::Token };
        let (key_id, token_digest) = match credential {
            Credential::Token(token) => (None, Some(token.session_digest().to_vec())),
            Credential::Key(id) => (Some(id.to_owned()), None),
        };
        // The key's account names the actor for the audit log. A key never
        // changes account, so it can be read before the session is written.
        if let Credential::Key(id) = credential {
            let account = db
                .fetch_optional(query("SELECT account FROM account_key WHERE id = $1").bind(id), |row| {
                    row.text("account")
                })
                .await?;
            session.actor = Actor::Authenticator(account.ok_or(Error::UnknownAccount)?);
        }
        let mut write = db.begin_write().await?;
        let mut conn = write.conn();
        // Sign-ins are rare, so this is a cheap moment to forget old sessions.
        conn.execute(query("DELETE FROM admin_session WHERE expires_at <= $1").bind(now)).await?;
        // A key opens a session only while it is active; on PostgreSQL the
        // check shares the key's row until the commit: see the statement.
        let sql = crate::db::locks::OPEN_ADMIN_SESSION.on(&conn);
        let insert = query(sql)
            .bind(session.id_hash.clone())
            .bind(session.csrf_token.as_str())
            .bind(now)
            .bind(now + SESSION_SECS)
            .bind(key_id.clone())
            .bind(token_digest)
            .bind(client.ip.to_string())
            .bind(client.user_agent.clone());
        let refused = if conn.execute(insert).await? == 0 {
            // Only a key fails the check: it is pending, or it was removed
            // since its account was read.
            let state = conn
                .fetch_optional(query("SELECT state FROM account_key WHERE id = $1").bind(key_id), |row| {
                    row.text("state")
                })
                .await?;
            Some(if state.is_some() { Error::KeyPending } else { Error::UnknownAccount })
        } else {
            None
        };
        // Committed even when refused, to keep the old sessions forgotten.
        write.commit().await?;
        match refused {
            Some(refusal) => Err(refusal),
            None => Ok((value, session)),
        }
    }

    /// The session named by the request's cookie, if it is live: unexpired,
    /// and its credential still valid (its key exists, or its token is the
    /// one the server runs with now).
    pub(crate) async fn find(state: &AppState, headers: &HeaderMap) -> Result<Option<Self>> {
        let (db, token, now) = (&state.db, &state.admin_token, state.clock.now().as_secs() as i64);
        let Some(value) = cookie::secret(&state.settings.origin, headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        let id_hash = hash(value);
        // The key's account names the actor for the audit log, in the same
        // read: a removed key has taken its sessions with it.
        let select = query(
            "SELECT s.csrf_token, k.account FROM admin_session s LEFT JOIN account_key k ON k.id = s.key_id \
             WHERE s.id_hash = $1 AND s.expires_at > $2 AND (s.key_id IS NOT NULL OR s.token_digest = $3)",
        )
        .bind(id_hash.clone())
        .bind(now)
        .bind(token.session_digest().to_vec());
        let row = db.fetch_optional(select, |row| Ok((row.text("csrf_token")?, row.opt_text("account")?))).await?;
        let Some((csrf_token, account)) = row else {
            return Ok(None);
        };
        let actor = account.map_or(Actor::Token, Actor::Authenticator);
        Ok(Some(Self { id_hash, csrf_token, actor }))
    }

    /// The live sessions, newest first, for the sessions list.
    pub(crate) async fn list(db: &Db, token: &AdminToken, now: i64) -> Result<Vec<SessionInfo>> {
        let select = query(
            "SELECT s.id_hash, k.account, s.ip, s.user_agent, s.created_at, s.expires_at FROM admin_session s \
             LEFT JOIN account_key k ON k.id = s.key_id \
             WHERE s.expires_at > $1 AND (s.key_id IS NOT NULL OR s.token_digest = $2) \
             ORDER BY s.created_at DESC",
        )
        .bind(now)
        .bind(token.session_digest().to_vec());
        db.fetch_all(select, |row| {
            Ok(SessionInfo {
                handle: hex::encode(row.blob("id_hash")?),
                authenticator: row.opt_text("account")?,
                ip: row.text("ip")?,
                user_agent: row.text("user_agent")?,
                created_at: row.int("created_at")?,
                expires_at: row.int("expires_at")?,
            })
        })
        .await
    }

    /// Ends the session whose handle the sessions list showed, and records
    /// it `by` in the same transaction. Returns whether there was one.
    pub(crate) async fn end_by_handle(db: &Db, handle: &str, by: &By<'_>) -> Result<bool> {
        let Ok(id_hash) = hex::decode(handle) else {
            return Ok(false);
        };
        let mut write = db.begin_write().await?;
        let mut conn = write.conn();
        if conn.execute(query("DELETE FROM admin_session WHERE id_hash = $1").bind(id_hash)).await? == 0 {
            return Ok(false);
        }
        audit::record(&mut conn, by, Record::new(Action::AdminSessionEnded, handle, "")).await?;
        write.commit().await?;
        Ok(true)
    }

    /// This session's handle, as [`SessionInfo::handle`] gives it.
    pub(crate) fn handle(&self) -> String {
        hex::encode(&self.id_hash)
    }

    /// Who opened this session.
    pub(crate) fn actor(&self) -> &Actor {
        &self.actor
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

    /// Ends the session on the server, so a copied cookie dies with it, and
    /// records the sign-out `by` in the same transaction.
    pub(crate) async fn end(self, db: &Db, by: &By<'_>) -> Result<()> {
        let mut write = db.begin_write().await?;
        let mut conn = write.conn();
        conn.execute(query("DELETE FROM admin_session WHERE id_hash = $1").bind(self.id_hash.clone())).await?;
        audit::record(&mut conn, by, Record::new(Action::AdminSignedOut, &self.handle(), "")).await?;
        write.commit().await?;
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
