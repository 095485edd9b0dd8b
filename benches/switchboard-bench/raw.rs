//! The floor: the store's SQL statements run through bare rusqlite on one connection with the
//! same pragmas (WAL, synchronous=NORMAL, busy_timeout, foreign_keys) and `prepare_cached`.
//!
//! The SQL text is copied from `src/store/sessions.rs` (the binary cannot see its private
//! consts) and must stay identical to it. Rows are decoded into the same public `Session` type,
//! so the ratio layer/raw measures what the layers add (pool checkout, SQL formatting, statement
//! cache lookup by a long key, cache invalidation, ...), not the row decoding every caller needs.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use switchboard::store::{ProcessState, Session, BUSY_TIMEOUT};
use switchboard::util::ProcessIdentity;

/// Copied from `COLUMNS` in `src/store/sessions.rs`.
const COLUMNS: &str = "id, from_team, to_team, session_id, created_at, last_used_at, message_count, \
    status, process_state, current_tell_id, last_response_at, launch_command, team_config_snapshot, \
    compaction_count, last_compacted_at, last_pre_compact_tokens, last_post_compact_tokens, \
    input_tokens, output_tokens, cost_usd, last_error, owner_pid, owner_started_at, owner_heartbeat_at, \
    agent_pid, agent_started_at, agent_session_id";

/// Copied from `DUE_WHERE` in `src/store/sessions.rs`.
const DUE_WHERE: &str = "message_count >= min(?1, ?2) \
    AND (message_count >= ?1 OR (message_count >= ?2 AND last_used_at < ?3)) \
    AND +status IN ('active', 'compact_pending', 'error')";

/// Copied from `reset_orphaned` in `src/store/sessions.rs`.
const RESET: &str = "process_state = 'stopped', current_tell_id = NULL, owner_pid = NULL, \
    owner_started_at = NULL, owner_heartbeat_at = NULL, agent_pid = NULL, agent_started_at = NULL, \
    status = CASE status WHEN 'compacting' THEN 'compact_pending' ELSE status END";

/// Copied from `stats` in `src/store/sessions.rs`.
const STATS_TOTALS: &str =
    "SELECT scope, key, sessions, messages, input_tokens, output_tokens, cost_usd \
                 FROM session_totals";
const STATS_BUSIEST: &str = "SELECT from_team, to_team, session_id, message_count FROM sessions \
                 WHERE message_count > 0 ORDER BY message_count DESC, id ASC LIMIT 10";
const RESET_AGENTS_OWNERLESS: &str = "SELECT agent_pid, agent_started_at FROM sessions \
                     WHERE agent_pid IS NOT NULL AND owner_pid IS NULL";
const RESET_AGENTS_BY_OWNER: &str = "SELECT agent_pid, agent_started_at FROM sessions \
                 WHERE agent_pid IS NOT NULL AND owner_pid = ?1 AND owner_started_at IS ?2";
const RESET_OWNERS: &str = "SELECT owner_pid, owner_started_at, count(*) FROM sessions \
                 WHERE owner_pid IS NOT NULL GROUP BY owner_pid, owner_started_at";

/// Copy of `row_to_session` in `src/store/sessions.rs`.
fn row_to_session(r: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: r.get(0)?,
        from_team: r.get(1)?,
        to_team: r.get(2)?,
        session_id: r.get(3)?,
        created_at: r.get(4)?,
        last_used_at: r.get(5)?,
        message_count: r.get(6)?,
        status: r.get(7)?,
        process_state: r.get(8)?,
        current_tell_id: r.get(9)?,
        last_response_at: r.get(10)?,
        launch_command: r.get(11)?,
        team_config_snapshot: r.get(12)?,
        compaction_count: r.get(13)?,
        last_compacted_at: r.get(14)?,
        last_pre_compact_tokens: r.get(15)?,
        last_post_compact_tokens: r.get(16)?,
        input_tokens: r.get(17)?,
        output_tokens: r.get(18)?,
        cost_usd: r.get(19)?,
        last_error: r.get(20)?,
        owner_pid: r.get(21)?,
        owner_started_at: r.get(22)?,
        owner_heartbeat_at: r.get(23)?,
        agent_pid: r.get(24)?,
        agent_started_at: r.get(25)?,
        agent_session_id: r.get(26)?,
    })
}

