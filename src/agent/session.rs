//! The live agent of one session: the process its adapter launched, and the verbs of its
//! lifecycle that the router uses without knowing which CLI it is: spawn, probe (prove it is
//! up without a model call), deliver a message or a compaction, read its decoded output,
//! answer it (permission decisions), interrupt the turn, stop it. Everything CLI-specific is
//! asked of the [`AgentAdapter`]; the router sees only [`StdoutLine`]s of [`AgentEvent`]s.
//!
//! A kind of [`ProcessModel::PerTurn`] (Gemini CLI headless) has no process between turns:
//! `spawn` starts nothing (the caller still holds the session's lease and pool slot), each
//! `send_message` starts that turn's process, and its exit after the turn's `Result` is the
//! normal end of the turn (see `PerTurn`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use super::adapter::{AgentAdapter, Conversation, Input, LaunchSpec, ProcessModel, SessionRef};
use super::event::{AgentEvent, TurnResult};
use super::process::{AgentProcess, StdoutLine};
use super::ssh::launch::{RemoteAgent, RemoteIdentity};
use super::ssh::{Host, SshError, Transport};
use super::AgentError;
use crate::util::ProcessIdentity;

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeFailure {
    /// The agent exited before it answered (the `agent_stopped` reason `crash`).
    Exited(String),
    /// It did not answer in time (`stall`); it has been killed.
    TimedOut(String),
}

impl ProbeFailure {
    /// The reason of the `agent_stopped` event.
    pub fn reason(&self) -> &'static str {
        match self {
            ProbeFailure::Exited(_) => "crash",
            ProbeFailure::TimedOut(_) => "stall",
        }
    }

    /// In words.
    pub fn detail(&self) -> &str {
        match self {
            ProbeFailure::Exited(d) | ProbeFailure::TimedOut(d) => d,
        }
    }
}

/// The live agent of one session.
pub struct AgentSession {
    /// The agent process: the session's (always there), or the running or last turn's of a
    /// [`ProcessModel::PerTurn`] kind (none before the first turn).
    proc: Option<AgentProcess>,
    adapter: &'static dyn AgentAdapter,
    /// Whether the agent has printed anything yet (before that, the spawn timeout applies).
    started: bool,
    spawned_at: Instant,
    /// What the agent said of its conversation (see [`AgentAdapter::track`]).
    conv: Conversation,
    /// Opening lines not written yet, and whether the agent has yet to name the conversation
    /// (see [`AgentAdapter::opening`]).
    opening: Opening,
    /// What was read while waiting for the conversation, for [`AgentSession::recv`].
    backlog: VecDeque<StdoutLine>,
    /// The team folder (for the adapter's opening requests).
    cwd: PathBuf,
    /// Where the agent runs when it is not on this machine (the remote process model: the
    /// local process is the `ssh` that carries its stdio).
    remote: Option<RemoteLink>,
    /// Whether the remote group is known to be stopped (a stop there succeeded).
    remote_stopped: bool,
    /// How turns are started, for a [`ProcessModel::PerTurn`] kind.
    per_turn: Option<PerTurn>,
}

/// The turns of a [`ProcessModel::PerTurn`] session: what to launch, and how the current
/// turn's process is doing.
struct PerTurn {
    /// The launch the session was spawned with (its first turn's).
    spawned: LaunchSpec,
    /// Where the turns' stderr goes.
    stderr_log: PathBuf,
    /// How many turns were started (the first runs `spawned`; later ones
    /// [`AgentAdapter::next_turn_launch`], which continues the conversation).
    turns: u32,
    /// Whether the current turn's process printed its `Result` (its exit is then normal).
    ended: bool,
    /// Whether the current turn was interrupted (SIGTERM to its group).
    interrupted: bool,
}

/// A remote agent's host and process group, and the transport that reaches it.
#[derive(Debug, Clone)]
pub struct RemoteLink {
    /// The SSH transport of this Switchboard process.
    pub transport: Transport,
    /// The team's host.
    pub host: Host,
    /// The agent's process group there.
    pub identity: RemoteIdentity,
}

/// Where a session whose CLI opens its conversation over its protocol is.
#[derive(Debug, Default)]
enum Opening {
    /// Nothing to open (the conversation was chosen at launch), or it is open.
    #[default]
    Done,
    /// These lines open it; not written yet.
    Unsent(Vec<String>),
    /// Written; the agent has not named the conversation yet.
    Waiting,
}

