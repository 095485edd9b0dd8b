//! The SessionManager over a real SQLite file: race-free get_or_create, the cache never serving
//! a value older than the last write, the start-up reset versus live owners, stats, compaction.

use std::sync::Arc;
use std::time::Duration;

use switchboard::session::SessionError;
use switchboard::store::{ListFilter, ListOrder, ProcessState, Session, SessionStatus};
use switchboard::util::{now_ms, ProcessIdentity};
use switchboard::{SessionManager, TeamsConfig};
use tempfile::TempDir;

struct Env {
    dir: TempDir,
    config: Arc<TeamsConfig>,
}

impl Env {
    fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for t in ["frontend", "backend", "docs"] {
            std::fs::create_dir_all(dir.path().join("projects").join(t)).expect("mkdir");
        }
        let root = dir.path().display().to_string();
        let text = format!(
            "{extra}\n[database]\npath = \"{root}/sb.db\"\n\
             [teams.frontend]\npath = \"{root}/projects/frontend\"\n\
             [teams.backend]\npath = \"{root}/projects/backend\"\nenv = {{ HOME = \"{root}/home\" }}\n\
             [teams.docs]\npath = \"{root}/projects/docs\"\n"
        );
        let home = root.clone();
        let config = TeamsConfig::parse(&text, None, &|k| (k == "HOME").then(|| home.clone()))
            .unwrap_or_else(|e| panic!("test config: {e}"));
        Self {
            dir,
            config: Arc::new(config),
        }
    }

    fn manager(&self) -> SessionManager {
        let m = SessionManager::open(Arc::clone(&self.config)).expect("open manager");
        m.initialize().expect("initialize");
        m
    }
}

/// Waits (polling, bounded) until the wall clock has moved past `ms`, so that a write that
/// stamps "now" is observably different from the value before it.
fn clock_past(ms: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while now_ms() <= ms {
        assert!(
            std::time::Instant::now() < deadline,
            "clock did not advance"
        );
        std::thread::yield_now();
    }
}

#[test]
fn get_or_create_from_8_threads_yields_one_session() {
    let env = Env::new("");
    let m = Arc::new(env.manager());
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let m = Arc::clone(&m);
            let b = Arc::clone(&barrier);
            std::thread::spawn(move || {
                b.wait();
                m.get_or_create("frontend", "backend")
                    .expect("get_or_create")
                    .session_id
                    .clone()
            })
        })
        .collect();
    let ids: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert!(uuid::Uuid::parse_str(&ids[0]).is_ok_and(|u| u.get_version_num() == 4));
    assert_eq!(m.list(&ListFilter::default()).expect("list").len(), 1);
}

#[test]
fn get_or_create_from_8_managers_on_one_file_yields_one_session() {
    // Separate managers = separate pools and caches, as separate processes would have.
    let env = Env::new("");
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let config = Arc::clone(&env.config);
            let b = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let m = SessionManager::open(config).expect("open");
                b.wait();
                m.get_or_create("docs", "backend")
                    .expect("create")
                    .session_id
                    .clone()
            })
        })
        .collect();
    let ids: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
}

#[test]
fn bad_pairs_are_refused_with_the_name() {
    let env = Env::new("");
    let m = env.manager();
    match m.get_or_create("frontend", "payments") {
        Err(SessionError::UnknownTeam { team, known }) => {
            assert_eq!(team, "payments");
            assert!(known.contains("backend"));
        }
        other => panic!("expected UnknownTeam, got {other:?}"),
    }
    assert!(matches!(
        m.get_or_create("front end", "backend"),
        Err(SessionError::InvalidTeamName(_))
    ));
    assert!(matches!(
        m.get_or_create("backend", "backend"),
        Err(SessionError::SelfPair(_))
    ));
    assert!(m.list(&ListFilter::default()).expect("list").is_empty());
    assert!(m.get("frontend", "payments").expect("get").is_none());
}

#[test]
fn creating_a_session_starts_nothing_and_stamps_times() {
    let env = Env::new("");
    let m = env.manager();
    let before = now_ms();
    let s = m.get_or_create("frontend", "backend").expect("create");
    assert_eq!(s.status, SessionStatus::Active);
    assert_eq!(s.process_state, ProcessState::Stopped);
    assert_eq!(s.message_count, 0);
    assert!(s.owner_pid.is_none());
    assert!(s.created_at >= before && s.created_at <= now_ms());
    assert_eq!(s.created_at, s.last_used_at);
}

