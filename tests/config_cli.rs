//! The teams file through the `switchboard` binary: read-only commands with a missing team
//! folder, `teams.example.toml` and the README's teams files used verbatim, and
//! `switchboard init`.

#[path = "support/claude_code.rs"]
mod claude_code;
mod fake_api;
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

// ---- teams.example.toml and the README, verbatim ------------------------------------------------

/// The README's block of commands that talk to real agents (the second block of examples, on
/// `teams.example.toml`), taken from README.md: one command per line, comments dropped.
fn readme_agent_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let intro = "With Claude Code installed and the example's folders holding real projects";
    let after = &readme[readme.find(intro).expect("the README's agent examples") + intro.len()..];
    let start = after.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let block = &after[start..start + after[start..].find("```").expect("end of block")];
    let lines: Vec<String> = block
        .lines()
        .map(|l| l.split("  #").next().unwrap_or(l).trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(lines.len() >= 5, "{block}");
    lines
}

/// How the test gives the agents Claude Code.
#[derive(Clone, Copy, Debug)]
enum Claude {
    /// `claude` is on PATH.
    OnPath,
    /// `claude` is not on PATH; `$CLAUDE_BIN` names it.
    ClaudeBinVar,
}

/// `teams.example.toml` (copied verbatim) and the README's commands on it, run verbatim by bash
/// with `claude` (the pinned Claude Code) on PATH and the model API stand-in in the
/// environment: every team's agent starts and answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_file_and_the_readme_commands_work_verbatim_with_claude_on_path() {
    run_example_and_readme(Claude::OnPath).await;
}

/// The same with `claude` not on PATH but named by `$CLAUDE_BIN`, as the example's comments
/// say: every team of the example honours it (only frontend did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_file_and_the_readme_commands_work_with_claude_bin_set() {
    run_example_and_readme(Claude::ClaudeBinVar).await;
}

async fn run_example_and_readme(claude: Claude) {
    let api = fake_api::FakeApi::start().await;
    // Its teams file is not used; its agent marker finds the claude processes in /proc.
    let env = TestEnv::with_scripted_agent();
    let projects = env.path().join("example-projects");
    for team in ["frontend", "backend", "docs"] {
        std::fs::create_dir_all(projects.join(team)).expect("mkdir");
    }
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/teams.example.toml"),
        env.path().join("teams.example.toml"),
    )
    .expect("copy teams.example.toml");
    // PATH: `switchboard` (and `claude`, unless named by $CLAUDE_BIN), then the system's.
    let bin = env.path().join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    std::os::unix::fs::symlink(support::bin(), bin.join("switchboard")).expect("link switchboard");
    if let Claude::OnPath = claude {
        std::os::unix::fs::symlink(claude_code::binary(), bin.join("claude")).expect("link claude");
    }
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display());
    assert!(
        !path
            .split(':')
            .any(|d| matches!(claude, Claude::ClaudeBinVar)
                && std::path::Path::new(d).join("claude").exists()),
        "a claude on the system PATH spoils this test"
    );
    // Every team's agent, then the README's commands.
    let mut commands = vec!["switchboard --config teams.example.toml config check".to_string()];
    for (from, to) in [
        ("docs", "frontend"),
        ("frontend", "backend"),
        ("frontend", "docs"),
    ] {
        commands.push(format!(
            "switchboard --config teams.example.toml tell {from} {to} \"hello {to}\""
        ));
    }
    commands.extend(readme_agent_commands());
    for line in &commands {
        // A command that never ends (say a `--follow` put in this block) fails the test.
        let mut cmd = std::process::Command::new("timeout");
        env.configure(&mut cmd);
        cmd.args(["--kill-after=5", "300", "bash", "-c", line])
            .env("PATH", &path)
            .env("SWITCHBOARD_PROJECTS", &projects)
            .env("ANTHROPIC_BASE_URL", api.url())
            .env("ANTHROPIC_API_KEY", "test-key")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env("CLAUDE_CODE_MAX_RETRIES", "0")
            .env("TEST_AGENT_MARKER", env.agent_marker())
            .env_remove("CLAUDE_CONFIG_DIR")
            .env_remove("CLAUDECODE")
            .env_remove("CLAUDE_BIN");
        if let Claude::ClaudeBinVar = claude {
            cmd.env("CLAUDE_BIN", claude_code::binary());
        }
        let out = tokio::task::spawn_blocking(move || support::finish(cmd))
            .await
            .expect("join");
        assert!(
            out.status.success(),
            "{claude:?}: {line}\nexit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.status.code(),
            stdout(&out),
            stderr(&out)
        );
    }
    assert!(
        api.requests().iter().any(|r| r.is_messages()),
        "no model call was made"
    );
    // Each command stopped the agents it started.
    env.assert_no_agents();
}

