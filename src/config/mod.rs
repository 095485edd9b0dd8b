//! The teams file (TOML): `[settings]`, `[database]`, `[teams.NAME]`.
//!
//! Owns loading, `${VAR}` / `${VAR:-default}` interpolation, `~` expansion, discovery of the file,
//! and validation that collects every problem (each naming its key path, syntax errors with line
//! and column). Must not touch SQLite or processes.

mod init;
mod interpolate;
pub mod kinds;
mod load;
pub mod permissions;
pub mod trust;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use init::{new_teams_file, team_name, write_new_file, NewTeamsFile};
#[doc(hidden)]
pub use load::discover_in;
pub use load::{discover, ConfigError, ConfigProblem, Folders};
pub use permissions::{Ask, Permissions, Rule, ToolCall};
pub use validate::{check_ssh_destination, is_valid_env_name};

/// The whole teams file, loaded and validated.
#[derive(Debug, Clone)]
pub struct TeamsConfig {
    /// Where the file was read from (absolute), if it came from a file.
    pub source: Option<PathBuf>,
    /// `[settings]`.
    pub settings: Settings,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[database]`.
    pub database: DatabaseConfig,
    /// `[teams.NAME]`, by name.
    pub teams: BTreeMap<String, TeamConfig>,
    /// What was let through but deserves a word: a missing team folder when loaded with
    /// [`Folders::MissingIsWarning`]. Empty for a strict load.
    pub warnings: Vec<ConfigProblem>,
}

/// `[settings]`: limits and timeouts of the orchestrator.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Most live agent processes at once (≥ 1). Default 8.
    pub max_processes: usize,
    /// An idle agent stops after this long. Default 10m.
    pub idle_timeout: Duration,
    /// A turn with no output for this long is a stall. Default 5m.
    pub response_timeout: Duration,
    /// Longest wait for a spawned agent's first event. Default 30s.
    pub spawn_timeout: Duration,
    /// Longest wait for a new session's initialisation. Default 60s.
    pub session_init_timeout: Duration,
    /// Time-to-live of the session cache. Default 60s.
    pub cache_ttl: Duration,
    /// How often live agents are checked. Default 30s.
    pub health_check_interval: Duration,
    /// On shutdown, how long running turns may finish before their agents are killed.
    /// Default 10s.
    pub shutdown_grace: Duration,
    /// The largest message a tell may carry, in bytes. Default 1 MiB.
    pub max_message_bytes: usize,
    /// The longest chain of tells (A tells B, whose agent tells C, ...). Default 4.
    pub max_hops: u32,
    /// Most tells of one pair waiting or being answered; more are refused. Default 100.
    pub max_queued_per_pair: u64,
    /// Most bytes of message text of one pair waiting or being answered (a pair with nothing
    /// waiting still takes one message up to `max_message_bytes`). Default 16 MiB.
    pub max_queued_bytes_per_pair: u64,
    /// Most tells a calling team may send in any 60 seconds (to every team together).
    /// Default 120.
    pub tells_per_minute: u64,
    /// `[settings.compaction]`.
    pub compaction: CompactionPolicy,
    /// `[settings.events]`.
    pub events: EventsSettings,
    /// `[settings.prices.MODEL]`: what a model's tokens cost, for agent kinds whose CLI
    /// reports tokens but no cost (Codex, Gemini). A model without a price costs 0.
    pub prices: BTreeMap<String, Price>,
}

/// The price of a model in US dollars per million tokens (`[settings.prices."MODEL"]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Price {
    /// Input tokens not read from a cache (`input`).
    pub input: f64,
    /// Input tokens read from a cache (`cached_input`; default: the `input` price).
    pub cached_input: f64,
    /// Output tokens, reasoning included (`output`).
    pub output: f64,
}

impl Price {
    /// The cost in US dollars of `input` tokens (of which `cached` read from a cache) and
    /// `output` tokens.
    pub fn cost_usd(&self, input: i64, cached: i64, output: i64) -> f64 {
        let cached = cached.clamp(0, input.max(0));
        let fresh = input.max(0) - cached;
        let m = |n: i64, per: f64| n as f64 * per / 1_000_000.0;
        m(fresh, self.input) + m(cached, self.cached_input) + m(output.max(0), self.output)
    }
}

/// `[teams.NAME.provider]`: the model API an agent CLI talks to instead of its vendor's
/// default (a proxy, a gateway, a local stand-in).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Provider {
    /// The API's base URL (`http://` or `https://`), e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// The environment variable holding the API key; `None`: the kind's usual one
    /// (`OPENAI_API_KEY` for Codex, `GEMINI_API_KEY` for Gemini).
    pub env_key: Option<String>,
}

/// `[settings.events]`: how much of the event log is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsSettings {
    /// Events older than this are deleted. Default 7d.
    pub retention: Duration,
    /// Most activity events (text, tool use, tool result, status) stored per tell; the rest is
    /// shown live only. Default 2000.
    pub max_events_per_tell: u64,
    /// Most bytes of activity events stored per tell. Default 1 MiB.
    pub max_bytes_per_tell: u64,
}