/// For every write method: read through the cache, write, read again: the second read must
/// show the write. `check` says what the write changed.
#[test]
fn no_read_after_a_write_returns_the_old_value() {
    let env = Env::new("");
    let m = env.manager();
    type Write = Box<dyn Fn(&SessionManager, &Session) -> Result<Session, SessionError>>;
    type Check = Box<dyn Fn(&Session, &Session) -> bool>;
    let cases: Vec<(&str, Write, Check)> = vec![
        (
            "record_usage",
            Box::new(|m, s| {
                clock_past(s.last_used_at);
                m.record_usage(&s.session_id)
            }),
            Box::new(|old, new| new.last_used_at > old.last_used_at),
        ),
        (
            "increment_message_count",
            Box::new(|m, s| m.increment_message_count(&s.session_id, 3)),
            Box::new(|old, new| new.message_count == old.message_count + 3),
        ),
        (
            "update_process_state",
            Box::new(|m, s| m.update_process_state(&s.session_id, ProcessState::Processing)),
            Box::new(|_, new| new.process_state == ProcessState::Processing),
        ),
        (
            "set_current_tell",
            Box::new(|m, s| m.set_current_tell(&s.session_id, Some("tell-1"))),
            Box::new(|_, new| new.current_tell_id.as_deref() == Some("tell-1")),
        ),
        (
            "update_last_response",
            Box::new(|m, s| m.update_last_response(&s.session_id)),
            Box::new(|old, new| new.last_response_at.is_some() && old.last_response_at.is_none()),
        ),
        (
            "update_debug_info",
            Box::new(|m, s| m.update_debug_info(&s.session_id, "[\"claude\",\"-p\"]", "{}")),
            Box::new(|_, new| new.launch_command.as_deref() == Some("[\"claude\",\"-p\"]")),
        ),
        (
            "record_usage_totals",
            Box::new(|m, s| m.record_usage_totals(&s.session_id, 100, 20, 0.5)),
            Box::new(|old, new| {
                new.input_tokens == old.input_tokens + 100
                    && new.output_tokens == old.output_tokens + 20
                    && (new.cost_usd - old.cost_usd - 0.5).abs() < 1e-9
            }),
        ),
        (
            "set_agent",
            Box::new(|m, s| {
                m.set_agent(
                    &s.session_id,
                    Some(ProcessIdentity {
                        pid: 4242,
                        started_at: 7,
                    }),
                )
            }),
            Box::new(|_, new| new.agent_pid == Some(4242)),
        ),
        (
            "acquire_lease",
            Box::new(|m, s| m.acquire_lease(&s.session_id)),
            Box::new(|_, new| new.owner_pid == Some(i64::from(std::process::id()))),
        ),
        (
            "heartbeat",
            Box::new(|m, s| {
                clock_past(s.owner_heartbeat_at.unwrap_or(0));
                assert!(m.heartbeat(&s.session_id)?);
                Ok(m.get_by_id(&s.session_id)?.expect("exists"))
            }),
            Box::new(|old, new| new.owner_heartbeat_at > old.owner_heartbeat_at),
        ),
        (
            "release_lease",
            Box::new(|m, s| Ok(m.release_lease(&s.session_id)?.expect("held"))),
            Box::new(|_, new| new.owner_pid.is_none() && new.agent_pid.is_none()),
        ),
        (
            "begin_turn",
            Box::new(|m, s| {
                let tell_id = uuid::Uuid::new_v4().to_string();
                m.store()
                    .insert_tell(
                        &switchboard::store::NewTell {
                            tell_id: &tell_id,
                            session_id: &s.session_id,
                            from_team: &s.from_team,
                            to_team: &s.to_team,
                            kind: switchboard::store::TellKind::Tell,
                            text: "hi",
                            parent_tell_id: None,
                        },
                        now_ms(),
                    )
                    .expect("insert tell");
                let tell = m.begin_turn(&s.session_id, &tell_id)?.expect("was queued");
                assert_eq!(tell.state, switchboard::store::TellState::Delivered);
                assert!(
                    m.begin_turn(&s.session_id, &tell_id)?.is_none(),
                    "only once"
                );
                Ok(m.get_by_id(&s.session_id)?.expect("exists"))
            }),
            Box::new(|_, new| {
                new.process_state == ProcessState::Processing && new.current_tell_id.is_some()
            }),
        ),
        (
            "end_turn",
            Box::new(|m, s| m.end_turn(&s.session_id, 10, 2, 0.25, true)),
            Box::new(|old, new| {
                new.process_state == ProcessState::Idle
                    && new.current_tell_id.is_none()
                    && new.message_count == old.message_count + 1
                    && new.input_tokens == old.input_tokens + 10
                    && new.last_response_at.is_some()
            }),
        ),
        (
            "update_process_state(stopped)",
            Box::new(|m, s| m.update_process_state(&s.session_id, ProcessState::Stopped)),
            Box::new(|_, new| {
                new.process_state == ProcessState::Stopped && new.current_tell_id.is_none()
            }),
        ),
        (
            "mark_error",
            Box::new(|m, s| m.mark_error(&s.session_id, "boom")),
            Box::new(|_, new| {
                new.status == SessionStatus::Error && new.last_error.as_deref() == Some("boom")
            }),
        ),
        (
            "set_status",
            Box::new(|m, s| m.set_status(&s.session_id, SessionStatus::Active)),
            Box::new(|_, new| new.status == SessionStatus::Active),
        ),
        (
            "request_compaction",
            Box::new(|m, s| m.request_compaction(s)),
            Box::new(|_, new| new.status == SessionStatus::CompactPending),
        ),
        (
            "begin_compaction",
            Box::new(|m, s| m.begin_compaction(s)),
            Box::new(|_, new| new.status == SessionStatus::Compacting),
        ),
        (
            "finish_compaction",
            Box::new(|m, s| m.finish_compaction(&s.session_id, 9_000, 1_200)),
            Box::new(|old, new| {
                new.status == SessionStatus::Active
                    && new.message_count == 0
                    && new.compaction_count == old.compaction_count + 1
                    && new.last_pre_compact_tokens == Some(9_000)
                    && new.last_post_compact_tokens == Some(1_200)
                    && new.last_compacted_at.is_some()
            }),
        ),
        (
            "fail_compaction",
            Box::new(|m, s| m.fail_compaction(&s.session_id, "agent exited")),
            Box::new(|_, new| {
                new.status == SessionStatus::Error
                    && new.last_error.as_deref() == Some("compaction failed: agent exited")
            }),
        ),
    ];
    for (name, write, check) in cases {
        let old = m.get_or_create("frontend", "backend").expect("read 1");
        // Twice, so the second read is certainly a cache hit before the write.
        let cached = m
            .get("frontend", "backend")
            .expect("read 2")
            .expect("exists");
        assert_eq!(*old, *cached);
        let returned = write(&m, &old).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(check(&old, &returned), "{name}: the write's own result");
        let via_get = m.get("frontend", "backend").expect("get").expect("exists");
        assert!(
            check(&old, &via_get),
            "{name}: get() after the write is stale: {via_get:?}"
        );
        let via_goc = m.get_or_create("frontend", "backend").expect("goc");
        assert!(
            check(&old, &via_goc),
            "{name}: get_or_create() after the write is stale"
        );
        let via_id = m
            .get_by_id(&old.session_id)
            .expect("by id")
            .expect("exists");
        assert!(
            check(&old, &via_id),
            "{name}: get_by_id() after the write is stale"
        );
    }
    // delete: the pair is gone from the cache too, and a new session takes its place.
    let old = m.get_or_create("frontend", "backend").expect("read");
    m.delete(&old, false).expect("delete");
    assert!(m.get("frontend", "backend").expect("get").is_none());
    let fresh = m.get_or_create("frontend", "backend").expect("recreate");
    assert_ne!(fresh.session_id, old.session_id);
    // initialize() resets: the cached processing state must not survive it.
    m.update_process_state(&fresh.session_id, ProcessState::Processing)
        .expect("processing");
    let _ = m.get("frontend", "backend").expect("cache it");
    m.store()
        .force_owner(
            &fresh.session_id,
            ProcessState::Processing,
            Some(dead_identity()),
            now_ms(),
        )
        .expect("force dead owner");
    // force_owner bypasses the manager (as another process would); the reset must invalidate.
    m.initialize().expect("initialize");
    let after = m.get("frontend", "backend").expect("get").expect("exists");
    assert_eq!(after.process_state, ProcessState::Stopped);
}

