//! Names that cannot be confused: two services, or two accounts of one
//! service, whose names look alike are refused as duplicates, so nobody
//! registers "pаypal" (with a Cyrillic "а") beside "paypal", nor "example
//! mail" beside "Example Mail".
//!
//! "Look alike" is Unicode's confusable skeleton (UTS #39, through the
//! `unicode-security` crate): NFD, default-ignorable characters removed,
//! each character replaced by the prototype of its confusable set, NFD
//! again. Two names are taken to look alike when either of their two
//! [`Skeletons`] is equal. Each is stored beside the name (migration 0016)
//! under a UNIQUE index, so the database decides a conflict, on every
//! instance at once; the inserts use `ON CONFLICT DO NOTHING` and, when
//! nothing was inserted, read the name that holds the key in the same
//! transaction, to name it in the refusal.
//!
//! Rows from before migration 0016 have no keys; [`fill`] computes them at
//! start-up, since SQL cannot.

use crate::{
    db::{
        sql::{query, Failure, Query, Violation},
        Db,
    },
    error::Result,
};

/// The two keys under which a name collides with the names that look like
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skeletons {
    /// The skeleton of the name with its case folded, folded again:
    /// `fold(skeleton(fold(name)))`. Folding first makes the comparison
    /// blind to case ("Example Mail", "example mail"); folding after,
    /// because some prototypes are capitals (a digit zero's is "O", a
    /// Greek theta's "O" with a bar).
    pub folded: String,
    /// The skeleton of the name as written, folded: `fold(skeleton(name))`.
    /// It catches look-alikes across case that folding first hides: a
    /// capital I for a small l ("PayPaI"), which folding would make an i,
    /// and an i is no l.
    pub written: String,
}

impl Skeletons {
    pub fn of(name: &str) -> Self {
        Self { folded: fold(&skeleton(&fold(name))), written: fold(&skeleton(name)) }
    }
}

fn skeleton(text: &str) -> String {
    unicode_security::skeleton(text).collect()
}

/// Case folding, character by character: to small letters, to capitals and
/// back. Rust's standard library has no Unicode case folding; this gives
/// the same classes as full case folding (CaseFolding.txt, C and F), such
/// as "ß" with "ss" and a final "ς" with "σ", and one more: a dotless "ı"
/// with "i", which look alike anyway. Character by character, so that
/// `str::to_lowercase`'s rule for a final sigma does not apply.
fn fold(text: &str) -> String {
    text.chars().flat_map(char::to_lowercase).flat_map(char::to_uppercase).flat_map(char::to_lowercase).collect()
}

/// How many rows one transaction of [`fill`] gives keys.
const BATCH: i64 = 500;

/// How many times [`fill`] tries a batch that another instance, filling
/// at the same time, made fail.
const ATTEMPTS: u32 = 5;

/// What [`fill`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filled {
    /// Rows that got every key they lacked.
    pub filled: u64,
    /// Rows left without a key because an older name holds it: they look
    /// like that name. A new name that looks like either is still refused
    /// (by the older one's key); each start tries again, and the newer one
    /// gets the key once the older is gone.
    pub clashes: u64,
}

/// One of the two tables whose names have keys.
#[derive(Debug, Clone, Copy)]
enum Table {
    Services,
    Accounts,
}

impl Table {
    fn what(self) -> &'static str {
        match self {
            Self::Services => "service",
            Self::Accounts => "account",
        }
    }

    /// The next rows without both keys after `after`, oldest first.
    fn unfilled(self, after: &Unfilled) -> Query<'static> {
        match self {
            // A service's place in the order is (created_at, id).
            Self::Services => query(
                "SELECT created_at, id, name FROM service \
                 WHERE (skeleton_folded IS NULL OR skeleton_written IS NULL) AND (created_at, id) > ($1, $2) \
                 ORDER BY created_at, id LIMIT $3",
            )
            .bind(after.created_at)
            .bind(after.id.as_str()),
            // The partial index account_skeleton_unfilled, in its order.
            Self::Accounts => query(
                "SELECT created_at, service_id AS id, name FROM account \
                 WHERE (skeleton_folded IS NULL OR skeleton_written IS NULL) \
                 AND (created_at, service_id, name) > ($1, $2, $3) \
                 ORDER BY created_at, service_id, name LIMIT $4",
            )
            .bind(after.created_at)
            .bind(after.id.as_str())
            .bind(after.name.as_str()),
        }
        .bind(BATCH)
    }

    /// Gives `row` the keys no other row of its table (of its service, for
    /// an account) holds, and returns whether one was left NULL.
    fn update(self, row: &Unfilled, keys: &Skeletons) -> Query<'static> {
        let update = match self {
            Self::Services => query(
                "UPDATE service SET \
                 skeleton_folded = COALESCE(skeleton_folded, CASE WHEN EXISTS \
                 (SELECT 1 FROM service o WHERE o.skeleton_folded = $2) THEN NULL ELSE $2 END), \
                 skeleton_written = COALESCE(skeleton_written, CASE WHEN EXISTS \
                 (SELECT 1 FROM service o WHERE o.skeleton_written = $3) THEN NULL ELSE $3 END) \
                 WHERE id = $1 \
                 RETURNING skeleton_folded IS NULL OR skeleton_written IS NULL AS clash",
            )
            .bind(row.id.as_str()),
            Self::Accounts => query(
                "UPDATE account SET \
                 skeleton_folded = COALESCE(skeleton_folded, CASE WHEN EXISTS \
                 (SELECT 1 FROM account o WHERE o.service_id = $1 AND o.skeleton_folded = $3) THEN NULL ELSE $3 END), \
                 skeleton_written = COALESCE(skeleton_written, CASE WHEN EXISTS \
                 (SELECT 1 FROM account o WHERE o.service_id = $1 AND o.skeleton_written = $4) THEN NULL ELSE $4 END) \
                 WHERE service_id = $1 AND name = $2 \
                 RETURNING skeleton_folded IS NULL OR skeleton_written IS NULL AS clash",
            )
            .bind(row.id.as_str())
            .bind(row.name.as_str()),
        };
        update.bind(keys.folded.as_str()).bind(keys.written.as_str())
    }
}

