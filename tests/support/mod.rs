//! Helpers shared by the integration tests: a temporary project with a teams file, running the
//! `switchboard` binary in it, opening the same database in-process, and redacting output
//! (session ids, times, temp paths, pids) so it can be snapshot-tested.
//!
//! Every [`TestEnv`] is its own temp dir with its own `HOME`, `XDG_DATA_HOME` and
//! `XDG_CONFIG_HOME`, so tests never see each other's (or the user's) files.

#![allow(dead_code)]

pub mod browser;
pub mod lines;
pub mod other_user;
#[path = "../common/procs.rs"]
pub mod procs;
pub mod serve;
pub mod sse;
#[path = "../common/test_agent.rs"]
mod test_agent;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard::config::TeamsConfig;
use switchboard::store::ProcessState;
use switchboard::SessionManager;
use tempfile::TempDir;

/// The teams of the default teams file, each with a folder `projects/<name>`.
pub const TEAMS: [&str; 3] = ["frontend", "backend", "docs"];

/// A temporary project: `projects/{frontend,backend,docs}`, `teams.toml` naming them, the
/// database at `data/switchboard.db`, and `home/`, `xdg-data/`, `xdg-config/` for the
/// environment of the commands it runs.
pub struct TestEnv {
    dir: TempDir,
    /// With the scripted agent: the value of `TEST_AGENT_MARKER` in every team's `env`, which
    /// finds this test's agent processes in `/proc`.
    marker: Option<String>,
}

impl TestEnv {
    /// The default project: three teams, `[database] path = "data/switchboard.db"`.
    pub fn new() -> Self {
        Self::with_extra_config("")
    }

    /// The default project with `extra` TOML (for example a `[settings]` table; not
    /// `[database]`, which the default file has) put before `[database]` and the teams.
    pub fn with_extra_config(extra: &str) -> Self {
        Self::build(extra, None)
    }

    /// The default project where every team's agent is the scripted test agent
    /// (`switchboard-test-agent`): each team gets `agent_path` and
    /// `env = { HOME = <home>, TEST_AGENT_MARKER = <uuid> }`.
    pub fn with_scripted_agent() -> Self {
        Self::scripted_with_config("")
    }

    /// [`TestEnv::with_scripted_agent`] with `extra` TOML (for example `[settings]`).
    pub fn scripted_with_config(extra: &str) -> Self {
        Self::build(extra, Some(uuid::Uuid::new_v4().to_string()))
    }

    fn build(extra: &str, marker: Option<String>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("switchboard-test-")
            .tempdir()
            .expect("create temp dir");
        let env = Self { dir, marker };
        for team in TEAMS {
            std::fs::create_dir_all(env.project(team)).expect("create project folder");
        }
        for d in [env.home(), env.xdg_data_home(), env.xdg_config_home()] {
            std::fs::create_dir_all(d).expect("create env folder");
        }
        env.write_config(&env.teams_toml(extra));
        env
    }

    /// The temp dir (also the current directory of the commands).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The project folder of a team of the default config.
    pub fn project(&self, team: &str) -> PathBuf {
        self.path().join("projects").join(team)
    }

    /// `$HOME` of the commands.
    pub fn home(&self) -> PathBuf {
        self.path().join("home")
    }

    /// `$XDG_DATA_HOME` of the commands.
    pub fn xdg_data_home(&self) -> PathBuf {
        self.path().join("xdg-data")
    }

    /// `$XDG_CONFIG_HOME` of the commands.
    pub fn xdg_config_home(&self) -> PathBuf {
        self.path().join("xdg-config")
    }

    /// The teams file (`<tmp>/teams.toml`).
    pub fn config_path(&self) -> PathBuf {
        self.path().join("teams.toml")
    }

    /// The database file the default config names.
    pub fn db_path(&self) -> PathBuf {
        self.path().join("data").join("switchboard.db")
    }

