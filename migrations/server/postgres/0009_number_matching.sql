-- Number matching (docs/PROTOCOL.md §14): the login page shows a number
-- that is not in the token, and the authenticator must send it back.
--
-- Services that exist keep working as they did until an admin turns it on;
-- the statement that creates a service turns it on for every new one.
ALTER TABLE service ADD COLUMN number_matching BOOLEAN NOT NULL DEFAULT FALSE;

-- The number a pending challenge's page shows (10 to 99), or NULL when its
-- service does not ask for one. It never leaves the server but to the
-- browser that started the challenge.
ALTER TABLE challenge ADD COLUMN number BIGINT CHECK (number BETWEEN 10 AND 99);
