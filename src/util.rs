//! Small shared helpers: wall-clock time in unix milliseconds, human durations, relative times,
//! and the identity (pid + start time) of a process, used for owner leases.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Caps glibc's malloc arenas at [`MALLOC_ARENAS`]. By default every thread that allocates
/// while another holds the arena lock gets an arena of its own (up to 8 per core), and memory
/// freed in an arena stays with it: the 8 store threads of the session bench kept ~22 MB that
/// way (peak RSS 51–54 MB; 35.5 MB with two arenas, 29.9 MB with one). Small allocations still
/// go through each thread's own cache (tcache) without the arena lock. Call it first thing in
/// `main`, before threads start. No-op on other C libraries.
pub fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; M_ARENA_MAX takes any count ≥ 1.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

/// Most malloc arenas a Switchboard process uses (see [`cap_malloc_arenas`]).
pub const MALLOC_ARENAS: i32 = 1;

/// Milliseconds since the unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Formats unix milliseconds as RFC 3339 in UTC with millisecond precision
/// (`2026-11-21T22:49:32.123Z`).
pub fn rfc3339(ms: i64) -> String {
    let t = if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH
    };
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parses a human duration such as `90s`, `5m`, `1h`, `7d`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    humantime::parse_duration(s).map_err(|e| {
        format!("invalid duration {s:?}: {e} (examples: \"90s\", \"5m\", \"1h\", \"7d\")")
    })
}

/// Parses a size such as `1MiB`, `512KiB`, `2MB`, `1000` (bytes): a whole number and an
/// optional unit `B`, `KB`, `MB`, `GB` (powers of 1000) or `KiB`, `MiB`, `GiB` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        format!("invalid size {s:?}: expected a whole number and a unit such as \"1MiB\", \"512KiB\" or \"2MB\"")
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "mb" | "m" => 1000 * 1000,
        "gb" | "g" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// Formats a duration compactly: `90s` → `1m30s`, `3600s` → `1h`.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    out
}

/// Relative time for people: "just now", "42s ago", "3m ago", "5h ago", "2d ago", "in 3m".
pub fn relative(ms: i64, now: i64) -> String {
    let delta = now - ms;
    let (abs, future) = if delta < 0 {
        (-delta, true)
    } else {
        (delta, false)
    };
    let secs = abs / 1000;
    if secs < 1 {
        return "just now".to_string();
    }
    let text = match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3_600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// The identity of a running process: its pid and its start time, so that a reused pid is not
/// mistaken for the process that took a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessIdentity {
    /// Operating-system process id.
    pub pid: u32,
    /// Start time of the process in unix milliseconds (derived from `/proc` on Linux; 0 where the
    /// platform does not tell).
    pub started_at: i64,
}

impl ProcessIdentity {
    /// The identity of this process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            pid,
            started_at: process_start_ms(pid).unwrap_or(0),
        }
    }

    /// Whether the process this identity names is still running (same pid, same start time).
    pub fn is_alive(&self) -> bool {
        if !pid_exists(self.pid) {
            return false;
        }
        match process_start_ms(self.pid) {
            // A recorded start time of 0 means "unknown": trust the pid alone.
            Some(start) => self.started_at == 0 || start == self.started_at,
            None => true,
        }
    }
}

fn pid_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks whether the process exists; it sends nothing.
    let rc = unsafe { libc::kill(pid, 0) };
    if rc == 0 {
        // A zombie (exited, not yet reaped by its parent) passes kill(0) but runs no more.
        return !is_zombie(pid);
    }
    // EPERM: it exists but belongs to someone else.
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether process `pid` has exited and waits to be reaped (state `Z` in `/proc/PID/stat`).
#[cfg(target_os = "linux")]
fn is_zombie(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The command name (field 2) may hold spaces and parentheses: the state follows
            // the last ')'.
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false)
}

#[cfg(not(target_os = "linux"))]
fn is_zombie(_pid: libc::pid_t) -> bool {
    false
}

/// Start time of process `pid` in unix milliseconds, from `/proc/PID/stat` (field 22, clock ticks
/// since boot) and `btime` of `/proc/stat`. The same process always yields the same value.
#[cfg(target_os = "linux")]
pub fn process_start_ms(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state); starttime is field 22 → index 19 here.
    let ticks: i64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let btime: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as i64 } else { 100 };
    Some(btime * 1000 + ticks * 1000 / hz)
}

/// Resident memory of process `pid` in KiB (`VmRSS` of `/proc/PID/status`), if it can be read.
pub fn process_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Start time of a process; unknown on this platform.
#[cfg(not(target_os = "linux"))]
pub fn process_start_ms(_pid: u32) -> Option<i64> {
    None
}

/// The user's home directory (`$HOME`).
pub fn home_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from)
}

/// Switchboard's data directory: `$XDG_DATA_HOME/switchboard` or `~/.local/share/switchboard`.
pub fn data_dir() -> Option<std::path::PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Some(std::path::PathBuf::from(x).join("switchboard"));
    }
    home_dir().map(|h| h.join(".local/share/switchboard"))
}

/// Switchboard's config directory: `$XDG_CONFIG_HOME/switchboard` or `~/.config/switchboard`.
pub fn config_dir() -> Option<std::path::PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Some(std::path::PathBuf::from(x).join("switchboard"));
    }
    home_dir().map(|h| h.join(".config/switchboard"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("3 parsecs").is_err());
    }

    /// A child that exited but is not reaped yet is a zombie: dead, though kill(pid, 0) passes.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_zombie_process_is_not_alive() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        let identity = ProcessIdentity {
            pid,
            started_at: process_start_ms(pid).unwrap_or(0),
        };
        let state = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next().map(String::from))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while state().as_deref() != Some("Z") {
            assert!(
                std::time::Instant::now() < deadline,
                "the child never exited"
            );
            std::thread::yield_now();
        }
        assert!(!identity.is_alive(), "a zombie counts as running");
        child.wait().expect("reap");
        assert!(!identity.is_alive());
    }

    #[test]
    fn durations_parse_and_format() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
    }

    #[test]
    fn relative_times() {
        assert_eq!(relative(0, 500), "just now");
        assert_eq!(relative(0, 42_000), "42s ago");
        assert_eq!(relative(0, 180_000), "3m ago");
        assert_eq!(relative(0, 5 * 3_600_000), "5h ago");
        assert_eq!(relative(0, 2 * 86_400_000), "2d ago");
        assert_eq!(relative(180_000, 0), "in 3m");
    }

    #[test]
    fn current_process_is_alive_and_a_dead_one_is_not() {
        let me = ProcessIdentity::current();
        assert!(me.is_alive());
        let wrong_start = ProcessIdentity {
            pid: me.pid,
            started_at: me.started_at + 1,
        };
        if cfg!(target_os = "linux") {
            assert!(!wrong_start.is_alive(), "a reused pid must not look alive");
        }
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        assert!(!ProcessIdentity { pid, started_at: 0 }.is_alive());
    }
}
