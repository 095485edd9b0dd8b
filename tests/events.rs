//! The event engine: every step of a tell and of an agent, and the agent's own activity, in the
//! database (in order, after a restart) and on a live bus subscriber. With the real Claude Code
//! against the model stand-in (tool uses and results, text, usage, 529 retries as status) and
//! with the scripted agent for the failure paths (crash, stall, idle), the per-tell bound, a
//! subscriber that never reads, retention, and migration 0006 from a version 5 database.

mod fake_api;
#[path = "support/claude_code.rs"]
mod pinned_claude;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/test_agent.rs"]
mod test_agent;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_api::{Answer, FakeApi};
use serde_json::{json, Value};
use switchboard::events::{Event, EventFilter, EventKind, NewEvent};
use switchboard::router::{Router, Wait};
use switchboard::store::{EventRow, NewApproval, SessionStore, TellState, MIGRATIONS};
use switchboard::{SessionManager, TeamsConfig};
use tempfile::TempDir;
use tokio::sync::broadcast;

const FOREVER: Wait = Wait::For(Duration::from_secs(90));
const MARKER_VAR: &str = "TEST_AGENT_MARKER";

struct Env {
    dir: TempDir,
    marker: String,
    config: Arc<TeamsConfig>,
}

impl Env {
    /// Teams `a` and `b`; b's agent is `agent` with `b_env` (TOML `K = "V"` pairs) in its env.
    fn new(settings: &str, agent: &str, b_env: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = uuid::Uuid::new_v4().to_string();
        let root = dir.path().display().to_string();
        let home = format!("{root}/home");
        std::fs::create_dir_all(&home).expect("mkdir home");
        let mut env = vec![("HOME", home.clone()), (MARKER_VAR, marker.clone())];
        if std::env::var_os("CLAUDE_CONFIG_DIR").is_some() {
            env.push(("CLAUDE_CONFIG_DIR", format!("{home}/.claude")));
        }
        env.extend(b_env.iter().map(|(k, v)| (*k, v.clone())));
        let env: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("{k} = {}", Value::from(v.as_str())))
            .collect();
        let mut text = format!("[settings]\n{settings}\n[database]\npath = \"{root}/sb.db\"\n");
        for t in ["a", "b"] {
            std::fs::create_dir_all(dir.path().join(t)).expect("mkdir");
            text.push_str(&format!(
                "[teams.{t}]\npath = \"{root}/{t}\"\nagent_path = {}\nenv = {{ {} }}\n",
                Value::from(agent),
                env.join(", "),
            ));
        }
        let config = TeamsConfig::parse(&text, None, &|_| None)
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
        std::fs::write(dir.path().join("teams.toml"), &text).expect("write teams.toml");
        Self {
            dir,
            marker,
            config: Arc::new(config),
        }
    }

    /// The scripted agent for both teams.
    fn scripted(settings: &str) -> Self {
        Self::new(settings, test_agent::path(), &[])
    }

    /// The real Claude Code for both teams, against `api`, with at most `retries` API retries.
    fn claude(settings: &str, api: &FakeApi, retries: u32) -> Self {
        Self::new(
            settings,
            &pinned_claude::binary(),
            &[
                ("ANTHROPIC_BASE_URL", api.url()),
                ("ANTHROPIC_API_KEY", "test-key".to_string()),
                ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_string()),
                ("DISABLE_TELEMETRY", "1".to_string()),
                ("CLAUDE_CODE_MAX_RETRIES", retries.to_string()),
            ],
        )
    }

    fn router(&self) -> Router {
        let m = SessionManager::open(Arc::clone(&self.config)).expect("open");
        m.initialize().expect("initialize");
        let r = Router::new(Arc::new(m));
        r.recover(None).expect("recover");
        r
    }

    fn team_dir(&self, team: &str) -> std::path::PathBuf {
        self.dir.path().join(team)
    }

    /// Polls (bounded) until no agent process of this test is left.
    async fn assert_no_agents(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = procs::pids_with_env(MARKER_VAR, &self.marker);
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "orphan agents: {left:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `switchboard` binary with this test's teams file.
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("--config")
            .arg(self.dir.path().join("teams.toml"))
            .args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path().join("home"))
            .env_remove("SWITCHBOARD_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start switchboard")
            .wait_with_output()
            .expect("run switchboard");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Every event the receiver holds now (the writer has flushed them).
