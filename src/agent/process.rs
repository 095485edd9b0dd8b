//! One agent child process: spawned in its own process group (dies with us via
//! PR_SET_PDEATHSIG on Linux) with only the environment its launch spec allows (see
//! [`LaunchSpec::environment`]), stdin/stdout piped, stderr to a bounded per-session log file
//! with its tail kept in memory for error messages. Stop = SIGTERM to the group, a grace
//! period, then SIGKILL; "already exited" is success.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

use super::adapter::{AgentAdapter, LaunchSpec};
use super::event::{read_line_bounded, AgentEvent, BadLine};
use super::AgentError;
use crate::util::{process_start_ms, ProcessIdentity};

/// A stderr log file is rotated (to `.1`) when it reaches this size; so at most twice this is
/// kept on disk per session.
pub const STDERR_LOG_MAX: u64 = 4 * 1024 * 1024;
const STDERR_TAIL: usize = 4096;
/// The longest stdout line decoded; a longer one is skipped (and reported) without being kept.
pub const MAX_LINE: usize = 64 * 1024 * 1024;

/// What the stdout reader saw.
#[derive(Debug)]
pub enum StdoutLine {
    /// An event.
    Event(AgentEvent),
    /// A line that is not an event.
    Bad(BadLine),
    /// End of stdout (the agent exited or closed it), or a read error.
    Closed(Option<std::io::Error>),
}

/// A running agent process.
pub struct AgentProcess {
    child: Child,
    /// Its pid, which is also its process group id.
    pub identity: ProcessIdentity,
    stdin: Option<ChildStdin>,
    /// Its stdout, decoded line by line by a reader task (cancel-safe to receive from).
    pub lines: mpsc::Receiver<StdoutLine>,
    stderr_tail: Arc<Mutex<VecDeque<u8>>>,
    stderr_task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for AgentProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentProcess")
            .field("pid", &self.identity.pid)
            .finish()
    }
}

