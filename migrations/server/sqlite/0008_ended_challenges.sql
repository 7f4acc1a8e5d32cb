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
WHEN NEW.status <> 'pending'
BEGIN
    INSERT INTO sign_in_event (service_id, challenge_id, kind, account, ip, user_agent, at)
    VALUES (NEW.service_id, NEW.id, COALESCE(NEW.purpose, NEW.status), NEW.account, NEW.ip, NEW.user_agent,
            NEW.finished_at);
END;

CREATE TRIGGER challenge_login_inserted AFTER INSERT ON challenge
WHEN NEW.purpose = 'login'
BEGIN
    UPDATE account_key SET last_used_at = NEW.finished_at WHERE id = NEW.key_id AND state = 'active';
END;

CREATE TRIGGER challenge_login_finished AFTER UPDATE OF status ON challenge
WHEN OLD.status = 'pending' AND NEW.purpose = 'login'
BEGIN
    UPDATE account_key SET last_used_at = NEW.finished_at WHERE id = NEW.key_id AND state = 'active';
END;
