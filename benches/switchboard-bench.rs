//! `switchboard-bench`: Switchboard's own cost per operation, each next to a floor.
//!
//! `cargo build --release --locked --example switchboard-test-agent` (part 3 needs it), then
//! `cargo bench --locked --bench switchboard-bench -- [--quick] [--only sessions|orchestration]`
//! (a `[[bench]]` target with `harness = false` and `test = false`: neither installed nor run by
//! `cargo test`).
//!
//! Parts 1 and 2, the session layer (`SessionManager` over the SQLite `SessionStore`) on a
//! file-backed database, next to the store's own statements (`switchboard::store::floor`) run
//! through bare rusqlite on one connection: seeds
//! 9,900 sessions (100 teams, every ordered pair), times each operation individually, then grows
//! the database to 100,172 sessions (317 teams) for `stats` and the start-up reset. Inputs come
//! from a seeded PRNG and are chosen before each timed loop.
//!
//! Part 3, orchestration overhead (`orchestration.rs`): the router with the scripted test agent
//! (`switchboard-test-agent`, in `target/release/examples/`), next to the same agent driven
//! directly through the agent layer (`AgentProcess`).
//!
//! The soak (`soak.rs`, `--only soak`, not in a default run): 10,000 tells over 50 pairs with
//! evictions and compactions; exits non-zero when RSS, descriptors or the WAL grow without bound
//! or a tell is lost or stuck.
//!
//! Each operation prints `op=<name> n=<count> ops_per_s=<..> p50_us=<..> p99_us=<..>`; an
//! operation with a floor (`op=<name>_raw`, `op=spawn_raw`) also prints
//! `ratio=<op> <layer p50 / floor p50>`; the run ends with `peak_rss_mb=<..>` (`VmHWM`).
//! `--quick` divides every operation count by 10 (seed sizes and the 50 pairs stay). Progress and
//! context go to stderr; stdout holds only the result lines. See BENCHMARKS.md.

// The allocator of the process the bench stands in for (src/alloc.rs).
switchboard::use_jemalloc!();

#[path = "switchboard-bench/measure.rs"]
mod measure;
#[path = "switchboard-bench/orchestration.rs"]
mod orchestration;
#[path = "switchboard-bench/raw.rs"]
mod raw;
#[path = "switchboard-bench/setup.rs"]
mod setup;
#[path = "switchboard-bench/soak.rs"]
mod soak;

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use switchboard::session::SessionManager;
use switchboard::store::{floor, DueQuery, ListFilter, ProcessState};
use switchboard::util::{now_ms, ProcessIdentity};
use switchboard::TeamsConfig;

use measure::{nanos, print_ratio, time_ops, BenchResult, Measurement, Rng};
use raw::Raw;
use setup::{team_name, Scratch};

/// Teams of the session mix: 100 teams, 9,900 ordered pairs.
const MIX_TEAMS: usize = 100;
/// Teams of the large database: 317 × 316 = 100,172 ordered pairs.
const LARGE_TEAMS: usize = 317;
/// Worker threads of the concurrent phase.
const THREADS: usize = 8;
/// Seed of the PRNG that picks every input.
const SEED: u64 = 0x5717_C4B0_A4D5_0005;

