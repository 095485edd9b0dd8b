//! End to end through Switchboard's MCP server with the real Claude Code CLI (npm
//! `@anthropic-ai/claude-code@2.1.328`, see tests/claude_code.rs for how it is found) and the
//! stand-in Messages API (`tests/fake_api`). The server runs in-process over streamable HTTP on
//! 127.0.0.1; the agents Switchboard spawns get a per-session `--mcp-config` naming them, so
//! when the stand-in makes team a's agent call `mcp__switchboard__team_tell`, Claude Code calls
//! back into Switchboard, which spawns team b's agent and hands b's answer back as the tool
//! result. Also: a tell that would close a loop (a -> b -> a) is refused as a tool error, and
//! nothing deadlocks.
//!
//! The stand-in tells the agents apart by their system prompt (`append_system_prompt`).

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
use switchboard::router::{Router, Wait};
use switchboard::server::serve::{start, ServeOptions, ServerHandle, Transport};
use switchboard::signals::Signals;
use switchboard::store::{ProcessState, Session, Tell, TellState};
use switchboard::{SessionManager, TeamsConfig};
use tempfile::TempDir;

/// The environment variable that marks the claude processes of one test (for the /proc scan).
const MARKER_VAR: &str = "SWITCHBOARD_CLAUDE_MCP_TEST_MARKER";
/// The tool as Claude Code names it: `mcp__<server>__<tool>`.
const TEAM_TELL: &str = "mcp__switchboard__team_tell";
/// Claude Code's limit on one MCP tool call (`MCP_TOOL_TIMEOUT`, ms). Set explicitly so a
/// tool call that never returns becomes a tool error well within [`TELL_LIMIT`].
const MCP_TOOL_TIMEOUT_MS: u64 = 60_000;
/// How long the router waits for the person's tell.
const TELL_WAIT: Duration = Duration::from_secs(90);
/// Hard bound on the whole tell (a hang fails the test with diagnostics, never blocks it).
const TELL_LIMIT: Duration = Duration::from_secs(120);

/// The claude binary: `$SWITCHBOARD_TEST_CLAUDE`, or the pinned one in `.tools/claude-code`.
/// Fails (never skips) when it is missing.
fn claude_binary() -> String {
    pinned_claude::binary()
}

// ---------------------------------------------------------------------------------------------
// Reading the stand-in's requests

/// Which team's agent sent a request: its system prompt holds "You are team X"
/// (`append_system_prompt`).
fn agent_of(rec: &Recorded) -> Option<&'static str> {
    const MARK: &str = "You are team ";
    let blocks = rec.json.as_ref()?.get("system")?.as_array()?;
    blocks
        .iter()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .flat_map(|text| {
            text.match_indices(MARK)
                .map(move |(i, _)| &text[i + MARK.len()..])
        })
        .find_map(|rest| {
            let name: String = rest
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            ["a", "b"].into_iter().find(|t| *t == name)
        })
}

/// A `tool_result` block as the stand-in received it.
#[derive(Debug, Clone)]
struct ToolResult {
    tool_use_id: String,
    is_error: bool,
    text: String,
}

