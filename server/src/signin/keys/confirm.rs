//! Keys that wait for a person's word (docs/PROTOCOL.md §11, §12): the key
//! an admin authenticator or an enrollment registered, read for the page
//! that shows its code, and confirmed or refused there.

use sesame_proto::{AccountPublicKey, ChallengeId, ConfirmationCode};

use super::{decode_key, is_key_id};
use crate::{
    audit::{self, Action, By, Record},
    db::{
        locks::{self, Doomed},
        sql::query,
        Db,
    },
    error::{Error, Result},
    http::extract::ClientInfo,
};

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

/// What a confirmed enrollment did.
#[derive(Debug, Clone)]
pub struct Confirmed {
    pub account: String,
    /// The new key's label; empty when the authenticator gave none.
    pub label: String,
    /// How many other keys of the account a recovery link removed with it.
    pub others_removed: u64,
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
        "UPDATE account_key SET state = 'active', challenge_id = NULL, confirmed_at = $3 \
         WHERE challenge_id = $1 AND id = $2 AND state = 'pending' RETURNING account",
    )
    .bind(challenge_id.to_string())
    .bind(key_id)
    .bind(by.at);
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
    // `confirmed_at`: the key joins the account now, and the account's
    // other authenticators are told of it from now on (PROTOCOL.md §6.4).
    let activate = query(
        "UPDATE account_key SET state = 'active', challenge_id = NULL, confirmed_at = $3 \
         WHERE challenge_id = $1 AND id = $2 AND state = 'pending' RETURNING account, label",
    )
    .bind(row.id.to_string())
    .bind(key_id)
    .bind(now);
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
