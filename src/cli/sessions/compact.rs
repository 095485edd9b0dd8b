//! `switchboard sessions compact <SESSION_ID | FROM:TO> | --due [--dry-run] [--jobs N]`:
//! asks the callee's agent to compact the session's context (Claude Code `/compact`), resuming
//! it if it is stopped, and records the tokens before and after.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use switchboard::server::api_types::{Op, PairRequest, TellAnswer};

use clap::Args;
use serde::Serialize;
use switchboard::router::Wait;
use switchboard::store::{Session, Tell, TellState};
use switchboard::Error;

use super::SessionRef;
use crate::cli::live::{with_router, Ended};
use crate::cli::output::{print_json, session_row, Table, SESSION_HEADERS};
use crate::cli::remote::Remote;
use crate::cli::Ctx;

/// Compact one session, or every session due for compaction.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["session", "due"]))]
pub struct CompactCmd {
    /// The session: its id (UUID) or FROM:TO.
    session: Option<SessionRef>,
    /// Every session the compaction policy says is due.
    #[arg(long)]
    due: bool,
    /// Only list what would be compacted; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --due: at most this many compactions at once (default: 4, or max_processes if lower).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    jobs: Option<u32>,
}

#[derive(Serialize)]
struct Outcome {
    session_id: String,
    from_team: String,
    to_team: String,
    state: TellState,
    result: Option<String>,
    error: Option<String>,
    pre_tokens: Option<i64>,
    post_tokens: Option<i64>,
}

#[derive(Serialize)]
struct CompactReport {
    dry_run: bool,
    sessions: Vec<Session>,
    compacted: usize,
    failed: usize,
    results: Vec<Outcome>,
}

impl CompactCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let targets = {
            let m = ctx.manager()?;
            match &self.session {
                Some(r) => vec![r.resolve(&m)?],
                None => m.due_for_compaction(None)?,
            }
        };
        if self.dry_run || targets.is_empty() {
            return self.print(ctx, targets, Vec::new());
        }
        let config = ctx.load_config()?;
        let max = config.settings.max_processes.max(1);
        let jobs = self.jobs.map_or(4.min(max), |j| j as usize);
        let show_progress = !ctx.json() && std::io::stderr().is_terminal() && targets.len() > 1;
        if let Some(remote) = Remote::find(&config) {
            let results = compact_through(&remote, &targets, jobs, show_progress);
            if show_progress {
                eprintln!();
            }
            let m = ctx.manager()?;
            let mut sessions = Vec::new();
            let results = results
                .into_iter()
                .map(|(target, r)| {
                    let s = m.get(&target.from_team, &target.to_team).ok().flatten();
                    if let Some(s) = &s {
                        sessions.push((**s).clone());
                    }
                    outcome_of(target, s.as_deref(), r)
                })
                .collect();
            return self.print(ctx, sessions, results);
        }
        let pairs: Vec<(String, String)> = targets
            .iter()
            .map(|s| (s.from_team.clone(), s.to_team.clone()))
            .collect();
        let ended = with_router(ctx, None, |router| async move {
            let limit = Arc::new(tokio::sync::Semaphore::new(jobs));
            let total = pairs.len();
            let mut set = tokio::task::JoinSet::new();
            for (i, (from, to)) in pairs.into_iter().enumerate() {
                let router = router.clone();
                let limit = Arc::clone(&limit);
                set.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    router.recover(Some((&from, &to)))?;
                    let r: Result<Tell, Error> = router
                        .compact(&from, &to, Wait::Forever)
                        .await
                        .map_err(Error::from);
                    Ok::<_, Error>((i, from, to, r))
                });
            }
            let mut done = Vec::new();
            while let Some(joined) = set.join_next().await {
                let item = joined.map_err(|e| Error::Other(format!("compaction task: {e}")))??;
                done.push(item);
                if show_progress {
                    progress(done.len(), total);
                }
            }
            done.sort_by_key(|d| d.0);
            let m = router.manager();
            Ok(done
                .into_iter()
                .map(|(_, from, to, r)| {
                    let s = m.get(&from, &to).ok().flatten();
                    match r {
                        Ok(t) => Outcome {
                            session_id: t.session_id.clone(),
                            from_team: from,
                            to_team: to,
                            state: t.state,
                            result: t.answer.clone(),
                            error: t.error.clone(),
                            // Only a compaction that happened has token counts.
                            pre_tokens: s
                                .as_ref()
                                .filter(|_| t.state == TellState::Answered)
                                .and_then(|s| s.last_pre_compact_tokens),
                            post_tokens: s
                                .as_ref()
                                .filter(|_| t.state == TellState::Answered)
                                .and_then(|s| s.last_post_compact_tokens),
                        },
                        Err(e) => Outcome {
                            session_id: s.map(|s| s.session_id.clone()).unwrap_or_default(),
                            from_team: from,
                            to_team: to,
                            state: TellState::Failed,
                            result: None,
                            error: Some(super::super::render_error(&e)),
                            pre_tokens: None,
                            post_tokens: None,
                        },
                    }
                })
                .collect::<Vec<_>>())
        })?;
        if show_progress {
            eprintln!();
        }
        let results = match ended {
            Ended::Done(r) => r,
            Ended::Signal(sig) => return Err(crate::cli::live::signal_error(sig)),
        };
        let sessions = {
            let m = ctx.manager()?;
            targets
                .iter()
                .filter_map(|t| m.get(&t.from_team, &t.to_team).ok().flatten())
                .map(|s| (*s).clone())
                .collect()
        };
        self.print(ctx, sessions, results)
    }

    fn print(
        &self,
        ctx: &Ctx,
        sessions: Vec<Session>,
        results: Vec<Outcome>,
    ) -> Result<ExitCode, Error> {
        let compacted = results
            .iter()
            .filter(|r| r.state == TellState::Answered)
            .count();
        let failed = results.len() - compacted;
        let code = if failed > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        };
        if ctx.json() {
            print_json(&CompactReport {
                dry_run: self.dry_run,
                sessions,
                compacted,
                failed,
                results,
            })?;
            return Ok(code);
        }
        if self.dry_run || results.is_empty() {
            if !sessions.is_empty() {
                let mut t = Table::new(SESSION_HEADERS);
                for s in &sessions {
                    t.row(session_row(s));
                }
                t.print();
            }
            let what = if self.due {
                "due for compaction"
            } else {
                "selected"
            };
            let tail = if self.dry_run {
                "; dry run, nothing changed"
            } else {
                ""
            };
            outln!("{} session(s) {what}{tail}", sessions.len());
            return Ok(code);
        }
        let mut t = Table::new(&["FROM", "TO", "RESULT", ">BEFORE", ">AFTER"]);
        for r in &results {
            let text = match r.state {
                TellState::Answered => r.result.clone().unwrap_or_default(),
                _ => format!("failed: {}", r.error.clone().unwrap_or_default()),
            };
            t.row(vec![
                r.from_team.clone(),
                r.to_team.clone(),
                text,
                r.pre_tokens.map_or("-".into(), |n| n.to_string()),
                r.post_tokens.map_or("-".into(), |n| n.to_string()),
            ]);
        }
        t.print();
        outln!(
            "compacted {compacted} of {} session(s); {failed} failed",
            results.len()
        );
        Ok(code)
    }
}

