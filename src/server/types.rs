//! Argument and result types of the MCP tools. Doc comments become the descriptions in the
//! tools' JSON schemas, so they are written for the agent that calls the tools. Unknown
//! arguments are refused (`deny_unknown_fields`): in particular no argument names the caller.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::store::Tell;
use crate::util::rfc3339;

/// Default wait of `team_tell` and `team_compact`: five minutes.
pub const DEFAULT_TIMEOUT_MS: i64 = 300_000;
/// Longest wait a tool call may ask for: one hour.
pub const MAX_TIMEOUT_MS: i64 = 3_600_000;
/// Default number of tells `team_report` returns.
pub const DEFAULT_REPORT_LIMIT: u32 = 10;
/// Most tells `team_report` returns.
pub const MAX_REPORT_LIMIT: u32 = 200;

/// Arguments of `team_tell`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TellArgs {
    /// The team whose agent should answer (a name from team_teams).
    pub to: String,
    /// The message for that team's agent: a question or a request, in plain words.
    pub message: String,
    /// How long to wait for the answer, in milliseconds: 1 to 3600000 (default 300000, five
    /// minutes). -1 returns at once with the tell id. A tell still running when the time is up
    /// keeps running: ask team_tell_status for its answer later.
    #[serde(default)]
    pub timeout_ms: Option<i64>,
    /// Optional idempotency key of your choice (1-200 characters, no spaces): calling
    /// team_tell again with the same key and message returns the first tell instead of
    /// sending a second (use it when you retry after an error); the same key with another
    /// message is an error.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Arguments of `team_quick_tell`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuickTellArgs {
    /// The team whose agent should answer (a name from team_teams).
    pub to: String,
    /// The message for that team's agent.
    pub message: String,
}

/// Arguments of `team_tell_status`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TellStatusArgs {
    /// The tell id that team_tell or team_quick_tell returned.
    pub tell_id: String,
}

/// Arguments of `team_report`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportArgs {
    /// The other team of the conversation.
    pub to: String,
    /// How many of the latest tells to return, 1 to 200 (default 10).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// Arguments of the tools that act on the caller's session with one team (team_wake,
/// team_sleep, team_reboot, team_is_awake).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamArgs {
    /// The other team of the session.
    pub to: String,
}

/// Arguments of `team_compact`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompactArgs {
    /// The other team of the session.
    pub to: String,
    /// How long to wait for the compaction, in milliseconds: 1 to 3600000 (default 300000).
    /// -1 returns at once.
    #[serde(default)]
    pub timeout_ms: Option<i64>,
}

/// Arguments of `team_cancel`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelArgs {
    /// The other team of the session.
    pub to: String,
    /// Cancel only this tell (one of yours to that team). Without it, every queued tell to the
    /// team is cancelled and the running one is interrupted.
    #[serde(default)]
    pub tell_id: Option<String>,
}

/// Arguments of `team_delete`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    /// The other team of the session.
    pub to: String,
    /// Must be true: deleting forgets the conversation and its history of tells.
    pub confirm: bool,
    /// Also remove the agent's transcript file of the session (default false).
    #[serde(default)]
    pub remove_transcript: bool,
}

/// No arguments.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// A tell: a message from one team to another team's agent, and its answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TellOut {
    /// The tell's id (for team_tell_status and team_cancel).
    pub tell_id: String,
    /// The team that told.
    pub from_team: String,
    /// The team whose agent answers.
    pub to_team: String,
    /// `tell` (a message) or `compact` (a compaction).
    pub kind: String,
    /// `queued`, `delivered` (being answered), `answered`, `failed` or `cancelled`.
    pub state: String,
    /// The answer, once answered.
    pub answer: Option<String>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// Input tokens of the turn.
    pub input_tokens: Option<i64>,
    /// Output tokens of the turn.
    pub output_tokens: Option<i64>,
    /// Cost of the turn, US dollars.
    pub cost_usd: Option<f64>,
    /// How long the turn took, as the agent measured it.
    pub duration_ms: Option<i64>,
    /// When it was stored (RFC 3339).
    pub created_at: String,
    /// When it ended (RFC 3339).
    pub answered_at: Option<String>,
    /// The message text (team_report only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What to do next, when the tell has not ended yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Tool uses of the callee's agent that wait for your decision (the team's
    /// `ask = "caller"`): decide each with team_approve.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalOut>,
}

