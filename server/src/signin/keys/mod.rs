//! Account keys: every query that creates, reads, confirms or removes a key
//! lives here, for the authenticator API and the admin side alike.
//!
//! An account holds one or more keys. A key is `active`, or `pending` while
//! it waits for a person to confirm it (docs/PROTOCOL.md §11): a pending key
//! signs nobody in. Registrations to a built-in service (the admin page's own
//! "Sesame admin") always start pending, because such a registration can be
//! raced by anyone who glimpsed the token on the admin's screen.
//!
//! Here: registration, enrollment, rekey and the sign-in's one read.
//! `confirm` holds the keys that wait for a person's word, and `listed`
//! what people see and change of their keys.

use rand::rngs::OsRng;
use sesame_proto::{wire::NewKey, AccountPublicKey, ChallengeId, KeyLabel, ServiceId, UnixTime};

use crate::{
    db::{
        sql::{query, Conn, Constraint as _, Query, Row, Violation},
        Db,
    },
    error::{Error, Result},
    http::extract::ClientInfo,
    names::Skeletons,
    signin::new_keys::AccountKeys,
};

mod confirm;
mod listed;

pub(crate) use confirm::{confirm, confirm_enrollment, reject, reject_enrollment};
pub use confirm::{pending, Confirmed, PendingKey};
pub use listed::{list, of_service, removal, KeyInfo, Removal};
pub(crate) use listed::{remove, rename};

/// Whether a key may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Pending,
    Active,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        match text {
            "pending" => Ok(Self::Pending),
            "active" => Ok(Self::Active),
            other => Err(Error::Internal(anyhow::anyhow!("stored key has an unknown state {other:?}"))),
        }
    }
}

/// One Sesame key of an account, decoded.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub id: String,
    pub public_key: AccountPublicKey,
    pub state: KeyState,
    /// When the key last signed in; `None` before its first sign-in.
    pub last_used_at: Option<i64>,
    /// When it joined the account: when it was added, or, for a key that
    /// waited for a person's word (PROTOCOL.md §11), confirmed.
    pub joined_at: i64,
}

/// A key id (PROTOCOL.md §2.2, 32 hex digits) as people compare it: in
/// groups of four, `1a2b 3c4d …`.
pub fn grouped(fingerprint: &str) -> String {
    fingerprint.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
}

/// The fingerprint of `key`, grouped for people.
pub fn fingerprint(key: &AccountPublicKey) -> String {
    grouped(&key.key_id().to_string())
}

/// A random key or subject id, 32 lowercase hex digits like every other id.
pub fn new_id() -> String {
    ChallengeId::random(&mut OsRng).to_string()
}

/// Whether `text` is an id [`new_id`] could have made (the migration that
/// gave existing keys their ids made them the same way). Looking anything
/// else up is pointless, and on PostgreSQL, whose text cannot hold a NUL
/// byte, it would fail as a database error.
pub(crate) fn is_key_id(text: &str) -> bool {
    text.parse::<ChallengeId>().is_ok()
}

fn decode_key(bytes: &[u8]) -> Result<AccountPublicKey> {
    // Keys were checked when they were registered; one that no longer
    // decodes was damaged in storage.
    AccountPublicKey::from_bytes(bytes)
        .map_err(|_| Error::Internal(anyhow::anyhow!("a stored account key is not a valid public key")))
}

/// A registration: a new account and its first key.
#[derive(Debug)]
pub struct NewAccount<'a> {
    pub service_id: &'a ServiceId,
    pub account: &'a str,
    pub key_id: &'a str,
    pub public_key: &'a AccountPublicKey,
    /// What the authenticator calls itself, if it said.
    pub label: Option<&'a KeyLabel>,
    /// The challenge the registration answered.
    pub challenge_id: &'a ChallengeId,
    /// The authenticator that sent it.
    pub device: &'a ClientInfo,
    pub now: i64,
}

