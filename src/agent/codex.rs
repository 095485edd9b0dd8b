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
//! messages, and the decoder of the server's messages into [`Activity`]; then the adapter of
//! `agent = "codex"` teams ([`Codex`]), which maps the team's options onto them, opens the
//! session's thread over JSON-RPC, and folds each turn's activity into Switchboard's events
//! ([`CodexDecoder`]). It must not touch the router or the store: the worker drives it through
//! [`AgentAdapter`] and [`super::session::AgentSession`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::activity::{as_text, Activity, ApprovalKind, Tokens, TurnOutcome, TurnTally};
use super::adapter::{
    AgentAdapter, Conversation, Input, LaunchExtras, LaunchSpec, LineDecoder, PermissionAsk,
    SessionRef, SwitchboardServer, BASE_ENV,
};
use super::event::{AgentEvent, BadLine, ToolCall, ToolOutput, TurnResult, Usage};
use crate::config::TeamConfig;

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
    /// `approval_policy`: when Codex asks before it acts (`on-failure`, `on-request`, `never`).
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

fn request(id: impl Into<Value>, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id.into(), "method": method, "params": params}).to_string()
}

/// `initialize`: answered at once, without a model call (the readiness probe).
pub fn initialize(id: impl Into<Value>) -> String {
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
pub fn thread_start(id: impl Into<Value>, cwd: &str) -> String {
    request(id, "thread/start", json!({"cwd": cwd}))
}

/// `thread/resume`: continues the thread `thread_id` (its history is in `CODEX_HOME`).
pub fn thread_resume(id: impl Into<Value>, thread_id: &str, cwd: &str) -> String {
    request(
        id,
        "thread/resume",
        json!({"threadId": thread_id, "cwd": cwd, "excludeTurns": true}),
    )
}

/// `turn/start`: delivers a user message.
pub fn turn_start(id: impl Into<Value>, thread_id: &str, text: &str) -> String {
    request(
        id,
        "turn/start",
        json!({"threadId": thread_id, "input": [{"type": "text", "text": text}]}),
    )
}

/// `turn/interrupt`: ends the running turn (it then completes with status `interrupted`).
pub fn turn_interrupt(id: impl Into<Value>, thread_id: &str, turn_id: &str) -> String {
    request(
        id,
        "turn/interrupt",
        json!({"threadId": thread_id, "turnId": turn_id}),
    )
}

/// `thread/compact/start`: compacts the thread's context.
pub fn compact(id: impl Into<Value>, thread_id: &str) -> String {
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
    let v = super::event::json_object(line)?;
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
                    // `command` is the whole shell line (`/bin/bash -lc '...'`); the parsed
                    // `commandActions` hold what it runs (joined with `&&` when several, which
                    // no allow rule covers).
                    let shell = p.get("command").map(as_text).unwrap_or_default();
                    let actions: Vec<String> = p
                        .get("commandActions")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(|x| st(x, "/command")).collect())
                        .unwrap_or_default();
                    let command = if actions.is_empty() {
                        shell.clone()
                    } else {
                        actions.join(" && ")
                    };
                    let input = json!({"command": command, "shell": shell, "cwd": p.get("cwd")});
                    (ApprovalKind::Command, "shell".into(), input.to_string())
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
        (Some("item/started"), None)
            if st(&p, "/item/type").as_deref() == Some("commandExecution") =>
        {
            let item = &p["item"];
            Activity::ToolUse {
                id: st(item, "/id").unwrap_or_default(),
                tool: "shell".into(),
                input: json!({"command": item.get("command").map(as_text).unwrap_or_default()})
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

// ---------------------------------------------------------------------------------------------
// The adapter: `agent = "codex"` teams.

/// The Codex CLI (`agent = "codex"`): `codex app-server`, one process per session. The session
/// opens with `initialize` (answered without a model call: the readiness probe) and
/// `thread/start`, or `thread/resume` of the thread id kept with the session; each message is
/// a `turn/start` of that thread, an interrupt a `turn/interrupt` of the running turn, a
/// compaction a `thread/compact/start`. Codex reports tokens but no cost: Switchboard prices
/// turns from `[settings.prices]`. Its approval requests become Switchboard permission
/// requests (MCP tools as `mcp__<server>__<tool>`, commands as `Bash`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Codex;

/// Request ids of the session's opening (strings: Codex accepts any JSON-RPC id).
const OPEN_INIT: &str = "open-initialize";
const OPEN_START: &str = "open-thread-start";
const OPEN_RESUME: &str = "open-thread-resume";
/// Prefixes of the ids of requests that start a turn (their failure ends the turn).
const TURN_PREFIX: &str = "turn-";
const COMPACT_PREFIX: &str = "compact-";
/// The provider id Switchboard gives a team's `[teams.NAME.provider]` in Codex's config.
const PROVIDER_ID: &str = "switchboard";
/// The Responses API of a team with no `[teams.NAME.provider]`.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// Retries of a failed model request when the team does not say (`max_retries`).
pub const DEFAULT_MAX_RETRIES: u32 = 2;

/// The team's private `CODEX_HOME`: `<data folder>/codex/<team>`.
pub fn codex_home(data_dir: &std::path::Path, team: &str) -> PathBuf {
    data_dir.join("codex").join(team)
}

/// The variable holding the API key of `team`'s agent: the provider's `env_key`, else
/// `OPENAI_API_KEY`.
pub fn key_var(team: &TeamConfig) -> String {
    team.provider
        .as_ref()
        .and_then(|p| p.env_key.clone())
        .unwrap_or_else(|| "OPENAI_API_KEY".to_string())
}

/// How `team`'s Codex agent runs, its `CODEX_HOME` under `data_dir`.
pub fn setup_of(team: &TeamConfig, data_dir: &std::path::Path) -> CodexSetup {
    let mut setup = CodexSetup::new(&team.path, codex_home(data_dir, &team.name));
    if let Some(program) = &team.agent_path {
        setup.program.clone_from(program);
    }
    setup.model.clone_from(&team.model);
    // Always a provider of Switchboard's (OpenAI's API when the team names none): Codex's
    // built-in providers cannot be given retry counts, so `max_retries` would not apply.
    setup.provider = Some(Provider {
        id: PROVIDER_ID.to_string(),
        base_url: team
            .provider
            .as_ref()
            .map_or_else(|| OPENAI_BASE_URL.to_string(), |p| p.base_url.clone()),
        env_key: key_var(team),
    });
    setup.max_retries = team.max_retries.unwrap_or(DEFAULT_MAX_RETRIES);
    // With `[permissions]`, Codex asks and Switchboard decides; without, nobody is there to
    // ask, so Codex decides alone inside its sandbox (as a Claude team denies by itself).
    setup.approval_policy = team.approval_policy.clone().unwrap_or_else(|| {
        if team.permissions.is_some() {
            "on-request".into()
        } else {
            "never".into()
        }
    });
    if let Some(sandbox) = &team.sandbox {
        setup.sandbox_mode.clone_from(sandbox);
    }
    setup.env.clone_from(&team.env);
    setup.env_passthrough.clone_from(&team.env_passthrough);
    // The key comes from Switchboard's environment unless the team sets it.
    setup.env_passthrough.push(key_var(team));
    setup.args.clone_from(&team.args);
    setup
}

/// Writes the team's `CODEX_HOME` (private) and its `config.toml` when it changed.
fn write_home(setup: &CodexSetup) -> std::io::Result<()> {
    crate::private_fs::create_dir_all(&setup.codex_home)?;
    let path = setup.codex_home.join("config.toml");
    let text = config_toml(setup);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        // Whole or not at all: another session of the team may be starting Codex right now.
        let tmp = setup
            .codex_home
            .join(format!(".config.toml.{}", uuid::Uuid::new_v4().simple()));
        crate::private_fs::write(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
    }
    Ok(())
}

impl AgentAdapter for Codex {
    fn name(&self) -> &'static str {
        "codex"
    }

    fn launch(
        &self,
        team: &TeamConfig,
        session: &SessionRef<'_>,
        extras: &LaunchExtras,
    ) -> LaunchSpec {
        // New and resumed sessions launch alike: the thread is chosen in `opening`.
        let _ = session;
        let data_dir = extras
            .data_dir
            .clone()
            .or_else(crate::util::data_dir)
            .unwrap_or_else(std::env::temp_dir);
        let setup = setup_of(team, &data_dir);
        if extras.data_dir.is_some() {
            // A failure shows as Codex's own start-up error ("CODEX_HOME ... does not exist").
            if let Err(e) = write_home(&setup) {
                tracing::warn!(team = %team.name, error = %e, home = %setup.codex_home.display(), "cannot write the team's CODEX_HOME");
            }
        }
        launch(&setup, extras.switchboard.as_ref())
    }

    fn can_resume(&self, _team: &TeamConfig, session: &SessionRef<'_>) -> bool {
        // Resuming a thread Codex no longer has falls back to a new one (`reopening`).
        session.agent_session_id.is_some()
    }

    fn opening(&self, cwd: &std::path::Path, resume: Option<&str>) -> Vec<String> {
        let cwd = cwd.display().to_string();
        vec![
            initialize(OPEN_INIT),
            initialized(),
            match resume {
                Some(thread) => thread_resume(OPEN_RESUME, thread, &cwd),
                None => thread_start(OPEN_START, &cwd),
            },
        ]
    }

    fn reopening(&self, cwd: &std::path::Path, request_id: &str) -> Option<String> {
        (request_id == OPEN_RESUME).then(|| thread_start(OPEN_START, &cwd.display().to_string()))
    }

    fn track(&self, event: &AgentEvent, conv: &mut Conversation) {
        match event {
            AgentEvent::Init {
                session_id: Some(id),
            } => conv.id = Some(id.clone()),
            AgentEvent::Other { kind, raw } if kind == "turn/started" => {
                conv.turn = raw.get("turnId").and_then(Value::as_str).map(String::from);
            }
            AgentEvent::Result(_) => conv.turn = None,
            _ => {}
        }
    }

    fn encode_input(&self, conv: &Conversation, input: Input<'_>) -> Option<String> {
        let thread = conv.id.as_deref()?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        Some(match input {
            Input::Message(text) => turn_start(format!("{TURN_PREFIX}{id}"), thread, text),
            Input::Compact => compact(format!("{COMPACT_PREFIX}{id}"), thread),
            Input::Interrupt(request) => turn_interrupt(
                format!("interrupt-{request}"),
                thread,
                conv.turn.as_deref()?,
            ),
        })
    }

    /// Codex takes a message only in a thread it named: see [`AgentAdapter::encode_input`]
    /// (this line names no thread, and Codex refuses it).
    fn encode_message(&self, text: &str) -> String {
        turn_start(format!("{TURN_PREFIX}unthreaded"), "", text)
    }

    /// As [`Codex::encode_message`]: the turn to interrupt is named in `encode_input`.
    fn encode_interrupt(&self, request_id: &str) -> String {
        turn_interrupt(format!("interrupt-{request_id}"), "", "")
    }

    fn permission_ask(&self, request: &Value) -> Option<PermissionAsk> {
        if request.get("subtype").and_then(Value::as_str) != Some("codex_approval") {
            return None;
        }
        Some(PermissionAsk {
            tool: request.get("tool")?.as_str()?.to_string(),
            input: request.get("input").cloned().unwrap_or(json!({})),
            tool_use_id: None,
        })
    }

    fn encode_permission(
        &self,
        request_id: &str,
        allow: bool,
        _input: &Value,
        _message: &str,
    ) -> Option<String> {
        let (kind, id) = request_id.split_once(':')?;
        let kind = match kind {
            "mcp" => ApprovalKind::McpTool,
            "command" => ApprovalKind::Command,
            "file" => ApprovalKind::FileChange,
            other => ApprovalKind::Other(other.to_string()),
        };
        let id: Value = serde_json::from_str(id).ok()?;
        Some(approval_answer(&id, &kind, allow))
    }

    /// The tell's text; the request itself is `thread/compact/start` (see `encode_input`).
    fn compact_text(&self) -> Option<&'static str> {
        Some("/compact")
    }

    fn credentials(&self, team: &TeamConfig) -> Result<String, String> {
        let name = key_var(team);
        match super::checks::team_var(team, &name) {
            Some((_, from)) => Ok(format!("{name} set in {from}")),
            None => Err(format!(
                "{name} is not set (the team's env or Switchboard's environment); Codex runs with \
                 a private CODEX_HOME, so a `codex login` of the user's does not count"
            )),
        }
    }

    fn decode(&self, line: &[u8]) -> Result<AgentEvent, BadLine> {
        CodexDecoder::default().decode(line)
    }

    fn decoder(&self) -> Option<Box<dyn LineDecoder>> {
        Some(Box::<CodexDecoder>::default())
    }

    fn reports_cost(&self) -> bool {
        false
    }

    /// Codex names a thread's file by its own thread id and date
    /// (`CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<thread>.jsonl`), not by Switchboard's
    /// session id.
    fn transcript_path(&self, _team: &TeamConfig, _session_id: &str) -> Option<PathBuf> {
        None
    }
}

/// The decoder of one `codex app-server` process: folds each turn's activity into the
/// turn's one [`AgentEvent::Result`] (the answer is the last agent message; tokens are summed
/// over the turn's model calls), and remembers the thread and its model.
#[derive(Debug, Default)]
pub struct CodexDecoder {
    tally: TurnTally,
    in_turn: bool,
    /// Tokens of the last model call (input and output): the context's size then.
    context: Option<i64>,
    /// [`CodexDecoder::context`] when the running turn started.
    context_at_start: Option<i64>,
    thread: Option<String>,
    model: Option<String>,
}

impl CodexDecoder {
    fn result(&mut self, outcome: TurnOutcome, duration_ms: Option<i64>) -> AgentEvent {
        let tally = std::mem::take(&mut self.tally);
        self.in_turn = false;
        let answer = tally.answer().map(String::from);
        let (subtype, is_error, text, reason) = match outcome {
            TurnOutcome::Completed => ("success", false, answer, "completed"),
            TurnOutcome::Interrupted => ("success", false, answer, "aborted_streaming"),
            TurnOutcome::Failed(why) => ("error", true, Some(why), "api_error"),
        };
        AgentEvent::Result(TurnResult {
            subtype: subtype.to_string(),
            is_error,
            text,
            usage: Usage {
                input_tokens: tally.tokens.input,
                output_tokens: tally.tokens.output,
                cached_input_tokens: tally.tokens.cached,
            },
            cost_usd: 0.0,
            duration_ms: duration_ms.or(tally.duration_ms),
            num_turns: None,
            session_id: self.thread.clone(),
            model: self.model.clone(),
            terminal_reason: Some(reason.to_string()),
            stop_reason: None,
        })
    }

    fn note_thread(&mut self, thread: &Value) {
        if let Some(m) = st(thread, "/model") {
            self.model = Some(m);
        }
    }
}

/// A tool of Codex (`<server>.<tool>` for MCP tools, `shell`) by Switchboard's names, which
/// `[permissions]` rules use: `mcp__<server>__<tool>`, `Bash`.
fn tool_name(tool: &str) -> String {
    match tool.split_once('.') {
        Some((server, name)) => format!("mcp__{server}__{name}"),
        None if tool == "shell" => "Bash".to_string(),
        None => tool.to_string(),
    }
}

fn parse_input(input: &str) -> Value {
    serde_json::from_str(input).unwrap_or_else(|_| Value::String(input.to_string()))
}

impl LineDecoder for CodexDecoder {
    fn decode(&mut self, line: &[u8]) -> Result<AgentEvent, BadLine> {
        let activity = decode(line)?;
        let other = |kind: &str| AgentEvent::Other {
            kind: kind.to_string(),
            raw: Value::Null,
        };
        Ok(match activity {
            Activity::Response { id, result } => {
                let rid = match &id {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                match result {
                    Ok(r) => {
                        if let Some(thread) = thread_id_of(&r) {
                            self.note_thread(&r["thread"]);
                            if let Some(m) = st(&r, "/model") {
                                self.model = Some(m);
                            }
                            self.thread = Some(thread.clone());
                            AgentEvent::Init {
                                session_id: Some(thread),
                            }
                        } else if let Some(turn) = turn_id_of(&r) {
                            AgentEvent::Other {
                                kind: "turn/started".into(),
                                raw: json!({ "turnId": turn }),
                            }
                        } else {
                            AgentEvent::ControlResponse {
                                request_id: Some(rid),
                                success: true,
                                error: None,
                            }
                        }
                    }
                    // A turn that could not start ends here, with Codex's reason.
                    Err(e)
                        if !self.in_turn
                            && (rid.starts_with(TURN_PREFIX)
                                || rid.starts_with(COMPACT_PREFIX)) =>
                    {
                        self.result(TurnOutcome::Failed(e), None)
                    }
                    Err(e) => AgentEvent::ControlResponse {
                        request_id: Some(rid),
                        success: false,
                        error: Some(e),
                    },
                }
            }
            Activity::Session { id } => {
                if let Ok(v) = serde_json::from_slice::<Value>(line.trim_ascii()) {
                    self.note_thread(&v["params"]["thread"]);
                }
                self.thread = Some(id.clone());
                AgentEvent::Init {
                    session_id: Some(id),
                }
            }
            Activity::TurnStarted { turn_id } => {
                self.context_at_start = self.context;
                self.tally = TurnTally::default();
                self.in_turn = true;
                match turn_id {
                    Some(turn) => AgentEvent::Other {
                        kind: "turn/started".into(),
                        raw: json!({ "turnId": turn }),
                    },
                    None => other("turn/started"),
                }
            }
            a @ Activity::Text { .. } => {
                self.tally.add(&a);
                let Activity::Text { text, .. } = a else {
                    unreachable!()
                };
                AgentEvent::Assistant {
                    text: Some(text),
                    message_id: None,
                    tool_uses: Vec::new(),
                }
            }
            Activity::ToolUse { id, tool, input } => AgentEvent::Assistant {
                text: None,
                message_id: None,
                tool_uses: vec![ToolCall {
                    id,
                    name: tool_name(&tool),
                    input: parse_input(&input),
                }],
            },
            Activity::ToolResult { id, ok, output } => AgentEvent::User {
                tool_results: vec![ToolOutput {
                    tool_use_id: id,
                    is_error: !ok,
                    content: output,
                }],
            },
            a @ Activity::Usage(t) => {
                // (Codex reports an empty usage after a compaction's own call.)
                if t.input + t.output > 0 {
                    self.context = Some(t.input + t.output);
                }
                // Resuming replays the last turn's usage before any turn starts.
                if self.in_turn {
                    self.tally.add(&a);
                }
                other("thread/tokenUsage/updated")
            }
            // Codex says no sizes; the last model call before the compaction's turn (input
            // and output) is the context it compacted. (The compaction's own call, reported
            // before this item, carries the history plus the summary prompt.)
            Activity::Compacted => AgentEvent::CompactBoundary {
                trigger: Some("manual".into()),
                pre_tokens: self.context_at_start,
                post_tokens: None,
            },
            Activity::Status { text } => AgentEvent::Status { status: Some(text) },
            Activity::Error {
                message,
                will_retry: true,
            } => AgentEvent::ApiRetry {
                attempt: None,
                max_retries: None,
                error_status: None,
                error: Some(message),
                retry_delay_ms: None,
            },
            a @ Activity::Error { .. } => {
                self.tally.add(&a);
                let Activity::Error { message, .. } = a else {
                    unreachable!()
                };
                AgentEvent::Status {
                    status: Some(message),
                }
            }
            Activity::Approval {
                request,
                kind,
                tool,
                input,
            } => {
                let (prefix, tool, input) = match &kind {
                    ApprovalKind::McpTool => ("mcp", tool_name(&tool), parse_input(&input)),
                    ApprovalKind::Command => ("command", "Bash".to_string(), parse_input(&input)),
                    ApprovalKind::FileChange => {
                        ("file", "Edit".to_string(), json!({"reason": input}))
                    }
                    ApprovalKind::Other(_) => ("other", tool, parse_input(&input)),
                };
                AgentEvent::ControlRequest {
                    request_id: Some(format!("{prefix}:{request}")),
                    request: json!({"subtype": "codex_approval", "tool": tool, "input": input}),
                }
            }
            Activity::TurnEnd {
                outcome,
                tokens,
                duration_ms,
            } => {
                if let Some(t) = tokens {
                    self.tally.tokens = t;
                }
                self.result(outcome, duration_ms)
            }
            Activity::Ready => other("ready"),
            Activity::Other { kind } => other(&kind),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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

    #[test]
    fn the_adapter_folds_a_turn_into_one_result_and_maps_approvals() {
        let mut dec = CodexDecoder::default();
        let mut ev = |line: &str| {
            LineDecoder::decode(&mut dec, line.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
        };
        let thread = "01a248e2-f71b-7231-8070-ca13cf7d0108";
        assert_eq!(
            ev(THREAD_STARTED),
            AgentEvent::Init {
                session_id: Some(thread.into())
            }
        );
        // A usage replayed before any turn (on resume) is not the next turn's.
        ev(USAGE);
        ev(TURN_STARTED);
        ev(TOOL_STARTED);
        ev(TOOL_DONE);
        ev(USAGE);
        ev(MESSAGE);
        ev(USAGE);
        match ev(COMPLETED) {
            AgentEvent::Result(r) => {
                assert!(!r.is_error);
                assert_eq!(r.text.as_deref(), Some("first answer"));
                assert_eq!(
                    r.usage,
                    Usage {
                        input_tokens: 22,
                        output_tokens: 10,
                        cached_input_tokens: 6
                    }
                );
                assert_eq!(r.model.as_deref(), Some("gpt-test"));
                assert_eq!(r.session_id.as_deref(), Some(thread));
                assert_eq!(r.cost_usd, 0.0);
                assert!(matches!(
                    r.ending(),
                    super::super::event::TurnEnding::Complete(_)
                ));
            }
            other => panic!("{other:?}"),
        }
        // An interrupted turn is a partial answer; a failed one carries Codex's reason.
        ev(TURN_STARTED);
        match ev(INTERRUPTED) {
            AgentEvent::Result(r) => assert!(
                matches!(r.ending(), super::super::event::TurnEnding::Partial { .. }),
                "{r:?}"
            ),
            other => panic!("{other:?}"),
        }
        ev(TURN_STARTED);
        assert!(matches!(ev(RETRYING), AgentEvent::ApiRetry { .. }));
        match ev(FAILED) {
            AgentEvent::Result(r) => {
                assert!(r.is_error);
                assert!(r.error_in_words().contains("high demand"), "{r:?}");
            }
            other => panic!("{other:?}"),
        }
        // A turn/start Codex refuses ends the turn it would have started.
        match ev(r#"{"id":"turn-1","error":{"code":-32600,"message":"thread not loaded"}}"#) {
            AgentEvent::Result(r) => assert_eq!(r.text.as_deref(), Some("thread not loaded")),
            other => panic!("{other:?}"),
        }
        // A refused resume is a failed control response, which `reopening` answers.
        assert_eq!(
            ev(
                r#"{"id":"open-thread-resume","error":{"code":-32600,"message":"no rollout found"}}"#
            ),
            AgentEvent::ControlResponse {
                request_id: Some(OPEN_RESUME.into()),
                success: false,
                error: Some("no rollout found".into())
            }
        );
        assert!(Codex.reopening(Path::new("/w"), OPEN_RESUME).is_some());
        assert!(Codex.reopening(Path::new("/w"), OPEN_START).is_none());

        // An approval request: Switchboard's tool name, answered with Codex's id and kind.
        let AgentEvent::ControlRequest {
            request_id: Some(id),
            request,
        } = ev(APPROVAL)
        else {
            panic!("not a control request")
        };
        let ask = Codex
            .permission_ask(&request)
            .expect("a permission request");
        assert_eq!(ask.tool, "mcp__echo__echo");
        assert_eq!(ask.input, json!({"text": "hi"}));
        let answer: Value = serde_json::from_str(
            &Codex
                .encode_permission(&id, true, &ask.input, "")
                .expect("an answer"),
        )
        .expect("json");
        assert_eq!(answer["id"], 0);
        assert_eq!(answer["result"]["action"], "accept");
    }

    #[test]
    fn messages_name_the_thread_and_interrupts_the_running_turn() {
        let mut conv = Conversation::default();
        assert!(Codex.encode_input(&conv, Input::Message("hi")).is_none());
        conv.id = Some("t1".into());
        let line = Codex
            .encode_input(&conv, Input::Message("hi"))
            .expect("line");
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["method"], "turn/start");
        assert_eq!(v["params"]["threadId"], "t1");
        assert!(v["id"]
            .as_str()
            .is_some_and(|id| id.starts_with(TURN_PREFIX)));
        assert!(Codex.encode_input(&conv, Input::Interrupt("x")).is_none());
        Codex.track(
            &AgentEvent::Other {
                kind: "turn/started".into(),
                raw: json!({"turnId": "u1"}),
            },
            &mut conv,
        );
        let v: Value = serde_json::from_str(
            &Codex
                .encode_input(&conv, Input::Interrupt("x"))
                .expect("line"),
        )
        .expect("json");
        assert_eq!(v["params"], json!({"threadId": "t1", "turnId": "u1"}));
        let v: Value =
            serde_json::from_str(&Codex.encode_input(&conv, Input::Compact).expect("line"))
                .expect("json");
        assert_eq!(v["method"], "thread/compact/start");
        // Opening: initialize, initialized, then start or resume.
        let open = Codex.opening(Path::new("/w"), Some("t1"));
        assert_eq!(open.len(), 3);
        assert!(open[2].contains("thread/resume") && open[2].contains("\"t1\""));
        assert!(Codex.opening(Path::new("/w"), None)[2].contains("thread/start"));
    }

    #[test]
    fn a_team_without_a_provider_gets_openais_api_with_bounded_retries() {
        let config = crate::config::TeamsConfig::parse(
            "[database]\nin_memory = true\n[teams.t]\npath = \"/tmp\"\nagent = \"codex\"\nmax_retries = 5\n",
            None,
            &|_| None,
        )
        .expect("config");
        let team = &config.teams["t"];
        let setup = setup_of(team, Path::new("/data"));
        assert_eq!(setup.codex_home, Path::new("/data/codex/t"));
        let t: toml::Table = config_toml(&setup).parse().expect("toml");
        let p = &t["model_providers"][PROVIDER_ID];
        assert_eq!(p["base_url"].as_str(), Some(OPENAI_BASE_URL));
        assert_eq!(p["env_key"].as_str(), Some("OPENAI_API_KEY"));
        assert_eq!(p["request_max_retries"].as_integer(), Some(5));
        // Nobody to ask without [permissions]: Codex does not ask.
        assert_eq!(t["approval_policy"].as_str(), Some("never"));
        assert_eq!(t["sandbox_mode"].as_str(), Some("workspace-write"));
    }

    #[test]
    fn the_teams_codex_home_is_private_and_follows_the_config() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut setup = CodexSetup::new("/w", dir.path().join("data/codex/t"));
        setup.model = Some("one".into());
        write_home(&setup).expect("write");
        let path = setup.codex_home.join("config.toml");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&setup.codex_home), 0o700);
        assert_eq!(mode(&path), 0o600);
        setup.model = Some("two".into());
        write_home(&setup).expect("rewrite");
        let t: toml::Table = std::fs::read_to_string(&path)
            .expect("read")
            .parse()
            .expect("toml");
        assert_eq!(t["model"].as_str(), Some("two"));
        let names: Vec<_> = std::fs::read_dir(&setup.codex_home)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["config.toml"], "no temporary file left");
    }
}
