//! Every statement about passkeys: the services' policy, the ceremonies
//! between their start and finish, the passkeys themselves, and the writes
//! that a passkey's sign-in, registration or addition makes.
//!
//! A passkey is a row of `account_key` (kind `passkey`) with its WebAuthn
//! side in `passkey`: listing, labels, last use, removal and the lock order
//! are those of every key ([`crate::db::locks`]: the key, then its account).

use sesame_proto::ServiceId;
use sha2::{Digest, Sha256};

use crate::{
    audit::{self, Action, By, Record},
    challenge::session::{self, Opened},
    db::{
        sql::{query, Conn, Constraint as _, Row, Violation},
        Db,
    },
    error::{Error, Result},
    http::extract::ClientInfo,
    names::Skeletons,
    signin::keys,
};

/// Which kinds of key may sign in to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKinds {
    Sesame,
    Passkey,
    Both,
}

impl KeyKinds {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sesame => "sesame",
            Self::Passkey => "passkey",
            Self::Both => "both",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "sesame" => Some(Self::Sesame),
            "passkey" => Some(Self::Passkey),
            "both" => Some(Self::Both),
            _ => None,
        }
    }

    pub fn passkeys(self) -> bool {
        self != Self::Sesame
    }

    pub fn sesame_keys(self) -> bool {
        self != Self::Passkey
    }
}

/// What the passkey routes need to know of a service.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// The built-in admin service, which takes no passkeys.
    pub builtin: bool,
    pub key_kinds: KeyKinds,
    pub require_user_verification: bool,
}

/// The policy of service `service_id`, read afresh: an admin's change
/// holds from the next ceremony on, on every instance.
pub async fn policy(db: &Db, service_id: &ServiceId) -> Result<Policy> {
    let select = query("SELECT name, builtin, key_kinds, require_user_verification FROM service WHERE id = $1")
        .bind(service_id.to_string());
    db.fetch_optional(select, |row| {
        let kinds = row.text("key_kinds")?;
        Ok(Policy {
            name: row.text("name")?,
            builtin: row.bool("builtin")?,
            key_kinds: KeyKinds::parse(&kinds)
                .ok_or_else(|| Error::Internal(anyhow::anyhow!("service has unknown key kinds {kinds:?}")))?,
            require_user_verification: row.bool("require_user_verification")?,
        })
    })
    .await?
    .ok_or(Error::UnknownService)
}

/// Sets which kinds of key sign in to `service_id` and whether a passkey
/// must verify its user, with an audit record, in one transaction. The
/// built-in admin service keeps Sesame keys only: `unknown_service`.
pub(crate) async fn set_policy(
    db: &Db,
    service_id: &str,
    key_kinds: KeyKinds,
    require_user_verification: bool,
    by: &By<'_>,
) -> Result<()> {
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    let update =
        query("UPDATE service SET key_kinds = $2, require_user_verification = $3 WHERE id = $1 AND NOT builtin")
            .bind(service_id)
            .bind(key_kinds.as_str())
            .bind(require_user_verification);
    if conn.execute(update).await? == 0 {
        return Err(Error::UnknownService);
    }
    let verify = if require_user_verification { "required" } else { "preferred" };
    let detail = format!("key kinds {}, user verification {verify}", key_kinds.as_str());
    audit::record(&mut conn, by, Record::new(Action::ServiceChanged, service_id, &detail)).await?;
    write.commit().await?;
    Ok(())
}

/// What a ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    SignIn,
    /// A new account, whose name the ceremony holds.
    Register,
    /// A passkey added to the account the ceremony holds.
    Add,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::Register => "register",
            Self::Add => "add",
        }
    }
}

/// A ceremony as its start stores it.
#[derive(Debug)]
pub struct NewCeremony<'a> {
    pub id: &'a str,
    pub binding_hash: &'a [u8; 32],
    pub service_id: &'a ServiceId,
    pub purpose: Purpose,
    pub account: Option<&'a str>,
    pub label: &'a str,
    /// The library's state, serialized, with what else the finish needs.
    pub state: &'a str,
    pub now: i64,
    pub expires_at: i64,
}

