//! The stream-json codec: each stdout line of the agent becomes a typed [`AgentEvent`]; lines
//! are read with a hard length bound so a huge or endless line cannot grow memory without limit.

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Token usage of a turn, as the agent reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Input tokens, including tokens written to and read from the prompt cache.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Of the input tokens, those read from the prompt cache (priced apart).
    pub cached_input_tokens: i64,
}

/// The line that ends a turn.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnResult {
    /// `success`, `error_during_execution`, `error_max_turns`, ...
    pub subtype: String,
    /// Whether the turn failed.
    pub is_error: bool,
    /// The answer text (or the error text).
    pub text: Option<String>,
    /// Tokens of the turn.
    pub usage: Usage,
    /// Cost of the turn in US dollars.
    pub cost_usd: f64,
    /// Wall time of the turn as the agent measured it.
    pub duration_ms: Option<i64>,
    /// Model round trips in the turn.
    pub num_turns: Option<i64>,
    /// The agent's session id.
    pub session_id: Option<String>,
    /// The model that answered, when the agent says (picks the price of a kind whose CLI
    /// reports no cost; else the team's `model`).
    pub model: Option<String>,
    /// Why the turn ended, as Claude Code says (`completed`, `aborted_tools`,
    /// `aborted_streaming`, `api_error`, `max_turns`, ...); `None` when the agent does not say.
    pub terminal_reason: Option<String>,
    /// The model's last stop reason (`end_turn`, `tool_use`, ...).
    pub stop_reason: Option<String>,
}

/// The text Claude Code puts in place of an assistant message whose tool call was cut off.
pub const TOOL_USE_INTERRUPTED: &str = "[Tool use interrupted]";

/// Prefixes of Claude Code's internal diagnostics (never shown to a user as they are).
const INTERNAL_PREFIXES: [&str; 2] = ["[ede_diagnostic]", "[session_crash]"];

/// How a turn ended, judged from its result line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEnding {
    /// The agent finished the turn and this is its answer.
    Complete(String),
    /// The turn was cut off: `text` is what the agent had said so far (maybe nothing), `why`
    /// says in words what cut it off.
    Partial {
        /// The partial answer (without Claude Code's placeholder text), if any.
        text: Option<String>,
        /// What happened, in words.
        why: String,
    },
    /// The turn failed; the reason in words (agent-internal diagnostics mapped to words).
    Failed(String),
}

impl TurnResult {
    /// Judges the turn: `is_error`, a `terminal_reason` other than `completed`, or a tool call
    /// that was cut off (the `[Tool use interrupted]` placeholder, or a `tool_use` stop
    /// reason with no answer after it) mean the answer is not a complete one.
    pub fn ending(&self) -> TurnEnding {
        let reason = self.terminal_reason.as_deref();
        if self.is_error {
            return TurnEnding::Failed(self.error_in_words());
        }
        let text = self.text.clone().unwrap_or_default();
        let cut_tool = text.trim_end().ends_with(TOOL_USE_INTERRUPTED)
            || self.stop_reason.as_deref() == Some("tool_use");
        let cut_reason = reason.filter(|r| *r != "completed");
        if !cut_tool && cut_reason.is_none() {
            return TurnEnding::Complete(text);
        }
        let kept = text
            .trim_end()
            .strip_suffix(TOOL_USE_INTERRUPTED)
            .unwrap_or(&text)
            .trim()
            .to_string();
        let why = match cut_reason {
            Some(r) => format!(
                "the turn was cut off before the agent finished ({}); the answer is partial",
                reason_in_words(r)
            ),
            None => "the turn was cut off while the agent's tool call ran; the answer is partial"
                .to_string(),
        };
        TurnEnding::Partial {
            text: (!kept.is_empty()).then_some(kept),
            why,
        }
    }

    /// The error of a failed turn in words: the agent's own error text, except Claude Code's
    /// internal diagnostics (`[ede_diagnostic] result_type=user ...`), which become a sentence
    /// from the turn's terminal reason.
    pub fn error_in_words(&self) -> String {
        let text = self.text.clone().unwrap_or_default();
        let readable: Vec<&str> = text
            .split("; ")
            .filter(|part| {
                let part = part.trim();
                !part.is_empty() && !INTERNAL_PREFIXES.iter().any(|p| part.starts_with(p))
            })
            .collect();
        if !readable.is_empty() {
            return readable.join("; ");
        }
        match self.terminal_reason.as_deref() {
            Some(r) => reason_in_words(r),
            None if self.subtype == "error_during_execution" => {
                "the turn was interrupted before the model answered".to_string()
            }
            None if self.subtype.is_empty() => "the agent reported an error".to_string(),
            None => format!("the agent reported an error ({})", self.subtype),
        }
    }

