//! Groups: a service's named sets of accounts. The provider releases an
//! account's groups under the scope `groups`, and an application may admit
//! only the members of some of them (docs/OIDC.md §2, §5).
//!
//! A group has a random id that never changes and a name, unique within
//! its service, under the rules of names; a rename changes only the name.
//! Memberships (`account_group`) and an application's admitted groups
//! (`application_group`) are written whole, each set in one transaction,
//! by names looked up within the service, so a group of another service
//! can never be named. Deleting a group, an account, an application or the
//! service deletes the rows that name it (migration 0014).
//!
//! Groups live here, beside the provider, because everything that reads
//! them is the provider's (the claim, the admission of an application) or
//! the admin's, above it; the sign-in features below never need them.
//!
//! Each admin change writes its audit record in its transaction.

use std::collections::HashMap;

use rand::{rngs::OsRng, RngCore as _};
use sesame_proto::{AccountName, ServiceName};

use crate::{
    audit::{self, Action, By, Record},
    db::{
        locks, placeholders,
        sql::{query, Conn, Constraint as _, Row, Violation},
        Db,
    },
    error::{Error, Result},
};

/// The scope that releases the `groups` claim.
pub const SCOPE: &str = "groups";

/// A group of a service, with how many accounts belong to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub members: i64,
    pub created_at: i64,
}

/// A group's name, under the rules of names (`sesame_proto::ServiceName`):
/// 1 to 64 bytes, printable, no white space at either end, no bidirectional
/// or zero-width characters.
pub fn parse_name(text: &str) -> Result<String> {
    ServiceName::parse(text).map(String::from).map_err(|_| {
        Error::bad_request(
            "invalid_group_name",
            "a group's name must be 1 to 64 bytes of printable text, without white space at either end",
        )
    })
}

fn name_taken(name: &str) -> Error {
    Error::bad_request("group_name_taken", format!("this service already has a group named {name:?}"))
}

/// A name in a list that names no group of the service.
fn unknown_name(name: &str) -> Error {
    Error::bad_request("unknown_group", format!("this service has no group named {name:?}"))
}

/// The group id in a path that names no group of the service.
fn unknown_id() -> Error {
    Error::UnknownGroup
}

/// 128 random bits as 32 lowercase hex digits, like a client id.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What [`new_id`] makes. Anything else names no group, and on PostgreSQL,
/// whose text cannot hold a NUL byte, is never looked up.
fn is_group_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Names in byte order, each once: the order of the claim and of every list.
fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort_unstable();
    names.dedup();
    names
}

const COLUMNS: &str =
    "g.id, g.name, g.created_at, (SELECT COUNT(*) FROM account_group m WHERE m.group_id = g.id) AS members";

fn from_row(row: &dyn Row) -> Result<Group> {
    Ok(Group {
        id: row.text("id")?,
        name: row.text("name")?,
        members: row.int("members")?,
        created_at: row.int("created_at")?,
    })
}

/// The groups of `service_id` with their member counts, by name.
pub async fn of_service(db: &Db, service_id: &str) -> Result<Vec<Group>> {
    let sql = format!("SELECT {COLUMNS} FROM service_group g WHERE g.service_id = $1");
    let mut groups = db.fetch_all(query(&sql).bind(service_id), from_row).await?;
    groups.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(groups)
}

/// Makes group `name` (already parsed) of `service_id`.
pub(crate) async fn create(db: &Db, service_id: &str, name: &str, by: &By<'_>) -> Result<Group> {
    let id = new_id();
    let insert = query("INSERT INTO service_group (id, service_id, name, created_at) VALUES ($1, $2, $3, $4)")
        .bind(id.as_str())
        .bind(service_id)
        .bind(name)
        .bind(by.at);
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    conn.execute(insert)
        .await
        .on(Violation::Unique, name_taken(name))
        .on(Violation::ForeignKey, Error::UnknownService)?;
    let detail = format!("group {name:?}, id {id}");
    audit::record(&mut conn, by, Record::new(Action::GroupCreated, service_id, &detail)).await?;
    write.commit().await?;
    Ok(Group { id, name: name.to_owned(), members: 0, created_at: by.at })
}

