//! Remote teams end to end: a team with `remote = "..."` whose agent runs on another host over
//! the system's OpenSSH, through the router, the CLI and the store as a user would use them.
//! The "remote host" is a real sshd on a loopback port with its own host key and login user
//! (tests/support/sshd.rs); the agent is the real Claude Code (against the model stand-in,
//! tests/fake_api) or, for the failure paths, the scripted agent (tests/bin/scripted_agent.rs).
//!
//! What a user would notice: a tell answered there and a resumed tell (its transcript stays
//! there, and `sessions delete --transcript` removes it there); cancel; a stalled remote agent
//! killed with its whole group; a connection cut mid-turn failing the tell naming the host, the
//! next tell resuming; kill -9 of Switchboard leaving nothing behind once the next one starts;
//! hostile folder and env values arriving exactly (nothing injected); a changed host key
//! refused with the fix; `doctor` and `config check --remote` naming every problem of a bad
//! remote team at once; and the migration that stores the remote agent with the session.

#![allow(
    clippy::unwrap_used,
    reason = "a failed set-up step in a helper fails the test"
)]

mod fake_api;
#[path = "support/claude_code.rs"]
mod pinned_claude;
#[path = "common/procs.rs"]
#[allow(dead_code)]
mod procs;
#[path = "support/sshd.rs"]
mod sshd;
#[path = "common/test_agent.rs"]
mod test_agent;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_api::{Answer, FakeApi};
use serde_json::{json, Value};
use sshd::Sshd;
use switchboard::router::{Router, Wait};
use switchboard::store::{SessionStore, TellKind, TellState};
use switchboard::{SessionManager, TeamsConfig};
use tempfile::TempDir;

const WAIT: Wait = Wait::For(Duration::from_secs(60));

/// Calls `cond` until it is true or `within` has passed; returns whether it became true.
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

/// The files of session `session` in the remote login user's folder for Switchboard's tools:
/// `<session>.<start>.sock` and `.token`, one pair per agent start (src/agent/ssh/mcp.rs).
fn mcp_files(session: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(format!("/tmp/sb-mcp-{}", sshd::remote_user().0));
    let prefix = format!("{session}.");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The live (not zombie) members of process group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    procs::live_pids(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            let rest = s.rfind(')').map(|i| &s[i + 2..]).unwrap_or("");
            let f: Vec<&str> = rest.split(' ').collect();
            f.first() != Some(&"Z") && f.get(2) == Some(&pgid.to_string().as_str())
        })
    })
}

/// A "remote host" (sshd) and the local side: a folder with the teams file, the database,
/// the local team `a`'s folder and the CLI's HOME.
struct World {
    sshd: Sshd,
    local: TempDir,
}

impl World {
    fn start() -> Self {
        let sshd = Sshd::start();
        let local = tempfile::Builder::new().prefix("sbrt").tempdir().unwrap();
        std::fs::create_dir_all(local.path().join("a")).unwrap();
        std::fs::create_dir_all(local.path().join("home")).unwrap();
        World { sshd, local }
    }

    /// A folder on the "remote host", owned by its login user.
    fn remote_folder(&self, name: &str) -> PathBuf {
        let (uid, gid) = sshd::remote_user();
        let dir = self.sshd.remote_dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        dir
    }

    fn config_path(&self) -> PathBuf {
        self.local.path().join("teams.toml")
    }

    fn db_path(&self) -> PathBuf {
        self.local.path().join("sb.db")
    }

    /// Writes a teams file: team `a` here, team `b` on the remote host in `project`, run by
    /// `agent` with `env`; `settings` are `[settings]` lines. Team `b`'s `switchboard_path` is
    /// this build of `switchboard` (the remote host is this machine).
    fn write_config(&self, project: &Path, agent: &str, env: &[(&str, String)], settings: &str) {
        self.write_config_with(
            project,
            agent,
            env,
            settings,
            env!("CARGO_BIN_EXE_switchboard"),
            "",
        );
    }

