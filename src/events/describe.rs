//! Events in words, one line each, for `tells show`, `report --full` and `watch`.

use super::{Event, EventKind};

impl EventKind {
    /// What happened, in a few words (without the time, pair or tell).
    pub fn describe(&self) -> String {
        match self {
            EventKind::TellQueued {
                kind,
                bytes,
                parent_tell_id,
            } => {
                let during = parent_tell_id
                    .as_deref()
                    .map(|p| format!(", sent during tell {}", short_id(p)))
                    .unwrap_or_default();
                format!("{kind} queued ({bytes} bytes{during})")
            }
            EventKind::TellDelivered => "delivered to the agent".into(),
            EventKind::TellAnswered {
                input_tokens,
                output_tokens,
                cost_usd,
                duration_ms,
            } => format!(
                "answered in {:.1}s ({input_tokens} in, {output_tokens} out, ${cost_usd:.4})",
                *duration_ms as f64 / 1000.0
            ),
            EventKind::TellFailed { state, error } => format!("{state}: {error}"),
            EventKind::TellCancelled { reason } => format!("cancelled: {reason}"),
            EventKind::AgentSpawning { resume: true } => {
                "agent starting (resuming the conversation)".into()
            }
            EventKind::AgentSpawning { resume: false } => "agent starting".into(),
            EventKind::AgentReady { pid } => format!("agent ready (pid {pid})"),
            EventKind::AgentStopped { reason, detail } => match detail {
                Some(d) => format!("agent stopped: {reason} ({d})"),
                None => format!("agent stopped: {reason}"),
            },
            EventKind::ProcessState { state } => format!("process {state}"),
            EventKind::CompactionBegin => "compaction started".into(),
            EventKind::CompactionEnd {
                pre_tokens,
                post_tokens,
            } => {
                let n = |t: &Option<i64>| t.map_or("?".to_string(), |t| t.to_string());
                format!(
                    "compaction done ({} -> {} tokens)",
                    n(pre_tokens),
                    n(post_tokens)
                )
            }
            EventKind::ApprovalRequested {
                approval_id,
                tool,
                input,
                decide_by,
                ..
            } => format!(
                "approval {} asked of the {decide_by}: {tool} {input}",
                short_id(approval_id)
            ),
            EventKind::ApprovalDecided {
                approval_id,
                tool,
                decision,
                by,
                reason,
            } => {
                let why = reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                format!(
                    "approval {} {decision} {tool} by {by}{why}",
                    short_id(approval_id)
                )
            }
            EventKind::ApprovalExpired {
                approval_id,
                reason,
            } => format!("approval {} expired: {reason}", short_id(approval_id)),
            EventKind::Text { text } => format!("says: {}", one_line(text)),
            EventKind::ToolUse { tool, input, .. } => format!("{tool} {}", one_line(input)),
            EventKind::ToolResult {
                ok,
                excerpt,
                duration_ms,
                ..
            } => {
                let took = duration_ms
                    .map(|d| format!(" in {:.1}s", d as f64 / 1000.0))
                    .unwrap_or_default();
                let how = if *ok { "ok" } else { "error" };
                format!("-> {how}{took}: {}", one_line(excerpt))
            }
            EventKind::Usage {
                input_tokens,
                output_tokens,
                cost_usd,
            } => format!("usage {input_tokens} in, {output_tokens} out, ${cost_usd:.4}"),
            EventKind::AgentStatus { text } => format!("status: {text}"),
            EventKind::ActivityTruncated { events, bytes } => format!(
                "activity over the tell's bound after {events} events ({bytes} bytes): the rest is not stored"
            ),
        }
    }
}

/// A timeline for people: one line per event, its time since `start` and what happened.
pub fn timeline(events: &[Event], start: i64) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "{:>+9.3}s  {:<18}  {}\n",
                (e.at - start) as f64 / 1000.0,
                e.kind.type_name(),
                e.kind.describe()
            )
        })
        .collect()
}

fn short_id(id: &str) -> String {
    id.chars().take(8).collect()
}

/// The text on one line (newlines shown as `⏎`), at most 200 characters.
fn one_line(text: &str) -> String {
    let flat: String = text
        .trim()
        .chars()
        .map(|c| if c == '\n' { '⏎' } else { c })
        .collect();
    match flat.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}