    /// Whether the result's text is an agent-internal diagnostic (to be logged raw, shown in
    /// words).
    pub fn has_internal_text(&self) -> bool {
        self.text
            .as_deref()
            .is_some_and(|t| INTERNAL_PREFIXES.iter().any(|p| t.contains(p)))
    }
}

/// Claude Code's `terminal_reason` values in words.
fn reason_in_words(reason: &str) -> String {
    match reason {
        "aborted_streaming" => "the turn was interrupted before the model answered".into(),
        "aborted_tools" => "the turn was interrupted while a tool was running".into(),
        "max_turns" => "the turn reached the agent's limit of model round trips".into(),
        "api_error" => "the model API returned an error".into(),
        other => format!("the turn ended early: {}", other.replace('_', " ")),
    }
}

/// One event printed by the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// `system/init`: the agent is up (Claude Code prints one per turn).
    Init {
        /// The agent's session id.
        session_id: Option<String>,
    },
    /// `system/status`, e.g. `compacting`.
    Status {
        /// The status text, if any.
        status: Option<String>,
    },
    /// `system/compact_boundary`: a compaction finished.
    CompactBoundary {
        /// `manual` or `auto`.
        trigger: Option<String>,
        /// Context tokens before.
        pre_tokens: Option<i64>,
        /// Context tokens after, when the agent says.
        post_tokens: Option<i64>,
    },
    /// An assistant message (text and tool calls of the model). Claude Code prints one line
    /// per finished content block; the lines of one model message share `message_id`.
    Assistant {
        /// The text blocks joined, if any.
        text: Option<String>,
        /// The model message's id (`message.id`), if given.
        message_id: Option<String>,
        /// The tool calls in it.
        tool_uses: Vec<ToolCall>,
    },
    /// A user message echoed back (tool results, replays).
    User {
        /// The tool results in it.
        tool_results: Vec<ToolOutput>,
    },
    /// `system/api_retry`: the model API failed and the agent waits before trying again.
    ApiRetry {
        /// This retry's number (1, 2, ...).
        attempt: Option<i64>,
        /// Most retries the agent makes.
        max_retries: Option<i64>,
        /// The HTTP status of the failure (529, 500, ...).
        error_status: Option<i64>,
        /// The agent's name for the error (`overloaded`, `server_error`, ...).
        error: Option<String>,
        /// How long it waits before the retry.
        retry_delay_ms: Option<i64>,
    },
    /// `system/permission_denied`: the agent was refused a tool.
    PermissionDenied {
        /// The tool.
        tool: Option<String>,
        /// The agent's message.
        message: Option<String>,
        /// The agent's id of the tool call.
        tool_use_id: Option<String>,
        /// The line's own id (`uuid`).
        id: Option<String>,
    },
    /// The end of a turn.
    Result(TurnResult),
    /// The answer to a control request we sent (e.g. interrupt).
    ControlResponse {
        /// The request id we sent.
        request_id: Option<String>,
        /// Whether it succeeded.
        success: bool,
        /// The error text, if it failed.
        error: Option<String>,
    },
    /// A control request from the agent to us (e.g. a permission prompt).
    ControlRequest {
        /// Its id.
        request_id: Option<String>,
        /// The request body.
        request: Value,
    },
    /// The agent withdrew a control request of its own (a permission request, on an
    /// interrupt).
    ControlCancel {
        /// The id of the request withdrawn.
        request_id: Option<String>,
    },
    /// Any other JSON line, kept as is.
    Other {
        /// Its `type` (and `subtype`), or empty.
        kind: String,
        /// The whole line.
        raw: Value,
    },
}

/// A tool call of the model (a `tool_use` content block).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The block's id (`toolu_...`), which its result names.
    pub id: String,
    /// The tool's name (`Bash`, `Read`, `mcp__server__tool`, ...).
    pub name: String,
    /// The tool's input as the model gave it.
    pub input: Value,
}

/// What a tool returned (a `tool_result` content block).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// The call it answers.
    pub tool_use_id: String,
    /// Whether the tool reported an error.
    pub is_error: bool,
    /// Its text (text blocks joined; other blocks named by type).
    pub content: String,
}

