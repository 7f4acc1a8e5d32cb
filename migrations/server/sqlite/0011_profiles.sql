-- A profile for each account: a display name and an email address, which
-- the OpenID Connect provider releases under the `profile` and `email`
-- scopes (docs/OIDC.md §5). SQLite flavour, column-for-column identical
-- to ../postgres/0011_profiles.sql.
--
-- Accounts that exist keep working with an empty profile. The profile is
-- part of the account's row, so it goes with the account, and a name freed
-- and registered again starts with none.

-- 1 to 64 bytes under the rules of names; NULL when unset.
ALTER TABLE account ADD COLUMN display_name TEXT;
-- At most 254 bytes; NULL when unset.
ALTER TABLE account ADD COLUMN email TEXT;
-- TRUE only for an address an admin set; one the person sets or changes is
-- not verified.
ALTER TABLE account ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;
