-- Switchboard schema, version 8: the write path. The per-process columns of a session (what its
-- agent process is doing, which Switchboard process holds it, the agent's pid, the tell being
-- processed) change on every turn and at every start-up; they move out of the wide `sessions`
-- row into a narrow table of their own, with a row only while a session has any of them set.
-- Changing a process state then writes one small row: no index over it, no totals trigger
-- (the counts per process state come from counting this small table). `sessions_by_last_used`
-- goes too: `last_used_at` changes on every answered tell, and no query needs the index.

CREATE TABLE session_live (
    session            INTEGER PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    process_state      TEXT    NOT NULL DEFAULT 'stopped'
        CHECK (process_state IN ('stopped', 'spawning', 'idle', 'processing', 'terminating')),
    current_tell_id    TEXT,
    owner_pid          INTEGER,
    owner_started_at   INTEGER,
    owner_heartbeat_at INTEGER,
    agent_pid          INTEGER,
    agent_started_at   INTEGER
);

-- Start-up reset: the sessions a process holds, and their agents, from the index alone.
CREATE INDEX session_live_by_owner ON session_live (owner_pid, owner_started_at, agent_pid, agent_started_at)
    WHERE owner_pid IS NOT NULL;

-- Every value moves: a row for each session that has any per-process column set.
INSERT INTO session_live (session, process_state, current_tell_id, owner_pid, owner_started_at,
                          owner_heartbeat_at, agent_pid, agent_started_at)
SELECT id, process_state, current_tell_id, owner_pid, owner_started_at, owner_heartbeat_at,
       agent_pid, agent_started_at
FROM sessions
WHERE process_state != 'stopped' OR current_tell_id IS NOT NULL OR owner_pid IS NOT NULL
   OR owner_started_at IS NOT NULL OR owner_heartbeat_at IS NOT NULL OR agent_pid IS NOT NULL
   OR agent_started_at IS NOT NULL;

-- The triggers that read process_state go (the totals keep every other scope).
DROP TRIGGER sessions_totals_insert;
DROP TRIGGER sessions_totals_delete;
DROP TRIGGER sessions_totals_state;
DELETE FROM session_totals WHERE scope = 'state';

DROP INDEX sessions_by_process_state;
DROP INDEX sessions_by_owner;
DROP INDEX sessions_by_agent;
DROP INDEX sessions_by_last_used;

ALTER TABLE sessions DROP COLUMN process_state;
ALTER TABLE sessions DROP COLUMN current_tell_id;
ALTER TABLE sessions DROP COLUMN owner_pid;
ALTER TABLE sessions DROP COLUMN owner_started_at;
ALTER TABLE sessions DROP COLUMN owner_heartbeat_at;
ALTER TABLE sessions DROP COLUMN agent_pid;
ALTER TABLE sessions DROP COLUMN agent_started_at;

CREATE TRIGGER sessions_totals_insert AFTER INSERT ON sessions BEGIN
    INSERT INTO session_totals (scope, key, sessions, messages, input_tokens, output_tokens, cost_usd)
    VALUES ('all', '', 1, new.message_count, new.input_tokens, new.output_tokens, new.cost_usd),
           ('from', new.from_team, 1, new.message_count, new.input_tokens, new.output_tokens, new.cost_usd),
           ('to', new.to_team, 1, new.message_count, new.input_tokens, new.output_tokens, new.cost_usd),
           ('status', new.status, 1, 0, 0, 0, 0)
    ON CONFLICT (scope, key) DO UPDATE SET
        sessions      = sessions + excluded.sessions,
        messages      = messages + excluded.messages,
        input_tokens  = input_tokens + excluded.input_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        cost_usd      = cost_usd + excluded.cost_usd;
END;

CREATE TRIGGER sessions_totals_delete AFTER DELETE ON sessions BEGIN
    UPDATE session_totals SET
        sessions      = sessions - 1,
        messages      = messages - old.message_count,
        input_tokens  = input_tokens - old.input_tokens,
        output_tokens = output_tokens - old.output_tokens,
        cost_usd      = cost_usd - old.cost_usd
    WHERE (scope = 'all' AND key = '') OR (scope = 'from' AND key = old.from_team)
       OR (scope = 'to' AND key = old.to_team);
    UPDATE session_totals SET sessions = sessions - 1 WHERE scope = 'status' AND key = old.status;
END;

-- The tell path's reads by index, not by the pair's whole history: the open tells of a pair
-- (the worker's next tell, the queue limits), and a calling team's recent tells (its rate
-- limit), which read every tell of the last minute before.
CREATE INDEX tells_open_by_pair ON tells (from_team, to_team, id)
    WHERE state IN ('queued', 'delivered');
CREATE INDEX tells_by_caller ON tells (from_team, created_at) WHERE kind = 'tell';
