//! Looking at a database file without changing it (for `switchboard doctor`): opened
//! read-only, no migration, no pragma that writes.

use std::path::{Path, PathBuf};

use rusqlite::OpenFlags;

use super::{migrate, StoreError, StoreResult, SCHEMA_VERSION};

/// What a database file looks like from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInspection {
    /// The schema version recorded in it (0: an empty file).
    pub schema_version: i64,
    /// The newest version this switchboard knows.
    pub known_version: i64,
    /// Whether this process may write the file and its folder (for `-wal`/`-shm`).
    pub writable: bool,
}

/// Inspects the database at `path`, which must exist: schema version and write access.
pub fn inspect_file(path: &Path) -> StoreResult<FileInspection> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_err)?;
    conn.busy_timeout(super::BUSY_TIMEOUT).map_err(open_err)?;
    let schema_version = migrate::current_version(&conn).map_err(open_err)?;
    let folder = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok(FileInspection {
        schema_version,
        known_version: SCHEMA_VERSION,
        writable: can_write(path) && can_write(&folder),
    })
}

/// Whether a database can be created at `path` (which does not exist): its nearest existing
/// folder is writable.
pub fn can_create(path: &Path) -> bool {
    path.ancestors()
        .skip(1)
        .find(|a| a.exists())
        .is_some_and(|a| {
            can_write(if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            })
        })
}

fn can_write(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) reads the NUL-terminated path and touches no other memory.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}