    /// The text of the default teams file, with `extra` TOML before the teams.
    pub fn teams_toml(&self, extra: &str) -> String {
        let mut text = String::new();
        text.push_str(extra);
        text.push_str("\n[database]\npath = \"data/switchboard.db\"\n");
        for team in TEAMS {
            text.push_str(&format!(
                "\n[teams.{team}]\npath = {}\n",
                toml_string(&self.project(team).display().to_string())
            ));
            if let Some(marker) = &self.marker {
                text.push_str(&format!(
                    "agent_path = {}\nenv = {{ HOME = {}, TEST_AGENT_MARKER = {} }}\n",
                    toml_string(agent_bin()),
                    toml_string(&self.home().display().to_string()),
                    toml_string(marker),
                ));
            }
        }
        text
    }

    /// Replaces the teams file.
    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).expect("write teams.toml");
    }

    /// The binary, with this env's `HOME`/XDG dirs, `SWITCHBOARD_CONFIG` and `RUST_LOG` removed,
    /// the temp dir as current dir and stdin null. No arguments yet (no `--config` either).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(bin());
        self.configure(&mut cmd);
        cmd
    }

    /// Gives any command this env's environment: `HOME`/XDG dirs, no `SWITCHBOARD_CONFIG` or
    /// `RUST_LOG`, the temp dir as current dir, stdin null.
    pub fn configure(&self, cmd: &mut Command) {
        cmd.current_dir(self.path())
            .env("HOME", self.home())
            .env("XDG_DATA_HOME", self.xdg_data_home())
            .env("XDG_CONFIG_HOME", self.xdg_config_home())
            .env_remove("SWITCHBOARD_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
    }

    /// Runs the binary with exactly `args` (no `--config`: for discovery tests).
    pub fn run_raw(&self, args: &[&str]) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        finish(cmd)
    }

    /// Runs the binary with `--config <teams.toml>` and `args`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command();
        cmd.arg("--config").arg(self.config_path()).args(args);
        finish(cmd)
    }

    /// Starts the binary with `--config <teams.toml>` and `args`, stdout and stderr piped; use
    /// `wait_with_output`.
    pub fn spawn(&self, args: &[&str]) -> Child {
        let mut cmd = self.command();
        cmd.arg("--config").arg(self.config_path()).args(args);
        spawn_piped(cmd)
    }

    /// Runs `args` (adding `--json` unless `--json` or `--format` is there), asserts exit 0
    /// and returns stdout parsed as JSON.
    pub fn run_json(&self, args: &[&str]) -> Value {
        let mut all: Vec<&str> = args.to_vec();
        if !args
            .iter()
            .any(|a| *a == "--json" || a.starts_with("--format"))
        {
            all.push("--json");
        }
        let out = self.run(&all);
        assert_exit(&out, 0, &all);
        parse_json(&out)
    }

    /// Runs `args`, asserts exit 0 and returns stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_exit(&out, 0, args);
        stdout(&out)
    }

    /// Loads the teams file in-process, as the binary does.
    pub fn load_config(&self) -> TeamsConfig {
        TeamsConfig::load(&self.config_path()).expect("load teams.toml in-process")
    }

    /// A [`SessionManager`] over the same database as the binary, to seed or inspect state.
    pub fn manager(&self) -> SessionManager {
        SessionManager::open(Arc::new(self.load_config())).expect("open the database in-process")
    }

    /// Moves a session's `created_at` and `last_used_at` into the past. The library only ever
    /// stamps "now", so this writes the two columns directly; nothing else is touched.
    pub fn backdate(&self, session_id: &str, created_ago: Duration, used_ago: Duration) {
        let now = switchboard::util::now_ms();
        let ms = |d: Duration| i64::try_from(d.as_millis()).expect("duration fits in i64");
        let conn = rusqlite::Connection::open(self.db_path()).expect("open the database file");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("set busy timeout");
        let n = conn
            .execute(
                "UPDATE sessions SET created_at = ?2, last_used_at = ?3 WHERE session_id = ?1",
                rusqlite::params![session_id, now - ms(created_ago), now - ms(used_ago)],
            )
            .expect("backdate session");
        assert_eq!(n, 1, "no session {session_id} to backdate");
        // A use not folded into the row yet (migration 0012) would be the later one.
        conn.execute(
            "UPDATE session_pending SET last_used_at = NULL \
             WHERE session = (SELECT id FROM sessions WHERE session_id = ?1)",
            [session_id],
        )
        .expect("backdate the pending use");
    }

    /// Where Claude Code keeps a session's transcript for `team`, under this env's `HOME`:
    /// `<home>/.claude/projects/<project path, every non-alphanumeric char as '-'>/<id>.jsonl`.
    pub fn transcript_path(&self, team: &str, session_id: &str) -> PathBuf {
        self.home()
            .join(".claude")
            .join("projects")
            .join(escape_path(&self.project(team).display().to_string()))
            .join(format!("{session_id}.jsonl"))
    }

    /// The marker of this env's scripted agents (panics without the scripted agent).
    pub fn agent_marker(&self) -> &str {
        self.marker
            .as_deref()
            .expect("a TestEnv made with_scripted_agent")
    }

    /// Pids of this test's live (not zombie) scripted agent processes, found in `/proc` by
    /// `TEST_AGENT_MARKER=<marker>` in their environment.
    pub fn agent_pids(&self) -> Vec<u32> {
        procs::pids_with_env("TEST_AGENT_MARKER", self.agent_marker())
    }

    /// Polls `/proc` (bounded: 10 s) until no scripted agent of this test is left; panics
    /// naming the orphans otherwise.
    pub fn assert_no_agents(&self) {
        let mut left = Vec::new();
        let gone = poll_until(Duration::from_secs(10), || {
            left = self.agent_pids();
            left.is_empty()
        });
        assert!(gone, "orphan agent processes: {left:?}");
    }

    /// Pids of live (not zombie) `switchboard` processes started with this env's teams file
    /// (`/proc/<pid>/cmdline` is the binary under test and names `teams.toml` of this env).
    pub fn switchboard_pids(&self) -> Vec<u32> {
        let config = self.config_path().display().to_string();
        procs::live_pids(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
                args.first().is_some_and(|a| *a == bin().as_bytes())
                    && args.contains(&config.as_bytes())
            })
        })
    }

    /// The session of a pair, read from the database file directly (no cache): for polling
    /// what another process does. `None` when there is no database or no such session yet.
    pub fn session(&self, from: &str, to: &str) -> Option<switchboard::store::Session> {
        if !self.db_path().exists() {
            return None;
        }
        let store = switchboard::store::SessionStore::open(&self.db_path()).ok()?;
        store.get_by_pair(from, to).ok().flatten()
    }

    /// The spellings of the temp dir that may show up in output, longest first.
    fn tmp_prefixes(&self) -> Vec<String> {
        let mut prefixes = vec![self.path().display().to_string()];
        if let Ok(real) = self.path().canonicalize() {
            prefixes.push(real.display().to_string());
        }
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
        prefixes.dedup();
        prefixes
    }

    /// [`redact_text`], plus the temp dir replaced by `[tmp]`, and by `[escaped-tmp]` where it
    /// appears escaped as in a Claude Code transcript folder (`-tmp-switchboard-test-XXXX`).
    pub fn redact_text(&self, text: &str) -> String {
        let mut out = text.replace(agent_bin(), "[agent]");
        for prefix in self.tmp_prefixes() {
            out = out.replace(&prefix, "[tmp]");
            out = out.replace(&escape_path(&prefix), "[escaped-tmp]");
        }
        redact_text(&out)
    }

    /// [`redact`], plus the temp dir replaced by `[tmp]` in every string.
    pub fn redact(&self, value: Value) -> Value {
        redact_with(value, &|s| self.redact_text(s))
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// The `switchboard` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_switchboard")
}

