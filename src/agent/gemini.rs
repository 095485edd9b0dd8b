//! The Gemini CLI (npm `@google/gemini-cli`, pinned 0.61.0) run headless, one process per turn:
//! `gemini -p "" --output-format stream-json (--session-id ID | --resume ID)` with the message
//! on stdin, printing one JSON object per line (`init`, `message`, `tool_use`, `tool_result`,
//! `result`). See docs/gemini-protocol.md for what was observed and why this mode and not
//! `--acp` (on 0.61.0 `session/load` cannot find a session that ACP itself created, so a
//! conversation does not survive its process).
//!
//! The pure pieces: the private `HOME/.gemini/settings.json` (API-key auth, bounded attempts,
//! no update check, no usage statistics, Switchboard's MCP endpoint trusted, its header values
//! read from the environment), the launch of one turn (argv, env), and the decoder of its lines
//! into [`Activity`]. Then the adapter, [`Gemini`] ([`ProcessModel::PerTurn`]): each session
//! has its own home, `<Switchboard's data folder>/gemini/<team>/<session id>` (never the
//! user's `~/.gemini`), whose settings file is put in place at each spawn; its decoder,
//! [`TurnDecoder`], maps the activity onto Switchboard's events, one `Result` per turn.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::activity::{as_text, Activity, Tokens, TurnOutcome};
use super::adapter::{
    AgentAdapter, LaunchExtras, LaunchSpec, LineDecoder, ProcessModel, SessionRef,
    SwitchboardServer, BASE_ENV,
};
use super::event::{AgentEvent, BadLine, ToolCall, ToolOutput, TurnResult, Usage};
use crate::config::TeamConfig;

/// Variables of Switchboard's environment a Gemini agent gets besides [`BASE_ENV`]: its API
/// key and endpoint, and Google Cloud settings (`HOME` is always set by the launch).
pub const GEMINI_ENV: &[&str] = &[
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_GENAI_USE_VERTEXAI",
];

/// The name of Switchboard's MCP server in the settings (its tools are
/// `mcp_switchboard_<tool>`).
pub const SERVER_NAME: &str = "switchboard";

/// Everything that decides how a team's Gemini agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeminiSetup {
    /// The executable (`gemini`, or the team's `agent_path`).
    pub program: String,
    /// The team's folder.
    pub cwd: PathBuf,
    /// The team's private `HOME` (under Switchboard's data folder): `.gemini/settings.json`,
    /// the sessions (`.gemini/tmp/<project>/chats/`); never the user's own.
    pub home: PathBuf,
    /// The model (`-m`). Without one Gemini uses "auto", which makes an extra routing call
    /// per turn.
    pub model: Option<String>,
    /// `general.maxAttempts`: tries of one model request (Gemini's own default is 10).
    pub max_attempts: u32,
    /// The team's `env` (wins over what is inherited).
    pub env: BTreeMap<String, String>,
    /// More variables of Switchboard's environment to pass on.
    pub env_passthrough: Vec<String>,
    /// More arguments after Switchboard's.
    pub args: Vec<String>,
}

impl GeminiSetup {
    /// A setup with Switchboard's defaults: `gemini`, 3 attempts.
    pub fn new(cwd: impl Into<PathBuf>, home: impl Into<PathBuf>) -> Self {
        Self {
            program: "gemini".into(),
            cwd: cwd.into(),
            home: home.into(),
            model: None,
            max_attempts: 3,
            env: BTreeMap::new(),
            env_passthrough: Vec::new(),
            args: Vec::new(),
        }
    }

    /// Where the settings file goes: `HOME/.gemini/settings.json`.
    pub fn settings_path(&self) -> PathBuf {
        self.home.join(".gemini").join("settings.json")
    }
}

/// The team's `HOME/.gemini/settings.json`. Switchboard's endpoint is `trust`ed (headless,
/// an untrusted MCP server's tools are not even offered) and its header values are `$VAR`
/// references that each launch fills in ([`launch_turn`]), so the file holds no secret and
/// serves every session of the team.
pub fn settings_json(setup: &GeminiSetup, switchboard: Option<&SwitchboardServer>) -> Value {
    let mut settings = json!({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "general": {
            "maxAttempts": setup.max_attempts,
            "enableAutoUpdate": false,
            "enableAutoUpdateNotification": false,
        },
        "privacy": {"usageStatisticsEnabled": false},
        "telemetry": {"enabled": false},
    });
    if let Some(server) = switchboard {
        let headers: serde_json::Map<String, Value> = server
            .header_vars()
            .into_iter()
            .map(|(name, var, _)| (name, json!(format!("${var}"))))
            .collect();
        settings["mcpServers"] = json!({SERVER_NAME: {
            "httpUrl": server.url,
            "headers": headers,
            "trust": true,
            "timeout": server.timeout_ms,
        }});
    }
    settings
}

