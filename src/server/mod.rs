//! The server (`switchboard serve`): Switchboard's MCP tools for agents over stdio and
//! streamable HTTP (built on the official Rust SDK, `rmcp`), the JSON API the CLI uses, health, status and metrics.
//!
//! - [`tools`]: the tools (`team_tell`, `team_teams`, ...), thin adapters over the
//!   [`Router`](crate::router::Router); typed arguments, structured JSON results, every bad
//!   argument a tool error result (`isError`), never a protocol error or a panic.
//! - [`types`]: the tools' argument and result types (their doc comments are the schemas'
//!   descriptions).
//! - [`caller`]: who is calling: the team a stdio server was started `--as`, or, over HTTP, an
//!   agent token (`X-Switchboard-Agent`), `?team=NAME` or `X-Switchboard-Team`.
//! - [`http`]: the HTTP listener (hyper): bearer token, Host/Origin checks, `/mcp`, `/health`,
//!   `/status`, `/metrics`.
//! - [`events`]: `GET /events`, the event stream (Server-Sent Events).
//! - [`ops`]: the bodies of `/status` and `/metrics`.
//! - [`page`]: the web dashboard's embedded page (`/`, `/dashboard/app.js`, `/dashboard/app.css`).
//! - [`auth`]: the dashboard's login (one-time codes, the session cookie, CSRF tokens).
//! - [`serve`]: [`serve::run`], the server as a library function, and [`serve::start`], which
//!   returns a handle for in-process tests.
//!
//! This layer holds no SQL and no process code: it calls the router and the session manager.
//! Logs go to stderr only; in stdio mode stdout carries JSON-RPC and nothing else.

mod agent_tools;
mod api;
pub mod auth;
pub mod caller;
pub mod events;
pub mod http;
pub mod ops;
pub mod page;
pub mod serve;
pub mod server_file;
pub mod tools;
pub mod types;

use std::net::SocketAddr;

use crate::router::RouterError;

/// Header naming a spawned agent: the token Switchboard put in its MCP config.
pub const AGENT_HEADER: &str = "x-switchboard-agent";
/// Header naming the caller's team (alternative to `?team=NAME`).
pub const TEAM_HEADER: &str = "x-switchboard-team";
/// Environment variable with the bearer token (used when `[server] auth_token` is not set).
pub const TOKEN_ENV: &str = "SWITCHBOARD_TOKEN";
/// Path of the MCP endpoint.
pub const MCP_PATH: &str = "/mcp";

/// Errors of the MCP server: what stops it from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The team a stdio server acts as is not usable.
    #[error("--as {team}: {message}")]
    BadTeam {
        /// The team given.
        team: String,
        /// Why it cannot be used.
        message: String,
    },
    /// A non-loopback address without a token.
    #[error(
        "refusing to serve on {addr} without a token: any host that reaches it could drive your \
         agents. Set [server] auth_token in the teams file or ${TOKEN_ENV} (every request must \
         then carry `Authorization: Bearer <token>`), or bind a loopback address such as \
         127.0.0.1:{port}",
        port = addr.port()
    )]
    InsecureBind {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// A token that is too weak to protect the server.
    #[error("the token from {source_name} {problem}")]
    BadToken {
        /// Where the token came from.
        source_name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file of the server (`server.json`) could not be written.
    #[error("cannot write {path}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The stdio transport failed to start.
    #[error("MCP over stdio: {0}")]
    Stdio(String),
    /// The router refused or failed.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// A server already serves this database.
    #[error(
        "a switchboard server is already running for {}: pid {pid}, {url}. Commands use it \
         as it is; to restart it, stop it first (kill {pid})",
        database.display()
    )]
    AlreadyRunning {
        /// The database file.
        database: std::path::PathBuf,
        /// The running server's pid.
        pid: u32,
        /// Its MCP endpoint.
        url: String,
    },
    /// The address is taken by another Switchboard server (of another database).
    #[error(
        "cannot listen on {addr}: a switchboard server already listens there (pid {pid}, \
         {url}, database {database}); pick another address (--http 127.0.0.1:PORT) or stop it \
         (kill {pid})"
    )]
    PortTaken {
        /// The address asked for.
        addr: SocketAddr,
        /// The server listening there.
        pid: u32,
        /// Its MCP endpoint.
        url: String,
        /// Its database file.
        database: String,
    },
    /// The address is taken by a Switchboard server with another token (of another database
    /// or another user), which does not say who it is.
    #[error(
        "cannot listen on {addr}: another switchboard server listens there (of another \
         database, or another user's: it did not accept this database's token); pick another \
         address (--http 127.0.0.1:PORT) or stop it"
    )]
    PortTakenByOther {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The database file is missing while a live server still serves it.
    #[error(
        "database {} does not exist, but switchboard server pid {pid} ({url}) serves it: its \
         file was deleted or moved while the server ran. Refusing to create a new, empty \
         database there (the history would be split). Put the file back, or stop that server \
         (kill {pid}) first",
        database.display()
    )]
    DatabaseGone {
        /// The database file.
        database: std::path::PathBuf,
        /// The server's pid.
        pid: u32,
        /// Its MCP endpoint.
        url: String,
    },
}

impl McpError {
    /// Whether the error is bad input (a wrong team, an unsafe address, a weak token): the
    /// command exits 2 for those, 1 otherwise.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            McpError::BadTeam { .. } | McpError::InsecureBind { .. } | McpError::BadToken { .. }
        )
    }
}

/// Whether a token is acceptable: at least 16 characters, no whitespace or control characters
/// (the same rule as `[server] auth_token`). Returns the problem otherwise.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(
            "must be at least 16 characters, without spaces (use a long random string)".into(),
        );
    }
    Ok(())
}
