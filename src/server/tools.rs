//! The MCP tools: thin adapters over the [`Router`] and the session manager. Each tool finds
//! the caller (never an argument), checks its arguments and answers structured JSON; anything
//! wrong is a tool error result (`isError: true`) whose text says what and how to fix it.

use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Json;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, RoleServer, ServerHandler};

use super::caller::{caller_of, schema, Args};
use super::ops::Metrics;
use super::types::*;
use crate::router::{approvals, Caller, Router, Wait};
use crate::store::ProcessState;

const INSTRUCTIONS: &str = "Switchboard connects you with the agents of other teams (other \
project folders). Each team you talk to keeps one persistent conversation with you. \
team_teams lists the teams; team_tell asks one and returns its answer; team_quick_tell and \
team_tell_status send without waiting and fetch the answer later; team_report shows your \
recent tells to a team. When a team asks you to approve its agent's tool use, team_tell returns \
the request in `approvals`: decide with team_approve (team_approvals lists what waits).";

/// The tool server: one per stdio connection, one per HTTP session (cheap to clone).
#[derive(Clone)]
pub struct SwitchboardTools {
    pub(super) router: Router,
    fixed: Option<Caller>,
    agents_only: bool,
    metrics: Arc<Metrics>,
    tool_router: Arc<ToolRouter<Self>>,
}

impl std::fmt::Debug for SwitchboardTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchboardTools")
            .field("fixed", &self.fixed)
            .finish_non_exhaustive()
    }
}

/// An error and its causes, each once.
pub(super) fn msg(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

/// The wait a `timeout_ms` argument asks for.
pub(super) fn wait_of(timeout_ms: Option<i64>) -> Result<Wait, String> {
    match timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS) {
        -1 => Ok(Wait::None),
        ms @ 1..=MAX_TIMEOUT_MS => Ok(Wait::For(Duration::from_millis(ms.unsigned_abs()))),
        ms => Err(format!(
            "invalid timeout_ms {ms}: use -1 (return at once with the tell id) or 1 to \
             {MAX_TIMEOUT_MS} milliseconds (default {DEFAULT_TIMEOUT_MS})"
        )),
    }
}

#[tool_router(router = tell_tools)]
impl SwitchboardTools {
    /// A tool server over `router`. `fixed` is the caller of every call (stdio `--as`); without
    /// it the caller comes from each HTTP request.
    pub fn new(router: Router, fixed: Option<Caller>, metrics: Arc<Metrics>) -> Self {
        Self {
            router,
            fixed,
            agents_only: false,
            metrics,
            tool_router: Arc::new(Self::tell_tools() + Self::agent_tools()),
        }
    }

    /// The same tools, for the agents Switchboard spawned only: a call that does not carry an
    /// agent token is refused.
    pub fn agents_only(mut self) -> Self {
        self.agents_only = true;
        self
    }

    pub(super) fn caller(&self, ctx: &RequestContext<RoleServer>) -> Result<Caller, String> {
        let caller = caller_of(&self.router, self.fixed.as_ref(), ctx)?;
        if self.agents_only && !matches!(caller, Caller::Agent { .. }) {
            return Err(
                "unknown caller: this endpoint serves only the agents Switchboard \
                        started (their MCP config names them)"
                    .to_string(),
            );
        }
        Ok(caller)
    }

    /// The caller's team and a checked other team `to`.
    pub(super) fn pair(
        &self,
        ctx: &RequestContext<RoleServer>,
        to: &str,
    ) -> Result<(String, String), String> {
        let caller = self.caller(ctx)?;
        let from = self.router.caller_team(&caller).map_err(|e| msg(&e))?;
        let m = self.router.manager();
        m.check_team(to).map_err(|e| msg(&e))?;
        if from == to {
            return Err(format!(
                "{to} is your own team: name another team (see team_teams)"
            ));
        }
        Ok((from, to.to_string()))
    }

    pub(super) fn observe(&self, t: &crate::store::Tell) {
        if let (true, Some(end)) = (t.state.is_final(), t.answered_at) {
            self.metrics.observe_tell_ms(end - t.created_at);
        }
    }

