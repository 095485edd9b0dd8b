//! Checks of the interpolated teams file, table by table, building the [`TeamsConfig`].
//!
//! Walks the `toml::Table` by hand so that every problem is reported (serde would stop at the
//! first). Each check names the key path it is about; values that fail are left at their
//! defaults, since the config is thrown away whenever a problem was reported. Team folders are
//! checked on disk (exists, is a readable directory, not a system folder). Must not touch SQLite
//! or processes.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use super::load::{non_empty, Env, KeyPath, Report};
use super::permissions::{Ask, Permissions, Rule, DEFAULT_APPROVAL_TIMEOUT};
use super::{
    is_valid_team_name, DatabaseConfig, McpServers, Price, Provider, ServerConfig, Settings,
    TeamConfig, TeamsConfig,
};

const TOP_KEYS: &[&str] = &["settings", "database", "teams", "server"];
const SETTINGS_KEYS: &[&str] = &[
    "max_processes",
    "idle_timeout",
    "response_timeout",
    "spawn_timeout",
    "session_init_timeout",
    "cache_ttl",
    "health_check_interval",
    "shutdown_grace",
    "max_message_bytes",
    "max_hops",
    "max_queued_per_pair",
    "max_queued_bytes_per_pair",
    "tells_per_minute",
    "compaction",
    "events",
    "prices",
];
const SERVER_KEYS: &[&str] = &[
    "auth_token",
    "require_token",
    "open_routes",
    "header_timeout",
    "body_timeout",
    "max_connections",
    "max_mcp_sessions",
    "mcp_session_idle",
];
/// Routes `[server] open_routes` may open (besides `/health`, always open).
const OPENABLE_ROUTES: &[&str] = &["/status", "/metrics"];
const EVENTS_KEYS: &[&str] = &["retention", "max_events_per_tell", "max_bytes_per_tell"];
const COMPACTION_KEYS: &[&str] = &["max_messages", "stale_messages", "stale_age"];
const DATABASE_KEYS: &[&str] = &["path", "in_memory"];
const TEAM_KEYS: &[&str] = &[
    "path",
    "description",
    "agent",
    "agent_path",
    "args",
    "env",
    "env_passthrough",
    "idle_timeout",
    "session_init_timeout",
    "allowed_tools",
    "disallowed_tools",
    "append_system_prompt",
    "permission_mode",
    "model",
    "max_retries",
    "approval_policy",
    "sandbox",
    "provider",
    "remote",
    "ssh_options",
    "switchboard_path",
    "mcp_servers",
    "permissions",
];
const PERMISSION_KEYS: &[&str] = &["allow", "deny", "ask", "timeout"];
const PROVIDER_KEYS: &[&str] = &["base_url", "env_key"];
const PRICE_KEYS: &[&str] = &["input", "cached_input", "output"];
/// Whether the agent lifecycle runs a team with `remote` over SSH (it does: the pair's worker
/// spawns, stops and supervises it through `agent::ssh`, see `router/worker/remote.rs`). While
/// false, such a team was refused: its path is not checked here, and a local agent must never
/// start in it.
const REMOTE_TEAMS_WIRED: bool = true;
/// System folders no team may work in (also checked after resolving symlinks).
const FORBIDDEN_DIRS: &[&str] = &[
    "/etc",
    "/usr/bin",
    "/usr/sbin",
    "/bin",
    "/sbin",
    "/boot",
    "/proc",
    "/sys",
    "/dev",
];
/// Folders of the home directory no team may work in.
const FORBIDDEN_HOME_DIRS: &[&str] = &[".ssh", ".gnupg"];

/// Checks the whole document; the returned config is only meaningful when nothing was reported.
pub(super) fn validate(
    root: &Table,
    origin: Option<&Path>,
    env: Env<'_>,
    report: &mut Report<'_>,
) -> TeamsConfig {
    let top = KeyPath::root();
    check_keys(root, &top, TOP_KEYS, report);
    let home = non_empty(env, "HOME").map(PathBuf::from);
    TeamsConfig {
        source: origin.map(Path::to_path_buf),
        settings: settings(root, report),
        server: server(root, report),
        database: database(root, origin, env, home.as_deref(), report),
        teams: teams(root, home.as_deref(), report),
        warnings: Vec::new(),
    }
}

