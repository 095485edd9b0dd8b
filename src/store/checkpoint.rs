//! The background checkpointer: WAL checkpoints off the request path.
//!
//! The store's connections run with `wal_autocheckpoint = 0`, so no commit copies the WAL into
//! the database (and fsyncs it) inline. This thread, on a connection of its own, runs a
//! PASSIVE checkpoint (it never blocks a writer or a reader) after every [`WAKE_EVERY`] writes
//! of this process, and every [`POLL`] while writes came in. Under sustained load a PASSIVE
//! checkpoint cannot let the WAL start over (new frames keep arriving behind it), so when the
//! WAL holds more than [`RESTART_AT_BYTES`] of frames it takes the store's write gate (this
//! process's writers wait; without it a tight write loop starves the checkpoint of SQLite's
//! write lock) and runs a TRUNCATE checkpoint, which waits for the readers of the moment,
//! copies what is left and empties the file. The WAL therefore stays under
//! [`WAL_BOUND_BYTES`]. Other processes on the same
//! database run their own checkpointer; SQLite serialises checkpoints.
//!
//! The same thread folds the sessions' pending counters (migration 0012) into their rows: once
//! [`FOLD_EVERY`] has passed since the last fold, or after [`FOLD_WRITES`] writes, in
//! transactions of at most [`FOLD_CHUNK`] sessions with the write gate held (and released
//! between them). Readers see the same values either way; the fold keeps the pending table
//! small, and folds many increments of a session into one write of its row.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::Connection;

/// The WAL never grows past this (the bound the soak run checks).
pub const WAL_BOUND_BYTES: u64 = 16 << 20;
/// A TRUNCATE checkpoint runs once the WAL holds this much.
const RESTART_AT_BYTES: i64 = 8 << 20;
/// A writer that finds the WAL this large (the thread lagging: a starved CPU, readers that never
/// pause) truncates it itself before it writes, so the bound holds whatever the thread does.
const WRITER_TRUNCATES_AT: u64 = 12 << 20;
/// How often a writer looks at the WAL's size (every this many writes).
const WRITER_LOOKS_EVERY: u64 = 32;
/// A WAL emptied by a checkpoint is cut back to this size on the next write.
pub(super) const JOURNAL_SIZE_LIMIT: i64 = 4 << 20;
/// The thread wakes after this many writes of this process.
const WAKE_EVERY: u64 = 256;
/// And at least this often while writes come in.
const POLL: Duration = Duration::from_millis(50);
/// Pending counters are folded at least this often while writes come in ...
const FOLD_EVERY: Duration = Duration::from_secs(1);
/// ... and after this many writes of this process (a fold then rewrites each session written
/// meanwhile once: the more writes between folds, the fewer rows per write; every read adds
/// the pending rows, so they must stay few).
pub const FOLD_WRITES: u64 = 16384;
/// Sessions folded per transaction (each holds this process's writers for a few ms at most).
pub const FOLD_CHUNK: u32 = 512;
/// How long a TRUNCATE checkpoint may wait for the writer and readers of the moment.
const TRUNCATE_WAIT: Duration = Duration::from_secs(2);

/// What the checkpointer did, and the WAL now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Size of the `-wal` file now, in bytes.
    pub wal_bytes: u64,
    /// PASSIVE checkpoints run.
    pub checkpoints: u64,
    /// TRUNCATE checkpoints run (the WAL passed [`RESTART_AT_BYTES`]).
    pub truncates: u64,
    /// Checkpoints that could not finish (busy).
    pub busy: u64,
}

struct Shared {
    /// Held by whoever of this process runs a checkpoint: SQLite answers a second checkpoint
    /// with BUSY at once instead of waiting.
    running: Mutex<()>,
    writes: AtomicU64,
    stop: Mutex<bool>,
    wake: Condvar,
    checkpoints: AtomicU64,
    truncates: AtomicU64,
    busy: AtomicU64,
    wal: PathBuf,
}

