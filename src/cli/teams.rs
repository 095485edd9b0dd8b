//! `switchboard teams`.

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use switchboard::Error;

use super::output::{print_json, Table};
use super::Ctx;

/// List the teams of the teams file, with their session counts.
#[derive(Debug, Args)]
pub struct TeamsCmd {}

#[derive(Serialize)]
struct TeamRow {
    name: String,
    path: String,
    description: Option<String>,
    agent: String,
    agent_path: Option<String>,
    sessions_as_caller: i64,
    sessions_as_callee: i64,
}

impl TeamsCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let m = ctx.read_only_manager()?;
        let stats = m.stats()?;
        let rows: Vec<TeamRow> = m
            .config()
            .teams
            .values()
            .map(|t| {
                let st = stats.per_team.iter().find(|s| s.team == t.name);
                TeamRow {
                    name: t.name.clone(),
                    path: t.path.display().to_string(),
                    description: t.description.clone(),
                    agent: t.agent.clone(),
                    agent_path: t.agent_path.clone(),
                    sessions_as_caller: st.map_or(0, |s| s.sessions_as_caller),
                    sessions_as_callee: st.map_or(0, |s| s.sessions_as_callee),
                }
            })
            .collect();
        if ctx.json() {
            print_json(&rows)?;
            return Ok(ExitCode::SUCCESS);
        }
        let mut t = Table::new(&["TEAM", "AGENT", ">CALLER", ">CALLEE", "PATH", "DESCRIPTION"]);
        for r in rows {
            t.row(vec![
                r.name,
                r.agent,
                r.sessions_as_caller.to_string(),
                r.sessions_as_callee.to_string(),
                r.path,
                r.description.unwrap_or_default(),
            ]);
        }
        t.print();
        Ok(ExitCode::SUCCESS)
    }
}
