//! Switchboard: lets coding agents that work in different project folders ("teams") message each
//! other. One persistent agent session per ordered pair of teams, recorded in SQLite.
//!
//! Layers (a folder is a layer):
//! - [`config`]: the teams file (TOML): load, interpolate env, validate, report every error.
//! - [`store`]: the only place with SQL; an r2d2 pool of rusqlite connections, migrations.
//! - [`session`]: the [`session::SessionManager`]: get-or-create per pair, TTL cache, updates,
//!   compaction policy, stats. Knows neither SQL strings nor child processes.
//! - [`events`]: the event bus (live broadcast) and its durable log.
//! - [`agent`]: what Switchboard knows about the agent CLIs it drives (Claude Code).
//! - [`server`]: the server (`switchboard serve`): the MCP endpoint (stdio and streamable HTTP), the JSON API, health, status and metrics.
//! - [`doctor`]: the checks of `switchboard doctor`, over every layer.
//! - [`private_fs`]: Switchboard's files and folders, readable only by the user.
//! - [`redact`]: hiding secrets in what Switchboard records and logs.
//! - [`util`]: small shared helpers (time, durations, process identity).

pub mod agent;
pub mod alloc;
pub mod config;
pub mod doctor;
pub mod error;
pub mod events;
pub mod private_fs;
pub mod redact;
pub mod router;
pub mod server;
pub mod session;
pub mod signals;
pub mod store;
pub mod util;

pub use config::TeamsConfig;
pub use error::Error;
pub use session::SessionManager;
pub use store::SessionStore;
