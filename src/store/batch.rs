//! Group commit: the writes of concurrent callers in one transaction, on a thread of their own.
//!
//! Each pair's worker stores a turn's start and end; with many pairs at once, one commit per
//! write makes the commits (WAL frames, locks, the write gate) the bottleneck, and each one
//! blocks the async runtime's thread that made it. A [`WriteBatcher`] takes writes from any
//! number of tasks without blocking them: its thread runs whatever is waiting in ONE
//! `BEGIN IMMEDIATE` transaction, commits, and only then answers each caller. A write that fails
//! rolls back only itself: the writes run one after another with no savepoint (a savepoint per
//! write copies every page the write touches into SQLite's sub-journal), and when one fails
//! the whole transaction is rolled back and the batch runs again, each write in a savepoint of
//! its own. A write is therefore a function that can run twice (`FnMut`): it only reads and
//! writes the database, whose first attempt the rollback undid. Durability is unchanged: a
//! caller hears of its write once it is committed, never before; a commit that fails fails
//! every write of the batch with that error (and none of them is stored).
//!
//! The thread takes the store's write gate like any other writer, so in-process writers that
//! do not batch still go one at a time with it.
//!
//! A write made while no other turn runs and nothing waits for the thread (see
//! [`WriteBatcher::turn`]) has no commit to share: it is made at once on the caller's thread,
//! if this process's write gate and SQLite's write lock are both free at that moment (else it
//! goes to the thread as usual: the caller's thread never waits for a lock).
//!
//! What a write needs to read goes in the write, on the writer's connection (whose page cache
//! stays warm; a reader's is emptied by every commit): a new tell's session and limits
//! ([`WriteBatcher::insert_tell_for_pair`]), the pair's oldest queued tell at a turn's start
//! ([`WriteBatcher::begin_next_turn`]), and whether another is queued at its end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::{Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::{SessionStore, StoreError, StoreResult};

/// Most writes in one transaction (a batch's callers wait for all of it).
pub const MAX_BATCH: usize = 64;

/// A write waiting for the batch thread.
trait Job: Send {
    /// Runs the write's statements; whether they succeeded. Runs again (its result replaced)
    /// when the batch is rolled back and run once more (see the module docs).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller: with its own result once the batch committed, else with the error
    /// that ended the batch (`failed`).
    fn answer(self: Box<Self>, failed: Option<&Arc<StoreError>>);
}

/// What a write does once its fate is known, before its caller hears of it: on the batch
/// thread, or on the caller's thread after a write made there (this process's write gate is
/// free by then). See [`WriteBatcher::insert_tell_for_pair`].
type Then<R> = Box<dyn FnOnce(&StoreResult<R>) + Send>;

struct Pending<R, F> {
    op: F,
    result: Option<StoreResult<R>>,
    reply: oneshot::Sender<StoreResult<R>>,
    then: Option<Then<R>>,
}

impl<R, F> Job for Pending<R, F>
where
    R: Send,
    F: FnMut(&Connection) -> StoreResult<R> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.op)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, failed: Option<&Arc<StoreError>>) {
        let answer = match (self.result, failed) {
            // Its own error stands (it was rolled back either way).
            (Some(Err(e)), _) => Err(e),
            (_, Some(e)) => Err(StoreError::Batch(Arc::clone(e))),
            (Some(Ok(v)), None) => Ok(v),
            (None, None) => Err(StoreError::BatchRolledBack),
        };
        if let Some(then) = self.then {
            then(&answer);
        }
        // The caller may have gone (its task was dropped): nothing to tell.
        let _ = self.reply.send(answer);
    }
}

/// The batch thread of a store: see the module docs. Dropping it lets the thread write what
/// is already queued, then waits for it to end.
pub struct WriteBatcher {
    tx: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
    /// The store, for a write made on the caller's thread (see [`WriteBatcher::turn`]).
    store: SessionStore,
    /// Writes handed to the thread and not answered yet.
    queued: Arc<AtomicUsize>,
    /// Turns running now ([`WriteBatcher::turn`]).
    turns: Arc<AtomicUsize>,
}

/// A turn running, counted while this lives ([`WriteBatcher::turn`]).
#[derive(Debug)]
pub struct TurnRunning(Arc<AtomicUsize>);