/// How to run one turn of a session: `gemini -p "" --output-format stream-json` with
/// `--session-id ID` for the first turn and `--resume ID` after, the message on stdin (not in
/// argv: no length limit, not in the process list). `HOME` is the team's;
/// `GEMINI_CLI_TRUST_WORKSPACE` trusts the team's folder (else headless Gemini exits 55).
pub fn launch_turn(
    setup: &GeminiSetup,
    session_id: &str,
    resume: bool,
    switchboard: Option<&SwitchboardServer>,
) -> LaunchSpec {
    let mut args: Vec<String> = ["-p", "", "--output-format", "stream-json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(model) = &setup.model {
        args.push("-m".into());
        args.push(model.clone());
    }
    args.push(if resume { "--resume" } else { "--session-id" }.into());
    args.push(session_id.into());
    args.extend(setup.args.iter().cloned());
    let mut env = setup.env.clone();
    env.insert("HOME".into(), setup.home.display().to_string());
    env.insert("GEMINI_CLI_TRUST_WORKSPACE".into(), "true".into());
    if let Some(server) = switchboard {
        for (_, var, value) in server.header_vars() {
            env.insert(var, value);
        }
    }
    LaunchSpec {
        program: setup.program.clone(),
        args,
        cwd: setup.cwd.clone(),
        env,
        inherit: BASE_ENV
            .iter()
            .chain(GEMINI_ENV)
            .map(|s| s.to_string())
            .chain(setup.env_passthrough.iter().cloned())
            .collect(),
        env_remove: Vec::new(),
    }
}

/// Where Gemini keeps a team's sessions: `HOME/.gemini/tmp/<project>/chats/session-<start
/// time>-<first 8 characters of the id>.jsonl`, where `<project>` is a short name Gemini picks
/// for the folder (listed in `HOME/.gemini/projects.json`).
pub fn sessions_root(setup: &GeminiSetup) -> PathBuf {
    setup.home.join(".gemini").join("tmp")
}

/// Whether the team's home holds a session with this id that Gemini can resume (so the next
/// turn is a `--resume`): its file has a message of the conversation (see [`resumable`]).
pub fn has_session(setup: &GeminiSetup, session_id: &str) -> bool {
    session_file(setup, session_id).is_some_and(|f| resumable(&f))
}

/// Whether Gemini 0.61.0 resumes the session of this file: it lists only sessions with a
/// message of the conversation (a user's text other than Gemini's own `<session_context>`, or
/// a model message with text or tool calls). A first turn that failed leaves a file without
/// one (Gemini takes the failed message back): `--resume` then fails ("No previous sessions
/// found") and `--session-id` too ("already exists"), so that file is removed and the
/// conversation starts anew. The file is JSON lines: a header, messages (`{"id","type",
/// "content",...}`), and `{"$set":{"messages":[...]}}` lines that replace them all.
pub fn resumable(file: &std::path::Path) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    let mut messages: Vec<Value> = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let Some(all) = v.pointer("/$set/messages").and_then(Value::as_array) {
            messages.clone_from(all);
        } else if v.get("id").is_some() && v.get("type").is_some() {
            match messages
                .iter_mut()
                .find(|m| m.get("id").is_some() && m.get("id") == v.get("id"))
            {
                Some(m) => *m = v,
                None => messages.push(v),
            }
        }
    }
    messages.iter().any(|m| {
        let text = match m.get("content") {
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let text = text.trim();
        match m.get("type").and_then(Value::as_str) {
            Some("user") => !text.is_empty() && !text.starts_with("<session_context>"),
            Some("gemini") => {
                !text.is_empty()
                    || m.get("toolCalls")
                        .and_then(Value::as_array)
                        .is_some_and(|c| !c.is_empty())
            }
            _ => false,
        }
    })
}

