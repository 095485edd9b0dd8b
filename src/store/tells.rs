//! SQL over the `tells` table: the durable, ordered message log of each pair.

use rusqlite::{params, OptionalExtension, Row};

use super::model::{Tell, TellKind, TellOutcome, TellState};
use super::{SessionStore, StoreError, StoreResult};

/// The columns [`row_to_tell`] reads, as a literal (for `concat!`: statements built once).
macro_rules! tell_columns {
    () => {
        "id, tell_id, session_id, from_team, to_team, kind, text, state, created_at, \
         delivered_at, answered_at, answer, error, input_tokens, output_tokens, cost_usd, \
         duration_ms, parent_tell_id, idempotency_key, retry_of"
    };
}

const COLUMNS: &str = tell_columns!();

fn row_to_tell(r: &Row<'_>) -> rusqlite::Result<Tell> {
    Ok(Tell {
        id: r.get(0)?,
        tell_id: r.get(1)?,
        session_id: r.get(2)?,
        from_team: r.get(3)?,
        to_team: r.get(4)?,
        kind: r.get(5)?,
        text: r.get(6)?,
        state: r.get(7)?,
        created_at: r.get(8)?,
        delivered_at: r.get(9)?,
        answered_at: r.get(10)?,
        answer: r.get(11)?,
        error: r.get(12)?,
        input_tokens: r.get(13)?,
        output_tokens: r.get(14)?,
        cost_usd: r.get(15)?,
        duration_ms: r.get(16)?,
        parent_tell_id: r.get(17)?,
        idempotency_key: r.get(18)?,
        retry_of: r.get(19)?,
    })
}

/// A new tell, `queued` (nothing when the team has a tell with its idempotency key `?9`).
const INSERT: &str = "INSERT INTO tells (tell_id, session_id, from_team, to_team, kind, text, \
     created_at, parent_tell_id, idempotency_key, retry_of) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
     ON CONFLICT (from_team, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING";

/// An open tell ends in state `?2` with its outcome.
const FINISH: &str = "UPDATE tells SET state = ?2, answered_at = ?3, answer = ?4, error = ?5, \
     input_tokens = ?6, output_tokens = ?7, cost_usd = ?8, duration_ms = ?9 \
     WHERE tell_id = ?1 AND state IN ('queued', 'delivered')";

/// A turn starts: its tell `queued` → `delivered` (only if still queued: a cancelled tell is
/// not delivered).
const DELIVER: &str =
    "UPDATE tells SET state = 'delivered', delivered_at = ?2 WHERE tell_id = ?1 AND state = 'queued'";

/// Reads tell `tell_id` on `conn`.
fn read_tell_in(conn: &rusqlite::Connection, tell_id: &str) -> StoreResult<Option<Tell>> {
    const SQL: &str = concat!("SELECT ", tell_columns!(), " FROM tells WHERE tell_id = ?1");
    Ok(conn
        .prepare_cached(SQL)?
        .query_row([tell_id], row_to_tell)
        .optional()?)
}

/// Runs `sql`, a write of the one tell `tell_id` (at most one row), and reads the tell back if
/// it wrote it. Not `... RETURNING`: SQLite builds a temporary table (a pager and its page
/// cache, allocated and freed) for every statement with RETURNING; the read back is a lookup
/// of a page the write has just used.
fn write_tell_in<P: rusqlite::Params>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: P,
    tell_id: &str,
) -> StoreResult<Option<Tell>> {
    if conn.prepare_cached(sql)?.execute(params)? == 0 {
        return Ok(None);
    }
    read_tell_in(conn, tell_id)
}

/// A tell to store.
#[derive(Debug, Clone)]
pub struct NewTell<'a> {
    /// Its UUID.
    pub tell_id: &'a str,
    /// The session (at the time of the tell).
    pub session_id: &'a str,
    /// The team that tells.
    pub from_team: &'a str,
    /// The team whose agent answers.
    pub to_team: &'a str,
    /// A message or a compaction.
    pub kind: TellKind,
    /// The text.
    pub text: &'a str,
    /// The tell during which this one was sent, if any.
    pub parent_tell_id: Option<&'a str>,
}

