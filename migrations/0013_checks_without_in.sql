-- Switchboard schema, version 13: the CHECK constraints that list a column's values say it
-- with ORs.
--
-- SQLite checks `x IN (a, b, c, ...)` (more than two values) by building a temporary b-tree
-- (a pager and its page cache, allocated and freed) for every row it writes. A tell's
-- `state` and a session's `process_state` (and `status`) change at every turn, so every turn
-- paid for several; `x = a OR x = b ...` is compared in place. The constraints accept and
-- refuse exactly the same values, so every row stored satisfies them.
--
-- The CREATE TABLE text is rewritten in place (PRAGMA writable_schema, SQLite's own procedure
-- for changing a CHECK constraint): no table is copied, whatever its size. The migration runner
-- then increments the schema cookie, so every connection reads the new text.
PRAGMA writable_schema = ON;

UPDATE sqlite_schema SET sql = replace(sql,
    'CHECK (state IN (''queued'', ''delivered'', ''answered'', ''failed'', ''cancelled''))',
    'CHECK (state = ''queued'' OR state = ''delivered'' OR state = ''answered''
               OR state = ''failed'' OR state = ''cancelled'')')
WHERE type = 'table' AND name = 'tells';

UPDATE sqlite_schema SET sql = replace(sql,
    'CHECK (process_state IN (''stopped'', ''spawning'', ''idle'', ''processing'', ''terminating''))',
    'CHECK (process_state = ''stopped'' OR process_state = ''spawning'' OR process_state = ''idle''
               OR process_state = ''processing'' OR process_state = ''terminating'')')
WHERE type = 'table' AND name = 'session_live';

UPDATE sqlite_schema SET sql = replace(sql,
    'CHECK (status IN (''active'', ''compact_pending'', ''compacting'', ''archived'', ''error''))',
    'CHECK (status = ''active'' OR status = ''compact_pending'' OR status = ''compacting''
               OR status = ''archived'' OR status = ''error'')')
WHERE type = 'table' AND name = 'sessions';

PRAGMA writable_schema = OFF;
