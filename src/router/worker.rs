//! The worker of one pair: delivers the pair's queued tells one at a time, oldest first, to the
//! callee's agent (started on demand, resumed when it has a transcript), reads the agent's
//! events until the result, and records everything through the SessionManager. Stops the agent
//! when idle too long, when the pool needs its slot, or at shutdown.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::approvals::PendingSet;
use super::{Interrupt, Router, RouterError, RouterResult};
use crate::agent::adapter::{adapter_for, AgentAdapter, SessionRef};
use crate::agent::event::{AgentEvent, TurnResult};
use crate::agent::process::StdoutLine;
use crate::agent::session::AgentSession;
use crate::agent::supervisor::Slot;
use crate::config::TeamConfig;
use crate::events::{EventKind, NewEvent};
use crate::store::{ProcessState, Session, Tell, TellKind, TellState};

mod activity;
mod record;
mod remote;

/// How long a stopped agent may take to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How long a stalled or abandoned agent gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_millis(1500);
/// After an interrupt, how long the agent may take to end the turn before it is killed.
const INTERRUPT_GRACE: Duration = Duration::from_secs(15);
/// How often, at most, a turn stores when its agent last printed (see `read_turn`).
const RESPONSE_WRITE_EVERY: Duration = Duration::from_secs(1);

pub(super) enum Cmd {
    /// Look at the queue.
    Wake,
    /// Start the agent now.
    Start(oneshot::Sender<RouterResult<u32>>),
    /// Stop the agent (after the queue is done).
    Sleep(oneshot::Sender<RouterResult<bool>>),
    /// Stop the agent and start a new conversation.
    Reboot(oneshot::Sender<RouterResult<Session>>),
    /// The word of whoever claimed the waiting worker ([`super::Router::claim_worker`]): a
    /// tell stored with its turn begun, to run now.
    Run(Box<(Tell, Session)>),
    /// The word of whoever claimed the waiting worker: nothing begun (a tell may have been
    /// queued).
    Released,
}

/// Whether a worker takes a tell straight from the write that stores it
/// ([`super::Router::claim_worker`]): [`READY`] only while it waits with its agent up and no
/// command of its own pending.
pub(super) mod ready {
    /// Running, starting, stopping, or without an agent.
    pub const BUSY: u8 = 0;
    /// Waiting with its agent up: a submitter may claim it.
    pub const READY: u8 = 1;
    /// Claimed: the claimer's word ([`super::Cmd::Run`] or [`super::Cmd::Released`]) always
    /// comes, and the worker acts on nothing else (it stops no agent) before it does.
    pub const CLAIMED: u8 = 2;
}

struct Live {
    /// The agent (and the adapter of the team's agent kind, which launched it).
    proc: AgentSession,
    _slot: Slot,
    /// Revoked (and its MCP config deleted) when this is dropped, with the process.
    _credential: super::callers::AgentCredential,
    slot_idle: bool,
    session_id: String,
    /// The agent's own id of the conversation, as stored with the session.
    agent_session_id: Option<String>,
    idle_since: Instant,
}

pub(super) struct Worker {
    router: Router,
    from: String,
    to: String,
    rx: mpsc::UnboundedReceiver<Cmd>,
    interrupt: Arc<Interrupt>,
    shutdown: watch::Receiver<bool>,
    agent: Option<Live>,
    /// The tell being delivered, for the events of the agent started for it.
    tell_hint: Option<String>,
    /// What the worker knows of its pair's queue without reading it (see [`QueueHint`]).
    pub(super) queue_hint: QueueHint,
    /// See [`ready`]; shared with the router's handle of this worker.
    ready: Arc<AtomicU8>,
    /// Commands that came while a claim was settling, handled before the next wait.
    deferred: VecDeque<Cmd>,
    /// Counts this worker's turn as running, from its start until its end is stored (see
    /// `SessionManager::turn_running`).
    running: Option<crate::store::TurnRunning>,
}

/// What a worker knows of its pair's queue without reading it, for its next look only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum QueueHint {
    /// Read it.
    #[default]
    Unknown,
    /// The write that ended the last turn found nothing else queued, and nothing happened
    /// since: the look is skipped. A tell this process queues later wakes the worker; one
    /// another process queues is seen at the next tick, as when the worker is idle.
    Empty,
    /// A tell was queued (a wake-up, or the end of the last turn saw one): with the agent up,
    /// the write that starts the turn finds it (no read before it).
    Queued,
}

