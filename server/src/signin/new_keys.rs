//! What an authenticator is told at sign-in of the keys that joined its
//! account since it last signed in (PROTOCOL.md §6.4): a key its owner did
//! not add is the first thing they should hear of after a compromise, and
//! each of their other devices tells them at its next use.
//!
//! `keys::of_account` reads everything needed in the sign-in's one
//! statement; this module only chooses.

use sesame_proto::wire::{NewKey, MAX_NEW_KEYS};

use crate::signin::keys::StoredKey;

/// The keys of an account as a sign-in reads them, in one statement: the
/// Sesame keys a signature may verify under, and when and from where every
/// active key, passkeys included, was added.
#[derive(Debug, Clone, Default)]
pub struct AccountKeys {
    pub sesame: Vec<StoredKey>,
    /// Every active key, by id, as an authenticator would be told of it.
    pub(super) added: Vec<(String, NewKey)>,
}

impl AccountKeys {
    /// The active keys, other than `key`, that joined the account since
    /// `key` last signed in (or, before its first sign-in, since it joined
    /// itself): what its authenticator tells its owner (PROTOCOL.md §6.4).
    /// A key that waited for confirmation joins when it is confirmed, so a
    /// key made before a sign-in and confirmed after it is still told of.
    /// Newest first, ties by id, at most [`MAX_NEW_KEYS`].
    ///
    /// Each sign-in moves `key`'s last use forward, so every authenticator
    /// hears of a new key once, at its first sign-in after the key came.
    pub fn added_since_last_use(&self, key: &StoredKey) -> Vec<NewKey> {
        let since = key.last_used_at.unwrap_or(key.joined_at).max(0) as u64;
        let mut added: Vec<&(String, NewKey)> = self
            .added
            .iter()
            // A key added in the same second as the last sign-in is told
            // of: twice at worst, rather than never.
            .filter(|(id, new)| *id != key.id && new.added_at.as_secs() >= since)
            .collect();
        added.sort_by(|(a_id, a), (b_id, b)| b.added_at.cmp(&a.added_at).then_with(|| a_id.cmp(b_id)));
        added.into_iter().take(MAX_NEW_KEYS).map(|(_, new)| new.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::OsRng;
    use sesame_proto::{AccountKey, UnixTime};

    use super::*;
    use crate::signin::keys::KeyState;

    fn key(id: &str, created_at: i64, last_used_at: Option<i64>) -> StoredKey {
        let public_key = AccountKey::generate(&mut OsRng).public_key();
        StoredKey { id: id.to_owned(), public_key, state: KeyState::Active, last_used_at, joined_at: created_at }
    }

    fn added(id: &str, at: u64) -> (String, NewKey) {
        let new = NewKey {
            kind: "sesame".to_owned(),
            label: id.to_owned(),
            added_at: UnixTime::from_secs(at),
            added_from: String::new(),
        };
        (id.to_owned(), new)
    }

    fn labels(told: &[NewKey]) -> Vec<&str> {
        told.iter().map(|k| k.label.as_str()).collect()
    }

    #[test]
    fn since_the_last_sign_in_or_else_since_the_key_came_and_never_the_key_itself() {
        let keys = AccountKeys {
            sesame: Vec::new(),
            added: vec![added("laptop", 100), added("phone", 200), added("spare", 300)],
        };
        assert_eq!(labels(&keys.added_since_last_use(&key("laptop", 100, Some(250)))), ["spare"]);
        assert_eq!(labels(&keys.added_since_last_use(&key("laptop", 100, None))), ["spare", "phone"]);
        assert_eq!(labels(&keys.added_since_last_use(&key("spare", 300, None))), Vec::<&str>::new());
        // The second of the last sign-in is told of again, not lost.
        assert_eq!(labels(&keys.added_since_last_use(&key("laptop", 100, Some(300)))), ["spare"]);
    }

    #[test]
    fn newest_first_and_no_more_than_the_protocol_allows() {
        let many: Vec<_> = (0..40u64).map(|i| added(&format!("k{i:02}"), 1000 + i)).collect();
        let keys = AccountKeys { sesame: Vec::new(), added: many };
        let told = keys.added_since_last_use(&key("old", 10, Some(500)));
        assert_eq!(told.len(), MAX_NEW_KEYS);
        assert_eq!(told.first().map(|k| k.label.as_str()), Some("k39"));
        assert!(told.windows(2).all(|w| w[0].added_at >= w[1].added_at));
        // Keys of one second come in the order of their ids, on every database.
        let keys = AccountKeys { sesame: Vec::new(), added: vec![added("b", 700), added("a", 700), added("c", 600)] };
        assert_eq!(labels(&keys.added_since_last_use(&key("old", 10, Some(500)))), ["a", "b", "c"]);
    }
}
