//! `server.json` beside the database: how a running `switchboard serve` announces itself
//! (`{pid, process_started_at, url, started_at, transport, auth, database}`), and what others
//! conclude from it: commands find the server to go through, a second `serve --http` on the
//! same database is refused naming the first, and a command refuses to create a new database
//! at a path that a live server still serves (its file was deleted under it).
//!
//! When the server sees its database file gone or replaced, it writes the file again (making
//! the folder if it was deleted) with `database_lost` saying what happened, so that the
//! announcement survives the folder's removal.
//!
//! Also beside the database: `server.token`, the bearer token of the server's TCP listeners
//! (generated on first start, 0600), and `run/`, a 0700 folder holding the server's Unix
//! socket (`run/<pid>.sock`, 0600), which the CLI uses instead of TCP.

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
    /// The server's Unix socket (in a 0700 folder, only this user may connect), for the CLI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
}

/// Where the server of this database announces itself: `server.json` beside the database file
/// (none for an in-memory database).
pub fn path_for(db: &DatabaseConfig) -> Option<PathBuf> {
    if db.in_memory {
        return None;
    }
    db.path.parent().map(|p| p.join("server.json"))
}

/// Where the server of this database keeps its bearer token: `server.token` beside the
/// database file (none for an in-memory database).
pub fn token_path_for(db: &DatabaseConfig) -> Option<PathBuf> {
    path_for(db).map(|p| p.with_file_name("server.token"))
}

/// The folder holding the server's Unix socket: `run/` beside the database file, 0700.
pub fn socket_dir_for(db: &DatabaseConfig) -> Option<PathBuf> {
    path_for(db).map(|p| p.with_file_name("run"))
}

/// The stored token of this database's server, if the file exists and holds a usable token.
pub fn read_token(db: &DatabaseConfig) -> Option<String> {
    let text = std::fs::read_to_string(token_path_for(db)?).ok()?;
    let token = text.trim().to_string();
    super::check_token(&token).is_ok().then_some(token)
}

/// The stored token of this database's server, created (random, 0600) when missing; a file
/// readable by others is tightened to 0600. `None` for an in-memory database.
pub fn load_or_create_token(db: &DatabaseConfig) -> std::io::Result<Option<String>> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let Some(path) = token_path_for(db) else {
        return Ok(None);
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    for _ in 0..3 {
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the server token file was readable by others; now 0600");
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
            let text = std::fs::read_to_string(&path)?;
            let token = text.trim().to_string();
            return match super::check_token(&token) {
                Ok(()) => Ok(Some(token)),
                Err(problem) => Err(std::io::Error::other(format!(
                    "{}: the stored token {problem}; delete the file to get a new one",
                    path.display()
                ))),
            };
        }
        // Written whole to a private temp file, then linked into place: a concurrent
        // starter either wins the link or reads the winner's complete file.
        let token = new_token();
        let tmp = path.with_extension(format!("token.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{token}\n").as_bytes()));
        let linked = written.and_then(|()| std::fs::hard_link(&tmp, &path));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Ok(Some(token)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "{}: cannot create the server token",
        path.display()
    )))
}

/// A new random token (256 bits, hex).
pub fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl ServerFile {
    /// Reads and parses `path`; `None` when it is missing, not a server file, or not owned by
    /// this user (a file planted by someone else must not send our commands elsewhere).
    pub fn read(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            tracing::warn!(path = %path.display(), owner = meta.uid(), "ignoring a server file owned by another user");
            return None;
        }
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
            crate::private_fs::create_dir_all(dir)?;
        }
        let body = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension(format!("json.{}", std::process::id()));
        let written = crate::private_fs::write(&tmp, format!("{body}\n").as_bytes())
            .and_then(|()| std::fs::rename(&tmp, path));
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
