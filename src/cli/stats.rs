//! `switchboard stats`.

use std::process::ExitCode;

use clap::Args;
use switchboard::Error;

use super::output::{cost, print_json, Stream, Table};
use super::Ctx;

/// Print statistics over every session.
#[derive(Debug, Args)]
pub struct StatsCmd {}

impl StatsCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let m = ctx.read_only_manager()?;
        let s = m.stats()?;
        if ctx.json() {
            print_json(&s)?;
            return Ok(ExitCode::SUCCESS);
        }
        outln!("sessions            {}", s.total_sessions);
        outln!("messages            {}", s.total_messages);
        outln!(
            "answered tells      {} (in all; messages restart at 0 with each compaction)",
            s.total_answered_tells
        );
        outln!(
            "tokens              {} in, {} out",
            s.total_input_tokens,
            s.total_output_tokens
        );
        outln!(
            "cost                {}",
            cost(s.total_cost_usd, Stream::Stdout)
        );
        outln!("due for compaction  {}", s.due_for_compaction);
        let join = |m: &std::collections::BTreeMap<String, i64>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        outln!("by status           {}", join(&s.by_status));
        outln!("by process state    {}", join(&s.by_process_state));
        outln!();
        let mut teams = Table::new(&[
            "TEAM",
            ">SESSIONS AS CALLER",
            ">SESSIONS AS CALLEE",
            ">MSGS AS CALLER",
            ">MSGS AS CALLEE",
            ">COST AS CALLEE",
        ]);
        for t in &s.per_team {
            teams.row(vec![
                t.team.clone(),
                t.sessions_as_caller.to_string(),
                t.sessions_as_callee.to_string(),
                t.messages_as_caller.to_string(),
                t.messages_as_callee.to_string(),
                format!("${:.4}", t.cost_usd_as_callee),
            ]);
        }
        teams.print();
        outln!();
        let mut kinds = Table::new(&["AGENT KIND", ">TEAMS", ">SESSIONS", ">MSGS", ">COST"]);
        for k in &s.by_agent {
            kinds.row(vec![
                k.agent.clone(),
                k.teams.to_string(),
                k.sessions.to_string(),
                k.messages.to_string(),
                format!("${:.4}", k.cost_usd),
            ]);
        }
        kinds.print();
        if !s.busiest_pairs.is_empty() {
            outln!();
            let mut pairs = Table::new(&["BUSIEST PAIRS", ">MSGS", ">ANSWERED", "SESSION"]);
            for p in &s.busiest_pairs {
                pairs.row(vec![
                    format!("{} -> {}", p.from_team, p.to_team),
                    p.message_count.to_string(),
                    p.answered_tells.to_string(),
                    p.session_id.clone(),
                ]);
            }
            pairs.print();
        }
        Ok(ExitCode::SUCCESS)
    }
}
