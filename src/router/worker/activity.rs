//! The agent's own activity inside a turn, as events: text (one event per assistant message),
//! tool uses, tool results (with the time since the use), status lines and API retries.

use std::collections::HashMap;

use tokio::time::Instant;

use crate::agent::event::AgentEvent;
use crate::events::summary::{self, STATUS_CHARS, TEXT_CHARS, TOOL_INPUT_CHARS, TOOL_RESULT_CHARS};
use crate::events::{EventBus, EventKind, NewEvent};

/// Publishes one turn's activity. Text is held until its message is complete (the next
/// message, a tool call, or the end of the turn), so a message is one event.
pub(super) struct TurnActivity<'a> {
    bus: &'a EventBus,
    base: NewEvent,
    /// (message id, text so far) of the message being said.
    pending: Option<(Option<String>, String)>,
    tool_started: HashMap<String, Instant>,
}

impl<'a> TurnActivity<'a> {
    pub(super) fn new(
        bus: &'a EventBus,
        from: &str,
        to: &str,
        session_id: &str,
        tell_id: &str,
    ) -> Self {
        Self {
            bus,
            base: NewEvent::pair(from, to, EventKind::TellDelivered)
                .session(session_id)
                .tell(Some(tell_id)),
            pending: None,
            tool_started: HashMap::new(),
        }
    }

    fn publish(&self, kind: EventKind) {
        self.bus.publish(NewEvent {
            kind,
            ..self.base.clone()
        });
    }

    /// Publishes the text held so far.
    pub(super) fn flush_text(&mut self) {
        if let Some((_, text)) = self.pending.take() {
            if !text.trim().is_empty() {
                self.publish(EventKind::Text {
                    text: summary::bounded(&text, TEXT_CHARS),
                });
            }
        }
    }

    /// Takes one event of the agent.
    pub(super) fn on_event(&mut self, ev: &AgentEvent) {
        match ev {
            AgentEvent::Assistant {
                text,
                message_id,
                tool_uses,
            } => {
                if let Some(text) = text {
                    match &mut self.pending {
                        Some((id, held)) if id == message_id => held.push_str(text),
                        _ => {
                            self.flush_text();
                            self.pending = Some((message_id.clone(), text.clone()));
                        }
                    }
                }
                if !tool_uses.is_empty() {
                    self.flush_text();
                }
                for call in tool_uses {
                    self.tool_started.insert(call.id.clone(), Instant::now());
                    self.publish(EventKind::ToolUse {
                        tool_use_id: call.id.clone(),
                        tool: summary::bounded(&call.name, TOOL_INPUT_CHARS),
                        input: summary::tool_input(&call.input),
                    });
                }
            }
            AgentEvent::User { tool_results } => {
                self.flush_text();
                for r in tool_results {
                    let duration_ms = self
                        .tool_started
                        .remove(&r.tool_use_id)
                        .map(|t| i64::try_from(t.elapsed().as_millis()).unwrap_or(i64::MAX));
                    self.publish(EventKind::ToolResult {
                        tool_use_id: r.tool_use_id.clone(),
                        ok: !r.is_error,
                        excerpt: summary::bounded(&r.content, TOOL_RESULT_CHARS),
                        duration_ms,
                    });
                }
            }
            AgentEvent::Status {
                status: Some(status),
            } => {
                self.flush_text();
                self.publish(EventKind::AgentStatus {
                    text: summary::bounded(status, STATUS_CHARS),
                });
            }
            AgentEvent::ApiRetry { .. } => {
                self.flush_text();
                if let Some(text) = ev.retry_in_words() {
                    self.publish(EventKind::AgentStatus {
                        text: summary::bounded(&text, STATUS_CHARS),
                    });
                }
            }
            AgentEvent::PermissionDenied { tool, message, .. } => {
                self.flush_text();
                let text = format!(
                    "permission denied: {}{}",
                    tool.as_deref().unwrap_or("a tool"),
                    message
                        .as_deref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                );
                self.publish(EventKind::AgentStatus {
                    text: summary::bounded(&text, STATUS_CHARS),
                });
            }
            AgentEvent::Result(_) => self.flush_text(),
            _ => {}
        }
    }
}

impl Drop for TurnActivity<'_> {
    /// A turn that ends without a result (crash, stall) still shows what the agent last said.
    fn drop(&mut self) {
        self.flush_text();
    }
}
