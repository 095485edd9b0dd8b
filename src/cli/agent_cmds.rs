//! `switchboard wake|sleep|cancel FROM TO` and `switchboard sessions reboot FROM TO`: act on a
//! pair's agent. When a server serves this database they go through it (its agents); else they
//! run in this process, and an agent started here stops when the command ends.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::de::DeserializeOwned;
use serde::Serialize;
use switchboard::router::{Router, Wait};
use switchboard::server::api_types::{
    CancelReport, Op, PairRequest, Session, SleepAnswer, WakeAnswer,
};
use switchboard::Error;

use super::live::{with_router, Ended};
use super::output::print_json;
use super::remote::Remote;
use super::Ctx;

/// A pair of teams.
#[derive(Debug, Args)]
pub struct PairArgs {
    /// The team that talks.
    from: String,
    /// The team whose agent answers.
    to: String,
}

/// Runs `op` on the pair: through the running server if there is one, else in this process
/// with `local`. Returns the JSON report and whether it went through a server.
fn run_pair_op<T, F, Fut>(
    ctx: &Ctx,
    op: Op,
    pair: &PairArgs,
    recover: bool,
    local: F,
) -> Result<(T, bool), Error>
where
    T: DeserializeOwned,
    F: FnOnce(Router, String, String) -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let config = ctx.load_config()?;
    if let Some(remote) = Remote::find(&config) {
        let request = PairRequest {
            from: pair.from.clone(),
            to: pair.to.clone(),
        };
        return Ok((remote.call(op, &request, None)?, true));
    }
    let (from, to) = (pair.from.clone(), pair.to.clone());
    let only = recover.then_some((pair.from.as_str(), pair.to.as_str()));
    match with_router(ctx, only, |r| local(r, from, to))? {
        Ended::Done(v) => Ok((v, false)),
        Ended::Signal(sig) => Err(super::live::signal_error(sig)),
    }
}

/// Prints an answer as `--json`: keys in order, as the server sends them.
fn print_answer<T: Serialize>(v: &T) -> Result<(), Error> {
    let v =
        serde_json::to_value(v).map_err(|e| Error::Other(format!("cannot render JSON: {e}")))?;
    print_json(&v)
}

/// Start the pair's agent (no model call: Claude Code answers a control request) and deliver
/// the pair's queued tells. Without a server, the agent stops again as this command ends.
#[derive(Debug, Args)]
pub struct WakeCmd {
    #[command(flatten)]
    pair: PairArgs,
}

impl WakeCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        // What is queued now is delivered by this command (recovery wakes the pair's worker).
        let queued = {
            let m = ctx.manager()?;
            m.check_team(&self.pair.from)?;
            m.check_team(&self.pair.to)?;
            m.store().open_tells(&self.pair.from, &self.pair.to)?
        };
        let (v, remote) = run_pair_op(ctx, Op::Wake, &self.pair, true, |r, from, to| async move {
            let pid = r.wake(&from, &to).await?;
            for t in &queued {
                r.wait_for(&t.tell_id, Wait::Forever).await?;
            }
            Ok(WakeAnswer {
                from_team: from,
                to_team: to,
                pid,
                delivered: queued.len(),
            })
        })?;
        if ctx.json() {
            print_answer(&v)?;
        } else {
            let after = if remote {
                "it keeps running in the server"
            } else {
                "stopped again as this command ends"
            };
            // pid 0: an agent kind that runs a process per turn has none between turns.
            let started = if v.pid == 0 {
                "agent ready (a process per turn: none until a tell)".to_string()
            } else {
                format!("agent started (pid {})", v.pid)
            };
            outln!(
                "{} -> {}: {started}; {} queued tell(s) delivered; {after}",
                v.from_team,
                v.to_team,
                v.delivered
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Stop the pair's agent; the session is kept. An agent held by another Switchboard process
/// (not a server) is reported busy.
#[derive(Debug, Args)]
pub struct SleepCmd {
    #[command(flatten)]
    pair: PairArgs,
}

impl SleepCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let config = ctx.load_config()?;
        if Remote::find(&config).is_none() {
            let m = ctx.manager()?;
            m.check_team(&self.pair.from)?;
            m.check_team(&self.pair.to)?;
            if let Some(s) = m.get(&self.pair.from, &self.pair.to)? {
                m.check_not_held_elsewhere(&s)?;
            }
        }
        let (v, _) = run_pair_op(ctx, Op::Sleep, &self.pair, true, |r, from, to| async move {
            let was_running = r.sleep(&from, &to).await?;
            Ok(SleepAnswer {
                from_team: from,
                to_team: to,
                was_running,
            })
        })?;
        if ctx.json() {
            print_answer(&v)?;
        } else if v.was_running {
            outln!("{} -> {}: agent stopped", v.from_team, v.to_team);
        } else {
            outln!("{} -> {}: no agent was running", v.from_team, v.to_team);
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Cancel the pair's queued tells and interrupt its running one.
#[derive(Debug, Args)]
pub struct CancelCmd {
    #[command(flatten)]
    pair: PairArgs,
}

impl CancelCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        // No recovery first: it would wake the pair and deliver what is to be cancelled.
        let (v, _) = run_pair_op(
            ctx,
            Op::Cancel,
            &self.pair,
            false,
            |r, from, to| async move {
                let report: CancelReport = r.cancel(&from, &to)?;
                if let Some(id) = &report.interrupted {
                    r.wait_for(id, Wait::For(Duration::from_secs(20))).await?;
                }
                Ok(report)
            },
        )?;
        if ctx.json() {
            print_answer(&v)?;
        } else {
            let cancelled = v.cancelled_queued.len();
            let interrupted = v
                .interrupted
                .as_deref()
                .map(|t| format!(", running tell {t} interrupted"))
                .unwrap_or_default();
            outln!(
                "{} -> {}: {cancelled} queued tell(s) cancelled{interrupted}",
                self.pair.from,
                self.pair.to
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Stop the pair's agent and start a new conversation (new session id); the old transcript and
/// the tells history are kept.
#[derive(Debug, Args)]
pub struct RebootCmd {
    #[command(flatten)]
    pair: PairArgs,
}

impl RebootCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let before = {
            let m = ctx.manager()?;
            m.get(&self.pair.from, &self.pair.to)?
                .map(|s| s.session_id.clone())
        };
        let (v, _) = run_pair_op(
            ctx,
            Op::Reboot,
            &self.pair,
            true,
            |r, from, to| async move {
                let s: Session = r.reboot(&from, &to).await?;
                Ok(s)
            },
        )?;
        if ctx.json() {
            print_answer(&v)?;
        } else {
            outln!(
                "{} -> {}: new session {}{}",
                self.pair.from,
                self.pair.to,
                v.session_id,
                before
                    .map(|b| format!(" (was {b}; its transcript is kept)"))
                    .unwrap_or_default()
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}
