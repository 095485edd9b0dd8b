//! Finding a test's processes in `/proc` (Linux): the orphan checks of every test file.

/// Pids of live (not zombie, not dead) processes for which `matches(pid)` holds, sorted.
pub fn live_pids(matches: impl Fn(u32) -> bool) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if !matches(pid) {
            continue;
        }
        let gone = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with(['Z', 'X']))
            })
            .unwrap_or(true);
        if !gone {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// Pids of live processes whose environment holds `NAME=value` (a test's marker variable).
pub fn pids_with_env(name: &str, value: &str) -> Vec<u32> {
    let needle = format!("{name}={value}");
    live_pids(|pid| {
        std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()))
    })
}
