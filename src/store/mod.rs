//! The store: the only module with SQL. An r2d2 pool of rusqlite connections over one SQLite
//! file (WAL, synchronous=NORMAL, foreign keys, busy timeout) or a private in-memory database;
//! embedded migrations applied at open. It knows nothing of configs, caches or processes.

mod approvals;
mod batch;
mod checkpoint;
mod claim;
mod dashboard;
mod events;
mod identity;
mod inspect;
mod migrate;
mod model;
mod remote;
mod reset;
mod sessions;
mod tells;

use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;

pub use approvals::{Approval, ApprovalQuery, NewApproval, SessionRule};
pub use batch::{
    EndOfTurn, Handoff, LimitHit, PairInsert, TellLimits, TurnRunning, WriteBatcher, MAX_BATCH,
};
pub use checkpoint::{WalStats, WAL_BOUND_BYTES};
pub use claim::{runtime_dir, ClaimHolder, DatabaseClaim};
pub use dashboard::{HourCount, PairCounts, TeamDayCost, TellTotals};
pub use events::{Event, EventFilter, EventKind, EventRow, NewEvent, TellActivity};
pub use identity::FileChange;
pub use inspect::{can_create, inspect_file, FileInspection};
pub use migrate::{MIGRATIONS, SCHEMA_VERSION};
pub use model::{
    AgentStats, ListFilter, ListOrder, PairStats, ProcessState, Session, SessionStatus, Stats,
    TeamStats, Tell, TellKind, TellOutcome, TellState,
};
pub use remote::RemoteAgentRecord;
pub use reset::ResetReport;
pub use sessions::DueQuery;

/// The store's own statements and the functions that run them on a given connection, for the
/// benchmark's bare-rusqlite floor (`benches/switchboard-bench/raw.rs`): the floor runs exactly
/// what the store runs, minus the store (pool, write gate, checkpointer, cache), so it cannot
/// drift from it. Not an API.
#[doc(hidden)]
pub mod floor {
    pub use super::batch::{end_turn_in, insert_tell_for_pair_in};
    pub use super::checkpoint::{FOLD_CHUNK, FOLD_WRITES};
    pub use super::events::insert_events_in;
    pub use super::reset::reset_orphaned_in;
    pub use super::sessions::{
        fold_pending_tx, get_by_pair, list_in, pending_in, read_rowid, read_session_id,
        row_to_session, stats_in, update_in, upsert_for, Counters, COLUMNS, FORCE_OWNER_UPSERT,
        FROM, INSERT_SESSION, STATE_STOPPED_UPSERT, STATE_UPSERT,
    };
    pub use super::{init_connection, write_returning};
}
pub use tells::NewTell;

/// Connections of a file database: the writer's own (see [`SessionStore`]) and the pooled
/// readers'.
pub const POOL_SIZE: u32 = 4;

/// How long a connection waits for a lock held by another connection or process.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or set up.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The database path.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// The folder of the database file could not be created.
    #[error("cannot create database folder {path}: {source}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database was written by a newer Switchboard.
    #[error(
        "database {path} has schema version {found}, newer than this switchboard knows ({known}); \
         upgrade switchboard (nothing was changed)"
    )]
    SchemaTooNew {
        /// The database path.
        path: String,
        /// Version found in the database.
        found: i64,
        /// Newest version this binary knows.
        known: i64,
    },
    /// A migration failed; it was rolled back.
    #[error("migration {version} ({name}) failed on {path}: {source}")]
    Migration {
        /// The database path.
        path: String,
        /// Migration version.
        version: i64,
        /// Migration name.
        name: &'static str,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// No connection could be had from the pool.
    #[error("database connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    /// A statement failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database file was deleted, moved or replaced while this process had it open:
    /// nothing more is read or written (it would go to a file nobody else sees).
    #[error(
        "database {path} {change} while switchboard (pid {pid}) had it open; refusing to go on \
         with a file nobody else can see, so no history is split or lost. Put the file back, \
         or stop this switchboard (pid {pid}) and start it again to use what is at the path now"
    )]
    FileChanged {
        /// The database path.
        path: PathBuf,
        /// What happened to it.
        change: FileChange,
        /// This process.
        pid: u32,
    },
    /// The database path could not be examined.
    #[error("cannot stat database {path}: {source}")]
    Stat {
        /// The database path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The row asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The batch a write was in could not be committed (or its thread is gone): the write
    /// was not stored. The same error reaches every write of that batch.
    #[error("{0}")]
    Batch(std::sync::Arc<StoreError>),
    /// Another write of the batch failed in a way that made SQLite roll the whole transaction
    /// back: this write was not stored (trying again stores it).
    #[error("the write was rolled back with its batch, after another write of the batch failed")]
    BatchRolledBack,
    /// The store's batch-write thread has stopped (the process is shutting down).
    #[error("the store's write thread has stopped")]
    WriterGone,
}

