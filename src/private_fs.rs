//! Files and folders only the user who runs Switchboard may read: the database (and its WAL),
//! `server.json`, the logs, the agents' MCP configs and the trust records. Folders are created
//! 0700 and files 0600 whatever the umask; [`tighten_data_folder`] takes back what an older
//! Switchboard (or a loose umask) left readable, and logs each file it changes.
//!
//! Knows nothing of SQLite, servers or agents: callers name the paths.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of Switchboard's folders.
pub const DIR_MODE: u32 = 0o700;
/// Mode of Switchboard's files.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents. Folders created here get 0700 (exactly, whatever the
/// umask); folders that already exist are left as they are.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut missing: Vec<&Path> = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d);
        cur = d.parent();
    }
    for d in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(DIR_MODE).create(d) {
            Ok(()) => std::fs::set_permissions(d, Permissions::from_mode(DIR_MODE))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Makes sure `path` exists as a 0600 file (creating its folder 0700), without changing the
/// contents of an existing file. An existing file that others may read is tightened.
pub fn ensure_file(path: &Path) -> io::Result<()> {
    let file = open_append(path)?;
    drop(file);
    Ok(())
}

/// Opens `path` for appending, creating it 0600 (and its folder 0700) when missing; an existing
/// file that others may read is tightened to 0600.
pub fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    fix_open_file(&file, path)?;
    Ok(file)
}

/// Creates (or truncates) `path` as a 0600 file, its folder 0700.
pub fn create(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    fix_open_file(&file, path)?;
    Ok(file)
}

/// Writes `data` to `path` (created or truncated), readable only by the user.
pub fn write(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut file = create(path)?;
    file.write_all(data)
}

fn fix_open_file(file: &File, path: &Path) -> io::Result<()> {
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode != FILE_MODE {
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
        if mode & 0o077 != 0 {
            log_change(path, mode, FILE_MODE);
        }
    }
    Ok(())
}

/// Logs that `path` was `from` and is now private (when [`tighten`] is not the one that did it).
pub fn log_tightened(path: &Path, from: u32) {
    let to = std::fs::symlink_metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(FILE_MODE);
    log_change(path, from, to);
}

fn log_change(path: &Path, from: u32, to: u32) {
    tracing::warn!(
        "tightened the permissions of {} from {from:04o} to {to:04o} (only you may read Switchboard's files)",
        path.display()
    );
}

/// The mode of `path` when others may read or write it (not following symbolic links).
pub fn mode_if_loose(path: &Path) -> Option<u32> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let mode = meta.permissions().mode() & 0o7777;
    (!meta.file_type().is_symlink() && mode & 0o077 != 0).then_some(mode)
}

/// Takes group and other permissions away from `path` (if it exists and is not a symbolic
/// link), logging the change. Returns the old mode when it changed something.
pub fn tighten(path: &Path) -> Option<u32> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() {
        return None;
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return None;
    }
    let wanted = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
    match std::fs::set_permissions(path, Permissions::from_mode(wanted)) {
        Ok(()) => {
            log_change(path, mode, wanted);
            Some(mode)
        }
        Err(e) => {
            tracing::warn!(
                "cannot tighten the permissions of {} ({mode:04o}): {e}",
                path.display()
            );
            None
        }
    }
}

/// Every file and folder of Switchboard's beside the database `db`: the database and its
/// `-wal`/`-shm`/`-journal`, `server.json`, `logs/` and `mcp/` with what they hold. The
/// database's own folder is listed only when it is Switchboard's (named `switchboard`, as the
/// default data folder is), never a project folder or `/tmp` that merely holds the file.
pub fn data_paths(db: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return paths;
    };
    if is_own_data_folder(dir) {
        paths.push(dir.to_path_buf());
    }
    let name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    paths.push(db.to_path_buf());
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut n = name.clone();
        n.push(suffix);
        paths.push(dir.join(n));
    }
    paths.push(dir.join("server.json"));
    for sub in ["logs", "mcp"] {
        let sub = dir.join(sub);
        paths.push(sub.clone());
        if let Ok(entries) = std::fs::read_dir(&sub) {
            let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            files.sort();
            paths.extend(files);
        }
    }
    paths.retain(|p| std::fs::symlink_metadata(p).is_ok());
    paths
}

/// Whether `dir` is a folder Switchboard owns: the default data folder, or any folder named
/// `switchboard`.
pub fn is_own_data_folder(dir: &Path) -> bool {
    dir.file_name().is_some_and(|n| n == "switchboard")
        || crate::util::data_dir().is_some_and(|d| d == dir)
}

/// Tightens every path of [`data_paths`] that others may read (files to 0600, folders to 0700),
/// logging each change. Returns the paths changed.
pub fn tighten_data_folder(db: &Path) -> Vec<PathBuf> {
    data_paths(db)
        .into_iter()
        .filter(|p| tighten(p).is_some())
        .collect()
}

/// The paths of [`data_paths`] that others may read or write, with their modes.
pub fn loose_data_paths(db: &Path) -> Vec<(PathBuf, u32)> {
    data_paths(db)
        .into_iter()
        .filter_map(|p| {
            let meta = std::fs::symlink_metadata(&p).ok()?;
            let mode = meta.permissions().mode() & 0o7777;
            (!meta.file_type().is_symlink() && mode & 0o077 != 0).then_some((p, mode))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_private_folders_and_files() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a/b/c.log");
        drop(open_append(&file).unwrap());
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!(mode(&tmp.path().join("a/b")), 0o700);
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn tightens_loose_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("switchboard");
        std::fs::create_dir(&dir).unwrap();
        let db = dir.join("switchboard.db");
        std::fs::write(&db, "").unwrap();
        std::fs::set_permissions(&db, Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        let changed = tighten_data_folder(&db);
        assert_eq!(changed, vec![dir.clone(), db.clone()]);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert!(loose_data_paths(&db).is_empty());
    }
}
