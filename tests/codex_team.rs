//! Codex teams (`agent = "codex"`) end to end with the real Codex CLI (npm
//! `@openai/codex@0.171.0`, see tests/support/agent_clis.rs for how it is found), run by
//! Switchboard as `codex app-server` against the stand-in Responses API
//! (`tests/fake_api/openai.rs`), driven through the router as the CLI and the MCP server drive
//! it. What a user would notice: answers with tokens and a cost from `[settings.prices]`, a
//! conversation that carries on (in the same process, and in a new one after the agent
//! stopped), the agent calling Switchboard's tools, cancel, a model API that is down, compaction,
//! `[permissions]` deciding Codex's approval requests, and no codex process left behind.

mod fake_api;
#[path = "support/agent_clis.rs"]
mod pinned;
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_api::openai::{self, Answer, OpenAiApi};
use fake_api::Recorded;
use serde_json::Value;
use switchboard::router::{Router, Wait};
use switchboard::server::serve::{start, ServeOptions, ServerHandle, Transport};
use switchboard::signals::Signals;
use switchboard::store::{ProcessState, Session, TellState};
use switchboard::{SessionManager, TeamsConfig};
use tempfile::TempDir;

/// A tell's wait (generous: a loaded machine, a cold start of the CLI).
const WAIT: Wait = Wait::For(Duration::from_secs(180));
/// The variable that marks the codex processes of one test (for the /proc scan).
const MARKER_VAR: &str = "SWITCHBOARD_CODEX_TEST_MARKER";
/// The model the teams use, and its price per million tokens.
const MODEL: &str = "gpt-test";
const PRICES: &str =
    "[settings.prices.\"gpt-test\"]\ninput = 2.0\ncached_input = 0.5\noutput = 8.0\n";

struct Env {
    dir: TempDir,
    marker: String,
    config: Arc<TeamsConfig>,
    api: OpenAiApi,
}

impl Env {
    /// Teams `a`, `b` and `c`, all Codex pointed at a fresh stand-in, with `b_options` (TOML
    /// lines) in team `b`'s entry, `settings` in `[settings]`.
    async fn new(settings: &str, b_options: &str) -> Self {
        let api = openai::start().await;
        Self::with_api(api, settings, b_options)
    }

