-- The periodic sweep deletes by age: expired sessions, and sign-in events
-- older than the retention. Challenges already have challenge_expires_at.
CREATE INDEX session_expires_at ON session (expires_at);
CREATE INDEX sign_in_event_at ON sign_in_event (at);