impl AgentProcess {
    /// Spawns the agent. Must be called from a runtime worker thread (not `spawn_blocking`):
    /// PR_SET_PDEATHSIG fires when the spawning *thread* exits.
    pub fn spawn(
        spec: &LaunchSpec,
        stderr_log: &Path,
        adapter: &'static dyn AgentAdapter,
    ) -> Result<Self, AgentError> {
        let mut cmd = tokio::process::Command::new(&spec.program);
        // Only what the spec allows of our environment, then the team's own.
        cmd.env_clear().envs(spec.environment());
        cmd.args(&spec.args)
            .current_dir(&spec.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        #[cfg(target_os = "linux")]
        {
            // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
            let parent = std::process::id() as libc::pid_t;
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The parent may have died before prctl took effect.
                    if libc::getppid() != parent {
                        libc::_exit(1);
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().map_err(|source| AgentError::Spawn {
            program: spec.program.clone(),
            team: String::new(),
            cwd: spec.cwd.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        let identity = ProcessIdentity {
            pid,
            started_at: process_start_ms(pid).unwrap_or(0),
        };
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| AgentError::Io {
            what: "agent stdout".into(),
            source: std::io::Error::other("not piped"),
        })?;
        let stderr = child.stderr.take();
        let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let stderr_task = stderr.map(|mut err| {
            let tail = Arc::clone(&stderr_tail);
            let path = stderr_log.to_path_buf();
            tokio::spawn(async move {
                let mut log = StderrLog::open(&path);
                let mut buf = vec![0u8; 8192];
                loop {
                    match err.read(&mut buf).await {
                        Ok(0) | Err(_) => {
                            log.flush();
                            break;
                        }
                        Ok(n) => {
                            log.write(&buf[..n]);
                            let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                            for &b in &buf[..n] {
                                if t.len() == STDERR_TAIL {
                                    t.pop_front();
                                }
                                t.push_back(b);
                            }
                        }
                    }
                }
            })
        });
        let (tx, lines) = mpsc::channel(64);
        let mut decoder = super::adapter::decoder_of(adapter);
        tokio::spawn(async move {
            let mut reader = BufReader::with_capacity(64 * 1024, stdout);
            let mut buf = Vec::new();
            loop {
                let msg = match read_line_bounded(&mut reader, &mut buf, MAX_LINE).await {
                    Ok(None) => StdoutLine::Closed(None),
                    Ok(Some(Ok(()))) => match decoder.decode(&buf) {
                        Ok(ev) => StdoutLine::Event(ev),
                        Err(bad) => StdoutLine::Bad(bad),
                    },
                    Ok(Some(Err(n))) => StdoutLine::Bad(BadLine::TooLong(n)),
                    Err(e) => StdoutLine::Closed(Some(e)),
                };
                let closed = matches!(msg, StdoutLine::Closed(_));
                if buf.capacity() > 1024 * 1024 {
                    buf = Vec::new(); // give a huge line's memory back
                }
                if tx.send(msg).await.is_err() || closed {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            identity,
            stdin,
            lines,
            stderr_tail,
            stderr_task,
        })
    }

    /// Writes one line (a newline is added) to the agent's stdin.
    pub async fn send_line(&mut self, line: &str) -> Result<(), AgentError> {
        let stdin = self.stdin.as_mut().ok_or_else(|| AgentError::Io {
            what: "agent stdin".into(),
            source: std::io::Error::new(std::io::ErrorKind::BrokenPipe, "closed"),
        })?;
        let mut data = Vec::with_capacity(line.len() + 1);
        data.extend_from_slice(line.as_bytes());
        data.push(b'\n');
        let io = |source| AgentError::Io {
            what: "writing to the agent's stdin".into(),
            source,
        };
        stdin.write_all(&data).await.map_err(io)?;
        stdin.flush().await.map_err(io)
    }

    /// Closes the agent's stdin (the end of its input: a per-turn agent's message is complete).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// The last few KiB the agent wrote to stderr, as text, secrets hidden (it ends up in
    /// errors, `last_error`, logs and events).
    pub fn stderr_tail(&self) -> String {
        let t = self.stderr_tail.lock().unwrap_or_else(|p| p.into_inner());
        let bytes: Vec<u8> = t.iter().copied().collect();
        crate::redact::text(String::from_utf8_lossy(&bytes).trim())
    }

    /// Waits for the process to exit (and for its stderr to be drained).
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        self.drain_stderr().await;
        Ok(status)
    }

    /// Whether the process has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    async fn drain_stderr(&mut self) {
        if let Some(task) = self.stderr_task.take() {
            // The pipe closes when every process of the group holding it has exited; bound it.
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }

    /// Stops the process group: close stdin, SIGTERM, wait up to `grace`, SIGKILL. Returns the
    /// exit status of the agent.
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.stdin.take();
        if let Some(status) = self.try_wait() {
            kill_group(self.identity.pid, libc::SIGKILL);
            self.drain_stderr().await;
            return Some(status);
        }
        kill_group(self.identity.pid, libc::SIGTERM);
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                kill_group(self.identity.pid, libc::SIGKILL);
                self.child.wait().await.ok()
            }
        };
        // Whatever else is left in the group (tools the agent started) goes too.
        kill_group(self.identity.pid, libc::SIGKILL);
        self.drain_stderr().await;
        status
    }

    /// Kills the process group at once (a stalled agent).
    pub async fn kill(&mut self) -> Option<ExitStatus> {
        self.stdin.take();
        kill_group(self.identity.pid, libc::SIGKILL);
        let status = self.child.wait().await.ok();
        self.drain_stderr().await;
        status
    }
}

/// What a short command of an agent's CLI printed (each stream cut at the limit) and how it
/// ended.
#[derive(Debug)]
pub struct CommandOutput {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `spec.program ARGS` (not an agent session: `--version`, `mcp add-json`, ...) in
/// `spec.cwd` with exactly `spec`'s environment, stdin closed, in its own process group. Keeps
/// at most `limit` bytes of each stream and drains the rest, so it never blocks on a full
/// pipe. `Ok(None)` when it did not end within `timeout`; the group is killed then, and also
/// once it ended (a leftover child must not hold the pipes open).
pub fn run_bounded(
    spec: &LaunchSpec,
    args: &[&str],
    timeout: Duration,
    limit: u64,
) -> std::io::Result<Option<CommandOutput>> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new(&spec.program)
        .args(args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.environment())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let pgid = child.id();
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(pipe) = pipe {
                let mut limited = pipe.take(limit);
                let _ = limited.read_to_end(&mut buf);
                let _ = std::io::copy(&mut limited.into_inner(), &mut std::io::sink());
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(status) => status,
        Err(_) => {
            kill_group(pgid, libc::SIGKILL);
            return Ok(None);
        }
    };
    kill_group(pgid, libc::SIGKILL);
    let status = status?;
    Ok(Some(CommandOutput {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }))
}

/// Sends `signal` to process group `pgid`; a group that is gone already is fine.
pub fn kill_group(pgid: u32, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals the process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Whether any process of group `pgid` is alive.
pub fn group_alive(pgid: u32) -> bool {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return false;
    };
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(-pgid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Kills what is left of an agent's process group after its Switchboard died: only if the
/// group is ours — its leader is the recorded process (same start time), or the leader is gone
/// while members remain (a pid cannot be reused while it names a live group).
pub fn reap_orphan_group(agent: ProcessIdentity) -> bool {
    if agent.pid <= 1 || !group_alive(agent.pid) {
        return false;
    }
    if let Some(start) = process_start_ms(agent.pid) {
        if agent.started_at != 0 && start != agent.started_at {
            return false; // the pid now names an unrelated process
        }
    }
    kill_group(agent.pid, libc::SIGKILL);
    true
}

/// The stderr log: appends whole lines with secrets hidden ([`crate::redact::text`]), and
/// rotates to `<path>.1` past [`STDERR_LOG_MAX`].
struct StderrLog {
    path: PathBuf,
    file: Option<std::fs::File>,
    written: u64,
    /// The part of a line not ended yet (at most [`STDERR_LINE_MAX`] bytes).
    pending: Vec<u8>,
}

/// A stderr "line" longer than this is written (redacted) in pieces.
const STDERR_LINE_MAX: usize = 64 * 1024;

impl StderrLog {
    fn open(path: &Path) -> Self {
        let file = crate::private_fs::open_append(path).ok();
        let written = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        Self {
            path: path.to_path_buf(),
            file,
            written,
            pending: Vec::new(),
        }
    }

    /// Takes what the agent wrote; whole lines go to the file, redacted.
    fn write(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.write_redacted(&line);
        }
        if self.pending.len() > STDERR_LINE_MAX {
            let part = std::mem::take(&mut self.pending);
            self.write_redacted(&part);
        }
    }

    /// Writes what is left of an unended line (at the agent's exit).
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let part = std::mem::take(&mut self.pending);
            self.write_redacted(&part);
        }
    }

    fn write_redacted(&mut self, raw: &[u8]) {
        let text = crate::redact::text(&String::from_utf8_lossy(raw));
        self.write_raw(text.as_bytes());
    }

    fn write_raw(&mut self, data: &[u8]) {
        if self.written + data.len() as u64 > STDERR_LOG_MAX {
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            let _ = std::fs::rename(&self.path, &rotated);
            self.file = crate::private_fs::create(&self.path).ok();
            self.written = 0;
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(data).is_ok() {
                self.written += data.len() as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_log_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut log = StderrLog::open(&path);
        let chunk = vec![b'e'; 1024 * 1024];
        for _ in 0..10 {
            log.write(&chunk);
        }
        let main = std::fs::metadata(&path).unwrap().len();
        let old = std::fs::metadata(dir.path().join("a.log.1")).unwrap().len();
        assert!(
            main <= STDERR_LOG_MAX && old <= STDERR_LOG_MAX,
            "{main} {old}"
        );
        assert!(main > 0);
    }
}
