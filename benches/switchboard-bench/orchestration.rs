//! Part 3: what the orchestration layer (Router → worker → AgentProcess, with every step recorded
//! in SQLite) adds to talking to an agent, measured with the scripted test agent
//! (`switchboard-test-agent`), which answers at once. Each layer measurement runs next to a raw
//! floor: the same agent binary driven directly over its stdin/stdout with tokio::process, the
//! same JSON lines, no Switchboard in between.
//!
//! - `tell_roundtrip` / `tell_roundtrip_raw`: one live agent, one tell at a time.
//! - `spawn_to_ready` / `spawn_raw`: start an agent and get its answer to the `initialize`
//!   control request (the readiness probe).
//! - `tells_50_pairs` / `tells_50_pairs_raw`: 50 pairs (50 agents) at once, each a closed loop of
//!   tells; `tells_50_pairs_burst`: every tell of the 50 pairs submitted at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard::agent::adapter::{adapter_for, AgentAdapter, LaunchExtras, SessionRef};
use switchboard::agent::event::AgentEvent;
use switchboard::agent::process::{AgentProcess, StdoutLine};
use switchboard::config::TeamConfig;
use switchboard::router::{Router, Wait};
use switchboard::store::{Tell, TellState};
use switchboard::{SessionManager, TeamsConfig};

use crate::measure::{self, nanos, print_ratio, BenchResult, Measurement};
use crate::raw::Raw;
use crate::setup::{self, team_name};

/// The scripted agent's example target; cargo puts it in `target/<profile>/examples/`.
pub const AGENT_BIN: &str = "switchboard-test-agent";
/// Pairs of the concurrent phase, and fresh pairs of the spawn phase (full run).
const PAIRS: usize = 50;
/// Teams: `team-000` tells everyone; `team-001` is the single-pair callee; `team-002` ..
/// `team-051` are the callees of the 50 pairs.
const TEAMS: usize = PAIRS + 2;
/// How long one tell may take before the bench gives up on it.
const TELL_WAIT: Duration = Duration::from_secs(120);
/// Untimed tells before a single-pair loop (first-turn effects: transcript folder, caches).
const WARMUP: usize = 20;

/// Where the scripted agent is: `target/<profile>/examples/`, beside the `deps/` folder that
/// holds this bench binary.
pub fn agent_path() -> BenchResult<PathBuf> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the bench binary's own path: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| format!("{} is not in <target>/<profile>/deps/", exe.display()))?;
    let agent = profile_dir.join("examples").join(AGENT_BIN);
    if !agent.is_file() {
        let profile = if profile_dir.ends_with("release") {
            "--release "
        } else {
            ""
        };
        return Err(format!(
            "the scripted agent {} is missing; part 3 (orchestration) needs it. Build it first:\n  \
             cargo build {profile}--locked --example {AGENT_BIN}\n\
             (or run only parts 1 and 2 with --only sessions)",
            agent.display()
        )
        .into());
    }
    Ok(agent)
}

/// The folders of part 3, under the run's scratch folder.
struct Paths {
    root: PathBuf,
    team_dir: PathBuf,
    home: PathBuf,
    db: PathBuf,
    agent: PathBuf,
    /// The callees' team config (every callee's is the same but for its name): the raw floor
    /// launches the agent from it, as the worker does.
    team: Option<TeamConfig>,
}

/// A teams config of `TEAMS` teams all run by the scripted agent in one folder, with a pool big
/// enough for every agent of the run (no eviction), and nothing that expires during a run.
fn config(p: &Paths) -> BenchResult<Arc<TeamsConfig>> {
    let q = |path: &Path| setup::toml_string(&path.display().to_string());
    let mut text = format!(
        "[settings]\ncache_ttl = \"1h\"\nidle_timeout = \"1h\"\nmax_processes = {}\n\
         max_queued_per_pair = 1000000\ntells_per_minute = 1000000000\n\n\
         [database]\npath = {}\n\n",
        2 * TEAMS + 8,
        q(&p.db)
    );
    for i in 0..TEAMS {
        text.push_str(&format!(
            "[teams.{}]\npath = {}\nagent_path = {}\nenv = {{ HOME = {} }}\n\n",
            team_name(i),
            q(&p.team_dir),
            q(&p.agent),
            q(&p.home)
        ));
    }
    Ok(Arc::new(TeamsConfig::parse(&text, None, &|_| None)?))
}