fn drain(rx: &mut broadcast::Receiver<Arc<Event>>) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => out.push((*e).clone()),
            Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => return out,
        }
    }
}

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.type_name()).collect()
}

/// The events of `wanted` types, in order, as their type names.
fn only<'a>(events: &'a [Event], wanted: &[&str]) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| wanted.contains(&e.kind.type_name()))
        .collect()
}

/// Waits (bounded) for an event matching `pred` on `rx`.
async fn wait_event(
    rx: &mut broadcast::Receiver<Arc<Event>>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(e)) if pred(&e) => return (*e).clone(),
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("bus closed waiting for {what}: {e}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

// ---- real Claude Code ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tells_events_are_stored_and_broadcast_in_order_with_tool_activity() {
    let api = FakeApi::start().await;
    let env = Env::claude("", &api, 0);
    let notes = env.team_dir("b").join("notes.txt");
    std::fs::write(
        &notes,
        "the build is green\nAPI_KEY=sk-ant-abcdefabcdefabcdef0123456789\n",
    )
    .expect("write notes");
    let missing = env.team_dir("b").join("missing.txt");
    api.push(Answer::text("Let me read the notes.").with_tool_use(
        "toolu_read_1",
        "Read",
        json!({"file_path": notes.display().to_string()}),
    ));
    api.push(Answer::text("").with_tool_use(
        "toolu_read_2",
        "Read",
        json!({"file_path": missing.display().to_string()}),
    ));
    api.push(Answer::text("The notes say the build is green."));

    let r = env.router();
    let mut rx = r.manager().events().subscribe();
    let t = r
        .tell("a", "b", "What do the notes say?", FOREVER)
        .await
        .expect("tell");
    assert_eq!(t.state, TellState::Answered, "{t:?}");
    r.manager().events().flush().await;

    let stored = r.manager().store().tell_events(&t.tell_id).expect("events");
    let wanted = [
        "tell_queued",
        "agent_spawning",
        "tell_delivered",
        "agent_ready",
        "text",
        "tool_use",
        "tool_result",
        "tool_use",
        "tool_result",
        "text",
        "usage",
        "tell_answered",
    ];
    let main: Vec<&Event> = only(&stored, &wanted);
    assert_eq!(
        main.iter().map(|e| e.kind.type_name()).collect::<Vec<_>>(),
        wanted,
        "all: {:?}",
        types(&stored)
    );
    // Ids strictly increase; every event names the pair, the session and the tell.
    assert!(stored.windows(2).all(|w| w[0].id < w[1].id));
    for e in &stored {
        assert_eq!(e.from_team.as_deref(), Some("a"));
        assert_eq!(e.to_team.as_deref(), Some("b"));
        assert_eq!(e.session_id.as_deref(), Some(t.session_id.as_str()));
    }
    match &main[4].kind {
        EventKind::Text { text } => assert_eq!(text, "Let me read the notes."),
        other => panic!("{other:?}"),
    }
    match (&main[5].kind, &main[6].kind) {
        (
            EventKind::ToolUse {
                tool_use_id,
                tool,
                input,
            },
            EventKind::ToolResult {
                tool_use_id: answered,
                ok,
                excerpt,
                duration_ms,
            },
        ) => {
            assert_eq!(tool_use_id, "toolu_read_1");
            assert_eq!(tool, "Read");
            assert_eq!(input, &notes.display().to_string());
            assert_eq!(answered, "toolu_read_1");
            assert!(ok);
            assert!(excerpt.contains("the build is green"), "{excerpt}");
            assert!(
                !excerpt.contains("abcdefabcdef") && excerpt.contains("API_KEY=***"),
                "the secret is hidden: {excerpt}"
            );
            assert!(duration_ms.is_some());
        }
        other => panic!("{other:?}"),
    }
    match &main[8].kind {
        EventKind::ToolResult { ok, .. } => assert!(!ok, "reading a missing file is an error"),
        other => panic!("{other:?}"),
    }
    match &main[11].kind {
        EventKind::TellAnswered {
            input_tokens,
            output_tokens,
            ..
        } => {
            assert_eq!(Some(*input_tokens), t.input_tokens);
            assert_eq!(Some(*output_tokens), t.output_tokens);
        }
        other => panic!("{other:?}"),
    }

    // The subscriber saw the same events, with the same ids, in the same order.
    let live: Vec<Event> = drain(&mut rx)
        .into_iter()
        .filter(|e| e.tell_id.as_deref() == Some(t.tell_id.as_str()))
        .collect();
    assert_eq!(live, stored);
    // The process states of the session went by too.
    let all = r
        .manager()
        .store()
        .events_after(0, &EventFilter::default(), 1000)
        .expect("all");
    let states: Vec<String> = all
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ProcessState { state } => Some(state.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        ["spawning", "idle", "processing", "idle"],
        "{states:?}"
    );

    r.shutdown().await;
    r.manager().events().flush().await;
    let last = r
        .manager()
        .store()
        .events_after(0, &EventFilter::default(), 1000)
        .expect("all");
    assert!(
        last.iter().any(
            |e| matches!(&e.kind, EventKind::AgentStopped { reason, .. } if reason == "shutdown")
        ),
        "{:?}",
        types(&last)
    );
    env.assert_no_agents().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overloaded_api_retries_show_as_agent_status() {
    let api = FakeApi::start().await;
    let env = Env::claude("", &api, 10);
    api.push(Answer::error(529, "Overloaded"));
    api.push(Answer::error(529, "Overloaded"));
    api.push(Answer::text("Answered after two retries."));
    let r = env.router();
    let t = r.tell("a", "b", "Busy?", FOREVER).await.expect("tell");
    assert_eq!(t.answer.as_deref(), Some("Answered after two retries."));
    r.manager().events().flush().await;
    let stored = r.manager().store().tell_events(&t.tell_id).expect("events");
    let statuses: Vec<&str> = stored
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AgentStatus { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert!(
        statuses[0].starts_with("retrying, attempt 1/10 (529 overloaded), next in "),
        "{statuses:?}"
    );
    assert!(
        statuses[1].starts_with("retrying, attempt 2/10 (529 overloaded), next in "),
        "{statuses:?}"
    );
    // Before the answer, in order.
    let at = |name: &str| stored.iter().position(|e| e.kind.type_name() == name);
    assert!(at("agent_status") < at("text") && at("text") < at("tell_answered"));
    r.shutdown().await;
    env.assert_no_agents().await;
}

// ---- the scripted agent ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_agents_say_why_crash_with_exit_status_stall_and_idle() {
    let env = Env::scripted("response_timeout = \"2s\"\nidle_timeout = \"1s\"");
    let r = env.router();
    let mut rx = r.manager().events().subscribe();
    let stopped = |reason: &'static str| move |e: &Event| matches!(&e.kind, EventKind::AgentStopped { reason: r, .. } if r == reason);

    let t = r.tell("a", "b", "crash", FOREVER).await.expect("tell");
    assert_eq!(t.state, TellState::Failed);
    let e = wait_event(&mut rx, "crash", stopped("crash")).await;
    assert_eq!(e.tell_id.as_deref(), Some(t.tell_id.as_str()));
    match &e.kind {
        EventKind::AgentStopped { detail, .. } => {
            let d = detail.as_deref().unwrap_or_default();
            assert!(d.contains("exit status 9"), "{d}");
            assert!(d.contains("simulated crash"), "{d}");
        }
        other => panic!("{other:?}"),
    }
    let failed = wait_event(&mut rx, "tell_failed", |e| {
        e.kind.type_name() == "tell_failed"
    })
    .await;
    assert!(matches!(&failed.kind, EventKind::TellFailed { state, .. } if state == "failed"));

    let t = r.tell("a", "b", "hang", FOREVER).await.expect("tell");
    assert_eq!(t.state, TellState::Failed);
    let e = wait_event(&mut rx, "stall", stopped("stall")).await;
    assert_eq!(e.tell_id.as_deref(), Some(t.tell_id.as_str()));
    let failed = wait_event(&mut rx, "tell_failed", |e| {
        e.kind.type_name() == "tell_failed"
    })
    .await;
    assert!(
        matches!(&failed.kind, EventKind::TellFailed { state, .. } if state == "timed_out"),
        "{failed:?}"
    );

    let t = r.tell("a", "b", "hello", FOREVER).await.expect("tell");
    assert_eq!(t.state, TellState::Answered);
    let e = wait_event(&mut rx, "idle stop", stopped("idle")).await;
    assert_eq!(e.to_team.as_deref(), Some("b"));
    r.shutdown().await;
    env.assert_no_agents().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_over_the_per_tell_bound_is_cut_and_marked() {
    let env = Env::scripted("[settings.events]\nmax_events_per_tell = 10\n");
    let r = env.router();
    let mut rx = r.manager().events().subscribe();
    let t = r.tell("a", "b", "tools:30", FOREVER).await.expect("tell");
    assert_eq!(t.answer.as_deref(), Some("tools done"));
    r.manager().events().flush().await;
    let stored = r.manager().store().tell_events(&t.tell_id).expect("events");
    let activity = stored.iter().filter(|e| e.kind.is_activity()).count();
    assert_eq!(activity, 10, "{:?}", types(&stored));
    let marks: Vec<&Event> = only(&stored, &["activity_truncated"]);
    assert_eq!(marks.len(), 1);
    assert!(matches!(
        marks[0].kind,
        EventKind::ActivityTruncated { events: 10, .. }
    ));
    // Lifecycle events are kept after the bound.
    assert_eq!(
        stored.last().map(|e| e.kind.type_name()),
        Some("tell_answered")
    );
    // Live, every tool use and result went by; those not stored have id 0.
    let live: Vec<Event> = drain(&mut rx)
        .into_iter()
        .filter(|e| e.tell_id.as_deref() == Some(t.tell_id.as_str()))
        .collect();
    assert_eq!(only(&live, &["tool_use"]).len(), 30);
    assert_eq!(only(&live, &["tool_result"]).len(), 30);
    assert_eq!(live.iter().filter(|e| e.id == 0).count(), 60 + 1 - 10);
    // The bound is per tell: the next tell stores its own activity.
    let t2 = r.tell("a", "b", "tools:2", FOREVER).await.expect("tell");
    r.manager().events().flush().await;
    let next = r
        .manager()
        .store()
        .tell_events(&t2.tell_id)
        .expect("events");
    assert_eq!(next.iter().filter(|e| e.kind.is_activity()).count(), 5);
    r.shutdown().await;
    env.assert_no_agents().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_does_not_hold_up_a_tell() {
    let env = Env::scripted(
        "[settings.events]\nmax_events_per_tell = 100000\nmax_bytes_per_tell = \"64MiB\"\n",
    );
    let r = env.router();
    let mut idle = r.manager().events().subscribe();
    // 6,000 activity events: more than a live receiver buffers.
    let t = r.tell("a", "b", "tools:3000", FOREVER).await.expect("tell");
    assert_eq!(t.answer.as_deref(), Some("tools done"));
    r.manager().events().flush().await;
    // The idle receiver is told it lagged, and reads the gap from the database.
    let missed = match idle.recv().await {
        Err(broadcast::error::RecvError::Lagged(n)) => n,
        other => panic!("expected a lag, got {other:?}"),
    };
    assert!(missed > 0);
    let next = idle
        .recv()
        .await
        .expect("the newest events are still there");
    let gap = r
        .manager()
        .store()
        .events_after(
            0,
            &EventFilter {
                tell: Some(t.tell_id.clone()),
                ..Default::default()
            },
            100_000,
        )
        .expect("gap");
    assert_eq!(only(&gap, &["tool_use"]).len(), 3000);
    assert!(gap.iter().any(|e| e.id == next.id));
    r.shutdown().await;
    env.assert_no_agents().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_prunes_events_past_their_retention() {
    let env = Env::scripted("[settings.events]\nretention = \"2d\"\n");
    let r = env.router();
    let day = 86_400_000;
    let now = switchboard::util::now_ms();
    let store = r.manager().store();
    let mk = |at: i64, text: &str| {
        EventRow::new(
            at,
            NewEvent::pair("a", "b", EventKind::AgentStatus { text: text.into() }),
        )
    };
    store
        .insert_events(&[
            mk(now - 3 * day, "old"),
            mk(now - day, "recent"),
            mk(now, "now"),
        ])
        .expect("insert");
    assert_eq!(r.sweep().expect("sweep"), 0, "no tell failed");
    let left = store
        .events_after(0, &EventFilter::default(), 100)
        .expect("left");
    let texts: Vec<String> = left.iter().map(|e| e.kind.describe()).collect();
    assert_eq!(texts, ["status: recent", "status: now"]);
    // Ids go on from where they were: a reader that saw id 3 misses nothing new.
    store.insert_events(&[mk(now, "later")]).expect("insert");
    assert_eq!(store.max_event_id().expect("max"), 4);

    // Permission requests decided before the retention go too; a pending one stays.
    let request = |id: &'static str, decided: bool| NewApproval {
        approval_id: id,
        tell_id: None,
        session_id: "s",
        from_team: "a",
        to_team: "b",
        request_id: id,
        tool_use_id: None,
        tool: "Write",
        input: "x",
        decide_by: "human",
        decided: decided.then_some(("allowed", "rule", None, None)),
        expires_at: now + day,
        owner: r.manager().me(),
    };
    store
        .insert_approval(&request("old", true), now - 3 * day)
        .expect("insert");
    store
        .insert_approval(&request("recent", true), now - day)
        .expect("insert");
    store
        .insert_approval(&request("waiting", false), now - 3 * day)
        .expect("insert");
    r.sweep().expect("sweep");
    assert!(
        store.get_approval("old").expect("get").is_none(),
        "old decision pruned"
    );
    assert!(store.get_approval("recent").expect("get").is_some());
    assert!(
        store.get_approval("waiting").expect("get").is_some(),
        "pending stays"
    );
    r.shutdown().await;
}

#[test]
fn tells_show_prints_the_timeline_from_the_database_after_a_restart() {
    let env = Env::scripted("");
    let (code, out, err) = env.run(&["tell", "a", "b", "tools:2"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.trim(), "tools done");
    let (_, report, _) = env.run(&["report", "a", "b", "--json"]);
    let tells: Value = serde_json::from_str(&report).expect("report json");
    let id = tells[0]["tell_id"].as_str().expect("id").to_string();

    // A new process reads it back.
    let (code, shown, err) = env.run(&["tells", "show", &id]);
    assert_eq!(code, 0, "{err}");
    let timeline = shown
        .split("--- timeline\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no timeline in:\n{shown}"));
    let kinds: Vec<&str> = timeline
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|k| *k != "process_state")
        .collect();
    assert_eq!(
        kinds,
        [
            "tell_queued",
            "agent_spawning",
            "tell_delivered",
            "agent_ready",
            "tool_use",
            "tool_result",
            "tool_use",
            "tool_result",
            "text",
            "usage",
            "tell_answered"
        ],
        "{timeline}"
    );
    assert!(timeline.contains("Bash echo 1"), "{timeline}");
    assert!(timeline.contains("-> ok"), "{timeline}");
    let (code, json_out, _) = env.run(&["tells", "show", &id, "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&json_out).expect("json");
    assert_eq!(v["events"][0]["type"], "tell_queued");
    assert_eq!(
        v["events"].as_array().map(Vec::len),
        Some(timeline.lines().count())
    );
    let (_, full, _) = env.run(&["report", "a", "b", "--full"]);
    assert!(
        full.contains("--- timeline\n") && full.contains("Bash echo 0"),
        "{full}"
    );
}

#[test]
fn migration_0006_keeps_a_version_5_database_and_adds_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sb.db");
    {
        let c = rusqlite::Connection::open(&path).expect("raw");
        c.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .expect("table");
        for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 <= 5) {
            c.execute_batch(sql).expect("migration");
            c.execute(
                "INSERT INTO schema_migrations VALUES (?1, ?2, 0)",
                rusqlite::params![version, name],
            )
            .expect("record");
        }
        c.execute_batch(
            "INSERT INTO sessions (session_id, from_team, to_team, created_at, last_used_at)
               VALUES ('11111111-1111-4111-8111-111111111111', 'a', 'b', 1, 1);
             INSERT INTO tells (tell_id, session_id, from_team, to_team, text, state, created_at, answer)
               VALUES ('22222222-2222-4222-8222-222222222222', '11111111-1111-4111-8111-111111111111',
                       'a', 'b', 'hello', 'answered', 1, 'hi');",
        )
        .expect("data");
    }
    let store = SessionStore::open(&path).expect("migrate");
    assert_eq!(
        store.schema_version().expect("version"),
        switchboard::store::SCHEMA_VERSION
    );
    let t = store
        .get_tell("22222222-2222-4222-8222-222222222222")
        .expect("read")
        .expect("the tell is kept");
    assert_eq!(t.answer.as_deref(), Some("hi"));
    assert!(store.get_by_pair("a", "b").expect("read").is_some());
    assert_eq!(store.max_event_id().expect("max"), 0);
    assert!(store.tell_events(&t.tell_id).expect("events").is_empty());
    let ids = store
        .insert_events(&[EventRow::new(
            5,
            NewEvent::pair("a", "b", EventKind::TellDelivered).tell(Some(&t.tell_id)),
        )])
        .expect("insert");
    assert_eq!(store.tell_events(&t.tell_id).expect("events")[0].id, ids[0]);
}

#[test]
fn the_readme_events_settings_load_verbatim_and_are_the_defaults() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let section = &readme[readme.find("## Events\n").expect("README section Events")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let block = &section[start..start + section[start..].find("```").expect("block end")];
    assert!(block.contains("[settings.events]"), "{block}");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "{block}\n[database]\nin_memory = true\n[teams.a]\npath = {}\n",
        Value::from(dir.path().display().to_string())
    );
    let config = TeamsConfig::parse(&text, None, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.settings.events,
        switchboard::config::EventsSettings::default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_sleep_and_reboot_are_events() {
    let env = Env::scripted("");
    let r = env.router();
    r.tell("a", "b", "hello", FOREVER).await.expect("tell");
    let t = r.compact("a", "b", FOREVER).await.expect("compact");
    assert_eq!(t.state, TellState::Answered, "{t:?}");
    r.manager().events().flush().await;
    let stored = r.manager().store().tell_events(&t.tell_id).expect("events");
    let steps: Vec<String> = only(
        &stored,
        &[
            "compaction_begin",
            "agent_status",
            "compaction_end",
            "tell_answered",
        ],
    )
    .iter()
    .map(|e| e.kind.describe())
    .collect();
    let s = r.manager().get("a", "b").expect("get").expect("session");
    let (pre, post) = (
        s.last_pre_compact_tokens.expect("pre"),
        s.last_post_compact_tokens.expect("post"),
    );
    assert_eq!(steps.len(), 4, "{steps:?}");
    assert_eq!(steps[0], "compaction started");
    assert_eq!(steps[1], "status: compacting");
    assert_eq!(
        steps[2],
        format!("compaction done ({pre} -> {post} tokens)")
    );
    assert!(steps[3].starts_with("answered"), "{steps:?}");

    let mut rx = r.manager().events().subscribe();
    assert!(
        r.sleep("a", "b").await.expect("sleep"),
        "an agent was running"
    );
    let e = wait_event(&mut rx, "sleep", |e| e.kind.type_name() == "agent_stopped").await;
    assert!(
        matches!(&e.kind, EventKind::AgentStopped { reason, .. } if reason == "sleep"),
        "{e:?}"
    );
    r.wake("a", "b").await.expect("wake");
    let e = wait_event(&mut rx, "ready", |e| e.kind.type_name() == "agent_ready").await;
    assert_eq!(e.session_id.as_deref(), Some(s.session_id.as_str()));
    r.reboot("a", "b").await.expect("reboot");
    let e = wait_event(&mut rx, "reboot", |e| e.kind.type_name() == "agent_stopped").await;
    assert!(
        matches!(&e.kind, EventKind::AgentStopped { reason, .. } if reason == "reboot"),
        "{e:?}"
    );
    r.shutdown().await;
    env.assert_no_agents().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_cannot_start_is_a_stopped_event_with_the_reason() {
    let env = Env::new("", "/nonexistent/switchboard-agent", &[]);
    let r = env.router();
    let t = r.tell("a", "b", "hello", FOREVER).await.expect("tell");
    assert_eq!(t.state, TellState::Failed);
    r.manager().events().flush().await;
    let stored = r.manager().store().tell_events(&t.tell_id).expect("events");
    assert_eq!(
        types(&stored),
        [
            "tell_queued",
            "agent_spawning",
            "agent_stopped",
            "tell_failed"
        ],
        "{stored:?}"
    );
    match &stored[2].kind {
        EventKind::AgentStopped { reason, detail } => {
            assert_eq!(reason, "crash");
            assert!(
                detail
                    .as_deref()
                    .unwrap_or_default()
                    .contains("/nonexistent/switchboard-agent"),
                "{detail:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    r.shutdown().await;
}