impl SessionStore {
    /// Stores a new tell as `queued` (no idempotency key, not a retry).
    pub fn insert_tell(&self, t: &NewTell<'_>, now: i64) -> StoreResult<Tell> {
        // Without a key nothing can conflict: the tell is always the one just stored.
        Ok(match self.insert_tell_keyed(t, None, None, now)? {
            Ok(tell) | Err(tell) => tell,
        })
    }

    /// A tell by its UUID.
    pub fn get_tell(&self, tell_id: &str) -> StoreResult<Option<Tell>> {
        read_tell_in(&*self.conn()?, tell_id)
    }

    /// A turn starts, in one transaction: the tell `queued` → `delivered` (only if still
    /// queued: a cancelled tell is not delivered), and the session makes it its current tell,
    /// processing. `None` when the tell is no longer queued.
    pub fn begin_turn(
        &self,
        session_id: &str,
        tell_id: &str,
        now: i64,
    ) -> StoreResult<Option<(Tell, super::Session)>> {
        self.in_write(|tx| begin_turn_in(tx, session_id, tell_id, now))
    }

    /// Undoes [`Self::begin_turn`] of a tell that was never sent to the agent: `delivered` →
    /// `queued` again (only if still delivered), and the session, if that tell is its current
    /// one, idle with no current tell; in one transaction. `None` when the tell was no longer
    /// delivered (nothing changed).
    pub fn undeliver_tell(
        &self,
        session_id: &str,
        tell_id: &str,
    ) -> StoreResult<Option<super::Session>> {
        let mut conn = self.wconn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let back = tx
            .prepare_cached(
                "UPDATE tells SET state = 'queued', delivered_at = NULL \
                 WHERE tell_id = ?1 AND state = 'delivered'",
            )?
            .execute([tell_id])?;
        if back == 0 {
            return Ok(None);
        }
        tx.prepare_cached(
            "UPDATE session_live SET current_tell_id = NULL, process_state = 'idle' \
             WHERE session = (SELECT id FROM sessions WHERE session_id = ?1) \
             AND current_tell_id = ?2",
        )?
        .execute([session_id, tell_id])?;
        let s = super::sessions::read_session_id(&tx, session_id)?;
        tx.commit()?;
        Ok(s)
    }

    /// `queued` → `delivered`, only if still queued (a cancelled tell is not delivered).
    pub fn mark_tell_delivered(&self, tell_id: &str, now: i64) -> StoreResult<Option<Tell>> {
        self.in_write(|tx| write_tell_in(tx, DELIVER, params![tell_id, now], tell_id))
    }

    /// Ends an open tell (`queued` or `delivered`) in `state` with its outcome. Returns `None`
    /// if the tell had ended already (the first ending wins).
    pub fn finish_tell(
        &self,
        tell_id: &str,
        state: TellState,
        outcome: &TellOutcome,
        now: i64,
    ) -> StoreResult<Option<Tell>> {
        self.in_write(|tx| finish_tell_in(tx, tell_id, state, outcome, now))
    }

    /// The open tells (`queued` or `delivered`) of a pair, oldest first.
    pub fn open_tells(&self, from: &str, to: &str) -> StoreResult<Vec<Tell>> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {COLUMNS} FROM tells INDEXED BY tells_open_by_pair \
             WHERE from_team = ?1 AND to_team = ?2 AND state IN ('queued', 'delivered') ORDER BY id"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([from, to], row_to_tell)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The oldest `queued` tell of a pair, if any.
    pub fn next_queued_tell(&self, from: &str, to: &str) -> StoreResult<Option<Tell>> {
        next_queued_in(&*self.conn()?, from, to)
    }

    /// Cancels every `queued` tell of a pair; returns them.
    pub fn cancel_queued_tells(&self, from: &str, to: &str, now: i64) -> StoreResult<Vec<Tell>> {
        let conn = self.wconn()?;
        let sql = format!(
            "UPDATE tells SET state = 'cancelled', answered_at = ?3, error = 'cancelled before delivery' \
             WHERE from_team = ?1 AND to_team = ?2 AND state = 'queued' RETURNING {COLUMNS}"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![from, to, now], row_to_tell)?;
        let mut v: Vec<Tell> = rows.collect::<Result<_, _>>()?;
        v.sort_by_key(|t| t.id);
        Ok(v)
    }