fn main() -> ExitCode {
    // The process settings of the `switchboard` binary (its `main` does the same).
    switchboard::util::cap_malloc_arenas();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Operation counts: the full count, or a tenth with `--quick`.
#[derive(Clone, Copy)]
struct Counts {
    div: usize,
}

impl Counts {
    fn n(self, full: usize) -> usize {
        (full / self.div).max(1)
    }
}

/// What every phase needs: the teams, the pairs and their session ids (same index).
struct World {
    teams: Vec<String>,
    /// (from, to) team indices, in creation order.
    pairs: Vec<(usize, usize)>,
    /// Session id of `pairs[i]`.
    ids: Vec<String>,
}

impl World {
    fn pair(&self, i: u32) -> (&str, &str) {
        let (f, t) = self.pairs[i as usize];
        (&self.teams[f], &self.teams[t])
    }

    fn id(&self, i: u32) -> &str {
        &self.ids[i as usize]
    }
}

fn run() -> BenchResult<()> {
    const USAGE: &str =
        "usage: cargo bench --bench switchboard-bench -- [--quick] [--only sessions|orchestration|soak] [--per-pair N]   (see BENCHMARKS.md)";
    // `cargo bench` passes `--bench`; `cargo test --all-targets` (or `--benches`) runs this
    // target without it, as a test: then there is nothing to do (a run takes minutes).
    if !std::env::args().skip(1).any(|a| a == "--bench") {
        eprintln!("switchboard-bench: not run as a test; run it with `cargo bench --bench switchboard-bench` (BENCHMARKS.md)");
        return Ok(());
    }
    let mut quick = false;
    // Tells per pair of the 50-pair phases (None: 1,000 / 50, or a tenth of it with --quick).
    let mut per_pair: Option<usize> = None;
    let (mut sessions, mut orchestration, mut soak) = (true, true, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            // `cargo bench` passes `--bench` to a bench target without the libtest harness.
            "--bench" => {}
            "--only" => match args.next().as_deref() {
                Some("sessions") => orchestration = false,
                Some("orchestration") => sessions = false,
                Some("soak") => {
                    (sessions, orchestration, soak) = (false, false, true);
                }
                other => {
                    return Err(format!(
                        "--only takes sessions, orchestration or soak, not {}; {USAGE}",
                        other.map_or("nothing".to_string(), |o| format!("{o:?}"))
                    )
                    .into())
                }
            },
            "--per-pair" => {
                let n = args.next();
                match n.as_deref().map(str::parse::<usize>) {
                    Some(Ok(n @ 1..=10_000)) => per_pair = Some(n),
                    _ => {
                        return Err(format!(
                            "--per-pair takes a number of tells from 1 to 10000, not {}; {USAGE}",
                            n.map_or("nothing".to_string(), |n| format!("{n:?}"))
                        )
                        .into())
                    }
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; {USAGE}").into()),
        }
    }
    let counts = Counts {
        div: if quick { 10 } else { 1 },
    };
    // Part 3 needs the scripted agent: fail before the long session phases if it is missing.
    if orchestration || soak {
        orchestration::agent_path()?;
    }
    let scratch = Scratch::new()?;
    eprintln!(
        "# switchboard-bench{}: scratch folder {}",
        if quick { " --quick" } else { "" },
        scratch.path().display()
    );
    eprintln!(
        "# timer floor (one Instant::now per op, loop included): p50 {:.0} ns",
        measure::timer_floor_ns()
    );
    eprintln!("# load average at start: {}", measure::loadavg());
    if orchestration && sessions {
        // Part 3 runs in a child process of its own, so that neither part sees the other's
        // memory: the agents are spawned by fork(), whose cost grows with the forking process's
        // memory, and the session mix has an RSS target.
        let exe = std::env::current_exe()?;
        let mut child = std::process::Command::new(&exe);
        child.args(["--bench", "--only", "orchestration"]);
        if quick {
            child.arg("--quick");
        }
        if let Some(n) = per_pair {
            child.args(["--per-pair", &n.to_string()]);
        }
        let status = child
            .status()
            .map_err(|e| format!("cannot run {} for part 3: {e}", exe.display()))?;
        if !status.success() {
            return Err(format!("part 3 (orchestration) failed: {status}").into());
        }
    } else if orchestration {
        setup::start_peak_window();
        orchestration::run(
            scratch.path(),
            orchestration::Counts {
                tells: counts.n(1_000),
                spawns: counts.n(50),
                per_pair: per_pair.unwrap_or(counts.n(1_000) / 50),
            },
        )?;
        println!(
            "peak_rss_mb_orchestration={:.1}",
            setup::peak_rss_mb_window().unwrap_or(f64::NAN)
        );
    }
    if soak {
        soak::run(scratch.path(), counts.n(10_000))?;
    }
    if sessions {
        session_parts(scratch.path(), counts)?;
    }
    eprintln!("# load average at end: {}", measure::loadavg());
    if sessions {
        println!(
            "peak_rss_mb={:.1}",
            setup::peak_rss_mb().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

/// Parts 1 and 2: the session layer and its raw floor, at 9,900 and then 100,172 sessions.
fn session_parts(scratch: &Path, counts: Counts) -> BenchResult<()> {
    let team_dir = scratch.join("team");
    std::fs::create_dir_all(&team_dir)?;
    let db = scratch.join("bench.db");
    eprintln!("# parts 1 and 2: database {}", db.display());
    let mut rng = Rng::new(SEED);
    let dead = setup::dead_identity()?;
    eprintln!("# dead owner pid {} (a reaped child)", dead.pid);

    let config = setup::config(MIX_TEAMS, &team_dir, &db)?;
    let mgr = SessionManager::open(Arc::clone(&config))?;
    mgr.initialize()?;
    let world = seed(&mgr, &mut rng)?;
    let raw = Raw::open(&db)?;
    self_check(&mgr, &raw, &world)?;
    eprintln!(
        "# rss after seed {:.1} MB",
        setup::rss_mb().unwrap_or(f64::NAN)
    );

    session_mix(&mgr, &raw, &world, &mut rng, counts, dead)?;
    println!(
        "peak_rss_mb_session_mix_1t={:.1}",
        setup::peak_rss_mb().unwrap_or(f64::NAN)
    );
    concurrent(&mgr, &raw, &world, &mut rng, counts)?;
    drop(mgr);
    println!(
        "peak_rss_mb_session_mix={:.1}",
        setup::peak_rss_mb().unwrap_or(f64::NAN)
    );

    large(&raw, &team_dir, &db, counts, dead)?;
    drop(raw);
    Ok(())
}

/// Creates the 9,900 sessions of the mix through `get_or_create`, in random order (timed).
fn seed(mgr: &SessionManager, rng: &mut Rng) -> BenchResult<World> {
    let teams: Vec<String> = (0..MIX_TEAMS).map(team_name).collect();
    let mut pairs: Vec<(usize, usize)> = (0..MIX_TEAMS)
        .flat_map(|f| (0..MIX_TEAMS).filter(move |&t| t != f).map(move |t| (f, t)))
        .collect();
    rng.shuffle(&mut pairs);
    let mut ids = Vec::with_capacity(pairs.len());
    let m = time_ops("seed", pairs.len(), |i| {
        let (f, t) = pairs[i];
        let s = mgr.get_or_create(&teams[f], &teams[t])?;
        ids.push(s.session_id.clone());
        Ok(())
    })?;
    m.print();
    Ok(World { teams, pairs, ids })
}

/// The raw copies of the store's SQL must read the same rows as the store: compares a few.
fn self_check(mgr: &SessionManager, raw: &Raw, w: &World) -> BenchResult<()> {
    for id in w.ids.iter().step_by(997) {
        let layer = mgr.get_by_id(id)?;
        let floor = raw.get_by_id(id)?;
        if layer != floor {
            return Err(format!(
                "the raw SQL disagrees with the store on {id} (was src/store/sessions.rs \
                 changed? update benches/switchboard-bench/raw.rs):\n store {layer:?}\n raw   {floor:?}"
            )
            .into());
        }
    }
    Ok(())
}

/// Before a timed loop: reports the WAL the step `after` left when it is large (before the
/// store stepped its writes to completion, they never ran SQLite's automatic checkpoint; see
/// BENCHMARKS.md), then checkpoints and truncates it, untimed, so every loop starts from an
/// empty WAL and pays only for its own writes and the checkpoints they trigger.
fn fresh_wal(raw: &Raw, after: &str) -> BenchResult<()> {
    let bytes = raw.wal_bytes();
    let (busy, _, _) = raw.checkpoint()?;
    if bytes > 8 << 20 || busy != 0 {
        eprintln!(
            "# WAL after {after}: {:.1} MB{}",
            bytes as f64 / 1048576.0,
            if busy != 0 { " (checkpoint busy)" } else { "" }
        );
    }
    Ok(())
}

/// Prints a layer measurement, its raw floor, and their p50 ratio.
fn compare(op: &str, layer: Measurement, raw: Measurement) {
    layer.print();
    raw.print();
    print_ratio(op, layer.into_summary(), raw.into_summary());
}

/// Times `op(i)` only; `prepare(i)` runs before it, untimed. The wall time is the sum of the
/// timed parts.
fn time_ops_prepared(
    name: &str,
    n: usize,
    mut prepare: impl FnMut(usize) -> BenchResult<()>,
    mut op: impl FnMut(usize) -> BenchResult<()>,
) -> BenchResult<Measurement> {
    let mut samples = Vec::with_capacity(n);
    let mut wall = Duration::ZERO;
    let mut cpu = Duration::ZERO;
    for i in 0..n {
        prepare(i).map_err(|e| format!("{name} set-up (#{i}): {e}"))?;
        let c0 = measure::thread_cpu();
        let t0 = Instant::now();
        op(i).map_err(|e| format!("{name} (op #{i}): {e}"))?;
        let d = t0.elapsed();
        cpu += measure::thread_cpu().saturating_sub(c0);
        wall += d;
        samples.push(nanos(d));
    }
    let mut m = Measurement::new(name, wall, samples);
    m.cpu = Some(cpu);
    Ok(m)
}

fn found<T>(x: Option<T>, what: &str) -> BenchResult<T> {
    x.ok_or_else(|| format!("{what} not found").into())
}

/// The single-thread session mix at 9,900 sessions, each op next to its raw floor.
fn session_mix(
    mgr: &SessionManager,
    raw: &Raw,
    w: &World,
    rng: &mut Rng,
    c: Counts,
    dead: ProcessIdentity,
) -> BenchResult<()> {
    let n_pairs = w.pairs.len();

    // Hot pairs: 100 distinct pairs, read through the cache.
    let mut order: Vec<u32> = (0..n_pairs as u32).collect();
    rng.shuffle(&mut order);
    let hot: Vec<(&str, &str)> = order[..100].iter().map(|&p| w.pair(p)).collect();
    let picks: Vec<u8> = (0..c.n(1_000_000)).map(|_| rng.below(100) as u8).collect();
    for &(f, t) in &hot {
        found(mgr.get(f, t)?, "hot pair")?;
    }
    fresh_wal(raw, "seed")?;
    let m = time_ops("get_pair_hot", picks.len(), |i| {
        let (f, t) = hot[picks[i] as usize];
        if mgr.get(f, t)?.is_none() {
            return Err("hot pair not found".into());
        }
        Ok(())
    })?;
    m.print();
    drop(m);
    // The same loop without per-op clock reads, for the mean cost of a hit alone.
    let t0 = Instant::now();
    for &p in &picks {
        let (f, t) = hot[p as usize];
        if mgr.get(f, t)?.is_none() {
            return Err("hot pair not found".into());
        }
    }
    eprintln!(
        "# get_pair_hot without per-op timing: mean {:.0} ns/op",
        t0.elapsed().as_nanos() as f64 / picks.len() as f64
    );
    drop(picks);

    let idx = rng.indices(c.n(100_000), n_pairs);
    fresh_wal(raw, "get_pair_hot")?;
    let layer = time_ops("get_by_id", idx.len(), |i| {
        found(mgr.get_by_id(w.id(idx[i]))?, "session").map(drop)
    })?;
    fresh_wal(raw, "get_by_id")?;
    let floor = time_ops("get_by_id_raw", idx.len(), |i| {
        found(raw.get_by_id(w.id(idx[i]))?, "session").map(drop)
    })?;
    compare("get_by_id", layer, floor);

    let idx = rng.indices(c.n(100_000), n_pairs);
    fresh_wal(raw, "get_by_id_raw")?;
    let bg = measure::background_cpu();
    let layer = time_ops("incr_msg", idx.len(), |i| {
        mgr.increment_message_count(w.id(idx[i]), 1)?;
        Ok(())
    })?;
    measure::print_background("incr_msg", idx.len(), bg);
    fresh_wal(raw, "incr_msg")?;
    let floor = time_ops("incr_msg_raw", idx.len(), |i| {
        raw.incr_msg(w.id(idx[i]), 1, now_ms())?;
        Ok(())
    })?;
    compare("incr_msg", layer, floor);
    // The floor's increments wait in the pending table; fold them (untimed) as the store's
    // thread would, so the next phases start from the same state as the store's.
    let t0 = Instant::now();
    let folded = raw.fold(floor::FOLD_CHUNK)?;
    let fold_ms = t0.elapsed().as_secs_f64() * 1000.0;
    eprintln!(
        "# fold: {folded} sessions in {fold_ms:.1} ms ({:.2} us a session)",
        fold_ms * 1000.0 / folded.max(1) as f64
    );

    let idx = rng.indices(c.n(100_000), n_pairs);
    let state = |i: usize| {
        if i.is_multiple_of(2) {
            ProcessState::Idle
        } else {
            ProcessState::Processing
        }
    };
    fresh_wal(raw, "incr_msg_raw")?;
    let bg = measure::background_cpu();
    let layer = time_ops("set_proc_state", idx.len(), |i| {
        mgr.update_process_state(w.id(idx[i]), state(i))?;
        Ok(())
    })?;
    measure::print_background("set_proc_state", idx.len(), bg);
    eprintln!(
        "# set_proc_state: {} events dropped by the bus so far",
        mgr.events().dropped()
    );
    fresh_wal(raw, "set_proc_state")?;
    let floor = time_ops("set_proc_state_raw", idx.len(), |i| {
        raw.set_proc_state(w.id(idx[i]), state(i))?;
        Ok(())
    })?;
    compare("set_proc_state", layer, floor);

    // WAL pages per single-row commit (the store's statements, on the raw connection: the
    // layer runs the same ones and writes nothing else).
    let idx = rng.indices(200, n_pairs);
    let incr = raw.pages_per_commit(idx.len(), |i| {
        raw.incr_msg(w.id(idx[i]), 1, now_ms())?;
        Ok(())
    })?;
    let set = raw.pages_per_commit(idx.len(), |i| {
        raw.set_proc_state(w.id(idx[i]), state(i))?;
        Ok(())
    })?;
    println!("pages_per_commit=incr_msg {incr:.2}");
    println!("pages_per_commit=set_proc_state {set:.2}");
    // The fold's share: the store folds after FOLD_WRITES writes (or a second); its
    // transactions write each folded session's row, its index entries and the totals once.
    let idx = rng.indices(floor::FOLD_WRITES as usize, n_pairs);
    let with_fold = raw.pages_per_commit(idx.len(), |i| {
        raw.incr_msg(w.id(idx[i]), 1, now_ms())?;
        if i + 1 == idx.len() {
            raw.fold(floor::FOLD_CHUNK)?;
        }
        Ok(())
    })?;
    println!("pages_per_commit=incr_msg_with_fold {with_fold:.2}");

    let filters: Vec<ListFilter> = w
        .teams
        .iter()
        .map(|t| ListFilter {
            to_team: Some(t.clone()),
            limit: Some(50),
            ..ListFilter::default()
        })
        .collect();
    let idx = rng.indices(c.n(10_000), w.teams.len());
    fresh_wal(raw, "set_proc_state_raw")?;
    let layer = time_ops("list_to_team", idx.len(), |i| {
        let rows = mgr.list(&filters[idx[i] as usize])?;
        if rows.len() != 50 {
            return Err(format!("list returned {} rows, expected 50", rows.len()).into());
        }
        Ok(())
    })?;
    fresh_wal(raw, "list_to_team")?;
    let floor = time_ops("list_to_team_raw", idx.len(), |i| {
        let rows = raw.list_to_team(&w.teams[idx[i] as usize])?;
        if rows.len() != 50 {
            return Err(format!("list returned {} rows, expected 50", rows.len()).into());
        }
        Ok(())
    })?;
    compare("list_to_team", layer, floor);

    stats_pair("stats", mgr, raw, c.n(1_000))?;

    let half: Vec<&str> = w.ids.iter().step_by(2).map(String::as_str).collect();
    reset_pair("reset_on_start", mgr, raw, &half, c.n(10), dead, false)?;

    // Existing pairs with a warm cache: the steady state of a pair in use. The writes above
    // invalidated most entries, so one untimed pass loads them again first.
    for p in 0..n_pairs as u32 {
        let (f, t) = w.pair(p);
        mgr.get_or_create(f, t)?;
    }
    let idx = rng.indices(c.n(100_000), n_pairs);
    fresh_wal(raw, "reset_on_start_raw")?;
    let layer = time_ops("get_or_create_existing", idx.len(), |i| {
        let (f, t) = w.pair(idx[i]);
        mgr.get_or_create(f, t)?;
        Ok(())
    })?;
    fresh_wal(raw, "get_or_create_existing")?;
    let floor = time_ops("get_or_create_existing_raw", idx.len(), |i| {
        let (f, t) = w.pair(idx[i]);
        found(raw.get_by_pair(f, t)?, "pair").map(drop)
    })?;
    compare("get_or_create_existing", layer, floor);

    // The first get_or_create after a write to the pair (a tell updates its session): the write
    // invalidated the cache entry, so this is a cache miss that reads SQLite.
    let idx = rng.indices(c.n(10_000), n_pairs);
    fresh_wal(raw, "get_or_create_existing_raw")?;
    let m = time_ops_prepared(
        "get_or_create_after_write",
        idx.len(),
        |i| {
            mgr.increment_message_count(w.id(idx[i]), 1)?;
            Ok(())
        },
        |i| {
            let (f, t) = w.pair(idx[i]);
            mgr.get_or_create(f, t)?;
            Ok(())
        },
    )?;
    m.print();
    Ok(())
}

/// `stats()` through the manager and its queries through the raw connection.
fn stats_pair(name: &str, mgr: &SessionManager, raw: &Raw, n: usize) -> BenchResult<()> {
    let policy = mgr.config().settings.compaction.clone();
    let max = i64::try_from(policy.max_messages)?;
    let stale = i64::try_from(policy.stale_messages)?;
    let age = i64::try_from(policy.stale_age.as_millis())?;
    fresh_wal(raw, &format!("the step before {name}"))?;
    let layer = time_ops(name, n, |_| {
        mgr.stats()?;
        Ok(())
    })?;
    fresh_wal(raw, name)?;
    let floor = time_ops(&format!("{name}_raw"), n, |_| {
        raw.stats(DueQuery {
            max_messages: max,
            stale_messages: stale,
            stale_before: now_ms() - age,
        })?;
        Ok(())
    })?;
    compare(name, layer, floor);
    Ok(())
}

/// Start-up reset: half of the sessions are left `processing` by a dead owner, then ONE
/// `initialize()` is timed; `reps` times, alternating with the raw `reset_orphaned` statements.
/// `bulk` marks the sessions in one raw transaction (the same UPDATE as `force_owner`) instead of
/// one `force_owner` call each.
fn reset_pair(
    name: &str,
    mgr: &SessionManager,
    raw: &Raw,
    half: &[&str],
    reps: usize,
    dead: ProcessIdentity,
    bulk: bool,
) -> BenchResult<()> {
    let mark = |raw: &Raw| -> BenchResult<Duration> {
        fresh_wal(raw, "the previous reset")?;
        let t0 = Instant::now();
        if bulk {
            raw.force_owner_many(half, ProcessState::Processing, dead, now_ms())?;
        } else {
            for id in half {
                mgr.store()
                    .force_owner(id, ProcessState::Processing, Some(dead), now_ms())?;
            }
        }
        let took = t0.elapsed();
        fresh_wal(raw, "marking")?;
        Ok(took)
    };
    // Start clean: sessions left in a live state by earlier phases (with no owner) are reset by
    // this untimed call, so each timed call resets exactly the marked half.
    mgr.initialize()?;
    let mut layer = Vec::with_capacity(reps);
    let mut floor = Vec::with_capacity(reps);
    let (mut layer_wall, mut floor_wall) = (Duration::ZERO, Duration::ZERO);
    let (mut layer_cpu, mut floor_cpu) = (Duration::ZERO, Duration::ZERO);
    let mut marking = Duration::ZERO;
    for _ in 0..reps {
        marking += mark(raw)?;
        let c0 = measure::thread_cpu();
        let t0 = Instant::now();
        let report = mgr.initialize()?;
        let d = t0.elapsed();
        layer_cpu += measure::thread_cpu().saturating_sub(c0);
        if report.reset != half.len() {
            return Err(format!("{name}: reset {} of {}", report.reset, half.len()).into());
        }
        layer_wall += d;
        layer.push(nanos(d));

        marking += mark(raw)?;
        let c0 = measure::thread_cpu();
        let t0 = Instant::now();
        let (reset, orphan_agents) = raw.reset_orphaned()?;
        let d = t0.elapsed();
        floor_cpu += measure::thread_cpu().saturating_sub(c0);
        if reset != half.len() || orphan_agents != 0 {
            return Err(format!(
                "{name}_raw: reset {reset} of {}, {orphan_agents} orphan agents",
                half.len()
            )
            .into());
        }
        floor_wall += d;
        floor.push(nanos(d));
    }
    let fmt = |v: &[u32]| {
        v.iter()
            .map(|ns| format!("{:.2}", f64::from(*ns) / 1e6))
            .collect::<Vec<_>>()
            .join(" ")
    };
    eprintln!(
        "# {name}: {} sessions marked processing by dead pid {} before each call ({}, {:.0} ms per marking)",
        half.len(),
        dead.pid,
        if bulk { "one transaction" } else { "one force_owner each" },
        marking.as_secs_f64() * 1000.0 / (2 * reps) as f64
    );
    eprintln!("# {name} each (ms): {}", fmt(&layer));
    eprintln!("# {name}_raw each (ms): {}", fmt(&floor));
    let mut layer = Measurement::new(name, layer_wall, layer);
    layer.cpu = Some(layer_cpu);
    let mut floor = Measurement::new(format!("{name}_raw"), floor_wall, floor);
    floor.cpu = Some(floor_cpu);
    compare(name, layer, floor);
    Ok(())
}

/// One operation of a worker thread.
#[derive(Clone, Copy)]
enum Op {
    /// `get_or_create` on an existing pair.
    Get(u32),
    /// `increment_message_count(.., 1)`.
    Incr(u32),
}

/// Latencies of the gets and the increments of one concurrent run, and its wall time.
struct ThreadRun {
    wall: Duration,
    gets: Vec<u32>,
    incrs: Vec<u32>,
}

/// Runs one plan per thread, all released at once; two clock reads per op. The wall time runs
/// from the first thread's start to the last thread's end (each thread reads the clock itself:
/// the releasing thread may be descheduled while the workers run).
fn run_threads(mgr: &SessionManager, w: &World, plans: Vec<Vec<Op>>) -> BenchResult<ThreadRun> {
    let barrier = Barrier::new(plans.len() + 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .into_iter()
            .map(|plan| {
                let barrier = &barrier;
                scope.spawn(
                    move || -> BenchResult<(Vec<u32>, Vec<u32>, Instant, Instant)> {
                        let n_gets = plan.iter().filter(|op| matches!(op, Op::Get(_))).count();
                        let mut gets = Vec::with_capacity(n_gets);
                        let mut incrs = Vec::with_capacity(plan.len() - n_gets);
                        barrier.wait();
                        let started = Instant::now();
                        for op in plan {
                            let t0 = Instant::now();
                            match op {
                                Op::Get(p) => {
                                    let (f, t) = w.pair(p);
                                    mgr.get_or_create(f, t)?;
                                    gets.push(nanos(t0.elapsed()));
                                }
                                Op::Incr(p) => {
                                    mgr.increment_message_count(w.id(p), 1)?;
                                    incrs.push(nanos(t0.elapsed()));
                                }
                            }
                        }
                        Ok((gets, incrs, started, Instant::now()))
                    },
                )
            })
            .collect();
        barrier.wait();
        let mut run = ThreadRun {
            wall: Duration::ZERO,
            gets: Vec::new(),
            incrs: Vec::new(),
        };
        let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
        for h in handles {
            let (g, i, started, ended) = h.join().map_err(|_| "a worker thread panicked")??;
            run.gets.extend(g);
            run.incrs.extend(i);
            first = Some(first.map_or(started, |f| f.min(started)));
            last = Some(last.map_or(ended, |l| l.max(ended)));
        }
        run.wall = last.zip(first).map_or(Duration::ZERO, |(l, f)| l - f);
        Ok(run)
    })
}

/// 8 threads: get_or_create on existing pairs, increment_message_count, each alone and both at
/// once (every thread interleaves both in random order).
fn concurrent(
    mgr: &SessionManager,
    raw: &Raw,
    w: &World,
    rng: &mut Rng,
    c: Counts,
) -> BenchResult<()> {
    let n_pairs = w.pairs.len();
    let per_thread = c.n(100_000) / THREADS;
    let warm = || -> BenchResult<()> {
        for p in 0..n_pairs as u32 {
            let (f, t) = w.pair(p);
            mgr.get_or_create(f, t)?;
        }
        Ok(())
    };

    warm()?;
    let plans: Vec<Vec<Op>> = (0..THREADS)
        .map(|_| {
            (0..per_thread)
                .map(|_| Op::Get(rng.below(n_pairs) as u32))
                .collect()
        })
        .collect();
    fresh_wal(raw, "get_or_create_after_write")?;
    let r = run_threads(mgr, w, plans)?;
    Measurement::new("get_or_create_existing_8t_alone", r.wall, r.gets).print();

    let plans: Vec<Vec<Op>> = (0..THREADS)
        .map(|_| {
            (0..per_thread)
                .map(|_| Op::Incr(rng.below(n_pairs) as u32))
                .collect()
        })
        .collect();
    fresh_wal(raw, "get_or_create_existing_8t_alone")?;
    let r = run_threads(mgr, w, plans)?;
    Measurement::new("incr_msg_8t_alone", r.wall, r.incrs).print();

    warm()?;
    let plans: Vec<Vec<Op>> = (0..THREADS)
        .map(|_| {
            let mut plan: Vec<Op> = (0..per_thread)
                .flat_map(|_| {
                    [
                        Op::Get(rng.below(n_pairs) as u32),
                        Op::Incr(rng.below(n_pairs) as u32),
                    ]
                })
                .collect();
            rng.shuffle(&mut plan);
            plan
        })
        .collect();
    fresh_wal(raw, "incr_msg_8t_alone")?;
    let r = run_threads(mgr, w, plans)?;
    let all: Vec<u32> = r.gets.iter().chain(&r.incrs).copied().collect();
    Measurement::new("mixed_8t", r.wall, all).print();
    Measurement::new("get_or_create_existing_8t", r.wall, r.gets).print();
    Measurement::new("incr_msg_8t", r.wall, r.incrs).print();
    Ok(())
}

/// Grows the database to 100,172 sessions (317 teams) and times stats and the start-up reset.
fn large(
    raw: &Raw,
    team_dir: &Path,
    db: &Path,
    c: Counts,
    dead: ProcessIdentity,
) -> BenchResult<()> {
    let teams: Vec<String> = (0..LARGE_TEAMS).map(team_name).collect();
    // The pairs are made as they are inserted: a list of 90,272 pairs of names would be
    // 10 MB of the bench's own, counted in the session bench's peak RSS.
    let extra = (0..LARGE_TEAMS)
        .flat_map(|f| (0..LARGE_TEAMS).map(move |t| (f, t)))
        .filter(|&(f, t)| f != t && !(f < MIX_TEAMS && t < MIX_TEAMS))
        .map(|(f, t)| (teams[f].as_str(), teams[t].as_str()));
    let t0 = Instant::now();
    let inserted = raw.insert_many(extra, now_ms())?;
    eprintln!(
        "# large: inserted {inserted} more sessions in one transaction in {:.0} ms",
        t0.elapsed().as_secs_f64() * 1000.0
    );
    let config: Arc<TeamsConfig> = setup::config(LARGE_TEAMS, team_dir, db)?;
    let mgr = SessionManager::open(config)?;
    // Only the half that each repetition marks is kept (3.6 MB instead of 7.2 MB of ids).
    let (total, half) = raw.every_other_session_id()?;
    eprintln!("# large: {total} sessions");
    stats_pair("stats_100k", &mgr, raw, c.n(1_000))?;
    let half: Vec<&str> = half.iter().map(String::as_str).collect();
    reset_pair("reset_on_start_100k", &mgr, raw, &half, c.n(5), dead, true)?;
    Ok(())
}
