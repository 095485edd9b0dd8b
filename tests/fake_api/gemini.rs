//! A local stand-in for the Gemini API (Generative Language API, `v1beta`), for driving the real
//! Gemini CLI offline (see docs/gemini-protocol.md). Gemini CLI 0.61.0 with
//! `GOOGLE_GEMINI_BASE_URL=<url()>` posts `/v1beta/models/<model>:streamGenerateContent?alt=sse`
//! for each model turn and reads `data: <GenerateContentResponse>` events (candidates with
//! `parts`: `text` or `functionCall`; `usageMetadata` in the last one). It also makes utility
//! calls (`:generateContent`, e.g. a session summary with a "lite" model, or the router of the
//! model "auto"): those are answered with [`UTILITY_TEXT`] and do not take scripted answers.
//! MCP tools are offered as functions named `mcp_<server>_<tool>`.

use std::time::Duration;

use serde_json::{json, Value};

use super::stand::{Protocol, Reply, Stand, Step};
use super::Recorded;

/// The text of every answer to a utility (non-streaming) call.
pub const UTILITY_TEXT: &str = "Summary from the fake Gemini API.";

/// What the stand-in answers to one streamed model call.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The text (left out when empty and there is a call).
    pub text: String,
    /// Wait this long first (after the first text half, when streaming text; before an error).
    pub delay: Duration,
    /// Answer with this HTTP status and a Google error body with this message instead.
    pub error: Option<(u16, String)>,
    /// A `functionCall` part after the text: (name, args).
    pub call: Option<(String, Value)>,
    /// `usageMetadata.promptTokenCount`.
    pub prompt_tokens: u64,
    /// `usageMetadata.cachedContentTokenCount`.
    pub cached_tokens: u64,
    /// `usageMetadata.candidatesTokenCount`.
    pub output_tokens: u64,
}

impl Answer {
    /// A text answer (100 prompt tokens of which 20 cached, 10 output tokens).
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            delay: Duration::ZERO,
            error: None,
            call: None,
            prompt_tokens: 100,
            cached_tokens: 20,
            output_tokens: 10,
        }
    }

    /// An HTTP error with a Google error body carrying `message`.
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
    pub fn with_usage(mut self, prompt: u64, cached: u64, output: u64) -> Self {
        self.prompt_tokens = prompt;
        self.cached_tokens = cached;
        self.output_tokens = output;
        self
    }

    /// The same answer followed by a call of MCP tool `tool` of server `server`
    /// (`mcp_<server>_<tool>`).
    pub fn with_mcp_call(mut self, server: &str, tool: &str, args: Value) -> Self {
        self.call = Some((format!("mcp_{server}_{tool}"), args));
        self
    }
}

/// The stand-in.
pub type GeminiApi = Stand<Answer>;

/// Starts a stand-in (default answer: "Hello from the fake Gemini API.").
pub async fn start() -> GeminiApi {
    Stand::start(
        Protocol {
            is_model_call,
            reply,
        },
        Answer::text("Hello from the fake Gemini API."),
    )
    .await
}

/// `http://127.0.0.1:PORT`, for `GOOGLE_GEMINI_BASE_URL`.
pub fn base_url(api: &GeminiApi) -> String {
    format!("http://127.0.0.1:{}", api.port())
}

/// Whether it is a streamed model call (`POST .../models/<m>:streamGenerateContent`).
pub fn is_model_call(rec: &Recorded) -> bool {
    rec.method == "POST" && rec.path.ends_with(":streamGenerateContent")
}

/// Whether it is a utility call (`POST .../models/<m>:generateContent`).
pub fn is_utility_call(rec: &Recorded) -> bool {
    rec.method == "POST" && rec.path.ends_with(":generateContent")
}

/// The model named in the path.
pub fn model(rec: &Recorded) -> Option<String> {
    let (_, rest) = rec.path.split_once("/models/")?;
    Some(rest.split(':').next()?.to_string())
}

