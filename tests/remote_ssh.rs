//! The SSH transport of remote teams (src/agent/ssh) against a real OpenSSH server standing for
//! the remote host (tests/support/sshd.rs: Debian's sshd on a loopback port, its own host key,
//! a generated client key, a separate login user). What a user would notice: one handshake per
//! host however many commands, team values that reach the remote process exactly (no shell
//! injection), remote agents that stop (and leftovers of a killed Switchboard that are found
//! and stopped), a changed host key refused with the fix, a lost connection reported with the
//! host, a forwarded socket no other user can use, and the real Claude Code answering over SSH.

#![allow(
    clippy::unwrap_used,
    reason = "a failed set-up step in a helper fails the test"
)]

mod fake_api;
#[path = "support/other_user.rs"]
#[allow(dead_code)]
mod other_user;
#[path = "support/claude_code.rs"]
mod pinned_claude;
#[path = "support/sshd.rs"]
mod sshd;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fake_api::{Answer, FakeApi};
use sshd::Sshd;
use switchboard::agent::adapter::{AgentAdapter, LaunchExtras, LaunchSpec, SessionRef};
use switchboard::agent::event::AgentEvent;
use switchboard::agent::process::{AgentProcess, StdoutLine};
use switchboard::agent::ssh::launch::{self, Owner, RemoteAgent};
use switchboard::agent::ssh::{ops, Host, SshError, Transport};
use switchboard::util::ProcessIdentity;
use tempfile::TempDir;

const START: Duration = Duration::from_secs(30);

struct Remote {
    sshd: Sshd,
    transport: Transport,
    host: Host,
    /// The local side's files (control sockets, stderr logs).
    local: TempDir,
}

impl Remote {
    fn start() -> Self {
        let sshd = Sshd::start();
        let local = tempfile::Builder::new().prefix("sbl").tempdir().unwrap();
        let transport = Transport::new(local.path().join("s")).expect("socket folder");
        let host = Host::new(Sshd::ALIAS, sshd.ssh_options()).unwrap();
        Remote {
            sshd,
            transport,
            host,
            local,
        }
    }

    /// A folder on the "remote host" owned by its login user.
    fn remote_folder(&self, name: &str) -> PathBuf {
        let (uid, gid) = sshd::remote_user();
        let dir = self.sshd.remote_dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        dir
    }

    fn log(&self) -> PathBuf {
        self.local.path().join("agent.log")
    }

    async fn spawn(&self, spec: &LaunchSpec, marker: &str) -> Result<RemoteAgent, SshError> {
        RemoteAgent::spawn(
            &self.transport,
            &self.host,
            spec,
            marker,
            &self.log(),
            &switchboard::agent::claude::ClaudeCode,
            START,
        )
        .await
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // The control master is a daemon of its own (ControlPersist): end it with its socket.
        let socket_dir = self.transport.socket_dir().to_path_buf();
        let _ = std::process::Command::new("ssh")
            .args(self.host.options.iter())
            .arg("-o")
            .arg(format!("ControlPath={}/%C", socket_dir.display()))
            .args(["-O", "exit", "--", &self.host.destination])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn sh_spec(cwd: &Path, script: &str, args: &[&str], env: &[(&str, &str)]) -> LaunchSpec {
    let mut all = vec!["-c".to_string(), script.to_string(), "agent".to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    LaunchSpec {
        program: "/bin/sh".into(),
        args: all,
        cwd: cwd.to_path_buf(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        inherit: Vec::new(),
        env_remove: Vec::new(),
    }
}

/// Polls `cond` (a short pause between calls) until true or `within` passed.
fn poll_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// The live processes of process group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 2..];
                    let f: Vec<&str> = rest.split(' ').collect();
                    // Zombies are gone for every purpose but the reaper's.
                    (f[0] != "Z").then(|| f[2].parse::<u32>().ok()).flatten()
                })
                == Some(pgid)
        })
        .collect()
}

