//! The agent runtime's lower half: the agent CLIs Switchboard drives (behind
//! [`adapter::AgentAdapter`]), the stream-json codec ([`event`]), one agent child process
//! ([`process`]) and the pool of live agents ([`supervisor`]). It reports through the
//! SessionManager; it holds no SQL.

pub mod adapter;
pub mod checks;
pub mod claude;
pub mod claude_mcp;
pub mod event;
pub mod kinds;
pub mod process;
pub mod session;
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
