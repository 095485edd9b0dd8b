//! The real Codex CLI (npm `@openai/codex@0.171.0`, installed into `.tools/codex` by
//! `scripts/test.sh`, or `$SWITCHBOARD_TEST_CODEX`) run as `codex app-server` with the launch,
//! the `config.toml` and the JSON-RPC messages of `switchboard::agent::codex`, against the local
//! stand-in of the OpenAI Responses API (`tests/fake_api/openai.rs`); its output decoded by
//! `codex::decode`. What a user would notice: answers, a conversation that carries on in a new
//! process, MCP tool calls (asked for approval, then run), tokens, an interrupt, and a model API
//! that is down ending the turn with a clear error after a bounded number of tries.

mod fake_api;
#[path = "support/agent_clis.rs"]
mod pinned;
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fake_api::openai::{self, Answer, OpenAiApi};
use serde_json::{json, Value};
use switchboard::agent::activity::{Activity, ApprovalKind, Tokens, TurnOutcome, TurnTally};
use switchboard::agent::adapter::SwitchboardServer;
use switchboard::agent::codex::{self, CodexSetup, Provider};
use switchboard::agent::event::read_line_bounded;
use tempfile::TempDir;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// How long one step may take (generous: a loaded machine, a cold start of the CLI).
const STEP: Duration = Duration::from_secs(90);
/// How long one whole turn may take.
const TURN: Duration = Duration::from_secs(180);

/// A team folder and a private CODEX_HOME and HOME, removed at drop.
struct Team {
    dir: TempDir,
}

impl Team {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["project", "codex-home", "home"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        Self { dir }
    }

    fn project(&self) -> PathBuf {
        self.dir.path().join("project")
    }

    /// The setup of a team whose provider is `base_url`, with `retries` retries.
    fn setup(&self, base_url: &str, retries: u32) -> CodexSetup {
        let mut setup = CodexSetup::new(self.project(), self.dir.path().join("codex-home"));
        setup.program = pinned::codex();
        setup.model = Some("gpt-5.5".into());
        setup.max_retries = retries;
        setup.provider = Some(Provider {
            id: "standin".into(),
            base_url: base_url.to_string(),
            env_key: "STANDIN_API_KEY".into(),
        });
        setup.env.insert("STANDIN_API_KEY".into(), "sk-test".into());
        setup.env.insert(
            "HOME".into(),
            self.dir.path().join("home").display().to_string(),
        );
        setup
    }

    /// Writes the team's config.toml, with `extra` TOML after it.
    fn write_config(&self, setup: &CodexSetup, extra: &str) {
        let text = format!("{}\n{extra}", codex::config_toml(setup));
        std::fs::write(setup.codex_home.join("config.toml"), text).expect("write config.toml");
    }
}

/// A running `codex app-server`.
struct AppServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr_log: PathBuf,
    next_id: u64,
    /// Everything decoded so far, in order.
    seen: Vec<Activity>,
}

impl AppServer {
    async fn start(setup: &CodexSetup, log_dir: &Path) -> Self {
        Self::start_with(setup, None, log_dir).await
    }

    async fn start_with(
        setup: &CodexSetup,
        switchboard: Option<&SwitchboardServer>,
        log_dir: &Path,
    ) -> Self {
        let spec = codex::launch(setup, switchboard);
        let stderr_log = log_dir.join(format!("codex-{}.stderr", uuid::Uuid::new_v4()));
        let stderr = std::fs::File::create(&stderr_log).expect("stderr log");
        let mut child = tokio::process::Command::new(&spec.program)
            .env_clear()
            .envs(spec.environment())
            .args(&spec.args)
            .current_dir(&spec.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", spec.program));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut server = Self {
            child,
            stdin,
            stdout,
            stderr_log,
            next_id: 1,
            seen: Vec::new(),
        };
        // The readiness probe: answered without a model call.
        server.request(codex::initialize).await.expect("initialize");
        server.send(&codex::initialized()).await;
        server
    }

