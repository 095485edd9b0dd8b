//! A local stand-in for the OpenAI Responses API, for driving the real Codex CLI offline (see
//! docs/codex-protocol.md). Codex 0.171.0 with a custom provider (`wire_api = "responses"`,
//! `base_url = <url()>`) calls only `POST /v1/responses` with `"stream": true` and reads
//! server-sent events: `response.created`, `response.output_item.added`,
//! `response.output_text.delta`, `response.output_item.done`, `response.completed` (with
//! `usage`). A tool call is a `function_call` output item; Codex offers MCP tools in namespaces
//! (`{"type":"namespace","name":"mcp__<server>","tools":[{"name":"<tool>",...}]}`), so a call
//! of one carries `"namespace": "mcp__<server>"` and the bare tool name.
//!
//! Answers are scripted like the Anthropic stand-in's ([`super::stand`]): a closure, then a
//! queue, then a default. Every other request is recorded and answered 404.

use std::time::Duration;

use serde_json::{json, Value};

use super::stand::{Protocol, Reply, Stand, Step};
use super::Recorded;

/// A function call in an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// `call_id` (Codex uses it as the MCP tool call's item id).
    pub call_id: String,
    /// `namespace`, e.g. `mcp__echo` (MCP tools), or `None` for a built-in function.
    pub namespace: Option<String>,
    /// The function name (the bare MCP tool name when namespaced).
    pub name: String,
    /// Its arguments.
    pub arguments: Value,
}

/// What the stand-in answers to one Responses request.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// An assistant message with this text (left out when empty and there is a call).
    pub text: String,
    /// Wait this long first: a stream sends `response.created`, waits, then the rest; an
    /// error is sent after it.
    pub delay: Duration,
    /// Answer with this HTTP status and an OpenAI error body with this message instead.
    pub error: Option<(u16, String)>,
    /// A function call after the text.
    pub call: Option<ToolCall>,
    /// `usage.input_tokens`.
    pub input_tokens: u64,
    /// `usage.input_tokens_details.cached_tokens`.
    pub cached_tokens: u64,
    /// `usage.output_tokens`.
    pub output_tokens: u64,
    /// Break the stream (close the connection) right after `response.created`.
    pub cut_stream: bool,
}

impl Answer {
    /// A text answer (100 input tokens of which 20 cached, 10 output tokens).
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            delay: Duration::ZERO,
            error: None,
            call: None,
            input_tokens: 100,
            cached_tokens: 20,
            output_tokens: 10,
            cut_stream: false,
        }
    }

    /// An HTTP error with an OpenAI error body carrying `message`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self {
            error: Some((status, message.into())),
            ..Self::text("")
        }
    }

    /// The same answer after `delay`.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The same answer with these token counts.
    pub fn with_usage(mut self, input: u64, cached: u64, output: u64) -> Self {
        self.input_tokens = input;
        self.cached_tokens = cached;
        self.output_tokens = output;
        self
    }

    /// The same answer followed by a call of MCP tool `tool` of server `server`.
    pub fn with_mcp_call(mut self, call_id: &str, server: &str, tool: &str, args: Value) -> Self {
        self.call = Some(ToolCall {
            call_id: call_id.to_string(),
            namespace: Some(format!("mcp__{server}")),
            name: tool.to_string(),
            arguments: args,
        });
        self
    }

    /// A stream that breaks after `response.created`.
    pub fn cut_after_start(mut self) -> Self {
        self.cut_stream = true;
        self
    }
}

/// The stand-in.
pub type OpenAiApi = Stand<Answer>;

/// Starts a stand-in (default answer: "Hello from the fake OpenAI API.").
pub async fn start() -> OpenAiApi {
    Stand::start(
        Protocol {
            is_model_call,
            reply,
        },
        Answer::text("Hello from the fake OpenAI API."),
    )
    .await
}

/// `http://127.0.0.1:PORT/v1`, the provider's `base_url`.
pub fn base_url(api: &OpenAiApi) -> String {
    format!("http://127.0.0.1:{}/v1", api.port())
}