fn server(root: &Table, report: &mut Report<'_>) -> ServerConfig {
    let mut server = ServerConfig::default();
    let path = KeyPath::root().key("server");
    let Some(table) = get_table(root, "server", &KeyPath::root(), report) else {
        return server;
    };
    check_keys(table, &path, SERVER_KEYS, report);
    if let Some(token) = get_str(table, "auth_token", &path, report) {
        if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            report.add(
                &path.key("auth_token"),
                "must be at least 16 characters, without spaces (use a long random string)"
                    .to_string(),
            );
        } else {
            server.auth_token = Some(token.to_string());
        }
    }
    if let Some(b) = get_bool(table, "require_token", &path, report) {
        server.require_token = b;
    }
    for (i, route) in get_strings(table, "open_routes", &path, true, report)
        .into_iter()
        .enumerate()
    {
        if OPENABLE_ROUTES.contains(&route.as_str()) {
            server.open_routes.push(route);
        } else {
            report.add(
                &path.key("open_routes").index(i),
                format!(
                    "unknown route {route:?}: one of {} (/health is always open)",
                    OPENABLE_ROUTES.join(", ")
                ),
            );
        }
    }
    for (key, slot) in [
        ("header_timeout", &mut server.header_timeout),
        ("body_timeout", &mut server.body_timeout),
        ("mcp_session_idle", &mut server.mcp_session_idle),
    ] {
        if let Some(d) = get_duration(table, key, &path, report) {
            *slot = d;
        }
    }
    for (key, slot) in [
        ("max_connections", &mut server.max_connections),
        ("max_mcp_sessions", &mut server.max_mcp_sessions),
    ] {
        if let Some(n) = get_count(table, key, &path, report) {
            *slot = usize::try_from(n).unwrap_or(usize::MAX);
        }
    }
    server
}

