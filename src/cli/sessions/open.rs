//! `switchboard sessions open FROM TO`.

use std::process::ExitCode;

use clap::Args;
use switchboard::Error;

use crate::cli::output::{print_json, session_details};
use crate::cli::Ctx;

/// Open the session of FROM -> TO.
#[derive(Debug, Args)]
pub struct OpenCmd {
    /// The team that talks.
    from: String,
    /// The team whose agent answers.
    to: String,
}

impl OpenCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let m = ctx.read_only_manager()?;
        let s = m.get_or_create(&self.from, &self.to)?;
        if ctx.json() {
            print_json(&*s)?;
        } else {
            out!("{}", session_details(&s, m.should_compact(&s)));
        }
        Ok(ExitCode::SUCCESS)
    }
}
