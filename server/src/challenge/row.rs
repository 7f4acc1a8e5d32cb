//! A challenge as stored, and the final states it can move to.
//!
//! [`ChallengeRow`] is the same whether the challenge is held in memory
//! ([`super::pending`]) or read from the `challenge` table; [`Final`] is what
//! ending it records. Reading and moving rows is [`super::store`]'s.

use sesame_proto::{wire::Status, ChallengeId, FreshnessSecret, MatchNumber, ServiceId, UnixTime};

use crate::{
    db::sql::Row,
    error::{Error, Result},
};

/// A challenge row as stored.
#[derive(Clone)]
pub struct ChallengeRow {
    pub id: ChallengeId,
    pub service_id: ServiceId,
    pub base_token: String,
    /// Decoded once, when the row is read.
    pub code_secret: FreshnessSecret,
    pub binding_hash: Vec<u8>,
    pub allow_register: bool,
    pub ip: String,
    pub user_agent: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub status: Status,
    pub hint: String,
    pub purpose: Option<String>,
    pub account: Option<String>,
    /// The key that completed a registration or a login.
    pub key_id: Option<String>,
    pub finished_at: Option<i64>,
    pub redeemed_at: Option<i64>,
    /// For an enrollment challenge, the existing account it adds a key to.
    pub enroll_account: Option<String>,
    /// For an enrollment challenge opened from a recovery link, that link.
    pub recovery_id: Option<String>,
    /// The number its page shows, when its service asks for one
    /// (PROTOCOL.md §14). Held while the challenge is pending; an ended row
    /// needs it no more.
    pub number: Option<MatchNumber>,
}

impl std::fmt::Debug for ChallengeRow {
    // The code secret and the binding hash stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChallengeRow")
            .field("id", &self.id)
            .field("service_id", &self.service_id)
            .field("status", &self.status)
            .field("hint", &self.hint)
            .finish_non_exhaustive()
    }
}

impl ChallengeRow {
    /// `new` as it starts: pending and outstanding, taking a new account
    /// if `allow_register`, asking for `number` if there is one.
    pub fn pending(new: &NewChallenge<'_>, allow_register: bool, number: Option<MatchNumber>) -> Self {
        Self {
            id: new.id,
            service_id: new.service_id,
            base_token: new.base_token.to_owned(),
            code_secret: FreshnessSecret::from_bytes(*new.code_secret),
            binding_hash: new.binding_hash.to_vec(),
            allow_register,
            ip: new.ip.to_owned(),
            user_agent: new.user_agent.to_owned(),
            created_at: new.created_at,
            expires_at: new.expires_at,
            status: Status::Pending,
            hint: "outstanding".to_owned(),
            purpose: None,
            account: None,
            key_id: None,
            finished_at: None,
            redeemed_at: None,
            enroll_account: new.enroll_account.map(str::to_owned),
            recovery_id: new.recovery_id.map(str::to_owned),
            number,
        }
    }

    /// Pending in the table, but past its expiry: it only waits for someone
    /// to write down that it expired.
    pub fn is_overdue(&self, now: UnixTime) -> bool {
        self.status == Status::Pending && now.as_secs() as i64 >= self.expires_at
    }

    pub(crate) fn from_row(row: &dyn Row) -> Result<Self> {
        let corrupt = |what: &str| Error::Internal(anyhow::anyhow!("stored challenge has a corrupt {what}"));
        Ok(Self {
            id: row.text("id")?.parse().map_err(|_| corrupt("id"))?,
            service_id: row.text("service_id")?.parse().map_err(|_| corrupt("service id"))?,
            base_token: row.text("base_token")?,
            code_secret: FreshnessSecret::from_bytes(
                row.blob("code_secret")?.try_into().map_err(|_| corrupt("code secret"))?,
            ),
            binding_hash: row.blob("binding_hash")?,
            allow_register: row.bool("allow_register")?,
            ip: row.text("ip")?,
            user_agent: row.text("user_agent")?,
            created_at: row.int("created_at")?,
            expires_at: row.int("expires_at")?,
            status: Status::parse(&row.text("status")?).ok_or_else(|| corrupt("status"))?,
            hint: row.text("hint")?,
            purpose: row.opt_text("purpose")?,
            account: row.opt_text("account")?,
            key_id: row.opt_text("key_id")?,
            finished_at: row.opt_int("finished_at")?,
            redeemed_at: row.opt_int("redeemed_at")?,
            enroll_account: row.opt_text("enroll_account")?,
            recovery_id: row.opt_text("recovery_id")?,
            number: row
                .opt_int("number")?
                .map(|n| u32::try_from(n).ok().and_then(|n| MatchNumber::new(n).ok()).ok_or_else(|| corrupt("number")))
                .transpose()?,
        })
    }
}

