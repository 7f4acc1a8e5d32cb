//! PostgreSQL's row locks, named. SQLite takes one writer at a time, so
//! every operation here does nothing there.
//!
//! Every transaction that locks more than one kind of row locks them in
//! this order, each set ordered by its key:
//!
//! 1. recovery links (`account_recovery`, by id): a confirmation through a
//!    link locks it first;
//! 2. authorization codes (`oidc_code`, by code hash): a token exchange
//!    locks its code, then checks its key;
//! 3. keys (`account_key`, by id): a login locks its key (`FOR NO KEY
//!    UPDATE`, in `challenge/store.rs`), then its trigger stamps the
//!    account;
//! 4. groups (`service_group`, by id): a change of an account's or an
//!    application's groups takes its service's groups shared ([`groups`])
//!    before the account or application it changes;
//! 5. accounts (`account`, by name).
//!
//! A writer that needs locks of two kinds takes them through here. Where a
//! lock is part of a statement (a login's check of its key), the statement
//! is here too, written whole for each database ([`Locking`]), and a test
//! holds the two texts equal except for the lock.

use super::sql::{query, Conn};
use crate::error::Result;

/// What a deletion is about to remove, with everything that goes with it
/// (`ON DELETE CASCADE`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Doomed<'a> {
    /// A service, by id: its accounts, their keys and codes, its groups.
    Service(&'a str),
    /// An account, by service id and name: its keys and their codes.
    Account(&'a str, &'a str),
    /// One key, by id, and its codes.
    Key(&'a str),
    /// An application (OpenID Connect client), by client id, and its codes.
    Client(&'a str),
}

/// On PostgreSQL, locks the rows that deleting `doomed` will cascade to, in
/// the lock order, each set in a fixed order. A cascade locks them parent
/// first, the other way round, so a deletion racing a sign-in of the same
/// account would deadlock, and PostgreSQL would end one of the two with an
/// error. Taken first, these locks make the deletion wait for the sign-in
/// instead, and a later sign-in wait for the deletion (and then find its
/// key gone).
pub(crate) async fn before_delete(conn: &mut Conn<'_>, doomed: Doomed<'_>) -> Result<()> {
    if !conn.is_postgres() {
        return Ok(());
    }
    const SERVICE: &str = "service_id = $1";
    const ACCOUNT: &str = "service_id = $1 AND account = $2";
    let (links, codes, keys, groups, accounts) = match doomed {
        Doomed::Service(_) => (Some(SERVICE), SERVICE, Some(SERVICE), Some(SERVICE), Some(SERVICE)),
        Doomed::Account(..) => (Some(ACCOUNT), ACCOUNT, Some(ACCOUNT), None, Some("service_id = $1 AND name = $2")),
        Doomed::Key(_) => (None, "key_id = $1", Some("id = $1"), None, None),
        Doomed::Client(_) => (None, "client_id = $1", None, None, None),
    };
    let statements = [
        links.map(|links| format!("SELECT 1 FROM account_recovery WHERE {links} ORDER BY id FOR UPDATE")),
        Some(format!("SELECT 1 FROM oidc_code WHERE {codes} ORDER BY code_hash FOR UPDATE")),
        keys.map(|keys| format!("SELECT 1 FROM account_key WHERE {keys} ORDER BY id FOR UPDATE")),
        groups.map(|groups| format!("SELECT 1 FROM service_group WHERE {groups} ORDER BY id FOR UPDATE")),
        accounts.map(|accounts| format!("SELECT 1 FROM account WHERE {accounts} ORDER BY name FOR UPDATE")),
    ];
    for sql in statements.into_iter().flatten() {
        let lock = query(&sql);
        let lock = match doomed {
            Doomed::Service(id) | Doomed::Key(id) | Doomed::Client(id) => lock.bind(id),
            Doomed::Account(service_id, name) => lock.bind(service_id).bind(name),
        };
        conn.execute(lock).await?;
    }
    Ok(())
}

/// On PostgreSQL, locks account `name` of service `service_id` until the
/// commit: a key being added to it meanwhile (its foreign key shares the
/// row) is waited for, and one added later waits for this transaction.
pub(crate) async fn account(conn: &mut Conn<'_>, service_id: &str, name: &str) -> Result<()> {
    if !conn.is_postgres() {
        return Ok(());
    }
    let lock = query("SELECT 1 FROM account WHERE service_id = $1 AND name = $2 FOR UPDATE");
    conn.execute(lock.bind(service_id).bind(name)).await?;
    Ok(())
}

/// On PostgreSQL, takes the groups of service `service_id` shared until the
/// commit (4. in the order above): a writer of memberships or of an
/// application's groups takes them before the rows it changes, so that a
/// group's deletion (which locks its row, then cascades to those rows)
/// waits for it, or it for the deletion, and neither holds what the other
/// needs. Groups made meanwhile are not seen, and not needed: names are
/// looked up after this.
pub(crate) async fn groups(conn: &mut Conn<'_>, service_id: &str) -> Result<()> {
    if !conn.is_postgres() {
        return Ok(());
    }
    let lock = query("SELECT 1 FROM service_group WHERE service_id = $1 ORDER BY id FOR SHARE");
    conn.execute(lock.bind(service_id)).await?;
    Ok(())
}

/// A statement that locks a row on PostgreSQL, written whole for each
/// database. SQLite has no syntax for the lock, and needs none: it takes one
/// writer at a time. On PostgreSQL a statement reads a snapshot taken as it
/// starts, so a check of another row sees a change committing meanwhile only
/// through a lock on that row.
#[derive(Debug)]
pub(crate) struct Locking {
    postgres: &'static str,
    sqlite: &'static str,
    /// The lock clause, the only difference between the two texts.
    #[cfg_attr(not(test), allow(dead_code))]
    lock: &'static str,
}

impl Locking {
    /// The text for the database behind `conn`.
    pub(crate) fn on(&self, conn: &Conn<'_>) -> &'static str {
        if conn.is_postgres() {
            self.postgres
        } else {
            self.sqlite
        }
    }
}

/// A login's ended challenge, written once (`challenge/store.rs`,
/// `insert_ended`) only while the key that signed is active and still holds
/// the public key `$19`. The key's row is locked until the commit (3. in
/// the order above): without the lock the check would miss a change to the
/// key (its removal, its return to pending, a rekey) committing while the
/// statement runs, and record the login for a key that is no longer active,
/// or no longer this public key. The lock is `FOR NO KEY UPDATE`, the one
/// the trigger's stamp of the key's use (`last_used_at`) needs anyway: with
/// `FOR SHARE`, two logins with one key would each hold a share and wait for
/// the other's to stamp it, a deadlock.
pub(crate) const RECORD_LOGIN: Locking = Locking {
    postgres: "INSERT INTO challenge (id, service_id, base_token, code_secret, binding_hash, allow_register, ip, \
               user_agent, created_at, expires_at, status, hint, purpose, account, key_id, finished_at, \
               enroll_account, recovery_id) \
               SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18 \
               WHERE $13 IS NULL OR $13 <> 'login' \
               OR EXISTS (SELECT 1 FROM account_key WHERE id = $15 AND public_key = $19 AND state = 'active' \
               FOR NO KEY UPDATE)",
    sqlite: "INSERT INTO challenge (id, service_id, base_token, code_secret, binding_hash, allow_register, ip, \
             user_agent, created_at, expires_at, status, hint, purpose, account, key_id, finished_at, \
             enroll_account, recovery_id) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18 \
             WHERE $13 IS NULL OR $13 <> 'login' \
             OR EXISTS (SELECT 1 FROM account_key WHERE id = $15 AND public_key = $19 AND state = 'active')",
    lock: " FOR NO KEY UPDATE",
};

/// A pending challenge's row moved to its outcome (`challenge/store.rs`,
/// `consume_row`), a login's only while its key is active and holds `$8`:
/// the key's row is locked as in [`RECORD_LOGIN`], before the challenge's,
/// so racing answers queue at the key.
pub(crate) const CONSUME_LOGIN: Locking = Locking {
    postgres: "UPDATE challenge SET status = $2, hint = $3, purpose = $4, account = $5, finished_at = $6, \
               key_id = $7 WHERE id = $1 AND status = 'pending' AND expires_at > $6 AND ($4 IS NULL \
               OR $4 <> 'login' \
               OR EXISTS (SELECT 1 FROM account_key WHERE id = $7 AND public_key = $8 AND state = 'active' \
               FOR NO KEY UPDATE))",
    sqlite: "UPDATE challenge SET status = $2, hint = $3, purpose = $4, account = $5, finished_at = $6, \
             key_id = $7 WHERE id = $1 AND status = 'pending' AND expires_at > $6 AND ($4 IS NULL \
             OR $4 <> 'login' \
             OR EXISTS (SELECT 1 FROM account_key WHERE id = $7 AND public_key = $8 AND state = 'active'))",
    lock: " FOR NO KEY UPDATE",
};

/// An admin session (`admin/session.rs`), opened by a key only while it is
/// active: a pending admin authenticator, which nobody has confirmed yet,
/// signs nobody in. The check shares the key's row until the commit:
/// without the lock a removal committing meanwhile would surface as a broken
/// foreign key (a 500, not a refusal), and a key returned to pending
/// meanwhile would still open a session.
pub(crate) const OPEN_ADMIN_SESSION: Locking = Locking {
    postgres: "INSERT INTO admin_session (id_hash, csrf_token, created_at, expires_at, key_id, token_digest, ip, \
               user_agent) SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
               WHERE $5 IS NULL OR EXISTS (SELECT 1 FROM account_key WHERE id = $5 AND state = 'active' \
               FOR SHARE)",
    sqlite: "INSERT INTO admin_session (id_hash, csrf_token, created_at, expires_at, key_id, token_digest, ip, \
             user_agent) SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
             WHERE $5 IS NULL OR EXISTS (SELECT 1 FROM account_key WHERE id = $5 AND state = 'active')",
    lock: " FOR SHARE",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_locking_statement_differs_between_the_databases_only_by_its_lock() {
        for statement in [&RECORD_LOGIN, &CONSUME_LOGIN, &OPEN_ADMIN_SESSION] {
            assert_eq!(statement.postgres.matches(statement.lock).count(), 1, "{statement:?}");
            assert_eq!(statement.postgres.replacen(statement.lock, "", 1), statement.sqlite, "{statement:?}");
        }
    }
}
