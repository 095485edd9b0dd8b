//! Switchboard's chained MCP tools for an agent on a remote host. Claude Code's HTTP MCP
//! transport cannot dial a Unix socket, and a forwarded TCP port on the remote host would be
//! open to every user there, so:
//!
//! * the session's MCP endpoint (`127.0.0.1:PORT` here, the same one local agents use) is
//!   forwarded over the host's control connection to a Unix socket in a 0700 folder of the
//!   remote login user, `/tmp/sb-mcp-<remote uid>/<session id>.<start>.sock` (as
//!   [`super::ops::reverse_forward`] does, with the credential's command), where `<start>`
//!   is new for each agent start (see [`start_name`]);
//! * the agent's scoped credential (its `X-Switchboard-Agent` token, the only one it holds)
//!   is written beside it, `<session id>.<start>.token` (0600), through ssh's stdin: never in
//!   an argv here or there (a remote command line travels in the local `ssh`'s argv, which
//!   every local user can read);
//! * the agent's MCP config (given inline, `--mcp-config '<json>'`) runs the stdio bridge
//!   `switchboard mcp-bridge --socket S --url U --token-file F` on the remote host (the team's
//!   `switchboard_path`), which relays JSON-RPC lines between the agent and that endpoint.
//!
//! [`remote_mcp_wiring`] sets this up for one agent start; [`RemoteMcp::guard`] takes it
//! down when the agent stops. Knows nothing of sessions or the router: the lifecycle calls it
//! with the [`SwitchboardServer`] the router made for the agent.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::ops::ReverseForward;
use super::{quote, Host, SshError, Transport};
use crate::agent::adapter::{LaunchSpec, SwitchboardServer};

/// The `switchboard` subcommand that relays an agent's MCP traffic to the forwarded socket.
pub const BRIDGE_COMMAND: &str = "mcp-bridge";
/// The variable the bridge reads the agent's credential from when it is not given a file.
pub const AGENT_TOKEN_ENV: &str = "SWITCHBOARD_AGENT_TOKEN";
/// The header that carries the agent's credential (see `server::AGENT_HEADER`).
const AGENT_HEADER: &str = "x-switchboard-agent";
/// The program when the team has no `switchboard_path`: `switchboard` on the remote PATH.
pub const DEFAULT_PROGRAM: &str = "switchboard";
/// How long one set-up step on the remote host may take.
const STEP: Duration = Duration::from_secs(20);

/// What a remote agent's launch needs for Switchboard's tools (see [`remote_mcp_wiring`]).
#[derive(Debug)]
pub struct RemoteMcp {
    /// The agent's MCP config (Claude Code's `mcpServers` JSON): Switchboard's server only,
    /// run as the bridge on the remote host.
    pub config: Value,
    /// The arguments that hand it to Claude Code: `--mcp-config <json> --strict-mcp-config`.
    pub args: Vec<String>,
    /// Takes the forward and the credential file down; keep it as long as the agent runs.
    pub guard: ForwardGuard,
}

impl RemoteMcp {
    /// Puts [`RemoteMcp::args`] into a Claude Code launch: an `--mcp-config` (a local file
    /// path, meaningless on the remote host) and `--strict-mcp-config` already there are
    /// replaced. Build the spec with the extras the router made for the agent
    /// (`switchboard_tools` true: `--allowedTools mcp__switchboard`, the tools run without a
    /// prompt).
    pub fn apply(&self, spec: &mut LaunchSpec) {
        let mut args = Vec::with_capacity(spec.args.len() + self.args.len());
        let mut given = spec.args.drain(..);
        while let Some(arg) = given.next() {
            match arg.as_str() {
                "--mcp-config" => {
                    given.next();
                }
                "--strict-mcp-config" => {}
                _ => args.push(arg),
            }
        }
        drop(given);
        args.extend(self.args.iter().cloned());
        spec.args = args;
    }
}