/// Stores a new account and its first key, inside the caller's transaction
/// (after the challenge was consumed). The key starts pending at a built-in
/// service, active elsewhere; the state is decided in the INSERT itself, so
/// no separate read of the service can disagree with it.
///
/// The UNIQUE indexes of the name and of its look-alike keys (names.rs)
/// refuse a name that is, or looks like, one the service has, with
/// `account_exists` naming that account.
pub async fn register(conn: &mut Conn<'_>, new: &NewAccount<'_>) -> Result<KeyState> {
    insert_account(conn, new.service_id, new.account, &new_id(), new.now).await?;
    let insert = query(
        "INSERT INTO account_key (id, service_id, account, public_key, state, challenge_id, device_ip, \
         device_user_agent, created_at, label) \
         SELECT $1, s.id, $3, $4, CASE WHEN s.builtin THEN 'pending' ELSE 'active' END, \
         CASE WHEN s.builtin THEN $5 ELSE NULL END, $6, $7, $8, $9 FROM service s WHERE s.id = $2 \
         AND s.key_kinds <> 'passkey' RETURNING state",
    )
    .bind(new.key_id)
    .bind(new.service_id.to_string())
    .bind(new.account)
    .bind(new.public_key.to_bytes().to_vec())
    .bind(new.challenge_id.to_string())
    .bind(new.device.ip.to_string())
    .bind(new.device.user_agent.as_str())
    .bind(new.now)
    .bind(new.label.map_or_else(String::new, |l| l.as_str().to_owned()));
    let state = conn
        .fetch_optional(insert, |row| row.text("state"))
        .await
        .on(Violation::Unique, Error::KeyRegistered)
        .on(Violation::ForeignKey, Error::UnknownService)?
        // The account's insert found the service, in this transaction: no
        // row means it takes passkeys only.
        .ok_or(Error::SesameKeysNotAllowed)?;
    KeyState::parse(&state)
}

/// Stores the new account `account` of `service_id`, with the OpenID
/// Connect subject `subject`, inside the caller's transaction: the first
/// step of a registration, whatever key it comes with.
///
/// The UNIQUE indexes of the name and of its look-alike keys (names.rs)
/// refuse a name that is, or looks like, one the service has, with
/// `account_exists` naming that account.
pub(crate) async fn insert_account(
    conn: &mut Conn<'_>,
    service_id: &ServiceId,
    account: &str,
    subject: &str,
    now: i64,
) -> Result<()> {
    let keys = Skeletons::of(account);
    // A foreign-key violation, or no service row to insert from, means the
    // service was deleted meanwhile. DO NOTHING rather than a violation for
    // a name: on PostgreSQL a violation ends the transaction, and the
    // refusal must read the name that holds it.
    let inserted = conn
        .execute(
            query(
                "INSERT INTO account (service_id, name, subject, created_at, skeleton_folded, skeleton_written) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(service_id.to_string())
            .bind(account)
            .bind(subject)
            .bind(now)
            .bind(keys.folded.as_str())
            .bind(keys.written.as_str()),
        )
        .await
        .on(Violation::ForeignKey, Error::UnknownService)?;
    if inserted == 0 {
        return Err(name_taken(conn, service_id, account, &keys).await?);
    }
    Ok(())
}

/// The account whose name is `account`, or looks like it by either of its
/// [`Skeletons`]: the name itself first, else the oldest look-alike. What
/// a refusal of `account` names, here and where a passkey's registration
/// starts (`passkey::store::name_free`).
pub(crate) fn name_holder(service_id: &ServiceId, account: &str, keys: &Skeletons) -> Query<'static> {
    query(
        "SELECT name FROM account WHERE service_id = $1 \
         AND (name = $2 OR skeleton_folded = $3 OR skeleton_written = $4) \
         ORDER BY CASE WHEN name = $2 THEN 0 ELSE 1 END, created_at LIMIT 1",
    )
    .bind(service_id.to_string())
    .bind(account)
    .bind(keys.folded.as_str())
    .bind(keys.written.as_str())
}

/// The refusal of `new.account`, which an existing account's name or
/// look-alike keys kept out: it names that account. Read in the
/// transaction whose insert did nothing; on PostgreSQL the insert waited
/// for a racing one to commit, and this statement sees the row it
/// committed.
async fn name_taken(conn: &mut Conn<'_>, service_id: &ServiceId, account: &str, keys: &Skeletons) -> Result<Error> {
    let existing = conn
        .fetch_optional(name_holder(service_id, account, keys), |row| row.text("name"))
        .await?
        // Only the random subject is left to conflict on.
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("a new account's subject was taken")))?;
    Ok(Error::AccountExists { name: account.to_owned(), existing })
}

/// Adds `new.public_key` to the existing account `new.account`, pending
/// until the browser that started the enrollment challenge confirms it
/// (docs/PROTOCOL.md §11, §12), inside the caller's transaction (after the
/// challenge was consumed).
pub async fn enroll(conn: &mut Conn<'_>, new: &NewAccount<'_>) -> Result<()> {
    let insert = query(
        "INSERT INTO account_key (id, service_id, account, public_key, label, state, challenge_id, device_ip, \
         device_user_agent, created_at, added_by) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, 'enroll')",
    )
    .bind(new.key_id)
    .bind(new.service_id.to_string())
    .bind(new.account)
    .bind(new.public_key.to_bytes().to_vec())
    .bind(new.label.map_or_else(String::new, |l| l.as_str().to_owned()))
    .bind(new.challenge_id.to_string())
    .bind(new.device.ip.to_string())
    .bind(new.device.user_agent.as_str())
    .bind(new.now);
    conn.execute(insert)
        .await
        // The account was deleted after the challenge was issued.
        .on(Violation::ForeignKey, Error::UnknownAccount)
        .on(Violation::Unique, Error::KeyRegistered)?;
    Ok(())
}