    /// [`World::write_config`] with team `b`'s `switchboard_path` and `more` (whole tables
    /// after team `b`'s).
    fn write_config_with(
        &self,
        project: &Path,
        agent: &str,
        env: &[(&str, String)],
        settings: &str,
        switchboard: &str,
        more: &str,
    ) {
        let env: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("{k} = {}", Value::from(v.as_str())))
            .collect();
        let options: Vec<Value> = self
            .sshd
            .ssh_options()
            .into_iter()
            .map(Value::from)
            .collect();
        let text = format!(
            "[settings]\n{settings}\n[database]\npath = {db}\n\
             [teams.a]\npath = {a}\nagent_path = {claude}\n\
             [teams.b]\npath = {b}\nremote = {alias}\nssh_options = {options}\n\
             agent_path = {agent}\nswitchboard_path = {switchboard}\nenv = {{ {env} }}\n{more}",
            switchboard = Value::from(switchboard),
            db = Value::from(self.db_path().display().to_string()),
            a = Value::from(self.local.path().join("a").display().to_string()),
            claude = Value::from(pinned_claude::binary()),
            b = Value::from(project.display().to_string()),
            alias = Value::from(Sshd::ALIAS),
            options = Value::from(options),
            agent = Value::from(agent),
            env = env.join(", "),
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    fn config(&self) -> Arc<TeamsConfig> {
        Arc::new(TeamsConfig::load(&self.config_path()).expect("teams file"))
    }

    /// A Switchboard in this process: SessionManager + Router over the test's database.
    fn router(&self) -> Router {
        let m = SessionManager::open(self.config()).expect("open");
        m.initialize().expect("initialize");
        let r = Router::new(Arc::new(m));
        r.recover(None).expect("recover");
        r
    }

    /// The `switchboard` binary with `--config`, a HOME of its own, stdin null.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.current_dir(self.local.path())
            .env("HOME", self.local.path().join("home"))
            .env_remove("SWITCHBOARD_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .arg("--config")
            .arg(self.config_path())
            .args(args);
        cmd
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "the switchboard binary under test, run as a user would; its output is small"
    )]
    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// The remote agent recorded with the session of `a -> b` (pid, start), read from the
    /// database as a second process would.
    fn recorded(&self) -> Option<(String, u32)> {
        let store = SessionStore::open(&self.db_path()).ok()?;
        let s = store.get_by_pair("a", "b").ok()??;
        store
            .remote_agent(&s.session_id)
            .ok()?
            .map(|r| (r.host, r.pid))
    }

    /// The processes of the remote host's sessions whose command line holds `what`.
    fn remote_processes(&self, what: &str) -> Vec<(u32, String)> {
        self.sshd
            .session_processes()
            .into_iter()
            .filter(|(_, cmd)| cmd.contains(what))
            .collect()
    }
}

/// The local control connections (ssh masters) to this test's sshd still running.
fn masters(w: &World) -> Vec<u32> {
    let config = w.sshd.dir().join("ssh_config").display().to_string();
    procs::live_pids(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let c = String::from_utf8_lossy(&c);
            c.contains(&config) && c.contains("ControlMaster=yes")
        })
    })
}