/// Renames group `group_id` of `service_id` to `name` (already parsed); its
/// id and members stay.
pub(crate) async fn rename(db: &Db, service_id: &str, group_id: &str, name: &str, by: &By<'_>) -> Result<Group> {
    if !is_group_id(group_id) {
        return Err(unknown_id());
    }
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    let current = query("SELECT name FROM service_group WHERE service_id = $1 AND id = $2");
    let old = conn.fetch_optional(current.bind(service_id).bind(group_id), |row| row.text("name")).await?;
    let old = old.ok_or_else(unknown_id)?;
    let update = query("UPDATE service_group SET name = $3 WHERE service_id = $1 AND id = $2");
    conn.execute(update.bind(service_id).bind(group_id).bind(name)).await.on(Violation::Unique, name_taken(name))?;
    let sql = format!("SELECT {COLUMNS} FROM service_group g WHERE g.id = $1");
    let group = conn.fetch_one(query(&sql).bind(group_id), from_row).await?;
    let detail = format!("group {old:?} renamed {name:?}, id {group_id}");
    audit::record(&mut conn, by, Record::new(Action::GroupRenamed, service_id, &detail)).await?;
    write.commit().await?;
    Ok(group)
}

/// Deletes group `group_id` of `service_id`, with its memberships and its
/// place among the groups of the applications that admitted it. An
/// application left with no admitted group admits everyone.
pub(crate) async fn delete(db: &Db, service_id: &str, group_id: &str, by: &By<'_>) -> Result<Group> {
    if !is_group_id(group_id) {
        return Err(unknown_id());
    }
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    let sql = format!("SELECT {COLUMNS} FROM service_group g WHERE g.service_id = $1 AND g.id = $2");
    let group = conn.fetch_optional(query(&sql).bind(service_id).bind(group_id), from_row).await?;
    let group = group.ok_or_else(unknown_id)?;
    conn.execute(query("DELETE FROM service_group WHERE id = $1").bind(group_id)).await?;
    let detail = format!("group {:?}, id {group_id}, {} member(s)", group.name, group.members);
    audit::record(&mut conn, by, Record::new(Action::GroupDeleted, service_id, &detail)).await?;
    write.commit().await?;
    Ok(group)
}

/// Looks `names` up among the groups of `service_id`: their ids, each once,
/// or `unknown_group` for the first (in byte order) that is none of them.
async fn resolve(conn: &mut Conn<'_>, service_id: &str, names: &[String]) -> Result<Vec<String>> {
    let wanted = sorted(names.to_vec());
    // A name that could never be a group's is never sent to the database.
    if let Some(bad) = wanted.iter().find(|name| ServiceName::parse(name).is_err()) {
        return Err(unknown_name(bad));
    }
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id, name FROM service_group WHERE service_id = $1 AND name IN ({})",
        placeholders(2, wanted.len())
    );
    let mut select = query(&sql).bind(service_id);
    for name in &wanted {
        select = select.bind(name.as_str());
    }
    let found: HashMap<String, String> =
        conn.fetch_all(select, |row| Ok((row.text("name")?, row.text("id")?))).await?.into_iter().collect();
    wanted.iter().map(|name| found.get(name).cloned().ok_or_else(|| unknown_name(name))).collect()
}

/// Inserts one row per id into `table` (`account_group` or
/// `application_group`): `fixed` are the values every row starts with.
async fn insert_rows(conn: &mut Conn<'_>, table: &str, columns: &str, fixed: &[&str], ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let lead = (1..=fixed.len()).map(|n| format!("${n}, ")).collect::<String>();
    let rows: Vec<String> = (0..ids.len()).map(|i| format!("({lead}${})", fixed.len() + 1 + i)).collect();
    let sql = format!("INSERT INTO {table} ({columns}) VALUES {}", rows.join(", "));
    let mut insert = query(&sql);
    for value in fixed {
        insert = insert.bind(*value);
    }
    for id in ids {
        insert = insert.bind(id.as_str());
    }
    conn.execute(insert).await?;
    Ok(())
}

