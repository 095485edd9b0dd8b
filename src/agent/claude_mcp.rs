//! Claude Code's MCP registrations, as a team's agent sees them, and Switchboard's own entry
//! among them.
//!
//! Claude Code 2.1.328 (see docs/claude-code-protocol.md, "MCP servers across scopes") reads:
//! user scope from `mcpServers` of `<config>/.claude.json`, local scope from
//! `projects["<project>"].mcpServers` there (the project is the git root holding the folder, else
//! the folder), project scope from every `.mcp.json` from the folder up to `/` (the nearest
//! wins); local beats project beats user under one name. `<config>` is `$CLAUDE_CONFIG_DIR`,
//! else `$HOME`. In `-p` mode a `.mcp.json` server needs no approval; one the person rejected
//! (`disabledMcpjsonServers`) is skipped, one turned off (`disabledMcpServers`) is not connected.
//!
//! A spawned agent gets `--strict-mcp-config` and one `--mcp-config` holding Switchboard's
//! server (the one naming its session) plus, with `mcp_servers = "inherit"`, the team's other
//! servers as Claude Code would load them: a Switchboard registration under any name is left
//! out, so the agent can only reach Switchboard through its chained identity. Switchboard's
//! entries are recognised by what they run (this binary, `serve --stdio`, a `/mcp?team=` URL,
//! our headers), not by their name.
//!
//! Also: whether a team is registered correctly ([`check_registration`], for `doctor`), and
//! registering it ([`install`], for `switchboard mcp install`).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::AgentError;
use crate::config::{McpServers, TeamConfig};

/// The name of Switchboard's server in Claude Code: its tools are `mcp__switchboard__team_tell`,
/// ...
pub const SERVER_NAME: &str = "switchboard";

/// Where an MCP registration lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// `mcpServers` of `.claude.json`: every folder.
    User,
    /// A `.mcp.json` in the folder or above it.
    Project,
    /// `projects["<project>"].mcpServers` of `.claude.json`: this project only.
    Local,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::User => "user",
            Scope::Project => "project",
            Scope::Local => "local",
        })
    }
}

/// One MCP server registration.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// Its name (`mcp__<name>__<tool>`).
    pub name: String,
    /// Its scope.
    pub scope: Scope,
    /// The file it is in.
    pub file: PathBuf,
    /// The entry as written (`command`/`args`/`env`, or `type`/`url`/`headers`).
    pub entry: Value,
}

/// A variable as the team's agent sees it: the team's env wins over ours; empty is unset.
fn agent_var(team: &TeamConfig, name: &str) -> Option<String> {
    team.env
        .get(name)
        .cloned()
        .or_else(|| std::env::var(name).ok())
        .filter(|v| !v.is_empty())
}

/// `.claude.json` of the team's agent: `$CLAUDE_CONFIG_DIR/.claude.json`, else
/// `$HOME/.claude.json`.
pub fn claude_json_path(team: &TeamConfig) -> Option<PathBuf> {
    match agent_var(team, "CLAUDE_CONFIG_DIR") {
        Some(dir) => Some(PathBuf::from(dir).join(".claude.json")),
        None => Some(PathBuf::from(agent_var(team, "HOME")?).join(".claude.json")),
    }
}

/// Claude Code's settings folder of the team's agent (`$CLAUDE_CONFIG_DIR`, else `~/.claude`).
fn settings_dir(team: &TeamConfig) -> Option<PathBuf> {
    match agent_var(team, "CLAUDE_CONFIG_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(PathBuf::from(agent_var(team, "HOME")?).join(".claude")),
    }
}

/// The key of a folder in `projects` of `.claude.json`: the git root holding it, else itself
/// (symlinks resolved).
pub fn project_key(folder: &Path) -> PathBuf {
    let folder = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf());
    folder
        .ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(&folder)
        .to_path_buf()
}