/// How a turn ended.
enum TurnEnd {
    Result {
        result: Box<TurnResult>,
        compacted: Option<(Option<i64>, Option<i64>)>,
        interrupted: bool,
        /// The last text the agent said during the turn (kept when the turn is cut off).
        said: Option<String>,
    },
    Stalled(Duration),
    NoStart(Duration),
    Exited(String),
    /// The agent did not end the turn after an interrupt (cancel, --timeout).
    Unresponsive(String),
    Shutdown,
}

enum Idle {
    Cmd(Option<Cmd>),
    TimedOut,
    Evicted,
    Exited(String),
    Shutdown,
    Tick,
}

impl Worker {
    pub(super) fn new(
        router: Router,
        from: String,
        to: String,
        rx: mpsc::UnboundedReceiver<Cmd>,
        interrupt: Arc<Interrupt>,
        shutdown: watch::Receiver<bool>,
        ready: Arc<AtomicU8>,
    ) -> Self {
        Self {
            router,
            from,
            to,
            rx,
            interrupt,
            shutdown,
            agent: None,
            tell_hint: None,
            queue_hint: QueueHint::Unknown,
            ready,
            deferred: VecDeque::new(),
            running: None,
        }
    }

    /// Publishes an event of this pair's session (and of `tell`, if any).
    pub(super) fn event(&self, session_id: &str, tell: Option<&str>, kind: EventKind) {
        self.router.manager().events().publish(
            NewEvent::pair(&self.from, &self.to, kind)
                .session(session_id)
                .tell(tell),
        );
    }

    /// Publishes that the agent stopped, and why (`idle`, `evicted`, `stall`, `crash`, ...).
    pub(super) fn stopped_event(&self, session_id: &str, reason: &str, detail: Option<String>) {
        self.event(
            session_id,
            self.tell_hint.as_deref(),
            EventKind::AgentStopped {
                reason: reason.to_string(),
                detail: detail.map(|d| crate::events::summary::bounded(&d, 2000)),
            },
        );
    }

    fn pair(&self) -> String {
        format!("{}:{}", self.from, self.to)
    }

    fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub(super) async fn run(mut self) {
        loop {
            if self.shutting_down() {
                break;
            }
            match std::mem::take(&mut self.queue_hint) {
                QueueHint::Empty => {}
                // The queue is read in the write that starts the turn.
                QueueHint::Queued if self.agent_live() => {
                    if self.deliver_next().await {
                        continue;
                    }
                }
                QueueHint::Queued | QueueHint::Unknown => match self.next_queued() {
                    Ok(Some(tell)) => {
                        self.deliver(tell).await;
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(pair = %self.pair(), error = %e, "cannot read the queue")
                    }
                },
            }
            self.mark_idle();
            let idle = match self.deferred.pop_front() {
                Some(cmd) => Idle::Cmd(Some(cmd)),
                None => {
                    let take = self.agent_live();
                    if take {
                        self.ready.store(ready::READY, Ordering::Release);
                    }
                    let idle = self.wait_idle().await;
                    if take && self.ready.swap(ready::BUSY, Ordering::AcqRel) == ready::CLAIMED {
                        match self.settle_claim(idle).await {
                            Some(idle) => idle,
                            None => continue,
                        }
                    } else {
                        idle
                    }
                }
            };
            match idle {
                Idle::Cmd(None) | Idle::Shutdown => break,
                Idle::Cmd(Some(cmd)) => self.handle(cmd).await,
                Idle::TimedOut => self.stop_agent("idle", None).await,
                Idle::Evicted => {
                    self.stop_agent("evicted", Some("pool full: least recently used"))
                        .await
                }
                Idle::Exited(why) => self.agent_gone(&why, false).await,
                Idle::Tick => self.heartbeat(),
            }
        }
        self.stop_agent("shutdown", None).await;
        // Answer whatever command is still waiting.
        while let Some(cmd) = self
            .deferred
            .pop_front()
            .or_else(|| self.rx.try_recv().ok())
        {
            match cmd {
                Cmd::Wake | Cmd::Released => {}
                // Never sent now (a claim is settled before the worker acts on anything else);
                // it would go back to the queue.
                Cmd::Run(begun) => {
                    self.take_begun(*begun).await;
                }
                Cmd::Start(tx) => drop(tx.send(Err(RouterError::ShuttingDown))),
                Cmd::Sleep(tx) => drop(tx.send(Err(RouterError::ShuttingDown))),
                Cmd::Reboot(tx) => drop(tx.send(Err(RouterError::ShuttingDown))),
            }
        }
    }

