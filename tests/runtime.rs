//! The agent runtime with the scripted test agent (`switchboard-test-agent`, same protocol as
//! Claude Code): tells answered and recorded, FIFO order, crash, hang, garbage, a 16 MiB line,
//! exit before init, slow init, pool eviction, idle timeout, cancel, compaction, sleep / wake /
//! reboot, shutdown, restart recovery — and never an orphan agent process.

#[path = "common/procs.rs"]
mod procs;
#[path = "common/test_agent.rs"]
mod test_agent;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard::router::{Router, Wait};
use switchboard::store::{ProcessState, SessionStatus, TellKind, TellState};
use switchboard::{SessionManager, TeamsConfig};
use tempfile::TempDir;

struct Env {
    dir: TempDir,
    marker: String,
    config: Arc<TeamsConfig>,
}

impl Env {
    /// Teams a, b, c, d (b's agent gets `b_env` as extra env), all run by the scripted agent.
    fn new(settings: &str, b_env: &str) -> Self {
        Self::with_db(settings, b_env, |root| format!("{root}/sb.db"))
    }

    /// The same, with the database where `db(root)` says.
    fn with_db(settings: &str, b_env: &str, db: impl FnOnce(&str) -> String) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = uuid::Uuid::new_v4().to_string();
        let root = dir.path().display().to_string();
        let agent = test_agent::path();
        let db = db(&root);
        if let Some(parent) = std::path::Path::new(&db).parent() {
            std::fs::create_dir_all(parent).expect("mkdir db folder");
        }
        let mut text = format!("[settings]\n{settings}\n[database]\npath = \"{db}\"\n");
        for t in ["a", "b", "c", "d"] {
            std::fs::create_dir_all(dir.path().join(t)).expect("mkdir");
            let extra = if t == "b" { b_env } else { "" };
            text.push_str(&format!(
                "[teams.{t}]\npath = \"{root}/{t}\"\nagent_path = \"{agent}\"\n\
                 env = {{ HOME = \"{root}/home\", TEST_AGENT_MARKER = \"{marker}\" {extra} }}\n"
            ));
        }
        let config = TeamsConfig::parse(&text, None, &|_| None)
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
        // The same teams file on disk, for tests that run the `switchboard` binary.
        std::fs::write(dir.path().join("teams.toml"), &text).expect("write teams.toml");
        Self {
            dir,
            marker,
            config: Arc::new(config),
        }
    }

    fn router(&self) -> Router {
        let m = SessionManager::open(Arc::clone(&self.config)).expect("open");
        m.initialize().expect("initialize");
        let r = Router::new(Arc::new(m));
        r.recover(None).expect("recover");
        r
    }

    /// The `switchboard` binary with this test's teams file and a HOME of its own.
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.arg("--config")
            .arg(self.dir.path().join("teams.toml"))
            .args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path().join("home"))
            .env_remove("SWITCHBOARD_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    }

    /// Pids of live agent processes of this test (found by the marker in their environment).
    fn agent_pids(&self) -> Vec<u32> {
        procs::pids_with_env("TEST_AGENT_MARKER", &self.marker)
    }

    /// Polls (bounded) until no agent process of this test is left.
    fn assert_no_agents(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.agent_pids();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "orphan agent processes: {left:?}"
            );
            std::thread::yield_now();
        }
    }
}

/// Polls `cond` with a deadline.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const FOREVER: Wait = Wait::For(Duration::from_secs(60));

/// An agent that names the conversation with an id of its own (as Codex names a thread) has that
/// id kept with the session; an agent that uses Switchboard's id (Claude Code) leaves it empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_own_session_id_is_kept_with_the_session() {
    let env = Env::new("", ", TEST_AGENT_INIT_ID = \"thread-0001\"");
    let r = env.router();
    let t = r.tell("a", "b", "hello", FOREVER).await.expect("tell");
    assert_eq!(t.state, TellState::Answered, "{t:?}");
    let s = r
        .manager()
        .get_by_id(&t.session_id)
        .expect("get")
        .expect("session");
    assert_eq!(s.agent_session_id.as_deref(), Some("thread-0001"));
    let t = r.tell("a", "c", "hello", FOREVER).await.expect("tell c");
    let s = r
        .manager()
        .get_by_id(&t.session_id)
        .expect("get")
        .expect("session");
    assert_eq!(s.agent_session_id, None, "the agent used our id");
    r.shutdown().await;
    env.assert_no_agents();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tell_is_answered_and_everything_is_recorded() {
    let env = Env::new("", "");
    let r = env.router();
    let t = r.tell("a", "b", "hello", FOREVER).await.expect("tell");
    assert_eq!(t.state, TellState::Answered, "{t:?}");
    assert_eq!(t.answer.as_deref(), Some("echo: hello"));
    assert!(t.input_tokens.unwrap_or(0) > 0 && t.output_tokens.unwrap_or(0) > 0);
    assert!(t.cost_usd.unwrap_or(0.0) > 0.0);
    let s = r
        .manager()
        .get_by_id(&t.session_id)
        .expect("get")
        .expect("session");
    assert_eq!(s.message_count, 1);
    assert_eq!(s.process_state, ProcessState::Idle);
    assert_eq!(s.input_tokens, t.input_tokens.expect("in"));
    assert!(s.last_response_at.is_some());
    assert_eq!(s.owner_pid, Some(i64::from(std::process::id())));
    assert!(s.agent_pid.is_some());
    let launch = s.launch_command.expect("launch command recorded");
    assert!(
        launch.contains("--session-id") && launch.contains("stream-json"),
        "{launch}"
    );
    assert!(s.team_config_snapshot.expect("snapshot").contains("\"b\""));

    // Second tell: same process, resumed conversation (the agent sees its history).
    let t2 = r.tell("a", "b", "history", FOREVER).await.expect("tell 2");
    assert_eq!(t2.answer.as_deref(), Some("history: 1"));
    assert_eq!(env.agent_pids().len(), 1, "one agent for the pair");
    let report = r.report("a", "b", 10).expect("report");
    assert_eq!(report.len(), 2);
    assert_eq!(report[0].text, "hello");
    r.shutdown().await;
    env.assert_no_agents();
    let s = r
        .manager()
        .get_by_id(&t.session_id)
        .expect("get")
        .expect("session");
    assert_eq!(s.process_state, ProcessState::Stopped);
    assert!(s.owner_pid.is_none() && s.agent_pid.is_none());

    // A new router (a restarted Switchboard) resumes the same conversation.
    let r2 = env.router();
    let t3 = r2.tell("a", "b", "history", FOREVER).await.expect("tell 3");
    assert_eq!(t3.session_id, t.session_id);
    assert_eq!(t3.answer.as_deref(), Some("history: 2"));
    let s = r2
        .manager()
        .get_by_id(&t.session_id)
        .expect("get")
        .expect("session");
    assert!(s.launch_command.expect("launch").contains("--resume"));
    assert_eq!(
        r2.report("a", "b", 10).expect("report").len(),
        3,
        "history survives restarts"
    );
    r2.shutdown().await;
    env.assert_no_agents();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_tells_on_one_pair_are_answered_in_order() {
    let env = Env::new("", "");
    let r = env.router();
    let mut ids: Vec<String> = Vec::new();
    for i in 0..20 {
        let t = r
            .submit("a", "b", TellKind::Tell, &format!("m{i}"), None)
            .await
            .expect("submit");
        ids.push(t.tell_id);
    }
    let mut answered_at = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let t = r.wait_for(id, FOREVER).await.expect("wait");
        assert_eq!(t.state, TellState::Answered);
        assert_eq!(t.answer, Some(format!("echo: m{i}")));
        answered_at.push((
            t.delivered_at.expect("delivered"),
            t.answered_at.expect("answered"),
        ));
    }
    for w in answered_at.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "a tell is delivered only after the previous one is answered"
        );
    }
    let s = r.manager().get("a", "b").expect("get").expect("session");
    assert_eq!(s.message_count, 20);
    r.shutdown().await;
    env.assert_no_agents();
}