/// The scripted agent speaking Claude Code's protocol (`tests/bin/scripted_agent.rs`, built as
/// an example target).
pub fn agent_bin() -> &'static str {
    test_agent::path()
}

/// Calls `cond` until it is true or `within` has passed (a short pause between calls);
/// returns whether it became true.
pub fn poll_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

/// Waits (bounded) for a child to exit; `None` if it is still running at the deadline.
pub fn wait_timeout(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let mut status = None;
    poll_until(within, || {
        status = child.try_wait().expect("poll the child");
        status.is_some()
    });
    status
}

/// Sends `signal` to `pid`.
pub fn send_signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits in pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// A path as Claude Code names its project folder: every non-alphanumeric character as `-`.
pub fn escape_path(path: &str) -> String {
    path.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Starts `cmd` with stdout and stderr piped.
pub fn spawn_piped(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// Runs `cmd` to the end and collects its output.
pub fn finish(cmd: Command) -> Output {
    spawn_piped(cmd)
        .wait_with_output()
        .expect("wait for switchboard")
}

/// Makes a session look live and run by this (test) process: takes its owner lease and sets
/// the process state. The binary's start-up reset leaves it alone, since this process is alive.
pub fn hold_session(m: &SessionManager, session_id: &str, state: ProcessState) {
    m.acquire_lease(session_id).expect("take the owner lease");
    m.update_process_state(session_id, state)
        .expect("set the process state");
}

/// A TOML basic string holding `s`.
pub fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("quote string")
}

/// Stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The exit code (-1 when killed by a signal).
pub fn exit_code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Asserts the exit code, showing the command, stdout and stderr when it differs.
pub fn assert_exit(out: &Output, code: i32, args: &[&str]) {
    assert_eq!(
        exit_code(out),
        code,
        "switchboard {}\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        stdout(out),
        stderr(out)
    );
}

/// Stdout parsed as JSON (panics with the text when it is not JSON).
pub fn parse_json(out: &Output) -> Value {
    let text = stdout(out);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{text}\n--- stderr\n{}",
            stderr(out)
        )
    })
}

