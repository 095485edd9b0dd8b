//! Permission routing: what an agent asks to do (a tool call that needs a permission) is
//! decided by a rule of the team's `[permissions]`, an allow rule a person added for the
//! session, a person (`switchboard approvals`, the HTTP API) or the calling team (its agent
//! through `team_approve`); nobody deciding before the team's `timeout` means no. Every request
//! and decision is stored (SQLite is the truth: a decision made by another process reaches the
//! waiting worker through the database) and published on the event bus.
//!
//! The worker of a pair holds a [`PendingSet`] per turn: it hands each control request of the
//! agent to [`PendingSet::on_request`] and writes whatever line comes back; it waits on
//! [`PendingSet::next_line`] for decisions of pending requests.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Router, RouterError, RouterResult, Wait};
use crate::agent::adapter::{AgentAdapter, PermissionAsk};
use crate::config::{Ask, ToolCall};
use crate::events::{EventKind, NewEvent};
use crate::session::SessionManager;
use crate::store::{Approval, ApprovalQuery, NewApproval, SessionRule, Tell};
use crate::util::now_ms;

/// How often a worker with a pending request looks at the database (a decision made by
/// another Switchboard process, e.g. `switchboard approvals allow`, has no local wake-up).
const DECISION_POLL: Duration = Duration::from_millis(250);
/// Longest input summary kept and shown.
pub const INPUT_SUMMARY_CHARS: usize = 2000;
/// The fewest characters of an approval id that find it.
pub const MIN_APPROVAL_PREFIX: usize = 4;

/// Wakes the workers of this process when a request is decided here.
static DECIDED: Notify = Notify::const_new();

/// What a decider says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run the tool; with `always`, also add an allow rule for the session.
    Allow {
        /// Add an allow rule for this tool (see [`always_rule`]) to the session.
        always: bool,
    },
    /// Do not run it; the reason is given to the agent.
    Deny {
        /// Why (shown to the agent).
        reason: Option<String>,
    },
}

impl Decision {
    /// A decision from its words, as the HTTP API (`approve`) and the MCP tool
    /// (`team_approve`) take it: `"allow"` (with `always`) or `"deny"` (with `reason`); an
    /// error naming what is wrong (`always` with a denial is refused, not ignored: there are
    /// no "deny always" rules).
    pub fn from_words(
        decision: &str,
        always: bool,
        reason: Option<String>,
    ) -> Result<Self, String> {
        match decision {
            "allow" => Ok(Decision::Allow { always }),
            "deny" if always => Err(
                "always: only an allow can be made a session rule (\"decision\": \"allow\", \
                 \"always\": true); a denial is for this request only"
                    .to_string(),
            ),
            "deny" => Ok(Decision::Deny { reason }),
            other => Err(format!(
                "decision: {other:?} is not a decision: use \"allow\" or \"deny\""
            )),
        }
    }
}

/// Who decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decider {
    /// A person (CLI, HTTP API, dashboard): any request.
    Person,
    /// The calling team (its agent through MCP): only requests asked of it, of its own tells.
    Caller(String),
}

/// Which requests to list.
#[derive(Debug, Clone, Default)]
pub struct ApprovalFilter {
    /// Decided ones too (default: pending only).
    pub all: bool,
    /// Requests of this team's agents or of tells this team sent.
    pub team: Option<String>,
    /// Requests of this tell.
    pub tell_id: Option<String>,
    /// Only requests asked of this calling team (`ask = "caller"`).
    pub caller: Option<String>,
    /// At most this many (default 100): every pending one first, then the newest decided.
    pub limit: Option<u32>,
}

/// The requests `filter` selects, oldest first. An unknown team is an error naming it; the
/// tell may be given by a unique prefix of its id.
pub fn list_approvals(m: &SessionManager, filter: &ApprovalFilter) -> RouterResult<Vec<Approval>> {
    if let Some(team) = &filter.team {
        m.check_team(team)?;
    }
    let tell_id = match filter.tell_id.as_deref() {
        Some(id) => Some(super::find_tell(m, id)?.tell_id),
        None => None,
    };
    let q = ApprovalQuery {
        pending_only: !filter.all,
        from_team: filter.caller.as_deref(),
        to_team: None,
        tell_id: tell_id.as_deref(),
        decide_by: filter.caller.as_ref().map(|_| "caller"),
        team: filter.team.as_deref(),
        limit: filter.limit.unwrap_or(100),
    };
    Ok(m.store().list_approvals(&q)?)
}

