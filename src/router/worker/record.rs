//! Recording how a turn ended: the tell's outcome, the session's counters, status and process
//! state, and what happens to the agent (kept idle, or stopped after a failure).

use std::time::Duration;

use super::{TurnEnd, Worker, KILL_GRACE};
use crate::agent::event::{TurnEnding, TurnResult};
use crate::events::EventKind;
use crate::store::{EndOfTurn, SessionStatus, Tell, TellKind, TellOutcome, TellState};

impl Worker {
    /// Gives a turn of an agent whose CLI reports no cost the price of its tokens
    /// (`[settings.prices."MODEL"]`, the model the turn reports, else the team's `model`; 0
    /// when the model has no price).
    fn price(&self, result: &mut TurnResult) {
        let Some(live) = self.agent.as_ref() else {
            return;
        };
        if live.proc.adapter().reports_cost() {
            return;
        }
        let config = self.router.manager().config();
        let model = result
            .model
            .clone()
            .or_else(|| config.team(&self.to).and_then(|t| t.model.clone()));
        let price = model.and_then(|m| config.settings.prices.get(&m).copied());
        let u = &result.usage;
        result.cost_usd = price.map_or(0.0, |p| {
            p.cost_usd(u.input_tokens, u.cached_input_tokens, u.output_tokens)
        });
    }

