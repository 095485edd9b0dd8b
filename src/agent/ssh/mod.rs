//! The SSH transport of remote teams, over the system's OpenSSH client (`ssh`): no SSH code
//! of our own. Owns: one multiplexed control connection per host (ControlMaster/ControlPersist,
//! its socket in a Switchboard-owned 0700 folder), the quoting of every remote command
//! ([`quote`]), starting an agent on the remote host and stopping its process group
//! ([`launch`]), finding and stopping agents a dead Switchboard left there, the reverse
//! forward of Switchboard's socket, removing a remote transcript and checking a remote team
//! ([`ops`]). Host keys are verified as the user's OpenSSH does: `BatchMode=yes` (never a
//! prompt), never `StrictHostKeyChecking=no`.
//!
//! It knows nothing of sessions, SQL or the router: the agent lifecycle calls it (see
//! docs/remote.md for where).

mod error;
pub mod launch;
pub mod mcp;
pub mod ops;
pub mod quote;

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::Command;

pub use error::SshError;
pub use quote::QuoteError;

/// How long an idle control connection stays up after its last use.
pub const CONTROL_PERSIST: Duration = Duration::from_secs(600);
/// How long connecting (and authenticating) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Keepalives of the control connection: a host that stops answering is noticed after
/// `ServerAliveInterval * ServerAliveCountMax` (15 s).
const ALIVE_INTERVAL_S: u32 = 5;
const ALIVE_COUNT: u32 = 3;
/// Longest output kept of a short remote command.
const OUTPUT_LIMIT: usize = 256 * 1024;

/// A remote host as a team names it: the destination (`user@host` or a Host alias of
/// ssh_config) and the team's extra `ssh` options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Host {
    /// `user@host`, `host`, or a Host alias.
    pub destination: String,
    /// Extra options for `ssh` (`["-p", "2222"]`, `["-F", "/path/config"]`, ...).
    pub options: Vec<String>,
}

impl Host {
    /// A host; refuses a destination that ssh would take for an option or that holds spaces
    /// or control characters.
    pub fn new(destination: &str, options: Vec<String>) -> Result<Self, String> {
        check_destination(destination)?;
        Ok(Self {
            destination: destination.to_string(),
            options,
        })
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.destination)
    }
}

/// Why `destination` is not a usable SSH destination, if it is not (the check of the teams
/// file's `remote`).
pub fn check_destination(destination: &str) -> Result<(), String> {
    crate::config::check_ssh_destination(destination)
}

/// What a short remote command printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit status (None: killed by a signal).
    pub status: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// The SSH client side of Switchboard: where the control sockets live, and one lock per host
