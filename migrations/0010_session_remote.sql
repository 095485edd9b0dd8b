-- Switchboard schema, version 10: the remote agent of a session (a team with `remote`, run over
-- SSH). While a row exists, a process group of the session may be running on that host: its
-- leader's pid (= the group id) and start time there (clock ticks after boot, 0 when the host
-- has no /proc). It outlives the lease on purpose: when the connection broke, the group could
-- not be stopped, and is stopped before the session's agent is started again. The local `ssh`
-- carrying the agent's stdio stays the agent of `session_live` (and the lease's holder).
CREATE TABLE session_remote (
    session      INTEGER PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    host         TEXT    NOT NULL,
    remote_pid   INTEGER NOT NULL,
    remote_start INTEGER NOT NULL,
    recorded_at  INTEGER NOT NULL
);