/// The launch of the next turn of `session_id`: `--resume` when Gemini can resume it, else
/// `--session-id` once what is left of a session it cannot resume is removed.
fn turn_args(setup: &GeminiSetup, session_id: &str, args: &mut [String]) {
    let resume = match session_file(setup, session_id) {
        Some(file) if resumable(&file) => true,
        Some(file) => {
            if let Err(e) = std::fs::remove_file(&file) {
                tracing::warn!(file = %file.display(), error = %e, "cannot remove a Gemini session that cannot be resumed");
            }
            false
        }
        None => false,
    };
    // Switchboard's own arguments come before the team's: the first flag is ours.
    if let Some(flag) = args
        .iter_mut()
        .find(|a| *a == "--session-id" || *a == "--resume")
    {
        *flag = if resume { "--resume" } else { "--session-id" }.into();
    }
}

/// The file of the session with this id in the team's home, if there is one.
pub fn session_file(setup: &GeminiSetup, session_id: &str) -> Option<PathBuf> {
    let prefix = session_id.get(..8)?;
    let suffix = format!("-{prefix}.jsonl");
    let projects = std::fs::read_dir(sessions_root(setup)).ok()?;
    projects.flatten().find_map(|project| {
        std::fs::read_dir(project.path().join("chats"))
            .ok()?
            .flatten()
            .find(|f| {
                let name = f.file_name();
                let name = name.to_string_lossy();
                name.starts_with("session-")
                    && name.ends_with(&suffix)
                    && std::fs::read_to_string(f.path())
                        .map(|t| t.contains(session_id))
                        .unwrap_or(false)
            })
            .map(|f| f.path())
    })
}

/// Exit codes of Gemini CLI 0.61.0 in words (its `Fatal*Error` classes), for errors (the
/// `result` line usually says more).
pub fn exit_in_words(code: i32) -> Option<&'static str> {
    Some(match code {
        1 => "the turn failed (see the agent's error)",
        41 => "no usable authentication (set GEMINI_API_KEY, and security.auth.selectedType)",
        42 => "bad input or arguments",
        44 => "the sandbox failed",
        52 => "the settings file is invalid",
        53 => "the turn reached the agent's limit of turns",
        54 => "a tool failed fatally",
        55 => "the team folder is not a trusted workspace",
        130 => "the turn was cancelled",
        _ => return None,
    })
}

/// Decodes one line of `gemini --output-format stream-json`.
pub fn decode(line: &[u8]) -> Result<Activity, BadLine> {
    let v = super::event::json_object(line)?;
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    Ok(match kind {
        "init" => match super::event::s(&v, "session_id") {
            Some(id) => Activity::Session { id },
            None => Activity::Other {
                kind: "init".into(),
            },
        },
        "message" if super::event::s(&v, "role").as_deref() == Some("assistant") => {
            Activity::Text {
                text: super::event::s(&v, "content").unwrap_or_default(),
                delta: v.get("delta").and_then(Value::as_bool).unwrap_or(false),
            }
        }
        "tool_use" => Activity::ToolUse {
            id: super::event::s(&v, "tool_id").unwrap_or_default(),
            tool: super::event::s(&v, "tool_name").unwrap_or_default(),
            input: v
                .get("parameters")
                .cloned()
                .unwrap_or(Value::Null)
                .to_string(),
        },
        "tool_result" => {
            let ok = super::event::s(&v, "status").as_deref() == Some("success");
            let output = if ok {
                v.get("output").map(as_text).unwrap_or_default()
            } else {
                v.pointer("/error/message")
                    .or_else(|| v.get("error"))
                    .or_else(|| v.get("output"))
                    .map(as_text)
                    .unwrap_or_default()
            };
            Activity::ToolResult {
                id: super::event::s(&v, "tool_id").unwrap_or_default(),
                ok,
                output,
            }
        }
        "error" => Activity::Status {
            text: super::event::s(&v, "message")
                .unwrap_or_else(|| "the agent reported an error".into()),
        },
        "result" => {
            let stats = v.get("stats").cloned().unwrap_or(Value::Null);
            let n = |k: &str| stats.get(k).and_then(Value::as_i64).unwrap_or(0).max(0);
            let outcome = match super::event::s(&v, "status").as_deref() {
                Some("success") => TurnOutcome::Completed,
                _ => TurnOutcome::Failed(
                    v.pointer("/error/message")
                        .and_then(Value::as_str)
                        .map(String::from)
                        .unwrap_or_else(|| "the agent reported an error".into()),
                ),
            };
            Activity::TurnEnd {
                outcome,
                tokens: Some(Tokens {
                    input: n("input_tokens"),
                    cached: n("cached"),
                    output: n("output_tokens"),
                }),
                duration_ms: stats.get("duration_ms").and_then(Value::as_i64),
            }
        }
        other => Activity::Other {
            kind: other.to_string(),
        },
    })
}