/// so that a host gets one control connection however many agents start at once.
#[derive(Debug, Clone)]
pub struct Transport {
    socket_dir: PathBuf,
    program: String,
    locks: Arc<Mutex<HashMap<Host, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Transport {
    /// The default transport: sockets in `/tmp/sb-ssh-<uid>` (short, for the 108-byte limit
    /// of a Unix socket path), created 0700; refused when it exists and is not ours and 0700.
    pub fn new_default() -> Result<Self, SshError> {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        Self::new(PathBuf::from(format!("/tmp/sb-ssh-{uid}")))
    }

    /// A transport of its own for one owner (a router) of this process: sockets in
    /// `/tmp/sb-ssh-<uid>/<pid>-<n>`, so that closing its control connections at shutdown
    /// never cuts the agents of another Switchboard process (or router) that reaches the same
    /// host. Folders of processes that are gone, left empty, are removed on the way.
    pub fn for_process() -> Result<Self, SshError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let parent = Self::new_default()?;
        for entry in std::fs::read_dir(&parent.socket_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid {
                if crate::util::process_start_ms(pid).is_none() {
                    // Fails (and is left) while a master of that process still has its socket.
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self::new(
            parent
                .socket_dir
                .join(format!("{}-{n}", std::process::id())),
        )
    }

    /// Removes the socket folder when it is empty (after [`Transport::disconnect`] of every
    /// host).
    pub fn remove_socket_dir(&self) {
        // The masters' logs go with it; a socket still there keeps the folder.
        for entry in std::fs::read_dir(&self.socket_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.path().extension().is_some_and(|e| e == "log") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let _ = std::fs::remove_dir(&self.socket_dir);
    }

    /// A transport with its control sockets in `socket_dir` (created 0700; an existing one must
    /// be a folder owned by this user with mode 0700, not a symlink).
    pub fn new(socket_dir: PathBuf) -> Result<Self, SshError> {
        let local = |what: String| move |source| SshError::Local { what, source };
        crate::private_fs::create_dir_all(&socket_dir)
            .map_err(local(format!("cannot create {}", socket_dir.display())))?;
        let meta = std::fs::symlink_metadata(&socket_dir)
            .map_err(local(format!("cannot read {}", socket_dir.display())))?;
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
            return Err(SshError::Local {
                what: format!(
                    "the SSH socket folder {} must be a folder of yours with mode 0700 (found \
                     mode {:o}, owner uid {}); remove it and Switchboard makes a new one",
                    socket_dir.display(),
                    meta.permissions().mode() & 0o7777,
                    meta.uid()
                ),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            });
        }
        Ok(Self {
            socket_dir,
            program: "ssh".to_string(),
            locks: Arc::default(),
        })
    }

    /// The folder of the control sockets.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The options every ssh run gets: the control socket (`%C`, a 40-character hash of the
    /// local host, remote host, port and user, keeps the path short), no prompts, keepalives.
    fn base_args(&self, host: &Host) -> Vec<String> {
        let mut args = host.options.clone();
        args.extend([
            "-o".to_string(),
            format!("ControlPath={}/%C", self.socket_dir.display()),
            "-o".to_string(),
            "BatchMode=yes".to_string(),
            "-o".to_string(),
            format!("ConnectTimeout={}", CONNECT_TIMEOUT.as_secs()),
            "-o".to_string(),
            format!("ServerAliveInterval={ALIVE_INTERVAL_S}"),
            "-o".to_string(),
            format!("ServerAliveCountMax={ALIVE_COUNT}"),
        ]);
        args
    }

    /// The argv (after `ssh`) that runs `command` on `host` through its control connection,
    /// without a terminal.
    pub fn command_args(&self, host: &Host, command: &str) -> Vec<String> {
        let mut args = self.base_args(host);
        args.extend(
            ["-o", "ControlMaster=no", "-T", "--"]
                .iter()
                .map(|s| s.to_string()),
        );
        args.push(host.destination.clone());
        args.push(command.to_string());
        args
    }

    /// The ssh program (`ssh`).
    pub fn program(&self) -> &str {
        &self.program
    }

    fn lock(&self, host: &Host) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(locks.entry(host.clone()).or_default())
    }

    /// Whether `host`'s control connection is up (`ssh -O check`).
    pub async fn master_alive(&self, host: &Host) -> bool {
        self.control(host, "check", &[])
            .await
            .is_ok_and(|o| o.status == Some(0))
    }

    /// Makes sure `host` has a control connection: starts one (`ControlMaster=yes`,
    /// `ControlPersist`, in the background) when there is none. Host key, login and
    /// connection problems come back as their [`SshError`] with the fix.
    pub async fn connect(&self, host: &Host) -> Result<(), SshError> {
        let lock = self.lock(host);
        let _held = lock.lock().await;
        if self.master_alive(host).await {
            return Ok(());
        }
        // A master killed without cleaning up leaves its socket: ssh would then refuse to
        // make a new one there (and every run would pay a handshake).
        self.remove_stale_socket(host).await;
        let log = self.socket_dir.join(format!("{}.log", short_hash(host)));
        let _ = std::fs::remove_file(&log);
        let mut args = self.base_args(host);
        args.extend([
            "-o".to_string(),
            "ControlMaster=yes".to_string(),
            "-o".to_string(),
            format!("ControlPersist={}", CONTROL_PERSIST.as_secs()),
            "-o".to_string(),
            "ExitOnForwardFailure=yes".to_string(),
            "-E".to_string(),
            log.display().to_string(),
            "-f".to_string(),
            "-N".to_string(),
            "-T".to_string(),
            "--".to_string(),
            host.destination.clone(),
        ]);
        let out = self
            .run_raw(
                &args,
                CONNECT_TIMEOUT + Duration::from_secs(5),
                host,
                "connecting",
            )
            .await?;
        if out.status != Some(0) {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = std::fs::remove_file(&log);
            return Err(SshError::classify(
                &host.destination,
                "connecting",
                out.status.or(Some(255)),
                &format!("{}\n{said}", out.stderr),
            ));
        }
        Ok(())
    }

    /// Removes `host`'s control socket when no master answers on it (`ssh -G` tells its path).
    async fn remove_stale_socket(&self, host: &Host) {
        let mut args = self.base_args(host);
        args.extend(["-G".to_string(), "--".to_string(), host.destination.clone()]);
        let Ok(out) = self
            .run_raw(
                &args,
                Duration::from_secs(10),
                host,
                "reading the ssh config",
            )
            .await
        else {
            return;
        };
        let path = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("controlpath "));
        if let Some(path) = path.map(Path::new) {
            use std::os::unix::fs::FileTypeExt;
            let is_socket = std::fs::symlink_metadata(path)
                .map(|m| m.file_type().is_socket())
                .unwrap_or(false);
            if is_socket && path.starts_with(&self.socket_dir) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Closes `host`'s control connection (`ssh -O exit`); its sessions end with it.
    pub async fn disconnect(&self, host: &Host) {
        let _ = self.control(host, "exit", &[]).await;
    }

    /// `ssh -O <op> [extra] DEST` against the control socket.
    pub(crate) async fn control(
        &self,
        host: &Host,
        op: &str,
        extra: &[String],
    ) -> Result<Output, SshError> {
        let mut args = self.base_args(host);
        args.push("-O".to_string());
        args.push(op.to_string());
        args.extend(extra.iter().cloned());
        args.push("--".to_string());
        args.push(host.destination.clone());
        self.run_raw(&args, Duration::from_secs(10), host, op).await
    }

    /// Runs `command` (already quoted) on `host` through its control connection (made first
    /// when needed), stdin closed, within `timeout`. A non-zero exit of the command is not an
    /// error here; ssh's own failures (255) are.
    pub async fn run(
        &self,
        host: &Host,
        command: &str,
        what: &str,
        timeout: Duration,
    ) -> Result<Output, SshError> {
        self.connect(host).await?;
        let out = self
            .run_raw(&self.command_args(host, command), timeout, host, what)
            .await?;
        if out.status == Some(255) || out.status.is_none() {
            return Err(SshError::classify(
                &host.destination,
                what,
                out.status,
                &out.stderr,
            ));
        }
        Ok(out)
    }

    /// Runs a constant helper `script` with `args` (each quoted) on `host`.
    pub async fn run_script(
        &self,
        host: &Host,
        script: &str,
        args: &[&str],
        what: &str,
        timeout: Duration,
    ) -> Result<Output, SshError> {
        let command = quote::script_command(script, args).map_err(|source| SshError::Quote {
            host: host.destination.clone(),
            source,
        })?;
        self.run(host, &command, what, timeout).await
    }

    async fn run_raw(
        &self,
        args: &[String],
        timeout: Duration,
        host: &Host,
        what: &str,
    ) -> Result<Output, SshError> {
        use tokio::io::AsyncReadExt;
        let mut child = Command::new(&self.program)
            .args(args)
            .env_remove("SSH_ASKPASS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SshError::Local {
                what: format!("cannot run {} (install OpenSSH's client)", self.program),
                source,
            })?;
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let read = async {
            let read_all = |pipe: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| async move {
                let mut buf = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = (&mut pipe)
                        .take(OUTPUT_LIMIT as u64)
                        .read_to_end(&mut buf)
                        .await;
                    // Drain the rest so that ssh never blocks on a full pipe.
                    let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
                }
                buf
            };
            let (out, err) = tokio::join!(
                read_all(stdout.take().map(|p| Box::new(p) as _)),
                read_all(stderr.take().map(|p| Box::new(p) as _))
            );
            let status = child.wait().await;
            (out, err, status)
        };
        match tokio::time::timeout(timeout, read).await {
            Ok((out, err, status)) => {
                let status = status.map_err(|source| SshError::Local {
                    what: format!("waiting for ssh ({what})"),
                    source,
                })?;
                Ok(Output {
                    status: status.code(),
                    stdout: String::from_utf8_lossy(&out).into_owned(),
                    stderr: String::from_utf8_lossy(&err).into_owned(),
                })
            }
            Err(_) => Err(SshError::Timeout {
                host: host.destination.clone(),
                what: what.to_string(),
                timeout,
            }),
        }
    }
}

/// A short stable name for a host's files in the socket folder.
fn short_hash(host: &Host) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(host.destination.as_bytes());
    for o in &host.options {
        h.update([0]);
        h.update(o.as_bytes());
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_owner_gets_its_own_socket_folder_and_empty_ones_of_dead_processes_go() {
        let parent = Transport::new_default().expect("socket folder");
        // An empty folder of a process that is gone, and a file that is not a folder.
        let dead = parent.socket_dir().join(format!("{}-0", u32::MAX - 7));
        std::fs::create_dir_all(&dead).expect("mkdir");
        let a = Transport::for_process().expect("a");
        let b = Transport::for_process().expect("b");
        assert_ne!(a.socket_dir(), b.socket_dir());
        assert!(a.socket_dir().starts_with(parent.socket_dir()));
        assert!(a.socket_dir().file_name().is_some_and(|n| n
            .to_string_lossy()
            .starts_with(&format!("{}-", std::process::id()))));
        assert!(
            !dead.exists(),
            "the dead process's empty folder was removed"
        );
        std::fs::write(a.socket_dir().join("x.log"), "log").expect("log");
        a.remove_socket_dir();
        b.remove_socket_dir();
        assert!(!a.socket_dir().exists() && !b.socket_dir().exists());
    }

    #[test]
    fn destinations_that_would_be_options_are_refused() {
        assert!(check_destination("deploy@gpu-box").is_ok());
        assert!(check_destination("alias").is_ok());
        for bad in [
            "",
            "-oProxyCommand=touch /tmp/x",
            "a b",
            "a\nb",
            "ssh://h:22",
        ] {
            assert!(check_destination(bad).is_err(), "{bad:?}");
        }
    }
}