/// A tool use an agent asks permission for, and its decision.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ApprovalOut {
    /// Its id (for team_approve).
    pub approval_id: String,
    /// The tell being answered when the agent asked.
    pub tell_id: Option<String>,
    /// The calling team.
    pub from_team: String,
    /// The team whose agent asks.
    pub to_team: String,
    /// The tool it wants to use.
    pub tool: String,
    /// What it wants to do with it (a bounded summary of the input, secrets hidden).
    pub input: String,
    /// `pending`, `allowed`, `denied` or `expired`.
    pub state: String,
    /// Who decided: `rule`, `person`, `caller`, `timeout` or `agent` (expired).
    pub decided_by: Option<String>,
    /// The reason the agent was given.
    pub reason: Option<String>,
    /// When it asked (RFC 3339).
    pub asked_at: String,
    /// When it is denied if nobody decides (RFC 3339).
    pub expires_at: String,
}

impl ApprovalOut {
    /// The result form of a request.
    pub fn from_approval(a: &crate::store::Approval) -> Self {
        Self {
            approval_id: a.approval_id.clone(),
            tell_id: a.tell_id.clone(),
            from_team: a.from_team.clone(),
            to_team: a.to_team.clone(),
            tool: a.tool.clone(),
            input: a.input.clone(),
            state: a.state.clone(),
            decided_by: a.decided_by.clone(),
            reason: a.reason.clone(),
            asked_at: rfc3339(a.created_at),
            expires_at: rfc3339(a.expires_at),
        }
    }
}

/// Arguments of `team_approve`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveArgs {
    /// The approval_id from team_tell's `approvals` (or team_approvals).
    pub approval_id: String,
    /// "allow" (the agent runs the tool) or "deny" (it does not, and is told your reason).
    pub decision: String,
    /// With "deny": what to tell the agent (why, or what to do instead).
    #[serde(default)]
    pub reason: Option<String>,
    /// With "allow": also allow this tool for the rest of the conversation without asking.
    #[serde(default)]
    pub always: Option<bool>,
    /// How long to wait afterwards for the tell's answer, in milliseconds: 1 to 3600000
    /// (default 300000); -1 returns at once. Returns early when the agent asks again.
    #[serde(default)]
    pub timeout_ms: Option<i64>,
}

/// Arguments of `team_approvals`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsArgs {
    /// Also the decided ones (the latest 100); default: only those waiting for you.
    #[serde(default)]
    pub all: Option<bool>,
}

/// The requests asked of the caller's team.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ApprovalsOut {
    /// The caller's team.
    pub you: String,
    /// The requests, oldest first.
    pub approvals: Vec<ApprovalOut>,
}

/// What team_approve did, and the tell afterwards.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ApproveOut {
    /// The request as decided.
    pub approval: ApprovalOut,
    /// The tell the request belongs to, after waiting (its answer, or more requests).
    pub tell: Option<TellOut>,
}

impl TellOut {
    /// The result form of a tell, without its message text.
    pub fn from_tell(t: &Tell) -> Self {
        let note = (!t.state.is_final()).then(|| {
            format!(
                "not answered yet; call team_tell_status with tell_id {} later",
                t.tell_id
            )
        });
        Self {
            tell_id: t.tell_id.clone(),
            from_team: t.from_team.clone(),
            to_team: t.to_team.clone(),
            kind: t.kind.to_string(),
            state: t.state.to_string(),
            answer: t.answer.clone(),
            error: t.error.clone(),
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cost_usd: t.cost_usd,
            duration_ms: t.duration_ms,
            created_at: rfc3339(t.created_at),
            answered_at: t.answered_at.map(rfc3339),
            message: None,
            note,
            approvals: Vec::new(),
        }
    }

    /// The tell with requests waiting for the caller's decision, and a note saying what to call.
    pub fn with_approvals(mut self, pending: &[crate::store::Approval]) -> Self {
        if pending.is_empty() {
            return self;
        }
        self.note = Some(format!(
            "team {}'s agent is waiting for your decision before it can go on: {} tool use(s) \
             in `approvals`. Call team_approve with each approval_id and decision \"allow\" or \
             \"deny\" (give a reason: the agent is told it); team_approve then waits for the \
             answer as team_tell does. A request nobody decides by its expires_at is denied.",
            self.to_team,
            pending.len()
        ));
        self.approvals = pending.iter().map(ApprovalOut::from_approval).collect();
        self
    }
}

