//! `switchboard sessions list`.

use std::process::ExitCode;

use clap::Args;
use switchboard::store::{ListFilter, ProcessState, SessionStatus};
use switchboard::util::now_ms;
use switchboard::Error;

use crate::cli::output::{print_json, session_row, Table, SESSION_HEADERS};
use crate::cli::Ctx;

/// List sessions.
#[derive(Debug, Args)]
pub struct ListCmd {
    /// Only sessions where this team talks.
    #[arg(long, value_name = "TEAM")]
    from: Option<String>,
    /// Only sessions where this team answers.
    #[arg(long, value_name = "TEAM")]
    to: Option<String>,
    /// Only sessions with this status (active, compact_pending, compacting, archived, error).
    #[arg(long)]
    status: Option<SessionStatus>,
    /// Only sessions in this process state (stopped, spawning, idle, processing, terminating).
    #[arg(long)]
    state: Option<ProcessState>,
    /// Only sessions used within this long (2h, 30m, 7d) or since this time (RFC 3339).
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    since: Option<i64>,
    /// Only sessions created within this long or since this time.
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    created_since: Option<i64>,
    /// At most this many sessions.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    limit: Option<u32>,
}

/// `2h` → now minus two hours; `2026-11-21T10:00:00Z` → that time (unix ms).
pub fn parse_since(s: &str) -> Result<i64, String> {
    if let Ok(d) = switchboard::util::parse_duration(s) {
        return Ok(now_ms().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
    }
    match humantime::parse_rfc3339_weak(s) {
        Ok(t) => t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .map_err(|_| format!("{s:?} is before 1970")),
        Err(_) => Err(format!(
            "{s:?} is neither a duration (2h, 30m, 7d) nor a time (2026-11-21T10:00:00Z)"
        )),
    }
}

impl ListCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let m = ctx.read_only_manager()?;
        // A team the config does not know is a usage error (exit 2), as for `report`.
        for team in self.from.iter().chain(self.to.iter()) {
            m.check_team(team)?;
        }
        let sessions = m.list(&ListFilter {
            from_team: self.from.clone(),
            to_team: self.to.clone(),
            status: self.status,
            process_state: self.state,
            created_after: self.created_since,
            used_after: self.since,
            limit: self.limit,
            ..Default::default()
        })?;
        if ctx.json() {
            print_json(&sessions)?;
            return Ok(ExitCode::SUCCESS);
        }
        if sessions.is_empty() {
            outln!("no sessions");
            return Ok(ExitCode::SUCCESS);
        }
        let mut t = Table::new(SESSION_HEADERS);
        for s in &sessions {
            t.row(session_row(s));
        }
        t.print();
        Ok(ExitCode::SUCCESS)
    }
}