/// The text of a `tool_result`'s content (a string or text blocks).
fn result_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The `tool_result` blocks of the last user message of a request.
fn tool_results(rec: &Recorded) -> Vec<ToolResult> {
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
                .map(|b| ToolResult {
                    tool_use_id: b
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                    text: b.get("content").map(result_text).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `answer` of a `team_tell` result (its text is the tell as JSON), else the whole text.
fn tell_answer(result: &ToolResult) -> String {
    serde_json::from_str::<Value>(&result.text)
        .ok()
        .and_then(|v| v.get("answer").and_then(Value::as_str).map(String::from))
        .unwrap_or_else(|| result.text.clone())
}

/// At most `max` characters of `s` (the end, when `tail`).
fn clip(s: &str, max: usize, tail: bool) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    if tail {
        format!("…{}", s.chars().skip(n - max).collect::<String>())
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

/// One line per request: number, agent, session, and the last user message in short.
fn summarize(rec: &Recorded) -> String {
    let last: Vec<String> = rec
        .last_user_texts()
        .iter()
        .filter(|t| !t.starts_with("<system-reminder>"))
        .map(|t| clip(t, 300, false))
        .collect();
    format!(
        "#{} {} {} agent={:?} session={:?} last user texts={last:?} tool results={:?}",
        rec.n,
        rec.method,
        rec.path,
        agent_of(rec),
        rec.header("x-claude-code-session-id"),
        tool_results(rec)
    )
}

// ---------------------------------------------------------------------------------------------
// The test environment

struct Env {
    /// Holds the teams' folders, HOME, the database and the logs; removed at drop.
    dir: TempDir,
    marker: String,
    config: Arc<TeamsConfig>,
    api: FakeApi,
    /// The claude binary.
    claude: String,
    /// The environment of the agents (HOME, the stand-in API, the marker, ...).
    vars: Vec<(String, String)>,
}

impl Env {
    /// Teams `person` (the caller; never spawned), `a` and `b`, run by the real Claude Code
    /// pointed at a fresh stand-in API, with a per-test HOME; `MCP_TOOL_TIMEOUT` set to
    /// [`MCP_TOOL_TIMEOUT_MS`].
    async fn new() -> Self {
        Self::with("response_timeout = \"100s\"", Some(MCP_TOOL_TIMEOUT_MS)).await
    }

    /// [`Env::new`] with `settings` (TOML lines of `[settings]`) and Claude Code's
    /// `MCP_TOOL_TIMEOUT` (`None`: not set, Claude Code's default).
    async fn with(settings: &str, mcp_tool_timeout_ms: Option<u64>) -> Self {
        Self::build(settings, mcp_tool_timeout_ms, &[]).await
    }

    /// [`Env::with`], plus TOML lines for some teams (`(team, lines)`). The teams file is also
    /// written to `<root>/teams.toml` (for the CLI and for stdio registrations).
    async fn build(
        settings: &str,
        mcp_tool_timeout_ms: Option<u64>,
        team_extra: &[(&str, &str)],
    ) -> Self {
        let claude = claude_binary();
        let api = FakeApi::start().await;
        let dir = tempfile::Builder::new()
            .prefix("switchboard-claude-mcp-")
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
        if let Some(ms) = mcp_tool_timeout_ms {
            env.push(("MCP_TOOL_TIMEOUT", ms.to_string()));
        }
        // A CLAUDE_CONFIG_DIR of the environment the tests run in (an outer Claude Code) would
        // beat HOME: pin it to this test's home.
        if std::env::var_os("CLAUDE_CONFIG_DIR").is_some() {
            env.push(("CLAUDE_CONFIG_DIR", format!("{home}/.claude")));
        }
        let vars: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
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
            for (_, lines) in team_extra.iter().filter(|(team, _)| *team == t) {
                text.push_str(lines);
                text.push('\n');
            }
        }
        std::fs::write(dir.path().join("teams.toml"), &text).expect("write teams.toml");
        let config = TeamsConfig::parse(&text, None, &|_| None)
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
        Self {
            dir,
            marker,
            config: Arc::new(config),
            api,
            claude,
            vars,
        }
    }

    /// The teams file written by [`Env::build`].
    fn config_path(&self) -> PathBuf {
        self.root().join("teams.toml")
    }

    /// Runs `program args` in `cwd` with this test's environment (HOME, the stand-in API, the
    /// marker), bounded by `limit`; returns whether it exited 0, its stdout and its stderr.
    async fn run(
        &self,
        program: &str,
        args: &[&str],
        cwd: &Path,
        limit: Duration,
    ) -> (bool, String, String) {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(cwd)
            .env_remove("CLAUDECODE")
            .env_remove("CLAUDE_CODE_ENTRYPOINT")
            .env_remove("SWITCHBOARD_CONFIG")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(limit, cmd.output())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "`{program} {}` did not end within {limit:?}{}",
                    args.join(" "),
                    self.diagnostics()
                )
            })
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs the real `claude mcp ARGS` in team `team`'s folder; it must succeed.
    async fn claude_mcp(&self, team: &str, args: &[&str]) -> String {
        let mut all = vec!["mcp"];
        all.extend_from_slice(args);
        let (ok, out, err) = self
            .run(
                &self.claude,
                &all,
                &self.root().join(team),
                Duration::from_secs(60),
            )
            .await;
        assert!(ok, "claude {all:?} failed:\n{out}\n{err}");
        format!("{out}{err}")
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A Switchboard over the test's database.
    fn router(&self) -> Router {
        let m = SessionManager::open(Arc::clone(&self.config)).expect("open");
        m.initialize().expect("initialize");
        let r = Router::new(Arc::new(m));
        r.recover(None).expect("recover");
        r
    }

    /// The MCP server in-process over HTTP on 127.0.0.1 (any free port), serving `router`.
    async fn serve(&self, router: &Router) -> ServerHandle {
        self.serve_with_token(router, None).await
    }

    /// [`Env::serve`] with a bearer token every request (but a spawned agent's) must carry.
    async fn serve_with_token(&self, router: &Router, token: Option<&str>) -> ServerHandle {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let mut options = ServeOptions::new(Transport::Http { addr });
        options.signals = Signals::none();
        options.auth_token = token.map(str::to_string);
        start(router.clone(), options)
            .await
            .expect("the MCP server starts")
    }

    /// Pids of live processes of this test (claude and anything it started), found by the
    /// marker in their environment.
    fn agent_pids(&self) -> Vec<u32> {
        procs::pids_with_env(MARKER_VAR, &self.marker)
    }

    /// Polls (bounded) until no process of this test is left.
    async fn assert_no_agents(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = self.agent_pids();
            if left.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                panic!("orphan claude processes: {left:?}\n{}", self.diagnostics());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the stand-in saw, the agents' stderr logs, Claude Code's MCP logs, and the tells
    /// in SQLite: for failure messages.
    fn diagnostics(&self) -> String {
        let mut out = String::from("\n===== stand-in requests\n");
        for rec in self.api.requests() {
            out.push_str(&summarize(&rec));
            out.push('\n');
        }
        out.push_str("===== agent stderr logs (<db dir>/logs)\n");
        out.push_str(&files_under(&self.root().join("data/logs"), 4000));
        out.push_str("===== Claude Code MCP logs ($HOME/.cache/claude-cli-nodejs)\n");
        out.push_str(&files_under(
            &self.root().join("home/.cache/claude-cli-nodejs"),
            3000,
        ));
        out.push_str("===== tells in SQLite\n");
        match SessionManager::open(Arc::clone(&self.config)) {
            Ok(m) => {
                for (from, to) in [("person", "a"), ("a", "b"), ("b", "a")] {
                    match m.store().recent_tells(from, to, 20) {
                        Ok(tells) => {
                            for t in tells {
                                out.push_str(&format!(
                                    "{from} -> {to} {} {:?} parent={:?} answer={:?} error={:?}\n",
                                    t.tell_id, t.state, t.parent_tell_id, t.answer, t.error
                                ));
                            }
                        }
                        Err(e) => out.push_str(&format!("{from} -> {to}: {e}\n")),
                    }
                }
            }
            Err(e) => out.push_str(&format!("cannot open the database: {e}\n")),
        }
        out
    }

    /// The person's tell to team a, bounded by [`TELL_LIMIT`]; a hang fails with diagnostics.
    async fn tell_a(&self, r: &Router, text: &str) -> (Tell, Duration) {
        let started = Instant::now();
        let told = tokio::time::timeout(
            TELL_LIMIT,
            r.tell("person", "a", text, Wait::For(TELL_WAIT)),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the tell person -> a did not end within {TELL_LIMIT:?}{}",
                self.diagnostics()
            )
        })
        .unwrap_or_else(|e| panic!("the tell person -> a: {e}{}", self.diagnostics()));
        (told, started.elapsed())
    }

    /// The session of a pair, which must exist.
    fn session(&self, r: &Router, from: &str, to: &str) -> Arc<Session> {
        r.manager()
            .get(from, to)
            .expect("read the session")
            .unwrap_or_else(|| panic!("no session {from} -> {to}{}", self.diagnostics()))
    }

    /// Shuts the server (and with it the router and every agent) down; checks that nothing
    /// is left: no claude process, no server file, nothing listening.
    async fn shutdown(&self, server: ServerHandle, r: &Router) {
        let addr = server.addr();
        let state_file = self.root().join("data/server.json");
        assert!(state_file.exists(), "server.json while serving");
        tokio::time::timeout(Duration::from_secs(30), server.shutdown())
            .await
            .unwrap_or_else(|_| {
                panic!("the server did not shut down in 30 s{}", self.diagnostics())
            });
        self.assert_no_agents().await;
        assert!(!state_file.exists(), "server.json removed at shutdown");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "the MCP server still accepts connections on {addr} after shutdown"
        );
        for (from, to) in [("person", "a"), ("a", "b")] {
            let s = self.session(r, from, to);
            assert_eq!(
                s.process_state,
                ProcessState::Stopped,
                "{from} -> {to} after shutdown: {s:?}"
            );
            assert!(s.agent_pid.is_none() && s.owner_pid.is_none(), "{s:?}");
        }
        assert!(
            r.tell("person", "a", "late", Wait::None).await.is_err(),
            "no tells after shutdown"
        );
    }
}