impl Default for EventsSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 86_400),
            max_events_per_tell: 2000,
            max_bytes_per_tell: 1024 * 1024,
        }
    }
}

/// `[server]`: the MCP server (`switchboard serve`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Bearer token every TCP request must carry (`$SWITCHBOARD_TOKEN` also works); when
    /// neither is set, the server generates one on first start and keeps it in
    /// `server.token` beside the database (0600).
    pub auth_token: Option<String>,
    /// `false` lets a loopback listener serve without a token (any local user can then drive
    /// the agents). Default `true`; a non-loopback bind always needs a token.
    pub require_token: bool,
    /// Routes served without the token besides `GET /health`: `/status`, `/metrics`.
    pub open_routes: Vec<String>,
    /// Longest wait for a request's headers. Default 10s.
    pub header_timeout: Duration,
    /// Longest wait for a request's body. Default 30s.
    pub body_timeout: Duration,
    /// Most open HTTP connections at once. Default 256.
    pub max_connections: usize,
    /// Most MCP sessions (streamable HTTP) at once. Default 64.
    pub max_mcp_sessions: usize,
    /// An MCP session unused for this long is closed. Default 30m.
    pub mcp_session_idle: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            auth_token: None,
            require_token: true,
            open_routes: Vec::new(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 256,
            max_mcp_sessions: 64,
            mcp_session_idle: Duration::from_secs(30 * 60),
        }
    }
}

/// `[settings.compaction]`: when a session is due for compaction.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionPolicy {
    /// Due when message_count ≥ this. Default 500.
    pub max_messages: u64,
    /// Also due when message_count ≥ this and the session is unused for `stale_age`. Default 100.
    pub stale_messages: u64,
    /// See `stale_messages`. Default 7d.
    pub stale_age: Duration,
}

/// `[database]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    /// Resolved absolute path of the SQLite file (`~` expanded, relative paths against the
    /// teams file's folder, default `<data dir>/switchboard.db`). Ignored when `in_memory`.
    pub path: PathBuf,
    /// Use a private in-memory database instead of the file.
    pub in_memory: bool,
}

/// `[teams.NAME]`: one project folder and the agent that works in it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TeamConfig {
    /// The team's name (the table key).
    pub name: String,
    /// Absolute path of the project folder (after `~` expansion).
    pub path: PathBuf,
    /// Free text shown in `switchboard teams`.
    pub description: Option<String>,
    /// Agent kind: one of [`kinds::AGENT_KINDS`] (checked at load). Default `claude`.
    pub agent: String,
    /// Path or name of the agent executable; default: the agent's own (`claude`).
    pub agent_path: Option<String>,
    /// Extra argv passed to the agent.
    pub args: Vec<String>,
    /// Extra environment for the agent.
    pub env: BTreeMap<String, String>,
    /// Variables of Switchboard's own environment the agent gets besides the built-in
    /// allow-list (names, or prefixes ending in `*`). `SWITCHBOARD_TOKEN` is never passed.
    pub env_passthrough: Vec<String>,
    /// Team override of `settings.idle_timeout`.
    #[serde(serialize_with = "ser_opt_duration")]
    pub idle_timeout: Option<Duration>,
    /// Team override of `settings.session_init_timeout`.
    #[serde(serialize_with = "ser_opt_duration")]
    pub session_init_timeout: Option<Duration>,
    /// Tools the agent may use (`--allowedTools`).
    pub allowed_tools: Vec<String>,
    /// Tools the agent may not use (`--disallowedTools`).
    pub disallowed_tools: Vec<String>,
    /// Text appended to the agent's system prompt.
    pub append_system_prompt: Option<String>,
    /// Agent permission mode (`acceptEdits`, `auto`, `bypassPermissions`, `manual`, `dontAsk`,
    /// `plan`).
    pub permission_mode: Option<String>,
    /// The model the agent uses; `None`: the CLI's default.
    pub model: Option<String>,
    /// How often a failed model request is retried (Codex, Gemini); `None`: Switchboard's
    /// default for the kind (never the CLI's own, which may retry for minutes).
    pub max_retries: Option<u32>,
    /// When the agent asks before it acts (Codex `approval_policy`: `on-failure`,
    /// `on-request`, `never`).
    pub approval_policy: Option<String>,
    /// The agent's sandbox (Codex `sandbox`: `read-only`, `workspace-write`,
    /// `danger-full-access`).
    pub sandbox: Option<String>,
    /// `[teams.NAME.provider]`: the model API the agent talks to (Codex, Gemini).
    pub provider: Option<Provider>,
    /// The SSH destination (`user@host` or a Host alias of ssh_config) whose host runs the
    /// team's agent; `path` and `agent_path` are then paths there. `None`: a local team.
    pub remote: Option<String>,
    /// Extra options for `ssh` to that host (`["-p", "2222"]`); identities, jump hosts and
    /// the like come from ssh_config.
    pub ssh_options: Vec<String>,
    /// The `switchboard` program on the remote host (a path there, or a name looked up in the
    /// remote PATH; default `switchboard`): a remote agent runs its `mcp-bridge` to reach
    /// Switchboard's tools through the forwarded socket. Only with `remote`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switchboard_path: Option<String>,
    /// Which of the team's own MCP servers (Claude Code's user, project and local scopes) its
    /// spawned agents get besides Switchboard's. Default `inherit`.
    pub mcp_servers: McpServers,
    /// `[teams.NAME.permissions]`: when present, the team's agent asks Switchboard about every
    /// tool call that needs a permission, and the rules, a person or the calling team decide.
    /// Absent: the agent denies such calls itself, as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Permissions>,
}

