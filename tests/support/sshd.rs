//! A real OpenSSH server standing for a remote host (Debian's `openssh-server`): started on a
//! free loopback port with its own host key, its own config and log, a generated client key,
//! and a client `ssh_config` of its own (alias [`Sshd::ALIAS`], `UserKnownHostsFile` holding
//! the host key), so that nothing of the user's `~/.ssh` is read or written. The login user
//! is a separate local user ([`REMOTE_USER`], created when missing; the suite runs as root),
//! and every test's remote files live in a folder owned by that user. Installs the server with
//! `scripts/install-sshd.sh` when `/usr/sbin/sshd` is missing. Stops the server and every
//! process of its sessions when dropped.

#![allow(
    dead_code,
    clippy::disallowed_methods,
    clippy::unwrap_used,
    reason = "system tools (ssh-keygen, useradd, sshd), not agent processes; a failed set-up \
              step fails the test"
)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The login user of the "remote host".
pub const REMOTE_USER: &str = "sbtest-remote";
const REMOTE_HOME: &str = "/var/lib/sbtest-remote";

/// The remote user: (uid, gid), created (with a home and /bin/sh) when missing.
pub fn remote_user() -> (u32, u32) {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, REMOTE_USER]).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .flatten()
    };
    if id("-u").is_none() {
        let made = Command::new("useradd")
            .args([
                "--system",
                "--create-home",
                "--home-dir",
                REMOTE_HOME,
                "--shell",
                "/bin/sh",
                REMOTE_USER,
            ])
            .output();
        match made {
            Ok(out) if out.status.success() || id("-u").is_some() => {}
            Ok(out) => panic!(
                "the SSH tests need a local user {REMOTE_USER:?} to log in as and could not \
                 create it (run the tests as root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => panic!("cannot run useradd to create {REMOTE_USER:?}: {e}"),
        }
    }
    // A system user is created locked ("!"): sshd refuses a locked account even for keys.
    let _ = Command::new("usermod")
        .args(["-p", "*", REMOTE_USER])
        .output();
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => (uid, gid),
        _ => panic!("user {REMOTE_USER:?} exists but `id` cannot tell its uid and gid"),
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keygen(path: &Path) -> String {
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "sbtest",
            "-f",
            &path.display().to_string(),
        ],
    );
    std::fs::read_to_string(path.with_extension("pub"))
        .expect("read the public key")
        .trim()
        .to_string()
}

