//! The tools that act on the caller's session with one team and its agent: wake, sleep,
//! reboot, delete, compact, is-awake, cancel; and `session_stats`. Part of the same tool
//! server as [`super::tools`].

use rmcp::handler::server::wrapper::Json;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};

use super::caller::{schema, Args};
use super::tools::{msg, structured, wait_of, SwitchboardTools};
use super::types::*;
use crate::store::{ProcessState, TellState};

#[tool_router(router = agent_tools, vis = "pub(super)")]
impl SwitchboardTools {
    /// Start the agent of your conversation with a team now (no model call), so the next
    /// tell is answered sooner. Returns its pid.
    #[tool(input_schema = schema::<TeamArgs>())]
    async fn team_wake(
        &self,
        args: Args<TeamArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<WakeOut>, String> {
        let (from, to) = self.pair(&ctx, &args.get()?.to)?;
        let pid = self.router.wake(&from, &to).await.map_err(|e| msg(&e))?;
        Ok(Json(WakeOut { to_team: to, pid }))
    }

    /// Stop the agent of your conversation with a team once your queued tells to it are done.
    /// The conversation is kept: the next tell resumes it.
    #[tool(input_schema = schema::<TeamArgs>())]
    async fn team_sleep(
        &self,
        args: Args<TeamArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<SleepOut>, String> {
        let (from, to) = self.pair(&ctx, &args.get()?.to)?;
        let session = self.router.manager().get(&from, &to).map_err(|e| msg(&e))?;
        let was_running = match session {
            Some(_) => self.router.sleep(&from, &to).await.map_err(|e| msg(&e))?,
            None => false,
        };
        Ok(Json(SleepOut {
            to_team: to,
            was_running,
        }))
    }

    /// Start a fresh conversation with a team: its agent is stopped and the next tell starts
    /// a new session (new session id) with no memory of earlier tells. The old transcript and
    /// the history of tells are kept.
    #[tool(input_schema = schema::<TeamArgs>())]
    async fn team_reboot(
        &self,
        args: Args<TeamArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<RebootOut>, String> {
        let (from, to) = self.pair(&ctx, &args.get()?.to)?;
        let m = self.router.manager();
        let old = m.get(&from, &to).map_err(|e| msg(&e))?;
        let s = self.router.reboot(&from, &to).await.map_err(|e| msg(&e))?;
        Ok(Json(RebootOut {
            to_team: to,
            old_session_id: old.map(|s| s.session_id.clone()),
            session_id: s.session_id,
        }))
    }

    /// Delete your conversation with a team: cancels your open tells to it, stops its agent
    /// and forgets the session and its history of tells. Needs confirm: true.
    #[tool(input_schema = schema::<DeleteArgs>(), annotations(destructive_hint = true))]
    async fn team_delete(
        &self,
        args: Args<DeleteArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<DeleteOut>, String> {
        let args = args.get()?;
        let (from, to) = self.pair(&ctx, &args.to)?;
        if !args.confirm {
            return Err(format!(
                "not deleted: pass confirm: true to delete your session with {to} and its history"
            ));
        }
        // The same operation as the dashboard's delete.
        let deleted = self
            .router
            .delete_pair(&crate::router::dashboard::DeleteArgs {
                from,
                to: to.clone(),
                confirm: true,
                transcript: args.remove_transcript,
            })
            .await
            .map_err(|e| msg(&e))?;
        Ok(Json(DeleteOut {
            to_team: to,
            deleted_session_id: deleted.deleted_session_id,
            transcript_removed: deleted.transcript_removed,
        }))
    }

    /// Ask the agent of your conversation with a team to compact (summarise) its context,
    /// after your queued tells. Waits up to timeout_ms (default five minutes; -1: not at all).
    #[tool(input_schema = schema::<CompactArgs>())]
    async fn team_compact(
        &self,
        args: Args<CompactArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<TellOut>, String> {
        let args = args.get()?;
        let wait = wait_of(args.timeout_ms)?;
        let (from, to) = self.pair(&ctx, &args.to)?;
        let t = self
            .router
            .compact(&from, &to, wait)
            .await
            .map_err(|e| msg(&e))?;
        Ok(Json(TellOut::from_tell(&t)))
    }

    /// Whether the agent of your conversation with a team is running, what it is doing, and
    /// how many of your tells it has not answered.
    #[tool(input_schema = schema::<TeamArgs>(), annotations(read_only_hint = true))]
    async fn team_is_awake(
        &self,
        args: Args<TeamArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<AwakeOut>, String> {
        let (from, to) = self.pair(&ctx, &args.get()?.to)?;
        let s = self.router.manager().get(&from, &to).map_err(|e| msg(&e))?;
        let state = s
            .as_ref()
            .map_or(ProcessState::Stopped, |s| s.process_state);
        Ok(Json(AwakeOut {
            awake: matches!(state, ProcessState::Idle | ProcessState::Processing),
            process_state: state.to_string(),
            session_id: s.as_ref().map(|s| s.session_id.clone()),
            pid: s.as_ref().and_then(|s| s.agent_pid),
            queue_length: self.router.queue_len(&from, &to),
            to_team: to,
        }))
    }

    /// Cancel your tells to a team: every queued one, and interrupt the one being answered
    /// (its agent keeps running). With tell_id, only that tell.
    #[tool(input_schema = schema::<CancelArgs>())]
    async fn team_cancel(
        &self,
        args: Args<CancelArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<CancelOut>, String> {
        let args = args.get()?;
        let (from, to) = self.pair(&ctx, &args.to)?;
        let Some(id) = args.tell_id.as_deref().map(str::trim) else {
            let r = self.router.cancel(&from, &to).map_err(|e| msg(&e))?;
            return Ok(Json(CancelOut {
                to_team: to,
                cancelled_queued: r.cancelled_queued,
                interrupted: r.interrupted,
            }));
        };
        let not_yours = || format!("tell {id} not found among your tells to {to}");
        let t = self.router.tell_status(id).map_err(|_| not_yours())?;
        if t.from_team != from || t.to_team != to {
            return Err(not_yours());
        }
        self.router.cancel_tell(id).map_err(|e| msg(&e))?;
        Ok(Json(CancelOut {
            to_team: to,
            cancelled_queued: (t.state == TellState::Queued)
                .then(|| id.to_string())
                .into_iter()
                .collect(),
            interrupted: (t.state == TellState::Delivered).then(|| id.to_string()),
        }))
    }

    /// Totals over every session of this Switchboard: sessions by status and process state,
    /// messages, tokens, cost, sessions due for compaction, per team, busiest pairs.
    #[tool(input_schema = schema::<NoArgs>(), annotations(read_only_hint = true))]
    async fn session_stats(
        &self,
        args: Args<NoArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, String> {
        args.get()?;
        let caller = self.caller(&ctx)?;
        self.router.caller_team(&caller).map_err(|e| msg(&e))?;
        let stats = self.router.manager().stats().map_err(|e| msg(&e))?;
        structured(&stats)
    }
}