/// The scripted agent driven directly, through the agent layer's own spawning and line
/// codec (`AgentProcess::spawn` with the launch spec of the team's adapter, its readiness
/// probe and message lines): the raw floor. No router, no session layer, no store.
struct RawAgent {
    proc: AgentProcess,
    adapter: &'static dyn AgentAdapter,
}

impl RawAgent {
    /// Spawns the agent of `team` exactly as the pair worker does (same adapter launch spec:
    /// arguments, folder, allow-listed environment; own process group, parent-death signal),
    /// for a new session id, with its stderr logged under the scratch folder.
    fn spawn(p: &Paths) -> BenchResult<Self> {
        let team = p.team.as_ref().ok_or("no team config for the raw agent")?;
        let adapter = adapter_for(&team.agent)
            .ok_or_else(|| format!("no adapter for agent {:?}", team.agent))?;
        let session_id = uuid::Uuid::new_v4().to_string();
        let session = SessionRef {
            session_id: &session_id,
            agent_session_id: None,
            resume: false,
        };
        let spec = adapter.launch(team, &session, &LaunchExtras::default());
        let log = p.root.join(format!("raw-{session_id}.stderr.log"));
        let proc = AgentProcess::spawn(&spec, &log, adapter)
            .map_err(|e| format!("cannot spawn {}: {e}", p.agent.display()))?;
        Ok(Self { proc, adapter })
    }

    /// Waits for the next event; an agent that closed its stdout is an error.
    async fn next_event(&mut self, waiting_for: &str) -> BenchResult<AgentEvent> {
        loop {
            match self.proc.lines.recv().await {
                Some(StdoutLine::Event(ev)) => return Ok(ev),
                Some(StdoutLine::Bad(_)) => {}
                None | Some(StdoutLine::Closed(_)) => {
                    return Err(
                        format!("the raw agent closed its stdout before {waiting_for}").into(),
                    )
                }
            }
        }
    }

    /// Sends the readiness probe and waits for its answer.
    async fn probe(&mut self) -> BenchResult<()> {
        let id = format!("ready-{}", uuid::Uuid::new_v4());
        let line = self
            .adapter
            .encode_ready_probe(&id)
            .ok_or("the adapter has no readiness probe")?;
        self.proc.send_line(&line).await?;
        loop {
            if let AgentEvent::ControlResponse { request_id, .. } =
                self.next_event("the probe's answer").await?
            {
                if request_id.as_deref() == Some(id.as_str()) {
                    return Ok(());
                }
            }
        }
    }

    /// One turn: the message, then everything up to its result; checks the answer.
    async fn turn(&mut self, text: &str) -> BenchResult<()> {
        self.proc
            .send_line(&self.adapter.encode_message(text))
            .await?;
        loop {
            if let AgentEvent::Result(r) = self.next_event("a result").await? {
                let answer = r.text.as_deref().unwrap_or("");
                if answer.strip_prefix("echo: ") != Some(text) {
                    return Err(format!("raw agent answered {answer:?} to {text:?}").into());
                }
                return Ok(());
            }
        }
    }

    /// The agent's pid.
    fn pid(&self) -> u32 {
        self.proc.identity.pid
    }

    /// Stops it as the worker does (SIGTERM to its group, grace, SIGKILL).
    async fn stop(mut self) {
        self.proc.stop(Duration::from_secs(5)).await;
    }
}