/// Every file under `dir` (recursively), each clipped to its last `max` characters.
fn files_under(dir: &Path, max: usize) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                stack.push(p);
            } else {
                let text = std::fs::read_to_string(&p).unwrap_or_else(|e| format!("({e})"));
                out.push_str(&format!(
                    "--- {}\n{}\n",
                    p.display(),
                    clip(&text, max, true)
                ));
            }
        }
    }
    if out.is_empty() {
        out.push_str(&format!("(nothing under {})\n", dir.display()));
    }
    out
}

/// Fails with the diagnostics of `env` unless `cond`.
macro_rules! ensure {
    ($env:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            panic!("{}{}", format!($($arg)+), $env.diagnostics());
        }
    };
}

// ---------------------------------------------------------------------------------------------

/// a's agent asks b's agent through `team_tell`; b's answer comes back as the tool result and
/// into a's answer; both sessions and both tells (chained) are in SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_tells_another_team_through_the_mcp_server() {
    let env = Env::new().await;
    env.api.respond_with(|rec| match agent_of(rec)? {
        "a" => Some(match tool_results(rec).pop() {
            None => Answer::text("Let me ask team b.").with_tool_use(
                "toolu_a_1",
                TEAM_TELL,
                json!({"to": "b", "message": "what is the answer?"}),
            ),
            Some(result) => {
                Answer::text(format!("a relays: {}", tell_answer(&result))).with_usage(200, 20)
            }
        }),
        "b" => Some(Answer::text("b says 42").with_usage(150, 15)),
        _ => None,
    });
    let r = env.router();
    let server = env.serve(&r).await;

    let (t1, took) = env.tell_a(&r, "Ask team b for the answer.").await;
    eprintln!("person -> a -> b -> a answered in {took:?}");
    ensure!(
        env,
        t1.state == TellState::Answered,
        "the tell person -> a: {t1:?}"
    );
    let answer = t1.answer.clone().unwrap_or_default();
    ensure!(
        env,
        answer.contains("b says 42"),
        "a's answer lacks b's: {t1:?}"
    );
    assert_eq!(answer, "a relays: b says 42");

    // What the stand-in saw: a asks (1), b answers (2), a gets b's answer as the tool result (3).
    let requests = env.api.message_requests();
    let from_a: Vec<&Recorded> = requests
        .iter()
        .filter(|q| agent_of(q) == Some("a"))
        .collect();
    let from_b: Vec<&Recorded> = requests
        .iter()
        .filter(|q| agent_of(q) == Some("b"))
        .collect();
    ensure!(
        env,
        from_a.len() == 2 && from_b.len() == 1 && requests.len() == 3,
        "expected 2 requests from a's agent and 1 from b's, got {} and {} of {}",
        from_a.len(),
        from_b.len(),
        requests.len()
    );
    assert_eq!(from_a[0].last_user_text(), "Ask team b for the answer.");
    // Claude Code connected to the MCP server before its first request: the tool is named
    // there (MCP tools are deferred: listed by name in a system message, not in `tools`).
    ensure!(
        env,
        String::from_utf8_lossy(&from_a[0].body).contains(TEAM_TELL),
        "a's first request does not name {TEAM_TELL}"
    );
    assert_eq!(from_b[0].last_user_text(), "what is the answer?");
    assert!(from_a[0].n < from_b[0].n && from_b[0].n < from_a[1].n);
    let results = tool_results(from_a[1]);
    ensure!(
        env,
        results.len() == 1
            && results[0].tool_use_id == "toolu_a_1"
            && !results[0].is_error
            && results[0].text.contains("b says 42"),
        "a's agent got the tool result {results:?}"
    );

    // SQLite: the sessions person -> a and a -> b, and the chained tells.
    let pa = env.session(&r, "person", "a");
    let ab = env.session(&r, "a", "b");
    assert_eq!(
        from_a[0].header("x-claude-code-session-id"),
        Some(pa.session_id.as_str()),
        "a's agent runs the session person -> a"
    );
    assert_eq!(
        from_b[0].header("x-claude-code-session-id"),
        Some(ab.session_id.as_str()),
        "b's agent runs the session a -> b"
    );
    assert!(
        r.manager().get("b", "a").expect("get").is_none(),
        "no session b -> a"
    );
    let ab_tells = r.report("a", "b", 10).expect("report a -> b");
    assert_eq!(ab_tells.len(), 1, "{ab_tells:?}");
    let t2 = &ab_tells[0];
    assert_eq!((t2.from_team.as_str(), t2.to_team.as_str()), ("a", "b"));
    assert_eq!(t2.state, TellState::Answered, "{t2:?}");
    assert_eq!(t2.text, "what is the answer?");
    assert_eq!(t2.answer.as_deref(), Some("b says 42"));
    assert_eq!(t2.session_id, ab.session_id);
    assert_eq!(
        t2.parent_tell_id.as_deref(),
        Some(t1.tell_id.as_str()),
        "the tell a -> b was sent while a answered person -> a"
    );
    assert_eq!(t1.parent_tell_id, None);
    assert_eq!(t1.session_id, pa.session_id);
    assert_eq!(r.report("person", "a", 10).expect("report").len(), 1);

    // Tokens and cost: b's turn is one model call; a's is two (before and after the tool).
    assert_eq!(
        (t2.input_tokens, t2.output_tokens),
        (Some(150), Some(15)),
        "{t2:?}"
    );
    assert!(t2.cost_usd.is_some_and(|c| c > 0.0), "{t2:?}");
    // Claude Code's result sums its model calls: 100 + 200 in, 10 + 20 out.
    assert_eq!(
        (t1.input_tokens, t1.output_tokens),
        (Some(300), Some(30)),
        "{t1:?}"
    );
    assert!(t1.cost_usd.is_some_and(|c| c > 0.0), "{t1:?}");
    for s in [&pa, &ab] {
        assert!(
            s.input_tokens > 0 && s.output_tokens > 0 && s.cost_usd > 0.0,
            "{s:?}"
        );
        assert_eq!(s.message_count, 1, "{s:?}");
    }
    assert_eq!((ab.input_tokens, ab.output_tokens), (150, 15), "{ab:?}");
    assert_eq!((pa.input_tokens, pa.output_tokens), (300, 30), "{pa:?}");

    // Each agent was started with Switchboard's MCP server allowed, via its own MCP config.
    for s in [&pa, &ab] {
        let launch = s.launch_command.clone().unwrap_or_default();
        assert!(
            launch.contains("--mcp-config") && launch.contains("mcp__switchboard"),
            "{launch}"
        );
        let file = env.root().join(format!("data/mcp/{}.json", s.session_id));
        let mcp: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("MCP config"))
            .expect("json");
        assert_eq!(mcp["mcpServers"]["switchboard"]["url"], server.url());
    }

    env.shutdown(server, &r).await;
}

