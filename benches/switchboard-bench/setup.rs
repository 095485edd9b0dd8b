//! Set-up of a run: a scratch folder removed at the end, the generated teams file, a dead
//! process identity, and the peak RSS of this process.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use switchboard::util::ProcessIdentity;
use switchboard::TeamsConfig;

use crate::measure::BenchResult;

/// A scratch folder under the system temp dir, removed (with everything in it) on drop.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Creates `$TMPDIR/switchboard-bench-<pid>-<nanos>`.
    pub fn new() -> BenchResult<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("switchboard-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Self { dir })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("SWITCHBOARD_BENCH_KEEP").is_some() {
            eprintln!(
                "# kept {} (SWITCHBOARD_BENCH_KEEP is set)",
                self.dir.display()
            );
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("warning: cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// `team-000`, `team-001`, ...
pub fn team_name(i: usize) -> String {
    format!("team-{i:03}")
}

/// A TOML basic string holding `s`.
pub fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A teams config with `teams` teams (`team-000` ...) all working in `team_dir`, the database at
/// `db`, and a cache TTL of an hour (so nothing expires during a run).
pub fn config(teams: usize, team_dir: &Path, db: &Path) -> BenchResult<Arc<TeamsConfig>> {
    let mut text = String::from("[settings]\ncache_ttl = \"1h\"\n\n[database]\n");
    text.push_str(&format!(
        "path = {}\n\n",
        toml_string(&db.display().to_string())
    ));
    let dir = toml_string(&team_dir.display().to_string());
    for i in 0..teams {
        text.push_str(&format!("[teams.{}]\npath = {dir}\n\n", team_name(i)));
    }
    let config = TeamsConfig::parse(&text, None, &|_| None)?;
    Ok(Arc::new(config))
}

/// The identity of a process that existed and is gone: a child spawned and reaped.
pub fn dead_identity() -> BenchResult<ProcessIdentity> {
    let mut child = std::process::Command::new("true")
        .spawn()
        .map_err(|e| format!("cannot spawn `true`: {e}"))?;
    let pid = child.id();
    child.wait()?;
    let id = ProcessIdentity { pid, started_at: 1 };
    if id.is_alive() {
        return Err(format!("pid {pid} of a reaped child still looks alive").into());
    }
    Ok(id)
}

/// A `VmHWM` / `VmRSS`-style line of `/proc/self/status`, in MB.
fn status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line
        .trim_start_matches(field)
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Highest `VmHWM` seen before a reset of the high-water mark, in kB.
static PEAK_KB: AtomicU64 = AtomicU64::new(0);

/// Highest `VmHWM` seen since [`start_peak_window`], in kB.
static WINDOW_KB: AtomicU64 = AtomicU64::new(0);

/// Starts a window for [`peak_rss_mb_window`]: resets the high-water mark to the current RSS.
pub fn start_peak_window() {
    if let Some(hwm) = status_mb("VmHWM") {
        PEAK_KB.fetch_max((hwm * 1024.0) as u64, Ordering::Relaxed);
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    WINDOW_KB.store(0, Ordering::Relaxed);
}

/// Peak resident set size since [`start_peak_window`], in MB.
pub fn peak_rss_mb_window() -> Option<f64> {
    let now = status_mb("VmHWM")?;
    let before = WINDOW_KB.load(Ordering::Relaxed) as f64 / 1024.0;
    Some(now.max(before))
}

/// Resident set size of another process (`VmRSS` of `/proc/PID/status`), in MB.
pub fn rss_mb_of(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Peak resident set size of this process so far, in MB: `VmHWM`, or the highest value it had
/// before [`rss_phase`] reset it.
pub fn peak_rss_mb() -> Option<f64> {
    let now = status_mb("VmHWM")?;
    let before = PEAK_KB.load(Ordering::Relaxed) as f64 / 1024.0;
    Some(now.max(before))
}

/// Ends a phase for memory accounting: prints the phase's peak RSS (`VmHWM`) to stderr, keeps
/// it for [`peak_rss_mb`], and resets the high-water mark to the current RSS (by writing `5` to
/// `/proc/self/clear_refs`) so the next phase's peak is its own.
pub fn rss_phase(name: &str) {
    let Some(hwm) = status_mb("VmHWM") else {
        return;
    };
    PEAK_KB.fetch_max((hwm * 1024.0) as u64, Ordering::Relaxed);
    WINDOW_KB.fetch_max((hwm * 1024.0) as u64, Ordering::Relaxed);
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    eprintln!(
        "# {name}: peak rss {hwm:.1} MB, rss now {:.1} MB (anon {:.1}, file {:.1}, shmem {:.1}){}",
        rss_mb().unwrap_or(f64::NAN),
        status_mb("RssAnon").unwrap_or(f64::NAN),
        status_mb("RssFile").unwrap_or(f64::NAN),
        status_mb("RssShmem").unwrap_or(f64::NAN),
        if reset { "" } else { " (cannot reset VmHWM)" }
    );
}

/// Resident set size of this process now (`VmRSS`), in MB.
pub fn rss_mb() -> Option<f64> {
    status_mb("VmRSS")
}
