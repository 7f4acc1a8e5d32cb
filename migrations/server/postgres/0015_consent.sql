-- What a person allowed each application to learn: the scopes they
-- approved on the consent page, once per application and scope set, until
-- they withdraw it on their account page. PostgreSQL flavour,
-- column-for-column identical to ../sqlite/0015_consent.sql.
--
-- Only applications whose admin turned `ask_consent` on ask (third-party
-- applications, say); the others, a company's own, are trusted to learn
-- what they ask for. An application that asks for no more than was
-- approved gets its code without asking again. The approval goes with the
-- application, the account and the service.

ALTER TABLE oidc_application ADD COLUMN ask_consent BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE oidc_consent (
    client_id  TEXT   NOT NULL REFERENCES oidc_application (client_id) ON DELETE CASCADE,
    service_id TEXT   NOT NULL,
    account    TEXT   NOT NULL,
    -- The approved scopes, space-separated, in the order of oidc::SCOPES.
    scope      TEXT   NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, service_id, account),
    FOREIGN KEY (service_id, account) REFERENCES account (service_id, name) ON DELETE CASCADE
);
CREATE INDEX oidc_consent_account ON oidc_consent (service_id, account);
