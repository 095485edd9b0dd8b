//! `switchboard doctor`: checks that a set-up can work, each with a verdict and how to fix it.
//! The teams file; per team, the agent binary (`--version`) and its credentials; the database
//! (writable, schema); file modes (nobody else may read Switchboard's files); a running server
//! (and whether it needs a token); per team, Switchboard's registration in the team's
//! Claude Code.
//!
//! This module decides verdicts only; it reads through the layers that own each thing
//! (config, agent, store, the MCP server's `server.json`). The CLI prints the [`Report`].

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::agent::checks::{agent_credentials, agent_version};
use crate::config::{TeamConfig, TeamsConfig};
use crate::server::server_file::{self, ServerFile};
use crate::store;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Fine.
    Ok,
    /// Works, but worth a look.
    Warn,
    /// Will not work until fixed.
    Fail,
    /// Not checked.
    Skip,
}

impl Outcome {
    /// `ok`, `warn`, `fail`, `skip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Warn => "warn",
            Outcome::Fail => "fail",
            Outcome::Skip => "skip",
        }
    }
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked (`teams file`, `agent backend`, ...).
    pub name: String,
    /// The team it is about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The verdict.
    pub outcome: Outcome,
    /// What was found.
    pub detail: String,
    /// How to fix it (for `warn` and `fail`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(name: impl Into<String>, outcome: Outcome, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            team: None,
            outcome,
            detail: detail.into(),
            fix: None,
        }
    }

    fn team(mut self, team: &str) -> Self {
        self.team = Some(team.to_string());
        self
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// Every check, in order; `ok` unless one failed.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No check failed (warnings and skips do not count).
    pub ok: bool,
    /// The teams file checked, when one was found.
    pub config: Option<PathBuf>,
    /// The checks.
    pub checks: Vec<Check>,
}

/// What to check.
#[derive(Default)]
pub struct DoctorOptions<'a> {
    /// `--config`, as given (discovery as every command does when `None`).
    pub config_path: Option<&'a Path>,
}

/// Runs every check.
pub fn run(options: &DoctorOptions<'_>) -> Report {
    let mut checks = Vec::new();
    let path = match crate::config::discover(options.config_path) {
        Ok(p) => p,
        Err(e) => {
            let fix = match &e {
                crate::config::ConfigError::Untrusted { path, .. } => format!(
                    "read it, then trust it with `switchboard config trust {}` (or pass --config)",
                    path.display()
                ),
                _ => "create a teams file (see teams.example.toml) and pass it with --config \
                      FILE or $SWITCHBOARD_CONFIG"
                    .to_string(),
            };
            checks.push(Check::new("teams file", Outcome::Fail, e.to_string()).fix(fix));
            return report(None, checks);
        }
    };
    let config = match TeamsConfig::load(&path) {
        Ok(c) => c,
        Err(e) => {
            checks.push(
                Check::new("teams file", Outcome::Fail, e.to_string()).fix(format!(
                    "fix the problems listed (switchboard --config {} config check)",
                    path.display()
                )),
            );
            return report(Some(path), checks);
        }
    };
    let names: Vec<&str> = config.teams.keys().map(String::as_str).collect();
    checks.push(Check::new(
        "teams file",
        Outcome::Ok,
        format!(
            "{}: {} team{} ({})",
            path.display(),
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        ),
    ));
    // A remote team's folder and agent are checked on its host, every problem at once.
    let mut remote = remote_checks(&config);
    // The agents' `--version` runs side by side (each may take a second to start).
    let agent_checks: Vec<Check> = std::thread::scope(|scope| {
        let running: Vec<_> = config
            .teams
            .values()
            .filter(|team| team.remote.is_none())
            .map(|team| scope.spawn(move || agent_check(team)))
            .collect();
        running
            .into_iter()
            .zip(config.teams.values().filter(|team| team.remote.is_none()))
            .map(|(handle, team)| {
                handle.join().unwrap_or_else(|_| {
                    Check::new(
                        format!("agent {}", team.name),
                        Outcome::Fail,
                        "the check itself failed",
                    )
                    .team(&team.name)
                })
            })
            .collect()
    });
    let mut local = agent_checks.into_iter();
    for team in config.teams.values() {
        if team.remote.is_some() {
            checks.append(remote.entry(team.name.clone()).or_default());
            continue;
        }
        if let Some(agent) = local.next() {
            checks.push(agent);
        }
        checks.push(credentials_check(team));
    }
    checks.push(file_modes_check(&config));
    checks.push(database_check(&config));
    checks.push(server_check(&config));
    for team in config.teams.values().filter(|t| t.remote.is_none()) {
        checks.push(team_registration(team, &path));
    }
    report(Some(path), checks)
}

