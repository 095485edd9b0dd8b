//! The agent runtime's lower half: the agent CLIs Switchboard drives (behind
//! [`adapter::AgentAdapter`]), the stream-json codec ([`event`]), one agent child process
//! ([`process`]) and the pool of live agents ([`supervisor`]). It reports through the
//! SessionManager; it holds no SQL.

pub mod adapter;
pub mod claude;
pub mod event;
pub mod process;
pub mod supervisor;

/// Errors of the agent runtime.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent could not be started.
    #[error("cannot start agent {program:?} in {}: {source}", cwd.display())]
    Spawn {
        /// The executable.
        program: String,
        /// The team folder.
        cwd: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
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

/// Claude Code's transcript of a session:
/// `<home>/.claude/projects/<project path with every non-alphanumeric character as '-'>/<id>.jsonl`.
pub fn claude_transcript_path(home: &Path, project: &Path, session_id: &str) -> PathBuf {
    let escaped: String = project
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    home.join(".claude")
        .join("projects")
        .join(escaped)
        .join(format!("{session_id}.jsonl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_path_escapes_the_project_path() {
        let p = claude_transcript_path(
            Path::new("/home/u"),
            Path::new("/work/my.app_x"),
            "0b0f0c4e-0000-4000-8000-000000000000",
        );
        assert_eq!(
            p,
            Path::new("/home/u/.claude/projects/-work-my-app-x/0b0f0c4e-0000-4000-8000-000000000000.jsonl")
        );
    }
}
