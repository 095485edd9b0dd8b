-- Switchboard schema, version 4: a caller's idempotency key on a tell (a retried request with
-- the same key gets the same tell back instead of a second one), and the tell a tell retries
-- (`switchboard tells retry ID`).
ALTER TABLE tells ADD COLUMN idempotency_key TEXT;
ALTER TABLE tells ADD COLUMN retry_of TEXT;
-- A key is unique per calling team.
CREATE UNIQUE INDEX tells_by_idempotency_key ON tells (from_team, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