/// Runs a single-row `UPDATE ... RETURNING` to completion and returns its row, as the store's
/// `write_returning` does.
///
/// Stepping until SQLite says DONE (not `query_row`, which resets the statement after the first
/// row) makes the autocommit commit happen inside `sqlite3_step`, which is where SQLite runs the
/// WAL hook (the automatic checkpoint). Before the store did the same, its WAL grew without
/// bound. See BENCHMARKS.md.
fn write_one(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Session> {
    let mut rows = stmt.query(params)?;
    let row = match rows.next()? {
        Some(r) => row_to_session(r)?,
        None => return Err(rusqlite::Error::QueryReturnedNoRows),
    };
    while rows.next()?.is_some() {}
    Ok(row)
}

/// Totals read by [`Raw::stats`] (kept so the reads are not optimised away).
#[derive(Debug, Default)]
pub struct RawStats {
    /// Rows of `session_totals`.
    pub totals_rows: usize,
    /// Sessions due for compaction.
    pub due: i64,
    /// Busiest pairs found.
    pub busiest: usize,
}

/// One bare connection and the statement texts, formatted once.
pub struct Raw {
    conn: Connection,
    wal: std::path::PathBuf,
    by_id: String,
    by_pair: String,
    insert: String,
    incr: String,
    set_state: String,
    force_owner: String,
    list_to_team: String,
    due_count: String,
    reset_by_owner: String,
    reset_ownerless: String,
}

impl Raw {
    /// Opens `path` with the store's pragmas.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;",
        )?;
        conn.set_prepared_statement_cache_capacity(64);
        // wal_autocheckpoint stays at SQLite's default (1000 pages), like the store's
        // connections: a raw write pays for the checkpoints its commits trigger, as the store's
        // do. The benchmark also truncates the WAL between timed loops (see `checkpoint`).
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Self {
            conn,
            wal: wal.into(),
            by_id: format!("SELECT {COLUMNS} FROM sessions WHERE session_id = ?1"),
            by_pair: format!(
                "SELECT {COLUMNS} FROM sessions WHERE from_team = ?1 AND to_team = ?2"
            ),
            insert: format!(
                "INSERT INTO sessions (from_team, to_team, session_id, created_at, last_used_at) \
                 VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (from_team, to_team) DO NOTHING RETURNING {COLUMNS}"
            ),
            incr: format!(
                "UPDATE sessions SET message_count = message_count + ?2, last_used_at = ?3 \
                 WHERE session_id = ?1 RETURNING {COLUMNS}"
            ),
            set_state: format!(
                "UPDATE sessions SET process_state = ?2 WHERE session_id = ?1 RETURNING {COLUMNS}"
            ),
            force_owner: format!(
                "UPDATE sessions SET process_state = ?2, owner_pid = ?3, owner_started_at = ?4, \
                 owner_heartbeat_at = ?5 WHERE session_id = ?1 RETURNING {COLUMNS}"
            ),
            list_to_team: format!(
                "SELECT {COLUMNS} FROM sessions WHERE 1 = 1 AND to_team = ?1 \
                 ORDER BY last_used_at DESC, id DESC LIMIT 50"
            ),
            due_count: format!("SELECT count(*) FROM sessions WHERE {DUE_WHERE}"),
            reset_by_owner: format!(
                "UPDATE sessions SET {RESET} WHERE owner_pid = ?1 AND owner_started_at IS ?2 \
                 RETURNING from_team, to_team"
            ),
            reset_ownerless: format!(
                "UPDATE sessions SET {RESET} WHERE owner_pid IS NULL AND rowid IN ( \
                   SELECT rowid FROM sessions \
                     WHERE process_state IN ('spawning', 'idle', 'processing', 'terminating') \
                   UNION ALL SELECT rowid FROM sessions WHERE status = 'compacting' \
                   UNION ALL SELECT rowid FROM sessions WHERE agent_pid IS NOT NULL) \
                 RETURNING from_team, to_team"
            ),
        })
    }

    /// `get_by_session_id`.
    pub fn get_by_id(&self, session_id: &str) -> rusqlite::Result<Option<Session>> {
        self.conn
            .prepare_cached(&self.by_id)?
            .query_row([session_id], row_to_session)
            .optional()
    }

    /// `get_by_pair` (what `get_or_create` runs for an existing pair on a cache miss).
    pub fn get_by_pair(&self, from: &str, to: &str) -> rusqlite::Result<Option<Session>> {
        self.conn
            .prepare_cached(&self.by_pair)?
            .query_row([from, to], row_to_session)
            .optional()
    }

    /// `increment_message_count`.
    pub fn incr_msg(&self, session_id: &str, n: i64, now: i64) -> rusqlite::Result<Session> {
        let mut stmt = self.conn.prepare_cached(&self.incr)?;
        write_one(&mut stmt, params![session_id, n, now])
    }

    /// `update_process_state` for a state other than `stopped`.
    pub fn set_proc_state(
        &self,
        session_id: &str,
        state: ProcessState,
    ) -> rusqlite::Result<Session> {
        let mut stmt = self.conn.prepare_cached(&self.set_state)?;
        write_one(&mut stmt, params![session_id, state])
    }

    /// `list` with only `to_team` and `limit 50` set (default order).
    pub fn list_to_team(&self, team: &str) -> rusqlite::Result<Vec<Session>> {
        let mut stmt = self.conn.prepare_cached(&self.list_to_team)?;
        let rows = stmt.query_map([team], row_to_session)?;
        rows.collect()
    }

    /// The queries of `stats`, in one read transaction.
    pub fn stats(
        &self,
        max_messages: i64,
        stale_messages: i64,
        stale_before: i64,
    ) -> rusqlite::Result<RawStats> {
        let tx = self.conn.unchecked_transaction()?;
        let mut out = RawStats::default();
        {
            let mut stmt = tx.prepare_cached(STATS_TOTALS)?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let _scope: String = r.get(0)?;
                let _key: String = r.get(1)?;
                let _sessions: i64 = r.get(2)?;
                let _messages: i64 = r.get(3)?;
                let _input: i64 = r.get(4)?;
                let _output: i64 = r.get(5)?;
                let _cost: f64 = r.get(6)?;
                out.totals_rows += 1;
            }
        }
        out.due = tx
            .prepare_cached(&self.due_count)?
            .query_row(params![max_messages, stale_messages, stale_before], |r| {
                r.get(0)
            })?;
        out.busiest = tx
            .prepare_cached(STATS_BUSIEST)?
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?
            .len();
        tx.commit()?;
        Ok(out)
    }

    /// `reset_orphaned`: the same statements in the same order; returns how many sessions were
    /// reset and how many orphan agents were found.
    pub fn reset_orphaned(&self) -> rusqlite::Result<(usize, usize)> {
        let owners: Vec<(i64, Option<i64>, i64)> = self
            .conn
            .prepare_cached(RESET_OWNERS)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut dead = Vec::new();
        for (pid, started_at, _n) in owners {
            let identity = ProcessIdentity {
                pid: u32::try_from(pid).unwrap_or(0),
                started_at: started_at.unwrap_or(0),
            };
            if identity.pid == 0 || !identity.is_alive() {
                dead.push((pid, started_at));
            }
        }
        let mut reset: Vec<(String, String)> = Vec::new();
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let mut orphan_agents = 0;
        {
            let agent_row = |r: &Row<'_>| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?));
            let mut found: Vec<(i64, Option<i64>)> = tx
                .prepare_cached(RESET_AGENTS_OWNERLESS)?
                .query_map([], agent_row)?
                .collect::<Result<_, _>>()?;
            let mut by_owner = tx.prepare_cached(RESET_AGENTS_BY_OWNER)?;
            for (pid, started_at) in &dead {
                for row in by_owner.query_map(params![pid, started_at], agent_row)? {
                    found.push(row?);
                }
            }
            orphan_agents += found.len();
        }
        {
            let pair = |r: &Row<'_>| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?));
            let mut by_owner = tx.prepare_cached(&self.reset_by_owner)?;
            for (pid, started_at) in dead {
                for row in by_owner.query_map(params![pid, started_at], pair)? {
                    reset.push(row?);
                }
            }
            let mut ownerless = tx.prepare_cached(&self.reset_ownerless)?;
            for row in ownerless.query_map([], pair)? {
                reset.push(row?);
            }
        }
        tx.commit()?;
        Ok((reset.len(), orphan_agents))
    }

    /// Inserts sessions for `pairs` in one transaction with the store's INSERT (set-up only).
    pub fn insert_many(&self, pairs: &[(String, String)], now: i64) -> rusqlite::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(&self.insert)?;
            for (from, to) in pairs {
                let id = uuid::Uuid::new_v4().to_string();
                let mut rows = stmt.query(params![from, to, id, now])?;
                while rows.next()?.is_some() {}
            }
        }
        tx.commit()
    }

    /// `force_owner` (the same UPDATE as a live `update_process_state`) on every session of
    /// `ids`, in one transaction (set-up only).
    pub fn force_owner_many(
        &self,
        ids: &[&str],
        state: ProcessState,
        owner: ProcessIdentity,
        now: i64,
    ) -> rusqlite::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(&self.force_owner)?;
            for id in ids {
                write_one(
                    &mut stmt,
                    params![id, state, owner.pid, owner.started_at, now],
                )?;
            }
        }
        tx.commit()
    }

    /// Size of the WAL file in bytes (0 when there is none).
    pub fn wal_bytes(&self) -> u64 {
        std::fs::metadata(&self.wal).map(|m| m.len()).unwrap_or(0)
    }

    /// `PRAGMA wal_checkpoint(TRUNCATE)`: copies the WAL into the database and empties it.
    /// Returns (busy, frames in the log, frames checkpointed).
    pub fn checkpoint(&self) -> rusqlite::Result<(i64, i64, i64)> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
    }

    /// Every session id, by (from_team, to_team) order of the UNIQUE index.
    pub fn all_session_ids(&self) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT session_id FROM sessions ORDER BY from_team, to_team")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    }
}
