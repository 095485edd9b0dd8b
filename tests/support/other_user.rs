//! A second local Unix user for the trust-boundary tests: created when missing (the suite runs
//! as root in CI), and commands run as that user with `setpriv`. Nothing is skipped: when the
//! user cannot be made, the test fails saying why.

#![allow(
    clippy::disallowed_methods,
    reason = "system tools (id, useradd, setpriv), not agent processes"
)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The name of the test's second user.
pub const NAME: &str = "sbtest-other";

/// The second user: (uid, gid). Creates it (a system user, no home) when missing; panics with
/// a clear message when that is not possible (not root, no `useradd`).
pub fn ensure() -> (u32, u32) {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, NAME]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let made = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                NAME,
            ])
            .output();
        match made {
            // Another test binary may have made it meanwhile.
            Ok(out) if out.status.success() || id("-u").is_some() => {}
            Ok(out) => panic!(
                "this test needs a second local user and could not create {NAME:?} (run the \
                 tests as root, or create it: useradd --system --no-create-home {NAME}): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => panic!(
                "this test needs a second local user and could not run useradd to create \
                 {NAME:?} (run the tests as root, or create it by hand): {e}"
            ),
        }
    }
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => (uid, gid),
        _ => panic!("user {NAME:?} exists but `id` cannot tell its uid and gid"),
    }
}

/// Runs `program args` as the second user (no supplementary groups), in `/`, with a minimal
/// environment; output captured.
pub fn run(program: &str, args: &[&str]) -> Output {
    let (uid, gid) = ensure();
    let out = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(program)
        .args(args)
        .current_dir("/")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run setpriv (util-linux) to act as {NAME}: {e}"));
    out
}

/// Makes `path` and every folder above it up to `/` traversable by others (o+x), as a
/// home folder on a shared machine usually is, so that what protects a file is its own
/// mode and its folder's, not the test's private temp dir.
pub fn open_path_to(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for dir in path.ancestors().skip(1) {
        if let Ok(meta) = std::fs::metadata(dir) {
            let mode = meta.permissions().mode();
            if mode & 0o001 == 0 {
                let _ =
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o001));
            }
        }
    }
}
