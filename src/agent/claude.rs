//! Claude Code in `-p --input-format stream-json --output-format stream-json --verbose` mode.

use std::path::PathBuf;

use serde_json::json;

use super::adapter::{
    AgentAdapter, LaunchExtras, LaunchSpec, PermissionAsk, SessionRef, SwitchboardServer,
};
use super::claude_mcp;
use crate::config::TeamConfig;

/// Variables of Switchboard's environment a Claude Code agent gets besides
/// [`BASE_ENV`](super::adapter::BASE_ENV): its API settings and its own options.
pub const CLAUDE_ENV: &[&str] = &[
    "ANTHROPIC_*",
    "CLAUDE_*",
    "DISABLE_*",
    "MCP_TIMEOUT",
    "MCP_TOOL_TIMEOUT",
    "MAX_THINKING_TOKENS",
    "MAX_MCP_OUTPUT_TOKENS",
    "BASH_DEFAULT_TIMEOUT_MS",
    "BASH_MAX_TIMEOUT_MS",
    "BASH_MAX_OUTPUT_LENGTH",
    "USE_BUILTIN_RIPGREP",
];

/// The Claude Code CLI (npm `@anthropic-ai/claude-code`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClaudeCode;

impl AgentAdapter for ClaudeCode {
    fn name(&self) -> &'static str {
        "claude"
    }

    fn launch(
        &self,
        team: &TeamConfig,
        session: &SessionRef<'_>,
        extras: &LaunchExtras,
    ) -> LaunchSpec {
        // Claude Code takes our id for the conversation (`--session-id`), so it never picks
        // one of its own.
        let (session_id, resume) = (session.session_id, session.resume);
        let mut args: Vec<String> = [
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(if resume { "--resume" } else { "--session-id" }.to_string());
        args.push(session_id.to_string());
        let mut allowed = team.allowed_tools.clone();
        if extras.switchboard_tools {
            // Switchboard's own tools run without a permission prompt (there is nobody to ask).
            allowed.push(format!("mcp__{}", claude_mcp::SERVER_NAME));
        }
        if !allowed.is_empty() {
            args.push("--allowedTools".into());
            args.push(allowed.join(","));
        }
        // The team's deny rules are also Claude Code's own: it then refuses them everywhere,
        // also in tools that never ask (a Read inside the folder) and in every part of a
        // compound shell command.
        let mut disallowed = team.disallowed_tools.clone();
        if let Some(p) = &team.permissions {
            disallowed.extend(p.deny.iter().map(|r| r.as_str().to_string()));
        }
        if !disallowed.is_empty() {
            args.push("--disallowedTools".into());
            args.push(disallowed.join(","));
        }
        if team.permissions.is_some() {
            // Every tool call that needs a permission becomes a `can_use_tool` control
            // request on stdout, answered by a control response on stdin (see
            // docs/claude-code-protocol.md, "Permission requests").
            args.push("--permission-prompt-tool".into());
            args.push("stdio".into());
        }
        if let Some(mode) = &team.permission_mode {
            args.push("--permission-mode".into());
            args.push(mode.clone());
        }
        if let Some(model) = &team.model {
            args.push("--model".into());
            args.push(model.clone());
        }
        if let Some(prompt) = &team.append_system_prompt {
            args.push("--append-system-prompt".into());
            args.push(prompt.clone());
        }
        if let Some(mcp) = &extras.mcp_config {
            // Only the servers of that file: a registration of Switchboard in the team's own
            // config (any name, any scope) would let the agent tell as the plain team, outside
            // its chain. The file carries the team's other servers (see claude_mcp).
            args.push("--mcp-config".into());
            args.push(mcp.display().to_string());
            args.push("--strict-mcp-config".into());
        }
        args.extend(team.args.iter().cloned());
        LaunchSpec {
            program: team
                .agent_path
                .clone()
                .unwrap_or_else(|| "claude".to_string()),
            args,
            cwd: team.path.clone(),
            env: team.env.clone(),
            inherit: super::adapter::BASE_ENV
                .iter()
                .chain(CLAUDE_ENV)
                .map(|s| s.to_string())
                .chain(team.env_passthrough.iter().cloned())
                .collect(),
            // Markers of an outer Claude Code session (when Switchboard runs inside one) would
            // change how the agent behaves.
            env_remove: vec!["CLAUDECODE".into(), "CLAUDE_CODE_ENTRYPOINT".into()],
        }
    }

    fn mcp_config(
        &self,
        team: &TeamConfig,
        switchboard: Option<&SwitchboardServer>,
    ) -> Result<Option<serde_json::Value>, super::AgentError> {
        // Claude Code gives up on an HTTP MCP call after 60 s unless the server entry says
        // otherwise; a team_tell may wait up to an hour.
        let entry = switchboard.map(|s| {
            json!({"type": "http", "url": s.url, "headers": s.headers, "timeout": s.timeout_ms})
        });
        let url = switchboard.map(|s| s.url.as_str());
        claude_mcp::agent_mcp_config(team, entry, url).map(Some)
    }

    fn credentials(&self, team: &TeamConfig) -> Result<String, String> {
        claude_credentials(team)
    }

    fn encode_message(&self, text: &str) -> String {
        json!({"type": "user", "message": {"role": "user", "content": text}}).to_string()
    }

    fn encode_interrupt(&self, request_id: &str) -> String {
        json!({"type": "control_request", "request_id": request_id, "request": {"subtype": "interrupt"}})
            .to_string()
    }

    fn encode_ready_probe(&self, request_id: &str) -> Option<String> {
        Some(
            json!({"type": "control_request", "request_id": request_id, "request": {"subtype": "initialize"}})
                .to_string(),
        )
    }

    fn permission_ask(&self, request: &serde_json::Value) -> Option<PermissionAsk> {
        if request.get("subtype").and_then(serde_json::Value::as_str) != Some("can_use_tool") {
            return None;
        }
        Some(PermissionAsk {
            tool: request.get("tool_name")?.as_str()?.to_string(),
            input: request
                .get("input")
                .cloned()
                .unwrap_or(serde_json::Value::Object(Default::default())),
            tool_use_id: request
                .get("tool_use_id")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
        })
    }

    fn encode_permission(
        &self,
        request_id: &str,
        allow: bool,
        input: &serde_json::Value,
        message: &str,
    ) -> Option<String> {
        let response = if allow {
            json!({"behavior": "allow", "updatedInput": input})
        } else {
            json!({"behavior": "deny", "message": message})
        };
        Some(
            json!({"type": "control_response", "response": {"subtype": "success", "request_id": request_id, "response": response}})
                .to_string(),
        )
    }

    fn compact_text(&self) -> Option<&'static str> {
        Some("/compact")
    }

    fn transcript_path(&self, team: &TeamConfig, session_id: &str) -> Option<PathBuf> {
        // The agent inherits HOME and CLAUDE_* of our environment, then the team's: the team's
        // value wins.
        let var = |name: &str| {
            team.env
                .get(name)
                .cloned()
                .or_else(|| std::env::var(name).ok())
                .filter(|v| !v.is_empty())
        };
        let config_dir = match var("CLAUDE_CONFIG_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(var("HOME")?).join(".claude"),
        };
        Some(super::claude_transcript_path(
            &config_dir,
            &team.path,
            session_id,
        ))
    }
}

