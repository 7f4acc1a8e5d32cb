-- A service may have many OpenID Connect clients ("applications"), each
-- with its own name, secret and redirect URIs, instead of at most one.
-- SQLite flavour, column-for-column identical to
-- ../postgres/0010_applications.sql.
--
-- Each client of 0005 becomes an application with the same client_id,
-- secret and URIs, named after its service, and the requests, codes and
-- access tokens issued to it stay valid across the upgrade.

-- Redirect URIs are JSON arrays of strings, compared exactly, never as
-- prefixes. The name is shown on the authorization page, so two
-- applications of one service never share it.
CREATE TABLE oidc_application (
    client_id                 TEXT    PRIMARY KEY,
    service_id                TEXT    NOT NULL REFERENCES service (id) ON DELETE CASCADE,
    name                      TEXT    NOT NULL,
    -- NULL for a public client, which must use PKCE instead.
    secret_hash               BLOB,
    redirect_uris             TEXT    NOT NULL,
    post_logout_redirect_uris TEXT    NOT NULL,
    id_token_alg              TEXT    NOT NULL DEFAULT 'RS256' CHECK (id_token_alg IN ('RS256', 'EdDSA')),
    created_at                BIGINT  NOT NULL,
    updated_at                BIGINT  NOT NULL,
    CONSTRAINT oidc_application_name_key UNIQUE (service_id, name)
);
-- A service's applications, oldest first.
CREATE INDEX oidc_application_service ON oidc_application (service_id, created_at);

INSERT INTO oidc_application (client_id, service_id, name, secret_hash, redirect_uris, post_logout_redirect_uris,
                              id_token_alg, created_at, updated_at)
SELECT c.client_id, c.service_id, s.name, c.secret_hash, c.redirect_uris, c.post_logout_redirect_uris,
       c.id_token_alg, c.created_at, c.updated_at
FROM oidc_client c JOIN service s ON s.id = c.service_id;

-- SQLite cannot change a foreign key in place, so the tables that reference
-- oidc_client are built again, referencing oidc_application, and their rows
-- copied over. Foreign keys stay on inside the migration's transaction, and
-- DROP TABLE deletes every row first, firing ON DELETE CASCADE: the old
-- tables go before oidc_client, which is dropped only once nothing
-- references it, and the new ones take the old names (and indexes) last.
CREATE TABLE oidc_request_new (
    challenge_id   TEXT    PRIMARY KEY,
    client_id      TEXT    NOT NULL REFERENCES oidc_application (client_id) ON DELETE CASCADE,
    redirect_uri   TEXT    NOT NULL,
    scope          TEXT    NOT NULL,
    state          TEXT,
    nonce          TEXT,
    code_challenge TEXT,
    created_at     BIGINT  NOT NULL
);
INSERT INTO oidc_request_new SELECT challenge_id, client_id, redirect_uri, scope, state, nonce, code_challenge,
                                    created_at
FROM oidc_request;

CREATE TABLE oidc_code_new (
    code_hash      BLOB   PRIMARY KEY,
    client_id      TEXT    NOT NULL REFERENCES oidc_application (client_id) ON DELETE CASCADE,
    service_id     TEXT    NOT NULL,
    account        TEXT    NOT NULL,
    key_id         TEXT    REFERENCES account_key (id) ON DELETE CASCADE,
    redirect_uri   TEXT    NOT NULL,
    scope          TEXT    NOT NULL,
    nonce          TEXT,
    code_challenge TEXT,
    auth_time      BIGINT  NOT NULL,
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    used_at        BIGINT,
    FOREIGN KEY (service_id, account) REFERENCES account (service_id, name) ON DELETE CASCADE
);
INSERT INTO oidc_code_new SELECT code_hash, client_id, service_id, account, key_id, redirect_uri, scope, nonce,
                                 code_challenge, auth_time, created_at, expires_at, used_at
FROM oidc_code;

CREATE TABLE oidc_token_new (
    token_hash BLOB   PRIMARY KEY,
    code_hash  BLOB   NOT NULL,
    client_id  TEXT    NOT NULL REFERENCES oidc_application (client_id) ON DELETE CASCADE,
    service_id TEXT    NOT NULL,
    account    TEXT    NOT NULL,
    key_id     TEXT    REFERENCES account_key (id) ON DELETE CASCADE,
    scope      TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    FOREIGN KEY (service_id, account) REFERENCES account (service_id, name) ON DELETE CASCADE
);
INSERT INTO oidc_token_new SELECT token_hash, code_hash, client_id, service_id, account, key_id, scope, created_at,
                                  expires_at
FROM oidc_token;

DROP TABLE oidc_token;
DROP TABLE oidc_code;
DROP TABLE oidc_request;
DROP TABLE oidc_client;

ALTER TABLE oidc_request_new RENAME TO oidc_request;
ALTER TABLE oidc_code_new RENAME TO oidc_code;
ALTER TABLE oidc_token_new RENAME TO oidc_token;

CREATE INDEX oidc_request_created_at ON oidc_request (created_at);
CREATE INDEX oidc_code_expires_at ON oidc_code (expires_at);
CREATE INDEX oidc_token_code ON oidc_token (code_hash);
CREATE INDEX oidc_token_expires_at ON oidc_token (expires_at);
