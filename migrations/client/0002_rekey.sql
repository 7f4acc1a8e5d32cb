-- A key change in flight (rekey, docs/PROTOCOL.md §13): the new key, stored
-- before the server hears of it, so that neither side stopping at any moment
-- leaves the account without a working key here. `next_secret` is sealed
-- like `secret` (the same `sealed` flag and associated data). Both are NULL
-- when no change is in flight; the account's key is replaced by them once
-- the server has confirmed the change.
ALTER TABLE account ADD COLUMN next_public_key BLOB CHECK (next_public_key IS NULL OR length(next_public_key) = 32);
ALTER TABLE account ADD COLUMN next_secret BLOB;