/// A request by id or unique prefix (at least [`MIN_APPROVAL_PREFIX`] characters).
pub fn find_approval(m: &SessionManager, id: &str) -> RouterResult<Approval> {
    let id = id.trim();
    if let Some(a) = m.store().get_approval(id)? {
        return Ok(a);
    }
    if id.len() < MIN_APPROVAL_PREFIX {
        return Err(RouterError::ApprovalNotFound(format!(
            "approval {id:?} (give the whole id or at least {MIN_APPROVAL_PREFIX} characters of \
             it)"
        )));
    }
    let mut found = m.store().find_approvals(id)?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(RouterError::ApprovalNotFound(format!("approval {id}"))),
        _ => Err(RouterError::Approval(format!(
            "approval id {id:?} is ambiguous: give more of it"
        ))),
    }
}

/// Commands that run whatever command follows them: a prefix rule for one of them
/// (`Bash(bash:*)`, `Bash(sudo:*)`) would allow every command.
const RUNS_ANY_COMMAND: &[&str] = &[
    "bash", "sh", "zsh", "dash", "ksh", "fish", "env", "sudo", "doas", "su", "xargs", "eval",
    "exec", "nohup", "timeout", "nice", "command", "builtin", "time", "watch", "setsid", "stdbuf",
    "busybox",
];

/// The allow rule `--always` adds for a request: the tool's name, and for `Bash` the first
/// word of the command as a prefix rule (`Bash(git:*)`). A command that does not start with a
/// plain command name (`FOO=1 make`, `(cd x && make)`), or starts with one that runs any
/// command (`bash -c ...`, `sudo ...`), gets no rule, an error saying so: the rule would allow
/// every command.
pub fn always_rule(a: &Approval) -> Result<String, String> {
    if a.tool != "Bash" {
        return Ok(a.tool.clone());
    }
    let word = a.input.split_whitespace().next().filter(|w| {
        w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    });
    let name = word.map(|w| w.rsplit('/').next().unwrap_or(w));
    match (word, name) {
        (Some(word), Some(name)) if !RUNS_ANY_COMMAND.contains(&name) => {
            Ok(format!("Bash({word}:*)"))
        }
        _ => Err(format!(
            "approval {}: no session rule can be made from the command {:?}: it does not start \
             with a plain command name, or starts with one that runs any command, so the rule \
             would allow every command; allow it once (without always)",
            a.approval_id,
            a.input.chars().take(200).collect::<String>()
        )),
    }
}

/// Decides a pending request. A caller may decide only requests asked of it (`ask =
/// "caller"`) of tells it sent; a person any. With `always`, the session gets an allow rule.
pub fn decide(
    m: &SessionManager,
    id: &str,
    decision: Decision,
    by: Decider,
) -> RouterResult<Approval> {
    let a = find_approval(m, id)?;
    if let Decider::Caller(team) = &by {
        if a.decide_by != "caller" || &a.from_team != team {
            return Err(RouterError::Approval(format!(
                "approval {} is not yours to decide: it was asked of {} (team {} called team \
                 {})",
                a.approval_id,
                if a.decide_by == "caller" {
                    format!("the calling team {}", a.from_team)
                } else {
                    "a person".to_string()
                },
                a.from_team,
                a.to_team
            )));
        }
    }
    if !a.is_pending() {
        return Err(RouterError::Approval(format!(
            "approval {} was already decided: {} by {}{}",
            a.approval_id,
            a.state,
            a.decided_by.as_deref().unwrap_or("?"),
            a.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )));
    }
    let who = match &by {
        Decider::Person => "person",
        Decider::Caller(_) => "caller",
    };
    let now = now_ms();
    let decided = match &decision {
        Decision::Allow { always } => {
            let rule = if *always {
                Some(always_rule(&a).map_err(RouterError::Approval)?)
            } else {
                None
            };
            let d = m.store().decide_approval(
                &a.approval_id,
                "allowed",
                who,
                None,
                rule.as_deref(),
                now,
            )?;
            if let (Some(d), Some(rule)) = (&d, &rule) {
                m.store().add_session_rule(
                    &d.session_id,
                    &d.from_team,
                    &d.to_team,
                    rule,
                    Some(&d.approval_id),
                    now,
                )?;
            }
            d
        }
        Decision::Deny { reason } => {
            let reason = match reason.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
                Some(r) => format!("denied by {}: {r}", decider_words(&by)),
                None => format!("denied by {}", decider_words(&by)),
            };
            m.store()
                .decide_approval(&a.approval_id, "denied", who, Some(&reason), None, now)?
        }
    };
    let Some(decided) = decided else {
        let now = m.store().get_approval(&a.approval_id)?.unwrap_or(a);
        return Err(RouterError::Approval(format!(
            "approval {} was decided meanwhile: {} by {}",
            now.approval_id,
            now.state,
            now.decided_by.as_deref().unwrap_or("?")
        )));
    };
    publish_decided(m, &decided);
    DECIDED.notify_waiters();
    Ok(decided)
}