/// b's agent, asked by a's agent, tries to tell a back: a waits in this chain, so the tell is
/// refused as a tool error; b and a still answer and everything ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tell_back_to_a_waiting_team_is_refused_as_a_loop() {
    let env = Env::new().await;
    env.api.respond_with(|rec| match agent_of(rec)? {
        "a" => Some(match tool_results(rec).pop() {
            None => Answer::text("Asking b.").with_tool_use(
                "toolu_a_1",
                TEAM_TELL,
                json!({"to": "b", "message": "ask a what the answer is"}),
            ),
            Some(result) => Answer::text(format!("a heard: {}", tell_answer(&result))),
        }),
        "b" => Some(match tool_results(rec).pop() {
            None => Answer::text("Asking a back.").with_tool_use(
                "toolu_b_1",
                TEAM_TELL,
                json!({"to": "a", "message": "what is the answer?"}),
            ),
            Some(result) => Answer::text(format!(
                "b could not ask a (error={}): {}",
                result.is_error, result.text
            )),
        }),
        _ => None,
    });
    let r = env.router();
    let server = env.serve(&r).await;

    let (t1, took) = env.tell_a(&r, "Find out the answer.").await;
    eprintln!("person -> a -> b -> (refused) answered in {took:?}");
    ensure!(
        env,
        t1.state == TellState::Answered,
        "the tell person -> a: {t1:?}"
    );
    let answer = t1.answer.clone().unwrap_or_default();
    ensure!(
        env,
        answer.starts_with("a heard: b could not ask a (error=true): ")
            && answer.contains("a -> b -> a is a loop"),
        "a's answer: {answer:?}"
    );

    // b's agent got the refusal as an error tool result.
    let requests = env.api.message_requests();
    let from_b: Vec<&Recorded> = requests
        .iter()
        .filter(|q| agent_of(q) == Some("b"))
        .collect();
    let from_a: Vec<&Recorded> = requests
        .iter()
        .filter(|q| agent_of(q) == Some("a"))
        .collect();
    ensure!(
        env,
        from_a.len() == 2 && from_b.len() == 2 && requests.len() == 4,
        "expected 2 requests from each agent, got a: {}, b: {}, all: {}",
        from_a.len(),
        from_b.len(),
        requests.len()
    );
    let refusal = tool_results(from_b[1]);
    ensure!(
        env,
        refusal.len() == 1
            && refusal[0].tool_use_id == "toolu_b_1"
            && refusal[0].is_error
            && refusal[0].text.contains("refused: ")
            && refusal[0].text.contains("person -> a -> b -> a is a loop"),
        "b's agent got {refusal:?}"
    );
    eprintln!("b's agent was told: {}", refusal[0].text);
    let relayed = tool_results(from_a[1]);
    ensure!(
        env,
        relayed.len() == 1
            && !relayed[0].is_error
            && tell_answer(&relayed[0]).contains("is a loop"),
        "a's agent got {relayed:?}"
    );

    // SQLite: person -> a and a -> b answered and chained; nothing from b to a was stored.
    let ab_tells = r.report("a", "b", 10).expect("report a -> b");
    assert_eq!(ab_tells.len(), 1, "{ab_tells:?}");
    assert_eq!(ab_tells[0].state, TellState::Answered, "{:?}", ab_tells[0]);
    assert_eq!(
        ab_tells[0].parent_tell_id.as_deref(),
        Some(t1.tell_id.as_str())
    );
    assert!(
        r.report("b", "a", 10).expect("report b -> a").is_empty(),
        "the refused tell is not stored"
    );
    assert!(
        r.manager().get("b", "a").expect("get").is_none(),
        "no session b -> a"
    );
    for (from, to) in [("person", "a"), ("a", "b")] {
        assert_eq!(r.queue_len(from, to), 0, "{from} -> {to} has open tells");
        let s = env.session(&r, from, to);
        assert_eq!(s.current_tell_id, None, "{s:?}");
        assert_eq!(s.process_state, ProcessState::Idle, "{s:?}");
    }

    env.shutdown(server, &r).await;
}

