-- Switchboard schema, version 7: permission requests of the agents and how each was decided
-- (by a rule, a person, the calling team, or the timeout), and the allow rules a person added
-- for one session (`approvals allow ID --always`).
CREATE TABLE approvals (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    approval_id   TEXT    NOT NULL UNIQUE,
    tell_id       TEXT,
    session_id    TEXT    NOT NULL,
    from_team     TEXT    NOT NULL,
    to_team       TEXT    NOT NULL,
    -- The agent's id of the request (its control request id) and of the tool call.
    request_id    TEXT    NOT NULL,
    tool_use_id   TEXT,
    tool          TEXT    NOT NULL,
    -- A bounded, redacted summary of the tool's input (never the whole input).
    input         TEXT    NOT NULL,
    -- Who was asked: rule (decided at once), human, caller.
    decide_by     TEXT    NOT NULL,
    -- pending, allowed, denied, expired.
    state         TEXT    NOT NULL DEFAULT 'pending',
    -- Who decided: rule, person, caller, timeout (and, for expired ones, agent).
    decided_by    TEXT,
    reason        TEXT,
    -- The rule that decided, or the rule a person added with --always.
    rule          TEXT,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    decided_at    INTEGER,
    -- The Switchboard process whose agent asked (pending requests of a gone process expire).
    owner_pid     INTEGER,
    owner_started_at INTEGER
);
CREATE INDEX approvals_pending ON approvals (state) WHERE state = 'pending';
CREATE INDEX approvals_tell ON approvals (tell_id);
CREATE INDEX approvals_pair ON approvals (from_team, to_team, created_at);

CREATE TABLE session_rules (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT    NOT NULL,
    from_team   TEXT    NOT NULL,
    to_team     TEXT    NOT NULL,
    rule        TEXT    NOT NULL,
    approval_id TEXT,
    created_at  INTEGER NOT NULL,
    UNIQUE (session_id, rule)
);
