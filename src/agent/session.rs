//! The live agent of one session: the process its adapter launched, and the verbs of its
//! lifecycle that the router uses without knowing which CLI it is: spawn, probe (prove it is
//! up without a model call), deliver a message or a compaction, read its decoded output,
//! answer it (permission decisions), interrupt the turn, stop it. Everything CLI-specific is
//! asked of the [`AgentAdapter`]; the router sees only [`StdoutLine`]s of [`AgentEvent`]s.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use super::adapter::{AgentAdapter, Conversation, Input, LaunchSpec, SessionRef};
use super::event::AgentEvent;
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
    proc: AgentProcess,
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
            .field("pid", &self.proc.identity.pid)
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
        let proc = AgentProcess::spawn(spec, stderr_log, adapter)?;
        Ok(Self {
            proc,
            adapter,
            started: false,
            spawned_at: Instant::now(),
            conv: Conversation::default(),
            opening: Opening::Done,
            backlog: VecDeque::new(),
            cwd: spec.cwd.clone(),
            remote: None,
            remote_stopped: false,
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
        Ok(Self {
            proc: agent.process,
            adapter,
            started: false,
            spawned_at: Instant::now(),
            remote: Some(RemoteLink {
                transport: transport.clone(),
                host: agent.host,
                identity: agent.remote,
            }),
            remote_stopped: false,
            conv: Conversation::default(),
            opening: Opening::Done,
            backlog: VecDeque::new(),
            cwd: spec.cwd.clone(),
        })
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
        let line = self.proc.lines.recv().await;
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
                if let Err(e) = self.proc.send_line(line).await {
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
                                self.proc
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
                self.proc.kill().await;
                Err(ProbeFailure::Exited(why))
            }
            Err(_) => {
                self.proc.kill().await;
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
        self.proc.identity
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
            self.proc
                .send_line(&probe)
                .await
                .map_err(|e| e.to_string())?;
            loop {
                match self.proc.lines.recv().await {
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
        self.proc.kill().await;
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
        self.write_or_describe(&line).await
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
        self.write_or_describe(&line).await
    }

    async fn write_or_describe(&mut self, line: &str) -> Result<(), String> {
        if let Err(e) = self.proc.send_line(line).await {
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
        self.next_line().await
    }

    /// Writes a line the adapter encoded (a permission decision) to the agent.
    pub async fn write(&mut self, line: &str) -> Result<(), AgentError> {
        self.proc.send_line(line).await
    }

    /// Asks the agent to end the running turn.
    pub async fn interrupt(&mut self) -> Result<(), AgentError> {
        let id = uuid::Uuid::new_v4().to_string();
        let Some(line) = self.adapter.encode_input(&self.conv, Input::Interrupt(&id)) else {
            return Err(AgentError::Io {
                what: "interrupt".into(),
                source: std::io::Error::other("the agent has named no running turn to interrupt"),
            });
        };
        self.proc.send_line(&line).await
    }

    /// Waits for the agent to exit and says how it ended (exit status, stderr's tail).
    pub async fn exit_reason(&mut self) -> String {
        let status = self.proc.wait().await;
        if let Some(link) = &self.remote {
            // The local ssh failed (255): the connection broke; say so, naming the host.
            let code = status.as_ref().ok().and_then(|s| s.code());
            if let Some(e) = remote_exit_error(&link.host, code, &self.proc.stderr_tail()) {
                return e.to_string();
            }
        }
        describe_exit(status, &self.proc)
    }

    /// Whether the agent has exited (without waiting).
    pub fn has_exited(&mut self) -> bool {
        self.proc.try_wait().is_some()
    }

    /// Stops it: close stdin, SIGTERM to its group, `grace`, SIGKILL. A remote agent's group
    /// is stopped there the same way (see [`AgentSession::stop_remote`]), then its local ssh.
    pub async fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if self.remote.is_some() {
            if let Err(e) = self.stop_remote(grace).await {
                tracing::warn!(error = %e, "cannot stop the remote agent's process group");
            }
            return self.proc.stop(REMOTE_LOCAL_GRACE).await;
        }
        self.proc.stop(grace).await
    }

    /// Kills its group at once (a remote group: TERM, then KILL shortly after).
    pub async fn kill(&mut self) -> Option<std::process::ExitStatus> {
        if self.remote.is_some() {
            if let Err(e) = self.stop_remote(REMOTE_KILL_GRACE).await {
                tracing::warn!(error = %e, "cannot stop the remote agent's process group");
            }
        }
        self.proc.kill().await
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