/// Makes sure `/usr/sbin/sshd` is there (installing it with `scripts/install-sshd.sh`).
fn ensure_installed() {
    if Path::new("/usr/sbin/sshd").exists() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-sshd.sh");
    let out = Command::new("sh")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success() && Path::new("/usr/sbin/sshd").exists(),
        "OpenSSH's server is missing and {} could not install it: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running sshd and the client files to reach it.
pub struct Sshd {
    dir: TempDir,
    /// A folder owned by [`REMOTE_USER`] (o+x path), for the test's remote files.
    pub remote_dir: PathBuf,
    port: u16,
    child: Child,
    id: String,
}

impl Sshd {
    /// The Host alias of the client config.
    pub const ALIAS: &'static str = "sbtest";

    /// Starts a server on a free loopback port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`Sshd::start`] with sshd options (`-o KEY=VALUE`, which win over its config file:
    /// `MaxSessions=10`, sshd's default, say).
    pub fn start_with(options: &[&str]) -> Self {
        ensure_installed();
        let (uid, gid) = remote_user();
        let dir = tempfile::Builder::new()
            .prefix("sbssh")
            .tempdir()
            .expect("tempdir");
        let root = dir.path();
        let host_pub = keygen(&root.join("host_key"));
        let client_pub = keygen(&root.join("client_key"));
        std::fs::write(root.join("authorized_keys"), format!("{client_pub}\n")).unwrap();
        // sshd's privilege separation needs this folder.
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let remote_dir = root.join("remote");
        std::fs::create_dir(&remote_dir).unwrap();
        std::os::unix::fs::chown(&remote_dir, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(&remote_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711)).unwrap();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        let (port, child) = loop {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            if let Some(child) = start_on(root, port, &host_pub, &id, deadline, options) {
                break (port, child);
            }
        };
        Sshd {
            dir,
            remote_dir,
            port,
            child,
            id,
        }
    }

    /// The client options a team gives (`ssh_options`): this server's client config.
    pub fn ssh_options(&self) -> Vec<String> {
        vec![
            "-F".into(),
            self.dir.path().join("ssh_config").display().to_string(),
        ]
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The test's private folder (client key, configs, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// How many SSH logins (handshakes with authentication) the server accepted so far.
    pub fn logins(&self) -> usize {
        self.log().matches("Accepted publickey for").count()
    }

    /// Replaces the known host key with another one: the server now presents a key the
    /// client does not know for that name (a changed host key).
    pub fn change_known_host_key(&self) {
        let other = keygen(&self.dir.path().join("other_host_key"));
        std::fs::write(
            self.dir.path().join("known_hosts"),
            format!("[127.0.0.1]:{} {other}\n", self.port),
        )
        .unwrap();
    }

    /// Kills the server's connection processes (not the listener): every connection drops,
    /// as when the network or the host goes away.
    pub fn drop_connections(&self) -> usize {
        // Each connection is a monitor (a child of the listener) and its unprivileged child,
        // which holds the socket: kill every sshd below the listener, not the sessions' own
        // processes (a broken network does not kill them either).
        let listener = self.child.id();
        // The whole tree first: a child of a killed monitor would move to init meanwhile.
        let mut below = vec![listener];
        let mut tree = Vec::new();
        while let Some(parent) = below.pop() {
            for pid in pids().filter(|&p| ppid(p) == Some(parent)) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "sshd" {
                    below.push(pid);
                    tree.push(pid);
                }
            }
        }
        let mut killed = 0;
        for pid in tree {
            // SAFETY: kill(2) on a pid just read; no memory involved.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            killed += 1;
        }
        killed
    }

    /// The processes of this server's sessions still alive (by `SBTEST_SSHD` in their
    /// environment), with their command lines.
    pub fn session_processes(&self) -> Vec<(u32, String)> {
        let needle = format!("SBTEST_SSHD={}", self.id);
        pids()
            .filter(|&pid| environ_has(pid, &needle))
            .map(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                    .unwrap_or_default();
                (pid, cmd)
            })
            .collect()
    }
}

/// Writes the configs for `port` and starts sshd; `None` when the port was taken meanwhile.
fn start_on(
    root: &Path,
    port: u16,
    host_pub: &str,
    id: &str,
    deadline: Instant,
    options: &[&str],
) -> Option<Child> {
    let config = root.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {root}/host_key\n\
             PidFile {root}/sshd.pid\nAuthorizedKeysFile {root}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PermitRootLogin no\nAllowUsers {REMOTE_USER}\nStrictModes no\n\
             AllowStreamLocalForwarding yes\nAllowTcpForwarding yes\nMaxSessions 100\n\
             MaxStartups 100\nLogLevel VERBOSE\nSetEnv SBTEST_SSHD={id}\n",
            root = root.display()
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("known_hosts"),
        format!("[127.0.0.1]:{port} {host_pub}\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("ssh_config"),
        format!(
            "Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User {REMOTE_USER}\n  \
             IdentityFile {root}/client_key\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {root}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  \
             IdentityAgent none\n",
            alias = Sshd::ALIAS,
            root = root.display()
        ),
    )
    .unwrap();
    let log_path = root.join("sshd.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new("/usr/sbin/sshd")
        .args(options.iter().flat_map(|o| ["-o", o]))
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("start /usr/sbin/sshd");
    // Ready when it says it listens; a port taken meanwhile: the caller tries another.
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("Server listening") {
            return Some(child);
        }
        if let Ok(Some(_)) = child.try_wait() {
            assert!(
                Instant::now() < deadline && text.contains("Address already in use"),
                "sshd did not start: {text}"
            );
            return None;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("sshd did not start within 30 s: {text}");
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
}

fn environ_has(pid: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|e| e.split(|&b| b == 0).any(|v| v == needle.as_bytes()))
        .unwrap_or(false)
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Every connection (which also ends the clients' control connections), the listener,
        // then whatever its sessions left.
        self.drop_connections();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for (pid, _) in self.session_processes() {
            // SAFETY: kill(2); no memory involved.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}
