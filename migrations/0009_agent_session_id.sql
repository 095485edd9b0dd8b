-- Switchboard schema, version 9: the agent's own id of a session's conversation, for agent CLIs
-- that pick it themselves (a Codex thread id); NULL when the agent uses Switchboard's
-- session_id (Claude Code: --session-id / --resume) or has not said yet. A reboot clears it.
ALTER TABLE sessions ADD COLUMN agent_session_id TEXT;
