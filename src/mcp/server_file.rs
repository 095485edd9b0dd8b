//! `server.json` beside the database: how a running `switchboard serve` announces itself
//! (`{pid, process_started_at, url, started_at, transport, auth, database}`), and what others
//! conclude from it: commands find the server to go through, a second `serve --http` on the
//! same database is refused naming the first, and a command refuses to create a new database
//! at a path that a live server still serves (its file was deleted under it).
//!
//! When the server sees its database file gone or replaced, it writes the file again (making
//! the folder if it was deleted) with `database_lost` saying what happened, so that the
//! announcement survives the folder's removal.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::McpError;
use crate::config::DatabaseConfig;
use crate::util::ProcessIdentity;

/// The contents of `server.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFile {
    /// The server's process id.
    pub pid: u32,
    /// With `pid`, tells the server apart from a later process that reuses the pid (unix ms;
    /// 0 = unknown).
    #[serde(default)]
    pub process_started_at: i64,
    /// The MCP endpoint, `http://HOST:PORT/mcp`.
    pub url: String,
    /// When the server started (RFC 3339).
    #[serde(default)]
    pub started_at: String,
    /// `http` or `stdio`.
    #[serde(default)]
    pub transport: String,
    /// Whether requests need a bearer token.
    #[serde(default)]
    pub auth: bool,
    /// The database file the server serves (absent in files of older servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<PathBuf>,
    /// Set once the server found its database file deleted or replaced: what happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_lost: Option<String>,
}

/// Where the server of this database announces itself: `server.json` beside the database file
/// (none for an in-memory database).
pub fn path_for(db: &DatabaseConfig) -> Option<PathBuf> {
    if db.in_memory {
        return None;
    }
    db.path.parent().map(|p| p.join("server.json"))
}

impl ServerFile {
    /// Reads and parses `path`; `None` when it is missing or not a server file.
    pub fn read(path: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The live server (not this process) announced for this database, if any.
    pub fn live_for(db: &DatabaseConfig) -> Option<Self> {
        let file = Self::read(&path_for(db)?)?;
        let serves = file.database.as_deref().is_none_or(|d| d == db.path);
        (serves && file.pid != std::process::id() && file.is_alive()).then_some(file)
    }

    /// Whether the announcing process is still running (same pid, same start time).
    pub fn is_alive(&self) -> bool {
        ProcessIdentity {
            pid: self.pid,
            started_at: self.process_started_at,
        }
        .is_alive()
    }

    /// Writes the file atomically (a temp file renamed over it), making its folder if needed.
    pub(crate) fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let body = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension(format!("json.{}", std::process::id()));
        let written =
            std::fs::write(&tmp, format!("{body}\n")).and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Removes `path` if it still names this process (another server may have replaced it).
    pub(crate) fn remove_if_ours(path: &Path) {
        if Self::read(path).is_some_and(|f| f.pid == std::process::id()) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Refuses to create a new database file at `db.path` while a live server announces that it
/// serves that path: its file was deleted or moved under it, and a fresh database here would
/// silently start a second, empty history. `Ok` when the file exists, the database is in
/// memory, or no live server claims it (neither its claim in the runtime folder, see
/// [`crate::store::DatabaseClaim`], nor its `server.json`).
pub fn check_before_create(db: &DatabaseConfig) -> Result<(), McpError> {
    if db.in_memory || db.path.exists() {
        return Ok(());
    }
    // The claim outside the data folder survives `rm -rf` of the folder (server.json does
    // not, until the server notices and writes it again).
    if let Some(claim) = crate::store::DatabaseClaim::holder(&db.path) {
        return Err(McpError::DatabaseGone {
            database: db.path.clone(),
            pid: claim.pid,
            url: claim.url,
        });
    }
    match ServerFile::live_for(db) {
        Some(server) => Err(McpError::DatabaseGone {
            database: db.path.clone(),
            pid: server.pid,
            url: server.url,
        }),
        None => Ok(()),
    }
}
