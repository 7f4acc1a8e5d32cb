//! The audit log: what admins did, by whom, to what, when and from where.
//!
//! Each admin action writes one `audit_event` row in the transaction of the
//! change (the store function that makes a change takes a [`By`] and records
//! it there, so a change is never without its record, nor a record without
//! its change), and the same record as a structured log line for
//! collectors. The sign-ins are the exception: they are recorded just after
//! the session is stored.
//!
//! Nothing secret goes in: the actor is `token`, `authenticator:<name>` or
//! `anonymous`, never the token, and sessions are named by their handle (a hash of the
//! cookie, which cannot be turned back into it). Only admin actions write
//! here, so sign-ins at services cost nothing extra.

use std::fmt;

use crate::{
    db::{
        sql::{query, Conn},
        Db,
    },
    error::{Error, Result},
    http::extract::ClientInfo,
};

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Actor {
    /// Whoever presented the admin token (API bearer or a token session).
    Token,
    /// The admin authenticator account with this name.
    Authenticator(String),
    /// Someone who proved nothing: a refused sign-in.
    Anonymous,
    /// The server itself, at start-up (`--demo`).
    System,
    /// Whoever opened the recovery link with this id and confirmed a key
    /// with it.
    RecoveryLink(String),
    /// The owner of this account at a service, signed in with one of its
    /// keys (the account page).
    Account(String),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token => f.write_str("token"),
            Self::Authenticator(name) => write!(f, "authenticator:{name}"),
            Self::Anonymous => f.write_str("anonymous"),
            Self::System => f.write_str("system"),
            Self::RecoveryLink(id) => write!(f, "recovery:{id}"),
            Self::Account(name) => write!(f, "account:{name}"),
        }
    }
}

/// What was done. The codes are stable: scripts match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    ServiceCreated,
    /// A service's settings changed (number matching).
    ServiceChanged,
    ServiceDeleted,
    AccountDeleted,
    /// One key of a service's account was removed.
    KeyRemoved,
    /// An admin authenticator registered; it waits for confirmation.
    AuthenticatorAdded,
    AuthenticatorConfirmed,
    AuthenticatorRefused,
    AuthenticatorRemoved,
    AdminSignedIn,
    AdminSignedOut,
    /// A session ended from the sessions list.
    AdminSessionEnded,
    AdminSignInRefused,
    OidcClientCreated,
    OidcClientChanged,
    OidcClientRemoved,
    OidcSecretRotated,
    OidcKeysRotated,
    /// An admin made a recovery link for an account.
    RecoveryLinkCreated,
    RecoveryLinkRevoked,
    /// A key enrolled through a recovery link was confirmed, using it up.
    RecoveryLinkUsed,
    /// A key added from the account page of a signed-in owner was confirmed.
    KeyEnrolled,
    /// The owner of an account named or renamed one of its keys from the
    /// account page.
    KeyRenamed,
    /// An admin set or cleared an account's display name or email.
    ProfileChanged,
    /// A service's group was made, renamed or deleted.
    GroupCreated,
    GroupRenamed,
    GroupDeleted,
    /// An admin set the groups an account belongs to.
    AccountGroupsChanged,
    /// A passkey's signature counter did not move forwards: it may have
    /// been copied. The sign-in was refused.
    PasskeyCounterRefused,
}

impl Action {
    /// Every action, in the order the admin page offers them as filters.
    pub(crate) const ALL: [Self; 29] = [
        Self::ServiceCreated,
        Self::ServiceChanged,
        Self::ServiceDeleted,
        Self::AccountDeleted,
        Self::KeyRemoved,
        Self::AuthenticatorAdded,
        Self::AuthenticatorConfirmed,
        Self::AuthenticatorRefused,
        Self::AuthenticatorRemoved,
        Self::AdminSignedIn,
        Self::AdminSignedOut,
        Self::AdminSessionEnded,
        Self::AdminSignInRefused,
        Self::OidcClientCreated,
        Self::OidcClientChanged,
        Self::OidcClientRemoved,
        Self::OidcSecretRotated,
        Self::OidcKeysRotated,
        Self::RecoveryLinkCreated,
        Self::RecoveryLinkRevoked,
        Self::RecoveryLinkUsed,
        Self::KeyEnrolled,
        Self::KeyRenamed,
        Self::ProfileChanged,
        Self::GroupCreated,
        Self::GroupRenamed,
        Self::GroupDeleted,
        Self::AccountGroupsChanged,
        Self::PasskeyCounterRefused,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::ServiceCreated => "service_created",
            Self::ServiceChanged => "service_changed",
            Self::ServiceDeleted => "service_deleted",
            Self::AccountDeleted => "account_deleted",
            Self::KeyRemoved => "key_removed",
            Self::AuthenticatorAdded => "authenticator_added",
            Self::AuthenticatorConfirmed => "authenticator_confirmed",
            Self::AuthenticatorRefused => "authenticator_refused",
            Self::AuthenticatorRemoved => "authenticator_removed",
            Self::AdminSignedIn => "admin_signed_in",
            Self::AdminSignedOut => "admin_signed_out",
            Self::AdminSessionEnded => "admin_session_ended",
            Self::AdminSignInRefused => "admin_sign_in_refused",
            Self::OidcClientCreated => "oidc_client_created",
            Self::OidcClientChanged => "oidc_client_changed",
            Self::OidcClientRemoved => "oidc_client_removed",
            Self::OidcSecretRotated => "oidc_secret_rotated",
            Self::OidcKeysRotated => "oidc_keys_rotated",
            Self::RecoveryLinkCreated => "recovery_link_created",
            Self::RecoveryLinkRevoked => "recovery_link_revoked",
            Self::RecoveryLinkUsed => "recovery_link_used",
            Self::KeyEnrolled => "key_enrolled",
            Self::KeyRenamed => "key_renamed",
            Self::ProfileChanged => "profile_changed",
            Self::GroupCreated => "group_created",
            Self::GroupRenamed => "group_renamed",
            Self::GroupDeleted => "group_deleted",
            Self::AccountGroupsChanged => "account_groups_changed",
            Self::PasskeyCounterRefused => "passkey_counter_refused",
        }
    }
}

