//! Remote operations besides running an agent: checking a remote team (for `doctor` and
//! `config check --remote`), removing a transcript that lives on the remote host, and the
//! reverse forward that lets a remote agent reach Switchboard's chained MCP tools through a
//! Unix socket in a 0700 folder on the remote host.

use std::time::Duration;

use super::{Host, SshError, Transport};

/// What `check` found wrong with a remote team; empty when all is well.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// The agent's version line (`claude --version`), when it ran.
    pub version: Option<String>,
    /// The agent's resolved path on the remote host.
    pub agent: Option<String>,
    /// Every problem found, each naming the host and what to do.
    pub problems: Vec<String>,
    /// Whether the host was reached (the check ran there).
    pub reached: bool,
    /// The `switchboard` there that runs the agent's bridge to Switchboard's tools (its path
    /// and version; see [`super::mcp::check_bridge`]), when found.
    pub bridge: Option<String>,
}

/// The host of a remote team (`remote` + `ssh_options`); `None` for a local team.
pub fn team_host(team: &crate::config::TeamConfig) -> Option<Result<Host, SshError>> {
    let destination = team.remote.as_deref()?;
    Some(
        Host::new(destination, team.ssh_options.clone()).map_err(|why| SshError::Remote {
            host: destination.to_string(),
            what: format!("using the `remote` of team {}", team.name),
            detail: why,
        }),
    )
}

/// Where the agent of a remote team keeps its transcript there: Claude Code's file under the
/// team's `CLAUDE_CONFIG_DIR`, or `.claude` in the team's `HOME`, or in the login user's home.
async fn team_transcript(
    transport: &Transport,
    host: &Host,
    team: &crate::config::TeamConfig,
    session_id: &str,
) -> Result<String, SshError> {
    if team.agent != "claude" {
        return Err(SshError::Remote {
            host: host.destination.clone(),
            what: "finding the transcript".into(),
            detail: format!(
                "the transcript of a remote {:?} agent cannot be told yet (team {})",
                team.agent, team.name
            ),
        });
    }
    let config_dir = team
        .env
        .get("CLAUDE_CONFIG_DIR")
        .cloned()
        .or_else(|| team.env.get("HOME").map(|h| format!("{h}/.claude")));
    claude_transcript(
        transport,
        host,
        &team.path.display().to_string(),
        session_id,
        config_dir.as_deref(),
    )
    .await
}

/// Whether the agent of remote team `team` can resume session `session_id` on `host`: the
/// agent named its own id of the conversation (`agent_session_id`), or its transcript is
/// there (the remote variant of [`crate::agent::adapter::AgentAdapter::can_resume`]).
pub async fn team_can_resume(
    transport: &Transport,
    host: &Host,
    team: &crate::config::TeamConfig,
    session_id: &str,
    agent_session_id: Option<&str>,
) -> Result<bool, SshError> {
    if agent_session_id.is_some() {
        return Ok(true);
    }
    if team.agent != "claude" {
        return Ok(false);
    }
    let path = team_transcript(transport, host, team, session_id).await?;
    let out = transport
        .run_script(
            host,
            r#"if [ -f "$1" ]; then echo yes; else echo no; fi"#,
            &[&path],
            "looking for the transcript",
            Duration::from_secs(20),
        )
        .await?;
    Ok(out.stdout.trim() == "yes")
}

/// `sessions delete --transcript` for a remote team: finds the session's transcript on the
/// team's host and removes it there, over a connection of its own (closed after). Returns the
/// path there and whether a file was removed.
pub async fn remove_team_transcript(
    team: &crate::config::TeamConfig,
    session_id: &str,
) -> Result<(String, bool), SshError> {
    let Some(host) = team_host(team) else {
        return Err(SshError::Remote {
            host: String::new(),
            what: "removing a transcript".into(),
            detail: format!("team {} is not a remote team", team.name),
        });
    };
    let host = host?;
    let transport = Transport::for_process()?;
    let result = async {
        let path = team_transcript(&transport, &host, team, session_id).await?;
        let removed = remove_file(&transport, &host, &path).await?;
        Ok((path, removed))
    }
    .await;
    transport.disconnect(&host).await;
    transport.remove_socket_dir();
    result
}