/// The checks of the remote teams, by team: connected to each host, the team's folder, its
/// agent and the agent's version there ([`crate::agent::ssh::ops::check_teams`]); one failed
/// check per problem, so every problem shows at once.
fn remote_checks(config: &TeamsConfig) -> std::collections::HashMap<String, Vec<Check>> {
    let mut out = std::collections::HashMap::new();
    if config.teams.values().all(|t| t.remote.is_none()) {
        return out;
    }
    let reports = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(crate::agent::ssh::ops::check_teams(config)),
        Err(e) => config
            .teams
            .values()
            .filter(|t| t.remote.is_some())
            .map(|t| {
                (
                    t.name.clone(),
                    crate::agent::ssh::ops::CheckReport {
                        problems: vec![format!("cannot start the async runtime: {e}")],
                        ..Default::default()
                    },
                )
            })
            .collect(),
    };
    for (name, report) in reports {
        let host = config
            .team(&name)
            .and_then(|t| t.remote.clone())
            .unwrap_or_default();
        let label = format!("remote {name}");
        let checks: Vec<Check> = if report.problems.is_empty() {
            vec![Check::new(
                label,
                Outcome::Ok,
                format!(
                    "{host}: {}: {}; switchboard (tools bridge): {}",
                    report.agent.as_deref().unwrap_or("agent"),
                    report.version.as_deref().unwrap_or("version unknown"),
                    report.bridge.as_deref().unwrap_or("unknown")
                ),
            )
            .team(&name)]
        } else {
            report
                .problems
                .into_iter()
                .map(|p| {
                    Check::new(label.clone(), Outcome::Fail, p)
                        .fix(format!(
                            "fix it on {host} (or the team's `path`/`agent_path`/`switchboard_path`/`remote`), \
                             then run `switchboard config check --remote`"
                        ))
                        .team(&name)
                })
                .collect()
        };
        out.insert(name, checks);
    }
    out
}

/// Switchboard's registration in the Claude Code of `team` (see
/// [`crate::agent::claude_mcp::check_registration`]), for this binary and teams file.
fn team_registration(team: &TeamConfig, config: &Path) -> Check {
    use crate::agent::claude_mcp::{check_registration, this_exe, Expected};
    if team.agent != "claude" {
        // As `mcp install`: there is no such registration for other agent kinds.
        return Check::new(
            format!("registration {}", team.name),
            Outcome::Skip,
            format!(
                "`mcp install` registers Switchboard in Claude Code only; agent {:?} gets \
                 Switchboard's tools from a running server",
                team.agent
            ),
        )
        .team(&team.name);
    }
    let expected = Expected {
        team: team.name.clone(),
        exe: this_exe().unwrap_or_default(),
        config: std::fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf()),
    };
    let found = check_registration(team, &expected)
        .map(|r| (r.ok, r.registrations.is_empty(), r.problems, r.fixes))
        .map_err(|e| e.to_string());
    match found {
        // Not registered at all: the team can be told, its own agent cannot tell others.
        Ok((false, true, _, fixes)) => Check::new(
            format!("registration {}", team.name),
            Outcome::Warn,
            "Switchboard is not registered in this team's Claude Code: its agent cannot tell \
             other teams (it can still be told)",
        )
        .fix(format!("register it with {}", fixes.join(", then "))),
        Ok((ok, _, problems, fixes)) => {
            registration_check(&team.name, &expected.config, Ok((ok, problems, fixes)))
        }
        Err(e) => registration_check(&team.name, &expected.config, Err(e)),
    }
    .team(&team.name)
}

