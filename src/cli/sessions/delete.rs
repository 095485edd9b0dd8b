//! `switchboard sessions delete <SESSION_ID | FROM:TO> [--transcript] [--yes]`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use switchboard::store::Session;
use switchboard::Error;

use super::SessionRef;
use crate::cli::output::print_json;
use crate::cli::Ctx;

/// Delete a session.
#[derive(Debug, Args)]
pub struct DeleteCmd {
    /// The session: its id (UUID) or FROM:TO.
    session: SessionRef,
    /// Also remove the agent's transcript of the session (Claude Code's .jsonl file).
    #[arg(long)]
    transcript: bool,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

#[derive(Serialize)]
struct Deleted {
    deleted: Session,
    transcript: Option<String>,
    transcript_removed: bool,
}

impl DeleteCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let m = ctx.manager()?;
        let s = self.session.resolve(&m)?;
        if !self.yes {
            let stdin = std::io::stdin();
            if !stdin.is_terminal() {
                return Err(Error::Usage(format!(
                    "refusing to delete session {} ({}) without --yes: stdin is not a terminal",
                    s.session_id,
                    s.pair()
                )));
            }
            eprint!(
                "Delete session {} ({} -> {}, {} messages){}? [y/N] ",
                s.session_id,
                s.from_team,
                s.to_team,
                s.message_count,
                if self.transcript {
                    " and its transcript"
                } else {
                    ""
                }
            );
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            let _ = stdin.lock().read_line(&mut answer);
            if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
                eprintln!("not deleted");
                return Ok(ExitCode::from(1));
            }
        }
        // A remote team's transcript is found and removed on its host (over SSH).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Other(format!("cannot start the async runtime: {e}")))?;
        let (deleted, found) = runtime.block_on(m.delete_anywhere(&s, self.transcript))?;
        let transcript_existed = found.as_ref().is_some_and(|(_, existed)| *existed);
        let transcript = found.map(|(path, _)| path);
        if ctx.json() {
            print_json(&Deleted {
                deleted,
                transcript,
                transcript_removed: transcript_existed,
            })?;
        } else {
            outln!(
                "deleted session {} ({} -> {})",
                deleted.session_id,
                deleted.from_team,
                deleted.to_team
            );
            if let Some(p) = transcript {
                if transcript_existed {
                    outln!("removed transcript {p}");
                } else {
                    outln!("no transcript at {p}");
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