/// `mcp_servers` of a team: which MCP servers registered for the team's folder its spawned
/// agents keep. Registrations of Switchboard itself are never passed on (a spawned agent
/// reaches Switchboard only through the server naming its session).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum McpServers {
    /// Every other MCP server of the team's folder (user, project and local scope).
    #[default]
    Inherit,
    /// None: Switchboard's tools only.
    None,
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&crate::util::format_duration(*d)),
        None => s.serialize_none(),
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_processes: 8,
            idle_timeout: Duration::from_secs(600),
            response_timeout: Duration::from_secs(300),
            spawn_timeout: Duration::from_secs(30),
            session_init_timeout: Duration::from_secs(60),
            cache_ttl: Duration::from_secs(60),
            health_check_interval: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            max_message_bytes: 1024 * 1024,
            max_hops: 4,
            max_queued_per_pair: 100,
            max_queued_bytes_per_pair: 16 * 1024 * 1024,
            tells_per_minute: 120,
            compaction: CompactionPolicy::default(),
            events: EventsSettings::default(),
            prices: BTreeMap::new(),
        }
    }
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            max_messages: 500,
            stale_messages: 100,
            stale_age: Duration::from_secs(7 * 86_400),
        }
    }
}

impl TeamsConfig {
    /// Loads and validates the teams file at `path`, reading `${VAR}`s from the process
    /// environment. Every problem is reported at once in the error.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, Folders::Required)
    }

    /// [`TeamsConfig::load`], with `folders` deciding whether a missing team folder is a
    /// problem or a warning (read-only commands).
    pub fn load_with(path: &Path, folders: Folders) -> Result<Self, ConfigError> {
        load::load_file(path, &|k| std::env::var(k).ok(), folders)
    }

    /// Parses and validates teams-file text. `origin` is used for relative paths and messages;
    /// `env` looks up variables for interpolation.
    pub fn parse(
        text: &str,
        origin: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        load::parse_str(text, origin, env, Folders::Required)
    }

    /// [`TeamsConfig::parse`] with the folder strictness given (see [`Folders`]).
    pub fn parse_with(
        text: &str,
        origin: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        folders: Folders,
    ) -> Result<Self, ConfigError> {
        load::parse_str(text, origin, env, folders)
    }

    /// A team by name.
    pub fn team(&self, name: &str) -> Option<&TeamConfig> {
        self.teams.get(name)
    }

    /// The effective idle timeout of a team.
    pub fn idle_timeout(&self, team: &TeamConfig) -> Duration {
        team.idle_timeout.unwrap_or(self.settings.idle_timeout)
    }

    /// The effective session-init timeout of a team.
    pub fn session_init_timeout(&self, team: &TeamConfig) -> Duration {
        team.session_init_timeout
            .unwrap_or(self.settings.session_init_timeout)
    }
}

impl TeamConfig {
    /// A JSON snapshot of the team's config for the session's debug info, with secrets hidden
    /// (see [`crate::redact`]): env values of secret names, secret `args` values, URL passwords
    /// and key shapes anywhere.
    pub fn redacted_snapshot(&self) -> serde_json::Value {
        let mut copy = self.clone();
        copy.env = crate::redact::env(&copy.env);
        copy.args = crate::redact::args(&copy.args);
        copy.ssh_options = crate::redact::args(&copy.ssh_options);
        for field in [
            &mut copy.agent_path,
            &mut copy.remote,
            &mut copy.switchboard_path,
            &mut copy.description,
            &mut copy.append_system_prompt,
        ] {
            if let Some(v) = field.as_mut() {
                *v = crate::redact::text(v);
            }
        }
        serde_json::to_value(&copy).unwrap_or(serde_json::Value::Null)
    }
}

/// Whether an environment variable's value must be hidden in logs and snapshots (see
/// [`crate::redact::is_secret_name`]).
pub fn is_secret_name(name: &str) -> bool {
    crate::redact::is_secret_name(name)
}

/// Whether `name` is a valid team name: 1–100 characters of `[A-Za-z0-9_.@-]`.
pub fn is_valid_team_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
}