/// Switchboard's `max_retries` for a Gemini team that sets none: 2 (3 tries of a model
/// request; Gemini's own default is 10, with backoff, minutes with the API down).
pub const DEFAULT_MAX_RETRIES: u32 = 2;

/// The Gemini CLI as an agent kind (`agent = "gemini"`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Gemini;

/// Where the sessions of `team` keep their homes: `<Switchboard's data folder>/gemini/<team>`.
pub fn team_homes(team: &TeamConfig) -> PathBuf {
    crate::util::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("gemini")
        .join(&team.name)
}

/// How `team`'s agent runs for session `session_id`: its program, folder, private home,
/// model, attempts, environment (with `[teams.NAME.provider]`: `GOOGLE_GEMINI_BASE_URL` and
/// `GEMINI_API_KEY` from the provider's `env_key`).
pub fn team_setup(team: &TeamConfig, session_id: &str) -> GeminiSetup {
    let mut setup = GeminiSetup::new(&team.path, team_homes(team).join(session_id));
    if let Some(program) = &team.agent_path {
        setup.program.clone_from(program);
    }
    setup.model.clone_from(&team.model);
    setup.max_attempts = team
        .max_retries
        .unwrap_or(DEFAULT_MAX_RETRIES)
        .saturating_add(1);
    setup.env.clone_from(&team.env);
    if let Some(provider) = &team.provider {
        setup
            .env
            .insert("GOOGLE_GEMINI_BASE_URL".into(), provider.base_url.clone());
        if let Some(key) = &provider.env_key {
            if let Some((value, _)) = super::checks::team_var(team, key) {
                setup.env.insert("GEMINI_API_KEY".into(), value);
            }
        }
    }
    setup.env_passthrough.clone_from(&team.env_passthrough);
    setup.args.clone_from(&team.args);
    setup
}

/// Puts the settings Switchboard wrote for this spawn (`config`, from
/// [`AgentAdapter::mcp_config`]) in the session's home, where Gemini reads them.
fn install_settings(config: &std::path::Path, setup: &GeminiSetup) {
    let dest = setup.settings_path();
    let copied = std::fs::read(config).and_then(|data| {
        if let Some(dir) = dest.parent() {
            crate::private_fs::create_dir_all(dir)?;
        }
        crate::private_fs::write(&dest, &data)
    });
    if let Err(e) = copied {
        // The turn then fails with Gemini's own reason (no authentication chosen).
        tracing::warn!(settings = %dest.display(), error = %e, "cannot write Gemini's settings");
    }
}

