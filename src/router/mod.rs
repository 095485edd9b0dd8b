//! The router: tells between teams. A tell is stored (`queued`) before anything else, then the
//! pair's worker delivers the pair's tells one at a time, oldest first, to the callee team's
//! agent, and stores the answer when the agent's result arrives. Callers wait for the answer,
//! for a while, or not at all. Also: cancel, compaction, sleep / wake / reboot of a pair's
//! agent, the history of a pair, recovery after a restart, and an orderly shutdown.

pub mod approvals;
mod callers;
pub mod dashboard;
mod worker;

pub use callers::{AGENT_TOOL_TIMEOUT_MS, MCP_SERVER_NAME};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::agent::adapter::adapter_for;
use crate::agent::supervisor::{LiveAgent, Supervisor};
use crate::events::{EventKind, NewEvent};
use crate::session::{SessionError, SessionManager};
use crate::store::{
    Handoff, LimitHit, NewTell, PairInsert, Session, StoreError, Tell, TellKind, TellLimits,
    TellOutcome, TellState,
};
use crate::util::now_ms;

use worker::{Cmd, Worker};

/// How often a caller waiting on a tell that another process may deliver looks at the database.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// How long a caller is willing to wait for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Return at once with the stored tell (a quick tell).
    None,
    /// Wait at most this long; then return the tell as it is (still running).
    For(Duration),
    /// Wait for the answer.
    Forever,
}

/// Errors of the router.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The session layer refused or failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The router is shutting down.
    #[error("switchboard is shutting down; the tell was not accepted")]
    ShuttingDown,
    /// A message that cannot be sent.
    #[error("invalid message: {0}")]
    BadMessage(String),
    /// No such tell.
    #[error("tell {0} not found")]
    TellNotFound(String),
    /// The callee's agent kind is not one this build can run.
    #[error("team {team} uses agent {agent:?}, which this switchboard cannot run")]
    UnknownAgent {
        /// The team.
        team: String,
        /// Its agent value.
        agent: String,
    },
    /// Starting or talking to the agent failed.
    #[error("{0}")]
    Agent(String),
    /// A tell that would close a loop of waiting agents or make the chain too long.
    #[error("refused: {0}")]
    Loop(String),
    /// A caller that cannot be identified.
    #[error("unknown caller: {0}")]
    UnknownCaller(String),
    /// A bad idempotency key, or one already used for a different tell.
    #[error("idempotency key: {0}")]
    IdempotencyKey(String),
    /// A tell that cannot be retried (still running, answered, or a compaction).
    #[error("cannot retry tell {tell_id}: {why}")]
    NotRetryable {
        /// The tell.
        tell_id: String,
        /// Why not.
        why: String,
    },
    /// A tell id prefix that matches more than one tell.
    #[error("tell id {0:?} is ambiguous: give more of it")]
    AmbiguousTell(String),
    /// A limit of `[settings]` refused the tell; it may be sent again later.
    #[error("limit reached: {what} (settings.{setting}); try again in {}", crate::util::format_duration(*retry_after))]
    Limited {
        /// The setting that refused it.
        setting: &'static str,
        /// What is over the limit.
        what: String,
        /// When trying again may succeed.
        retry_after: Duration,
    },
    /// No such permission request (or session rule).
    #[error("{0} not found")]
    ApprovalNotFound(String),
    /// A permission request that cannot be decided (not pending, not the caller's).
    #[error("{0}")]
    Approval(String),
    /// A tell id prefix shorter than [`MIN_TELL_PREFIX`].
    #[error("tell id {0:?} is too short: give the whole id or at least {MIN_TELL_PREFIX} characters of it")]
    TellIdTooShort(String),
}

/// The fewest characters of a tell id that find it (`tells show`, `cancel`, `retry`).
pub const MIN_TELL_PREFIX: usize = 4;

/// How a tell is stored, beyond its pair and text.
#[derive(Debug, Clone, Copy, Default)]
pub struct TellOptions<'a> {
    /// The tell during which this one was sent (a chain of agents).
    pub parent_tell_id: Option<&'a str>,
    /// The caller's idempotency key: sending the same tell again with the same key returns the
    /// first one instead of storing a second; the same key with another text is an error.
    pub idempotency_key: Option<&'a str>,
    /// The tell this one is a copy of (`tells retry`).
    pub retry_of: Option<&'a str>,
}

impl RouterError {
    /// Whether the database refused for a reason that can pass (read-only, disk full, locked).
    pub fn is_transient(&self) -> bool {
        match self {
            RouterError::Session(e) => e.is_transient(),
            RouterError::Store(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// Who is telling: a person's agent acting as a team, or an agent Switchboard spawned (the
/// callee of a session), whose tells are part of the tell that session is answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Acting as this team (a person, or a person's agent registered with `--as TEAM`).
    Team(String),
    /// The agent of this session: it acts as the session's `to_team`.
    Agent {
        /// The session whose agent calls.
        session_id: String,
    },
}

/// Result of router operations.
pub type RouterResult<T> = Result<T, RouterError>;

/// What `cancel` did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CancelReport {
    /// Queued tells cancelled before delivery.
    pub cancelled_queued: Vec<String>,
    /// The running tell that was interrupted, if any.
    pub interrupted: Option<String>,
}

/// Counters for status and metrics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Tells answered.
    pub answered: AtomicU64,
    /// Tells failed.
    pub failed: AtomicU64,
    /// Tells cancelled.
    pub cancelled: AtomicU64,
    /// Agent stdout lines that were not events.
    pub bad_lines: AtomicU64,
    /// Agents spawned.
    pub spawned: AtomicU64,
    /// Writes the database refused (read-only, disk full, locked) and that were tried again.
    pub write_retries: AtomicU64,
    /// Tells found `delivered` with no live Switchboard process delivering them, and failed.
    pub swept: AtomicU64,
    /// Tells delivered in the write that stored them: the pair's agent was up and waiting,
    /// with nothing else open (one write and one wake-up fewer than a queued tell).
    pub handed_over: AtomicU64,
}

struct WorkerHandle {
    tx: mpsc::UnboundedSender<Cmd>,
    interrupt: Arc<Interrupt>,
    /// See [`worker::ready`].
    ready: Arc<AtomicU8>,
}

/// A claim on a waiting worker ([`Router::claim_worker`]): its word goes to the worker exactly
/// once, [`Cmd::Run`] with a begun turn or [`Cmd::Released`] (also when it is dropped unused).
struct Claim {
    tx: Option<mpsc::UnboundedSender<Cmd>>,
}

impl Claim {
    /// Gives the worker the claim's word; a begun tell whose worker is gone (its task ended)
    /// goes back to the queue (nothing was sent to the agent).
    fn settle(mut self, begun: Option<(Tell, Session)>, m: &SessionManager) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        let Some(b) = begun else {
            let _ = tx.send(Cmd::Released);
            return;
        };
        if let Err(mpsc::error::SendError(Cmd::Run(b))) = tx.send(Cmd::Run(Box::new(b))) {
            let (t, s) = *b;
            if let Err(e) = m.undeliver(&s.session_id, &t.tell_id) {
                tracing::error!(tell = %t.tell_id, error = %e, "a tell handed to a worker that is gone could not be queued again");
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Cmd::Released);
        }
    }
}