/// The remote end of an agent's Switchboard tools: the forwarded socket and the credential
/// file. [`ForwardGuard::close`] cancels the forward and removes both; dropping it unclosed
/// does the same in the background (when a tokio runtime is there), and the forward ends
/// with the control connection anyway.
#[derive(Debug)]
pub struct ForwardGuard {
    transport: Transport,
    host: Host,
    forward: Option<ReverseForward>,
    token_file: String,
}

impl ForwardGuard {
    /// The socket on the remote host.
    pub fn remote_socket(&self) -> Option<&str> {
        self.forward.as_ref().map(|f| f.remote_socket.as_str())
    }

    /// The credential file on the remote host.
    pub fn token_file(&self) -> &str {
        &self.token_file
    }

    /// Cancels the forward and removes the socket and the credential file.
    pub async fn close(mut self) -> Result<(), SshError> {
        match self.forward.take() {
            Some(forward) => {
                take_down(&self.transport, &self.host, &forward, &self.token_file).await
            }
            None => Ok(()),
        }
    }
}

impl Drop for ForwardGuard {
    fn drop(&mut self) {
        let Some(forward) = self.forward.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (transport, host, token_file) = (
            self.transport.clone(),
            self.host.clone(),
            std::mem::take(&mut self.token_file),
        );
        runtime.spawn(async move {
            if let Err(e) = take_down(&transport, &host, &forward, &token_file).await {
                tracing::warn!(%host, error = %e, "cannot take down a remote agent's MCP forward");
            }
        });
    }
}

async fn take_down(
    transport: &Transport,
    host: &Host,
    forward: &ReverseForward,
    token_file: &str,
) -> Result<(), SshError> {
    // One control request and one command (not `ops::cancel_forward` and a second `rm`).
    let cancelled = transport
        .control(host, "cancel", &["-R".into(), forward_spec(forward)])
        .await;
    transport
        .run_script(
            host,
            r#"rm -f -- "$1" "$2""#,
            &[&forward.remote_socket, token_file],
            "removing the agent's socket and credential",
            STEP,
        )
        .await?;
    cancelled.map(drop)
}

/// `-R`'s argument: `REMOTE_SOCKET:LOCAL`.
fn forward_spec(forward: &ReverseForward) -> String {
    format!("{}:{}", forward.remote_socket, forward.local)
}

/// Makes the 0700 folder `/tmp/sb-mcp-<uid>` of the login user (a symlink or another
/// user's folder is refused), writes stdin to `<folder>/<name>.token` (`$2`, 0600, replaced
/// whole), removes what earlier starts of the same session (`$1`) left there (a killed
/// Switchboard, a take-down that failed or has not finished yet: `<session>.*.sock` and
/// `.token`, and the names of versions before the start suffix, `<session>.sock` and
/// `.token`), printing `stale <socket>` for each socket so that its forward is cancelled,
/// and prints `dir <folder>`. The same checks as [`super::ops::reverse_forward`]'s, in the
/// same command. The session id is `[A-Za-z0-9-]+` (checked before), so it holds no glob
/// character, and `.` ends it: another session's names never match.
const TOKEN_SCRIPT: &str = r#"umask 077
dir=/tmp/sb-mcp-$(id -u) || exit 1
if [ -L "$dir" ]; then echo "symlink $dir"; exit 0; fi
mkdir -p -- "$dir" || exit 1
[ -O "$dir" ] || { echo "notmine $dir"; exit 0; }
chmod 700 -- "$dir" || exit 1
tmp="$dir/.$2.token.$$"
cat > "$tmp" && mv -f -- "$tmp" "$dir/$2.token" || { rm -f -- "$tmp"; exit 1; }
for f in "$dir/$1".*.sock "$dir/$1".*.token "$dir/$1.sock" "$dir/$1.token"; do
  case $f in "$dir/$2".*) continue ;; esac
  [ -e "$f" ] || [ -L "$f" ] || continue
  case $f in *.sock) echo "stale $f" ;; esac
  rm -f -- "$f"
done
echo "dir $dir"
"#;

