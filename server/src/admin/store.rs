//! The admin side's SQL: services, their accounts and their sign-in events.
//!
//! The JSON API and the web page both go through these functions, so the two
//! can never disagree about what a service is or what deleting one removes.

use rand::rngs::OsRng;
use sesame_proto::{AccountName, ServiceId, ServiceName};
use sqlx::Row as _;

use crate::{
    audit::{self, Action, By, Record},
    challenge::Challenges,
    db::{
        locks::{self, Doomed},
        timed, Db,
    },
    error::{on_unique_violation, Error, Result},
};

/// A service as operators see it. The built-in "Sesame admin" service is
/// never one of these: it is part of the server, not something to manage.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) accounts: i64,
    /// Sign-ins ask for the number the login page shows (PROTOCOL.md §14).
    pub(crate) number_matching: bool,
}

/// The columns of [`Service`], for `FROM service s`, as a literal so that
/// the statements that read them are constants. sqlx's `Any` driver cannot
/// decode SQLite's BOOLEAN.
macro_rules! service_columns {
    () => {
        "s.id, s.name, (SELECT COUNT(*) FROM account a WHERE a.service_id = s.id) AS accounts, \
         CASE WHEN s.number_matching THEN 1 ELSE 0 END AS number_matching"
    };
}

fn service_row(row: &sqlx::any::AnyRow) -> Result<Service> {
    Ok(Service {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        accounts: row.try_get(2)?,
        number_matching: row.try_get::<i64, _>(3)? != 0,
    })
}

#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub(crate) name: String,
    pub(crate) created_at: i64,
    pub(crate) last_login_at: Option<i64>,
    /// No key of the account is active yet: it waits for confirmation.
    pub(crate) pending: bool,
}

/// The columns of [`Account`], for `FROM account a`.
const ACCOUNT_COLUMNS: &str = "a.name, a.created_at, a.last_login_at, \
     CASE WHEN EXISTS (SELECT 1 FROM account_key k WHERE k.service_id = a.service_id AND k.account = a.name \
     AND k.state = 'active') THEN 0 ELSE 1 END AS pending";

fn account(row: &sqlx::any::AnyRow) -> Result<Account> {
    Ok(Account {
        name: row.try_get(0)?,
        created_at: row.try_get(1)?,
        last_login_at: row.try_get(2)?,
        pending: row.try_get::<i64, _>(3)? != 0,
    })
}

#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) kind: String,
    pub(crate) account: Option<String>,
    pub(crate) ip: String,
    pub(crate) user_agent: String,
    pub(crate) at: i64,
}

/// How many sign-in events a service's page and the API show.
pub(crate) const RECENT_EVENTS: i64 = 100;

/// Creates a service. The name's UNIQUE constraint decides conflicts, so two
/// admins racing for one name get one 201 and one 409, never two services.
/// The audit record is written `by` in the same transaction.
pub(crate) async fn create_service(db: &Db, name: &ServiceName, number_matching: bool, by: &By<'_>) -> Result<Service> {
    let id = ServiceId::random(&mut OsRng).to_string();
    let mut tx = db.pool.begin().await?;
    sqlx::query("INSERT INTO service (id, name, builtin, created_at, number_matching) VALUES ($1, $2, FALSE, $3, $4)")
        .bind(&id)
        .bind(name.as_str())
        .bind(by.at)
        .bind(number_matching)
        .execute(timed(&mut *tx))
        .await
        .map_err(|e| on_unique_violation(e, Error::ServiceNameTaken))?;
    let detail = if number_matching { name.as_str().to_owned() } else { format!("{name}, without number matching") };
    audit::record(&mut *tx, by, Record::new(Action::ServiceCreated, &id, &detail)).await?;
    tx.commit().await?;
    Ok(Service { id, name: name.as_str().to_owned(), accounts: 0, number_matching })
}