/// A request to interrupt one tell. Naming the tell keeps a request that arrives just after
/// its turn ended from interrupting the next one.
#[derive(Default)]
pub(crate) struct Interrupt {
    notify: Notify,
    target: Mutex<Option<String>>,
}

impl Interrupt {
    fn request(&self, tell_id: &str) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = Some(tell_id.to_string());
        self.notify.notify_one();
    }

    /// Resolves when an interrupt of `tell_id` is requested.
    pub(crate) async fn wait_for(&self, tell_id: &str) {
        loop {
            self.notify.notified().await;
            let target = self.target.lock().unwrap_or_else(|p| p.into_inner()).take();
            if target.as_deref() == Some(tell_id) {
                return;
            }
        }
    }
}

/// Who waits for which tell, and which tells this router queued that it has not seen end.
#[derive(Default)]
struct Waiters {
    by_tell: HashMap<String, Vec<oneshot::Sender<Tell>>>,
    /// Tells queued through [`Router::submit_with`] whose end this router has not announced
    /// ([`Router::notify`]): a waiter of one of them hears of its end from here, and needs no
    /// read of the tell first. A tell ended by another process (cancelled there) stays in the
    /// set; its waiters see the end at their next poll. Cleared when full (waiters then read).
    open_here: std::collections::HashSet<String>,
}

/// Most tells in [`Waiters::open_here`].
const OPEN_HERE: usize = 65_536;

pub(crate) struct Inner {
    manager: Arc<SessionManager>,
    supervisor: Arc<Supervisor>,
    workers: Mutex<HashMap<String, WorkerHandle>>,
    waiters: Mutex<Waiters>,
    shutdown: watch::Sender<bool>,
    accepting: AtomicBool,
    log_dir: PathBuf,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    counters: Counters,
    mcp: Mutex<McpEndpoint>,
    /// How long a worker waits for a session held by another process (None: not at all).
    busy_wait: Mutex<Option<Duration>>,
    /// The SSH transport of remote teams, made when the first one is used
    /// (`worker/remote.rs`).
    ssh: std::sync::OnceLock<crate::agent::ssh::Transport>,
}

/// Where agents Switchboard spawns reach the MCP server, and the tokens that name them.
#[derive(Default)]
struct McpEndpoint {
    url: Option<String>,
    /// agent token → session id (one per live agent process)
    tokens: HashMap<String, String>,
}

/// Tells between teams, over a SessionManager. Cheap to clone. Must be used inside a tokio
/// runtime (multi-threaded: agent children must be spawned from runtime worker threads).
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

fn pair_key(from: &str, to: &str) -> String {
    format!("{from}\0{to}")
}

impl Router {
    /// A router over `manager` (already initialised). Agent stderr logs go to `logs/` beside
    /// the database file.
    pub fn new(manager: Arc<SessionManager>) -> Self {
        let db = manager.store().path().to_string();
        let log_dir = if db == ":memory:" {
            crate::util::data_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("logs")
        } else {
            PathBuf::from(db)
                .parent()
                .map(|p| p.join("logs"))
                .unwrap_or_else(|| PathBuf::from("logs"))
        };
        let supervisor = Supervisor::new(manager.config().settings.max_processes);
        let (shutdown, _) = watch::channel(false);
        let router = Self {
            inner: Arc::new(Inner {
                manager,
                supervisor,
                workers: Mutex::new(HashMap::new()),
                waiters: Mutex::new(Waiters::default()),
                shutdown,
                accepting: AtomicBool::new(true),
                log_dir,
                tasks: Mutex::new(Vec::new()),
                counters: Counters::default(),
                mcp: Mutex::new(McpEndpoint::default()),
                busy_wait: Mutex::new(None),
                ssh: std::sync::OnceLock::new(),
            }),
        };
        router.start_sweeper();
        router.stop_remote_leftovers();
        router.remove_stale_agent_configs();
        router
    }

