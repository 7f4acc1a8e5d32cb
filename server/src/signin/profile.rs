//! An account's profile: a display name and an email address, which the
//! OpenID Connect provider releases under the `profile` and `email` scopes
//! (docs/OIDC.md §5).
//!
//! Both are columns of the account's row (migration 0011), so a profile goes
//! with its account. An admin sets either for an account, and an address an
//! admin sets is verified: the admin vouches for it. The person sets theirs
//! on the account page, and an address they set or change is not verified;
//! sending the same address again keeps its flag.
//!
//! Each change an admin makes writes an audit record, without the values
//! themselves: they are personal data, and the record also goes to the log.

use sesame_proto::{AccountName, ServiceName};

use crate::{
    audit::{self, Action, By, Record},
    db::{
        sql::{query, Row},
        Db,
    },
    error::{Error, Result},
};

/// The longest email address, in bytes (RFC 5321 §4.5.3.1.3, less the
/// angle brackets of a path).
pub const MAX_EMAIL_LEN: usize = 254;
/// The longest local part of an address, in bytes (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_LEN: usize = 64;
/// The longest label of a domain name, in bytes (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// What an account says about its person; every part may be unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub display_name: Option<String>,
    pub email: Option<String>,
    /// Whether `email` was set by an admin; `false` without an email.
    pub email_verified: bool,
}

impl Profile {
    /// The profile in a row that has the columns `display_name`, `email` and
    /// `email_verified` of `account`.
    pub fn from_row(row: &dyn Row) -> Result<Self> {
        Ok(Self {
            display_name: row.opt_text("display_name")?,
            email: row.opt_text("email")?,
            email_verified: row.bool("email_verified")?,
        })
    }
}

/// A display name under the rules of names (`sesame_proto::ServiceName`): 1
/// to 64 bytes, printable, no white space at either end, no bidirectional
/// or zero-width characters.
pub fn parse_display_name(text: &str) -> Result<String> {
    ServiceName::parse(text).map(|name| name.as_str().to_owned()).map_err(|_| {
        Error::bad_request(
            "invalid_display_name",
            "a display name must be 1 to 64 bytes of printable text, without white space at either end",
        )
    })
}

/// An email address, `local@domain`: at most 254 bytes, no white space or
/// control characters, exactly one `@`, a local part of 1 to 64 bytes, and
/// a domain of two or more dot-separated labels of letters, digits and
/// hyphens (an internationalised domain in its `xn--` form).
pub fn parse_email(text: &str) -> Result<String> {
    if is_email(text) {
        Ok(text.to_owned())
    } else {
        Err(Error::bad_request(
            "invalid_email",
            "an email address must be local@domain: at most 254 bytes, no spaces, one @, and a domain such as \
             example.com",
        ))
    }
}

fn is_email(text: &str) -> bool {
    if text.len() > MAX_EMAIL_LEN || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let mut parts = text.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let is_label = |label: &str| {
        (1..=MAX_LABEL_LEN).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    (1..=MAX_LOCAL_LEN).contains(&local.len()) && domain.contains('.') && domain.split('.').all(is_label)
}

/// A change of profile: the new values, `None` clearing one.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub display_name: Option<String>,
    pub email: Option<String>,
}

impl Change {
    /// Checks both values; each error names its field
    /// (`invalid_display_name`, `invalid_email`).
    pub fn parse(display_name: Option<&str>, email: Option<&str>) -> Result<Self> {
        Ok(Self {
            display_name: display_name.map(parse_display_name).transpose()?,
            email: email.map(parse_email).transpose()?,
        })
    }

    /// From a form's two fields: each trimmed, and an empty one clearing
    /// its value.
    pub fn from_form(display_name: &str, email: &str) -> Result<Self> {
        fn field(text: &str) -> Option<&str> {
            Some(text.trim()).filter(|t| !t.is_empty())
        }
        Self::parse(field(display_name), field(email))
    }
}

const COLUMNS: &str = "display_name, email, email_verified";

/// The profile of account `name` at service `service_id`.
pub async fn of_account(db: &Db, service_id: &str, name: &str) -> Result<Profile> {
    if AccountName::parse(name).is_err() {
        return Err(Error::UnknownAccount);
    }
    let sql = format!("SELECT {COLUMNS} FROM account WHERE service_id = $1 AND name = $2");
    db.fetch_optional(query(&sql).bind(service_id).bind(name), Profile::from_row).await?.ok_or(Error::UnknownAccount)
}

