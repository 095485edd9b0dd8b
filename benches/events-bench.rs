//! `events-bench`: does a subscriber that never reads slow tells down? (issue 10: "a slow
//! subscriber never blocks an agent").
//!
//! `cargo build --release --locked --example switchboard-test-agent`, then
//! `cargo bench --locked --bench events-bench -- [--quick]` (a `[[bench]]` target with
//! `harness = false`: neither installed nor run by `cargo test`).
//!
//! Pairs run by the scripted test agent (`switchboard-test-agent`, which answers at once,
//! echoing the message), one per phase (the store's per-pair queries read every tell of the
//! pair: a phase on a pair with thousands of earlier tells would measure that instead),
//! driven by the in-process router, with the server listening
//! in-process on a loopback port. Each tell carries a 2 KiB message, so its events (queued,
//! delivered, the agent's 2 KiB text, usage, answered) add up to several KiB per tell: a
//! client that never reads fills its socket buffers within a few dozen tells. Tell overhead
//! (submit to answered, one tell at a time) is timed in four phases:
//!
//! - `tell_0_subscribers`: nobody listens;
//! - `tell_10_bus_receivers`: 10 receivers of the bus (`EventBus::subscribe`) that never read;
//! - `tell_10_sse_clients`: 10 clients of `GET /events` that never read their socket;
//! - `tell_10_bus_and_10_sse`: both at once.
//!
//! The baseline phase runs first, last and between the others (the database grows during the
//! run, and the machine's load changes). Each phase prints
//! `op=<phase> n=<count> tells_per_s=<..> p50_us=<..> p99_us=<..>`; each other phase then
//! `ratio=<phase> <its p50 / the mean p50 of the baselines just before and after>`. Context
//! goes to stderr (`#` lines).

// The allocator of the process the bench stands in for (src/alloc.rs).
switchboard::use_jemalloc!();

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard::router::{Router, Wait};
use switchboard::server::serve::{self, ServeOptions, Transport};
use switchboard::signals::Signals;
use switchboard::store::{TellKind, TellState};
use switchboard::{SessionManager, TeamsConfig};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The scripted agent's example target; cargo puts it in `target/<profile>/examples/`.
const AGENT_BIN: &str = "switchboard-test-agent";
/// Untimed tells before each phase.
const WARMUP: usize = 20;
/// The phases, in order; each has a pair of its own (`bench-a` -> `bench-b<i>`).
const PHASES: [&str; 7] = [
    "tell_0_subscribers",
    "tell_10_bus_receivers",
    "tell_0_subscribers",
    "tell_10_sse_clients",
    "tell_0_subscribers",
    "tell_10_bus_and_10_sse",
    "tell_0_subscribers",
];
/// The token of the in-process server.
const TOKEN: &str = "events-bench-token-0123456789";

fn main() -> ExitCode {
    // `cargo test --all-targets` runs benches without `--bench`: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    match run(if quick { 100 } else { 1000 }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("events-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the scripted agent is: `target/<profile>/examples/`, beside the `deps/` folder that
/// holds this bench binary.
fn agent_path() -> BenchResult<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| format!("{} is not in <target>/<profile>/deps/", exe.display()))?;
    let agent = profile_dir.join("examples").join(AGENT_BIN);
    if !agent.is_file() {
        return Err(format!(
            "the scripted agent {} is missing; build it first:\n  \
             cargo build --release --locked --example {AGENT_BIN}",
            agent.display()
        )
        .into());
    }
    Ok(agent)
}