/// The name of one agent start's socket and credential file: `<session id>.<8 hex digits>`,
/// new for every start. With the session id alone, a start that followed a take-down that
/// failed (or had not finished) while the control connection stayed up asked `ssh -O
/// forward` for a forward OpenSSH still had, which it answers as done without making the
/// socket again (the new agent's bridge found none), and the late take-down could remove the
/// new agent's socket and credential. Each start's names are its own; the next start of the
/// session clears the leftovers (`TOKEN_SCRIPT`).
pub fn start_name(session_id: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{session_id}.{}", &id[..8])
}

/// Sets up Switchboard's tools for an agent of session `session_id` that is about to start
/// on `host`: the forwarded socket and the credential file (see the module doc), and the MCP
/// config that runs `program mcp-bridge` there (`program`: the team's `switchboard_path`, or
/// [`DEFAULT_PROGRAM`]). `server` is what the router made for this agent start
/// (`LaunchExtras::switchboard`): its loopback `url` and its `X-Switchboard-Agent` header.
///
/// Call it after the router made the agent's credential and before spawning; keep
/// [`RemoteMcp::guard`] with the agent and [`ForwardGuard::close`] it when the agent stops.
pub async fn remote_mcp_wiring(
    transport: &Transport,
    host: &Host,
    session_id: &str,
    server: &SwitchboardServer,
    program: Option<&str>,
) -> Result<RemoteMcp, SshError> {
    let fail = |detail: String| SshError::Remote {
        host: host.destination.clone(),
        what: "forwarding Switchboard's tools".into(),
        detail,
    };
    if session_id.is_empty()
        || !session_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(fail(format!("bad session id {session_id:?}")));
    }
    let local = loopback_authority(&server.url).ok_or_else(|| {
        fail(format!(
            "the MCP endpoint {} is not on this machine's loopback (http://127.0.0.1:PORT/...)",
            server.url
        ))
    })?;
    let token = server
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(AGENT_HEADER))
        .map(|(_, v)| v.as_str())
        .filter(|t| !t.is_empty() && !t.chars().any(char::is_control))
        .ok_or_else(|| fail("the agent has no credential (X-Switchboard-Agent)".into()))?;
    let name = start_name(session_id);
    let (dir, stale) = write_token(transport, host, session_id, &name, token).await?;
    // Earlier starts' forwards that were not taken down: cancelled (best effort: one that
    // went to another local endpoint is not found, and its socket is already gone, so
    // nothing can reach it; it ends with the control connection).
    for socket in stale {
        let old = ReverseForward {
            remote_socket: socket,
            local: local.clone(),
        };
        if let Err(e) = transport
            .control(host, "cancel", &["-R".into(), forward_spec(&old)])
            .await
        {
            tracing::debug!(%host, error = %e, "cannot cancel a stale MCP forward");
        }
    }
    let token_file = format!("{dir}/{name}.token");
    let forward = ReverseForward {
        remote_socket: format!("{dir}/{name}.sock"),
        local,
    };
    // The forward on the control connection (the folder is made and checked above).
    let added = transport
        .control(host, "forward", &["-R".into(), forward_spec(&forward)])
        .await;
    let refused = match added {
        Ok(out) if out.status == Some(0) => None,
        Ok(out) => Some(fail(format!(
            "forwarding {} to {}: {} (sshd must allow it: AllowStreamLocalForwarding yes)",
            forward.remote_socket,
            forward.local,
            out.stderr.trim()
        ))),
        Err(e) => Some(e),
    };
    if let Some(e) = refused {
        let _ = transport
            .run_script(
                host,
                r#"rm -f -- "$1""#,
                &[&token_file],
                "cleaning up",
                STEP,
            )
            .await;
        return Err(e);
    }
    let config = bridge_config(
        program.unwrap_or(DEFAULT_PROGRAM),
        &forward.remote_socket,
        &server.url,
        &token_file,
        server.timeout_ms,
    );
    let args = vec![
        "--mcp-config".to_string(),
        config.to_string(),
        "--strict-mcp-config".to_string(),
    ];
    Ok(RemoteMcp {
        config,
        args,
        guard: ForwardGuard {
            transport: transport.clone(),
            host: host.clone(),
            forward: Some(forward),
            token_file,
        },
    })
}

