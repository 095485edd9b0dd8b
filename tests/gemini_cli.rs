//! The real Gemini CLI (npm `@google/gemini-cli@0.61.0`, installed into `.tools/gemini` by
//! `scripts/test.sh`, or `$SWITCHBOARD_TEST_GEMINI`) run headless, one process per turn, with the
//! launch and the settings of `switchboard::agent::gemini`, against the local stand-in of the
//! Gemini API (`tests/fake_api/gemini.rs`); its lines decoded by `gemini::decode`. What a user
//! would notice: answers, a conversation that carries on turn after turn, MCP tool calls,
//! tokens, a stopped turn, and a model API that is down ending the turn with a clear error
//! after a bounded number of tries.

mod fake_api;
#[path = "support/agent_clis.rs"]
mod pinned;
mod support;

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use fake_api::gemini::{self, Answer};
use serde_json::{json, Value};
use switchboard::agent::activity::{Activity, Tokens, TurnOutcome, TurnTally};
use switchboard::agent::adapter::SwitchboardServer;
use switchboard::agent::event::read_line_bounded;
use switchboard::agent::gemini::{self as adapter, GeminiSetup};
use tempfile::TempDir;
use tokio::io::{AsyncWriteExt, BufReader};

/// How long one turn may take (generous: a loaded machine, a cold start of the CLI).
const TURN: Duration = Duration::from_secs(120);
const MODEL: &str = "gemini-2.5-flash";

/// A team folder and a private HOME, removed at drop.
struct Team {
    _dir: TempDir,
    setup: GeminiSetup,
}

impl Team {
    /// A team whose agent talks to `base_url`, with `attempts` tries per model request and
    /// `more` merged into its settings.
    fn new(base_url: &str, attempts: u32, more: Value) -> Self {
        Self::with_server(base_url, attempts, more, None)
    }

    /// The same, with Switchboard's endpoint in its settings.
    fn with_server(
        base_url: &str,
        attempts: u32,
        more: Value,
        switchboard: Option<&SwitchboardServer>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let project = dir.path().join("project");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&project).expect("mkdir");
        let mut setup = GeminiSetup::new(project, home);
        setup.program = pinned::gemini();
        setup.model = Some(MODEL.into());
        setup.max_attempts = attempts;
        setup
            .env
            .insert("GOOGLE_GEMINI_BASE_URL".into(), base_url.to_string());
        setup.env.insert("GEMINI_API_KEY".into(), "test-key".into());
        let mut settings = adapter::settings_json(&setup, switchboard);
        if let (Some(s), Value::Object(more)) = (settings.as_object_mut(), more) {
            s.extend(more);
        }
        let path = setup.settings_path();
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, settings.to_string()).expect("write settings");
        Self { _dir: dir, setup }
    }
}

/// One finished turn: what was decoded, and how the process ended.
struct Turn {
    tally: TurnTally,
    seen: Vec<Activity>,
    status: ExitStatus,
    stderr: String,
}

/// Runs one turn of `session` (resumed when the team's home already has it).
async fn turn(team: &Team, session: &str, text: &str) -> Turn {
    let child = start_turn(team, session, text, None).await;
    finish_turn(child).await
}

async fn start_turn(
    team: &Team,
    session: &str,
    text: &str,
    switchboard: Option<&SwitchboardServer>,
) -> tokio::process::Child {
    let resume = adapter::has_session(&team.setup, session);
    let spec = adapter::launch_turn(&team.setup, session, resume, switchboard);
    let mut child = tokio::process::Command::new(&spec.program)
        .env_clear()
        .envs(spec.environment())
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", spec.program));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(text.as_bytes()).await.expect("write");
    drop(stdin); // end of input: the message is complete
    child
}

async fn finish_turn(mut child: tokio::process::Child) -> Turn {
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut stderr = child.stderr.take().expect("stderr");
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut s).await;
        s
    });
    let mut tally = TurnTally::default();
    let mut seen = Vec::new();
    let read_all = async {
        let mut buf = Vec::new();
        while let Ok(Some(Ok(()))) = read_line_bounded(&mut stdout, &mut buf, 16 << 20).await {
            // Gemini prints only JSON on stdout in this mode; anything else is a defect.
            let a =
                adapter::decode(&buf).unwrap_or_else(|bad| panic!("not a stream-json line: {bad}"));
            tally.add(&a);
            seen.push(a);
        }
    };
    tokio::time::timeout(TURN, read_all)
        .await
        .expect("the turn ended in time");
    let status = tokio::time::timeout(TURN, child.wait())
        .await
        .expect("the process exited in time")
        .expect("wait");
    let stderr = err_task.await.unwrap_or_default();
    Turn {
        tally,
        seen,
        status,
        stderr,
    }
}