/// What a new challenge row holds.
#[derive(Debug)]
pub struct NewChallenge<'a> {
    pub id: ChallengeId,
    pub service_id: ServiceId,
    pub base_token: &'a str,
    pub code_secret: &'a [u8; 32],
    pub binding_hash: &'a [u8; 32],
    pub ip: &'a str,
    pub user_agent: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
    /// Set for an enrollment challenge: the account it adds a key to.
    pub enroll_account: Option<&'a str>,
    /// Set for an enrollment challenge opened from a recovery link.
    pub recovery_id: Option<&'a str>,
    /// Drawn for every challenge; kept only when its service asks for a
    /// number (PROTOCOL.md §14) and it is a sign-in.
    pub number: MatchNumber,
}

/// A final state and what it records.
#[derive(Debug, Clone)]
pub struct Final {
    pub status: Status,
    pub hint: &'static str,
    pub purpose: Option<&'static str>,
    pub account: Option<String>,
    /// The key that registered or signed in.
    pub key_id: Option<String>,
    /// For a login, the public key its signature was verified with: the
    /// login is written only while the key `key_id` still holds it, so that
    /// a rekey committing meanwhile refuses the old key (PROTOCOL.md §13).
    pub signed_with: Option<[u8; 32]>,
}

impl Final {
    pub fn registered(account: String, key_id: String) -> Self {
        Self::completed("register", account, key_id)
    }

    /// A login by `account`, signed with `public_key`, key `key_id`'s.
    pub fn logged_in(account: String, key_id: String, public_key: [u8; 32]) -> Self {
        Self { signed_with: Some(public_key), ..Self::completed("login", account, key_id) }
    }

    /// A key added to `account`, which waits for the page's confirmation.
    pub fn enrolled(account: String, key_id: String) -> Self {
        Self::completed("enroll", account, key_id)
    }

    fn completed(purpose: &'static str, account: String, key_id: String) -> Self {
        Self {
            status: Status::Completed,
            hint: purpose,
            purpose: Some(purpose),
            account: Some(account),
            key_id: Some(key_id),
            signed_with: None,
        }
    }

    pub fn denied() -> Self {
        Self {
            status: Status::Denied,
            hint: "user_denied",
            purpose: None,
            account: None,
            key_id: None,
            signed_with: None,
        }
    }

    /// The authenticator sent another number than the page shows
    /// (PROTOCOL.md §14): the sign-in is refused for good, so that the
    /// number cannot be guessed twice.
    pub fn wrong_number() -> Self {
        Self { hint: "wrong_number", ..Self::denied() }
    }

    pub fn cancelled() -> Self {
        Self {
            status: Status::Cancelled,
            hint: "user_cancel",
            purpose: None,
            account: None,
            key_id: None,
            signed_with: None,
        }
    }

    pub fn expired() -> Self {
        Self { status: Status::Expired, hint: "expired", purpose: None, account: None, key_id: None, signed_with: None }
    }

    /// `row` as this outcome leaves it.
    pub fn apply(&self, row: &mut ChallengeRow, now: UnixTime) {
        row.status = self.status;
        row.hint = self.hint.to_owned();
        row.purpose = self.purpose.map(str::to_owned);
        row.account = self.account.clone();
        row.key_id = self.key_id.clone();
        row.finished_at = Some(now.as_secs() as i64);
    }
}

/// The columns of a [`ChallengeRow`], as a literal, so that the statements
/// that read them are constants.
macro_rules! columns {
    () => {
        "id, service_id, base_token, code_secret, binding_hash, \
         allow_register, ip, user_agent, created_at, expires_at, \
         status, hint, purpose, account, key_id, finished_at, redeemed_at, enroll_account, recovery_id, number"
    };
}
pub(super) use columns;

/// Why an answer to this challenge can no longer be taken, if it cannot.
pub fn refusal(row: &ChallengeRow, now: UnixTime) -> Option<Error> {
    match row.status {
        Status::Expired => Some(Error::ChallengeExpired),
        Status::Pending if row.is_overdue(now) => Some(Error::ChallengeExpired),
        Status::Pending => None,
        other => Some(Error::ChallengeFinished(other)),
    }
}
