//! What the decoders of agent CLIs other than Claude Code ([`super::codex`], [`super::gemini`])
//! make of their output: a small enum that mirrors Switchboard's activity events (text, tool
//! use, tool result, usage, turn end, errors, the agent's own session id), plus
//! [`TurnTally`], which folds one turn's activity into its answer, tokens and tool calls.
//! These do not depend on the adapter trait; the adapters map them onto Switchboard's events.

use serde_json::Value;

/// Tokens of a model call or a turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Input tokens, cached ones included.
    pub input: i64,
    /// Of which read from a cache.
    pub cached: i64,
    /// Output tokens (reasoning included).
    pub output: i64,
}

impl std::ops::AddAssign for Tokens {
    fn add_assign(&mut self, other: Self) {
        self.input += other.input;
        self.cached += other.cached;
        self.output += other.output;
    }
}

/// Prices of a model (`[settings.prices."MODEL"]`), for agents that report tokens but no cost
/// (Codex, Gemini): Switchboard computes the cost of a turn from them.
pub use crate::config::Price;

impl Tokens {
    /// What these tokens cost at `price`, in US dollars.
    pub fn cost_usd(&self, price: &Price) -> f64 {
        price.cost_usd(self.input, self.cached, self.output)
    }
}

/// What a permission request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalKind {
    /// A call of an MCP tool.
    McpTool,
    /// A shell command.
    Command,
    /// A change of files.
    FileChange,
    /// Anything else the agent asks (its method name).
    Other(String),
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnOutcome {
    /// The agent finished its answer.
    Completed,
    /// The turn was interrupted (by us).
    Interrupted,
    /// The turn failed; the agent's reason.
    Failed(String),
}

/// One decoded piece of agent output.
#[derive(Debug, Clone, PartialEq)]
pub enum Activity {
    /// The agent answered a request that needs no model call (it is up).
    Ready,
    /// The agent's id of the conversation (Codex: thread id; Gemini: session id).
    Session {
        /// The id.
        id: String,
    },
    /// A turn started (the agent's turn id, when it has one).
    TurnStarted {
        /// The turn id.
        turn_id: Option<String>,
    },
    /// Text of the agent: a whole message, or a piece of one (`delta`).
    Text {
        /// The text.
        text: String,
        /// Whether it is a piece to join with the next pieces of the same message.
        delta: bool,
    },
    /// The agent calls a tool.
    ToolUse {
        /// The call's id.
        id: String,
        /// The tool (`<server>.<tool>` for MCP tools of Codex, `mcp_<server>_<tool>` for Gemini).
        tool: String,
        /// The input, as JSON text.
        input: String,
    },
    /// A tool's result.
    ToolResult {
        /// The call's id.
        id: String,
        /// Whether the tool succeeded.
        ok: bool,
        /// Its output (or error) as text.
        output: String,
    },
    /// The agent asks whether it may do something; it waits for [`Activity::Approval::request`]
    /// to be answered.
    Approval {
        /// The JSON-RPC id of the request (answer with it).
        request: Value,
        /// What is asked.
        kind: ApprovalKind,
        /// The tool or command.
        tool: String,
        /// Its input, as JSON text.
        input: String,
    },
    /// Tokens of one model call.
    Usage(Tokens),
    /// The agent compacted its context (Codex: a `contextCompaction` item).
    Compacted,
    /// The agent's status (a warning, a retry).
    Status {
        /// In words.
        text: String,
    },
    /// An error; `will_retry` when the agent goes on trying.
    Error {
        /// In words.
        message: String,
        /// Whether the agent retries by itself.
        will_retry: bool,
    },
    /// The end of a turn.
    TurnEnd {
        /// How it ended.
        outcome: TurnOutcome,
        /// Tokens of the whole turn, when the line says (Gemini); Codex reports per call.
        tokens: Option<Tokens>,
        /// The turn's wall time as the agent measured it.
        duration_ms: Option<i64>,
    },
    /// The answer to one of our JSON-RPC requests.
    Response {
        /// Its id.
        id: Value,
        /// The result, or the error's message.
        result: Result<Value, String>,
    },
    /// Anything else (kept by its kind, for logs).
    Other {
        /// The line's type or method.
        kind: String,
    },
}