    /// Every open tell, oldest first (recovery at start-up).
    pub fn all_open_tells(&self) -> StoreResult<Vec<Tell>> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {COLUMNS} FROM tells INDEXED BY tells_open_by_pair \
             WHERE state IN ('queued', 'delivered') ORDER BY id"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([], row_to_tell)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The last `limit` tells of a pair, oldest first.
    pub fn recent_tells(&self, from: &str, to: &str, limit: u32) -> StoreResult<Vec<Tell>> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {COLUMNS} FROM (SELECT {COLUMNS} FROM tells WHERE from_team = ?1 AND to_team = ?2 \
             ORDER BY id DESC LIMIT ?3) ORDER BY id"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![from, to, limit], row_to_tell)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes every tell of a pair (with its session).
    pub fn delete_tells(&self, from: &str, to: &str) -> StoreResult<usize> {
        self.in_write(|tx| delete_pair_tells_in(tx, from, to))
    }
}

/// Deletes every tell of a pair on `conn` (in the caller's transaction). Their events stay, as
/// events of a tell the database does not hold (`tell_row` NULL, migration 0014): still found
/// by the tell's id, and never taken for the events of a later tell given the same row id.
pub(super) fn delete_pair_tells_in(
    conn: &rusqlite::Connection,
    from: &str,
    to: &str,
) -> StoreResult<usize> {
    conn.prepare_cached(
        "UPDATE events SET tell_row = NULL WHERE tell_row IN \
         (SELECT id FROM tells WHERE from_team = ?1 AND to_team = ?2)",
    )?
    .execute([from, to])?;
    Ok(conn
        .prepare_cached("DELETE FROM tells WHERE from_team = ?1 AND to_team = ?2")?
        .execute([from, to])?)
}

impl SessionStore {
    /// The chain of tells that led to `tell_id`: the tell itself, then its parent, and so on,
    /// at most `max` tells.
    pub fn tell_chain(&self, tell_id: &str, max: usize) -> StoreResult<Vec<Tell>> {
        let mut chain = Vec::new();
        let mut next = Some(tell_id.to_string());
        while let Some(id) = next.take() {
            if chain.len() >= max {
                break;
            }
            let Some(t) = self.get_tell(&id)? else {
                break;
            };
            next = t.parent_tell_id.clone();
            chain.push(t);
        }
        Ok(chain)
    }

    /// The open tells (queued or delivered) sent during tell `parent_id`.
    pub fn open_child_tells(&self, parent_id: &str) -> StoreResult<Vec<Tell>> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {COLUMNS} FROM tells WHERE parent_tell_id = ?1 \
             AND state IN ('queued', 'delivered') ORDER BY id"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([parent_id], row_to_tell)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Open tells (queued or delivered) of a pair and the bytes of their texts.
    pub fn open_tells_load(&self, from: &str, to: &str) -> StoreResult<(i64, i64)> {
        open_tells_load_in(&*self.conn()?, from, to)
    }

    /// The rate limit's question: when the `most`-th newest message (`kind = 'tell'`) that team
    /// `from` sent since `since` (unix ms) was stored, or `None` while the team sent fewer than
    /// `most` in that window (see [`nth_tell_time_since_in`]).
    pub fn nth_tell_time_since(
        &self,
        from: &str,
        since: i64,
        most: usize,
    ) -> StoreResult<Option<i64>> {
        if most == 0 {
            return Ok(None);
        }
        nth_tell_time_since_in(&*self.conn()?, from, since, most)
    }

    /// Open tells (queued or delivered) of a pair.
    pub fn count_open_tells(&self, from: &str, to: &str) -> StoreResult<i64> {
        let conn = self.conn()?;
        let n = conn
            .prepare_cached(
                "SELECT count(*) FROM tells INDEXED BY tells_open_by_pair \
                 WHERE from_team = ?1 AND to_team = ?2 AND state IN ('queued', 'delivered')",
            )?
            .query_row([from, to], |r| r.get(0))?;
        Ok(n)
    }
}