/// Checks that `program` (the team's `switchboard_path`, or [`DEFAULT_PROGRAM`]) runs on
/// `host` and has the bridge: its path there and version line, or the problem (naming the
/// host and the fix), for `doctor` and `config check --remote`. Without it, a remote agent
/// starts without Switchboard's tools (Claude Code only logs that its MCP server failed).
pub async fn check_bridge(
    transport: &Transport,
    host: &Host,
    program: Option<&str>,
) -> Result<String, String> {
    const SCRIPT: &str = r#"found=$(command -v -- "$1" 2>/dev/null) || { echo missing; exit 0; }
v=$(cd / && "$found" --version 2>&1 < /dev/null) || { printf 'failed %s\n' "$v" | head -n 1; exit 0; }
"$found" mcp-bridge --help > /dev/null 2>&1 || { echo nobridge; exit 0; }
printf 'ok %s %s\n' "$found" "$(printf '%s\n' "$v" | head -n 1)"
"#;
    let program = program.unwrap_or(DEFAULT_PROGRAM);
    let out = transport
        .run_script(host, SCRIPT, &[program], "checking switchboard there", STEP)
        .await
        .map_err(|e| e.to_string())?;
    let line = out.stdout.lines().last().unwrap_or("").trim().to_string();
    let here = concat!("switchboard ", env!("CARGO_PKG_VERSION"));
    match line.split_once(' ').unwrap_or((line.as_str(), "")) {
        ("ok", rest) => {
            let (path, version) = rest.split_once(' ').unwrap_or((rest, ""));
            if version.trim() != here {
                return Err(format!(
                    "{host}: {path} is {:?}, this is {here:?}: install the same version there \
                     (the agent's bridge to Switchboard's tools runs it)",
                    version.trim()
                ));
            }
            Ok(format!("{path} ({version})"))
        }
        ("missing", _) => Err(format!(
            "{host}: no {program:?} there: install switchboard on {host} (its agents reach \
             Switchboard's tools through `switchboard mcp-bridge`), or set `switchboard_path` \
             to its path there"
        )),
        ("nobridge", _) => Err(format!(
            "{host}: {program:?} there has no `mcp-bridge` command: install this version there"
        )),
        ("failed", said) => Err(format!(
            "{host}: `{program} --version` failed there: {}",
            crate::redact::text(said.trim())
        )),
        _ => Err(format!(
            "{host}: the check of {program:?} did not run to its end ({})",
            out.stderr.trim()
        )),
    }
}

/// The MCP config that runs the bridge: `program mcp-bridge --socket S --url U --token-file F`.
pub fn bridge_config(
    program: &str,
    socket: &str,
    url: &str,
    token_file: &str,
    timeout_ms: u64,
) -> Value {
    json!({"mcpServers": {crate::agent::claude_mcp::SERVER_NAME: {
        "type": "stdio",
        "command": program,
        "args": [BRIDGE_COMMAND, "--socket", socket, "--url", url, "--token-file", token_file],
        "env": {},
        "timeout": timeout_ms,
    }}})
}

/// `127.0.0.1:PORT` (or `[::1]:PORT`) of a loopback `http://` URL; `localhost` is 127.0.0.1.
fn loopback_authority(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let authority = uri.authority()?;
    let port = authority.port_u16()?;
    match authority.host() {
        "127.0.0.1" | "localhost" => Some(format!("127.0.0.1:{port}")),
        "[::1]" => Some(format!("[::1]:{port}")),
        _ => None,
    }
}

