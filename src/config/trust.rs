//! Which teams files found in the current folder the user trusts.
//!
//! A teams file names programs Switchboard runs (`agent_path`, `args`) and the environment it
//! gives them, so a `teams.toml` that merely sits in the current folder (a cloned repository's,
//! say) is not used until the user trusts it once: `switchboard config trust [FILE]` records the
//! file's absolute path and the SHA-256 of its contents in `<config dir>/trusted-teams-files.json`
//! (0600). A file changed since then must be trusted again. Files named by `--config` or
//! `$SWITCHBOARD_CONFIG`, and `<config dir>/teams.toml`, are the user's own and need no trust.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::load::{config_dir, Env};

/// The record of trusted files, in the config dir.
pub const TRUST_FILE: &str = "trusted-teams-files.json";

/// Whether a teams file found in the current folder may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Trusted with these very contents.
    Trusted,
    /// Never trusted.
    Unknown,
    /// Trusted once, but its contents changed since.
    Changed,
}

/// The SHA-256 of `bytes`, in hex.
pub fn content_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where the trust record lives: `<config dir>/trusted-teams-files.json`.
pub fn trust_file(env: Env<'_>) -> Option<PathBuf> {
    config_dir(env).map(|d| d.join(TRUST_FILE))
}

fn key(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

fn read_record(env: Env<'_>) -> BTreeMap<PathBuf, String> {
    trust_file(env)
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Whether the teams file at `path` (found in the current folder) is trusted as it is now.
pub fn check(path: &Path, env: Env<'_>) -> Trust {
    let Ok(bytes) = std::fs::read(path) else {
        return Trust::Unknown;
    };
    match read_record(env).get(&key(path)) {
        Some(hash) if *hash == content_hash(&bytes) => Trust::Trusted,
        Some(_) => Trust::Changed,
        None => Trust::Unknown,
    }
}

/// Records the teams file at `path` as trusted with its current contents; returns its absolute
/// path and the hash recorded.
pub fn trust(path: &Path, env: Env<'_>) -> std::io::Result<(PathBuf, String)> {
    let bytes = std::fs::read(path)?;
    let hash = content_hash(&bytes);
    let record_path = trust_file(env).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no config folder to record trust in: set HOME or XDG_CONFIG_HOME",
        )
    })?;
    let mut record = read_record(env);
    let abs = key(path);
    record.insert(abs.clone(), hash.clone());
    let text = serde_json::to_string_pretty(&record).map_err(std::io::Error::other)?;
    crate::private_fs::write(&record_path, format!("{text}\n").as_bytes())?;
    Ok((abs, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_is_bound_to_the_contents() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("xdg");
        let cfg_s = cfg.display().to_string();
        let env = move |k: &str| (k == "XDG_CONFIG_HOME").then(|| cfg_s.clone());
        let file = tmp.path().join("teams.toml");
        std::fs::write(&file, "[teams]\n").unwrap();
        assert_eq!(check(&file, &env), Trust::Unknown);
        trust(&file, &env).unwrap();
        assert_eq!(check(&file, &env), Trust::Trusted);
        std::fs::write(&file, "[teams]\n# changed\n").unwrap();
        assert_eq!(check(&file, &env), Trust::Changed);
        use std::os::unix::fs::PermissionsExt;
        let record = cfg.join("switchboard").join(TRUST_FILE);
        let mode = std::fs::metadata(record).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