impl AgentEvent {
    /// The text of `ApiRetry` for people: `retrying, attempt 3/10 (529 overloaded), next in 2.2s`.
    pub fn retry_in_words(&self) -> Option<String> {
        let AgentEvent::ApiRetry {
            attempt,
            max_retries,
            error_status,
            error,
            retry_delay_ms,
        } = self
        else {
            return None;
        };
        let mut out = String::from("retrying");
        match (attempt, max_retries) {
            (Some(a), Some(m)) => out.push_str(&format!(", attempt {a}/{m}")),
            (Some(a), None) => out.push_str(&format!(", attempt {a}")),
            _ => {}
        }
        let why: Vec<String> = [error_status.map(|s| s.to_string()), error.clone()]
            .into_iter()
            .flatten()
            .collect();
        if !why.is_empty() {
            out.push_str(&format!(" ({})", why.join(" ")));
        }
        if let Some(ms) = retry_delay_ms {
            out.push_str(&format!(", next in {:.1}s", *ms as f64 / 1000.0));
        }
        Some(out)
    }
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b.get("type").and_then(Value::as_str) {
                Some("text") => b
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                Some(other) => format!("[{other}]"),
                None => String::new(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A stdout line that is not an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadLine {
    /// Not JSON, or not a JSON object; the first bytes of it.
    NotJson(String),
    /// Longer than the bound; the rest of it was skipped.
    TooLong(usize),
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadLine::NotJson(start) => write!(f, "not a JSON object: {start:?}"),
            BadLine::TooLong(n) => write!(f, "line of {n} bytes is over the limit; skipped"),
        }
    }
}

pub(super) fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn i(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

/// One stdout line of an agent CLI that prints a JSON object per line, parsed; anything else
/// is a [`BadLine::NotJson`] carrying the line's first 120 bytes (every decoder's rule).
pub fn json_object(line: &[u8]) -> Result<Value, BadLine> {
    let trimmed = line.trim_ascii();
    match serde_json::from_slice(trimmed) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(BadLine::NotJson(
            String::from_utf8_lossy(&trimmed[..trimmed.len().min(120)]).into_owned(),
        )),
    }
}

/// Decodes one stdout line (without its newline).
pub fn decode(line: &[u8]) -> Result<AgentEvent, BadLine> {
    let v = json_object(line)?;
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    let subtype = v.get("subtype").and_then(Value::as_str).unwrap_or("");
    Ok(match (kind, subtype) {
        ("system", "init") => AgentEvent::Init {
            session_id: s(&v, "session_id"),
        },
        ("system", "status") => AgentEvent::Status {
            status: s(&v, "status"),
        },
        ("system", "api_retry") => AgentEvent::ApiRetry {
            attempt: i(&v, "attempt"),
            max_retries: i(&v, "max_retries"),
            error_status: i(&v, "error_status"),
            error: s(&v, "error"),
            retry_delay_ms: i(&v, "retry_delay_ms"),
        },
        ("system", "permission_denied") => AgentEvent::PermissionDenied {
            tool: s(&v, "tool_name"),
            message: s(&v, "message"),
            tool_use_id: s(&v, "tool_use_id"),
            id: s(&v, "uuid"),
        },
        ("system", "compact_boundary") => {
            let meta = v.get("compact_metadata").cloned().unwrap_or(Value::Null);
            AgentEvent::CompactBoundary {
                trigger: s(&meta, "trigger"),
                pre_tokens: i(&meta, "pre_tokens"),
                post_tokens: i(&meta, "post_tokens"),
            }
        }
        ("assistant", _) => {
            let blocks: &[Value] = v
                .pointer("/message/content")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let of_type = |t: &'static str| {
                blocks
                    .iter()
                    .filter(move |b| b.get("type").and_then(Value::as_str) == Some(t))
            };
            let text: Vec<&str> = of_type("text")
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect();
            let tool_uses = of_type("tool_use")
                .map(|b| ToolCall {
                    id: s(b, "id").unwrap_or_default(),
                    name: s(b, "name").unwrap_or_default(),
                    input: b.get("input").cloned().unwrap_or(Value::Null),
                })
                .collect();
            AgentEvent::Assistant {
                text: (!text.is_empty()).then(|| text.join("")),
                message_id: v
                    .pointer("/message/id")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                tool_uses,
            }
        }
        ("user", _) => AgentEvent::User {
            tool_results: v
                .pointer("/message/content")
                .and_then(Value::as_array)
                .map(|blocks| {
                    blocks
                        .iter()
                        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                        .map(|b| ToolOutput {
                            tool_use_id: s(b, "tool_use_id").unwrap_or_default(),
                            is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                            content: content_text(b.get("content").unwrap_or(&Value::Null)),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        },
        ("result", _) => {
            let u = v.get("usage").cloned().unwrap_or(Value::Null);
            let mut input = i(&u, "input_tokens").unwrap_or(0)
                + i(&u, "cache_creation_input_tokens").unwrap_or(0)
                + i(&u, "cache_read_input_tokens").unwrap_or(0);
            let mut output = i(&u, "output_tokens").unwrap_or(0);
            let mut cached = i(&u, "cache_read_input_tokens").unwrap_or(0);
            // `total_cost_usd` is the session's running total (it carries on across --resume);
            // the turn's own cost and tokens, all models together, are in
            // `model_usage_since_last_result` when Claude Code gives it.
            let mut cost = v
                .get("total_cost_usd")
                .and_then(Value::as_f64)
                .filter(|c| c.is_finite() && *c >= 0.0)
                .unwrap_or(0.0);
            if let Some(per_model) = v
                .get("model_usage_since_last_result")
                .and_then(Value::as_object)
            {
                let sum = |key: &str| -> i64 { per_model.values().filter_map(|m| i(m, key)).sum() };
                input = sum("inputTokens")
                    + sum("cacheReadInputTokens")
                    + sum("cacheCreationInputTokens");
                output = sum("outputTokens");
                cached = sum("cacheReadInputTokens");
                cost = per_model
                    .values()
                    .filter_map(|m| m.get("costUSD").and_then(Value::as_f64))
                    .filter(|c| c.is_finite() && *c >= 0.0)
                    .sum();
            }
            let is_error = v
                .get("is_error")
                .and_then(Value::as_bool)
                .unwrap_or(subtype != "success");
            let text = s(&v, "result").or_else(|| {
                v.get("errors")
                    .and_then(Value::as_array)
                    .map(|e| {
                        e.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .filter(|t| !t.is_empty())
            });
            AgentEvent::Result(TurnResult {
                subtype: subtype.to_string(),
                is_error,
                text,
                usage: Usage {
                    input_tokens: input.max(0),
                    output_tokens: output.max(0),
                    cached_input_tokens: cached.clamp(0, input.max(0)),
                },
                cost_usd: cost,
                duration_ms: i(&v, "duration_ms"),
                num_turns: i(&v, "num_turns"),
                session_id: s(&v, "session_id"),
                model: None,
                terminal_reason: s(&v, "terminal_reason"),
                stop_reason: s(&v, "stop_reason"),
            })
        }
        ("control_response", _) => {
            let r = v.get("response").cloned().unwrap_or(Value::Null);
            AgentEvent::ControlResponse {
                request_id: s(&r, "request_id"),
                success: r.get("subtype").and_then(Value::as_str) == Some("success"),
                error: s(&r, "error"),
            }
        }
        ("control_request", _) => AgentEvent::ControlRequest {
            request_id: s(&v, "request_id"),
            request: v.get("request").cloned().unwrap_or(Value::Null),
        },
        ("control_cancel_request", _) => AgentEvent::ControlCancel {
            request_id: s(&v, "request_id"),
        },
        _ => AgentEvent::Other {
            kind: if subtype.is_empty() {
                kind.to_string()
            } else {
                format!("{kind}/{subtype}")
            },
            raw: v,
        },
    })
}

/// Reads one line of at most `max` bytes into `buf` (cleared first). Returns `Ok(None)` at end
/// of stream, `Ok(Some(Ok(())))` for a line, `Ok(Some(Err(n)))` for a line of `n > max` bytes
/// whose content was skipped without being kept.
pub async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<Result<(), usize>>> {
    buf.clear();
    let mut total = 0usize;
    let mut overflow = false;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            // End of stream: a last line without a newline still counts.
            return Ok(if total == 0 {
                None
            } else if overflow {
                Some(Err(total))
            } else {
                Some(Ok(()))
            });
        }
        let (part, done) = match memchr(chunk) {
            Some(at) => (&chunk[..at], Some(at + 1)),
            None => (chunk, None),
        };
        total += part.len();
        if !overflow && buf.len() + part.len() <= max {
            buf.extend_from_slice(part);
        } else if !overflow {
            overflow = true;
            buf.clear();
            buf.shrink_to(64 * 1024);
        }
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(Some(if overflow { Err(total) } else { Ok(()) }));
        }
    }
}

fn memchr(haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_lines_claude_code_prints() {
        let init = br#"{"type":"system","subtype":"init","session_id":"abc","tools":[]}"#;
        assert_eq!(
            decode(init),
            Ok(AgentEvent::Init {
                session_id: Some("abc".into())
            })
        );
        let result = br#"{"type":"result","subtype":"success","is_error":false,"result":"hi","usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":3},"total_cost_usd":0.002,"num_turns":1,"duration_ms":120,"session_id":"abc"}"#;
        match decode(result) {
            Ok(AgentEvent::Result(r)) => {
                assert_eq!(r.text.as_deref(), Some("hi"));
                assert!(!r.is_error);
                assert_eq!(
                    r.usage,
                    Usage {
                        input_tokens: 15,
                        output_tokens: 3,
                        cached_input_tokens: 5,
                    }
                );
                assert_eq!(r.num_turns, Some(1));
                assert!((r.cost_usd - 0.002).abs() < 1e-12);
            }
            other => panic!("{other:?}"),
        }
        let cb = br#"{"type":"system","subtype":"compact_boundary","compact_metadata":{"trigger":"manual","pre_tokens":900}}"#;
        assert_eq!(
            decode(cb),
            Ok(AgentEvent::CompactBoundary {
                trigger: Some("manual".into()),
                pre_tokens: Some(900),
                post_tokens: None
            })
        );
        let asst = br#"{"type":"assistant","message":{"content":[{"type":"text","text":"a"},{"type":"tool_use","id":"t"},{"type":"text","text":"b"}]}}"#;
        assert_eq!(
            decode(asst),
            Ok(AgentEvent::Assistant {
                text: Some("ab".into()),
                message_id: None,
                tool_uses: vec![ToolCall {
                    id: "t".into(),
                    name: String::new(),
                    input: Value::Null
                }],
            })
        );
        let cr =
            br#"{"type":"control_response","response":{"subtype":"success","request_id":"r1"}}"#;
        assert_eq!(
            decode(cr),
            Ok(AgentEvent::ControlResponse {
                request_id: Some("r1".into()),
                success: true,
                error: None
            })
        );
        assert!(
            matches!(decode(br#"{"type":"stream_event"}"#), Ok(AgentEvent::Other { kind, .. }) if kind == "stream_event")
        );
        assert_eq!(
            decode(br#"{"type":"control_cancel_request","request_id":"p1"}"#),
            Ok(AgentEvent::ControlCancel {
                request_id: Some("p1".into())
            })
        );
    }

    #[test]
    fn decodes_tool_calls_results_and_retries() {
        // Shapes seen from Claude Code 2.1.328 (docs/claude-code-protocol.md, sections 10, 11, 15).
        let call = br#"{"type":"assistant","message":{"id":"msg_3","content":[{"type":"tool_use","id":"toolu_3","name":"Bash","input":{"command":"echo hi"}}]}}"#;
        assert_eq!(
            decode(call),
            Ok(AgentEvent::Assistant {
                text: None,
                message_id: Some("msg_3".into()),
                tool_uses: vec![ToolCall {
                    id: "toolu_3".into(),
                    name: "Bash".into(),
                    input: serde_json::json!({"command": "echo hi"}),
                }],
            })
        );
        let result = br#"{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_3","type":"tool_result","content":[{"type":"text","text":"hi"}],"is_error":false}]}}"#;
        assert_eq!(
            decode(result),
            Ok(AgentEvent::User {
                tool_results: vec![ToolOutput {
                    tool_use_id: "toolu_3".into(),
                    is_error: false,
                    content: "hi".into(),
                }]
            })
        );
        let retry = br#"{"type":"system","subtype":"api_retry","attempt":3,"max_retries":10,"retry_delay_ms":2232,"error_status":529,"error":"overloaded","session_id":"s"}"#;
        let ev = decode(retry).expect("retry");
        assert_eq!(
            ev.retry_in_words().as_deref(),
            Some("retrying, attempt 3/10 (529 overloaded), next in 2.2s")
        );
        let denied = br#"{"type":"system","subtype":"permission_denied","tool_name":"Write","tool_use_id":"t","message":"no"}"#;
        assert_eq!(
            decode(denied),
            Ok(AgentEvent::PermissionDenied {
                tool: Some("Write".into()),
                message: Some("no".into()),
                tool_use_id: Some("t".into()),
                id: None,
            })
        );
    }

    fn result_of(line: &str) -> TurnResult {
        match decode(line.as_bytes()) {
            Ok(AgentEvent::Result(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn turns_that_were_cut_off_or_failed_are_not_answers() {
        // Seen from Claude Code 2.1.328: an interrupt while a tool runs.
        let r = result_of(
            r#"{"type":"result","subtype":"error_during_execution","is_error":true,"stop_reason":"tool_use","terminal_reason":"aborted_tools","errors":["[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=tool_use"]}"#,
        );
        assert!(r.has_internal_text());
        assert_eq!(
            r.ending(),
            TurnEnding::Failed("the turn was interrupted while a tool was running".into())
        );
        // An API error keeps Claude Code's own (readable) text.
        let r = result_of(
            r#"{"type":"result","subtype":"success","is_error":true,"terminal_reason":"api_error","result":"API Error: 500 down"}"#,
        );
        assert_eq!(r.ending(), TurnEnding::Failed("API Error: 500 down".into()));
        // A tool call cut off: the placeholder is not an answer.
        let r = result_of(
            r#"{"type":"result","subtype":"success","is_error":false,"stop_reason":"tool_use","result":"Looking. [Tool use interrupted]"}"#,
        );
        match r.ending() {
            TurnEnding::Partial { text, why } => {
                assert_eq!(text.as_deref(), Some("Looking."));
                assert!(why.contains("tool call"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let r = result_of(
            r#"{"type":"result","subtype":"success","is_error":false,"terminal_reason":"completed","stop_reason":"end_turn","result":"done"}"#,
        );
        assert_eq!(r.ending(), TurnEnding::Complete("done".into()));
        // No terminal reason (older agents, the scripted one): judged by is_error alone.
        let r =
            result_of(r#"{"type":"result","subtype":"success","is_error":false,"result":"ok"}"#);
        assert_eq!(r.ending(), TurnEnding::Complete("ok".into()));
    }

    #[test]
    fn turn_cost_comes_from_the_usage_since_the_last_result() {
        // total_cost_usd is a running total; the turn's share is in model_usage_since_last_result.
        let line = br#"{"type":"result","subtype":"success","is_error":false,"result":"","total_cost_usd":0.0018,"usage":{"input_tokens":0,"output_tokens":0},"model_usage_since_last_result":{"m1":{"inputTokens":100,"cacheReadInputTokens":20,"outputTokens":10,"costUSD":0.0004},"m2":{"inputTokens":5,"outputTokens":1,"costUSD":0.0002}}}"#;
        match decode(line) {
            Ok(AgentEvent::Result(r)) => {
                assert_eq!(
                    r.usage,
                    Usage {
                        input_tokens: 125,
                        output_tokens: 11,
                        cached_input_tokens: 20,
                    }
                );
                assert!((r.cost_usd - 0.0006).abs() < 1e-12, "{}", r.cost_usd);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"hello"[..],
            b"[1,2]",
            b"{\"type\":",
            b"\xff\xfe",
            b"",
            b"42",
        ] {
            assert!(matches!(decode(bad), Err(BadLine::NotJson(_))), "{bad:?}");
        }
        let err_result =
            br#"{"type":"result","subtype":"error_during_execution","errors":["boom"]}"#;
        match decode(err_result) {
            Ok(AgentEvent::Result(r)) => {
                assert!(r.is_error);
                assert_eq!(r.text.as_deref(), Some("boom"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn bounded_lines_skip_what_is_too_long_and_keep_going() {
        let mut data = Vec::new();
        data.extend_from_slice(b"short\n");
        data.extend(std::iter::repeat_n(b'x', 100_000));
        data.extend_from_slice(b"\nafter\nlast");
        let mut r = tokio::io::BufReader::with_capacity(1024, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 1000).await.unwrap(),
            Some(Ok(()))
        );
        assert_eq!(buf, b"short");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 1000).await.unwrap(),
            Some(Err(100_000))
        );
        assert!(
            buf.capacity() <= 64 * 1024,
            "memory of the long line given back"
        );
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 1000).await.unwrap(),
            Some(Ok(()))
        );
        assert_eq!(buf, b"after");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 1000).await.unwrap(),
            Some(Ok(()))
        );
        assert_eq!(buf, b"last");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 1000).await.unwrap(),
            None
        );
    }
}