    fn with_api(api: OpenAiApi, settings: &str, b_options: &str) -> Self {
        let codex = pinned::codex();
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = uuid::Uuid::new_v4().to_string();
        let root = dir.path().display().to_string();
        let home = format!("{root}/home");
        std::fs::create_dir_all(&home).expect("mkdir home");
        let env = format!(
            "{{ HOME = {}, STANDIN_API_KEY = \"sk-standin\", {MARKER_VAR} = {} }}",
            Value::from(home.as_str()),
            Value::from(marker.as_str())
        );
        let mut text =
            format!("[settings]\n{settings}\n{PRICES}\n[database]\npath = \"{root}/data/sb.db\"\n");
        for t in ["a", "b", "c"] {
            std::fs::create_dir_all(dir.path().join(t)).expect("mkdir");
            text.push_str(&format!(
                "[teams.{t}]\npath = \"{root}/{t}\"\nagent = \"codex\"\nagent_path = {}\n\
                 model = \"{MODEL}\"\nmax_retries = 1\nenv = {env}\n{}\n\
                 [teams.{t}.provider]\nbase_url = {}\nenv_key = \"STANDIN_API_KEY\"\n",
                Value::from(codex.as_str()),
                if t == "b" { b_options } else { "" },
                Value::from(openai::base_url(&api).as_str()),
            ));
        }
        let config = TeamsConfig::parse(&text, None, &|_| None)
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
        Self {
            dir,
            marker,
            config: Arc::new(config),
            api,
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// A Switchboard: a SessionManager over the test's database, and a Router over it.
    fn router(&self) -> Router {
        let m = SessionManager::open(Arc::clone(&self.config)).expect("open");
        m.initialize().expect("initialize");
        let r = Router::new(Arc::new(m));
        r.recover(None).expect("recover");
        r
    }

    /// The MCP server in-process over HTTP on 127.0.0.1, serving `router`.
    async fn serve(&self, router: &Router) -> ServerHandle {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let mut options = ServeOptions::new(Transport::Http { addr });
        options.signals = Signals::none();
        start(router.clone(), options)
            .await
            .expect("the MCP server starts")
    }

    /// Pids of live processes of this test (codex and anything it started).
    fn agent_pids(&self) -> Vec<u32> {
        support::procs::pids_with_env(MARKER_VAR, &self.marker)
    }

    /// Polls (bounded) until no process of this test is left.
    async fn assert_no_agents(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = self.agent_pids();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "codex processes left behind: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The stderr logs of the agents, for failure messages.
    fn logs(&self) -> String {
        let dir = self.root().join("data/logs");
        let mut out = String::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: String = text
                .chars()
                .rev()
                .take(3000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            out.push_str(&format!("\n--- {}:\n{tail}", entry.path().display()));
        }
        out
    }
}

fn session(r: &Router, from: &str, to: &str) -> Arc<Session> {
    r.manager()
        .get(from, to)
        .expect("session lookup")
        .expect("the pair has a session")
}

fn seen(req: &Recorded) -> String {
    format!("{:?}", openai::input_texts(req))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// A tell is answered with Codex's tokens and a cost from `[settings.prices]`; the thread
/// Codex picked is kept with the session; the next tell continues it in the same process;
/// after the agent was put to sleep, a new process resumes the same thread by its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tell_is_answered_priced_and_the_thread_carries_on_across_processes() {
    let env = Env::new("", "").await;
    let r = env.router();
    env.api
        .push(Answer::text("The API listens on port 8080.").with_usage(1000, 200, 50));
    let t = r
        .tell("a", "b", "Which port does the API use?", WAIT)
        .await
        .expect("tell");
    assert_eq!(t.state, TellState::Answered, "{t:?}{}", env.logs());
    assert_eq!(t.answer.as_deref(), Some("The API listens on port 8080."));
    assert_eq!(t.input_tokens, Some(1000));
    assert_eq!(t.output_tokens, Some(50));
    // 800 fresh input at 2.0, 200 cached at 0.5, 50 output at 8.0 per million tokens.
    let want = (800.0 * 2.0 + 200.0 * 0.5 + 50.0 * 8.0) / 1e6;
    let cost = t.cost_usd.expect("cost recorded");
    assert!(close(cost, want), "cost {cost}, want {want}");

    let calls = env.api.model_calls();
    assert_eq!(calls.len(), 1, "one model call for one turn");
    assert_eq!(
        openai::last_user_text(&calls[0]),
        "Which port does the API use?"
    );
    assert_eq!(calls[0].header("authorization"), Some("Bearer sk-standin"));

    let s = session(&r, "a", "b");
    let thread = s
        .agent_session_id
        .clone()
        .expect("Codex's thread id is kept with the session");
    assert_ne!(thread, s.session_id);
    assert_eq!(calls[0].header("thread-id"), Some(thread.as_str()));
    assert!(close(s.cost_usd, want));
    assert_eq!(s.process_state, ProcessState::Idle);
    // Its CODEX_HOME is the team's own, in Switchboard's data folder.
    let home = env.root().join("data/codex/b");
    let config = std::fs::read_to_string(home.join("config.toml")).expect("config.toml");
    assert!(
        config.contains("unbounded_connection_retries = false"),
        "{config}"
    );
    let launch = s.launch_command.clone().expect("launch command");
    assert!(launch.contains("app-server"), "{launch}");
    assert!(!launch.contains("sk-standin"), "the key leaked: {launch}");
    let pid = s.agent_pid.expect("agent pid");

    // The same process takes the next turn, with the first in its history.
    env.api.push(Answer::text("The admin port is 9090."));
    let t2 = r
        .tell("a", "b", "And the admin port?", WAIT)
        .await
        .expect("tell 2");
    assert_eq!(
        t2.answer.as_deref(),
        Some("The admin port is 9090."),
        "{t2:?}"
    );
    let calls = env.api.model_calls();
    assert_eq!(calls.len(), 2);
    assert!(
        openai::has_text(&calls[1], "user", "Which port does the API use?")
            && openai::has_text(&calls[1], "assistant", "The API listens on port 8080."),
        "the first turn is in the second request: {}",
        seen(&calls[1])
    );
    let s = session(&r, "a", "b");
    assert_eq!(s.agent_pid, Some(pid), "the same codex process");
    assert_eq!(s.message_count, 2);

    // Stopped, then a new process: it resumes the thread by its id.
    assert!(r.sleep("a", "b").await.expect("sleep"));
    assert_eq!(session(&r, "a", "b").process_state, ProcessState::Stopped);
    env.api.push(Answer::text("Port 7070 is for metrics."));
    let t3 = r
        .tell("a", "b", "And metrics?", WAIT)
        .await
        .expect("tell 3");
    assert_eq!(
        t3.answer.as_deref(),
        Some("Port 7070 is for metrics."),
        "{t3:?}{}",
        env.logs()
    );
    let calls = env.api.model_calls();
    assert_eq!(calls.len(), 3);
    assert!(
        openai::has_text(&calls[2], "user", "And the admin port?")
            && openai::has_text(&calls[2], "assistant", "The admin port is 9090."),
        "the resumed thread has the earlier turns: {}",
        seen(&calls[2])
    );
    let s = session(&r, "a", "b");
    assert_ne!(s.agent_pid, Some(pid), "a new codex process");
    assert_eq!(
        s.agent_session_id.as_deref(),
        Some(thread.as_str()),
        "the same thread"
    );
    assert_eq!(calls[2].header("thread-id"), Some(thread.as_str()));

    r.shutdown().await;
    env.assert_no_agents().await;
}

/// Whether the request carries a tool's output (the model's call was answered).
fn tool_output(req: &Recorded) -> Option<String> {
    openai::input_texts(req)
        .into_iter()
        .rev()
        .find(|(role, _)| role == "tool")
        .map(|(_, t)| t)
}

/// Team b's agent calls Switchboard's `team_tell` (wired by `-c mcp_servers.switchboard...`
/// with its headers from the environment, and approved without asking) to ask team c, whose
/// Codex agent answers; b's agent gets c's answer as the tool result and answers with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_tells_another_team_through_switchboards_mcp_tools() {
    let env = Env::new("", "").await;
    env.api.respond_with(|req| {
        let prompt = openai::last_user_text(req);
        if prompt == "What is 2+2?" {
            return Some(Answer::text("4"));
        }
        if prompt == "Ask team c what 2+2 is." {
            return Some(match tool_output(req) {
                Some(out) => Answer::text(format!("Team c says: {out}")),
                None => Answer::text("").with_mcp_call(
                    "call_tell",
                    "switchboard",
                    "team_tell",
                    serde_json::json!({"to": "c", "message": "What is 2+2?"}),
                ),
            });
        }
        None
    });
    let r = env.router();
    let server = env.serve(&r).await;
    let t = r
        .tell("a", "b", "Ask team c what 2+2 is.", WAIT)
        .await
        .expect("tell");
    assert_eq!(t.state, TellState::Answered, "{t:?}{}", env.logs());
    let answer = t.answer.clone().unwrap_or_default();
    assert!(
        answer.starts_with("Team c says:") && answer.contains(r#""answer":"4""#),
        "b's answer carries c's: {answer}"
    );
    // What `watch` and `report` show of b's turn: the tool call, its result, the answer.
    r.manager().events().flush().await;
    let events = r.manager().store().tell_events(&t.tell_id).expect("events");
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.type_name()).collect();
    let at = |k: &str| {
        kinds
            .iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("no {k} event: {kinds:?}"))
    };
    assert!(
        at("tool_use") < at("tool_result") && at("tool_result") < at("text"),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"usage") && kinds.contains(&"tell_answered"),
        "{kinds:?}"
    );
    let tool = events.iter().find_map(|e| match &e.kind {
        switchboard::store::EventKind::ToolUse { tool, input, .. } => {
            Some((tool.clone(), input.clone()))
        }
        _ => None,
    });
    let (tool, input) = tool.expect("a tool_use event");
    assert_eq!(tool, "mcp__switchboard__team_tell");
    assert!(input.contains("What is 2+2?"), "{input}");
    // The chained tell: b asked c, and c's agent answered it.
    let bc = session(&r, "b", "c");
    assert_eq!(bc.message_count, 1);
    assert!(bc.agent_session_id.is_some(), "c's agent is Codex too");
    // b's agent offered Switchboard's tools to the model.
    let first = &env.api.model_calls()[0];
    let names = openai::tool_names(first);
    assert!(
        names.iter().any(|n| n.contains("team_tell")),
        "Switchboard's tools are offered: {names:?}"
    );
    tokio::time::timeout(Duration::from_secs(30), server.shutdown())
        .await
        .expect("the server shuts down");
    env.assert_no_agents().await;
}