/// How long a message waits for the agent to open its conversation (no model call: the
/// agent's start-up only).
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);

impl std::fmt::Debug for AgentSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSession")
            .field("agent", &self.adapter.name())
            .field("pid", &self.identity().pid)
            .field("started", &self.started)
            .finish()
    }
}

impl AgentSession {
    /// Starts the agent `spec` describes (from [`AgentAdapter::launch`]), its stderr going to
    /// `stderr_log`; its output is decoded by `adapter`. Must be called from a runtime worker
    /// thread (see [`AgentProcess::spawn`]).
    pub fn spawn(
        adapter: &'static dyn AgentAdapter,
        spec: &LaunchSpec,
        stderr_log: &Path,
    ) -> Result<Self, AgentError> {
        if adapter.process_model() == ProcessModel::PerTurn {
            return Self::spawn_per_turn(adapter, spec, stderr_log);
        }
        let proc = AgentProcess::spawn(spec, stderr_log, adapter)?;
        Ok(Self::new(adapter, Some(proc), spec, None, None))
    }

    fn new(
        adapter: &'static dyn AgentAdapter,
        proc: Option<AgentProcess>,
        spec: &LaunchSpec,
        remote: Option<RemoteLink>,
        per_turn: Option<PerTurn>,
    ) -> Self {
        Self {
            proc,
            adapter,
            started: false,
            spawned_at: Instant::now(),
            conv: Conversation::default(),
            opening: Opening::Done,
            backlog: VecDeque::new(),
            cwd: spec.cwd.clone(),
            remote,
            remote_stopped: false,
            per_turn,
        }
    }

    /// `spawn` of a [`ProcessModel::PerTurn`] kind: no process until the first turn. Its
    /// program must exist and be executable, so a missing binary fails here as for other kinds.
    fn spawn_per_turn(
        adapter: &'static dyn AgentAdapter,
        spec: &LaunchSpec,
        stderr_log: &Path,
    ) -> Result<Self, AgentError> {
        if let Err(source) = find_program(spec) {
            return Err(AgentError::Spawn {
                program: spec.program.clone(),
                team: String::new(),
                cwd: spec.cwd.clone(),
                source,
            });
        }
        let turns = PerTurn {
            spawned: spec.clone(),
            stderr_log: stderr_log.to_path_buf(),
            turns: 0,
            ended: true,
            interrupted: false,
        };
        Ok(Self::new(adapter, None, spec, None, Some(turns)))
    }

