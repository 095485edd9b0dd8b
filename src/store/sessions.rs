//! SQL over the `sessions` table (and the `session_totals` kept by its triggers). Every update
//! addresses a session by its `session_id` and returns the updated row (`UPDATE ... RETURNING`),
//! so the caller knows which pair it touched.

use std::collections::BTreeMap;

use rusqlite::{params, params_from_iter, types::Value, Connection, OptionalExtension, Row};

use super::model::{
    ListFilter, ListOrder, PairStats, ProcessState, Session, SessionStatus, Stats, TeamStats,
};
use super::reset::{reset_orphaned_in, ResetReport};
use super::{write_returning, SessionStore, StoreError, StoreResult};
use crate::util::ProcessIdentity;

/// [`COLUMNS`] as a literal, for statements built once (`concat!`).
macro_rules! session_columns {
    () => {
        "s.id, s.from_team, s.to_team, s.session_id, s.created_at, \
         max(s.last_used_at, coalesce(p.last_used_at, 0)), s.message_count + coalesce(p.messages, 0), \
         s.status, \
         coalesce(l.process_state, 'stopped'), l.current_tell_id, \
         coalesce(max(s.last_response_at, p.last_response_at), s.last_response_at, p.last_response_at), \
         s.launch_command, s.team_config_snapshot, \
         s.compaction_count, s.last_compacted_at, s.last_pre_compact_tokens, s.last_post_compact_tokens, \
         s.input_tokens + coalesce(p.input_tokens, 0), s.output_tokens + coalesce(p.output_tokens, 0), \
         s.cost_usd + coalesce(p.cost_usd, 0), s.last_error, l.owner_pid, l.owner_started_at, \
         l.owner_heartbeat_at, l.agent_pid, l.agent_started_at, s.agent_session_id"
    };
}
/// The columns of a [`Session`]: the session row, its per-process row (migration 0008) and its
/// pending counters (migration 0012), read with [`FROM`]. A session without a `session_live`
/// row is stopped, with no owner; without a `session_pending` row its counters are folded.
pub const COLUMNS: &str = session_columns!();

/// [`FROM`] as a literal.
macro_rules! session_from {
    () => {
        "sessions s LEFT JOIN session_live l ON l.session = s.id \
         LEFT JOIN session_pending p ON p.session = s.id"
    };
}
/// The tables [`COLUMNS`] reads.
pub const FROM: &str = session_from!();

/// A session's message count in a query over [`FROM`]: folded plus pending.
const MESSAGES: &str = "(s.message_count + coalesce(p.messages, 0))";
/// A session's last use in a query over [`FROM`]: the later of the folded and the pending one.
/// Neither count nor time is ever less than its folded value, which the queries that find
/// candidates by the folded values' indexes rely on.
const LAST_USED: &str = "max(s.last_used_at, coalesce(p.last_used_at, 0))";

/// The rowid of the session with UUID `?1`, for writes to `session_live`.
const SESSION_ROWID: &str = "(SELECT id FROM sessions WHERE session_id = ?1)";

/// Decodes a row of [`COLUMNS`].
pub fn row_to_session(r: &Row<'_>) -> rusqlite::Result<Session> {
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

/// The compaction policy, as the store needs it to find due sessions.
#[derive(Debug, Clone, Copy)]
pub struct DueQuery {
    /// Due when message_count ≥ this.
    pub max_messages: i64,
    /// Also due when message_count ≥ this and last used before `stale_before`.
    pub stale_messages: i64,
    /// Unix ms; see `stale_messages`.
    pub stale_before: i64,
}

/// The sessions due for compaction, over [`FROM`]. A session without pending counters is due
/// by its folded values, which the message_count index answers alone (it holds last_used_at
/// too); the few with pending counters are tested on the sums. The candidates are both.
const DUE_WHERE: &str = "s.id IN (SELECT id FROM sessions WHERE message_count >= min(?1, ?2) \
        AND (message_count >= ?1 OR (message_count >= ?2 AND last_used_at < ?3)) \
      UNION ALL SELECT session FROM session_pending) \
    AND (s.message_count + coalesce(p.messages, 0) >= ?1 \
      OR (s.message_count + coalesce(p.messages, 0) >= ?2 \
        AND max(s.last_used_at, coalesce(p.last_used_at, 0)) < ?3)) \
    AND +s.status IN ('active', 'compact_pending', 'error')";

fn not_found(session_id: &str) -> StoreError {
    StoreError::NotFound(format!("session {session_id}"))
}

/// The session with row id `id`, as [`COLUMNS`] reads it.
pub fn read_rowid(conn: &Connection, id: i64) -> StoreResult<Session> {
    const SQL: &str = concat!(
        "SELECT ",
        session_columns!(),
        " FROM ",
        session_from!(),
        " WHERE s.id = ?1"
    );
    let found = conn
        .prepare_cached(SQL)?
        .query_row([id], row_to_session)
        .optional()?;
    found.ok_or_else(|| StoreError::NotFound(format!("session row {id}")))
}

/// The session with UUID `session_id`, as [`COLUMNS`] reads it.
pub fn read_session_id(conn: &Connection, session_id: &str) -> StoreResult<Option<Session>> {
    const SQL: &str = concat!(
        "SELECT ",
        session_columns!(),
        " FROM ",
        session_from!(),
        " WHERE s.session_id = ?1"
    );
    Ok(conn
        .prepare_cached(SQL)?
        .query_row([session_id], row_to_session)
        .optional()?)
}

/// `UPDATE sessions SET {set} WHERE session_id = ?1` on `conn` (which may be a transaction);
/// returns the session as it is then. A `set` that writes a counter of [`Counters`] outright
/// must fold the session's pending row first, in the same transaction (see
/// `finish_compaction`): the totals' row trigger skips a session with a pending row.
pub fn update_in(
    conn: &Connection,
    session_id: &str,
    set: &str,
    params: &[&dyn rusqlite::ToSql],
) -> StoreResult<Session> {
    let id = update_rowid(conn, session_id, set, params)?;
    read_rowid(conn, id)
}

fn update_rowid(
    conn: &Connection,
    session_id: &str,
    set: &str,
    params: &[&dyn rusqlite::ToSql],
) -> StoreResult<i64> {
    let sql = format!("UPDATE sessions SET {set} WHERE session_id = ?1 RETURNING id");
    write_returning(&mut conn.prepare_cached(&sql)?, params, |r| r.get(0))?
        .ok_or_else(|| not_found(session_id))
}

/// The row id of the session with UUID `session_id` (a read of its unique index).
fn session_rowid(conn: &Connection, session_id: &str) -> StoreResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM sessions WHERE session_id = ?1")?
        .query_row([session_id], |r| r.get(0))
        .optional()?)
}

