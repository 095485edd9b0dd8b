//! The agent runtime's lower half: everything that knows which agent CLI a team runs. The
//! router above drives a session's agent through [`session::AgentSession`] and reads its
//! decoded output ([`event::AgentEvent`]) without naming a CLI; it holds no SQL.
//!
//! - [`adapter`]: the [`adapter::AgentAdapter`] trait, one implementation per agent kind, and
//!   the launch record ([`adapter::LaunchSpec`]) and environment rules every kind shares.
//! - [`kinds`]: the adapter of each kind listed in [`crate::config::kinds::AGENT_KINDS`].
//! - [`claude`] (+ [`claude_mcp`]): Claude Code, the default kind.
//! - [`codex`]: the Codex CLI (`codex app-server`, JSON-RPC, one process per session).
//! - [`gemini`]: the Gemini CLI, headless, one process per turn.
//! - [`activity`]: what the Codex and Gemini decoders make of their output.
//! - [`ssh`]: the SSH transport of remote teams.
//! - [`session`]: the live agent of one session: spawn, readiness probe, message and
//!   compaction delivery, decoded output, permission answers, interrupt, stop.
//! - [`process`]: one child process (process group, environment, stderr log, stop/kill);
//!   [`supervisor`]: the pool of live agents; [`event`]: Switchboard's decoded agent output
//!   and the stream-json decoder; [`checks`]: `--version` and credentials for `doctor`.
//!
//! # Adding an agent CLI
//!
//! A new kind is one file here plus its tests, and two lines elsewhere that the compiler
//! asks for:
//!
//! 1. `src/agent/<kind>.rs`: a unit struct implementing [`adapter::AgentAdapter`]:
//!    - `name`: the `agent` value of the teams file.
//!    - `launch`: argv, cwd (the team folder), the team's env, and which of Switchboard's
//!      variables the agent inherits ([`adapter::BASE_ENV`] plus the kind's own, as
//!      [`claude::CLAUDE_ENV`]). It gets a [`adapter::SessionRef`]: Switchboard's session id,
//!      the agent's own id of the conversation if the CLI picks one (a Codex thread id, kept
//!      with the session in `agent_session_id`), and whether to resume.
//!    - `can_resume`: whether the conversation exists (default: the agent named it, or its
//!      transcript is on disk); `transcript_path`: where the CLI keeps it.
//!    - `encode_message`, `encode_interrupt`, `encode_ready_probe` (a request answered
//!      without a model call, answered by an [`event::AgentEvent::ControlResponse`] with the
//!      same id; `None` when the CLI has none), `compact_text` (`None`: compaction is refused
//!      for the team with a clear reason).
//!    - `decode`: one stdout line to an [`event::AgentEvent`]: `Init { session_id }` when the
//!      agent names its conversation (the worker stores an id that is not Switchboard's),
//!      `Assistant` text and tool calls, `User` tool results, `Status`/`ApiRetry`,
//!      `ControlRequest` (a permission request), and exactly one `Result` per turn with its
//!      usage. Unknown lines are `Other`, never an error. A CLI whose answer or ids span
//!      several lines returns a stateful [`adapter::LineDecoder`] from `decoder` (one per
//!      process; Codex and Gemini fold their `Activity` with `activity::TurnTally`).
//!    - Cost: `reports_cost` false when the CLI reports tokens only; Switchboard then prices
//!      the turn from `[settings.prices."MODEL"]` (set `TurnResult.model` when the CLI says
//!      which model answered; `Usage.cached_input_tokens` is priced apart).
//!    - `credentials`: where the agent finds its key or login, for `doctor` (files and the
//!      environment only, never a model call).
//!    - The process model (`process_model`, below), and for a CLI that opens its
//!      conversation over its protocol: `opening`, `reopening`, `track`, `encode_input`.
//!    - MCP: `mcp_config` returns a JSON config the router writes to a private per-session
//!      file ([`adapter::LaunchExtras::mcp_config`], Claude's `--mcp-config`); a CLI wired by
//!      argv or environment (Codex `-c mcp_servers...`, Gemini settings with `$VAR` headers)
//!      returns `None` and builds its wiring in `launch` from
//!      [`adapter::LaunchExtras::switchboard`] (header values in environment variables named
//!      `SWITCHBOARD_MCP_TOKEN_<n>`, which the launch record redacts; never in argv).
//!    - Permissions: `permission_ask` recognises a permission request in a `ControlRequest`,
//!      `encode_permission` writes the decision back; Switchboard's rules, a person or the
//!      calling team decide in between (`router/approvals.rs`).
//!    - Unit tests of the builders and the decoder beside the code, and tests against the real,
//!      pinned CLI offline (see `tests/claude_code.rs` and the stand-ins in `tests/fake_api`).
//! 2. `src/config/kinds.rs`: a [`crate::config::kinds::KindId`] variant and an entry of
//!    [`crate::config::kinds::AGENT_KINDS`] naming the agent-specific team options it takes
//!    (a team setting an option its kind does not take is a config error at that key), the
//!    options of other kinds it refuses with a reason, and whether it may run on a remote host.
//! 3. `src/agent/kinds.rs`: the match arm from that variant to the adapter (the build fails
//!    until it is there).
//!
//! Process models ([`adapter::ProcessModel`], run by [`session::AgentSession`]; the router
//! does not change for any of them):
//! - `PerSession`: one process per session, many turns on stdin.
//!   - Claude Code chooses its conversation in argv (`--session-id`/`--resume`).
//!   - `codex app-server` (JSON-RPC, docs/codex-protocol.md) opens it over its protocol:
//!     [`adapter::AgentAdapter::opening`] gives the lines `AgentSession` writes first
//!     (`initialize`, `thread/start` or `thread/resume` of
//!     [`adapter::SessionRef::agent_session_id`]), `reopening` the fallback when the agent
//!     refuses one, `track` what the session learns from decoded events (thread and turn ids,
//!     in [`adapter::Conversation`]) and `encode_input` the message, compaction and interrupt
//!     lines that need them. The answer naming the thread is the readiness probe. The router
//!     calls `AgentSession::open_conversation` after every spawn (a no-op for other CLIs).
//! - `PerTurn`: one process per turn (Gemini headless, docs/gemini-protocol.md). `spawn`
//!   starts no process (it checks the program can run; the lease and the pool slot are held
//!   as for any agent); `send_message` starts the turn's process with the launch
//!   (`launch` for the first turn, [`adapter::AgentAdapter::next_turn_launch`] after: the
//!   kind decides whether it resumes), writes the message and closes stdin; the process's exit
//!   after its `Result` is the normal end of the turn, an exit without one is a crash with its
//!   stderr's tail; `interrupt` is SIGTERM to the turn's group (a turn that then ends without a
//!   `Result` is cancelled, not crashed); between turns the idle wait watches no process and
//!   `stop` has nothing to stop.

