-- Switchboard schema, version 11: fewer index pages per tell. Every tell is inserted, delivered
-- and ended, and each index a row is in is written at each of those steps (a WAL page each).
-- `tells_by_session` serves no query (tells are read by pair, by id, by caller, by parent);
-- `tells_open` (state, id) is the same set of rows as `tells_open_by_pair` (migration 8),
-- which also serves the one query that read it (every open tell, at start-up).
DROP INDEX tells_by_session;
DROP INDEX tells_open;