    /// Every `health_check_interval`, fails the tells left `delivered` with no live Switchboard
    /// process delivering them (see [`Router::sweep`]). Runs until shutdown; holds no strong
    /// reference to the router.
    fn start_sweeper(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let every = self.inner.manager.config().settings.health_check_interval;
        let weak = Arc::downgrade(&self.inner);
        let mut shutdown = self.inner.shutdown.subscribe();
        let task = rt.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.changed() => return,
                }
                let Some(inner) = weak.upgrade() else { return };
                let router = Router { inner };
                // Blocking SQLite reads and writes: off the async workers.
                let r = router.clone();
                match tokio::task::spawn_blocking(move || r.sweep()).await {
                    Ok(Err(e)) => tracing::warn!(error = %e, "sweep of stuck tells failed"),
                    Err(e) => tracing::warn!(error = %e, "sweep of stuck tells panicked"),
                    Ok(Ok(_)) => {}
                }
            }
        });
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
    }

    /// Fails every tell left `delivered` whose pair's session no live Switchboard process
    /// holds: nobody will record its answer any more. Such a tell is not sent to an agent
    /// again (its turn may have had side effects). Returns how many were failed.
    pub fn sweep(&self) -> RouterResult<usize> {
        let m = &self.inner.manager;
        self.prune_events();
        let mut failed = 0;
        approvals::expire_orphans(m)?;
        for t in m.store().all_open_tells()? {
            if t.state != TellState::Delivered {
                continue;
            }
            // Fresh from the database: the cache may hold an owner that has moved on.
            let session = m.store().get_by_pair(&t.from_team, &t.to_team)?;
            if session
                .as_ref()
                .and_then(|s| s.owner())
                .is_some_and(|o| o.is_alive())
            {
                continue; // its owner records it (or retries until it can)
            }
            let reason = if session.is_some() {
                "interrupted: the Switchboard process delivering it is gone; not sent again, as \
                 the agent may have acted on it"
            } else {
                "interrupted: the session was deleted"
            };
            let outcome = TellOutcome {
                error: Some(reason.to_string()),
                ..Default::default()
            };
            if self.finish(&t, TellState::Failed, outcome)?.is_some() {
                tracing::warn!(tell = %t.tell_id, pair = %format!("{}:{}", t.from_team, t.to_team), "failed a tell left delivered without a live owner");
                self.inner.counters.swept.fetch_add(1, Ordering::Relaxed);
                failed += 1;
            }
        }
        Ok(failed)
    }

    /// Deletes the events older than `settings.events.retention`, and the permission requests
    /// decided before then (pending ones stay). Returns how many events.
    pub fn prune_events(&self) -> usize {
        let m = &self.inner.manager;
        let keep = m.config().settings.events.retention;
        let before = now_ms().saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        match m.store().prune_decided_approvals(before) {
            Ok(n) if n > 0 => {
                tracing::info!(
                    deleted = n,
                    "pruned decided permission requests past retention"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot prune old permission requests"),
        }
        match m.store().prune_events(before) {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(deleted = n, "pruned events past their retention");
                }
                n
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot prune old events");
                0
            }
        }
    }

    /// The session manager.
    pub fn manager(&self) -> &Arc<SessionManager> {
        &self.inner.manager
    }

    /// The limits a new tell is checked against, from the settings.
    pub fn tell_limits(&self) -> TellLimits {
        tell_limits(&self.inner.manager)
    }

    /// Counters since start.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// The live agents of this process.
    pub fn live_agents(&self) -> Vec<LiveAgent> {
        self.inner.supervisor.live()
    }

    /// Where agent stderr logs go.
    pub fn log_dir(&self) -> &std::path::Path {
        &self.inner.log_dir
    }

    /// Switchboard's data folder: the database's folder (where `logs/` is).
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.inner
            .log_dir
            .parent()
            .map(std::path::Path::to_path_buf)
    }

    /// When a pair's session is held by another live Switchboard process, wait up to `wait`
    /// for it to be free instead of failing at once with "busy: held by pid N".
    pub fn wait_when_busy(&self, wait: Option<Duration>) {
        *self
            .inner
            .busy_wait
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = wait;
    }

    pub(crate) fn busy_wait(&self) -> Option<Duration> {
        *self
            .inner
            .busy_wait
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// After a restart: tells left `delivered` by a process that is gone are marked failed
    /// ("interrupted by restart"); tells still `queued` are delivered, in order. Tells of a
    /// session held by another live Switchboard process are left to it. `only` limits this to
    /// one pair. Returns (failed, requeued).
    pub fn recover(&self, only: Option<(&str, &str)>) -> RouterResult<(usize, usize)> {
        let m = &self.inner.manager;
        let mut failed = 0;
        let mut queued_pairs: Vec<(String, String)> = Vec::new();
        for t in m.store().all_open_tells()? {
            if only.is_some_and(|(f, to)| f != t.from_team || to != t.to_team) {
                continue;
            }
            let session = m.get(&t.from_team, &t.to_team)?;
            if session
                .as_ref()
                .is_some_and(|s| m.check_not_held_elsewhere(s).is_err())
            {
                continue; // its owner handles it
            }
            match t.state {
                TellState::Delivered => {
                    let reason = if session.is_some() {
                        "interrupted by restart: the Switchboard process delivering it is gone; \
                         not sent again, as the agent may have acted on it"
                    } else {
                        "interrupted: the session was deleted"
                    };
                    self.finish(
                        &t,
                        TellState::Failed,
                        TellOutcome {
                            error: Some(reason.to_string()),
                            ..Default::default()
                        },
                    )?;
                    failed += 1;
                }
                TellState::Queued => {
                    let pair = (t.from_team.clone(), t.to_team.clone());
                    if !queued_pairs.contains(&pair) {
                        queued_pairs.push(pair);
                    }
                }
                _ => {}
            }
        }
        // Permission requests whose agent went with its process: nobody can answer them.
        let expired = approvals::expire_orphans(m)?;
        if expired > 0 {
            tracing::info!(
                expired,
                "expired permission requests of agents that are gone"
            );
        }
        let requeued = queued_pairs.len();
        for (from, to) in queued_pairs {
            self.wake_worker(&from, &to);
        }
        if failed > 0 || requeued > 0 {
            tracing::info!(
                failed,
                pairs_with_queued_tells = requeued,
                "recovered tells after restart"
            );
        }
        Ok((failed, requeued))
    }

    /// Sends `text` from team `from` to team `to`'s agent and waits for the answer as `wait`
    /// says. The tell is stored before it is delivered; tells of a pair are answered in order.
    pub async fn tell(&self, from: &str, to: &str, text: &str, wait: Wait) -> RouterResult<Tell> {
        let tell = self.submit(from, to, TellKind::Tell, text, None).await?;
        self.wait_for(&tell.tell_id, wait).await
    }

    /// Stores a tell (`queued`) and wakes the pair's worker; returns once it is stored. A tell
    /// to a pair whose agent waits, with nothing else open, comes back `delivered`: it was
    /// handed to the worker in the write that stored it.
    pub async fn submit(
        &self,
        from: &str,
        to: &str,
        kind: TellKind,
        text: &str,
        parent_tell_id: Option<&str>,
    ) -> RouterResult<Tell> {
        let options = TellOptions {
            parent_tell_id,
            ..Default::default()
        };
        self.submit_with(from, to, kind, text, &options).await
    }

    /// [`Router::submit`] with an idempotency key and the tell it retries (see
    /// [`TellOptions`]). With a key already used for the same tell, that tell comes back.
    pub async fn submit_with(
        &self,
        from: &str,
        to: &str,
        kind: TellKind,
        text: &str,
        options: &TellOptions<'_>,
    ) -> RouterResult<Tell> {
        if !self.inner.accepting.load(Ordering::SeqCst) {
            return Err(RouterError::ShuttingDown);
        }
        // A message to a pair whose agent waits, with nothing else open: delivered in the
        // write that stores it, and handed to the worker from there.
        let handoff = match plain(options) && kind == TellKind::Tell {
            true => self.claim_worker(from, to),
            false => None,
        };
        let (tell, begun) =
            queue_tell_batched(&self.inner.manager, from, to, kind, text, options, handoff).await?;
        tracing::debug!(from, to, tell_id = %tell.tell_id, begun, "tell queued");
        if !begun {
            if !tell.state.is_final() {
                self.note_open_here(&tell.tell_id);
            }
            self.wake_worker(from, to);
        }
        Ok(tell)
    }

    /// A tell queued here: its end is announced here ([`Waiters::open_here`]).
    fn note_open_here(&self, tell_id: &str) {
        let mut w = self.lock_waiters();
        if w.open_here.len() >= OPEN_HERE {
            w.open_here.clear();
        }
        w.open_here.insert(tell_id.to_string());
    }

    /// Queues a copy of an ended tell that failed or was cancelled (an interrupted tell is
    /// never resent on its own: its turn may have had effects). The copy records which tell
    /// it retries. `tell_id` may be a unique prefix.
    pub fn retry(&self, tell_id: &str) -> RouterResult<Tell> {
        if !self.inner.accepting.load(Ordering::SeqCst) {
            return Err(RouterError::ShuttingDown);
        }
        let tell = queue_retry(&self.inner.manager, tell_id)?;
        tracing::debug!(tell_id = %tell.tell_id, retry_of = tell_id, "retry queued");
        self.wake_worker(&tell.from_team, &tell.to_team);
        Ok(tell)
    }

    /// A tell by id.
    pub fn tell_status(&self, tell_id: &str) -> RouterResult<Tell> {
        self.inner
            .manager
            .store()
            .get_tell(tell_id)?
            .ok_or_else(|| RouterError::TellNotFound(tell_id.to_string()))
    }

    /// Waits for a tell to end, as `wait` says; returns the tell as it is then.
    pub async fn wait_for(&self, tell_id: &str, wait: Wait) -> RouterResult<Tell> {
        if wait == Wait::None {
            return self.tell_status(tell_id);
        }
        let (tx, rx) = oneshot::channel();
        let open_here = {
            let mut w = self.lock_waiters();
            w.by_tell.entry(tell_id.to_string()).or_default().push(tx);
            w.open_here.contains(tell_id)
        };
        let result = self.wait_registered(tell_id, wait, rx, open_here).await;
        // Drop our registration if the tell did not end here (e.g. timed out).
        let mut waiters = self.lock_waiters();
        if let Some(list) = waiters.by_tell.get_mut(tell_id) {
            list.retain(|w| !w.is_closed());
            if list.is_empty() {
                waiters.by_tell.remove(tell_id);
            }
        }
        result
    }

    /// Waits on `rx` (registered), reading the tell first and at each poll; `open_here`: the
    /// tell was queued here and has not ended here when `rx` was registered, so the first read
    /// is skipped (its end comes through `rx`).
    async fn wait_registered(
        &self,
        tell_id: &str,
        wait: Wait,
        rx: oneshot::Receiver<Tell>,
        open_here: bool,
    ) -> RouterResult<Tell> {
        let mut rx = Some(rx);
        let deadline = match wait {
            Wait::For(d) => Some(tokio::time::Instant::now() + d),
            Wait::None | Wait::Forever => None,
        };
        let mut read = !open_here;
        loop {
            if std::mem::replace(&mut read, true) {
                let current = self.tell_status(tell_id)?;
                if current.state.is_final()
                    || deadline.is_some_and(|d| tokio::time::Instant::now() >= d)
                {
                    return Ok(current);
                }
            }
            let answer = async {
                match rx.as_mut() {
                    Some(r) => r.await.ok(),
                    None => std::future::pending().await,
                }
            };
            let until = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            // The poll covers a tell delivered by another process (no local notification).
            tokio::select! {
                done = answer => match done {
                    Some(t) => return Ok(t),
                    None => rx = None, // the worker went away: read the database from now on
                },
                _ = tokio::time::sleep(WAIT_POLL) => {}
                _ = until => {}
            }
        }
    }

    /// The last `limit` tells of a pair, oldest first (from SQLite: survives restarts).
    pub fn report(&self, from: &str, to: &str, limit: u32) -> RouterResult<Vec<Tell>> {
        report_tells(&self.inner.manager, from, to, limit)
    }

    /// Cancels the pair's queued tells and interrupts its running one (the agent stays up).
    pub fn cancel(&self, from: &str, to: &str) -> RouterResult<CancelReport> {
        let m = &self.inner.manager;
        m.check_team(from)?;
        m.check_team(to)?;
        let mut report = CancelReport::default();
        let session = m.get(from, to)?;
        if let Some(s) = session.as_ref().filter(|s| s.current_tell_id.is_some()) {
            m.check_not_held_elsewhere(s)?;
        }
        for t in m.store().cancel_queued_tells(from, to, now_ms())? {
            self.inner
                .counters
                .cancelled
                .fetch_add(1, Ordering::Relaxed);
            publish_end(m, &t);
            report.cancelled_queued.push(t.tell_id.clone());
            self.notify(&t);
        }
        if let Some(current) = session
            .and_then(|_| m.store().open_tells(from, to).ok())
            .and_then(|open| open.into_iter().find(|t| t.state == TellState::Delivered))
        {
            if let Some(w) = self.lock_workers().get(&pair_key(from, to)) {
                w.interrupt.request(&current.tell_id);
                report.interrupted = Some(current.tell_id);
            }
        }
        Ok(report)
    }

    /// Cancels one tell: a queued one is cancelled at once; a running one (in this process) is
    /// interrupted and ends `cancelled`. Returns the tell as it is now.
    pub fn cancel_tell(&self, tell_id: &str) -> RouterResult<Tell> {
        let t = self.tell_status(tell_id)?;
        match t.state {
            TellState::Queued => {
                let outcome = TellOutcome {
                    error: Some("cancelled before delivery".into()),
                    ..Default::default()
                };
                Ok(self.finish(&t, TellState::Cancelled, outcome)?.unwrap_or(t))
            }
            TellState::Delivered => {
                if let Some(w) = self.lock_workers().get(&pair_key(&t.from_team, &t.to_team)) {
                    w.interrupt.request(&t.tell_id);
                }
                Ok(t)
            }
            _ => Ok(t),
        }
    }

    /// Cancels one tell given by id or unique prefix (`tells cancel`): a queued one at once, a
    /// running one is interrupted and waited for (up to 20 s). A tell another live Switchboard
    /// process is answering is refused as busy (its owner must interrupt it); one whose
    /// process is gone is marked failed, as recovery does. Returns the tell as it is then, and
    /// whether it was still open when asked.
    pub async fn cancel_one(&self, id: &str) -> RouterResult<(Tell, bool)> {
        let m = &self.inner.manager;
        let t = find_tell(m, id)?;
        if t.state.is_final() {
            return Ok((t, false));
        }
        Ok((self.cancel_open(t).await?, true))
    }

    async fn cancel_open(&self, t: Tell) -> RouterResult<Tell> {
        let m = &self.inner.manager;
        if t.state == TellState::Delivered {
            if let Some(s) = m.get(&t.from_team, &t.to_team)? {
                m.check_not_held_elsewhere(&s)?;
            }
            let here = self
                .lock_workers()
                .contains_key(&pair_key(&t.from_team, &t.to_team));
            if !here {
                self.recover(Some((&t.from_team, &t.to_team)))?;
                return self.tell_status(&t.tell_id);
            }
        }
        let t = self.cancel_tell(&t.tell_id)?;
        if t.state.is_final() {
            return Ok(t);
        }
        self.wait_for(&t.tell_id, Wait::For(Duration::from_secs(20)))
            .await
    }

    /// Compacts the pair's agent context: queues a compaction behind the pair's tells and
    /// waits as `wait` says. The agent is resumed if it is stopped.
    pub async fn compact(&self, from: &str, to: &str, wait: Wait) -> RouterResult<Tell> {
        let session = self.inner.manager.get_or_create(from, to)?;
        // The callee's adapter says how to compact, or that its CLI cannot.
        let team = self
            .inner
            .manager
            .config()
            .team(to)
            .ok_or_else(|| RouterError::Agent(format!("team {to} is not in the config")))?;
        let adapter = adapter_for(&team.agent).ok_or_else(|| RouterError::UnknownAgent {
            team: to.to_string(),
            agent: team.agent.clone(),
        })?;
        let text = adapter.compact_text().ok_or_else(|| {
            RouterError::Agent(format!(
                "team {to}'s agent ({}) cannot compact its context",
                adapter.name()
            ))
        })?;
        self.inner.manager.request_compaction(&session)?;
        let tell = self.submit(from, to, TellKind::Compact, text, None).await?;
        self.wait_for(&tell.tell_id, wait).await
    }

    /// Starts the pair's agent now (no model call). Returns its pid.
    pub async fn wake(&self, from: &str, to: &str) -> RouterResult<u32> {
        let (tx, rx) = oneshot::channel();
        self.command(from, to, Cmd::Start(tx))?;
        rx.await
            .map_err(|_| RouterError::Agent("the pair's worker stopped".into()))?
    }

    /// Stops the pair's agent once its queued tells are done; the session is kept. Returns
    /// whether an agent was running.
    pub async fn sleep(&self, from: &str, to: &str) -> RouterResult<bool> {
        let (tx, rx) = oneshot::channel();
        self.command(from, to, Cmd::Sleep(tx))?;
        rx.await
            .map_err(|_| RouterError::Agent("the pair's worker stopped".into()))?
    }

    /// Stops the pair's agent and gives the pair a new conversation (new session id); the old
    /// transcript and the tells history are kept.
    pub async fn reboot(&self, from: &str, to: &str) -> RouterResult<Session> {
        let (tx, rx) = oneshot::channel();
        self.command(from, to, Cmd::Reboot(tx))?;
        rx.await
            .map_err(|_| RouterError::Agent("the pair's worker stopped".into()))?
    }

    /// Stops taking tells, lets running turns finish for `settings.shutdown_grace`, then stops
    /// every agent and gives every lease back. Returns when all of that is done.
    pub async fn shutdown(&self) {
        self.inner.accepting.store(false, Ordering::SeqCst);
        let _ = self.inner.shutdown.send(true);
        let tasks: Vec<_> =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        self.lock_workers().clear();
        // The agents are stopped: their hosts' control connections go too.
        self.disconnect_remote_hosts().await;
        // Every event published so far is stored before this returns: the process may end
        // next, and another holder of the manager (a thread of the CLI) would keep the event
        // writer from being dropped (and from writing the rest).
        self.inner.manager.events().flush().await;
    }

    fn command(&self, from: &str, to: &str, cmd: Cmd) -> RouterResult<()> {
        if !self.inner.accepting.load(Ordering::SeqCst) {
            return Err(RouterError::ShuttingDown);
        }
        let m = &self.inner.manager;
        m.get_or_create(from, to)?;
        self.worker(from, to)
            .send(cmd)
            .map_err(|_| RouterError::Agent("the pair's worker stopped".into()))
    }

    fn wake_worker(&self, from: &str, to: &str) {
        let _ = self.worker(from, to).send(Cmd::Wake);
    }

    /// The pair's worker, if it waits with its agent up: claimed, it takes the tell about to
    /// be stored straight from the write that stores it (see `store::Handoff`), and acts on
    /// nothing else until that write's word reaches it.
    fn claim_worker(&self, from: &str, to: &str) -> Option<Handoff> {
        let workers = self.lock_workers();
        let w = workers
            .get(&pair_key(from, to))
            .filter(|w| !w.tx.is_closed())?;
        w.ready
            .compare_exchange(
                worker::ready::READY,
                worker::ready::CLAIMED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .ok()?;
        let claim = Claim {
            tx: Some(w.tx.clone()),
        };
        let router = self.clone();
        Some(Box::new(move |begun: Option<(Tell, Session)>| {
            let m = router.manager();
            if let Some((t, s)) = &begun {
                // Before the worker has it (it could end before the caller hears it is
                // stored), and in the order of its life: queued, processing, then delivered
                // (by the worker).
                router.note_open_here(&t.tell_id);
                publish_queued(m, t);
                m.began(s);
            }
            claim.settle(begun, m)
        }))
    }

    fn worker(&self, from: &str, to: &str) -> mpsc::UnboundedSender<Cmd> {
        let mut workers = self.lock_workers();
        if let Some(w) = workers.get(&pair_key(from, to)) {
            if !w.tx.is_closed() {
                return w.tx.clone();
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let interrupt = Arc::new(Interrupt::default());
        let ready = Arc::new(AtomicU8::new(worker::ready::BUSY));
        let worker = Worker::new(
            self.clone(),
            from.to_string(),
            to.to_string(),
            rx,
            Arc::clone(&interrupt),
            self.inner.shutdown.subscribe(),
            Arc::clone(&ready),
        );
        let task = tokio::spawn(worker.run());
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
        workers.insert(
            pair_key(from, to),
            WorkerHandle {
                tx: tx.clone(),
                interrupt,
                ready,
            },
        );
        tx
    }

    fn lock_mcp(&self) -> std::sync::MutexGuard<'_, McpEndpoint> {
        self.inner.mcp.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, WorkerHandle>> {
        self.inner.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.inner.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends a tell (if still open) and tells its waiters.
    pub(crate) fn finish(
        &self,
        t: &Tell,
        state: TellState,
        outcome: TellOutcome,
    ) -> RouterResult<Option<Tell>> {
        let done = self.finish_unannounced(t, state, outcome)?;
        if let Some(done) = &done {
            self.notify(done);
        }
        Ok(done)
    }

    /// Ends a tell (if still open) without telling its waiters yet: the caller does
    /// ([`Router::notify`]) once the rest of the turn's end is recorded.
    pub(crate) fn finish_unannounced(
        &self,
        t: &Tell,
        state: TellState,
        mut outcome: TellOutcome,
    ) -> RouterResult<Option<Tell>> {
        outcome = redacted(outcome);
        let done = self
            .inner
            .manager
            .store()
            .finish_tell(&t.tell_id, state, &outcome, now_ms())?;
        if let Some(done) = &done {
            self.ended(done);
        }
        Ok(done)
    }

    /// What follows a tell's end once it is stored: its event, its open children cancelled
    /// unless it was answered (nobody will read what they bring back), the counters. Its
    /// waiters are told next ([`Router::notify`]).
    pub(crate) fn ended(&self, done: &Tell) {
        publish_end(&self.inner.manager, done);
        if done.state != TellState::Answered {
            if let Ok(children) = self.inner.manager.store().open_child_tells(&done.tell_id) {
                for child in children {
                    if let Err(e) = self.cancel_tell(&child.tell_id) {
                        tracing::warn!(tell = %child.tell_id, error = %e, "cannot cancel a child tell");
                    }
                }
            }
        }
        let c = &self.inner.counters;
        match done.state {
            TellState::Answered => c.answered.fetch_add(1, Ordering::Relaxed),
            TellState::Failed => c.failed.fetch_add(1, Ordering::Relaxed),
            _ => c.cancelled.fetch_add(1, Ordering::Relaxed),
        };
    }

    fn notify(&self, t: &Tell) {
        let waiters = {
            let mut w = self.lock_waiters();
            w.open_here.remove(&t.tell_id);
            w.by_tell.remove(&t.tell_id)
        };
        for w in waiters.into_iter().flatten() {
            let _ = w.send(t.clone());
        }
    }
}

/// Validates and stores a tell as `queued` (creating the pair's session if needed), without
/// delivering it: the next process working on the pair does.
pub fn queue_tell(
    m: &SessionManager,
    from: &str,
    to: &str,
    kind: TellKind,
    text: &str,
    parent_tell_id: Option<&str>,
) -> RouterResult<Tell> {
    let options = TellOptions {
        parent_tell_id,
        ..Default::default()
    };
    queue_tell_with(m, from, to, kind, text, &options)
}

/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// [`queue_tell`] with an idempotency key and the tell it retries (see [`TellOptions`]).
pub fn queue_tell_with(
    m: &SessionManager,
    from: &str,
    to: &str,
    kind: TellKind,
    text: &str,
    options: &TellOptions<'_>,
) -> RouterResult<Tell> {
    let ids = match check_tell(m, from, to, kind, text, options)? {
        Checked::Stored(t) => return Ok(*t),
        Checked::New(ids) => ids,
    };
    let new = ids.tell(from, to, kind, text, options);
    let t = match plain(options) {
        true => m.store().insert_tell(&new, now_ms())?,
        false => return insert_keyed(m, &new, to, kind, text, options),
    };
    publish_queued(m, &t);
    Ok(t)
}

/// [`queue_tell_with`] for a caller that can wait without holding its thread: a tell without
/// a key goes through the store's batch-write thread (`SessionManager::insert_tell_batched`),
/// with the writes of other pairs' tells and turns meanwhile. Stored when this returns.
/// With a `handoff` (a plain tell only), a tell whose pair has a session and nothing else open
/// is delivered in the same write and goes to `handoff` (true comes back: its queued event is
/// left to whoever takes it); `handoff` always hears what happened, once.
async fn queue_tell_batched(
    m: &SessionManager,
    from: &str,
    to: &str,
    kind: TellKind,
    text: &str,
    options: &TellOptions<'_>,
    handoff: Option<Handoff>,
) -> RouterResult<(Tell, bool)> {
    if plain(options) {
        match queue_for_pair(m, from, to, kind, text, options, handoff).await? {
            Some((t, true)) => return Ok((t, true)),
            Some((t, false)) => {
                publish_queued(m, &t);
                return Ok((t, false));
            }
            None => {}
        }
    }
    let ids = match check_tell(m, from, to, kind, text, options)? {
        Checked::Stored(t) => return Ok((*t, false)),
        Checked::New(ids) => ids,
    };
    let new = ids.tell(from, to, kind, text, options);
    if !plain(options) {
        return Ok((insert_keyed(m, &new, to, kind, text, options)?, false));
    }
    let t = m.insert_tell_batched(&new).await?;
    publish_queued(m, &t);
    Ok((t, false))
}

/// A plain tell (see [`plain`]) of a pair whose session exists: the checks that need no
/// store here, then the session, the limits and the insert in one write of the batch thread,
/// on its connection (the reads of [`check_tell`] cost more on a reader, whose cache every
/// commit empties). `None` when the pair has no session yet: [`check_tell`] creates it (after
/// the limits, so a refused tell leaves nothing behind). With the tell, whether its turn began
/// in that write (only with a `handoff`, which hears of it).
async fn queue_for_pair(
    m: &SessionManager,
    from: &str,
    to: &str,
    kind: TellKind,
    text: &str,
    options: &TellOptions<'_>,
    handoff: Option<Handoff>,
) -> RouterResult<Option<(Tell, bool)>> {
    let limits = (kind == TellKind::Tell).then(|| tell_limits(m));
    if limits.is_some() {
        check_message(text, m.config().settings.max_message_bytes)?;
    }
    m.check_team(from)?;
    m.check_team(to)?;
    if from == to {
        return Err(SessionError::SelfPair(from.to_string()).into());
    }
    check_agent_kind(m, to)?;
    let tell_id = uuid::Uuid::new_v4().to_string();
    let new = NewTell {
        tell_id: &tell_id,
        session_id: "",
        from_team: from,
        to_team: to,
        kind,
        text,
        parent_tell_id: options.parent_tell_id,
    };
    match m
        .insert_tell_for_pair_batched(&new, limits, handoff)
        .await?
    {
        PairInsert::Stored(t) => Ok(Some((*t, false))),
        PairInsert::Begun(b) => Ok(Some((b.0, true))),
        PairInsert::NoSession => Ok(None),
        PairInsert::Limited(hit) => Err(limit_error(m, from, to, text, hit, now_ms())),
    }
}

/// A tell without an idempotency key that retries nothing: nothing can conflict with it.
fn plain(options: &TellOptions<'_>) -> bool {
    options.idempotency_key.is_none() && options.retry_of.is_none()
}

/// What [`check_tell`] found: the tell already stored under the caller's key, or what a new
/// tell needs.
enum Checked {
    Stored(Box<Tell>),
    New(NewIds),
}

/// The session and the id of a tell about to be stored.
struct NewIds {
    session_id: String,
    tell_id: String,
}

impl NewIds {
    fn tell<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
        kind: TellKind,
        text: &'a str,
        options: &TellOptions<'a>,
    ) -> NewTell<'a> {
        NewTell {
            tell_id: &self.tell_id,
            session_id: &self.session_id,
            from_team: from,
            to_team: to,
            kind,
            text,
            parent_tell_id: options.parent_tell_id,
        }
    }
}

/// Everything before a new tell is stored: the key (a request made again gets its tell back),
/// the message and the limits, the pair's session, the callee's agent kind.
fn check_tell(
    m: &SessionManager,
    from: &str,
    to: &str,
    kind: TellKind,
    text: &str,
    options: &TellOptions<'_>,
) -> RouterResult<Checked> {
    if let Some(key) = options.idempotency_key {
        if key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY
            || key.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(RouterError::IdempotencyKey(format!(
                "{key:?} is not a valid key: use 1 to {MAX_IDEMPOTENCY_KEY} bytes without spaces or control characters"
            )));
        }
        if let Some(existing) = m.store().tell_by_key(from, key)? {
            return same_request(existing, key, to, kind, text)
                .map(|t| Checked::Stored(Box::new(t)));
        }
    }
    if kind == TellKind::Tell {
        check_message(text, m.config().settings.max_message_bytes)?;
        check_limits(m, from, to, text)?;
    }
    let session = m.get_or_create(from, to)?;
    check_agent_kind(m, to)?;
    Ok(Checked::New(NewIds {
        session_id: session.session_id.clone(),
        tell_id: uuid::Uuid::new_v4().to_string(),
    }))
}

/// Stores a tell with an idempotency key or one that retries another.
fn insert_keyed(
    m: &SessionManager,
    new: &NewTell<'_>,
    to: &str,
    kind: TellKind,
    text: &str,
    options: &TellOptions<'_>,
) -> RouterResult<Tell> {
    match m
        .store()
        .insert_tell_keyed(new, options.idempotency_key, options.retry_of, now_ms())?
    {
        Ok(t) => {
            publish_queued(m, &t);
            Ok(t)
        }
        // Another caller stored a tell with this key between our look-up and our insert.
        Err(existing) => same_request(
            existing,
            options.idempotency_key.unwrap_or_default(),
            to,
            kind,
            text,
        ),
    }
}

fn tell_event(t: &Tell, kind: EventKind) -> NewEvent {
    NewEvent::pair(&t.from_team, &t.to_team, kind)
        .session(&t.session_id)
        .tell(Some(&t.tell_id))
}

/// A tell's outcome as it may be stored: an error can quote the agent's stderr or an API error
/// holding a secret.
pub(crate) fn redacted(mut outcome: TellOutcome) -> TellOutcome {
    outcome.error = outcome.error.map(|e| crate::redact::text(&e));
    outcome
}

/// Publishes that a tell was stored, waiting for its pair's agent.
fn publish_queued(m: &SessionManager, t: &Tell) {
    m.events().publish(tell_event(
        t,
        EventKind::TellQueued {
            kind: t.kind.as_str().to_string(),
            bytes: t.text.len() as u64,
            parent_tell_id: t.parent_tell_id.clone(),
        },
    ));
}

/// Publishes how a tell ended (answered, failed, timed out, cancelled), from its stored row.
fn publish_end(m: &SessionManager, t: &Tell) {
    let kind = match t.state {
        TellState::Answered => EventKind::TellAnswered {
            input_tokens: t.input_tokens.unwrap_or(0),
            output_tokens: t.output_tokens.unwrap_or(0),
            cost_usd: t.cost_usd.unwrap_or(0.0),
            duration_ms: t.duration_ms.unwrap_or(0),
        },
        TellState::Cancelled => EventKind::TellCancelled {
            reason: t.error.clone().unwrap_or_else(|| "cancelled".into()),
        },
        TellState::Failed => {
            let error = t.error.clone().unwrap_or_default();
            let state = if error.starts_with("timeout") {
                "timed_out"
            } else {
                "failed"
            };
            EventKind::TellFailed {
                state: state.into(),
                error,
            }
        }
        TellState::Queued | TellState::Delivered => return,
    };
    m.events().publish(tell_event(t, kind));
}

/// The tell already stored under an idempotency key, if it is the same request (same pair,
/// kind and text); else an error naming the difference.
fn same_request(
    existing: Tell,
    key: &str,
    to: &str,
    kind: TellKind,
    text: &str,
) -> RouterResult<Tell> {
    let differs = if existing.to_team != to {
        Some(format!("to team {}", existing.to_team))
    } else if existing.kind != kind || existing.text != text {
        Some("with a different text".to_string())
    } else {
        None
    };
    match differs {
        None => Ok(existing),
        Some(what) => Err(RouterError::IdempotencyKey(format!(
            "{key:?} was already used for tell {} {what}; use a new key for a new tell",
            existing.tell_id
        ))),
    }
}

/// A tell by its id or a unique prefix of it (at least [`MIN_TELL_PREFIX`] characters).
pub fn find_tell(m: &SessionManager, id: &str) -> RouterResult<Tell> {
    if let Some(t) = m.store().get_tell(id)? {
        return Ok(t);
    }
    if id.chars().count() < MIN_TELL_PREFIX {
        return Err(RouterError::TellIdTooShort(id.to_string()));
    }
    let valid = id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if !valid {
        return Err(RouterError::TellNotFound(id.to_string()));
    }
    let mut found = m.store().tells_by_id_prefix(id, 2)?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(RouterError::TellNotFound(id.to_string())),
        _ => Err(RouterError::AmbiguousTell(id.to_string())),
    }
}

