-- How a parked authorization request wants its answer: in the redirect's
-- query (the default), or posted by the browser to the redirect URI
-- (OAuth 2.0 Form Post Response Mode), which keeps the code out of
-- addresses that logs and browser histories keep. SQLite flavour,
-- column-for-column identical to ../postgres/0013_form_post.sql.

ALTER TABLE oidc_request ADD COLUMN response_mode TEXT NOT NULL DEFAULT 'query'
    CHECK (response_mode IN ('query', 'form_post'));
