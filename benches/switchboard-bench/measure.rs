//! Timing helpers: a seeded PRNG (splitmix64), per-op timing into preallocated `u32` nanosecond
//! buffers, nearest-rank percentiles and the one-line report format.

use std::path::Path;
use std::time::{Duration, Instant};

/// Errors of the benchmark: anything that can fail, with a message.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;
/// Result of the benchmark's steps.
pub type BenchResult<T> = Result<T, BenchError>;

/// splitmix64: tiny, fast, and good enough to pick benchmark inputs reproducibly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform index in `0..n` (multiply-shift; `n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// `n` indices in `0..bound`, as `u32`.
    pub fn indices(&mut self, n: usize, bound: usize) -> Vec<u32> {
        (0..n).map(|_| self.below(bound) as u32).collect()
    }

    /// Shuffles `v` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// One measured operation: how many, how long in all, and each op's latency.
#[derive(Debug)]
pub struct Measurement {
    /// Operation name as printed (`op=<name>`).
    pub name: String,
    /// Number of operations.
    pub n: usize,
    /// Wall-clock time of the whole loop (or the sum of the timed parts).
    pub wall: Duration,
    /// CPU time this thread spent in the loop (user + system), when measured.
    pub cpu: Option<Duration>,
    /// Latencies in nanoseconds, sorted.
    sorted: Vec<u32>,
}

impl Measurement {
    /// A measurement from raw latencies (sorted here, in place: no copy).
    pub fn new(name: impl Into<String>, wall: Duration, mut nanos: Vec<u32>) -> Self {
        nanos.sort_unstable();
        Self {
            name: name.into(),
            n: nanos.len(),
            wall,
            cpu: None,
            sorted: nanos,
        }
    }

    /// Nearest-rank percentile `p` (0 < p ≤ 1) in microseconds.
    pub fn percentile_us(&self, p: f64) -> f64 {
        if self.sorted.is_empty() {
            return 0.0;
        }
        let rank = ((self.sorted.len() as f64 * p).ceil() as usize).max(1);
        f64::from(self.sorted[rank.min(self.sorted.len()) - 1]) / 1000.0
    }

    /// Median in microseconds.
    pub fn p50_us(&self) -> f64 {
        self.percentile_us(0.50)
    }

    /// 99th percentile in microseconds.
    pub fn p99_us(&self) -> f64 {
        self.percentile_us(0.99)
    }

    /// Operations per second over the wall time.
    pub fn ops_per_s(&self) -> f64 {
        let secs = self.wall.as_secs_f64();
        if secs > 0.0 {
            self.n as f64 / secs
        } else {
            0.0
        }
    }

    /// Prints `op=<name> n=<count> ops_per_s=<..> p50_us=<..> p99_us=<..>`.
    pub fn print(&self) {
        println!(
            "op={} n={} ops_per_s={:.0} p50_us={:.3} p99_us={:.3}",
            self.name,
            self.n,
            self.ops_per_s(),
            self.p50_us(),
            self.p99_us()
        );
        if let Some(cpu) = self.cpu {
            // Context for a shared machine: wall time well above CPU time means the thread
            // waited (other processes on the cores, or I/O).
            eprintln!(
                "# {}: cpu {:.2} us/op, wall {:.2} us/op",
                self.name,
                cpu.as_secs_f64() * 1e6 / self.n.max(1) as f64,
                self.wall.as_secs_f64() * 1e6 / self.n.max(1) as f64
            );
        }
        crate::setup::rss_phase(&self.name);
    }

    /// Frees the latency buffer (keeps the summary numbers usable: they are computed on demand,
    /// so call this only once the measurement was printed and compared).
    pub fn into_summary(self) -> Summary {
        Summary {
            p50_us: self.p50_us(),
        }
    }
}

/// What is kept of a measurement after its buffer is freed.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Median in microseconds.
    pub p50_us: f64,
}

/// Prints `ratio=<op> <layer p50 / raw p50>`.
pub fn print_ratio(op: &str, layer: Summary, raw: Summary) {
    let ratio = if raw.p50_us > 0.0 {
        layer.p50_us / raw.p50_us
    } else {
        f64::NAN
    };
    println!("ratio={op} {ratio:.2}");
}

