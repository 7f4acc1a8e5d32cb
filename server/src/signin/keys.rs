//! Account keys: every query that creates, reads, confirms or removes a key
//! lives here, for the authenticator API and the admin side alike.
//!
//! An account holds one or more keys. A key is `active`, or `pending` while
//! it waits for a person to confirm it (docs/PROTOCOL.md §11): a pending key
//! signs nobody in. Registrations to a built-in service (the admin page's own
//! "Sesame admin") always start pending, because such a registration can be
//! raced by anyone who glimpsed the token on the admin's screen.

use rand::rngs::OsRng;
use sesame_proto::{
    wire::NewKey, AccountName, AccountPublicKey, ChallengeId, ConfirmationCode, KeyLabel, ServiceId, UnixTime,
};

use crate::{
    audit::{self, Action, By, Record},
    db::{
        locks::{self, Doomed},
        sql::{query, Conn, Constraint as _, Row, Violation},
        Db,
    },
    error::{Error, Result},
    http::extract::ClientInfo,
    names::Skeletons,
    signin::new_keys::AccountKeys,
};

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
    pub created_at: i64,
}

/// A key that waits for confirmation, with what a person needs to judge it.
#[derive(Debug, Clone)]
pub struct PendingKey {
    pub id: String,
    pub account: String,
    pub public_key: AccountPublicKey,
    /// What the authenticator calls itself; empty when it did not say.
    pub label: String,
    pub device_ip: String,
    pub device_user_agent: String,
    pub created_at: i64,
}