pub async fn open_ceremony(db: &Db, new: &NewCeremony<'_>) -> Result<()> {
    let insert = query(
        "INSERT INTO passkey_ceremony (id, binding_hash, service_id, purpose, account, label, state, created_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(new.id.to_owned())
    .bind(new.binding_hash.to_vec())
    .bind(new.service_id.to_string())
    .bind(new.purpose.as_str())
    .bind(new.account.map(str::to_owned))
    .bind(new.label.to_owned())
    .bind(new.state.to_owned())
    .bind(new.now)
    .bind(new.expires_at);
    db.write_statement(insert).await.on(Violation::ForeignKey, Error::UnknownService)?;
    Ok(())
}

/// A ceremony taken for its finish.
#[derive(Debug)]
pub struct Ceremony {
    pub account: Option<String>,
    pub label: String,
    pub state: String,
}

/// Takes ceremony `id` for its finish, once: the `DELETE` that returns it
/// is what makes it single-use, on every instance. Only the browser whose
/// binding cookie has `binding_hash`, at the service and for the purpose it
/// was started for, before it expires, gets it; anything else leaves it
/// where it is and gets `unknown_ceremony`.
pub async fn take_ceremony(
    db: &Db,
    id: &str,
    binding_hash: &[u8; 32],
    service_id: &ServiceId,
    purpose: Purpose,
    now: i64,
) -> Result<Ceremony> {
    let delete = query(
        "DELETE FROM passkey_ceremony WHERE id = $1 AND binding_hash = $2 AND service_id = $3 AND purpose = $4 \
         AND expires_at > $5 RETURNING account, label, state",
    )
    .bind(id.to_owned())
    .bind(binding_hash.to_vec())
    .bind(service_id.to_string())
    .bind(purpose.as_str())
    .bind(now);
    let read = |row: &dyn Row| {
        Ok(Ceremony { account: row.opt_text("account")?, label: row.text("label")?, state: row.text("state")? })
    };
    db.write_returning(delete, read).await?.ok_or(Error::UnknownCeremony)
}

/// A stored passkey, found by its credential id.
#[derive(Debug)]
pub struct Stored {
    pub key_id: String,
    pub service_id: String,
    pub account: String,
    /// The account's WebAuthn user handle: its subject.
    pub subject: String,
    pub active: bool,
    /// The library's credential, serialized.
    pub credential: String,
    pub sign_count: i64,
}

pub async fn by_credential_id(db: &Db, credential_id: &[u8]) -> Result<Option<Stored>> {
    let select = query(
        "SELECT k.id, k.service_id, k.account, k.state, a.subject, p.credential, p.sign_count FROM passkey p \
         JOIN account_key k ON k.id = p.key_id \
         JOIN account a ON a.service_id = k.service_id AND a.name = k.account WHERE p.credential_id = $1",
    )
    .bind(credential_id.to_vec());
    db.fetch_optional(select, |row| {
        Ok(Stored {
            key_id: row.text("id")?,
            service_id: row.text("service_id")?,
            account: row.text("account")?,
            subject: row.text("subject")?,
            active: row.text("state")? == "active",
            credential: row.text("credential")?,
            sign_count: row.int("sign_count")?,
        })
    })
    .await
}

/// The credential ids of an account's passkeys, which a new registration
/// for it must not make again; and the account's subject.
pub async fn of_account(db: &Db, service_id: &ServiceId, account: &str) -> Result<(String, Vec<Vec<u8>>)> {
    let subject = db
        .fetch_optional(
            query("SELECT subject FROM account WHERE service_id = $1 AND name = $2")
                .bind(service_id.to_string())
                .bind(account),
            |row| row.text("subject"),
        )
        .await?
        .ok_or(Error::UnknownAccount)?;
    let ids = db
        .fetch_all(
            query(
                "SELECT p.credential_id FROM passkey p JOIN account_key k ON k.id = p.key_id \
                 WHERE k.service_id = $1 AND k.account = $2",
            )
            .bind(service_id.to_string())
            .bind(account),
            |row| row.blob("credential_id"),
        )
        .await?;
    Ok((subject, ids))
}

/// A passkey's sign-in, to record.
#[derive(Debug)]
pub struct SignIn<'a> {
    pub stored: &'a Stored,
    /// The credential after this use (counter, backup flags).
    pub credential: &'a str,
    pub sign_count: i64,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub session_hash: &'a [u8; 32],
    pub amr: &'a str,
    /// The ceremony, which the sign-in event names as a QR sign-in's names
    /// its challenge.
    pub ceremony_id: &'a str,
    pub client: &'a ClientInfo,
    pub now: i64,
}

