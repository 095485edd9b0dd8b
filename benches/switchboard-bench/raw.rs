//! The floor: the store's own statements, run through bare rusqlite on one connection with the
//! store's connection settings, no pool, no write gate, no background checkpointer, no cache.
//!
//! No SQL is copied here: every statement comes from `switchboard::store::floor`, the functions
//! the store itself runs on its pooled connections (`update_in`, `upsert_for`, `list_in`,
//! `stats_in`, `reset_orphaned_in`, ...), so the floor cannot drift from the store. Rows are
//! decoded by the store's `row_to_session`, so the ratio layer/raw measures what the layers add
//! (pool checkout, write gate, cache invalidation, ...), not the decoding every caller needs.
//!
//! One difference is deliberate: the floor keeps SQLite's default automatic checkpoint (every
//! 1000 pages, inline in the commit that crosses it), which is what bare rusqlite does; the
//! store turns it off and checkpoints on a background thread.

use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, TransactionBehavior};
use switchboard::store::floor;
use switchboard::store::{
    DueQuery, EndOfTurn, EventKind, EventRow, ListFilter, NewEvent, NewTell, PairInsert,
    ProcessState, Session, Stats, StoreError, TellKind, TellLimits, TellOutcome, TellState,
};
use switchboard::util::ProcessIdentity;

/// One bare connection.
pub struct Raw {
    conn: RefCell<Connection>,
    wal: std::path::PathBuf,
}

type RawResult<T> = Result<T, StoreError>;

