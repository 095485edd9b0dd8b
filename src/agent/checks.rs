//! What `switchboard doctor` asks of a team's agent CLI: does its binary run (`--version`),
//! and are there credentials it will find. The agent layer owns these because they are CLI
//! specifics (which program, which env, which files); the checks' verdicts are made in
//! [`crate::doctor`].

use std::time::Duration;

use super::adapter::{adapter_for, command_spec};
use super::process::run_bounded;
use crate::config::TeamConfig;

/// How long `<agent> --version` may take.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of its output is kept.
const OUTPUT_LIMIT: u64 = 64 * 1024;

/// Why an agent binary does not answer `--version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionProblem {
    /// The team's agent kind is not one this switchboard can run.
    UnknownAgent(String),
    /// The program could not be started (not found, not executable).
    CannotStart {
        /// The program as configured.
        program: String,
        /// Why.
        error: String,
    },
    /// It ran and failed (or printed nothing).
    Failed {
        /// The program as configured.
        program: String,
        /// How it ended.
        status: String,
        /// The end of what it printed.
        output: String,
    },
    /// It did not finish within [`VERSION_TIMEOUT`] (it was killed).
    TimedOut {
        /// The program as configured.
        program: String,
    },
}

impl std::fmt::Display for VersionProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionProblem::UnknownAgent(a) => write!(f, "unknown agent kind {a:?}"),
            VersionProblem::CannotStart { program, error } => {
                write!(f, "cannot run {program}: {error}")
            }
            VersionProblem::Failed {
                program,
                status,
                output,
            } => {
                write!(f, "`{program} --version` {status}")?;
                if !output.is_empty() {
                    write!(f, ": {output}")?;
                }
                Ok(())
            }
            VersionProblem::TimedOut { program } => write!(
                f,
                "`{program} --version` did not finish in {}s",
                VERSION_TIMEOUT.as_secs()
            ),
        }
    }
}

/// The program a team's agent runs (its `agent_path`, or the agent kind's default).
pub fn agent_program(team: &TeamConfig) -> Option<String> {
    Some(command_spec(adapter_for(&team.agent)?, team).program)
}

/// Runs `<agent> --version` in the team's folder with the team's env (in its own process
/// group, killed after [`VERSION_TIMEOUT`]); returns the first line it printed.
pub fn agent_version(team: &TeamConfig) -> Result<String, VersionProblem> {
    let adapter =
        adapter_for(&team.agent).ok_or_else(|| VersionProblem::UnknownAgent(team.agent.clone()))?;
    let spec = command_spec(adapter, team);
    let program = spec.program.clone();
    let out = run_bounded(&spec, &["--version"], VERSION_TIMEOUT, OUTPUT_LIMIT)
        .map_err(|e| VersionProblem::CannotStart {
            program: program.clone(),
            error: e.to_string(),
        })?
        .ok_or_else(|| VersionProblem::TimedOut {
            program: program.clone(),
        })?;
    let first = out.stdout.lines().map(str::trim).find(|l| !l.is_empty());
    match first {
        Some(line) if out.status.success() => Ok(line.to_string()),
        _ => Err(VersionProblem::Failed {
            program,
            status: match out.status.code() {
                Some(c) => format!("exited with status {c}"),
                None => format!("ended by {}", out.status),
            },
            output: tail(&format!("{}{}", out.stderr, out.stdout)),
        }),
    }
}

/// The last non-empty line of `text`, at most 300 characters.
fn tail(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    line.chars().take(300).collect()
}

/// Where the team's agent would find credentials, or `Err` with where it looked. Names the
/// source, never the secret. For Claude Code 2.1.328: `ANTHROPIC_API_KEY`,
/// `ANTHROPIC_AUTH_TOKEN` or `CLAUDE_CODE_OAUTH_TOKEN` in the team's env or Switchboard's;
/// a login in `<config dir>/.credentials.json` (config dir: `$CLAUDE_SECURESTORAGE_CONFIG_DIR`,
/// else `$CLAUDE_CONFIG_DIR`, else `~/.claude`); a `/login`-managed `primaryApiKey` in
/// `.claude.json`; or an `apiKeyHelper` in `<config dir>/settings.json`.
pub fn agent_credentials(team: &TeamConfig) -> Result<String, String> {
    match adapter_for(&team.agent) {
        Some(adapter) => adapter.credentials(team),
        None => Err(format!(
            "unknown agent kind {:?}: cannot tell where it keeps credentials",
            team.agent
        )),
    }
}

/// The value of `name` the agent of `team` sees, and where it comes from: the team's `env`
/// wins over Switchboard's own environment (which the agent inherits); empty counts as unset.
pub fn team_var(team: &TeamConfig, name: &str) -> Option<(String, &'static str)> {
    match team.env.get(name) {
        Some(v) => Some((v.clone(), "the team's env")),
        None => std::env::var(name).ok().map(|v| (v, "the environment")),
    }
    .filter(|(v, _)| !v.is_empty())
}
