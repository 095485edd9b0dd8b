//! `switchboard config check`.

use std::process::ExitCode;

use clap::Subcommand;
use serde::Serialize;
use switchboard::config::{discover, ConfigError};
use switchboard::{Error, TeamsConfig};

use super::output::print_json;
use super::Ctx;

/// Config subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Load and validate the teams file: print a summary and exit 0, or print every problem and
    /// exit 2.
    Check {
        /// Also connect to each remote team's host (over SSH) and check its folder, its agent
        /// and the agent's version there; every problem of every host is printed.
        #[arg(long)]
        remote: bool,
    },
    /// Trust a teams file in the current folder (default ./teams.toml), as it is now: read it
    /// first, it names the programs Switchboard runs. A changed file must be trusted again.
    Trust {
        /// The teams file to trust (default: ./teams.toml).
        file: Option<std::path::PathBuf>,
    },
}

#[derive(Serialize)]
struct Trusted {
    ok: bool,
    config: String,
    sha256: String,
}

#[derive(Serialize)]
struct Summary {
    ok: bool,
    config: String,
    database: String,
    teams: Vec<String>,
}

#[derive(Serialize)]
struct Problem {
    path: String,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

#[derive(Serialize)]
struct RemoteFailure {
    ok: bool,
    config: String,
    /// Per remote team, what is wrong there.
    remote_problems: Vec<RemoteProblem>,
}

#[derive(Serialize)]
struct RemoteProblem {
    team: String,
    message: String,
}

#[derive(Serialize)]
struct Failure {
    ok: bool,
    config: String,
    problems: Vec<Problem>,
}

impl ConfigCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        if let ConfigCmd::Trust { file } = self {
            return trust(file.as_deref(), ctx);
        }
        let path = discover(ctx.config_path.as_deref())?;
        let config = match TeamsConfig::load(&path) {
            Ok(c) => c,
            Err(e @ ConfigError::Invalid { .. }) if ctx.json() => {
                print_json(&Failure {
                    ok: false,
                    config: path.display().to_string(),
                    problems: e
                        .problems()
                        .iter()
                        .map(|p| Problem {
                            path: p.path.clone(),
                            line: p.line,
                            column: p.column,
                            message: p.message.clone(),
                        })
                        .collect(),
                })?;
                return Ok(ExitCode::from(switchboard::error::EXIT_BAD_INPUT as u8));
            }
            Err(e) => return Err(e.into()),
        };
        if matches!(self, ConfigCmd::Check { remote: true }) {
            let problems = remote_problems(&config)?;
            if !problems.is_empty() {
                if ctx.json() {
                    print_json(&RemoteFailure {
                        ok: false,
                        config: path.display().to_string(),
                        remote_problems: problems,
                    })?;
                } else {
                    eprintln!(
                        "{}: {} problem{} on remote hosts:",
                        path.display(),
                        problems.len(),
                        if problems.len() == 1 { "" } else { "s" }
                    );
                    for p in &problems {
                        eprintln!("  teams.{}: {}", p.team, p.message);
                    }
                }
                return Ok(ExitCode::from(switchboard::error::EXIT_BAD_INPUT as u8));
            }
        }
        let database = if config.database.in_memory {
            ":memory:".to_string()
        } else {
            config.database.path.display().to_string()
        };
        if ctx.json() {
            print_json(&Summary {
                ok: true,
                config: path.display().to_string(),
                database,
                teams: config.teams.keys().cloned().collect(),
            })?;
        } else {
            outln!("{}: ok", path.display());
            outln!("database  {database}");
            outln!("teams     {}", config.teams.len());
            for t in config.teams.values() {
                outln!("  {:<20} {}", t.name, t.path.display());
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Every problem of every remote team, checked on its host.
fn remote_problems(config: &TeamsConfig) -> Result<Vec<RemoteProblem>, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the async runtime: {e}")))?;
    let reports = runtime.block_on(switchboard::agent::ssh::ops::check_teams(config));
    Ok(reports
        .into_iter()
        .flat_map(|(team, report)| {
            report
                .problems
                .into_iter()
                .map(move |message| RemoteProblem {
                    team: team.clone(),
                    message,
                })
        })
        .collect())
}

fn trust(file: Option<&std::path::Path>, ctx: &Ctx) -> Result<ExitCode, Error> {
    let file = file.unwrap_or(std::path::Path::new("teams.toml"));
    let env = |k: &str| std::env::var(k).ok();
    let (path, sha256) = switchboard::config::trust::trust(file, &env).map_err(|e| {
        Error::Config(ConfigError::Read {
            path: file.to_path_buf(),
            source: e,
        })
    })?;
    if ctx.json() {
        print_json(&Trusted {
            ok: true,
            config: path.display().to_string(),
            sha256,
        })?;
    } else {
        outln!(
            "trusted {} (sha256 {sha256}): used from its folder until it changes",
            path.display()
        );
        // What trusting it allows: the programs it runs, where.
        if let Ok(config) = TeamsConfig::load(&path) {
            for team in config.teams.values() {
                let program = team.agent_path.as_deref().unwrap_or(team.agent.as_str());
                let args = switchboard::redact::args(&team.args).join(" ");
                outln!(
                    "  {:<20} runs {program}{}{} in {}",
                    team.name,
                    if args.is_empty() { "" } else { " " },
                    args,
                    team.path.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