impl StoreError {
    /// Whether the database refused a write for a reason that can pass (read-only file, disk
    /// full, I/O error, locked, no connection): worth retrying, unlike a missing row or a
    /// constraint.
    pub fn is_transient(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            StoreError::Pool(_) | StoreError::BatchRolledBack => true,
            StoreError::Batch(e) => e.is_transient(),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                C::ReadOnly
                    | C::DiskFull
                    | C::SystemIoFailure
                    | C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::CannotOpen
                    | C::OutOfMemory
            ),
            _ => false,
        }
    }
}

/// Per-connection settings, as SQLite reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionPragmas {
    /// `wal` for files, `memory` for in-memory databases.
    pub journal_mode: String,
    /// 1 = NORMAL.
    pub synchronous: i64,
    /// 1 = on.
    pub foreign_keys: i64,
    /// Milliseconds a connection waits for a lock.
    pub busy_timeout_ms: i64,
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Runs a write that returns at most one row (`... RETURNING`) and steps it to completion.
/// SQLite commits an autocommit write and runs the WAL auto-checkpoint only when the statement
/// reaches its end; `query_row` stops at the first row, and the WAL then grows without bound.
pub fn write_returning<T, P: rusqlite::Params>(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: P,
    map: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    let mut rows = stmt.query(params)?;
    let first = match rows.next()? {
        Some(row) => Some(map(row)?),
        None => None,
    };
    while rows.next()?.is_some() {}
    Ok(first)
}

/// The SQLite store: a pool of connections and the schema.
///
/// Writes of this process go one at a time through an in-process gate (a mutex): a writer
/// waits for the one before it to commit and is woken at once, instead of meeting SQLite's
/// lock and sleeping in its busy handler (1, 2, 5, 10 ... 100 ms). The busy timeout is left
/// for other processes. Checkpoints run on a background thread ([`checkpoint`]), not inside
/// the write that happens to cross the auto-checkpoint size.
///
/// The gate holds the writer's own connection (file databases): every write of the process
/// runs on it, so its page cache stays warm. A write on a pooled connection met a page cache
/// that another connection's commit had made stale (SQLite then drops the whole cache and reads
/// the pages again): 40% more CPU per `update_process_state` with the event writer taking
/// turns on the pool (perf, the session bench).
#[derive(Clone)]
pub struct SessionStore {
    pool: Pool<SqliteConnectionManager>,
    path: String,
    /// The file opened (none in memory): every checkout checks the path still names it.
    file: Option<std::sync::Arc<identity::OpenedFile>>,
    /// One writer at a time in this process, on this connection (none in memory: the pool's
    /// one connection is the database).
    gate: Gate,
    /// The background checkpointer (file databases only); stops with the last clone.
    checkpointer: Option<std::sync::Arc<checkpoint::Checkpointer>>,
}

/// The write gate and the writer's connection.
type Gate = std::sync::Arc<std::sync::Mutex<Option<rusqlite::Connection>>>;

/// The writer's connection (or, in memory, the pooled one) with the store's write gate held:
/// every write goes through one.
pub(crate) struct WriteConn<'a> {
    /// Only when the gate holds no connection.
    pooled: Option<PooledConnection<SqliteConnectionManager>>,
    gate: std::sync::MutexGuard<'a, Option<rusqlite::Connection>>,
    checkpointer: Option<&'a checkpoint::Checkpointer>,
}