/// Cancelling a tell mid-turn interrupts Codex's turn (`turn/interrupt`): the tell ends
/// cancelled, the agent stays up, and the next tell is answered by the same process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_turn_interrupts_and_the_session_stays_usable() {
    let env = Env::new("", "").await;
    let r = env.router();
    env.api
        .push(Answer::text("Too late.").with_delay(Duration::from_secs(120)));
    let t = r
        .tell("a", "b", "Take your time.", Wait::None)
        .await
        .expect("tell");
    env.api.wait_for_requests(1, Duration::from_secs(120)).await;
    assert_eq!(env.api.model_calls().len(), 1, "{}", env.logs());
    let pid = session(&r, "a", "b").agent_pid.expect("pid");
    let (cancelled, was_open) = r.cancel_one(&t.tell_id).await.expect("cancel");
    assert!(was_open);
    assert_eq!(cancelled.state, TellState::Cancelled, "{cancelled:?}");
    env.api.push(Answer::text("Still here."));
    let t2 = r
        .tell("a", "b", "Are you there?", WAIT)
        .await
        .expect("tell 2");
    assert_eq!(
        t2.answer.as_deref(),
        Some("Still here."),
        "{t2:?}{}",
        env.logs()
    );
    assert_eq!(
        session(&r, "a", "b").agent_pid,
        Some(pid),
        "the interrupted agent took the next tell"
    );
    r.shutdown().await;
    env.assert_no_agents().await;
}