impl Drop for TurnRunning {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for WriteBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatcher").finish_non_exhaustive()
    }
}

impl WriteBatcher {
    /// Starts the thread, writing to `store` (a clone of the caller's).
    pub fn start(store: SessionStore) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        let queued = Arc::new(AtomicUsize::new(0));
        let (thread_store, thread_queued) = (store.clone(), Arc::clone(&queued));
        let thread = std::thread::Builder::new()
            .name("sb-store-batch".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = Vec::with_capacity(8);
                    jobs.push(first);
                    while jobs.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
                        }
                    }
                    let n = jobs.len();
                    thread_store.run_batch(jobs);
                    thread_queued.fetch_sub(n, Ordering::AcqRel);
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            store,
            queued,
            turns: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Counts a turn as running while the result lives. With no other turn running and
    /// nothing waiting for the thread, a turn's writes (its start, a tell that starts it, its
    /// end) are made at once on the caller's thread: no commit is there to share, and two
    /// thread hand-offs are saved. With turns of other pairs running they go to the thread,
    /// to share its commits.
    pub fn turn(&self) -> TurnRunning {
        self.turns.fetch_add(1, Ordering::AcqRel);
        TurnRunning(Arc::clone(&self.turns))
    }

    /// Whether a write made while `mine` turns of the caller's own are running goes on the
    /// caller's thread (see [`Self::turn`]).
    fn alone(&self, mine: usize) -> bool {
        self.turns.load(Ordering::Acquire) <= mine && self.queued.load(Ordering::Acquire) == 0
    }

    /// Runs `op` in a transaction of its own on this thread, then `then`, if it can start at
    /// once; `Err` gives both back when another write holds this process's gate or SQLite's
    /// write lock (another process's): the caller's thread never waits for them.
    #[allow(clippy::type_complexity)]
    fn write_here<R, F>(
        &self,
        op: F,
        then: Option<Then<R>>,
    ) -> Result<StoreResult<R>, (F, Option<Then<R>>)>
    where
        F: FnOnce(&Connection) -> StoreResult<R>,
    {
        let answer = |result: StoreResult<R>, then: Option<Then<R>>| {
            if let Some(then) = then {
                then(&result);
            }
            result
        };
        let mut conn = match self.store.try_wconn() {
            None => return Err((op, then)),
            Some(Err(e)) => return Ok(answer(Err(e), then)),
            Some(Ok(c)) => c,
        };
        if let Err(e) = conn.busy_timeout(std::time::Duration::ZERO) {
            drop(conn);
            return Ok(answer(Err(e.into()), then));
        }
        let mut op = Some(op);
        let outcome = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        {
            Ok(tx) => Ok((|| {
                tx.busy_timeout(super::BUSY_TIMEOUT)?;
                let value = op.take().ok_or(StoreError::BatchRolledBack)?(&tx)?;
                tx.commit()?;
                Ok(value)
            })()),
            Err(e) => Err(e),
        };
        let e = match outcome {
            Ok(result) => {
                // The gate goes first: `then` may write.
                drop(conn);
                return Ok(answer(result, then));
            }
            Err(e) => e,
        };
        let restored = conn.busy_timeout(super::BUSY_TIMEOUT);
        match op {
            Some(op)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && restored.is_ok() =>
            {
                Err((op, then))
            }
            _ => {
                drop(conn);
                Ok(answer(Err(restored.err().unwrap_or(e).into()), then))
            }
        }
    }

    /// Runs `op` in the next batch; resolves once the batch committed (or failed). `then`
    /// runs on the batch thread with the write's result once the batch committed (or failed),
    /// before the caller is answered; it runs even when the caller has gone. Dropped unrun
    /// only when the batch thread is gone. A write made alone (`mine`: the caller's own
    /// running turns, see [`Self::turn`]) runs on the caller's thread instead, `then` after it.
    async fn write_then<R, F>(&self, op: F, then: Option<Then<R>>, mine: usize) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnMut(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (op, then) = match self.alone(mine) {
            true => match self.write_here(op, then) {
                Ok(done) => return done,
                Err(back) => back,
            },
            false => (op, then),
        };
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            op,
            result: None,
            reply,
            then,
        });
        let tx = self.tx.as_ref().ok_or(StoreError::WriterGone)?;
        self.queued.fetch_add(1, Ordering::AcqRel);
        if tx.send(job).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::WriterGone);
        }
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