impl std::ops::Deref for WriteConn<'_> {
    type Target = rusqlite::Connection;
    fn deref(&self) -> &rusqlite::Connection {
        match (&self.pooled, self.gate.as_ref()) {
            (Some(conn), _) => conn,
            (None, Some(conn)) => conn,
            // `wconn` takes a pooled connection whenever the gate holds none.
            (None, None) => unreachable!("a write connection without a connection"),
        }
    }
}

impl std::ops::DerefMut for WriteConn<'_> {
    fn deref_mut(&mut self) -> &mut rusqlite::Connection {
        match (&mut self.pooled, self.gate.as_mut()) {
            (Some(conn), _) => conn,
            (None, Some(conn)) => conn,
            (None, None) => unreachable!("a write connection without a connection"),
        }
    }
}

impl Drop for WriteConn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.checkpointer {
            c.wrote();
        }
    }
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("path", &self.path)
            .finish()
    }
}

/// The settings of every pooled connection (pragmas, statement cache).
pub fn init_connection(conn: &mut rusqlite::Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    enable_wal(conn)?;
    // No checkpoint inside a commit: the store's checkpointer thread runs them (checkpoint.rs).
    // A WAL emptied by a checkpoint is cut back to this size instead of keeping its peak.
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA wal_autocheckpoint = 0;
         PRAGMA journal_size_limit = {};
         PRAGMA cache_size = -1024;",
        checkpoint::JOURNAL_SIZE_LIMIT
    ))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Switches the database to WAL. Changing the journal mode does not go through the busy