/// Records a passkey's sign-in in one transaction: the key stamped as used,
/// with the browser's address (and by its trigger the account's last
/// sign-in), the credential's new counter and flags, the session and the
/// sign-in event. The key is locked first (the lock order: keys, then
/// accounts); a key removed or returned to pending meanwhile signs nobody
/// in. The credential is written only if its counter is still the one the
/// check was made against: of two sign-ins racing with one counter value (a
/// copied authenticator), one fails here.
pub async fn record_sign_in(db: &Db, s: &SignIn<'_>) -> Result<()> {
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    let stamped = conn
        .execute(
            query(
                "UPDATE account_key SET last_used_at = $2, last_used_ip = $3 \
                 WHERE id = $1 AND state = 'active' AND kind = 'passkey'",
            )
            .bind(s.stored.key_id.as_str())
            .bind(s.now)
            .bind(s.client.ip.to_string()),
        )
        .await?;
    if stamped == 0 {
        return Err(Error::UnknownPasskey);
    }
    let moved = conn
        .execute(
            query(
                "UPDATE passkey SET credential = $2, sign_count = $3, backup_eligible = $4, backup_state = $5 \
                 WHERE key_id = $1 AND sign_count = $6",
            )
            .bind(s.stored.key_id.as_str())
            .bind(s.credential)
            .bind(s.sign_count)
            .bind(s.backup_eligible)
            .bind(s.backup_state)
            .bind(s.stored.sign_count),
        )
        .await?;
    if moved == 0 {
        return Err(Error::PasskeyRefused(super::relying::COUNTER_REFUSED));
    }
    let opened = Opened {
        service_id: &s.stored.service_id,
        account: &s.stored.account,
        key_id: &s.stored.key_id,
        now: s.now,
        session_hash: s.session_hash,
        amr: s.amr,
    };
    session::open_on(&mut conn, &opened).await?;
    event(&mut conn, &s.stored.service_id, s.ceremony_id, "login", &s.stored.account, s.client, s.now).await?;
    write.commit().await?;
    Ok(())
}

/// A new passkey, to store on a new account or an existing one.
#[derive(Debug)]
pub struct NewPasskey<'a> {
    pub service_id: &'a ServiceId,
    pub account: &'a str,
    pub key_id: &'a str,
    pub label: &'a str,
    pub credential_id: &'a [u8],
    pub credential: &'a str,
    pub sign_count: i64,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub user_verified: bool,
    pub rp_id: &'a str,
    pub client: &'a ClientInfo,
    pub now: i64,
}

/// The value of `account_key.public_key` for a passkey: 0x50 ('P') and the
/// SHA-256 of its credential id. 33 bytes are never an Ed25519 key, and
/// the column's UNIQUE constraint keeps one credential on one account.
fn key_column(credential_id: &[u8]) -> Vec<u8> {
    let mut value = vec![b'P'];
    value.extend_from_slice(&Sha256::digest(credential_id));
    value
}

/// Inserts the key row and the passkey row of `new`, inside the caller's
/// transaction.
async fn insert_passkey(conn: &mut Conn<'_>, new: &NewPasskey<'_>, added_by: &str, used: bool) -> Result<()> {
    conn.execute(
        query(
            "INSERT INTO account_key (id, service_id, account, public_key, label, state, device_ip, \
             device_user_agent, created_at, last_used_at, added_by, kind) \
             VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9, $10, 'passkey')",
        )
        .bind(new.key_id)
        .bind(new.service_id.to_string())
        .bind(new.account)
        .bind(key_column(new.credential_id))
        .bind(new.label)
        .bind(new.client.ip.to_string())
        .bind(new.client.user_agent.as_str())
        .bind(new.now)
        .bind(used.then_some(new.now))
        .bind(added_by),
    )
    .await
    .on(Violation::Unique, Error::KeyRegistered)
    .on(Violation::ForeignKey, Error::UnknownAccount)?;
    conn.execute(
        query(
            "INSERT INTO passkey (key_id, credential_id, credential, sign_count, backup_eligible, backup_state, \
             user_verified, rp_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new.key_id)
        .bind(new.credential_id.to_vec())
        .bind(new.credential)
        .bind(new.sign_count)
        .bind(new.backup_eligible)
        .bind(new.backup_state)
        .bind(new.user_verified)
        .bind(new.rp_id),
    )
    .await
    .on(Violation::Unique, Error::KeyRegistered)?;
    Ok(())
}

/// What a registration signs in with.
#[derive(Debug)]
pub struct Registered<'a> {
    /// The new account's subject, which was its user handle.
    pub subject: &'a str,
    pub session_hash: &'a [u8; 32],
    pub amr: &'a str,
}