// ---- switchboard init ---------------------------------------------------------------------------

/// `switchboard` run in `cwd` with this env's environment (no `--config`).
fn run_in(env: &TestEnv, cwd: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut cmd = env.command();
    cmd.current_dir(cwd).args(args);
    support::finish(cmd)
}

/// `init FOLDER...` writes ./teams.toml, which discovery finds and `config check` accepts: one
/// team per folder, names from the folder names (made valid, de-duplicated), folders under HOME
/// written `~/...`, a `${` in a folder name kept literally.
#[test]
fn init_writes_a_teams_file_that_passes_config_check() {
    let env = TestEnv::new();
    let ws = env.path().join("ws");
    let folders = [
        env.home().join("code/web"),
        env.path().join("elsewhere/web"),
        env.path().join("My App!"),
        env.path().join("api.v2"),
        env.path().join("a${HOME}b"),
    ];
    for f in folders.iter().chain([&ws]) {
        std::fs::create_dir_all(f).expect("mkdir");
    }
    let args: Vec<String> = ["init".to_string()]
        .into_iter()
        .chain(folders.iter().map(|f| f.display().to_string()))
        .chain(["--json".to_string()])
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_in(&env, &ws, &args);
    assert_exit(&out, 0, &args);
    let written = support::parse_json(&out);
    assert_eq!(
        written["config"],
        ws.join("teams.toml").display().to_string()
    );

    let text = std::fs::read_to_string(ws.join("teams.toml")).expect("teams.toml written");
    assert!(text.contains("path = \"~/code/web\""), "{text}");
    assert!(text.contains("[teams.\"api.v2\"]"), "{text}");
    assert!(
        text.contains("# permission_mode = "),
        "options shown in comments:\n{text}"
    );

    // Found by discovery (./teams.toml) and accepted by config check.
    let out = run_in(&env, &ws, &["config", "check", "--json"]);
    assert_exit(&out, 0, &["config", "check"]);
    let check = support::parse_json(&out);
    assert_eq!(
        check["teams"],
        serde_json::json!(["a-home-b", "api.v2", "my-app", "web", "web-2"])
    );
    let teams = support::parse_json(&run_in(&env, &ws, &["teams", "--json"]));
    let path_of = |name: &str| {
        teams
            .as_array()
            .expect("teams")
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {teams}"))["path"]
            .clone()
    };
    assert_eq!(path_of("web"), folders[0].display().to_string());
    assert_eq!(path_of("web-2"), folders[1].display().to_string());
    assert_eq!(path_of("my-app"), folders[2].display().to_string());
    assert_eq!(path_of("a-home-b"), folders[4].display().to_string());
}

/// An existing file is kept unless `--force`; a folder that does not exist is named and nothing
/// is written; `--output` writes elsewhere; no folder means the current one.
#[test]
fn init_refuses_to_overwrite_and_names_a_bad_folder() {
    let env = TestEnv::new();
    let ws = env.path().join("ws");
    std::fs::create_dir_all(ws.join("proj")).expect("mkdir");
    std::fs::write(ws.join("teams.toml"), "# mine\n").expect("write");

    let out = run_in(&env, &ws, &["init", "proj"]);
    assert_exit(&out, 2, &["init", "proj"]);
    assert!(
        stderr(&out).contains("already exists") && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("teams.toml")).expect("read"),
        "# mine\n"
    );

    let out = run_in(&env, &ws, &["init", "proj", "nope", "--force"]);
    assert_exit(&out, 2, &["init", "proj", "nope"]);
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(ws.join("teams.toml")).expect("read"),
        "# mine\n"
    );

    let out = run_in(&env, &ws, &["init", "proj", "--force"]);
    assert_exit(&out, 0, &["init", "proj", "--force"]);
    assert!(std::fs::read_to_string(ws.join("teams.toml"))
        .expect("read")
        .contains("[teams.proj]"));

    // --output, and no folder: the current directory.
    let out = run_in(
        &env,
        &ws.join("proj"),
        &["init", "--output", "../other.toml"],
    );
    assert_exit(&out, 0, &["init", "--output", "../other.toml"]);
    let out = run_in(
        &env,
        &ws,
        &["--config", "other.toml", "config", "check", "--json"],
    );
    assert_exit(&out, 0, &["config", "check"]);
    assert_eq!(
        support::parse_json(&out)["teams"],
        serde_json::json!(["proj"])
    );

    // A folder Switchboard refuses (a system folder) is refused before anything is written.
    let out = run_in(&env, &ws, &["init", "/etc", "--output", "etc.toml"]);
    assert_exit(&out, 2, &["init", "/etc"]);
    assert!(
        stderr(&out).contains("protected folder"),
        "{}",
        stderr(&out)
    );
    assert!(!ws.join("etc.toml").exists());
}