/// Who acts, from where, and when: what every record of one request shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct By<'a> {
    pub(crate) actor: &'a Actor,
    pub(crate) client: &'a ClientInfo,
    /// Unix seconds.
    pub(crate) at: i64,
}

/// What was done, and to what.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    pub(crate) action: Action,
    /// A service id, an account name or a session handle; empty when the
    /// action has no object.
    pub(crate) target: &'a str,
    /// A short text for people, e.g. a new service's name.
    pub(crate) detail: &'a str,
}

impl<'a> Record<'a> {
    pub(crate) fn new(action: Action, target: &'a str, detail: &'a str) -> Self {
        Self { action, target, detail }
    }
}

/// Writes `record`, done `by`, on its own: the record is the only write.
pub(crate) async fn record_alone(db: &Db, by: &By<'_>, record: Record<'_>) -> Result<()> {
    let mut write = db.begin_write().await?;
    self::record(&mut write.conn(), by, record).await?;
    write.commit().await
}

/// Writes `record`, done `by`, on `conn`: in the transaction of the change
/// it records.
pub(crate) async fn record(conn: &mut Conn<'_>, by: &By<'_>, record: Record<'_>) -> Result<()> {
    let actor = by.actor.to_string();
    let insert = query(
        "INSERT INTO audit_event (at, actor, action, target, detail, ip, user_agent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(by.at)
    .bind(actor.as_str())
    .bind(record.action.as_str())
    .bind(record.target)
    .bind(record.detail)
    .bind(by.client.ip.to_string())
    .bind(by.client.user_agent.clone());
    conn.execute(insert).await?;
    tracing::info!(
        %actor,
        action = record.action.as_str(),
        target_id = record.target,
        detail = record.detail,
        ip = %by.client.ip,
        "audit"
    );
    Ok(())
}

/// A stored record.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) id: i64,
    pub(crate) at: i64,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) target: String,
    pub(crate) detail: String,
    pub(crate) ip: String,
    pub(crate) user_agent: String,
    /// The name of the service `target` is, when it is one that exists.
    pub(crate) target_name: Option<String>,
}

/// How many records a page shows, and an API call returns unless asked.
pub(crate) const DEFAULT_LIMIT: i64 = 50;
/// Most records one API call returns.
pub(crate) const MAX_LIMIT: i64 = 500;

/// Which records to list: all of them when every member is `None`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Filter<'a> {
    /// Only records with a smaller id: the last id of the previous page.
    pub(crate) before: Option<i64>,
    /// Only this action (its stable code).
    pub(crate) action: Option<&'a str>,
    /// Only this actor, as stored (`token`, `authenticator:<name>`, …).
    pub(crate) actor: Option<&'a str>,
    /// Only what was done to this service or inside it: records whose
    /// target is its id, or whose detail names it (`service <id>`).
    pub(crate) service: Option<&'a str>,
}

/// Up to `limit` records that pass `filter`, newest first, each with the
/// name of the service its target is, when it is one.
pub(crate) async fn list(db: &Db, filter: &Filter<'_>, limit: i64) -> Result<Vec<Event>> {
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::bad_request("invalid_limit", format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let select = query(
        "SELECT a.id, a.at, a.actor, a.action, a.target, a.detail, a.ip, a.user_agent, s.name AS target_name \
         FROM audit_event a LEFT JOIN service s ON s.id = a.target \
         WHERE a.id < $1 AND ($2 IS NULL OR a.action = $2) AND ($3 IS NULL OR a.actor = $3) \
         AND ($4 IS NULL OR a.target = $4 OR a.detail LIKE 'service ' || $4 || '%') \
         ORDER BY a.id DESC LIMIT $5",
    )
    .bind(filter.before.unwrap_or(i64::MAX))
    .bind(filter.action)
    .bind(filter.actor)
    .bind(filter.service)
    .bind(limit);
    db.fetch_all(select, |row| {
        Ok(Event {
            id: row.int("id")?,
            at: row.int("at")?,
            actor: row.text("actor")?,
            action: row.text("action")?,
            target: row.text("target")?,
            detail: row.text("detail")?,
            ip: row.text("ip")?,
            user_agent: row.text("user_agent")?,
            target_name: row.opt_text("target_name")?,
        })
    })
    .await
}