/// Compacts `targets` through the server, `jobs` at once.
fn compact_through(
    remote: &Remote,
    targets: &[Session],
    jobs: usize,
    show_progress: bool,
) -> Vec<(Session, Result<TellAnswer, Error>)> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(targets.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(t) = targets.get(i) else { break };
                let body = PairRequest {
                    from: t.from_team.clone(),
                    to: t.to_team.clone(),
                };
                let r = remote.call(Op::Compact, &body, None);
                let mut d = done.lock().unwrap_or_else(|p| p.into_inner());
                d.push((i, t.clone(), r));
                if show_progress {
                    progress(d.len(), targets.len());
                }
            });
        }
    });
    let mut d = done.into_inner().unwrap_or_else(|p| p.into_inner());
    d.sort_by_key(|x| x.0);
    d.into_iter().map(|(_, t, r)| (t, r)).collect()
}

/// The outcome of one compaction answered by a server.
fn outcome_of(target: Session, s: Option<&Session>, r: Result<TellAnswer, Error>) -> Outcome {
    match r {
        Ok(TellAnswer { tell, .. }) => {
            let state = tell.state;
            let done = state == TellState::Answered;
            Outcome {
                session_id: tell.session_id,
                from_team: target.from_team,
                to_team: target.to_team,
                state,
                result: tell.answer,
                error: tell.error,
                pre_tokens: s.filter(|_| done).and_then(|s| s.last_pre_compact_tokens),
                post_tokens: s.filter(|_| done).and_then(|s| s.last_post_compact_tokens),
            }
        }
        Err(e) => Outcome {
            session_id: target.session_id,
            from_team: target.from_team,
            to_team: target.to_team,
            state: TellState::Failed,
            result: None,
            error: Some(super::super::render_error(&e)),
            pre_tokens: None,
            post_tokens: None,
        },
    }
}

fn progress(done: usize, total: usize) {
    const WIDTH: usize = 30;
    let filled = done * WIDTH / total.max(1);
    eprint!(
        "\r[{}{}] {done}/{total} compacted",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled)
    );
}