/// Checks that a tell was answered by the echo agent.
fn check_answer(t: &Tell, text: &str) -> BenchResult<()> {
    if t.state != TellState::Answered {
        return Err(format!(
            "tell {text:?} ended {:?}: {}",
            t.state,
            t.error.as_deref().unwrap_or("no error recorded")
        )
        .into());
    }
    match t.answer.as_deref().and_then(|a| a.strip_prefix("echo: ")) {
        Some(a) if a == text => Ok(()),
        _ => Err(format!("tell {text:?} was answered {:?}", t.answer).into()),
    }
}

/// CPU time (user + system) a live process has used, from `/proc/PID/stat` (clock ticks).
fn proc_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit(')').next()?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime(11) stime(12).
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0)?;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// Live (not zombie) processes whose working folder is under `root`, other than this one.
pub fn processes_in(root: &Path) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
            continue;
        };
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if !zombie && cwd.starts_with(root) {
            pids.push(pid);
        }
    }
    pids
}

/// Reports the WAL a loop left behind (always: part 3 shows whether the store checkpoints), then
/// truncates it, untimed, so the next loop starts from an empty WAL.
fn wal_after(raw: &Raw, step: &str) -> BenchResult<()> {
    let bytes = raw.wal_bytes();
    let (busy, _, _) = raw.checkpoint()?;
    eprintln!(
        "# WAL after {step}: {:.1} MB{}",
        bytes as f64 / 1048576.0,
        if busy != 0 { " (checkpoint busy)" } else { "" }
    );
    Ok(())
}

/// Operation counts of part 3 (`div` = 10 with `--quick`).
#[derive(Clone, Copy)]
pub struct Counts {
    /// Tells of the single-pair loop.
    pub tells: usize,
    /// Fresh pairs woken (and raw spawns).
    pub spawns: usize,
    /// Tells per pair of the 50-pair phase.
    pub per_pair: usize,
}

/// Runs part 3 in `scratch` (its own database, agents working in `scratch/orch/team`). Every
/// agent is stopped before it returns, and no process is left working in the scratch folder.
pub fn run(scratch: &Path, counts: Counts) -> BenchResult<()> {
    let agent = agent_path()?;
    let root = scratch.join("orch");
    let p = Paths {
        team_dir: root.join("team"),
        home: root.join("home"),
        db: root.join("orch.db"),
        agent,
        root,
        team: None,
    };
    std::fs::create_dir_all(&p.team_dir)?;
    std::fs::create_dir_all(&p.home)?;
    eprintln!(
        "# part 3: agent {}, database {}",
        p.agent.display(),
        p.db.display()
    );
    let config = config(&p)?;
    let mut p = p;
    p.team = config.team(&team_name(1)).cloned();
    let p = p;
    let manager = SessionManager::open(config)?;
    manager.initialize()?;
    let raw = Raw::open(&p.db)?;
    // Multi-threaded, one worker per core (the router needs a multi-threaded runtime: agents
    // are spawned from its worker threads).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let router = Router::new(Arc::new(manager));
        router.recover(None)?;
        let phases = phases(&router, &raw, &p, counts).await;
        let t0 = Instant::now();
        let live = router.live_agents().len();
        router.shutdown().await;
        eprintln!(
            "# shutdown: {live} live agents stopped in {:.0} ms",
            t0.elapsed().as_secs_f64() * 1000.0
        );
        // Anything still working in our folder is a leak: report it, and kill it (ours).
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut left = processes_in(&p.root);
        while !left.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            left = processes_in(&p.root);
        }
        if !left.is_empty() {
            for &pid in &left {
                if let Ok(pid) = libc::pid_t::try_from(pid) {
                    // SAFETY: kill has no memory-safety requirements.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            return Err(format!(
                "processes left running in {} after shutdown (killed): {left:?}",
                p.root.display()
            )
            .into());
        }
        eprintln!("# part 3: no agent process left");
        phases
    });
    rt.shutdown_timeout(Duration::from_secs(10));
    result
}

