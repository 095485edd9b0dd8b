-- Switchboard schema, version 14: a tell's events are found by the tell's row id.
--
-- `events_by_tell` indexed the tell's UUID: a random key, so every event row went to a random
-- leaf of that index, and each transaction of the event writer (the events of every pair at
-- work) wrote one index page per tell; that index cost more than the rest of an event row.
-- The tell's row id (`tells.id`) grows with the tells: the events of the tells of a moment go
-- to the same few pages. `tell_id` stays as it was (shown, and the stream's filter).
--
-- `tell_row` is the row of the tell named by `tell_id` when the event was stored; NULL when
-- no tell of this database has that id (an event naming a tell it does not hold), and such
-- rows keep an index of their own. A timeline matches both columns, so a row id used again
-- after its tell was deleted finds only the new tell's events.
ALTER TABLE events ADD COLUMN tell_row INTEGER;

UPDATE events SET tell_row = (SELECT t.id FROM tells t WHERE t.tell_id = events.tell_id)
WHERE tell_id IS NOT NULL;

DROP INDEX events_by_tell;
CREATE INDEX events_by_tell_row ON events (tell_row, id) WHERE tell_row IS NOT NULL;
CREATE INDEX events_of_unknown_tells ON events (tell_id, id)
    WHERE tell_row IS NULL AND tell_id IS NOT NULL;
