//! The teams file through the `switchboard` binary: read-only commands with a missing team
//! folder, `teams.example.toml` and the README's teams files used verbatim, and
//! `switchboard init`.

mod support;

use support::{assert_exit, stderr, stdout, TestEnv};

// ---- a missing team folder ---------------------------------------------------------------------

/// Read-only commands (sessions list/show/open, stats, report, teams) work when a team folder
/// is gone, with a warning naming it; `config check` and the commands that start agents still
/// refuse, naming the key path.
#[test]
fn read_only_commands_work_when_a_team_folder_is_missing() {
    let env = TestEnv::new();
    env.run_ok(&["sessions", "open", "frontend", "backend"]);
    std::fs::remove_dir(env.project("backend")).expect("remove backend's folder");

    for args in [
        &["sessions", "list"][..],
        &["sessions", "show", "frontend:backend"],
        &["sessions", "open", "docs", "frontend"],
        &["stats"],
        &["report", "frontend", "backend"],
        &["teams"],
    ] {
        let out = env.run(args);
        assert_exit(&out, 0, args);
        let err = stderr(&out);
        assert!(
            err.contains("warning")
                && err.contains("teams.backend.path")
                && err.contains("does not exist"),
            "switchboard {}: no warning about backend's folder:\n{err}",
            args.join(" ")
        );
    }
    // The missing team is still listed, and its session still shown.
    let teams = env.run_json(&["teams"]);
    assert!(
        teams.to_string().contains("\"backend\""),
        "backend is listed: {teams}"
    );
    assert!(stdout(&env.run(&["sessions", "list"])).contains("backend"));

    // config check reports it; starting an agent there is refused.
    for args in [
        &["config", "check"][..],
        &["tell", "frontend", "backend", "hello"],
        &["wake", "frontend", "backend"],
        &["sessions", "compact", "frontend:backend"],
    ] {
        let out = env.run(args);
        assert_exit(&out, 2, args);
        let err = stderr(&out);
        assert!(
            err.contains("teams.backend.path") && err.contains("does not exist"),
            "switchboard {}:\n{err}",
            args.join(" ")
        );
    }
}