/// A tell to a pair whose agent is up and waiting is delivered in the write that stores it
/// (handed over): its events still come in order, each tell is answered, and the counter shows
/// the hand-over happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_to_a_waiting_agent_are_handed_over_with_their_events_in_order() {
    let env = Env::new("", "");
    let r = env.router();
    let first = r.tell("a", "b", "first", FOREVER).await.expect("first");
    assert_eq!(first.state, TellState::Answered);
    let mut tells = Vec::new();
    for i in 0..20 {
        let text = format!("m{i}");
        let t = r.tell("a", "b", &text, FOREVER).await.expect("tell");
        assert_eq!(t.state, TellState::Answered, "{t:?}");
        assert_eq!(t.answer, Some(format!("echo: {text}")));
        tells.push(t);
    }
    let handed = r.counters().handed_over.load(Ordering::Relaxed);
    assert!(
        handed >= 10,
        "tells to a waiting agent are handed over (20 sent one at a time, {handed} handed over)"
    );
    r.manager().events().flush().await;
    for t in &tells {
        let events = r.manager().store().tell_events(&t.tell_id).expect("events");
        let types: Vec<&str> = events.iter().map(|e| e.kind.type_name()).collect();
        let at = |name: &str| {
            let found: Vec<usize> = (0..types.len()).filter(|&i| types[i] == name).collect();
            assert_eq!(
                found.len(),
                1,
                "one {name} event of {}: {types:?}",
                t.tell_id
            );
            found[0]
        };
        let (queued, delivered, answered) =
            (at("tell_queued"), at("tell_delivered"), at("tell_answered"));
        assert!(
            queued < delivered && delivered < answered,
            "queued, delivered, answered, in that order: {types:?}"
        );
        assert!(
            !types.contains(&"agent_spawning"),
            "the agent was up: {types:?}"
        );
    }
    let s = r.manager().get("a", "b").expect("get").expect("session");
    assert_eq!(s.message_count, 21);
    assert_eq!(s.process_state, ProcessState::Idle);
    assert_eq!(s.current_tell_id, None);
    r.shutdown().await;
    env.assert_no_agents();
}