// ---------------------------------------------------------------------------------------------
// Long waits between agents: a tool call slower than Claude Code's default MCP limit (60 s),
// and a caller kept alive while it waits on a tell of its own.

/// a's agent asks b's agent (via `team_tell`, default wait five minutes), and b needs 63 s.
/// Claude Code's HTTP MCP transport gives up on a request after 60 s unless `MCP_TOOL_TIMEOUT`
/// or the server's `timeout` in the MCP config says otherwise: the config Switchboard writes
/// for its agents sets `timeout`, so a gets b's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tell_slower_than_a_minute_still_reaches_the_calling_agent() {
    let env = Env::with("response_timeout = \"100s\"", None).await;
    env.api.respond_with(|rec| match agent_of(rec)? {
        "a" => Some(match tool_results(rec).pop() {
            None => Answer::text("Let me ask team b.").with_tool_use(
                "toolu_a_1",
                TEAM_TELL,
                json!({"to": "b", "message": "what is the answer?"}),
            ),
            Some(result) if result.is_error => {
                Answer::text(format!("a's tool call failed: {}", result.text))
            }
            Some(result) => Answer::text(format!("a relays: {}", tell_answer(&result))),
        }),
        "b" => Some(Answer::text("b says 42").with_delay(Duration::from_secs(63))),
        _ => None,
    });
    let r = env.router();
    let server = env.serve(&r).await;
    let (t1, took) = env.tell_a(&r, "Ask team b for the answer.").await;
    eprintln!("slow callee: answered in {took:?}");
    ensure!(
        env,
        t1.answer.as_deref() == Some("a relays: b says 42"),
        "the tell person -> a: {t1:?}"
    );
    env.shutdown(server, &r).await;
}

/// a's agent waits for b's answer, and prints nothing meanwhile (a turn waiting on a tool
/// call is silent on stdout). b works for ~25 s, visibly (a tool call every 6 s, so b itself
/// never looks stalled). Switchboard's stall detector (`settings.response_timeout`, here 15 s)
/// must know a is waiting on a tell of its own and leave it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_waiting_for_a_nested_tell_is_not_killed_as_stalled() {
    let env = Env::with("response_timeout = \"15s\"", Some(MCP_TOOL_TIMEOUT_MS)).await;
    env.api.respond_with(|rec| match agent_of(rec)? {
        "a" => Some(match tool_results(rec).pop() {
            None => Answer::text("Let me ask team b.").with_tool_use(
                "toolu_a_1",
                TEAM_TELL,
                json!({"to": "b", "message": "what is the answer?"}),
            ),
            Some(result) => Answer::text(format!("a relays: {}", tell_answer(&result))),
        }),
        "b" => {
            let rounds = rec
                .messages()
                .iter()
                .filter(|m| m["role"] == "assistant")
                .count();
            Some(if rounds < 4 {
                Answer::text("Looking around.")
                    .with_tool_use(
                        &format!("toolu_b_{rounds}"),
                        "mcp__switchboard__team_teams",
                        json!({}),
                    )
                    .with_delay(Duration::from_secs(6))
            } else {
                Answer::text("b says 42")
            })
        }
        _ => None,
    });
    let r = env.router();
    let server = env.serve(&r).await;
    let (t1, took) = env.tell_a(&r, "Ask team b for the answer.").await;
    eprintln!("busy callee: answered in {took:?}");
    ensure!(
        env,
        t1.answer.as_deref() == Some("a relays: b says 42"),
        "the tell person -> a: {t1:?}"
    );
    env.shutdown(server, &r).await;
}

