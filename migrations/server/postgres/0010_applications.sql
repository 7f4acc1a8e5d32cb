-- A service may have many OpenID Connect clients ("applications"), each
-- with its own name, secret and redirect URIs, instead of at most one.
-- PostgreSQL flavour, column-for-column identical to
-- ../sqlite/0010_applications.sql.
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
    secret_hash               BYTEA,
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

-- Requests, codes and tokens now name an application. Their foreign keys
-- keep the names 0005's inline REFERENCES gave them, as a fresh schema
-- would; each is checked against the rows already there.
ALTER TABLE oidc_request
    DROP CONSTRAINT oidc_request_client_id_fkey,
    ADD CONSTRAINT oidc_request_client_id_fkey
        FOREIGN KEY (client_id) REFERENCES oidc_application (client_id) ON DELETE CASCADE;
ALTER TABLE oidc_code
    DROP CONSTRAINT oidc_code_client_id_fkey,
    ADD CONSTRAINT oidc_code_client_id_fkey
        FOREIGN KEY (client_id) REFERENCES oidc_application (client_id) ON DELETE CASCADE;
ALTER TABLE oidc_token
    DROP CONSTRAINT oidc_token_client_id_fkey,
    ADD CONSTRAINT oidc_token_client_id_fkey
        FOREIGN KEY (client_id) REFERENCES oidc_application (client_id) ON DELETE CASCADE;

DROP TABLE oidc_client;