/// The tell `id` (or a unique prefix) if it can be retried: a message that failed or was
/// cancelled.
pub fn retryable(m: &SessionManager, id: &str) -> RouterResult<Tell> {
    let t = find_tell(m, id)?;
    let why = match t.state {
        _ if t.kind != TellKind::Tell => Some("it is a compaction (use `sessions compact`)"),
        TellState::Queued | TellState::Delivered => Some("it has not ended yet"),
        TellState::Answered => Some("it was answered; send a new tell instead"),
        TellState::Failed | TellState::Cancelled => None,
    };
    match why {
        Some(why) => Err(RouterError::NotRetryable {
            tell_id: t.tell_id,
            why: why.to_string(),
        }),
        None => Ok(t),
    }
}

/// Stores a copy of a failed or cancelled tell as `queued`, without delivering it (see
/// [`Router::retry`]).
pub fn queue_retry(m: &SessionManager, id: &str) -> RouterResult<Tell> {
    let original = retryable(m, id)?;
    queue_tell_with(
        m,
        &original.from_team,
        &original.to_team,
        original.kind,
        &original.text,
        &TellOptions {
            retry_of: Some(&original.tell_id),
            ..Default::default()
        },
    )
}

/// The last `limit` tells of a pair, oldest first; both teams must be in the config.
pub fn report_tells(
    m: &SessionManager,
    from: &str,
    to: &str,
    limit: u32,
) -> RouterResult<Vec<Tell>> {
    m.check_team(from)?;
    m.check_team(to)?;
    Ok(m.store().recent_tells(from, to, limit)?)
}

