//! What Switchboard knows about the agent CLIs it drives. For now: where Claude Code keeps a
//! session's transcript. Process handling arrives with the agent runtime.

pub mod event;

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
