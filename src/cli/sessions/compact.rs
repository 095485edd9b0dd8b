//! `switchboard sessions compact <SESSION_ID | FROM:TO> | --due [--dry-run]`.
//!
//! For now this records the request (status `compact_pending`) and lists what is due; the
//! agent-side `/compact` comes with the agent runtime.

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use switchboard::store::Session;
use switchboard::Error;

use super::SessionRef;
use crate::cli::output::{print_json, session_row, Table, SESSION_HEADERS};
use crate::cli::Ctx;

/// Ask for compaction of one session, or of every session due for it (marks them
/// compact_pending; the agent compacts them when the agent runtime runs).
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["session", "due"]))]
pub struct CompactCmd {
    /// The session: its id (UUID) or FROM:TO.
    session: Option<SessionRef>,
    /// Every session the compaction policy says is due.
    #[arg(long)]
    due: bool,
    /// Only list what would be marked; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Serialize)]
struct CompactReport {
    dry_run: bool,
    sessions: Vec<Session>,
    marked: usize,
}

impl CompactCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let m = ctx.manager()?;
        let targets = match &self.session {
            Some(r) => vec![r.resolve(&m)?],
            None => m.due_for_compaction(None)?,
        };
        let mut sessions = Vec::with_capacity(targets.len());
        let mut marked = 0;
        for s in targets {
            if self.dry_run {
                sessions.push(s);
            } else {
                sessions.push(m.request_compaction(&s)?);
                marked += 1;
            }
        }
        if ctx.json() {
            print_json(&CompactReport {
                dry_run: self.dry_run,
                sessions,
                marked,
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        if !sessions.is_empty() {
            let mut t = Table::new(SESSION_HEADERS);
            for s in &sessions {
                t.row(session_row(s));
            }
            t.print();
        }
        let what = if self.due {
            "due for compaction"
        } else {
            "selected"
        };
        if self.dry_run {
            println!(
                "{} session(s) {what}; dry run, nothing changed",
                sessions.len()
            );
        } else {
            println!(
                "{} session(s) {what}; {marked} marked compact_pending",
                sessions.len()
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}
