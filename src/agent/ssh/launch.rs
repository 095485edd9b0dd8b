//! An agent on a remote host: the local `ssh` child that carries its stdin and stdout (an
//! ordinary [`AgentProcess`], so the codec, the stderr log and the local stop work as for a
//! local agent), the remote process group it runs in (pid and start time, reported by the
//! remote wrapper before it `exec`s the agent), stopping that group with TERM then KILL, and
//! the marker that finds agents a dead Switchboard left on the host.

use std::path::Path;
use std::time::Duration;

use super::quote::{self, IDENTITY_PREFIX, MARKER_VAR, WRAPPER_FAILED};
use super::{Host, SshError, Transport};
use crate::agent::adapter::LaunchSpec;
use crate::agent::event::BadLine;
use crate::agent::process::{AgentProcess, StdoutLine};
use crate::util::{process_start_ms, ProcessIdentity};

/// The remote process group of an agent: its leader's pid (= the group id) and start time
/// (clock ticks after boot, from `/proc/<pid>/stat`; 0 where there is no /proc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemoteIdentity {
    /// The agent's pid on the remote host.
    pub pid: u32,
    /// Its process group (the same: it leads its group).
    pub pgid: u32,
    /// Its start time on the remote host, in clock ticks after boot.
    pub start: u64,
}

impl RemoteIdentity {
    /// Parses the wrapper's line `SWITCHBOARD-REMOTE pid=P pgid=G start=S`.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim().strip_prefix(IDENTITY_PREFIX)?;
        let mut pid = None;
        let mut pgid = None;
        let mut start = None;
        for field in rest.split_whitespace() {
            match field.split_once('=')? {
                ("pid", v) => pid = v.parse().ok(),
                ("pgid", v) => pgid = v.parse().ok(),
                ("start", v) => start = v.parse().ok(),
                _ => {}
            }
        }
        Some(Self {
            pid: pid?,
            pgid: pgid?,
            start: start?,
        })
    }
}

/// The Switchboard process that started a remote agent, as written in the agent's marker:
/// `<local host name>:<pid>:<start ms>`. At start-up, an agent whose owner is a process of
/// this machine that is gone was left behind and is stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The local machine's host name.
    pub host: String,
    /// The Switchboard process.
    pub process: ProcessIdentity,
}

impl Owner {
    /// This Switchboard process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            host: local_host_name(),
            process: ProcessIdentity {
                pid,
                started_at: process_start_ms(pid).unwrap_or(0),
            },
        }
    }

    /// The marker value of an agent of session `session_id` started by this owner.
    pub fn marker(&self, session_id: &str) -> String {
        format!(
            "{}:{}:{}/{session_id}",
            self.host, self.process.pid, self.process.started_at
        )
    }

    /// Parses a marker value into its owner and session id.
    pub fn parse_marker(value: &str) -> Option<(Owner, String)> {
        let (owner, session) = value.rsplit_once('/')?;
        let mut parts = owner.rsplitn(3, ':');
        let started_at = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next()?.to_string();
        Some((
            Owner {
                host,
                process: ProcessIdentity { pid, started_at },
            },
            session.to_string(),
        ))
    }

    /// Whether this owner is a Switchboard process of this machine that is gone (its pid is
    /// free, or names a process started at another time). An owner on another machine is
    /// never called dead: that machine's Switchboard decides.
    pub fn is_dead_here(&self) -> bool {
        if self.host != local_host_name() {
            return false;
        }
        match process_start_ms(self.process.pid) {
            None => true,
            Some(start) => self.process.started_at != 0 && start != self.process.started_at,
        }
    }
}

fn local_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// An agent running on a remote host.
#[derive(Debug)]
pub struct RemoteAgent {
    /// The local `ssh` child carrying the agent's stdin, stdout and stderr.
    pub process: AgentProcess,
    /// The agent's process group on the remote host.
    pub remote: RemoteIdentity,
    /// The host.
    pub host: Host,
}