impl AgentAdapter for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn process_model(&self) -> ProcessModel {
        ProcessModel::PerTurn
    }

    fn launch(
        &self,
        team: &TeamConfig,
        session: &SessionRef<'_>,
        extras: &LaunchExtras,
    ) -> LaunchSpec {
        let setup = team_setup(team, session.session_id);
        if let Some(config) = &extras.mcp_config {
            install_settings(config, &setup);
        }
        let mut spec = launch_turn(
            &setup,
            session.session_id,
            session.resume,
            extras.switchboard.as_ref(),
        );
        if !session.resume && extras.mcp_config.is_some() {
            // A new conversation with this id: nothing of one Gemini cannot resume is in the way.
            turn_args(&setup, session.session_id, &mut spec.args);
        }
        spec
    }

    fn next_turn_launch(&self, spawned: &LaunchSpec) -> LaunchSpec {
        let mut next = spawned.clone();
        let id = next
            .args
            .iter()
            .position(|a| a == "--session-id" || a == "--resume")
            .and_then(|i| next.args.get(i + 1))
            .cloned();
        if let (Some(id), Some(home)) = (id, next.env.get("HOME")) {
            let setup = GeminiSetup::new(&next.cwd, home);
            turn_args(&setup, &id, &mut next.args);
        }
        next
    }

    fn can_resume(&self, team: &TeamConfig, session: &SessionRef<'_>) -> bool {
        has_session(&team_setup(team, session.session_id), session.session_id)
    }

    /// The whole settings file of the session's home (see [`settings_json`]): the router writes
    /// it privately for the spawn, and [`AgentAdapter::launch`] puts it in the home.
    fn mcp_config(
        &self,
        team: &TeamConfig,
        switchboard: Option<&SwitchboardServer>,
    ) -> Result<Option<Value>, super::AgentError> {
        let setup = team_setup(team, "");
        Ok(Some(settings_json(&setup, switchboard)))
    }

    fn encode_message(&self, text: &str) -> String {
        text.to_string()
    }

    fn encode_interrupt(&self, _request_id: &str) -> String {
        // Never written: a turn is interrupted with SIGTERM to its process group.
        String::new()
    }

    fn compact_text(&self) -> Option<&'static str> {
        // `/compress` is not a command headless on 0.61.0 (it reaches the model as text);
        // Gemini compresses by itself past `model.compressionThreshold`.
        None
    }

    fn credentials(&self, team: &TeamConfig) -> Result<String, String> {
        let var = |name: &str| super::checks::team_var(team, name);
        if let Some(key) = team.provider.as_ref().and_then(|p| p.env_key.as_ref()) {
            return match var(key) {
                Some((_, from)) => Ok(format!(
                    "{key} set in {from} (the provider's env_key; given to Gemini as GEMINI_API_KEY)"
                )),
                None => Err(format!(
                    "{key} (the env_key of [teams.{}.provider]) is not set in the team's env or \
                     the environment",
                    team.name
                )),
            };
        }
        match var("GEMINI_API_KEY") {
            Some((_, from)) => Ok(format!("GEMINI_API_KEY set in {from}")),
            None if var("GOOGLE_API_KEY").is_some() => Err(
                "GEMINI_API_KEY is not set (GOOGLE_API_KEY is, but Gemini's API-key sign-in, \
                 which Switchboard selects, reads GEMINI_API_KEY)"
                    .into(),
            ),
            None => Err(
                "GEMINI_API_KEY is not set in the team's env or the environment (Switchboard \
                 runs Gemini with API-key sign-in, in a home of its own: a login in ~/.gemini \
                 is not used)"
                    .into(),
            ),
        }
    }

    fn decoder(&self) -> Option<Box<dyn LineDecoder>> {
        Some(Box::new(TurnDecoder::default()))
    }

    fn reports_cost(&self) -> bool {
        false
    }

    fn transcript_path(&self, team: &TeamConfig, session_id: &str) -> Option<PathBuf> {
        session_file(&team_setup(team, session_id), session_id)
    }
}

/// The decoder of one turn's process: maps [`decode`]'s activity onto Switchboard's events.
/// The pieces of a message are joined (its text goes out with the tool call that closes it,
/// or as the answer); the `result` line becomes the turn's one `Result`, with the answer (the
/// last message), the tokens and the model that answered.
#[derive(Debug, Default)]
pub struct TurnDecoder {
    /// The message being pieced together.
    open: Option<String>,
    /// The last whole message.
    last: Option<String>,
    /// The model the `init` line named.
    model: Option<String>,
    /// The session id the `init` line named.
    session: Option<String>,
}

impl TurnDecoder {
    fn close(&mut self) -> Option<String> {
        let text = self.open.take().filter(|t| !t.trim().is_empty());
        if text.is_some() {
            self.last.clone_from(&text);
        }
        text
    }
}

