-- On a single instance, pending challenges are held in memory, and a
-- challenge reaches this table only when it ends, as one INSERT of its final
-- state (server/src/challenge/pending.rs). The bookkeeping of migration 0006
-- follows it there:
--
-- 1. An ended challenge inserted as such records its sign-in event, as one
--    that leaves `pending` by an UPDATE does.
-- 2. A login's challenge, inserted or updated to its final state, stamps the
--    key that made it as used, which in turn (0006) stamps the account's last
--    sign-in. The server no longer does this with a statement of its own.
CREATE TRIGGER challenge_ended_event AFTER INSERT ON challenge
FOR EACH ROW WHEN (NEW.status <> 'pending')
EXECUTE FUNCTION challenge_finished_event();

CREATE FUNCTION challenge_login_key_used() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE account_key SET last_used_at = NEW.finished_at WHERE id = NEW.key_id AND state = 'active';
    RETURN NULL;
END
$$;

CREATE TRIGGER challenge_login_inserted AFTER INSERT ON challenge
FOR EACH ROW WHEN (NEW.purpose = 'login')
EXECUTE FUNCTION challenge_login_key_used();

CREATE TRIGGER challenge_login_finished AFTER UPDATE OF status ON challenge
FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.purpose = 'login')
EXECUTE FUNCTION challenge_login_key_used();
