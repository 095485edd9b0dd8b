//! Recording how a turn ended: the tell's outcome, the session's counters, status and process
//! state, and what happens to the agent (kept idle, or stopped after a failure).

use super::{TurnEnd, Worker, KILL_GRACE};
use crate::store::{SessionStatus, Tell, TellKind, TellOutcome, TellState};

impl Worker {
    /// Records how a turn ended: the tell, the session's counters and state, the agent.
    pub(super) async fn record(&mut self, tell: &Tell, session_id: &str, end: TurnEnd) {
        let router = self.router.clone();
        let m = router.manager();
        match end {
            TurnEnd::Result {
                result,
                compacted,
                interrupted,
            } => {
                let outcome = TellOutcome {
                    answer: result.text.clone().filter(|_| !result.is_error),
                    error: result.is_error.then(|| {
                        result
                            .text
                            .clone()
                            .unwrap_or_else(|| result.subtype.clone())
                    }),
                    input_tokens: Some(result.usage.input_tokens),
                    output_tokens: Some(result.usage.output_tokens),
                    cost_usd: Some(result.cost_usd),
                    duration_ms: result.duration_ms,
                };
                let state = if interrupted {
                    TellState::Cancelled
                } else if result.is_error {
                    TellState::Failed
                } else {
                    TellState::Answered
                };
                // One write: usage, idle, no current tell; an answered tell counts once.
                let counts = tell.kind == TellKind::Tell && state == TellState::Answered;
                m.end_turn(
                    session_id,
                    result.usage.input_tokens,
                    result.usage.output_tokens,
                    result.cost_usd,
                    counts,
                )
                .ok();
                // Idle in the pool before the caller hears the answer.
                self.mark_idle();
                match tell.kind {
                    TellKind::Compact => match compacted {
                        Some((pre, post)) if !result.is_error => {
                            let pre = pre.unwrap_or(0);
                            let post = post.unwrap_or(result.usage.output_tokens);
                            m.finish_compaction(session_id, pre, post).ok();
                            let outcome = TellOutcome {
                                answer: Some(format!("compacted: {pre} -> {post} tokens")),
                                ..outcome
                            };
                            self.finish(tell, TellState::Answered, outcome);
                        }
                        _ => {
                            let why = outcome.error.clone().unwrap_or_else(|| {
                                "the agent ended the turn without compacting".into()
                            });
                            m.fail_compaction(session_id, &why).ok();
                            let state = if interrupted {
                                TellState::Cancelled
                            } else {
                                TellState::Failed
                            };
                            self.finish(
                                tell,
                                state,
                                TellOutcome {
                                    error: Some(why),
                                    ..outcome
                                },
                            );
                        }
                    },
                    TellKind::Tell => {
                        if state == TellState::Failed {
                            let why = outcome.error.clone().unwrap_or_default();
                            m.mark_error(session_id, &format!("turn failed: {why}"))
                                .ok();
                        }
                        self.finish(tell, state, outcome);
                    }
                }
            }
            TurnEnd::Stalled(limit) => {
                let why = format!(
                    "timeout: no output from the agent for {}; it was killed",
                    crate::util::format_duration(limit)
                );
                self.fail_turn(tell, session_id, &why).await;
            }
            TurnEnd::NoStart(limit) => {
                let why = format!(
                    "timeout: the agent did not start within {}; it was killed",
                    crate::util::format_duration(limit)
                );
                self.fail_turn(tell, session_id, &why).await;
            }
            TurnEnd::Exited(why) => {
                self.fail_turn(tell, session_id, &why).await;
            }
            TurnEnd::Shutdown => {
                self.fail_turn(
                    tell,
                    session_id,
                    "switchboard shut down before the agent answered",
                )
                .await;
                // Not the agent's fault: the session is fine, only stopped.
                if let Ok(Some(s)) = m.get_by_id(session_id) {
                    if s.status == SessionStatus::Error {
                        m.set_status(session_id, SessionStatus::Active).ok();
                    }
                }
            }
        }
    }

    /// A turn that ended without a result: the tell fails, the agent is killed, the session
    /// records the error and is stopped (the next tell resumes it).
    pub(super) async fn fail_turn(&mut self, tell: &Tell, session_id: &str, why: &str) {
        let m = self.router.manager().clone();
        if let Some(mut a) = self.agent.take() {
            // SIGTERM first, briefly: a killed Claude Code leaves its socket file behind.
            a.proc.stop(KILL_GRACE).await;
        }
        if tell.kind == TellKind::Compact {
            m.fail_compaction(session_id, why).ok();
        } else {
            m.mark_error(session_id, why).ok();
        }
        m.release_lease(session_id).ok();
        tracing::info!(pair = %self.pair(), tell = %tell.tell_id, why, "tell failed");
        self.fail(tell, TellState::Failed, why, None);
    }

    pub(super) fn fail(
        &self,
        tell: &Tell,
        state: TellState,
        why: &str,
        outcome: Option<TellOutcome>,
    ) {
        let outcome = TellOutcome {
            error: Some(why.to_string()),
            ..outcome.unwrap_or_default()
        };
        self.finish(tell, state, outcome);
    }

    pub(super) fn finish(&self, tell: &Tell, state: TellState, outcome: TellOutcome) {
        if let Err(e) = self.router.finish(tell, state, outcome) {
            tracing::error!(tell = %tell.tell_id, error = %e, "cannot record the end of a tell");
        }
    }
}