// Idempotency keys, retries and tell lookup (`tell --id`, `tells retry`, `tells show`,
// `report --follow`).
impl SessionStore {
    /// Stores a new tell as `queued` with the caller's idempotency key and the tell it
    /// retries. When the calling team already has a tell with that key, nothing is stored and
    /// `Err(existing)` comes back, so the caller can decide whether it is the same request.
    pub fn insert_tell_keyed(
        &self,
        t: &NewTell<'_>,
        idempotency_key: Option<&str>,
        retry_of: Option<&str>,
        now: i64,
    ) -> StoreResult<Result<Tell, Tell>> {
        let inserted = self.in_write(|tx| insert_tell_in(tx, t, idempotency_key, retry_of, now))?;
        if let Some(tell) = inserted {
            return Ok(Ok(tell));
        }
        let key = idempotency_key.unwrap_or_default();
        match self.tell_by_key(t.from_team, key)? {
            Some(existing) => Ok(Err(existing)),
            None => Err(StoreError::NotFound(format!(
                "tell with idempotency key {key:?} of team {}",
                t.from_team
            ))),
        }
    }

    /// The tell of team `from` with this idempotency key.
    pub fn tell_by_key(&self, from: &str, key: &str) -> StoreResult<Option<Tell>> {
        let conn = self.conn()?;
        let sql =
            format!("SELECT {COLUMNS} FROM tells WHERE from_team = ?1 AND idempotency_key = ?2");
        let found = conn
            .prepare_cached(&sql)?
            .query_row([from, key], row_to_tell)
            .optional()?;
        Ok(found)
    }