async fn phases(router: &Router, raw: &Raw, p: &Paths, c: Counts) -> BenchResult<()> {
    let from = team_name(0);
    tell_roundtrip(router, p, &from, &team_name(1), c.tells).await?;
    eprintln!(
        "# the store's checkpointer after tell_roundtrip: {:?}",
        router.manager().store().wal_stats()
    );
    wal_after(raw, "tell_roundtrip")?;
    let callees: Vec<String> = (2..2 + PAIRS).map(team_name).collect();
    spawn_to_ready(router, p, &from, &callees[..c.spawns.min(PAIRS)]).await?;
    wal_after(raw, "spawn_to_ready")?;
    tells_50_pairs(router, raw, p, &from, &callees, c.per_pair).await?;
    Ok(())
}

/// Tells of one loop block; layer and raw blocks alternate (a shared machine drifts).
const BLOCK: usize = 50;

/// 1,000 tells on one live agent, each `tell(.., Wait::For(..))` timed alone, alternating in
/// blocks of 50 with 1,000 turns of a raw agent driven directly. CPU is this process's, per block
/// (a tell's trailing work, after its waiter is answered, lands in its own block).
async fn tell_roundtrip(
    router: &Router,
    p: &Paths,
    from: &str,
    to: &str,
    n: usize,
) -> BenchResult<()> {
    let wait = Wait::For(TELL_WAIT);
    let mut direct = RawAgent::spawn(p)?;
    direct.probe().await?;
    for i in 0..WARMUP {
        let text = format!("warm-up {i}");
        let t = router.tell(from, to, &text, wait).await?;
        check_answer(&t, &text)?;
        direct.turn(&text).await?;
    }
    let agent_pid = router
        .manager()
        .get(from, to)?
        .and_then(|s| s.agent_pid)
        .and_then(|p| u32::try_from(p).ok())
        .ok_or("the pair's agent pid is not recorded")?;
    let texts: Vec<String> = (0..n).map(|i| format!("ping {i}")).collect();
    let mut layer = Vec::with_capacity(n);
    let mut submit = Vec::with_capacity(n);
    let mut floor = Vec::with_capacity(n);
    let mut agent_ms = Vec::with_capacity(n);
    let (mut layer_wall, mut floor_wall) = (Duration::ZERO, Duration::ZERO);
    let (mut layer_cpu, mut floor_cpu) = (Duration::ZERO, Duration::ZERO);
    let (mut agent_cpu, mut raw_agent_cpu) = (Duration::ZERO, Duration::ZERO);
    let cpu_of = |pid: u32| proc_cpu(pid).unwrap_or(Duration::ZERO);
    let mut layer_written = 0u64;
    for block in texts.chunks(BLOCK) {
        let w0 = written_bytes();
        let a0 = cpu_of(agent_pid);
        let c0 = measure::process_cpu();
        for text in block {
            let t0 = Instant::now();
            let queued = router
                .submit(from, to, switchboard::store::TellKind::Tell, text, None)
                .await?;
            let t1 = Instant::now();
            let t = router.wait_for(&queued.tell_id, wait).await?;
            let d = t0.elapsed();
            check_answer(&t, text)?;
            layer_wall += d;
            layer.push(nanos(d));
            submit.push(nanos(t1 - t0));
            agent_ms.push(t.duration_ms.unwrap_or(0));
        }
        layer_cpu += measure::process_cpu().saturating_sub(c0);
        agent_cpu += cpu_of(agent_pid).saturating_sub(a0);
        layer_written += written_bytes().saturating_sub(w0);

        let a0 = cpu_of(direct.pid());
        let c0 = measure::process_cpu();
        for text in block {
            let t0 = Instant::now();
            direct.turn(text).await?;
            let d = t0.elapsed();
            floor_wall += d;
            floor.push(nanos(d));
        }
        floor_cpu += measure::process_cpu().saturating_sub(c0);
        raw_agent_cpu += cpu_of(direct.pid()).saturating_sub(a0);
    }
    direct.stop().await;

    let mut layer = Measurement::new("tell_roundtrip", layer_wall, layer);
    layer.cpu = Some(layer_cpu);
    let mut floor = Measurement::new("tell_roundtrip_raw", floor_wall, floor);
    floor.cpu = Some(floor_cpu);
    let submit = Measurement::new("tell_submit", Duration::ZERO, submit);
    agent_ms.sort_unstable();
    let per_turn = |d: Duration| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    eprintln!(
        "# tell_roundtrip: the cpu lines are this whole process (for the layer: router, store, \
         runtime threads); submit() alone (store the tell, wake the worker) p50 {:.1} us p99 {:.1} us",
        submit.p50_us(),
        submit.p99_us()
    );
    eprintln!(
        "# tell_roundtrip: the agent's own time: duration_ms it reported p50 {} ms, max {} ms; \
         its cpu {:.0} us/turn behind the router, {:.0} us/turn driven directly (10 ms ticks)",
        agent_ms
            .get(agent_ms.len().saturating_sub(1) / 2)
            .unwrap_or(&0),
        agent_ms.last().unwrap_or(&0),
        per_turn(agent_cpu),
        per_turn(raw_agent_cpu)
    );
    eprintln!(
        "# tell_roundtrip: this process wrote {:.1} KB per tell (write syscalls: the WAL, \
         checkpoints into the database file, the agent's pipe)",
        layer_written as f64 / 1024.0 / n.max(1) as f64
    );
    layer.print();
    floor.print();
    let (l50, l99, f50, f99) = (
        layer.p50_us(),
        layer.p99_us(),
        floor.p50_us(),
        floor.p99_us(),
    );
    print_ratio("tell_roundtrip", layer.into_summary(), floor.into_summary());
    println!("overhead_p50_us=tell_roundtrip {:.1}", l50 - f50);
    println!("overhead_p99_us=tell_roundtrip {:.1}", l99 - f99);
    Ok(())
}

