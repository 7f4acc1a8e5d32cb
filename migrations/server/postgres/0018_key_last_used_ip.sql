-- Where each key last signed in from, beside when. PostgreSQL flavour,
-- column-for-column identical to ../sqlite/0018_key_last_used_ip.sql.
--
-- The account page shows, for each key, when and from where it was added
-- (`device_ip`, `device_user_agent`) and when and from where it last signed
-- someone in. That address is the browser's that started the sign-in (the
-- challenge's `ip`), not the authenticator's: it is where the session went.
-- A passkey's sign-in stamps it in the statement that stamps
-- `last_used_at` (server/src/signin/passkey/store.rs). Keys used before
-- this migration keep an empty address: the page then says when, not where.
ALTER TABLE account_key ADD COLUMN last_used_ip TEXT NOT NULL DEFAULT '';

-- The function behind the login triggers of 0008, stamping the address
-- with the time; the triggers themselves stay as they are.
CREATE OR REPLACE FUNCTION challenge_login_key_used() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE account_key SET last_used_at = NEW.finished_at, last_used_ip = NEW.ip
    WHERE id = NEW.key_id AND state = 'active';
    RETURN NULL;
END
$$;
