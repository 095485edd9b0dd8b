//! The agent runtime with the scripted test agent (`switchboard-test-agent`, same protocol as
//! Claude Code): tells answered and recorded, FIFO order, crash, hang, garbage, a 16 MiB line,
//! exit before init, slow init, pool eviction, idle timeout, cancel, compaction, sleep / wake /
//! reboot, shutdown, restart recovery — and never an orphan agent process.

#[path = "common/procs.rs"]
mod procs;
#[path = "common/test_agent.rs"]
mod test_agent;

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
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = uuid::Uuid::new_v4().to_string();
        let root = dir.path().display().to_string();
        let agent = test_agent::path();
        let mut text = format!("[settings]\n{settings}\n[database]\npath = \"{root}/sb.db\"\n");
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
    let ids: Vec<String> = (0..20)
        .map(|i| {
            r.submit("a", "b", TellKind::Tell, &format!("m{i}"), None)
                .expect("submit")
                .tell_id
        })
        .collect();
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
        .expect("submit");
    let queued = r
        .submit("a", "b", TellKind::Tell, "later", None)
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
    r.shutdown().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_of_tells_are_bounded_and_loops_refused() {
    use switchboard::router::Caller;
    let env = Env::new("max_hops = 2", "");
    let r = env.router();
    r.set_mcp_endpoint(Some("http://127.0.0.1:9/mcp".into()), None);
    // a tells b; while b's agent works on it, b's agent (its session's caller) tells c.
    let first = r
        .submit("a", "b", TellKind::Tell, "sleep:5000", None)
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
    let err = r.submit_as(&b_agent, "a", "hi").expect_err("loop");
    assert_eq!(
        err.to_string(),
        "refused: a -> b -> a is a loop: a is waiting for an answer in this chain"
    );
    // b -> c is fine (2 hops) and chained to a's tell.
    let bc = r.submit_as(&b_agent, "c", "sleep:5000").expect("b -> c");
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
    let err = r.submit_as(&c_agent, "d", "hi").expect_err("too long");
    assert!(
        err.to_string()
            .contains("a -> b -> c -> d is 3 hops, more than settings.max_hops = 2"),
        "{err}"
    );
    // c -> a and c -> b: loops.
    assert!(r.submit_as(&c_agent, "a", "hi").is_err());
    assert!(r.submit_as(&c_agent, "b", "hi").is_err());
    // A person acting as a team has no chain.
    assert!(r.submit_as(&Caller::Team("d".into()), "a", "hi").is_ok());
    r.cancel("a", "b").expect("cancel");
    r.cancel("b", "c").expect("cancel");
    r.shutdown().await;
    env.assert_no_agents();
}
