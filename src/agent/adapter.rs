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
    /// The team's environment (set after the inherited variables; wins over them).
    pub env: BTreeMap<String, String>,
    /// Which variables of Switchboard's own environment the agent gets: names, or prefixes
    /// ending in `*`. Nothing else is inherited (and never [`NEVER_PASSED`]).
    pub inherit: Vec<String>,
    /// Variables of Switchboard's own environment not passed on even if `inherit` names them.
    pub env_remove: Vec<String>,
}

/// Variables of Switchboard's environment every agent gets, whatever its kind: the basics of
/// a login (paths, user, locale, terminal, time zone, XDG folders), proxies and CA
/// certificates. A trailing `*` matches every name with that prefix.
pub const BASE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TMPDIR",
    "TZ",
    "XDG_*",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
];

/// Never in an agent's environment, whatever the allow-lists or the team's `env` say: the
/// server's bearer token would let the agent act as any team.
pub const NEVER_PASSED: &[&str] = &["SWITCHBOARD_TOKEN"];

/// Whether variable `name` matches `pattern` (a name, or a prefix ending in `*`).
pub fn env_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

impl LaunchSpec {
    /// The agent's whole environment: what it inherits of Switchboard's (see
    /// [`LaunchSpec::inherited`]), then the team's `env`, never [`NEVER_PASSED`]. Give it to
    /// a command after `env_clear()`.
    pub fn environment(&self) -> Vec<(String, std::ffi::OsString)> {
        let mut all: BTreeMap<String, std::ffi::OsString> =
            self.inherited(std::env::vars_os()).into_iter().collect();
        for (k, v) in &self.env {
            all.insert(k.clone(), v.into());
        }
        all.retain(|k, _| !NEVER_PASSED.contains(&k.as_str()));
        all.into_iter().collect()
    }

    /// The variables of `environment` (Switchboard's own) the agent inherits: those `inherit`
    /// allows, less `env_remove` and [`NEVER_PASSED`].
    pub fn inherited<I>(&self, environment: I) -> Vec<(String, std::ffi::OsString)>
    where
        I: IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    {
        environment
            .into_iter()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
            .filter(|(k, _)| {
                self.inherit.iter().any(|p| env_matches(p, k))
                    && !self.env_remove.iter().any(|r| r == k)
                    && !NEVER_PASSED.contains(&k.as_str())
            })
            .collect()
    }
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

/// The session an agent is launched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRef<'a> {
    /// Switchboard's id of the session (a UUID v4): the conversation's id for an agent CLI
    /// that takes one from us (Claude Code's `--session-id` / `--resume`).
    pub session_id: &'a str,
    /// The agent's own id of the conversation, for a CLI that picks it (a Codex thread id):
    /// what it said in an [`AgentEvent::Init`] earlier, kept with the session. `None` before.
    pub agent_session_id: Option<&'a str>,
    /// Whether the conversation exists and is continued (see [`AgentAdapter::can_resume`]).
    pub resume: bool,
}

/// How an agent kind runs a session's conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessModel {
    /// One process per session, many turns written to its stdin (Claude Code stream-json;
    /// a JSON-RPC server such as `codex app-server` whose session opens with its own requests).
    PerSession,
    /// One process per turn (Gemini CLI headless): [`AgentSession`](super::session::AgentSession)
    /// starts no process at spawn (it holds the session's lease and pool slot), starts the
    /// launch in each `send_message` with the message on stdin and stdin closed, takes the
    /// process's exit after its `Result` as the normal end of the turn, and interrupts with
    /// SIGTERM to the turn's process group. A later turn runs
    /// [`AgentAdapter::next_turn_launch`].
    PerTurn,
}

/// Per-launch extras that are not in the team's config.
#[derive(Debug, Clone, Default)]
pub struct LaunchExtras {
    /// The MCP config file to hand to the agent: the only MCP servers it may load.
    pub mcp_config: Option<PathBuf>,
    /// Whether that config holds Switchboard's server (its tools then run without a prompt).
    pub switchboard_tools: bool,
    /// Switchboard's MCP server for this session, when it serves one: for an adapter that
    /// wires MCP servers through argv or environment instead of a file (its headers carry the
    /// session's credential: pass them in environment variables, never in argv).
    pub switchboard: Option<SwitchboardServer>,
    /// Switchboard's data folder (the database's folder), for an agent that keeps private
    /// state of its own per team there (Codex's `CODEX_HOME`). `None`: not known.
    pub data_dir: Option<PathBuf>,
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

/// Prefix of the variables that carry the endpoint's header values to an agent whose CLI
/// reads them from its environment (the name holds `TOKEN`, so the launch record redacts them).
pub const HEADER_ENV_PREFIX: &str = "SWITCHBOARD_MCP_TOKEN_";

impl SwitchboardServer {
    /// Each header as `(name, variable, value)`, the variables named [`HEADER_ENV_PREFIX`]`1`,
    /// `2`, ... in the order of the headers.
    pub fn header_vars(&self) -> Vec<(String, String, String)> {
        self.headers
            .iter()
            .enumerate()
            .map(|(i, (name, value))| {
                (
                    name.clone(),
                    format!("{HEADER_ENV_PREFIX}{}", i + 1),
                    value.clone(),
                )
            })
            .collect()
    }
}

/// A permission request of an agent: the tool it wants to run and with what.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionAsk {
    /// The tool's name (`Write`, `Bash`, `mcp__server__tool`).
    pub tool: String,
    /// Its input.
    pub input: serde_json::Value,
    /// The agent's id of the tool call.
    pub tool_use_id: Option<String>,
}

