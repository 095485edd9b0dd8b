//! The Gemini CLI (npm `@google/gemini-cli`, pinned 0.61.0) run headless, one process per turn:
//! `gemini -p "" --output-format stream-json (--session-id ID | --resume ID)` with the message
//! on stdin, printing one JSON object per line (`init`, `message`, `tool_use`, `tool_result`,
//! `result`). See docs/gemini-protocol.md for what was observed and why this mode and not
//! `--acp` (on 0.61.0 `session/load` cannot find a session that ACP itself created, so a
//! conversation does not survive its process).
//!
//! This file holds the pure pieces: the team's private `HOME/.gemini/settings.json` (API-key
//! auth, bounded attempts, no update check, no usage statistics, Switchboard's MCP endpoint
//! trusted, its header values read from the environment), the launch of one turn (argv, env),
//! and the decoder of its lines into [`Activity`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::activity::{as_text, Activity, Tokens, TurnOutcome};
use super::adapter::{LaunchSpec, SwitchboardServer, BASE_ENV};
use super::event::BadLine;

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

/// Whether the team's home holds a session with this id (so the next turn is a `--resume`).
pub fn has_session(setup: &GeminiSetup, session_id: &str) -> bool {
    let Some(prefix) = session_id.get(..8) else {
        return false;
    };
    let suffix = format!("-{prefix}.jsonl");
    let Ok(projects) = std::fs::read_dir(sessions_root(setup)) else {
        return false;
    };
    projects.flatten().any(|project| {
        std::fs::read_dir(project.path().join("chats"))
            .map(|files| {
                files.flatten().any(|f| {
                    let name = f.file_name();
                    let name = name.to_string_lossy();
                    name.starts_with("session-")
                        && name.ends_with(&suffix)
                        && std::fs::read_to_string(f.path())
                            .map(|t| t.contains(session_id))
                            .unwrap_or(false)
                })
            })
            .unwrap_or(false)
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

fn st(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(String::from)
}

/// Decodes one line of `gemini --output-format stream-json`.
pub fn decode(line: &[u8]) -> Result<Activity, BadLine> {
    let trimmed = line.trim_ascii();
    let v: Value = match serde_json::from_slice(trimmed) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            let start = String::from_utf8_lossy(&trimmed[..trimmed.len().min(120)]).into_owned();
            return Err(BadLine::NotJson(start));
        }
    };
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    Ok(match kind {
        "init" => match st(&v, "session_id") {
            Some(id) => Activity::Session { id },
            None => Activity::Other {
                kind: "init".into(),
            },
        },
        "message" if st(&v, "role").as_deref() == Some("assistant") => Activity::Text {
            text: st(&v, "content").unwrap_or_default(),
            delta: v.get("delta").and_then(Value::as_bool).unwrap_or(false),
        },
        "tool_use" => Activity::ToolUse {
            id: st(&v, "tool_id").unwrap_or_default(),
            tool: st(&v, "tool_name").unwrap_or_default(),
            input: v
                .get("parameters")
                .cloned()
                .unwrap_or(Value::Null)
                .to_string(),
        },
        "tool_result" => {
            let ok = st(&v, "status").as_deref() == Some("success");
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
                id: st(&v, "tool_id").unwrap_or_default(),
                ok,
                output,
            }
        }
        "error" => Activity::Status {
            text: st(&v, "message").unwrap_or_else(|| "the agent reported an error".into()),
        },
        "result" => {
            let stats = v.get("stats").cloned().unwrap_or(Value::Null);
            let n = |k: &str| stats.get(k).and_then(Value::as_i64).unwrap_or(0).max(0);
            let outcome = match st(&v, "status").as_deref() {
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
            format!("{{\"sessionId\":\"{id}\"}}\n"),
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
}