/// Turns number matching (PROTOCOL.md §14) on or off for a service. A
/// challenge already waiting keeps what it was issued with. The audit
/// record is written `by` in the same transaction.
pub(crate) async fn set_number_matching(
    db: &Db,
    challenges: &Challenges,
    id: &str,
    on: bool,
    by: &By<'_>,
) -> Result<Service> {
    let id = parse_id(id)?;
    let mut tx = db.pool.begin().await?;
    let done = sqlx::query("UPDATE service SET number_matching = $2 WHERE id = $1 AND NOT builtin")
        .bind(&id)
        .bind(on)
        .execute(timed(&mut *tx))
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::UnknownService);
    }
    let detail = if on { "number matching on" } else { "number matching off" };
    audit::record(&mut *tx, by, Record::new(Action::ServiceChanged, &id, detail)).await?;
    let sql = concat!("SELECT ", service_columns!(), " FROM service s WHERE s.id = $1");
    let service = service_row(&sqlx::query(sql).bind(&id).fetch_one(timed(&mut *tx)).await?)?;
    tx.commit().await?;
    // This instance's challenges read the setting from its cache; other
    // instances read it with every challenge they store.
    if let Ok(id) = id.parse::<ServiceId>() {
        challenges.forget_service(&id);
    }
    Ok(service)
}

/// Every managed service, oldest first (ties broken by name, since times are
/// whole seconds).
pub(crate) async fn list_services(db: &Db) -> Result<Vec<Service>> {
    let sql =
        concat!("SELECT ", service_columns!(), " FROM service s WHERE NOT s.builtin ORDER BY s.created_at, s.name");
    let rows = sqlx::query(sql).fetch_all(timed(&db.pool)).await?;
    rows.iter().map(service_row).collect()
}

/// One managed service; `UnknownService` for a malformed id, a missing one,
/// or the built-in one.
pub(crate) async fn service(db: &Db, id: &str) -> Result<Service> {
    let id = parse_id(id)?;
    let sql = concat!("SELECT ", service_columns!(), " FROM service s WHERE s.id = $1 AND NOT s.builtin");
    let row = sqlx::query(sql).bind(&id).fetch_optional(timed(&db.pool)).await?.ok_or(Error::UnknownService)?;
    service_row(&row)
}

/// Deletes a service. Its accounts, challenges, sessions and events go with
/// it through `ON DELETE CASCADE`, in the same statement, so nothing is left
/// half-deleted. The audit record is written `by` in the same transaction.
pub(crate) async fn delete_service(db: &Db, challenges: &Challenges, id: &str, by: &By<'_>) -> Result<()> {
    let id = parse_id(id)?;
    let mut tx = db.pool.begin().await?;
    locks::before_delete(db, &mut tx, Doomed::Service(&id)).await?;
    let done =
        sqlx::query("DELETE FROM service WHERE id = $1 AND NOT builtin").bind(&id).execute(timed(&mut *tx)).await?;
    if done.rows_affected() == 0 {
        return Err(Error::UnknownService);
    }
    audit::record(&mut *tx, by, Record::new(Action::ServiceDeleted, &id, "")).await?;
    tx.commit().await?;
    if let Ok(id) = id.parse::<ServiceId>() {
        challenges.forget_service(&id);
    }
    Ok(())
}

/// How many accounts a service's admin page lists at once.
pub(crate) const ACCOUNTS_PER_PAGE: i64 = 100;

/// One page of a service's accounts, oldest first, and how many it has.
#[derive(Debug)]
pub(crate) struct AccountPage {
    pub(crate) accounts: Vec<Account>,
    pub(crate) total: i64,
}

/// Page `page` (from 0) of a service's accounts, [`ACCOUNTS_PER_PAGE`] a page.
pub(crate) async fn accounts_page(db: &Db, service_id: &str, page: i64) -> Result<AccountPage> {
    let service = service(db, service_id).await?;
    let offset = page.saturating_mul(ACCOUNTS_PER_PAGE);
    let accounts = accounts_of(db, &service.id, Some(ACCOUNTS_PER_PAGE), offset).await?;
    Ok(AccountPage { accounts, total: service.accounts })
}

/// A service's accounts, oldest first: `limit` of them (all when `None`)
/// after skipping `offset`.
pub(crate) async fn list_accounts(db: &Db, service_id: &str, limit: Option<i64>, offset: i64) -> Result<Vec<Account>> {
    let service = service(db, service_id).await?;
    accounts_of(db, &service.id, limit, offset).await
}