fn settings(root: &Table, report: &mut Report<'_>) -> Settings {
    let mut settings = Settings::default();
    let path = KeyPath::root().key("settings");
    let Some(table) = get_table(root, "settings", &KeyPath::root(), report) else {
        return settings;
    };
    check_keys(table, &path, SETTINGS_KEYS, report);
    if let Some(n) = get_count(table, "max_processes", &path, report) {
        settings.max_processes = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = get_count(table, "max_message_bytes", &path, report) {
        settings.max_message_bytes = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = get_count(table, "max_hops", &path, report) {
        settings.max_hops = u32::try_from(n).unwrap_or(u32::MAX);
    }
    for (key, slot) in [
        ("max_queued_per_pair", &mut settings.max_queued_per_pair),
        (
            "max_queued_bytes_per_pair",
            &mut settings.max_queued_bytes_per_pair,
        ),
        ("tells_per_minute", &mut settings.tells_per_minute),
    ] {
        if let Some(n) = get_count(table, key, &path, report) {
            *slot = n;
        }
    }
    for (key, slot) in [
        ("idle_timeout", &mut settings.idle_timeout),
        ("response_timeout", &mut settings.response_timeout),
        ("spawn_timeout", &mut settings.spawn_timeout),
        ("session_init_timeout", &mut settings.session_init_timeout),
        ("cache_ttl", &mut settings.cache_ttl),
        ("health_check_interval", &mut settings.health_check_interval),
        ("shutdown_grace", &mut settings.shutdown_grace),
    ] {
        if let Some(d) = get_duration(table, key, &path, report) {
            *slot = d;
        }
    }
    let compaction = &mut settings.compaction;
    let path_c = path.key("compaction");
    if let Some(table) = get_table(table, "compaction", &path, report) {
        check_keys(table, &path_c, COMPACTION_KEYS, report);
        if let Some(n) = get_count(table, "max_messages", &path_c, report) {
            compaction.max_messages = n;
        }
        if let Some(n) = get_count(table, "stale_messages", &path_c, report) {
            compaction.stale_messages = n;
        }
        if let Some(d) = get_duration(table, "stale_age", &path_c, report) {
            compaction.stale_age = d;
        }
    }
    settings.prices = prices(table, &path, report);
    let events = &mut settings.events;
    let path_e = path.key("events");
    if let Some(table) = get_table(table, "events", &path, report) {
        check_keys(table, &path_e, EVENTS_KEYS, report);
        if let Some(d) = get_duration(table, "retention", &path_e, report) {
            events.retention = d;
        }
        if let Some(n) = get_count(table, "max_events_per_tell", &path_e, report) {
            events.max_events_per_tell = n;
        }
        if let Some(n) = get_size(table, "max_bytes_per_tell", &path_e, report) {
            events.max_bytes_per_tell = n;
        }
    }
    settings
}

fn database(
    root: &Table,
    origin: Option<&Path>,
    env: Env<'_>,
    home: Option<&Path>,
    report: &mut Report<'_>,
) -> DatabaseConfig {
    let path = KeyPath::root().key("database");
    let empty = Table::new();
    let table = get_table(root, "database", &KeyPath::root(), report).unwrap_or(&empty);
    check_keys(table, &path, DATABASE_KEYS, report);
    let in_memory = get_bool(table, "in_memory", &path, report).unwrap_or(false);
    let db_path = if table.contains_key("path") {
        get_str(table, "path", &path, report)
            .and_then(|raw| resolve_db_path(raw, origin, home, &path.key("path"), report))
    } else {
        let data_dir = non_empty(env, "XDG_DATA_HOME")
            .map(|x| PathBuf::from(x).join("switchboard"))
            .or_else(|| home.map(|h| h.join(".local/share/switchboard")));
        if data_dir.is_none() && !in_memory {
            report.add(
                &path.key("path"),
                "no database path given and neither XDG_DATA_HOME nor HOME is set to find \
                 the default (<data dir>/switchboard/switchboard.db); set [database] path",
            );
        }
        data_dir.map(|d| d.join("switchboard.db"))
    };
    DatabaseConfig {
        path: db_path.unwrap_or_default(),
        in_memory,
    }
}

fn resolve_db_path(
    raw: &str,
    origin: Option<&Path>,
    home: Option<&Path>,
    path: &KeyPath,
    report: &mut Report<'_>,
) -> Option<PathBuf> {
    if raw.trim().is_empty() {
        report.add(path, "must not be empty (leave it out to use the default)");
        return None;
    }
    let expanded = expand_tilde(raw, home, path, report)?;
    if expanded.is_absolute() {
        return Some(expanded);
    }
    let base = match origin.and_then(Path::parent) {
        Some(dir) => dir.to_path_buf(),
        None => match std::env::current_dir() {
            Ok(dir) => dir,
            Err(e) => {
                report.add(
                    path,
                    format!("relative path {raw:?} cannot be resolved: no current directory ({e})"),
                );
                return None;
            }
        },
    };
    // Collecting the components drops `.` steps: `./data/x.db` → `<dir>/data/x.db`.
    Some(base.join(expanded).components().collect())
}

fn teams(
    root: &Table,
    home: Option<&Path>,
    report: &mut Report<'_>,
) -> BTreeMap<String, TeamConfig> {
    let mut out = BTreeMap::new();
    let path = KeyPath::root().key("teams");
    if !root.contains_key("teams") {
        report.add(
            &path,
            "no teams defined: add at least one [teams.NAME] table with a path",
        );
        return out;
    }
    let Some(table) = get_table(root, "teams", &KeyPath::root(), report) else {
        return out;
    };
    if table.is_empty() {
        report.add(
            &path,
            "no teams defined: add at least one [teams.NAME] table with a path",
        );
    }
    for (name, value) in table {
        let team_path = path.key(name);
        if !is_valid_team_name(name) {
            report.add(
                &team_path,
                format!(
                    "invalid team name {name:?}: use 1 to 100 characters among letters, digits, \
                     \"_\", \".\", \"@\" and \"-\""
                ),
            );
        }
        match value {
            Value::Table(t) => {
                if let Some(team) = team(name, t, &team_path, home, report) {
                    out.insert(name.clone(), team);
                }
            }
            other => report.add(
                &team_path,
                format!(
                    "expected a table ([teams.{name}]), found {}",
                    describe(other)
                ),
            ),
        }
    }
    out
}

fn team(
    name: &str,
    table: &Table,
    path: &KeyPath,
    home: Option<&Path>,
    report: &mut Report<'_>,
) -> Option<TeamConfig> {
    check_keys(table, path, TEAM_KEYS, report);
    // A remote team's path is on the remote host: checked there (`config check --remote`).
    let remote = get_str(table, "remote", path, report);
    if let Some(destination) = remote {
        if let Err(why) = check_ssh_destination(destination) {
            report.add(&path.key("remote"), why);
        }
    }
    if remote.is_some() && !REMOTE_TEAMS_WIRED {
        report.add(
            &path.key("remote"),
            "remote teams are not supported by this version yet: the SSH transport is there but \
             tells do not use it (docs/remote.md), and the agent would run on this machine; \
             remove `remote` (and `ssh_options`) to run the team here",
        );
    }
    let ssh_options = get_strings(table, "ssh_options", path, true, report);
    if remote.is_none() && !ssh_options.is_empty() {
        report.add(
            &path.key("ssh_options"),
            "only for a remote team: set `remote` too, or remove `ssh_options`",
        );
    }
    let switchboard_path = get_str(table, "switchboard_path", path, report);
    if let Some(program) = switchboard_path {
        if let Err(why) = check_remote_program(program, remote.is_some()) {
            report.add(&path.key("switchboard_path"), why);
        }
    }
    let dir = if table.contains_key("path") {
        get_str(table, "path", path, report).and_then(|raw| match remote {
            Some(_) => check_remote_path(raw, &path.key("path"), report),
            None => check_team_path(raw, home, &path.key("path"), report),
        })
    } else {
        report.add(
            &path.key("path"),
            "missing: every team needs the path of its project folder",
        );
        None
    };
    let agent = get_str(table, "agent", path, report).unwrap_or(super::kinds::AGENT_KINDS[0].name);
    // The kind, and the agent-specific options it takes (see kinds.rs).
    super::kinds::check_team(super::kinds::AGENT_KINDS, agent, table, path, report);
    // Over SSH, only the kinds whose process model the remote lifecycle runs.
    if remote.is_some() && super::kinds::kind(agent).is_some_and(|k| !k.remote) {
        let remote_kinds: Vec<&str> = super::kinds::AGENT_KINDS
            .iter()
            .filter(|k| k.remote)
            .map(|k| k.name)
            .collect();
        report.add(
            &path.key("remote"),
            format!(
                "agent {agent:?} cannot run on a remote host in this version (remote teams run: \
                 {}); remove `remote` to run the team here",
                remote_kinds.join(", ")
            ),
        );
    }
    let agent_path = get_str(table, "agent_path", path, report);
    if agent_path.is_some_and(|p| p.trim().is_empty()) {
        report.add(
            &path.key("agent_path"),
            "must not be empty (leave it out to use the agent's default)",
        );
    }
    let permission_mode = get_str(table, "permission_mode", path, report);
    let mcp_servers = match get_str(table, "mcp_servers", path, report) {
        None | Some("inherit") => McpServers::Inherit,
        Some("none") => McpServers::None,
        Some(other) => {
            report.add(
                &path.key("mcp_servers"),
                format!("unknown value {other:?} (one of: inherit, none)"),
            );
            McpServers::Inherit
        }
    };
    // Read every key before giving up on a team without a usable path, so that all of its
    // problems are reported.
    let team = TeamConfig {
        name: name.to_string(),
        path: PathBuf::new(),
        description: get_str(table, "description", path, report).map(str::to_string),
        agent: agent.to_string(),
        agent_path: agent_path.map(str::to_string),
        args: get_strings(table, "args", path, false, report),
        env: get_env(table, path, report),
        env_passthrough: get_passthrough(table, path, report),
        idle_timeout: get_duration(table, "idle_timeout", path, report),
        session_init_timeout: get_duration(table, "session_init_timeout", path, report),
        allowed_tools: get_strings(table, "allowed_tools", path, true, report),
        disallowed_tools: get_strings(table, "disallowed_tools", path, true, report),
        append_system_prompt: get_str(table, "append_system_prompt", path, report)
            .map(str::to_string),
        permission_mode: permission_mode.map(str::to_string),
        model: non_blank(table, "model", path, report),
        max_retries: get_retries(table, "max_retries", path, report),
        approval_policy: get_str(table, "approval_policy", path, report).map(str::to_string),
        sandbox: get_str(table, "sandbox", path, report).map(str::to_string),
        provider: provider(table, path, report),
        remote: remote.map(str::to_string),
        ssh_options,
        switchboard_path: switchboard_path.map(str::to_string),
        mcp_servers,
        permissions: permissions(table, path, report),
    };
    Some(TeamConfig { path: dir?, ..team })
}

/// A string option that, when given, must not be blank.
fn non_blank(table: &Table, key: &str, path: &KeyPath, report: &mut Report<'_>) -> Option<String> {
    let v = get_str(table, key, path, report)?;
    if v.trim().is_empty() {
        report.add(
            &path.key(key),
            "must not be empty (leave it out for the default)",
        );
        return None;
    }
    Some(v.to_string())
}

/// A number of retries: an integer from 0 to 100.
fn get_retries(table: &Table, key: &str, path: &KeyPath, report: &mut Report<'_>) -> Option<u32> {
    match get(table, key, path, report)? {
        Value::Integer(n) if (0..=100).contains(n) => u32::try_from(*n).ok(),
        Value::Integer(n) => {
            report.add(&path.key(key), format!("must be from 0 to 100, found {n}"));
            None
        }
        other => {
            wrong_type(key, path, "an integer from 0 to 100", other, report);
            None
        }
    }
}

/// `[teams.NAME.provider]`: `base_url` an http(s) URL, `env_key` a variable name.
fn provider(table: &Table, path: &KeyPath, report: &mut Report<'_>) -> Option<Provider> {
    let t = get_table(table, "provider", path, report)?;
    let at = path.key("provider");
    check_keys(t, &at, PROVIDER_KEYS, report);
    let base_url = match get_str(t, "base_url", &at, report) {
        Some(url) if is_http_url(url) => Some(url.trim_end_matches('/').to_string()),
        Some(url) => {
            report.add(
                &at.key("base_url"),
                format!(
                    "{url:?} is not an http:// or https:// URL with a host (for example \
                     \"http://127.0.0.1:8080/v1\")"
                ),
            );
            None
        }
        None => {
            if !t.contains_key("base_url") {
                report.add(&at.key("base_url"), "missing: the API's base URL");
            }
            None
        }
    };
    let env_key = get_str(t, "env_key", &at, report).and_then(|k| {
        if is_valid_env_name(k) {
            Some(k.to_string())
        } else {
            report.add(
                &at.key("env_key"),
                format!("{k:?} is not an environment variable name (letters, digits, `_`)"),
            );
            None
        }
    });
    Some(Provider {
        base_url: base_url?,
        env_key,
    })
}

/// `http://HOST...` or `https://HOST...`, no space or control character.
fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| {
        !r.is_empty()
            && !r.starts_with('/')
            && !url.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

/// `[settings.prices."MODEL"]`: `input` and `output` (US dollars per million tokens) required,
/// `cached_input` defaulting to `input`; none negative.
fn prices(table: &Table, path: &KeyPath, report: &mut Report<'_>) -> BTreeMap<String, Price> {
    let mut out = BTreeMap::new();
    let Some(t) = get_table(table, "prices", path, report) else {
        return out;
    };
    let at = path.key("prices");
    for (model, value) in t {
        let here = at.key(model);
        let Some(p) = value.as_table() else {
            report.add(
                &here,
                "must be a table such as { input = 1.25, cached_input = 0.125, output = 10.0 } \
                 (US dollars per million tokens)",
            );
            continue;
        };
        check_keys(p, &here, PRICE_KEYS, report);
        let mut number = |key: &str, required: bool| -> Option<f64> {
            match p.get(key) {
                None if required => {
                    report.add(&here.key(key), "missing: US dollars per million tokens");
                    None
                }
                None => None,
                Some(Value::Float(f)) if f.is_finite() && *f >= 0.0 => Some(*f),
                Some(Value::Integer(n)) if *n >= 0 => Some(*n as f64),
                Some(other) => {
                    report.add(
                        &here.key(key),
                        format!(
                            "must be a number ≥ 0 (US dollars per million tokens), found {other}"
                        ),
                    );
                    None
                }
            }
        };
        let input = number("input", true);
        let output = number("output", true);
        let cached = number("cached_input", false);
        if let (Some(input), Some(output)) = (input, output) {
            out.insert(
                model.clone(),
                Price {
                    input,
                    cached_input: cached.unwrap_or(input),
                    output,
                },
            );
        }
    }
    out
}

/// `[teams.NAME.permissions]`: every rule parsed (a bad one is reported with its key path),
/// `ask` one of human / caller / deny, `timeout` a duration.
fn permissions(table: &Table, path: &KeyPath, report: &mut Report<'_>) -> Option<Permissions> {
    let t = get_table(table, "permissions", path, report)?;
    let at = path.key("permissions");
    check_keys(t, &at, PERMISSION_KEYS, report);
    let rules = |key: &str, report: &mut Report<'_>| -> Vec<Rule> {
        let texts = get_strings(t, key, &at, false, report);
        let mut out = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            match Rule::parse(text) {
                Ok(rule) => out.push(rule),
                Err(e) => report.add(&at.key(key).index(i), e),
            }
        }
        out
    };
    let allow = rules("allow", report);
    let deny = rules("deny", report);
    let ask = match get_str(t, "ask", &at, report) {
        None | Some("human") => Ask::Human,
        Some("caller") => Ask::Caller,
        Some("deny") => Ask::Deny,
        Some(other) => {
            report.add(
                &at.key("ask"),
                format!("unknown value {other:?} (one of: human, caller, deny)"),
            );
            Ask::Human
        }
    };
    let timeout = get_duration(t, "timeout", &at, report).unwrap_or(DEFAULT_APPROVAL_TIMEOUT);
    Some(Permissions {
        allow,
        deny,
        ask,
        timeout,
    })
}

/// Checks a team's project folder and returns it `~`-expanded (not canonicalized).
fn check_team_path(
    raw: &str,
    home: Option<&Path>,
    path: &KeyPath,
    report: &mut Report<'_>,
) -> Option<PathBuf> {
    if raw.trim().is_empty() {
        report.add(path, "must not be empty");
        return None;
    }
    let dir = expand_tilde(raw, home, path, report)?;
    let shown = dir.display().to_string();
    if !dir.is_absolute() {
        report.add(
            path,
            format!("path {shown:?} must be an absolute path (or start with ~/)"),
        );
        return None;
    }
    let mut ok = true;
    let has_parent_dir = dir.components().any(|c| c == Component::ParentDir);
    if has_parent_dir {
        report.add(path, format!("path {shown:?} must not contain \"..\""));
        ok = false;
    }
    let forbidden = forbidden_dirs(home);
    // With "..", the written form says little about where the path leads: the resolved form
    // is checked below instead.
    let written_inside = (!has_parent_dir)
        .then(|| inside_any(&dir, &forbidden))
        .flatten();
    if let Some(system) = &written_inside {
        report.add(
            path,
            format!(
                "path {shown:?} is inside the protected folder {}",
                system.display()
            ),
        );
        ok = false;
    }
    match std::fs::metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let kept = report.missing_folder(path, format!("path {shown:?} does not exist"));
            // Kept (read-only load) only when nothing else was wrong with it.
            return (kept && ok).then_some(dir);
        }
        Err(e) => {
            report.add(path, format!("path {shown:?} cannot be accessed: {e}"));
            return None;
        }
        Ok(meta) if !meta.is_dir() => {
            report.add(path, format!("path {shown:?} is not a directory"));
            return None;
        }
        Ok(_) => {}
    }
    if let Err(e) = std::fs::read_dir(&dir) {
        report.add(path, format!("path {shown:?} is not readable: {e}"));
        ok = false;
    }
    if written_inside.is_none() {
        if let Ok(real) = dir.canonicalize() {
            if let Some(system) = inside_any(&real, &forbidden) {
                report.add(
                    path,
                    format!(
                        "path {shown:?} resolves to {:?}, inside the protected folder {}",
                        real.display().to_string(),
                        system.display()
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(dir)
}

/// The protected folders, as written and (when it differs) with symlinks resolved.
fn forbidden_dirs(home: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = FORBIDDEN_DIRS.iter().map(PathBuf::from).collect();
    if let Some(home) = home {
        dirs.extend(FORBIDDEN_HOME_DIRS.iter().map(|d| home.join(d)));
    }
    let resolved: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .filter(|r| !dirs.contains(r))
        .collect();
    dirs.extend(resolved);
    dirs
}

/// The protected folder `path` is inside of (or equal to), compared component by component.
fn inside_any(path: &Path, forbidden: &[PathBuf]) -> Option<PathBuf> {
    forbidden.iter().find(|d| path.starts_with(d)).cloned()
}

/// `~` → HOME, `~/x` → HOME/x; anything else is returned unchanged.
fn expand_tilde(
    raw: &str,
    home: Option<&Path>,
    path: &KeyPath,
    report: &mut Report<'_>,
) -> Option<PathBuf> {
    if raw.contains('\0') {
        report.add(
            path,
            format!("path {raw:?} must not contain a NUL character"),
        );
        return None;
    }
    let rest = match raw.strip_prefix('~') {
        None => return Some(PathBuf::from(raw)),
        Some(rest) => rest,
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        report.add(
            path,
            format!(
                "cannot expand {raw:?}: only \"~\" and \"~/...\" (the current user) are supported"
            ),
        );
        return None;
    }
    match home {
        Some(home) => Some(home.join(rest.trim_start_matches('/'))),
        None => {
            report.add(
                path,
                format!("cannot expand \"~\" in {raw:?}: HOME is not set"),
            );
            None
        }
    }
}

/// Why `destination` is not a usable SSH destination (`remote` of a team), if it is not:
/// empty, taken by ssh for an option, holding spaces or control characters, or a URL.
pub fn check_ssh_destination(destination: &str) -> Result<(), String> {
    if destination.is_empty() {
        return Err("must not be empty (user@host, or a Host alias of ~/.ssh/config)".into());
    }
    if destination.starts_with('-') {
        return Err(format!(
            "{destination:?} starts with \"-\" (ssh would read it as an option)"
        ));
    }
    if destination
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{destination:?} holds a space or a control character"
        ));
    }
    if destination.contains("://") {
        return Err(format!(
            "{destination:?} is a URL; give user@host or a Host alias of ~/.ssh/config (a port \
             goes in ssh_options = [\"-p\", \"PORT\"])"
        ));
    }
    Ok(())
}

/// Why `program` is not a usable `switchboard_path` (the `switchboard` program on a remote
/// team's host), if it is not: only with `remote`; an absolute path there or a bare name
/// looked up in the remote PATH; no control characters.
fn check_remote_program(program: &str, remote: bool) -> Result<(), String> {
    if !remote {
        return Err(
            "only for a remote team: set `remote` too, or remove `switchboard_path`".into(),
        );
    }
    if program.trim().is_empty() {
        return Err("must not be empty (leave it out for `switchboard` on the remote PATH)".into());
    }
    if program.chars().any(char::is_control) {
        return Err(format!("{program:?} holds a control character"));
    }
    if program.contains('/') && !program.starts_with('/') {
        return Err(format!(
            "{program:?} must be an absolute path on the remote host, or a program name \
             found in its PATH (no relative path: the agent's folder decides what it means)"
        ));
    }
    if program.split('/').any(|part| part == "..") {
        return Err(format!("{program:?} must not contain \"..\""));
    }
    Ok(())
}

/// Checks the path of a remote team (a folder on the remote host, not looked at here):
/// absolute, without "..".
fn check_remote_path(raw: &str, path: &KeyPath, report: &mut Report<'_>) -> Option<PathBuf> {
    if raw.trim().is_empty() {
        report.add(path, "must not be empty");
        return None;
    }
    if raw.contains('\0') {
        report.add(path, "must not contain a NUL byte");
        return None;
    }
    let dir = PathBuf::from(raw);
    if !dir.is_absolute() {
        report.add(
            path,
            format!("path {raw:?} of a remote team must be an absolute path on the remote host"),
        );
        return None;
    }
    if dir.components().any(|c| c == Component::ParentDir) {
        report.add(path, format!("path {raw:?} must not contain \"..\""));
        return None;
    }
    Some(dir)
}

// ---- typed getters: each reports a value of the wrong type or out of range, and returns
// ---- `None` when the key is absent, wrong, or was already reported.

/// Reports every key of `table` not in `allowed`.
fn check_keys(table: &Table, path: &KeyPath, allowed: &[&str], report: &mut Report<'_>) {
    for key in table.keys() {
        if allowed.contains(&key.as_str()) {
            continue;
        }
        let hint = allowed
            .iter()
            .find(|a| edit_distance(a, key) <= 2)
            .map(|a| format!("did you mean {a:?}? "))
            .unwrap_or_default();
        report.add(
            &path.key(key),
            format!(
                "unknown key {key:?} ({hint}allowed: {})",
                allowed.join(", ")
            ),
        );
    }
}

fn get<'t>(table: &'t Table, key: &str, path: &KeyPath, report: &Report<'_>) -> Option<&'t Value> {
    table
        .get(key)
        .filter(|_| !report.is_poisoned(&path.key(key)))
}

fn wrong_type(key: &str, path: &KeyPath, expected: &str, found: &Value, report: &mut Report<'_>) {
    report.add(
        &path.key(key),
        format!("expected {expected}, found {}", describe(found)),
    );
}

fn get_table<'t>(
    table: &'t Table,
    key: &str,
    path: &KeyPath,
    report: &mut Report<'_>,
) -> Option<&'t Table> {
    match get(table, key, path, report)? {
        Value::Table(t) => Some(t),
        other => {
            wrong_type(key, path, "a table", other, report);
            None
        }
    }
}

