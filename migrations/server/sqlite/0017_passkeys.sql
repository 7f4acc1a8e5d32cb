-- Passkeys (WebAuthn) beside Sesame keys. SQLite flavour, column-for-column
-- identical to ../postgres/0017_passkeys.sql.
--
-- A passkey is one more kind of key on an account: its row in account_key
-- carries the label, when it was added and last used, and its removal, as a
-- Sesame key's does, and every session, code and token it opened goes with
-- it. Its `public_key` there is the byte 0x50 ('P') followed by the SHA-256
-- of its credential id: 33 bytes, so never a valid Ed25519 key (32 bytes),
-- and UNIQUE (service_id, public_key) still says "one credential, one
-- account". What WebAuthn needs to check an assertion is in `passkey`.
ALTER TABLE account_key ADD COLUMN kind TEXT NOT NULL DEFAULT 'sesame' CHECK (kind IN ('sesame', 'passkey'));

-- `credential` is the library's serialized credential (its public key as a
-- COSE key, counter, backup flags, the user-verification policy it was
-- registered under), rewritten after each use. `sign_count` repeats its
-- counter so that a sign-in can refuse, in the statement that records it, a
-- counter that another sign-in has meanwhile moved past. `rp_id` is the
-- relying party id it was registered under: a browser offers it only at
-- that id, so a passkey of another id signs nobody in (start-up warns).
CREATE TABLE passkey (
    key_id          TEXT    PRIMARY KEY REFERENCES account_key (id) ON DELETE CASCADE,
    credential_id   BLOB    NOT NULL CONSTRAINT passkey_credential_id_key UNIQUE,
    credential      TEXT    NOT NULL,
    sign_count      BIGINT  NOT NULL DEFAULT 0,
    backup_eligible BOOLEAN NOT NULL,
    backup_state    BOOLEAN NOT NULL,
    user_verified   BOOLEAN NOT NULL,
    rp_id           TEXT    NOT NULL
);

-- Which kinds of key may sign in to a service, and whether a passkey must
-- verify its user (a PIN, a fingerprint). Services that exist keep signing
-- in as they did: Sesame keys only, until an admin says otherwise; the
-- statement that creates a service chooses for new ones.
ALTER TABLE service ADD COLUMN key_kinds TEXT NOT NULL DEFAULT 'sesame'
    CHECK (key_kinds IN ('sesame', 'passkey', 'both'));
ALTER TABLE service ADD COLUMN require_user_verification BOOLEAN NOT NULL DEFAULT FALSE;

-- How a session was authenticated, as the ID token's `amr` says it (RFC
-- 8176), space-separated: `swk` for a Sesame key; for a passkey `hwk` when
-- it is bound to its device, `swk` when it may be synced, and `user` when
-- the user was verified. Grants carry their session's.
ALTER TABLE session ADD COLUMN amr TEXT NOT NULL DEFAULT 'swk';
ALTER TABLE oidc_code ADD COLUMN amr TEXT NOT NULL DEFAULT 'swk';
ALTER TABLE oidc_refresh_token ADD COLUMN amr TEXT NOT NULL DEFAULT 'swk';

-- A WebAuthn ceremony between its start and its finish: single-use (the
-- finish deletes it), bound to the browser that started it (`binding_hash`,
-- the SHA-256 of a cookie's secret), and short-lived (swept after
-- `expires_at`). `state` is the library's serialized state: the challenge,
-- and the credentials it allows. `account` is the name being registered,
-- or the account a passkey is being added to.
CREATE TABLE passkey_ceremony (
    id           TEXT   PRIMARY KEY,
    binding_hash BLOB   NOT NULL,
    service_id   TEXT   NOT NULL REFERENCES service (id) ON DELETE CASCADE,
    purpose      TEXT   NOT NULL CHECK (purpose IN ('sign_in', 'register', 'add')),
    account      TEXT,
    label        TEXT   NOT NULL DEFAULT '',
    state        TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX passkey_ceremony_expires_at ON passkey_ceremony (expires_at);