/// The texts of the request's `contents`, in order, as (role, text): `user` and `model` parts'
/// texts, function responses as `tool` (their JSON).
pub fn content_texts(rec: &Recorded) -> Vec<(String, String)> {
    let Some(contents) = rec
        .json
        .as_ref()
        .and_then(|j| j.get("contents"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    contents
        .iter()
        .flat_map(|c| {
            let role = c
                .get("role")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            c.get("parts")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |p| {
                    if let Some(t) = p.get("text").and_then(Value::as_str) {
                        Some((role.clone(), t.to_string()))
                    } else {
                        p.get("functionResponse")
                            .map(|r| ("tool".to_string(), r.to_string()))
                    }
                })
        })
        .collect()
}

/// Whether some text of `role` contains `needle`.
pub fn has_text(rec: &Recorded, role: &str, needle: &str) -> bool {
    content_texts(rec)
        .iter()
        .any(|(r, t)| r == role && t.contains(needle))
}

/// The function names the request offers the model.
pub fn tool_names(rec: &Recorded) -> Vec<String> {
    rec.json
        .as_ref()
        .and_then(|j| j.get("tools"))
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .flat_map(|t| {
                    t.get("functionDeclarations")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|f| f.get("name").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `{"error":{"code":...,"message":...,"status":...}}` as Google APIs send it.
pub fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    json!({"error": {"code": status, "message": message, "status": kind}})
}

/// One event of a streamed answer; `modelVersion` is the model asked for (as the real API
/// names the model that answered).
fn chunk(parts: Vec<Value>, finish: bool, usage: Option<&Answer>, rec: &Recorded) -> String {
    let n = rec.n;
    let version = model(rec).unwrap_or_else(|| "gemini-fake".into());
    let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    if finish {
        candidate["finishReason"] = json!("STOP");
    }
    let mut body = json!({"candidates": [candidate], "modelVersion": version, "responseId": format!("resp_fake_{n}")});
    if let Some(a) = usage {
        body["usageMetadata"] = json!({
            "promptTokenCount": a.prompt_tokens,
            "cachedContentTokenCount": a.cached_tokens,
            "candidatesTokenCount": a.output_tokens,
            "totalTokenCount": a.prompt_tokens + a.output_tokens,
        });
    }
    format!("data: {body}\r\n\r\n")
}

fn reply(rec: &Recorded, answer: Option<Answer>) -> Reply {
    let Some(answer) = answer else {
        if is_utility_call(rec) {
            let body = json!({"candidates": [{"content": {"parts": [{"text": UTILITY_TEXT}], "role": "model"},
                                              "finishReason": "STOP", "index": 0}],
                              "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2}});
            return Reply::json(200, &body);
        }
        let message = format!("the fake API has no {} {}", rec.method, rec.path);
        return Reply::json(404, &error_body(404, &message));
    };
    if let Some((status, message)) = &answer.error {
        return Reply::json(*status, &error_body(*status, message)).after(answer.delay);
    }
    let mut steps = Vec::new();
    let mut mid = answer.text.len() / 2;
    while !answer.text.is_char_boundary(mid) {
        mid += 1;
    }
    let (first, second) = answer.text.split_at(mid);
    if !first.is_empty() {
        steps.push(Step::Data(chunk(
            vec![json!({"text": first})],
            false,
            None,
            rec,
        )));
    }
    steps.push(Step::Wait(answer.delay));
    let mut last = Vec::new();
    if !second.is_empty() || (answer.text.is_empty() && answer.call.is_none()) {
        last.push(json!({"text": second}));
    }
    if let Some((name, args)) = &answer.call {
        last.push(json!({"functionCall": {"name": name, "args": args}}));
    }
    steps.push(Step::Data(chunk(last, true, Some(&answer), rec)));
    Reply::stream(steps)
}

#[cfg(test)]
mod tests {
    use super::super::stand::ReplyBody;
    use super::*;

    #[test]
    fn streams_text_calls_and_usage_as_generate_content_chunks() {
        let body = json!({"contents": [
            {"role": "user", "parts": [{"text": "<session_context>"}, {"text": "hello"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "mcp_echo_echo", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "mcp_echo_echo", "response": {"output": "echo: x"}}}]}],
            "tools": [{"functionDeclarations": [{"name": "read_file"}, {"name": "mcp_echo_echo"}]}]});
        let rec = Recorded {
            n: 3,
            connection: 1,
            method: "POST".into(),
            path: "/v1beta/models/gemini-2.5-flash:streamGenerateContent".into(),
            query: Some("alt=sse".into()),
            headers: Vec::new(),
            chunked: false,
            body: body.to_string().into_bytes(),
            json: Some(body),
        };
        assert!(is_model_call(&rec) && !is_utility_call(&rec));
        assert_eq!(model(&rec).as_deref(), Some("gemini-2.5-flash"));
        assert!(has_text(&rec, "user", "hello"));
        assert!(has_text(&rec, "tool", "echo: x"));
        assert_eq!(tool_names(&rec), ["read_file", "mcp_echo_echo"]);
        let answer = Answer::text("hi there").with_usage(40, 4, 6).with_mcp_call(
            "echo",
            "echo",
            json!({"text": "y"}),
        );
        let Reply {
            body: ReplyBody::Stream(steps),
            ..
        } = reply(&rec, Some(answer))
        else {
            panic!("not a stream")
        };
        let data: Vec<Value> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Data(d) => d.strip_prefix("data: ").map(str::trim),
                _ => None,
            })
            .map(|d| serde_json::from_str(d).expect("json"))
            .collect();
        assert_eq!(data.len(), 2);
        assert_eq!(
            data[0]["candidates"][0]["content"]["parts"][0]["text"],
            "hi t"
        );
        let last = &data[1]["candidates"][0];
        assert_eq!(last["finishReason"], "STOP");
        assert_eq!(
            last["content"]["parts"][1]["functionCall"]["name"],
            "mcp_echo_echo"
        );
        assert_eq!(data[1]["usageMetadata"]["promptTokenCount"], 40);
        let mut utility = rec.clone();
        utility.path = "/v1beta/models/gemini-lite:generateContent".into();
        assert!(!is_model_call(&utility) && is_utility_call(&utility));
        assert_eq!(reply(&utility, None).status, 200);
        assert_eq!(reply(&rec, Some(Answer::error(500, "down"))).status, 500);
    }
}
