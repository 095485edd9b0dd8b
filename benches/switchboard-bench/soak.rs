//! The soak run (`--only soak`): 10,000 tells over 50 pairs through the router with the
//! scripted agent, `max_processes` below the pair count so agents are evicted and respawned all
//! along, and a compaction every 500 tells. Every 1,000 tells it prints the process's RSS, its
//! open file descriptors, the WAL's size and the tell latencies of that block. It fails (the
//! bench exits non-zero) if RSS or the descriptors keep growing, if the WAL ever passes the
//! store's bound (sampled every 10 ms), or if any tell is lost or stuck.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchboard::router::{Router, Wait};
use switchboard::store::{ListFilter, TellKind, TellState, WAL_BOUND_BYTES};
use switchboard::{SessionManager, TeamsConfig};

use crate::measure::{nanos, BenchResult, Measurement};
use crate::setup::{self, team_name};

/// Pairs: `team-000` tells `team-001` .. `team-050`.
const PAIRS: usize = 50;
/// Live agents at most: below the pair count, so the pool evicts.
const MAX_PROCESSES: usize = 20;
/// Tells in flight at once.
const CLIENTS: usize = 10;
/// A compaction after every this many tells.
const COMPACT_EVERY: usize = 500;
/// A report after every this many tells.
const REPORT_EVERY: usize = 1_000;
/// A tell not answered in this time is stuck.
const STUCK: Duration = Duration::from_secs(60);

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn config(root: &Path, agent: &Path) -> BenchResult<Arc<TeamsConfig>> {
    let q = |path: &Path| setup::toml_string(&path.display().to_string());
    let (team_dir, home) = (root.join("team"), root.join("home"));
    std::fs::create_dir_all(&team_dir)?;
    std::fs::create_dir_all(&home)?;
    let mut text = format!(
        "[settings]\ncache_ttl = \"1h\"\nidle_timeout = \"1h\"\nmax_processes = {MAX_PROCESSES}\n\
         max_queued_per_pair = 1000000\ntells_per_minute = 1000000000\n\n\
         [database]\npath = {}\n\n",
        q(&root.join("soak.db"))
    );
    for i in 0..=PAIRS {
        text.push_str(&format!(
            "[teams.{}]\npath = {}\nagent_path = {}\nenv = {{ HOME = {} }}\n\n",
            team_name(i),
            q(&team_dir),
            q(agent),
            q(&home)
        ));
    }
    Ok(Arc::new(TeamsConfig::parse(&text, None, &|_| None)?))
}

/// One report line's numbers.
struct Sample {
    rss_mb: f64,
    fds: usize,
}

/// Runs the soak in `scratch/soak`; `tells` = 10,000 (1,000 with `--quick`).
pub fn run(scratch: &Path, tells: usize) -> BenchResult<()> {
    let agent = crate::orchestration::agent_path()?;
    let root = scratch.join("soak");
    std::fs::create_dir_all(&root)?;
    let config = config(&root, &agent)?;
    let manager = SessionManager::open(config)?;
    manager.initialize()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    eprintln!(
        "# soak: {tells} tells over {PAIRS} pairs, {CLIENTS} in flight, max_processes \
         {MAX_PROCESSES}, a compaction every {COMPACT_EVERY} tells; WAL bound {} MB",
        WAL_BOUND_BYTES >> 20
    );
    let result = rt.block_on(async {
        let router = Router::new(Arc::new(manager));
        router.recover(None)?;
        let r = soak(&router, tells).await;
        router.shutdown().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut left = crate::orchestration::processes_in(&root);
        while !left.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            left = crate::orchestration::processes_in(&root);
        }
        if !left.is_empty() {
            return Err(format!("agents left running after shutdown: {left:?}").into());
        }
        r
    });
    rt.shutdown_timeout(Duration::from_secs(10));
    result
}