/// The names of the groups account `account` of `service_id` belongs to,
/// sorted; none for an account that is not there.
pub async fn of_account(db: &Db, service_id: &str, account: &str) -> Result<Vec<String>> {
    let select = query(
        "SELECT g.name FROM account_group m JOIN service_group g ON g.id = m.group_id \
         WHERE m.service_id = $1 AND m.account = $2",
    );
    Ok(sorted(db.fetch_all(select.bind(service_id).bind(account), |row| row.text("name")).await?))
}

/// What the scope `scope` releases of the groups of `account`: its group
/// names with the scope `groups`, and nothing read without it.
pub async fn released(db: &Db, scope: &str, service_id: &str, account: &str) -> Result<Vec<String>> {
    if scope.split(' ').any(|s| s == SCOPE) {
        of_account(db, service_id, account).await
    } else {
        Ok(Vec::new())
    }
}

/// The group names of account `account`, or `unknown_account`.
pub async fn of_existing_account(db: &Db, service_id: &str, account: &str) -> Result<Vec<String>> {
    if AccountName::parse(account).is_err() {
        return Err(Error::UnknownAccount);
    }
    let exists = query("SELECT name FROM account WHERE service_id = $1 AND name = $2");
    if db.fetch_optional(exists.bind(service_id).bind(account), |row| row.text("name")).await?.is_none() {
        return Err(Error::UnknownAccount);
    }
    of_account(db, service_id, account).await
}

/// The group names of each of `accounts` of `service_id`, in one query; an
/// account in no group is not in the map.
pub async fn of_accounts(db: &Db, service_id: &str, accounts: &[String]) -> Result<HashMap<String, Vec<String>>> {
    if accounts.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT m.account, g.name FROM account_group m JOIN service_group g ON g.id = m.group_id \
         WHERE m.service_id = $1 AND m.account IN ({})",
        placeholders(2, accounts.len())
    );
    let mut select = query(&sql).bind(service_id);
    for account in accounts {
        select = select.bind(account.as_str());
    }
    let rows = db.fetch_all(select, |row| Ok((row.text("account")?, row.text("name")?))).await?;
    Ok(grouped(rows))
}

fn grouped(rows: Vec<(String, String)>) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (key, name) in rows {
        map.entry(key).or_default().push(name);
    }
    map.into_iter().map(|(key, names)| (key, sorted(names))).collect()
}

/// Sets the groups of account `account` of `service_id` to `names`, the
/// whole set: `unknown_account`, or `unknown_group` for a name that is no
/// group of the service, and then nothing is written. Returns the names,
/// sorted.
pub(crate) async fn set_account(
    db: &Db,
    service_id: &str,
    account: &str,
    names: &[String],
    by: &By<'_>,
) -> Result<Vec<String>> {
    if AccountName::parse(account).is_err() {
        return Err(Error::UnknownAccount);
    }
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    // The lock order: the service's groups, then the account.
    locks::groups(&mut conn, service_id).await?;
    locks::account(&mut conn, service_id, account).await?;
    let exists = query("SELECT name FROM account WHERE service_id = $1 AND name = $2");
    if conn.fetch_optional(exists.bind(service_id).bind(account), |row| row.text("name")).await?.is_none() {
        // Dropped uncommitted, the write rolls back.
        return Err(Error::UnknownAccount);
    }
    let ids = resolve(&mut conn, service_id, names).await?;
    let clear = query("DELETE FROM account_group WHERE service_id = $1 AND account = $2");
    conn.execute(clear.bind(service_id).bind(account)).await?;
    insert_rows(&mut conn, "account_group", "service_id, account, group_id", &[service_id, account], &ids).await?;
    let names = sorted(names.to_vec());
    let detail = format!("service {service_id}, groups {}", listed(&names));
    audit::record(&mut conn, by, Record::new(Action::AccountGroupsChanged, account, &detail)).await?;
    write.commit().await?;
    Ok(names)
}