fn decider_words(by: &Decider) -> String {
    match by {
        Decider::Person => "a person".to_string(),
        Decider::Caller(team) => format!("the calling team {team}"),
    }
}

/// The allow rules of sessions (`approvals rules`).
pub fn session_rules(m: &SessionManager) -> RouterResult<Vec<SessionRule>> {
    Ok(m.store().session_rules(None)?)
}

/// Removes a session rule by its number.
pub fn remove_session_rule(m: &SessionManager, id: i64) -> RouterResult<SessionRule> {
    m.store()
        .remove_session_rule(id)?
        .ok_or_else(|| RouterError::ApprovalNotFound(format!("session rule {id}")))
}

/// Expires every pending request whose agent is gone: the Switchboard process that ran it
/// ended (a restart). Returns how many.
pub fn expire_orphans(m: &SessionManager) -> RouterResult<usize> {
    let me = m.me();
    let mut n = 0;
    for (a, owner) in m.store().pending_approvals_with_owner()? {
        if owner.is_some_and(|o| o == me || o.is_alive()) {
            continue;
        }
        let reason = "expired: the agent that asked is gone (the Switchboard process running it \
                      ended); nothing was run";
        if let Some(e) = m.store().decide_approval(
            &a.approval_id,
            "expired",
            "agent",
            Some(reason),
            None,
            now_ms(),
        )? {
            publish_expired(m, &e);
            n += 1;
        }
    }
    Ok(n)
}

/// Waits for a tell as `wait` says, but returns early (with them) when requests of the tell
/// wait for the calling team's decision (`ask = "caller"`): a waiting `team_tell` hands them
/// to its caller instead of sitting on them.
pub async fn wait_for_answer_or_caller(
    router: &Router,
    tell_id: &str,
    wait: Wait,
) -> RouterResult<(Tell, Vec<Approval>)> {
    let deadline = match wait {
        Wait::None => {
            return Ok((
                router.tell_status(tell_id)?,
                pending_for_caller(router, tell_id)?,
            ))
        }
        Wait::For(d) => Some(Instant::now() + d),
        Wait::Forever => None,
    };
    loop {
        let pending = pending_for_caller(router, tell_id)?;
        if !pending.is_empty() {
            return Ok((router.tell_status(tell_id)?, pending));
        }
        let slice = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(DECISION_POLL),
            None => DECISION_POLL,
        };
        let t = router.wait_for(tell_id, Wait::For(slice)).await?;
        if t.state.is_final() || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok((t, Vec::new()));
        }
    }
}

/// The requests of a tell that wait for its calling team's decision.
pub fn pending_for_caller(router: &Router, tell_id: &str) -> RouterResult<Vec<Approval>> {
    let q = ApprovalQuery {
        pending_only: true,
        tell_id: Some(tell_id),
        decide_by: Some("caller"),
        limit: 50,
        ..Default::default()
    };
    Ok(router.manager().store().list_approvals(&q)?)
}