fn get_str<'t>(
    table: &'t Table,
    key: &str,
    path: &KeyPath,
    report: &mut Report<'_>,
) -> Option<&'t str> {
    match get(table, key, path, report)? {
        Value::String(s) => Some(s),
        other => {
            wrong_type(key, path, "a string", other, report);
            None
        }
    }
}

fn get_bool(table: &Table, key: &str, path: &KeyPath, report: &mut Report<'_>) -> Option<bool> {
    match get(table, key, path, report)? {
        Value::Boolean(b) => Some(*b),
        other => {
            wrong_type(key, path, "true or false", other, report);
            None
        }
    }
}

/// An integer ≥ 1.
fn get_count(table: &Table, key: &str, path: &KeyPath, report: &mut Report<'_>) -> Option<u64> {
    match get(table, key, path, report)? {
        Value::Integer(n) if *n >= 1 => u64::try_from(*n).ok(),
        Value::Integer(n) => {
            report.add(&path.key(key), format!("must be at least 1, found {n}"));
            None
        }
        other => {
            wrong_type(key, path, "an integer ≥ 1", other, report);
            None
        }
    }
}

/// A size ≥ 1 byte: an integer (bytes) or a string such as `"512KiB"`, `"1MiB"`, `"2MB"`.
fn get_size(table: &Table, key: &str, path: &KeyPath, report: &mut Report<'_>) -> Option<u64> {
    match get(table, key, path, report)? {
        Value::String(s) => match crate::util::parse_size(s) {
            Ok(0) => {
                report.add(
                    &path.key(key),
                    format!("must be at least 1 byte, found {s:?}"),
                );
                None
            }
            Ok(n) => Some(n),
            Err(e) => {
                report.add(&path.key(key), e);
                None
            }
        },
        Value::Integer(_) => get_count(table, key, path, report),
        other => {
            wrong_type(
                key,
                path,
                "a size such as \"1MiB\" or \"512KiB\", or a number of bytes",
                other,
                report,
            );
            None
        }
    }
}

