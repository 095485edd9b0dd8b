//! The command line: clap derive, one file per subcommand, each with `run(&self, ctx)`. Thin
//! adapters over the library; output as aligned tables (`human`) or stable JSON (`json`).

mod agent_cmds;
mod approvals;
mod completions;
mod config_check;
mod dashboard;
mod doctor;
mod init;
mod live;
mod logfile;
mod mcp_bridge;
mod mcp_install;
pub mod output;
mod remote;
mod report;
mod serve;
mod sessions;
mod stats;
mod teams;
mod tell;
mod tells;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use switchboard::{Error, SessionManager, TeamsConfig};

use output::ColorChoice;

/// Switchboard: coding agents in different project folders ("teams") message each other.
/// One persistent agent session per ordered pair of teams, recorded in SQLite.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, propagate_version = true)]
pub struct Cli {
    /// The teams file (default: $SWITCHBOARD_CONFIG, ./teams.toml, then
    /// ~/.config/switchboard/teams.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    format: Format,

    /// Same as `--format json`.
    #[arg(long, global = true)]
    json: bool,

    /// When to colour output: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    color: ColorChoice,

    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    command: Command,
}

/// Output format of every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned tables and relative times, for people.
    Human,
    /// JSON with snake_case keys and RFC 3339 times, for programs.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send a message to a team's agent and print its answer.
    Tell(tell::TellCmd),
    /// The history of tells from one team to another.
    Report(report::ReportCmd),
    /// One tell: show it whole, or retry it.
    #[command(subcommand)]
    Tells(tells::TellsCmd),
    /// Print events as they happen (tells, agents, tool uses, approvals), live.
    Watch(watch::WatchCmd),
    /// Start a pair's agent and deliver its queued tells.
    Wake(agent_cmds::WakeCmd),
    /// Stop a pair's agent (the session is kept).
    Sleep(agent_cmds::SleepCmd),
    /// Cancel a pair's queued tells and interrupt its running one.
    Cancel(agent_cmds::CancelCmd),
    /// The agents' permission requests: list them, allow or deny one, the session rules.
    Approvals(approvals::ApprovalsCmd),
    /// List, open, show, delete and compact sessions.
    #[command(subcommand)]
    Sessions(sessions::SessionsCmd),
    /// Totals, counts by status and process state, per team, busiest pairs.
    Stats(stats::StatsCmd),
    /// The teams of the teams file.
    Teams(teams::TeamsCmd),
    /// Check the teams file.
    #[command(subcommand)]
    Config(config_check::ConfigCmd),
    /// Write a new teams file for some project folders.
    Init(init::InitCmd),
    /// Serve Switchboard's tools to agents over MCP (stdio or streamable HTTP).
    Serve(serve::ServeCmd),
    /// Register Switchboard in a team's Claude Code (`mcp install TEAM`).
    #[command(subcommand)]
    Mcp(mcp_install::McpCmd),
    /// Print a one-time login link to the running server's web dashboard.
    Dashboard(dashboard::DashboardCmd),
    /// Check the set-up: teams file, agents, credentials, database, server, registrations.
    Doctor(doctor::DoctorCmd),
    /// Relay an agent's MCP stdio to Switchboard through a forwarded Unix socket (run by
    /// agents on remote hosts; Switchboard writes it into their MCP config).
    #[command(name = "mcp-bridge", hide = true)]
    McpBridge(mcp_bridge::McpBridgeCmd),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(completions::CompletionsCmd),
    /// Print the manual page, or write one page per command into a folder.
    Man(completions::ManCmd),
}

/// What every command gets: where the config is and how to print.
pub struct Ctx {
    config_path: Option<PathBuf>,
    format: Format,
}

impl Ctx {
    /// Finds and loads the teams file.
    pub fn load_config(&self) -> Result<TeamsConfig, Error> {
        let path = switchboard::config::discover(self.config_path.as_deref())?;
        Ok(TeamsConfig::load(&path)?)
    }

    /// Loads the config, opens the database and runs the start-up reset.
    /// Refuses to create a new database file where a live server still serves one.
    pub fn manager(&self) -> Result<SessionManager, Error> {
        open_manager(self.load_config()?)
    }

    /// [`Ctx::manager`] for read-only commands (`sessions list/show/open`, `stats`, `report`,
    /// `teams`), which start no agent: a team folder that does not exist is a warning on
    /// stderr, not an error. Commands that start agents keep [`Ctx::manager`].
    pub fn read_only_manager(&self) -> Result<SessionManager, Error> {
        open_manager(self.read_only_config()?)
    }