impl PendingKey {
    /// The code the registering authenticator shows for this key.
    pub fn code(&self, challenge_id: &ChallengeId) -> ConfirmationCode {
        ConfirmationCode::of(challenge_id, &self.public_key)
    }
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

/// What a confirmed enrollment did.
#[derive(Debug, Clone)]
pub struct Confirmed {
    pub account: String,
    /// The new key's label; empty when the authenticator gave none.
    pub label: String,
    /// How many other keys of the account a recovery link removed with it.
    pub others_removed: u64,
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

/// The refusal of `new.account`, which an existing account's name or
/// look-alike keys kept out: it names that account. Read in the
/// transaction whose insert did nothing; on PostgreSQL the insert waited
/// for a racing one to commit, and this statement sees the row it
/// committed.
async fn name_taken(conn: &mut Conn<'_>, service_id: &ServiceId, account: &str, keys: &Skeletons) -> Result<Error> {
    let existing = conn
        .fetch_optional(
            query(
                "SELECT name FROM account WHERE service_id = $1 \
                 AND (name = $2 OR skeleton_folded = $3 OR skeleton_written = $4) \
                 ORDER BY CASE WHEN name = $2 THEN 0 ELSE 1 END, created_at LIMIT 1",
            )
            .bind(service_id.to_string())
            .bind(account)
            .bind(keys.folded.as_str())
            .bind(keys.written.as_str()),
            |row| row.text("name"),
        )
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
                       k.created_at, k.last_used_at FROM service s \
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
                created_at: row.int("created_at")?,
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
                added_at: UnixTime::from_secs(key.created_at.max(0) as u64),
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
            created_at: key.created_at,
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
    created_at: i64,
    last_used_at: Option<i64>,
}

/// The key that the challenge `challenge_id` registered, while it waits.
pub async fn pending(db: &Db, challenge_id: &ChallengeId) -> Result<Option<PendingKey>> {
    let select = query(
        "SELECT id, account, public_key, device_ip, device_user_agent, created_at, label FROM account_key \
         WHERE challenge_id = $1 AND state = 'pending'",
    )
    .bind(challenge_id.to_string());
    db.fetch_optional(select, |row| {
        Ok(PendingKey {
            id: row.text("id")?,
            account: row.text("account")?,
            public_key: decode_key(&row.blob("public_key")?)?,
            device_ip: row.text("device_ip")?,
            device_user_agent: row.text("device_user_agent")?,
            created_at: row.int("created_at")?,
            label: row.text("label")?,
        })
    })
    .await
}

/// Makes the key that `challenge_id` registered active. One conditional
/// UPDATE: of two racing confirmations one wins, and a key rejected in the
/// meantime cannot come back. The audit record is written `by` in the same
/// transaction.
pub(crate) async fn confirm(db: &Db, challenge_id: &ChallengeId, key_id: &str, by: &By<'_>) -> Result<()> {
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    let update = query(
        "UPDATE account_key SET state = 'active', challenge_id = NULL \
         WHERE challenge_id = $1 AND id = $2 AND state = 'pending' RETURNING account",
    )
    .bind(challenge_id.to_string())
    .bind(key_id);
    let account = conn.fetch_optional(update, |row| row.text("account")).await?.ok_or(Error::NothingToConfirm)?;
    let detail = format!("key {key_id}");
    audit::record(&mut conn, by, Record::new(Action::AuthenticatorConfirmed, &account, &detail)).await?;
    write.commit().await?;
    Ok(())
}

/// Removes the key that `challenge_id` registered, and its account when the
/// registration created it (no other key remains), so that the name is free
/// again. The audit record is written `by` in the same transaction.
pub(crate) async fn reject(db: &Db, challenge_id: &ChallengeId, by: &By<'_>) -> Result<()> {
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    let delete =
        query("DELETE FROM account_key WHERE challenge_id = $1 AND state = 'pending' RETURNING service_id, account")
            .bind(challenge_id.to_string());
    let removed = conn.fetch_optional(delete, |row| Ok((row.text("service_id")?, row.text("account")?))).await?;
    // Dropped uncommitted, the write rolls back.
    let Some((service_id, account)) = removed else { return Err(Error::NothingToConfirm) };
    // The account goes only if no key is left, which the next statement
    // checks on a snapshot taken as it starts. A key added meanwhile by a
    // transaction that has not committed (an enrollment through a recovery
    // link) would go unseen, and then go with the account. So the account's
    // row is locked first: the check then sees such a key, and a key added
    // later finds the account gone.
    locks::account(&mut conn, &service_id, &account).await?;
    conn.execute(
        query(
            "DELETE FROM account WHERE service_id = $1 AND name = $2 \
             AND NOT EXISTS (SELECT 1 FROM account_key k WHERE k.service_id = $1 AND k.account = $2)",
        )
        .bind(service_id)
        .bind(account.as_str()),
    )
    .await?;
    audit::record(&mut conn, by, Record::new(Action::AuthenticatorRefused, &account, "")).await?;
    write.commit().await?;
    Ok(())
}

/// Makes the key that enrollment challenge `row` added active, on the word
/// of the browser that started the challenge (docs/PROTOCOL.md §12). For a
/// challenge opened from a recovery link, the link is used up in the same
/// transaction (a spent, revoked or expired link confirms nothing), the
/// other keys of the account go when the link says so. The audit log records
/// the new key either way.
pub(crate) async fn confirm_enrollment(
    db: &Db,
    row: &crate::challenge::row::ChallengeRow,
    key_id: &str,
    client: &ClientInfo,
    now: i64,
) -> Result<Confirmed> {
    if !is_key_id(key_id) {
        return Err(Error::NothingToConfirm);
    }
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    // A link that removes the account's other keys locks, on PostgreSQL,
    // what an account's deletion locks and in the same order, before it
    // writes anything (see [`locks::before_delete`]). Whether it removes them
    // is fixed when the link is made, so it can be read first.
    if let (true, Some(recovery_id), Some(account)) = (conn.is_postgres(), &row.recovery_id, &row.enroll_account) {
        let revokes = conn
            .fetch_optional(
                query("SELECT revoke_other_keys FROM account_recovery WHERE id = $1").bind(recovery_id.as_str()),
                |link| link.bool("revoke_other_keys"),
            )
            .await?;
        if revokes == Some(true) {
            locks::before_delete(&mut conn, Doomed::Account(&row.service_id.to_string(), account)).await?;
        }
    }
    // The link first: it is the write that decides a race between two
    // confirmations through one link. Dropped uncommitted, the write rolls
    // back.
    let revoke_others = match &row.recovery_id {
        Some(recovery_id) => {
            let used = query(
                "UPDATE account_recovery SET used_at = $2 \
                 WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
                 RETURNING revoke_other_keys",
            )
            .bind(recovery_id.as_str())
            .bind(now);
            let revoke = conn.fetch_optional(used, |link| link.bool("revoke_other_keys")).await?;
            let Some(revoke) = revoke else { return Err(Error::RecoveryLinkSpent) };
            revoke
        }
        None => false,
    };
    let activate = query(
        "UPDATE account_key SET state = 'active', challenge_id = NULL \
         WHERE challenge_id = $1 AND id = $2 AND state = 'pending' RETURNING account, label",
    )
    .bind(row.id.to_string())
    .bind(key_id);
    let confirmed = conn.fetch_optional(activate, |key| Ok((key.text("account")?, key.text("label")?))).await?;
    let Some((account, label)) = confirmed else { return Err(Error::NothingToConfirm) };
    let mut revoked = 0;
    if revoke_others {
        // Their sessions, codes and tokens go with them (ON DELETE CASCADE).
        revoked = conn
            .execute(
                query("DELETE FROM account_key WHERE service_id = $1 AND account = $2 AND id <> $3")
                    .bind(row.service_id.to_string())
                    .bind(account.as_str())
                    .bind(key_id),
            )
            .await?;
    }
    // A new key on an account is recorded however it came: through a
    // recovery link, or from the account page of its signed-in owner.
    let (actor, action, detail) = match &row.recovery_id {
        Some(recovery_id) => (
            audit::Actor::RecoveryLink(recovery_id.clone()),
            Action::RecoveryLinkUsed,
            format!("service {}, key {key_id} added, {revoked} other keys removed", row.service_id),
        ),
        None => (
            audit::Actor::Account(account.clone()),
            Action::KeyEnrolled,
            format!("service {}, key {key_id}", row.service_id),
        ),
    };
    let by = By { actor: &actor, client, at: now };
    audit::record(&mut conn, &by, Record::new(action, &account, &detail)).await?;
    write.commit().await?;
    Ok(Confirmed { account, label, others_removed: revoked })
}

/// Removes the key that enrollment challenge `challenge_id` added, while it
/// waits: the codes differed, or the person does not recognise the device.
/// The account stays, whatever keys it has left. A recovery link stays
/// unused, so its holder can try again.
pub(crate) async fn reject_enrollment(db: &Db, challenge_id: &ChallengeId) -> Result<()> {
    let mut write = db.begin_write().await?;
    let done = write
        .conn()
        .execute(
            query("DELETE FROM account_key WHERE challenge_id = $1 AND state = 'pending'")
                .bind(challenge_id.to_string()),
        )
        .await?;
    write.commit().await?;
    if done == 0 {
        return Err(Error::NothingToConfirm);
    }
    Ok(())
}

/// A key as the admin API and the account page list it.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub id: String,
    pub label: String,
    pub state: KeyState,
    /// The key id of PROTOCOL.md §2.2, hex; `None` for a stored key that no
    /// longer decodes.
    pub fingerprint: Option<String>,
    pub device_ip: String,
    pub device_user_agent: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// The address of the browser the key last signed in; empty before its
    /// first sign-in, and for a key last used before the server kept it.
    pub last_used_ip: String,
    /// `sesame`, or `passkey` for a passkey (`signin/passkey`), which has
    /// no fingerprint.
    pub kind: String,
}

/// The columns [`key_info`] reads, of `account_key k`.
const KEY_COLUMNS: &str = "k.id, k.label, k.state, k.public_key, k.device_ip, k.device_user_agent, k.created_at, \
                           k.last_used_at, k.last_used_ip, k.kind";

/// The keys of an existing account, oldest first; `unknown_account` when
/// the service has no such account. One query: the LEFT JOIN returns the
/// account's row even when it holds no key.
pub async fn list(db: &Db, service_id: &str, account: &str) -> Result<Vec<KeyInfo>> {
    // A name that could never have been registered names no account.
    let account = AccountName::parse(account).map_err(|_| Error::UnknownAccount)?;
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM account a LEFT JOIN account_key k ON k.service_id = a.service_id \
         AND k.account = a.name WHERE a.service_id = $1 AND a.name = $2 ORDER BY k.created_at, k.id"
    );
    let select = query(&sql).bind(service_id).bind(account.as_str());
    // The account's row, with no key, reads as `None`.
    let rows = db.fetch_all(select, key_info).await?;
    if rows.is_empty() {
        return Err(Error::UnknownAccount);
    }
    Ok(rows.into_iter().flatten().collect())
}

