//! End to end with the real Claude Code CLI (npm `@anthropic-ai/claude-code@2.1.328`, installed
//! into `.tools/claude-code` by `scripts/test.sh`, or `$SWITCHBOARD_TEST_CLAUDE`), driven through
//! the library (`Router`, `SessionManager`) against a local stand-in for the Anthropic Messages
//! API (`tests/fake_api`). What a user would notice: answers, resumed conversations (also after
//! a restart), tokens and cost, compaction, API errors, and no claude process left behind.

mod fake_api;
#[path = "support/claude_code.rs"]
mod pinned_claude;
#[path = "common/procs.rs"]
mod procs;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_api::{Answer, FakeApi, Recorded};
use serde_json::Value;
use switchboard::router::{Router, Wait};
use switchboard::store::{ProcessState, Session, SessionStatus, TellKind, TellState};
use switchboard::{SessionManager, TeamsConfig};
use tempfile::TempDir;

const FOREVER: Wait = Wait::For(Duration::from_secs(60));
/// The environment variable that marks the claude processes of one test (for the /proc scan).
const MARKER_VAR: &str = "SWITCHBOARD_CLAUDE_TEST_MARKER";

/// The claude binary: `$SWITCHBOARD_TEST_CLAUDE`, or the pinned one in `.tools/claude-code`.
/// Fails (never skips) when it is missing.
fn claude_binary() -> String {
    pinned_claude::binary()
}

struct Env {
    /// Holds the teams' folders, HOME and the database; removed at drop.
    _dir: TempDir,
    marker: String,
    config: Arc<TeamsConfig>,
    api: FakeApi,
}

impl Env {
    /// Teams `a` and `b`, both run by the real Claude Code pointed at a fresh stand-in API,
    /// with a per-test HOME.
    async fn new(settings: &str) -> Self {
        Self::with_b_options(settings, "").await
    }

    /// The same, with more options (TOML lines) in team `b`'s entry.
    async fn with_b_options(settings: &str, b_options: &str) -> Self {
        let claude = claude_binary();
        let api = FakeApi::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
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
        // A CLAUDE_CONFIG_DIR of the environment the tests run in (an outer Claude Code) would
        // beat HOME: pin it to this test's home.
        if std::env::var_os("CLAUDE_CONFIG_DIR").is_some() {
            env.push(("CLAUDE_CONFIG_DIR", format!("{home}/.claude")));
        }
        let env: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("{k} = {}", Value::from(v.as_str())))
            .collect();
        let mut text = format!("[settings]\n{settings}\n[database]\npath = \"{root}/sb.db\"\n");
        for t in ["a", "b"] {
            std::fs::create_dir_all(dir.path().join(t)).expect("mkdir");
            text.push_str(&format!(
                "[teams.{t}]\npath = \"{root}/{t}\"\nagent_path = {}\nenv = {{ {} }}\n{}\n",
                Value::from(claude.as_str()),
                env.join(", "),
                if t == "b" { b_options } else { "" }
            ));
        }
        let config = TeamsConfig::parse(&text, None, &|_| None)
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
        Self {
            _dir: dir,
            marker,
            config: Arc::new(config),
            api,
        }
    }

    /// A Switchboard: a SessionManager over the test's database, and a Router over it.
    fn router(&self) -> Router {
        let m = SessionManager::open(Arc::clone(&self.config)).expect("open");
        m.initialize().expect("initialize");
        let r = Router::new(Arc::new(m));
        r.recover(None).expect("recover");
        r
    }

    /// Pids of live processes of this test (claude and anything it started), found by the
    /// marker in their environment.
    fn agent_pids(&self) -> Vec<u32> {
        procs::pids_with_env(MARKER_VAR, &self.marker)
    }

    /// Polls (bounded) until no process of this test is left.
    async fn assert_no_agents(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.agent_pids();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "orphan claude processes: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The session of the pair a -> b.
fn session(r: &Router) -> Arc<Session> {
    r.manager()
        .get("a", "b")
        .expect("read the session")
        .expect("the session of a -> b")
}

/// (preTokens, postTokens) of every compaction Claude Code wrote into the transcript.
fn transcript_compactions(transcript: &std::path::Path) -> Vec<(i64, i64)> {
    let text = std::fs::read_to_string(transcript)
        .unwrap_or_else(|e| panic!("read {}: {e}", transcript.display()));
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "system" && v["subtype"] == "compact_boundary")
        .map(|v| {
            let meta = &v["compactMetadata"];
            (
                meta["preTokens"].as_i64().expect("preTokens"),
                meta["postTokens"].as_i64().expect("postTokens"),
            )
        })
        .collect()
}