impl Drop for WriteBatcher {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            // Dropped by the thread itself (what a write's `then` held was the last owner): it
            // ends once it returns to its channel, now closed.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl SessionStore {
    /// Runs `jobs` in one immediate transaction and commits, then answers each one. They run
    /// first with no savepoint; when one fails, that transaction is rolled back and they run
    /// again, each in a savepoint of its own, so the failing one rolls back alone.
    fn run_batch(&self, mut jobs: Vec<Box<dyn Job>>) {
        let result = match self.try_batch(&mut jobs, false) {
            Err(Retry::Separately) => self.try_batch(&mut jobs, true),
            other => other,
        };
        // A job that failed in the first attempt and did not run in a second one that stopped
        // early keeps its own first error (it was rolled back either way).
        let failed = match result {
            Ok(()) => None,
            Err(Retry::Separately) => Some(Arc::new(StoreError::BatchRolledBack)),
            Err(Retry::Not(e)) => Some(Arc::new(e)),
        };
        for job in jobs {
            job.answer(failed.as_ref());
        }
    }

    /// One attempt at a batch: every job in one immediate transaction, each in a savepoint of
    /// its own when `separately`, then the commit. Without savepoints, a job that fails rolls
    /// the transaction back and asks for [`Retry::Separately`].
    fn try_batch(&self, jobs: &mut [Box<dyn Job>], separately: bool) -> Result<(), Retry> {
        let mut conn = self.wconn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for job in jobs.iter_mut() {
            if !separately {
                if job.run(&tx) {
                    continue;
                }
                // Dropping the transaction rolls it back (if SQLite has not already).
                return Err(Retry::Separately);
            }
            tx.prepare_cached("SAVEPOINT batch_write")?.execute([])?;
            if !job.run(&tx) {
                // SQLite may have rolled the whole transaction back (disk full, I/O): then the
                // batch is over for everyone.
                if tx.is_autocommit() {
                    return Err(Retry::Not(StoreError::BatchRolledBack));
                }
                tx.prepare_cached("ROLLBACK TO batch_write")?.execute([])?;
            }
            tx.prepare_cached("RELEASE batch_write")?.execute([])?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Why an attempt at a batch stopped.
enum Retry {
    /// A job failed in a batch run without savepoints: run it again with them.
    Separately,
    /// The batch failed for everyone with this error.
    Not(StoreError),
}

impl<E: Into<StoreError>> From<E> for Retry {
    fn from(e: E) -> Self {
        Retry::Not(e.into())
    }
}

/// How a turn ended, for [`WriteBatcher::end_turn`]: the session's side (usage, idle, one more
/// message when `counts`) and the tell's (`state`, final, with its outcome).
#[derive(Debug, Clone)]
pub struct EndOfTurn {
    /// The session (UUID).
    pub session_id: String,
    /// Tokens read by the turn.
    pub input_tokens: i64,
    /// Tokens written by the turn.
    pub output_tokens: i64,
    /// What the turn cost.
    pub cost_usd: f64,
    /// An answered tell: counts one message and clears the session's error.
    pub counts: bool,
    /// The tell (UUID).
    pub tell_id: String,
    /// Its final state.
    pub state: super::TellState,
    /// Its outcome.
    pub outcome: super::TellOutcome,
    /// Unix ms.
    pub now: i64,
}

impl WriteBatcher {
    /// [`SessionStore::begin_turn`], in the next batch.
    pub async fn begin_turn(
        &self,
        session_id: String,
        tell_id: String,
        now: i64,
    ) -> StoreResult<Option<(super::Tell, super::Session)>> {
        self.write_then(
            move |conn| super::tells::begin_turn_in(conn, &session_id, &tell_id, now),
            None,
            0,
        )
        .await
    }

    /// The turn of the pair's oldest queued tell starts, in the next batch: the look-up and
    /// [`SessionStore::begin_turn`] in one write (`None`: nothing is queued). The pair's worker
    /// reads its queue here, on the writer's connection, instead of in a read of its own before
    /// each turn.
    pub async fn begin_next_turn(
        &self,
        session_id: String,
        from: String,
        to: String,
        now: i64,
    ) -> StoreResult<Option<(super::Tell, super::Session)>> {
        self.write_then(
            move |conn| {
                let Some(next) = super::tells::next_queued_in(conn, &from, &to)? else {
                    return Ok(None);
                };
                super::tells::begin_turn_in(conn, &session_id, &next.tell_id, now)
            },
            None,
            0,
        )
        .await
    }

    /// The end of a turn in one write: [`SessionStore::end_turn`] and
    /// [`SessionStore::finish_tell`] together (the tell is `None` when it had ended already),
    /// and whether the pair has a tell queued after it (read in the same transaction: a tell
    /// queued after it is committed, by this process, wakes the pair's worker).
    pub async fn end_turn(
        &self,
        end: EndOfTurn,
    ) -> StoreResult<(super::Session, Option<super::Tell>, bool)> {
        // Made by a running turn: alone when it is the only one.
        self.write_then(move |conn| end_turn_in(conn, &end), None, 1)
            .await
    }
}

/// The write of [`WriteBatcher::end_turn`], on `conn` (in a transaction).
pub fn end_turn_in(
    conn: &Connection,
    end: &EndOfTurn,
) -> StoreResult<(super::Session, Option<super::Tell>, bool)> {
    let session = super::sessions::end_turn_in(
        conn,
        &end.session_id,
        end.input_tokens,
        end.output_tokens,
        end.cost_usd,
        end.counts,
        end.now,
    )?;
    let tell = super::tells::finish_tell_in(conn, &end.tell_id, end.state, &end.outcome, end.now)?;
    let more = super::tells::any_queued_in(conn, &session.from_team, &session.to_team)?;
    Ok((session, tell, more))
}

/// A [`super::NewTell`] owned, to move into a batched write.
struct OwnedTell {
    tell_id: String,
    session_id: String,
    from_team: String,
    to_team: String,
    kind: super::TellKind,
    text: String,
    parent_tell_id: Option<String>,
}

impl OwnedTell {
    fn new(t: &super::NewTell<'_>) -> Self {
        Self {
            tell_id: t.tell_id.to_string(),
            session_id: t.session_id.to_string(),
            from_team: t.from_team.to_string(),
            to_team: t.to_team.to_string(),
            kind: t.kind,
            text: t.text.to_string(),
            parent_tell_id: t.parent_tell_id.map(str::to_string),
        }
    }

    fn borrowed(&self) -> super::NewTell<'_> {
        super::NewTell {
            tell_id: &self.tell_id,
            session_id: &self.session_id,
            from_team: &self.from_team,
            to_team: &self.to_team,
            kind: self.kind,
            text: &self.text,
            parent_tell_id: self.parent_tell_id.as_deref(),
        }
    }
}

/// Stores `t` on `conn` (inside the batch's transaction) for session `session_id`.
fn insert_new_in(
    conn: &Connection,
    t: &super::NewTell<'_>,
    session_id: &str,
    now: i64,
) -> StoreResult<super::Tell> {
    let new = super::NewTell { session_id, ..*t };
    // Without a key nothing can conflict: the tell is always the one just stored.
    super::tells::insert_tell_in(conn, &new, None, None, now)?
        .ok_or_else(|| StoreError::NotFound(format!("tell {} just stored", t.tell_id)))
}

impl WriteBatcher {
    /// [`SessionStore::insert_tell`] (no idempotency key, not a retry), in the next batch.
    pub async fn insert_tell(&self, t: &super::NewTell<'_>, now: i64) -> StoreResult<super::Tell> {
        let t = OwnedTell::new(t);
        self.write_then(
            move |conn| insert_new_in(conn, &t.borrowed(), &t.session_id, now),
            None,
            0,
        )
        .await
    }
}

/// The limits a new tell is checked against in the write that stores it
/// ([`WriteBatcher::insert_tell_for_pair`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TellLimits {
    /// Most open (queued or delivered) tells of the pair.
    pub max_open: u64,
    /// Most bytes of open tells' texts of the pair (a first tell always passes).
    pub max_open_bytes: u64,
    /// Most messages the caller may send in `window_ms`.
    pub per_window: usize,
    /// The rate limit's window, ms.
    pub window_ms: i64,
}

/// The limit a new tell would pass, with what the store found; nothing is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// The pair has this many open tells already.
    Open(u64),
    /// The pair's open tells hold this many bytes already.
    OpenBytes(u64),
    /// The caller's `per_window`-th newest message of the window was stored then (unix ms).
    PerWindow(i64),
}