    fn next_queued(&self) -> RouterResult<Option<Tell>> {
        Ok(self
            .router
            .manager()
            .store()
            .next_queued_tell(&self.from, &self.to)?)
    }

    fn mark_idle(&mut self) {
        if let Some(a) = self.agent.as_mut() {
            if !a.slot_idle {
                a.slot_idle = true;
                a.idle_since = Instant::now();
                a._slot.set_idle(true);
            }
        }
    }

    async fn wait_idle(&mut self) -> Idle {
        let settings = &self.router.manager().config().settings;
        let tick = settings.health_check_interval;
        let idle_timeout = self
            .team()
            .map(|t| self.router.manager().config().idle_timeout(t))
            .unwrap_or(settings.idle_timeout);
        let Some(agent) = self.agent.as_mut() else {
            return tokio::select! {
                cmd = self.rx.recv() => Idle::Cmd(cmd),
                _ = self.shutdown.changed() => Idle::Shutdown,
            };
        };
        let idle_deadline = agent.idle_since + idle_timeout;
        tokio::select! {
            cmd = self.rx.recv() => Idle::Cmd(cmd),
            _ = tokio::time::sleep_until(idle_deadline) => Idle::TimedOut,
            _ = agent._slot.evicted() => Idle::Evicted,
            why = agent.proc.exit_reason() => Idle::Exited(why),
            _ = self.shutdown.changed() => Idle::Shutdown,
            _ = tokio::time::sleep(tick) => Idle::Tick,
        }
    }

    /// The worker was claimed while it waited (`idle` is what woke it): the claimer's write
    /// decides, and its word always comes. A turn it began runs now, and `None` comes back
    /// (what woke the worker meanwhile is stale, or comes again). Otherwise what woke the
    /// worker comes back to handle as usual (`None` when that was the word itself), and the
    /// queue is read next. Other commands that come first wait in `deferred`.
    async fn settle_claim(&mut self, idle: Idle) -> Option<Idle> {
        let (mut first, stash) = match idle {
            Idle::Cmd(Some(cmd)) => (Some(cmd), None),
            other => (None, Some(other)),
        };
        loop {
            let cmd = match first.take() {
                Some(cmd) => cmd,
                None => match self.rx.recv().await {
                    Some(cmd) => cmd,
                    // The router is gone: so is the claimer.
                    None => return stash.or(Some(Idle::Cmd(None))),
                },
            };
            match cmd {
                Cmd::Run(begun) => {
                    if self.take_begun(*begun).await {
                        return None;
                    }
                    return stash;
                }
                Cmd::Released => {
                    self.queue_hint = QueueHint::Queued;
                    return stash;
                }
                Cmd::Wake => self.queue_hint = QueueHint::Queued,
                other => self.deferred.push_back(other),
            }
        }
    }

    /// A tell stored with its turn begun, handed over by the write that stored it: runs the
    /// turn on this worker's agent, and true. When the worker learned meanwhile that it should
    /// not (Switchboard is shutting down, the agent exited), the tell goes back to the queue
    /// (nothing was sent: the next process, or the agent started again, takes it), and false.
    async fn take_begun(&mut self, (tell, session): (Tell, Session)) -> bool {
        let router = self.router.clone();
        let m = router.manager();
        let session_id = session.session_id;
        let usable = !self.shutting_down()
            && self.agent_live()
            && self
                .agent
                .as_ref()
                .is_some_and(|a| a.session_id == session_id);
        if !usable {
            self.keep("the tell back in the queue", || {
                m.undeliver(&session_id, &tell.tell_id)
            })
            .await;
            self.queue_hint = QueueHint::Queued;
            return false;
        }
        router
            .inner
            .counters
            .handed_over
            .fetch_add(1, Ordering::Relaxed);
        self.run_begun(tell, session_id).await;
        self.tell_hint = None;
        true
    }

    fn heartbeat(&self) {
        if let Some(a) = &self.agent {
            if let Err(e) = self.router.manager().heartbeat(&a.session_id) {
                tracing::warn!(pair = %self.pair(), error = %e, "heartbeat failed");
            }
        }
    }