/// One turn's activity folded together: the answer (the text after the last tool call, or all
/// text when there was none), the tokens, the tool calls and how it ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnTally {
    /// The messages of the agent, whole (pieces joined).
    pub messages: Vec<String>,
    open: Option<String>,
    /// Tokens, summed over the model calls (or the turn's own count when the agent gives one).
    pub tokens: Tokens,
    /// Tool calls: (id, tool, input).
    pub tool_uses: Vec<(String, String, String)>,
    /// Tool results: (id, ok, output).
    pub tool_results: Vec<(String, bool, String)>,
    /// Errors the agent reported.
    pub errors: Vec<String>,
    /// How the turn ended, once it has.
    pub outcome: Option<TurnOutcome>,
    /// The agent's session id, if it said.
    pub session: Option<String>,
    /// Wall time of the turn, if the agent said.
    pub duration_ms: Option<i64>,
}

impl TurnTally {
    /// Takes one piece of activity.
    pub fn add(&mut self, a: &Activity) {
        match a {
            Activity::Text { text, delta: true } => {
                self.open.get_or_insert_with(String::new).push_str(text);
            }
            Activity::Text { text, delta: false } => {
                self.close_message();
                self.messages.push(text.clone());
            }
            Activity::ToolUse { id, tool, input } => {
                self.close_message();
                self.tool_uses
                    .push((id.clone(), tool.clone(), input.clone()));
            }
            Activity::ToolResult { id, ok, output } => {
                self.tool_results.push((id.clone(), *ok, output.clone()));
            }
            Activity::Usage(t) => self.tokens += *t,
            Activity::Error {
                message,
                will_retry: false,
            } => self.errors.push(message.clone()),
            Activity::Session { id } => self.session = Some(id.clone()),
            Activity::TurnEnd {
                outcome,
                tokens,
                duration_ms,
            } => {
                self.close_message();
                if let Some(t) = tokens {
                    self.tokens = *t;
                }
                self.duration_ms = *duration_ms;
                self.outcome = Some(outcome.clone());
            }
            _ => {}
        }
    }

    fn close_message(&mut self) {
        if let Some(m) = self.open.take() {
            self.messages.push(m);
        }
    }

    /// The answer: the last message of the agent (its final answer after any tool calls).
    pub fn answer(&self) -> Option<&str> {
        self.open
            .as_deref()
            .or_else(|| self.messages.last().map(String::as_str))
    }
}

/// A JSON value as short text: strings as they are, anything else as JSON.
pub(crate) fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_counts_cached_input_at_its_own_price() {
        let price = Price {
            input: 1.25,
            cached_input: 0.125,
            output: 10.0,
        };
        let cost = Tokens {
            input: 1_000_000,
            cached: 200_000,
            output: 100_000,
        }
        .cost_usd(&price);
        assert!((cost - (1.0 + 0.025 + 1.0)).abs() < 1e-9, "{cost}");
        // More cached than input (a bad report) never makes the cost negative.
        let odd = Tokens {
            input: 10,
            cached: 50,
            output: 0,
        }
        .cost_usd(&price);
        assert!(odd >= 0.0);
    }

    #[test]
    fn a_tally_joins_pieces_and_keeps_the_last_message_as_the_answer() {
        let mut t = TurnTally::default();
        for a in [
            Activity::Session { id: "s".into() },
            Activity::Text {
                text: "Call".into(),
                delta: true,
            },
            Activity::Text {
                text: "ing.".into(),
                delta: true,
            },
            Activity::ToolUse {
                id: "1".into(),
                tool: "echo".into(),
                input: "{}".into(),
            },
            Activity::ToolResult {
                id: "1".into(),
                ok: true,
                output: "x".into(),
            },
            Activity::Usage(Tokens {
                input: 10,
                cached: 2,
                output: 3,
            }),
            Activity::Usage(Tokens {
                input: 12,
                cached: 0,
                output: 4,
            }),
            Activity::Text {
                text: "Done.".into(),
                delta: false,
            },
            Activity::TurnEnd {
                outcome: TurnOutcome::Completed,
                tokens: None,
                duration_ms: Some(5),
            },
        ] {
            t.add(&a);
        }
        assert_eq!(t.messages, ["Calling.", "Done."]);
        assert_eq!(t.answer(), Some("Done."));
        assert_eq!(
            t.tokens,
            Tokens {
                input: 22,
                cached: 2,
                output: 7
            }
        );
        assert_eq!(t.tool_uses.len(), 1);
        assert_eq!(t.outcome, Some(TurnOutcome::Completed));
        assert_eq!(t.session.as_deref(), Some("s"));
    }
}