/// What [`WriteBatcher::insert_tell_for_pair`] did.
#[derive(Debug)]
pub enum PairInsert {
    /// Stored, `queued`.
    Stored(Box<super::Tell>),
    /// Stored and, in the same write, delivered: its turn has begun (asked for with a
    /// [`Handoff`], and the pair had no other open tell). The tell as delivered, and its
    /// session.
    Begun(Box<(super::Tell, super::Session)>),
    /// The pair has no session yet: nothing stored.
    NoSession,
    /// Refused by a limit: nothing stored.
    Limited(LimitHit),
}

/// Whoever takes a tell whose turn [`WriteBatcher::insert_tell_for_pair`] began: called once
/// (on the batch thread, or on the caller's after a write made there), with the tell as
/// delivered and its session once that write is committed, or with `None` (nothing begun:
/// the tell was queued, refused, or not stored). Dropped uncalled only when the batch thread
/// is gone.
pub type Handoff = Box<dyn FnOnce(Option<(super::Tell, super::Session)>) + Send>;

impl WriteBatcher {
    /// A new tell (no idempotency key, not a retry) of a pair whose session exists, in the next
    /// batch: the pair's session, the limits (for a message: `limits`) and the insert in one
    /// write, on the writer's connection (no reads before it on the caller's thread).
    /// `t.session_id` is ignored: the pair's is used.
    ///
    /// With a `handoff` (the pair's agent is up and waiting), a tell that finds no other open
    /// tell of its pair is stored delivered, its turn begun ([`SessionStore::begin_turn`]) in
    /// the same write: `handoff` gets it once that is committed, without a second write or a
    /// wake-up in between. The order of a pair's tells holds: any open tell (queued here or by
    /// another process) makes the new one wait its turn, queued.
    pub async fn insert_tell_for_pair(
        &self,
        t: &super::NewTell<'_>,
        limits: Option<TellLimits>,
        handoff: Option<Handoff>,
        now: i64,
    ) -> StoreResult<PairInsert> {
        let t = OwnedTell::new(t);
        let begin = handoff.is_some();
        let then = handoff.map(|h| -> Then<PairInsert> {
            Box::new(move |r| h(r.as_ref().ok().and_then(PairInsert::begun)))
        });
        self.write_then(
            move |conn| insert_tell_for_pair_in(conn, &t.borrowed(), limits, begin, now),
            then,
            0,
        )
        .await
    }
}