/// The running thread; stopped (and joined) on drop.
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a connection of its own to `path` (already in WAL mode) and starts the thread.
    pub(super) fn start(path: &Path, gate: super::Gate) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(TRUNCATE_WAIT)?;
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT};"
        ))?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let shared = Arc::new(Shared {
            running: Mutex::new(()),
            writes: AtomicU64::new(0),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            checkpoints: AtomicU64::new(0),
            truncates: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            wal: wal.into(),
        });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("sb-checkpoint".into())
            .spawn(move || run(conn, &for_thread, &gate))
            .map_err(|e| {
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("cannot start the checkpoint thread: {e}")),
                )
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// A write of this process committed (called with the write gate held).
    pub(super) fn wrote(&self) {
        let n = self.shared.writes.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(WAKE_EVERY) {
            self.shared.wake.notify_one();
        }
    }

    /// Whether [`Self::bound`] would checkpoint now (and so wait for the thread and for
    /// readers): the writer looks at the WAL this time and it is past [`WRITER_TRUNCATES_AT`].
    pub(super) fn would_bound(&self) -> bool {
        let s = &self.shared;
        s.writes
            .load(Ordering::Relaxed)
            .is_multiple_of(WRITER_LOOKS_EVERY)
            && std::fs::metadata(&s.wal).map_or(0, |m| m.len()) >= WRITER_TRUNCATES_AT
    }

    /// Called by a writer holding the write gate, before it writes: past
    /// [`WRITER_TRUNCATES_AT`], checkpoints and truncates the WAL on the writer's connection.
    pub(super) fn bound(&self, conn: &Connection) {
        let s = &self.shared;
        if !self.would_bound() {
            return;
        }
        // The thread is checkpointing: it finishes first, then this writer goes on.
        let _running = s.running.lock().unwrap_or_else(|p| p.into_inner());
        if std::fs::metadata(&s.wal).map_or(0, |m| m.len()) < WRITER_TRUNCATES_AT {
            return;
        }
        match checkpoint(conn, "TRUNCATE") {
            Ok((busy, _, _)) => {
                s.truncates.fetch_add(1, Ordering::Relaxed);
                if busy != 0 {
                    s.busy.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint (truncate) by a writer failed"),
        }
    }

    pub(super) fn stats(&self) -> WalStats {
        let s = &self.shared;
        WalStats {
            wal_bytes: std::fs::metadata(&s.wal).map(|m| m.len()).unwrap_or(0),
            checkpoints: s.checkpoints.load(Ordering::Relaxed),
            truncates: s.truncates.load(Ordering::Relaxed),
            busy: s.busy.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

/// Folds every session's pending counters, [`FOLD_CHUNK`] sessions per transaction on the
/// writer's connection (the gate held for each). `conn` (the thread's own) only looks whether
/// anything is pending.
fn fold(conn: &Connection, gate: &Mutex<Option<Connection>>) -> super::StoreResult<()> {
    while super::sessions::any_pending(conn)? {
        let mut writer = gate.lock().unwrap_or_else(|p| p.into_inner());
        let Some(w) = writer.as_mut() else {
            return Ok(());
        };
        if super::sessions::fold_pending_tx(w, FOLD_CHUNK)? < FOLD_CHUNK as usize {
            break;
        }
    }
    Ok(())
}

fn run(conn: Connection, s: &Shared, gate: &Mutex<Option<Connection>>) {
    let page: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap_or(4096);
    let mut seen = 0;
    let (mut folded_at, mut folded_writes) = (std::time::Instant::now(), 0);
    // What a process that died left pending is folded at the first wake (the store migrates
    // the database meanwhile: until it has, the pending table may not exist yet).
    let mut leftovers = true;
    let last_fold = |conn: &Connection| {
        if let Err(e) = fold(conn, gate) {
            tracing::warn!(error = %e, "folding the pending counters at exit failed");
        }
    };
    loop {
        {
            let stop = s.stop.lock().unwrap_or_else(|p| p.into_inner());
            if *stop {
                drop(stop);
                last_fold(&conn);
                return;
            }
            let (stop, _) = s
                .wake
                .wait_timeout(stop, POLL)
                .unwrap_or_else(|p| p.into_inner());
            if *stop {
                drop(stop);
                last_fold(&conn);
                return;
            }
        }
        let writes = s.writes.load(Ordering::Relaxed);
        if leftovers
            || (writes != folded_writes
                && (folded_at.elapsed() >= FOLD_EVERY || writes - folded_writes >= FOLD_WRITES))
        {
            match fold(&conn, gate) {
                Ok(()) => leftovers = false,
                Err(e) if leftovers => {
                    tracing::debug!(error = %e, "pending counters not folded yet (migrating?)")
                }
                Err(e) => tracing::warn!(error = %e, "folding the pending counters failed"),
            }
            (folded_at, folded_writes) = (std::time::Instant::now(), writes);
        }
        if writes == seen {
            continue;
        }
        seen = writes;
        let running = s.running.lock().unwrap_or_else(|p| p.into_inner());
        let frames = match checkpoint(&conn, "PASSIVE") {
            Ok((busy, log, _)) => {
                s.checkpoints.fetch_add(1, Ordering::Relaxed);
                if busy != 0 {
                    s.busy.fetch_add(1, Ordering::Relaxed);
                }
                log
            }
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed");
                continue;
            }
        };
        drop(running);
        if frames * (page + 24) >= RESTART_AT_BYTES {
            let _writers_wait = gate.lock().unwrap_or_else(|p| p.into_inner());
            let _running = s.running.lock().unwrap_or_else(|p| p.into_inner());
            match checkpoint(&conn, "TRUNCATE") {
                Ok((busy, _, _)) => {
                    s.truncates.fetch_add(1, Ordering::Relaxed);
                    if busy != 0 {
                        s.busy.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint (truncate) failed"),
            }
        }
    }
}