#[test]
fn writes_from_another_manager_show_up_within_the_cache_ttl() {
    let env = Env::new("[settings]\ncache_ttl = \"200ms\"");
    let a = env.manager();
    let b = env.manager();
    let s = a.get_or_create("frontend", "docs").expect("create");
    assert_eq!(
        a.get("frontend", "docs")
            .expect("get")
            .expect("exists")
            .message_count,
        0
    );
    b.increment_message_count(&s.session_id, 5)
        .expect("incr by b");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let seen = a.get("frontend", "docs").expect("get").expect("exists");
        if seen.message_count == 5 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a never saw b's write"
        );
        std::thread::yield_now();
    }
}

fn dead_identity() -> ProcessIdentity {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = child.id();
    child.wait().expect("reap");
    ProcessIdentity {
        pid,
        started_at: 12_345,
    }
}

#[test]
fn initialize_resets_sessions_of_dead_owners_and_leaves_live_ones_alone() {
    let env = Env::new("");
    let m = env.manager();
    let dead_owned = m.get_or_create("frontend", "backend").expect("s1");
    let live_owned = m.get_or_create("backend", "frontend").expect("s2");
    let reused_pid = m.get_or_create("docs", "frontend").expect("s3");
    let ownerless = m.get_or_create("frontend", "docs").expect("s4");
    let compacting = m.get_or_create("docs", "backend").expect("s5");
    let untouched = m.get_or_create("backend", "docs").expect("s6");

    // A live process that is not us: a child we keep running for the test.
    let mut live = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("spawn sleep");
    let live_id = ProcessIdentity {
        pid: live.id(),
        started_at: switchboard::util::process_start_ms(live.id()).unwrap_or(0),
    };
    let now = now_ms();
    let st = m.store();
    st.force_owner(
        &dead_owned.session_id,
        ProcessState::Processing,
        Some(dead_identity()),
        now,
    )
    .expect("dead");
    st.set_current_tell(&dead_owned.session_id, Some("tell-9"))
        .expect("tell");
    st.force_owner(
        &live_owned.session_id,
        ProcessState::Processing,
        Some(live_id),
        now,
    )
    .expect("live");
    st.force_owner(
        &reused_pid.session_id,
        ProcessState::Idle,
        Some(ProcessIdentity {
            pid: live_id.pid,
            started_at: live_id.started_at + 1,
        }),
        now,
    )
    .expect("reused");
    st.force_owner(&ownerless.session_id, ProcessState::Spawning, None, now)
        .expect("ownerless");
    st.force_owner(
        &compacting.session_id,
        ProcessState::Processing,
        Some(dead_identity()),
        now,
    )
    .expect("compacting");
    st.set_status(&compacting.session_id, SessionStatus::Compacting, None)
        .expect("status");

    // A fresh manager, as a restarted Switchboard.
    let restarted = env.manager_uninitialized();
    let report = restarted.initialize().expect("initialize");
    let get = |s: &Session| {
        restarted
            .get_by_id(&s.session_id)
            .expect("get")
            .expect("exists")
    };

    let s = get(&dead_owned);
    assert_eq!(s.process_state, ProcessState::Stopped);
    assert!(s.current_tell_id.is_none() && s.owner_pid.is_none());
    assert_eq!(
        get(&live_owned).process_state,
        ProcessState::Processing,
        "live owner kept"
    );
    assert_eq!(get(&live_owned).owner_pid, Some(i64::from(live_id.pid)));
    if cfg!(target_os = "linux") {
        assert_eq!(
            get(&reused_pid).process_state,
            ProcessState::Stopped,
            "reused pid reset"
        );
    }
    assert_eq!(get(&ownerless).process_state, ProcessState::Stopped);
    let c = get(&compacting);
    assert_eq!(c.process_state, ProcessState::Stopped);
    assert_eq!(
        c.status,
        SessionStatus::CompactPending,
        "interrupted compaction stays due"
    );
    assert_eq!(get(&untouched).process_state, ProcessState::Stopped);
    let expected_reset = if cfg!(target_os = "linux") { 4 } else { 3 };
    assert_eq!(report.reset, expected_reset);
    assert_eq!(report.owned_by_live_process, 5 - expected_reset);

    // Once the live owner is gone, its session is reset too.
    live.kill().expect("kill");
    live.wait().expect("reap");
    let report = restarted.initialize().expect("initialize again");
    assert_eq!(report.reset, 1);
    assert_eq!(get(&live_owned).process_state, ProcessState::Stopped);
}