/// Claude Code's messaging socket for a process; removed when it exits cleanly.
fn messaging_socket(pid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/cc-socks/{pid}.sock"))
}

/// What the stand-in saw, for assertion messages.
fn seen(req: &Recorded) -> String {
    format!("request #{}: {:#?}", req.n, req.all_message_texts())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_and_waking_a_session_makes_no_api_request() {
    let env = Env::new("").await;
    let r = env.router();
    let created = r.manager().get_or_create("a", "b").expect("get_or_create");
    let transcript = r
        .manager()
        .transcript_path(&created)
        .expect("transcript path");
    assert!(env.api.requests().is_empty());

    // wake: claude is spawned and answers the `initialize` probe, without a model call.
    let pid = r.wake("a", "b").await.expect("wake");
    assert!(env.agent_pids().contains(&pid), "claude runs");
    let s = session(&r);
    assert_eq!(s.process_state, ProcessState::Idle);
    assert_eq!(s.agent_pid, Some(i64::from(pid)));
    assert!(
        env.api.requests().is_empty(),
        "no request at start-up: {:?}",
        env.api.requests()
    );
    assert!(
        !transcript.exists(),
        "no transcript before the first message"
    );

    // The first request the stand-in ever gets is the first tell, answered by the woken claude.
    env.api.push(Answer::text("Hi, team a."));
    let t = r.tell("a", "b", "Hello?", FOREVER).await.expect("tell");
    assert_eq!(t.answer.as_deref(), Some("Hi, team a."), "{t:?}");
    let requests = env.api.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].last_user_text(), "Hello?");
    assert_eq!(
        session(&r).agent_pid,
        Some(i64::from(pid)),
        "the same claude"
    );
    assert!(transcript.exists());

    r.shutdown().await;
    env.assert_no_agents().await;
    assert!(
        !messaging_socket(pid).exists(),
        "claude exited cleanly and removed its socket"
    );
    assert_eq!(session(&r).process_state, ProcessState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tell_is_answered_recorded_and_the_next_one_continues_the_conversation() {
    let env = Env::new("").await;
    let r = env.router();
    env.api
        .push(Answer::text("The API listens on port 8080.").with_usage(120, 9));
    let t = r
        .tell("a", "b", "Which port does the API use?", FOREVER)
        .await
        .expect("tell");
    assert_eq!(t.state, TellState::Answered, "{t:?}");
    assert_eq!(t.answer.as_deref(), Some("The API listens on port 8080."));
    assert_eq!(t.input_tokens, Some(120));
    assert_eq!(t.output_tokens, Some(9));
    // Claude Code prices the tokens itself (list price of the model it asks for,
    // `claude-opus-5-5` by default) and reports it as total_cost_usd.
    let cost = t.cost_usd.expect("cost recorded");
    assert!(cost > 0.0, "{t:?}");

    let req = &env.api.message_requests()[0];
    assert!(req.is_stream());
    assert_eq!(req.query.as_deref(), Some("beta=true"));
    assert_eq!(req.header("x-api-key"), Some("test-key"));
    assert_eq!(req.last_user_text(), "Which port does the API use?");
    assert!(
        env.api.other_requests().is_empty(),
        "Claude Code calls only POST /v1/messages: {:?}",
        env.api.other_requests()
    );

    let s = session(&r);
    assert_eq!(t.session_id, s.session_id);
    assert_eq!(
        req.header("x-claude-code-session-id"),
        Some(s.session_id.as_str()),
        "claude runs the session Switchboard chose"
    );
    assert_eq!(s.message_count, 1);
    assert_eq!((s.input_tokens, s.output_tokens), (120, 9));
    assert_eq!(s.cost_usd, cost);
    assert_eq!(s.status, SessionStatus::Active);
    assert_eq!(s.process_state, ProcessState::Idle);
    assert!(s.last_response_at.is_some());
    let transcript = r.manager().transcript_path(&s).expect("transcript path");
    let saved = std::fs::read_to_string(&transcript).unwrap_or_else(|e| {
        panic!("claude's transcript at {}: {e}", transcript.display());
    });
    assert!(saved.contains("The API listens on port 8080."));
    let launch = s.launch_command.clone().expect("launch command");
    assert!(
        launch.contains("--session-id") && launch.contains(&s.session_id),
        "{launch}"
    );
    let snapshot = s.team_config_snapshot.clone().expect("config snapshot");
    for recorded in [&launch, &snapshot] {
        assert!(
            !recorded.contains("test-key"),
            "the API key leaked: {recorded}"
        );
        assert!(
            recorded.contains("\"ANTHROPIC_API_KEY\":\"***\""),
            "{recorded}"
        );
    }

    // Second tell, same claude process: the stand-in gets the whole conversation.
    let agent = s.agent_pid.expect("agent pid");
    assert!(env
        .agent_pids()
        .contains(&u32::try_from(agent).expect("pid")));
    env.api.push(Answer::text("The admin port is 9090."));
    let t2 = r
        .tell("a", "b", "And the admin port?", FOREVER)
        .await
        .expect("tell 2");
    assert_eq!(
        t2.answer.as_deref(),
        Some("The admin port is 9090."),
        "{t2:?}"
    );
    let requests = env.api.message_requests();
    assert_eq!(requests.len(), 2);
    let req = &requests[1];
    assert_eq!(req.last_user_text(), "And the admin port?");
    assert!(
        req.has_text("user", "Which port does the API use?")
            && req.has_text("assistant", "The API listens on port 8080."),
        "the first turn is in the second request: {}",
        seen(req)
    );
    let s = session(&r);
    assert_eq!(s.agent_pid, Some(agent), "the same claude process");
    assert_eq!(s.message_count, 2);
    assert_eq!((s.input_tokens, s.output_tokens), (220, 19));

    r.shutdown().await;
    env.assert_no_agents().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_switchboard_resumes_the_conversation() {
    let env = Env::new("").await;
    let r = env.router();
    env.api.push(Answer::text("The API listens on port 8080."));
    let t1 = r
        .tell("a", "b", "Which port does the API use?", FOREVER)
        .await
        .expect("tell");
    assert_eq!(t1.state, TellState::Answered, "{t1:?}");
    let first_pid = session(&r).agent_pid.expect("agent pid");
    r.shutdown().await;
    env.assert_no_agents().await;
    drop(r);

    // A new SessionManager and Router over the same database: a restarted Switchboard.
    let r2 = env.router();
    assert_eq!(session(&r2).process_state, ProcessState::Stopped);
    env.api.push(Answer::text("Yes, still 8080."));
    let t2 = r2
        .tell("a", "b", "Are you sure?", FOREVER)
        .await
        .expect("tell after restart");
    assert_eq!(t2.answer.as_deref(), Some("Yes, still 8080."), "{t2:?}");
    assert_eq!(t2.session_id, t1.session_id, "the same session");
    let s = session(&r2);
    assert_ne!(s.agent_pid, Some(first_pid), "a new claude process");
    let launch = s.launch_command.clone().expect("launch command");
    assert!(
        launch.contains("--resume") && launch.contains(&t1.session_id),
        "{launch}"
    );
    assert!(!launch.contains("--session-id"), "{launch}");
    let requests = env.api.message_requests();
    assert_eq!(requests.len(), 2);
    let req = &requests[1];
    assert_eq!(
        req.header("x-claude-code-session-id"),
        Some(t1.session_id.as_str())
    );
    assert_eq!(req.last_user_text(), "Are you sure?");
    assert!(
        req.has_text("user", "Which port does the API use?")
            && req.has_text("assistant", "The API listens on port 8080."),
        "the resumed claude sends the earlier turn: {}",
        seen(req)
    );
    assert_eq!(s.message_count, 2);
    assert_eq!(r2.report("a", "b", 10).expect("report").len(), 2);

    r2.shutdown().await;
    env.assert_no_agents().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_records_what_claude_code_reports_and_the_conversation_goes_on() {
    let env = Env::new("").await;
    env.api
        .set_summary("1. Primary Request: team a asked for the API port; it is 8080.");
    let r = env.router();
    env.api.push(Answer::text("The API listens on port 8080."));
    // The last answer's usage is what Claude Code reports as the size before.
    env.api
        .push(Answer::text("The admin port is 9090.").with_usage(5_000, 40));
    for text in ["Which port does the API use?", "And the admin port?"] {
        let t = r.tell("a", "b", text, FOREVER).await.expect("tell");
        assert_eq!(t.state, TellState::Answered, "{t:?}");
    }
    assert_eq!(session(&r).message_count, 2);

    let c = r.compact("a", "b", FOREVER).await.expect("compact");
    assert_eq!(c.state, TellState::Answered, "{c:?}");
    assert_eq!(c.kind, TellKind::Compact);
    let s = session(&r);
    assert_eq!(s.message_count, 0);
    assert_eq!(s.compaction_count, 1);
    assert_eq!(s.status, SessionStatus::Active);
    assert!(s.last_compacted_at.is_some());
    // The numbers are Claude Code's own (its compact_boundary line, also in the transcript).
    let transcript = r.manager().transcript_path(&s).expect("transcript path");
    let compactions = transcript_compactions(&transcript);
    assert_eq!(compactions.len(), 1, "{compactions:?}");
    let (pre, post) = compactions[0];
    assert_eq!(s.last_pre_compact_tokens, Some(pre));
    assert_eq!(s.last_post_compact_tokens, Some(post));
    assert!(pre > 0 && post > 0, "{pre} -> {post}");
    // pre_tokens is the context as the model API last counted it (the last answer's input and
    // output tokens, from the stand-in); post_tokens is Claude Code's own estimate of the
    // summary plus what it attaches again, not the compaction turn's output.
    assert_eq!(pre, 5_040, "pre_tokens = the last answer's usage");
    assert_eq!(
        c.answer.as_deref(),
        Some(
            format!(
                "compacted: context {pre} tokens before (the model API's count), about {post} \
                 after (the agent's estimate: summary plus re-attached context)"
            )
            .as_str()
        )
    );

    let summaries = env.api.compaction_requests();
    assert_eq!(summaries.len(), 1, "one summary request");
    assert!(
        summaries[0].has_text("user", "Which port does the API use?")
            && summaries[0].has_text("assistant", "The admin port is 9090."),
        "the summary request holds the conversation: {}",
        seen(&summaries[0])
    );

    // The next tell continues from the summary.
    env.api.push(Answer::text("It is 8080."));
    let t = r
        .tell("a", "b", "Remind me of the API port?", FOREVER)
        .await
        .expect("tell after compaction");
    assert_eq!(t.answer.as_deref(), Some("It is 8080."), "{t:?}");
    let req = env.api.message_requests().pop().expect("request");
    assert_eq!(req.last_user_text(), "Remind me of the API port?");
    assert!(
        req.has_text("user", "team a asked for the API port; it is 8080."),
        "the summary replaces the history: {}",
        seen(&req)
    );
    assert_eq!(session(&r).message_count, 1);

    r.shutdown().await;
    env.assert_no_agents().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_error_fails_the_tell_and_the_agent_stays_usable() {
    let env = Env::new("").await;
    let r = env.router();
    env.api.push(Answer::error(500, "the fake API is down"));
    let t = r
        .tell("a", "b", "Are you there?", FOREVER)
        .await
        .expect("tell");
    assert_eq!(t.state, TellState::Failed, "{t:?}");
    assert_eq!(t.answer, None);
    let err = t.error.clone().expect("error");
    assert!(
        err.contains("500") && err.contains("the fake API is down"),
        "{err}"
    );
    assert_eq!(
        env.api.message_requests().len(),
        1,
        "CLAUDE_CODE_MAX_RETRIES=0: no retry"
    );
    let s = session(&r);
    assert_eq!(s.status, SessionStatus::Error);
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("the fake API is down")),
        "{s:?}"
    );
    assert_eq!(s.process_state, ProcessState::Idle, "claude is still up");
    assert_eq!(s.message_count, 0);
    let pid = s.agent_pid.expect("agent pid");

    // Overloaded: the same.
    env.api.push(Answer::error(529, "overloaded, try later"));
    let t = r.tell("a", "b", "Hello?", FOREVER).await.expect("tell");
    assert_eq!(t.state, TellState::Failed, "{t:?}");
    assert!(
        t.error
            .as_deref()
            .is_some_and(|e| e.contains("529") && e.contains("overloaded, try later")),
        "{t:?}"
    );

    // The same claude answers the next tell; its request carries the failed prompts too.
    env.api.push(Answer::text("Yes, back again."));
    let t = r.tell("a", "b", "Now?", FOREVER).await.expect("tell");
    assert_eq!(t.state, TellState::Answered, "{t:?}");
    assert_eq!(t.answer.as_deref(), Some("Yes, back again."));
    let s = session(&r);
    assert_eq!(s.agent_pid, Some(pid), "the same claude process");
    assert_eq!(
        s.status,
        SessionStatus::Active,
        "a good turn clears the error"
    );
    assert_eq!(s.message_count, 1);
    let req = env.api.message_requests().pop().expect("request");
    assert_eq!(env.api.message_requests().len(), 3);
    assert_eq!(req.last_user_text(), "Now?");
    assert!(req.has_text("user", "Are you there?"), "{}", seen(&req));
    let report = r.report("a", "b", 10).expect("report");
    let states: Vec<TellState> = report.iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        [TellState::Failed, TellState::Failed, TellState::Answered]
    );

    r.shutdown().await;
    env.assert_no_agents().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_turn_fails_the_tell_and_leaves_no_claude_process() {
    let env = Env::new("shutdown_grace = \"300ms\"").await;
    let r = env.router();
    env.api
        .push(Answer::text("Too late.").with_delay(Duration::from_secs(120)));
    let t = r
        .submit("a", "b", TellKind::Tell, "Take your time.", None)
        .await
        .expect("submit");
    // Claude is in the turn once the stand-in holds its request.
    env.api.wait_for_requests(1, Duration::from_secs(30)).await;
    assert_eq!(session(&r).process_state, ProcessState::Processing);
    let pids = env.agent_pids();
    assert!(!pids.is_empty());

    r.shutdown().await;
    // The turn outlived the grace, so its claude was SIGKILLed: Claude Code then leaves its
    // messaging socket behind. Don't litter the machine with it.
    for pid in pids {
        let _ = std::fs::remove_file(messaging_socket(pid));
    }
    let done = r.tell_status(&t.tell_id).expect("status");
    assert_eq!(done.state, TellState::Failed, "{done:?}");
    assert!(
        done.error
            .as_deref()
            .is_some_and(|e| e.contains("shut down")),
        "{done:?}"
    );
    env.assert_no_agents().await;
    let s = session(&r);
    assert_eq!(s.process_state, ProcessState::Stopped);
    assert!(s.agent_pid.is_none() && s.owner_pid.is_none());
    assert!(
        r.tell("a", "b", "late", Wait::None).await.is_err(),
        "no tells after shutdown"
    );
}

/// Claude Code's `total_cost_usd` is a running total of the session (it even carries on across
/// `--resume`), not the cost of the turn. Switchboard must record each tell's own cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_is_recorded_per_turn_not_as_claude_codes_running_total() {
    let env = Env::new("").await;
    let r = env.router();
    let mut tells = Vec::new();
    for text in ["one", "two"] {
        env.api.push(Answer::text("ok").with_usage(100, 10));
        tells.push(r.tell("a", "b", text, FOREVER).await.expect("tell"));
    }
    r.shutdown().await;
    let r = env.router();
    env.api.push(Answer::text("ok").with_usage(100, 10));
    tells.push(r.tell("a", "b", "three", FOREVER).await.expect("tell"));
    let costs: Vec<f64> = tells.iter().map(|t| t.cost_usd.unwrap_or(0.0)).collect();
    assert!(costs[0] > 0.0, "{costs:?}");
    for c in &costs {
        assert!(
            (c - costs[0]).abs() < 1e-9,
            "equal turns cost the same: {costs:?}"
        );
    }
    let s = session(&r);
    assert!(
        (s.cost_usd - 3.0 * costs[0]).abs() < 1e-9,
        "session cost {} for turns {costs:?}",
        s.cost_usd
    );
    r.shutdown().await;
    env.assert_no_agents().await;
}

/// Cancelling a running turn interrupts Claude Code; its result carries only an internal
/// diagnostic (`[ede_diagnostic] result_type=user ...`), which the user never sees raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_turn_is_explained_in_words_not_claude_codes_diagnostic() {
    let env = Env::new("").await;
    let r = env.router();
    env.api
        .push(Answer::text("too late").with_delay(Duration::from_secs(30)));
    let t = r
        .submit("a", "b", TellKind::Tell, "Take your time.", None)
        .await
        .expect("submit");
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.api.message_requests().is_empty() {
        assert!(Instant::now() < deadline, "claude never asked the model");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = r.cancel("a", "b").expect("cancel");
    assert_eq!(report.interrupted.as_deref(), Some(t.tell_id.as_str()));
    let t = r.wait_for(&t.tell_id, FOREVER).await.expect("wait");
    assert_eq!(t.state, TellState::Cancelled, "{t:?}");
    assert_eq!(t.answer, None);
    assert_eq!(
        t.error.as_deref(),
        Some("the turn was interrupted before the model answered"),
        "{t:?}"
    );
    r.shutdown().await;
    env.assert_no_agents().await;
}

/// Cancelling while a tool runs: Claude Code stops the tool and ends the turn with
/// `terminal_reason: aborted_tools` and only an internal diagnostic; the user gets words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_while_a_tool_runs_is_explained_in_words() {
    let env = Env::with_b_options("", "allowed_tools = [\"Bash\"]").await;
    let r = env.router();
    env.api.push(Answer::text("Running it.").with_tool_use(
        "toolu_sleep_1",
        "Bash",
        serde_json::json!({"command": "tail -f /dev/null", "description": "wait"}),
    ));
    let t = r
        .submit("a", "b", TellKind::Tell, "Run the slow thing.", None)
        .await
        .expect("submit");
    // The tool's process carries the test's marker (claude passes its environment on).
    let tool_runs = || {
        env.agent_pids().iter().any(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("tail"))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tool_runs() {
        assert!(
            Instant::now() < deadline,
            "the tool never started: {:?} {:?}",
            r.tell_status(&t.tell_id),
            env.api
                .message_requests()
                .iter()
                .map(seen)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.cancel("a", "b").expect("cancel");
    let t = r.wait_for(&t.tell_id, FOREVER).await.expect("wait");
    assert_eq!(t.state, TellState::Cancelled, "{t:?}");
    assert_eq!(
        t.error.as_deref(),
        Some("the turn was interrupted while a tool was running"),
        "{t:?}"
    );
    r.shutdown().await;
    env.assert_no_agents().await;
}