/// Runs an upsert into a per-session table (`?1` = the session's row id, the rest `params[1..]`)
/// for session `session_id`; returns its row id. The row id is read first: an
/// `INSERT ... SELECT ... RETURNING` costs a temporary table per write (measured: 4% of an
/// `update_process_state`). A session deleted in between fails the foreign key: not found.
pub fn upsert_for(
    conn: &Connection,
    session_id: &str,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> StoreResult<i64> {
    let id = session_rowid(conn, session_id)?.ok_or_else(|| not_found(session_id))?;
    let mut with_id = params.to_vec();
    with_id[0] = &id;
    match conn.prepare_cached(sql)?.execute(&*with_id) {
        Ok(_) => Ok(id),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
        {
            Err(not_found(session_id))
        }
        Err(e) => Err(e.into()),
    }
}

/// An upsert of per-process columns into `session_live` (`?1` = the session's row id): inserts
/// its row with `$columns` = `$values`, or, if it has one, runs `$set` on it. A literal: the
/// statement is built once, not per write.
macro_rules! live_upsert {
    ($columns:literal, $values:literal, $set:literal) => {
        concat!(
            "INSERT INTO session_live (session, ",
            $columns,
            ") VALUES (?1, ",
            $values,
            ") ON CONFLICT (session) DO UPDATE SET ",
            $set
        )
    };
}

/// A turn starts: the session's current tell is `?2`, and it is processing.
pub(super) const TURN_BEGINS: &str = live_upsert!(
    "current_tell_id, process_state",
    "?2, 'processing'",
    "current_tell_id = excluded.current_tell_id, process_state = 'processing'"
);

/// An answered turn clears session `?1`'s error (an `error` status is `active` again).
pub(super) const CLEAR_ERROR: &str = "UPDATE sessions SET \
     status = CASE WHEN status = 'error' THEN 'active' ELSE status END, last_error = NULL \
     WHERE id = ?1 AND (status = 'error' OR last_error IS NOT NULL)";

/// A turn ended: no current tell, idle.
pub(super) const TURN_ENDS: &str = live_upsert!(
    "process_state",
    "'idle'",
    "current_tell_id = NULL, process_state = 'idle'"
);

impl SessionStore {
    /// Inserts a new session for the pair, or returns the existing one. Race-free across threads
    /// and processes (UNIQUE(from_team, to_team)). The bool is true when this call created it.
    pub fn insert_or_get(
        &self,
        from: &str,
        to: &str,
        new_session_id: &str,
        now: i64,
    ) -> StoreResult<(Session, bool)> {
        // Most calls find the pair: look first, without the write lock.
        if let Some(s) = self.get_by_pair(from, to)? {
            return Ok((s, false));
        }
        let conn = self.wconn()?;
        // A concurrent delete between the INSERT and the SELECT is retried; it cannot loop
        // forever in practice, but bound it anyway.
        for _ in 0..8 {
            let created = write_returning(
                &mut conn.prepare_cached(INSERT_SESSION)?,
                params![from, to, new_session_id, now],
                |r| r.get::<_, i64>(0),
            )?;
            if let Some(id) = created {
                return Ok((read_rowid(&conn, id)?, true));
            }
            if let Some(s) = get_by_pair(&conn, from, to)? {
                return Ok((s, false));
            }
        }
        Err(StoreError::NotFound(format!(
            "session {from}:{to} (deleted while being opened)"
        )))
    }

    /// The session of the pair, if any.
    pub fn get_by_pair(&self, from: &str, to: &str) -> StoreResult<Option<Session>> {
        let conn = self.conn()?;
        get_by_pair(&conn, from, to)
    }

    /// The session with this UUID, if any.
    pub fn get_by_session_id(&self, session_id: &str) -> StoreResult<Option<Session>> {
        let conn = self.conn()?;
        read_session_id(&conn, session_id)
    }

    /// Sessions matching the filter.
    pub fn list(&self, f: &ListFilter) -> StoreResult<Vec<Session>> {
        let conn = self.conn()?;
        list_in(&conn, f)
    }

    /// Deletes the session, its pair's tells, and the session's permission requests and
    /// allow rules (a rule of a gone session can never match again), in one transaction;
    /// returns the deleted row.
    pub fn delete(&self, session_id: &str) -> StoreResult<Session> {
        let mut conn = self.wconn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let deleted = read_session_id(&tx, session_id)?.ok_or_else(|| not_found(session_id))?;
        // Its session_live row goes with it (ON DELETE CASCADE).
        tx.prepare_cached("DELETE FROM sessions WHERE id = ?1")?
            .execute([deleted.id])?;
        super::tells::delete_pair_tells_in(&tx, &deleted.from_team, &deleted.to_team)?;
        tx.prepare_cached("DELETE FROM approvals WHERE session_id = ?1")?
            .execute(params![session_id])?;
        tx.prepare_cached("DELETE FROM session_rules WHERE session_id = ?1")?
            .execute(params![session_id])?;
        tx.commit()?;
        Ok(deleted)
    }

    /// Marks the session used now.
    pub fn touch(&self, session_id: &str, now: i64) -> StoreResult<Session> {
        self.pending(
            session_id,
            &Counters {
                last_used_at: Some(now),
                ..Counters::default()
            },
        )
    }

    /// Adds `n` completed tells to the message count; marks the session used now.
    pub fn increment_message_count(
        &self,
        session_id: &str,
        n: i64,
        now: i64,
    ) -> StoreResult<Session> {
        self.pending(session_id, &Counters::messages(n, now))
    }

    /// Folds the pending counters of up to `limit` sessions into their rows (and so into the
    /// indexes and totals), in one transaction; returns how many sessions it folded. Readers see
    /// the same values before and after. The store's background thread calls it; so can tests.
    pub fn fold_pending(&self, limit: u32) -> StoreResult<usize> {
        let mut conn = self.wconn()?;
        fold_pending_tx(&mut conn, limit)
    }

    /// Sets the process state; `stopped` also clears the current tell and the agent pid.
    pub fn update_process_state(
        &self,
        session_id: &str,
        state: ProcessState,
    ) -> StoreResult<Session> {
        let upsert = if state == ProcessState::Stopped {
            STATE_STOPPED_UPSERT
        } else {
            STATE_UPSERT
        };
        self.live(session_id, upsert, params![session_id, state])
    }

    /// Records the live agent process of the session (or clears it).
    pub fn set_agent(
        &self,
        session_id: &str,
        agent: Option<ProcessIdentity>,
    ) -> StoreResult<Session> {
        self.live(
            session_id,
            live_upsert!(
                "agent_pid, agent_started_at",
                "?2, ?3",
                "agent_pid = excluded.agent_pid, agent_started_at = excluded.agent_started_at"
            ),
            params![
                session_id,
                agent.map(|a| a.pid),
                agent.map(|a| a.started_at)
            ],
        )
    }

    /// Records the agent's own id of the session's conversation (see
    /// [`Session::agent_session_id`]).
    pub fn set_agent_session_id(
        &self,
        session_id: &str,
        agent_session_id: Option<&str>,
    ) -> StoreResult<Session> {
        self.update(
            session_id,
            "agent_session_id = ?2",
            params![session_id, agent_session_id],
        )
    }

    /// Takes the session's owner lease for `me` if nobody holds it (or `me` does already):
    /// `Ok(Ok(row))`. If another process holds it: `Ok(Err(row))`, the row naming the holder.
    pub fn acquire_lease(
        &self,
        session_id: &str,
        me: ProcessIdentity,
        now: i64,
    ) -> StoreResult<Result<Session, Session>> {
        let conn = self.wconn()?;
        let taken = write_returning(
            &mut conn.prepare_cached(
                "INSERT INTO session_live (session, owner_pid, owner_started_at, owner_heartbeat_at) \
                 SELECT id, ?2, ?3, ?4 FROM sessions WHERE session_id = ?1 \
                 ON CONFLICT (session) DO UPDATE SET owner_pid = excluded.owner_pid, \
                   owner_started_at = excluded.owner_started_at, \
                   owner_heartbeat_at = excluded.owner_heartbeat_at \
                 WHERE owner_pid IS NULL \
                    OR (owner_pid = excluded.owner_pid AND owner_started_at IS excluded.owner_started_at) \
                 RETURNING session",
            )?,
            params![session_id, me.pid, me.started_at, now],
            |r| r.get::<_, i64>(0),
        )?;
        if let Some(id) = taken {
            return Ok(Ok(read_rowid(&conn, id)?));
        }
        match read_session_id(&conn, session_id)? {
            Some(s) => Ok(Err(s)),
            None => Err(not_found(session_id)),
        }
    }

    /// Takes over the lease of a dead holder: only if `dead` still holds it. The session is
    /// reset as the holder left it (stopped, no current tell, no agent). `None` if the lease
    /// changed hands meanwhile.
    pub fn reclaim_lease(
        &self,
        session_id: &str,
        dead: ProcessIdentity,
        me: ProcessIdentity,
        now: i64,
    ) -> StoreResult<Option<Session>> {
        let mut conn = self.wconn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let sql = format!(
            "UPDATE session_live SET owner_pid = ?4, owner_started_at = ?5, owner_heartbeat_at = ?6, \
             process_state = 'stopped', current_tell_id = NULL, agent_pid = NULL, agent_started_at = NULL \
             WHERE session = {SESSION_ROWID} AND owner_pid = ?2 AND owner_started_at IS ?3 \
             RETURNING session"
        );
        let found = write_returning(
            &mut tx.prepare_cached(&sql)?,
            params![
                session_id,
                dead.pid,
                dead.started_at,
                me.pid,
                me.started_at,
                now
            ],
            |r| r.get::<_, i64>(0),
        )?;
        let Some(id) = found else {
            return Ok(None);
        };
        tx.prepare_cached(
            "UPDATE sessions SET status = 'compact_pending' WHERE id = ?1 AND status = 'compacting'",
        )?
        .execute([id])?;
        let s = read_rowid(&tx, id)?;
        tx.commit()?;
        Ok(Some(s))
    }

    /// Gives the lease back (only if `me` holds it): stopped, no current tell, no agent.
    pub fn release_lease(
        &self,
        session_id: &str,
        me: ProcessIdentity,
    ) -> StoreResult<Option<Session>> {
        let conn = self.wconn()?;
        // Every per-process column goes back to its default: the row goes.
        let sql = format!(
            "DELETE FROM session_live WHERE session = {SESSION_ROWID} AND owner_pid = ?2 \
             AND owner_started_at IS ?3 RETURNING session"
        );
        let found = write_returning(
            &mut conn.prepare_cached(&sql)?,
            params![session_id, me.pid, me.started_at],
            |r| r.get::<_, i64>(0),
        )?;
        found.map(|id| read_rowid(&conn, id)).transpose()
    }

    /// A turn ended with a result, in one transaction: its usage added, no current tell, idle,
    /// last response now; an answered tell also counts one message, marks the session used,
    /// and clears an `error` status and the last error.
    pub fn end_turn(
        &self,
        session_id: &str,
        input_tokens: i64,
        output_tokens: i64,
        cost_usd: f64,
        answered: bool,
        now: i64,
    ) -> StoreResult<Session> {
        let mut conn = self.wconn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let s = end_turn_in(
            &tx,
            session_id,
            input_tokens,
            output_tokens,
            cost_usd,
            answered,
            now,
        )?;
        tx.commit()?;
        Ok(s)
    }

    /// Sets (or clears) the tell being processed.
    pub fn set_current_tell(
        &self,
        session_id: &str,
        tell_id: Option<&str>,
    ) -> StoreResult<Session> {
        self.live(
            session_id,
            live_upsert!(
                "current_tell_id",
                "?2",
                "current_tell_id = excluded.current_tell_id"
            ),
            params![session_id, tell_id],
        )
    }

    /// Records that the agent printed something now.
    pub fn update_last_response(&self, session_id: &str, now: i64) -> StoreResult<Session> {
        self.pending(
            session_id,
            &Counters {
                last_response_at: Some(now),
                ..Counters::default()
            },
        )
    }

    /// Records how the agent was launched and the team config it was launched with.
    pub fn update_debug_info(
        &self,
        session_id: &str,
        launch_command: &str,
        team_config_snapshot: &str,
    ) -> StoreResult<Session> {
        self.update(
            session_id,
            "launch_command = ?2, team_config_snapshot = ?3",
            params![session_id, launch_command, team_config_snapshot],
        )
    }

    /// Adds a turn's usage to the session's totals.
    pub fn add_usage(
        &self,
        session_id: &str,
        input_tokens: i64,
        output_tokens: i64,
        cost_usd: f64,
    ) -> StoreResult<Session> {
        self.pending(
            session_id,
            &Counters {
                input_tokens,
                output_tokens,
                cost_usd,
                ..Counters::default()
            },
        )
    }

    /// Sets the status (and, if given, the last error).
    pub fn set_status(
        &self,
        session_id: &str,
        status: SessionStatus,
        last_error: Option<&str>,
    ) -> StoreResult<Session> {
        match last_error {
            Some(e) => self.update(
                session_id,
                "status = ?2, last_error = ?3",
                params![session_id, status, e],
            ),
            None => self.update(session_id, "status = ?2", params![session_id, status]),
        }
    }

    /// Records a finished compaction: message count to 0, one more compaction, tokens, status
    /// back to active, last error cleared.
    pub fn finish_compaction(
        &self,
        session_id: &str,
        pre_tokens: impl Into<Option<i64>>,
        post_tokens: impl Into<Option<i64>>,
        now: i64,
    ) -> StoreResult<Session> {
        let mut conn = self.wconn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // The count starts over: what is pending goes into the row first.
        fold_session_in(&tx, session_id)?;
        let s = update_in(
            &tx,
            session_id,
            "message_count = 0, compaction_count = compaction_count + 1, last_compacted_at = ?2, \
             last_pre_compact_tokens = ?3, last_post_compact_tokens = ?4, status = 'active', \
             last_error = NULL",
            params![session_id, now, pre_tokens.into(), post_tokens.into()],
        )?;
        tx.commit()?;
        Ok(s)
    }

    /// Gives the pair a new conversation: a new session id, message count 0, status active,
    /// no error, no current tell. Tokens, cost, compaction history and the tells are kept.
    pub fn reboot_session(
        &self,
        session_id: &str,
        new_session_id: &str,
        now: i64,
    ) -> StoreResult<Session> {
        let mut conn = self.wconn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // The count starts over and the session is used now: what is pending goes in first.
        fold_session_in(&tx, session_id)?;
        let id = update_rowid(
            &tx,
            session_id,
            "session_id = ?2, message_count = 0, status = 'active', last_error = NULL, \
             last_used_at = ?3, agent_session_id = NULL",
            params![session_id, new_session_id, now],
        )?;
        tx.prepare_cached("UPDATE session_live SET current_tell_id = NULL WHERE session = ?1")?
            .execute([id])?;
        let s = read_rowid(&tx, id)?;
        tx.commit()?;
        Ok(s)
    }

    /// Renews the owner's heartbeat, only if `owner` still owns the session. Returns the row, or
    /// `None` if the session is owned by someone else (or nobody).
    pub fn heartbeat(
        &self,
        session_id: &str,
        owner: ProcessIdentity,
        now: i64,
    ) -> StoreResult<Option<Session>> {
        let conn = self.wconn()?;
        let sql = format!(
            "UPDATE session_live SET owner_heartbeat_at = ?4 WHERE session = {SESSION_ROWID} \
             AND owner_pid = ?2 AND owner_started_at = ?3 RETURNING session"
        );
        let found = write_returning(
            &mut conn.prepare_cached(&sql)?,
            params![session_id, owner.pid, owner.started_at, now],
            |r| r.get::<_, i64>(0),
        )?;
        found.map(|id| read_rowid(&conn, id)).transpose()
    }

    /// Resets sessions whose owner process is gone (`is_alive` says false) or that claim a live
    /// process state with no owner: process state `stopped`, current tell, owner and agent
    /// cleared (their `session_live` rows deleted), an interrupted compaction (`compacting`)
    /// back to `compact_pending`. Sessions owned by a live process are left alone. One
    /// transaction; reads only the narrow per-process rows and their owner index.
    pub fn reset_orphaned(
        &self,
        is_alive: &dyn Fn(ProcessIdentity) -> bool,
    ) -> StoreResult<ResetReport> {
        let mut conn = self.wconn()?;
        reset_orphaned_in(&mut conn, is_alive)
    }

    /// Sessions due for compaction, most messages first.
    pub fn due_for_compaction(&self, q: DueQuery, limit: Option<u32>) -> StoreResult<Vec<Session>> {
        let conn = self.conn()?;
        let mut sql = format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE {DUE_WHERE} ORDER BY {MESSAGES} DESC, s.id ASC"
        );
        if let Some(n) = limit {
            sql.push_str(&format!(" LIMIT {n}"));
        }
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![q.max_messages, q.stale_messages, q.stale_before],
            row_to_session,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Aggregates over every session, in one read transaction: totals from `session_totals`
    /// (kept by triggers), counts per process state from the small `session_live` table, due
    /// count and busiest pairs from the message_count index.
    pub fn stats(&self, q: DueQuery) -> StoreResult<Stats> {
        let mut conn = self.conn()?;
        stats_in(&mut conn, q)
    }

    /// Sets the owner lease fields directly (for tests and recovery tools).
    #[doc(hidden)]
    pub fn force_owner(
        &self,
        session_id: &str,
        state: ProcessState,
        owner: Option<ProcessIdentity>,
        now: i64,
    ) -> StoreResult<Session> {
        self.live(
            session_id,
            FORCE_OWNER_UPSERT,
            params![
                session_id,
                state,
                owner.map(|o| o.pid),
                owner.map(|o| o.started_at),
                owner.map(|_| now)
            ],
        )
    }

    /// A write to the `sessions` row, then the session as it is.
    fn update(
        &self,
        session_id: &str,
        set: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> StoreResult<Session> {
        let conn = self.wconn()?;
        update_in(&conn, session_id, set, params)
    }

    /// Adds to the session's pending counters (see [`pending_in`]), then the session as it is.
    fn pending(&self, session_id: &str, add: &Counters) -> StoreResult<Session> {
        let conn = self.wconn()?;
        let id = pending_in(&conn, session_id, add)?;
        read_rowid(&conn, id)
    }

    /// A write to the `session_live` row (an upsert made with `live_upsert!`, see
    /// [`upsert_for`]), then the session as it is.
    fn live(
        &self,
        session_id: &str,
        upsert: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> StoreResult<Session> {
        let conn = self.wconn()?;
        let id = upsert_for(&conn, session_id, upsert, params)?;
        read_rowid(&conn, id)
    }
}

/// A new session (`?1` from, `?2` to, `?3` session id, `?4` now); returns its row id.
pub const INSERT_SESSION: &str =
    "INSERT INTO sessions (from_team, to_team, session_id, created_at, last_used_at) \
     VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (from_team, to_team) DO NOTHING RETURNING id";

/// What a write adds to a session's counters (migration 0012). The times, when set, move the
/// session's forward (the later one is kept).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    /// Messages (answered tells) to add.
    pub messages: i64,
    /// Input tokens to add.
    pub input_tokens: i64,
    /// Output tokens to add.
    pub output_tokens: i64,
    /// Cost to add, in US dollars.
    pub cost_usd: f64,
    /// The session's new last use (unix ms), if any.
    pub last_used_at: Option<i64>,
    /// The agent's new last output (unix ms), if any.
    pub last_response_at: Option<i64>,
}

impl Counters {
    /// `n` messages, used `now`: what `increment_message_count` adds.
    pub fn messages(n: i64, now: i64) -> Self {
        Self {
            messages: n,
            last_used_at: Some(now),
            ..Self::default()
        }
    }
}

/// [`pending_in`]'s statement (`?1` the session's row id, then the counters of [`Counters`]).
pub(super) const PENDING_UPSERT: &str = "INSERT INTO session_pending (session, messages, \
       input_tokens, output_tokens, cost_usd, last_used_at, last_response_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (session) DO UPDATE SET messages = messages + excluded.messages, \
       input_tokens = input_tokens + excluded.input_tokens, \
       output_tokens = output_tokens + excluded.output_tokens, \
       cost_usd = cost_usd + excluded.cost_usd, \
       last_used_at = coalesce(max(last_used_at, excluded.last_used_at), \
         last_used_at, excluded.last_used_at), \
       last_response_at = coalesce(max(last_response_at, excluded.last_response_at), \
         last_response_at, excluded.last_response_at)";

/// Adds `add` to the pending counters of session `session_id` (its `session_pending` row,
/// created if need be): one narrow row, no index, no trigger. Returns the session's row id.
pub fn pending_in(conn: &Connection, session_id: &str, add: &Counters) -> StoreResult<i64> {
    upsert_for(
        conn,
        session_id,
        PENDING_UPSERT,
        params![
            session_id,
            add.messages,
            add.input_tokens,
            add.output_tokens,
            add.cost_usd,
            add.last_used_at,
            add.last_response_at
        ],
    )
}

/// Moves the pending counters of the sessions with row ids in `lo..=hi` into their rows (the
/// triggers then update the totals) and deletes those pending rows. Call it inside a
/// transaction: between the two statements a reader would count the counters twice. The
/// `IN` makes the pending rows drive the update (the planner would walk the sessions' range).
fn fold_range_in(conn: &Connection, lo: i64, hi: i64) -> StoreResult<usize> {
    // The totals first, per scope for the whole batch: the row trigger leaves out a session
    // that has a pending row (migration 0012), as each of these has until the DELETE below.
    conn.prepare_cached(
        "UPDATE session_totals SET messages = session_totals.messages + d.messages, \
           input_tokens = session_totals.input_tokens + d.input_tokens, \
           output_tokens = session_totals.output_tokens + d.output_tokens, \
           cost_usd = session_totals.cost_usd + d.cost_usd \
         FROM (SELECT 'all' AS scope, '' AS key, sum(p.messages) AS messages, \
                 sum(p.input_tokens) AS input_tokens, sum(p.output_tokens) AS output_tokens, \
                 sum(p.cost_usd) AS cost_usd \
               FROM session_pending p WHERE p.session BETWEEN ?1 AND ?2 HAVING count(*) > 0 \
               UNION ALL \
               SELECT 'from', s.from_team, sum(p.messages), sum(p.input_tokens), \
                 sum(p.output_tokens), sum(p.cost_usd) \
               FROM session_pending p CROSS JOIN sessions s ON s.id = p.session \
               WHERE p.session BETWEEN ?1 AND ?2 GROUP BY s.from_team \
               UNION ALL \
               SELECT 'to', s.to_team, sum(p.messages), sum(p.input_tokens), \
                 sum(p.output_tokens), sum(p.cost_usd) \
               FROM session_pending p CROSS JOIN sessions s ON s.id = p.session \
               WHERE p.session BETWEEN ?1 AND ?2 GROUP BY s.to_team) AS d \
         WHERE session_totals.scope = d.scope AND session_totals.key = d.key",
    )?
    .execute([lo, hi])?;
    let n = conn
        .prepare_cached(
            "UPDATE sessions SET message_count = sessions.message_count + p.messages, \
               input_tokens = sessions.input_tokens + p.input_tokens, \
               output_tokens = sessions.output_tokens + p.output_tokens, \
               cost_usd = sessions.cost_usd + p.cost_usd, \
               last_used_at = max(sessions.last_used_at, coalesce(p.last_used_at, 0)), \
               last_response_at = coalesce(max(sessions.last_response_at, p.last_response_at), \
                 sessions.last_response_at, p.last_response_at) \
             FROM session_pending p \
             WHERE sessions.id IN (SELECT session FROM session_pending WHERE session BETWEEN ?1 AND ?2) \
               AND p.session = sessions.id",
        )?
        .execute([lo, hi])?;
    conn.prepare_cached("DELETE FROM session_pending WHERE session BETWEEN ?1 AND ?2")?
        .execute([lo, hi])?;
    Ok(n)
}

/// Folds the pending counters of session `session_id` (see [`fold_range_in`]), inside the
/// caller's transaction: before a write that sets a counter outright.
fn fold_session_in(conn: &Connection, session_id: &str) -> StoreResult<()> {
    if let Some(id) = session_rowid(conn, session_id)? {
        fold_range_in(conn, id, id)?;
    }
    Ok(())
}

/// [`SessionStore::fold_pending`] on `conn`: the `limit` pending rows with the lowest row ids,
/// in one immediate transaction.
pub fn fold_pending_tx(conn: &mut Connection, limit: u32) -> StoreResult<usize> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let hi: Option<i64> = tx
        .prepare_cached(
            "SELECT max(session) FROM (SELECT session FROM session_pending ORDER BY session LIMIT ?1)",
        )?
        .query_row([limit], |r| r.get(0))?;
    let n = match hi {
        Some(hi) => fold_range_in(&tx, i64::MIN, hi)?,
        None => 0,
    };
    tx.commit()?;
    Ok(n)
}

/// Whether any session has pending counters (a read, no lock).
pub fn any_pending(conn: &Connection) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM session_pending)")?
        .query_row([], |r| r.get(0))?)
}
/// `update_process_state` (`?2` = state, any but `stopped`), for [`upsert_for`].
pub const STATE_UPSERT: &str = live_upsert!(
    "process_state",
    "?2",
    "process_state = excluded.process_state"
);
/// `update_process_state` to `stopped` (`?2`): no current tell, no agent either.
pub const STATE_STOPPED_UPSERT: &str = live_upsert!(
    "process_state",
    "?2",
    "process_state = excluded.process_state, \
     current_tell_id = NULL, agent_pid = NULL, agent_started_at = NULL"
);