    /// Records how a turn ended: the tell, the session's counters and state, the agent.
    pub(super) async fn record(&mut self, tell: &Tell, session_id: &str, end: TurnEnd) {
        let router = self.router.clone();
        let m = router.manager();
        match end {
            TurnEnd::Result {
                mut result,
                compacted,
                interrupted,
                said,
            } => {
                self.price(&mut result);
                if result.has_internal_text() {
                    // Shown in words; the raw diagnostic stays in the log, below the level
                    // that reaches a user's terminal (warn): at debug when the interrupt was
                    // ours (^C, --timeout, cancel), at info (the serve log file's level)
                    // otherwise.
                    if interrupted {
                        tracing::debug!(pair = %self.pair(), tell = %tell.tell_id, raw = ?result.text,
                            terminal_reason = ?result.terminal_reason, "the interrupted turn ended with an internal diagnostic");
                    } else {
                        tracing::info!(pair = %self.pair(), tell = %tell.tell_id, raw = ?result.text,
                            terminal_reason = ?result.terminal_reason, "the agent ended the turn with an internal diagnostic");
                    }
                }
                self.event(
                    session_id,
                    Some(&tell.tell_id),
                    EventKind::Usage {
                        input_tokens: result.usage.input_tokens,
                        output_tokens: result.usage.output_tokens,
                        cost_usd: result.cost_usd,
                    },
                );
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
                // An answered tell counts once.
                let counts = tell.kind == TellKind::Tell && state == TellState::Answered;
                if tell.kind == TellKind::Tell {
                    self.end_tell_turn(tell, session_id, &result, counts, state, outcome)
                        .await;
                    return;
                }
                // One write: usage, idle, no current tell.
                self.keep("the end of the turn", || {
                    m.end_turn(
                        session_id,
                        result.usage.input_tokens,
                        result.usage.output_tokens,
                        result.cost_usd,
                        counts,
                    )
                })
                .await;
                // Idle in the pool before the caller hears the answer.
                self.mark_idle();
                match compacted {
                    Some((pre, post)) if !result.is_error => {
                        // Claude Code's numbers as it reports them: no stand-in when one
                        // is missing (the turn's own usage is the summary's, not the context).
                        self.keep("the compaction's numbers", || {
                            m.finish_compaction(session_id, pre, post)
                        })
                        .await;
                        self.event(
                            session_id,
                            Some(&tell.tell_id),
                            EventKind::CompactionEnd {
                                pre_tokens: pre,
                                post_tokens: post,
                            },
                        );
                        let outcome = TellOutcome {
                            answer: Some(describe_compaction(pre, post)),
                            ..outcome
                        };
                        self.finish(tell, TellState::Answered, outcome).await;
                    }
                    _ => {
                        let why = outcome.error.clone().unwrap_or_else(|| {
                            "the agent ended the turn without compacting".into()
                        });
                        self.keep("the failed compaction", || {
                            m.fail_compaction(session_id, &why)
                        })
                        .await;
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
                        )
                        .await;
                    }
                }
            }
            TurnEnd::Stalled(limit) => {
                let why = format!(
                    "timeout: no output from the agent for {}; it was killed",
                    crate::util::format_duration(limit)
                );
                self.fail_turn(tell, session_id, &why, "stall").await;
            }
            TurnEnd::NoStart(limit) => {
                let why = format!(
                    "timeout: the agent did not start within {}; it was killed",
                    crate::util::format_duration(limit)
                );
                self.fail_turn(tell, session_id, &why, "stall").await;
            }
            TurnEnd::Exited(why) => {
                self.fail_turn(tell, session_id, &why, "crash").await;
            }
            TurnEnd::Unresponsive(why) => {
                self.fail_turn(tell, session_id, &why, "cancel").await;
            }
            TurnEnd::Shutdown => {
                self.fail_turn(
                    tell,
                    session_id,
                    "switchboard shut down before the agent answered",
                    "shutdown",
                )
                .await;
                // Not the agent's fault: the session is fine, only stopped.
                if let Ok(Some(s)) = m.get_by_id(session_id) {
                    if s.status == SessionStatus::Error {
                        self.keep("the session's status", || {
                            m.set_status(session_id, SessionStatus::Active)
                        })
                        .await;
                    }
                }
            }
        }
    }

    /// The end of a message's turn with a result: the session's usage and idle state and the
    /// tell's end in one write (through the store's batch-write thread, shared with the other
    /// pairs' turns ending meanwhile; at once on this thread when no other turn runs), the
    /// session's error when the turn failed, then the tell's waiters.
    async fn end_tell_turn(
        &mut self,
        tell: &Tell,
        session_id: &str,
        result: &TurnResult,
        counts: bool,
        state: TellState,
        outcome: TellOutcome,
    ) {
        let router = self.router.clone();
        let m = router.manager().clone();
        let end = EndOfTurn {
            session_id: session_id.to_string(),
            input_tokens: result.usage.input_tokens,
            output_tokens: result.usage.output_tokens,
            cost_usd: result.cost_usd,
            counts,
            tell_id: tell.tell_id.clone(),
            state,
            outcome: crate::router::redacted(outcome),
            now: 0,
        };
        let stored = self
            .keep_async("the end of the turn", || m.end_turn_with_tell(end.clone()))
            .await;
        // The turn's writes are done: a tell its caller sends next can be written at once.
        self.running = None;
        // Idle in the pool before the caller hears the answer.
        self.mark_idle();
        if state == TellState::Failed {
            let why = format!(
                "turn failed: {}",
                end.outcome.error.as_deref().unwrap_or("")
            );
            self.keep("the session's error", || m.mark_error(session_id, &why))
                .await;
        }
        // Nothing else queued when the turn's end was stored: the next look at the queue can
        // wait for a wake-up.
        self.queue_hint = match stored {
            Some((_, _, false)) => super::QueueHint::Empty,
            Some((_, _, true)) => super::QueueHint::Queued,
            None => super::QueueHint::Unknown,
        };
        match stored {
            Some((_, Some(done), _)) => {
                router.ended(&done);
                router.notify(&done);
            }
            // Ended already (cancelled meanwhile): the first ending stands.
            Some((_, None, _)) => {}
            None => {
                // Given up (shutdown with the database still refusing): the log keeps the answer.
                tracing::error!(tell = %tell.tell_id, pair = %self.pair(), state = %state,
                    answer = ?end.outcome.answer, error = ?end.outcome.error,
                    "the end of this tell could not be stored; the next start fails it");
            }
        }
    }

    /// A turn that ended without a result: the tell fails, the agent is killed, the session
    /// records the error and is stopped (the next tell resumes it). `reason` is the
    /// `agent_stopped` reason (`stall`, `crash`, `cancel`, `shutdown`).
    pub(super) async fn fail_turn(
        &mut self,
        tell: &Tell,
        session_id: &str,
        why: &str,
        reason: &str,
    ) {
        let m = self.router.manager().clone();
        if let Some(mut a) = self.agent.take() {
            // SIGTERM first, briefly: a killed Claude Code leaves its socket file behind.
            a.proc.stop(KILL_GRACE).await;
            self.forget_remote(session_id, &a.proc);
            a.release().await;
            self.stopped_event(session_id, reason, Some(why.to_string()));
        }
        if tell.kind == TellKind::Compact {
            self.keep("the failed compaction", || {
                m.fail_compaction(session_id, why)
            })
            .await;
        } else {
            self.keep("the session's error", || m.mark_error(session_id, why))
                .await;
        }
        tracing::info!(pair = %self.pair(), tell = %tell.tell_id, why, "tell failed");
        // The tell ends before the lease goes (a tell is never `delivered` without a live
        // owner); its waiters hear of it once the session is stopped.
        let router = self.router.clone();
        let outcome = TellOutcome {
            error: Some(why.to_string()),
            ..Default::default()
        };
        let done = self
            .keep("the end of the tell", || {
                router.finish_unannounced(tell, TellState::Failed, outcome.clone())
            })
            .await
            .flatten();
        self.keep("giving the lease back", || m.release_lease(session_id))
            .await;
        if let Some(done) = done {
            router.notify(&done);
        }
    }

    pub(super) async fn fail(
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
        self.finish(tell, state, outcome).await;
    }

    /// Ends the tell; a database that refuses the write is retried (see [`Worker::keep`]), so
    /// an answer the agent gave is kept until it is stored.
    pub(super) async fn finish(&self, tell: &Tell, state: TellState, outcome: TellOutcome) {
        let router = self.router.clone();
        let stored = self
            .keep("the end of the tell", || {
                router.finish(tell, state, outcome.clone())
            })
            .await;
        if stored.is_none() {
            // Given up (shutdown with the database still refusing): the log keeps the answer.
            tracing::error!(tell = %tell.tell_id, pair = %self.pair(), state = %state,
                answer = ?outcome.answer, error = ?outcome.error,
                "the end of this tell could not be stored; the next start fails it");
        }
    }

    /// Runs a write that must not be lost (a tell's end, the session's counters). When the
    /// database refuses it for a reason that can pass (read-only, disk full, locked), the
    /// write is retried with backoff (50 ms doubling to 5 s), the outcome kept in memory, while
    /// this process keeps the pair's lease: the tell keeps a live owner. At shutdown the
    /// retries get `shutdown_grace`; a write still refused then is given up with the outcome
    /// in the log, and the next start-up fails the tell ("interrupted by restart").
    pub(super) async fn keep<T, E>(
        &self,
        what: &str,
        mut op: impl FnMut() -> Result<T, E>,
    ) -> Option<T>
    where
        E: std::fmt::Display + Transient,
    {
        self.keep_async(what, || std::future::ready(op())).await
    }

    /// [`Worker::keep`] of a write that is awaited (see `SessionManager::end_turn_with_tell`).
    pub(super) async fn keep_async<T, E, F>(
        &self,
        what: &str,
        mut op: impl FnMut() -> F,
    ) -> Option<T>
    where
        E: std::fmt::Display + Transient,
        F: std::future::Future<Output = Result<T, E>>,
    {
        let grace = self.router.manager().config().settings.shutdown_grace;
        let mut backoff = RETRY_FIRST;
        let mut since_shutdown: Option<tokio::time::Instant> = None;
        let mut attempts = 0u32;
        loop {
            let e = match op().await {
                Ok(v) => {
                    if attempts > 0 {
                        tracing::info!(pair = %self.pair(), what, attempts, "the database took the write again");
                    }
                    return Some(v);
                }
                Err(e) => e,
            };
            attempts += 1;
            if !e.is_transient() {
                tracing::error!(pair = %self.pair(), what, error = %e, "cannot record");
                return None;
            }
            if attempts == 1 {
                tracing::warn!(pair = %self.pair(), what, error = %e,
                    "the database refuses the write; retrying until it takes it");
            }
            self.router
                .counters()
                .write_retries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if self.shutting_down() {
                let start = *since_shutdown.get_or_insert_with(tokio::time::Instant::now);
                if start.elapsed() >= grace {
                    tracing::error!(pair = %self.pair(), what, error = %e, attempts,
                        "shutting down with a write the database still refuses; given up");
                    return None;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }
}

/// First wait before a refused write is tried again.
const RETRY_FIRST: Duration = Duration::from_millis(50);
/// Longest wait between two tries of a refused write.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Errors that may pass (the database is read-only, full or locked for now).
pub(super) trait Transient {
    fn is_transient(&self) -> bool;
}

impl Transient for crate::session::SessionError {
    fn is_transient(&self) -> bool {
        crate::session::SessionError::is_transient(self)
    }
}

impl Transient for super::RouterError {
    fn is_transient(&self) -> bool {
        super::RouterError::is_transient(self)
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
