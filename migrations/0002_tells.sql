-- Switchboard schema, version 2: the durable message log (tells) and the agent process of a
-- session (so a restart can find and stop an agent left behind by a killed Switchboard).

ALTER TABLE sessions ADD COLUMN agent_pid INTEGER;
ALTER TABLE sessions ADD COLUMN agent_started_at INTEGER;
CREATE INDEX sessions_by_agent ON sessions (agent_pid) WHERE agent_pid IS NOT NULL;

-- One row per message sent to a team's agent, stored before it is written to the agent; the
-- answer is stored when the agent's result arrives. `id` orders tells (FIFO per pair).
CREATE TABLE tells (
    id              INTEGER PRIMARY KEY,
    tell_id         TEXT    NOT NULL UNIQUE,
    session_id      TEXT    NOT NULL,
    from_team       TEXT    NOT NULL,
    to_team         TEXT    NOT NULL,
    kind            TEXT    NOT NULL DEFAULT 'tell' CHECK (kind IN ('tell', 'compact')),
    text            TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'delivered', 'answered', 'failed', 'cancelled')),
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    answered_at     INTEGER,
    answer          TEXT,
    error           TEXT,
    input_tokens    INTEGER,
    output_tokens   INTEGER,
    cost_usd        REAL,
    duration_ms     INTEGER,
    parent_tell_id  TEXT
);

CREATE INDEX tells_by_pair ON tells (from_team, to_team, id);
CREATE INDEX tells_by_session ON tells (session_id, id);
-- Recovery and queue reads: only the open tells.
CREATE INDEX tells_open ON tells (state, id) WHERE state IN ('queued', 'delivered');