/// The keys of `accounts` of a service, by account name, each account's
/// oldest first: one query for a page that lists them. An account with no
/// key has no entry.
pub async fn of_service(
    db: &Db,
    service_id: &str,
    accounts: &[String],
) -> Result<std::collections::HashMap<String, Vec<KeyInfo>>> {
    if accounts.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let sql = format!(
        "SELECT {KEY_COLUMNS}, k.account FROM account_key k WHERE k.service_id = $1 AND k.account IN ({}) \
         ORDER BY k.account, k.created_at, k.id",
        crate::db::placeholders(2, accounts.len())
    );
    let mut select = query(&sql).bind(service_id);
    for account in accounts {
        select = select.bind(account.as_str());
    }
    let rows = db
        .fetch_all(select, |row| match key_info(row)? {
            Some(key) => Ok(Some((row.text("account")?, key))),
            None => Ok(None),
        })
        .await?;
    let mut by_account: std::collections::HashMap<String, Vec<KeyInfo>> = std::collections::HashMap::new();
    for (account, key) in rows.into_iter().flatten() {
        by_account.entry(account).or_default().push(key);
    }
    Ok(by_account)
}

/// A key from a row of [`KEY_COLUMNS`]; `None` for a row with no key (an
/// outer join's empty side).
fn key_info(row: &dyn Row) -> Result<Option<KeyInfo>> {
    let Some(id) = row.opt_text("id")? else { return Ok(None) };
    let public_key = row.blob("public_key")?;
    Ok(Some(KeyInfo {
        id,
        label: row.text("label")?,
        state: KeyState::parse(&row.text("state")?)?,
        fingerprint: AccountPublicKey::from_bytes(&public_key).ok().map(|k| k.key_id().to_string()),
        device_ip: row.text("device_ip")?,
        device_user_agent: row.text("device_user_agent")?,
        created_at: row.int("created_at")?,
        last_used_at: row.opt_int("last_used_at")?,
        last_used_ip: row.text("last_used_ip")?,
        kind: row.text("kind")?,
    }))
}