/// A JSON file, `Null` when it does not exist. Claude Code rewrites `.claude.json` while it
/// runs: text that does not parse is read again a few times before it counts as broken.
fn read_json(path: &Path) -> Result<Value, AgentError> {
    let mut result = read_json_once(path);
    for _ in 0..4 {
        match &result {
            Err(AgentError::ClaudeConfig { message, .. }) if message.starts_with("not valid") => {
                std::thread::yield_now();
                result = read_json_once(path);
            }
            _ => break,
        }
    }
    result
}

fn read_json_once(path: &Path) -> Result<Value, AgentError> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(Value::Null),
        Ok(text) => serde_json::from_str(&text).map_err(|e| AgentError::ClaudeConfig {
            path: path.to_path_buf(),
            message: format!("not valid JSON: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Null),
        Err(e) => Err(AgentError::ClaudeConfig {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn servers_of(v: Option<&Value>, scope: Scope, file: &Path, out: &mut Vec<Registered>) {
    if let Some(map) = v.and_then(Value::as_object) {
        for (name, entry) in map {
            if entry.is_object() {
                out.push(Registered {
                    name: name.clone(),
                    scope,
                    file: file.to_path_buf(),
                    entry: entry.clone(),
                });
            }
        }
    }
}

/// What Claude Code, started in the team's folder, would load, before `disabledMcpServers`.
struct Visible {
    /// Every registration, lowest precedence first (user, project far to near, local).
    all: Vec<Registered>,
    /// Names turned off in this project (`disabledMcpServers`).
    disabled: Vec<String>,
}

fn visible(team: &TeamConfig) -> Result<Visible, AgentError> {
    let mut all = Vec::new();
    let mut disabled = Vec::new();
    let key = project_key(&team.path);
    let claude_json = match claude_json_path(team) {
        Some(p) => Some((read_json(&p)?, p)),
        None => None,
    };
    let project = claude_json
        .as_ref()
        .and_then(|(v, _)| v.get("projects")?.get(key.to_str()?));
    if let Some((v, p)) = &claude_json {
        servers_of(v.get("mcpServers"), Scope::User, p, &mut all);
    }
    // `.mcp.json` servers the person rejected are skipped.
    let mut rejected = strings(project.and_then(|p| p.get("disabledMcpjsonServers")));
    let folder = std::fs::canonicalize(&team.path).unwrap_or_else(|_| team.path.clone());
    let mut settings = vec![
        folder.join(".claude/settings.json"),
        folder.join(".claude/settings.local.json"),
    ];
    if let Some(dir) = settings_dir(team) {
        settings.push(dir.join("settings.json"));
    }
    for file in settings {
        if let Ok(v) = read_json(&file) {
            rejected.extend(strings(v.get("disabledMcpjsonServers")));
        }
    }
    let dirs: Vec<&Path> = folder.ancestors().collect();
    for dir in dirs.into_iter().rev() {
        let file = dir.join(".mcp.json");
        let v = read_json(&file)?;
        let mut found = Vec::new();
        servers_of(v.get("mcpServers"), Scope::Project, &file, &mut found);
        all.extend(found.into_iter().filter(|r| !rejected.contains(&r.name)));
    }
    if let (Some(project), Some((_, p))) = (project, &claude_json) {
        servers_of(project.get("mcpServers"), Scope::Local, p, &mut all);
        disabled = strings(project.get("disabledMcpServers"));
    }
    Ok(Visible { all, disabled })
}

/// The MCP servers Claude Code started in the team's folder would connect to, by name
/// (local beats project beats user), Switchboard's own included.
pub fn effective_servers(team: &TeamConfig) -> Result<Vec<Registered>, AgentError> {
    let v = visible(team)?;
    let mut out: Vec<Registered> = Vec::new();
    for r in v.all {
        out.retain(|o| o.name != r.name);
        out.push(r);
    }
    out.retain(|r| !v.disabled.contains(&r.name));
    Ok(out)
}

/// This process's executable, symlinks resolved.
pub fn this_exe() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
}

fn same_file(a: &str, b: &Path) -> bool {
    a.contains('/') && std::fs::canonicalize(a).is_ok_and(|a| a == b)
}

fn file_name(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// Whether an MCP server entry is a Switchboard server: judged by what it runs or where it
/// points, never by its name. `exe` is this binary; `url` the MCP endpoint this process
/// serves, if any.
pub fn is_switchboard_entry(entry: &Value, exe: Option<&Path>, url: Option<&str>) -> bool {
    if let Some(command) = entry.get("command").and_then(Value::as_str) {
        let args = strings(entry.get("args"));
        let ours = |s: &str| {
            if s.contains(':') {
                // A URL or DSN (`postgres://.../switchboard`), not a program.
                return false;
            }
            let name = file_name(s);
            name == "switchboard"
                || name == "switchboard.exe"
                || exe.is_some_and(|e| same_file(s, e))
        };
        if ours(command) || args.iter().any(|a| ours(a)) {
            return true;
        }
        // `cargo run -- serve --stdio ...`, `sh -c "switchboard serve ..."`, ...
        if args.iter().any(|a| a == "serve") && args.iter().any(|a| a == "--stdio") {
            return true;
        }
        // The same tests on the words of a shell string (`sh -c "... serve --stdio ..."`):
        // this very binary under any name, or a `switchboard` running `serve`.
        return std::iter::once(command)
            .chain(args.iter().map(String::as_str))
            .any(|a| {
                let words: Vec<&str> = a
                    .split_whitespace()
                    .map(|w| w.trim_matches(|c| c == '\'' || c == '"'))
                    .collect();
                let serve = words.contains(&"serve");
                words
                    .iter()
                    .any(|w| !w.contains(':') && exe.is_some_and(|e| same_file(w, e)))
                    || (serve && words.contains(&"--stdio"))
                    || (serve && words.iter().any(|w| ours(w)))
            });
    }
    let Some(target) = entry.get("url").and_then(Value::as_str) else {
        return false;
    };
    let headers = entry.get("headers").and_then(Value::as_object);
    if headers.is_some_and(|h| {
        h.keys().any(|k| {
            k.eq_ignore_ascii_case("x-switchboard-team")
                || k.eq_ignore_ascii_case("x-switchboard-agent")
        })
    }) {
        return true;
    }
    let Ok(parsed) = target.parse::<http::Uri>() else {
        return false;
    };
    let team_query = parsed
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("team=")));
    if team_query && parsed.path().trim_end_matches('/').ends_with("/mcp") {
        return true;
    }
    let ours = url.and_then(|u| u.parse::<http::Uri>().ok());
    ours.is_some_and(|o| o.authority().is_some() && o.authority() == parsed.authority())
}

/// The MCP config of a spawned agent of `team`: `switchboard` (the entry naming the agent's
/// session, if Switchboard serves one) plus, with `mcp_servers = "inherit"`, the team's other
/// servers as Claude Code would load them, without any Switchboard registration. Meant for
/// `--strict-mcp-config`.
pub fn agent_mcp_config(
    team: &TeamConfig,
    switchboard: Option<Value>,
    url: Option<&str>,
) -> Result<Value, AgentError> {
    let mut servers = Map::new();
    if team.mcp_servers == McpServers::Inherit {
        let exe = this_exe();
        for r in effective_servers(team)? {
            if r.name != SERVER_NAME && !is_switchboard_entry(&r.entry, exe.as_deref(), url) {
                servers.insert(r.name, r.entry);
            }
        }
    }
    if let Some(entry) = switchboard {
        servers.insert(SERVER_NAME.to_string(), entry);
    }
    Ok(json!({ "mcpServers": servers }))
}

// ---------------------------------------------------------------------------------------------
// Registration of Switchboard in a team's Claude Code

/// What a correct registration of a team runs.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The team.
    pub team: String,
    /// This switchboard binary.
    pub exe: PathBuf,
    /// The teams file it must be given (`--config`).
    pub config: PathBuf,
}

impl Expected {
    /// The stdio entry: `<exe> --config <file> serve --stdio --as <team>`.
    pub fn stdio_entry(&self) -> Value {
        json!({
            "type": "stdio",
            "command": self.exe.display().to_string(),
            "args": ["--config", self.config.display().to_string(), "serve", "--stdio", "--as", self.team],
            "env": {},
        })
    }

    /// The HTTP entry for the server at `url` (`http://HOST:PORT/mcp`), with a bearer token
    /// if the server needs one.
    pub fn http_entry(&self, url: &str, bearer: Option<&str>) -> Value {
        let sep = if url.contains('?') { '&' } else { '?' };
        let mut entry = json!({ "type": "http", "url": format!("{url}{sep}team={}", self.team) });
        if let Some(b) = bearer {
            entry["headers"] = json!({ "Authorization": format!("Bearer {b}") });
        }
        entry
    }
}

/// One Switchboard registration found for a team.
#[derive(Debug, Clone, Serialize)]
pub struct FoundRegistration {
    /// Its name.
    pub name: String,
    /// Its scope.
    pub scope: Scope,
    /// The file it is in.
    pub file: PathBuf,
    /// What it runs, or its URL.
    pub target: String,
    /// What is wrong with it, if anything.
    pub problem: Option<String>,
}

/// Whether a team's Claude Code has Switchboard registered correctly.
#[derive(Debug, Clone, Serialize)]
pub struct RegistrationReport {
    /// The team.
    pub team: String,
    /// Registered, and every Switchboard registration it sees is right.
    pub ok: bool,
    /// The Switchboard registrations Claude Code in the team's folder would load.
    pub registrations: Vec<FoundRegistration>,
    /// What is wrong.
    pub problems: Vec<String>,
    /// The commands that fix it, in order (each in backquotes, with the folder to run it in
    /// where that matters).
    pub fixes: Vec<String>,
}

/// `` `switchboard --config FILE mcp install TEAM` ``: the command that registers `team`.
pub fn install_command(team: &str, config: &Path) -> String {
    format!(
        "`switchboard --config {} mcp install {}`",
        sh_word(&config.display().to_string()),
        sh_word(team)
    )
}

/// `s` as one shell word: as it is when it has nothing a shell would read, else in single
/// quotes.
fn sh_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,%~".contains(c));
    if plain && !s.starts_with('~') {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn arg_after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).map(String::as_str)
}

fn canon(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// What is wrong with one Switchboard entry for `expected`, if anything.
fn entry_problem(entry: &Value, expected: &Expected) -> Option<String> {
    if let Some(command) = entry.get("command").and_then(Value::as_str) {
        let args = strings(entry.get("args"));
        if !same_file(command, &canon(&expected.exe)) {
            return Some(format!(
                "runs {command}, not this switchboard ({})",
                expected.exe.display()
            ));
        }
        match arg_after(&args, "--as") {
            Some(t) if t == expected.team => {}
            Some(t) => return Some(format!("acts as team {t:?}, not {:?}", expected.team)),
            None => return Some("has no `--as TEAM`".into()),
        }
        if !(args.iter().any(|a| a == "serve") && args.iter().any(|a| a == "--stdio")) {
            return Some("does not run `serve --stdio`".into());
        }
        return match arg_after(&args, "--config") {
            Some(c) if canon(Path::new(c)) == canon(&expected.config) => None,
            Some(c) => Some(format!(
                "uses the teams file {c}, not {}",
                expected.config.display()
            )),
            None => Some(format!(
                "has no `--config {}` (it would look for the default teams file)",
                expected.config.display()
            )),
        };
    }
    let url = entry.get("url").and_then(Value::as_str).unwrap_or("");
    let team = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| {
            u.query()?
                .split('&')
                .find_map(|kv| kv.strip_prefix("team=").map(String::from))
        })
        .or_else(|| {
            entry
                .get("headers")?
                .as_object()?
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("x-switchboard-team"))?
                .1
                .as_str()
                .map(String::from)
        });
    match team {
        Some(t) if t == expected.team => None,
        Some(t) => Some(format!("acts as team {t:?}, not {:?}", expected.team)),
        None => Some("names no team (`?team=NAME`)".into()),
    }
}