fn new_session() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_answers_with_text_and_reports_tokens() {
    let api = gemini::start().await;
    api.push(Answer::text("Hello from Gemini's model.").with_usage(900, 100, 21));
    let team = Team::new(&gemini::base_url(&api), 2, json!({}));
    let session = new_session();
    assert!(!adapter::has_session(&team.setup, &session));
    let t = turn(&team, &session, "Say hello.").await;
    assert!(t.status.success(), "{:?} {}", t.status, t.stderr);
    assert_eq!(
        t.tally.outcome,
        Some(TurnOutcome::Completed),
        "{:?}",
        t.seen
    );
    assert_eq!(t.tally.answer(), Some("Hello from Gemini's model."));
    assert_eq!(
        t.tally.tokens,
        Tokens {
            input: 900,
            cached: 100,
            output: 21
        }
    );
    assert_eq!(t.tally.session.as_deref(), Some(session.as_str()));
    let calls = api.model_calls();
    assert_eq!(calls.len(), 1, "one model call for one plain answer");
    assert_eq!(gemini::model(&calls[0]).as_deref(), Some(MODEL));
    assert!(gemini::has_text(&calls[0], "user", "Say hello."));
    assert_eq!(calls[0].header("x-goog-api-key"), Some("test-key"));
    // The session is kept in the team's own home, where the next turn finds it.
    assert!(adapter::has_session(&team.setup, &session));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_turn_resumes_the_session_with_its_context() {
    let api = gemini::start().await;
    api.push(Answer::text("Noted: the code word is ORCHID."));
    api.push(Answer::text("The code word was ORCHID."));
    let team = Team::new(&gemini::base_url(&api), 2, json!({}));
    let session = new_session();
    let first = turn(&team, &session, "Remember the code word ORCHID.").await;
    assert!(first.status.success(), "{}", first.stderr);
    let second = turn(&team, &session, "What was the code word?").await;
    assert!(second.status.success(), "{}", second.stderr);
    assert_eq!(second.tally.session.as_deref(), Some(session.as_str()));
    assert_eq!(second.tally.answer(), Some("The code word was ORCHID."));
    let calls = api.model_calls();
    let last = calls.last().expect("a call");
    assert!(
        gemini::has_text(last, "user", "Remember the code word ORCHID.")
            && gemini::has_text(last, "model", "Noted: the code word is ORCHID."),
        "the resumed turn sends the earlier exchange: {:?}",
        gemini::content_texts(last)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_tool_call_of_a_trusted_server_runs() {
    let api = gemini::start().await;
    api.push(Answer::text("Calling echo.").with_mcp_call("echo", "echo", json!({"text": "ping"})));
    api.push(Answer::text("The echo answered."));
    let (python, script) = pinned::echo_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let log: PathBuf = dir.path().join("echo.log");
    let team = Team::new(
        &gemini::base_url(&api),
        2,
        json!({"mcpServers": {"echo": {"command": python, "args": [script],
               "env": {"ECHO_SERVER_LOG": log.display().to_string()}, "trust": true}}}),
    );
    let t = turn(&team, &new_session(), "Use the echo tool.").await;
    assert!(t.status.success(), "{}", t.stderr);
    assert_eq!(t.tally.tool_uses.len(), 1, "{:?}", t.seen);
    let (id, tool, input) = &t.tally.tool_uses[0];
    assert_eq!(tool, "mcp_echo_echo");
    assert_eq!(input, r#"{"text":"ping"}"#);
    assert_eq!(t.tally.tool_results.len(), 1);
    let (rid, ok, output) = &t.tally.tool_results[0];
    assert_eq!(rid, id);
    assert!(*ok && output.contains("echo: ping"), "{output}");
    assert_eq!(t.tally.answer(), Some("The echo answered."));
    let calls = api.model_calls();
    assert!(gemini::tool_names(&calls[0]).contains(&"mcp_echo_echo".to_string()));
    assert!(
        gemini::has_text(&calls[1], "tool", "echo: ping"),
        "{:?}",
        gemini::content_texts(&calls[1])
    );
    assert!(std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("tools/call"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_api_that_fails_ends_the_turn_after_bounded_tries() {
    let api = gemini::start().await;
    api.set_default(Answer::error(500, "the model is down"));
    let team = Team::new(&gemini::base_url(&api), 2, json!({}));
    let t = turn(&team, &new_session(), "Anyone there?").await;
    assert!(!t.status.success(), "a failed turn exits non-zero");
    match &t.tally.outcome {
        Some(TurnOutcome::Failed(why)) => {
            assert!(why.contains("the model is down"), "{why}");
        }
        other => panic!("{other:?} {:?}", t.seen),
    }
    assert_eq!(api.model_calls().len(), 2, "general.maxAttempts = 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_api_that_is_unreachable_ends_the_turn() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let team = Team::new(&format!("http://127.0.0.1:{port}"), 2, json!({}));
    let t = turn(&team, &new_session(), "Anyone there?").await;
    assert!(!t.status.success());
    assert!(
        matches!(&t.tally.outcome, Some(TurnOutcome::Failed(why)) if why.contains("fetch failed")),
        "{:?}",
        t.seen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_turn_ends_its_process_and_the_session_goes_on() {
    let api = gemini::start().await;
    api.push(Answer::text("too late").with_delay(Duration::from_secs(300)));
    api.push(Answer::text("Back again."));
    let team = Team::new(&gemini::base_url(&api), 2, json!({}));
    let session = new_session();
    let child = start_turn(&team, &session, "Take your time.", None).await;
    api.wait_for_requests(1, TURN).await;
    // The interrupt of a headless turn: SIGTERM to its process group.
    let pid = child.id().expect("pid") as libc::pid_t;
    // SAFETY: kill(2) on the group this test started.
    let sent = unsafe { libc::kill(-pid, libc::SIGTERM) };
    assert_eq!(sent, 0);
    let stopped = finish_turn(child).await;
    // Gemini 0.61.0 ends cleanly on SIGTERM, without a result line: no answer, no outcome.
    assert_eq!(
        stopped.tally.outcome, None,
        "{:?} {:?}",
        stopped.status, stopped.seen
    );
    assert_ne!(
        stopped.tally.answer(),
        Some("too late"),
        "only what came before the stop"
    );
    let next = turn(&team, &session, "Still there?").await;
    assert!(next.status.success(), "{}", next.stderr);
    assert_eq!(next.tally.answer(), Some("Back again."));
}

/// Switchboard's own endpoint (a real `switchboard serve --http`) in the team's settings, its
/// header values (`$SWITCHBOARD_MCP_TOKEN_<n>`) filled in from each turn's environment: a call
/// of `team_teams` lists the teams; with a wrong token the server refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboards_endpoint_is_reached_with_its_headers() {
    let env = support::TestEnv::new();
    let serve = support::serve::ServeProcess::start(&env);
    for (token, works) in [(serve.token(), true), ("wrong-token".to_string(), false)] {
        let api = gemini::start().await;
        api.push(Answer::text("Listing teams.").with_mcp_call(
            "switchboard",
            "team_teams",
            json!({}),
        ));
        api.push(Answer::text("Done."));
        let server = SwitchboardServer {
            url: serve.url.clone(),
            headers: [
                ("Authorization".to_string(), format!("Bearer {token}")),
                ("X-Switchboard-Team".to_string(), "frontend".to_string()),
            ]
            .into(),
            timeout_ms: 60_000,
        };
        let team = Team::with_server(&gemini::base_url(&api), 2, json!({}), Some(&server));
        let settings = std::fs::read_to_string(team.setup.settings_path()).expect("settings");
        assert!(!settings.contains(&token), "no secret in the settings file");
        let child = start_turn(
            &team,
            &new_session(),
            "Which teams are there?",
            Some(&server),
        )
        .await;
        let t = finish_turn(child).await;
        assert_eq!(
            t.tally.outcome,
            Some(TurnOutcome::Completed),
            "{:?} {}",
            t.seen,
            t.stderr
        );
        let listed = t
            .tally
            .tool_results
            .iter()
            .any(|(_, ok, out)| *ok && out.contains("backend") && out.contains("is_you"));
        assert_eq!(
            listed, works,
            "token ok: {works}; {:?}; stderr: {}",
            t.seen, t.stderr
        );
    }
}