/// A model API that is down: the tell fails with Codex's reason after the bounded retries of
/// `max_retries` (here 1), not after an endless wait; the agent stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_is_down_fails_the_tell_with_a_reason_after_bounded_retries() {
    let env = Env::new("", "").await;
    let r = env.router();
    env.api
        .set_default(Answer::error(500, "the backend is down"));
    let t = r.tell("a", "b", "Hello?", WAIT).await.expect("tell");
    assert_eq!(t.state, TellState::Failed, "{t:?}{}", env.logs());
    let why = t.error.clone().unwrap_or_default();
    // Codex puts its own words in place of a 5xx body (docs/codex-protocol.md §8).
    assert!(
        why.contains("experiencing high demand"),
        "the reason is Codex's: {why}"
    );
    let tries = env.api.model_calls().len();
    assert!(
        (2..=4).contains(&tries),
        "request retries x stream retries with max_retries = 1: {tries} requests"
    );
    env.api.set_default(Answer::text("Back up."));
    let t2 = r
        .tell("a", "b", "Hello again?", WAIT)
        .await
        .expect("tell 2");
    assert_eq!(t2.answer.as_deref(), Some("Back up."), "{t2:?}");
    r.shutdown().await;
    env.assert_no_agents().await;
}

/// `compact` runs Codex's `thread/compact/start`: one model call that carries the thread's
/// history; the compaction is recorded and the thread takes the next tell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_runs_codexs_thread_compaction() {
    let env = Env::new("", "").await;
    let r = env.router();
    env.api
        .push(Answer::text("Noted: the port is 8080.").with_usage(500, 0, 40));
    let t = r
        .tell("a", "b", "Remember: the port is 8080.", WAIT)
        .await
        .expect("tell");
    assert_eq!(t.state, TellState::Answered, "{t:?}");
    env.api.push(Answer::text("Summary: the port is 8080."));
    let c = r.compact("a", "b", WAIT).await.expect("compact");
    assert_eq!(c.state, TellState::Answered, "{c:?}{}", env.logs());
    let calls = env.api.model_calls();
    assert_eq!(calls.len(), 2, "one model call for the compaction");
    assert!(
        openai::has_text(&calls[1], "user", "Remember: the port is 8080."),
        "the compaction request carries the history: {}",
        seen(&calls[1])
    );
    let s = session(&r, "a", "b");
    assert_eq!(s.status, switchboard::store::SessionStatus::Active, "{s:?}");
    assert_eq!(s.compaction_count, 1, "{s:?}");
    // Codex reports no sizes: the context before is the last call's tokens (500 + 40).
    assert_eq!(s.last_pre_compact_tokens, Some(540), "{s:?}");
    assert_eq!(s.message_count, 0, "the counters start again: {s:?}");
    env.api.push(Answer::text("Still 8080."));
    let t2 = r.tell("a", "b", "Which port?", WAIT).await.expect("tell 2");
    assert_eq!(t2.answer.as_deref(), Some("Still 8080."), "{t2:?}");
    r.shutdown().await;
    env.assert_no_agents().await;
}

/// The options of team b that add a stdio MCP server `echo` of the team's own (one tool,
/// `echo`) through Codex's `-c` overrides, and `[permissions]` with `rules`.
fn echo_team(rules: &str) -> String {
    let (python, script) = pinned::echo_server();
    let args = [
        format!("mcp_servers.echo.command={}", Value::from(python.as_str())),
        format!("mcp_servers.echo.args=[{}]", Value::from(script.as_str())),
    ];
    format!(
        "args = [\"-c\", {}, \"-c\", {}]\n[teams.b.permissions]\n{rules}\nask = \"deny\"\n",
        Value::from(args[0].as_str()),
        Value::from(args[1].as_str()),
    )
}

fn echo_script(api: &OpenAiApi) {
    api.respond_with(|req| {
        if openai::last_user_text(req) != "Echo hi." {
            return None;
        }
        Some(match tool_output(req) {
            Some(out) => Answer::text(format!("The tool said: {out}")),
            None => Answer::text("").with_mcp_call(
                "call_echo",
                "echo",
                "echo",
                serde_json::json!({"text": "hi"}),
            ),
        })
    });
}

