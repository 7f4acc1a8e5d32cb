-- Adding a key to an existing account: enrollment challenges, and the
-- one-time recovery links an admin hands out. PostgreSQL flavour, column-for-column
-- identical to ../sqlite/0007_enrollment.sql.

-- A challenge that adds a key to this existing account instead of signing
-- anyone in (docs/PROTOCOL.md §12). NULL for a sign-in challenge.
ALTER TABLE challenge ADD COLUMN enroll_account TEXT;
-- The recovery link an enrollment challenge was opened from, if any: its
-- confirmation uses the link up.
ALTER TABLE challenge ADD COLUMN recovery_id TEXT;

-- How a key came: with its account (`register`), or added to an existing
-- account (`enroll`). A pending registered key that nobody confirms takes
-- its account with it when the sweep removes it; a pending enrolled key
-- never does, since the account was there before it.
ALTER TABLE account_key ADD COLUMN added_by TEXT NOT NULL DEFAULT 'register'
    CHECK (added_by IN ('register', 'enroll'));

-- A recovery link: a secret URL that opens enrollment challenges for one
-- account, made by an admin for someone who lost every authenticator. Only
-- the SHA-256 of its secret is kept, so the URL is shown once. It is used up
-- (used_at) when a key enrolled through it is confirmed, and is refused once
-- revoked or expired. revoke_other_keys: that confirmation also removes
-- every other key of the account, and the sessions they opened.
CREATE TABLE account_recovery (
    id                TEXT    PRIMARY KEY,
    secret_hash       BYTEA   NOT NULL CONSTRAINT account_recovery_secret_hash_key UNIQUE,
    service_id        TEXT    NOT NULL,
    account           TEXT    NOT NULL,
    revoke_other_keys BOOLEAN NOT NULL,
    created_by        TEXT    NOT NULL,
    created_at        BIGINT  NOT NULL,
    expires_at        BIGINT  NOT NULL,
    used_at           BIGINT,
    revoked_at        BIGINT,
    FOREIGN KEY (service_id, account) REFERENCES account (service_id, name) ON DELETE CASCADE
);
CREATE INDEX account_recovery_account ON account_recovery (service_id, account);
-- The sweep deletes links some time after they expire.
CREATE INDEX account_recovery_expires_at ON account_recovery (expires_at);