/// Nanoseconds of a duration, saturated to `u32` (4.29 s).
pub fn nanos(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

/// Runs `op(i)` for `i` in `0..n`, timing each call. One clock read per op: each sample runs
/// from the end of the previous op to the end of this one, so it includes the loop's own
/// overhead (a push into a preallocated buffer, ~1 ns) and one clock read (~20 ns).
pub fn time_ops(
    name: &str,
    n: usize,
    mut op: impl FnMut(usize) -> BenchResult<()>,
) -> BenchResult<Measurement> {
    let mut samples = Vec::with_capacity(n);
    let cpu0 = thread_cpu();
    let start = Instant::now();
    let mut prev = start;
    for i in 0..n {
        op(i).map_err(|e| format!("{name} (op #{i}): {e}"))?;
        let now = Instant::now();
        samples.push(nanos(now - prev));
        prev = now;
    }
    let cpu = thread_cpu().saturating_sub(cpu0);
    let mut m = Measurement::new(name, prev - start, samples);
    m.cpu = Some(cpu);
    Ok(m)
}

/// CPU time (user + system) of the calling thread so far.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; no other requirement.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// CPU time (user + system) of the whole process so far, every thread included.
pub fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; no other requirement.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// This process's threads now: each one's name (`comm`, which the kernel cuts to 15 bytes) and
/// its `/proc/self/task/TID` folder.
fn own_threads() -> impl Iterator<Item = (String, std::path::PathBuf)> {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .map(|task| {
            let dir = task.path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            (comm.trim_end().to_string(), dir)
        })
}

/// On-CPU time and time spent runnable but waiting for a CPU (the run queue), in ns, from a
/// task's `schedstat`.
fn schedstat(task: &Path) -> (u64, u64) {
    let sched = std::fs::read_to_string(task.join("schedstat")).unwrap_or_default();
    let mut f = sched
        .split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(0));
    (f.next().unwrap_or(0), f.next().unwrap_or(0))
}

/// CPU time of this process's threads named `name` so far, from `schedstat` (nanoseconds on a
/// CPU).
pub fn threads_cpu(name: &str) -> Duration {
    let total = own_threads()
        .filter(|(comm, _)| comm == name)
        .map(|(_, dir)| schedstat(&dir).0)
        .sum();
    Duration::from_nanos(total)
}

/// The groups of [`Breakdown`]: this process's threads by name, then the agents.
const GROUPS: [(&str, &str); 6] = [
    ("sb-store-batch", "batch thread"),
    ("tokio-rt-worker", "runtime threads"),
    ("switchboard-eve", "event writer"),
    ("sb-checkpoint", "checkpointer"),
    ("", "other threads"),
    ("", "agents"),
];

/// Where the CPU of a phase went: (on a CPU, waiting for one) in ns so far, per group of
/// [`GROUPS`]. Threads and agents that end before the next sample are not counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Breakdown([(u64, u64); 6]);

impl Breakdown {
    /// Sums this process's threads and every task of the `agents` processes now.
    pub fn now(agents: &[u32]) -> Self {
        let mut b = Breakdown::default();
        let mut add = |group: usize, task: &Path| {
            let (cpu, wait) = schedstat(task);
            b.0[group].0 += cpu;
            b.0[group].1 += wait;
        };
        for (comm, dir) in own_threads() {
            let group = GROUPS[..4]
                .iter()
                .position(|(name, _)| *name == comm)
                .unwrap_or(4);
            add(group, &dir);
        }
        for pid in agents {
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
            for task in tasks.into_iter().flatten().flatten() {
                add(5, &task.path());
            }
        }
        b
    }

    /// Prints, per op of `name` since `before`, each group's CPU and its wait for a CPU.
    pub fn print_since(&self, before: &Breakdown, name: &str, n: usize) {
        let per_op = |ns: u64| ns as f64 / 1000.0 / n.max(1) as f64;
        let parts: Vec<String> = GROUPS
            .iter()
            .zip(self.0.iter().zip(before.0.iter()))
            .filter(|(_, (now, then))| now.0 > then.0)
            .map(|((_, label), (now, then))| {
                format!(
                    "{label} {:.1} (waited {:.1})",
                    per_op(now.0.saturating_sub(then.0)),
                    per_op(now.1.saturating_sub(then.1))
                )
            })
            .collect();
        eprintln!(
            "# {name}: cpu us/op by thread, and us/op runnable waiting for a cpu: {}",
            parts.join(", ")
        );
    }
}

/// CPU of the store's background threads (the event writer, the checkpointer) so far.
pub fn background_cpu() -> (Duration, Duration) {
    (threads_cpu("switchboard-eve"), threads_cpu("sb-checkpoint"))
}

/// Prints the CPU the background threads spent per op of `name` since `before`.
pub fn print_background(name: &str, n: usize, before: (Duration, Duration)) {
    let (events, checkpoint) = background_cpu();
    let per_op = |d: Duration| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    eprintln!(
        "# {name}: background threads cpu {:.2} us/op (event writer), {:.2} us/op (checkpointer)",
        per_op(events.saturating_sub(before.0)),
        per_op(checkpoint.saturating_sub(before.1))
    );
}

/// `/proc/loadavg` (first three fields), for context on a shared machine.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Median cost of one `Instant::now()` pair as `time_ops` uses it, in nanoseconds: the floor
/// under every sample.
pub fn timer_floor_ns() -> f64 {
    match time_ops("timer", 100_000, |_| Ok(())) {
        Ok(m) => m.p50_us() * 1000.0,
        Err(_) => 0.0,
    }
}