impl LineDecoder for TurnDecoder {
    fn decode(&mut self, line: &[u8]) -> Result<AgentEvent, BadLine> {
        let activity = decode(line)?;
        let raw: Value = serde_json::from_slice(line.trim_ascii()).unwrap_or(Value::Null);
        let kind = raw
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        Ok(match activity {
            Activity::Session { id } => {
                self.model = super::event::s(&raw, "model");
                self.session = Some(id.clone());
                AgentEvent::Init {
                    session_id: Some(id),
                }
            }
            Activity::Text { text, delta } => {
                if delta {
                    self.open.get_or_insert_with(String::new).push_str(&text);
                } else {
                    self.close();
                    self.open = Some(text);
                }
                AgentEvent::Other { kind, raw }
            }
            Activity::ToolUse { id, tool, input } => AgentEvent::Assistant {
                text: self.close(),
                message_id: None,
                tool_uses: vec![ToolCall {
                    id,
                    name: tool,
                    input: serde_json::from_str(&input).unwrap_or(Value::String(input)),
                }],
            },
            Activity::ToolResult { id, ok, output } => AgentEvent::User {
                tool_results: vec![ToolOutput {
                    tool_use_id: id,
                    is_error: !ok,
                    content: output,
                }],
            },
            Activity::Status { text } => AgentEvent::Status { status: Some(text) },
            Activity::TurnEnd {
                outcome,
                tokens,
                duration_ms,
            } => {
                self.close();
                let answer = self.last.take();
                let tokens = tokens.unwrap_or_default();
                // The model that answered: of the turn's stats (keyed by the model the API
                // says answered), the one with the most tokens (a routing or utility call of
                // another model is small), else init's.
                let tokens_of = |v: &Value| v.get("total_tokens").and_then(Value::as_i64);
                let model = raw
                    .pointer("/stats/models")
                    .and_then(Value::as_object)
                    .and_then(|m| {
                        m.iter()
                            .max_by_key(|(_, v)| tokens_of(v).unwrap_or(0))
                            .map(|(k, _)| k.clone())
                    })
                    .or_else(|| self.model.clone());
                let (subtype, is_error, text) = match outcome {
                    TurnOutcome::Completed => ("success", false, answer),
                    TurnOutcome::Interrupted => {
                        ("interrupted", true, Some("the turn was interrupted".into()))
                    }
                    TurnOutcome::Failed(why) => ("error", true, Some(why)),
                };
                AgentEvent::Result(TurnResult {
                    subtype: subtype.into(),
                    is_error,
                    text,
                    usage: Usage {
                        input_tokens: tokens.input,
                        output_tokens: tokens.output,
                        cached_input_tokens: tokens.cached,
                    },
                    cost_usd: 0.0,
                    duration_ms,
                    num_turns: None,
                    session_id: self.session.clone(),
                    model,
                    terminal_reason: None,
                    stop_reason: None,
                })
            }
            _ => AgentEvent::Other { kind, raw },
        })
    }
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
    fn settings_trust_the_endpoint_and_keep_secrets_in_the_environment() {
        let setup = GeminiSetup::new("/work/team", "/data/gemini/team");
        let s = settings_json(&setup, Some(&server()));
        assert_eq!(s["security"]["auth"]["selectedType"], "gemini-api-key");
        assert_eq!(s["general"]["maxAttempts"], 3);
        assert_eq!(s["general"]["enableAutoUpdate"], false);
        assert_eq!(s["privacy"]["usageStatisticsEnabled"], false);
        let sb = &s["mcpServers"]["switchboard"];
        assert_eq!(sb["httpUrl"], "http://127.0.0.1:4000/mcp");
        assert_eq!(sb["trust"], true);
        assert_eq!(sb["headers"]["Authorization"], "$SWITCHBOARD_MCP_TOKEN_1");
        assert!(!s.to_string().contains("sek") && !s.to_string().contains("agent-tok"));
        assert_eq!(
            setup.settings_path(),
            PathBuf::from("/data/gemini/team/.gemini/settings.json")
        );
        assert!(settings_json(&setup, None).get("mcpServers").is_none());
    }

    #[test]
    fn a_turn_starts_or_resumes_the_session_with_the_message_on_stdin() {
        let mut setup = GeminiSetup::new("/work/team", "/data/gemini/team");
        setup.model = Some("gemini-2.5-flash".into());
        let first = launch_turn(
            &setup,
            "3b1f0c4e-1111-4000-8000-000000000001",
            false,
            Some(&server()),
        );
        assert_eq!(
            first.args,
            [
                "-p",
                "",
                "--output-format",
                "stream-json",
                "-m",
                "gemini-2.5-flash",
                "--session-id",
                "3b1f0c4e-1111-4000-8000-000000000001"
            ]
        );
        assert_eq!(first.env["HOME"], "/data/gemini/team");
        assert_eq!(first.env["GEMINI_CLI_TRUST_WORKSPACE"], "true");
        assert_eq!(first.env["SWITCHBOARD_MCP_TOKEN_2"], "agent-tok");
        assert!(!first.redacted_json().contains("agent-tok"));
        let next = launch_turn(&setup, "3b1f0c4e-1111-4000-8000-000000000001", true, None);
        assert!(next.args.windows(2).any(|w| w[0] == "--resume"));
        assert!(!next.env.contains_key("SWITCHBOARD_MCP_TOKEN_1"));
    }