    async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to codex");
        self.stdin.flush().await.expect("flush");
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// The next decoded line (panics at end of output or after [`STEP`]).
    async fn next(&mut self) -> Activity {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(
            STEP,
            read_line_bounded(&mut self.stdout, &mut buf, 16 << 20),
        )
        .await;
        let Ok(Ok(Some(Ok(())))) = read else {
            panic!(
                "codex app-server gave no line ({read:?}); seen {:?}; stderr: {}",
                self.seen,
                self.stderr()
            );
        };
        match codex::decode(&buf) {
            Ok(a) => {
                self.seen.push(a.clone());
                a
            }
            Err(bad) => panic!("codex printed a line that is not JSON: {bad}"),
        }
    }

    /// Sends the request `make(id)` and waits for its answer.
    async fn request(&mut self, make: impl FnOnce(u64) -> String) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&make(id)).await;
        loop {
            if let Activity::Response { id: got, result } = self.next().await {
                if got == json!(id) {
                    return result;
                }
            }
        }
    }

    async fn new_thread(&mut self, cwd: &Path) -> String {
        let cwd = cwd.display().to_string();
        let result = self
            .request(|id| codex::thread_start(id, &cwd))
            .await
            .expect("thread/start");
        codex::thread_id_of(&result).expect("a thread id")
    }

    /// Runs one turn to its end; permission requests get `allow`.
    async fn turn(&mut self, thread: &str, text: &str, allow: bool) -> TurnTally {
        self.request(|id| codex::turn_start(id, thread, text))
            .await
            .expect("turn/start");
        self.finish_turn(allow).await
    }

    /// Reads to the end of the turn (panics after [`TURN`]: an agent that retries without
    /// end keeps printing, so the per-line bound alone would not end the test).
    async fn finish_turn(&mut self, allow: bool) -> TurnTally {
        let mut tally = TurnTally::default();
        let run = async {
            loop {
                let a = self.next().await;
                if let Activity::Approval { request, kind, .. } = &a {
                    let answer = codex::approval_answer(request, kind, allow);
                    self.send(&answer).await;
                }
                tally.add(&a);
                if tally.outcome.is_some() {
                    return;
                }
            }
        };
        if tokio::time::timeout(TURN, run).await.is_err() {
            panic!("the turn did not end within {TURN:?}: {tally:?}");
        }
        tally
    }
}