    /// Up to `max` tells whose id starts with `prefix` (hex digits and dashes only).
    pub fn tells_by_id_prefix(&self, prefix: &str, max: u32) -> StoreResult<Vec<Tell>> {
        let conn = self.conn()?;
        let clean: String = prefix
            .chars()
            .filter(|c| c.is_ascii_hexdigit() || *c == '-')
            .collect::<String>()
            .to_ascii_lowercase();
        let sql = format!(
            "SELECT {COLUMNS} FROM tells WHERE tell_id >= ?1 AND tell_id < ?1 || 'g' \
             ORDER BY tell_id LIMIT ?2"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![clean, max], row_to_tell)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The tells of a pair that ended at or after `since` (unix ms), in the order they ended.
    pub fn tells_ended_since(&self, from: &str, to: &str, since: i64) -> StoreResult<Vec<Tell>> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {COLUMNS} FROM tells WHERE from_team = ?1 AND to_team = ?2 \
             AND state IN ('answered', 'failed', 'cancelled') AND answered_at >= ?3 \
             ORDER BY answered_at, id"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![from, to, since], row_to_tell)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// [`SessionStore::begin_turn`] on `conn` (in the caller's transaction).
/// [`SessionStore::open_tells_load`] on `conn`.
pub(super) fn open_tells_load_in(
    conn: &rusqlite::Connection,
    from: &str,
    to: &str,
) -> StoreResult<(i64, i64)> {
    let n = conn
        .prepare_cached(
            "SELECT count(*), coalesce(sum(length(CAST(text AS BLOB))), 0) FROM tells \
             INDEXED BY tells_open_by_pair \
             WHERE from_team = ?1 AND to_team = ?2 AND state IN ('queued', 'delivered')",
        )?
        .query_row([from, to], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(n)
}

/// [`SessionStore::nth_tell_time_since`] on `conn`.
///
/// Its cost does not grow with the window. Every tell stored after the team's oldest tell
/// of the window has a larger row id, so the ids from that tell to the newest row bound the
/// count from above (two index look-ups). Only when that bound reaches `most` are the
/// team's tells of the window walked, newest first, at most `most` of them. (A tell is
/// stamped just before it waits for the write lock, so a tell stamped later may be stored
/// earlier; the bound can then miss the few tells stored while another waited for the lock,
/// never more.)
pub(super) fn nth_tell_time_since_in(
    conn: &rusqlite::Connection,
    from: &str,
    since: i64,
    most: usize,
) -> StoreResult<Option<i64>> {
    let most = i64::try_from(most).unwrap_or(i64::MAX);
    if most <= 0 {
        return Ok(None);
    }
    let oldest: Option<i64> = conn
        .prepare_cached(
            "SELECT id FROM tells INDEXED BY tells_by_caller \
             WHERE from_team = ?1 AND kind = 'tell' AND created_at >= ?2 \
             ORDER BY created_at, id LIMIT 1",
        )?
        .query_row(params![from, since], |r| r.get(0))
        .optional()?;
    let Some(oldest) = oldest else {
        return Ok(None);
    };
    let newest: i64 = conn
        .prepare_cached("SELECT max(id) FROM tells")?
        .query_row([], |r| r.get(0))?;
    if newest.saturating_sub(oldest).saturating_add(1) < most {
        return Ok(None);
    }
    let nth = conn
        .prepare_cached(
            "SELECT created_at FROM tells INDEXED BY tells_by_caller \
             WHERE from_team = ?1 AND kind = 'tell' AND created_at >= ?2 \
             ORDER BY created_at DESC LIMIT 1 OFFSET ?3",
        )?
        .query_row(params![from, since, most - 1], |r| r.get(0))
        .optional()?;
    Ok(nth)
}

/// [`SessionStore::next_queued_tell`] on `conn` (inside a write: see
/// `WriteBatcher::begin_next_turn`).
pub(super) fn next_queued_in(
    conn: &rusqlite::Connection,
    from: &str,
    to: &str,
) -> StoreResult<Option<Tell>> {
    const SQL: &str = concat!(
        "SELECT ",
        tell_columns!(),
        " FROM tells INDEXED BY tells_open_by_pair \
         WHERE from_team = ?1 AND to_team = ?2 AND state IN ('queued', 'delivered') \
         AND state = 'queued' ORDER BY id LIMIT 1"
    );
    let found = conn
        .prepare_cached(SQL)?
        .query_row([from, to], row_to_tell)
        .optional()?;
    Ok(found)
}

/// Whether the pair has a tell queued (inside a write: see `WriteBatcher::end_turn`).
pub(super) fn any_queued_in(
    conn: &rusqlite::Connection,
    from: &str,
    to: &str,
) -> StoreResult<bool> {
    let found = conn
        .prepare_cached(
            "SELECT 1 FROM tells INDEXED BY tells_open_by_pair \
             WHERE from_team = ?1 AND to_team = ?2 AND state IN ('queued', 'delivered') \
             AND state = 'queued' LIMIT 1",
        )?
        .query_row([from, to], |_| Ok(()))
        .optional()?;
    Ok(found.is_some())
}

pub(super) fn begin_turn_in(
    conn: &rusqlite::Connection,
    session_id: &str,
    tell_id: &str,
    now: i64,
) -> StoreResult<Option<(Tell, super::Session)>> {
    let Some(tell) = write_tell_in(conn, DELIVER, params![tell_id, now], tell_id)? else {
        return Ok(None);
    };
    let session = turn_begins_in(conn, session_id, tell_id)?;
    Ok(Some((tell, session)))
}

/// [`begin_turn_in`] for `tell`, read on `conn` in the same transaction (a tell just stored):
/// its row is not read again, [`DELIVER`] sets exactly its state and delivery time. `Err`
/// gives the tell back when it was no longer queued (nothing changed).
pub(super) fn begin_read_turn_in(
    conn: &rusqlite::Connection,
    session_id: &str,
    mut tell: Tell,
    now: i64,
) -> StoreResult<Result<(Tell, super::Session), Tell>> {
    if conn
        .prepare_cached(DELIVER)?
        .execute(params![tell.tell_id, now])?
        == 0
    {
        return Ok(Err(tell));
    }
    (tell.state, tell.delivered_at) = (TellState::Delivered, Some(now));
    let session = turn_begins_in(conn, session_id, &tell.tell_id)?;
    Ok(Ok((tell, session)))
}

/// The session's side of a turn's start: `tell_id` is its current tell, processing. The
/// session as it is then.
fn turn_begins_in(
    conn: &rusqlite::Connection,
    session_id: &str,
    tell_id: &str,
) -> StoreResult<super::Session> {
    let id = super::sessions::upsert_for(
        conn,
        session_id,
        super::sessions::TURN_BEGINS,
        params![session_id, tell_id],
    )?;
    super::sessions::read_rowid(conn, id)
}

/// [`SessionStore::finish_tell`] on `conn`; refused unless `state` is final.
pub(super) fn finish_tell_in(
    conn: &rusqlite::Connection,
    tell_id: &str,
    state: TellState,
    outcome: &TellOutcome,
    now: i64,
) -> StoreResult<Option<Tell>> {
    if !state.is_final() {
        return Err(StoreError::NotFound(format!(
            "final state for tell {tell_id}"
        )));
    }
    write_tell_in(
        conn,
        FINISH,
        params![
            tell_id,
            state,
            now,
            outcome.answer,
            outcome.error,
            outcome.input_tokens,
            outcome.output_tokens,
            outcome.cost_usd,
            outcome.duration_ms
        ],
        tell_id,
    )
}

/// Stores a new tell as `queued` on `conn`; `None` when the team already has a tell with
/// `idempotency_key` (nothing stored).
pub(super) fn insert_tell_in(
    conn: &rusqlite::Connection,
    t: &NewTell<'_>,
    idempotency_key: Option<&str>,
    retry_of: Option<&str>,
    now: i64,
) -> StoreResult<Option<Tell>> {
    write_tell_in(
        conn,
        INSERT,
        params![
            t.tell_id,
            t.session_id,
            t.from_team,
            t.to_team,
            t.kind,
            t.text,
            now,
            t.parent_tell_id,
            idempotency_key,
            retry_of
        ],
        t.tell_id,
    )
}

#[cfg(test)]
mod tests {
    use super::super::sessions::{CLEAR_ERROR, PENDING_UPSERT, TURN_BEGINS, TURN_ENDS};
    use super::super::sessions::{FORCE_OWNER_UPSERT, STATE_STOPPED_UPSERT, STATE_UPSERT};
    use super::super::SessionStore;
    use super::{DELIVER, FINISH, INSERT};

    /// The opcodes SQLite compiles `sql` to, on `conn`.
    fn opcodes(conn: &rusqlite::Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn.prepare(&format!("EXPLAIN {sql}")).expect("explain");
        // Parameters left unbound (NULL): the program is the same.
        let mut rows = stmt.raw_query();
        let mut ops = Vec::new();
        while let Some(row) = rows.next().expect("row") {
            ops.push(row.get(1).expect("opcode"));
        }
        ops
    }

    /// The statements of every turn compare a CHECK's values in place and return nothing:
    /// SQLite builds a temporary b-tree (`OpenEphemeral`: a pager and its page cache, allocated
    /// and freed) at every write for `x IN (...)` of more than two values and for `RETURNING`.
    /// On the store's own write connection, which ran the migrations (0013 rewrote the CHECKs).
    #[test]
    fn the_writes_of_a_turn_build_no_temporary_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SessionStore::open(&dir.path().join("sb.db")).expect("store");
        let conn = store.wconn().expect("write connection");
        // The check can fail: a statement that does build one.
        let returning = opcodes(
            &conn,
            "UPDATE tells SET state = 'failed' WHERE id = 1 RETURNING id",
        );
        assert!(
            returning.iter().any(|o| o == "OpenEphemeral"),
            "{returning:?}"
        );
        for sql in [
            INSERT,
            DELIVER,
            FINISH,
            TURN_BEGINS,
            TURN_ENDS,
            PENDING_UPSERT,
            CLEAR_ERROR,
            STATE_UPSERT,
            STATE_STOPPED_UPSERT,
            FORCE_OWNER_UPSERT,
        ] {
            let ops = opcodes(&conn, sql);
            assert!(!ops.iter().any(|o| o == "OpenEphemeral"), "{sql}: {ops:?}");
        }
        // The constraints still refuse what they refused.
        for bad in [
            "INSERT INTO tells (tell_id, session_id, from_team, to_team, text, state, created_at) \
             VALUES ('t', 's', 'a', 'b', 'x', 'lost', 1)",
            "INSERT INTO session_live (session, process_state) VALUES (1, 'asleep')",
            "INSERT INTO sessions (from_team, to_team, session_id, created_at, last_used_at, status) \
             VALUES ('a', 'b', '11111111-1111-4111-8111-000000000000', 1, 1, 'gone')",
        ] {
            let e = conn.execute(bad, []).expect_err(bad);
            assert!(e.to_string().contains("CHECK constraint failed"), "{bad}: {e}");
        }
    }
}
