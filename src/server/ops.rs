//! Operations endpoints of the HTTP server: the bodies of `GET /status` (JSON) and
//! `GET /metrics` (Prometheus text format 0.0.4), and the server's own measurements.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::router::Router;
use crate::util::{now_ms, rfc3339};

/// Upper bounds (seconds) of the tell duration histogram's buckets.
const BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0];

/// What the MCP server measures itself: how long the tells it waited for took, from stored
/// to ended.
#[derive(Debug, Default)]
pub struct Metrics {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ms: AtomicU64,
}

impl Metrics {
    /// Records a tell that took `ms` milliseconds from stored to ended.
    pub fn observe_tell_ms(&self, ms: i64) {
        let ms = u64::try_from(ms).unwrap_or(0);
        let secs = ms as f64 / 1000.0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// The body of `GET /status`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Always `ok` when the server answers.
    pub status: &'static str,
    /// The server's process id.
    pub pid: u32,
    /// The MCP endpoint.
    pub url: String,
    /// When the server started (RFC 3339).
    pub started_at: String,
    /// The database file.
    pub database: String,
    /// The teams of the teams file.
    pub teams: Vec<String>,
    /// Agents this server runs.
    pub live_agents: Vec<LiveAgentOut>,
    /// Pairs with tells not answered yet (`FROM:TO` → count).
    pub queues: BTreeMap<String, usize>,
    /// Tells finished since start, by outcome.
    pub tells: BTreeMap<&'static str, u64>,
}

/// One live agent in `/status`.
#[derive(Debug, Serialize)]
pub struct LiveAgentOut {
    /// `FROM:TO`.
    pub pair: String,
    /// Whether it is idle (else answering).
    pub idle: bool,
}

/// Open tells per pair, and how long reading them took.
fn queues(router: &Router) -> (BTreeMap<String, usize>, Option<f64>) {
    let started = Instant::now();
    let mut out = BTreeMap::new();
    match router.manager().store().all_open_tells() {
        Ok(tells) => {
            for t in tells {
                *out.entry(format!("{}:{}", t.from_team, t.to_team))
                    .or_default() += 1;
            }
            (out, Some(started.elapsed().as_secs_f64()))
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read open tells for status");
            (out, None)
        }
    }
}

fn outcomes(router: &Router) -> BTreeMap<&'static str, u64> {
    let c = router.counters();
    BTreeMap::from([
        ("answered", c.answered.load(Ordering::Relaxed)),
        ("failed", c.failed.load(Ordering::Relaxed)),
        ("cancelled", c.cancelled.load(Ordering::Relaxed)),
    ])
}

/// The status of the server.
pub fn status(router: &Router, url: &str, started_at_ms: i64) -> Status {
    Status {
        status: "ok",
        pid: std::process::id(),
        url: url.to_string(),
        started_at: rfc3339(started_at_ms),
        database: router.manager().store().path().to_string(),
        teams: router.manager().config().teams.keys().cloned().collect(),
        live_agents: router
            .live_agents()
            .into_iter()
            .map(|a| LiveAgentOut {
                pair: a.pair,
                idle: a.idle,
            })
            .collect(),
        queues: queues(router).0,
        tells: outcomes(router),
    }
}

/// Prometheus text exposition of the server's metrics.
pub fn metrics(router: &Router, m: &Metrics, started_at_ms: i64) -> String {
    let mut out = String::new();
    let c = router.counters();
    let name = "switchboard_tells_total";
    header(
        &mut out,
        name,
        "counter",
        "Tells finished since start, by outcome.",
    );
    for (outcome, v) in outcomes(router) {
        let _ = writeln!(out, "{name}{{outcome=\"{outcome}\"}} {v}");
    }
    for (name, help, v) in [
        (
            "switchboard_agents_spawned_total",
            "Agent processes started since start.",
            &c.spawned,
        ),
        (
            "switchboard_agent_bad_lines_total",
            "Agent output lines that were not events.",
            &c.bad_lines,
        ),
        (
            "switchboard_tells_handed_over_total",
            "Tells delivered in the write that stored them (their agent was waiting).",
            &c.handed_over,
        ),
    ] {
        header(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
    }
    let (hits, misses) = router.manager().cache_stats();
    let name = "switchboard_session_cache_lookups_total";
    header(
        &mut out,
        name,
        "counter",
        "Session cache lookups since start, by result.",
    );
    let _ = writeln!(out, "{name}{{result=\"hit\"}} {hits}");
    let _ = writeln!(out, "{name}{{result=\"miss\"}} {misses}");
    let name = "switchboard_session_cache_hit_ratio";
    header(
        &mut out,
        name,
        "gauge",
        "Share of session cache lookups that were hits.",
    );
    let ratio = if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    };
    let _ = writeln!(out, "{name} {ratio}");
    let live = router.live_agents();
    let idle = live.iter().filter(|a| a.idle).count();
    let name = "switchboard_live_agents";
    header(
        &mut out,
        name,
        "gauge",
        "Agent processes this server runs, by state.",
    );
    let _ = writeln!(out, "{name}{{state=\"idle\"}} {idle}");
    let _ = writeln!(out, "{name}{{state=\"busy\"}} {}", live.len() - idle);
    let (queues, probe) = queues(router);
    let name = "switchboard_queue_depth";
    header(
        &mut out,
        name,
        "gauge",
        "Tells stored and not answered yet, all pairs.",
    );
    let _ = writeln!(out, "{name} {}", queues.values().sum::<usize>());
    if let Some(secs) = probe {
        let name = "switchboard_store_query_seconds";
        header(
            &mut out,
            name,
            "gauge",
            "How long this scrape's store query (open tells) took.",
        );
        let _ = writeln!(out, "{name} {secs:.6}");
    }
    let name = "switchboard_tell_duration_seconds";
    header(
        &mut out,
        name,
        "histogram",
        "Tells this server waited for, from stored to ended.",
    );
    for (i, bound) in BUCKETS.iter().enumerate() {
        let v = m.buckets[i].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {v}");
    }
    let count = m.count.load(Ordering::Relaxed);
    let sum = m.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0;
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum:.3}\n{name}_count {count}");
    match router.manager().stats() {
        Ok(stats) => {
            for (name, help, value) in [
                (
                    "switchboard_sessions_by_agent",
                    "Sessions, by the agent kind of the answering team.",
                    (|k: &crate::store::AgentStats| k.sessions as f64) as fn(&_) -> f64,
                ),
                (
                    "switchboard_cost_usd_by_agent",
                    "Cost in US dollars of the sessions, by the agent kind of the answering team.",
                    |k| k.cost_usd,
                ),
            ] {
                header(&mut out, name, "gauge", help);
                for k in &stats.by_agent {
                    let _ = writeln!(out, "{name}{{agent=\"{}\"}} {}", k.agent, value(k));
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the sessions' figures for metrics"),
    }
    let name = "switchboard_uptime_seconds";
    header(&mut out, name, "gauge", "Seconds since the server started.");
    let uptime = (now_ms() - started_at_ms).max(0) as f64 / 1000.0;
    let _ = writeln!(out, "{name} {uptime:.3}");
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
