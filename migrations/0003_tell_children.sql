-- Switchboard schema, version 3: find the tells sent during a tell (its children) quickly, to
-- keep a caller waiting on them alive and to cancel them when the caller's tell ends.
CREATE INDEX tells_by_parent ON tells (parent_tell_id) WHERE parent_tell_id IS NOT NULL;