pub mod activity;
pub mod adapter;
pub mod checks;
pub mod claude;
pub mod claude_mcp;
pub mod codex;
pub mod event;
pub mod gemini;
pub mod kinds;
pub mod process;
pub mod session;
pub mod ssh;
pub mod supervisor;

/// Errors of the agent runtime.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent could not be started.
    #[error("cannot start agent {program:?} in {}: {}", cwd.display(), spawn_hint(program, cwd, team, source))]
    Spawn {
        /// The executable.
        program: String,
        /// The team whose agent it is (empty when not known yet).
        team: String,
        /// The team folder.
        cwd: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file of Claude Code's own configuration (`.claude.json`, `.mcp.json`) cannot be read.
    #[error("{}: {message}", path.display())]
    ClaudeConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A command of the agent CLI (such as `claude mcp add-json`) failed.
    #[error("`{command}` failed: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status and output.
        message: String,
    },
    /// The SSH transport of a remote team failed (names the host and the fix).
    #[error(transparent)]
    Ssh(#[from] ssh::SshError),
    /// Reading from or writing to the agent failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

use std::path::{Path, PathBuf};

/// Why a spawn failed, and what to do about it: a missing program says what to install or
/// which `agent_path` to set.
fn spawn_hint(program: &str, cwd: &Path, team: &str, source: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let entry = if team.is_empty() {
        "the team's entry".to_string()
    } else {
        format!("`[teams.{team}]`")
    };
    let install = match Path::new(program).file_name().and_then(|n| n.to_str()) {
        Some("claude") => {
            "install Claude Code (`npm install -g @anthropic-ai/claude-code`, which puts `claude` \
             on PATH), or "
        }
        _ => "install it, or ",
    };
    match source.kind() {
        ErrorKind::NotFound if !cwd.is_dir() => {
            format!("the team folder does not exist ({source})")
        }
        ErrorKind::NotFound if !program.contains('/') => format!(
            "no program {program:?} on PATH; {install}set `agent_path` in {entry} of \
             the teams file to the agent's executable"
        ),
        ErrorKind::NotFound => format!(
            "{program} does not exist; set `agent_path` in {entry} of the teams file to the \
             agent's executable, or {}",
            install.trim_end_matches(", or ")
        ),
        ErrorKind::PermissionDenied => format!(
            "{program} is not executable (permission denied); point `agent_path` at the agent's \
             executable"
        ),
        _ => source.to_string(),
    }
}

/// Claude Code's transcript of a session: `<config dir>/projects/<escaped project>/<id>.jsonl`,
/// where the config dir is `$CLAUDE_CONFIG_DIR` or `~/.claude`, and the project is the resolved
/// (symlink-free) folder with every character that is not an ASCII letter or digit as `-`;
/// a name longer than 200 characters is cut there and gets a hash suffix (Claude Code 2.1.328).
pub fn claude_transcript_path(config_dir: &Path, project: &Path, session_id: &str) -> PathBuf {
    let resolved = std::fs::canonicalize(project).unwrap_or_else(|_| project.to_path_buf());
    config_dir
        .join("projects")
        .join(claude_project_folder(&resolved.to_string_lossy()))
        .join(format!("{session_id}.jsonl"))
}

/// The folder name Claude Code gives a project path.
pub fn claude_project_folder(path: &str) -> String {
    const MAX: usize = 200;
    // The rule works on UTF-16 code units: a character outside the BMP becomes two '-'.
    let units: Vec<u16> = path.encode_utf16().collect();
    let escaped: String = units
        .iter()
        .map(|&u| {
            if u < 128 && (u as u8).is_ascii_alphanumeric() {
                u as u8 as char
            } else {
                '-'
            }
        })
        .collect();
    if escaped.len() <= MAX {
        return escaped;
    }
    let mut h: i32 = 0;
    for &u in &units {
        h = (h << 5).wrapping_sub(h).wrapping_add(i32::from(u));
    }
    format!(
        "{}-{}",
        &escaped[..MAX],
        to_base36(i64::from(h).unsigned_abs())
    )
}

fn to_base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if n == 0 {
        return "0".to_string();
    }
    let mut out = Vec::new();
    while n > 0 {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_path_escapes_the_project_path() {
        let p = claude_transcript_path(
            Path::new("/home/u/.claude"),
            Path::new("/nonexistent/my.app_x"),
            "0b0f0c4e-0000-4000-8000-000000000000",
        );
        assert_eq!(
            p,
            Path::new("/home/u/.claude/projects/-nonexistent-my-app-x/0b0f0c4e-0000-4000-8000-000000000000.jsonl")
        );
        // Examples observed from Claude Code 2.1.328.
        assert_eq!(
            claude_project_folder("/tmp/ccresearch/proj2/we.ird_dir-x y"),
            "-tmp-ccresearch-proj2-we-ird-dir-x-y"
        );
        let long = format!(
            "/tmp/ccresearch/proj3/{}/{}/Ünï€de.x",
            "a".repeat(120),
            "b".repeat(120)
        );
        let folder = claude_project_folder(&long);
        assert_eq!(folder.len(), 200 + 1 + "dvpecg".len());
        assert!(folder.ends_with("-dvpecg"), "{folder}");
    }
}