/// The local launch (the `ssh` command) that runs `spec` on `host`: the agent program, its
/// arguments and its folder as given (paths on the remote host), the team's `env` plus the
/// marker variable; none of Switchboard's own environment (the remote session has its own
/// PATH, HOME, ...). The local `ssh` gets Switchboard's environment (SSH_AUTH_SOCK, HOME for
/// ~/.ssh). Returns the launch and what must be written to its stdin before anything else:
/// the variables (see [`quote::env_input`]), which are in no command line.
pub fn ssh_launch(
    transport: &Transport,
    host: &Host,
    spec: &LaunchSpec,
    marker: &str,
) -> Result<(LaunchSpec, String), SshError> {
    let env = spec
        .env
        .iter()
        .filter(|(k, _)| k.as_str() != MARKER_VAR)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(std::iter::once((MARKER_VAR, marker)));
    let remote = quote::remote_command(
        &spec.cwd.display().to_string(),
        env,
        &spec.program,
        &spec.args,
    )
    .map_err(|source| SshError::Quote {
        host: host.destination.clone(),
        source,
    })?;
    let launch = LaunchSpec {
        program: transport.program().to_string(),
        args: transport.command_args(host, &remote.command),
        // The local ssh runs anywhere; the remote folder is in the command.
        cwd: std::env::temp_dir(),
        env: Default::default(),
        inherit: ["*".to_string()].into(),
        env_remove: Vec::new(),
    };
    Ok((launch, remote.input))
}

impl RemoteAgent {
    /// Starts `spec` on `host` (connecting first when needed) and waits, up to `timeout`, for
    /// the wrapper's identity line. `stderr_log` and `adapter` (which decodes its output) are as for a local agent. A
    /// folder that does not exist, a bad variable, or a broken connection is an error naming
    /// the host and the fix; nothing is left running then.
    pub async fn spawn(
        transport: &Transport,
        host: &Host,
        spec: &LaunchSpec,
        marker: &str,
        stderr_log: &Path,
        adapter: &'static dyn crate::agent::adapter::AgentAdapter,
        timeout: Duration,
    ) -> Result<Self, SshError> {
        transport.connect(host).await?;
        let (launch, input) = ssh_launch(transport, host, spec, marker)?;
        let mut process =
            AgentProcess::spawn(&launch, stderr_log, adapter).map_err(|e| SshError::Local {
                what: format!("cannot start ssh for {host}"),
                source: std::io::Error::other(e.to_string()),
            })?;
        // The variables first, on stdin: the wrapper reads them before the agent starts. A
        // failed write means ssh or the wrapper ended: its status says why (below).
        if let Err(e) = process.send_line(&input).await {
            tracing::debug!(%host, error = %e, "could not write the agent's environment to ssh");
        }
        // The identity line comes first from the wrapper; a login shell's startup files may
        // print before it (bash reads ~/.bashrc for sshd's commands): skip what is not it.
        let deadline = tokio::time::Instant::now() + timeout;
        let mut line = None;
        for _ in 0..1000 {
            match tokio::time::timeout_at(deadline, process.lines.recv()).await {
                Ok(Some(StdoutLine::Bad(BadLine::NotJson(text)))) => {
                    if let Some(id) = RemoteIdentity::parse(&text) {
                        line = Some(id);
                        break;
                    }
                }
                Ok(Some(StdoutLine::Closed(_)) | None) => break,
                Ok(Some(_)) => {}
                Err(_) => {
                    process.kill().await;
                    return Err(SshError::Timeout {
                        host: host.destination.clone(),
                        what: "starting the agent".into(),
                        timeout,
                    });
                }
            }
        }
        match line {
            Some(remote) => Ok(Self {
                process,
                remote,
                host: host.clone(),
            }),
            None => {
                let status = process.wait().await.ok().and_then(|s| s.code());
                let stderr = process.stderr_tail();
                Err(match status {
                    Some(WRAPPER_FAILED) => SshError::Remote {
                        host: host.destination.clone(),
                        what: "starting the agent".into(),
                        detail: stderr,
                    },
                    Some(127) => SshError::Remote {
                        host: host.destination.clone(),
                        what: "starting the agent".into(),
                        detail: format!(
                            "{} not found on {host}; set `agent_path` of the team to the agent's \
                             path there ({stderr})",
                            spec.program
                        ),
                    },
                    _ => SshError::classify(
                        &host.destination,
                        "starting the agent",
                        status.or(Some(255)),
                        &stderr,
                    ),
                })
            }
        }
    }