/// A bounded, redacted summary of a tool's input: the command of `Bash`, the path (and size
/// of the content) of file tools, else the input's JSON (values of secret-named keys hidden,
/// as in the `tool_use` event's summary).
pub fn summarize_input(tool: &str, input: &Value) -> String {
    let input = &crate::events::summary::hide_secret_values(input);
    let s = |k: &str| input.get(k).and_then(Value::as_str);
    let text = match (tool, s("command"), s("file_path").or(s("notebook_path"))) {
        ("Bash", Some(cmd), _) => cmd.to_string(),
        (_, _, Some(path)) => {
            let content = s("content").or(s("new_string")).or(s("new_source"));
            match content {
                Some(c) => format!(
                    "{path} ({} bytes: {})",
                    c.len(),
                    c.chars().take(200).collect::<String>()
                ),
                None => path.to_string(),
            }
        }
        _ => input.to_string(),
    };
    let redacted = crate::redact::text(&text);
    if redacted.chars().count() > INPUT_SUMMARY_CHARS {
        let mut cut: String = redacted.chars().take(INPUT_SUMMARY_CHARS).collect();
        cut.push('…');
        cut
    } else {
        redacted
    }
}

fn publish(m: &SessionManager, a: &Approval, kind: EventKind) {
    m.events().publish(NewEvent {
        from_team: Some(a.from_team.clone()),
        to_team: Some(a.to_team.clone()),
        tell_id: a.tell_id.clone(),
        session_id: Some(a.session_id.clone()),
        kind,
    });
}

fn publish_requested(m: &SessionManager, a: &Approval) {
    let kind = EventKind::ApprovalRequested {
        approval_id: a.approval_id.clone(),
        tool: a.tool.clone(),
        input: a.input.clone(),
        decide_by: a.decide_by.clone(),
        expires_at: a.expires_at,
    };
    publish(m, a, kind);
}

fn publish_decided(m: &SessionManager, a: &Approval) {
    let kind = EventKind::ApprovalDecided {
        approval_id: a.approval_id.clone(),
        tool: a.tool.clone(),
        decision: if a.state == "allowed" {
            "allow"
        } else {
            "deny"
        }
        .to_string(),
        by: a.decided_by.clone().unwrap_or_default(),
        reason: a.reason.clone(),
    };
    publish(m, a, kind);
}

fn publish_expired(m: &SessionManager, a: &Approval) {
    let kind = EventKind::ApprovalExpired {
        approval_id: a.approval_id.clone(),
        reason: a.reason.clone().unwrap_or_default(),
    };
    publish(m, a, kind);
}

/// One request of the running turn that waits for a decision.
struct Waiting {
    approval_id: String,
    request_id: String,
    input: Value,
    expires: Instant,
    timeout: Duration,
}

/// The pending requests of one turn of one pair's agent.
pub(super) struct PendingSet {
    manager: Arc<SessionManager>,
    from: String,
    to: String,
    session_id: String,
    tell_id: String,
    waiting: Vec<Waiting>,
}

impl PendingSet {
    pub(super) fn new(
        manager: Arc<SessionManager>,
        from: &str,
        to: &str,
        session_id: &str,
        tell_id: &str,
    ) -> Self {
        Self {
            manager,
            from: from.to_string(),
            to: to.to_string(),
            session_id: session_id.to_string(),
            tell_id: tell_id.to_string(),
            waiting: Vec::new(),
        }
    }