/// The line of a team's registration check from what the registration check found:
/// `Ok((registered correctly, problems, fixes))`, or `Err` when Claude Code's config could not
/// be read. `config` is the teams file the fixes name.
pub fn registration_check(
    team: &str,
    config: &Path,
    found: Result<(bool, Vec<String>, Vec<String>), String>,
) -> Check {
    use crate::agent::claude_mcp::install_command;
    let name = format!("registration {team}");
    let install = || format!("register it with {}", install_command(team, config));
    match found {
        Ok((true, _, _)) => Check::new(
            name,
            Outcome::Ok,
            "Switchboard is registered in Claude Code",
        ),
        Ok((false, problems, fixes)) => Check::new(
            name,
            Outcome::Fail,
            if problems.is_empty() {
                "Switchboard is not registered in Claude Code".to_string()
            } else {
                problems.join("; ")
            },
        )
        .fix(if fixes.is_empty() {
            install()
        } else {
            fixes.join(", then ")
        }),
        Err(e) => Check::new(name, Outcome::Fail, e).fix(install()),
    }
    .team(team)
}

fn report(config: Option<PathBuf>, checks: Vec<Check>) -> Report {
    Report {
        ok: !checks.iter().any(|c| c.outcome == Outcome::Fail),
        config,
        checks,
    }
}

fn agent_check(team: &TeamConfig) -> Check {
    let name = format!("agent {}", team.name);
    let setting = format!("[teams.{}] agent_path", team.name);
    match agent_version(team) {
        Ok(version) => {
            let program = crate::agent::checks::agent_program(team).unwrap_or_default();
            Check::new(name, Outcome::Ok, format!("{program}: {version}"))
        }
        Err(problem) => {
            use crate::agent::checks::VersionProblem as P;
            let fix = match &problem {
                P::UnknownAgent(_) => format!(
                    "set [teams.{}] agent = \"claude\" (the agent kinds this switchboard runs)",
                    team.name
                ),
                P::CannotStart { .. } => format!(
                    "install Claude Code (npm install -g @anthropic-ai/claude-code) so `claude` \
                     is on PATH, or set {setting} to its full path"
                ),
                P::Failed { .. } | P::TimedOut { .. } => format!(
                    "run it by hand to see why; reinstall it, or point {setting} at a working \
                     binary"
                ),
            };
            Check::new(name, Outcome::Fail, problem.to_string()).fix(fix)
        }
    }
    .team(&team.name)
}

fn credentials_check(team: &TeamConfig) -> Check {
    let name = format!("credentials {}", team.name);
    match agent_credentials(team) {
        Ok(found) => Check::new(name, Outcome::Ok, found),
        Err(missing) => Check::new(name, Outcome::Fail, missing).fix(format!(
            "log in once with `claude` (as the user and HOME the agent runs with), or set \
             ANTHROPIC_API_KEY in the environment or in [teams.{}] env",
            team.name
        )),
    }
    .team(&team.name)
}

fn database_check(config: &TeamsConfig) -> Check {
    let db = &config.database;
    if db.in_memory {
        return Check::new(
            "database",
            Outcome::Ok,
            "in memory ([database] in_memory = true): nothing is kept after each command",
        );
    }
    let path = db.path.display();
    if !db.path.exists() {
        if let Err(e) = server_file::check_before_create(db) {
            return Check::new("database", Outcome::Fail, e.to_string())
                .fix("put the database file back, or stop that server and start it again");
        }
        if !store::can_create(&db.path) {
            return Check::new(
                "database",
                Outcome::Fail,
                format!("{path} does not exist and its folder is not writable"),
            )
            .fix("make the folder writable, or set [database] path to a writable place");
        }
        return Check::new(
            "database",
            Outcome::Ok,
            format!("{path} does not exist yet; the first command creates it"),
        );
    }
    match store::inspect_file(&db.path) {
        Err(e) => Check::new("database", Outcome::Fail, e.to_string()).fix(
            "check that it is a Switchboard database (SQLite); move it away to start a new one",
        ),
        Ok(i) if i.schema_version > i.known_version => Check::new(
            "database",
            Outcome::Fail,
            format!(
                "{path}: schema version {}, newer than this switchboard knows ({})",
                i.schema_version, i.known_version
            ),
        )
        .fix("upgrade switchboard"),
        Ok(i) if !i.writable => Check::new(
            "database",
            Outcome::Fail,
            format!("{path} (schema {}) is not writable", i.schema_version),
        )
        .fix("give the file and its folder write permission for this user"),
        Ok(i) if i.schema_version < i.known_version => Check::new(
            "database",
            Outcome::Ok,
            format!(
                "{path}: schema version {}, upgraded to {} at the next command",
                i.schema_version, i.known_version
            ),
        ),
        Ok(i) => Check::new(
            "database",
            Outcome::Ok,
            format!("{path}: writable, schema version {}", i.schema_version),
        ),
    }
}