    #[test]
    fn finds_a_session_by_its_file() {
        let dir = std::env::temp_dir().join(format!("sb-gemini-{}", std::process::id()));
        let setup = GeminiSetup::new("/w", &dir);
        let id = "3b1f0c4e-1111-4000-8000-000000000001";
        assert!(!has_session(&setup, id));
        let chats = dir.join(".gemini/tmp/proj/chats");
        std::fs::create_dir_all(&chats).expect("mkdir");
        std::fs::write(
            chats.join("session-2026-12-06T01-07-3b1f0c4e.jsonl"),
            format!("{{\"sessionId\":\"{id}\"}}\n{{\"id\":\"u\",\"type\":\"user\",\"content\":[{{\"text\":\"hi\"}}]}}\n"),
        )
        .expect("write");
        assert!(has_session(&setup, id));
        assert!(!has_session(&setup, "3b1f0c4e-9999-4000-8000-000000000009"));
        std::fs::remove_dir_all(&dir).ok();
    }

    // Lines captured from gemini 0.61.0 (`-p ... --output-format stream-json`).
    const LINES: &[&str] = &[
        r#"{"type":"init","timestamp":"2026-12-06T01:11:22.099Z","session_id":"3b1f0c4e-2222-4000-8000-000000000002","model":"gemini-2.5-flash"}"#,
        r#"{"type":"message","timestamp":"2026-12-06T01:11:22.105Z","role":"user","content":"use tools"}"#,
        r#"{"type":"message","timestamp":"2026-12-06T01:11:22.167Z","role":"assistant","content":"calling","delta":true}"#,
        r#"{"type":"tool_use","timestamp":"2026-12-06T01:11:22.231Z","tool_name":"mcp_echo_echo","tool_id":"mcp_echo_echo__mcp_echo_echo_1796519482167_0","parameters":{"text":"hi"}}"#,
        r#"{"type":"tool_result","timestamp":"2026-12-06T01:11:22.333Z","tool_id":"mcp_echo_echo__mcp_echo_echo_1796519482167_0","status":"success","output":"echo: hi (from echo)"}"#,
        r#"{"type":"message","timestamp":"2026-12-06T01:11:22.406Z","role":"assistant","content":"all done","delta":true}"#,
        r#"{"type":"result","timestamp":"2026-12-06T01:11:22.410Z","status":"success","stats":{"total_tokens":75,"input_tokens":63,"output_tokens":12,"cached":6,"input":57,"duration_ms":312,"tool_calls":2,"models":{"gemini-2.5-flash":{"total_tokens":75,"input_tokens":63,"output_tokens":12,"cached":6,"input":57}}}}"#,
    ];