fn target_of(entry: &Value) -> String {
    match entry.get("command").and_then(Value::as_str) {
        Some(c) => std::iter::once(c.to_string())
            .chain(strings(entry.get("args")))
            .collect::<Vec<_>>()
            .join(" "),
        None => entry
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    }
}

/// Whether Claude Code started in `team`'s folder would reach Switchboard as that team: a
/// Switchboard server registered (any scope, any name) that runs this binary with the right
/// teams file and `--as TEAM` (or an HTTP one with `?team=TEAM`), and no Switchboard
/// registration acting otherwise. For `switchboard doctor`.
pub fn check_registration(
    team: &TeamConfig,
    expected: &Expected,
) -> Result<RegistrationReport, AgentError> {
    let exe = canon(&expected.exe);
    let mut registrations = Vec::new();
    let mut problems = Vec::new();
    for r in effective_servers(team)? {
        if !is_switchboard_entry(&r.entry, Some(&exe), None) {
            continue;
        }
        let problem = entry_problem(&r.entry, expected);
        if let Some(p) = &problem {
            problems.push(format!(
                "{} registration {:?} ({}) {p}",
                r.scope,
                r.name,
                r.file.display()
            ));
        }
        registrations.push(FoundRegistration {
            target: target_of(&r.entry),
            name: r.name,
            scope: r.scope,
            file: r.file,
            problem,
        });
    }
    let mut fixes = Vec::new();
    let install = install_command(&expected.team, &expected.config);
    if registrations.is_empty() {
        problems.push(format!(
            "Switchboard is not registered in team {}'s Claude Code ({})",
            expected.team,
            team.path.display(),
        ));
        fixes.push(install);
    } else if !problems.is_empty() {
        for r in registrations.iter().filter(|r| r.problem.is_some()) {
            let remove = format!("claude mcp remove {} -s {}", sh_word(&r.name), r.scope);
            fixes.push(match r.scope {
                // The local scope is keyed by the folder's project; `.mcp.json` is read
                // from the folder it is in.
                Scope::Local => format!("`{remove}` in {}", team.path.display()),
                Scope::Project => format!(
                    "`{remove}` in {}",
                    r.file.parent().unwrap_or(&team.path).display()
                ),
                Scope::User => format!("`{remove}`"),
            });
        }
        if registrations.iter().all(|r| r.problem.is_some()) {
            fixes.push(install);
        }
    }
    Ok(RegistrationReport {
        team: expected.team.clone(),
        ok: problems.is_empty(),
        registrations,
        problems,
        fixes,
    })
}

