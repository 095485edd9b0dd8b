-- Switchboard schema, version 5: the answered tells of each pair, indexed on their own, so
-- `stats` can show a pair's lifetime count of answered tells (message_count is reset by every
-- compaction; this count is not) without reading every tell.
CREATE INDEX tells_answered ON tells (from_team, to_team) WHERE state = 'answered' AND kind = 'tell';