    /// Whether a request waits for a decision (the turn is then not stalled).
    pub(super) fn is_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// A control request of the agent: a permission request is decided at once (a rule) or
    /// stored as pending; returns the line to write to the agent, if any now.
    pub(super) fn on_request(
        &mut self,
        adapter: &dyn AgentAdapter,
        request_id: Option<&str>,
        request: &Value,
    ) -> Option<String> {
        let Some(ask) = adapter.permission_ask(request) else {
            tracing::warn!(?request_id, %request, "agent asked for something Switchboard does not grant");
            return None;
        };
        let request_id = request_id?;
        match self.take(&ask, request_id) {
            Ok(line) => line.map(|(allow, message)| {
                adapter
                    .encode_permission(request_id, allow, &ask.input, &message)
                    .unwrap_or_default()
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot record a permission request; denied");
                adapter.encode_permission(
                    request_id,
                    false,
                    &ask.input,
                    &format!("Switchboard could not record the request, so it is denied: {e}"),
                )
            }
        }
    }

    /// Stores the request; `Some((allow, message))` when decided at once.
    fn take(
        &mut self,
        ask: &PermissionAsk,
        request_id: &str,
    ) -> RouterResult<Option<(bool, String)>> {
        let m = Arc::clone(&self.manager);
        let team = m.config().team(&self.to).cloned();
        let has_table = team.as_ref().is_some_and(|t| t.permissions.is_some());
        let permissions = team
            .as_ref()
            .and_then(|t| t.permissions.clone())
            .unwrap_or_default();
        let folder = team.map(|t| t.path).unwrap_or_default();
        let call = ToolCall {
            tool: &ask.tool,
            input: &ask.input,
            folder: &folder,
        };
        let summary = summarize_input(&ask.tool, &ask.input);
        let mut rule_decision: Option<(bool, String, String)> =
            permissions.decide(&call).map(|(allow, rule)| {
                let why = format!(
                    "team {}'s permissions {} {rule}",
                    self.to,
                    if allow { "allow" } else { "deny" }
                );
                (allow, rule.to_string(), why)
            });
        if rule_decision.is_none() {
            for r in m.store().session_rules(Some(&self.session_id))? {
                // A rule naming a tool this build does not know (a newer agent's) still
                // matches that tool by name.
                let matches = match crate::config::Rule::parse(&r.rule) {
                    Ok(rule) => rule.matches(&call, false),
                    Err(_) => r.rule == ask.tool,
                };
                if matches {
                    rule_decision = Some((
                        true,
                        r.rule.clone(),
                        format!("allowed by the session's rule {} (approvals rules)", r.rule),
                    ));
                    break;
                }
            }
        }
        if rule_decision.is_none() && !has_table {
            // Only agents of teams with a table are launched to ask; an agent that asks anyway
            // gets what Claude Code would have done without us: no.
            rule_decision = Some((
                false,
                "no [permissions]".to_string(),
                format!(
                    "team {} has no [teams.{}.permissions] table, so nothing that needs a \
                     permission is allowed",
                    self.to, self.to
                ),
            ));
        }
        if rule_decision.is_none() && permissions.ask == Ask::Deny {
            rule_decision = Some((
                false,
                "ask = \"deny\"".to_string(),
                format!(
                    "team {}'s permissions deny every tool call no rule allows (ask = \"deny\")",
                    self.to
                ),
            ));
        }
        let approval_id = format!("ap-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let now = now_ms();
        let timeout = permissions.timeout;
        let base = NewApproval {
            approval_id: &approval_id,
            tell_id: Some(&self.tell_id),
            session_id: &self.session_id,
            from_team: &self.from,
            to_team: &self.to,
            request_id,
            tool_use_id: ask.tool_use_id.as_deref(),
            tool: &ask.tool,
            input: &summary,
            decide_by: "rule",
            decided: None,
            expires_at: now + i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX / 2),
            owner: m.me(),
        };
        if let Some((allow, rule, why)) = rule_decision {
            let state = if allow { "allowed" } else { "denied" };
            let reason = (!allow).then(|| format!("denied: {why}"));
            let a = m.store().insert_approval(
                &NewApproval {
                    decided: Some((state, "rule", reason.as_deref(), Some(&rule))),
                    ..base
                },
                now,
            )?;
            publish_decided(&m, &a);
            return Ok(Some((allow, reason.unwrap_or_default())));
        }
        let decide_by = match permissions.ask {
            Ask::Caller => "caller",
            _ => "human",
        };
        let a = m
            .store()
            .insert_approval(&NewApproval { decide_by, ..base }, now)?;
        tracing::info!(approval = %a.approval_id, tool = %a.tool, pair = %format!("{}:{}", self.from, self.to), decide_by, "permission request waits for a decision");
        publish_requested(&m, &a);
        self.waiting.push(Waiting {
            approval_id,
            request_id: request_id.to_string(),
            input: ask.input.clone(),
            expires: Instant::now() + timeout,
            timeout,
        });
        Ok(None)
    }

    /// Waits until a pending request is decided (here, by another process, or by its
    /// timeout: then denied) and returns the line for the agent. Pending forever when nothing
    /// waits.
    pub(super) async fn next_line(&mut self, adapter: &dyn AgentAdapter) -> String {
        if self.waiting.is_empty() {
            return std::future::pending().await;
        }
        loop {
            // Registered before looking, so a decision made while we look is not missed.
            let notified = DECIDED.notified();
            if let Some(line) = self.poll(adapter) {
                return line;
            }
            let earliest = self
                .waiting
                .iter()
                .map(|w| w.expires)
                .min()
                .unwrap_or_else(|| Instant::now() + DECISION_POLL);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(DECISION_POLL) => {}
                _ = tokio::time::sleep_until(earliest) => {}
            }
        }
    }

