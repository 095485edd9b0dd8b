//! `switchboard doctor`: prints the checks of [`switchboard::doctor`], one line each with the
//! fix, and exits 1 when one failed.

use std::process::ExitCode;

use clap::Args;
use switchboard::doctor::{self, DoctorOptions};
use switchboard::Error;

use super::output::{paint, print_json, state_style, Stream};
use super::Ctx;

/// Check the set-up: the teams file, each team's agent binary and credentials, the database,
/// a running server, and each team's registration in Claude Code. One line per check with the
/// fix; exit 1 when a check fails.
#[derive(Debug, Args)]
pub struct DoctorCmd {}

impl DoctorCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let options = DoctorOptions {
            config_path: ctx.config_path.as_deref(),
        };
        let report = doctor::run(&options);
        if ctx.json() {
            print_json(&report)?;
        } else {
            let width = report
                .checks
                .iter()
                .map(|c| c.name.chars().count())
                .max()
                .unwrap_or(0);
            for c in &report.checks {
                let label = c.outcome.as_str();
                let padded = format!("{label:<4}");
                let label = match state_style(label) {
                    Some(style) => paint(style, &padded, Stream::Stdout),
                    None => padded,
                };
                let mut line = format!("{label}  {:<width$}  {}", c.name, c.detail);
                if let Some(fix) = &c.fix {
                    line.push_str(" -> fix: ");
                    line.push_str(fix);
                }
                outln!("{}", line.trim_end());
            }
        }
        Ok(if report.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