async fn accounts_of(db: &Db, service_id: &str, limit: Option<i64>, offset: i64) -> Result<Vec<Account>> {
    let rows = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM account a WHERE a.service_id = $1 ORDER BY a.created_at, a.name \
         LIMIT $2 OFFSET $3"
    ))
    .bind(service_id)
    .bind(limit.unwrap_or(i64::MAX))
    .bind(offset)
    .fetch_all(timed(&db.pool))
    .await?;
    rows.iter().map(account).collect()
}

/// What deleting a service or an account takes with it, counted for the
/// page that asks first (`kit::AreYouSure`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Footprint {
    pub(crate) accounts: i64,
    pub(crate) keys: i64,
    /// Sessions still live at `now`.
    pub(crate) sessions: i64,
    pub(crate) recovery_links: i64,
    /// Whether an OpenID Connect client (a relying party) is configured.
    pub(crate) oidc_client: bool,
}

/// What deleting service `id` would take with it at `now`.
pub(crate) async fn service_footprint(db: &Db, id: &str, now: i64) -> Result<Footprint> {
    let id = parse_id(id)?;
    footprint(db, "service_id = $1", &id, None, now).await
}

/// What deleting account `name` of service `service_id` would take with it
/// at `now`.
pub(crate) async fn account_footprint(db: &Db, service_id: &str, name: &str, now: i64) -> Result<Footprint> {
    let id = parse_id(service_id)?;
    footprint(db, "service_id = $1 AND account = $3", &id, Some(name), now).await
}

async fn footprint(db: &Db, rows: &str, service_id: &str, account: Option<&str>, now: i64) -> Result<Footprint> {
    // `rows` is one of two constants above; the values are bound.
    let accounts = if account.is_some() { "service_id = $1 AND name = $3" } else { "service_id = $1" };
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM account WHERE {accounts}), \
         (SELECT COUNT(*) FROM account_key WHERE {rows}), \
         (SELECT COUNT(*) FROM session WHERE {rows} AND expires_at > $2), \
         (SELECT COUNT(*) FROM account_recovery WHERE {rows} AND used_at IS NULL AND revoked_at IS NULL \
          AND expires_at > $2), \
         (SELECT COUNT(*) FROM oidc_client WHERE service_id = $1 AND $3 IS NULL)"
    );
    let row = sqlx::query(&sql).bind(service_id).bind(now).bind(account).fetch_one(timed(&db.pool)).await?;
    Ok(Footprint {
        accounts: row.try_get(0)?,
        keys: row.try_get(1)?,
        sessions: row.try_get(2)?,
        recovery_links: row.try_get(3)?,
        oidc_client: row.try_get::<i64, _>(4)? > 0,
    })
}

/// Deletes one account; its keys and their sessions go with it (`ON DELETE
/// CASCADE`). The audit record is written `by` in the same transaction.
pub(crate) async fn delete_account(db: &Db, service_id: &str, name: &str, by: &By<'_>) -> Result<()> {
    let service = service(db, service_id).await?;
    // A name that could never have been registered cannot exist either.
    let name = AccountName::parse(name).map_err(|_| Error::UnknownAccount)?;
    let mut tx = db.pool.begin().await?;
    locks::before_delete(db, &mut tx, Doomed::Account(&service.id, name.as_str())).await?;
    let done = sqlx::query("DELETE FROM account WHERE service_id = $1 AND name = $2")
        .bind(&service.id)
        .bind(name.as_str())
        .execute(timed(&mut *tx))
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::UnknownAccount);
    }
    let detail = format!("service {}", service.id);
    audit::record(&mut *tx, by, Record::new(Action::AccountDeleted, name.as_str(), &detail)).await?;
    tx.commit().await?;
    Ok(())
}