/// What [`install`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallOutcome {
    /// Registered.
    Added,
    /// An entry of that name was replaced.
    Updated,
    /// Already registered like that; nothing changed.
    Unchanged,
}

/// Whether two entries run the same thing (the `type` of stdio entries may be left out).
fn same_entry(a: &Value, b: &Value) -> bool {
    let norm = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            if o.get("type").and_then(Value::as_str) == Some("stdio") || !o.contains_key("type") {
                o.insert("type".into(), json!("stdio"));
            }
            if o.get("env")
                .is_some_and(|e| e.as_object().is_some_and(Map::is_empty))
            {
                o.remove("env");
            }
        }
        v
    };
    norm(a) == norm(b)
}

/// The longest a `claude mcp ...` command may take.
const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// The most of its output kept.
const COMMAND_OUTPUT_BYTES: u64 = 64 * 1024;

/// Runs `claude mcp ...` in the team's folder with the agent's environment, in its own process
/// group, bounded in time ([`COMMAND_TIMEOUT`], then the group is killed) and output.
fn run_claude(team: &TeamConfig, args: &[&str]) -> Result<String, AgentError> {
    // The environment a spawned agent of the team gets (the same allow-list).
    let spec = super::adapter::command_spec(&super::claude::ClaudeCode, team);
    let command = format!("{} {}", spec.program, args.join(" "));
    let out = super::process::run_bounded(&spec, args, COMMAND_TIMEOUT, COMMAND_OUTPUT_BYTES)
        .map_err(|source| AgentError::Spawn {
            program: spec.program.clone(),
            team: team.name.clone(),
            cwd: team.path.clone(),
            source,
        })?
        .ok_or_else(|| AgentError::Command {
            command: command.clone(),
            message: format!("no answer within {}s; stopped", COMMAND_TIMEOUT.as_secs()),
        })?;
    let text = format!("{}{}", out.stdout, out.stderr);
    if !out.status.success() {
        return Err(AgentError::Command {
            command,
            message: format!("{} in {}: {}", out.status, team.path.display(), text.trim()),
        });
    }
    Ok(text)
}