/// A team with `[permissions]`: Codex asks before it calls the team's MCP tool, and the rule
/// `mcp__echo__echo` allows it; the tool runs and the request is recorded as decided by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_rule_decides_codexs_approval_request() {
    let env = Env::new("", &echo_team("allow = [\"mcp__echo__echo\"]")).await;
    echo_script(&env.api);
    let r = env.router();
    let t = r.tell("a", "b", "Echo hi.", WAIT).await.expect("tell");
    assert_eq!(t.state, TellState::Answered, "{t:?}{}", env.logs());
    let answer = t.answer.clone().unwrap_or_default();
    assert!(
        answer.contains("echo: hi (from echo)"),
        "the tool ran: {answer}"
    );
    let asked = switchboard::router::approvals::list_approvals(
        r.manager(),
        &switchboard::router::approvals::ApprovalFilter {
            all: true,
            ..Default::default()
        },
    )
    .expect("approvals");
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(asked[0].tool, "mcp__echo__echo");
    assert_eq!(
        asked[0].rule.as_deref(),
        Some("mcp__echo__echo"),
        "{asked:#?}"
    );
    r.shutdown().await;
    env.assert_no_agents().await;
}

/// The same with a deny rule: Codex is told no, the tool never runs, the turn goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_rule_keeps_codex_from_running_the_tool() {
    let env = Env::new("", &echo_team("deny = [\"mcp__echo\"]")).await;
    echo_script(&env.api);
    let r = env.router();
    let t = r.tell("a", "b", "Echo hi.", WAIT).await.expect("tell");
    assert_eq!(t.state, TellState::Answered, "{t:?}{}", env.logs());
    let answer = t.answer.clone().unwrap_or_default();
    // Codex tells the model the call was refused (0.171.0: "user rejected MCP tool call").
    assert!(
        answer.starts_with("The tool said:") && answer.contains("rejected"),
        "{answer}"
    );
    assert!(
        !answer.contains("echo: hi (from echo)"),
        "the tool ran: {answer}"
    );
    r.shutdown().await;
    env.assert_no_agents().await;
}

/// `doctor` runs the codex binary's `--version` and says where the agent finds its key: the
/// team's env (`OPENAI_API_KEY`), or, with a provider, its `env_key`, named when missing.
#[test]
fn doctor_reports_the_codex_version_and_its_credentials() {
    const KEY: &str = "sk-codex-doctor-secret";
    let env = support::TestEnv::new();
    let codex = pinned::codex();
    let q = |s: &str| support::toml_string(s);
    env.write_config(&format!(
        "[database]\npath = \"data/switchboard.db\"\n\
         [teams.frontend]\npath = {}\nagent = \"codex\"\nagent_path = {}\n\
         env = {{ OPENAI_API_KEY = {} }}\n\
         [teams.backend]\npath = {}\nagent = \"codex\"\nagent_path = {}\n\
         [teams.backend.provider]\nbase_url = \"http://127.0.0.1:9/v1\"\nenv_key = \"LOCAL_CODEX_KEY\"\n",
        q(&env.project("frontend").display().to_string()),
        q(&codex),
        q(KEY),
        q(&env.project("backend").display().to_string()),
        q(&codex),
    ));
    let mut cmd = env.command();
    cmd.arg("--config")
        .arg(env.config_path())
        .args(["doctor", "--json"])
        .env_remove("OPENAI_API_KEY")
        .env_remove("LOCAL_CODEX_KEY");
    let out = support::finish(cmd);
    let report = support::parse_json(&out);
    let text = report.to_string();
    assert!(!text.contains(KEY), "a secret was printed: {text}");
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no check {name} in {report}"))
    };
    for team in ["frontend", "backend"] {
        let agent = check(&format!("agent {team}"));
        assert_eq!(agent["outcome"], "ok", "{agent}");
        assert!(
            agent["detail"]
                .as_str()
                .is_some_and(|d| d.contains(pinned::CODEX_VERSION)),
            "{agent}"
        );
    }
    let found = check("credentials frontend");
    assert_eq!(found["outcome"], "ok", "{found}");
    assert!(
        found["detail"]
            .as_str()
            .is_some_and(|d| d.contains("OPENAI_API_KEY")),
        "{found}"
    );
    let missing = check("credentials backend");
    assert_eq!(missing["outcome"], "fail", "{missing}");
    assert!(
        missing["detail"]
            .as_str()
            .is_some_and(|d| d.contains("LOCAL_CODEX_KEY")),
        "{missing}"
    );
}