/// How many `sleep 30*` processes group `pgid` holds (the test agents' children).
fn group_sleeps(pgid: u32) -> usize {
    group_members(pgid)
        .iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"sleep\x0030"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_handshake_per_host_however_many_commands() {
    let r = Remote::start();
    assert_eq!(r.sshd.logins(), 0);
    let out = r
        .transport
        .run(&r.host, "echo first", "a command", START)
        .await
        .expect("first command");
    assert_eq!(out.stdout.trim(), "first");
    assert_eq!(r.sshd.logins(), 1, "{}", r.sshd.log());
    // Sequential and concurrent commands, and an agent: all over the same connection.
    for i in 0..5 {
        let out = r
            .transport
            .run(&r.host, &format!("echo {i}"), "a command", START)
            .await
            .unwrap();
        assert_eq!(out.stdout.trim(), i.to_string());
    }
    let runs = (0..6).map(|i| {
        let t = r.transport.clone();
        let h = r.host.clone();
        tokio::spawn(async move { t.run(&h, &format!("echo c{i}"), "a command", START).await })
    });
    for run in runs {
        assert!(run.await.unwrap().unwrap().stdout.starts_with('c'));
    }
    let dir = r.remote_folder("p");
    let mut agent = r
        .spawn(&sh_spec(&dir, "exec sleep 60", &[], &[]), "m")
        .await
        .expect("agent");
    assert!(r.transport.master_alive(&r.host).await);
    assert_eq!(
        r.sshd.logins(),
        1,
        "every command reused the control connection"
    );
    agent
        .stop(&r.transport, Duration::from_secs(2))
        .await
        .unwrap();

    // Several hosts starting at once still make one connection each.
    let fresh = Remote::start();
    let runs = (0..4).map(|_| {
        let t = fresh.transport.clone();
        let h = fresh.host.clone();
        tokio::spawn(async move { t.run(&h, "true", "a command", START).await })
    });
    for run in runs {
        run.await.unwrap().unwrap();
    }
    assert_eq!(fresh.sshd.logins(), 1, "{}", fresh.sshd.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_reach_the_remote_process_byte_identical() {
    let r = Remote::start();
    let canary = r.sshd.remote_dir.join("canary");
    let c = canary.display().to_string();
    let hostile: Vec<String> = vec![
        format!("$(touch {c})"),
        format!("`touch {c}`"),
        format!("; touch {c}"),
        format!("x\ntouch {c}\n"),
        format!("' ; touch {c}; '"),
        format!("\" ; touch {c}; \""),
        format!("a && touch {c} || touch {c}"),
        "${HOME} $PATH * ~ # ! \\ \t é🦀".to_string(),
        String::new(),
        "  two  spaces  ".to_string(),
        "-n".to_string(),
    ];
    let folder = r.remote_folder(&format!("we ird '$(touch {c})' ;\"dir\n`x`"));
    let out = r.remote_folder("out").join("values");
    let mut env: Vec<(String, String)> = hostile
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("V{i}"), v.clone()))
        .collect();
    env.push(("OUT".into(), out.display().to_string()));
    let script = format!(
        "printf '%s\\0' \"$PWD\" {} \"$@\" > \"$OUT.tmp\" && mv \"$OUT.tmp\" \"$OUT\"; exec sleep 60",
        (0..hostile.len())
            .map(|i| format!("\"$V{i}\""))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let args: Vec<&str> = hostile.iter().map(String::as_str).collect();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut agent = r
        .spawn(&sh_spec(&folder, &script, &args, &env_refs), "m")
        .await
        .expect("agent");
    assert!(
        poll_until(Duration::from_secs(20), || out.exists()),
        "the remote process did not write its values"
    );
    let got = std::fs::read(&out).unwrap();
    let got: Vec<&[u8]> = got.split(|&b| b == 0).collect();
    assert_eq!(
        got[0],
        folder.display().to_string().as_bytes(),
        "the folder"
    );
    for (i, want) in hostile.iter().chain(hostile.iter()).enumerate() {
        assert_eq!(
            String::from_utf8_lossy(got[i + 1]),
            *want,
            "value {i} (env first, then argv)"
        );
    }
    assert!(
        !canary.exists(),
        "a team value ran as shell code on the remote host"
    );
    // The agent runs as the remote login user, in its own process group.
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.remote.pid)).unwrap();
    let (uid, _) = sshd::remote_user();
    assert!(status.contains(&format!("Uid:\t{uid}\t")), "{status}");
    assert!(group_members(agent.remote.pgid).contains(&agent.remote.pid));
    agent
        .stop(&r.transport, Duration::from_secs(2))
        .await
        .unwrap();

    // A NUL byte cannot be passed: refused before anything runs.
    let bad = sh_spec(&folder, "true", &["a\0b"], &[]);
    let e = r.spawn(&bad, "m").await.expect_err("NUL refused");
    assert!(e.to_string().contains("NUL"), "{e}");
    // A folder that does not exist there: the reason, not a hang.
    let missing = sh_spec(Path::new("/nonexistent/team"), "true", &[], &[]);
    let e = r.spawn(&missing, "m").await.expect_err("no folder");
    assert!(
        e.to_string()
            .contains("cannot enter the team folder /nonexistent/team")
            && e.to_string().contains(Sshd::ALIAS),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_the_remote_process_group_term_then_kill() {
    let r = Remote::start();
    let dir = r.remote_folder("p");
    // Children in the agent's group (the tools it runs), and TERM obeyed.
    let mut agent = r
        .spawn(
            &sh_spec(&dir, "sleep 300 & sleep 301 & echo up > up; wait", &[], &[]),
            "m",
        )
        .await
        .unwrap();
    let pgid = agent.remote.pgid;
    assert!(poll_until(START, || group_sleeps(pgid) == 2));
    let how = agent
        .stop(&r.transport, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(how, "terminated");
    assert!(poll_until(Duration::from_secs(5), || group_members(pgid).is_empty()));

    // TERM ignored (by the agent and its children): KILL after the grace.
    let mut stubborn = r
        .spawn(
            &sh_spec(&dir, "trap '' TERM; sleep 300 & sleep 301 & wait", &[], &[]),
            "m",
        )
        .await
        .unwrap();
    let pgid = stubborn.remote.pgid;
    assert!(poll_until(START, || group_sleeps(pgid) == 2));
    let how = stubborn
        .stop(&r.transport, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(how, "killed");
    assert!(poll_until(Duration::from_secs(5), || group_members(pgid).is_empty()));
    // Stopping a group that is gone is fine.
    let again = launch::stop_group(
        &r.transport,
        &r.host,
        stubborn.remote,
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(again, "gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_left_by_a_killed_switchboard_are_found_and_stopped() {
    let r = Remote::start();
    let dir = r.remote_folder("p");
    // "Switchboard" that will die: a process of this machine, killed with SIGKILL below.
    let mut dead = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let dead_owner = Owner {
        host: Owner::current().host,
        process: ProcessIdentity {
            pid: dead.id(),
            started_at: switchboard::util::process_start_ms(dead.id()).unwrap(),
        },
    };
    // Agents that ignore HUP and never read stdin: they outlive their ssh.
    let stubborn = "trap '' HUP; sleep 300 & wait";
    let left = r
        .spawn(
            &sh_spec(&dir, stubborn, &[], &[]),
            &dead_owner.marker("s-left"),
        )
        .await
        .unwrap();
    let mine = r
        .spawn(
            &sh_spec(&dir, stubborn, &[], &[]),
            &Owner::current().marker("s-mine"),
        )
        .await
        .unwrap();
    // kill -9 of the local side: the owner and the ssh carrying its agent.
    let left_group = left.remote;
    // SAFETY: kill(2).
    unsafe { libc::kill(left.process.identity.pid as i32, libc::SIGKILL) };
    dead.kill().unwrap();
    dead.wait().unwrap();
    std::mem::forget(left); // its ssh is gone; nothing local to stop
    assert!(
        !group_members(left_group.pgid).is_empty(),
        "the remote agent outlives its killed ssh (this is what the sweep is for)"
    );

    let found = launch::find_agents(&r.transport, &r.host).await.unwrap();
    let sessions: Vec<&str> = found.iter().map(|a| a.session_id.as_str()).collect();
    assert!(
        sessions.contains(&"s-left") && sessions.contains(&"s-mine"),
        "{found:?}"
    );
    let stopped = launch::stop_leftovers(
        &r.transport,
        &r.host,
        Owner::is_dead_here,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert_eq!(
        stopped
            .iter()
            .map(|a| a.session_id.as_str())
            .collect::<Vec<_>>(),
        ["s-left"]
    );
    assert_eq!(stopped[0].group.pgid, left_group.pgid);
    assert!(poll_until(Duration::from_secs(5), || group_members(
        left_group.pgid
    )
    .is_empty()));
    // The agent of the live Switchboard is untouched.
    assert!(!group_members(mine.remote.pgid).is_empty());
    let mut mine = mine;
    mine.stop(&r.transport, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(poll_until(Duration::from_secs(5), || r
        .sshd
        .session_processes()
        .iter()
        .all(|(_, cmd)| !cmd.contains("sleep"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_host_key_is_refused_with_the_fix() {
    let r = Remote::start();
    r.sshd.change_known_host_key();
    let e = r
        .transport
        .run(&r.host, "true", "a command", START)
        .await
        .expect_err("a changed host key must be refused");
    assert!(matches!(e, SshError::HostKeyChanged { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(Sshd::ALIAS) && msg.contains("ssh-keygen -R"),
        "{msg}"
    );
    assert_eq!(r.sshd.logins(), 0, "nothing logged in");
    // The check of `doctor` reports it as the one problem.
    let report = ops::check(&r.transport, &r.host, "/", "sh").await;
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert!(report.problems[0].contains("CHANGED"), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_reported_with_the_host_and_the_next_command_reconnects() {
    let r = Remote::start();
    let dir = r.remote_folder("p");
    let mut agent = r
        .spawn(&sh_spec(&dir, "exec sleep 300", &[], &[]), "m")
        .await
        .unwrap();
    assert!(r.sshd.drop_connections() > 0);
    let status = tokio::time::timeout(START, agent.process.wait())
        .await
        .expect("the local ssh ends when the connection is lost")
        .unwrap();
    let e = launch::exit_error(&r.host, status.code(), &agent.process.stderr_tail())
        .expect("ssh's own failure, not the agent's exit");
    assert!(e.is_connection_lost(), "{e}");
    assert!(
        e.to_string().contains("lost the connection to sbtest"),
        "{e}"
    );
    // The next command makes a new connection.
    let out = r
        .transport
        .run(&r.host, "echo back", "a command", START)
        .await
        .unwrap();
    assert_eq!(out.stdout.trim(), "back");
    // Even an agent that does not read its stdin (a hung one) does not outlive its session:
    // the wrapper's watchdog stops its group when the session's sshd goes.
    assert!(
        poll_until(Duration::from_secs(10), || group_members(agent.remote.pgid)
            .is_empty()),
        "{:?}",
        r.sshd.session_processes()
    );
    let how = launch::stop_group(&r.transport, &r.host, agent.remote, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(how, "gone");
    assert_eq!(r.sshd.logins(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_connection_killed_without_cleanup_is_replaced() {
    let r = Remote::start();
    r.transport.connect(&r.host).await.unwrap();
    // The master's pid, from `ssh -O check` ("Master running (pid=N)").
    let check = std::process::Command::new("ssh")
        .args(r.host.options.iter())
        .arg("-o")
        .arg(format!(
            "ControlPath={}/%C",
            r.transport.socket_dir().display()
        ))
        .args(["-O", "check", "--", &r.host.destination])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
        .wait_with_output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stderr).to_string();
    let pid: i32 = said
        .split("pid=")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no master pid in {said:?}"));
    // SAFETY: kill(2).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(poll_until(Duration::from_secs(5), || !Path::new(&format!(
        "/proc/{pid}"
    ))
    .exists()
        || std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.contains(") Z "))));
    // Its socket is left behind; the next command still gets a new master, and the one after
    // reuses it.
    assert_eq!(
        std::fs::read_dir(r.transport.socket_dir())
            .unwrap()
            .flatten()
            .filter(|e| e
                .file_type()
                .is_ok_and(|t| std::os::unix::fs::FileTypeExt::is_socket(&t)))
            .count(),
        1
    );
    for _ in 0..3 {
        let out = r
            .transport
            .run(&r.host, "echo again", "a command", START)
            .await
            .unwrap();
        assert_eq!(out.stdout.trim(), "again");
    }
    assert_eq!(r.sshd.logins(), 2, "{}", r.sshd.log());
    assert!(r.transport.master_alive(&r.host).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarded_socket_is_private_to_the_remote_user() {
    let r = Remote::start();
    // Switchboard's side: a Unix socket answering "hello".
    let local_sock = r.local.path().join("sb.sock");
    let listener = tokio::net::UnixListener::bind(&local_sock).unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"hello\n").await;
        }
    });
    // In /tmp (open to all), so that the folder's own mode is what protects it.
    let remote_dir = format!(
        "/tmp/sbfwd-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let fwd = ops::reverse_forward(
        &r.transport,
        &r.host,
        &remote_dir,
        "mcp.sock",
        &local_sock.display().to_string(),
    )
    .await
    .expect("reverse forward");
    let meta = std::fs::metadata(&remote_dir).unwrap();
    let (uid, _) = sshd::remote_user();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    assert_eq!(meta.uid(), uid);
    let connect = "require('net').connect(process.argv[1]).on('data', d => { process.stdout.write(d); process.exit(0) }).on('error', e => { console.error(e.code); process.exit(3) })";
    // The remote user reaches Switchboard through it.
    let out = r
        .transport
        .run(
            &r.host,
            &format!("node -e \"{connect}\" {}", fwd.remote_socket),
            "connecting to the socket",
            START,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout.trim(), "hello", "{out:?}");
    // Another user of that host cannot.
    let other = other_user::run("node", &["-e", connect, &fwd.remote_socket]);
    assert!(!other.status.success(), "another user connected");
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("EACCES"),
        "{other:?}"
    );
    // Control: with the folder and socket opened up, the same user gets through, so the
    // refusal above is the folder's doing.
    std::fs::set_permissions(&remote_dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&fwd.remote_socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let opened = other_user::run("node", &["-e", connect, &fwd.remote_socket]);
    assert_eq!(
        String::from_utf8_lossy(&opened.stdout).trim(),
        "hello",
        "{opened:?}"
    );
    ops::cancel_forward(&r.transport, &r.host, &fwd)
        .await
        .unwrap();
    assert!(!Path::new(&fwd.remote_socket).exists());
    let _ = std::fs::remove_dir_all(&remote_dir);
}

/// The team `b` of a teams file whose agent is the pinned Claude Code, with HOME on the
/// "remote host" and the stand-in API.
fn claude_team(r: &Remote, api: &FakeApi, project: &Path, home: &Path) -> switchboard::TeamsConfig {
    let text = format!(
        "[database]\nin_memory = true\n[teams.b]\npath = {path:?}\nagent_path = {claude:?}\n\
         env = {{ HOME = {home:?}, ANTHROPIC_BASE_URL = {url:?}, ANTHROPIC_API_KEY = \"test-key\", \
         CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = \"1\", DISABLE_TELEMETRY = \"1\", \
         CLAUDE_CODE_MAX_RETRIES = \"0\" }}\n",
        path = project.display().to_string(),
        claude = pinned_claude::binary(),
        home = home.display().to_string(),
        url = api.url(),
    );
    let _ = r;
    switchboard::TeamsConfig::parse(&text, None, &|_| None).expect("teams file")
}

/// Reads events until the turn's result; returns its text.
async fn read_result(p: &mut AgentProcess) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), p.lines.recv())
            .await
            .expect("a result within 60 s")
        {
            Some(StdoutLine::Event(AgentEvent::Result(result))) => {
                return result.text.clone().unwrap_or_default()
            }
            Some(StdoutLine::Closed(_)) | None => panic!("the agent exited: {}", p.stderr_tail()),
            Some(_) => {}
        }
    }
}

/// Waits for the agent's answer to the ready probe (a control response, no model call).
async fn await_ready(p: &mut AgentProcess) {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), p.lines.recv())
            .await
            .expect("ready within 60 s")
        {
            Some(StdoutLine::Closed(_)) | None => panic!("the agent exited: {}", p.stderr_tail()),
            Some(StdoutLine::Event(AgentEvent::ControlResponse { .. })) => return,
            Some(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_claude_code_answers_a_turn_over_ssh_and_its_transcript_is_removed_there() {
    let r = Remote::start();
    let api = FakeApi::start().await;
    api.set_default(Answer::text("Answered on the remote host."));
    let project = r.remote_folder("proj");
    let home = r.remote_folder("home");
    let config = claude_team(&r, &api, &project, &home);
    let team = config.team("b").unwrap();
    let claude = switchboard::agent::claude::ClaudeCode;
    let session = uuid::Uuid::new_v4().to_string();

    // `doctor`: the folder, the agent and its version, checked there; every problem at once.
    let ok = ops::check(
        &r.transport,
        &r.host,
        &project.display().to_string(),
        &pinned_claude::binary(),
    )
    .await;
    assert!(ok.problems.is_empty(), "{ok:?}");
    assert!(
        ok.version
            .as_deref()
            .unwrap_or("")
            .contains(pinned_claude::CLAUDE_VERSION),
        "{ok:?}"
    );
    let bad = ops::check(&r.transport, &r.host, "/nonexistent/team", "no-such-agent").await;
    assert_eq!(bad.problems.len(), 2, "{bad:?}");
    assert!(
        bad.problems[0].contains("does not exist") && bad.problems[1].contains("agent_path"),
        "{bad:?}"
    );

    let spec = claude.launch(
        team,
        &SessionRef {
            session_id: &session,
            agent_session_id: None,
            resume: false,
        },
        &LaunchExtras::default(),
    );
    let mut agent = r
        .spawn(&spec, &Owner::current().marker(&session))
        .await
        .expect("claude over ssh");
    agent
        .process
        .send_line(&claude.encode_message("Hello over SSH"))
        .await
        .unwrap();
    assert_eq!(
        read_result(&mut agent.process).await,
        "Answered on the remote host."
    );
    assert!(api
        .message_requests()
        .iter()
        .any(|m| m.last_user_text().contains("Hello over SSH")));
    agent
        .stop(&r.transport, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(poll_until(Duration::from_secs(5), || group_members(
        agent.remote.pgid
    )
    .is_empty()));

    // A resumed session over SSH: the agent there reads its transcript there.
    api.push(Answer::text("Resumed on the remote host."));
    let spec = claude.launch(
        team,
        &SessionRef {
            session_id: &session,
            agent_session_id: None,
            resume: true,
        },
        &LaunchExtras::default(),
    );
    let mut agent = r
        .spawn(&spec, &Owner::current().marker(&session))
        .await
        .expect("resumed claude over ssh");
    agent
        .process
        .send_line(&claude.encode_message("And again"))
        .await
        .unwrap();
    assert_eq!(
        read_result(&mut agent.process).await,
        "Resumed on the remote host."
    );
    let last = api.message_requests().pop().expect("a request");
    assert!(
        last.has_text("user", "Hello over SSH")
            && last.has_text("assistant", "Answered on the remote host."),
        "the resumed agent sent the earlier conversation: {:?}",
        last.all_message_texts()
    );
    agent
        .stop(&r.transport, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(
        r.sshd.logins(),
        1,
        "every spawn and check over one connection"
    );

    // The transcript stays on the remote host; `sessions delete --transcript` removes it there.
    let transcript = ops::claude_transcript(
        &r.transport,
        &r.host,
        &project.display().to_string(),
        &session,
        team.env
            .get("CLAUDE_CONFIG_DIR")
            .map(String::as_str)
            .or(Some(&format!("{}/.claude", home.display()))),
    )
    .await
    .unwrap();
    assert!(Path::new(&transcript).is_file(), "{transcript}");
    assert!(ops::remove_file(&r.transport, &r.host, &transcript)
        .await
        .unwrap());
    assert!(!Path::new(&transcript).exists());
    assert!(!ops::remove_file(&r.transport, &r.host, &transcript)
        .await
        .unwrap());
}

/// Not a speed assertion: prints spawn-to-ready of the real Claude Code, local vs over SSH
/// (first spawn with a new connection, then with the connection up), for docs/remote.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_to_ready_over_ssh_vs_local_is_measured() {
    let r = Remote::start();
    let api = FakeApi::start().await;
    let project = r.remote_folder("proj");
    let home = r.remote_folder("home");
    let config = claude_team(&r, &api, &project, &home);
    let team = config.team("b").unwrap();
    // The local agent gets folders of its own (root's files in the remote user's home would
    // be in that user's way).
    let local_project = r.local.path().join("proj");
    let local_home = r.local.path().join("home");
    std::fs::create_dir_all(&local_project).unwrap();
    std::fs::create_dir_all(&local_home).unwrap();
    let local_config = claude_team(&r, &api, &local_project, &local_home);
    let local_team = local_config.team("b").unwrap();
    let claude = switchboard::agent::claude::ClaudeCode;
    let mut local_ms = Vec::new();
    let mut remote_ms = Vec::new();
    for round in 0..6 {
        let session = uuid::Uuid::new_v4().to_string();
        let spec = claude.launch(
            team,
            &SessionRef {
                session_id: &session,
                agent_session_id: None,
                resume: false,
            },
            &LaunchExtras::default(),
        );
        let local_spec = claude.launch(
            local_team,
            &SessionRef {
                session_id: &session,
                agent_session_id: None,
                resume: false,
            },
            &LaunchExtras::default(),
        );
        let t = Instant::now();
        let mut local = AgentProcess::spawn(
            &local_spec,
            &r.log(),
            &switchboard::agent::claude::ClaudeCode,
        )
        .unwrap();
        local
            .send_line(&claude.encode_ready_probe("r").unwrap())
            .await
            .unwrap();
        await_ready(&mut local).await;
        local_ms.push(t.elapsed().as_millis());
        local.stop(Duration::from_secs(2)).await;

        if round == 0 {
            r.transport.disconnect(&r.host).await;
        }
        let t = Instant::now();
        let mut remote = r.spawn(&spec, "bench").await.unwrap();
        remote
            .process
            .send_line(&claude.encode_ready_probe("r").unwrap())
            .await
            .unwrap();
        await_ready(&mut remote.process).await;
        remote_ms.push(t.elapsed().as_millis());
        remote
            .stop(&r.transport, Duration::from_secs(2))
            .await
            .unwrap();
    }
    // The transport alone: a new connection, then a command over it.
    r.transport.disconnect(&r.host).await;
    let t = Instant::now();
    r.transport.connect(&r.host).await.unwrap();
    let connect_ms = t.elapsed().as_millis();
    let mut command_ms = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        r.transport
            .run(&r.host, "true", "a command", START)
            .await
            .unwrap();
        command_ms.push(t.elapsed().as_millis());
    }
    println!(
        "spawn-to-ready of Claude Code {}: local {local_ms:?} ms; over SSH {remote_ms:?} ms \
         (the first over SSH includes the new connection); new connection {connect_ms} ms; \
         `true` over the control connection {command_ms:?} ms; handshakes: {}",
        pinned_claude::CLAUDE_VERSION,
        r.sshd.logins()
    );
    assert_eq!(
        r.sshd.logins(),
        2,
        "one connection for every spawn, one after disconnect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_claude_code_losing_its_connection_mid_turn_is_reported_and_leaves_no_orphan() {
    let r = Remote::start();
    let api = FakeApi::start().await;
    // The turn is still running when the connection goes.
    api.set_default(Answer::text("too late").with_delay(Duration::from_secs(20)));
    let project = r.remote_folder("proj");
    let home = r.remote_folder("home");
    let config = claude_team(&r, &api, &project, &home);
    let team = config.team("b").unwrap();
    let claude = switchboard::agent::claude::ClaudeCode;
    let session = uuid::Uuid::new_v4().to_string();
    let spec = claude.launch(
        team,
        &SessionRef {
            session_id: &session,
            agent_session_id: None,
            resume: false,
        },
        &LaunchExtras::default(),
    );
    let mut agent = r
        .spawn(&spec, &Owner::current().marker(&session))
        .await
        .unwrap();
    agent
        .process
        .send_line(&claude.encode_message("A long question"))
        .await
        .unwrap();
    assert!(poll_until(Duration::from_secs(30), || !api
        .message_requests()
        .is_empty()));
    assert!(r.sshd.drop_connections() > 0);
    let status = tokio::time::timeout(START, agent.process.wait())
        .await
        .expect("the local ssh ends with the connection")
        .unwrap();
    let e = launch::exit_error(&r.host, status.code(), &agent.process.stderr_tail())
        .expect("ssh's failure");
    assert!(e.is_connection_lost(), "{e}");
    // Claude Code on the remote host sees the end of its input and exits: no orphan there.
    assert!(
        poll_until(Duration::from_secs(20), || group_members(agent.remote.pgid)
            .is_empty()),
        "the remote agent outlived its connection: {:?}",
        r.sshd.session_processes()
    );
}

/// The stand-in for a Switchboard process running agents over SSH (tests/bin/ssh_owner.rs, an
/// example target), built if needed into the `examples/` folder beside this test's `deps/`.
fn owner_bin() -> PathBuf {
    const NAME: &str = "switchboard-ssh-owner";
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", NAME, "--profile", &profile])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "cargo build --example {NAME} failed");
    profile_dir.join("examples").join(NAME)
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rfind(')').is_some_and(|i| !s[i..].starts_with(") Z")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_switchboard_leaves_no_orphan_on_either_side() {
    use std::io::BufRead;
    let r = Remote::start();
    let dir = r.remote_folder("p");
    let owner_dir = r.local.path().join("o");
    let mut owner = std::process::Command::new(owner_bin())
        .arg(&owner_dir)
        .arg(&r.host.destination)
        .arg(&dir)
        .arg("2")
        // An agent that reads its input (as Claude Code does when idle) ...
        .arg("exec cat > /dev/null")
        // ... and a hung one that never does.
        .arg("trap '' HUP; sleep 300 & wait")
        .args(&r.host.options)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(owner.stdout.take().unwrap()).lines();
    let mut agents = Vec::new();
    for _ in 0..2 {
        let line = lines.next().expect("an agent line").unwrap();
        let f: Vec<u32> = line.split(' ').map(|v| v.parse().unwrap_or(0)).collect();
        agents.push((f[1], f[3])); // remote pgid, local ssh pid
    }
    let (reader, hung) = (agents[0], agents[1]);
    assert!(!group_members(reader.0).is_empty() && !group_members(hung.0).is_empty());

    // SAFETY: kill(2).
    unsafe { libc::kill(owner.id() as i32, libc::SIGKILL) };
    owner.wait().unwrap();
    // Here: the ssh clients died with it.
    assert!(
        poll_until(Duration::from_secs(10), || !alive(reader.1)
            && !alive(hung.1)),
        "an ssh client outlived its Switchboard"
    );
    // There: the agent reading its input ended with it ...
    assert!(
        poll_until(Duration::from_secs(10), || group_members(reader.0)
            .is_empty()),
        "the remote agent outlived its Switchboard"
    );
    // ... the hung one is left, and the next start-up finds and stops it.
    assert!(!group_members(hung.0).is_empty());
    let stopped = launch::stop_leftovers(
        &r.transport,
        &r.host,
        Owner::is_dead_here,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    assert_eq!(stopped[0].group.pgid, hung.0);
    assert_eq!(stopped[0].session_id, "owner-1");
    assert!(poll_until(Duration::from_secs(5), || group_members(hung.0).is_empty()));
    // The killed process's control connection (its own socket folder) goes with the server.
    let _ = std::process::Command::new("ssh")
        .args(r.host.options.iter())
        .arg("-o")
        .arg(format!("ControlPath={}/%C", owner_dir.display()))
        .args(["-O", "exit", "--", &r.host.destination])
        .stderr(std::process::Stdio::null())
        .status();
}