/// The write of [`WriteBatcher::insert_tell_for_pair`], on `conn` (in a transaction): `begin`
/// when a handoff waits.
pub fn insert_tell_for_pair_in(
    conn: &Connection,
    t: &super::NewTell<'_>,
    limits: Option<TellLimits>,
    begin: bool,
    now: i64,
) -> StoreResult<PairInsert> {
    let (from_team, to_team) = (t.from_team, t.to_team);
    let session_id: Option<String> = conn
        .prepare_cached("SELECT session_id FROM sessions WHERE from_team = ?1 AND to_team = ?2")?
        .query_row([from_team, to_team], |r| r.get(0))
        .optional()?;
    let Some(session_id) = session_id else {
        return Ok(PairInsert::NoSession);
    };
    let load = match (limits, begin) {
        (None, false) => None,
        _ => Some(super::tells::open_tells_load_in(conn, from_team, to_team)?),
    };
    if let (Some(l), Some(load)) = (limits, load) {
        if let Some(hit) = limit_hit(conn, from_team, t.text.len(), &l, load, now)? {
            return Ok(PairInsert::Limited(hit));
        }
    }
    let stored = insert_new_in(conn, t, &session_id, now)?;
    if !(begin && load.is_some_and(|(open, _)| open == 0)) {
        return Ok(PairInsert::Stored(Box::new(stored)));
    }
    Ok(
        match super::tells::begin_read_turn_in(conn, &session_id, stored, now)? {
            Ok(begun) => PairInsert::Begun(Box::new(begun)),
            Err(stored) => PairInsert::Stored(Box::new(stored)),
        },
    )
}