/// Polls (bounded) until tell `id` is final; returns it.
async fn final_tell(r: &Router, id: &str) -> switchboard::store::Tell {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let t = r.tell_status(id).expect("tell status");
        if t.state.is_final() {
            return t;
        }
        assert!(Instant::now() < deadline, "tell still {:?}", t.state);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The failure paths the scripted agent covers for every kind, with the real Codex: an agent
/// killed mid-turn fails its tell saying it exited, and the next tell starts a new process
/// that resumes the thread; a turn with no output for `response_timeout` is a stall: the
/// agent is killed and the tell fails saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_or_stalled_codex_fails_the_tell_and_the_thread_survives() {
    let env = Env::new("response_timeout = \"5s\"", "").await;
    let r = env.router();
    env.api.push(Answer::text("First."));
    let t = r.tell("a", "b", "Remember 42.", WAIT).await.expect("tell");
    assert_eq!(t.answer.as_deref(), Some("First."), "{t:?}{}", env.logs());
    let thread = session(&r, "a", "b")
        .agent_session_id
        .clone()
        .expect("thread");

    // Crash: the agent's process group is killed while the model call is held.
    env.api
        .push(Answer::text("Never sent.").with_delay(Duration::from_secs(120)));
    let t = r
        .tell("a", "b", "Hold on.", Wait::None)
        .await
        .expect("tell");
    env.api.wait_for_requests(2, Duration::from_secs(120)).await;
    let pid = session(&r, "a", "b").agent_pid.expect("pid");
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    let t = final_tell(&r, &t.tell_id).await;
    assert_eq!(t.state, TellState::Failed, "{t:?}");
    let why = t.error.clone().unwrap_or_default();
    assert!(why.contains("exited") && why.contains("signal 9"), "{why}");

    // A new process resumes the thread.
    env.api.push(Answer::text("It was 42."));
    let t = r
        .tell("a", "b", "What was the number?", WAIT)
        .await
        .expect("tell");
    assert_eq!(
        t.answer.as_deref(),
        Some("It was 42."),
        "{t:?}{}",
        env.logs()
    );
    let s = session(&r, "a", "b");
    assert_ne!(s.agent_pid, Some(pid));
    assert_eq!(s.agent_session_id.as_deref(), Some(thread.as_str()));
    let last = env.api.model_calls().last().cloned().expect("a call");
    assert!(
        openai::has_text(&last, "user", "Remember 42."),
        "{}",
        seen(&last)
    );

    // Stall: the model call is held past response_timeout.
    env.api
        .push(Answer::text("Too slow.").with_delay(Duration::from_secs(120)));
    let t = r.tell("a", "b", "Slowly.", WAIT).await.expect("tell");
    assert_eq!(t.state, TellState::Failed, "{t:?}");
    let why = t.error.clone().unwrap_or_default();
    assert!(why.contains("5s"), "the stall names the timeout: {why}");
    assert_eq!(session(&r, "a", "b").process_state, ProcessState::Stopped);
    r.shutdown().await;
    env.assert_no_agents().await;
}

/// A thread Codex no longer has (its `CODEX_HOME/sessions` was removed) is not an error: the
/// agent opens a new thread, which is kept with the session instead. `reboot` starts a new
/// thread on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_codex_lost_is_replaced_by_a_new_one() {
    let env = Env::new("", "").await;
    let r = env.router();
    let t = r.tell("a", "b", "Hello.", WAIT).await.expect("tell");
    assert_eq!(t.state, TellState::Answered, "{t:?}{}", env.logs());
    let old = session(&r, "a", "b")
        .agent_session_id
        .clone()
        .expect("thread");
    assert!(r.sleep("a", "b").await.expect("sleep"));
    std::fs::remove_dir_all(env.root().join("data/codex/b/sessions")).expect("remove threads");
    env.api.push(Answer::text("Hello again."));
    let t = r.tell("a", "b", "Hello?", WAIT).await.expect("tell 2");
    assert_eq!(
        t.answer.as_deref(),
        Some("Hello again."),
        "{t:?}{}",
        env.logs()
    );
    let new = session(&r, "a", "b")
        .agent_session_id
        .clone()
        .expect("thread");
    assert_ne!(new, old, "a new thread");

    // `reboot` forgets the thread: the next tell starts a fresh one, without the history.
    let rebooted = r.reboot("a", "b").await.expect("reboot");
    assert_eq!(rebooted.agent_session_id, None);
    env.api.push(Answer::text("Fresh start."));
    let t = r
        .tell("a", "b", "Who are you?", WAIT)
        .await
        .expect("tell 3");
    assert_eq!(
        t.answer.as_deref(),
        Some("Fresh start."),
        "{t:?}{}",
        env.logs()
    );
    let newest = session(&r, "a", "b")
        .agent_session_id
        .clone()
        .expect("thread");
    assert!(newest != new && newest != old, "a third thread");
    let last = env.api.model_calls().last().cloned().expect("a call");
    assert!(
        !openai::has_text(&last, "user", "Hello?"),
        "{}",
        seen(&last)
    );
    r.shutdown().await;
    env.assert_no_agents().await;
}