/// The profiles of `accounts` at `service_id`, in one query; an account
/// that is gone is not in the map.
pub async fn of_accounts(
    db: &Db,
    service_id: &str,
    accounts: &[String],
) -> Result<std::collections::HashMap<String, Profile>> {
    if accounts.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let sql = format!(
        "SELECT name, {COLUMNS} FROM account WHERE service_id = $1 AND name IN ({})",
        crate::db::placeholders(2, accounts.len())
    );
    let mut select = query(&sql).bind(service_id);
    for account in accounts {
        select = select.bind(account.as_str());
    }
    let rows = db.fetch_all(select, |row| Ok((row.text("name")?, Profile::from_row(row)?))).await?;
    Ok(rows.into_iter().collect())
}

/// Sets the profile of account `name` as an admin: an email set here is
/// verified. The audit record is written `by` in the same transaction.
pub(crate) async fn set_by_admin(
    db: &Db,
    service_id: &str,
    name: &str,
    change: &Change,
    by: &By<'_>,
) -> Result<Profile> {
    if AccountName::parse(name).is_err() {
        return Err(Error::UnknownAccount);
    }
    let sql = format!(
        "UPDATE account SET display_name = $3, email = $4, email_verified = $5 \
         WHERE service_id = $1 AND name = $2 RETURNING {COLUMNS}"
    );
    let update = query(&sql)
        .bind(service_id)
        .bind(name)
        .bind(change.display_name.as_deref())
        .bind(change.email.as_deref())
        .bind(change.email.is_some());
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    // Dropped uncommitted on an unknown account, the write rolls back.
    let profile = conn.fetch_optional(update, Profile::from_row).await?.ok_or(Error::UnknownAccount)?;
    let detail = format!("service {service_id}, {}", described(change));
    audit::record(&mut conn, by, Record::new(Action::ProfileChanged, name, &detail)).await?;
    write.commit().await?;
    Ok(profile)
}

/// Sets the profile of account `name` as its person: an email set or
/// changed here is not verified, and the same email sent again keeps its
/// flag.
pub async fn set_by_person(db: &Db, service_id: &str, name: &str, change: &Change) -> Result<Profile> {
    if AccountName::parse(name).is_err() {
        return Err(Error::UnknownAccount);
    }
    // `email = $4` is NULL, so false, when either side is NULL: a new
    // address, or none, is never verified.
    let sql = format!(
        "UPDATE account SET display_name = $3, email = $4, \
         email_verified = CASE WHEN email = $4 THEN email_verified ELSE FALSE END \
         WHERE service_id = $1 AND name = $2 RETURNING {COLUMNS}"
    );
    let update =
        query(&sql).bind(service_id).bind(name).bind(change.display_name.as_deref()).bind(change.email.as_deref());
    let mut write = db.begin_write().await?;
    let profile = write.conn().fetch_optional(update, Profile::from_row).await?.ok_or(Error::UnknownAccount)?;
    write.commit().await?;
    Ok(profile)
}

/// What a change does, for the audit record: which parts it sets and which
/// it clears, never their values.
fn described(change: &Change) -> String {
    let part = |what: &str, value: &Option<String>| match value {
        Some(_) => format!("{what} set"),
        None => format!("{what} cleared"),
    };
    format!("{}, {}", part("display name", &change.display_name), part("email", &change.email))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses() {
        for good in ["a@b.c", "alice@example.com", "first.last+tag@mail.example.co.uk", "x@xn--bcher-kva.example"] {
            assert!(is_email(good), "{good}");
        }
        let longest = format!("{}@{}.{}.{}.example", "l".repeat(64), "a".repeat(63), "b".repeat(63), "c".repeat(53));
        assert_eq!(longest.len(), MAX_EMAIL_LEN);
        assert!(is_email(&longest));
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        let long_local = format!("{}@example.com", "l".repeat(65));
        let long_label = format!("a@{}.com", "d".repeat(64));
        let too_long = format!("{}@{}.{}.{}.example", "l".repeat(64), "a".repeat(63), "b".repeat(63), "c".repeat(54));
        for bad in [
            "",
            "no-at",
            "a@b",
            "a@@b.c",
            "a@b@c.d",
            "a b@c.d",
            "a@b.c ",
            "a\t@b.c",
            "a\u{0}@b.c",
            "@b.c",
            "a@",
            "a@.b",
            "a@b.",
            "a@b..c",
            "a@-b.c",
            "a@b-.c",
            "a@b_c.d",
            "a@bü.de",
            &long_local,
            &long_label,
            &too_long,
        ] {
            assert!(!is_email(bad), "{bad:?}");
        }
    }

    #[test]
    fn display_names_follow_the_rules_of_names() {
        assert_eq!(parse_display_name("Alice Liddell").expect("valid"), "Alice Liddell");
        for bad in ["", " Alice", "Alice ", "a\nb", "bidi\u{202e}txt", "zero\u{200b}width", &"x".repeat(65)] {
            assert!(parse_display_name(bad).is_err(), "{bad:?}");
        }
    }
}