fn server_check(config: &TeamsConfig) -> Check {
    let Some(file) = server_file::path_for(&config.database) else {
        return Check::new("server", Outcome::Ok, "none (in-memory database)");
    };
    let Some(found) = ServerFile::read(&file) else {
        return Check::new(
            "server",
            Outcome::Ok,
            "not running; commands start agents themselves (start one with `switchboard serve --http`)",
        );
    };
    if !found.is_alive() {
        return Check::new(
            "server",
            Outcome::Warn,
            format!(
                "{} names pid {}, which is gone (the server did not stop cleanly)",
                file.display(),
                found.pid
            ),
        )
        .fix(format!("remove {}", file.display()));
    }
    if let Some(lost) = found.database_lost {
        return Check::new("server", Outcome::Fail, lost).fix(format!(
            "stop the server (kill {}) and start it again, or put the database file back",
            found.pid
        ));
    }
    if !found.auth {
        let host = found
            .url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default();
        let loopback =
            host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]");
        let (outcome, who) = if loopback {
            (Outcome::Warn, "every local user")
        } else {
            (Outcome::Fail, "anyone who can reach it")
        };
        return Check::new(
            "server",
            outcome,
            format!(
                "running without a token: pid {}, {} ({}); {who} can send tells and act as \
                 any team",
                found.pid, found.url, found.transport
            ),
        )
        .fix(
            "remove `require_token = false` from [server] in the teams file (or set [server] \
             auth_token) and restart the server",
        );
    }
    Check::new(
        "server",
        Outcome::Ok,
        format!(
            "running: pid {}, {} ({})",
            found.pid, found.url, found.transport
        ),
    )
}

/// Whether other users may read Switchboard's files: the data folder (when it is
/// Switchboard's own), the database and its WAL, `server.json`, `logs/`, `mcp/`.
fn file_modes_check(config: &TeamsConfig) -> Check {
    let db = &config.database;
    if db.in_memory {
        return Check::new("file modes", Outcome::Ok, "none (in-memory database)");
    }
    let loose = crate::private_fs::loose_data_paths(&db.path);
    let folder = db
        .path
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    if loose.is_empty() {
        return Check::new(
            "file modes",
            Outcome::Ok,
            format!("{folder}: Switchboard's files are readable by you only"),
        );
    }
    let listed: Vec<String> = loose
        .iter()
        .take(8)
        .map(|(p, m)| format!("{} ({m:04o})", p.display()))
        .collect();
    let more = loose.len().saturating_sub(listed.len());
    Check::new(
        "file modes",
        Outcome::Fail,
        format!(
            "others may read {}{}",
            listed.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ),
    )
    .fix(
        "run any switchboard command (it tightens them to 0600 files in 0700 folders), or \
         chmod them yourself",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_lines() {
        let cfg = Path::new("/home/me/my teams.toml");
        let ok = registration_check("web", cfg, Ok((true, vec![], vec![])));
        assert_eq!((ok.outcome, ok.fix), (Outcome::Ok, None));
        let bad = registration_check(
            "web",
            cfg,
            Ok((
                false,
                vec!["local registration \"sb\" acts as team \"api\"".into()],
                vec!["`claude mcp remove sb -s local` in /w".into()],
            )),
        );
        assert_eq!(bad.outcome, Outcome::Fail);
        assert_eq!(bad.detail, "local registration \"sb\" acts as team \"api\"");
        assert_eq!(
            bad.fix.as_deref(),
            Some("`claude mcp remove sb -s local` in /w")
        );
        let unread = registration_check("web", cfg, Err("cannot read ~/.claude.json".into()));
        assert_eq!(unread.outcome, Outcome::Fail);
        assert_eq!(
            unread.fix.as_deref(),
            Some(
                "register it with `switchboard --config '/home/me/my teams.toml' mcp install web`"
            )
        );
    }
}