/// `wake` starts the agent and proves it is up by opening its thread: no model call. The
/// woken process then answers the first tell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waking_a_codex_team_makes_no_model_call() {
    let env = Env::new("", "").await;
    let r = env.router();
    let pid = r.wake("a", "b").await.expect("wake");
    assert!(env.agent_pids().contains(&pid), "{}", env.logs());
    assert!(env.api.requests().is_empty(), "{:?}", env.api.requests());
    env.api.push(Answer::text("Awake."));
    let t = r.tell("a", "b", "Are you up?", WAIT).await.expect("tell");
    assert_eq!(t.answer.as_deref(), Some("Awake."), "{t:?}");
    let s = session(&r, "a", "b");
    assert_eq!(
        s.agent_pid,
        Some(i64::from(pid)),
        "the woken process answered"
    );
    assert!(s.agent_session_id.is_some());
    r.shutdown().await;
    env.assert_no_agents().await;
}

/// As a user would: `switchboard tell` on the command line asks a Codex team and prints the
/// answer with tokens and the cost from `[settings.prices]`; a second `switchboard tell` (a
/// new Switchboard process, so a new agent) continues the same thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_tell_on_the_command_line_asks_a_codex_team() {
    let api = openai::start().await;
    let env = Arc::new(support::TestEnv::new());
    let marker = uuid::Uuid::new_v4().to_string();
    let q = |s: &str| support::toml_string(s);
    env.write_config(&format!(
        "[settings]\n{PRICES}\n[database]\npath = \"data/switchboard.db\"\n\
         [teams.frontend]\npath = {}\n\
         [teams.backend]\npath = {}\nagent = \"codex\"\nagent_path = {}\nmodel = \"{MODEL}\"\n\
         env = {{ HOME = {}, STANDIN_API_KEY = \"sk-cli\", {MARKER_VAR} = {} }}\n\
         [teams.backend.provider]\nbase_url = {}\nenv_key = \"STANDIN_API_KEY\"\n",
        q(&env.project("frontend").display().to_string()),
        q(&env.project("backend").display().to_string()),
        q(&pinned::codex()),
        q(&env.home().display().to_string()),
        q(&marker),
        q(&openai::base_url(&api)),
    ));
    let tell = |text: &'static str| {
        let env = Arc::clone(&env);
        tokio::task::spawn_blocking(move || env.run_json(&["tell", "frontend", "backend", text]))
    };
    api.push(Answer::text("Hi from Codex.").with_usage(1000, 200, 50));
    let v = tell("hello").await.expect("join");
    assert_eq!(v["state"], "answered", "{v}");
    assert_eq!(v["answer"], "Hi from Codex.");
    assert_eq!(v["input_tokens"], 1000);
    assert_eq!(v["output_tokens"], 50);
    let want = (800.0 * 2.0 + 200.0 * 0.5 + 50.0 * 8.0) / 1e6;
    let cost = v["cost_usd"].as_f64().expect("cost");
    assert!(close(cost, want), "cost {cost}, want {want}");
    assert!(
        env.path().join("data/codex/backend/config.toml").is_file(),
        "CODEX_HOME in the data folder"
    );

    api.push(Answer::text("You said hello."));
    let v = tell("what did I say?").await.expect("join");
    assert_eq!(v["answer"], "You said hello.", "{v}");
    let calls = api.model_calls();
    assert_eq!(calls.len(), 2);
    assert!(
        openai::has_text(&calls[1], "user", "hello")
            && openai::has_text(&calls[1], "assistant", "Hi from Codex."),
        "the second process resumed the thread: {}",
        seen(&calls[1])
    );
    assert_eq!(
        calls[0].header("thread-id"),
        calls[1].header("thread-id"),
        "the same thread"
    );
    assert!(
        support::poll_until(Duration::from_secs(15), || {
            support::procs::pids_with_env(MARKER_VAR, &marker).is_empty()
        }),
        "each `switchboard tell` stops its agent when it exits"
    );
}