/// `wake(from, to)` of fresh pairs (session created, agent spawned, readiness probe answered),
/// interleaved with spawning the agent binary directly and waiting for the same probe's answer.
/// The woken agents stay up (they are the pairs of the next phase).
async fn spawn_to_ready(
    router: &Router,
    p: &Paths,
    from: &str,
    callees: &[String],
) -> BenchResult<()> {
    // One untimed spawn each way first (page cache, the binary's first exec).
    RawAgent::spawn(p)?.stop().await;
    let n = callees.len();
    let mut layer = Timed::new("spawn_to_ready", n);
    let mut floor = Timed::new("spawn_raw", n);
    for to in callees {
        let c0 = measure::process_cpu();
        let t0 = Instant::now();
        router.wake(from, to).await?;
        layer.add(t0.elapsed(), measure::process_cpu().saturating_sub(c0));

        let c0 = measure::process_cpu();
        let t0 = Instant::now();
        let mut direct = RawAgent::spawn(p)?;
        direct.probe().await?;
        floor.add(t0.elapsed(), measure::process_cpu().saturating_sub(c0));
        direct.stop().await;
    }
    let (layer, floor) = (layer.done(), floor.done());
    eprintln!(
        "# spawn_*: the cpu lines are this whole process; this process's rss before the first \
         spawn {:.1} MB",
        setup::rss_mb().unwrap_or(f64::NAN)
    );
    layer.print();
    floor.print();
    print_ratio("spawn_to_ready", layer.into_summary(), floor.into_summary());
    Ok(())
}

/// Per-op wall and CPU samples of a loop whose ops are timed one by one (possibly interleaved
/// with another loop's): `ops_per_s` is n over the sum of the timed parts.
struct Timed {
    name: &'static str,
    samples: Vec<u32>,
    wall: Duration,
    cpu: Duration,
}

impl Timed {
    fn new(name: &'static str, n: usize) -> Self {
        Self {
            name,
            samples: Vec::with_capacity(n),
            wall: Duration::ZERO,
            cpu: Duration::ZERO,
        }
    }

    fn add(&mut self, wall: Duration, cpu: Duration) {
        self.samples.push(nanos(wall));
        self.wall += wall;
        self.cpu += cpu;
    }

    fn done(self) -> Measurement {
        let mut m = Measurement::new(self.name, self.wall, self.samples);
        m.cpu = Some(self.cpu);
        m
    }
}