/// A duration string (`"90s"`, `"5m"`, `"7d"`) longer than zero.
fn get_duration(
    table: &Table,
    key: &str,
    path: &KeyPath,
    report: &mut Report<'_>,
) -> Option<Duration> {
    match get(table, key, path, report)? {
        Value::String(s) => match crate::util::parse_duration(s) {
            Ok(d) if d.is_zero() => {
                report.add(
                    &path.key(key),
                    format!("must be longer than zero, found {s:?}"),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                report.add(&path.key(key), e);
                None
            }
        },
        other => {
            wrong_type(
                key,
                path,
                "a duration string such as \"30s\", \"5m\" or \"1h\"",
                other,
                report,
            );
            None
        }
    }
}

/// An array of strings (non-empty ones when `non_empty`); empty when absent.
fn get_strings(
    table: &Table,
    key: &str,
    path: &KeyPath,
    non_empty: bool,
    report: &mut Report<'_>,
) -> Vec<String> {
    let array = match get(table, key, path, report) {
        None => return Vec::new(),
        Some(Value::Array(a)) => a,
        Some(other) => {
            wrong_type(key, path, "an array of strings", other, report);
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, element) in array.iter().enumerate() {
        let at = path.key(key).index(i);
        if report.is_poisoned(&at) {
            continue;
        }
        match element {
            Value::String(s) if non_empty && s.trim().is_empty() => {
                report.add(&at, "must not be empty");
            }
            Value::String(s) => out.push(s.clone()),
            other => report.add(&at, format!("expected a string, found {}", describe(other))),
        }
    }
    out
}

/// `env`: a table of variable names to string values.
fn get_env(table: &Table, path: &KeyPath, report: &mut Report<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(env) = get_table(table, "env", path, report) else {
        return out;
    };
    let path = path.key("env");
    for (name, value) in env {
        let at = path.key(name);
        if !is_valid_env_name(name) {
            report.add(
                &at,
                format!(
                    "invalid environment variable name {name:?}: use letters, digits and \"_\", \
                     not starting with a digit"
                ),
            );
        }
        if report.is_poisoned(&at) {
            continue;
        }
        match value {
            Value::String(s) => {
                out.insert(name.clone(), s.clone());
            }
            other => report.add(
                &at,
                format!(
                    "expected a string (quote it: {name} = \"...\"), found {}",
                    describe(other)
                ),
            ),
        }
    }
    out
}

/// `env_passthrough`: names of variables, or prefixes ending in `*` (`AWS_*`).
fn get_passthrough(table: &Table, path: &KeyPath, report: &mut Report<'_>) -> Vec<String> {
    let names = get_strings(table, "env_passthrough", path, true, report);
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let stem = name.strip_suffix('*').unwrap_or(&name);
        if !is_valid_env_name(stem) {
            report.add(
                &path.key("env_passthrough").index(i),
                format!(
                    "invalid environment variable name {name:?}: use letters, digits and \"_\", \
                     optionally ending in \"*\" for every name with that prefix"
                ),
            );
        } else {
            out.push(name);
        }
    }
    out
}

/// Whether `name` is an environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A value's type and (for scalars) the value, for messages: `string "four"`, `integer 4`.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) if s.chars().count() > 40 => {
            let head: String = s.chars().take(40).collect();
            format!("string {:?}", format!("{head}..."))
        }
        Value::String(s) => format!("string {s:?}"),
        Value::Integer(n) => format!("integer {n}"),
        Value::Float(x) => format!("float {x}"),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Datetime(d) => format!("datetime {d}"),
        Value::Array(_) => "an array".to_string(),
        Value::Table(_) => "a table".to_string(),
    }
}

/// Levenshtein distance, for "did you mean" hints on short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur.push(substitute.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_destinations() {
        for ok in ["deploy@gpu-box", "alias", "u@10.0.0.1", "u@[::1]"] {
            assert_eq!(check_ssh_destination(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-oProxyCommand=x",
            "a b",
            "a\nb",
            "ssh://h:22",
            "https://h",
        ] {
            assert!(check_ssh_destination(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn env_names() {
        assert!(is_valid_env_name("API_TOKEN"));
        assert!(is_valid_env_name("_x1"));
        assert!(!is_valid_env_name("1X"));
        assert!(!is_valid_env_name("A-B"));
        assert!(!is_valid_env_name(""));
    }

    #[test]
    fn inside_compares_components() {
        let forbidden = vec![PathBuf::from("/etc")];
        assert!(inside_any(Path::new("/etc"), &forbidden).is_some());
        assert!(inside_any(Path::new("/etc/nginx"), &forbidden).is_some());
        assert!(inside_any(Path::new("/etcetera"), &forbidden).is_none());
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("path", "path"), 0);
        assert_eq!(edit_distance("path", "paht"), 2);
        assert_eq!(edit_distance("agent", "agnet"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