/// What a live agent's session learned of its conversation from the agent's own output, for a
/// CLI whose protocol wants it back (a JSON-RPC server names its thread and its turns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    /// The agent's id of the conversation (what it said in an [`AgentEvent::Init`]).
    pub id: Option<String>,
    /// The agent's id of the running turn, if it names turns.
    pub turn: Option<String>,
}

/// What the session writes to the agent, for [`AgentAdapter::encode_input`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// A user message: the start of a turn.
    Message(&'a str),
    /// A request to compact the context (a turn of its own).
    Compact,
    /// An interrupt of the running turn, with a request id of ours.
    Interrupt(&'a str),
}

/// One kind of agent CLI.
pub trait AgentAdapter: Send + Sync + std::fmt::Debug {
    /// The `agent` value of the teams file that selects this adapter.
    fn name(&self) -> &'static str;
    /// How the agent runs a conversation (see [`ProcessModel`]).
    fn process_model(&self) -> ProcessModel {
        ProcessModel::PerSession
    }
    /// How to launch the agent for a session: a new conversation (`session.resume` false) or
    /// the continuation of one.
    fn launch(
        &self,
        team: &TeamConfig,
        session: &SessionRef<'_>,
        extras: &LaunchExtras,
    ) -> LaunchSpec;
    /// For a [`ProcessModel::PerTurn`] kind: the launch of a turn after the first one of this
    /// spawn, from `spawned` (what [`AgentAdapter::launch`] gave, a new conversation or the
    /// continuation of one): it continues the conversation the earlier turns made (or starts
    /// it, when the CLI kept nothing it can resume). By default `spawned` itself.
    fn next_turn_launch(&self, spawned: &LaunchSpec) -> LaunchSpec {
        spawned.clone()
    }
    /// Whether the session's conversation exists, so the next launch continues it. By
    /// default: the agent said its own id of it, or its transcript is on disk.
    fn can_resume(&self, team: &TeamConfig, session: &SessionRef<'_>) -> bool {
        session.agent_session_id.is_some()
            || self
                .transcript_path(team, session.session_id)
                .is_some_and(|p| p.exists())
    }
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
    /// The stdin lines that open the conversation of a just-spawned agent, for a CLI that
    /// chooses it over its protocol rather than in argv (`codex app-server`: `initialize`, then
    /// `thread/start`, or `thread/resume` of `resume`, the agent's id of a conversation to
    /// continue). The session writes them before anything else and waits until the agent names
    /// the conversation ([`AgentEvent::Init`]) before it delivers a message; that wait is also
    /// the readiness probe. Empty (the default): the conversation is chosen at launch.
    fn opening(&self, cwd: &std::path::Path, resume: Option<&str>) -> Vec<String> {
        let _ = (cwd, resume);
        Vec::new()
    }
    /// The line to write when the agent refused opening request `request_id` (a
    /// [`AgentEvent::ControlResponse`] that failed), e.g. a new conversation when the one to
    /// resume is gone; `None`: the agent cannot be used (the spawn fails with its error).
    fn reopening(&self, cwd: &std::path::Path, request_id: &str) -> Option<String> {
        let _ = (cwd, request_id);
        None
    }
    /// Notes what `event` says of the conversation (its id, the running turn) in `conv`. The
    /// default keeps the id of an [`AgentEvent::Init`].
    fn track(&self, event: &AgentEvent, conv: &mut Conversation) {
        if let AgentEvent::Init {
            session_id: Some(id),
        } = event
        {
            conv.id = Some(id.clone());
        }
    }
    /// The stdin line that writes `input` to an agent whose conversation is `conv`; `None`
    /// when it cannot be written now (no turn to interrupt) or at all (no compaction). The
    /// default: [`AgentAdapter::encode_message`], [`AgentAdapter::compact_text`],
    /// [`AgentAdapter::encode_interrupt`], which need no state.
    fn encode_input(&self, conv: &Conversation, input: Input<'_>) -> Option<String> {
        let _ = conv;
        match input {
            Input::Message(text) => Some(self.encode_message(text)),
            Input::Compact => self.compact_text().map(|t| self.encode_message(t)),
            Input::Interrupt(id) => Some(self.encode_interrupt(id)),
        }
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
    /// The permission request in a control request of the agent, if it is one (an agent
    /// launched for a team with `[permissions]` asks before each tool call that needs one).
    fn permission_ask(&self, request: &serde_json::Value) -> Option<PermissionAsk> {
        let _ = request;
        None
    }
    /// The stdin line answering permission request `request_id`: run the tool with `input`
    /// (`allow`), or not, telling the agent `message`. `None` when the agent has no such
    /// protocol.
    fn encode_permission(
        &self,
        request_id: &str,
        allow: bool,
        input: &serde_json::Value,
        message: &str,
    ) -> Option<String> {
        let _ = (request_id, allow, input, message);
        None
    }
    /// The message text that asks the agent to compact its context; `None` when the CLI has
    /// no way to (Switchboard then refuses `compact` for the team with that reason).
    fn compact_text(&self) -> Option<&'static str>;
    /// Where the agent of `team` finds its credentials (for `doctor`): what was found, or
    /// what was looked at. Reads files and the environment only; never calls the model.
    fn credentials(&self, team: &TeamConfig) -> Result<String, String>;
    /// Decodes one stdout line.
    fn decode(&self, line: &[u8]) -> Result<AgentEvent, BadLine> {
        super::event::decode(line)
    }
    /// The decoder of one agent process's stdout, for a CLI whose turn answer or ids are
    /// pieced together from several lines (one per process, dropped with it). `None` (the
    /// default): [`AgentAdapter::decode`], line by line.
    fn decoder(&self) -> Option<Box<dyn LineDecoder>> {
        None
    }
    /// Whether the CLI reports what a turn cost. When it does not, Switchboard prices the
    /// turn's tokens with `[settings.prices."MODEL"]` (the model the turn reports, else the
    /// team's `model`).
    fn reports_cost(&self) -> bool {
        true
    }
    /// Where the agent keeps the transcript of a session of `team` (its env, else ours,
    /// decides the agent's home), if that can be told.
    fn transcript_path(&self, team: &TeamConfig, session_id: &str) -> Option<PathBuf>;
}

/// Decodes one agent process's stdout, line by line, in order.
pub trait LineDecoder: Send {
    /// Decodes one stdout line (without its newline).
    fn decode(&mut self, line: &[u8]) -> Result<AgentEvent, BadLine>;
}

/// The decoder of one process of `adapter`'s agent: its own, or [`AgentAdapter::decode`].
pub fn decoder_of(adapter: &'static dyn AgentAdapter) -> Box<dyn LineDecoder> {
    adapter
        .decoder()
        .unwrap_or_else(|| Box::new(Stateless(adapter)))
}

/// The default decoder: the adapter's [`AgentAdapter::decode`], which keeps nothing.
struct Stateless(&'static dyn AgentAdapter);

impl LineDecoder for Stateless {
    fn decode(&mut self, line: &[u8]) -> Result<AgentEvent, BadLine> {
        self.0.decode(line)
    }
}

/// How `team`'s agent CLI (`adapter`) is run for a command that is not a session
/// (`--version`, `mcp add-json`, ...): its program, folder and environment.
pub fn command_spec(adapter: &dyn AgentAdapter, team: &TeamConfig) -> LaunchSpec {
    // `launch` needs a session; these commands take other arguments instead.
    let session = SessionRef {
        session_id: "00000000-0000-4000-8000-000000000000",
        agent_session_id: None,
        resume: false,
    };
    adapter.launch(team, &session, &LaunchExtras::default())
}

/// The adapter for a team's `agent` value (see [`super::kinds`]).
pub use super::kinds::adapter_for;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_variables_are_inherited() {
        let spec = LaunchSpec {
            program: "agent".into(),
            args: Vec::new(),
            cwd: PathBuf::from("/"),
            env: BTreeMap::from([("SWITCHBOARD_TOKEN".to_string(), "x".to_string())]),
            inherit: vec!["PATH".into(), "LC_*".into(), "SWITCHBOARD_*".into()],
            env_remove: vec!["LC_REMOVED".into()],
        };
        let given = [
            "PATH",
            "PATHX",
            "LC_ALL",
            "LC_REMOVED",
            "SECRET",
            "SWITCHBOARD_TOKEN",
            "SWITCHBOARD_OTHER",
        ]
        .map(|k| (k.into(), "v".into()));
        let names: Vec<String> = spec.inherited(given).into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["PATH", "LC_ALL", "SWITCHBOARD_OTHER"]);
        assert!(spec
            .environment()
            .iter()
            .all(|(k, _)| k != "SWITCHBOARD_TOKEN"));
        assert!(env_matches("XDG_*", "XDG_DATA_HOME"));
        assert!(!env_matches("TZ", "TZX"));
    }
}