    /// Stops the agent: its remote process group gets SIGTERM, then SIGKILL after `grace`;
    /// then the local ssh goes. Returns what the remote stop did (`terminated`, `killed`,
    /// `gone`), or the error (a lost connection: the group ends with its session when sshd
    /// notices; the start-up sweep finds what is left).
    pub async fn stop(
        &mut self,
        transport: &Transport,
        grace: Duration,
    ) -> Result<String, SshError> {
        let result = stop_group(transport, &self.host, self.remote, grace).await;
        self.process.stop(Duration::from_millis(500)).await;
        result
    }
}

/// Why a remote agent's local `ssh` ended, when it was ssh's own failure (exit status 255: the
/// connection broke or could not be made) rather than the agent's exit: the error names the
/// host and the fix. `stderr_tail` is what the process wrote last
/// ([`AgentProcess::stderr_tail`]).
pub fn exit_error(host: &Host, status: Option<i32>, stderr_tail: &str) -> Option<SshError> {
    match status {
        Some(255) | None => Some(SshError::classify(
            &host.destination,
            "running the agent",
            Some(255),
            stderr_tail,
        )),
        // The wrapper's `exec` found no such program (after it said who it is, so the spawn
        // itself went well): name the setting that fixes it.
        Some(127)
            if stderr_tail.contains("switchboard-remote:") && stderr_tail.contains("not found") =>
        {
            Some(SshError::Remote {
                host: host.destination.clone(),
                what: "starting the agent".into(),
                detail: format!(
                    "the agent program is not there; set `agent_path` of the team to the \
                     agent's path on {host} ({})",
                    stderr_tail.trim()
                ),
            })
        }
        _ => None,
    }
}

