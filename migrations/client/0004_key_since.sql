-- When the account's key became its key: registered or added here, or
-- confirmed by the server at the end of a key change (rekey), in Unix
-- seconds; an imported key keeps the time its backup recorded. NULL for a
-- key from before this was recorded: `created_at`, which can only be
-- earlier, stands in for it. `sesame import` compares it with the backup's,
-- so that it never offers to replace a key with an older one that the
-- server has since stopped taking (docs/BACKUP.md).
ALTER TABLE account ADD COLUMN key_since INTEGER;
