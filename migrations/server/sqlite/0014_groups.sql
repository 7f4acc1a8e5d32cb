-- Groups: a service's named sets of accounts, which the OpenID Connect
-- provider releases under the `groups` scope and which restrict who may
-- use an application (docs/OIDC.md §2, §5). SQLite flavour,
-- column-for-column identical to ../postgres/0014_groups.sql.
--
-- A group's id is random and never changes; a rename changes only its name,
-- which is unique within the service. Deleting a group, an account, an
-- application or the service deletes the memberships and restrictions that
-- name it.

CREATE TABLE service_group (
    id         TEXT   PRIMARY KEY,
    service_id TEXT   NOT NULL REFERENCES service (id) ON DELETE CASCADE,
    -- 1 to 64 bytes under the rules of names.
    name       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT service_group_name_key UNIQUE (service_id, name)
);

-- An account's groups. The group is of the account's service: the server
-- looks names up within the service before it writes them.
CREATE TABLE account_group (
    service_id TEXT NOT NULL,
    account    TEXT NOT NULL,
    group_id   TEXT NOT NULL REFERENCES service_group (id) ON DELETE CASCADE,
    CONSTRAINT account_group_pkey PRIMARY KEY (service_id, account, group_id),
    FOREIGN KEY (service_id, account) REFERENCES account (service_id, name) ON DELETE CASCADE
);
-- A group's members: its member count, and the cascade of its deletion.
CREATE INDEX account_group_group ON account_group (group_id);

-- The groups an application admits. An application with rows here admits
-- only members of at least one of them; one without admits every account
-- of its service.
CREATE TABLE application_group (
    client_id TEXT NOT NULL REFERENCES oidc_application (client_id) ON DELETE CASCADE,
    group_id  TEXT NOT NULL REFERENCES service_group (id) ON DELETE CASCADE,
    CONSTRAINT application_group_pkey PRIMARY KEY (client_id, group_id)
);
CREATE INDEX application_group_group ON application_group (group_id);
