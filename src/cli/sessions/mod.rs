//! `switchboard sessions ...`: open, list, show, delete, compact.

mod compact;
mod delete;
mod list;
mod open;
mod show;

use clap::Subcommand;
use std::process::ExitCode;
use switchboard::store::Session;
use switchboard::{Error, SessionManager};

use super::Ctx;

/// Session subcommands.
#[derive(Debug, Subcommand)]
pub enum SessionsCmd {
    /// Open the session of a pair (create it if needed) and print it. Starts no agent.
    Open(open::OpenCmd),
    /// List sessions, most recently used first.
    List(list::ListCmd),
    /// Show every field of one session.
    Show(show::ShowCmd),
    /// Delete a session (its tells history goes with it).
    Delete(delete::DeleteCmd),
    /// Compact a session's agent context, or every session due for it.
    Compact(compact::CompactCmd),
    /// Stop a pair's agent and start a new conversation (new session id).
    Reboot(crate::cli::agent_cmds::RebootCmd),
}

impl SessionsCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        match self {
            SessionsCmd::Open(c) => c.run(ctx),
            SessionsCmd::List(c) => c.run(ctx),
            SessionsCmd::Show(c) => c.run(ctx),
            SessionsCmd::Delete(c) => c.run(ctx),
            SessionsCmd::Compact(c) => c.run(ctx),
            SessionsCmd::Reboot(c) => c.run(ctx),
        }
    }
}

/// A session named on the command line: its UUID or `FROM:TO`.
#[derive(Debug, Clone)]
pub enum SessionRef {
    /// By session id.
    Id(String),
    /// By pair.
    Pair(String, String),
}

impl std::str::FromStr for SessionRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some((from, to)) = s.split_once(':') {
            if from.is_empty() || to.is_empty() || to.contains(':') {
                return Err(format!(
                    "{s:?} is not a pair: write FROM:TO, e.g. frontend:backend"
                ));
            }
            return Ok(SessionRef::Pair(from.to_string(), to.to_string()));
        }
        match uuid::Uuid::parse_str(s) {
            Ok(id) => Ok(SessionRef::Id(id.hyphenated().to_string())),
            Err(_) => Err(format!(
                "{s:?} is neither a session id (UUID) nor a pair (FROM:TO, e.g. frontend:backend)"
            )),
        }
    }
}

impl std::fmt::Display for SessionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionRef::Id(id) => f.write_str(id),
            SessionRef::Pair(from, to) => write!(f, "{from}:{to}"),
        }
    }
}

impl SessionRef {
    /// Finds the session; "not found" (exit 1) if it does not exist.
    pub fn resolve(&self, m: &SessionManager) -> Result<Session, Error> {
        let found = match self {
            SessionRef::Id(id) => m.get_by_id(id)?,
            SessionRef::Pair(from, to) => {
                // A team the config does not know is a usage error (exit 2), as for `report`.
                for team in [from, to] {
                    m.check_team(team)?;
                }
                m.get(from, to)?.map(|s| (*s).clone())
            }
        };
        found.ok_or_else(|| Error::NotFound(format!("session {self} not found")))
    }
}
