-- Switchboard schema, version 12: a counter's write is one small row.
--
-- An answered tell adds one message to its session and marks it used; a turn adds its tokens and
-- cost; the agent's output moves `last_response_at`. In the wide `sessions` row each of those
-- writes also rewrote two index entries (`sessions_by_to_team` on last_used_at,
-- `sessions_by_messages` on message_count) and three `session_totals` rows (the triggers): six
-- WAL pages a commit. They now go to `session_pending`, a narrow table with a row per session
-- that has changes not yet folded into `sessions`: no index, no trigger, one page a write.
-- A session's value is its `sessions` column plus its pending delta (for the times, the pending
-- one when set); every read of the store adds them, so nothing a reader sees changes. Pending
-- rows are folded into `sessions` (and so into the indexes and totals) in batches, by the
-- store's background thread, and before any write that sets one of these columns outright.
CREATE TABLE session_pending (
    session          INTEGER PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    messages         INTEGER NOT NULL DEFAULT 0 CHECK (messages >= 0),
    input_tokens     INTEGER NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens    INTEGER NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cost_usd         REAL    NOT NULL DEFAULT 0 CHECK (cost_usd >= 0),
    last_used_at     INTEGER,
    last_response_at INTEGER
);

-- The fold adds a batch's counters to the totals in one statement per scope (`fold_range_in`);
-- the row trigger stays for every other write of these columns, which folds the session's
-- pending row first (so it is gone when the trigger looks).
DROP TRIGGER sessions_totals_usage;
CREATE TRIGGER sessions_totals_usage AFTER UPDATE OF message_count, input_tokens, output_tokens, cost_usd ON sessions
WHEN (new.message_count != old.message_count OR new.input_tokens != old.input_tokens
  OR new.output_tokens != old.output_tokens OR new.cost_usd != old.cost_usd)
  AND NOT EXISTS (SELECT 1 FROM session_pending WHERE session = new.id)
BEGIN
    UPDATE session_totals SET
        messages      = messages + new.message_count - old.message_count,
        input_tokens  = input_tokens + new.input_tokens - old.input_tokens,
        output_tokens = output_tokens + new.output_tokens - old.output_tokens,
        cost_usd      = cost_usd + new.cost_usd - old.cost_usd
    WHERE (scope = 'all' AND key = '') OR (scope = 'from' AND key = new.from_team)
       OR (scope = 'to' AND key = new.to_team);
END;

-- Events: a row was written into five b-trees, four of them indexes. Only the tell index serves
-- a query (a tell's timeline). The stream (`events_after`) walks ids with its filters, which no
-- team index can serve; retention walks the oldest ids (ids follow time), not an index on `at`.
DROP INDEX events_by_from;
DROP INDEX events_by_to;
DROP INDEX events_by_at;