impl Env {
    fn manager_uninitialized(&self) -> SessionManager {
        SessionManager::open(Arc::clone(&self.config)).expect("open manager")
    }
}

#[test]
fn initialize_reports_missing_team_folders() {
    let env = Env::new("");
    std::fs::remove_dir(env.dir.path().join("projects/docs")).expect("rmdir");
    let report = env
        .manager_uninitialized()
        .initialize()
        .expect("initialize");
    assert_eq!(report.missing_team_folders, vec!["docs".to_string()]);
}

#[test]
fn stats_on_a_seeded_database() {
    let env = Env::new(
        "[settings.compaction]\nmax_messages = 50\nstale_messages = 10\nstale_age = \"1h\"",
    );
    let m = env.manager();
    let fb = m.get_or_create("frontend", "backend").expect("fb");
    let fd = m.get_or_create("frontend", "docs").expect("fd");
    let bd = m.get_or_create("backend", "docs").expect("bd");
    let db = m.get_or_create("docs", "backend").expect("db");
    m.increment_message_count(&fb.session_id, 60)
        .expect("fb msgs"); // due: ≥ max
    m.increment_message_count(&fd.session_id, 12)
        .expect("fd msgs"); // not due: fresh
    m.increment_message_count(&bd.session_id, 30)
        .expect("bd msgs");
    m.record_usage_totals(&fb.session_id, 1_000, 200, 0.75)
        .expect("usage");
    m.record_usage_totals(&bd.session_id, 10, 5, 0.25)
        .expect("usage");
    m.update_process_state(&bd.session_id, ProcessState::Idle)
        .expect("idle");
    m.set_status(&db.session_id, SessionStatus::Archived)
        .expect("archive");

    let s = m.stats().expect("stats");
    assert_eq!(s.total_sessions, 4);
    assert_eq!(s.total_messages, 102);
    assert_eq!(s.total_input_tokens, 1_010);
    assert_eq!(s.total_output_tokens, 205);
    assert!((s.total_cost_usd - 1.0).abs() < 1e-9);
    assert_eq!(s.by_status["active"], 3);
    assert_eq!(s.by_status["archived"], 1);
    assert_eq!(s.by_status["error"], 0);
    assert_eq!(s.by_process_state["idle"], 1);
    assert_eq!(s.by_process_state["stopped"], 3);
    assert_eq!(s.due_for_compaction, 1);
    let names: Vec<&str> = s.per_team.iter().map(|t| t.team.as_str()).collect();
    assert_eq!(names, ["backend", "docs", "frontend"]);
    let fe = &s.per_team[2];
    assert_eq!((fe.sessions_as_caller, fe.sessions_as_callee), (2, 0));
    assert_eq!((fe.messages_as_caller, fe.messages_as_callee), (72, 0));
    let docs = &s.per_team[1];
    assert_eq!((docs.sessions_as_caller, docs.sessions_as_callee), (1, 2));
    assert_eq!(docs.messages_as_callee, 42);
    assert!((docs.cost_usd_as_callee - 0.25).abs() < 1e-9);
    let busiest: Vec<(String, i64)> = s
        .busiest_pairs
        .iter()
        .map(|p| (format!("{}:{}", p.from_team, p.to_team), p.message_count))
        .collect();
    assert_eq!(
        busiest,
        [
            ("frontend:backend".to_string(), 60),
            ("backend:docs".to_string(), 30),
            ("frontend:docs".to_string(), 12)
        ]
    );
    // A team with no session still shows in per_team.
    let empty_env = Env::new("");
    let st = empty_env.manager().stats().expect("stats");
    assert_eq!(st.total_sessions, 0);
    assert_eq!(st.per_team.len(), 3);
    assert!(st.busiest_pairs.is_empty());
}

