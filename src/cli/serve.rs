//! `switchboard serve --stdio --as TEAM` and `switchboard serve --http [ADDR]`: the MCP server
//! (see `switchboard::server`). Runs until SIGINT/SIGTERM (or, on stdio, until the client
//! leaves), then stops every agent it started.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgGroup, Args};
use switchboard::router::Router;
use switchboard::server::serve::{endpoint_url, ServeOptions, Transport};
use switchboard::server::{check_token, McpError, TOKEN_ENV};
use switchboard::signals::Signals;
use switchboard::Error;

use super::Ctx;

/// Serve Switchboard's tools (team_tell, team_teams, ...) to agents over MCP.
///
/// Register it in a team's Claude Code with `switchboard mcp install TEAM` (stdio), or run
/// `switchboard serve --http` and use `switchboard mcp install TEAM --http`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("transport").required(true).args(["stdio", "http"])))]
pub struct ServeCmd {
    /// Speak MCP on stdin/stdout (stdout carries JSON-RPC only; logs go to stderr). Also
    /// listens on 127.0.0.1 (a free port) for the agents Switchboard spawns.
    #[arg(long, requires = "as_team")]
    stdio: bool,
    /// With --stdio: the team the client acts as (its tells come from this team).
    #[arg(long = "as", value_name = "TEAM", conflicts_with = "http")]
    as_team: Option<String>,
    /// Serve streamable HTTP at http://ADDR/mcp (default 127.0.0.1:7717; port 0 picks a free
    /// port). Clients name their team with ?team=NAME and send `Authorization: Bearer
    /// <token>`: $SWITCHBOARD_TOKEN, else [server] auth_token, else the token generated in
    /// `server.token` beside the database. A non-loopback ADDR needs one of the first two.
    /// The CLI reaches the server over its Unix socket instead (no token).
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = "127.0.0.1:7717"
    )]
    http: Option<SocketAddr>,
}

fn to_error(e: McpError) -> Error {
    match e {
        McpError::Router(e) => Error::Router(e),
        e => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            if e.is_bad_input() {
                Error::Usage(text)
            } else {
                Error::Other(text)
            }
        }
    }
}

impl ServeCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let transport = match (self.stdio, &self.as_team, self.http) {
            (true, Some(team), None) => Transport::Stdio {
                as_team: team.clone(),
            },
            (false, None, Some(addr)) => Transport::Http { addr },
            _ => {
                return Err(Error::Usage(
                    "use --stdio --as TEAM, or --http [ADDR]".into(),
                ))
            }
        };
        let token = match std::env::var(TOKEN_ENV) {
            Ok(t) if !t.is_empty() => {
                check_token(&t).map_err(|p| Error::Usage(format!("${TOKEN_ENV} {p}")))?;
                Some(t)
            }
            _ => None,
        };
        let announce = matches!(transport, Transport::Http { .. });
        let manager = Arc::new(ctx.manager()?);

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Other(format!("cannot start the async runtime: {e}")))?;
        let result = runtime.block_on(async move {
            let router = Router::new(manager);
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                if let Ok(addr) = rx.await {
                    if announce {
                        eprintln!(
                            "switchboard: serving MCP at {} (pid {})",
                            endpoint_url(addr),
                            std::process::id()
                        );
                    }
                }
            });
            let options = ServeOptions {
                transport,
                signals: Signals::Os,
                auth_token: token,
                ready: Some(tx),
            };
            switchboard::server::serve::run(router, options)
                .await
                .map_err(to_error)
        });
        // A blocking stdin read (stdin on a terminal) would hold the runtime open.
        runtime.shutdown_timeout(Duration::from_secs(1));
        result.map(|()| ExitCode::SUCCESS)
    }
}