/// 50 pairs at once: each pair is a closed loop of `per_pair` tells (the next one after the
/// answer), all 50 released together; the same with 50 raw agents; then every tell of the 50
/// pairs submitted at once (a burst) and waited for.
async fn tells_50_pairs(
    router: &Router,
    raw: &Raw,
    p: &Paths,
    from: &str,
    callees: &[String],
    per_pair: usize,
) -> BenchResult<()> {
    let wait = Wait::For(TELL_WAIT);
    // Untimed: one tell per pair, so every agent is up and past its first turn (in --quick only
    // a tenth of them were woken by spawn_to_ready).
    let mut warm = tokio::task::JoinSet::new();
    for to in callees {
        let (r, from, to) = (router.clone(), from.to_string(), to.clone());
        warm.spawn(async move {
            let t = r.tell(&from, &to, "warm-up", wait).await?;
            check_answer(&t, "warm-up")
        });
    }
    while let Some(r) = warm.join_next().await {
        r??;
    }
    wal_after(raw, "the 50-pair warm-up")?;
    let agents = processes_in(&p.root);
    let agents_mb: f64 = agents.iter().filter_map(|&pid| setup::rss_mb_of(pid)).sum();
    eprintln!(
        "# tells_50_pairs: {} live agents, {agents_mb:.1} MB RSS together; this process {:.1} MB",
        agents.len(),
        setup::rss_mb().unwrap_or(f64::NAN)
    );

    // Closed loops through the router.
    let barrier = Arc::new(tokio::sync::Barrier::new(callees.len() + 1));
    let mut set = tokio::task::JoinSet::new();
    for (k, to) in callees.iter().enumerate() {
        let (r, from, to, barrier) = (
            router.clone(),
            from.to_string(),
            to.clone(),
            Arc::clone(&barrier),
        );
        set.spawn(async move {
            let texts: Vec<String> = (0..per_pair).map(|i| format!("p{k} t{i}")).collect();
            let mut lat = Vec::with_capacity(per_pair);
            barrier.wait().await;
            for text in &texts {
                let t0 = Instant::now();
                let t = r.tell(&from, &to, text, wait).await?;
                lat.push(nanos(t0.elapsed()));
                check_answer(&t, text)?;
            }
            BenchResult::Ok(lat)
        });
    }
    let c0 = measure::process_cpu();
    let w0 = written_bytes();
    let b0 = measure::Breakdown::now(&agents);
    barrier.wait().await;
    let start = Instant::now();
    let mut lat = Vec::with_capacity(callees.len() * per_pair);
    while let Some(r) = set.join_next().await {
        lat.extend(r??);
    }
    let wall = start.elapsed();
    let b1 = measure::Breakdown::now(&agents);
    let mut layer = Measurement::new("tells_50_pairs", wall, lat);
    layer.cpu = Some(measure::process_cpu().saturating_sub(c0));
    b1.print_since(&b0, "tells_50_pairs", layer.n);
    eprintln!(
        "# tells_50_pairs: this process wrote {:.1} KB per tell",
        written_bytes().saturating_sub(w0) as f64 / 1024.0 / layer.n.max(1) as f64
    );
    wal_after(raw, "tells_50_pairs")?;

    // The same closed loops with 50 agents driven directly.
    let mut agents = Vec::with_capacity(callees.len());
    for _ in callees {
        let mut a = RawAgent::spawn(p)?;
        a.probe().await?;
        a.turn("warm-up").await?;
        agents.push(a);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(agents.len() + 1));
    let mut set = tokio::task::JoinSet::new();
    for (k, mut a) in agents.into_iter().enumerate() {
        let barrier = Arc::clone(&barrier);
        set.spawn(async move {
            let texts: Vec<String> = (0..per_pair).map(|i| format!("p{k} t{i}")).collect();
            let mut lat = Vec::with_capacity(per_pair);
            barrier.wait().await;
            for text in &texts {
                let t0 = Instant::now();
                let r = a.turn(text).await;
                lat.push(nanos(t0.elapsed()));
                if let Err(e) = r {
                    a.stop().await;
                    return Err(e);
                }
            }
            BenchResult::Ok((lat, a))
        });
    }
    let c0 = measure::process_cpu();
    let all_agents = processes_in(&p.root);
    let b0 = measure::Breakdown::now(&all_agents);
    barrier.wait().await;
    let start = Instant::now();
    let mut lat = Vec::with_capacity(callees.len() * per_pair);
    let mut first_err = None;
    let mut done = Vec::with_capacity(callees.len());
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok((l, a))) => {
                lat.extend(l);
                done.push(a);
            }
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(e) => first_err = first_err.or(Some(e.into())),
        }
    }
    let wall = start.elapsed();
    // Sampled while the agents live (their counts go with them).
    let b1 = measure::Breakdown::now(&all_agents);
    for a in done {
        a.stop().await;
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let mut floor = Measurement::new("tells_50_pairs_raw", wall, lat);
    b1.print_since(&b0, "tells_50_pairs_raw", floor.n);
    floor.cpu = Some(measure::process_cpu().saturating_sub(c0));

    // Burst: every tell submitted at once, round-robin over the pairs; each latency runs from
    // its own submit to its answer, so it includes the wait behind the pair's earlier tells.
    let c0 = measure::process_cpu();
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..per_pair {
        for (k, to) in callees.iter().enumerate() {
            let text = format!("b{k} t{i}");
            let t0 = Instant::now();
            let queued = router
                .submit(from, to, switchboard::store::TellKind::Tell, &text, None)
                .await?;
            let r = router.clone();
            set.spawn(async move {
                let t = r.wait_for(&queued.tell_id, wait).await?;
                let d = t0.elapsed();
                check_answer(&t, &text)?;
                BenchResult::Ok(nanos(d))
            });
        }
    }
    let submitted = start.elapsed();
    let mut lat = Vec::with_capacity(callees.len() * per_pair);
    while let Some(r) = set.join_next().await {
        lat.push(r??);
    }
    let wall = start.elapsed();
    let mut burst = Measurement::new("tells_50_pairs_burst", wall, lat);
    burst.cpu = Some(measure::process_cpu().saturating_sub(c0));
    eprintln!(
        "# tells_50_pairs_burst: all {} tells submitted in {:.0} ms",
        burst.n,
        submitted.as_secs_f64() * 1000.0
    );
    wal_after(raw, "tells_50_pairs_burst")?;

    // What the store's own statements cost: the same turns' writes on one bare connection.
    let pairs: Vec<(String, String)> = callees
        .iter()
        .map(|to| (from.to_string(), to.clone()))
        .collect();
    let (n, tells_cpu, events_cpu) = raw.turn_floor(&pairs, per_pair, router.tell_limits())?;
    let per_op = |d: Duration| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    eprintln!(
        "# tells_50_pairs_store_floor: the store's writes of {n} turns (50 a transaction) and \
         their 7 event rows each, on one bare connection, no threads, checkpoints not counted: \
         cpu {:.1} us/op (the tells' writes {:.1}, the event rows {:.1})",
        per_op(tells_cpu + events_cpu),
        per_op(tells_cpu),
        per_op(events_cpu)
    );
    wal_after(raw, "tells_50_pairs_store_floor")?;

    eprintln!(
        "# tells_50_pairs*: {} pairs x {per_pair} tells; the cpu lines are this whole process",
        callees.len()
    );
    let (l_ops, f_ops) = (layer.ops_per_s(), floor.ops_per_s());
    layer.print();
    floor.print();
    burst.print();
    print_ratio("tells_50_pairs", layer.into_summary(), floor.into_summary());
    println!(
        "throughput_ratio=tells_50_pairs {:.2}",
        if f_ops > 0.0 { l_ops / f_ops } else { f64::NAN }
    );
    Ok(())
}

/// Bytes this process has written through write syscalls (`wchar` of `/proc/self/io`); 0 when
/// the file cannot be read.
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("wchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}
