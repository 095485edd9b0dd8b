//! `switchboard mcp install TEAM [--http [--url URL]]`: registers Switchboard in the team's
//! Claude Code (local scope of the team's folder, as `switchboard`), idempotently, then checks
//! what Claude Code in that folder would load.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;
use switchboard::agent::claude_mcp::{
    check_registration, install, project_key, this_exe, Expected, InstallOutcome,
    RegistrationReport, Scope,
};
use switchboard::server::server_file::{self, ServerFile};
use switchboard::server::TOKEN_ENV;
use switchboard::Error;

use super::output::{out, print_json};
use super::Ctx;

/// Switchboard as an MCP server of the teams' Claude Code.
#[derive(Debug, Subcommand)]
pub enum McpCmd {
    /// Register Switchboard in a team's Claude Code, acting as that team.
    ///
    /// Runs `claude mcp add-json -s local switchboard ...` in the team's folder (this project
    /// only, private to you; `--scope project` writes `<folder>/.mcp.json`): by default the
    /// stdio server, `<this binary> --config <teams
    /// file> serve --stdio --as TEAM`. Running it again changes nothing; a different
    /// registration named `switchboard` in that scope is replaced.
    Install(InstallCmd),
}

/// `switchboard mcp install`.
#[derive(Debug, Args)]
pub struct InstallCmd {
    /// The team.
    team: String,
    /// Register the HTTP endpoint of `switchboard serve --http` instead (with `?team=TEAM`):
    /// the running server's, else --url, else http://127.0.0.1:7717/mcp. The server's token
    /// ($SWITCHBOARD_TOKEN, [server] auth_token, else the one in `server.token` beside the
    /// database) is added as a header (with `--scope project`, as `${SWITCHBOARD_TOKEN}`,
    /// expanded by Claude Code from its environment).
    #[arg(long)]
    http: bool,
    /// With --http: the server's MCP URL.
    #[arg(long, requires = "http", value_name = "URL")]
    url: Option<String>,
    /// Where to register: `local` (this project only, private to you; Claude Code's project is
    /// the git root holding the folder) or `project` (`<team folder>/.mcp.json`, for teams that
    /// share a git repository with another team).
    #[arg(long, value_enum, default_value_t = InstallScope::Local)]
    scope: InstallScope,
}

/// `--scope` of `mcp install`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum InstallScope {
    /// `projects["<git root or folder>"].mcpServers` of ~/.claude.json.
    Local,
    /// `<team folder>/.mcp.json`.
    Project,
}

#[derive(Serialize)]
struct Installed<'a> {
    team: &'a str,
    scope: Scope,
    outcome: InstallOutcome,
    entry: &'a serde_json::Value,
    check: &'a RegistrationReport,
}

impl McpCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        match self {
            McpCmd::Install(cmd) => cmd.run(ctx),
        }
    }
}

impl InstallCmd {
    fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let config = ctx.load_config()?;
        let team = config.team(&self.team).ok_or_else(|| {
            Error::Usage(format!(
                "unknown team {:?} (teams in the config: {})",
                self.team,
                config.teams.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        if team.agent != "claude" {
            return Err(Error::Usage(format!(
                "team {} uses agent {:?}; `mcp install` registers Switchboard in Claude Code only",
                team.name, team.agent
            )));
        }
        let source = config.source.clone().ok_or_else(|| {
            Error::Usage("the teams file has no path to register; pass --config FILE".into())
        })?;
        let exe = this_exe()
            .ok_or_else(|| Error::Other("cannot tell where this switchboard binary is".into()))?;
        let expected = Expected {
            team: team.name.clone(),
            exe,
            config: source,
        };
        let entry = if self.http {
            let url = match &self.url {
                Some(u) => u.clone(),
                None => running_server_url(&config)
                    .unwrap_or_else(|| "http://127.0.0.1:7717/mcp".to_string()),
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::Usage(format!(
                    "--url {url:?}: give the server's MCP URL, such as http://127.0.0.1:7717/mcp"
                )));
            }
            let token = match std::env::var(TOKEN_ENV)
                .ok()
                .filter(|t| !t.is_empty())
                .or_else(|| config.server.auth_token.clone())
            {
                Some(t) => Some(t),
                None if !config.server.require_token => None,
                // The token the server uses (made now if the server never ran yet).
                None => server_file::load_or_create_token(&config.database).map_err(|e| {
                    Error::Other(format!("cannot read or create the server token: {e}"))
                })?,
            };
            // `.mcp.json` is usually committed: it gets a reference Claude Code expands from
            // its environment, never the token itself (~/.claude.json is private to the user).
            let token = match (token, self.scope) {
                (Some(_), InstallScope::Project) => Some(format!("${{{TOKEN_ENV}}}")),
                (token, _) => token,
            };
            expected.http_entry(&url, token.as_deref())
        } else {
            expected.stdio_entry()
        };
        let scope = match self.scope {
            InstallScope::Local => Scope::Local,
            InstallScope::Project => Scope::Project,
        };
        if scope == Scope::Local {
            // Claude Code keys the local scope by the git root: teams in one repository share
            // it, and one registration would act as the same team in all their folders.
            let key = project_key(&team.path);
            let sharing: Vec<&str> = config
                .teams
                .values()
                .filter(|t| t.name != team.name && project_key(&t.path) == key)
                .map(|t| t.name.as_str())
                .collect();
            if !sharing.is_empty() {
                return Err(Error::Usage(format!(
                    "team {} shares Claude Code's local scope ({}) with team {}: a local \
                     registration would act as one team in all their folders; use --scope \
                     project (writes {}/.mcp.json)",
                    team.name,
                    key.display(),
                    sharing.join(", "),
                    team.path.display()
                )));
            }
        }
        let outcome = install(team, &entry, scope).map_err(|e| Error::Other(e.to_string()))?;
        let check = check_registration(team, &expected).map_err(|e| Error::Other(e.to_string()))?;
        if ctx.json() {
            print_json(&Installed {
                team: &team.name,
                scope,
                outcome,
                entry: &entry,
                check: &check,
            })?;
        } else {
            let what = match outcome {
                InstallOutcome::Added => "registered",
                InstallOutcome::Updated => "updated the registration of",
                InstallOutcome::Unchanged => "already registered:",
            };
            let mut text = format!(
                "{what} switchboard for team {} in Claude Code ({scope} scope of {})\n",
                team.name,
                team.path.display()
            );
            for p in &check.problems {
                text.push_str(&format!("problem: {p}\n"));
            }
            for f in &check.fixes {
                text.push_str(&format!("fix: {f}\n"));
            }
            out(&text);
        }
        Ok(if check.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}

/// The URL in `server.json` beside the database, if a server wrote one.
fn running_server_url(config: &switchboard::TeamsConfig) -> Option<String> {
    ServerFile::read(&server_file::path_for(&config.database)?).map(|f| f.url)
}
