//! The live agent of one session: the process its adapter launched, and the verbs of its
//! lifecycle that the router uses without knowing which CLI it is: spawn, probe (prove it is
//! up without a model call), deliver a message or a compaction, read its decoded output,
//! answer it (permission decisions), interrupt the turn, stop it. Everything CLI-specific is
//! asked of the [`AgentAdapter`]; the router sees only [`StdoutLine`]s of [`AgentEvent`]s.
//!
//! A kind of [`ProcessModel::PerTurn`] (Gemini CLI headless) has no process between turns:
//! `spawn` starts nothing (the caller still holds the session's lease and pool slot), each
//! `send_message` starts that turn's process, and its exit after the turn's `Result` is the
//! normal end of the turn (see [`PerTurn`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use super::adapter::{AgentAdapter, LaunchSpec, ProcessModel};
use super::event::{AgentEvent, TurnResult};
use super::process::{AgentProcess, StdoutLine};
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
        Ok(Self {
            proc: Some(proc),
            adapter,
            started: false,
            spawned_at: Instant::now(),
            per_turn: None,
        })
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
        Ok(Self {
            proc: None,
            adapter,
            started: false,
            spawned_at: Instant::now(),
            per_turn: Some(PerTurn {
                spawned: spec.clone(),
                stderr_log: stderr_log.to_path_buf(),
                turns: 0,
                ended: true,
                interrupted: false,
            }),
        })
    }

    /// The process, or an error saying there is none (a per-turn kind between turns).
    fn live(&mut self) -> Result<&mut AgentProcess, AgentError> {
        self.proc.as_mut().ok_or_else(|| AgentError::Io {
            what: "agent".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotConnected, "no turn is running"),
        })
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
        let line = self.adapter.encode_message(text);
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
        let Some(text) = self.adapter.compact_text() else {
            return Err(format!(
                "agent {:?} cannot compact its context",
                self.adapter.name()
            ));
        };
        let line = self.adapter.encode_message(text);
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
        if self.per_turn.is_some() {
            return self.recv_turn().await;
        }
        self.proc.as_mut()?.lines.recv().await
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
        let line = self.adapter.encode_interrupt(&id);
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

    /// Stops it: close stdin, SIGTERM to its group, `grace`, SIGKILL.
    pub async fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.proc.as_mut()?.stop(grace).await
    }

    /// Kills its group at once.
    pub async fn kill(&mut self) -> Option<std::process::ExitStatus> {
        self.proc.as_mut()?.kill().await
    }
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
