-- The authenticator's keystore. Times are Unix seconds.

-- The server identity key pinned for each origin on first use. A token for
-- this origin signed by any other key is refused until the user unpins it.
CREATE TABLE server_pin (
    origin     TEXT PRIMARY KEY NOT NULL,
    public_key BLOB NOT NULL CHECK (length(public_key) = 32),
    key_id     TEXT NOT NULL,
    pinned_at  INTEGER NOT NULL
);

-- One account key per (origin, service, account name). `secret` is the
-- 32-byte Ed25519 seed when `sealed` = 0, or a 24-byte XChaCha20-Poly1305
-- nonce followed by the ciphertext when `sealed` = 1. `confirmed` = 0 means
-- the key was stored before the server was told about it and the server has
-- not (yet) said it accepted it.
CREATE TABLE account (
    origin       TEXT NOT NULL,
    service_id   TEXT NOT NULL,
    service_name TEXT NOT NULL,
    name         TEXT NOT NULL,
    public_key   BLOB NOT NULL CHECK (length(public_key) = 32),
    secret       BLOB NOT NULL,
    sealed       INTEGER NOT NULL CHECK (sealed IN (0, 1)),
    confirmed    INTEGER NOT NULL DEFAULT 0 CHECK (confirmed IN (0, 1)),
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    PRIMARY KEY (origin, service_id, name)
);

-- At most one row: the Argon2id salt and cost of the passphrase, and a
-- verifier (a fixed text sealed under the derived key) that lets a wrong
-- passphrase be refused before any key is touched.
CREATE TABLE passphrase (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    salt     BLOB NOT NULL,
    m_cost   INTEGER NOT NULL,
    t_cost   INTEGER NOT NULL,
    p_cost   INTEGER NOT NULL,
    verifier BLOB NOT NULL,
    set_at   INTEGER NOT NULL
);

-- Notices the user has been shown once and need not see again.
CREATE TABLE notice (
    name     TEXT PRIMARY KEY NOT NULL,
    shown_at INTEGER NOT NULL
);