/// Registers `entry` as `switchboard` in the team's Claude Code, with `claude mcp add-json`
/// run in the team's folder: in the local scope (this project only, private to the user; the
/// project is the git root holding the folder) or the project scope (`<folder>/.mcp.json`).
/// Idempotent: the same entry again changes nothing; a different one is replaced.
pub fn install(
    team: &TeamConfig,
    entry: &Value,
    scope: Scope,
) -> Result<InstallOutcome, AgentError> {
    let current = match scope {
        Scope::Local => visible(team)?
            .all
            .into_iter()
            .find(|r| r.scope == Scope::Local && r.name == SERVER_NAME)
            .map(|r| r.entry),
        Scope::Project => {
            let file = canon(&team.path).join(".mcp.json");
            read_json(&file)?
                .get("mcpServers")
                .and_then(|m| m.get(SERVER_NAME))
                .cloned()
        }
        Scope::User => {
            return Err(AgentError::Command {
                command: "mcp install".into(),
                message: "a registration acts as one team: use the local or project scope".into(),
            })
        }
    };
    let scope_arg = scope.to_string();
    let outcome = match &current {
        Some(e) if same_entry(e, entry) => return Ok(InstallOutcome::Unchanged),
        Some(_) => {
            run_claude(team, &["mcp", "remove", "-s", &scope_arg, SERVER_NAME])?;
            InstallOutcome::Updated
        }
        None => InstallOutcome::Added,
    };
    let json = entry.to_string();
    run_claude(
        team,
        &[
            "mcp",
            "add-json",
            "-s",
            &scope_arg,
            SERVER_NAME,
            json.as_str(),
        ],
    )?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switchboard_entries_are_recognised_by_what_they_run() {
        let exe = Path::new("/nonexistent/bin/sb-renamed");
        let yes = [
            json!({"command": "switchboard", "args": ["serve", "--stdio", "--as", "b"]}),
            json!({"command": "/opt/x/switchboard", "args": ["--config", "/t.toml", "serve"]}),
            json!({"command": "env", "args": ["X=1", "/usr/local/bin/switchboard", "serve"]}),
            json!({"command": "cargo", "args": ["run", "--", "serve", "--stdio", "--as", "b"]}),
            json!({"command": "sh", "args": ["-c", "exec switchboard --config t serve --stdio --as b"]}),
            json!({"type": "http", "url": "http://127.0.0.1:7717/mcp?team=b"}),
            json!({"type": "http", "url": "http://h:1/x", "headers": {"X-Switchboard-Team": "b"}}),
            json!({"type": "http", "url": "http://127.0.0.1:4444/other"}),
        ];
        for e in &yes {
            assert!(
                is_switchboard_entry(e, Some(exe), Some("http://127.0.0.1:4444/mcp")),
                "{e}"
            );
        }
        let no = [
            json!({"command": "python3", "args": ["echo_server.py"]}),
            json!({"command": "switchboard-test-agent", "args": []}),
            json!({"command": "postgres-mcp", "args": ["--dsn", "postgres://switchboard"]}),
            json!({"type": "http", "url": "http://127.0.0.1:7717/mcp"}),
            json!({"type": "http", "url": "https://mcp.sentry.dev/mcp"}),
        ];
        for e in &no {
            assert!(
                !is_switchboard_entry(e, Some(exe), Some("http://127.0.0.1:4444/mcp")),
                "{e}"
            );
        }
    }

    #[test]
    fn a_renamed_binary_behind_sh_c_is_recognised() {
        // This very binary (found by file, whatever its name), and `serve --stdio` under any
        // program name, inside a shell string.
        let exe = this_exe().expect("this test's executable");
        let line = format!("{} --config T serve --stdio --as b", exe.display());
        let quoted = format!("exec '{}' --config T serve", exe.display());
        for cmd in [
            line.as_str(),
            quoted.as_str(),
            "/some/path/renamed-binary --config T serve --stdio --as b",
        ] {
            let e = json!({"command": "sh", "args": ["-c", cmd]});
            assert!(is_switchboard_entry(&e, Some(&exe), None), "{e}");
        }
        let other = json!({"command": "sh", "args": ["-c", "/usr/bin/python3 -m server"]});
        assert!(!is_switchboard_entry(&other, Some(&exe), None));
    }

    #[test]
    fn same_entry_ignores_the_implicit_stdio_type_and_empty_env() {
        let a = json!({"type": "stdio", "command": "x", "args": ["a"], "env": {}});
        let b = json!({"command": "x", "args": ["a"]});
        assert!(same_entry(&a, &b));
        assert!(!same_entry(&a, &json!({"command": "x", "args": ["b"]})));
    }

    fn team_in(home: &Path, folder: &Path, mcp_servers: &str) -> TeamConfig {
        let text = format!(
            "[database]\nin_memory = true\n[teams.b]\npath = {:?}\nmcp_servers = {mcp_servers:?}\nenv = {{ HOME = {:?} }}\n",
            folder.display().to_string(),
            home.display().to_string()
        );
        crate::TeamsConfig::parse(&text, None, &|_| None)
            .expect("config")
            .teams
            .remove("b")
            .expect("team b")
    }

    /// The fixes name the wrong registration, its scope and folder, and the teams file: a
    /// command that works as printed.
    #[test]
    fn registration_fixes_work_as_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let (home, folder) = (root.join("home"), root.join("b"));
        std::fs::create_dir_all(&home).expect("mkdir");
        std::fs::create_dir_all(&folder).expect("mkdir");
        let team = team_in(&home, &folder, "inherit");
        let expected = Expected {
            team: "b".into(),
            exe: this_exe().expect("exe"),
            config: root.join("my teams.toml"),
        };
        let wrong = Expected {
            team: "api".into(),
            ..expected.clone()
        }
        .stdio_entry();
        let write = |servers: Value| {
            let claude =
                json!({"projects": {folder.display().to_string(): {"mcpServers": servers}}});
            std::fs::write(home.join(".claude.json"), claude.to_string()).expect("write");
        };
        let install = format!(
            "`switchboard --config '{}' mcp install b`",
            expected.config.display()
        );
        let remove = format!("`claude mcp remove sb -s local` in {}", folder.display());

        // Only a wrong registration: remove it, then install.
        write(json!({"sb": wrong}));
        let report = check_registration(&team, &expected).expect("check");
        assert!(!report.ok);
        assert_eq!(report.fixes, vec![remove.clone(), install.clone()]);
        assert!(
            report.problems.iter().all(|p| !p.contains("mcp install")),
            "{report:?}"
        );

        // Installed right beside it: removing the wrong one is all that is left.
        write(json!({"sb": wrong, "switchboard": expected.stdio_entry()}));
        let report = check_registration(&team, &expected).expect("check");
        assert!(!report.ok);
        assert_eq!(report.fixes, vec![remove]);

        // Nothing registered.
        write(json!({}));
        let report = check_registration(&team, &expected).expect("check");
        assert_eq!(report.fixes, vec![install]);
    }

    /// The merge rules observed from Claude Code 2.1.328 (docs/claude-code-protocol.md).
    #[test]
    fn the_agent_config_merges_scopes_like_claude_code_and_drops_switchboard() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let home = root.join("home");
        let repo = root.join("repo");
        let folder = repo.join("svc/api");
        std::fs::create_dir_all(&home).expect("mkdir");
        std::fs::create_dir_all(folder.join(".claude")).expect("mkdir");
        std::fs::create_dir_all(repo.join(".git")).expect("mkdir");
        let stdio = |name: &str| json!({"command": "python3", "args": [name]});
        let sb =
            json!({"command": "/opt/bin/switchboard", "args": ["serve", "--stdio", "--as", "b"]});
        std::fs::write(
            home.join(".claude.json"),
            json!({
                "mcpServers": {"u1": stdio("user"), "shared": stdio("user"), "sb-user": sb},
                "projects": {
                    // The git root, not the folder, is the project of the local scope.
                    repo.display().to_string(): {
                        "mcpServers": {"shared": stdio("local"), "db": stdio("local"), "sb": sb,
                                       "off": stdio("local")},
                        "disabledMcpServers": ["off"],
                        "disabledMcpjsonServers": ["rejected"],
                    },
                    folder.display().to_string(): {"mcpServers": {"never": stdio("x")}},
                }
            })
            .to_string(),
        )
        .expect("write");
        std::fs::write(
            repo.join(".mcp.json"),
            json!({"mcpServers": {"far": stdio("far"), "near": stdio("far"),
                                  "rejected": stdio("p")}})
            .to_string(),
        )
        .expect("write");
        std::fs::write(
            folder.join(".mcp.json"),
            json!({"mcpServers": {"near": stdio("near"),
                                  "switchboard": {"type": "http", "url": "http://127.0.0.1:7717/mcp?team=b"}}})
            .to_string(),
        )
        .expect("write");

        let team = team_in(&home, &folder, "inherit");
        let ours = json!({"type": "http", "url": "http://127.0.0.1:9/mcp"});
        let config = agent_mcp_config(&team, Some(ours.clone()), None).expect("config");
        let servers = config["mcpServers"].as_object().expect("servers");
        let names: Vec<&str> = servers.keys().map(String::as_str).collect();
        assert_eq!(names, ["db", "far", "near", "shared", "switchboard", "u1"]);
        assert_eq!(servers["shared"], stdio("local"), "local beats user");
        assert_eq!(servers["near"], stdio("near"), "the nearest .mcp.json wins");
        assert_eq!(servers["switchboard"], ours);

        let none = agent_mcp_config(&team_in(&home, &folder, "none"), Some(ours.clone()), None)
            .expect("config");
        assert_eq!(none, json!({"mcpServers": {"switchboard": ours}}));

        std::fs::write(home.join(".claude.json"), "{not json").expect("write");
        let err = agent_mcp_config(&team, None, None).expect_err("bad JSON is an error");
        assert!(
            err.to_string().contains(".claude.json: not valid JSON"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_mcp_servers_value_is_reported_with_its_key() {
        let text =
            "[database]\nin_memory = true\n[teams.b]\npath = \"/tmp\"\nmcp_servers = \"all\"\n";
        let err = crate::TeamsConfig::parse(text, None, &|_| None).expect_err("bad value");
        let text = err.to_string();
        assert!(
            text.contains("teams.b.mcp_servers") && text.contains("one of: inherit, none"),
            "{text}"
        );
    }
}