/// The environment of a real Claude Code on the remote host: its HOME there, the stand-in API.
fn claude_env(home: &Path, api: &FakeApi) -> Vec<(&'static str, String)> {
    vec![
        ("HOME", home.display().to_string()),
        ("ANTHROPIC_BASE_URL", api.url()),
        ("ANTHROPIC_API_KEY", "test-key".into()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
        ("DISABLE_TELEMETRY", "1".into()),
        ("CLAUDE_CODE_MAX_RETRIES", "0".into()),
    ]
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `tell` through the CLI twice (two Switchboard processes: the second resumes the
/// conversation on the remote host), then `sessions delete --transcript` removes the
/// transcript there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tell_and_a_resumed_tell_run_on_the_remote_host_and_the_transcript_is_removed_there() {
    let w = World::start();
    let api = FakeApi::start().await;
    let project = w.remote_folder("proj");
    let home = w.remote_folder("home");
    w.write_config(
        &project,
        &pinned_claude::binary(),
        &claude_env(&home, &api),
        "",
    );

    api.push(Answer::text("Answered on the remote host."));
    let out = w.run(&["--json", "tell", "a", "b", "Hello over SSH"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tell: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(tell["answer"], "Answered on the remote host.", "{tell}");
    let session_id = tell["session_id"].as_str().unwrap().to_string();
    // The agent ran there, as the remote user: its transcript is in the remote HOME, owned
    // by that user.
    let transcript = home
        .join(".claude/projects")
        .join(switchboard::agent::claude_project_folder(
            &project.display().to_string(),
        ))
        .join(format!("{session_id}.jsonl"));
    let meta = std::fs::metadata(&transcript).expect("the transcript on the remote host");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        sshd::remote_user().0
    );
    // No MCP config file of this machine was handed to the agent there (the CLI serves MCP to
    // the agents it starts; a local file path means nothing on the remote host).
    let store = SessionStore::open(&w.db_path()).unwrap();
    let launch = store
        .get_by_session_id(&session_id)
        .unwrap()
        .unwrap()
        .launch_command
        .unwrap_or_default();
    assert!(launch.contains("--session-id"), "{launch}");
    // It got Switchboard's tools through the bridge there: an inline config running
    // `switchboard mcp-bridge`, never a config file of this machine.
    assert!(
        launch.contains("--mcp-config") && launch.contains("mcp-bridge"),
        "{launch}"
    );
    assert!(!launch.contains(".json\""), "{launch}");
    drop(store);
    // The CLI stopped its agent there and forgot the group; nothing runs on the host.
    assert_eq!(w.recorded(), None);
    assert!(w.remote_processes("claude").is_empty());
    // Its tools' socket and credential file there went with it.
    let left = mcp_files(&session_id);
    assert!(left.is_empty(), "left on the host: {left:?}");

    api.push(Answer::text("Resumed on the remote host."));
    let out = w.run(&["--json", "tell", "a", "b", "And again"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tell: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(tell["answer"], "Resumed on the remote host.", "{tell}");
    assert_eq!(tell["session_id"], session_id.as_str());
    let last = api.message_requests().pop().expect("a request");
    assert!(
        last.has_text("user", "Hello over SSH")
            && last.has_text("assistant", "Answered on the remote host."),
        "the second agent resumed the conversation: {:?}",
        last.all_message_texts()
    );

    let out = w.run(&[
        "--json",
        "sessions",
        "delete",
        "a:b",
        "--transcript",
        "--yes",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let deleted: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(deleted["transcript_removed"], true, "{deleted}");
    assert_eq!(
        deleted["transcript"],
        transcript.display().to_string().as_str()
    );
    assert!(!transcript.exists(), "the transcript is gone on the host");
}

/// The scripted agent on the remote host, with a short response timeout: cancel, a stall
/// (the remote group killed), a connection cut mid-turn (the tell fails naming the host; the
/// next tell resumes the session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stall_and_a_cut_connection_of_a_remote_agent() {
    let w = World::start();
    let project = w.remote_folder("proj");
    let home = w.remote_folder("home");
    // The agent notes each turn it starts here (after the message is in its transcript).
    let turns_file = home.join("turns");
    w.write_config(
        &project,
        test_agent::path(),
        &[
            ("HOME", home.display().to_string()),
            ("TEST_AGENT_PIDFILE", turns_file.display().to_string()),
        ],
        "response_timeout = \"3s\"",
    );
    let turns = || {
        std::fs::read_to_string(&turns_file)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("turn "))
            .count()
    };
    let router = w.router();

    let t = router.tell("a", "b", "first", WAIT).await.unwrap();
    assert_eq!(t.answer.as_deref(), Some("echo: first"), "{t:?}");

    // Cancel: the running turn is interrupted, the agent stays for the next tell.
    let t = router
        .submit("a", "b", TellKind::Tell, "sleep:30000", None)
        .await
        .unwrap();
    assert!(poll_until(Duration::from_secs(20), || router
        .tell_status(&t.tell_id)
        .is_ok_and(|t| t.state == TellState::Delivered)));
    assert!(poll_until(Duration::from_secs(20), || turns() == 2));
    router.cancel("a", "b").unwrap();
    let t = router.wait_for(&t.tell_id, WAIT).await.unwrap();
    assert_eq!(t.state, TellState::Cancelled, "{t:?}");
    let t = router.tell("a", "b", "after cancel", WAIT).await.unwrap();
    assert_eq!(t.answer.as_deref(), Some("echo: after cancel"), "{t:?}");

    // A stall: the agent is killed there, its whole group.
    let (_, pid) = w.recorded().expect("the remote agent recorded");
    assert!(!group_members(pid).is_empty());
    let t = router.tell("a", "b", "hang", WAIT).await.unwrap();
    assert_eq!(t.state, TellState::Failed, "{t:?}");
    assert!(t.error.as_deref().unwrap().contains("timeout"), "{t:?}");
    assert!(
        poll_until(Duration::from_secs(10), || group_members(pid).is_empty()),
        "the stalled remote agent's group is gone"
    );
    assert_eq!(w.recorded(), None, "a stopped group is forgotten");

    // The connection cut mid-turn: the tell fails naming the host; the next one resumes.
    let t = router
        .submit("a", "b", TellKind::Tell, "sleep:20000", None)
        .await
        .unwrap();
    assert!(poll_until(Duration::from_secs(20), || router
        .tell_status(&t.tell_id)
        .is_ok_and(|t| t.state == TellState::Delivered)));
    let (_, pid) = w.recorded().expect("the new remote agent recorded");
    // The agent got the message (its fifth turn) before the connection goes.
    assert!(poll_until(Duration::from_secs(20), || turns() == 5));
    assert!(w.sshd.drop_connections() > 0);
    let t = router.wait_for(&t.tell_id, WAIT).await.unwrap();
    assert_eq!(t.state, TellState::Failed, "{t:?}");
    let error = t.error.clone().unwrap_or_default();
    assert!(
        error.contains("lost the connection to sbtest"),
        "the error names the host: {error}"
    );
    // Nothing of that agent is left there.
    assert!(
        poll_until(Duration::from_secs(10), || group_members(pid).is_empty()),
        "the cut-off remote agent's group is gone"
    );
    let t = router.tell("a", "b", "history", WAIT).await.unwrap();
    assert_eq!(t.state, TellState::Answered, "{t:?}");
    assert!(!masters(&w).is_empty(), "a control connection is up");
    // Earlier user messages of the conversation: the agent resumed it.
    let n: usize = t
        .answer
        .as_deref()
        .and_then(|a| a.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("history answer: {t:?}"));
    assert_eq!(n, 5, "resumed with the earlier messages: {t:?}");
    router.shutdown().await;
    assert!(
        poll_until(Duration::from_secs(10), || w
            .remote_processes(test_agent::path())
            .is_empty()),
        "{:?}",
        w.sshd.session_processes()
    );
    // Shutdown closed the control connection too.
    assert!(
        poll_until(Duration::from_secs(10), || masters(&w).is_empty()),
        "the control connection outlived the shutdown"
    );
}

/// `serve` runs a remote team's agent for the CLI's tells; stopping the server (SIGTERM) stops
/// the agent there and closes the control connection.
#[test]
fn serve_runs_the_remote_agent_and_stops_it_there_at_shutdown() {
    let w = World::start();
    let project = w.remote_folder("proj");
    let home = w.remote_folder("home");
    w.write_config(
        &project,
        test_agent::path(),
        &[("HOME", home.display().to_string())],
        "",
    );
    let mut serve = w
        .command(&["serve", "--http", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let announced = w.db_path().with_file_name("server.json");
    assert!(
        poll_until(Duration::from_secs(20), || announced.exists()),
        "the server started"
    );
    let out = w.run(&["--json", "tell", "a", "b", "through the server"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tell: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(tell["answer"], "echo: through the server", "{tell}");
    // The server's agent stays up there, idle, recorded with the session.
    let (_, pid) = w.recorded().expect("the server's remote agent is recorded");
    assert!(!group_members(pid).is_empty());
    assert!(!masters(&w).is_empty());
    // With its tools: the server's socket and the agent's credential file there.
    let session = tell["session_id"].as_str().unwrap().to_string();
    let ends = mcp_files(&session);
    let named = |end: &str| {
        ends.iter()
            .filter(|f| f.extension() == Some(end.as_ref()))
            .count()
    };
    assert!(named("sock") == 1 && named("token") == 1, "{ends:?}");
    // SAFETY: kill(2).
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let mut status = None;
    let ended = poll_until(Duration::from_secs(30), || {
        status = serve.try_wait().unwrap();
        status.is_some()
    });
    if !ended {
        let _ = serve.kill();
        let _ = serve.wait();
    }
    assert!(ended, "serve stopped on SIGTERM");
    assert!(group_members(pid).is_empty(), "the agent there was stopped");
    assert_eq!(w.recorded(), None);
    assert!(
        ends.iter().all(|f| !f.exists()) && mcp_files(&session).is_empty(),
        "the agent's socket and credential went with it: {ends:?}"
    );
    assert!(
        poll_until(Duration::from_secs(10), || masters(&w).is_empty()),
        "the control connection was closed"
    );
}

/// An idle remote agent is stopped there when its idle timeout passes, like a local one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_remote_agent_is_stopped_there() {
    let w = World::start();
    let project = w.remote_folder("proj");
    let home = w.remote_folder("home");
    w.write_config(
        &project,
        test_agent::path(),
        &[("HOME", home.display().to_string())],
        "idle_timeout = \"1s\"",
    );
    let router = w.router();
    let t = router.tell("a", "b", "hello", WAIT).await.unwrap();
    assert_eq!(t.answer.as_deref(), Some("echo: hello"), "{t:?}");
    let (_, pid) = w.recorded().expect("recorded");
    assert!(
        poll_until(Duration::from_secs(20), || group_members(pid).is_empty()
            && w.recorded().is_none()),
        "the idle agent was stopped there and forgotten"
    );
    assert!(router.live_agents().is_empty());
    router.shutdown().await;
}

/// A process group recorded with the session (an agent whose connection broke before it
/// could be stopped) is stopped on the host before the session's agent starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_recorded_with_a_session_is_stopped_before_its_next_spawn() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let w = World::start();
    let project = w.remote_folder("proj");
    let home = w.remote_folder("home");
    w.write_config(
        &project,
        test_agent::path(),
        &[("HOME", home.display().to_string())],
        "",
    );
    let router = w.router();
    let t = router.tell("a", "b", "first", WAIT).await.unwrap();
    assert_eq!(t.state, TellState::Answered, "{t:?}");
    router.sleep("a", "b").await.unwrap();
    assert_eq!(w.recorded(), None);
    // A group of the remote user left running there, as recorded with the session.
    let (uid, gid) = sshd::remote_user();
    let mut left = Command::new("sleep")
        .arg("300")
        .uid(uid)
        .gid(gid)
        .process_group(0)
        .spawn()
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", left.id())).unwrap();
    let start: u64 = stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let store = SessionStore::open(&w.db_path()).unwrap();
    store
        .set_remote_agent(&t.session_id, Sshd::ALIAS, left.id(), start)
        .unwrap();
    let t = router.tell("a", "b", "second", WAIT).await.unwrap();
    assert_eq!(t.answer.as_deref(), Some("echo: second"), "{t:?}");
    let mut status = None;
    let stopped = poll_until(Duration::from_secs(10), || {
        status = left.try_wait().unwrap();
        status.is_some()
    });
    if !stopped {
        let _ = left.kill();
        let _ = left.wait();
    }
    assert!(stopped, "the recorded group was stopped before the spawn");
    assert_eq!(status.and_then(|s| s.signal()), Some(libc::SIGTERM));
    // The new agent is what is recorded now.
    let (_, pid) = w.recorded().expect("the new agent recorded");
    assert_ne!(pid, left.id());
    router.shutdown().await;
}

/// kill -9 of a Switchboard running a remote agent: its local ssh dies with it, and the
/// next Switchboard to start stops what it left on the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_switchboard_leaves_no_orphan_once_the_next_one_starts() {
    let w = World::start();
    let project = w.remote_folder("proj");
    let home = w.remote_folder("home");
    w.write_config(
        &project,
        test_agent::path(),
        &[("HOME", home.display().to_string())],
        "",
    );
    let mut cli = w
        .command(&["tell", "a", "b", "hang"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut recorded = None;
    assert!(
        poll_until(Duration::from_secs(30), || {
            recorded = w.recorded();
            recorded.is_some()
        }),
        "the remote agent started"
    );
    let (_, pid) = recorded.unwrap();
    // The turn is running (the agent printed its init line).
    assert!(poll_until(Duration::from_secs(20), || !group_members(pid).is_empty()));
    let local_ssh: Vec<u32> = procs::live_pids(|p| {
        std::fs::read_to_string(format!("/proc/{p}/status")).is_ok_and(|s| {
            s.lines()
                .any(|l| l == format!("PPid:\t{}", cli.id()).as_str())
        })
    });
    assert!(!local_ssh.is_empty(), "the CLI runs ssh");
    // SAFETY: kill(2).
    unsafe { libc::kill(cli.id() as i32, libc::SIGKILL) };
    cli.wait().unwrap();
    assert!(
        poll_until(Duration::from_secs(10), || local_ssh
            .iter()
            .all(|p| group_members(*p).is_empty())),
        "an ssh client outlived its Switchboard"
    );
    // The agent busy in its turn is still there (its input ended, its turn did not) ...
    assert!(!group_members(pid).is_empty());
    // ... until the next Switchboard starts: it finds it by its marker and stops it, without
    // a tell for that pair.
    let router = w.router();
    assert!(
        poll_until(Duration::from_secs(30), || group_members(pid).is_empty()),
        "the next start stopped the agent left on the host"
    );
    router.shutdown().await;
    assert!(
        w.remote_processes(test_agent::path()).is_empty(),
        "{:?}",
        w.sshd.session_processes()
    );
}

/// A remote team whose folder and env hold shell syntax: the agent runs in exactly that
/// folder with exactly that value, and nothing is executed on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_folder_and_env_of_a_remote_team_arrive_exactly() {
    let w = World::start();
    let canary = w.sshd.remote_dir.join("canary");
    let c = canary.display();
    let project = w.remote_folder(&format!("it's $(touch {c}) `touch {c}`; \"q\" & x"));
    let home = w.remote_folder("home");
    // A file name cannot hold the canary's path: a relative one, in the home or the project.
    let pidfile = format!(
        "{}/pid $(touch pwned); 'q' \"d\" `touch pwned`",
        home.display()
    );
    w.write_config(
        &project,
        test_agent::path(),
        &[
            ("HOME", home.display().to_string()),
            ("TEST_AGENT_PIDFILE", pidfile.clone()),
            ("HOSTILE", format!("$(touch {c})\n; touch {c} | x '\\'")),
        ],
        "",
    );
    let router = w.router();
    let t = router.tell("a", "b", "hello", WAIT).await.unwrap();
    assert_eq!(t.answer.as_deref(), Some("echo: hello"), "{t:?}");
    let t = router.tell("a", "b", "env", WAIT).await.unwrap();
    assert!(
        t.answer.as_deref().unwrap_or("").contains("HOSTILE"),
        "{t:?}"
    );
    // The value of TEST_AGENT_PIDFILE arrived byte for byte: the agent wrote that very file.
    assert!(
        Path::new(&pidfile).is_file(),
        "{pidfile}: {t:?} {:?}",
        std::fs::read_dir(&home)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    // The agent ran in the hostile folder (its transcript is named after it).
    let transcripts = home.join(".claude/projects");
    let names: Vec<String> = std::fs::read_dir(&transcripts)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.contains("it-s")), "{names:?}");
    router.shutdown().await;
    assert!(!canary.exists(), "nothing was injected");
    assert!(!home.join("pwned").exists() && !project.join("pwned").exists());
}

/// A host key that changed: refused, the tell fails naming the host and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_host_key_is_refused_and_the_tell_fails_with_the_fix() {
    let w = World::start();
    let project = w.remote_folder("proj");
    w.write_config(&project, test_agent::path(), &[], "");
    w.sshd.change_known_host_key();
    let router = w.router();
    let t = router.tell("a", "b", "hello", WAIT).await.unwrap();
    assert_eq!(t.state, TellState::Failed, "{t:?}");
    let error = t.error.unwrap_or_default();
    assert!(
        error.contains("host key of sbtest has CHANGED") && error.contains("ssh-keygen -R sbtest"),
        "{error}"
    );
    assert_eq!(w.sshd.logins(), 0, "no login to a host with a changed key");
    router.shutdown().await;
}

/// `config check --remote` and `doctor` connect and name every problem of a bad remote team
/// at once: a folder that is not there, an agent that is not there.
#[test]
fn doctor_and_config_check_remote_report_every_problem_of_a_remote_team() {
    let w = World::start();
    let missing = w.sshd.remote_dir.join("no-such-folder");
    w.write_config_with(
        &missing,
        "/opt/no-such-agent/claude",
        &[],
        "",
        "/opt/no-such-switchboard/switchboard",
        "",
    );
    // Without --remote, nothing is looked at there: the file is valid.
    let out = w.run(&["config", "check"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = w.run(&["config", "check", "--remote"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("3 problems")
            && err.contains("teams.b: sbtest: the team folder")
            && err.contains("does not exist there")
            && err.contains("no agent program \"/opt/no-such-agent/claude\"")
            && err.contains("no \"/opt/no-such-switchboard/switchboard\" there"),
        "{err}"
    );

    let out = w.run(&["--json", "doctor"]);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let failed: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["team"] == "b" && c["outcome"] == "fail")
        .collect();
    assert_eq!(failed.len(), 3, "{report:#}");
    assert!(failed[0]["detail"]
        .as_str()
        .unwrap()
        .contains("does not exist there"));
    assert!(failed[1]["detail"]
        .as_str()
        .unwrap()
        .contains("no agent program"));
    // No bridge there: its agents would get no Switchboard tools.
    assert!(failed[2]["detail"].as_str().unwrap().contains("mcp-bridge"));
    assert_eq!(report["ok"], false);

    // A good remote team: both say so.
    let project = w.remote_folder("proj");
    w.write_config(&project, &pinned_claude::binary(), &[], "");
    let out = w.run(&["config", "check", "--remote"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = w.run(&["--json", "doctor"]);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let remote: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["team"] == "b")
        .collect();
    assert_eq!(remote.len(), 1, "{report:#}");
    assert_eq!(remote[0]["outcome"], "ok");
    let detail = remote[0]["detail"].as_str().unwrap();
    assert!(detail.contains(pinned_claude::CLAUDE_VERSION), "{detail}");
    assert!(
        detail.contains(concat!("switchboard ", env!("CARGO_PKG_VERSION"))),
        "{detail}"
    );
}

/// Migration 10 (the remote agent of a session) on a database of the schema before it, with
/// sessions and tells in it: everything kept, and a remote agent can be recorded and goes with
/// its session.
#[test]
fn migration_10_keeps_a_version_9_database_and_records_remote_agents() {
    use rusqlite::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v9.db");
    {
        let mut c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
             applied_at INTEGER NOT NULL)",
        )
        .unwrap();
        let tx = c.transaction().unwrap();
        for (version, name, sql) in switchboard::store::MIGRATIONS.iter().filter(|m| m.0 <= 9) {
            tx.execute_batch(sql).unwrap();
            tx.execute(
                "INSERT INTO schema_migrations VALUES (?1, ?2, 1)",
                rusqlite::params![version, name],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let dump = |c: &Connection, sql: &str| -> Vec<String> {
        c.prepare(sql)
            .unwrap()
            .query_map([], |r| {
                let n = r.as_ref().column_count();
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let ids: Vec<String> = (0..3).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let (before, live_before) = {
        let c = Connection::open(&path).unwrap();
        for (i, (from, to)) in [("a", "b"), ("b", "a"), ("a", "c")].iter().enumerate() {
            c.execute(
                "INSERT INTO sessions (from_team, to_team, session_id, created_at, last_used_at, \
                 message_count, input_tokens, cost_usd, agent_session_id) \
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5, 100, 0.25, ?6)",
                rusqlite::params![
                    from,
                    to,
                    ids[i],
                    1_700_000_000_000_i64 + i as i64,
                    i as i64 * 3,
                    (i == 2).then_some("thread-1")
                ],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO session_live (session, process_state, owner_pid, owner_started_at, \
             agent_pid, agent_started_at) VALUES (1, 'idle', 12, 34, 56, 78)",
            [],
        )
        .unwrap();
        (
            dump(&c, "SELECT * FROM sessions ORDER BY id"),
            dump(&c, "SELECT * FROM session_live ORDER BY session"),
        )
    };
    assert_eq!(before.len(), 3);

    let store = SessionStore::open(&path).expect("open a version 9 database");
    assert_eq!(
        store.schema_version().unwrap(),
        switchboard::store::SCHEMA_VERSION
    );
    let c = Connection::open(&path).unwrap();
    assert_eq!(
        dump(&c, "SELECT * FROM sessions ORDER BY id"),
        before,
        "every session keeps every value"
    );
    assert_eq!(
        dump(&c, "SELECT * FROM session_live ORDER BY session"),
        live_before
    );
    store
        .set_remote_agent(&ids[0], "deploy@gpu-box", 4242, 987_654)
        .unwrap();
    let r = store.remote_agent(&ids[0]).unwrap().expect("recorded");
    assert_eq!(
        (r.host.as_str(), r.pid, r.start),
        ("deploy@gpu-box", 4242, 987_654)
    );
    assert_eq!(store.remote_agent(&ids[1]).unwrap(), None);
    // It goes with its session.
    store.delete(&ids[0]).unwrap();
    let left: i64 = c
        .query_row("SELECT COUNT(*) FROM session_remote", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

/// Every process's command line with `needle` in it (this machine is also the "remote host").
fn command_lines_holding(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

/// A remote team's `env` values (an API key, a hostile secret) reach its agent exactly, and are
/// in no process's command line on either machine while the agent runs: not in the local
/// `ssh`'s (readable by every local user in /proc), not in the remote shell's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_env_values_of_a_remote_team_are_on_no_command_line() {
    let w = World::start();
    let project = w.remote_folder("proj");
    let home = w.remote_folder("home");
    let key = format!("sk-ant-{}", uuid::Uuid::new_v4().simple());
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let hostile = format!(
        "  {marker} it's \"q\" $(touch pwned) `id`;\n\\n \\c %s %b \\0101 \\\\ \t\r x=y \
         'end\n\nlast é🦀"
    );
    w.write_config(
        &project,
        test_agent::path(),
        &[
            ("HOME", home.display().to_string()),
            ("ANTHROPIC_API_KEY", key.clone()),
            ("SECRET_HOSTILE", hostile.clone()),
            ("EMPTY", String::new()),
        ],
        "",
    );
    let router = w.router();
    let t = router
        .tell("a", "b", "getenv:ANTHROPIC_API_KEY", WAIT)
        .await
        .unwrap();
    assert_eq!(t.answer.as_deref(), Some(key.as_str()), "{t:?}");
    // The agent runs (idle) meanwhile: nothing of the secrets is on a command line.
    assert!(!w.remote_processes(test_agent::path()).is_empty());
    let exposed = command_lines_holding(&key);
    assert!(exposed.is_empty(), "the API key is in argv: {exposed:?}");
    let exposed = command_lines_holding(&marker);
    assert!(exposed.is_empty(), "the secret is in argv: {exposed:?}");
    let t = router
        .tell("a", "b", "getenv:SECRET_HOSTILE", WAIT)
        .await
        .unwrap();
    assert_eq!(t.answer.as_deref(), Some(hostile.as_str()), "{t:?}");
    let t = router.tell("a", "b", "getenv:EMPTY", WAIT).await.unwrap();
    assert_eq!(t.answer.as_deref(), Some(""), "{t:?}");
    // This router serves no MCP endpoint: the agent got no MCP config, and nothing was
    // forwarded for it (as for a local agent).
    let store = SessionStore::open(&w.db_path()).unwrap();
    let launch = store
        .get_by_session_id(&t.session_id)
        .unwrap()
        .unwrap()
        .launch_command
        .unwrap_or_default();
    assert!(!launch.contains("--mcp-config"), "{launch}");
    let forwarded = mcp_files(&t.session_id);
    assert!(forwarded.is_empty(), "{forwarded:?}");
    // The agent's own input still starts after the variables: it answers as before.
    let t = router.tell("a", "b", "hello", WAIT).await.unwrap();
    assert_eq!(t.answer.as_deref(), Some("echo: hello"), "{t:?}");
    router.shutdown().await;
    assert!(!home.join("pwned").exists() && !project.join("pwned").exists());
}

/// Every tool result Claude Code sent back in a request's conversation, oldest first.
fn tool_results(rec: &fake_api::Recorded) -> Vec<String> {
    rec.messages()
        .iter()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| match &b["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        })
        .collect()
}

/// A chain local -> remote -> local through `switchboard tell` as a user runs it: team `a`'s
/// tell reaches the remote team `b` (the real Claude Code on the remote host), whose agent
/// calls `team_tell` to the local team `c` through the bridge; `c` (the real Claude Code here)
/// answers and the answer flows back to `a`. The chain holds across the remote hop: `c`'s
/// tell onwards to `d` is one hop too many (`max_hops = 2`), and `b`'s tell back to `a`, who
/// is waiting, is refused as a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_local_remote_local_keeps_its_hop_limit_and_loop_refusal() {
    let w = World::start();
    let api = FakeApi::start().await;
    api.respond_with(|rec| {
        let results = tool_results(rec);
        Some(if rec.has_text("user", "PING-B") {
            // b, on the remote host.
            match results.as_slice() {
                [] => Answer::text("Asking c.").with_tool_use(
                    "toolu_b1",
                    "mcp__switchboard__team_tell",
                    json!({"to": "c", "message": "PING-C from b"}),
                ),
                [_] => Answer::text("Telling a back.").with_tool_use(
                    "toolu_b2",
                    "mcp__switchboard__team_tell",
                    json!({"to": "a", "message": "back to a"}),
                ),
                [c, back, ..] => Answer::text(format!("B-DONE c said: {c} || a: {back}")),
            }
        } else if rec.has_text("user", "PING-C") {
            // c, here.
            match results.as_slice() {
                [] => Answer::text("Asking d.").with_tool_use(
                    "toolu_c1",
                    "mcp__switchboard__team_tell",
                    json!({"to": "d", "message": "PING-D from c"}),
                ),
                [d, ..] => Answer::text(format!("C-ANSWER (d: {d})")),
            }
        } else {
            Answer::text("ok")
        })
    });
    let project = w.remote_folder("proj");
    let home = w.remote_folder("home");
    let (c_dir, c_home) = (w.local.path().join("c"), w.local.path().join("chome"));
    std::fs::create_dir_all(&c_dir).unwrap();
    std::fs::create_dir_all(&c_home).unwrap();
    let c_env: Vec<String> = claude_env(&c_home, &api)
        .into_iter()
        .map(|(k, v)| format!("{k} = {}", Value::from(v)))
        .collect();
    let more = format!(
        "[teams.c]\npath = {c}\nagent_path = {claude}\nenv = {{ {env} }}\n\
         [teams.d]\npath = {c}\nagent_path = {agent}\n",
        c = Value::from(c_dir.display().to_string()),
        claude = Value::from(pinned_claude::binary()),
        env = c_env.join(", "),
        agent = Value::from(test_agent::path()),
    );
    w.write_config_with(
        &project,
        &pinned_claude::binary(),
        &claude_env(&home, &api),
        "max_hops = 2",
        env!("CARGO_BIN_EXE_switchboard"),
        &more,
    );

    let out = w.run(&["--json", "tell", "a", "b", "PING-B: ask c, then a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tell: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let answer = tell["answer"].as_str().unwrap_or("");
    // c's answer came back through b to a.
    assert!(
        answer.starts_with("B-DONE c said: ") && answer.contains("C-ANSWER (d: "),
        "{tell:#}"
    );
    // c's tell onwards to d: one hop too many; b's tell back to a: a loop.
    let (c_part, a_part) = answer.split_once(" || a: ").unwrap();
    assert!(
        c_part.contains("a -> b -> c -> d is 3 hops, more than settings.max_hops = 2"),
        "{c_part}"
    );
    assert!(
        a_part.contains("a -> b -> a is a loop: a is waiting for an answer"),
        "{a_part}"
    );
    // Stored as a chain: b -> c answered under a -> b; nothing went to d or back to a.
    let store = SessionStore::open(&w.db_path()).unwrap();
    let to_c = store.recent_tells("b", "c", 10).unwrap();
    assert_eq!(to_c.len(), 1, "{to_c:?}");
    assert_eq!(
        to_c[0].parent_tell_id.as_deref(),
        tell["tell_id"].as_str(),
        "{to_c:?}"
    );
    assert_eq!(to_c[0].state, TellState::Answered);
    assert!(to_c[0]
        .answer
        .as_deref()
        .unwrap_or("")
        .starts_with("C-ANSWER"));
    assert!(store.recent_tells("c", "d", 10).unwrap().is_empty());
    assert!(store.recent_tells("b", "a", 10).unwrap().is_empty());
    // The remote agent, its bridge and its forwarded socket are gone with the CLI.
    assert!(w.remote_processes("mcp-bridge").is_empty());
    assert!(w.remote_processes("claude").is_empty());
}

/// A remote agent that cannot start fails the tell with the reason, and its tools' socket and
/// credential file on the host (set up before the spawn) are taken down with it: a folder
/// that is not there (the spawn fails), an agent that is not there (it exits before it
/// starts).
#[test]
fn a_remote_agent_that_cannot_start_leaves_no_socket_or_credential_there() {
    let w = World::start();
    let project = w.remote_folder("proj");
    let cases = [
        (
            w.sshd.remote_dir.join("no-such-folder"),
            pinned_claude::binary(),
            "cannot enter the team folder",
        ),
        (
            project,
            "/opt/no-such-agent/claude".to_string(),
            "set `agent_path` of the team to the agent's path on sbtest",
        ),
    ];
    for (folder, agent, why) in cases {
        w.write_config(&folder, &agent, &[], "");
        let out = w.run(&["tell", "a", "b", "hello"]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(why), "{}", stderr(&out));
        let store = SessionStore::open(&w.db_path()).unwrap();
        let session_id = store.get_by_pair("a", "b").unwrap().unwrap().session_id;
        let left = mcp_files(&session_id);
        assert!(left.is_empty(), "{why}: left on the host: {left:?}");
        assert!(w.remote_processes("mcp-bridge").is_empty());
    }
}