impl Raw {
    /// Opens `path` with the store's connection settings (then SQLite's default automatic
    /// checkpoint, see the module doc).
    pub fn open(path: &Path) -> RawResult<Self> {
        let mut conn = Connection::open(path)?;
        floor::init_connection(&mut conn)?;
        conn.execute_batch("PRAGMA wal_autocheckpoint = 1000;")?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Self {
            conn: RefCell::new(conn),
            wal: wal.into(),
        })
    }

    /// `get_by_session_id`.
    pub fn get_by_id(&self, session_id: &str) -> RawResult<Option<Session>> {
        floor::read_session_id(&self.conn.borrow(), session_id)
    }

    /// `get_by_pair` (what `get_or_create` runs for an existing pair on a cache miss).
    pub fn get_by_pair(&self, from: &str, to: &str) -> RawResult<Option<Session>> {
        floor::get_by_pair(&self.conn.borrow(), from, to)
    }

    /// `increment_message_count`: the session's pending counters (the store's background
    /// thread folds them; see [`Raw::fold`]).
    pub fn incr_msg(&self, session_id: &str, n: i64, now: i64) -> RawResult<Session> {
        let conn = self.conn.borrow();
        let id = floor::pending_in(&conn, session_id, &floor::Counters::messages(n, now))?;
        floor::read_rowid(&conn, id)
    }

    /// Folds every pending counter into the sessions' rows, in transactions of `chunk`
    /// sessions, as the store's background thread does; returns how many sessions.
    pub fn fold(&self, chunk: u32) -> RawResult<usize> {
        let mut total = 0;
        loop {
            let n = floor::fold_pending_tx(&mut self.conn.borrow_mut(), chunk)?;
            total += n;
            if n < chunk as usize {
                return Ok(total);
            }
        }
    }

    /// `update_process_state` for a state other than `stopped`.
    pub fn set_proc_state(&self, session_id: &str, state: ProcessState) -> RawResult<Session> {
        let conn = self.conn.borrow();
        let id = floor::upsert_for(
            &conn,
            session_id,
            floor::STATE_UPSERT,
            params![session_id, state],
        )?;
        floor::read_rowid(&conn, id)
    }

    /// `list` with only `to_team` and `limit 50` set (default order).
    pub fn list_to_team(&self, team: &str) -> RawResult<Vec<Session>> {
        let f = ListFilter {
            to_team: Some(team.to_string()),
            limit: Some(50),
            ..ListFilter::default()
        };
        floor::list_in(&self.conn.borrow(), &f)
    }

    /// The queries of `stats`, in one read transaction.
    pub fn stats(&self, q: DueQuery) -> RawResult<Stats> {
        floor::stats_in(&mut self.conn.borrow_mut(), q)
    }

    /// `reset_orphaned`: how many sessions were reset and how many orphan agents were found.
    pub fn reset_orphaned(&self) -> RawResult<(usize, usize)> {
        let r = floor::reset_orphaned_in(&mut self.conn.borrow_mut(), &|o| o.is_alive())?;
        Ok((r.reset, r.orphan_agents.len()))
    }

    /// Inserts sessions for `pairs` in one transaction with the store's INSERT (set-up only).
    /// Returns how many were inserted.
    pub fn insert_many<'a>(
        &self,
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
        now: i64,
    ) -> RawResult<usize> {
        let mut conn = self.conn.borrow_mut();
        let tx = conn.transaction()?;
        let mut n = 0;
        {
            let mut stmt = tx.prepare_cached(floor::INSERT_SESSION)?;
            for (from, to) in pairs {
                let id = uuid::Uuid::new_v4().to_string();
                let mut rows = stmt.query(params![from, to, id, now])?;
                while rows.next()?.is_some() {}
                n += 1;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// `force_owner` on every session of `ids`, in one transaction (set-up only).
    pub fn force_owner_many(
        &self,
        ids: &[&str],
        state: ProcessState,
        owner: ProcessIdentity,
        now: i64,
    ) -> RawResult<()> {
        let mut conn = self.conn.borrow_mut();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for id in ids {
            floor::upsert_for(
                &tx,
                id,
                floor::FORCE_OWNER_UPSERT,
                params![id, state, owner.pid, owner.started_at, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The store's writes of `rounds` turns of every pair of `pairs` (callers' pairs with a
    /// session), as the batch thread makes them with 50 pairs at work, with none of its
    /// threads: per round, every pair's new tell stored and handed over (delivered) in one
    /// transaction, every turn's end in a second, and each tell's seven event rows (what the
    /// event writer stores for a tell answered at once) in a third. Returns how many tells and
    /// the CPU of the tells' writes and of the event rows' (as the event writer makes them:
    /// the rows built from the events, then inserted): the WAL is checkpointed between rounds
    /// (as the store's checkpointer does, on its own thread), outside those counts.
    pub fn turn_floor(
        &self,
        pairs: &[(String, String)],
        rounds: usize,
        limits: TellLimits,
    ) -> RawResult<(usize, Duration, Duration)> {
        let mut conn = self.conn.borrow_mut();
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
        let (mut n, mut cpu, mut events_cpu) = (0, Duration::ZERO, Duration::ZERO);
        for round in 0..rounds {
            if self.wal_bytes() > 8 << 20 {
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            }
            let c0 = crate::measure::thread_cpu();
            let now = now_ms();
            let text = format!("floor {round}");
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut begun = Vec::with_capacity(pairs.len());
            for (from, to) in pairs {
                let tell_id = uuid::Uuid::new_v4().to_string();
                let t = NewTell {
                    tell_id: &tell_id,
                    session_id: "",
                    from_team: from,
                    to_team: to,
                    kind: TellKind::Tell,
                    text: &text,
                    parent_tell_id: None,
                };
                match floor::insert_tell_for_pair_in(&tx, &t, Some(limits), true, now)? {
                    PairInsert::Begun(b) => begun.push(*b),
                    other => return Err(StoreError::NotFound(format!("not begun: {other:?}"))),
                }
            }
            tx.commit()?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (tell, session) in &begun {
                let end = EndOfTurn {
                    session_id: session.session_id.clone(),
                    input_tokens: 3,
                    output_tokens: 2,
                    cost_usd: 0.0001,
                    counts: true,
                    tell_id: tell.tell_id.clone(),
                    state: TellState::Answered,
                    outcome: TellOutcome {
                        answer: Some(format!("echo: {text}")),
                        error: None,
                        input_tokens: Some(3),
                        output_tokens: Some(2),
                        cost_usd: Some(0.0001),
                        duration_ms: Some(0),
                    },
                    now,
                };
                floor::end_turn_in(&tx, &end)?;
            }
            tx.commit()?;
            let c1 = crate::measure::thread_cpu();
            cpu += c1.saturating_sub(c0);
            let rows: Vec<EventRow> = begun
                .iter()
                .flat_map(|(tell, session)| {
                    let event = |kind| {
                        EventRow::new(
                            now,
                            NewEvent::pair(&tell.from_team, &tell.to_team, kind)
                                .session(&session.session_id)
                                .tell(Some(&tell.tell_id)),
                        )
                    };
                    let state = |s: &str| EventKind::ProcessState { state: s.into() };
                    [
                        event(EventKind::TellQueued {
                            kind: "tell".into(),
                            bytes: text.len() as u64,
                            parent_tell_id: None,
                        }),
                        event(EventKind::TellDelivered),
                        event(state("processing")),
                        event(EventKind::Text {
                            text: format!("echo: {text}"),
                        }),
                        event(EventKind::Usage {
                            input_tokens: 3,
                            output_tokens: 2,
                            cost_usd: 0.0001,
                        }),
                        event(EventKind::TellAnswered {
                            input_tokens: 3,
                            output_tokens: 2,
                            cost_usd: 0.0001,
                            duration_ms: 0,
                        }),
                        event(state("idle")),
                    ]
                })
                .collect();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            floor::insert_events_in(&tx, &rows)?;
            tx.commit()?;
            n += begun.len();
            events_cpu += crate::measure::thread_cpu().saturating_sub(c1);
        }
        conn.execute_batch("PRAGMA wal_autocheckpoint = 1000;")?;
        Ok((n, cpu, events_cpu))
    }

    /// Size of the WAL file in bytes (0 when there is none).
    pub fn wal_bytes(&self) -> u64 {
        std::fs::metadata(&self.wal).map(|m| m.len()).unwrap_or(0)
    }

    /// `PRAGMA wal_checkpoint(TRUNCATE)`: copies the WAL into the database and empties it.
    /// Returns (busy, frames in the log, frames checkpointed).
    pub fn checkpoint(&self) -> RawResult<(i64, i64, i64)> {
        Ok(self
            .conn
            .borrow()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?)
    }

    /// WAL frames (pages) per commit of `op`: the WAL emptied, automatic checkpoints off, `n`
    /// ops, then the frame count of the WAL (a PASSIVE checkpoint reports it).
    pub fn pages_per_commit(
        &self,
        n: usize,
        mut op: impl FnMut(usize) -> crate::measure::BenchResult<()>,
    ) -> crate::measure::BenchResult<f64> {
        self.checkpoint()?;
        self.conn
            .borrow()
            .execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
        let run = (0..n).try_for_each(&mut op);
        let frames: rusqlite::Result<i64> =
            self.conn
                .borrow()
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1));
        self.conn
            .borrow()
            .execute_batch("PRAGMA wal_autocheckpoint = 1000;")?;
        run?;
        Ok(frames? as f64 / n.max(1) as f64)
    }

    /// The number of sessions, and every other session id in the order of the pair index
    /// (the first, the third, ...; set-up only).
    pub fn every_other_session_id(&self) -> RawResult<(usize, Vec<String>)> {
        let conn = self.conn.borrow();
        let mut stmt =
            conn.prepare("SELECT session_id FROM sessions ORDER BY from_team, to_team")?;
        let mut rows = stmt.query([])?;
        let (mut n, mut half) = (0, Vec::new());
        while let Some(r) = rows.next()? {
            if n % 2 == 0 {
                half.push(r.get(0)?);
            }
            n += 1;
        }
        Ok((n, half))
    }
}

/// Unix ms now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
