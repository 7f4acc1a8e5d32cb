-- A sign-in's bookkeeping is done by the database, inside the statement
-- that makes the change, instead of by further statements from the server:
-- each statement saved is a round trip to the database on the hot path.
--
-- 1. A challenge that leaves `pending` (completed, denied, cancelled or
--    expired) records its sign-in event: who asked (the browser's address
--    and user agent), what happened (the purpose of a completed challenge,
--    otherwise its final status), for which account, and when.
-- 2. A key that signs in stamps its account's last sign-in time.
CREATE FUNCTION challenge_finished_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sign_in_event (service_id, challenge_id, kind, account, ip, user_agent, at)
    VALUES (NEW.service_id, NEW.id, COALESCE(NEW.purpose, NEW.status), NEW.account, NEW.ip, NEW.user_agent,
            NEW.finished_at);
    RETURN NULL;
END
$$;

CREATE TRIGGER challenge_finished_event AFTER UPDATE OF status ON challenge
FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.status <> 'pending')
EXECUTE FUNCTION challenge_finished_event();

CREATE FUNCTION account_key_signed_in() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE account SET last_login_at = NEW.last_used_at WHERE service_id = NEW.service_id AND name = NEW.account;
    RETURN NULL;
END
$$;

CREATE TRIGGER account_key_signed_in AFTER UPDATE OF last_used_at ON account_key
FOR EACH ROW WHEN (NEW.last_used_at IS NOT NULL)
EXECUTE FUNCTION account_key_signed_in();