/// A service's most recent sign-in events, newest first.
pub(crate) async fn recent_events(db: &Db, service_id: &str) -> Result<Vec<Event>> {
    let service = service(db, service_id).await?;
    let rows = sqlx::query(
        "SELECT kind, account, ip, user_agent, at FROM sign_in_event WHERE service_id = $1 \
         ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(&service.id)
    .bind(RECENT_EVENTS)
    .fetch_all(timed(&db.pool))
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Event {
                kind: row.try_get(0)?,
                account: row.try_get(1)?,
                ip: row.try_get(2)?,
                user_agent: row.try_get(3)?,
                at: row.try_get(4)?,
            })
        })
        .collect()
}

/// Creates the service `name` unless it exists, and returns its id. Used at
/// start-up, where several instances may race: `ON CONFLICT DO NOTHING` lets
/// one insert win and all of them then read the same row.
pub(crate) async fn ensure_service(db: &Db, name: &ServiceName, now: i64) -> Result<String> {
    let candidate = ServiceId::random(&mut OsRng).to_string();
    sqlx::query(
        // Number matching on, as for every service created from now on.
        "INSERT INTO service (id, name, builtin, created_at, number_matching) VALUES ($1, $2, FALSE, $3, TRUE) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&candidate)
    .bind(name.as_str())
    .bind(now)
    .execute(timed(&db.pool))
    .await?;
    let id: String = sqlx::query_scalar("SELECT id FROM service WHERE name = $1")
        .bind(name.as_str())
        .fetch_one(timed(&db.pool))
        .await?;
    Ok(id)
}

/// The login page of a service.
pub(crate) fn login_url(origin: &sesame_proto::Origin, id: &str) -> String {
    format!("{origin}/services/{id}")
}

pub(crate) use crate::clock::rfc3339;

/// Ids in paths must be canonical (32 lowercase hex digits); anything else
/// names no service.
fn parse_id(text: &str) -> Result<String> {
    text.parse::<ServiceId>().map(|id| id.to_string()).map_err(|_| Error::UnknownService)
}

/// The built-in service whose accounts may sign in to the admin page.
pub(crate) const ADMIN_SERVICE: &str = "Sesame admin";

/// The id of the built-in admin service, created on first use. A managed
/// service that took the name first is never mistaken for it.
pub(crate) async fn admin_service(db: &Db, now: i64) -> Result<String> {
    let name = ServiceName::parse(ADMIN_SERVICE).expect("the admin service name is valid");
    let candidate = ServiceId::random(&mut OsRng).to_string();
    sqlx::query(
        "INSERT INTO service (id, name, builtin, created_at) VALUES ($1, $2, TRUE, $3) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&candidate)
    .bind(name.as_str())
    .bind(now)
    .execute(timed(&db.pool))
    .await?;
    let id: Option<String> = sqlx::query_scalar("SELECT id FROM service WHERE name = $1 AND builtin")
        .bind(name.as_str())
        .fetch_optional(timed(&db.pool))
        .await?;
    id.ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "a managed service is named {ADMIN_SERVICE:?}; rename it to enable admin sign-in"
        ))
    })
}

/// The authenticator accounts that may sign in to the admin page.
pub(crate) async fn admin_accounts(db: &Db, now: i64) -> Result<Vec<Account>> {
    let id = admin_service(db, now).await?;
    let rows = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM account a WHERE a.service_id = $1 ORDER BY a.created_at, a.name"
    ))
    .bind(&id)
    .fetch_all(timed(&db.pool))
    .await?;
    rows.iter().map(account).collect()
}

/// Removes an admin authenticator. Its keys go with it, and with them every
/// admin session they opened (`ON DELETE CASCADE`). The audit record is
/// written `by` in the same transaction.
pub(crate) async fn delete_admin_account(db: &Db, name: &str, by: &By<'_>) -> Result<()> {
    let id = admin_service(db, by.at).await?;
    let mut tx = db.pool.begin().await?;
    locks::before_delete(db, &mut tx, Doomed::Account(&id, name)).await?;
    let done = sqlx::query("DELETE FROM account WHERE service_id = $1 AND name = $2")
        .bind(&id)
        .bind(name)
        .execute(timed(&mut *tx))
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::UnknownAccount);
    }
    audit::record(&mut *tx, by, Record::new(Action::AuthenticatorRemoved, name, "")).await?;
    tx.commit().await?;
    Ok(())
}