/// The window of `settings.tells_per_minute`.
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// When to try again after a full queue: about when some of it may be answered.
const QUEUE_RETRY: Duration = Duration::from_secs(60);

/// Every tell is a paid model call, and a queue is stored text: a new message from `from` to
/// `to` must fit the pair's queue (`settings.max_queued_per_pair`,
/// `settings.max_queued_bytes_per_pair`) and the calling team's rate
/// (`settings.tells_per_minute`). Checked before storing; concurrent callers may pass the
/// limits by the few tells they store at the same moment.
pub fn check_limits(m: &SessionManager, from: &str, to: &str, text: &str) -> RouterResult<()> {
    let limits = tell_limits(m);
    let (open, bytes) = m.store().open_tells_load(from, to)?;
    let open = u64::try_from(open).unwrap_or(0);
    let bytes = u64::try_from(bytes).unwrap_or(0);
    let now = now_ms();
    let hit = if open >= limits.max_open {
        Some(LimitHit::Open(open))
    } else if open > 0 && bytes.saturating_add(text.len() as u64) > limits.max_open_bytes {
        Some(LimitHit::OpenBytes(bytes))
    } else {
        m.store()
            .nth_tell_time_since(from, now - limits.window_ms, limits.per_window)?
            .map(LimitHit::PerWindow)
    };
    match hit {
        Some(hit) => Err(limit_error(m, from, to, text, hit, now)),
        None => Ok(()),
    }
}