    async fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Wake | Cmd::Released => self.queue_hint = QueueHint::Queued,
            Cmd::Run(begun) => {
                self.take_begun(*begun).await;
            }
            Cmd::Start(tx) => {
                let r = match self.ensure_agent(false).await {
                    Ok(_) => self.probe_ready().await,
                    Err(e) => Err(e),
                };
                let _ = tx.send(r);
            }
            Cmd::Sleep(tx) => {
                let was = self.agent.is_some();
                self.stop_agent("sleep", None).await;
                let _ = tx.send(Ok(was));
            }
            Cmd::Reboot(tx) => {
                self.stop_agent("reboot", None).await;
                let m = self.router.manager();
                let r = (|| -> RouterResult<Session> {
                    let s = m.get_or_create(&self.from, &self.to)?;
                    // Holding the lease keeps another process from starting the old
                    // conversation while the id changes.
                    let taken = m.acquire_lease(&s.session_id)?;
                    match m.reboot(&taken.session_id) {
                        Ok(rebooted) => {
                            let released = m.release_lease(&rebooted.session_id)?;
                            Ok(released.unwrap_or(rebooted))
                        }
                        Err(e) => {
                            m.release_lease(&taken.session_id).ok();
                            Err(e.into())
                        }
                    }
                })();
                let _ = tx.send(r);
            }
        }
    }

    /// Proves a just-started agent is up, without a model call, where the agent has a way
    /// (Claude Code answers an `initialize` control request). Returns its pid.
    async fn probe_ready(&mut self) -> RouterResult<u32> {
        let timeout = self.router.manager().config().settings.spawn_timeout;
        let Some(agent) = self.agent.as_mut() else {
            return Err(RouterError::Agent("the agent stopped".into()));
        };
        let pid = agent.proc.identity().pid;
        let session_id = agent.session_id.clone();
        let failure = match agent.proc.probe(timeout).await {
            Ok(proved) => {
                if proved {
                    self.event(&session_id, None, EventKind::AgentReady { pid });
                }
                return Ok(pid);
            }
            Err(f) => f,
        };
        // The agent has been killed.
        if let Some(a) = self.agent.take() {
            self.forget_remote(&session_id, &a.proc);
            a.release().await;
        }
        let result = failure.detail().to_string();
        self.stopped_event(&session_id, failure.reason(), Some(result.clone()));
        let m = self.router.manager();
        m.mark_error(&session_id, &result).ok();
        m.release_lease(&session_id).ok();
        Err(RouterError::Agent(result))
    }

    fn team(&self) -> Option<&TeamConfig> {
        self.router.manager().config().team(&self.to)
    }

    /// Makes sure the pair's agent is running: takes the lease, a pool slot, and spawns the
    /// agent (resuming the conversation when it has a transcript). With `for_queue`, an agent
    /// is started only while the pair has a queued tell: a process that waited for the lease
    /// while another process delivered everything returns `Ok(false)` and starts nothing.
    async fn ensure_agent(&mut self, for_queue: bool) -> RouterResult<bool> {
        if let Some(a) = self.agent.as_mut() {
            if !a.proc.has_exited() {
                return Ok(true);
            }
            let why = a.proc.exit_reason().await;
            self.agent_gone(&why, false).await;
        }
        let router = self.router.clone();
        let m = router.manager();
        let team = self
            .team()
            .cloned()
            .ok_or_else(|| RouterError::Agent(format!("team {} is not in the config", self.to)))?;
        let adapter = adapter_for(&team.agent).ok_or_else(|| RouterError::UnknownAgent {
            team: team.name.clone(),
            agent: team.agent.clone(),
        })?;
        let session = m.get_or_create(&self.from, &self.to)?;
        let Some(session) = self.acquire_lease(&session.session_id, for_queue).await? else {
            return Ok(false);
        };
        if for_queue && self.next_queued()?.is_none() {
            // Delivered by the process that held the lease meanwhile: nothing left to start for.
            m.release_lease(&session.session_id).ok();
            return Ok(false);
        }
        let slot = {
            let pair = self.pair();
            let acquire = router.inner.supervisor.acquire(&pair);
            tokio::select! {
                slot = acquire => slot,
                _ = self.shutdown.changed() => {
                    m.release_lease(&session.session_id).ok();
                    return Err(RouterError::ShuttingDown);
                }
            }
        };
        let resume = match self.remote_can_resume(&team, &session).await {
            Some(Ok(resume)) => resume,
            Some(Err(e)) => {
                m.release_lease(&session.session_id).ok();
                m.mark_error(&session.session_id, &e.to_string()).ok();
                return Err(e);
            }
            None => adapter.can_resume(
                &team,
                &SessionRef {
                    session_id: &session.session_id,
                    agent_session_id: session.agent_session_id.as_deref(),
                    resume: false,
                },
            ),
        };
        match self.spawn(adapter, &team, &session, resume, slot).await {
            Ok(()) => Ok(true),
            Err(e) => {
                m.release_lease(&session.session_id).ok();
                m.mark_error(&session.session_id, &e.to_string()).ok();
                Err(e)
            }
        }
    }

    /// Takes the session's lease. Held by another live process: busy at once, or, when the
    /// router was asked to wait (`Router::wait_when_busy`), polls until it is free, the wait
    /// runs out, or shutdown. With `for_queue`, the wait also ends (`Ok(None)`) once the pair
    /// has no queued tell left (the holder delivered them).
    async fn acquire_lease(
        &mut self,
        session_id: &str,
        for_queue: bool,
    ) -> RouterResult<Option<Session>> {
        let m = self.router.manager().clone();
        let deadline = self.router.busy_wait().map(|d| Instant::now() + d);
        loop {
            match m.acquire_lease(session_id) {
                Err(crate::session::SessionError::Busy { .. })
                    if deadline.is_some_and(|d| Instant::now() < d) =>
                {
                    if for_queue && self.next_queued()?.is_none() {
                        return Ok(None);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = self.shutdown.changed() => return Err(RouterError::ShuttingDown),
                    }
                }
                other => return Ok(Some(other?)),
            }
        }
    }

    async fn spawn(
        &mut self,
        adapter: &'static dyn AgentAdapter,
        team: &TeamConfig,
        session: &Session,
        resume: bool,
        slot: Slot,
    ) -> RouterResult<()> {
        let m = self.router.manager();
        // Dropped (token revoked, file deleted) on every path where no live agent keeps it.
        let host = crate::agent::ssh::ops::team_host(team)
            .transpose()
            .map_err(|e| RouterError::Agent(format!("team {}: {e}", team.name)))?;
        // A remote agent gets its MCP wiring from the one hook for it, never a local file.
        let (extras, credential) = match &host {
            Some(host) => {
                self.remote_extras(adapter, team, host, &session.session_id)
                    .await?
            }
            None => self
                .router
                .agent_launch_extras(adapter, team, &session.session_id)?,
        };
        let session_ref = SessionRef {
            session_id: &session.session_id,
            agent_session_id: session.agent_session_id.as_deref(),
            resume,
        };
        let mut spec = adapter.launch(team, &session_ref, &extras);
        // A remote agent's MCP config, inline (see worker/remote.rs).
        credential.apply(&mut spec);
        m.update_debug_info(
            &session.session_id,
            &spec.redacted_json(),
            &team.redacted_snapshot().to_string(),
        )?;
        m.update_process_state(&session.session_id, ProcessState::Spawning)?;
        self.event(
            &session.session_id,
            self.tell_hint.as_deref(),
            EventKind::AgentSpawning { resume },
        );
        let log = self
            .router
            .log_dir()
            .join(format!("{}.stderr.log", session.session_id));
        let proc = match &host {
            Some(host) => {
                self.spawn_remote(adapter, team, host, &spec, &log, session)
                    .await
            }
            None => AgentSession::spawn(adapter, &spec, &log).map_err(|mut e| {
                // Name the team: the hint says which entry's agent_path to set.
                if let crate::agent::AgentError::Spawn { team: t, .. } = &mut e {
                    t.clone_from(&team.name);
                }
                RouterError::Agent(e.to_string())
            }),
        };
        let mut proc = match proc {
            Ok(p) => p,
            Err(e) => {
                credential.close().await;
                self.stopped_event(&session.session_id, "crash", Some(e.to_string()));
                return Err(e);
            }
        };
        proc.open_conversation(&session_ref);
        self.router
            .counters()
            .spawned
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(pair = %self.pair(), pid = proc.identity().pid, resume, "agent started");
        m.set_agent(&session.session_id, Some(proc.identity()))?;
        m.update_process_state(&session.session_id, ProcessState::Idle)?;
        self.agent = Some(Live {
            proc,
            _slot: slot,
            _credential: credential,
            slot_idle: false,
            session_id: session.session_id.clone(),
            agent_session_id: session.agent_session_id.clone(),
            idle_since: Instant::now(),
        });
        Ok(())
    }

    /// Stops the agent (if any): terminating → SIGTERM, grace, SIGKILL → lease released
    /// (stopped). `why` is the reason of the `agent_stopped` event (`idle`, `evicted`,
    /// `shutdown`, `sleep`, `reboot`).
    async fn stop_agent(&mut self, why: &str, detail: Option<&str>) {
        let Some(mut a) = self.agent.take() else {
            return;
        };
        let m = self.router.manager();
        m.update_process_state(&a.session_id, ProcessState::Terminating)
            .ok();
        let status = a.proc.stop(STOP_GRACE).await;
        self.forget_remote(&a.session_id, &a.proc);
        tracing::info!(pair = %self.pair(), pid = a.proc.identity().pid, ?status, why, detail, "agent stopped");
        // Its credential goes before the lease: the next holder writes the session's config.
        let session_id = a.session_id.clone();
        a.release().await;
        self.stopped_event(&session_id, why, detail.map(str::to_string));
        m.release_lease(&session_id).ok();
    }

    /// The agent exited on its own: record it and give everything back.
    async fn agent_gone(&mut self, why: &str, in_turn: bool) {
        let Some(mut a) = self.agent.take() else {
            return;
        };
        a.proc.kill().await; // whatever is left of its group
        self.forget_remote(&a.session_id, &a.proc);
        let m = self.router.manager();
        if in_turn {
            m.mark_error(&a.session_id, why).ok();
        }
        tracing::warn!(pair = %self.pair(), why, "agent exited");
        let session_id = a.session_id.clone();
        a.release().await;
        self.stopped_event(&session_id, "crash", Some(why.to_string()));
        m.release_lease(&session_id).ok();
    }

    /// Delivers one tell and records its end.
    async fn deliver(&mut self, tell: Tell) {
        self.tell_hint = Some(tell.tell_id.clone());
        self.deliver_one(tell).await;
        self.tell_hint = None;
    }

    async fn deliver_one(&mut self, tell: Tell) {
        let router = self.router.clone();
        let m = router.manager();
        // A live agent means this process held the lease all along: the tell is still the
        // oldest queued one.
        let held = self.agent.as_mut().is_some_and(|a| !a.proc.has_exited());
        match self.ensure_agent(true).await {
            Ok(true) => {}
            Ok(false) => return, // nothing queued any more
            // Stopping is not the tell's fault: it stays queued for the next process.
            Err(RouterError::ShuttingDown) => return,
            Err(e) => {
                self.fail(&tell, TellState::Failed, &e.to_string(), None)
                    .await;
                return;
            }
        }
        // The lease may have come after a wait during which another process delivered the
        // tell picked before: the agent (started for the queue) takes what is oldest now.
        let tell = if held {
            tell
        } else {
            match self.next_queued() {
                Ok(Some(next)) => next,
                Ok(None) => return,
                Err(_) => tell,
            }
        };
        let Some(agent) = self.agent.as_ref() else {
            return;
        };
        let session_id = agent.session_id.clone();
        let tell = match m.begin_turn_batched(&session_id, &tell.tell_id).await {
            Ok(Some(t)) => t,
            Ok(None) => return, // cancelled meanwhile
            Err(e) => {
                tracing::error!(error = %e, "cannot mark the tell delivered; retrying shortly");
                // Rate-limit the retry of a database that keeps failing.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return;
            }
        };
        self.run_begun(tell, session_id).await;
    }

    /// Whether the pair's agent is up (this process holds the lease).
    fn agent_live(&mut self) -> bool {
        self.agent.as_mut().is_some_and(|a| !a.proc.has_exited())
    }

    /// With the agent up: starts the turn of the pair's oldest queued tell (looked up in the
    /// write that marks it delivered) and runs it. False when nothing was queued.
    async fn deliver_next(&mut self) -> bool {
        let router = self.router.clone();
        let m = router.manager();
        let Some(session_id) = self.agent.as_ref().map(|a| a.session_id.clone()) else {
            return false;
        };
        let tell = match m
            .begin_next_turn_batched(&session_id, &self.from, &self.to)
            .await
        {
            Ok(Some(t)) => t,
            Ok(None) => return false,
            Err(e) => {
                tracing::error!(error = %e, "cannot mark the tell delivered; retrying shortly");
                // Rate-limit the retry of a database that keeps failing.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return true;
            }
        };
        self.run_begun(tell, session_id).await;
        self.tell_hint = None;
        true
    }

    /// The turn of a tell just marked delivered: tells the agent, reads the turn, records it.
    /// Counted as running meanwhile (until its end is stored).
    async fn run_begun(&mut self, tell: Tell, session_id: String) {
        self.running = self.router.manager().turn_running();
        self.run_turn_of(tell, session_id).await;
        self.running = None;
    }

    async fn run_turn_of(&mut self, tell: Tell, session_id: String) {
        let router = self.router.clone();
        let m = router.manager();
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        agent.slot_idle = false;
        agent._slot.set_idle(false);
        // The adapter that launched the agent (never a guess from the current config).
        let adapter = agent.proc.adapter();
        self.tell_hint = Some(tell.tell_id.clone());
        self.event(&session_id, Some(&tell.tell_id), EventKind::TellDelivered);
        if tell.kind == TellKind::Compact {
            if let Ok(Some(s)) = m.get_by_id(&session_id) {
                if let Err(e) = m.begin_compaction(&s) {
                    self.fail(&tell, TellState::Failed, &e.to_string(), None)
                        .await;
                    m.update_process_state(&session_id, ProcessState::Idle).ok();
                    m.set_current_tell(&session_id, None).ok();
                    return;
                }
                self.event(&session_id, Some(&tell.tell_id), EventKind::CompactionBegin);
            }
        }
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let sent = match tell.kind {
            TellKind::Tell => agent.proc.send_message(&tell.text).await,
            TellKind::Compact => agent.proc.send_compact().await,
        };
        let end = match sent {
            Ok(()) => self.run_turn(adapter, &tell.tell_id, &session_id).await,
            Err(why) => TurnEnd::Exited(why),
        };
        self.record(&tell, &session_id, end).await;
    }

    /// Reads events until the turn's result, a stall, the agent's exit or shutdown. The
    /// agent's permission requests of the turn are decided meanwhile; what is still pending
    /// when the turn ends expires.
    async fn run_turn(
        &mut self,
        adapter: &dyn AgentAdapter,
        tell_id: &str,
        session_id: &str,
    ) -> TurnEnd {
        let mut pending = PendingSet::new(
            self.router.manager().clone(),
            &self.from,
            &self.to,
            session_id,
            tell_id,
        );
        let end = self
            .read_turn(adapter, tell_id, session_id, &mut pending)
            .await;
        if pending.is_waiting() {
            pending.expire_all(match &end {
                TurnEnd::Result { .. } => "the turn ended before a decision",
                TurnEnd::Stalled(_) | TurnEnd::NoStart(_) => "the agent stalled and was stopped",
                TurnEnd::Exited(_) => "the agent that asked is gone (it exited)",
                TurnEnd::Unresponsive(_) => "the agent stopped answering and was stopped",
                TurnEnd::Shutdown => "Switchboard shut down; the agent that asked is gone",
            });
        }
        end
    }

    async fn read_turn(
        &mut self,
        adapter: &dyn AgentAdapter,
        tell_id: &str,
        session_id: &str,
        pending: &mut PendingSet,
    ) -> TurnEnd {
        let settings = self.router.manager().config().settings.clone();
        let m = self.router.manager().clone();
        let counters = &self.router.inner.counters;
        let mut activity =
            activity::TurnActivity::new(m.events(), &self.from, &self.to, session_id, tell_id);
        let Some(agent) = self.agent.as_mut() else {
            return TurnEnd::Exited("no agent".into());
        };
        let has_permissions = self
            .router
            .manager()
            .config()
            .team(&self.to)
            .is_some_and(|t| t.permissions.is_some());
        let mut compacted = None;
        let mut said = None;
        let mut interrupted = false;
        let mut interrupt_deadline: Option<Instant> = None;
        let mut shutdown_deadline: Option<Instant> = None;
        let mut last_output = Instant::now();
        // When the agent last printed is for people (`sessions show`): stored at most once per
        // RESPONSE_WRITE_EVERY while a turn runs (a commit per line would cost more than the
        // turn's other writes together), and exactly with the turn's end. A turn shorter than
        // that stores it once, with its end.
        let mut response_written = Instant::now();
        let mut note_response = |session: &str| {
            if response_written.elapsed() >= RESPONSE_WRITE_EVERY {
                m.update_last_response(session).ok();
                response_written = Instant::now();
            }
        };
        loop {
            let (limit, stall_at) = if agent.proc.is_started() {
                (
                    settings.response_timeout,
                    last_output + settings.response_timeout,
                )
            } else {
                (
                    settings.spawn_timeout,
                    agent.proc.spawned_at().max(last_output) + settings.spawn_timeout,
                )
            };
            let far = Instant::now() + Duration::from_secs(86_400 * 365);
            tokio::select! {
                line = agent.proc.recv() => {
                    last_output = Instant::now();
                    match line {
                        None | Some(StdoutLine::Closed(_)) => {
                            let why = agent.proc.exit_reason().await;
                            return if agent.proc.is_started() {
                                TurnEnd::Exited(format!("agent exited mid-turn: {why}"))
                            } else {
                                TurnEnd::Exited(format!("agent exited before it started: {why}"))
                            };
                        }
                        Some(StdoutLine::Bad(bad)) => {
                            counters.bad_lines.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(pair = %format!("{}:{}", self.from, self.to), "agent printed a line that is not an event: {bad}");
                            note_response(&agent.session_id);
                        }
                        Some(StdoutLine::Event(ev)) => {
                            if !agent.proc.is_started() {
                                m.events().publish(
                                    NewEvent::pair(&self.from, &self.to, EventKind::AgentReady { pid: agent.proc.identity().pid })
                                        .session(session_id)
                                        .tell(Some(tell_id)),
                                );
                            }
                            agent.proc.mark_started();
                            activity.on_event(&ev);
                            // The result's own time is written with the turn's end (one write).
                            if !matches!(ev, AgentEvent::Result(_)) {
                                note_response(&agent.session_id);
                            }
                            match ev {
                                AgentEvent::Result(result) => {
                                    return TurnEnd::Result { result: Box::new(result), compacted, interrupted, said };
                                }
                                AgentEvent::Assistant { text: Some(text), .. } if !text.trim().is_empty() => {
                                    said = Some(text);
                                }
                                // An agent that picks its own id of the conversation (a thread
                                // id) says it here; it is kept with the session so the next
                                // launch continues that conversation.
                                AgentEvent::Init { session_id: Some(id) }
                                    if id != agent.session_id && agent.agent_session_id.as_deref() != Some(id.as_str()) =>
                                {
                                    match m.set_agent_session_id(&agent.session_id, Some(&id)) {
                                        Ok(_) => agent.agent_session_id = Some(id),
                                        Err(e) => tracing::warn!(error = %e, "cannot record the agent's session id"),
                                    }
                                }
                                AgentEvent::CompactBoundary { pre_tokens, post_tokens, .. } => {
                                    compacted = Some((pre_tokens, post_tokens));
                                }
                                AgentEvent::ControlRequest { request_id, request } => {
                                    if let Some(line) = pending.on_request(adapter, request_id.as_deref(), &request) {
                                        if agent.proc.write(&line).await.is_err() {
                                            tracing::warn!("could not write a permission decision to the agent");
                                        }
                                    }
                                }
                                AgentEvent::ControlCancel { request_id: Some(id) } => {
                                    pending.cancelled(&id);
                                }
                                AgentEvent::PermissionDenied { tool: Some(tool), message: Some(message), tool_use_id, id } if has_permissions => {
                                    pending.denied_by_agent(&tool, &message, tool_use_id.as_deref(), id.as_deref());
                                }
                                _ => {}
                            }
                        }
                    }
                }
                line = pending.next_line(adapter) => {
                    // A decision: the agent goes on from here (the wait was not a stall).
                    last_output = Instant::now();
                    if agent.proc.write(&line).await.is_err() {
                        tracing::warn!("could not write a permission decision to the agent");
                    }
                }
                _ = tokio::time::sleep_until(stall_at) => {
                    // A turn waiting for a permission decision is not stalled: the request's
                    // own timeout applies.
                    if pending.is_waiting() {
                        last_output = Instant::now();
                        continue;
                    }
                    // An agent waiting for a tell it sent (a Switchboard tool call) prints
                    // nothing meanwhile: that is not a stall.
                    let waiting = m
                        .store()
                        .open_child_tells(tell_id)
                        .is_ok_and(|c| !c.is_empty());
                    if agent.proc.is_started() && waiting {
                        last_output = Instant::now();
                        continue;
                    }
                    return if agent.proc.is_started() { TurnEnd::Stalled(limit) } else { TurnEnd::NoStart(limit) };
                }
                _ = self.interrupt.wait_for(tell_id), if !interrupted => {
                    interrupted = true;
                    interrupt_deadline = Some(Instant::now() + INTERRUPT_GRACE);
                    if agent.proc.interrupt().await.is_err() {
                        tracing::warn!("could not write the interrupt to the agent");
                    }
                }
                _ = tokio::time::sleep_until(interrupt_deadline.unwrap_or(far)), if interrupt_deadline.is_some() => {
                    return TurnEnd::Unresponsive("the agent did not end the turn after an interrupt".into());
                }
                _ = self.shutdown.changed(), if shutdown_deadline.is_none() => {
                    shutdown_deadline = Some(Instant::now() + settings.shutdown_grace);
                }
                _ = tokio::time::sleep_until(shutdown_deadline.unwrap_or(far)), if shutdown_deadline.is_some() => {
                    return TurnEnd::Shutdown;
                }
            }
        }
    }
}