const STATS_TOTALS: &str =
    "SELECT scope, key, sessions, messages, input_tokens, output_tokens, cost_usd FROM session_totals";
const STATS_STATES: &str = "SELECT process_state, count(*) FROM session_live \
    WHERE process_state != 'stopped' GROUP BY process_state";
/// The ten sessions with the most messages. A pending count only adds to the folded one, so
/// each of them is among the ten first by folded count (the message_count index) or pending.
const STATS_BUSIEST: &str = "SELECT s.from_team, s.to_team, s.session_id, \
       s.message_count + coalesce(p.messages, 0) AS n, \
       (SELECT count(*) FROM tells t WHERE t.from_team = s.from_team \
          AND t.to_team = s.to_team AND t.state = 'answered' AND t.kind = 'tell') \
     FROM sessions s LEFT JOIN session_pending p ON p.session = s.id \
     WHERE s.id IN (SELECT id FROM (SELECT id FROM sessions WHERE message_count > 0 \
         ORDER BY message_count DESC, id ASC LIMIT 10) \
       UNION ALL SELECT session FROM session_pending) \
       AND n > 0 \
     ORDER BY n DESC, s.id ASC LIMIT 10";
/// Every pending counter with its pair, for the totals of `stats` (the rows of
/// `session_totals` count folded values only). `CROSS JOIN` keeps the small table outside: the
/// planner, knowing neither table's size, would walk every session instead.
const STATS_PENDING: &str = "SELECT s.from_team, s.to_team, p.messages, p.input_tokens, \
     p.output_tokens, p.cost_usd FROM session_pending p CROSS JOIN sessions s ON s.id = p.session";
