-- What admins did: one row per change made through the admin API or page,
-- and per admin sign-in, sign-out or refused sign-in. Ids grow with time,
-- so the API pages by id. No secret is ever stored here: no token, cookie
-- or CSRF value, only who (actor), what (action), to what (target), and from
-- where.
CREATE TABLE audit_event (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         BIGINT  NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    detail     TEXT    NOT NULL,
    ip         TEXT    NOT NULL,
    user_agent TEXT    NOT NULL
);
-- The sweep deletes by age.
CREATE INDEX audit_event_at ON audit_event (at);