/// Whether it is a Responses call (`POST /v1/responses`).
pub fn is_model_call(rec: &Recorded) -> bool {
    rec.method == "POST" && rec.path == "/v1/responses"
}

fn text_of(content: &Value) -> Vec<String> {
    match content {
        Value::String(s) => vec![s.clone()],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str).map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// The texts of the request's `input`, in order, as (role, text): messages by their role
/// (`developer`, `user`, `assistant`), function call outputs as `tool`.
pub fn input_texts(rec: &Recorded) -> Vec<(String, String)> {
    let Some(items) = rec
        .json
        .as_ref()
        .and_then(|j| j.get("input"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    items
        .iter()
        .flat_map(|item| match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                let role = item
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                item.get("content")
                    .map(text_of)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| (role.clone(), t))
                    .collect::<Vec<_>>()
            }
            Some("function_call_output") => item
                .get("output")
                .map(text_of)
                .unwrap_or_default()
                .into_iter()
                .map(|t| ("tool".to_string(), t))
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// Whether some input text of `role` contains `needle`.
pub fn has_text(rec: &Recorded, role: &str, needle: &str) -> bool {
    input_texts(rec)
        .iter()
        .any(|(r, t)| r == role && t.contains(needle))
}

/// The last `user` text of the request (the prompt).
pub fn last_user_text(rec: &Recorded) -> String {
    input_texts(rec)
        .into_iter()
        .rev()
        .find(|(r, _)| r == "user")
        .map(|(_, t)| t)
        .unwrap_or_default()
}

/// The names the request offers the model: functions by name, namespaces as
/// `<namespace>__<tool>` (e.g. `mcp__echo__echo`), nameless tools by type (`tool_search`).
pub fn tool_names(rec: &Recorded) -> Vec<String> {
    let tools = rec
        .json
        .as_ref()
        .and_then(|j| j.get("tools"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let name = |v: &Value| {
        v.get("name")
            .or_else(|| v.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    tools
        .iter()
        .flat_map(|t| match t.get("type").and_then(Value::as_str) {
            Some("namespace") => t
                .get("tools")
                .and_then(Value::as_array)
                .map(|inner| {
                    inner
                        .iter()
                        .map(|i| format!("{}__{}", name(t), name(i)))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
            _ => vec![name(t)],
        })
        .collect()
}

/// `{"error":{"message":...,"type":...,"code":...}}` as the OpenAI API sends it.
pub fn error_body(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        400 => ("invalid_request_error", "invalid_request"),
        401 => ("invalid_request_error", "invalid_api_key"),
        429 => ("rate_limit_error", "rate_limit_exceeded"),
        _ => ("server_error", "server_error"),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

fn event(kind: &str, mut data: Value) -> String {
    data["type"] = json!(kind);
    format!("event: {kind}\ndata: {data}\n\n")
}

fn reply(rec: &Recorded, answer: Option<Answer>) -> Reply {
    let Some(answer) = answer else {
        let body = error_body(
            404,
            &format!("the fake API has no {} {}", rec.method, rec.path),
        );
        return Reply::json(404, &body);
    };
    if let Some((status, message)) = &answer.error {
        return Reply::json(*status, &error_body(*status, message)).after(answer.delay);
    }
    let model = rec
        .json
        .as_ref()
        .and_then(|j| j.get("model"))
        .and_then(Value::as_str)
        .unwrap_or("gpt-fake")
        .to_string();
    let id = format!("resp_fake_{}", rec.n);
    let mut steps = vec![Step::Data(event(
        "response.created",
        json!({"response": {"id": id, "object": "response", "model": model, "status": "in_progress"}}),
    ))];
    if answer.cut_stream {
        steps.push(Step::Cut);
        return Reply::stream(steps);
    }
    steps.push(Step::Wait(answer.delay));
    let mut index = 0;
    if !answer.text.is_empty() || answer.call.is_none() {
        let msg_id = format!("msg_fake_{}", rec.n);
        steps.push(Step::Data(event(
            "response.output_item.added",
            json!({"output_index": index, "item": {"type": "message", "id": msg_id, "role": "assistant", "status": "in_progress", "content": []}}),
        )));
        let mut mid = answer.text.len() / 2;
        while !answer.text.is_char_boundary(mid) {
            mid += 1;
        }
        for part in [&answer.text[..mid], &answer.text[mid..]] {
            if !part.is_empty() {
                steps.push(Step::Data(event(
                    "response.output_text.delta",
                    json!({"output_index": index, "content_index": 0, "item_id": msg_id, "delta": part}),
                )));
            }
        }
        steps.push(Step::Data(event(
            "response.output_item.done",
            json!({"output_index": index, "item": {"type": "message", "id": msg_id, "role": "assistant", "status": "completed",
                   "content": [{"type": "output_text", "text": answer.text, "annotations": []}]}}),
        )));
        index += 1;
    }
    if let Some(call) = &answer.call {
        let mut item = json!({"type": "function_call", "id": format!("fc_fake_{}", rec.n), "call_id": call.call_id,
                              "name": call.name, "arguments": call.arguments.to_string(), "status": "completed"});
        if let Some(ns) = &call.namespace {
            item["namespace"] = json!(ns);
        }
        let mut added = item.clone();
        added["arguments"] = json!("");
        added["status"] = json!("in_progress");
        steps.push(Step::Data(event(
            "response.output_item.added",
            json!({"output_index": index, "item": added}),
        )));
        steps.push(Step::Data(event(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        )));
    }
    steps.push(Step::Data(event(
        "response.completed",
        json!({"response": {"id": id, "object": "response", "model": model, "status": "completed",
               "usage": {"input_tokens": answer.input_tokens,
                         "input_tokens_details": {"cached_tokens": answer.cached_tokens},
                         "output_tokens": answer.output_tokens,
                         "output_tokens_details": {"reasoning_tokens": 0},
                         "total_tokens": answer.input_tokens + answer.output_tokens}}}),
    )));
    Reply::stream(steps)
}

#[cfg(test)]
mod tests {
    use super::super::stand::ReplyBody;
    use super::*;

    fn recorded(body: Value) -> Recorded {
        Recorded {
            n: 7,
            connection: 1,
            method: "POST".into(),
            path: "/v1/responses".into(),
            query: None,
            headers: Vec::new(),
            chunked: false,
            body: body.to_string().into_bytes(),
            json: Some(body),
        }
    }

    #[test]
    fn streams_text_calls_and_usage_as_responses_events() {
        let rec = recorded(json!({"model": "m", "stream": true, "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be nice"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]},
            {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_text", "text": "echo: x"}]}],
            "tools": [{"type": "function", "name": "exec_command"},
                      {"type": "namespace", "name": "mcp__echo", "tools": [{"type": "function", "name": "echo"}]}]}));
        assert!(is_model_call(&rec));
        assert_eq!(last_user_text(&rec), "hello");
        assert!(has_text(&rec, "tool", "echo: x"));
        assert_eq!(tool_names(&rec), ["exec_command", "mcp__echo__echo"]);
        let answer = Answer::text("hi there").with_usage(50, 5, 7).with_mcp_call(
            "call_1",
            "echo",
            "echo",
            json!({"text": "x"}),
        );
        let Reply {
            status,
            body: ReplyBody::Stream(steps),
            ..
        } = reply(&rec, Some(answer))
        else {
            panic!("not a stream")
        };
        assert_eq!(status, 200);
        let sse: String = steps
            .iter()
            .filter_map(|s| match s {
                Step::Data(d) => Some(d.as_str()),
                _ => None,
            })
            .collect();
        let kinds: Vec<&str> = sse
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.output_item.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_item.done",
                "response.output_item.added",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert!(sse.contains(r#""namespace":"mcp__echo""#), "{sse}");
        assert!(sse.contains(r#""input_tokens":50"#) && sse.contains(r#""cached_tokens":5"#));
        // Not a model call: 404, nothing consumed.
        let mut other = rec.clone();
        other.path = "/v1/models".into();
        assert!(!is_model_call(&other));
        assert_eq!(reply(&other, None).status, 404);
        let err = reply(&rec, Some(Answer::error(503, "down")));
        assert_eq!(err.status, 503);
    }
}
