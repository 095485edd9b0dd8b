//! Permission routing end to end with the real Claude Code CLI (pinned 2.1.328, launched with
//! `--permission-prompt-tool stdio`) against the stand-in Messages API: the stand-in makes team
//! b's agent answer with a `Write` tool use in b's folder, Claude Code asks Switchboard
//! (`can_use_tool`), and the request is decided by a rule, a person (the CLI, in another
//! process), the calling team (its agent, through `team_approve`), or the timeout. The
//! stand-in sees what the agent was told (the tool result), and the file is there or not.

mod fake_api;
#[path = "support/claude_code.rs"]
mod pinned_claude;
#[path = "common/procs.rs"]
mod procs;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_api::{Answer, FakeApi, Recorded};
use serde_json::{json, Value};
use switchboard::events::EventKind;
use switchboard::router::approvals::{self, ApprovalFilter, Decider, Decision};
use switchboard::router::{Router, Wait};
use switchboard::server::serve::{start, ServeOptions, Transport};
use switchboard::signals::Signals;
use switchboard::store::{Approval, Tell, TellState};
use switchboard::{SessionManager, TeamsConfig};
use tempfile::TempDir;

const MARKER_VAR: &str = "SWITCHBOARD_APPROVALS_TEST_MARKER";
/// Bound on one tell (a hang fails with diagnostics instead of blocking the run).
const TELL_LIMIT: Duration = Duration::from_secs(120);

/// Runs `cmd` to the end and collects its output.
fn finish(mut cmd: std::process::Command) -> std::process::Output {
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run switchboard")
        .wait_with_output()
        .expect("wait for switchboard")
}

