-- The key that seals account keys, kept in the operating system's keyring
-- (Secret Service, Keychain, Credential Manager) rather than derived from a
-- passphrase. At most one row, and never beside a `passphrase` row: the
-- keystore is plain, sealed by a passphrase, or sealed by this key.
-- `keystore_id` is random and names the keyring's entry, so that two
-- keystores never share one and a keystore that is moved or renamed keeps
-- its key. `verifier` is a fixed text sealed under the key, so that a wrong
-- entry is refused before any account key is read.
CREATE TABLE system_keyring (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    keystore_id TEXT NOT NULL,
    verifier    BLOB NOT NULL,
    set_at      INTEGER NOT NULL
);
