//! `switchboard sessions show <SESSION_ID | FROM:TO>`.

use std::process::ExitCode;

use clap::Args;
use switchboard::Error;

use super::SessionRef;
use crate::cli::output::{print_json, session_details};
use crate::cli::Ctx;

/// Show one session.
#[derive(Debug, Args)]
pub struct ShowCmd {
    /// The session: its id (UUID) or FROM:TO.
    session: SessionRef,
}

impl ShowCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let m = ctx.read_only_manager()?;
        let s = self.session.resolve(&m)?;
        if ctx.json() {
            print_json(&s)?;
        } else {
            out!("{}", session_details(&s, m.should_compact(&s)));
        }
        Ok(ExitCode::SUCCESS)
    }
}