#[test]
fn compaction_policy_and_bookkeeping() {
    let env = Env::new(
        "[settings.compaction]\nmax_messages = 50\nstale_messages = 10\nstale_age = \"1h\"",
    );
    let m = env.manager();
    let s = m.get_or_create("frontend", "backend").expect("s");
    assert!(!m.should_compact(&s));
    let s = m.increment_message_count(&s.session_id, 49).expect("49");
    assert!(!m.should_compact(&s), "49 < max and fresh");
    let s = m.increment_message_count(&s.session_id, 1).expect("50");
    assert!(m.should_compact(&s), "50 ≥ max");
    // Stale: ≥ stale_messages and unused for stale_age.
    let other = m.get_or_create("frontend", "docs").expect("other");
    let mut old = m
        .increment_message_count(&other.session_id, 10)
        .expect("10");
    assert!(!m.should_compact(&old));
    old.last_used_at -= 2 * 3_600_000;
    assert!(m.should_compact(&old));
    old.message_count = 9;
    assert!(!m.should_compact(&old));
    let due = m.due_for_compaction(None).expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].session_id, s.session_id);

    let compacting = m.begin_compaction(&s).expect("begin");
    assert!(!m.should_compact(&compacting), "not due while compacting");
    assert!(
        matches!(
            m.begin_compaction(&compacting),
            Err(SessionError::Conflict { .. })
        ),
        "no second compaction at once"
    );
    let done = m
        .finish_compaction(&s.session_id, 150_000, 12_000)
        .expect("finish");
    assert_eq!(done.message_count, 0);
    assert_eq!(done.compaction_count, 1);
    assert_eq!(done.status, SessionStatus::Active);
    assert!(!m.should_compact(&done));
    assert!(m.due_for_compaction(None).expect("due").is_empty());
    let failed = m.fail_compaction(&s.session_id, "timeout").expect("fail");
    assert_eq!(failed.status, SessionStatus::Error);
    let archived = m
        .set_status(&s.session_id, SessionStatus::Archived)
        .expect("archive");
    assert!(matches!(
        m.request_compaction(&archived),
        Err(SessionError::Conflict { .. })
    ));
}