fn run(n: usize) -> BenchResult<()> {
    let agent = agent_path()?;
    let dir = tempfile::Builder::new()
        .prefix("switchboard-events-bench-")
        .tempdir()?;
    let root = dir.path();
    for d in ["team", "home"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    let q = |p: PathBuf| serde_json::to_string(&p.display().to_string()).unwrap_or_default();
    let mut text = format!(
        "[settings]\nidle_timeout = \"1h\"\nmax_queued_per_pair = 1000000\n\
         tells_per_minute = 1000000000\n\n[database]\npath = {}\n\n",
        q(root.join("events.db"))
    );
    let teams: Vec<String> = std::iter::once("bench-a".to_string())
        .chain((0..PHASES.len()).map(|i| format!("bench-b{i}")))
        .collect();
    for team in &teams {
        text.push_str(&format!(
            "[teams.{team}]\npath = {}\nagent_path = {}\nenv = {{ HOME = {} }}\n\n",
            q(root.join("team")),
            q(agent.clone()),
            q(root.join("home"))
        ));
    }
    let config = Arc::new(TeamsConfig::parse(&text, None, &|_| None)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let m = SessionManager::open(config)?;
        m.initialize()?;
        let router = Router::new(Arc::new(m));
        let mut options = ServeOptions::new(Transport::Http {
            addr: "127.0.0.1:0".parse()?,
        });
        options.signals = Signals::none();
        options.auth_token = Some(TOKEN.into());
        let server = serve::start(router.clone(), options).await?;
        let addr = server.addr();
        eprintln!("# n={n} tells per phase, 2 KiB messages, server on {addr}");

        let message = "x".repeat(2048);
        // The baseline runs between the other phases (the database grows as the run goes on,
        // and the machine's load changes): each phase is compared with the baselines around it.
        let mut base: Vec<f64> = Vec::new();
        let mut pending: Option<(&str, f64)> = None;
        for (i, phase) in PHASES.into_iter().enumerate() {
            // A pair of its own per phase: the tells of earlier phases do not weigh on it.
            let callee = format!("bench-b{i}");
            let bus = phase.contains("bus");
            let sse = phase.contains("sse");
            // Subscribers that never read, for the whole phase.
            let receivers: Vec<_> = (0..if bus { 10 } else { 0 })
                .map(|_| router.manager().events().subscribe())
                .collect();
            let mut clients = Vec::new();
            for _ in 0..if sse { 10 } else { 0 } {
                let mut s = TcpStream::connect(addr)?;
                write!(
                    s,
                    "GET /events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
                )?;
                clients.push(s);
            }
            for _ in 0..WARMUP {
                tell(&router, &callee, &message).await?;
            }
            let mut times = Vec::with_capacity(n);
            let wall = Instant::now();
            for _ in 0..n {
                let t0 = Instant::now();
                tell(&router, &callee, &message).await?;
                times.push(t0.elapsed());
            }
            let wall = wall.elapsed();
            times.sort();
            let pct = |p: f64| {
                let i = ((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1;
                times[i].as_secs_f64() * 1e6
            };
            let (p50, p99) = (pct(0.50), pct(0.99));
            println!(
                "op={phase} n={n} tells_per_s={:.0} p50_us={p50:.0} p99_us={p99:.0}",
                n as f64 / wall.as_secs_f64()
            );
            if phase == "tell_0_subscribers" {
                if let (Some((name, p)), Some(before)) = (pending.take(), base.last()) {
                    println!("ratio={name} {:.2}", p / ((before + p50) / 2.0));
                }
                base.push(p50);
            } else {
                pending = Some((phase, p50));
            }
            eprintln!(
                "# {phase}: {} events dropped by the bus so far; event streams hold {} connections",
                router.manager().events().dropped(),
                clients.len()
            );
            drop(receivers);
            drop(clients);
        }
        server.shutdown().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

/// One tell, submitted and waited for.
async fn tell(router: &Router, callee: &str, message: &str) -> BenchResult<()> {
    let t = router
        .submit("bench-a", callee, TellKind::Tell, message, None)
        .await?;
    let t = router
        .wait_for(&t.tell_id, Wait::For(Duration::from_secs(60)))
        .await?;
    if t.state != TellState::Answered {
        return Err(format!("tell {} ended {}: {:?}", t.tell_id, t.state, t.error).into());
    }
    Ok(())
}
