//! `switchboard wake|sleep|cancel FROM TO` and `switchboard sessions reboot FROM TO`: act on a
//! pair's agent. They run in this process: an agent started here stops when the command ends.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use switchboard::router::Wait;
use switchboard::Error;

use super::live::{with_router, Ended};
use super::output::print_json;
use super::Ctx;

/// A pair of teams.
#[derive(Debug, Args)]
pub struct PairArgs {
    /// The team that talks.
    from: String,
    /// The team whose agent answers.
    to: String,
}

fn signalled<T>(e: Ended<T>) -> Result<T, Error> {
    match e {
        Ended::Done(v) => Ok(v),
        Ended::Signal(sig) => Err(Error::Other(format!("interrupted by {sig}"))),
    }
}

#[derive(Serialize)]
struct WakeReport {
    from_team: String,
    to_team: String,
    pid: u32,
    delivered: usize,
}

/// Start the pair's agent (no model call: Claude Code answers a control request), deliver the
/// pair's queued tells, then stop it again as this process ends.
#[derive(Debug, Args)]
pub struct WakeCmd {
    #[command(flatten)]
    pair: PairArgs,
}

impl WakeCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let (from, to) = (self.pair.from.as_str(), self.pair.to.as_str());
        // What is queued now is delivered by this command (recovery wakes the pair's worker).
        let queued = {
            let m = ctx.manager()?;
            m.check_team(from)?;
            m.check_team(to)?;
            m.store().open_tells(from, to)?
        };
        let report = signalled(with_router(ctx, Some((from, to)), |r| async move {
            let pid = r.wake(from, to).await?;
            for t in &queued {
                r.wait_for(&t.tell_id, Wait::Forever).await?;
            }
            Ok(WakeReport {
                from_team: from.into(),
                to_team: to.into(),
                pid,
                delivered: queued.len(),
            })
        })?)?;
        if ctx.json() {
            print_json(&report)?;
        } else {
            outln!(
                "{from} -> {to}: agent started (pid {}); {} queued tell(s) delivered; stopped again as this command ends",
                report.pid, report.delivered
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Stop the pair's agent in this process, if it runs here. An agent held by another
/// Switchboard process is reported busy.
#[derive(Debug, Args)]
pub struct SleepCmd {
    #[command(flatten)]
    pair: PairArgs,
}

#[derive(Serialize)]
struct SleepReport {
    from_team: String,
    to_team: String,
    was_running: bool,
}

impl SleepCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let (from, to) = (self.pair.from.as_str(), self.pair.to.as_str());
        let m = ctx.manager()?;
        m.check_team(from)?;
        m.check_team(to)?;
        if let Some(s) = m.get(from, to)? {
            if let Some(pid) = s.owner_pid.filter(|&p| p != i64::from(std::process::id())) {
                return Err(switchboard::session::SessionError::Busy {
                    session: s.pair(),
                    pid: u32::try_from(pid).unwrap_or(0),
                }
                .into());
            }
        }
        drop(m);
        let was_running = signalled(with_router(ctx, Some((from, to)), |r| async move {
            Ok(r.sleep(from, to).await?)
        })?)?;
        if ctx.json() {
            print_json(&SleepReport {
                from_team: from.into(),
                to_team: to.into(),
                was_running,
            })?;
        } else if was_running {
            outln!("{from} -> {to}: agent stopped");
        } else {
            outln!("{from} -> {to}: no agent was running");
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
        let (from, to) = (self.pair.from.as_str(), self.pair.to.as_str());
        // No recovery first: it would wake the pair and deliver what is to be cancelled.
        let report = signalled(with_router(ctx, None, |r| async move {
            let report = r.cancel(from, to)?;
            if let Some(id) = &report.interrupted {
                r.wait_for(id, Wait::For(Duration::from_secs(20))).await?;
            }
            Ok(report)
        })?)?;
        if ctx.json() {
            print_json(&report)?;
        } else {
            outln!(
                "{from} -> {to}: {} queued tell(s) cancelled{}",
                report.cancelled_queued.len(),
                report
                    .interrupted
                    .as_ref()
                    .map(|t| format!(", running tell {t} interrupted"))
                    .unwrap_or_default()
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
        let (from, to) = (self.pair.from.as_str(), self.pair.to.as_str());
        let before = {
            let m = ctx.manager()?;
            m.get(from, to)?.map(|s| s.session_id.clone())
        };
        let s = signalled(with_router(ctx, Some((from, to)), |r| async move {
            Ok(r.reboot(from, to).await?)
        })?)?;
        if ctx.json() {
            print_json(&s)?;
        } else {
            outln!(
                "{from} -> {to}: new session {}{}",
                s.session_id,
                before
                    .map(|b| format!(" (was {b}; its transcript is kept)"))
                    .unwrap_or_default()
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}