/// A row still without both keys: its place in the order of [`fill`], and
/// its name.
#[derive(Debug, Clone)]
struct Unfilled {
    created_at: i64,
    /// A service's id, or an account's service's.
    id: String,
    name: String,
}

/// Gives every service and account from before migration 0016 its keys,
/// oldest first, in transactions of [`BATCH`] rows, at start-up after the
/// migrations. Where an older name already holds a key, the newer row's
/// key stays NULL, which its UNIQUE index allows: a database that holds two
/// look-alike names starts as before, and the log names the newer one.
///
/// Instances starting together may fill at the same time: a batch that
/// breaks a key's index because another instance has just given that key
/// to another row is tried again, and then sees it. Should that keep
/// happening, the rest waits for the next start rather than stopping this
/// one.
pub async fn fill(db: &Db) -> Result<Filled> {
    let mut filled = Filled::default();
    for table in [Table::Services, Table::Accounts] {
        let mut after = Unfilled { created_at: i64::MIN, id: String::new(), name: String::new() };
        let mut attempt = 1;
        loop {
            let batch = match fill_batch(db, table, &after).await {
                Ok(batch) => batch,
                Err(failure) if failure.violation == Some(Violation::Unique) && attempt < ATTEMPTS => {
                    attempt += 1;
                    continue;
                }
                Err(failure) if failure.violation == Some(Violation::Unique) => {
                    tracing::warn!(
                        "other instances kept filling look-alike keys of {} names at the same time; \
                         the rest is left for the next start",
                        table.what()
                    );
                    break;
                }
                Err(failure) => return Err(failure.error),
            };
            let Some(last) = batch.last else { break };
            filled.filled += batch.filled;
            filled.clashes += batch.clashes;
            after = last;
            attempt = 1;
        }
    }
    if filled != Filled::default() {
        tracing::info!(filled = filled.filled, clashes = filled.clashes, "look-alike keys of names filled");
    }
    Ok(filled)
}

/// What one batch of [`fill`] did, and the last row it saw (none: no row
/// was left).
struct Batch {
    filled: u64,
    clashes: u64,
    last: Option<Unfilled>,
}

async fn fill_batch(db: &Db, table: Table, after: &Unfilled) -> std::result::Result<Batch, Failure> {
    let mut write = db.begin_write().await?;
    let mut conn = write.conn();
    let rows = conn
        .fetch_all(table.unfilled(after), |row| {
            Ok(Unfilled { created_at: row.int("created_at")?, id: row.text("id")?, name: row.text("name")? })
        })
        .await?;
    let mut batch = Batch { filled: 0, clashes: 0, last: None };
    for row in rows {
        let update = table.update(&row, &Skeletons::of(&row.name));
        if conn.fetch_optional(update, |row| row.bool("clash")).await?.unwrap_or(false) {
            batch.clashes += 1;
            tracing::warn!(
                name = %row.name,
                "this {what}'s name looks like an older {what}'s, which keeps the key they share: both stay, \
                 names that look like either are refused, and this one gets its keys once the other is gone",
                what = table.what()
            );
        } else {
            batch.filled += 1;
        }
        batch.last = Some(row);
    }
    write.commit().await?;
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::Skeletons;

    fn alike(a: &str, b: &str) -> bool {
        let (a, b) = (Skeletons::of(a), Skeletons::of(b));
        a.folded == b.folded || a.written == b.written
    }

    #[test]
    fn look_alikes_share_a_key() {
        assert!(alike("Example Mail", "example mail"));
        assert!(alike("p\u{430}ypal", "paypal"), "a Cyrillic а");
        assert!(alike("\u{ff25}\u{ff58}\u{ff41}\u{ff4d}\u{ff50}\u{ff4c}\u{ff45}", "example"), "full-width letters");
        assert!(alike("examp1e", "example"), "a digit one for an l");
        assert!(alike("PayPaI", "paypal"), "a capital I for an l");
        assert!(alike("ΟΔΟΣ", "οδος"), "a final sigma");
        assert!(alike("STRASSE", "straße"));
        assert!(alike("modern", "rnodern"));
        assert!(alike("f00", "FOO"), "zeros for capital Os");
        assert!(alike("exam\u{ad}ple", "example"), "a soft hyphen is ignored");
    }

    #[test]
    fn different_names_do_not() {
        assert!(!alike("example", "examples"));
        assert!(!alike("ali", "all"));
        assert!(!alike("Mail", "Mall"));
        assert!(!alike("alice", "bob"));
    }
}