    /// The process, or an error saying there is none (a per-turn kind between turns).
    fn live(&mut self) -> Result<&mut AgentProcess, AgentError> {
        self.proc.as_mut().ok_or_else(|| AgentError::Io {
            what: "agent".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotConnected, "no turn is running"),
        })
    }

    /// Starts the agent `spec` describes on `host` over `transport` (a remote team): the
    /// program, its arguments and its folder are paths there; `marker` (see
    /// [`super::ssh::launch::Owner::marker`]) lets a later Switchboard find it if this one
    /// dies. Waits up to `timeout` for the remote wrapper to report the agent's process group.
    pub async fn spawn_remote(
        adapter: &'static dyn AgentAdapter,
        spec: &LaunchSpec,
        stderr_log: &Path,
        transport: &Transport,
        host: &Host,
        marker: &str,
        timeout: Duration,
    ) -> Result<Self, AgentError> {
        let agent =
            RemoteAgent::spawn(transport, host, spec, marker, stderr_log, adapter, timeout).await?;
        let link = RemoteLink {
            transport: transport.clone(),
            host: agent.host,
            identity: agent.remote,
        };
        Ok(Self::new(
            adapter,
            Some(agent.process),
            spec,
            Some(link),
            None,
        ))
    }

    /// The host and process group of a remote agent (`None` for a local one).
    pub fn remote(&self) -> Option<&RemoteLink> {
        self.remote.as_ref()
    }

    /// Whether a remote agent's group is known to be stopped (its record can go).
    pub fn remote_stopped(&self) -> bool {
        self.remote_stopped
    }

    /// Says which conversation the agent opens, for a CLI that opens it over its protocol
    /// after spawn ([`AgentAdapter::opening`]): the session's, resumed when `session.resume`.
    /// The opening lines are written before the probe or the first message. A no-op for a
    /// CLI that took the conversation in argv.
    pub fn open_conversation(&mut self, session: &SessionRef<'_>) {
        let resume = session.agent_session_id.filter(|_| session.resume);
        let lines = self.adapter.opening(&self.cwd, resume);
        if !lines.is_empty() {
            self.opening = Opening::Unsent(lines);
        }
    }

    /// What the agent said of its conversation so far.
    pub fn conversation(&self) -> &Conversation {
        &self.conv
    }

    /// The next line of the agent, its conversation state noted.
    async fn next_line(&mut self) -> Option<StdoutLine> {
        let line = self.proc.as_mut()?.lines.recv().await;
        if let Some(StdoutLine::Event(ev)) = &line {
            self.adapter.track(ev, &mut self.conv);
        }
        line
    }

    /// Writes the opening lines (if not yet) and reads until the agent names its
    /// conversation, keeping what it read for [`AgentSession::recv`]. Waits at most
    /// `timeout`; `Err` says why it failed (the agent is then killed, except when it exited).
    async fn await_open(&mut self, timeout: Duration) -> Result<(), ProbeFailure> {
        if let Opening::Unsent(lines) = std::mem::take(&mut self.opening) {
            for line in &lines {
                let sent = match self.live() {
                    Ok(p) => p.send_line(line).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = sent {
                    return Err(ProbeFailure::Exited(format!(
                        "agent exited before it started: {} ({e})",
                        self.exit_reason().await
                    )));
                }
            }
            self.opening = Opening::Waiting;
        }
        if !matches!(self.opening, Opening::Waiting) {
            return Ok(());
        }
        let outcome = async {
            loop {
                let line = self.next_line().await;
                match &line {
                    None | Some(StdoutLine::Closed(_)) => {
                        return Err(format!(
                            "agent exited before it started: {}",
                            self.exit_reason().await
                        ));
                    }
                    Some(StdoutLine::Event(AgentEvent::ControlResponse {
                        request_id,
                        success: false,
                        error,
                    })) => {
                        let id = request_id.clone().unwrap_or_default();
                        let why = error.clone().unwrap_or_default();
                        match self.adapter.reopening(&self.cwd, &id) {
                            Some(again) => {
                                tracing::info!(request = %id, error = %why, "the agent refused to open the conversation; opening a new one");
                                self.live()
                                    .map_err(|e| e.to_string())?
                                    .send_line(&again)
                                    .await
                                    .map_err(|e| e.to_string())?;
                            }
                            None => {
                                return Err(format!(
                                    "the agent refused to open its conversation: {why}"
                                ))
                            }
                        }
                    }
                    _ => {}
                }
                let named = matches!(
                    &line,
                    Some(StdoutLine::Event(AgentEvent::Init {
                        session_id: Some(_)
                    }))
                );
                if let Some(line) = line {
                    self.backlog.push_back(line);
                }
                if named {
                    return Ok(());
                }
            }
        };
        match tokio::time::timeout(timeout, outcome).await {
            Ok(Ok(())) => {
                self.opening = Opening::Done;
                Ok(())
            }
            Ok(Err(why)) => {
                self.kill().await;
                Err(ProbeFailure::Exited(why))
            }
            Err(_) => {
                self.kill().await;
                Err(ProbeFailure::TimedOut(format!(
                    "timeout: the agent did not open its conversation within {}; it was killed",
                    crate::util::format_duration(timeout)
                )))
            }
        }
    }

    /// The adapter that launched it.
    pub fn adapter(&self) -> &'static dyn AgentAdapter {
        self.adapter
    }

    /// Its process (pid and start time; the pid is also its process group).
    pub fn identity(&self) -> ProcessIdentity {
        self.proc.as_ref().map_or(
            ProcessIdentity {
                pid: 0,
                started_at: 0,
            },
            |p| p.identity,
        )
    }

    /// Whether it has printed anything yet.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Notes that it printed something: it is up.
    pub fn mark_started(&mut self) {
        self.started = true;
    }

    /// When it was spawned.
    pub fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    /// Proves a just-started agent is up, without a model call, where its CLI has a way
    /// ([`AgentAdapter::encode_ready_probe`]); waits at most `timeout`. `Ok(true)` when this
    /// call proved it (it was not started before), `Ok(false)` when there was nothing to do.
    /// On failure the agent has been killed.
    pub async fn probe(&mut self, timeout: Duration) -> Result<bool, ProbeFailure> {
        if self.started {
            return Ok(false);
        }
        if !matches!(self.opening, Opening::Done) {
            // Opening the conversation takes no model call: its answer proves the agent is up.
            self.await_open(timeout).await?;
            self.started = true;
            return Ok(true);
        }
        let id = format!("ready-{}", uuid::Uuid::new_v4());
        let Some(probe) = self.adapter.encode_ready_probe(&id) else {
            return Ok(false);
        };
        let outcome = async {
            self.live()
                .map_err(|e| e.to_string())?
                .send_line(&probe)
                .await
                .map_err(|e| e.to_string())?;
            loop {
                match self.live().map_err(|e| e.to_string())?.lines.recv().await {
                    Some(StdoutLine::Event(AgentEvent::ControlResponse { request_id, .. }))
                        if request_id.as_deref() == Some(id.as_str()) =>
                    {
                        return Ok(());
                    }
                    Some(StdoutLine::Event(_)) | Some(StdoutLine::Bad(_)) => {}
                    None | Some(StdoutLine::Closed(_)) => {
                        return Err(format!(
                            "agent exited before it started: {}",
                            self.exit_reason().await
                        ));
                    }
                }
            }
        };
        let failure = match tokio::time::timeout(timeout, outcome).await {
            Ok(Ok(())) => {
                self.started = true;
                return Ok(true);
            }
            Ok(Err(why)) => ProbeFailure::Exited(why),
            Err(_) => ProbeFailure::TimedOut(format!(
                "timeout: the agent did not start within {}; it was killed",
                crate::util::format_duration(timeout)
            )),
        };
        self.kill().await;
        Err(failure)
    }

    /// Delivers a user message: the start of a turn. On failure (the agent is gone), says how
    /// it ended.
    pub async fn send_message(&mut self, text: &str) -> Result<(), String> {
        self.await_open(OPEN_TIMEOUT)
            .await
            .map_err(|f| f.detail().to_string())?;
        let Some(line) = self.adapter.encode_input(&self.conv, Input::Message(text)) else {
            return Err(format!(
                "agent {:?} cannot take a message now",
                self.adapter.name()
            ));
        };
        if self.per_turn.is_some() {
            return self.start_turn(&line).await;
        }
        self.write_or_describe(&line).await
    }

    /// Starts a turn of a [`ProcessModel::PerTurn`] kind: its process (the spawn's launch for
    /// the first turn, [`AgentAdapter::next_turn_launch`] after), `line` on its stdin, stdin
    /// closed.
    async fn start_turn(&mut self, line: &str) -> Result<(), String> {
        if let Some(mut last) = self.proc.take() {
            // The last turn's process, done with its turn: let it finish its exit (it may
            // still be writing the session), briefly, then stop what is left of its group.
            let _ = tokio::time::timeout(Duration::from_secs(10), last.wait()).await;
            last.stop(Duration::from_secs(2)).await;
        }
        let Some(turns) = self.per_turn.as_mut() else {
            return Err("not a per-turn agent".into());
        };
        let spec = if turns.turns == 0 {
            turns.spawned.clone()
        } else {
            self.adapter.next_turn_launch(&turns.spawned)
        };
        turns.turns += 1;
        turns.ended = false;
        turns.interrupted = false;
        let proc = AgentProcess::spawn(&spec, &turns.stderr_log, self.adapter)
            .map_err(|e| e.to_string())?;
        self.proc = Some(proc);
        self.started = false;
        self.spawned_at = Instant::now();
        self.write_or_describe(line).await?;
        if let Some(p) = self.proc.as_mut() {
            p.close_stdin(); // the end of the message
        }
        Ok(())
    }

    /// Asks the agent to compact its context: a turn of its own.
    pub async fn send_compact(&mut self) -> Result<(), String> {
        self.await_open(OPEN_TIMEOUT)
            .await
            .map_err(|f| f.detail().to_string())?;
        let Some(line) = self.adapter.encode_input(&self.conv, Input::Compact) else {
            return Err(format!(
                "agent {:?} cannot compact its context",
                self.adapter.name()
            ));
        };
        if self.per_turn.is_some() {
            return self.start_turn(&line).await;
        }
        self.write_or_describe(&line).await
    }

    async fn write_or_describe(&mut self, line: &str) -> Result<(), String> {
        let sent = match self.live() {
            Ok(p) => p.send_line(line).await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            // Writing fails when the agent is gone: say how it ended.
            let when = if self.started {
                "mid-turn"
            } else {
                "before it started"
            };
            return Err(format!(
                "agent exited {when}: {} ({e})",
                self.exit_reason().await
            ));
        }
        Ok(())
    }

    /// The next thing the agent printed (cancel-safe).
    pub async fn recv(&mut self) -> Option<StdoutLine> {
        if let Some(line) = self.backlog.pop_front() {
            return Some(line);
        }
        if self.per_turn.is_some() {
            return self.recv_turn().await;
        }
        self.next_line().await
    }

    /// `recv` of a [`ProcessModel::PerTurn`] kind: notes the turn's `Result`; a process that
    /// ends without one after an interrupt ends its turn with an interrupted `Result` (a
    /// cancelled turn, not a crash).
    async fn recv_turn(&mut self) -> Option<StdoutLine> {
        let Some(proc) = self.proc.as_mut() else {
            return std::future::pending().await;
        };
        let line = proc.lines.recv().await;
        let turns = self.per_turn.as_mut()?;
        match &line {
            Some(StdoutLine::Event(AgentEvent::Result(_))) => turns.ended = true,
            None | Some(StdoutLine::Closed(_)) if turns.interrupted && !turns.ended => {
                turns.ended = true;
                return Some(StdoutLine::Event(AgentEvent::Result(interrupted_result())));
            }
            _ => {}
        }
        line
    }

    /// Writes a line the adapter encoded (a permission decision) to the agent.
    pub async fn write(&mut self, line: &str) -> Result<(), AgentError> {
        self.live()?.send_line(line).await
    }

    /// Asks the agent to end the running turn.
    pub async fn interrupt(&mut self) -> Result<(), AgentError> {
        if let Some(turns) = self.per_turn.as_mut() {
            // A per-turn agent takes no input during its turn: SIGTERM to the turn's group.
            turns.interrupted = true;
            if let Some(p) = self.proc.as_ref() {
                super::process::kill_group(p.identity.pid, libc::SIGTERM);
            }
            return Ok(());
        }
        let id = uuid::Uuid::new_v4().to_string();
        let Some(line) = self.adapter.encode_input(&self.conv, Input::Interrupt(&id)) else {
            return Err(AgentError::Io {
                what: "interrupt".into(),
                source: std::io::Error::other("the agent has named no running turn to interrupt"),
            });
        };
        self.live()?.send_line(&line).await
    }

    /// Waits for the agent to exit and says how it ended (exit status, stderr's tail).
    /// A per-turn agent between turns has no process to exit: this waits for ever then (the
    /// last turn's process, which printed its `Result`, is reaped meanwhile).
    pub async fn exit_reason(&mut self) -> String {
        let between_turns = self.per_turn.as_ref().is_some_and(|t| t.ended);
        let Some(proc) = self.proc.as_mut() else {
            return std::future::pending().await;
        };
        let status = proc.wait().await;
        if between_turns {
            // The turn's process is done: what is left of its group goes now (before its
            // group id can be reused), and it is forgotten.
            proc.stop(Duration::ZERO).await;
            self.proc = None;
            return std::future::pending().await;
        }
        if let Some(link) = &self.remote {
            // The local ssh failed (255): the connection broke; say so, naming the host.
            let code = status.as_ref().ok().and_then(|s| s.code());
            if let Some(e) = remote_exit_error(&link.host, code, &proc.stderr_tail()) {
                return e.to_string();
            }
        }
        describe_exit(status, proc)
    }

    /// Whether the agent has exited (without waiting). A per-turn agent is never "exited"
    /// between its turns.
    pub fn has_exited(&mut self) -> bool {
        if self.per_turn.is_some() {
            return false;
        }
        self.proc.as_mut().is_some_and(|p| p.try_wait().is_some())
    }

    /// Stops it: close stdin, SIGTERM to its group, `grace`, SIGKILL. A remote agent's group
    /// is stopped there the same way (see [`AgentSession::stop_remote`]), then its local ssh.
    pub async fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if self.remote.is_some() {
            if let Err(e) = self.stop_remote(grace).await {
                tracing::warn!(error = %e, "cannot stop the remote agent's process group");
            }
            return self.proc.as_mut()?.stop(REMOTE_LOCAL_GRACE).await;
        }
        self.proc.as_mut()?.stop(grace).await
    }

    /// Kills its group at once (a remote group: TERM, then KILL shortly after).
    pub async fn kill(&mut self) -> Option<std::process::ExitStatus> {
        if self.remote.is_some() {
            if let Err(e) = self.stop_remote(REMOTE_KILL_GRACE).await {
                tracing::warn!(error = %e, "cannot stop the remote agent's process group");
            }
        }
        self.proc.as_mut()?.kill().await
    }

    /// Stops a remote agent's process group on its host: SIGTERM, `grace`, SIGKILL. `Ok` with
    /// what happened (`terminated`, `killed`, `gone`, `other`), or the transport's error (a
    /// host that cannot be reached: the group is still recorded with the session and stopped
    /// before the next spawn). A local agent: `Ok("local")`.
    pub async fn stop_remote(&mut self, grace: Duration) -> Result<String, SshError> {
        let Some(link) = &self.remote else {
            return Ok("local".into());
        };
        // Bounded: a host that does not answer (a connection that has to time out) must not
        // hold up the tell's error or a shutdown; the group stays recorded then.
        let stop =
            super::ssh::launch::stop_group(&link.transport, &link.host, link.identity, grace);
        let done = match tokio::time::timeout(grace + REMOTE_STOP_BOUND, stop).await {
            Ok(done) => done?,
            Err(_) => {
                return Err(SshError::Timeout {
                    host: link.host.destination.clone(),
                    what: "stopping the agent".into(),
                    timeout: grace + REMOTE_STOP_BOUND,
                })
            }
        };
        self.remote_stopped = true;
        Ok(done)
    }
}

