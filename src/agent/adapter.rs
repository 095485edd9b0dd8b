//! The agent behind a small trait: how to launch it for a session, how to write a message or
//! an interrupt, how to ask for compaction, how to read its events, where its transcript is.
//! Another agent CLI is one more implementation; the supervisor does not change.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::event::{AgentEvent, BadLine};
use crate::config::TeamConfig;

/// What to run, where, with what environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The executable (a path, or a name looked up in PATH).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Working directory: the team's folder.
    pub cwd: PathBuf,
    /// Environment added to Switchboard's own.
    pub env: BTreeMap<String, String>,
    /// Variables of Switchboard's own environment not passed on.
    pub env_remove: Vec<String>,
}

#[derive(Serialize)]
struct LaunchRecord<'a> {
    argv: Vec<&'a str>,
    cwd: String,
    env: BTreeMap<&'a str, &'a str>,
}

impl LaunchSpec {
    /// The launch as JSON for the session's debug info: argv, cwd and the added environment,
    /// with secrets hidden (see [`crate::redact`]: values of secret names, secret options'
    /// values in argv, URL passwords, key shapes).
    pub fn redacted_json(&self) -> String {
        let argv: Vec<String> = std::iter::once(crate::redact::text(&self.program))
            .chain(crate::redact::args(&self.args))
            .collect();
        let env = crate::redact::env(&self.env);
        let record = LaunchRecord {
            argv: argv.iter().map(String::as_str).collect(),
            cwd: self.cwd.display().to_string(),
            env: env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        };
        serde_json::to_string(&record).unwrap_or_default()
    }
}

/// Per-launch extras that are not in the team's config.
#[derive(Debug, Clone, Default)]
pub struct LaunchExtras {
    /// The MCP config file to hand to the agent: the only MCP servers it may load.
    pub mcp_config: Option<PathBuf>,
    /// Whether that config holds Switchboard's server (its tools then run without a prompt).
    pub switchboard_tools: bool,
}

/// Switchboard's MCP server as a spawned agent must reach it: the URL of its HTTP endpoint and
/// the headers naming the agent's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchboardServer {
    /// `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    /// Headers of every request (the agent token, the bearer token).
    pub headers: BTreeMap<String, String>,
    /// How long the agent waits for one tool call, in ms.
    pub timeout_ms: u64,
}

/// One kind of agent CLI.
pub trait AgentAdapter: Send + Sync + std::fmt::Debug {
    /// The `agent` value of the teams file that selects this adapter.
    fn name(&self) -> &'static str;
    /// How to launch the agent for a session: a new conversation (`resume` false) or the
    /// continuation of one.
    fn launch(
        &self,
        team: &TeamConfig,
        session_id: &str,
        resume: bool,
        extras: &LaunchExtras,
    ) -> LaunchSpec;
    /// The MCP configuration of a spawned agent of `team` (JSON, written to the file of
    /// [`LaunchExtras::mcp_config`]): `switchboard` when given, and whichever of the team's own
    /// MCP servers the agent keeps. `None`: the agent takes no MCP config.
    fn mcp_config(
        &self,
        team: &TeamConfig,
        switchboard: Option<&SwitchboardServer>,
    ) -> Result<Option<serde_json::Value>, super::AgentError> {
        let _ = (team, switchboard);
        Ok(None)
    }
    /// The stdin line that delivers a user message.
    fn encode_message(&self, text: &str) -> String;
    /// The stdin line that interrupts the running turn.
    fn encode_interrupt(&self, request_id: &str) -> String;
    /// A stdin line the agent answers without a model call, to prove it is up, if it has one
    /// (Claude Code prints nothing before the first message otherwise).
    fn encode_ready_probe(&self, request_id: &str) -> Option<String> {
        let _ = request_id;
        None
    }
    /// The message text that asks the agent to compact its context.
    fn compact_text(&self) -> &'static str;
    /// Decodes one stdout line.
    fn decode(&self, line: &[u8]) -> Result<AgentEvent, BadLine> {
        super::event::decode(line)
    }
    /// Where the agent keeps the transcript of a session of `team` (its env, else ours,
    /// decides the agent's home), if that can be told.
    fn transcript_path(&self, team: &TeamConfig, session_id: &str) -> Option<PathBuf>;
}

/// The adapter for a team's `agent` value.
pub fn adapter_for(agent: &str) -> Option<&'static dyn AgentAdapter> {
    match agent {
        "claude" => Some(&super::claude::ClaudeCode),
        _ => None,
    }
}