/// A shell command the model asks to run outside the sandbox (`sandbox_permissions:
/// "require_escalated"`) makes Codex ask; with `[permissions]` that is a Switchboard
/// permission request for `Bash` with its command, decided by the team's rules: allowed, it
/// runs in the team folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_rule_decides_codexs_command_approval() {
    let env = Env::new(
        "",
        "[teams.b.permissions]\nallow = [\"Bash(touch:*)\"]\nask = \"deny\"\n",
    )
    .await;
    env.api.respond_with(|req| {
        if openai::last_user_text(req) != "Make the file." {
            return None;
        }
        Some(match tool_output(req) {
            Some(out) => Answer::text(format!("The command said: {out}")),
            None => Answer {
                call: Some(openai::ToolCall {
                    call_id: "call_cmd".into(),
                    namespace: None,
                    name: "exec_command".into(),
                    arguments: serde_json::json!({
                        "cmd": "touch made-by-codex",
                        "sandbox_permissions": "require_escalated",
                        "justification": "Make the file the user asked for",
                    }),
                }),
                ..Answer::text("")
            },
        })
    });
    let r = env.router();
    let t = r
        .tell("a", "b", "Make the file.", WAIT)
        .await
        .expect("tell");
    assert_eq!(t.state, TellState::Answered, "{t:?}{}", env.logs());
    let asked = switchboard::router::approvals::list_approvals(
        r.manager(),
        &switchboard::router::approvals::ApprovalFilter {
            all: true,
            ..Default::default()
        },
    )
    .expect("approvals");
    assert_eq!(asked.len(), 1, "{asked:#?}");
    // The command the shell line runs, which the rule matches (not `/bin/bash -lc '...'`).
    assert_eq!(asked[0].tool, "Bash");
    assert_eq!(asked[0].input, "touch made-by-codex", "{asked:#?}");
    assert_eq!(
        asked[0].rule.as_deref(),
        Some("Bash(touch:*)"),
        "{asked:#?}"
    );
    assert_eq!(asked[0].state, "allowed");
    assert!(
        env.root().join("b/made-by-codex").is_file(),
        "the command ran"
    );
    r.shutdown().await;
    env.assert_no_agents().await;
}

/// An agent that exits at start (here Codex refusing a setting passed in `args`) fails the
/// tell with its exit status and its own words, and leaves no process behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codex_that_exits_at_start_fails_the_tell_with_its_reason() {
    let env = Env::new(
        "",
        "args = [\"-c\", \"approval_policy=\\\"untrusted\\\"\"]\n",
    )
    .await;
    let r = env.router();
    let t = r.tell("a", "b", "Hello?", WAIT).await.expect("tell");
    assert_eq!(t.state, TellState::Failed, "{t:?}");
    let why = t.error.clone().unwrap_or_default();
    assert!(
        why.contains("exited before it started")
            && why.contains("exit status 1")
            && why.contains("no longer supported"),
        "{why}"
    );
    assert!(env.api.requests().is_empty(), "no model call");
    r.shutdown().await;
    env.assert_no_agents().await;
}

/// With `ask = "human"`, Codex's approval request waits for a person (`switchboard approvals
/// allow ID`); once allowed, Codex runs the tool and the turn ends with its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_decides_a_pending_codex_approval() {
    let (python, script) = pinned::echo_server();
    let b = format!(
        "args = [\"-c\", {}, \"-c\", {}]\n[teams.b.permissions]\nask = \"human\"\n",
        Value::from(format!(
            "mcp_servers.echo.command={}",
            Value::from(python.as_str())
        )),
        Value::from(format!(
            "mcp_servers.echo.args=[{}]",
            Value::from(script.as_str())
        )),
    );
    let env = Env::new("", &b).await;
    echo_script(&env.api);
    let r = env.router();
    let t = r
        .tell("a", "b", "Echo hi.", Wait::None)
        .await
        .expect("tell");
    let m = r.manager();
    let pending = |m: &SessionManager| {
        switchboard::router::approvals::list_approvals(m, &Default::default()).expect("approvals")
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let asked = loop {
        let p = pending(m);
        if !p.is_empty() {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "no approval request{}",
            env.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(asked[0].tool, "mcp__echo__echo");
    assert_eq!(asked[0].decide_by, "human");
    switchboard::router::approvals::decide(
        m,
        &asked[0].approval_id,
        switchboard::router::approvals::Decision::Allow { always: false },
        switchboard::router::approvals::Decider::Person,
    )
    .expect("allow");
    let t = final_tell(&r, &t.tell_id).await;
    assert_eq!(t.state, TellState::Answered, "{t:?}{}", env.logs());
    let answer = t.answer.clone().unwrap_or_default();
    assert!(
        answer.contains("echo: hi (from echo)"),
        "the tool ran: {answer}"
    );
    r.shutdown().await;
    env.assert_no_agents().await;
}
