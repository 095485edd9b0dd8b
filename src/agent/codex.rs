//! The Codex CLI (npm `@openai/codex`, pinned 0.171.0) run as `codex app-server`: one
//! long-lived process per session speaking JSON-RPC 2.0 over stdio (one JSON object per line;
//! Codex leaves out the `"jsonrpc"` member in what it sends). See docs/codex-protocol.md for what
//! was observed and why this mode and not `codex exec --json` per turn: `initialize` answers
//! without a model call (readiness), `turn/interrupt` stops a turn without a model call, MCP
//! tool calls and commands ask for approval as JSON-RPC requests, `thread/resume` continues a
//! thread in a new process, `thread/compact/start` compacts.
//!
//! This file holds the pure pieces: the team's private `CODEX_HOME/config.toml`, the launch
//! (argv, env, and the per-launch `-c` overrides that wire Switchboard's MCP endpoint with its
//! headers taken from the environment, so no secret is in argv or on disk), the client's
//! messages, and the decoder of the server's messages into [`Activity`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::activity::{as_text, Activity, ApprovalKind, Tokens, TurnOutcome};
use super::adapter::{LaunchSpec, SwitchboardServer, BASE_ENV};
use super::event::BadLine;

/// Variables of Switchboard's environment a Codex agent gets besides [`BASE_ENV`]: its API key
/// and settings (`CODEX_HOME` is always set by the launch).
pub const CODEX_ENV: &[&str] = &["OPENAI_*", "CODEX_CA_CERTIFICATE", "RUST_LOG"];

/// The name of Switchboard's MCP server in Codex's config (its tools are `switchboard.<tool>`).
pub const SERVER_NAME: &str = "switchboard";

/// A model provider of Codex's config (`[model_providers.<id>]`), e.g. a proxy or a local
/// stand-in speaking the Responses API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Its id in the config (`model_provider = "<id>"`).
    pub id: String,
    /// `base_url`, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// The environment variable that holds the API key.
    pub env_key: String,
}

/// Everything that decides how a team's Codex agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodexSetup {
    /// The executable (`codex`, or the team's `agent_path`).
    pub program: String,
    /// The team's folder.
    pub cwd: PathBuf,
    /// The team's private `CODEX_HOME` (under Switchboard's data folder): its config, threads
    /// (`sessions/`), logs and state databases; never the user's `~/.codex`.
    pub codex_home: PathBuf,
    /// `model`; `None` leaves Codex's default.
    pub model: Option<String>,
    /// A custom provider; `None` uses Codex's built-in OpenAI provider (`OPENAI_API_KEY`).
    pub provider: Option<Provider>,
    /// How often a failed model request (and a broken stream) is retried; Codex's own default
    /// retries a connection without end.
    pub max_retries: u32,
    /// `approval_policy`: when Codex asks before it acts (`untrusted`, `on-request`, `never`).
    pub approval_policy: String,
    /// `sandbox_mode` (`read-only`, `workspace-write`, `danger-full-access`).
    pub sandbox_mode: String,
    /// The team's `env` (wins over what is inherited).
    pub env: BTreeMap<String, String>,
    /// More variables of Switchboard's environment to pass on.
    pub env_passthrough: Vec<String>,
    /// More arguments after Switchboard's.
    pub args: Vec<String>,
}

impl CodexSetup {
    /// A setup with Switchboard's defaults: `codex`, 2 retries, approvals on request in a
    /// workspace-write sandbox.
    pub fn new(cwd: impl Into<PathBuf>, codex_home: impl Into<PathBuf>) -> Self {
        Self {
            program: "codex".into(),
            cwd: cwd.into(),
            codex_home: codex_home.into(),
            model: None,
            provider: None,
            max_retries: 2,
            approval_policy: "on-request".into(),
            sandbox_mode: "workspace-write".into(),
            env: BTreeMap::new(),
            env_passthrough: Vec::new(),
            args: Vec::new(),
        }
    }
}