/// How long the local `ssh` of a remote agent gets after its remote group was stopped.
const REMOTE_LOCAL_GRACE: Duration = Duration::from_millis(500);
/// How much longer than its grace a remote stop may take (connecting included).
const REMOTE_STOP_BOUND: Duration = Duration::from_secs(6);
/// The grace of [`AgentSession::kill`] for a remote group.
const REMOTE_KILL_GRACE: Duration = Duration::from_millis(300);

/// Why a remote agent's local ssh ended, when the connection (not the agent) ended it.
fn remote_exit_error(host: &Host, status: Option<i32>, stderr_tail: &str) -> Option<SshError> {
    super::ssh::launch::exit_error(host, status, stderr_tail)
}

/// The `Result` of a per-turn agent's turn that ended without one after an interrupt.
fn interrupted_result() -> TurnResult {
    TurnResult {
        subtype: "interrupted".into(),
        is_error: true,
        text: Some("the turn was interrupted; the agent's process was stopped".into()),
        usage: Default::default(),
        cost_usd: 0.0,
        duration_ms: None,
        num_turns: None,
        session_id: None,
        model: None,
        terminal_reason: None,
        stop_reason: None,
    }
}

/// Whether `spec.program` can be run: a path that is an executable file, or a name found so
/// on the `PATH` the agent gets.
fn find_program(spec: &LaunchSpec) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if !spec.cwd.is_dir() {
        return Err(Error::new(ErrorKind::NotFound, "no such folder"));
    }
    if spec.program.contains('/') {
        let path = spec.cwd.join(&spec.program);
        if runnable(&path) {
            return Ok(());
        }
        return Err(match std::fs::metadata(&path) {
            Ok(_) => Error::new(ErrorKind::PermissionDenied, "not executable"),
            Err(e) => e,
        });
    }
    let path = spec
        .environment()
        .into_iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v)
        .unwrap_or_default();
    if std::env::split_paths(&path).any(|d| runnable(&d.join(&spec.program))) {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::NotFound, "not found on PATH"))
    }
}

/// How an agent process ended, with the tail of its stderr.
fn describe_exit(status: std::io::Result<std::process::ExitStatus>, proc: &AgentProcess) -> String {
    let status = match status {
        Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => s.to_string(),
        },
        Err(e) => format!("unknown exit status ({e})"),
    };
    let tail = proc.stderr_tail();
    if tail.is_empty() {
        status
    } else {
        let tail: String = tail
            .chars()
            .rev()
            .take(1000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{status}; stderr: {tail}")
    }
}