    #[test]
    fn decodes_the_lines_gemini_prints() {
        let mut tally = super::super::activity::TurnTally::default();
        let got: Vec<Activity> = LINES
            .iter()
            .map(|l| decode(l.as_bytes()).expect("decodes"))
            .collect();
        for a in &got {
            tally.add(a);
        }
        assert_eq!(
            got[0],
            Activity::Session {
                id: "3b1f0c4e-2222-4000-8000-000000000002".into()
            }
        );
        assert!(matches!(&got[1], Activity::Other { kind } if kind == "message"));
        assert_eq!(
            got[3],
            Activity::ToolUse {
                id: "mcp_echo_echo__mcp_echo_echo_1796519482167_0".into(),
                tool: "mcp_echo_echo".into(),
                input: r#"{"text":"hi"}"#.into()
            }
        );
        assert_eq!(
            got[4],
            Activity::ToolResult {
                id: "mcp_echo_echo__mcp_echo_echo_1796519482167_0".into(),
                ok: true,
                output: "echo: hi (from echo)".into()
            }
        );
        assert_eq!(tally.messages, ["calling", "all done"]);
        assert_eq!(tally.answer(), Some("all done"));
        assert_eq!(
            tally.tokens,
            Tokens {
                input: 63,
                cached: 6,
                output: 12
            }
        );
        assert_eq!(tally.outcome, Some(TurnOutcome::Completed));
        assert_eq!(tally.duration_ms, Some(312));
        // The API down (connection refused), as 0.61.0 reports it.
        let down = br#"{"type":"result","timestamp":"2026-12-06T01:11:34.813Z","status":"error","error":{"type":"unknown","message":"[API Error: exception TypeError: fetch failed sending request]"},"stats":{"total_tokens":0,"input_tokens":0,"output_tokens":0,"cached":0,"input":0,"duration_ms":0,"tool_calls":0,"models":{}}}"#;
        match decode(down) {
            Ok(Activity::TurnEnd {
                outcome: TurnOutcome::Failed(why),
                ..
            }) => assert!(why.contains("fetch failed"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode(b"Ripgrep is not available."),
            Err(BadLine::NotJson(_))
        ));
        assert_eq!(
            exit_in_words(55),
            Some("the team folder is not a trusted workspace")
        );
    }

    #[test]
    fn the_turn_decoder_joins_messages_and_ends_with_one_result() {
        let mut d = TurnDecoder::default();
        let events: Vec<AgentEvent> = LINES
            .iter()
            .map(|l| d.decode(l.as_bytes()).expect("decodes"))
            .collect();
        assert_eq!(
            events[0],
            AgentEvent::Init {
                session_id: Some("3b1f0c4e-2222-4000-8000-000000000002".into())
            }
        );
        match &events[3] {
            AgentEvent::Assistant {
                text, tool_uses, ..
            } => {
                assert_eq!(text.as_deref(), Some("calling"));
                assert_eq!(tool_uses[0].name, "mcp_echo_echo");
                assert_eq!(tool_uses[0].input, json!({"text": "hi"}));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&events[4], AgentEvent::User { tool_results } if !tool_results[0].is_error)
        );
        let results: Vec<&TurnResult> = events
            .iter()
            .filter_map(|e| match e {
                AgentEvent::Result(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(results.len(), 1);
        let r = results[0];
        assert!(!r.is_error);
        assert_eq!(r.text.as_deref(), Some("all done"));
        assert_eq!(r.model.as_deref(), Some("gemini-2.5-flash"));
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 63,
                output_tokens: 12,
                cached_input_tokens: 6
            }
        );
        assert!(!Gemini.reports_cost());
        // With "auto", a small routing call of another model: the answering one is priced.
        let mut d = TurnDecoder::default();
        d.decode(br#"{"type":"init","session_id":"s","model":"auto"}"#)
            .expect("init");
        let end = br#"{"type":"result","status":"success","stats":{"input_tokens":110,"output_tokens":12,"cached":0,"models":{"gemini-2.5-flash-lite":{"total_tokens":12},"gemini-2.5-pro":{"total_tokens":110}}}}"#;
        match d.decode(end) {
            Ok(AgentEvent::Result(r)) => assert_eq!(r.model.as_deref(), Some("gemini-2.5-pro")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_later_turn_resumes_what_the_first_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        let setup = GeminiSetup::new("/w", dir.path());
        let id = "3b1f0c4e-1111-4000-8000-000000000001";
        let first = launch_turn(&setup, id, false, None);
        let chats = dir.path().join(".gemini/tmp/w/chats");
        std::fs::create_dir_all(&chats).expect("mkdir");
        let file = chats.join("session-2026-12-06T01-07-3b1f0c4e.jsonl");
        // What a first turn that failed leaves (Gemini took the message back): not resumable,
        // so the next turn starts the conversation anew, without that file.
        let header = format!("{{\"sessionId\":\"{id}\",\"kind\":\"main\"}}\n");
        let context = r#"{"$set":{"messages":[{"id":"c","type":"user","content":[{"text":"<session_context>This is the Gemini CLI.</session_context>"}]}]}}"#;
        std::fs::write(&file, format!("{header}{context}\n")).expect("write");
        let next = Gemini.next_turn_launch(&first);
        assert!(
            next.args.iter().any(|a| a == "--session-id"),
            "{:?}",
            next.args
        );
        assert!(!file.exists(), "the file Gemini cannot resume is removed");
        // After an answer it resumes.
        let answer = r#"{"id":"g","type":"gemini","content":"Noted."}"#;
        std::fs::write(&file, format!("{header}{context}\n{answer}\n")).expect("write");
        let next = Gemini.next_turn_launch(&first);
        let i = next
            .args
            .iter()
            .position(|a| a == "--resume")
            .expect("resume");
        assert_eq!(next.args[i + 1], id);
        assert!(!next.args.iter().any(|a| a == "--session-id"));
        assert_eq!(Gemini.process_model(), ProcessModel::PerTurn);
        assert_eq!(Gemini.compact_text(), None);
    }
}
