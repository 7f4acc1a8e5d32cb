-- Refresh tokens (RFC 6749 §6, rotated as RFC 9700 §4.14.2 asks), and
-- applications that get them without asking for offline_access.
-- SQLite flavour, column-for-column identical to
-- ../postgres/0012_refresh_tokens.sql.
--
-- Like every secret handed out, a refresh token is stored only as its
-- SHA-256. Every refresh token of one sign-in descends from one
-- authorization code and carries its hash: the chain. A refresh token is
-- spent by its use (used_at), which issues the next one; presenting a spent
-- one again means it was copied, and the whole chain is revoked, with the
-- access tokens issued from it. A chain ends at chain_expires_at however it
-- is used, and a token unused for its idle time ends at expires_at. Deleting
-- the application, the account, its key or its service deletes the chain.

ALTER TABLE oidc_application ADD COLUMN refresh_tokens BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE oidc_refresh_token (
    token_hash       BLOB   PRIMARY KEY,
    code_hash        BLOB   NOT NULL,
    client_id        TEXT   NOT NULL REFERENCES oidc_application (client_id) ON DELETE CASCADE,
    service_id       TEXT   NOT NULL,
    account          TEXT   NOT NULL,
    key_id           TEXT   REFERENCES account_key (id) ON DELETE CASCADE,
    scope            TEXT   NOT NULL,
    auth_time        BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    chain_expires_at BIGINT NOT NULL,
    used_at          BIGINT,
    FOREIGN KEY (service_id, account) REFERENCES account (service_id, name) ON DELETE CASCADE
);
CREATE INDEX oidc_refresh_token_chain ON oidc_refresh_token (code_hash);
CREATE INDEX oidc_refresh_token_expires_at ON oidc_refresh_token (expires_at);