#[test]
fn list_filters_order_and_limit() {
    let env = Env::new("");
    let m = env.manager();
    let pairs = [
        ("frontend", "backend"),
        ("frontend", "docs"),
        ("backend", "docs"),
        ("docs", "frontend"),
    ];
    let mut ids = Vec::new();
    for (i, (f, t)) in pairs.iter().enumerate() {
        let s = m.get_or_create(f, t).expect("create");
        clock_past(s.created_at);
        m.increment_message_count(&s.session_id, i as i64 + 1)
            .expect("msgs");
        ids.push(s.session_id.clone());
    }
    m.update_process_state(&ids[1], ProcessState::Idle)
        .expect("idle");
    m.mark_error(&ids[2], "x").expect("error");
    let list = |f: ListFilter| -> Vec<String> {
        m.list(&f)
            .expect("list")
            .into_iter()
            .map(|s| s.session_id)
            .collect()
    };
    assert_eq!(
        list(ListFilter {
            from_team: Some("frontend".into()),
            order: ListOrder::CreatedAsc,
            ..Default::default()
        }),
        [ids[0].clone(), ids[1].clone()]
    );
    assert_eq!(
        list(ListFilter {
            to_team: Some("docs".into()),
            order: ListOrder::CreatedAsc,
            ..Default::default()
        }),
        [ids[1].clone(), ids[2].clone()]
    );
    assert_eq!(
        list(ListFilter {
            status: Some(SessionStatus::Error),
            ..Default::default()
        }),
        [ids[2].clone()]
    );
    assert_eq!(
        list(ListFilter {
            process_state: Some(ProcessState::Idle),
            ..Default::default()
        }),
        [ids[1].clone()]
    );
    assert_eq!(
        list(ListFilter {
            order: ListOrder::MessagesDesc,
            limit: Some(2),
            ..Default::default()
        }),
        [ids[3].clone(), ids[2].clone()]
    );
    let all = m.list(&ListFilter::default()).expect("all");
    assert_eq!(all.len(), 4);
    assert!(
        all.windows(2)
            .all(|w| w[0].last_used_at >= w[1].last_used_at),
        "most recent first"
    );
    let future = now_ms() + 60_000;
    assert!(list(ListFilter {
        used_after: Some(future),
        ..Default::default()
    })
    .is_empty());
    assert_eq!(
        list(ListFilter {
            created_after: Some(0),
            ..Default::default()
        })
        .len(),
        4
    );
}