async fn soak(router: &Router, tells: usize) -> BenchResult<()> {
    let from = team_name(0);
    let store = router.manager().store().clone();
    // The WAL, sampled every 10 ms for the whole run.
    let wal_max = Arc::new(AtomicU64::new(0));
    let done_flag = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (store, wal_max, done) = (store.clone(), Arc::clone(&wal_max), Arc::clone(&done_flag));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(10));
            while !done.load(Ordering::Relaxed) {
                every.tick().await;
                if let Some(w) = store.wal_stats() {
                    wal_max.fetch_max(w.wal_bytes, Ordering::Relaxed);
                }
            }
        })
    };

    let next = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<u32>::with_capacity(REPORT_EVERY * 2)));
    let (tick_tx, mut tick_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let mut clients = tokio::task::JoinSet::new();
    let start = Instant::now();
    for _ in 0..CLIENTS {
        let (r, from, next, completed, latencies, tick) = (
            router.clone(),
            from.clone(),
            Arc::clone(&next),
            Arc::clone(&completed),
            Arc::clone(&latencies),
            tick_tx.clone(),
        );
        clients.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= tells {
                    return BenchResult::Ok(());
                }
                let to = team_name(1 + i % PAIRS);
                let text = format!("soak {i}");
                let t0 = Instant::now();
                let t = r.tell(&from, &to, &text, Wait::For(STUCK)).await?;
                let d = t0.elapsed();
                if t.state != TellState::Answered
                    || t.answer.as_deref().and_then(|a| a.strip_prefix("echo: ")) != Some(&text)
                {
                    return Err(format!(
                        "tell {i} to {to} is {:?} after {d:?} (stuck or lost): answer {:?}, error {:?}",
                        t.state, t.answer, t.error
                    )
                    .into());
                }
                latencies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(nanos(d));
                if (i + 1) % COMPACT_EVERY == 0 {
                    let c = r.compact(&from, &to, Wait::For(STUCK)).await?;
                    if c.state != TellState::Answered {
                        return Err(format!(
                            "the compaction after tell {i} ({from} -> {to}) ended {:?}: {:?}",
                            c.state, c.error
                        )
                        .into());
                    }
                }
                let n = completed.fetch_add(1, Ordering::Relaxed) + 1;
                if n % REPORT_EVERY == 0 {
                    let _ = tick.send(n);
                }
            }
        });
    }
    drop(tick_tx);

    let mut samples: Vec<Sample> = Vec::new();
    let mut failure: Option<String> = None;
    loop {
        tokio::select! {
            n = tick_rx.recv() => {
                let Some(n) = n else { break };
                let block = std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
                let m = Measurement::new("soak", Duration::ZERO, block);
                let s = Sample { rss_mb: setup::rss_mb().unwrap_or(f64::NAN), fds: open_fds() };
                let wal = store.wal_stats().unwrap_or_default();
                println!(
                    "soak tells={n} secs={:.1} rss_mb={:.1} fds={} wal_mb={:.2} wal_max_mb={:.2} \
                     p50_us={:.0} p90_us={:.0} p99_us={:.0} max_us={:.0} live_agents={} spawned={} \
                     checkpoints={} truncates={}",
                    start.elapsed().as_secs_f64(),
                    s.rss_mb,
                    s.fds,
                    wal.wal_bytes as f64 / 1048576.0,
                    wal_max.load(Ordering::Relaxed) as f64 / 1048576.0,
                    m.p50_us(),
                    m.percentile_us(0.90),
                    m.p99_us(),
                    m.percentile_us(1.0),
                    router.live_agents().len(),
                    router.counters().spawned.load(Ordering::Relaxed),
                    wal.checkpoints,
                    wal.truncates,
                );
                samples.push(s);
            }
            Some(r) = clients.join_next() => {
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => { failure.get_or_insert(e.to_string()); clients.abort_all(); }
                    Err(e) if e.is_cancelled() => {}
                    Err(e) => { failure.get_or_insert(e.to_string()); clients.abort_all(); }
                }
            }
        }
    }
    while let Some(r) = clients.join_next().await {
        if let Ok(Err(e)) = r {
            failure.get_or_insert(e.to_string());
        }
    }
    done_flag.store(true, Ordering::Relaxed);
    sampler.await?;
    if let Some(f) = failure {
        return Err(format!("soak: {f}").into());
    }
    let wall = start.elapsed();

    // Nothing lost, nothing stuck: every tell stored, answered, none left open.
    let open = store.all_open_tells()?;
    if !open.is_empty() {
        return Err(format!("soak: {} tells left open, e.g. {:?}", open.len(), open[0]).into());
    }
    let mut answered = 0;
    let mut compactions = 0;
    for s in router.manager().list(&ListFilter::default())? {
        for t in store.recent_tells(&s.from_team, &s.to_team, u32::MAX)? {
            match (t.kind, t.state) {
                (TellKind::Tell, TellState::Answered) => answered += 1,
                (TellKind::Compact, TellState::Answered) => compactions += 1,
                (kind, state) => {
                    return Err(format!("soak: a {kind} tell ended {state}: {t:?}").into())
                }
            }
        }
    }
    let want_compactions = tells / COMPACT_EVERY;
    if answered != tells || compactions != want_compactions {
        return Err(format!(
            "soak: {answered} tells and {compactions} compactions answered in the database, \
             expected {tells} and {want_compactions}"
        )
        .into());
    }

    // Bounded: the WAL never passed its bound; RSS and descriptors stopped growing after the
    // first blocks (every pair's agent started, the caches full).
    let wal_max = wal_max.load(Ordering::Relaxed);
    if wal_max > WAL_BOUND_BYTES {
        return Err(format!(
            "soak: the WAL reached {wal_max} bytes, over its bound of {WAL_BOUND_BYTES}"
        )
        .into());
    }
    if samples.len() >= 3 {
        let warm = &samples[..2];
        let base_rss = warm.iter().map(|s| s.rss_mb).fold(0.0, f64::max);
        let base_fds = warm.iter().map(|s| s.fds).max().unwrap_or(0);
        let last = &samples[samples.len() - 1];
        if last.rss_mb > base_rss * 1.2 + 4.0 {
            return Err(format!(
                "soak: RSS grew from {base_rss:.1} MB to {:.1} MB",
                last.rss_mb
            )
            .into());
        }
        if last.fds > base_fds + 16 {
            return Err(format!(
                "soak: open descriptors grew from {base_fds} to {}",
                last.fds
            )
            .into());
        }
    }
    println!(
        "soak_done tells={tells} compactions={compactions} secs={:.1} tells_per_s={:.0} \
         wal_max_mb={:.2} spawned={}",
        wall.as_secs_f64(),
        tells as f64 / wall.as_secs_f64(),
        wal_max as f64 / 1048576.0,
        router.counters().spawned.load(Ordering::Relaxed)
    );
    Ok(())
}