/// Replaces the public key of `key_id` with `new`, and records the login it
/// made, inside the caller's transaction (after the challenge was consumed).
/// The old key must still be the stored one, so that of two racing rekeys
/// of one key only one lands. Returns false when it is not (or the key is
/// gone or no longer active): the caller then rolls back.
pub async fn rekey(
    conn: &mut Conn<'_>,
    key_id: &str,
    old: &AccountPublicKey,
    new: &AccountPublicKey,
    now: i64,
) -> Result<bool> {
    let update = query(
        "UPDATE account_key SET public_key = $3, last_used_at = $4 \
         WHERE id = $1 AND public_key = $2 AND state = 'active'",
    )
    .bind(key_id)
    .bind(old.to_bytes().to_vec())
    .bind(new.to_bytes().to_vec())
    .bind(now);
    let done = conn
        .execute(update)
        .await
        .on(Violation::Unique, Error::KeyRegistered)
        .on(Violation::ForeignKey, Error::UnknownService)?;
    Ok(done == 1)
}

/// Every key of an account, pending ones included, so that a login with a
/// pending key gets its own clear error instead of `bad_signature`.
///
/// A stored key that the protocol crate no longer accepts (decoding has
/// grown stricter over time, and only a hostile client could have sent such
/// a key) is left out with a warning: it can sign nobody in, and the
/// account's other keys still work.
///
/// Only Sesame keys sign: an account's passkeys sign in through WebAuthn
/// (`signin/passkey`), and are read here only for when they were added. At
/// a service that takes passkeys only, this is `sesame_keys_not_allowed`,
/// read in the same statement: the service's row comes with the keys, or
/// alone when the account has none.
pub async fn of_account(db: &Db, service_id: &ServiceId, account: &str) -> Result<AccountKeys> {
    const SQL: &str = "SELECT s.key_kinds, k.id, k.kind, k.public_key, k.state, k.label, k.device_ip, \
                       COALESCE(k.confirmed_at, k.created_at) AS joined_at, k.last_used_at FROM service s \
                       LEFT JOIN account_key k ON k.service_id = s.id AND k.account = $2 \
                       WHERE s.id = $1";
    let select = query(SQL).bind(service_id.to_string()).bind(account);
    let read = |row: &dyn Row| {
        let key = match row.opt_text("id")? {
            Some(id) => Some(KeyRow {
                id,
                kind: row.text("kind")?,
                public_key: row.blob("public_key")?,
                state: KeyState::parse(&row.text("state")?)?,
                label: row.text("label")?,
                device_ip: row.text("device_ip")?,
                joined_at: row.int("joined_at")?,
                last_used_at: row.opt_int("last_used_at")?,
            }),
            None => None,
        };
        Ok((row.text("key_kinds")?, key))
    };
    // On the path of every login: on SQLite, read on this thread.
    let rows = db.read_here(select, read).await?;
    if rows.iter().any(|(kinds, _)| kinds == "passkey") {
        return Err(Error::SesameKeysNotAllowed);
    }
    let mut keys = AccountKeys::default();
    for key in rows.into_iter().filter_map(|(_, key)| key) {
        if key.state == KeyState::Active {
            let added = NewKey {
                kind: key.kind.clone(),
                label: key.label,
                added_at: UnixTime::from_secs(key.joined_at.max(0) as u64),
                added_from: key.device_ip,
            };
            keys.added.push((key.id.clone(), added));
        }
        if key.kind != "sesame" {
            continue;
        }
        let Ok(public_key) = AccountPublicKey::from_bytes(&key.public_key) else {
            tracing::warn!(key = %key.id, "a stored account key no longer decodes; it is ignored");
            continue;
        };
        keys.sesame.push(StoredKey {
            id: key.id,
            public_key,
            state: key.state,
            last_used_at: key.last_used_at,
            joined_at: key.joined_at,
        });
    }
    Ok(keys)
}

/// A row of [`of_account`].
struct KeyRow {
    id: String,
    kind: String,
    public_key: Vec<u8>,
    state: KeyState,
    label: String,
    device_ip: String,
    /// When the key joined the account: made active, or confirmed.
    joined_at: i64,
    last_used_at: Option<i64>,
}