#[test]
fn delete_removes_the_transcript_when_asked() {
    let env = Env::new("");
    let m = env.manager();
    let s = m.get_or_create("frontend", "backend").expect("create");
    let path = m.transcript_path(&s).expect("transcript path");
    assert!(
        path.starts_with(env.dir.path().join("home/.claude/projects")),
        "{path:?}"
    );
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, "{}\n").expect("write transcript");
    m.delete(&s, false).expect("delete without transcript");
    assert!(path.exists(), "kept without remove_transcript");
    let s = m.get_or_create("frontend", "backend").expect("recreate");
    let path = m.transcript_path(&s).expect("path");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, "{}\n").expect("write transcript");
    m.delete(&s, true).expect("delete with transcript");
    assert!(!path.exists());
    // A missing transcript is fine.
    let s = m.get_or_create("frontend", "backend").expect("recreate");
    m.delete(&s, true).expect("delete, no transcript");
    assert!(matches!(
        m.delete(&s, false),
        Err(SessionError::NotFound(_))
    ));
}

#[test]
fn racing_readers_never_make_a_writer_read_its_old_value() {
    // Readers keep missing and loading the pair while a writer writes; after every write, the
    // writer's own read must show at least what it wrote (a stale load must not be cached
    // after the write's invalidation).
    let env = Env::new("");
    let m = Arc::new(env.manager());
    let s = m.get_or_create("frontend", "backend").expect("create");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reading = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let m = Arc::clone(&m);
            let stop = Arc::clone(&stop);
            let reading = Arc::clone(&reading);
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = m.get("frontend", "backend").expect("read");
                    if reads == 0 {
                        reading.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    // The race needs the readers running (on a loaded machine they may start late).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while reading.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the readers never started"
        );
        std::thread::yield_now();
    }
    for i in 1..=300 {
        let written = m.increment_message_count(&s.session_id, 1).expect("write");
        assert_eq!(written.message_count, i);
        let read = m.get("frontend", "backend").expect("read").expect("exists");
        assert!(
            read.message_count >= i,
            "read {} after writing {i}",
            read.message_count
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader") > 0);
    }
}

#[test]
fn the_owner_lease_is_exclusive_and_a_dead_holder_is_reclaimed() {
    let env = Env::new("");
    let m = env.manager();
    let s = m.get_or_create("frontend", "backend").expect("create");
    let mut live = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("spawn sleep");
    let holder = ProcessIdentity {
        pid: live.id(),
        started_at: switchboard::util::process_start_ms(live.id()).unwrap_or(0),
    };
    m.store()
        .force_owner(&s.session_id, ProcessState::Idle, Some(holder), now_ms())
        .expect("held by the child");
    match m.acquire_lease(&s.session_id) {
        Err(e @ SessionError::Busy { .. }) => {
            assert_eq!(
                e.to_string(),
                format!(
                    "session frontend:backend is busy: held by pid {}",
                    holder.pid
                )
            );
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    live.kill().expect("kill");
    live.wait().expect("reap");
    let taken = m
        .acquire_lease(&s.session_id)
        .expect("dead holder reclaimed");
    assert_eq!(taken.owner_pid, Some(i64::from(std::process::id())));
    assert_eq!(
        taken.process_state,
        ProcessState::Stopped,
        "reset as the dead holder left it"
    );
    // Taking it again is fine; releasing gives it back.
    m.acquire_lease(&s.session_id).expect("re-entrant");
    let released = m
        .release_lease(&s.session_id)
        .expect("release")
        .expect("was held");
    assert!(released.owner_pid.is_none());
    assert!(m
        .release_lease(&s.session_id)
        .expect("release again")
        .is_none());
}

#[test]
fn a_session_held_by_another_live_process_is_not_deleted() {
    let env = Env::new("");
    let m = env.manager();
    let s = m.get_or_create("frontend", "backend").expect("create");
    let mut live = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("spawn sleep");
    let holder = ProcessIdentity {
        pid: live.id(),
        started_at: switchboard::util::process_start_ms(live.id()).unwrap_or(0),
    };
    m.store()
        .force_owner(&s.session_id, ProcessState::Idle, Some(holder), now_ms())
        .expect("held");
    match m.delete(&s, false) {
        Err(SessionError::Busy { pid, .. }) => assert_eq!(pid, holder.pid),
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(m.get_by_id(&s.session_id).expect("get").is_some(), "kept");
    live.kill().expect("kill");
    live.wait().expect("reap");
    m.delete(&s, false)
        .expect("deleted once the holder is gone");
}