// ---------------------------------------------------------------------------------------------
// Switchboard registered in the teams' own Claude Code config, the CLI without a server, and
// `switchboard mcp install`.

/// The switchboard binary.
const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// The tiny stdio MCP server (stdlib Python): one tool, `echo`.
fn echo_server() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp/echo_server.py")
        .display()
        .to_string()
}

/// Every `tool_result` the stand-in saw from `team`'s agent, by tool_use id.
fn results_of(env: &Env, team: &str) -> std::collections::HashMap<String, ToolResult> {
    env.api
        .message_requests()
        .iter()
        .filter(|q| agent_of(q) == Some(team))
        .flat_map(tool_results)
        .map(|r| (r.tool_use_id.clone(), r))
        .collect()
}

/// Team b's folder registers Switchboard as b the way the README used to say, under
/// `switchboard` and under other names, in local, project and user scope, stdio and HTTP,
/// with `allowed_tools`
/// letting those run without a prompt; it also registers another MCP server (`echo`). When b's
/// agent is spawned to answer a (person -> a -> b), Switchboard under another name is not
/// there (so b cannot tell a as the plain team, outside the chain); its chained `switchboard`
/// refuses a -> b -> a as a loop; `echo` still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_spawned_agent_reaches_switchboard_only_through_its_chain() {
    let env = Env::build(
        "response_timeout = \"100s\"",
        Some(MCP_TOOL_TIMEOUT_MS),
        &[(
            "b",
            "allowed_tools = [\"mcp__sb\", \"mcp__sbproj\", \"mcp__sbuser\", \"mcp__sbhttp\", \
             \"mcp__echo\"]",
        )],
    )
    .await;
    let calls: [(&str, &str, Value); 6] = [
        (
            "toolu_b_sb",
            "mcp__sb__team_tell",
            json!({"to": "a", "message": "via sb"}),
        ),
        (
            "toolu_b_proj",
            "mcp__sbproj__team_tell",
            json!({"to": "a", "message": "via sbproj"}),
        ),
        (
            "toolu_b_user",
            "mcp__sbuser__team_tell",
            json!({"to": "a", "message": "via sbuser"}),
        ),
        (
            "toolu_b_http",
            "mcp__sbhttp__team_tell",
            json!({"to": "a", "message": "via sbhttp"}),
        ),
        (
            "toolu_b_chain",
            TEAM_TELL,
            json!({"to": "a", "message": "via the chain"}),
        ),
        ("toolu_b_echo", "mcp__echo__echo", json!({"text": "ping"})),
    ];
    env.api.respond_with(move |rec| match agent_of(rec)? {
        "a" => Some(match tool_results(rec).pop() {
            None if rec.last_user_text() == "Ask team b." => Answer::text("Asking b.")
                .with_tool_use(
                    "toolu_a_1",
                    TEAM_TELL,
                    json!({"to": "b", "message": "please check"}),
                ),
            // Only reached when b gets through to a outside the chain.
            None => Answer::text("a answers b directly"),
            Some(result) => Answer::text(format!("a relays: {}", tell_answer(&result))),
        }),
        "b" => {
            let round = rec
                .messages()
                .iter()
                .filter(|m| m["role"] == "assistant")
                .count();
            Some(match calls.get(round) {
                Some((id, name, input)) => {
                    Answer::text("Trying.").with_tool_use(id, name, input.clone())
                }
                None => Answer::text("b is done"),
            })
        }
        _ => None,
    });
    let r = env.router();
    let server = env.serve(&r).await;

    let cfg = env.config_path().display().to_string();
    let stdio_b = ["--", BIN, "--config", &cfg, "serve", "--stdio", "--as", "b"];
    let url_b = format!("{}?team=b", server.url());
    let echo = echo_server();
    let mut add = vec!["add", "-s", "local", "sb"];
    add.extend_from_slice(&stdio_b);
    env.claude_mcp("b", &add).await;
    let mut add = vec!["add", "-s", "project", "sbproj"];
    add.extend_from_slice(&stdio_b);
    env.claude_mcp("b", &add).await;
    let mut add = vec!["add", "-s", "user", "sbuser"];
    add.extend_from_slice(&stdio_b);
    env.claude_mcp("b", &add).await;
    env.claude_mcp(
        "b",
        &[
            "add",
            "-s",
            "local",
            "--transport",
            "http",
            "sbhttp",
            &url_b,
        ],
    )
    .await;
    env.claude_mcp(
        "b",
        &[
            "add",
            "-s",
            "project",
            "--transport",
            "http",
            "switchboard",
            &url_b,
        ],
    )
    .await;
    env.claude_mcp(
        "b",
        &[
            "add",
            "-s",
            "local",
            "echo",
            "-e",
            "ECHO_SERVER_NAME=b-echo",
            "--",
            "python3",
            &echo,
        ],
    )
    .await;

    let (t1, took) = env.tell_a(&r, "Ask team b.").await;
    eprintln!("person -> a -> b answered in {took:?}");
    let results = results_of(&env, "b");
    for id in ["toolu_b_sb", "toolu_b_proj", "toolu_b_user", "toolu_b_http"] {
        let res = results.get(id);
        ensure!(
            env,
            res.is_some_and(|x| x.is_error && x.text.contains("No such tool available")),
            "b's agent reached Switchboard outside its chain ({id}): {res:?}"
        );
    }
    let chain = results.get("toolu_b_chain");
    ensure!(
        env,
        chain.is_some_and(|x| x.is_error && x.text.contains("a -> b -> a is a loop")),
        "b's chained tell back to a: {chain:?}"
    );
    let echoed = results.get("toolu_b_echo");
    ensure!(
        env,
        echoed.is_some_and(|x| !x.is_error && x.text.contains("echo: ping (from b-echo)")),
        "b's own MCP server: {echoed:?}"
    );
    ensure!(
        env,
        t1.answer.as_deref() == Some("a relays: b is done"),
        "the tell person -> a: {t1:?}"
    );
    assert!(
        r.report("b", "a", 10).expect("report b -> a").is_empty(),
        "no tell b -> a"
    );
    assert!(
        r.manager().get("b", "a").expect("get").is_none(),
        "no session b -> a"
    );
    // What b's agent was given: Switchboard's chained server and b's echo server, nothing else.
    let ab = env.session(&r, "a", "b");
    let file = env.root().join(format!("data/mcp/{}.json", ab.session_id));
    let mcp: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("MCP config")).expect("json");
    let names: Vec<&String> = mcp["mcpServers"]
        .as_object()
        .expect("mcpServers")
        .keys()
        .collect();
    assert_eq!(names, ["echo", "switchboard"], "{mcp}");
    assert_eq!(mcp["mcpServers"]["switchboard"]["url"], server.url());
    let launch = ab.launch_command.clone().unwrap_or_default();
    assert!(launch.contains("--strict-mcp-config"), "{launch}");

    env.shutdown(server, &r).await;
}