/// A new account registered with a passkey, in one transaction: the
/// account (its name checked as every registration's is,
/// [`keys::insert_account`]), its passkey, the session it signs in with,
/// and the sign-in event `register`.
pub async fn register(db: &Db, new: &NewPasskey<'_>, with: &Registered<'_>, ceremony_id: &str) -> Result<()> {
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    keys::insert_account(&mut conn, new.service_id, new.account, with.subject, new.now).await?;
    insert_passkey(&mut conn, new, "register", true).await?;
    let service_id = new.service_id.to_string();
    let opened = Opened {
        service_id: &service_id,
        account: new.account,
        key_id: new.key_id,
        now: new.now,
        session_hash: with.session_hash,
        amr: with.amr,
    };
    session::open_on(&mut conn, &opened).await?;
    event(&mut conn, &service_id, ceremony_id, "register", new.account, new.client, new.now).await?;
    write.commit().await?;
    Ok(())
}

/// Refuses `account` as a new account's name while an account of the
/// service holds it or a name that looks like it (either of its
/// [`Skeletons`]), with the refusal its registration would get. A read,
/// so that starting a registration writes nothing but its ceremony; the
/// insert at its finish ([`keys::insert_account`], under the UNIQUE keys)
/// stays what decides, and refuses a name taken in between the same way.
pub async fn name_free(db: &Db, service_id: &ServiceId, account: &str) -> Result<()> {
    let select = keys::name_holder(service_id, account, &Skeletons::of(account));
    match db.fetch_optional(select, |row| row.text("name")).await? {
        None => Ok(()),
        Some(existing) => Err(Error::AccountExists { name: account.to_owned(), existing }),
    }
}

/// A passkey added to an existing account by its signed-in owner, with the
/// audit record that every key added to an account gets.
pub async fn add(db: &Db, new: &NewPasskey<'_>) -> Result<()> {
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    insert_passkey(&mut conn, new, "enroll", false).await?;
    let actor = audit::Actor::Account(new.account.to_owned());
    let by = By { actor: &actor, client: new.client, at: new.now };
    let detail = format!("service {}, passkey {}", new.service_id, new.key_id);
    audit::record(&mut conn, &by, Record::new(Action::KeyEnrolled, new.account, &detail)).await?;
    write.commit().await?;
    Ok(())
}

/// The sign-in event of a passkey's sign-in or registration, as a QR
/// sign-in's trigger writes it for its challenge.
async fn event(
    conn: &mut Conn<'_>,
    service_id: &str,
    ceremony_id: &str,
    kind: &str,
    account: &str,
    client: &ClientInfo,
    now: i64,
) -> Result<()> {
    conn.execute(
        query(
            "INSERT INTO sign_in_event (service_id, challenge_id, kind, account, ip, user_agent, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(service_id)
        .bind(ceremony_id)
        .bind(kind)
        .bind(account)
        .bind(client.ip.to_string())
        .bind(client.user_agent.as_str())
        .bind(now),
    )
    .await?;
    Ok(())
}

/// How many stored passkeys were registered under a relying party id other
/// than `rp_id`: they sign nobody in here any more.
pub async fn foreign(db: &Db, rp_id: &str) -> Result<i64> {
    db.fetch_one(query("SELECT COUNT(*) AS n FROM passkey WHERE rp_id <> $1").bind(rp_id), |row| row.int("n")).await
}

/// Records a sign-in refused because the passkey's counter did not move
/// forwards: a sign of a copied passkey, for the admin to see.
pub(crate) async fn counter_refused(db: &Db, stored: &Stored, sent: u32, client: &ClientInfo, now: i64) -> Result<()> {
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    let by = By { actor: &audit::Actor::Anonymous, client, at: now };
    let detail =
        format!("service {}, key {}, counter {sent}, stored {}", stored.service_id, stored.key_id, stored.sign_count);
    audit::record(&mut conn, &by, Record::new(Action::PasskeyCounterRefused, &stored.account, &detail)).await?;
    write.commit().await?;
    Ok(())
}