/// Writes `token` to the credential file `name` (see [`start_name`]) of `session_id` on
/// `host` through ssh's stdin, removing earlier starts' leftovers; returns the remote folder
/// and the sockets removed.
async fn write_token(
    transport: &Transport,
    host: &Host,
    session_id: &str,
    name: &str,
    token: &str,
) -> Result<(String, Vec<String>), SshError> {
    let fail = |detail: String| SshError::Remote {
        host: host.destination.clone(),
        what: "writing the agent's credential".into(),
        detail,
    };
    transport.connect(host).await?;
    let command = quote::script_command(TOKEN_SCRIPT, &[session_id, name]).map_err(|source| {
        SshError::Quote {
            host: host.destination.clone(),
            source,
        }
    })?;
    let mut child = tokio::process::Command::new(transport.program())
        .args(transport.command_args(host, &command))
        .env_remove("SSH_ASKPASS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SshError::Local {
            what: format!("cannot run {}", transport.program()),
            source,
        })?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| fail("no stdin for ssh".into()))?;
    let run = async {
        stdin.write_all(token.as_bytes()).await?;
        stdin.shutdown().await?;
        drop(stdin);
        child.wait_with_output().await
    };
    let out = tokio::time::timeout(STEP, run)
        .await
        .map_err(|_| SshError::Timeout {
            host: host.destination.clone(),
            what: "writing the agent's credential".into(),
            timeout: STEP,
        })?
        .map_err(|source| SshError::Local {
            what: "talking to ssh".into(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(255) {
        return Err(SshError::classify(
            &host.destination,
            "writing the agent's credential",
            Some(255),
            &stderr,
        ));
    }
    let said = stdout.lines().last().unwrap_or("").trim();
    let stale = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("stale "))
        .map(str::to_string)
        .collect();
    match said.split_once(' ') {
        Some(("dir", dir)) if dir.starts_with("/tmp/sb-mcp-") => Ok((dir.to_string(), stale)),
        Some(("symlink", dir)) => Err(fail(format!("{dir} is a symbolic link; remove it"))),
        Some(("notmine", dir)) => Err(fail(format!(
            "{dir} belongs to another user of {host}; remove it (or log in as its owner)"
        ))),
        _ => Err(fail(format!(
            "exit status {:?}: {}",
            out.status.code(),
            stderr.trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_endpoints_are_forwarded() {
        assert_eq!(
            loopback_authority("http://127.0.0.1:7717/mcp").as_deref(),
            Some("127.0.0.1:7717")
        );
        assert_eq!(
            loopback_authority("http://localhost:80/mcp").as_deref(),
            Some("127.0.0.1:80")
        );
        assert_eq!(
            loopback_authority("http://[::1]:9/mcp").as_deref(),
            Some("[::1]:9")
        );
        for bad in [
            "http://10.0.0.1:7717/mcp",
            "https://127.0.0.1:7717/mcp",
            "http://127.0.0.1/mcp",
            "not a url",
        ] {
            assert_eq!(loopback_authority(bad), None, "{bad}");
        }
    }

    #[test]
    fn apply_replaces_a_local_config_file() {
        let mut spec = LaunchSpec {
            program: "claude".into(),
            args: [
                "-p",
                "--mcp-config",
                "/local/x.json",
                "--strict-mcp-config",
                "--verbose",
            ]
            .map(String::from)
            .to_vec(),
            cwd: "/".into(),
            env: Default::default(),
            inherit: Vec::new(),
            env_remove: Vec::new(),
        };
        let config = bridge_config(
            "switchboard",
            "/tmp/s",
            "http://127.0.0.1:1/mcp",
            "/tmp/t",
            5,
        );
        let transport = Transport::new(
            std::env::temp_dir().join(format!("sb-mcp-unit-{}", std::process::id())),
        )
        .expect("socket folder");
        let remote = RemoteMcp {
            args: vec![
                "--mcp-config".into(),
                config.to_string(),
                "--strict-mcp-config".into(),
            ],
            config,
            guard: ForwardGuard {
                transport,
                host: Host::new("h", Vec::new()).expect("host"),
                forward: None,
                token_file: String::new(),
            },
        };
        remote.apply(&mut spec);
        assert_eq!(spec.args[..2], ["-p", "--verbose"]);
        assert_eq!(spec.args[2], "--mcp-config");
        assert!(spec.args[3].contains("mcp-bridge"), "{}", spec.args[3]);
        assert!(!spec.args.iter().any(|a| a == "/local/x.json"));
        assert_eq!(spec.args.len(), 5);
        let _ = std::fs::remove_dir_all(remote.guard.transport.socket_dir());
    }
}
