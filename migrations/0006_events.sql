-- Switchboard schema, version 6: the event log. Every step of a tell (queued, delivered,
-- answered, ...), of an agent (spawning, ready, stopped) and the agent's own activity inside a
-- turn (text, tool use, tool result, usage, status lines), so a tell's timeline can be shown
-- after a restart and `/events` can resume from an id without gaps.
--
-- `id` is AUTOINCREMENT: never reused, so a reader that saw id N never misses a later event
-- even after old ones are pruned. `data` is the event's JSON (its `type` and fields).
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    from_team   TEXT,
    to_team     TEXT,
    tell_id     TEXT,
    session_id  TEXT,
    data        TEXT    NOT NULL
);

CREATE INDEX events_by_tell ON events (tell_id, id) WHERE tell_id IS NOT NULL;
CREATE INDEX events_by_from ON events (from_team, id);
CREATE INDEX events_by_to ON events (to_team, id);
-- Retention: the oldest go first.
CREATE INDEX events_by_at ON events (at);