/// The remote stop: checks that the group leader is still the recorded process (same start
/// time; a leader gone while members remain is still ours), SIGTERM to the group, polls for
/// its end up to the grace, SIGKILL. Prints `gone`, `terminated`, `killed` or `other`.
const STOP_SCRIPT: &str = r#"pg=$1; want=$2; tenths=$3
# Alive: a process of the group that is not a zombie (a host whose init does not reap keeps
# zombies, which kill -0 still sees); kill -0 where there is no /proc.
alive() {
  if [ -r /proc/self/stat ]; then
    for f in /proc/[0-9]*/stat; do
      read -r l 2>/dev/null < "$f" || continue
      set -f
      g ${l##*) } && { set +f; return 0; }
      set +f
    done
    return 1
  fi
  kill -s 0 -- "-$pg" 2>/dev/null
}
g() { [ "$1" != Z ] && [ "$3" = "$pg" ]; }
if [ -r "/proc/$pg/stat" ] && [ "$want" != 0 ]; then
  read -r s < "/proc/$pg/stat"
  f() { st=${20}; }
  set -f
  f ${s##*) }
  set +f
  if [ "$st" != "$want" ]; then echo other; exit 0; fi
fi
alive || { echo gone; exit 0; }
kill -s TERM -- "-$pg" 2>/dev/null
i=0
while [ "$i" -lt "$tenths" ] && alive; do
  sleep 0.1 2>/dev/null || sleep 1
  i=$((i + 1))
done
if alive; then
  kill -s KILL -- "-$pg" 2>/dev/null
  echo killed
else
  echo terminated
fi
"#;

/// Stops the remote process group `agent` on `host`: SIGTERM, then SIGKILL after `grace`.
/// A group that is gone already is success (`gone`); a pid that now names another process is
/// left alone (`other`).
pub async fn stop_group(
    transport: &Transport,
    host: &Host,
    agent: RemoteIdentity,
    grace: Duration,
) -> Result<String, SshError> {
    if agent.pgid <= 1 {
        return Ok("gone".into());
    }
    let tenths = (grace.as_millis() / 100).max(1).to_string();
    let out = transport
        .run_script(
            host,
            STOP_SCRIPT,
            &[&agent.pgid.to_string(), &agent.start.to_string(), &tenths],
            "stopping the agent",
            grace + Duration::from_secs(15),
        )
        .await?;
    Ok(out.stdout.trim().to_string())
}

/// Lists the processes on the remote host (of the login user: only theirs are readable)
/// whose environment holds the marker variable: `pid pgid start marker` per line.
const LIST_SCRIPT: &str = r#"var=$1
for e in /proc/[0-9]*/environ; do
  d=${e%/environ}
  v=$(tr '\0' '\n' < "$e" 2>/dev/null | grep -m 1 "^$var=") || continue
  read -r s 2>/dev/null < "$d/stat" || continue
  f() { printf '%s %s %s %s\n' "${d#/proc/}" "$3" "${20}" "${v#*=}"; }
  set -f
  f ${s##*) }
  set +f
done
"#;

/// An agent process found on a remote host by its marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundAgent {
    /// Its group on the remote host (the leader's pid, the group id and the leader's start
    /// time when the leader is among the processes found; else the start is 0).
    pub group: RemoteIdentity,
    /// Who started it.
    pub owner: Owner,
    /// The session it serves.
    pub session_id: String,
}

/// The Switchboard agents running on `host` (one per process group), found by the marker in
/// their environment.
pub async fn find_agents(transport: &Transport, host: &Host) -> Result<Vec<FoundAgent>, SshError> {
    let out = transport
        .run_script(
            host,
            LIST_SCRIPT,
            &[MARKER_VAR],
            "listing Switchboard's agents",
            Duration::from_secs(30),
        )
        .await?;
    let mut groups: Vec<FoundAgent> = Vec::new();
    for line in out.stdout.lines() {
        let mut it = line.splitn(4, ' ');
        let (Some(pid), Some(pgid), Some(start), Some(marker)) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            continue;
        };
        let (Ok(pid), Ok(pgid), Ok(start)) = (
            pid.parse::<u32>(),
            pgid.parse::<u32>(),
            start.parse::<u64>(),
        ) else {
            continue;
        };
        let Some((owner, session_id)) = Owner::parse_marker(marker) else {
            continue;
        };
        let leader = pid == pgid;
        match groups.iter_mut().find(|g| g.group.pgid == pgid) {
            Some(g) if leader => g.group.start = start,
            Some(_) => {}
            None => groups.push(FoundAgent {
                group: RemoteIdentity {
                    pid: pgid,
                    pgid,
                    start: if leader { start } else { 0 },
                },
                owner,
                session_id,
            }),
        }
    }
    Ok(groups)
}

/// At start-up: stops every agent on `host` whose owner `is_left` says was left behind (for
/// example [`Owner::is_dead_here`]), TERM then KILL after `grace`. Returns the agents
/// stopped.
pub async fn stop_leftovers(
    transport: &Transport,
    host: &Host,
    is_left: impl Fn(&Owner) -> bool,
    grace: Duration,
) -> Result<Vec<FoundAgent>, SshError> {
    let mut stopped = Vec::new();
    for agent in find_agents(transport, host).await? {
        if is_left(&agent.owner) {
            stop_group(transport, host, agent.group, grace).await?;
            stopped.push(agent);
        }
    }
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip() {
        let owner = Owner {
            host: "build:box".into(),
            process: ProcessIdentity {
                pid: 42,
                started_at: 1_700_000_000_000,
            },
        };
        let m = owner.marker("0b0f0c4e-0000-4000-8000-000000000000");
        let (back, session) = Owner::parse_marker(&m).unwrap();
        assert_eq!(back, owner);
        assert_eq!(session, "0b0f0c4e-0000-4000-8000-000000000000");
        assert!(!Owner::current().is_dead_here());
        let gone = Owner {
            process: ProcessIdentity {
                pid: u32::MAX - 1,
                started_at: 1,
            },
            ..Owner::current()
        };
        assert!(gone.is_dead_here());
        let elsewhere = Owner {
            host: "another-machine".into(),
            ..gone
        };
        assert!(!elsewhere.is_dead_here());
    }

    #[test]
    fn identity_lines_parse() {
        assert_eq!(
            RemoteIdentity::parse("SWITCHBOARD-REMOTE pid=12 pgid=12 start=345"),
            Some(RemoteIdentity {
                pid: 12,
                pgid: 12,
                start: 345
            })
        );
        assert_eq!(RemoteIdentity::parse("{\"type\":\"system\"}"), None);
        assert_eq!(RemoteIdentity::parse("SWITCHBOARD-REMOTE pid=x"), None);
    }
}