    fn poll(&mut self, adapter: &dyn AgentAdapter) -> Option<String> {
        let m = Arc::clone(&self.manager);
        for i in 0..self.waiting.len() {
            let w = &self.waiting[i];
            let mut found = match m.store().get_approval(&w.approval_id) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read a permission request");
                    None
                }
            };
            if found.as_ref().is_some_and(Approval::is_pending) && Instant::now() >= w.expires {
                let reason = format!(
                    "denied: nobody decided within {} (team {}'s permissions.timeout)",
                    crate::util::format_duration(w.timeout),
                    self.to
                );
                match m.store().decide_approval(
                    &w.approval_id,
                    "denied",
                    "timeout",
                    Some(&reason),
                    None,
                    now_ms(),
                ) {
                    Ok(Some(a)) => {
                        publish_decided(&m, &a);
                        found = Some(a);
                    }
                    // Decided meanwhile: read what was decided.
                    Ok(None) => found = m.store().get_approval(&w.approval_id).ok().flatten(),
                    Err(e) => tracing::warn!(error = %e, "cannot record a timeout"),
                }
            }
            let Some(a) = found.filter(|a| !a.is_pending()) else {
                continue;
            };
            let w = self.waiting.remove(i);
            let allow = a.state == "allowed";
            let message = a.reason.clone().unwrap_or_else(|| "denied".to_string());
            return adapter.encode_permission(&w.request_id, allow, &w.input, &message);
        }
        None
    }

    /// The agent withdrew a request ([`crate::agent::event::AgentEvent::ControlCancel`], on an
    /// interrupt).
    pub(super) fn cancelled(&mut self, request_id: &str) {
        if let Some(i) = self.waiting.iter().position(|w| w.request_id == request_id) {
            let w = self.waiting.remove(i);
            self.expire(&w.approval_id, "expired: the agent withdrew the request (its turn was interrupted); nothing was run");
        }
    }

    /// The turn ended (answered, failed, the agent gone): what still waits expires with `why`.
    pub(super) fn expire_all(&mut self, why: &str) {
        for w in std::mem::take(&mut self.waiting) {
            self.expire(&w.approval_id, &format!("expired: {why}; nothing was run"));
        }
    }

    fn expire(&self, approval_id: &str, reason: &str) {
        match self.manager.store().decide_approval(
            approval_id,
            "expired",
            "agent",
            Some(reason),
            None,
            now_ms(),
        ) {
            Ok(Some(a)) => publish_expired(&self.manager, &a),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot expire a permission request"),
        }
    }

    /// Records a denial the agent made itself by one of the team's deny rules (Claude Code
    /// enforces them too: `system/permission_denied`), so every decision is in the log.
    pub(super) fn denied_by_agent(
        &self,
        tool: &str,
        message: &str,
        tool_use_id: Option<&str>,
        id: Option<&str>,
    ) {
        let m = &self.manager;
        let approval_id = format!("ap-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let now = now_ms();
        let reason = crate::redact::text(message);
        let new = NewApproval {
            approval_id: &approval_id,
            tell_id: Some(&self.tell_id),
            session_id: &self.session_id,
            from_team: &self.from,
            to_team: &self.to,
            request_id: id.unwrap_or(""),
            tool_use_id,
            tool,
            input: &reason,
            decide_by: "rule",
            decided: Some(("denied", "rule", Some(&reason), None)),
            expires_at: now,
            owner: m.me(),
        };
        match m.store().insert_approval(&new, now) {
            Ok(a) => publish_decided(m, &a),
            Err(e) => tracing::warn!(error = %e, "cannot record a denial"),
        }
    }
}