/// The latest tells between the caller's team and another, oldest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReportOut {
    /// The caller's team.
    pub from_team: String,
    /// The other team.
    pub to_team: String,
    /// The tells, oldest first, with their message text.
    pub tells: Vec<TellOut>,
}

/// Every team, seen from the caller's team.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TeamsOut {
    /// The caller's team.
    pub you: String,
    /// Every team of the teams file, by name.
    pub teams: Vec<TeamOut>,
}

/// One team, and the caller's session with it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TeamOut {
    /// The team's name (use it as `to`).
    pub name: String,
    /// What the team does.
    pub description: Option<String>,
    /// Whether this is the caller's own team (it cannot be told).
    pub is_you: bool,
    /// The caller's session with this team, if there is one.
    pub session_id: Option<String>,
    /// What the team's agent of that session is doing: `stopped`, `spawning`, `idle`,
    /// `processing` or `terminating`.
    pub process_state: Option<String>,
    /// Whether that agent is running (idle or processing).
    pub awake: bool,
    /// Tells from the caller to this team not answered yet.
    pub queue_length: usize,
}

/// Whether the team's agent of the caller's session runs.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AwakeOut {
    /// The other team.
    pub to_team: String,
    /// Whether its agent runs (idle or processing).
    pub awake: bool,
    /// `stopped`, `spawning`, `idle`, `processing` or `terminating` (`stopped` when there is no
    /// session yet).
    pub process_state: String,
    /// The session's id, if there is a session.
    pub session_id: Option<String>,
    /// The agent's pid, if it runs.
    pub pid: Option<i64>,
    /// Tells from the caller to this team not answered yet.
    pub queue_length: usize,
}

/// What team_wake did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WakeOut {
    /// The other team.
    pub to_team: String,
    /// The pid of its agent.
    pub pid: u32,
}

/// What team_sleep did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SleepOut {
    /// The other team.
    pub to_team: String,
    /// Whether an agent was running (it is stopped now; the session is kept).
    pub was_running: bool,
}

/// What team_reboot did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RebootOut {
    /// The other team.
    pub to_team: String,
    /// The session id before (its transcript is kept).
    pub old_session_id: Option<String>,
    /// The new session id.
    pub session_id: String,
}

/// What team_delete did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeleteOut {
    /// The other team.
    pub to_team: String,
    /// The deleted session's id (none if there was no session).
    pub deleted_session_id: Option<String>,
    /// Whether the agent's transcript was removed.
    pub transcript_removed: bool,
}

/// What team_cancel did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CancelOut {
    /// The other team.
    pub to_team: String,
    /// Queued tells cancelled before delivery.
    pub cancelled_queued: Vec<String>,
    /// The running tell that was interrupted, if any.
    pub interrupted: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::caller::schema;

    fn properties<T: JsonSchema + 'static>() -> Vec<String> {
        let s = rmcp::handler::server::common::schema_for_input::<T>()
            .unwrap_or_else(|e| panic!("{}: {e}", std::any::type_name::<T>()));
        assert_eq!(s.get("type"), Some(&serde_json::json!("object")));
        assert_eq!(schema::<T>(), s);
        s.get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn every_argument_type_has_an_object_schema() {
        assert_eq!(
            properties::<TellArgs>(),
            ["idempotency_key", "message", "timeout_ms", "to"]
        );
        assert_eq!(properties::<QuickTellArgs>(), ["message", "to"]);
        assert_eq!(properties::<TellStatusArgs>(), ["tell_id"]);
        assert_eq!(properties::<ReportArgs>(), ["limit", "to"]);
        assert_eq!(properties::<TeamArgs>(), ["to"]);
        assert_eq!(properties::<CompactArgs>(), ["timeout_ms", "to"]);
        assert_eq!(properties::<CancelArgs>(), ["tell_id", "to"]);
        assert_eq!(
            properties::<DeleteArgs>(),
            ["confirm", "remove_transcript", "to"]
        );
        assert!(properties::<NoArgs>().is_empty());
    }

    #[test]
    fn descriptions_come_from_doc_comments() {
        let s = schema::<TellArgs>();
        let to = &s["properties"]["to"]["description"];
        assert_eq!(
            to,
            "The team whose agent should answer (a name from team_teams)."
        );
    }
}