/// Where Claude Code finds its credentials for `team`: an API key or token in the environment,
/// a login (`.credentials.json`), a key from `/login` (`.claude.json`), or an `apiKeyHelper`.
fn claude_credentials(team: &TeamConfig) -> Result<String, String> {
    let var = |name: &str| super::checks::team_var(team, name);
    for name in [
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "CLAUDE_CODE_OAUTH_TOKEN",
    ] {
        if let Some((_, from)) = var(name) {
            return Ok(format!("{name} set in {from}"));
        }
    }
    let home = var("HOME").map(|(h, _)| PathBuf::from(h));
    let config_dir = var("CLAUDE_CONFIG_DIR")
        .map(|(d, _)| PathBuf::from(d))
        .or_else(|| home.as_ref().map(|h| h.join(".claude")));
    let secure_dir = var("CLAUDE_SECURESTORAGE_CONFIG_DIR")
        .map(|(d, _)| PathBuf::from(d))
        .or_else(|| config_dir.clone());
    let mut looked =
        vec!["ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN, CLAUDE_CODE_OAUTH_TOKEN".to_string()];
    if let Some(dir) = &secure_dir {
        let file = dir.join(".credentials.json");
        let logged_in = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty()));
        if logged_in {
            return Ok(format!("a login in {}", file.display()));
        }
        looked.push(file.display().to_string());
    }
    let claude_json = match var("CLAUDE_CONFIG_DIR") {
        Some((d, _)) => Some(PathBuf::from(d).join(".claude.json")),
        None => home.as_ref().map(|h| h.join(".claude.json")),
    };
    if let Some(file) = &claude_json {
        let has_key = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v.get("primaryApiKey").is_some_and(|k| k.is_string()));
        if has_key {
            return Ok(format!("an API key from /login in {}", file.display()));
        }
        looked.push(format!("primaryApiKey in {}", file.display()));
    }
    if let Some(dir) = &config_dir {
        let file = dir.join("settings.json");
        let helper = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v.get("apiKeyHelper").is_some_and(|k| k.is_string()));
        if helper {
            return Ok(format!("apiKeyHelper in {}", file.display()));
        }
        looked.push(format!("apiKeyHelper in {}", file.display()));
    }
    Err(format!("none found (looked at {})", looked.join("; ")))
}
