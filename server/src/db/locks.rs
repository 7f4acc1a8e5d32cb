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
//! 4. accounts (`account`, by name).
//!
//! A writer that needs locks of two kinds takes them through here, or, where
//! a lock is part of a statement (`sql::locking!`), in this order.

use sqlx::AnyConnection;

use super::{timed, Backend, Db};
use crate::error::Result;

/// What a deletion is about to remove, with everything that goes with it
/// (`ON DELETE CASCADE`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Doomed<'a> {
    /// A service, by id: its accounts, their keys and codes.
    Service(&'a str),
    /// An account, by service id and name: its keys and their codes.
    Account(&'a str, &'a str),
    /// One key, by id, and its codes.
    Key(&'a str),
    /// The OpenID Connect client of a service, by service id, and its codes.
    Client(&'a str),
}

/// On PostgreSQL, locks the rows that deleting `doomed` will cascade to, in
/// the lock order, each set in a fixed order. A cascade locks them parent
/// first, the other way round, so a deletion racing a sign-in of the same
/// account would deadlock, and PostgreSQL would end one of the two with an
/// error. Taken first, these locks make the deletion wait for the sign-in
/// instead, and a later sign-in wait for the deletion (and then find its
/// key gone).
pub(crate) async fn before_delete(db: &Db, conn: &mut AnyConnection, doomed: Doomed<'_>) -> Result<()> {
    if db.backend != Backend::Postgres {
        return Ok(());
    }
    const SERVICE: &str = "service_id = $1";
    const ACCOUNT: &str = "service_id = $1 AND account = $2";
    let (links, codes, keys, accounts) = match doomed {
        Doomed::Service(_) => (Some(SERVICE), SERVICE, Some(SERVICE), Some(SERVICE)),
        Doomed::Account(..) => (Some(ACCOUNT), ACCOUNT, Some(ACCOUNT), Some("service_id = $1 AND name = $2")),
        Doomed::Key(_) => (None, "key_id = $1", Some("id = $1"), None),
        Doomed::Client(_) => {
            (None, "client_id IN (SELECT client_id FROM oidc_client WHERE service_id = $1)", None, None)
        }
    };
    let statements = [
        links.map(|links| format!("SELECT 1 FROM account_recovery WHERE {links} ORDER BY id FOR UPDATE")),
        Some(format!("SELECT 1 FROM oidc_code WHERE {codes} ORDER BY code_hash FOR UPDATE")),
        keys.map(|keys| format!("SELECT 1 FROM account_key WHERE {keys} ORDER BY id FOR UPDATE")),
        accounts.map(|accounts| format!("SELECT 1 FROM account WHERE {accounts} ORDER BY name FOR UPDATE")),
    ];
    for sql in statements.into_iter().flatten() {
        let query = sqlx::query(&sql);
        let query = match doomed {
            Doomed::Service(id) | Doomed::Key(id) | Doomed::Client(id) => query.bind(id),
            Doomed::Account(service_id, name) => query.bind(service_id).bind(name),
        };
        query.execute(timed(&mut *conn)).await?;
    }
    Ok(())
}

/// On PostgreSQL, locks account `name` of service `service_id` until the
/// commit: a key being added to it meanwhile (its foreign key shares the
/// row) is waited for, and one added later waits for this transaction.
pub(crate) async fn account(db: &Db, conn: &mut AnyConnection, service_id: &str, name: &str) -> Result<()> {
    if db.backend != Backend::Postgres {
        return Ok(());
    }
    sqlx::query("SELECT 1 FROM account WHERE service_id = $1 AND name = $2 FOR UPDATE")
        .bind(service_id)
        .bind(name)
        .execute(timed(&mut *conn))
        .await?;
    Ok(())
}
