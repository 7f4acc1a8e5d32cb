-- Where each key last signed in from, beside when. SQLite flavour,
-- column-for-column identical to ../postgres/0018_key_last_used_ip.sql.
--
-- The account page shows, for each key, when and from where it was added
-- (`device_ip`, `device_user_agent`) and when and from where it last signed
-- someone in. That address is the browser's that started the sign-in (the
-- challenge's `ip`), not the authenticator's: it is where the session went.
-- A passkey's sign-in stamps it in the statement that stamps
-- `last_used_at` (server/src/signin/passkey/store.rs). Keys used before
-- this migration keep an empty address: the page then says when, not where.
ALTER TABLE account_key ADD COLUMN last_used_ip TEXT NOT NULL DEFAULT '';

-- The login triggers of 0008, stamping the address with the time.
DROP TRIGGER challenge_login_inserted;
DROP TRIGGER challenge_login_finished;

CREATE TRIGGER challenge_login_inserted AFTER INSERT ON challenge
WHEN NEW.purpose = 'login'
BEGIN
    UPDATE account_key SET last_used_at = NEW.finished_at, last_used_ip = NEW.ip
    WHERE id = NEW.key_id AND state = 'active';
END;

CREATE TRIGGER challenge_login_finished AFTER UPDATE OF status ON challenge
WHEN OLD.status = 'pending' AND NEW.purpose = 'login'
BEGIN
    UPDATE account_key SET last_used_at = NEW.finished_at, last_used_ip = NEW.ip
    WHERE id = NEW.key_id AND state = 'active';
END;