/// `doctor` and `config check --remote`: checks every remote team of `config` (each host over
/// one connection), every problem at once. Returns (team, report)
/// in the order of the teams file; nothing for a config without remote teams.
pub async fn check_teams(config: &crate::config::TeamsConfig) -> Vec<(String, CheckReport)> {
    let teams: Vec<_> = config
        .teams
        .values()
        .filter(|t| t.remote.is_some())
        .collect();
    if teams.is_empty() {
        return Vec::new();
    }
    let transport = match Transport::for_process() {
        Ok(t) => t,
        Err(e) => {
            return teams
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        CheckReport {
                            problems: vec![e.to_string()],
                            ..CheckReport::default()
                        },
                    )
                })
                .collect()
        }
    };
    let mut reports = Vec::new();
    let mut hosts: Vec<Host> = Vec::new();
    for team in &teams {
        let report = match team_host(team) {
            Some(Ok(host)) => {
                let agent = team
                    .agent_path
                    .clone()
                    .unwrap_or_else(|| team.agent.clone());
                let mut report =
                    check(&transport, &host, &team.path.display().to_string(), &agent).await;
                // One more problem: no bridge there, no Switchboard tools for its agents.
                if report.reached {
                    let program = team.switchboard_path.as_deref();
                    match super::mcp::check_bridge(&transport, &host, program).await {
                        Ok(found) => report.bridge = Some(found),
                        Err(problem) => report.problems.push(problem),
                    }
                }
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
                report
            }
            Some(Err(e)) => CheckReport {
                problems: vec![e.to_string()],
                ..CheckReport::default()
            },
            None => CheckReport::default(),
        };
        reports.push((team.name.clone(), report));
    }
    for host in &hosts {
        transport.disconnect(host).await;
    }
    transport.remove_socket_dir();
    reports
}

/// Checks the folder and the agent on the remote host, in one connection: prints
/// `path ok|missing|notdir|unreadable`, `agent <path>|missing`, `version <line>|failed <out>`.
const CHECK_SCRIPT: &str = r#"dir=$1; agent=$2
if [ ! -e "$dir" ]; then echo "path missing"
elif [ ! -d "$dir" ]; then echo "path notdir"
elif [ ! -r "$dir" ] || [ ! -x "$dir" ]; then echo "path unreadable"
else echo "path ok"; fi
found=$(command -v -- "$agent" 2>/dev/null)
if [ -z "$found" ]; then echo "agent missing"; exit 0; fi
echo "agent $found"
v=$(cd / && "$found" --version 2>&1 < /dev/null)
rc=$?
v=$(printf '%s\n' "$v" | head -n 1)
if [ "$rc" -eq 0 ]; then echo "version $v"; else echo "failed $v"; fi
"#;

/// Checks a remote team: the connection (host key, login), the folder `path`, the agent
/// program `agent` (a path, or a name looked up in the remote PATH) and its `--version`.
/// Reports every problem at once; a connection that cannot be made is one problem (nothing
/// else can be checked then).
pub async fn check(transport: &Transport, host: &Host, path: &str, agent: &str) -> CheckReport {
    let mut report = CheckReport::default();
    let out = match transport
        .run_script(
            host,
            CHECK_SCRIPT,
            &[path, agent],
            "checking the team",
            Duration::from_secs(30),
        )
        .await
    {
        Ok(out) => out,
        Err(e) => {
            report.problems.push(e.to_string());
            return report;
        }
    };
    report.reached = true;
    for line in out.stdout.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match (key, value) {
            ("path", "ok") => {}
            ("path", "missing") => report.problems.push(format!(
                "{host}: the team folder {path:?} does not exist there (create it, or fix `path`)"
            )),
            ("path", "notdir") => report
                .problems
                .push(format!("{host}: the team path {path:?} is not a folder")),
            ("path", _) => report.problems.push(format!(
                "{host}: the team folder {path:?} cannot be entered by the login user"
            )),
            ("agent", "missing") => report.problems.push(format!(
                "{host}: no agent program {agent:?} there (install it on {host}, or set \
                 `agent_path` to its path on {host})"
            )),
            ("agent", found) => report.agent = Some(found.to_string()),
            ("version", v) => report.version = Some(v.trim().to_string()),
            ("failed", v) => report.problems.push(format!(
                "{host}: `{agent} --version` failed there: {}",
                crate::redact::text(v.trim())
            )),
            _ => {}
        }
    }
    if report.agent.is_none() && !report.problems.iter().any(|p| p.contains("agent program")) {
        report.problems.push(format!(
            "{host}: the check did not run to its end ({})",
            out.stderr.trim()
        ));
    }
    report
}

/// Removes `file` (a path on the remote host) if it exists. Ok(true) when it was there.
pub async fn remove_file(transport: &Transport, host: &Host, file: &str) -> Result<bool, SshError> {
    const SCRIPT: &str = r#"if [ -e "$1" ] || [ -L "$1" ]; then rm -f -- "$1" && echo removed; else echo absent; fi"#;
    let out = transport
        .run_script(
            host,
            SCRIPT,
            &[file],
            "removing a transcript",
            Duration::from_secs(20),
        )
        .await?;
    match out.stdout.trim() {
        "removed" => Ok(true),
        "absent" => Ok(false),
        _ => Err(SshError::Remote {
            host: host.destination.clone(),
            what: format!("removing {file}"),
            detail: out.stderr.trim().to_string(),
        }),
    }
}

