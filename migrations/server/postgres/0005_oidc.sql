-- OpenID Connect: each service may be a client; the provider's signing
-- keys; authorization requests waiting on a login page; codes and access
-- tokens. PostgreSQL flavour, column-for-column identical to
-- ../sqlite/0005_oidc.sql.
--
-- Every secret handed out (client secret, code, access token) is stored only
-- as its SHA-256: they are 256-bit random values, so a digest is as good as
-- a slow hash, and a copy of the database lets nobody use them.

-- At most one client per service. Redirect URIs are JSON arrays of strings,
-- compared exactly, never as prefixes.
CREATE TABLE oidc_client (
    service_id                TEXT    PRIMARY KEY REFERENCES service (id) ON DELETE CASCADE,
    client_id                 TEXT    NOT NULL CONSTRAINT oidc_client_client_id_key UNIQUE,
    -- NULL for a public client, which must use PKCE instead.
    secret_hash               BYTEA,
    redirect_uris             TEXT    NOT NULL,
    post_logout_redirect_uris TEXT    NOT NULL,
    id_token_alg              TEXT    NOT NULL DEFAULT 'RS256' CHECK (id_token_alg IN ('RS256', 'EdDSA')),
    created_at                BIGINT  NOT NULL,
    updated_at                BIGINT  NOT NULL
);

-- The ID-token signing keys, shared by every instance. Per algorithm there
-- is one 'current' key that signs, one 'next' key that is already published
-- (so that relying parties that cache the key set know it before it signs),
-- and at most one 'retired' key, still published so that tokens it signed
-- keep verifying until the next rotation drops it.
CREATE TABLE oidc_signing_key (
    kid         TEXT    PRIMARY KEY,
    alg         TEXT    NOT NULL CHECK (alg IN ('RS256', 'EdDSA')),
    state       TEXT    NOT NULL CHECK (state IN ('next', 'current', 'retired')),
    -- RS256: PKCS#1 DER; EdDSA: PKCS#8 DER.
    private_der BYTEA   NOT NULL,
    -- The public half as a JWK, exactly as the key set publishes it.
    public_jwk  TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);
-- Two instances that both find no key may both make one; only one wins.
CREATE UNIQUE INDEX oidc_signing_key_current ON oidc_signing_key (alg) WHERE state = 'current';
CREATE UNIQUE INDEX oidc_signing_key_next ON oidc_signing_key (alg) WHERE state = 'next';

-- An authorization request waiting on a login page, keyed by the challenge
-- the page shows. It is taken (deleted) when the page finishes, once.
CREATE TABLE oidc_request (
    challenge_id   TEXT    PRIMARY KEY,
    client_id      TEXT    NOT NULL REFERENCES oidc_client (client_id) ON DELETE CASCADE,
    redirect_uri   TEXT    NOT NULL,
    scope          TEXT    NOT NULL,
    state          TEXT,
    nonce          TEXT,
    code_challenge TEXT,
    created_at     BIGINT  NOT NULL
);
CREATE INDEX oidc_request_created_at ON oidc_request (created_at);

-- Authorization codes: single use (used_at), at most 60 s. A used code is
-- kept until it expires, so that a replay is recognised and revokes the
-- tokens issued from it. Deleting the account or the key that signed in
-- deletes its codes and tokens.
CREATE TABLE oidc_code (
    code_hash      BYTEA   PRIMARY KEY,
    client_id      TEXT    NOT NULL REFERENCES oidc_client (client_id) ON DELETE CASCADE,
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
CREATE INDEX oidc_code_expires_at ON oidc_code (expires_at);

-- Access tokens (opaque, for the userinfo endpoint), each naming the code
-- it was issued from.
CREATE TABLE oidc_token (
    token_hash BYTEA   PRIMARY KEY,
    code_hash  BYTEA   NOT NULL,
    client_id  TEXT    NOT NULL REFERENCES oidc_client (client_id) ON DELETE CASCADE,
    service_id TEXT    NOT NULL,
    account    TEXT    NOT NULL,
    key_id     TEXT    REFERENCES account_key (id) ON DELETE CASCADE,
    scope      TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    FOREIGN KEY (service_id, account) REFERENCES account (service_id, name) ON DELETE CASCADE
);
CREATE INDEX oidc_token_code ON oidc_token (code_hash);
CREATE INDEX oidc_token_expires_at ON oidc_token (expires_at);