impl PairInsert {
    /// The tell and session of a [`PairInsert::Begun`].
    fn begun(&self) -> Option<(super::Tell, super::Session)> {
        match self {
            PairInsert::Begun(b) => Some((**b).clone()),
            _ => None,
        }
    }
}

/// The first of `l` that a message of `len` bytes from `from` would pass; `load`: its pair's
/// open tells and their bytes.
fn limit_hit(
    conn: &Connection,
    from: &str,
    len: usize,
    l: &TellLimits,
    (open, bytes): (i64, i64),
    now: i64,
) -> StoreResult<Option<LimitHit>> {
    let open = u64::try_from(open).unwrap_or(0);
    let bytes = u64::try_from(bytes).unwrap_or(0);
    if open >= l.max_open {
        return Ok(Some(LimitHit::Open(open)));
    }
    if open > 0 && bytes.saturating_add(len as u64) > l.max_open_bytes {
        return Ok(Some(LimitHit::OpenBytes(bytes)));
    }
    if l.per_window == 0 {
        return Ok(None);
    }
    Ok(
        super::tells::nth_tell_time_since_in(conn, from, now - l.window_ms, l.per_window)?
            .map(LimitHit::PerWindow),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::sync::oneshot;

    use super::{Job, Pending};
    use crate::store::{SessionStore, StoreResult};

    /// A job that inserts `n` into table `t` and counts its runs; it fails after its insert
    /// when `fail`.
    fn job(
        n: i64,
        fail: bool,
        runs: &Arc<AtomicUsize>,
    ) -> (Box<dyn Job>, oneshot::Receiver<StoreResult<i64>>) {
        let (reply, rx) = oneshot::channel();
        let runs = Arc::clone(runs);
        let op = move |conn: &rusqlite::Connection| -> StoreResult<i64> {
            runs.fetch_add(1, Ordering::SeqCst);
            conn.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
            if fail {
                conn.execute("INSERT INTO t (n) VALUES (NULL)", [])?;
            }
            Ok(n)
        };
        let job: Box<dyn Job> = Box::new(Pending {
            op,
            result: None,
            reply,
            then: None,
        });
        (job, rx)
    }

    fn stored(store: &SessionStore) -> Vec<i64> {
        let conn = store.conn().expect("conn");
        let mut stmt = conn.prepare("SELECT n FROM t ORDER BY n").expect("prepare");
        let rows = stmt.query_map([], |r| r.get(0)).expect("query");
        rows.map(|r| r.expect("row")).collect()
    }

    /// A batch whose writes all succeed runs each once; one where a write fails after its
    /// first statement runs again, each write in a savepoint: the failing one is rolled back
    /// alone with its own error, and every other write is stored once, not twice.
    #[test]
    fn a_batch_runs_its_writes_once_unless_one_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SessionStore::open(&dir.path().join("b.db")).expect("open");
        store
            .wconn()
            .expect("conn")
            .execute_batch("CREATE TABLE t (n INTEGER NOT NULL UNIQUE)")
            .expect("table");

        let runs = Arc::new(AtomicUsize::new(0));
        let (jobs, replies): (Vec<_>, Vec<_>) = (1..=3).map(|n| job(n, false, &runs)).unzip();
        store.run_batch(jobs);
        assert_eq!(runs.load(Ordering::SeqCst), 3, "one run each");
        for (n, mut rx) in (1..=3).zip(replies) {
            assert_eq!(rx.try_recv().expect("answered").expect("stored"), n);
        }

        let runs = Arc::new(AtomicUsize::new(0));
        let (jobs, replies): (Vec<_>, Vec<_>) = (4..=6).map(|n| job(n, n == 5, &runs)).unzip();
        store.run_batch(jobs);
        // 4 and 5 ran, 5 failed; then all three again.
        assert_eq!(
            runs.load(Ordering::SeqCst),
            5,
            "a second run, in savepoints"
        );
        let answers: Vec<_> = replies
            .into_iter()
            .map(|mut rx| rx.try_recv().expect("answered"))
            .collect();
        assert_eq!(answers[0].as_ref().ok(), Some(&4));
        let err = answers[1].as_ref().expect_err("its own failure");
        assert!(err.to_string().contains("NOT NULL"), "{err}");
        assert_eq!(answers[2].as_ref().ok(), Some(&6));
        assert_eq!(stored(&store), vec![1, 2, 3, 4, 6]);
    }
}