/// `switchboard tell` with no server running runs a's agent itself; that agent still gets
/// Switchboard's tools (from the command's private endpoint), and its tell to b is chained.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_started_by_the_cli_tells_another_team() {
    let env = Env::new().await;
    env.api.respond_with(|rec| match agent_of(rec)? {
        "a" => Some(match tool_results(rec).pop() {
            None => Answer::text("Let me ask team b.").with_tool_use(
                "toolu_a_1",
                TEAM_TELL,
                json!({"to": "b", "message": "what is the answer?"}),
            ),
            Some(result) => Answer::text(format!(
                "a relays (error={}): {}",
                result.is_error,
                tell_answer(&result)
            )),
        }),
        "b" => Some(Answer::text("b says 42")),
        _ => None,
    });
    let cfg = env.config_path().display().to_string();
    let (ok, out, err) = env
        .run(
            BIN,
            &["--config", &cfg, "tell", "person", "a", "Ask team b."],
            env.root(),
            TELL_LIMIT,
        )
        .await;
    ensure!(
        env,
        ok && out.trim() == "a relays (error=false): b says 42",
        "switchboard tell: ok={ok}\nstdout: {out}\nstderr: {err}"
    );
    env.assert_no_agents().await;
    let r = env.router();
    let pa = r.report("person", "a", 10).expect("report");
    let ab = r.report("a", "b", 10).expect("report");
    assert_eq!((pa.len(), ab.len()), (1, 1), "{pa:?} {ab:?}");
    assert_eq!(ab[0].state, TellState::Answered, "{:?}", ab[0]);
    assert_eq!(ab[0].answer.as_deref(), Some("b says 42"));
    assert_eq!(
        ab[0].parent_tell_id.as_deref(),
        Some(pa[0].tell_id.as_str()),
        "the tell a -> b is chained to person -> a"
    );
    let launch = env
        .session(&r, "person", "a")
        .launch_command
        .clone()
        .unwrap_or_default();
    assert!(
        launch.contains("--mcp-config") && launch.contains("mcp__switchboard"),
        "{launch}"
    );
}