/// handler (SQLite returns BUSY at once when another connection holds a lock), so when several
/// processes open a new database together it is retried here, up to [`BUSY_TIMEOUT`].
fn enable_wal(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        let mode = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
            .and_then(|mode| {
                if mode.eq_ignore_ascii_case("wal") {
                    Ok(mode)
                } else {
                    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
                }
            });
        match mode {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                // Back off briefly: the other process finishes its switch in microseconds.
                std::thread::park_timeout(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

impl SessionStore {
    /// Opens (creating if needed) the database file at `path` and applies pending migrations.
    /// Fails, changing nothing, if the file's schema is newer than this binary knows.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::private_fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // Only the user may read the database: tighten what an older Switchboard left open,
        // and create a new file 0600 before SQLite does (its -wal and -shm copy that mode).
        crate::private_fs::tighten_data_folder(path);
        if !path.exists() {
            crate::private_fs::ensure_file(path).map_err(|source| StoreError::CreateDir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        // Fail early with the path in the message (r2d2 would only say "timed out").
        let mut probe = rusqlite::Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        init_connection(&mut probe).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        // Recorded while the probe holds the file: the pool below opens the same path.
        let file = identity::OpenedFile::record(path)?;
        drop(probe);
        let manager = SqliteConnectionManager::file(path).with_init(init_connection);
        // The writer's own connection (the gate's) and readers for two cores: more connections
        // only add page caches (up to 1 MB each) to the process's memory. A local SQLite
        // connection does not go stale: no test query on every checkout.
        let pool = Pool::builder()
            .max_size(POOL_SIZE - 1)
            .min_idle(Some(1))
            .test_on_check_out(false)
            .connection_timeout(BUSY_TIMEOUT)
            .build(manager)?;
        let mut writer = rusqlite::Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        init_connection(&mut writer).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let gate: Gate = std::sync::Arc::new(std::sync::Mutex::new(Some(writer)));
        let checkpointer = checkpoint::Checkpointer::start(path, std::sync::Arc::clone(&gate))
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let store = Self {
            pool,
            path: path.display().to_string(),
            file: Some(std::sync::Arc::new(file)),
            gate,
            checkpointer: Some(std::sync::Arc::new(checkpointer)),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Opens a private in-memory database (a pool of one connection), for tests and
    /// `[database] in_memory = true`.
    pub fn open_in_memory() -> StoreResult<Self> {
        let manager = SqliteConnectionManager::memory().with_init(|c| {
            c.execute_batch("PRAGMA foreign_keys = ON;")?;
            c.set_prepared_statement_cache_capacity(64);
            Ok(())
        });
        // One connection: every connection of `memory()` would be its own empty database.
        let pool = Pool::builder()
            .max_size(1)
            .test_on_check_out(false)
            .connection_timeout(BUSY_TIMEOUT)
            .build(manager)?;
        let store = Self {
            pool,
            path: ":memory:".to_string(),
            file: None,
            gate: Default::default(),
            checkpointer: None,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Where the database lives (`:memory:` for an in-memory one).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The schema version of the database.
    pub fn schema_version(&self) -> StoreResult<i64> {
        let conn = self.conn()?;
        migrate::current_version(&conn).map_err(StoreError::from)
    }

    /// The settings of a pooled connection, as SQLite reports them (diagnostics and tests).
    pub fn connection_pragmas(&self) -> StoreResult<ConnectionPragmas> {
        let conn = self.conn()?;
        let get_i = |name: &str| -> rusqlite::Result<i64> {
            conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
        };
        Ok(ConnectionPragmas {
            journal_mode: conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
            synchronous: get_i("synchronous")?,
            foreign_keys: get_i("foreign_keys")?,
            busy_timeout_ms: get_i("busy_timeout")?,
        })
    }

    /// `Ok` while the database path still names the file this store opened (always for an
    /// in-memory database); [`StoreError::FileChanged`] once it was deleted, moved or replaced.
    pub fn check_file(&self) -> StoreResult<()> {
        match &self.file {
            Some(file) => file.check(),
            None => Ok(()),
        }
    }

    pub(crate) fn conn(&self) -> StoreResult<PooledConnection<SqliteConnectionManager>> {
        self.check_file()?;
        Ok(self.pool.get()?)
    }

    /// Runs `write` in an immediate transaction of its own, through the write gate: a write
    /// and the read back of what it wrote (see `tells::write_tell_in`) see the same database,
    /// whatever another process does meanwhile.
    fn in_write<R>(
        &self,
        write: impl FnOnce(&rusqlite::Connection) -> StoreResult<R>,
    ) -> StoreResult<R> {
        let mut conn = self.wconn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let r = write(&tx)?;
        tx.commit()?;
        Ok(r)
    }

    /// A connection for a write: waits for this process's previous write to finish first.
    pub(crate) fn wconn(&self) -> StoreResult<WriteConn<'_>> {
        self.check_file()?;
        // A poisoned gate only means a writer panicked; its transaction was rolled back as it
        // unwound (rusqlite's `Transaction` rolls back on drop), so the connection is clean.
        let gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        self.write_conn(gate)
    }

    /// [`Self::wconn`] only if it can be had without waiting (`None`: another write of this
    /// process is under way, the in-memory database's connection is in use, or this write
    /// would first have to cut the WAL back, which waits for the checkpointer and readers).
    pub(crate) fn try_wconn(&self) -> Option<StoreResult<WriteConn<'_>>> {
        if let Err(e) = self.check_file() {
            return Some(Err(e));
        }
        let gate = match self.gate.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        if self
            .checkpointer
            .as_deref()
            .is_some_and(|c| c.would_bound())
        {
            return None;
        }
        let pooled = match gate.as_ref() {
            Some(_) => None,
            None => Some(self.pool.try_get()?),
        };
        Some(Ok(WriteConn {
            pooled,
            gate,
            checkpointer: self.checkpointer.as_deref(),
        }))
    }

    fn write_conn<'a>(
        &'a self,
        gate: std::sync::MutexGuard<'a, Option<rusqlite::Connection>>,
    ) -> StoreResult<WriteConn<'a>> {
        let pooled = match gate.as_ref() {
            Some(_) => None,
            None => Some(self.pool.get()?),
        };
        let conn = WriteConn {
            pooled,
            gate,
            checkpointer: self.checkpointer.as_deref(),
        };
        if let Some(c) = conn.checkpointer {
            c.bound(&conn);
        }
        Ok(conn)
    }

    /// The WAL's size and the checkpointer's work so far (`None` in memory).
    pub fn wal_stats(&self) -> Option<WalStats> {
        self.checkpointer
            .as_deref()
            .map(checkpoint::Checkpointer::stats)
    }

    fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.wconn()?;
        migrate::apply(&mut conn, &self.path)
    }
}