/// `force_owner` (`?2` state, `?3` pid, `?4` started at, `?5` heartbeat), for [`upsert_for`].
pub const FORCE_OWNER_UPSERT: &str = live_upsert!(
    "process_state, owner_pid, owner_started_at, owner_heartbeat_at",
    "?2, ?3, ?4, ?5",
    "process_state = excluded.process_state, \
     owner_pid = excluded.owner_pid, owner_started_at = excluded.owner_started_at, \
     owner_heartbeat_at = excluded.owner_heartbeat_at"
);

/// The session of the pair, as [`COLUMNS`] reads it.
pub fn get_by_pair(conn: &Connection, from: &str, to: &str) -> StoreResult<Option<Session>> {
    let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE s.from_team = ?1 AND s.to_team = ?2");
    let found = conn
        .prepare_cached(&sql)?
        .query_row([from, to], row_to_session)
        .optional()?;
    Ok(found)
}

/// [`SessionStore::list`] on `conn`.
pub fn list_in(conn: &Connection, f: &ListFilter) -> StoreResult<Vec<Session>> {
    // Each filter on the session as readers see it (`wh`) and on its folded values (`folded`,
    // for the first `n` below). Both use the same parameters.
    let (mut wh, mut folded) = (String::new(), String::new());
    let mut args: Vec<Value> = Vec::new();
    let mut cond = |read: &str, fold: &str, v: Value| {
        args.push(v);
        wh.push_str(&format!(" AND {read} ?{}", args.len()));
        folded.push_str(&format!(" AND {fold} ?{}", args.len()));
    };
    if let Some(t) = &f.from_team {
        cond("s.from_team =", "s.from_team =", Value::Text(t.clone()));
    }
    if let Some(t) = &f.to_team {
        cond("s.to_team =", "s.to_team =", Value::Text(t.clone()));
    }
    if let Some(s) = f.status {
        cond("s.status =", "s.status =", Value::Text(s.as_str().into()));
    }
    if let Some(p) = f.process_state {
        let state = "coalesce(l.process_state, 'stopped') =";
        cond(state, state, Value::Text(p.as_str().into()));
    }
    if let Some(t) = f.created_after {
        cond("s.created_at >=", "s.created_at >=", Value::Integer(t));
    }
    if let Some(t) = f.used_after {
        let read = format!("{LAST_USED} >=");
        cond(&read, "s.last_used_at >=", Value::Integer(t));
    }
    let query = |sql: &str| -> StoreResult<Vec<Session>> {
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params_from_iter(&args), row_to_session)?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    // Orders on a counter: the order readers see, the same on folded values, and the same as a
    // comparison of sessions.
    type Cmp = fn(&Session, &Session) -> std::cmp::Ordering;
    let (order, counter): (String, Option<(&str, Cmp)>) = match f.order {
        ListOrder::LastUsedDesc => (
            format!("{LAST_USED} DESC, s.id DESC"),
            Some(("s.last_used_at DESC, s.id DESC", |a, b| {
                b.last_used_at.cmp(&a.last_used_at).then(b.id.cmp(&a.id))
            })),
        ),
        ListOrder::MessagesDesc => (
            format!("{MESSAGES} DESC, s.id ASC"),
            Some(("s.message_count DESC, s.id ASC", |a, b| {
                b.message_count.cmp(&a.message_count).then(a.id.cmp(&b.id))
            })),
        ),
        ListOrder::CreatedAsc => ("s.created_at ASC, s.id ASC".into(), None),
        ListOrder::CreatedDesc => ("s.created_at DESC, s.id DESC".into(), None),
    };
    let (n, (folded_order, cmp)) = match (f.limit, counter) {
        (Some(n), Some(c)) => (n, c),
        (Some(n), None) => {
            return query(&format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE 1 = 1{wh} ORDER BY {order} LIMIT {n}"
            ))
        }
        (None, _) => {
            return query(&format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE 1 = 1{wh} ORDER BY {order}"
            ))
        }
    };
    // The first `n` by a counter, without reading every row for the pending-aware order: a
    // session without pending counters that is among them is also among the first `n` by its
    // folded values (a pending value is never less than the folded one), which the indexes give
    // in order; the sessions with pending counters that pass the filters are the other
    // candidates. Both reads in one snapshot, so a fold between them cannot hide a session.
    let snapshot = conn
        .is_autocommit()
        .then(|| conn.unchecked_transaction())
        .transpose()?;
    let mut rows = query(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE 1 = 1{folded} ORDER BY {folded_order} LIMIT {n}"
    ))?;
    let pending = query(&format!(
        "SELECT {COLUMNS} FROM session_pending p CROSS JOIN sessions s ON s.id = p.session \
         LEFT JOIN session_live l ON l.session = s.id WHERE 1 = 1{wh}"
    ))?;
    drop(snapshot);
    if !pending.is_empty() {
        // A session read twice has the same values both times (one snapshot): the sort puts
        // its two rows side by side.
        rows.extend(pending);
        rows.sort_by(cmp);
        rows.dedup_by_key(|s| s.id);
        rows.truncate(n as usize);
    }
    Ok(rows)
}