/// A tell another process queued while the pair's agent waited (not yet seen here) keeps its
/// place: a tell submitted here after it, to the waiting agent, is not handed over ahead of
/// it but answered after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tell_queued_elsewhere_first_is_answered_before_a_handed_over_one() {
    // A long tick: the worker does not look at the queue on its own meanwhile.
    let env = Env::new("health_check_interval = \"1h\"", "");
    let r = env.router();
    r.tell("a", "b", "first", FOREVER).await.expect("first");
    // Queued with no wake-up of this router's worker, as by another process.
    let other = SessionManager::open(Arc::clone(&env.config)).expect("open");
    for round in 0..10 {
        let elsewhere = switchboard::router::queue_tell(
            &other,
            "a",
            "b",
            TellKind::Tell,
            &format!("elsewhere {round}"),
            None,
        )
        .expect("queue elsewhere");
        let here = r
            .tell("a", "b", &format!("here {round}"), FOREVER)
            .await
            .expect("tell here");
        let elsewhere = r
            .wait_for(&elsewhere.tell_id, FOREVER)
            .await
            .expect("wait elsewhere");
        assert_eq!(elsewhere.state, TellState::Answered, "{elsewhere:?}");
        assert_eq!(here.state, TellState::Answered, "{here:?}");
        assert!(
            elsewhere.answered_at.expect("answered") <= here.delivered_at.expect("delivered"),
            "round {round}: the tell queued first is answered before the next one is delivered: \
             {elsewhere:?} {here:?}"
        );
        // The same, to the event (milliseconds can tie).
        r.manager().events().flush().await;
        let delivered = |id: &str| {
            r.manager()
                .store()
                .tell_events(id)
                .expect("events")
                .iter()
                .find(|e| e.kind.type_name() == "tell_delivered")
                .map(|e| e.id)
                .expect("a tell_delivered event")
        };
        assert!(
            delivered(&elsewhere.tell_id) < delivered(&here.tell_id),
            "round {round}: delivered in the order queued"
        );
    }
    r.shutdown().await;
    env.assert_no_agents();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_turn_fails_the_tell_and_the_next_tell_resumes() {
    let env = Env::new("", "");
    let r = env.router();
    r.tell("a", "b", "first", FOREVER).await.expect("first");
    let t = r.tell("a", "b", "crash", FOREVER).await.expect("tell");
    assert_eq!(t.state, TellState::Failed);
    let err = t.error.expect("error");
    assert!(
        err.contains("exit status 9") && err.contains("simulated crash"),
        "{err}"
    );
    let s = r.manager().get("a", "b").expect("get").expect("session");
    assert_eq!(s.process_state, ProcessState::Stopped);
    assert_eq!(s.status, SessionStatus::Error);
    assert!(s
        .last_error
        .clone()
        .expect("last error")
        .contains("exit status 9"));
    env.assert_no_agents();
    let next = r.tell("a", "b", "history", FOREVER).await.expect("next");
    assert_eq!(next.state, TellState::Answered);
    assert_eq!(
        next.answer.as_deref(),
        Some("history: 2"),
        "resumed the conversation"
    );
    let s = r.manager().get("a", "b").expect("get").expect("session");
    assert_eq!(
        s.status,
        SessionStatus::Active,
        "a good turn clears the error status"
    );
    r.shutdown().await;
    env.assert_no_agents();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_agent_is_killed_after_the_response_timeout() {
    let env = Env::new("response_timeout = \"1s\"", "");
    let r = env.router();
    let t = r.tell("a", "b", "hang", FOREVER).await.expect("tell");
    assert_eq!(t.state, TellState::Failed);
    assert!(
        t.error
            .as_deref()
            .unwrap_or("")
            .starts_with("timeout: no output from the agent for 1s"),
        "{t:?}"
    );
    env.assert_no_agents();
    let s = r.manager().get("a", "b").expect("get").expect("session");
    assert_eq!(s.process_state, ProcessState::Stopped);
    assert!(s.owner_pid.is_none());
    let next = r.tell("a", "b", "after", FOREVER).await.expect("next");
    assert_eq!(next.answer.as_deref(), Some("echo: after"));
    r.shutdown().await;
    env.assert_no_agents();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_lines_are_counted_not_fatal() {
    let env = Env::new("", "");
    let r = env.router();
    let t = r.tell("a", "b", "garbage", FOREVER).await.expect("tell");
    assert_eq!(t.answer.as_deref(), Some("garbage done"));
    assert_eq!(
        r.counters()
            .bad_lines
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_16_mib_line_is_handled() {
    let env = Env::new("", "");
    let r = env.router();
    let t = r
        .tell("a", "b", &format!("huge:{}", 16 * 1024 * 1024), FOREVER)
        .await
        .expect("tell");
    assert_eq!(t.answer.as_deref(), Some("huge done"));
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_exits_before_init_fails_the_tell_with_its_stderr() {
    let env = Env::new("", ", TEST_AGENT_STARTUP = \"exit\"");
    let r = env.router();
    let t = r.tell("a", "b", "hello", FOREVER).await.expect("tell");
    assert_eq!(t.state, TellState::Failed);
    let err = t.error.expect("error");
    assert!(
        err.contains("before it started") && err.contains("exit status 3"),
        "{err}"
    );
    assert!(err.contains("exiting before init"), "stderr tail: {err}");
    let s = r.manager().get("a", "b").expect("get").expect("session");
    assert_eq!(s.process_state, ProcessState::Stopped);
    r.shutdown().await;
    env.assert_no_agents();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_init_hits_the_spawn_timeout() {
    let env = Env::new(
        "spawn_timeout = \"500ms\"",
        ", TEST_AGENT_STARTUP = \"slow:10000\"",
    );
    let r = env.router();
    let t = r.tell("a", "b", "hello", FOREVER).await.expect("tell");
    assert_eq!(t.state, TellState::Failed);
    assert!(
        t.error
            .as_deref()
            .unwrap_or("")
            .contains("did not start within"),
        "{t:?}"
    );
    r.shutdown().await;
    env.assert_no_agents();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_stops_the_least_recently_used_idle_agent() {
    let env = Env::new("max_processes = 2", "");
    let r = env.router();
    r.tell("a", "b", "1", FOREVER).await.expect("a->b");
    r.tell("a", "c", "2", FOREVER).await.expect("a->c");
    r.tell("a", "b", "3", FOREVER)
        .await
        .expect("a->b again: now c is the LRU");
    assert_eq!(env.agent_pids().len(), 2);
    r.tell("a", "d", "4", FOREVER).await.expect("a->d");
    let m = Arc::clone(r.manager());
    let state = |to: &str| m.get("a", to).expect("get").expect("s").process_state;
    eventually("a->c stopped", || state("c") == ProcessState::Stopped).await;
    assert_eq!(state("b"), ProcessState::Idle);
    assert_eq!(state("d"), ProcessState::Idle);
    assert_eq!(env.agent_pids().len(), 2);
    let live: Vec<String> = r.live_agents().into_iter().map(|l| l.pair).collect();
    assert_eq!(live, ["a:b", "a:d"]);
    r.shutdown().await;
    env.assert_no_agents();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_agent_stops_after_the_idle_timeout() {
    let env = Env::new("idle_timeout = \"300ms\"", "");
    let r = env.router();
    r.tell("a", "b", "hi", FOREVER).await.expect("tell");
    let m = Arc::clone(r.manager());
    eventually("stopped after idle", || {
        m.get("a", "b").expect("get").expect("s").process_state == ProcessState::Stopped
    })
    .await;
    env.assert_no_agents();
    let again = r.tell("a", "b", "history", FOREVER).await.expect("again");
    assert_eq!(again.answer.as_deref(), Some("history: 1"));
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_interrupts_the_running_tell_and_drops_the_queued_ones() {
    let env = Env::new("", "");
    let r = env.router();
    let running = r
        .submit("a", "b", TellKind::Tell, "sleep:30000", None)
        .await
        .expect("submit");
    let queued = r
        .submit("a", "b", TellKind::Tell, "later", None)
        .await
        .expect("submit");
    let m = Arc::clone(r.manager());
    eventually("processing", || {
        m.get("a", "b").expect("get").expect("s").process_state == ProcessState::Processing
    })
    .await;
    let report = r.cancel("a", "b").expect("cancel");
    assert_eq!(
        report.interrupted.as_deref(),
        Some(running.tell_id.as_str())
    );
    assert_eq!(report.cancelled_queued, vec![queued.tell_id.clone()]);
    let t = r.wait_for(&running.tell_id, FOREVER).await.expect("wait");
    assert_eq!(t.state, TellState::Cancelled);
    // Claude Code's internal diagnostic is logged, not shown: the user gets words.
    let error = t.error.clone().unwrap_or_default();
    assert_eq!(
        error, "the turn was interrupted before the model answered",
        "{t:?}"
    );
    let q = r.tell_status(&queued.tell_id).expect("status");
    assert_eq!(q.state, TellState::Cancelled);
    // The agent stays up and answers the next tell.
    let pids = env.agent_pids();
    assert_eq!(pids.len(), 1);
    let next = r.tell("a", "b", "next", FOREVER).await.expect("next");
    assert_eq!(next.answer.as_deref(), Some("echo: next"));
    assert_eq!(env.agent_pids(), pids, "same agent process");
    r.shutdown().await;
    env.assert_no_agents();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_records_tokens_and_resets_the_count() {
    let env = Env::new("", "");
    let r = env.router();
    for i in 0..3 {
        r.tell("a", "b", &format!("m{i}"), FOREVER)
            .await
            .expect("tell");
    }
    let t = r.compact("a", "b", FOREVER).await.expect("compact");
    assert_eq!(t.state, TellState::Answered, "{t:?}");
    let s = r.manager().get("a", "b").expect("get").expect("s");
    assert_eq!(s.message_count, 0);
    assert_eq!(s.compaction_count, 1);
    assert_eq!(s.status, SessionStatus::Active);
    let (pre, post) = (
        s.last_pre_compact_tokens.expect("pre"),
        s.last_post_compact_tokens.expect("post"),
    );
    assert!(pre > post && post > 0, "{pre} -> {post}");
    assert_eq!(
        t.answer.as_deref(),
        Some(
            format!(
                "compacted: context {pre} tokens before (the model API's count), about {post} \
                 after (the agent's estimate: summary plus re-attached context)"
            )
            .as_str()
        )
    );
    r.shutdown().await;
}

/// An agent that does not report the size after compaction: nothing is made up for it (the
/// compaction turn's own output tokens are the summary's, not the context's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_without_a_size_after_records_none() {
    let env = Env::new("", ", TEST_AGENT_COMPACT = \"no-post\"");
    let r = env.router();
    r.tell("a", "b", "m0", FOREVER).await.expect("tell");
    let t = r.compact("a", "b", FOREVER).await.expect("compact");
    assert_eq!(t.state, TellState::Answered, "{t:?}");
    let s = r.manager().get("a", "b").expect("get").expect("s");
    assert_eq!(s.compaction_count, 1);
    assert!(s.last_pre_compact_tokens.is_some_and(|n| n > 0));
    assert_eq!(s.last_post_compact_tokens, None, "{s:?}");
    let answer = t.answer.unwrap_or_default();
    assert!(answer.contains("no estimate of the size after"), "{answer}");
    r.shutdown().await;
    env.assert_no_agents();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_wake_and_reboot() {
    let env = Env::new("", "");
    let r = env.router();
    let pid = r.wake("a", "b").await.expect("wake");
    assert_eq!(env.agent_pids(), vec![pid]);
    let m = Arc::clone(r.manager());
    assert_eq!(
        m.get("a", "b").expect("g").expect("s").process_state,
        ProcessState::Idle
    );
    let t = r.tell("a", "b", "hi", FOREVER).await.expect("tell");
    assert!(r.sleep("a", "b").await.expect("sleep"));
    env.assert_no_agents();
    assert_eq!(
        m.get("a", "b").expect("g").expect("s").process_state,
        ProcessState::Stopped
    );
    assert!(!r.sleep("a", "b").await.expect("sleep again"));
    let rebooted = r.reboot("a", "b").await.expect("reboot");
    assert_ne!(rebooted.session_id, t.session_id);
    assert_eq!(rebooted.message_count, 0);
    let fresh = r.tell("a", "b", "history", FOREVER).await.expect("tell");
    assert_eq!(
        fresh.answer.as_deref(),
        Some("history: 0"),
        "a new conversation"
    );
    assert_eq!(
        r.report("a", "b", 10).expect("report").len(),
        2,
        "history kept"
    );
    r.shutdown().await;
    env.assert_no_agents();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_running_turn_finish_within_the_grace() {
    let env = Env::new("shutdown_grace = \"20s\"", "");
    let r = env.router();
    let t = r
        .submit("a", "b", TellKind::Tell, "sleep:300", None)
        .await
        .expect("submit");
    let m = Arc::clone(r.manager());
    eventually("processing", || {
        m.get("a", "b").expect("get").expect("s").process_state == ProcessState::Processing
    })
    .await;
    r.shutdown().await;
    let done = r.tell_status(&t.tell_id).expect("status");
    assert_eq!(
        done.state,
        TellState::Answered,
        "finished within the grace: {done:?}"
    );
    assert!(
        r.tell("a", "b", "late", Wait::None).await.is_err(),
        "no tells after shutdown"
    );
    env.assert_no_agents();

    // With a short grace, a long turn is cut and its tell fails, recorded.
    let env = Env::new("shutdown_grace = \"200ms\"", "");
    let r = env.router();
    let t = r
        .submit("a", "b", TellKind::Tell, "sleep:30000", None)
        .await
        .expect("submit");
    let m = Arc::clone(r.manager());
    eventually("processing", || {
        m.get("a", "b").expect("get").expect("s").process_state == ProcessState::Processing
    })
    .await;
    r.shutdown().await;
    let done = r.tell_status(&t.tell_id).expect("status");
    assert_eq!(done.state, TellState::Failed);
    assert!(done.error.expect("error").contains("shut down"));
    env.assert_no_agents();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tells_are_refused_before_anything_is_stored() {
    let env = Env::new("", "");
    let r = env.router();
    assert!(r.tell("a", "nope", "hi", Wait::None).await.is_err());
    assert!(r.tell("a", "b", "   ", Wait::None).await.is_err());
    let big = "x".repeat(env.config.settings.max_message_bytes + 1);
    let err = r
        .tell("a", "b", &big, Wait::None)
        .await
        .expect_err("too big");
    assert!(err.to_string().contains("over the limit"), "{err}");
    assert!(r.tell("a", "a", "hi", Wait::None).await.is_err());
    assert!(r.report("a", "b", 10).expect("report").is_empty());
    let _ = &env.dir;
}

/// A pair's queue bound holds for tells submitted at the same moment: each is checked in the
/// write that stores it, so callers that all looked before any of them was stored cannot all
/// pass it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_submitted_together_cannot_pass_the_queue_bound_together() {
    use std::future::Future;
    use std::pin::Pin;
    type Submit = Pin<Box<dyn Future<Output = Result<switchboard::store::Tell, String>> + Send>>;
    let env = Env::new("max_queued_per_pair = 3\nshutdown_grace = \"1s\"", "");
    let r = env.router();
    r.manager().get_or_create("a", "b").expect("session");
    // Another connection holds the write lock: every tell below is checked and handed to the
    // store before any of them is stored (each future is polled once).
    let other = rusqlite::Connection::open(env.dir.path().join("sb.db")).expect("connection");
    other.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let mut submits: Vec<Submit> = Vec::new();
    for _ in 0..12 {
        let r = r.clone();
        submits.push(Box::pin(async move {
            r.submit("a", "b", TellKind::Tell, "hang", None)
                .await
                .map_err(|e| e.to_string())
        }));
    }
    for s in &mut submits {
        std::future::poll_fn(|cx| {
            assert!(
                s.as_mut().poll(cx).is_pending(),
                "stored before the lock went"
            );
            std::task::Poll::Ready(())
        })
        .await;
    }
    other.execute_batch("ROLLBACK").expect("unlock");
    let (mut stored, mut refused) = (0, 0);
    for s in submits {
        match s.await {
            Ok(_) => stored += 1,
            Err(e) => {
                assert!(e.contains("max_queued_per_pair"), "{e}");
                refused += 1;
            }
        }
    }
    assert_eq!((stored, refused), (3, 9), "stored, refused");
    assert_eq!(
        r.manager()
            .store()
            .count_open_tells("a", "b")
            .expect("count"),
        3
    );
    r.shutdown().await;
    env.assert_no_agents();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_of_tells_are_bounded_and_loops_refused() {
    use switchboard::router::Caller;
    let env = Env::new("max_hops = 2", "");
    let r = env.router();
    r.set_mcp_endpoint(Some("http://127.0.0.1:9/mcp".into()));
    // a tells b; while b's agent works on it, b's agent (its session's caller) tells c.
    let first = r
        .submit("a", "b", TellKind::Tell, "sleep:5000", None)
        .await
        .expect("submit");
    let m = Arc::clone(r.manager());
    eventually("processing", || {
        m.get("a", "b").expect("get").expect("s").process_state == ProcessState::Processing
    })
    .await;
    let ab = m.get("a", "b").expect("get").expect("s");
    // The spawned agent got an MCP config naming its session, with Switchboard's tools allowed.
    let launch = ab.launch_command.clone().expect("launch");
    assert!(
        launch.contains("--mcp-config") && launch.contains("mcp__switchboard"),
        "{launch}"
    );
    let config_path = env
        .dir
        .path()
        .join("mcp")
        .join(format!("{}.json", ab.session_id));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).expect("mcp config"))
            .expect("json");
    let token = config["mcpServers"]["switchboard"]["headers"]["X-Switchboard-Agent"]
        .as_str()
        .expect("token")
        .to_string();
    let b_agent = r
        .caller_from_agent_token(&token)
        .expect("token names the session");
    assert_eq!(
        b_agent,
        Caller::Agent {
            session_id: ab.session_id.clone()
        }
    );
    assert_eq!(r.caller_team(&b_agent).expect("team"), "b");
    assert!(r.caller_from_agent_token("forged").is_none());

    // b -> a would close a loop: a is waiting for b.
    let err = r.submit_as(&b_agent, "a", "hi").await.expect_err("loop");
    assert_eq!(
        err.to_string(),
        "refused: a -> b -> a is a loop: a is waiting for an answer in this chain"
    );
    // b -> c is fine (2 hops) and chained to a's tell.
    let bc = r
        .submit_as(&b_agent, "c", "sleep:5000")
        .await
        .expect("b -> c");
    assert_eq!(bc.from_team, "b");
    assert_eq!(bc.parent_tell_id.as_deref(), Some(first.tell_id.as_str()));
    eventually("c processing", || {
        m.get("b", "c")
            .ok()
            .flatten()
            .is_some_and(|s| s.process_state == ProcessState::Processing)
    })
    .await;
    let bc_session = m.get("b", "c").expect("get").expect("s");
    let c_agent = Caller::Agent {
        session_id: bc_session.session_id.clone(),
    };
    // c -> d would be 3 hops.
    let err = r
        .submit_as(&c_agent, "d", "hi")
        .await
        .expect_err("too long");
    assert!(
        err.to_string()
            .contains("a -> b -> c -> d is 3 hops, more than settings.max_hops = 2"),
        "{err}"
    );
    // c -> a and c -> b: loops.
    assert!(r.submit_as(&c_agent, "a", "hi").await.is_err());
    assert!(r.submit_as(&c_agent, "b", "hi").await.is_err());
    // A person acting as a team has no chain.
    assert!(r
        .submit_as(&Caller::Team("d".into()), "a", "hi")
        .await
        .is_ok());
    r.cancel("a", "b").expect("cancel");
    r.cancel("b", "c").expect("cancel");
    r.shutdown().await;
    env.assert_no_agents();
}

/// Four `tell --wait-busy` processes (no server) on one pair: each agent started must deliver
/// at least one tell, so at most four agents start for four tells. A process whose tell was
/// answered by another process while it waited for the lease must not start an agent.
#[test]
fn waiting_processes_start_no_agent_they_cannot_use() {
    // Timing decides who waits for whom: three rounds make a wasted start likely to show.
    for _round in 0..3 {
        let pids = tempfile::tempdir().expect("tempdir");
        let pidfile = pids.path().join("agent-pids");
        let extra = format!(", TEST_AGENT_PIDFILE = {:?}", pidfile.display().to_string());
        let env = Env::new("", &extra);
        // Started at once: each queues its tell, and whoever holds the pair delivers every tell
        // queued by then; the others wait for the lease.
        let children: Vec<std::process::Child> = (0..4)
            .map(|i| {
                env.command(&[
                    "tell",
                    "a",
                    "b",
                    &format!("sleep:{}", 300 + i * 50),
                    "--wait-busy",
                    "--timeout",
                    "120s",
                ])
                .spawn()
                .expect("spawn switchboard")
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "tell failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The scripted agent writes its pid when it starts and `turn PID` for each turn.
        let log = std::fs::read_to_string(&pidfile).unwrap_or_default();
        let started: Vec<&str> = log.lines().filter(|l| !l.starts_with("turn ")).collect();
        let idle: Vec<&str> = started
            .iter()
            .copied()
            .filter(|pid| !log.lines().any(|l| l == format!("turn {pid}")))
            .collect();
        assert!(
            !started.is_empty() && started.len() <= 4,
            "{} agents started for 4 tells",
            started.len()
        );
        assert!(
            idle.is_empty(),
            "agents started that never got a turn: {idle:?} (of {started:?})"
        );
        env.assert_no_agents();
    }
}

/// A turn whose tool call was cut off (Claude Code's `[Tool use interrupted]`), or that ended
/// with a terminal reason other than `completed`, is not an answer: the tell fails with an
/// error saying the turn was cut off, and keeps what the agent had said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_cut_off_is_a_failure_with_the_partial_answer_kept() {
    let env = Env::new("", "");
    let r = env.router();
    let t = r.tell("a", "b", "toolcut", FOREVER).await.expect("tell");
    assert_eq!(t.state, TellState::Failed, "{t:?}");
    assert_eq!(t.answer.as_deref(), Some("partial findings"), "{t:?}");
    let error = t.error.clone().unwrap_or_default();
    assert!(
        error.contains("cut off") && error.contains("tool call") && error.contains("partial"),
        "{error}"
    );
    assert!(!error.contains("[Tool use interrupted]"), "{error}");

    let t = r
        .tell("a", "b", "cutoff:max_turns", FOREVER)
        .await
        .expect("tell");
    assert_eq!(t.state, TellState::Failed, "{t:?}");
    assert_eq!(t.answer.as_deref(), Some("partial answer"));
    let error = t.error.clone().unwrap_or_default();
    assert!(
        error.contains("cut off") && error.contains("limit of model round trips"),
        "{error}"
    );
    let s = r.manager().get("a", "b").expect("get").expect("session");
    assert_eq!(
        s.message_count, 0,
        "a partial answer is not counted as answered"
    );
    assert_eq!(s.status, SessionStatus::Error);
    assert!(s
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("cut off")));

    // A later tell that is answered clears the session's error and its last error.
    let t = r.tell("a", "b", "fine", FOREVER).await.expect("tell");
    assert_eq!(t.state, TellState::Answered);
    let s = r.manager().get("a", "b").expect("get").expect("session");
    assert_eq!(s.status, SessionStatus::Active);
    assert_eq!(
        s.last_error, None,
        "last_error is cleared by an answered tell"
    );
    r.shutdown().await;
    env.assert_no_agents();
}

/// An agent program that is not there: the tell fails saying what to install or which
/// `agent_path` to set, naming the team's entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_agent_program_says_what_to_install_or_which_agent_path_to_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().display().to_string();
    for t in ["a", "b", "c", "empty-bin"] {
        std::fs::create_dir_all(dir.path().join(t)).expect("mkdir");
    }
    // b: the default `claude`, looked up on a PATH that does not have it; c: an agent_path
    // that does not exist.
    let text = format!(
        "[database]\npath = \"{root}/sb.db\"\n\
         [teams.a]\npath = \"{root}/a\"\n\
         [teams.b]\npath = \"{root}/b\"\nenv = {{ PATH = \"{root}/empty-bin\", HOME = \"{root}\" }}\n\
         [teams.c]\npath = \"{root}/c\"\nagent_path = \"{root}/missing/claude\"\n"
    );
    let config = TeamsConfig::parse(&text, None, &|_| None)
        .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
    let m = SessionManager::open(Arc::new(config)).expect("open");
    m.initialize().expect("initialize");
    let r = Router::new(Arc::new(m));

    let t = r.tell("a", "b", "hello", FOREVER).await.expect("tell");
    assert_eq!(t.state, TellState::Failed, "{t:?}");
    let error = t.error.unwrap_or_default();
    assert!(
        error.contains("no program \"claude\" on PATH")
            && error.contains("npm install -g @anthropic-ai/claude-code")
            && error.contains("`agent_path` in `[teams.b]`"),
        "{error}"
    );

    let t = r.tell("a", "c", "hello", FOREVER).await.expect("tell");
    assert_eq!(t.state, TellState::Failed, "{t:?}");
    let error = t.error.unwrap_or_default();
    assert!(
        error.contains(&format!("{root}/missing/claude does not exist"))
            && error.contains("`agent_path` in `[teams.c]`"),
        "{error}"
    );
    r.shutdown().await;
}

/// Sets or clears the immutable attribute of a file (`chattr +i`, which stops even root from
/// writing to it), through the ioctl, so no extra program is needed.
fn set_immutable(path: &std::path::Path, on: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
    const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
    const FS_IMMUTABLE_FL: libc::c_int = 0x10;
    let f = std::fs::File::open(path)?;
    let mut flags: libc::c_int = 0;
    // SAFETY: the fd is open for the call; flags is a valid int the kernel reads and writes.
    if unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_GETFLAGS as _, &mut flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    flags = if on {
        flags | FS_IMMUTABLE_FL
    } else {
        flags & !FS_IMMUTABLE_FL
    };
    // SAFETY: as above.
    if unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_SETFLAGS as _, &flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Files made immutable for a while; writable again when dropped (also when a test fails).
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    fn set(paths: &[std::path::PathBuf]) -> Self {
        let mut guard = Immutable(Vec::new());
        for p in paths {
            set_immutable(p, true).unwrap_or_else(|e| {
                panic!("cannot make {} immutable (chattr +i): {e}", p.display())
            });
            guard.0.push(p.clone());
        }
        guard
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for p in self.0.drain(..) {
            if let Err(e) = set_immutable(&p, false) {
                eprintln!("cannot make {} writable again: {e}", p.display());
            }
        }
    }
}

/// A small tmpfs mounted for a test; unmounted when dropped (also when the test fails).
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount(at: &std::path::Path, size: &str) -> Self {
        use std::ffi::CString;
        std::fs::create_dir_all(at).expect("mkdir mount point");
        let target = CString::new(at.as_os_str().as_encoded_bytes()).expect("path");
        let opts = CString::new(format!("size={size}")).expect("opts");
        // SAFETY: valid NUL-terminated strings for the call.
        let rc = unsafe {
            libc::mount(
                c"switchboard-test".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "cannot mount a tmpfs at {} (the test needs root): {}",
            at.display(),
            std::io::Error::last_os_error()
        );
        SmallFs(at.to_path_buf())
    }

    /// Fills the file system with `filler` until a write fails with ENOSPC.
    fn fill(&self, filler: &std::path::Path) {
        use std::io::Write;
        let mut f = std::fs::File::create(filler).expect("create filler");
        let block = vec![0u8; 64 * 1024];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", filler.display()),
            }
        }
        // Whatever is left of the last block: write byte by byte until full.
        while f.write(&[0u8]).is_ok_and(|n| n == 1) {}
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        use std::ffi::CString;
        if let Ok(target) = CString::new(self.0.as_os_str().as_encoded_bytes()) {
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// The database refuses writes (its files immutable: read-only even for root) when the agent
/// answers: the answer is kept and written once the database takes writes again; the tell is
/// never left `delivered`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_arrives_while_the_database_is_read_only_is_kept_and_stored_later() {
    let env = Env::new("", "");
    let r = env.router();
    r.tell("a", "b", "warm up", FOREVER).await.expect("tell");
    let t = r
        .submit("a", "b", TellKind::Tell, "sleep:800", None)
        .await
        .expect("submit");
    let m = Arc::clone(r.manager());
    eventually("delivered", || {
        m.store()
            .get_tell(&t.tell_id)
            .ok()
            .flatten()
            .is_some_and(|t| t.state == TellState::Delivered)
    })
    .await;
    let db = env.dir.path().join("sb.db");
    let wal = env.dir.path().join("sb.db-wal");
    let read_only = Immutable::set(&[db, wal]);
    eventually("a refused write of the answer", || {
        r.counters().write_retries.load(Ordering::Relaxed) > 0
    })
    .await;
    // Still readable: the tell is delivered, not lost, not failed.
    let now = r.tell_status(&t.tell_id).expect("status");
    assert_eq!(now.state, TellState::Delivered, "{now:?}");
    drop(read_only);
    let done = r.wait_for(&t.tell_id, FOREVER).await.expect("wait");
    assert_eq!(done.state, TellState::Answered, "{done:?}");
    assert_eq!(done.answer.as_deref(), Some("slept 800ms"));
    let s = m.get_by_id(&t.session_id).expect("get").expect("session");
    assert_eq!(s.process_state, ProcessState::Idle, "{s:?}");
    assert_eq!(s.current_tell_id, None);
    assert_eq!(s.message_count, 2, "the answer counted once");
    // The pair goes on.
    let next = r.tell("a", "b", "next", FOREVER).await.expect("next");
    assert_eq!(next.answer.as_deref(), Some("echo: next"));
    r.shutdown().await;
    env.assert_no_agents();
}

/// The same with a full disk (the database on a small tmpfs that the test fills): ENOSPC while
/// the answer is written; the answer is stored once there is room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_arrives_while_the_disk_is_full_is_kept_and_stored_later() {
    let mut fs = None;
    let env = Env::with_db("", "", |root| {
        fs = Some(SmallFs::mount(&std::path::Path::new(root).join("db"), "4m"));
        format!("{root}/db/sb.db")
    });
    let fs = fs.expect("mounted");
    let r = env.router();
    r.tell("a", "b", "warm up", FOREVER).await.expect("tell");
    let t = r
        .submit("a", "b", TellKind::Tell, "sleep:800", None)
        .await
        .expect("submit");
    let m = Arc::clone(r.manager());
    eventually("delivered", || {
        m.store()
            .get_tell(&t.tell_id)
            .ok()
            .flatten()
            .is_some_and(|t| t.state == TellState::Delivered)
    })
    .await;
    // The store's checkpointer empties the WAL in the background, so later writes reuse its
    // space and a full disk would not refuse them: cut the WAL to nothing first, so the
    // answer's write must grow it.
    let raw = rusqlite::Connection::open(format!("{}/sb.db", fs.0.display())).expect("raw");
    raw.busy_timeout(Duration::from_secs(10)).expect("busy");
    raw.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("truncate the WAL");
    drop(raw);
    let filler = fs.0.join("filler");
    fs.fill(&filler);
    eventually("a refused write of the answer", || {
        r.counters().write_retries.load(Ordering::Relaxed) > 0
    })
    .await;
    let now = r.tell_status(&t.tell_id).expect("status");
    assert_eq!(now.state, TellState::Delivered, "{now:?}");
    std::fs::remove_file(&filler).expect("make room");
    let done = r.wait_for(&t.tell_id, FOREVER).await.expect("wait");
    assert_eq!(done.state, TellState::Answered, "{done:?}");
    assert_eq!(done.answer.as_deref(), Some("slept 800ms"));
    let s = m.get_by_id(&t.session_id).expect("get").expect("session");
    assert_eq!(s.process_state, ProcessState::Idle, "{s:?}");
    assert_eq!(s.message_count, 2);
    r.shutdown().await;
    env.assert_no_agents();
    drop(r);
    drop(fs);
}

/// A tell left `delivered` with no live Switchboard process delivering it (here: its session
/// has no owner at all) is failed by the periodic sweep of a running Switchboard, not left
/// `delivered` until the next start-up; it is not sent to an agent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_switchboard_sweeps_tells_left_delivered_without_a_live_owner() {
    let env = Env::new("health_check_interval = \"100ms\"", "");
    let r = env.router();
    let m = Arc::clone(r.manager());
    let t = switchboard::router::queue_tell(&m, "a", "b", TellKind::Tell, "orphan", None)
        .expect("queue");
    m.store()
        .begin_turn(&t.session_id, &t.tell_id, 0)
        .expect("begin turn")
        .expect("delivered");
    // The counter is bumped just after the tell is failed: wait for both.
    eventually("the sweep fails the orphaned tell", || {
        r.tell_status(&t.tell_id)
            .is_ok_and(|t| t.state == TellState::Failed)
            && r.counters().swept.load(Ordering::Relaxed) >= 1
    })
    .await;
    let t = r.tell_status(&t.tell_id).expect("status");
    let error = t.error.unwrap_or_default();
    assert!(
        error.contains("interrupted") && error.contains("not sent again"),
        "{error}"
    );
    assert_eq!(r.counters().swept.load(Ordering::Relaxed), 1);
    assert!(env.agent_pids().is_empty(), "no agent was started for it");
    r.shutdown().await;
}

/// `message_count` restarts at each compaction; stats also show the tells answered in all,
/// so "messages 1" after five tells is not the whole story.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_show_lifetime_answered_tells_next_to_the_message_count() {
    let env = Env::new("", "");
    let r = env.router();
    for i in 0..4 {
        r.tell("a", "b", &format!("m{i}"), FOREVER)
            .await
            .expect("tell");
    }
    r.tell("a", "b", "crash", FOREVER)
        .await
        .expect("failed tell");
    let c = r.compact("a", "b", FOREVER).await.expect("compact");
    assert_eq!(c.state, TellState::Answered, "{c:?}");
    r.tell("a", "b", "after", FOREVER).await.expect("tell");
    r.shutdown().await;
    let stats = r.manager().stats().expect("stats");
    assert_eq!(stats.total_messages, 1, "since the compaction");
    assert_eq!(
        stats.total_answered_tells, 5,
        "every answered tell, not the failed one nor the compaction"
    );
    assert_eq!(stats.busiest_pairs.len(), 1);
    assert_eq!(stats.busiest_pairs[0].message_count, 1);
    assert_eq!(stats.busiest_pairs[0].answered_tells, 5);
    let out = env
        .command(&["stats"])
        .spawn()
        .and_then(std::process::Child::wait_with_output)
        .expect("stats");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let answered = "answered tells      5 (in all; messages restart at 0 with each compaction)";
    assert!(
        text.lines().any(|l| l == "messages            1") && text.lines().any(|l| l == answered),
        "{text}"
    );
    env.assert_no_agents();
}

/// A tell whose Switchboard died mid-turn is failed at the next start, saying it was not sent
/// again, and it is not: the agent of the next process never sees it (its turn may have had
/// side effects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tell_interrupted_by_a_dead_switchboard_fails_and_is_never_sent_again() {
    let pids = tempfile::tempdir().expect("tempdir");
    let pidfile = pids.path().join("agent-pids");
    let extra = format!(", TEST_AGENT_PIDFILE = {:?}", pidfile.display().to_string());
    let env = Env::new("", &extra);
    let mut sb = env
        .command(&["tell", "a", "b", "sleep:60000"])
        .spawn()
        .expect("spawn switchboard");
    // Wait until the agent has the tell (its turn started).
    eventually("the agent's turn", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|l| l.contains("turn "))
    })
    .await;
    sb.kill().expect("SIGKILL switchboard");
    sb.wait().expect("reap");
    env.assert_no_agents();

    let r = env.router(); // start-up recovery
    let first = r.report("a", "b", 10).expect("report");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].state, TellState::Failed, "{:?}", first[0]);
    let error = first[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("interrupted by restart") && error.contains("not sent again"),
        "{error}"
    );
    // The resumed conversation holds the interrupted message once: it was not re-sent.
    let t = r.tell("a", "b", "history", FOREVER).await.expect("tell");
    assert_eq!(t.answer.as_deref(), Some("history: 1"), "{t:?}");
    let log = std::fs::read_to_string(&pidfile).unwrap_or_default();
    assert_eq!(
        log.lines().filter(|l| l.starts_with("turn ")).count(),
        2,
        "two turns in all (the interrupted one and `history`): {log}"
    );
    r.shutdown().await;
    env.assert_no_agents();
}

/// Shutting down while the database still refuses the answer: the retries get
/// `shutdown_grace`, the shutdown completes, and the next start fails the tell (it is not left
/// `delivered`, and not sent again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_the_database_refuses_the_answer_ends_and_the_next_start_fails_the_tell() {
    let env = Env::new("shutdown_grace = \"300ms\"", "");
    let r = env.router();
    r.tell("a", "b", "warm up", FOREVER).await.expect("tell");
    let t = r
        .submit("a", "b", TellKind::Tell, "sleep:300", None)
        .await
        .expect("submit");
    let m = Arc::clone(r.manager());
    eventually("delivered", || {
        m.store()
            .get_tell(&t.tell_id)
            .ok()
            .flatten()
            .is_some_and(|t| t.state == TellState::Delivered)
    })
    .await;
    let read_only = Immutable::set(&[
        env.dir.path().join("sb.db"),
        env.dir.path().join("sb.db-wal"),
    ]);
    eventually("a refused write of the answer", || {
        r.counters().write_retries.load(Ordering::Relaxed) > 0
    })
    .await;
    r.shutdown().await; // returns: the retries end with the grace
    env.assert_no_agents();
    drop(read_only);
    let r2 = env.router();
    let failed = r2.tell_status(&t.tell_id).expect("status");
    assert_eq!(failed.state, TellState::Failed, "{failed:?}");
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("interrupted by restart")),
        "{failed:?}"
    );
    r2.shutdown().await;
}