/// Names for an audit record: quoted, or `none`.
pub(crate) fn listed(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names.iter().map(|name| format!("{name:?}")).collect::<Vec<_>>().join(", ")
}

/// The names of the groups application `client_id` admits, sorted: none
/// when it admits every account of its service.
pub async fn of_application(db: &Db, client_id: &str) -> Result<Vec<String>> {
    let select = query(
        "SELECT g.name FROM application_group a JOIN service_group g ON g.id = a.group_id WHERE a.client_id = $1",
    );
    Ok(sorted(db.fetch_all(select.bind(client_id), |row| row.text("name")).await?))
}

/// The admitted groups of every application of `service_id` that has some,
/// by client id.
pub async fn of_applications(db: &Db, service_id: &str) -> Result<HashMap<String, Vec<String>>> {
    let select = query(
        "SELECT a.client_id, g.name FROM application_group a JOIN service_group g ON g.id = a.group_id \
         WHERE g.service_id = $1",
    );
    let rows = db.fetch_all(select.bind(service_id), |row| Ok((row.text("client_id")?, row.text("name")?))).await?;
    Ok(grouped(rows))
}

/// Sets the groups application `client_id` of `service_id` admits to
/// `names`, the whole set, on `conn`: in the transaction that writes the
/// application, which took [`locks::groups`] before it. `unknown_group`
/// for a name that is no group of the service.
pub(super) async fn set_application(
    conn: &mut Conn<'_>,
    service_id: &str,
    client_id: &str,
    names: &[String],
) -> Result<Vec<String>> {
    let ids = resolve(conn, service_id, names).await?;
    conn.execute(query("DELETE FROM application_group WHERE client_id = $1").bind(client_id)).await?;
    insert_rows(conn, "application_group", "client_id, group_id", &[client_id], &ids).await?;
    Ok(sorted(names.to_vec()))
}

/// The condition, in SQL, that the account of `service` and `account` may
/// use application `client` (each a column or a parameter): the
/// application admits no group in particular, or the account belongs to
/// one it admits. True or false (1 or 0 on SQLite), read with `Row::bool`.
pub(super) fn admits_sql(client: &str, service: &str, account: &str) -> String {
    format!(
        "(NOT EXISTS (SELECT 1 FROM application_group x WHERE x.client_id = {client}) \
         OR EXISTS (SELECT 1 FROM application_group x JOIN account_group m ON m.group_id = x.group_id \
         WHERE x.client_id = {client} AND m.service_id = {service} AND m.account = {account}))"
    )
}

/// Whether account `account` of `service_id` may use application
/// `client_id`: always when it admits every account.
pub async fn admits(db: &Db, client_id: &str, service_id: &str, account: &str) -> Result<bool> {
    let sql = format!("SELECT {} AS admitted", admits_sql("$1", "$2", "$3"));
    db.fetch_one(query(&sql).bind(client_id).bind(service_id).bind(account), |row| row.bool("admitted")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules_of_names() {
        assert_eq!(parse_name("Admins").expect("valid"), "Admins");
        assert_eq!(parse_name(&"x".repeat(64)).expect("64 bytes").len(), 64);
        for bad in
            ["", " Admins", "Admins ", "a\nb", "a\u{0}b", "bidi\u{202e}txt", "zero\u{200b}width", &"x".repeat(65)]
        {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_are_what_new_id_makes() {
        assert!(is_group_id(&new_id()));
        for bad in ["", "nope", &"A".repeat(32), &"a".repeat(31), &"a".repeat(33), "0123456789abcdef0123456789abcde\0"]
        {
            assert!(!is_group_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn lists_are_sorted_by_byte_and_without_repeats() {
        let names = ["ops", "Admins", "ops", "élite", "Zed"].map(str::to_owned).to_vec();
        assert_eq!(sorted(names), ["Admins", "Zed", "ops", "élite"]);
        assert_eq!(listed(&[]), "none");
        assert_eq!(listed(&["a\"b".to_owned(), "c".to_owned()]), r#""a\"b", "c""#);
    }
}