/// `switchboard mcp install b` registers Switchboard in b's Claude Code (the real `claude mcp`
/// sees it and connects to it), twice without failing; the registration check says OK, and
/// names a wrong registration; `--http` switches to the server's URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mcp_install_registers_a_team_idempotently() {
    use switchboard::agent::claude_mcp::{check_registration, Expected};
    let env = Env::new().await;
    let cfg = env.config_path().display().to_string();
    let install = |extra: &'static [&'static str]| {
        let mut args = vec!["--config", cfg.as_str(), "mcp", "install", "b"];
        args.extend_from_slice(extra);
        let env = &env;
        async move {
            let (ok, out, err) = env
                .run(BIN, &args, env.root(), Duration::from_secs(60))
                .await;
            assert!(ok, "mcp install {extra:?} failed:\n{out}\n{err}");
            out
        }
    };
    let first = install(&[]).await;
    assert!(
        first.starts_with("registered switchboard for team b"),
        "{first}"
    );
    let second = install(&[]).await;
    assert!(second.starts_with("already registered"), "{second}");

    let got = env.claude_mcp("b", &["get", "switchboard"]).await;
    assert!(
        got.contains("Local config")
            && got.contains("Connected")
            && got.contains(&format!("--config {cfg} serve --stdio --as b")),
        "{got}"
    );
    let team = env.config.team("b").expect("team b").clone();
    let expected = Expected {
        team: "b".into(),
        exe: PathBuf::from(BIN),
        config: env.config_path(),
    };
    let report = check_registration(&team, &expected).expect("check");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.registrations.len(), 1, "{report:?}");

    // A registration acting as another team is named.
    env.claude_mcp(
        "b",
        &[
            "add", "-s", "project", "sb-a", "--", BIN, "--config", &cfg, "serve", "--stdio",
            "--as", "a",
        ],
    )
    .await;
    let report = check_registration(&team, &expected).expect("check");
    assert!(
        !report.ok
            && report.problems[0].contains("\"sb-a\"")
            && report.problems[0].contains("acts as team \"a\""),
        "{report:?}"
    );
    std::fs::remove_file(env.root().join("b/.mcp.json")).expect("remove .mcp.json");

    let http = install(&["--http", "--url", "http://127.0.0.1:7717/mcp"]).await;
    assert!(http.starts_with("updated the registration"), "{http}");
    let got = env.claude_mcp("b", &["get", "switchboard"]).await;
    assert!(got.contains("http://127.0.0.1:7717/mcp?team=b"), "{got}");
    assert!(check_registration(&team, &expected).expect("check").ok);
    // It carries the server's token (made now: no server ran yet), which the server will use.
    let token_file = env.root().join("data/server.token");
    let token = std::fs::read_to_string(&token_file).expect("server.token made by install");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&token_file).expect("stat").permissions()
        ) & 0o777,
        0o600
    );
    let claude_json: Value = serde_json::from_str(
        &std::fs::read_to_string(env.root().join("home/.claude.json")).expect(".claude.json"),
    )
    .expect("json");
    let key = switchboard::agent::claude_mcp::project_key(&env.root().join("b"));
    let entry = &claude_json["projects"][key.display().to_string()]["mcpServers"]["switchboard"];
    assert_eq!(
        entry["headers"]["Authorization"],
        format!("Bearer {}", token.trim()),
        "{entry}"
    );
    // In a project's .mcp.json (often committed) it is a reference, never the token.
    install(&[
        "--http",
        "--url",
        "http://127.0.0.1:7717/mcp",
        "--scope",
        "project",
    ])
    .await;
    let text = std::fs::read_to_string(env.root().join("b/.mcp.json")).expect(".mcp.json");
    assert!(
        text.contains("Bearer ${SWITCHBOARD_TOKEN}") && !text.contains(token.trim()),
        "{text}"
    );
    std::fs::remove_file(env.root().join("b/.mcp.json")).expect("remove .mcp.json");

    // Teams in one git repository share Claude Code's local scope: a local registration would
    // act as one team in both folders, so it is refused; the project scope works.
    let (ok, out, err) = env
        .run(
            "git",
            &["init", "-q", "."],
            env.root(),
            Duration::from_secs(30),
        )
        .await;
    assert!(ok, "git init: {out}{err}");
    let args = ["--config", cfg.as_str(), "mcp", "install", "a"];
    let (ok, _, err) = env
        .run(BIN, &args, env.root(), Duration::from_secs(60))
        .await;
    assert!(
        !ok && err.contains("shares Claude Code's local scope") && err.contains("--scope project"),
        "{err}"
    );
    let args = [
        "--config",
        cfg.as_str(),
        "mcp",
        "install",
        "a",
        "--scope",
        "project",
    ];
    for expect in ["registered", "already registered"] {
        let (ok, out, err) = env
            .run(BIN, &args, env.root(), Duration::from_secs(60))
            .await;
        assert!(ok && out.starts_with(expect), "{out}{err}");
    }
    let mcp_json: Value = serde_json::from_str(
        &std::fs::read_to_string(env.root().join("a/.mcp.json")).expect(".mcp.json of a"),
    )
    .expect("json");
    assert_eq!(
        mcp_json["mcpServers"]["switchboard"]["args"],
        json!(["--config", cfg, "serve", "--stdio", "--as", "a"])
    );
    let team_a = env.config.team("a").expect("team a").clone();
    let expected_a = Expected {
        team: "a".into(),
        ..expected
    };
    let report = check_registration(&team_a, &expected_a).expect("check");
    assert!(report.ok, "{report:?}");
}

/// With a bearer token on the server, a spawned Claude Code still tells another team, with only
/// its own credential: the server's token is not in its MCP config, and the config is gone once
/// the agent stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_agent_needs_only_its_own_credential() {
    const MASTER: &str = "master-token-for-claude-0123456789";
    let env = Env::new().await;
    env.api.respond_with(|rec| match agent_of(rec)? {
        "a" => Some(match tool_results(rec).pop() {
            None => Answer::text("Let me ask team b.").with_tool_use(
                "toolu_a_1",
                TEAM_TELL,
                json!({"to": "b", "message": "what is the answer?"}),
            ),
            Some(result) => Answer::text(format!("a relays: {}", tell_answer(&result))),
        }),
        "b" => Some(Answer::text("b says 42")),
        _ => None,
    });
    let r = env.router();
    let server = env.serve_with_token(&r, Some(MASTER)).await;
    let (t1, _) = env.tell_a(&r, "Ask team b for the answer.").await;
    ensure!(
        env,
        t1.answer.as_deref() == Some("a relays: b says 42"),
        "the tell person -> a: {t1:?}"
    );
    let pa = env.session(&r, "person", "a");
    let file = env.root().join(format!("data/mcp/{}.json", pa.session_id));
    let text = std::fs::read_to_string(&file).expect("a's MCP config");
    assert!(!text.contains(MASTER), "{text}");
    assert!(text.contains("X-Switchboard-Agent"), "{text}");
    env.shutdown(server, &r).await;
    assert!(
        !file.exists(),
        "a's MCP config is still there after it stopped"
    );
}