/// Removes one key of an account. The sessions it opened go with it (`ON
/// DELETE CASCADE`), in the same statement. Removing the last key leaves the
/// account, which can no longer sign in until it gets a key again.
pub(crate) async fn remove(db: &Db, service_id: &str, account: &str, key_id: &str, by: &By<'_>) -> Result<()> {
    // Neither a name that could never have been registered nor an id that
    // [`new_id`] could not have made names a key.
    if AccountName::parse(account).is_err() || !is_key_id(key_id) {
        return Err(Error::UnknownKey);
    }
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    locks::before_delete(&mut conn, Doomed::Key(key_id)).await?;
    let done = conn
        .execute(
            query("DELETE FROM account_key WHERE service_id = $1 AND account = $2 AND id = $3")
                .bind(service_id)
                .bind(account)
                .bind(key_id),
        )
        .await?;
    if done == 0 {
        // Dropped uncommitted, the write rolls back.
        return Err(Error::UnknownKey);
    }
    let detail = format!("service {service_id}, key {key_id}");
    audit::record(&mut conn, by, Record::new(Action::KeyRemoved, account, &detail)).await?;
    write.commit().await?;
    Ok(())
}

/// Names the key `key_id` of an account `label`, or clears its name
/// (`None`), for its signed-in owner; `unknown_key` when the account has no
/// such key, of either kind. The audit record is written `by` in the same
/// transaction.
pub(crate) async fn rename(
    db: &Db,
    service_id: &str,
    account: &str,
    key_id: &str,
    label: Option<&KeyLabel>,
    by: &By<'_>,
) -> Result<()> {
    if AccountName::parse(account).is_err() || !is_key_id(key_id) {
        return Err(Error::UnknownKey);
    }
    let label = label.map_or("", KeyLabel::as_str);
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    let update = query("UPDATE account_key SET label = $4 WHERE service_id = $1 AND account = $2 AND id = $3")
        .bind(service_id)
        .bind(account)
        .bind(key_id)
        .bind(label);
    if conn.execute(update).await? == 0 {
        // Dropped uncommitted, the write rolls back.
        return Err(Error::UnknownKey);
    }
    // A label is what the admin page shows beside the key anyway; quoted,
    // so that a label cannot pass for more of the detail.
    let detail = match label {
        "" => format!("service {service_id}, key {key_id}, name cleared"),
        named => format!("service {service_id}, key {key_id}, named {named:?}"),
    };
    audit::record(&mut conn, by, Record::new(Action::KeyRenamed, account, &detail)).await?;
    write.commit().await?;
    Ok(())
}

/// A key of an account, with what its removal would end.
#[derive(Debug, Clone)]
pub struct Removal {
    pub key: KeyInfo,
    /// The live sessions the key opened: they end with it.
    pub sessions: i64,
    /// The key is the account's only active one: once it is gone, nobody
    /// signs in as the account until it gets a key again (a recovery link,
    /// or an admin).
    pub last_active: bool,
}

/// The key `key_id` of an account, and what removing it at `now` would
/// end, in one statement; `unknown_key` when the account has no such key.
/// It is what a person is asked about: [`remove`] does not depend on it.
pub async fn removal(db: &Db, service_id: &str, account: &str, key_id: &str, now: i64) -> Result<Removal> {
    if AccountName::parse(account).is_err() || !is_key_id(key_id) {
        return Err(Error::UnknownKey);
    }
    let sql = format!(
        "SELECT {KEY_COLUMNS}, \
         (SELECT COUNT(*) FROM session s WHERE s.key_id = k.id AND s.expires_at > $4) AS sessions, \
         (SELECT COUNT(*) FROM account_key o WHERE o.service_id = k.service_id AND o.account = k.account \
          AND o.state = 'active' AND o.id <> k.id) AS other_active \
         FROM account_key k WHERE k.service_id = $1 AND k.account = $2 AND k.id = $3"
    );
    let select = query(&sql).bind(service_id).bind(account).bind(key_id).bind(now);
    let read = |row: &dyn Row| {
        let Some(key) = key_info(row)? else { return Err(Error::UnknownKey) };
        let last_active = key.state == KeyState::Active && row.int("other_active")? == 0;
        Ok(Removal { key, sessions: row.int("sessions")?, last_active })
    };
    db.fetch_optional(select, read).await?.ok_or(Error::UnknownKey)
}