    /// Send a message to another team's agent and wait for its answer (the answer is in
    /// `answer`). The team keeps one conversation with you, so it remembers earlier tells.
    /// Waits up to timeout_ms (default five minutes); a tell not answered by then keeps
    /// running: fetch it with team_tell_status.
    #[tool(input_schema = schema::<TellArgs>())]
    async fn team_tell(
        &self,
        args: Args<TellArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<TellOut>, String> {
        let args = args.get()?;
        let wait = wait_of(args.timeout_ms)?;
        self.pair(&ctx, &args.to)?;
        let caller = self.caller(&ctx)?;
        let t = self
            .router
            .submit_as_keyed(
                &caller,
                &args.to,
                &args.message,
                args.idempotency_key.as_deref(),
            )
            .await
            .map_err(|e| msg(&e))?;
        let (t, pending) = approvals::wait_for_answer_or_caller(&self.router, &t.tell_id, wait)
            .await
            .map_err(|e| msg(&e))?;
        self.observe(&t);
        Ok(Json(TellOut::from_tell(&t).with_approvals(&pending)))
    }

    /// Decide a tool use that another team's agent asks your permission for (it appears in
    /// team_tell's `approvals` when that team asks its callers): "allow" runs it, "deny" does
    /// not and tells the agent your reason. Then waits for the tell's answer like team_tell
    /// (or returns early when the agent asks again).
    #[tool(input_schema = schema::<ApproveArgs>())]
    async fn team_approve(
        &self,
        args: Args<ApproveArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<ApproveOut>, String> {
        let args = args.get()?;
        let wait = wait_of(args.timeout_ms)?;
        let caller = self.caller(&ctx)?;
        let me = self.router.caller_team(&caller).map_err(|e| msg(&e))?;
        let decision = approvals::Decision::from_words(
            &args.decision,
            args.always.unwrap_or(false),
            args.reason.clone(),
        )?;
        let m = self.router.manager();
        let a = approvals::decide(
            m,
            &args.approval_id,
            decision,
            approvals::Decider::Caller(me),
        )
        .map_err(|e| msg(&e))?;
        let tell = match &a.tell_id {
            Some(id) => {
                let (t, pending) = approvals::wait_for_answer_or_caller(&self.router, id, wait)
                    .await
                    .map_err(|e| msg(&e))?;
                self.observe(&t);
                Some(TellOut::from_tell(&t).with_approvals(&pending))
            }
            None => None,
        };
        Ok(Json(ApproveOut {
            approval: ApprovalOut::from_approval(&a),
            tell,
        }))
    }

    /// The tool uses other teams' agents ask your permission for (pending ones; `all` for the
    /// decided ones too). Decide each with team_approve.
    #[tool(input_schema = schema::<ApprovalsArgs>(), annotations(read_only_hint = true))]
    async fn team_approvals(
        &self,
        args: Args<ApprovalsArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<ApprovalsOut>, String> {
        let args = args.get()?;
        let caller = self.caller(&ctx)?;
        let me = self.router.caller_team(&caller).map_err(|e| msg(&e))?;
        let filter = approvals::ApprovalFilter {
            all: args.all.unwrap_or(false),
            caller: Some(me.clone()),
            ..Default::default()
        };
        let list =
            approvals::list_approvals(self.router.manager(), &filter).map_err(|e| msg(&e))?;
        Ok(Json(ApprovalsOut {
            you: me,
            approvals: list.iter().map(ApprovalOut::from_approval).collect(),
        }))
    }

    /// Send a message to another team's agent without waiting: returns the tell id at once;
    /// get the answer later with team_tell_status.
    #[tool(input_schema = schema::<QuickTellArgs>())]
    async fn team_quick_tell(
        &self,
        args: Args<QuickTellArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<TellOut>, String> {
        let args = args.get()?;
        self.pair(&ctx, &args.to)?;
        let caller = self.caller(&ctx)?;
        let t = self
            .router
            .submit_as(&caller, &args.to, &args.message)
            .await
            .map_err(|e| msg(&e))?;
        Ok(Json(TellOut::from_tell(&t)))
    }

    /// The state of a tell (queued, delivered, answered, failed, cancelled) and, once
    /// answered, its answer and token usage. While the other team's agent waits for your
    /// decision on a tool use, the requests are in `approvals` (decide with team_approve).
    #[tool(input_schema = schema::<TellStatusArgs>(), annotations(read_only_hint = true))]
    async fn team_tell_status(
        &self,
        args: Args<TellStatusArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<TellOut>, String> {
        let args = args.get()?;
        let caller = self.caller(&ctx)?;
        let me = self.router.caller_team(&caller).map_err(|e| msg(&e))?;
        let id = args.tell_id.trim();
        if id.is_empty() || id.len() > 100 {
            return Err(
                "invalid tell_id: give the id team_tell or team_quick_tell returned".into(),
            );
        }
        let not_found =
            || format!("tell {id} not found (only tells from or to team {me} are visible)");
        let t = self.router.tell_status(id).map_err(|_| not_found())?;
        if t.from_team != me && t.to_team != me {
            return Err(not_found());
        }
        self.observe(&t);
        let pending = if t.from_team == me && !t.state.is_final() {
            approvals::pending_for_caller(&self.router, &t.tell_id).map_err(|e| msg(&e))?
        } else {
            Vec::new()
        };
        Ok(Json(TellOut::from_tell(&t).with_approvals(&pending)))
    }

    /// The latest tells between your team and another, oldest first, with messages and
    /// answers (from the database: survives restarts).
    #[tool(input_schema = schema::<ReportArgs>(), annotations(read_only_hint = true))]
    async fn team_report(
        &self,
        args: Args<ReportArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<ReportOut>, String> {
        let args = args.get()?;
        let limit = args.limit.unwrap_or(DEFAULT_REPORT_LIMIT);
        if !(1..=MAX_REPORT_LIMIT).contains(&limit) {
            return Err(format!(
                "invalid limit {limit}: use 1 to {MAX_REPORT_LIMIT}"
            ));
        }
        let (from, to) = self.pair(&ctx, &args.to)?;
        let tells = self.router.report(&from, &to, limit).map_err(|e| msg(&e))?;
        let tells = tells
            .iter()
            .map(|t| TellOut {
                message: Some(t.text.clone()),
                ..TellOut::from_tell(t)
            })
            .collect();
        Ok(Json(ReportOut {
            from_team: from,
            to_team: to,
            tells,
        }))
    }

    /// Every team you can talk to: its description, whether its agent for your conversation
    /// is awake, the conversation's session id and how many of your tells it has not answered.
    #[tool(input_schema = schema::<NoArgs>(), annotations(read_only_hint = true))]
    async fn team_teams(
        &self,
        args: Args<NoArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<TeamsOut>, String> {
        args.get()?;
        let caller = self.caller(&ctx)?;
        let me = self.router.caller_team(&caller).map_err(|e| msg(&e))?;
        let m = self.router.manager();
        let mut teams = Vec::new();
        for (name, team) in &m.config().teams {
            let is_you = *name == me;
            let session = if is_you {
                None
            } else {
                m.get(&me, name).map_err(|e| msg(&e))?
            };
            let state = session.as_ref().map(|s| s.process_state);
            teams.push(TeamOut {
                name: name.clone(),
                description: team.description.clone(),
                is_you,
                session_id: session.as_ref().map(|s| s.session_id.clone()),
                process_state: state.map(|s| s.to_string()),
                awake: matches!(state, Some(ProcessState::Idle | ProcessState::Processing)),
                queue_length: if is_you {
                    0
                } else {
                    self.router.queue_len(&me, name)
                },
            });
        }
        Ok(Json(TeamsOut { you: me, teams }))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for SwitchboardTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("switchboard", env!("CARGO_PKG_VERSION"))
                    .with_title("Switchboard"),
            )
            .with_instructions(INSTRUCTIONS)
    }
}

/// Converts a serializable value into a structured tool result.
pub(crate) fn structured<T: serde::Serialize>(value: &T) -> Result<CallToolResult, String> {
    serde_json::to_value(value)
        .map(CallToolResult::structured)
        .map_err(|e| format!("cannot encode the result: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(wait_of(None), Ok(Wait::For(Duration::from_millis(300_000))));
        assert_eq!(wait_of(Some(-1)), Ok(Wait::None));
        assert_eq!(wait_of(Some(1)), Ok(Wait::For(Duration::from_millis(1))));
        assert_eq!(
            wait_of(Some(MAX_TIMEOUT_MS)),
            Ok(Wait::For(Duration::from_secs(3600)))
        );
        for bad in [0, -2, MAX_TIMEOUT_MS + 1, i64::MIN] {
            let e = wait_of(Some(bad)).expect_err("refused");
            assert!(e.starts_with(&format!("invalid timeout_ms {bad}:")), "{e}");
        }
    }
}