/// The texts of the `tool_result` blocks of the last user message of a request.
fn tool_results(rec: &Recorded) -> Vec<String> {
    let text = |c: &Value| match c {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    };
    rec.messages()
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                .map(|b| b.get("content").map(text).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

/// Which team's agent sent a request (its system prompt says "You are team X").
fn agent_of(rec: &Recorded) -> Option<&'static str> {
    let system = rec.json.as_ref()?.get("system")?.to_string();
    ["a", "b"]
        .into_iter()
        .find(|t| system.contains(&format!("You are team {t}")))
}

/// Team b's agent: "WRITE name" makes it write `name` in its folder; a tool result is
/// answered with what it said ("b saw: ...").
fn b_answer(rec: &Recorded, folder: &Path) -> Answer {
    if let Some(result) = tool_results(rec).pop() {
        return Answer::text(format!("b saw: {result}"));
    }
    let prompt = rec.last_user_texts().pop().unwrap_or_default();
    if let Some((_, command)) = prompt.split_once("BASH ") {
        return Answer::text("").with_tool_use(
            &format!("toolu_b_{}", rec.n),
            "Bash",
            json!({"command": command.trim()}),
        );
    }
    match prompt.split_once("WRITE ") {
        Some((_, rest)) => {
            let name = rest.split_whitespace().next().unwrap_or("x.txt");
            Answer::text("").with_tool_use(
                &format!("toolu_b_{}", rec.n),
                "Write",
                json!({"file_path": folder.join(name).display().to_string(), "content": "from b\n"}),
            )
        }
        None => Answer::text("b answers in words"),
    }
}

struct Env {
    dir: TempDir,
    marker: String,
    config: Arc<TeamsConfig>,
    api: FakeApi,
}

impl Env {
    /// Teams `person` (the caller, never spawned), `a` and `b` (real Claude Code); `b_extra`
    /// are TOML lines for team b (its permissions).
    async fn new(b_extra: &str) -> Self {
        Self::with("response_timeout = \"100s\"", b_extra).await
    }

    /// [`Env::new`] with `settings` (TOML lines of `[settings]`).
    async fn with(settings: &str, b_extra: &str) -> Self {
        let claude = pinned_claude::binary();
        let api = FakeApi::start().await;
        let dir = tempfile::Builder::new()
            .prefix("switchboard-approvals-")
            .tempdir()
            .expect("tempdir");
        let marker = uuid::Uuid::new_v4().to_string();
        let root = dir.path().display().to_string();
        let home = format!("{root}/home");
        std::fs::create_dir_all(&home).expect("mkdir home");
        let mut env = vec![
            ("HOME", home.clone()),
            ("ANTHROPIC_BASE_URL", api.url()),
            ("ANTHROPIC_API_KEY", "test-key".to_string()),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_string()),
            ("DISABLE_TELEMETRY", "1".to_string()),
            ("CLAUDE_CODE_MAX_RETRIES", "0".to_string()),
            (MARKER_VAR, marker.clone()),
        ];
        if std::env::var_os("CLAUDE_CONFIG_DIR").is_some() {
            env.push(("CLAUDE_CONFIG_DIR", format!("{home}/.claude")));
        }
        let env: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("{k} = {}", Value::from(v.as_str())))
            .collect();
        let mut text = format!(
            "[settings]\nshutdown_grace = \"2s\"\n{settings}\n\
             [database]\npath = \"{root}/data/sb.db\"\n"
        );
        for t in ["person", "a", "b"] {
            std::fs::create_dir_all(dir.path().join(t)).expect("mkdir");
            text.push_str(&format!(
                "[teams.{t}]\npath = \"{root}/{t}\"\nagent_path = {}\n\
                 append_system_prompt = \"You are team {t}\"\nenv = {{ {} }}\n",
                Value::from(claude.as_str()),
                env.join(", ")
            ));
            if t == "b" {
                text.push_str(b_extra);
                text.push('\n');
            }
        }
        std::fs::write(dir.path().join("teams.toml"), &text).expect("write teams.toml");
        let config = TeamsConfig::parse(&text, None, &|_| None)
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
        let env = Self {
            dir,
            marker,
            config: Arc::new(config),
            api,
        };
        let folder = env.folder("b");
        env.api.respond_with(move |rec| match agent_of(rec)? {
            "b" => Some(b_answer(rec, &folder)),
            _ => None,
        });
        env
    }

    fn folder(&self, team: &str) -> PathBuf {
        self.dir.path().join(team)
    }

    fn router(&self) -> Router {
        let m = SessionManager::open(Arc::clone(&self.config)).expect("open");
        m.initialize().expect("initialize");
        let r = Router::new(Arc::new(m));
        r.recover(None).expect("recover");
        r
    }

    /// `switchboard ARGS` with this test's teams file, as another process.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        finish(self.cli_command(args))
    }

    fn cli_command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.arg("--config")
            .arg(self.dir.path().join("teams.toml"))
            .args(args)
            .env_remove("SWITCHBOARD_CONFIG")
            .env_remove("CLAUDECODE")
            .env("HOME", self.dir.path().join("home"))
            .env(MARKER_VAR, &self.marker)
            .stdin(std::process::Stdio::null());
        cmd
    }

    fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        assert!(
            out.status.success(),
            "switchboard {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// What the stand-in saw and the requests in SQLite, for failure messages.
    fn diagnostics(&self) -> String {
        let mut out = String::from("\n===== stand-in requests\n");
        for rec in self.api.requests() {
            out.push_str(&format!(
                "#{} agent={:?} last={:?} results={:?}\n",
                rec.n,
                agent_of(&rec),
                rec.last_user_texts().pop(),
                tool_results(&rec)
            ));
        }
        out.push_str("===== approvals\n");
        if let Ok(m) = SessionManager::open(Arc::clone(&self.config)) {
            let f = ApprovalFilter {
                all: true,
                ..Default::default()
            };
            for a in approvals::list_approvals(&m, &f).unwrap_or_default() {
                out.push_str(&format!("{a:?}\n"));
            }
        }
        let logs = self.dir.path().join("data/logs");
        if let Ok(entries) = std::fs::read_dir(&logs) {
            for e in entries.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: String = text
                    .chars()
                    .rev()
                    .take(2000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                out.push_str(&format!("===== {}\n{tail}\n", e.path().display()));
            }
        }
        out
    }

    /// Polls (bounded) until `f` gives something.
    async fn until<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}{}",
                self.diagnostics()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The one pending request (polls until there is one).
    async fn pending(&self, r: &Router) -> Approval {
        self.until("a pending permission request", || {
            approvals::list_approvals(r.manager(), &ApprovalFilter::default())
                .expect("list")
                .pop()
        })
        .await
    }

    /// All requests, oldest first.
    fn all(&self, r: &Router) -> Vec<Approval> {
        let f = ApprovalFilter {
            all: true,
            ..Default::default()
        };
        approvals::list_approvals(r.manager(), &f).expect("list")
    }

    /// The tool results b's agent sent the stand-in.
    fn b_results(&self) -> Vec<String> {
        self.api
            .requests()
            .iter()
            .filter(|r| agent_of(r) == Some("b"))
            .flat_map(tool_results)
            .collect()
    }

    async fn finish(&self, r: Router, task: tokio::task::JoinHandle<Tell>) -> Tell {
        let t = tokio::time::timeout(TELL_LIMIT, task)
            .await
            .unwrap_or_else(|_| panic!("the tell did not end{}", self.diagnostics()))
            .expect("tell task");
        let _ = r;
        t
    }

    async fn shutdown(&self, r: Router) {
        tokio::time::timeout(Duration::from_secs(30), r.shutdown())
            .await
            .expect("shutdown");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !procs::pids_with_env(MARKER_VAR, &self.marker).is_empty() {
            assert!(Instant::now() < deadline, "claude processes left behind");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn tell(r: &Router, to: &str, text: &str) -> tokio::task::JoinHandle<Tell> {
    let r = r.clone();
    let (to, text) = (to.to_string(), text.to_string());
    tokio::spawn(async move {
        r.tell("person", &to, &text, Wait::For(TELL_LIMIT))
            .await
            .expect("tell")
    })
}

/// A Write of b's agent waits for a person: the request is listed (CLI, library) and on the
/// event bus; `approvals allow` (another process) lets the file be written and the tell be
/// answered; `approvals deny --reason` leaves no file and the agent is told the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_allows_or_denies_a_write_from_another_process() {
    let env = Env::new("[teams.b.permissions]\nask = \"human\"\ntimeout = \"5m\"").await;
    let r = env.router();
    let mut events = r.manager().events().subscribe();
    let task = tell(&r, "b", "please WRITE allowed.txt");
    let a = env.pending(&r).await;
    assert_eq!(
        (a.tool.as_str(), a.from_team.as_str(), a.to_team.as_str()),
        ("Write", "person", "b")
    );
    assert!(a.input.contains("allowed.txt"), "{a:?}");
    assert_eq!(a.decide_by, "human");
    // Listed by the CLI, with tool, input and pair.
    let listed = env.cli_json(&["approvals"]);
    let row = &listed.as_array().expect("array")[0];
    assert_eq!(row["approval_id"], a.approval_id.as_str());
    assert_eq!(row["tool"], "Write");
    assert_eq!(row["state"], "pending");
    let human = String::from_utf8_lossy(&env.cli(&["approvals"]).stdout).into_owned();
    assert!(
        human.contains(&a.approval_id) && human.contains("person:b") && human.contains("Write"),
        "{human}"
    );
    // On the event bus.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = tokio::time::timeout_at(deadline.into(), events.recv())
            .await
            .expect("an approval_requested event")
            .expect("bus");
        if let EventKind::ApprovalRequested {
            approval_id,
            tool,
            decide_by,
            ..
        } = &e.kind
        {
            assert_eq!(
                (approval_id, tool.as_str(), decide_by.as_str()),
                (&a.approval_id, "Write", "human")
            );
            break;
        }
    }
    assert!(
        !env.folder("b").join("allowed.txt").exists(),
        "nothing written before the decision"
    );
    let out = env.cli(&["approvals", "allow", &a.approval_id[..8]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = env.finish(r.clone(), task).await;
    assert_eq!(t.state, TellState::Answered, "{t:?}{}", env.diagnostics());
    assert!(
        t.answer.as_deref().unwrap_or("").contains("File created"),
        "{t:?}"
    );
    assert_eq!(
        std::fs::read_to_string(env.folder("b").join("allowed.txt"))
            .ok()
            .as_deref(),
        Some("from b\n")
    );

    // Deny: no file, and the agent is told why.
    let task = tell(&r, "b", "now WRITE denied.txt");
    let a = env.pending(&r).await;
    let out = env.cli(&[
        "approvals",
        "deny",
        &a.approval_id,
        "--reason",
        "not in this folder",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = env.finish(r.clone(), task).await;
    assert_eq!(t.state, TellState::Answered, "{t:?}");
    assert!(!env.folder("b").join("denied.txt").exists());
    assert!(
        env.b_results()
            .iter()
            .any(|t| t.contains("denied by a person: not in this folder")),
        "the agent was told the reason{}",
        env.diagnostics()
    );
    // Deciding again is refused; every decision is recorded with who decided.
    let again = env.cli(&["approvals", "allow", &a.approval_id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already decided"));
    let all = env.all(&r);
    let by: Vec<(&str, &str)> = all
        .iter()
        .map(|a| (a.state.as_str(), a.decided_by.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(by, [("allowed", "person"), ("denied", "person")]);
    env.shutdown(r).await;
}

/// Nobody decides: the request is denied when the team's timeout runs out, and the agent is
/// told so; the turn did not count as stalled meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nobody_deciding_means_denied_at_the_timeout() {
    // The wait is longer than the response timeout: a turn waiting for a decision is not a
    // stall (the agent would be killed and the tell failed).
    let env = Env::with(
        "response_timeout = \"2s\"",
        "[teams.b.permissions]\ntimeout = \"5s\"",
    )
    .await;
    let r = env.router();
    let t = env.finish(r.clone(), tell(&r, "b", "WRITE late.txt")).await;
    assert_eq!(t.state, TellState::Answered, "{t:?}{}", env.diagnostics());
    assert!(!env.folder("b").join("late.txt").exists());
    let all = env.all(&r);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(
        (all[0].state.as_str(), all[0].decided_by.as_deref()),
        ("denied", Some("timeout"))
    );
    assert!(
        env.b_results()
            .iter()
            .any(|t| t.contains("nobody decided within 5s")),
        "{}",
        env.diagnostics()
    );
    env.shutdown(r).await;
}

/// An allow rule lets the write through with no request waiting; a deny rule refuses at
/// once; both are recorded as decided by a rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_decide_at_once() {
    let env = Env::new(
        "[teams.b.permissions]\nallow = [\"Write(ok-*.txt)\"]\ndeny = [\"Write(secret*)\"]\n\
         ask = \"human\"\ntimeout = \"10m\"",
    )
    .await;
    let r = env.router();
    let t = env.finish(r.clone(), tell(&r, "b", "WRITE ok-1.txt")).await;
    assert_eq!(t.state, TellState::Answered, "{t:?}{}", env.diagnostics());
    assert!(env.folder("b").join("ok-1.txt").exists());
    let t = env
        .finish(r.clone(), tell(&r, "b", "WRITE secret.txt"))
        .await;
    assert_eq!(t.state, TellState::Answered, "{t:?}{}", env.diagnostics());
    assert!(!env.folder("b").join("secret.txt").exists());
    let all = env.all(&r);
    let by: Vec<(&str, &str, &str)> = all
        .iter()
        .map(|a| {
            (
                a.state.as_str(),
                a.decided_by.as_deref().unwrap_or(""),
                a.decide_by.as_str(),
            )
        })
        .collect();
    assert_eq!(
        by,
        [("allowed", "rule", "rule"), ("denied", "rule", "rule")],
        "{}",
        env.diagnostics()
    );
    assert!(
        env.b_results().iter().any(|t| t.contains("denied")),
        "{}",
        env.diagnostics()
    );
    env.shutdown(r).await;
}

/// A call Claude Code refuses by itself under the team's deny rule (a Bash command: it gets the
/// rule as `--disallowedTools` and says `system/permission_denied`) is recorded as a request
/// denied by a rule, like the calls Switchboard refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_the_agent_refuses_by_rule_is_recorded_as_denied() {
    let env = Env::new(
        "[teams.b.permissions]\ndeny = [\"Bash(echo hi > bashout.txt)\"]\nask = \"human\"\n\
         timeout = \"10m\"",
    )
    .await;
    let r = env.router();
    let t = env
        .finish(r.clone(), tell(&r, "b", "BASH echo hi > bashout.txt"))
        .await;
    assert_eq!(t.state, TellState::Answered, "{t:?}{}", env.diagnostics());
    assert!(!env.folder("b").join("bashout.txt").exists());
    let all = env.all(&r);
    let denied: Vec<(&str, &str, &str)> = all
        .iter()
        .map(|a| {
            (
                a.tool.as_str(),
                a.state.as_str(),
                a.decided_by.as_deref().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        denied,
        [("Bash", "denied", "rule")],
        "{}",
        env.diagnostics()
    );
    env.shutdown(r).await;
}

/// `allow --always` adds a session rule: the next Write is not asked; removed, it is again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn always_adds_a_session_rule_that_can_be_removed() {
    let env = Env::new("[teams.b.permissions]\ntimeout = \"5m\"").await;
    let r = env.router();
    let task = tell(&r, "b", "WRITE one.txt");
    let a = env.pending(&r).await;
    let out = env.cli(&["approvals", "allow", &a.approval_id, "--always"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("session rule added: Write"));
    env.finish(r.clone(), task).await;
    let t = env.finish(r.clone(), tell(&r, "b", "WRITE two.txt")).await;
    assert_eq!(t.state, TellState::Answered);
    assert!(env.folder("b").join("two.txt").exists());
    let rules = env.cli_json(&["approvals", "rules"]);
    let rules = rules.as_array().expect("array");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["rule"], "Write");
    let second = &env.all(&r)[1];
    assert_eq!(
        (second.state.as_str(), second.decided_by.as_deref()),
        ("allowed", Some("rule"))
    );
    let id = rules[0]["id"].to_string();
    assert!(env
        .cli(&["approvals", "rules", "remove", &id])
        .status
        .success());
    let task = tell(&r, "b", "WRITE three.txt");
    let a = env.pending(&r).await;
    approvals::decide(
        r.manager(),
        &a.approval_id,
        Decision::Deny { reason: None },
        Decider::Person,
    )
    .expect("deny");
    env.finish(r.clone(), task).await;
    assert!(!env.folder("b").join("three.txt").exists());
    env.shutdown(r).await;
}

/// A restart with a pending request: the Switchboard process running the agent is killed;
/// the next one expires the request with a reason, and the next tell works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_expires_a_pending_request_and_the_next_tell_works() {
    let env = Env::new("[teams.b.permissions]\ntimeout = \"10m\"").await;
    let mut child = env
        .cli_command(&["tell", "person", "b", "WRITE orphan.txt"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tell");
    let r0 = {
        let m = SessionManager::open(Arc::clone(&env.config)).expect("open");
        Arc::new(m)
    };
    let pending = env
        .until("a pending request of the CLI's agent", || {
            approvals::list_approvals(&r0, &ApprovalFilter::default())
                .expect("list")
                .pop()
        })
        .await;
    // The person waiting on `tell` is told what waits and how to decide it (read up to the
    // last line of the notice: the deny hint; the lines may come in separate reads).
    let hint = format!(
        "switchboard approvals deny {} --reason",
        pending.approval_id
    );
    let mut stderr = child.stderr.take().expect("stderr");
    let said = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&all).contains(&hint) {
                break;
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let said = tokio::time::timeout(Duration::from_secs(30), said)
        .await
        .unwrap_or_else(|_| panic!("no hint on the tell's stderr{}", env.diagnostics()))
        .expect("read stderr");
    assert!(
        said.contains("team b's agent asks to use Write")
            && said.contains(&format!(
                "switchboard approvals allow {}",
                pending.approval_id
            )),
        "{said}"
    );
    // The process dies without a word (as in a crash or a reboot).
    child.kill().expect("kill");
    child.wait().expect("reap");
    // Its agent goes with its stdin; make sure nothing of the test is left.
    for pid in procs::pids_with_env(MARKER_VAR, &env.marker) {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let r = env.router(); // start-up recovery
    let a = r
        .manager()
        .store()
        .get_approval(&pending.approval_id)
        .expect("read")
        .expect("stored");
    assert_eq!(a.state, "expired", "{a:?}");
    assert!(
        a.reason
            .as_deref()
            .unwrap_or("")
            .contains("agent that asked is gone"),
        "{a:?}"
    );
    assert!(!env.folder("b").join("orphan.txt").exists());
    let t = env.finish(r.clone(), tell(&r, "b", "just say hello")).await;
    assert_eq!(t.state, TellState::Answered, "{t:?}{}", env.diagnostics());
    assert!(
        approvals::list_approvals(r.manager(), &ApprovalFilter::default())
            .expect("list")
            .is_empty()
    );
    env.shutdown(r).await;
}

/// `ask = "caller"`: team a's agent tells b through the MCP server; b's Write comes back to
/// a's waiting team_tell as a request; a's agent allows it with team_approve, which returns
/// b's answer; the file is written and the decision recorded as the caller's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_calling_agent_decides_through_its_mcp_tools() {
    let env = Env::new("[teams.b.permissions]\nask = \"caller\"\ntimeout = \"5m\"").await;
    let folder = env.folder("b");
    env.api.respond_with(move |rec| match agent_of(rec)? {
        "b" => Some(b_answer(rec, &folder)),
        "a" => Some(match tool_results(rec).pop() {
            None => Answer::text("").with_tool_use(
                &format!("toolu_a_{}", rec.n),
                "mcp__switchboard__team_tell",
                json!({"to": "b", "message": "WRITE caller.txt"}),
            ),
            Some(result) => match result.find("\"approval_id\":\"ap-") {
                Some(at) if result.contains("\"state\":\"pending\"") => {
                    let id: String = result[at + 15..].chars().take(15).collect();
                    Answer::text("").with_tool_use(
                        &format!("toolu_a_{}", rec.n),
                        "mcp__switchboard__team_approve",
                        json!({"approval_id": id, "decision": "allow"}),
                    )
                }
                _ => Answer::text(format!("a relays: {result}")),
            },
        }),
        _ => None,
    });
    let r = env.router();
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let mut options = ServeOptions::new(Transport::Http { addr });
    options.signals = Signals::none();
    let server = start(r.clone(), options).await.expect("server");
    let t = tokio::time::timeout(
        TELL_LIMIT,
        r.tell("person", "a", "ask b to write", Wait::For(TELL_LIMIT)),
    )
    .await
    .unwrap_or_else(|_| panic!("tell did not end{}", env.diagnostics()))
    .expect("tell");
    assert_eq!(t.state, TellState::Answered, "{t:?}{}", env.diagnostics());
    assert!(
        env.folder("b").join("caller.txt").exists(),
        "{}",
        env.diagnostics()
    );
    let answer = t.answer.unwrap_or_default();
    assert!(
        answer.contains("a relays") && answer.contains("File created"),
        "{answer}"
    );
    let all = env.all(&r);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(
        (all[0].from_team.as_str(), all[0].decided_by.as_deref()),
        ("a", Some("caller"))
    );
    // A person's decision tool is not the caller's: the caller cannot decide a human request.
    let err = approvals::decide(
        r.manager(),
        &all[0].approval_id,
        Decision::Allow { always: false },
        Decider::Caller("person".into()),
    )
    .expect_err("not person's");
    assert!(err.to_string().contains("not yours"), "{err}");
    tokio::time::timeout(Duration::from_secs(30), server.shutdown())
        .await
        .expect("server shutdown");
    env.shutdown(r).await;
}

/// A rule that does not parse is a config error naming its key path.
#[test]
fn bad_rules_are_config_errors_with_their_key_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "[teams.b]\npath = {:?}\n[teams.b.permissions]\nallow = [\"Read\", \"Bash(git status:*\"]\n\
         deny = [\"Wrte\"]\nask = \"maybe\"\ntimeout = \"soon\"\n",
        dir.path().display().to_string()
    );
    let e = TeamsConfig::parse(&text, None, &|_| None)
        .expect_err("bad rules")
        .to_string();
    for needle in [
        "teams.b.permissions.allow[1]",
        "in parentheses at the end",
        "teams.b.permissions.deny[0]",
        "unknown tool \"Wrte\"",
        "teams.b.permissions.ask",
        "teams.b.permissions.timeout",
    ] {
        assert!(e.contains(needle), "{needle:?} not in:\n{e}");
    }
    // The CLI says the same and exits 2.
    let file = dir.path().join("teams.toml");
    std::fs::write(&file, &text).expect("write");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.arg("--config")
        .arg(&file)
        .arg("approvals")
        .env_remove("SWITCHBOARD_CONFIG");
    let out = finish(cmd);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("teams.b.permissions.allow[1]"));
}

/// POSTs `body` to `path` of the server at `addr` with the bearer token; (status, JSON body).
async fn post(addr: SocketAddr, path: &str, token: &str, body: &Value) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (_, rest) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
    // The body may be chunked: the JSON is the part between the first '{' and the last '}'.
    let json = match (rest.find('{'), rest.rfind('}')) {
        (Some(a), Some(b)) => serde_json::from_str(&rest[a..=b]).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (status, json)
}

/// The HTTP API (for the dashboard) lists and decides requests; interrupting a tell whose
/// agent waits for a decision withdraws the request: it expires with the reason, and deciding
/// it afterwards is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_http_api_decides_and_a_cancelled_tell_withdraws_its_request() {
    let env = Env::new("[teams.b.permissions]\ntimeout = \"5m\"").await;
    let r = env.router();
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let mut options = ServeOptions::new(Transport::Http { addr });
    options.signals = Signals::none();
    options.auth_token = Some("approvals-test-token-0123456789".into());
    let server = start(r.clone(), options).await.expect("server");
    let addr = server.addr();

    let task = tell(&r, "b", "WRITE api.txt");
    let a = env.pending(&r).await;
    let (status, listed) = post(
        addr,
        "/api/approvals",
        "approvals-test-token-0123456789",
        &json!({"team": "b"}),
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        listed["approvals"][0]["approval_id"],
        a.approval_id.as_str(),
        "{listed}"
    );
    let (status, bad) = post(
        addr,
        "/api/approve",
        "approvals-test-token-0123456789",
        &json!({"id": a.approval_id, "decision": "maybe"}),
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    let (status, decided) = post(
        addr,
        "/api/approve",
        "approvals-test-token-0123456789",
        &json!({"id": a.approval_id, "decision": "allow"}),
    )
    .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(
        (decided["state"].as_str(), decided["decided_by"].as_str()),
        (Some("allowed"), Some("person"))
    );
    let t = env.finish(r.clone(), task).await;
    assert_eq!(t.state, TellState::Answered, "{t:?}");
    assert!(env.folder("b").join("api.txt").exists());

    let task = tell(&r, "b", "WRITE cancelled.txt");
    let a = env.pending(&r).await;
    r.cancel_tell(a.tell_id.as_deref().expect("tell id"))
        .expect("cancel");
    let t = env.finish(r.clone(), task).await;
    assert!(
        t.state.is_final() && t.state != TellState::Answered,
        "{t:?}"
    );
    let a = env
        .until("the request to expire", || {
            r.manager()
                .store()
                .get_approval(&a.approval_id)
                .expect("read")
                .filter(|a| !a.is_pending())
        })
        .await;
    assert_eq!(a.state, "expired", "{a:?}");
    assert!(
        a.reason.as_deref().unwrap_or("").contains("withdrew"),
        "{a:?}"
    );
    let (status, late) = post(
        addr,
        "/api/approve",
        "approvals-test-token-0123456789",
        &json!({"id": a.approval_id, "decision": "allow"}),
    )
    .await;
    assert_eq!(status, 409, "{late}");
    assert!(
        late["error"]
            .as_str()
            .unwrap_or("")
            .contains("already decided"),
        "{late}"
    );
    assert!(!env.folder("b").join("cancelled.txt").exists());
    tokio::time::timeout(Duration::from_secs(30), server.shutdown())
        .await
        .expect("server shutdown");
    env.shutdown(r).await;
}

/// A database of the schema before approvals (version 6) opens: migration 0007 adds the
/// requests and the session rules and keeps what was there.
#[test]
fn migration_0007_adds_approvals_to_a_version_6_database() {
    use switchboard::store::{NewApproval, SessionStore, MIGRATIONS};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sb.db");
    {
        let c = rusqlite::Connection::open(&path).expect("raw");
        c.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
             applied_at INTEGER NOT NULL)",
        )
        .expect("table");
        for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 <= 6) {
            c.execute_batch(sql).expect("migration");
            c.execute(
                "INSERT INTO schema_migrations VALUES (?1, ?2, 0)",
                rusqlite::params![version, name],
            )
            .expect("record");
        }
        c.execute_batch(
            "INSERT INTO sessions (session_id, from_team, to_team, created_at, last_used_at)
               VALUES ('11111111-1111-4111-8111-111111111111', 'a', 'b', 1, 1);",
        )
        .expect("data");
    }
    let store = SessionStore::open(&path).expect("migrate");
    assert!(store.schema_version().expect("version") >= 7);
    assert!(store.get_by_pair("a", "b").expect("read").is_some());
    let a = store
        .insert_approval(
            &NewApproval {
                approval_id: "ap-000000000001",
                tell_id: None,
                session_id: "11111111-1111-4111-8111-111111111111",
                from_team: "a",
                to_team: "b",
                request_id: "r",
                tool_use_id: None,
                tool: "Write",
                input: "x",
                decide_by: "human",
                decided: None,
                expires_at: 10,
                owner: switchboard::util::ProcessIdentity::current(),
            },
            1,
        )
        .expect("insert");
    assert!(a.is_pending());
    assert!(store.session_rules(None).expect("rules").is_empty());
}

/// The README's permissions example loads as written, and means what the README says.
#[test]
fn the_readme_permissions_example_loads_verbatim() {
    use switchboard::config::{Ask, ToolCall};
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let section = &readme[readme
        .find("## Permissions and approvals\n")
        .expect("README section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let block = &section[start..start + section[start..].find("```").expect("block end")];
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "[database]\nin_memory = true\n[teams.backend]\npath = {}\n{block}",
        Value::from(dir.path().display().to_string())
    );
    let config = TeamsConfig::parse(&text, None, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    let p = config.teams["backend"]
        .permissions
        .clone()
        .expect("permissions");
    assert_eq!(p.ask, Ask::Human);
    assert_eq!(p.timeout, Duration::from_secs(600));
    let folder = dir.path();
    let decide = |tool: &str, input: Value| {
        p.decide(&ToolCall {
            tool,
            input: &input,
            folder,
        })
        .map(|(allow, _)| allow)
    };
    assert_eq!(
        decide("Bash", json!({"command": "git status -s"})),
        Some(true)
    );
    assert_eq!(
        decide("Bash", json!({"command": "git status; rm -rf /"})),
        Some(false)
    );
    assert_eq!(decide("Bash", json!({"command": "cargo build"})), None);
    let in_src = folder.join("src/main.rs").display().to_string();
    assert_eq!(decide("Edit", json!({"file_path": in_src})), Some(true));
    assert_eq!(decide("Write", json!({"file_path": "README.md"})), None);
    assert_eq!(
        decide("WebFetch", json!({"url": "https://x.org"})),
        Some(false)
    );
}
