//! The admin side's SQL: services, their accounts and their sign-in events.
//!
//! The JSON API and the web page both go through these functions, so the two
//! can never disagree about what a service is or what deleting one removes.

use std::sync::LazyLock;

use rand::rngs::OsRng;
use sesame_proto::{AccountName, ServiceId, ServiceName};

use crate::{
    audit::{self, Action, By, Record},
    challenge::Challenges,
    db::{
        locks::{self, Doomed},
        sql::{query, Conn, Row},
        Db,
    },
    error::{Error, Result},
    names::Skeletons,
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
    /// Which kinds of key sign in: `sesame`, `passkey` or `both`.
    pub(crate) key_kinds: String,
    /// Whether a passkey must verify its user.
    pub(crate) require_user_verification: bool,
}

/// The columns of [`Service`], for `FROM service s`, as a literal so that
/// the statements that read them are constants.
macro_rules! service_columns {
    () => {
        "s.id, s.name, (SELECT COUNT(*) FROM account a WHERE a.service_id = s.id) AS accounts, s.number_matching, \
         s.key_kinds, s.require_user_verification"
    };
}

fn service_row(row: &dyn Row) -> Result<Service> {
    Ok(Service {
        id: row.text("id")?,
        name: row.text("name")?,
        accounts: row.int("accounts")?,
        number_matching: row.bool("number_matching")?,
        key_kinds: row.text("key_kinds")?,
        require_user_verification: row.bool("require_user_verification")?,
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
     NOT EXISTS (SELECT 1 FROM account_key k WHERE k.service_id = a.service_id AND k.account = a.name \
     AND k.state = 'active') AS pending";

fn account(row: &dyn Row) -> Result<Account> {
    Ok(Account {
        name: row.text("name")?,
        created_at: row.int("created_at")?,
        last_login_at: row.opt_int("last_login_at")?,
        pending: row.bool("pending")?,
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

/// Creates a service. The UNIQUE indexes of the name and of its look-alike
/// keys (names.rs) decide conflicts, so two admins racing for one name, or
/// for two names that look alike, get one 201 and one 409, never two
/// services. The audit record is written `by` in the same transaction.
pub(crate) async fn create_service(db: &Db, name: &ServiceName, number_matching: bool, by: &By<'_>) -> Result<Service> {
    let id = ServiceId::random(&mut OsRng).to_string();
    let keys = Skeletons::of(name.as_str());
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    // DO NOTHING rather than a violation: on PostgreSQL a violation ends
    // the transaction, and the refusal must read the name that won.
    let insert = query(
        "INSERT INTO service (id, name, builtin, created_at, number_matching, skeleton_folded, skeleton_written) \
         VALUES ($1, $2, FALSE, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(id.as_str())
    .bind(name.as_str())
    .bind(by.at)
    .bind(number_matching)
    .bind(keys.folded.as_str())
    .bind(keys.written.as_str());
    if conn.execute(insert).await? == 0 {
        return Err(name_taken(&mut conn, name, &keys).await?);
    }
    let detail = if number_matching { name.as_str().to_owned() } else { format!("{name}, without number matching") };
    audit::record(&mut conn, by, Record::new(Action::ServiceCreated, &id, &detail)).await?;
    write.commit().await?;
    Ok(Service {
        id,
        name: name.as_str().to_owned(),
        accounts: 0,
        number_matching,
        // The columns' defaults: Sesame keys only, until an admin says otherwise.
        key_kinds: "sesame".to_owned(),
        require_user_verification: false,
    })
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
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    let done = conn
        .execute(
            query("UPDATE service SET number_matching = $2 WHERE id = $1 AND NOT builtin").bind(id.as_str()).bind(on),
        )
        .await?;
    if done == 0 {
        return Err(Error::UnknownService);
    }
    let detail = if on { "number matching on" } else { "number matching off" };
    audit::record(&mut conn, by, Record::new(Action::ServiceChanged, &id, detail)).await?;
    let sql = concat!("SELECT ", service_columns!(), " FROM service s WHERE s.id = $1");
    let service = conn.fetch_one(query(sql).bind(id.as_str()), service_row).await?;
    write.commit().await?;
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
    db.fetch_all(query(sql), service_row).await
}

/// One managed service; `UnknownService` for a malformed id, a missing one,
/// or the built-in one.
pub(crate) async fn service(db: &Db, id: &str) -> Result<Service> {
    let id = parse_id(id)?;
    let sql = concat!("SELECT ", service_columns!(), " FROM service s WHERE s.id = $1 AND NOT s.builtin");
    db.fetch_optional(query(sql).bind(id.as_str()), service_row).await?.ok_or(Error::UnknownService)
}

/// Deletes a service. Its accounts, challenges, sessions and events go with
/// it through `ON DELETE CASCADE`, in the same statement, so nothing is left
/// half-deleted. The audit record is written `by` in the same transaction.
pub(crate) async fn delete_service(db: &Db, challenges: &Challenges, id: &str, by: &By<'_>) -> Result<()> {
    let id = parse_id(id)?;
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    locks::before_delete(&mut conn, Doomed::Service(&id)).await?;
    let done = conn.execute(query("DELETE FROM service WHERE id = $1 AND NOT builtin").bind(id.as_str())).await?;
    if done == 0 {
        return Err(Error::UnknownService);
    }
    audit::record(&mut conn, by, Record::new(Action::ServiceDeleted, &id, "")).await?;
    write.commit().await?;
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
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM account a WHERE a.service_id = $1 ORDER BY a.created_at, a.name \
         LIMIT $2 OFFSET $3"
    );
    db.fetch_all(query(&sql).bind(service_id).bind(limit.unwrap_or(i64::MAX)).bind(offset), account).await
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
    /// The service's applications (its OpenID Connect clients); none for an
    /// account.
    pub(crate) applications: i64,
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
        "SELECT (SELECT COUNT(*) FROM account WHERE {accounts}) AS accounts, \
         (SELECT COUNT(*) FROM account_key WHERE {rows}) AS keys, \
         (SELECT COUNT(*) FROM session WHERE {rows} AND expires_at > $2) AS sessions, \
         (SELECT COUNT(*) FROM account_recovery WHERE {rows} AND used_at IS NULL AND revoked_at IS NULL \
          AND expires_at > $2) AS recovery_links, \
         (SELECT COUNT(*) FROM oidc_application WHERE service_id = $1 AND $3 IS NULL) AS applications"
    );
    db.fetch_one(query(&sql).bind(service_id).bind(now).bind(account), |row| {
        Ok(Footprint {
            accounts: row.int("accounts")?,
            keys: row.int("keys")?,
            sessions: row.int("sessions")?,
            recovery_links: row.int("recovery_links")?,
            applications: row.int("applications")?,
        })
    })
    .await
}

/// Deletes one account; its keys and their sessions go with it (`ON DELETE
/// CASCADE`). The audit record is written `by` in the same transaction.
pub(crate) async fn delete_account(db: &Db, service_id: &str, name: &str, by: &By<'_>) -> Result<()> {
    let service = service(db, service_id).await?;
    // A name that could never have been registered cannot exist either.
    let name = AccountName::parse(name).map_err(|_| Error::UnknownAccount)?;
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    locks::before_delete(&mut conn, Doomed::Account(&service.id, name.as_str())).await?;
    let delete =
        query("DELETE FROM account WHERE service_id = $1 AND name = $2").bind(service.id.as_str()).bind(name.as_str());
    if conn.execute(delete).await? == 0 {
        return Err(Error::UnknownAccount);
    }
    let detail = format!("service {}", service.id);
    audit::record(&mut conn, by, Record::new(Action::AccountDeleted, name.as_str(), &detail)).await?;
    write.commit().await?;
    Ok(())
}

/// A service's most recent sign-in events, newest first.
pub(crate) async fn recent_events(db: &Db, service_id: &str) -> Result<Vec<Event>> {
    let service = service(db, service_id).await?;
    let select = query(
        "SELECT kind, account, ip, user_agent, at FROM sign_in_event WHERE service_id = $1 \
         ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(service.id.as_str())
    .bind(RECENT_EVENTS);
    db.fetch_all(select, |row| {
        Ok(Event {
            kind: row.text("kind")?,
            account: row.opt_text("account")?,
            ip: row.text("ip")?,
            user_agent: row.text("user_agent")?,
            at: row.int("at")?,
        })
    })
    .await
}

/// The refusal of `name`, which an existing service's name or look-alike
/// keys kept out: it names that service. Read in the transaction whose
/// insert did nothing; on PostgreSQL the insert waited for a racing one to
/// commit, and this statement sees the row it committed.
async fn name_taken(conn: &mut Conn<'_>, name: &ServiceName, keys: &Skeletons) -> Result<Error> {
    let existing = conn
        .fetch_optional(
            query(
                "SELECT name FROM service WHERE name = $1 OR skeleton_folded = $2 OR skeleton_written = $3 \
                 ORDER BY CASE WHEN name = $1 THEN 0 ELSE 1 END, created_at LIMIT 1",
            )
            .bind(name.as_str())
            .bind(keys.folded.as_str())
            .bind(keys.written.as_str()),
            |row| row.text("name"),
        )
        .await?
        // Only the random id is left to conflict on.
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("a new service's id was taken")))?;
    Ok(Error::ServiceNameTaken { name: name.as_str().to_owned(), existing })
}

/// Creates the service `name` unless it exists, and returns its id. Used at
/// start-up, where several instances may race: `ON CONFLICT DO NOTHING` lets
/// one insert win and all of them then read the same row. A service whose
/// name only looks like `name` is no such service: that is refused.
pub(crate) async fn ensure_service(db: &Db, name: &ServiceName, now: i64) -> Result<String> {
    let candidate = ServiceId::random(&mut OsRng).to_string();
    let keys = Skeletons::of(name.as_str());
    let insert = query(
        // Number matching on, as for every service created from now on.
        "INSERT INTO service (id, name, builtin, created_at, number_matching, skeleton_folded, skeleton_written) \
         VALUES ($1, $2, FALSE, $3, TRUE, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(candidate)
    .bind(name.as_str())
    .bind(now)
    .bind(keys.folded.as_str())
    .bind(keys.written.as_str());
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    conn.execute(insert).await?;
    let id = conn
        .fetch_optional(query("SELECT id FROM service WHERE name = $1").bind(name.as_str()), |row| row.text("id"))
        .await?;
    let Some(id) = id else {
        return Err(name_taken(&mut conn, name, &keys).await?);
    };
    write.commit().await?;
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
    static KEYS: LazyLock<Skeletons> = LazyLock::new(|| Skeletons::of(ADMIN_SERVICE));
    let name = ServiceName::parse(ADMIN_SERVICE).expect("the admin service name is valid");
    let candidate = ServiceId::random(&mut OsRng).to_string();
    let insert = query(
        "INSERT INTO service (id, name, builtin, created_at, skeleton_folded, skeleton_written) \
         VALUES ($1, $2, TRUE, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(candidate)
    .bind(name.as_str())
    .bind(now)
    .bind(KEYS.folded.as_str())
    .bind(KEYS.written.as_str());
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    conn.execute(insert).await?;
    let id = conn
        .fetch_optional(query("SELECT id FROM service WHERE name = $1 AND builtin").bind(name.as_str()), |row| {
            row.text("id")
        })
        .await?;
    if let Some(id) = id {
        write.commit().await?;
        return Ok(id);
    }
    let taken = match name_taken(&mut conn, &name, &KEYS).await? {
        Error::ServiceNameTaken { existing, .. } => existing,
        other => return Err(other),
    };
    Err(Error::Internal(anyhow::anyhow!(
        "a managed service is named {taken:?}, which is or looks like {ADMIN_SERVICE:?}; rename it to enable admin \
         sign-in"
    )))
}

/// The authenticator accounts that may sign in to the admin page.
pub(crate) async fn admin_accounts(db: &Db, now: i64) -> Result<Vec<Account>> {
    let id = admin_service(db, now).await?;
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM account a WHERE a.service_id = $1 ORDER BY a.created_at, a.name");
    db.fetch_all(query(&sql).bind(id.as_str()), account).await
}

/// Removes an admin authenticator. Its keys go with it, and with them every
/// admin session they opened (`ON DELETE CASCADE`). The audit record is
/// written `by` in the same transaction.
pub(crate) async fn delete_admin_account(db: &Db, name: &str, by: &By<'_>) -> Result<()> {
    let id = admin_service(db, by.at).await?;
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    locks::before_delete(&mut conn, Doomed::Account(&id, name)).await?;
    let delete = query("DELETE FROM account WHERE service_id = $1 AND name = $2").bind(id.as_str()).bind(name);
    if conn.execute(delete).await? == 0 {
        return Err(Error::UnknownAccount);
    }
    audit::record(&mut conn, by, Record::new(Action::AuthenticatorRemoved, name, "")).await?;
    write.commit().await?;
    Ok(())
}