/// The team's `CODEX_HOME/config.toml`: model and provider, bounded retries, no update check,
/// no analytics, approvals and sandbox. Per team, shared by its sessions (so nothing
/// per-session, and no secret, is in it).
pub fn config_toml(setup: &CodexSetup) -> String {
    let mut root = toml::Table::new();
    let s = |v: &str| toml::Value::String(v.to_string());
    let n = |v: u32| toml::Value::Integer(i64::from(v));
    if let Some(model) = &setup.model {
        root.insert("model".into(), s(model));
    }
    root.insert("approval_policy".into(), s(&setup.approval_policy));
    root.insert("sandbox_mode".into(), s(&setup.sandbox_mode));
    root.insert(
        "check_for_update_on_startup".into(),
        toml::Value::Boolean(false),
    );
    let mut analytics = toml::Table::new();
    analytics.insert("enabled".into(), toml::Value::Boolean(false));
    root.insert("analytics".into(), toml::Value::Table(analytics));
    let mut features = toml::Table::new();
    // Without this a refused connection is retried without end, whatever the retry counts.
    features.insert(
        "unbounded_connection_retries".into(),
        toml::Value::Boolean(false),
    );
    root.insert("features".into(), toml::Value::Table(features));
    if let Some(p) = &setup.provider {
        root.insert("model_provider".into(), s(&p.id));
        let mut entry = toml::Table::new();
        entry.insert("name".into(), s(&p.id));
        entry.insert("base_url".into(), s(&p.base_url));
        entry.insert("env_key".into(), s(&p.env_key));
        entry.insert("wire_api".into(), s("responses"));
        entry.insert("request_max_retries".into(), n(setup.max_retries));
        entry.insert("stream_max_retries".into(), n(setup.max_retries));
        let mut providers = toml::Table::new();
        providers.insert(p.id.clone(), toml::Value::Table(entry));
        root.insert("model_providers".into(), toml::Value::Table(providers));
    }
    root.to_string()
}

/// The `-c key=value` overrides (and the environment they read) that give one launch
/// Switchboard's MCP endpoint: streamable HTTP at `url`, each header's value in a variable
/// (`env_http_headers`), its tools approved without asking (`default_tools_approval_mode`),
/// and a tool timeout as long as Switchboard's.
pub fn mcp_overrides(server: &SwitchboardServer) -> (Vec<String>, BTreeMap<String, String>) {
    let key = |k: &str| format!("mcp_servers.{SERVER_NAME}.{k}");
    let mut env = BTreeMap::new();
    let mut headers = toml::Table::new();
    for (name, var, value) in server.header_vars() {
        headers.insert(name, toml::Value::String(var.clone()));
        env.insert(var, value);
    }
    let secs = server.timeout_ms.div_ceil(1000).max(1);
    let pairs = [
        ("url", toml::Value::String(server.url.clone())),
        ("env_http_headers", toml::Value::Table(headers)),
        (
            "default_tools_approval_mode",
            toml::Value::String("approve".into()),
        ),
        (
            "tool_timeout_sec",
            toml::Value::Integer(i64::try_from(secs).unwrap_or(i64::MAX)),
        ),
    ];
    let args = pairs
        .into_iter()
        .flat_map(|(k, v)| ["-c".to_string(), format!("{}={}", key(k), inline(&v))])
        .collect();
    (args, env)
}