/// Claude Code's transcript of `session_id` for the folder `project` on the remote host:
/// `$CLAUDE_CONFIG_DIR` (from the team's env `config_dir` when given, else the remote
/// session's) or `$HOME/.claude`, `projects/<escaped resolved folder>/<id>.jsonl`.
pub async fn claude_transcript(
    transport: &Transport,
    host: &Host,
    project: &str,
    session_id: &str,
    config_dir: Option<&str>,
) -> Result<String, SshError> {
    const SCRIPT: &str = r#"cd -- "$1" 2>/dev/null && pwd -P || printf '%s\n' "$1"
if [ -n "$2" ]; then printf '%s\n' "$2"
elif [ -n "$CLAUDE_CONFIG_DIR" ]; then printf '%s\n' "$CLAUDE_CONFIG_DIR"
else printf '%s/.claude\n' "$HOME"; fi"#;
    let out = transport
        .run_script(
            host,
            SCRIPT,
            &[project, config_dir.unwrap_or("")],
            "finding the transcript",
            Duration::from_secs(20),
        )
        .await?;
    let mut lines = out.stdout.lines();
    let (Some(resolved), Some(dir)) = (lines.next(), lines.next()) else {
        return Err(SshError::Remote {
            host: host.destination.clone(),
            what: "finding the transcript".into(),
            detail: out.stderr.trim().to_string(),
        });
    };
    Ok(format!(
        "{}/projects/{}/{session_id}.jsonl",
        dir.trim_end_matches('/'),
        crate::agent::claude_project_folder(resolved)
    ))
}

/// Makes the 0700 folder `dir` on the remote host (owned by the login user; an existing one
/// must be a folder of theirs, not a symlink, and is set to 0700) and removes a stale socket
/// `dir/name` in it.
const SOCKET_DIR_SCRIPT: &str = r#"dir=$1; sock=$2
umask 077
if [ -L "$dir" ]; then echo "symlink"; exit 0; fi
mkdir -p -- "$dir" || exit 1
[ -O "$dir" ] || { echo "notmine"; exit 0; }
chmod 700 -- "$dir" || exit 1
rm -f -- "$dir/$sock"
echo ok
"#;

/// A reverse forward over `host`'s control connection: the Unix socket `remote_socket` on
/// the remote host (in a 0700 folder) leads to `local` here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReverseForward {
    /// The socket path on the remote host.
    pub remote_socket: String,
    /// Where it leads: a local Unix socket path, or `127.0.0.1:PORT`.
    pub local: String,
}

impl ReverseForward {
    fn spec(&self) -> String {
        format!("{}:{}", self.remote_socket, self.local)
    }
}

/// Sets up a reverse forward on `host`'s control connection: the remote folder `remote_dir`
/// (created 0700 on the remote host), socket `name` in it, leading to `local` (a local Unix
/// socket path, or `127.0.0.1:PORT`). Only the login user of the remote host can reach it
/// (sshd creates the socket 0600 by default, and the folder is 0700). Cancel it with
/// [`cancel_forward`], or it ends with the connection.
pub async fn reverse_forward(
    transport: &Transport,
    host: &Host,
    remote_dir: &str,
    name: &str,
    local: &str,
) -> Result<ReverseForward, SshError> {
    if name.contains('/') || name.is_empty() {
        return Err(SshError::Remote {
            host: host.destination.clone(),
            what: "forwarding Switchboard's socket".into(),
            detail: format!("bad socket name {name:?}"),
        });
    }
    let out = transport
        .run_script(
            host,
            SOCKET_DIR_SCRIPT,
            &[remote_dir, name],
            "making the socket folder",
            Duration::from_secs(20),
        )
        .await?;
    match out.stdout.trim() {
        "ok" => {}
        what => {
            return Err(SshError::Remote {
                host: host.destination.clone(),
                what: format!("making the socket folder {remote_dir}"),
                detail: match what {
                    "symlink" => "it is a symbolic link; remove it".to_string(),
                    "notmine" => "it belongs to another user; remove it or choose another".into(),
                    _ => out.stderr.trim().to_string(),
                },
            })
        }
    }
    let forward = ReverseForward {
        remote_socket: format!("{}/{name}", remote_dir.trim_end_matches('/')),
        local: local.to_string(),
    };
    let out = transport
        .control(host, "forward", &["-R".into(), forward.spec()])
        .await?;
    if out.status != Some(0) {
        return Err(SshError::Remote {
            host: host.destination.clone(),
            what: format!("forwarding {} to {local}", forward.remote_socket),
            detail: format!(
                "{} (sshd must allow it: AllowStreamLocalForwarding yes)",
                out.stderr.trim()
            ),
        });
    }
    Ok(forward)
}

/// Cancels a reverse forward made by [`reverse_forward`] and removes its socket.
pub async fn cancel_forward(
    transport: &Transport,
    host: &Host,
    forward: &ReverseForward,
) -> Result<(), SshError> {
    let _ = transport
        .control(host, "cancel", &["-R".into(), forward.spec()])
        .await?;
    transport
        .run_script(
            host,
            r#"rm -f -- "$1""#,
            &[&forward.remote_socket],
            "removing the forwarded socket",
            Duration::from_secs(20),
        )
        .await?;
    Ok(())
}
