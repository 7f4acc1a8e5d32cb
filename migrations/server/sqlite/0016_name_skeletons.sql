-- Names that cannot be confused: two services, or two accounts of one
-- service, whose names look alike are refused as duplicates. SQLite
-- flavour, column-for-column identical to ../postgres/0016_name_skeletons.sql.
--
-- Each name gets two keys, computed by the server (names.rs), since SQL
-- cannot compute them: its Unicode confusable skeleton (UTS #39) with case
-- folded before and after (`skeleton_folded`: "Example Mail" and
-- "example mail", a Cyrillic "а" for a Latin "a", full-width letters), and
-- the skeleton of the name as written, folded after (`skeleton_written`:
-- a capital I for a small l, which folding first would make an i). A
-- UNIQUE index on each decides conflicts, so two instances creating
-- look-alike names at once cannot both succeed.
--
-- Rows from before this migration have no keys (NULL, which unique
-- indexes allow); the server fills them at start-up, oldest first, and
-- leaves a key NULL where an older name already holds it, so an existing
-- pair of look-alikes never stops an upgrade. The partial index finds the
-- rows still to fill.

ALTER TABLE service ADD COLUMN skeleton_folded TEXT;
ALTER TABLE service ADD COLUMN skeleton_written TEXT;
CREATE UNIQUE INDEX service_skeleton_folded_key ON service (skeleton_folded);
CREATE UNIQUE INDEX service_skeleton_written_key ON service (skeleton_written);

ALTER TABLE account ADD COLUMN skeleton_folded TEXT;
ALTER TABLE account ADD COLUMN skeleton_written TEXT;
CREATE UNIQUE INDEX account_skeleton_folded_key ON account (service_id, skeleton_folded);
CREATE UNIQUE INDEX account_skeleton_written_key ON account (service_id, skeleton_written);
CREATE INDEX account_skeleton_unfilled ON account (created_at, service_id, name)
    WHERE skeleton_folded IS NULL OR skeleton_written IS NULL;
