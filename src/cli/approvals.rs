//! `switchboard approvals`: the permission requests of the agents (pending ones, or all with
//! `--all`), `approvals allow ID [--always]`, `approvals deny ID [--reason TEXT]`, and the
//! allow rules `--always` added (`approvals rules`, `approvals rules remove N`). Decisions go
//! to the database; the process running the agent (a server, or a `tell` in another terminal)
//! sees them there within a moment.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use switchboard::router::approvals::{
    decide, list_approvals, remove_session_rule, session_rules, ApprovalFilter, Decider, Decision,
};
use switchboard::store::Approval;
use switchboard::Error;

use super::output::{ago, escape_controls, print_json, Table};
use super::Ctx;

/// The permission requests of the agents, and their decisions.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ApprovalsCmd {
    #[command(subcommand)]
    action: Option<ApprovalsAction>,
    #[command(flatten)]
    list: ListArgs,
}

#[derive(Debug, Args, Default)]
struct ListArgs {
    /// Decided and expired requests too (newest 100), not only pending ones.
    #[arg(long)]
    all: bool,
    /// Only requests of this team's agents or of tells this team sent.
    #[arg(long, value_name = "TEAM")]
    team: Option<String>,
    /// Only requests made while answering this tell (an id or a unique prefix).
    #[arg(long, value_name = "TELL_ID")]
    tell: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ApprovalsAction {
    /// List the requests (pending ones unless --all): tool, input, pair, age.
    List(ListArgs),
    /// Let the agent run the tool.
    Allow {
        /// The request id (or a unique prefix of it, at least 4 characters).
        id: String,
        /// Also allow this tool for the rest of the session without asking (a session rule:
        /// see `approvals rules`; for Bash, commands starting with the same word).
        #[arg(long)]
        always: bool,
    },
    /// Refuse; the agent is told why.
    Deny {
        /// The request id (or a unique prefix of it, at least 4 characters).
        id: String,
        /// What to tell the agent.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// The allow rules `allow --always` added, per session; `rules remove N` removes one.
    Rules {
        #[command(subcommand)]
        action: Option<RulesAction>,
    },
}

#[derive(Debug, Subcommand)]
enum RulesAction {
    /// List them.
    List,
    /// Remove rule number N (from `approvals rules`).
    Remove {
        /// The rule's number.
        id: i64,
    },
}

fn one_line(text: &str, max: usize) -> String {
    let flat = escape_controls(&text.replace(['\n', '\r', '\t'], " "), false);
    if flat.chars().count() > max {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        flat
    }
}

fn print_decided(a: &Approval) {
    let who = a.decided_by.as_deref().unwrap_or("?");
    match a.state.as_str() {
        "allowed" => {
            outln!(
                "allowed {} ({} for {}:{})",
                a.approval_id,
                a.tool,
                a.from_team,
                a.to_team
            );
            if let Some(rule) = &a.rule {
                outln!("session rule added: {rule} (see `switchboard approvals rules`)");
            }
        }
        _ => outln!(
            "{} {} by {who}: {}",
            a.state,
            a.approval_id,
            a.reason.as_deref().unwrap_or("")
        ),
    }
}

impl ApprovalsCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        // No agent is started here: a team folder that is missing is only a warning.
        let m = ctx.read_only_manager()?;
        let list = |args: &ListArgs| -> Result<ExitCode, Error> {
            let filter = ApprovalFilter {
                all: args.all,
                team: args.team.clone(),
                tell_id: args.tell.clone(),
                ..Default::default()
            };
            let found = list_approvals(&m, &filter)?;
            if ctx.json() {
                print_json(&found)?;
                return Ok(ExitCode::SUCCESS);
            }
            if found.is_empty() {
                outln!(
                    "{}",
                    if args.all {
                        "no permission requests"
                    } else {
                        "no pending permission requests"
                    }
                );
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = Table::new(&[
                "ID", "PAIR", "TOOL", "INPUT", "ASKED", "DECIDES", "STATE", "BY",
            ]);
            for a in &found {
                t.row(vec![
                    a.approval_id.clone(),
                    format!("{}:{}", a.from_team, a.to_team),
                    a.tool.clone(),
                    one_line(&a.input, 60),
                    ago(Some(a.created_at)),
                    a.decide_by.clone(),
                    a.state.clone(),
                    a.decided_by.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            t.print();
            Ok(ExitCode::SUCCESS)
        };
        match &self.action {
            None => list(&self.list),
            Some(ApprovalsAction::List(args)) => list(args),
            Some(ApprovalsAction::Allow { id, always }) => {
                let a = decide(&m, id, Decision::Allow { always: *always }, Decider::Person)?;
                if ctx.json() {
                    print_json(&a)?;
                } else {
                    print_decided(&a);
                }
                Ok(ExitCode::SUCCESS)
            }
            Some(ApprovalsAction::Deny { id, reason }) => {
                let a = decide(
                    &m,
                    id,
                    Decision::Deny {
                        reason: reason.clone(),
                    },
                    Decider::Person,
                )?;
                if ctx.json() {
                    print_json(&a)?;
                } else {
                    print_decided(&a);
                }
                Ok(ExitCode::SUCCESS)
            }
            Some(ApprovalsAction::Rules { action }) => match action {
                None | Some(RulesAction::List) => {
                    let rules = session_rules(&m)?;
                    if ctx.json() {
                        print_json(&rules)?;
                    } else if rules.is_empty() {
                        outln!("no session rules");
                    } else {
                        let mut t =
                            Table::new(&[">N", "PAIR", "SESSION", "RULE", "ADDED", "BY REQUEST"]);
                        for r in &rules {
                            t.row(vec![
                                r.id.to_string(),
                                format!("{}:{}", r.from_team, r.to_team),
                                r.session_id.clone(),
                                r.rule.clone(),
                                ago(Some(r.created_at)),
                                r.approval_id.clone().unwrap_or_else(|| "-".into()),
                            ]);
                        }
                        t.print();
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Some(RulesAction::Remove { id }) => {
                    let r = remove_session_rule(&m, *id)?;
                    if ctx.json() {
                        print_json(&r)?;
                    } else {
                        outln!(
                            "removed session rule {} ({}) of {}:{}",
                            r.id,
                            r.rule,
                            r.from_team,
                            r.to_team
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
            },
        }
    }
}

/// While `tell_id` runs, says on stderr (once each) which requests of its agent wait for a
/// decision (a person's, or the caller's: the person running `tell`), and the commands that
/// decide them: a person waiting on `switchboard tell` would
/// otherwise see nothing until the request times out. A detached thread that polls the
/// database; it ends with the tell (or with the process).
pub fn announce_pending(m: std::sync::Arc<switchboard::SessionManager>, tell_id: String) {
    let spawned = std::thread::Builder::new()
        .name("approval-hints".into())
        .spawn(move || {
            let mut seen = std::collections::HashSet::new();
            let filter = ApprovalFilter {
                tell_id: Some(tell_id.clone()),
                ..Default::default()
            };
            loop {
                for a in list_approvals(&m, &filter).unwrap_or_default() {
                    // A person waiting on `tell` is also the caller of `ask = "caller"`.
                    if seen.insert(a.approval_id.clone()) {
                        eprintln!(
                            "team {}'s agent asks to use {}: {}\n  allow: switchboard approvals \
                             allow {id}\n  deny:  switchboard approvals deny {id} --reason \
                             TEXT\n  (denied {} unless decided)",
                            a.to_team,
                            a.tool,
                            one_line(&a.input, 200),
                            switchboard::util::relative(a.expires_at, switchboard::util::now_ms()),
                            id = a.approval_id,
                        );
                    }
                }
                let done = m
                    .store()
                    .get_tell(&tell_id)
                    .map_or(true, |t| t.is_none_or(|t| t.state.is_final()));
                if done {
                    return;
                }
                std::thread::park_timeout(std::time::Duration::from_millis(500));
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch for permission requests");
    }
}
