//! Recording how a turn ended: the tell's outcome, the session's counters, status and process
//! state, and what happens to the agent (kept idle, or stopped after a failure).

use super::{TurnEnd, Worker, KILL_GRACE};
use crate::agent::event::TurnEnding;
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
                said,
            } => {
                if result.has_internal_text() {
                    // Shown in words; the raw diagnostic stays in the log.
                    tracing::warn!(pair = %self.pair(), tell = %tell.tell_id, raw = ?result.text,
                        terminal_reason = ?result.terminal_reason, "the agent ended the turn with an internal diagnostic");
                }
                let ending = result.ending();
                let (answer, error) = match &ending {
                    TurnEnding::Complete(text) => (Some(text.clone()), None),
                    TurnEnding::Partial { text, why } => (text.clone().or(said), Some(why.clone())),
                    TurnEnding::Failed(why) => (None, Some(why.clone())),
                };
                let outcome = TellOutcome {
                    answer,
                    error,
                    input_tokens: Some(result.usage.input_tokens),
                    output_tokens: Some(result.usage.output_tokens),
                    cost_usd: Some(result.cost_usd),
                    duration_ms: result.duration_ms,
                };
                let state = if interrupted {
                    TellState::Cancelled
                } else if matches!(ending, TurnEnding::Complete(_)) {
                    TellState::Answered
                } else {
                    // A partial answer is not an answer: the tell fails, its text is kept.
                    TellState::Failed
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
                            // Claude Code's numbers as it reports them: no stand-in when one
                            // is missing (the turn's own usage is the summary's, not the context).
                            m.finish_compaction(session_id, pre, post).ok();
                            let outcome = TellOutcome {
                                answer: Some(describe_compaction(pre, post)),
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

/// What a compaction did, in words. Claude Code's `pre_tokens` is the context's size as the model
/// API last counted it (the last answer's input, cache and output tokens); its `post_tokens` is
/// its own estimate of what the conversation starts from now: the summary plus the context it
/// attaches again (tool, skill and agent listings). On a short conversation the second can be
/// the larger one.
pub(super) fn describe_compaction(pre: Option<i64>, post: Option<i64>) -> String {
    let before = match pre {
        Some(n) => format!("context {n} tokens before (the model API's count)"),
        None => "the agent did not report the context size before".to_string(),
    };
    let after = match post {
        Some(n) => {
            format!("about {n} after (the agent's estimate: summary plus re-attached context)")
        }
        None => "no estimate of the size after".to_string(),
    };
    format!("compacted: {before}, {after}")
}
