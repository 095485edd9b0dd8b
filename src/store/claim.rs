//! A server's claim on a database file, held OUTSIDE the data folder so that `rm -rf` of the
//! folder cannot delete it: a small file in a per-user runtime folder
//! (`$XDG_RUNTIME_DIR/switchboard/`, else `/tmp/switchboard-<uid>/`, mode 0700), named by a
//! hash of the database's canonical path and the holder's pid, exclusively `flock`ed for as
//! long as the holder lives and holding its pid and URL. Before creating a database file that
//! does not exist, a command looks for a claim it cannot lock: a live server still serves a
//! database at that path (its file was deleted under it), and a new one would start an empty
//! second history. A file whose lock can be taken belongs to a dead process and is removed.
//!
//! A claim file only ever appears under its final name already locked (it is written and
//! locked under a temporary name, then renamed), so an unlocked file is always a dead one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Who holds a claim: what its file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimHolder {
    /// The holder's process id.
    pub pid: u32,
    /// Where the holder can be reached (the server's MCP URL).
    pub url: String,
    /// The database file claimed (canonical).
    pub database: PathBuf,
}

/// A held claim; dropping it gives it back (the file is removed).
#[derive(Debug)]
pub struct DatabaseClaim {
    path: PathBuf,
    _file: File,
}

/// Tells claims of one process apart (in-process servers in tests).
static NEXT: AtomicU64 = AtomicU64::new(0);

impl DatabaseClaim {
    /// Claims the database at `db` for this process, reachable at `url`.
    pub fn acquire(db: &Path, url: &str) -> io::Result<Self> {
        let dir = runtime_dir()?;
        let database = canonical(db);
        let key = key_of(&database);
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{key}.{pid}.{n}.lock"));
        let tmp = dir.join(format!(".{key}.{pid}.{n}.tmp"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let claimed = (|| {
            if !try_lock(&file)? {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "claim file locked",
                ));
            }
            let holder = ClaimHolder {
                pid,
                url: url.to_string(),
                database,
            };
            let body = serde_json::to_string(&holder).map_err(io::Error::other)?;
            file.write_all(body.as_bytes())?;
            file.flush()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = claimed {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(Self { path, _file: file })
    }

    /// A live claim on the database at `db` held by another process, if any. Claims left by
    /// dead processes are removed on the way. Both runtime folders are looked at (a server
    /// started with another `$XDG_RUNTIME_DIR` than this command's claims in its own);
    /// `None` when neither is usable.
    pub fn holder(db: &Path) -> Option<ClaimHolder> {
        let key = key_of(&canonical(db));
        candidate_dirs()
            .into_iter()
            .filter(|dir| checked(dir).is_ok())
            .find_map(|dir| holder_in(&dir, &key, db))
    }
}

fn holder_in(dir: &Path, key: &str, db: &Path) -> Option<ClaimHolder> {
    let prefix = format!("{key}.");
    let own = format!("{key}.{}.", std::process::id());
    let mut found = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(&prefix) || !name.ends_with(".lock") || name.starts_with(&own) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = File::open(&path) else {
            continue;
        };
        match try_lock(&file) {
            Ok(true) => {
                // Its holder is gone: nobody else ever takes this name again.
                let _ = std::fs::remove_file(&path);
            }
            Ok(false) => {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = serde_json::from_str(&text).unwrap_or_else(|_| ClaimHolder {
                    pid: pid_in_name(name).unwrap_or(0),
                    url: String::new(),
                    database: canonical(db),
                });
                found.get_or_insert(holder);
            }
            Err(_) => {}
        }
    }
    found
}

impl Drop for DatabaseClaim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes an exclusive `flock` on `file` without waiting: `Ok(false)` when another open file
/// holds it. (`File::try_lock` needs a newer Rust than the crate's minimum.)
fn try_lock(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this `File` owns for the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

fn pid_in_name(name: &str) -> Option<u32> {
    name.split('.').nth(1)?.parse().ok()
}

/// The per-user runtime folder: `$XDG_RUNTIME_DIR/switchboard/` when that is set (and
/// absolute), else `/tmp/switchboard-<uid>/`; made with mode 0700. Refused when it is not a
/// folder owned by this user, or is writable by group or others.
pub fn runtime_dir() -> io::Result<PathBuf> {
    let dir = candidate_dirs().remove(0);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    checked(&dir)?;
    Ok(dir)
}

/// The runtime folders, the one to claim in first: `$XDG_RUNTIME_DIR/switchboard/` (when
/// set and absolute), then `/tmp/switchboard-<uid>/`.
fn candidate_dirs() -> Vec<PathBuf> {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let mut dirs = Vec::new();
    if let Some(base) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        if base.is_absolute() {
            dirs.push(base.join("switchboard"));
        }
    }
    dirs.push(std::env::temp_dir().join(format!("switchboard-{uid}")));
    dirs
}

/// `dir` is a folder (not a link) of this user, closed to group and others.
fn checked(dir: &Path) -> io::Result<()> {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a folder of this user closed to others; remove it",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// `db` made absolute with every existing part resolved (the file or its folders may be gone).
fn canonical(db: &Path) -> PathBuf {
    let abs = if db.is_absolute() {
        db.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(db),
            Err(_) => db.to_path_buf(),
        }
    };
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(mut resolved) = existing.canonicalize() {
            resolved.extend(rest.iter().rev());
            return resolved;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = parent;
            }
            _ => return abs,
        }
    }
}

/// A stable name for a path (FNV-1a, 64 bits, hex).
fn key_of(path: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_os_str().as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_folder_open_to_others_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = dir.path().join("open");
        std::fs::DirBuilder::new()
            .mode(0o777)
            .create(&open)
            .expect("mkdir");
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .expect("chmod");
        assert!(checked(&open).is_err());
        let closed = dir.path().join("closed");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&closed)
            .expect("mkdir");
        assert!(checked(&closed).is_ok());
    }

    #[test]
    fn canonical_resolves_what_exists_and_keeps_the_rest() {
        let dir = std::env::temp_dir();
        let gone = dir.join("no-such-folder-sb").join("db.sqlite");
        assert_eq!(
            canonical(&gone),
            dir.canonicalize()
                .unwrap()
                .join("no-such-folder-sb/db.sqlite")
        );
    }
}
