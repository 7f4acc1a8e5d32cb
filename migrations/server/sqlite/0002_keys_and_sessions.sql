-- Accounts that hold several keys, keys that wait for confirmation, and
-- sessions that end with the credential that opened them. SQLite flavour,
-- column-for-column identical to ../postgres/0002_keys_and_sessions.sql.
--
-- The schema is laid out for what comes next as well: an account's `subject`
-- is the opaque, never-reused identifier that OpenID Connect calls `sub`, and
-- every key row records the device that added it, for the audit trail.

-- A random subject per account. A name freed by deleting its account and
-- registered again gets a new subject, so a relying party never mistakes the
-- newcomer for the person who left.
ALTER TABLE account ADD COLUMN subject TEXT;
UPDATE account SET subject = lower(hex(randomblob(16)));
CREATE UNIQUE INDEX account_subject_key ON account (subject);

-- One row per authenticator that may sign in to an account. A key starts
-- `pending` when someone other than the account's owner must confirm it (an
-- admin authenticator, a device added to an existing account): a pending key
-- proves nothing and signs nobody in. `challenge_id` names the challenge that
-- registered it while it waits, so the page that started that challenge can
-- find it; `device_*` describe the authenticator that sent the registration.
CREATE TABLE account_key (
    id                TEXT   PRIMARY KEY,
    service_id        TEXT   NOT NULL,
    account           TEXT   NOT NULL,
    public_key        BLOB   NOT NULL,
    label             TEXT   NOT NULL DEFAULT '',
    state             TEXT   NOT NULL DEFAULT 'active' CHECK (state IN ('pending', 'active')),
    challenge_id      TEXT,
    device_ip         TEXT   NOT NULL DEFAULT '',
    device_user_agent TEXT   NOT NULL DEFAULT '',
    created_at        BIGINT NOT NULL,
    last_used_at      BIGINT,
    FOREIGN KEY (service_id, account) REFERENCES account (service_id, name) ON DELETE CASCADE,
    -- One key, one account: a key registered twice at a service would let a
    -- signature for one account stand for another.
    CONSTRAINT account_key_public_key_key UNIQUE (service_id, public_key)
);
CREATE INDEX account_key_account ON account_key (service_id, account);
CREATE INDEX account_key_challenge ON account_key (challenge_id);

INSERT INTO account_key (id, service_id, account, public_key, state, created_at, last_used_at)
SELECT lower(hex(randomblob(16))), service_id, name, public_key, 'active', created_at, last_login_at FROM account;

ALTER TABLE account DROP COLUMN public_key;

-- A session ends with the key that opened it (removing a key signs its
-- sessions out). Sessions from before this migration have no key and end
-- only with their account or their expiry.
ALTER TABLE session ADD COLUMN key_id TEXT REFERENCES account_key (id) ON DELETE CASCADE;
CREATE INDEX session_key ON session (key_id);

-- An admin session is opened either by an admin authenticator (`key_id`) or
-- by the admin token (`token_digest`, the SHA-256 of the token that was
-- presented). A key's removal deletes its sessions; a token session is live
-- only while its digest is the current token's, so restarting with a new
-- token ends every session the old one opened. Existing sessions cannot say
-- which they were, so they end here.
DELETE FROM admin_session;
ALTER TABLE admin_session ADD COLUMN key_id TEXT REFERENCES account_key (id) ON DELETE CASCADE;
ALTER TABLE admin_session ADD COLUMN token_digest BLOB;
ALTER TABLE admin_session ADD COLUMN ip TEXT NOT NULL DEFAULT '';
ALTER TABLE admin_session ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
CREATE INDEX admin_session_key ON admin_session (key_id);

-- The key that registered or signed in, so that the session made from the
-- challenge can name it.
ALTER TABLE challenge ADD COLUMN key_id TEXT;