/// [`SessionStore::stats`] on `conn`.
pub fn stats_in(conn: &mut Connection, q: DueQuery) -> StoreResult<Stats> {
    let tx = conn.transaction()?;
    let mut stats = Stats {
        total_sessions: 0,
        by_status: SessionStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect(),
        by_process_state: ProcessState::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect(),
        total_messages: 0,
        total_answered_tells: 0,
        total_input_tokens: 0,
        total_output_tokens: 0,
        total_cost_usd: 0.0,
        due_for_compaction: 0,
        by_agent: Vec::new(),
        per_team: Vec::new(),
        busiest_pairs: Vec::new(),
    };
    let mut teams: BTreeMap<String, TeamStats> = BTreeMap::new();
    {
        let mut stmt = tx.prepare_cached(STATS_TOTALS)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let scope: String = r.get(0)?;
            let key: String = r.get(1)?;
            let sessions: i64 = r.get(2)?;
            let messages: i64 = r.get(3)?;
            match scope.as_str() {
                "all" => {
                    stats.total_sessions = sessions;
                    stats.total_messages = messages;
                    stats.total_input_tokens = r.get(4)?;
                    stats.total_output_tokens = r.get(5)?;
                    stats.total_cost_usd = r.get(6)?;
                }
                "status" => {
                    stats.by_status.insert(key, sessions);
                }
                "from" | "to" if sessions > 0 => {
                    let t = teams.entry(key.clone()).or_insert_with(|| TeamStats {
                        team: key,
                        ..TeamStats::default()
                    });
                    if scope == "from" {
                        t.sessions_as_caller = sessions;
                        t.messages_as_caller = messages;
                    } else {
                        t.sessions_as_callee = sessions;
                        t.messages_as_callee = messages;
                        t.cost_usd_as_callee = r.get(6)?;
                    }
                }
                _ => {}
            }
        }
    }
    {
        // What is not folded yet: every team of a pending row has a totals row (its session).
        let mut stmt = tx.prepare_cached(STATS_PENDING)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (from, to): (String, String) = (r.get(0)?, r.get(1)?);
            let (messages, cost): (i64, f64) = (r.get(2)?, r.get(5)?);
            stats.total_messages += messages;
            stats.total_input_tokens += r.get::<_, i64>(3)?;
            stats.total_output_tokens += r.get::<_, i64>(4)?;
            stats.total_cost_usd += cost;
            if let Some(t) = teams.get_mut(&from) {
                t.messages_as_caller += messages;
            }
            if let Some(t) = teams.get_mut(&to) {
                t.messages_as_callee += messages;
                t.cost_usd_as_callee += cost;
            }
        }
    }
    stats.per_team = teams.into_values().collect();
    {
        let mut live = 0;
        let mut stmt = tx.prepare_cached(STATS_STATES)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let state: String = r.get(0)?;
            let n: i64 = r.get(1)?;
            live += n;
            stats.by_process_state.insert(state, n);
        }
        stats.by_process_state.insert(
            ProcessState::Stopped.as_str().to_string(),
            stats.total_sessions - live,
        );
    }
    stats.due_for_compaction = tx
        .prepare_cached(&format!(
            "SELECT count(*) FROM sessions s LEFT JOIN session_pending p ON p.session = s.id \
             WHERE {DUE_WHERE}"
        ))?
        .query_row(
            params![q.max_messages, q.stale_messages, q.stale_before],
            |r| r.get(0),
        )?;
    // Both counts read the partial index of answered tells (migration 0005).
    stats.total_answered_tells = tx
        .prepare_cached("SELECT count(*) FROM tells WHERE state = 'answered' AND kind = 'tell'")?
        .query_row([], |r| r.get(0))?;
    stats.busiest_pairs = tx
        .prepare_cached(STATS_BUSIEST)?
        .query_map([], |r| {
            Ok(PairStats {
                from_team: r.get(0)?,
                to_team: r.get(1)?,
                session_id: r.get(2)?,
                message_count: r.get(3)?,
                answered_tells: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    tx.commit()?;
    Ok(stats)
}

/// [`SessionStore::end_turn`] on `conn` (in the caller's transaction): the session's
/// `session_live` and `session_pending` rows, and its own row only when an answer clears an
/// error.
pub(super) fn end_turn_in(
    conn: &Connection,
    session_id: &str,
    input_tokens: i64,
    output_tokens: i64,
    cost_usd: f64,
    answered: bool,
    now: i64,
) -> StoreResult<Session> {
    upsert_for(conn, session_id, TURN_ENDS, params![session_id])?;
    let id = pending_in(
        conn,
        session_id,
        &Counters {
            messages: i64::from(answered),
            input_tokens,
            output_tokens,
            cost_usd,
            last_used_at: answered.then_some(now),
            last_response_at: Some(now),
        },
    )?;
    if answered {
        conn.prepare_cached(CLEAR_ERROR)?.execute([id])?;
    }
    read_rowid(conn, id)
}