/// The settings' limits of a new message.
fn tell_limits(m: &SessionManager) -> TellLimits {
    let settings = &m.config().settings;
    TellLimits {
        max_open: settings.max_queued_per_pair,
        max_open_bytes: settings.max_queued_bytes_per_pair,
        per_window: usize::try_from(settings.tells_per_minute).unwrap_or(usize::MAX),
        window_ms: i64::try_from(RATE_WINDOW.as_millis()).unwrap_or(i64::MAX),
    }
}

/// The error of a limit a message would pass (found at `now`).
fn limit_error(
    m: &SessionManager,
    from: &str,
    to: &str,
    text: &str,
    hit: LimitHit,
    now: i64,
) -> RouterError {
    let limits = tell_limits(m);
    match hit {
        LimitHit::Open(open) => RouterError::Limited {
            setting: "max_queued_per_pair",
            what: format!(
                "{from} -> {to} already has {open} tells waiting or being answered, the most \
                 allowed is {}",
                limits.max_open
            ),
            retry_after: QUEUE_RETRY,
        },
        LimitHit::OpenBytes(bytes) => {
            let len = text.len() as u64;
            RouterError::Limited {
                setting: "max_queued_bytes_per_pair",
                what: format!(
                    "{from} -> {to} already has {bytes} bytes of messages waiting; {len} more \
                     would pass the most allowed, {} bytes",
                    limits.max_open_bytes
                ),
                retry_after: QUEUE_RETRY,
            }
        }
        LimitHit::PerWindow(oldest) => {
            // Newest first: one more may be sent once the limit-th newest leaves the window.
            let freed_at = oldest + limits.window_ms;
            let wait = u64::try_from((freed_at - now).max(1_000)).unwrap_or(1_000);
            RouterError::Limited {
                setting: "tells_per_minute",
                what: format!(
                    "{from} already sent {} tells in the last minute, which is the most allowed",
                    limits.per_window
                ),
                retry_after: Duration::from_millis(wait.div_ceil(1_000) * 1_000),
            }
        }
    }
}

/// The callee team `to` is in the config and names an agent kind Switchboard can drive.
fn check_agent_kind(m: &SessionManager, to: &str) -> Result<(), RouterError> {
    let team = m
        .config()
        .team(to)
        .ok_or_else(|| RouterError::Agent(format!("team {to} vanished from the config")))?;
    if adapter_for(&team.agent).is_none() {
        return Err(RouterError::UnknownAgent {
            team: to.to_string(),
            agent: team.agent.clone(),
        });
    }
    Ok(())
}

/// A message must be non-empty and at most `limit` bytes (`settings.max_message_bytes`).
pub fn check_message(text: &str, limit: usize) -> RouterResult<()> {
    if text.trim().is_empty() {
        return Err(RouterError::BadMessage("the message is empty".into()));
    }
    if text.len() > limit {
        return Err(RouterError::BadMessage(format!(
            "the message is {} bytes, over the limit of {limit} bytes (settings.max_message_bytes)",
            text.len()
        )));
    }
    Ok(())
}
