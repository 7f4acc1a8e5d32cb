-- Sesame server schema, SQLite flavour. Kept column-for-column identical to
-- ../postgres/0001_initial.sql: the server runs the same SQL on both.
-- Times are Unix seconds (BIGINT); ids are 32 lowercase hex digits (TEXT).

CREATE TABLE server_key (
    id         BIGINT  PRIMARY KEY CHECK (id = 1),
    seed       BLOB    NOT NULL,
    created_at BIGINT  NOT NULL
);

CREATE TABLE service (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL CONSTRAINT service_name_key UNIQUE,
    builtin    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT  NOT NULL
);

CREATE TABLE account (
    service_id    TEXT   NOT NULL REFERENCES service (id) ON DELETE CASCADE,
    name          TEXT   NOT NULL,
    public_key    BLOB   NOT NULL,
    created_at    BIGINT NOT NULL,
    last_login_at BIGINT,
    CONSTRAINT account_pkey PRIMARY KEY (service_id, name)
);

CREATE TABLE challenge (
    id             TEXT    PRIMARY KEY,
    service_id     TEXT    NOT NULL REFERENCES service (id) ON DELETE CASCADE,
    base_token     TEXT    NOT NULL,
    code_secret    BLOB    NOT NULL,
    binding_hash   BLOB    NOT NULL,
    allow_register BOOLEAN NOT NULL DEFAULT TRUE,
    ip             TEXT    NOT NULL,
    user_agent     TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    status         TEXT    NOT NULL DEFAULT 'pending',
    hint           TEXT    NOT NULL DEFAULT 'outstanding',
    purpose        TEXT,
    account        TEXT,
    finished_at    BIGINT,
    redeemed_at    BIGINT
);
CREATE INDEX challenge_expires_at ON challenge (expires_at);

CREATE TABLE session (
    id_hash    BLOB   PRIMARY KEY,
    service_id TEXT   NOT NULL,
    account    TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    FOREIGN KEY (service_id, account) REFERENCES account (service_id, name) ON DELETE CASCADE
);

CREATE TABLE admin_session (
    id_hash    BLOB   PRIMARY KEY,
    csrf_token TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE sign_in_event (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id   TEXT    NOT NULL REFERENCES service (id) ON DELETE CASCADE,
    challenge_id TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    account      TEXT,
    ip           TEXT    NOT NULL,
    user_agent   TEXT    NOT NULL,
    at           BIGINT  NOT NULL
);
CREATE INDEX sign_in_event_service_at ON sign_in_event (service_id, at);