/// Redacts a JSON value for snapshots: UUIDs → `[uuid]`, RFC 3339 times → `[time]` (also inside
/// longer strings), and the number of any key ending in `pid` → `[pid]`.
pub fn redact(value: Value) -> Value {
    redact_with(value, &redact_text)
}

fn redact_with(value: Value, text: &dyn Fn(&str) -> String) -> Value {
    match value {
        Value::String(s) => Value::String(text(&s)),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| redact_with(v, text)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if k.ends_with("pid") && v.is_number() {
                        Value::String("[pid]".to_string())
                    } else {
                        redact_with(v, text)
                    };
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

/// Replaces UUIDs with `[uuid]` and RFC 3339 times (`2026-11-21T22:49:32.123Z`, fraction and
/// `Z`/offset optional) with `[time]`.
pub fn redact_text(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if let Some(n) = match_uuid(&chars[i..]) {
            out.push_str("[uuid]");
            i += n;
        } else if let Some(n) = match_time(&chars[i..]) {
            out.push_str("[time]");
            i += n;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Whether `s` matches `pattern` where `x` is a hex digit, `d` a decimal digit, anything else
/// itself.
fn matches_pattern(s: &[char], pattern: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    s.len() >= pattern.len()
        && pattern.iter().zip(s).all(|(p, c)| match p {
            'x' => c.is_ascii_hexdigit(),
            'd' => c.is_ascii_digit(),
            other => other == c,
        })
}

fn match_uuid(s: &[char]) -> Option<usize> {
    const UUID: &str = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    matches_pattern(s, UUID).then_some(UUID.len())
}

fn match_time(s: &[char]) -> Option<usize> {
    const TIME: &str = "dddd-dd-ddTdd:dd:dd";
    if !matches_pattern(s, TIME) {
        return None;
    }
    let mut n = TIME.len();
    if s.get(n) == Some(&'.') {
        let digits = s[n + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits > 0 {
            n += 1 + digits;
        }
    }
    if s.get(n) == Some(&'Z') {
        n += 1;
    } else if matches!(s.get(n), Some('+' | '-')) && matches_pattern(&s[n + 1..], "dd:dd") {
        n += 6;
    }
    Some(n)
}

/// The `session_id`s of a JSON array of sessions, in order.
pub fn session_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("expected a JSON array, got {list}"))
        .iter()
        .map(|s| {
            s["session_id"]
                .as_str()
                .unwrap_or_else(|| panic!("no session_id in {s}"))
                .to_string()
        })
        .collect()
}
