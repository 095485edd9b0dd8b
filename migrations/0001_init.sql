-- Switchboard schema, version 1: sessions, one per ordered pair of teams.
-- Times are unix milliseconds (UTC). Never edit this file once released: add 0002_... instead.

CREATE TABLE sessions (
    id                        INTEGER PRIMARY KEY,
    from_team                 TEXT    NOT NULL CHECK (length(from_team) BETWEEN 1 AND 100),
    to_team                   TEXT    NOT NULL CHECK (length(to_team) BETWEEN 1 AND 100),
    session_id                TEXT    NOT NULL UNIQUE CHECK (length(session_id) = 36),
    created_at                INTEGER NOT NULL,
    last_used_at              INTEGER NOT NULL,
    message_count             INTEGER NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    status                    TEXT    NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'compact_pending', 'compacting', 'archived', 'error')),
    process_state             TEXT    NOT NULL DEFAULT 'stopped'
        CHECK (process_state IN ('stopped', 'spawning', 'idle', 'processing', 'terminating')),
    current_tell_id           TEXT,
    last_response_at          INTEGER,
    launch_command            TEXT,
    team_config_snapshot      TEXT,
    compaction_count          INTEGER NOT NULL DEFAULT 0 CHECK (compaction_count >= 0),
    last_compacted_at         INTEGER,
    last_pre_compact_tokens   INTEGER,
    last_post_compact_tokens  INTEGER,
    input_tokens              INTEGER NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens             INTEGER NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cost_usd                  REAL    NOT NULL DEFAULT 0 CHECK (cost_usd >= 0),
    last_error                TEXT,
    owner_pid                 INTEGER,
    owner_started_at          INTEGER,
    owner_heartbeat_at        INTEGER,
    UNIQUE (from_team, to_team)
);

-- By pair: the UNIQUE constraint's index. By session_id: its UNIQUE index.
CREATE INDEX sessions_by_to_team       ON sessions (to_team, last_used_at);
CREATE INDEX sessions_by_status        ON sessions (status);
CREATE INDEX sessions_by_process_state ON sessions (process_state);
CREATE INDEX sessions_by_last_used     ON sessions (last_used_at);
CREATE INDEX sessions_by_created       ON sessions (created_at);
-- Busiest pairs and compaction due-ness: range scans on message_count.
CREATE INDEX sessions_by_messages      ON sessions (message_count, last_used_at);
-- Start-up reset: sessions that some process still claims.
CREATE INDEX sessions_by_owner         ON sessions (owner_pid) WHERE owner_pid IS NOT NULL;

-- Running totals kept by triggers, so stats() reads a few hundred rows instead of scanning
-- every session. scope: 'all' (key ''), 'status', 'state', 'from', 'to' (key = team).
CREATE TABLE session_totals (
    scope          TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    sessions       INTEGER NOT NULL DEFAULT 0,
    messages       INTEGER NOT NULL DEFAULT 0,
    input_tokens   INTEGER NOT NULL DEFAULT 0,
    output_tokens  INTEGER NOT NULL DEFAULT 0,
    cost_usd       REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;

CREATE TRIGGER sessions_totals_insert AFTER INSERT ON sessions BEGIN
    INSERT INTO session_totals (scope, key, sessions, messages, input_tokens, output_tokens, cost_usd)
    VALUES ('all', '', 1, new.message_count, new.input_tokens, new.output_tokens, new.cost_usd),
           ('from', new.from_team, 1, new.message_count, new.input_tokens, new.output_tokens, new.cost_usd),
           ('to', new.to_team, 1, new.message_count, new.input_tokens, new.output_tokens, new.cost_usd),
           ('status', new.status, 1, 0, 0, 0, 0),
           ('state', new.process_state, 1, 0, 0, 0, 0)
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
    UPDATE session_totals SET sessions = sessions - 1
    WHERE (scope = 'status' AND key = old.status) OR (scope = 'state' AND key = old.process_state);
END;

CREATE TRIGGER sessions_totals_usage AFTER UPDATE OF message_count, input_tokens, output_tokens, cost_usd ON sessions
WHEN new.message_count != old.message_count OR new.input_tokens != old.input_tokens
  OR new.output_tokens != old.output_tokens OR new.cost_usd != old.cost_usd
BEGIN
    UPDATE session_totals SET
        messages      = messages + new.message_count - old.message_count,
        input_tokens  = input_tokens + new.input_tokens - old.input_tokens,
        output_tokens = output_tokens + new.output_tokens - old.output_tokens,
        cost_usd      = cost_usd + new.cost_usd - old.cost_usd
    WHERE (scope = 'all' AND key = '') OR (scope = 'from' AND key = new.from_team)
       OR (scope = 'to' AND key = new.to_team);
END;

CREATE TRIGGER sessions_totals_status AFTER UPDATE OF status ON sessions
WHEN new.status != old.status
BEGIN
    UPDATE session_totals SET sessions = sessions - 1 WHERE scope = 'status' AND key = old.status;
    INSERT INTO session_totals (scope, key, sessions) VALUES ('status', new.status, 1)
    ON CONFLICT (scope, key) DO UPDATE SET sessions = sessions + 1;
END;

CREATE TRIGGER sessions_totals_state AFTER UPDATE OF process_state ON sessions
WHEN new.process_state != old.process_state
BEGIN
    UPDATE session_totals SET sessions = sessions - 1 WHERE scope = 'state' AND key = old.process_state;
    INSERT INTO session_totals (scope, key, sessions) VALUES ('state', new.process_state, 1)
    ON CONFLICT (scope, key) DO UPDATE SET sessions = sessions + 1;
END;