    /// The teams file for a command that starts no agent: a team folder that does not exist
    /// is a warning on stderr, not an error.
    pub fn read_only_config(&self) -> Result<TeamsConfig, Error> {
        let path = switchboard::config::discover(self.config_path.as_deref())?;
        let config = TeamsConfig::load_with(&path, switchboard::config::Folders::MissingIsWarning)?;
        for warning in &config.warnings {
            eprintln!(
                "warning: {}: {warning} (read-only commands go on; those that start agents refuse)",
                path.display()
            );
        }
        Ok(config)
    }

    /// Whether the output is JSON.
    pub fn json(&self) -> bool {
        self.format == Format::Json
    }
}

/// Opens the database of `config` (never a new one where a live server serves one that is
/// gone) and runs the start-up reset.
fn open_manager(config: TeamsConfig) -> Result<SessionManager, Error> {
    switchboard::server::server_file::check_before_create(&config.database)
        .map_err(|e| Error::Other(e.to_string()))?;
    let manager = SessionManager::open(Arc::new(config))?;
    manager.initialize()?;
    Ok(manager)
}

impl Cli {
    /// Where `serve` logs besides stderr: `logs/switchboard-serve.log` beside the database
    /// (a rolling file). `None` for other commands, or when the config cannot be loaded (the
    /// command reports that itself).
    pub fn log_file(&self) -> Option<std::path::PathBuf> {
        if !matches!(self.command, Command::Serve(_)) {
            return None;
        }
        let path = switchboard::config::discover(self.config.as_deref()).ok()?;
        let config = TeamsConfig::load(&path).ok()?;
        if config.database.in_memory {
            return None;
        }
        Some(
            config
                .database
                .path
                .parent()?
                .join("logs")
                .join("switchboard-serve.log"),
        )
    }

    /// Whether output (and errors) are JSON.
    pub fn json_output(&self) -> bool {
        self.json || self.format == Format::Json
    }

    /// Applies `--color` for the rest of the process (before tracing starts, so its stderr
    /// follows the same choice).
    pub fn apply_color(&self) {
        output::set_color(self.color);
    }

    /// Runs the command.
    pub fn run(self) -> Result<ExitCode, Error> {
        let ctx = Ctx {
            config_path: self.config,
            format: if self.json { Format::Json } else { self.format },
        };
        match &self.command {
            Command::Tell(cmd) => cmd.run(&ctx),
            Command::Report(cmd) => cmd.run(&ctx),
            Command::Tells(cmd) => cmd.run(&ctx),
            Command::Watch(cmd) => cmd.run(&ctx),
            Command::Wake(cmd) => cmd.run(&ctx),
            Command::Sleep(cmd) => cmd.run(&ctx),
            Command::Cancel(cmd) => cmd.run(&ctx),
            Command::Approvals(cmd) => cmd.run(&ctx),
            Command::Sessions(cmd) => cmd.run(&ctx),
            Command::Stats(cmd) => cmd.run(&ctx),
            Command::Teams(cmd) => cmd.run(&ctx),
            Command::Config(cmd) => cmd.run(&ctx),
            Command::Init(cmd) => cmd.run(&ctx),
            Command::Serve(cmd) => cmd.run(&ctx),
            Command::Mcp(cmd) => cmd.run(&ctx),
            Command::Doctor(cmd) => cmd.run(&ctx),
            Command::Dashboard(cmd) => cmd.run(&ctx),
            Command::McpBridge(cmd) => cmd.run(),
            Command::Completions(cmd) => cmd.run(),
            Command::Man(cmd) => cmd.run(),
        }
    }
}

/// One tracing set-up for the CLI: warnings by default, `-v` raises the level, `RUST_LOG`
/// overrides; always to stderr (stdout is the command's output).
pub fn init_tracing(verbosity: u8, log_file: Option<&std::path::Path>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let level = match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(output::color_enabled(output::Stream::Stderr))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter);
    // Opening the log makes it 0600; say so once the subscriber is there to say it.
    let loose: Vec<_> = log_file
        .into_iter()
        .flat_map(|p| {
            [
                p.to_path_buf(),
                p.parent().map(|d| d.to_path_buf()).unwrap_or_default(),
            ]
        })
        .filter_map(|p| switchboard::private_fs::mode_if_loose(&p).map(|m| (p, m)))
        .collect();
    let file = log_file.and_then(logfile::file_layer);
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
    for (path, mode) in loose {
        if switchboard::private_fs::tighten(&path).is_none() {
            switchboard::private_fs::log_tightened(&path, mode);
        }
    }
}

/// The error and its causes, each once.
pub fn render_error(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