async fn stand_in() -> OpenAiApi {
    openai::start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_answers_with_text_and_reports_tokens() {
    let api = stand_in().await;
    api.push(Answer::text("Hello from Codex's model.").with_usage(1200, 200, 34));
    let team = Team::new();
    let setup = team.setup(&openai::base_url(&api), 1);
    team.write_config(&setup, "");
    let mut codex = AppServer::start(&setup, team.dir.path()).await;
    assert!(
        api.requests().is_empty(),
        "starting and the readiness probe make no model call"
    );
    let thread = codex.new_thread(&team.project()).await;
    let tally = codex.turn(&thread, "Say hello.", true).await;
    assert_eq!(tally.outcome, Some(TurnOutcome::Completed), "{tally:?}");
    assert_eq!(tally.answer(), Some("Hello from Codex's model."));
    assert_eq!(
        tally.tokens,
        Tokens {
            input: 1200,
            cached: 200,
            output: 34
        }
    );
    let calls = api.model_calls();
    assert_eq!(calls.len(), 1, "one model call for one plain answer");
    assert_eq!(openai::last_user_text(&calls[0]), "Say hello.");
    assert_eq!(calls[0].header("authorization"), Some("Bearer sk-test"));
    assert!(
        codex
            .seen
            .iter()
            .any(|a| matches!(a, Activity::Session { id } if *id == thread)),
        "the thread id is reported: {:?}",
        codex.seen
    );
    // The transcript is in the team's own CODEX_HOME.
    let sessions = codex::transcripts_dir(&setup);
    let found = walk(&sessions)
        .into_iter()
        .any(|p| p.to_string_lossy().contains(&thread));
    assert!(
        found,
        "no transcript of {thread} under {}",
        sessions.display()
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_resumed_in_a_new_process_keeps_its_context() {
    let api = stand_in().await;
    api.push(Answer::text("Noted: the code word is ORCHID."));
    api.push(Answer::text("The code word was ORCHID."));
    let team = Team::new();
    let setup = team.setup(&openai::base_url(&api), 1);
    team.write_config(&setup, "");
    let thread = {
        let mut first = AppServer::start(&setup, team.dir.path()).await;
        let thread = first.new_thread(&team.project()).await;
        let t = first
            .turn(&thread, "Remember the code word ORCHID.", true)
            .await;
        assert_eq!(t.outcome, Some(TurnOutcome::Completed), "{t:?}");
        thread
    }; // the first process is killed here
    let mut second = AppServer::start(&setup, team.dir.path()).await;
    let cwd = team.project().display().to_string();
    let resumed = second
        .request(|id| codex::thread_resume(id, &thread, &cwd))
        .await
        .expect("thread/resume");
    assert_eq!(
        codex::thread_id_of(&resumed).as_deref(),
        Some(thread.as_str())
    );
    let t = second.turn(&thread, "What was the code word?", true).await;
    assert_eq!(t.answer(), Some("The code word was ORCHID."));
    let calls = api.model_calls();
    let last = calls.last().expect("a call");
    assert!(
        openai::has_text(last, "user", "Remember the code word ORCHID.")
            && openai::has_text(last, "assistant", "Noted: the code word is ORCHID."),
        "the resumed turn sends the earlier exchange: {:?}",
        openai::input_texts(last)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_tool_call_asks_for_approval_then_runs() {
    let api = stand_in().await;
    api.push(Answer::text("Calling echo.").with_mcp_call(
        "call_echo_1",
        "echo",
        "echo",
        json!({"text": "ping"}),
    ));
    api.push(Answer::text("The echo said pong-ish."));
    let team = Team::new();
    let setup = team.setup(&openai::base_url(&api), 1);
    let (python, script) = pinned::echo_server();
    let log = team.dir.path().join("echo.log");
    team.write_config(
        &setup,
        &format!(
            "[mcp_servers.echo]\ncommand = {}\nargs = [{}]\nenv = {{ ECHO_SERVER_LOG = {} }}\n",
            toml_str(&python),
            toml_str(&script),
            toml_str(&log.display().to_string())
        ),
    );
    let mut codex = AppServer::start(&setup, team.dir.path()).await;
    let thread = codex.new_thread(&team.project()).await;
    let tally = codex.turn(&thread, "Use the echo tool.", true).await;
    assert_eq!(tally.outcome, Some(TurnOutcome::Completed), "{tally:?}");
    let approval = codex
        .seen
        .iter()
        .find_map(|a| match a {
            Activity::Approval {
                kind, tool, input, ..
            } => Some((kind.clone(), tool.clone(), input.clone())),
            _ => None,
        })
        .expect("codex asked to run the MCP tool");
    assert_eq!(approval.0, ApprovalKind::McpTool);
    assert_eq!(approval.1, "echo.echo");
    assert!(approval.2.contains("ping"), "{approval:?}");
    assert_eq!(
        tally.tool_uses,
        [(
            "call_echo_1".to_string(),
            "echo.echo".to_string(),
            r#"{"text":"ping"}"#.to_string()
        )]
    );
    assert_eq!(tally.tool_results.len(), 1);
    let (id, ok, output) = &tally.tool_results[0];
    assert_eq!(id, "call_echo_1");
    assert!(*ok, "{output}");
    assert!(output.contains("echo: ping"), "{output}");
    assert_eq!(tally.answer(), Some("The echo said pong-ish."));
    let calls = api.model_calls();
    // Codex offers MCP tools up front, or (models with tool search, like gpt-5.5) behind its
    // `tool_search` tool; either way a call of the namespaced tool runs.
    let offered = openai::tool_names(&calls[0]);
    assert!(
        offered
            .iter()
            .any(|t| t == "mcp__echo__echo" || t == "tool_search"),
        "{offered:?}"
    );
    assert!(
        openai::has_text(&calls[1], "tool", "echo: ping"),
        "the tool's result goes back to the model: {:?}",
        openai::input_texts(&calls[1])
    );
    assert!(std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("tools/call"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_tool_call_does_not_run() {
    let api = stand_in().await;
    api.push(Answer::text("Calling echo.").with_mcp_call(
        "call_echo_2",
        "echo",
        "echo",
        json!({"text": "secret"}),
    ));
    api.push(Answer::text("I was not allowed."));
    let team = Team::new();
    let setup = team.setup(&openai::base_url(&api), 1);
    let (python, script) = pinned::echo_server();
    let log = team.dir.path().join("echo.log");
    team.write_config(
        &setup,
        &format!(
            "[mcp_servers.echo]\ncommand = {}\nargs = [{}]\nenv = {{ ECHO_SERVER_LOG = {} }}\n",
            toml_str(&python),
            toml_str(&script),
            toml_str(&log.display().to_string())
        ),
    );
    let mut codex = AppServer::start(&setup, team.dir.path()).await;
    let thread = codex.new_thread(&team.project()).await;
    let tally = codex.turn(&thread, "Use the echo tool.", false).await;
    assert_eq!(tally.outcome, Some(TurnOutcome::Completed), "{tally:?}");
    assert!(
        tally.tool_results.iter().all(|(_, ok, _)| !ok),
        "{:?}",
        tally.tool_results
    );
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("tools/call"),
        "the echo server got no call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_ends_the_turn_without_a_model_call() {
    let api = stand_in().await;
    api.push(Answer::text("too late").with_delay(Duration::from_secs(120)));
    api.push(Answer::text("Back again."));
    let team = Team::new();
    let setup = team.setup(&openai::base_url(&api), 1);
    team.write_config(&setup, "");
    let mut codex = AppServer::start(&setup, team.dir.path()).await;
    let thread = codex.new_thread(&team.project()).await;
    let started = codex
        .request(|id| codex::turn_start(id, &thread, "Take your time."))
        .await
        .expect("turn/start");
    let turn = codex::turn_id_of(&started).expect("a turn id");
    // The model call is under way (held by the stand-in).
    api.wait_for_requests(1, STEP).await;
    let before = api.model_calls().len();
    codex
        .request(|id| codex::turn_interrupt(id, &thread, &turn))
        .await
        .expect("turn/interrupt");
    let tally = codex.finish_turn(true).await;
    assert_eq!(tally.outcome, Some(TurnOutcome::Interrupted), "{tally:?}");
    assert_eq!(
        api.model_calls().len(),
        before,
        "no model call to interrupt"
    );
    // The thread takes the next turn.
    let next = codex.turn(&thread, "Still there?", true).await;
    assert_eq!(next.answer(), Some("Back again."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_api_that_fails_ends_the_turn_after_bounded_tries() {
    let api = stand_in().await;
    api.set_default(Answer::error(500, "the model is down"));
    let team = Team::new();
    let setup = team.setup(&openai::base_url(&api), 1);
    team.write_config(&setup, "");
    let mut codex = AppServer::start(&setup, team.dir.path()).await;
    let thread = codex.new_thread(&team.project()).await;
    let tally = codex.turn(&thread, "Anyone there?", true).await;
    match &tally.outcome {
        Some(TurnOutcome::Failed(why)) => assert!(!why.is_empty(), "{tally:?}"),
        other => panic!("the turn did not fail: {other:?} {tally:?}"),
    }
    let tries = api.model_calls().len();
    // request_max_retries = stream_max_retries = 1: at most 2 x 2 requests.
    assert!((2..=4).contains(&tries), "{tries} model calls");
    // The process is still up and answers without a model call.
    codex
        .request(|id| codex::thread_resume(id, &thread, &team.project().display().to_string()))
        .await
        .expect("still answering");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_api_that_is_unreachable_ends_the_turn() {
    // A port nobody listens on: bind, take the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let team = Team::new();
    let setup = team.setup(&format!("http://127.0.0.1:{port}/v1"), 1);
    team.write_config(&setup, "");
    let mut codex = AppServer::start(&setup, team.dir.path()).await;
    let thread = codex.new_thread(&team.project()).await;
    let tally = codex.turn(&thread, "Anyone there?", true).await;
    assert!(
        matches!(&tally.outcome, Some(TurnOutcome::Failed(_))),
        "{tally:?}"
    );
    assert!(codex.child.try_wait().expect("try_wait").is_none());
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_summarises_the_thread_in_a_turn_of_its_own() {
    let api = stand_in().await;
    api.push(Answer::text("Noted: the code word is ORCHID."));
    api.push(Answer::text("Summary: the user set the code word ORCHID."));
    let team = Team::new();
    let setup = team.setup(&openai::base_url(&api), 1);
    team.write_config(&setup, "");
    let mut codex = AppServer::start(&setup, team.dir.path()).await;
    let thread = codex.new_thread(&team.project()).await;
    codex
        .turn(&thread, "Remember the code word ORCHID.", true)
        .await;
    codex
        .request(|id| codex::compact(id, &thread))
        .await
        .expect("thread/compact/start");
    let tally = codex.finish_turn(true).await;
    assert_eq!(tally.outcome, Some(TurnOutcome::Completed), "{tally:?}");
    assert!(
        codex.seen.contains(&Activity::Compacted),
        "{:?}",
        codex.seen
    );
    let calls = api.model_calls();
    assert_eq!(calls.len(), 2, "one model call for the summary");
    assert!(openai::has_text(
        &calls[1],
        "user",
        "Remember the code word ORCHID."
    ));
}

/// Switchboard's own endpoint (a real `switchboard serve --http`), wired by
/// `codex::launch`: its URL in `-c`, the bearer token and the calling team as header values
/// from the environment. A call of `team_teams` lists the teams; with a wrong token the
/// server refuses and no such answer comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboards_endpoint_is_reached_with_its_headers() {
    let env = support::TestEnv::new();
    let serve = support::serve::ServeProcess::start(&env);
    for (token, works) in [(serve.token(), true), ("wrong-token".to_string(), false)] {
        let api = stand_in().await;
        api.push(Answer::text("Listing teams.").with_mcp_call(
            "call_teams",
            "switchboard",
            "team_teams",
            json!({}),
        ));
        api.push(Answer::text("Done."));
        let team = Team::new();
        let setup = team.setup(&openai::base_url(&api), 1);
        team.write_config(&setup, "");
        let server = SwitchboardServer {
            url: serve.url.clone(),
            headers: [
                ("Authorization".to_string(), format!("Bearer {token}")),
                ("X-Switchboard-Team".to_string(), "frontend".to_string()),
            ]
            .into(),
            timeout_ms: 60_000,
        };
        let mut codex = AppServer::start_with(&setup, Some(&server), team.dir.path()).await;
        let thread = codex.new_thread(&team.project()).await;
        let tally = codex.turn(&thread, "Which teams are there?", false).await;
        assert_eq!(tally.outcome, Some(TurnOutcome::Completed), "{tally:?}");
        assert!(
            !codex
                .seen
                .iter()
                .any(|a| matches!(a, Activity::Approval { .. })),
            "Switchboard's tools run without an approval request: {:?}",
            codex.seen
        );
        let listed = tally
            .tool_results
            .iter()
            .any(|(_, ok, out)| *ok && out.contains("backend") && out.contains("\"is_you\":true"));
        assert_eq!(listed, works, "token ok: {works}; {:?}", tally.tool_results);
    }
}