/// A TOML value on one line (tables inline).
fn inline(v: &toml::Value) -> String {
    match v {
        toml::Value::Table(t) => {
            let items: Vec<String> = t
                .iter()
                .map(|(k, v)| format!("{} = {}", toml::Value::String(k.clone()), inline(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// How to start the agent of a session: `codex app-server` in the team's folder with the
/// team's `CODEX_HOME`, and Switchboard's MCP endpoint when given. New and resumed sessions
/// start alike (the thread is chosen over JSON-RPC: [`thread_start`] or [`thread_resume`]).
pub fn launch(setup: &CodexSetup, switchboard: Option<&SwitchboardServer>) -> LaunchSpec {
    let mut args = vec!["app-server".to_string()];
    let mut env = setup.env.clone();
    env.insert("CODEX_HOME".into(), setup.codex_home.display().to_string());
    if let Some(server) = switchboard {
        let (more, header_env) = mcp_overrides(server);
        args.extend(more);
        env.extend(header_env);
    }
    args.extend(setup.args.iter().cloned());
    LaunchSpec {
        program: setup.program.clone(),
        args,
        cwd: setup.cwd.clone(),
        env,
        inherit: BASE_ENV
            .iter()
            .chain(CODEX_ENV)
            .map(|s| s.to_string())
            .chain(setup.env_passthrough.iter().cloned())
            .collect(),
        env_remove: vec!["CODEX_HOME".into()],
    }
}

/// Where Codex keeps the transcripts of a team: `CODEX_HOME/sessions/YYYY/MM/DD/
/// rollout-<time>-<thread id>.jsonl` (the path is also in `thread/start`'s answer).
pub fn transcripts_dir(setup: &CodexSetup) -> PathBuf {
    setup.codex_home.join("sessions")
}

fn request(id: u64, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

/// `initialize`: answered at once, without a model call (the readiness probe).
pub fn initialize(id: u64) -> String {
    request(
        id,
        "initialize",
        json!({"clientInfo": {"name": "switchboard", "title": "Switchboard",
                              "version": env!("CARGO_PKG_VERSION")}}),
    )
}

/// The `initialized` notification that must follow the answer to [`initialize`].
pub fn initialized() -> String {
    json!({"jsonrpc": "2.0", "method": "initialized"}).to_string()
}

/// `thread/start` in `cwd`: a new conversation; its answer carries the thread id (Codex picks
/// it; store it with the session).
pub fn thread_start(id: u64, cwd: &str) -> String {
    request(id, "thread/start", json!({"cwd": cwd}))
}

/// `thread/resume`: continues the thread `thread_id` (its history is in `CODEX_HOME`).
pub fn thread_resume(id: u64, thread_id: &str, cwd: &str) -> String {
    request(
        id,
        "thread/resume",
        json!({"threadId": thread_id, "cwd": cwd, "excludeTurns": true}),
    )
}

/// `turn/start`: delivers a user message.
pub fn turn_start(id: u64, thread_id: &str, text: &str) -> String {
    request(
        id,
        "turn/start",
        json!({"threadId": thread_id, "input": [{"type": "text", "text": text}]}),
    )
}

/// `turn/interrupt`: ends the running turn (it then completes with status `interrupted`).
pub fn turn_interrupt(id: u64, thread_id: &str, turn_id: &str) -> String {
    request(
        id,
        "turn/interrupt",
        json!({"threadId": thread_id, "turnId": turn_id}),
    )
}

/// `thread/compact/start`: compacts the thread's context.
pub fn compact(id: u64, thread_id: &str) -> String {
    request(id, "thread/compact/start", json!({"threadId": thread_id}))
}

/// The answer to a permission request ([`Activity::Approval`]): allow or deny.
pub fn approval_answer(request: &Value, kind: &ApprovalKind, allow: bool) -> String {
    let result = match kind {
        ApprovalKind::McpTool if allow => json!({"action": "accept", "content": {}}),
        ApprovalKind::McpTool => json!({"action": "decline"}),
        _ if allow => json!({"decision": "accept"}),
        _ => json!({"decision": "decline"}),
    };
    json!({"jsonrpc": "2.0", "id": request, "result": result}).to_string()
}

/// The thread id in the answer to [`thread_start`] or [`thread_resume`].
pub fn thread_id_of(result: &Value) -> Option<String> {
    st(result, "/thread/id")
}

/// The turn id in the answer to [`turn_start`].
pub fn turn_id_of(result: &Value) -> Option<String> {
    st(result, "/turn/id")
}

fn st(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer).and_then(Value::as_str).map(String::from)
}

fn tokens(v: &Value) -> Tokens {
    let n = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0).max(0);
    Tokens {
        input: n("inputTokens"),
        cached: n("cachedInputTokens"),
        output: n("outputTokens"),
    }
}

fn tool_output(result: &Value, error: &Value) -> String {
    if !error.is_null() {
        return st(error, "/message").unwrap_or_else(|| as_text(error));
    }
    result
        .get("content")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_else(|| as_text(result))
}

/// Decodes one line of `codex app-server`'s stdout.
pub fn decode(line: &[u8]) -> Result<Activity, BadLine> {
    let trimmed = line.trim_ascii();
    let v: Value = match serde_json::from_slice(trimmed) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            let start = String::from_utf8_lossy(&trimmed[..trimmed.len().min(120)]).into_owned();
            return Err(BadLine::NotJson(start));
        }
    };
    let method = v.get("method").and_then(Value::as_str);
    let id = v.get("id").cloned();
    let p = v.get("params").cloned().unwrap_or(Value::Null);
    Ok(match (method, id) {
        // The answer to one of our requests.
        (None, Some(id)) => {
            let result = match (v.get("result"), v.get("error")) {
                (_, Some(e)) => Err(st(e, "/message").unwrap_or_else(|| e.to_string())),
                (Some(r), None) => Ok(r.clone()),
                (None, None) => Ok(Value::Null),
            };
            Activity::Response { id, result }
        }
        // A request of the server: permissions.
        (Some(m), Some(id)) => {
            let (kind, tool, input) = match m {
                "mcpServer/elicitation/request" => {
                    let server = st(&p, "/serverName").unwrap_or_default();
                    let tool = st(&p, "/_meta/tool_name").unwrap_or_default();
                    let input = p
                        .pointer("/_meta/tool_params")
                        .cloned()
                        .unwrap_or(Value::Null);
                    let kind = if st(&p, "/_meta/codex_approval_kind").as_deref()
                        == Some("mcp_tool_call")
                    {
                        ApprovalKind::McpTool
                    } else {
                        ApprovalKind::Other(m.to_string())
                    };
                    (kind, format!("{server}.{tool}"), input.to_string())
                }
                "item/commandExecution/requestApproval" | "execCommandApproval" => {
                    let command = p.get("command").map(as_text).unwrap_or_default();
                    (ApprovalKind::Command, "shell".into(), command)
                }
                "item/fileChange/requestApproval" | "applyPatchApproval" => (
                    ApprovalKind::FileChange,
                    "file_change".into(),
                    p.get("reason").map(as_text).unwrap_or_default(),
                ),
                other => (
                    ApprovalKind::Other(other.to_string()),
                    other.to_string(),
                    p.to_string(),
                ),
            };
            Activity::Approval {
                request: id,
                kind,
                tool,
                input,
            }
        }
        (Some("thread/started"), None) => match st(&p, "/thread/id") {
            Some(id) => Activity::Session { id },
            None => Activity::Other {
                kind: "thread/started".into(),
            },
        },
        (Some("turn/started"), None) => Activity::TurnStarted {
            turn_id: st(&p, "/turn/id"),
        },
        (Some("item/agentMessage/delta"), None) => Activity::Other {
            // The whole message follows in item/completed.
            kind: "item/agentMessage/delta".into(),
        },
        (Some("item/started"), None) if st(&p, "/item/type").as_deref() == Some("mcpToolCall") => {
            let item = &p["item"];
            Activity::ToolUse {
                id: st(item, "/id").unwrap_or_default(),
                tool: format!(
                    "{}.{}",
                    st(item, "/server").unwrap_or_default(),
                    st(item, "/tool").unwrap_or_default()
                ),
                input: item
                    .get("arguments")
                    .cloned()
                    .unwrap_or(Value::Null)
                    .to_string(),
            }
        }
        (Some("item/completed"), None) => {
            let item = &p["item"];
            match st(item, "/type").as_deref() {
                Some("agentMessage") => Activity::Text {
                    text: st(item, "/text").unwrap_or_default(),
                    delta: false,
                },
                Some("mcpToolCall") => Activity::ToolResult {
                    id: st(item, "/id").unwrap_or_default(),
                    ok: st(item, "/status").as_deref() == Some("completed")
                        && item.get("error").is_none_or(Value::is_null),
                    output: tool_output(&item["result"], &item["error"]),
                },
                Some("contextCompaction") => Activity::Compacted,
                Some("commandExecution") => Activity::ToolResult {
                    id: st(item, "/id").unwrap_or_default(),
                    ok: item.get("exitCode").and_then(Value::as_i64) == Some(0),
                    output: st(item, "/aggregatedOutput").unwrap_or_default(),
                },
                other => Activity::Other {
                    kind: format!("item/completed/{}", other.unwrap_or("")),
                },
            }
        }
        (Some("thread/tokenUsage/updated"), None) => Activity::Usage(tokens(
            p.pointer("/tokenUsage/last").unwrap_or(&Value::Null),
        )),
        (Some("error"), None) => Activity::Error {
            message: st(&p, "/error/message")
                .unwrap_or_else(|| "the agent reported an error".into()),
            will_retry: p.get("willRetry").and_then(Value::as_bool).unwrap_or(false),
        },
        (Some(m @ ("warning" | "configWarning")), None) => Activity::Status {
            text: st(&p, "/message")
                .or_else(|| st(&p, "/summary"))
                .unwrap_or_else(|| m.to_string()),
        },
        (Some("turn/completed"), None) => {
            let turn = &p["turn"];
            let outcome = match st(turn, "/status").as_deref() {
                Some("completed") => TurnOutcome::Completed,
                Some("interrupted") => TurnOutcome::Interrupted,
                other => TurnOutcome::Failed(
                    st(turn, "/error/message")
                        .unwrap_or_else(|| format!("the turn ended {}", other.unwrap_or("badly"))),
                ),
            };
            Activity::TurnEnd {
                outcome,
                tokens: None,
                duration_ms: turn.get("durationMs").and_then(Value::as_i64),
            }
        }
        (Some(m), None) => Activity::Other {
            kind: m.to_string(),
        },
        (None, None) => Activity::Other {
            kind: String::new(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> SwitchboardServer {
        SwitchboardServer {
            url: "http://127.0.0.1:4000/mcp".into(),
            headers: BTreeMap::from([
                ("Authorization".to_string(), "Bearer sek".to_string()),
                ("X-Switchboard-Agent".to_string(), "agent-tok".to_string()),
            ]),
            timeout_ms: 3_600_000,
        }
    }

    #[test]
    fn the_config_bounds_retries_and_turns_off_updates_and_analytics() {
        let mut setup = CodexSetup::new("/work/team", "/data/codex/team");
        setup.model = Some("gpt-5.5".into());
        setup.provider = Some(Provider {
            id: "local".into(),
            base_url: "http://127.0.0.1:9/v1".into(),
            env_key: "LOCAL_KEY".into(),
        });
        let text = config_toml(&setup);
        let t: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(t["model"].as_str(), Some("gpt-5.5"));
        assert_eq!(t["model_provider"].as_str(), Some("local"));
        assert_eq!(t["check_for_update_on_startup"].as_bool(), Some(false));
        assert_eq!(t["analytics"]["enabled"].as_bool(), Some(false));
        assert_eq!(
            t["features"]["unbounded_connection_retries"].as_bool(),
            Some(false)
        );
        let p = &t["model_providers"]["local"];
        assert_eq!(p["wire_api"].as_str(), Some("responses"));
        assert_eq!(p["base_url"].as_str(), Some("http://127.0.0.1:9/v1"));
        assert_eq!(p["env_key"].as_str(), Some("LOCAL_KEY"));
        assert_eq!(p["request_max_retries"].as_integer(), Some(2));
        assert_eq!(p["stream_max_retries"].as_integer(), Some(2));
        // No provider: Codex's own, and no provider table.
        let plain: toml::Table = config_toml(&CodexSetup::new("/w", "/h"))
            .parse()
            .expect("valid TOML");
        assert!(plain.get("model_providers").is_none() && plain.get("model").is_none());
    }

    #[test]
    fn the_launch_wires_the_endpoint_with_headers_from_the_environment() {
        let mut setup = CodexSetup::new("/work/team", "/data/codex/team");
        setup.env.insert("OPENAI_API_KEY".into(), "k".into());
        let spec = launch(&setup, Some(&server()));
        assert_eq!(spec.program, "codex");
        assert_eq!(spec.args[0], "app-server");
        let argv = spec.args.join(" ");
        assert!(
            !argv.contains("sek") && !argv.contains("agent-tok"),
            "no secret in argv: {argv}"
        );
        assert!(argv.contains(r#"mcp_servers.switchboard.url="http://127.0.0.1:4000/mcp""#));
        assert!(argv.contains(
            r#"mcp_servers.switchboard.env_http_headers={ "Authorization" = "SWITCHBOARD_MCP_TOKEN_1", "X-Switchboard-Agent" = "SWITCHBOARD_MCP_TOKEN_2" }"#
        ), "{argv}");
        assert!(argv.contains(r#"default_tools_approval_mode="approve""#));
        assert!(argv.contains("tool_timeout_sec=3600"));
        // Every -c value parses as TOML.
        for pair in spec.args.iter().filter(|a| a.starts_with("mcp_servers.")) {
            let (_, value) = pair.split_once('=').expect("key=value");
            let doc = format!("v = {value}");
            doc.parse::<toml::Table>()
                .unwrap_or_else(|e| panic!("{pair}: {e}"));
        }
        assert_eq!(spec.env["SWITCHBOARD_MCP_TOKEN_1"], "Bearer sek");
        assert_eq!(spec.env["CODEX_HOME"], "/data/codex/team");
        assert_eq!(spec.env["OPENAI_API_KEY"], "k");
        let record = spec.redacted_json();
        assert!(
            !record.contains("sek") && !record.contains("agent-tok"),
            "{record}"
        );
        assert!(spec.inherit.iter().any(|p| p == "OPENAI_*"));
    }

    #[test]
    fn client_messages_are_json_rpc() {
        let v: Value = serde_json::from_str(&turn_start(7, "t1", "hi \"you\"")).expect("json");
        assert_eq!(v["method"], "turn/start");
        assert_eq!(v["id"], 7);
        assert_eq!(v["params"]["input"][0]["text"], "hi \"you\"");
        let v: Value = serde_json::from_str(&turn_interrupt(8, "t1", "u1")).expect("json");
        assert_eq!(v["params"], json!({"threadId": "t1", "turnId": "u1"}));
        let v: Value =
            serde_json::from_str(&approval_answer(&json!(0), &ApprovalKind::McpTool, true))
                .expect("json");
        assert_eq!(
            v,
            json!({"jsonrpc": "2.0", "id": 0, "result": {"action": "accept", "content": {}}})
        );
        let v: Value =
            serde_json::from_str(&approval_answer(&json!("r"), &ApprovalKind::Command, false))
                .expect("json");
        assert_eq!(v["result"], json!({"decision": "decline"}));
        assert!(initialized().contains("\"initialized\""));
        assert!(initialize(1).contains("\"switchboard\""));
    }

    // Lines captured from codex app-server 0.171.0 (long ids and timestamps kept as they were).
    const THREAD_STARTED: &str = r#"{"method":"thread/started","params":{"thread":{"id":"01a248e2-f71b-7231-8070-ca13cf7d0108","sessionId":"01a248e2-f71b-7231-8070-ca13cf7d0108","modelProvider":"fake","model":"gpt-test","status":{"type":"idle"},"path":"/tmp/cx/home/sessions/2026/12/06/rollout-2026-12-06T01-06-03-01a248e2-f71b-7231-8070-ca13cf7d0108.jsonl"}},"emittedAtMs":1796519163668}"#;
    const TURN_STARTED: &str = r#"{"method":"turn/started","params":{"threadId":"01a248e2-f71b-7231-8070-ca13cf7d0108","turn":{"id":"01a248e2-f74c-7a01-993e-b8ecac5e5ac2","rootTurnId":"01a248e2-f74c-7a01-993e-b8ecac5e5ac2","items":[],"itemsView":"notLoaded","status":"inProgress","error":null,"startedAt":1796519163,"completedAt":null,"durationMs":null}},"emittedAtMs":1796519163829}"#;
    const MESSAGE: &str = r#"{"method":"item/completed","params":{"item":{"type":"agentMessage","moderation":null,"id":"msg_2","text":"first answer","phase":null,"memoryCitation":null,"delivery":null,"questions":null,"startedAtMs":1796519163930,"completedAtMs":1796519163930},"threadId":"01a248e2-f71b-7231-8070-ca13cf7d0108","turnId":"01a248e2-f74c-7a01-993e-b8ecac5e5ac2","contentTokenCount":null,"completedAtMs":1796519163930},"emittedAtMs":1796519163933}"#;
    const USAGE: &str = r#"{"method":"thread/tokenUsage/updated","params":{"threadId":"01a248e2-f71b-7231-8070-ca13cf7d0108","turnId":"01a248e2-f74c-7a01-993e-b8ecac5e5ac2","tokenUsage":{"total":{"totalTokens":32,"inputTokens":22,"cachedInputTokens":6,"cacheWriteInputTokens":0,"outputTokens":10,"reasoningOutputTokens":0},"last":{"totalTokens":16,"inputTokens":11,"cachedInputTokens":3,"cacheWriteInputTokens":0,"outputTokens":5,"reasoningOutputTokens":0},"modelContextWindow":258400}},"emittedAtMs":1796519163938}"#;
    const TOOL_STARTED: &str = r#"{"method":"item/started","params":{"item":{"type":"mcpToolCall","id":"call_1","server":"echo","environmentId":null,"tool":"echo","status":"inProgress","arguments":{"text":"hi"},"appContext":null,"mcpAppUi":null,"pluginId":null,"readOnlyHint":null,"result":null,"error":null,"durationMs":null,"startedAtMs":1796519217384,"completedAtMs":null},"threadId":"01a248e3-c788-7d70-a969-72f2d9de5c31","turnId":"01a248e3-c841-7210-ab00-2a4091e85ca1","startedAtMs":1796519217384},"emittedAtMs":1796519217384}"#;
    const APPROVAL: &str = r#"{"method":"mcpServer/elicitation/request","id":0,"params":{"threadId":"01a248e3-c788-7d70-a969-72f2d9de5c31","turnId":"01a248e3-c841-7210-ab00-2a4091e85ca1","serverName":"echo","environmentId":null,"mode":"form","_meta":{"codex_approval_kind":"mcp_tool_call","persist":["session","always"],"tool_name":"echo","tool_description":"Echoes its text.","tool_params":{"text":"hi"},"tool_params_display":[{"name":"text","value":"hi","display_name":"text"}]},"message":"Allow the echo MCP server to run tool \"echo\"?","requestedSchema":{"type":"object","properties":{}}}}"#;
    const TOOL_DONE: &str = r#"{"method":"item/completed","params":{"item":{"type":"mcpToolCall","id":"call_1","server":"echo","environmentId":null,"tool":"echo","status":"completed","arguments":{"text":"hi"},"appContext":null,"mcpAppUi":null,"pluginId":null,"readOnlyHint":null,"result":{"content":[{"type":"text","text":"echo: hi (from echo)"}],"structuredContent":null,"_meta":null},"error":null,"durationMs":1,"startedAtMs":1796519217384,"completedAtMs":1796519217391},"threadId":"01a248e3-c788-7d70-a969-72f2d9de5c31","turnId":"01a248e3-c841-7210-ab00-2a4091e85ca1","contentTokenCount":null,"completedAtMs":1796519217391},"emittedAtMs":1796519217393}"#;
    const COMPLETED: &str = r#"{"method":"turn/completed","params":{"threadId":"01a248e2-f71b-7231-8070-ca13cf7d0108","turn":{"id":"01a248e2-f74c-7a01-993e-b8ecac5e5ac2","rootTurnId":"01a248e2-f74c-7a01-993e-b8ecac5e5ac2","items":[],"itemsView":"summary","status":"completed","error":null,"startedAt":1796519163,"completedAt":1796519163,"durationMs":202}},"emittedAtMs":1796519163946}"#;
    const INTERRUPTED: &str = r#"{"method":"turn/completed","params":{"threadId":"01a248e3-df39-7d80-a04d-a01a6b99794a","turn":{"id":"01a248e3-df5c-7a22-ba00-a65eeff71988","rootTurnId":"01a248e3-df5c-7a22-ba00-a65eeff71988","items":[],"itemsView":"notLoaded","status":"interrupted","error":null,"startedAt":1796519223,"completedAt":1796519224,"durationMs":1037}},"emittedAtMs":1796519224175}"#;
    const RETRYING: &str = r#"{"method":"error","params":{"error":{"message":"Reconnecting... 1/1","codexErrorInfo":{"responseStreamDisconnected":{"httpStatusCode":null}},"additionalDetails":"We’re currently experiencing high demand, which may cause temporary errors.","misalignment":null},"willRetry":true,"threadId":"01a248e3-df39-7d80-a04d-a01a6b99794a","turnId":"01a248e3-fb0d-7801-89db-9f6837c5dfc3"},"emittedAtMs":1796519230465}"#;
    const FAILED: &str = r#"{"method":"turn/completed","params":{"threadId":"01a248e3-df39-7d80-a04d-a01a6b99794a","turn":{"id":"01a248e3-fb0d-7801-89db-9f6837c5dfc3","rootTurnId":"01a248e3-fb0d-7801-89db-9f6837c5dfc3","items":[],"itemsView":"notLoaded","status":"failed","error":{"message":"We’re currently experiencing high demand, which may cause temporary errors.","codexErrorInfo":"internalServerError","additionalDetails":null,"misalignment":null},"startedAt":1796519230,"completedAt":1796519230,"durationMs":663}},"emittedAtMs":1796519230895}"#;
    const INIT_ANSWER: &str = r#"{"id":1,"result":{"userAgent":"switchboard/0.171.0 (Debian 12.0.0; x86_64) xterm (switchboard; 0.1)","codexHome":"/tmp/cx/home","platformFamily":"unix","platformOs":"linux"}}"#;

    fn d(line: &str) -> Activity {
        decode(line.as_bytes()).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    #[test]
    fn decodes_the_lines_codex_app_server_prints() {
        assert!(
            matches!(d(INIT_ANSWER), Activity::Response { id, result: Ok(_) } if id == json!(1))
        );
        assert_eq!(
            d(THREAD_STARTED),
            Activity::Session {
                id: "01a248e2-f71b-7231-8070-ca13cf7d0108".into()
            }
        );
        assert_eq!(
            d(TURN_STARTED),
            Activity::TurnStarted {
                turn_id: Some("01a248e2-f74c-7a01-993e-b8ecac5e5ac2".into())
            }
        );
        assert_eq!(
            d(MESSAGE),
            Activity::Text {
                text: "first answer".into(),
                delta: false
            }
        );
        assert_eq!(
            d(USAGE),
            Activity::Usage(Tokens {
                input: 11,
                cached: 3,
                output: 5
            })
        );
        assert_eq!(
            d(TOOL_STARTED),
            Activity::ToolUse {
                id: "call_1".into(),
                tool: "echo.echo".into(),
                input: r#"{"text":"hi"}"#.into()
            }
        );
        assert_eq!(
            d(APPROVAL),
            Activity::Approval {
                request: json!(0),
                kind: ApprovalKind::McpTool,
                tool: "echo.echo".into(),
                input: r#"{"text":"hi"}"#.into()
            }
        );
        assert_eq!(
            d(TOOL_DONE),
            Activity::ToolResult {
                id: "call_1".into(),
                ok: true,
                output: "echo: hi (from echo)".into()
            }
        );
        assert_eq!(
            d(COMPLETED),
            Activity::TurnEnd {
                outcome: TurnOutcome::Completed,
                tokens: None,
                duration_ms: Some(202)
            }
        );
        assert!(matches!(
            d(INTERRUPTED),
            Activity::TurnEnd {
                outcome: TurnOutcome::Interrupted,
                ..
            }
        ));
        assert!(matches!(
            d(RETRYING),
            Activity::Error {
                will_retry: true,
                ..
            }
        ));
        match d(FAILED) {
            Activity::TurnEnd {
                outcome: TurnOutcome::Failed(why),
                ..
            } => assert!(why.contains("high demand"), "{why}"),
            other => panic!("{other:?}"),
        }
        let err = d(r#"{"id":3,"error":{"code":-32600,"message":"thread not found"}}"#);
        assert_eq!(
            err,
            Activity::Response {
                id: json!(3),
                result: Err("thread not found".into())
            }
        );
        // thread/compact/start runs a turn with this item (observed on 0.171.0).
        assert_eq!(
            d(
                r#"{"method":"item/completed","params":{"item":{"type":"contextCompaction","id":"01a248f6-5fe9-7372-aa61-d4979e3f4c8d","startedAtMs":1796520435689,"completedAtMs":1796520435730},"threadId":"01a248e3-df39-7d80-a04d-a01a6b99794a","turnId":"01a248f6-5fc1-7fd2-890a-db9718deeeec","contentTokenCount":null,"completedAtMs":1796520435730},"emittedAtMs":1796520435731}"#
            ),
            Activity::Compacted
        );
        assert!(matches!(decode(b"not json"), Err(BadLine::NotJson(_))));
        assert!(matches!(decode(b"[1]"), Err(BadLine::NotJson(_))));
    }
}
