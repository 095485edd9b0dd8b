//! Operating Switchboard: colours (`--color`, `NO_COLOR`), shell completions and the manual
//! page, `doctor`, and what a running server does when its database is removed or replaced
//! or when a second server is started on the same database or port.

mod support;

use std::process::Command;
use std::time::Duration;

use support::serve::ServeProcess;
use support::{assert_exit, poll_until, stderr, stdout, wait_timeout, TestEnv};

const ESC: char = '\x1b';

/// Runs `switchboard --config <teams.toml> ARGS` on a pseudo-terminal (util-linux `script`),
/// so that stdout and stderr are terminals; returns what the terminal showed.
fn run_on_terminal(env: &TestEnv, args: &[&str], extra_env: &[(&str, &str)]) -> String {
    let mut line = vec![
        shell_quote(support::bin()),
        "--config".to_string(),
        shell_quote(&env.config_path().display().to_string()),
    ];
    line.extend(args.iter().map(|a| shell_quote(a)));
    let mut cmd = Command::new("script");
    env.configure(&mut cmd);
    cmd.args(["-q", "-e", "-c", &line.join(" "), "/dev/null"])
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = support::finish(cmd);
    assert_exit(&out, 0, args);
    stdout(&out)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn colours_follow_the_flag_the_terminal_and_no_color() {
    let env = TestEnv::new();
    env.run_ok(&["sessions", "open", "frontend", "backend"]);
    let green_active = format!("{ESC}[32mactive{ESC}[0m");

    // Off a terminal, auto means none.
    let piped = env.run_ok(&["sessions", "list"]);
    assert!(
        piped.contains("active") && !piped.contains(ESC),
        "{piped:?}"
    );

    // --color always colours states, even through a pipe; an explicit flag beats NO_COLOR.
    let always = env.run_ok(&["--color", "always", "sessions", "list"]);
    assert!(always.contains(&green_active), "{always:?}");
    assert!(
        always.contains(&format!("{ESC}[2mstopped{ESC}[0m")),
        "{always:?}"
    );
    let mut cmd = env.command();
    cmd.env("NO_COLOR", "1").args([
        "--config",
        &env.config_path().display().to_string(),
        "--color",
        "always",
        "sessions",
        "list",
    ]);
    let out = support::finish(cmd);
    assert!(stdout(&out).contains(&green_active), "{out:?}");

    // The columns still line up: padding is outside the colour codes.
    let strip = |s: &str| s.replace(&format!("{ESC}[0m"), "").replace(ESC, "");
    let plain_lines: Vec<usize> = piped
        .lines()
        .map(|l| l.find("active").unwrap_or(0))
        .collect();
    let coloured: Vec<usize> = always
        .lines()
        .map(|l| {
            let l = strip(l)
                .replace("[1m", "")
                .replace("[32m", "")
                .replace("[2m", "");
            l.find("active").unwrap_or(0)
        })
        .collect();
    assert_eq!(plain_lines, coloured);

    // Costs in cyan, errors in red (on stderr).
    let stats = env.run_ok(&["--color", "always", "stats"]);
    assert!(
        stats.contains(&format!("{ESC}[36m$0.0000{ESC}[0m")),
        "{stats:?}"
    );
    let out = env.run(&["--color", "always", "sessions", "show", "nobody:backend"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).starts_with(&format!("{ESC}[1;31merror{ESC}[0m: ")),
        "{:?}",
        stderr(&out)
    );
    // JSON is never coloured.
    let json = env.run_ok(&["--color", "always", "sessions", "list", "--json"]);
    assert!(!json.contains(ESC), "{json:?}");

    // On a terminal, auto colours; NO_COLOR (non-empty) turns that off, as does --color never.
    let tty = run_on_terminal(&env, &["sessions", "list"], &[]);
    assert!(tty.contains(&green_active), "{tty:?}");
    let tty = run_on_terminal(&env, &["sessions", "list"], &[("NO_COLOR", "1")]);
    assert!(tty.contains("active") && !tty.contains(ESC), "{tty:?}");
    let tty = run_on_terminal(&env, &["--color", "never", "sessions", "list"], &[]);
    assert!(tty.contains("active") && !tty.contains(ESC), "{tty:?}");
    // An empty NO_COLOR does not count (the convention: present and not empty).
    let tty = run_on_terminal(&env, &["sessions", "list"], &[("NO_COLOR", "")]);
    assert!(tty.contains(&green_active), "{tty:?}");
}

#[test]
fn bad_color_value_is_a_usage_error() {
    let env = TestEnv::new();
    let out = env.run(&["--color", "sometimes", "stats"]);
    assert_exit(&out, 2, &["--color", "sometimes", "stats"]);
    let err = stderr(&out);
    assert!(
        err.contains("invalid value 'sometimes' for '--color <WHEN>'")
            && err.contains("auto")
            && err.contains("never"),
        "{err}"
    );
}

const SUBCOMMANDS: [&str; 10] = [
    "tell", "report", "wake", "sleep", "cancel", "sessions", "stats", "teams", "serve", "doctor",
];

#[test]
fn completion_scripts_cover_every_subcommand() {
    let env = TestEnv::new();
    let bash = env.run_ok(&["completions", "bash"]);
    for sub in SUBCOMMANDS {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    // Nested subcommands and option values too.
    assert!(
        bash.contains("compact") && bash.contains("--color"),
        "{bash}"
    );
    let script = env.path().join("switchboard.bash");
    std::fs::write(&script, &bash).expect("write the script");
    let mut check = Command::new("bash");
    check.arg("-n").arg(&script);
    let check = support::finish(check);
    assert!(check.status.success(), "bash -n: {}", stderr(&check));
    // Sourcing it registers the completion function for `switchboard`.
    let mut sourced = Command::new("bash");
    sourced.arg("-c").arg(format!(
        "source {} && complete -p switchboard",
        shell_quote(&script.display().to_string())
    ));
    let sourced = support::finish(sourced);
    assert!(
        stdout(&sourced).contains("switchboard"),
        "{}{}",
        stdout(&sourced),
        stderr(&sourced)
    );

    for shell in ["zsh", "fish", "powershell"] {
        let text = env.run_ok(&["completions", shell]);
        for sub in SUBCOMMANDS {
            assert!(text.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    assert!(env
        .run_ok(&["completions", "zsh"])
        .starts_with("#compdef switchboard"));

    let out = env.run(&["completions", "tcsh"]);
    assert_exit(&out, 2, &["completions", "tcsh"]);
}

#[test]
fn man_page_renders_with_every_subcommand() {
    let env = TestEnv::new();
    let page = env.run_ok(&["man"]);
    assert!(page.contains(".TH switchboard 1"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(page.contains(sub), "the man page lacks {sub}");
    }
    let file = env.path().join("switchboard.1");
    std::fs::write(&file, &page).expect("write the page");
    let mut rendered = Command::new("man");
    rendered
        .arg("-l")
        .arg(&file)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat");
    let rendered = support::finish(rendered);
    assert!(rendered.status.success(), "man -l: {}", stderr(&rendered));
    let text = stdout(&rendered);
    assert!(
        text.contains("SUBCOMMANDS") && text.contains("SYNOPSIS"),
        "{text}"
    );
    assert!(!text.contains(".TH"), "roff was not rendered: {text}");

    // One page per command into a folder.
    let dir = env.path().join("man1");
    env.run_ok(&["man", "--out-dir", &dir.display().to_string()]);
    for name in [
        "switchboard.1",
        "switchboard-tell.1",
        "switchboard-sessions-compact.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name}: {text}");
    }
}

/// The contents of `server.json`, once it parses.
fn server_file(env: &TestEnv) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(env.db_path().with_file_name("server.json")).ok()?;
    serde_json::from_str(&text).ok()
}

#[test]
fn deleting_the_data_folder_under_a_running_server_stops_tells_and_new_databases() {
    let env = TestEnv::new();
    env.run_ok(&["sessions", "open", "frontend", "backend"]);
    let server = ServeProcess::start(&env);
    let (status, body) = server.get("/health");
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));

    std::fs::remove_dir_all(env.db_path().parent().expect("data folder")).expect("rm -r data");

    // The server notices on its own and says so where commands look.
    let mut lost = String::new();
    let noticed = poll_until(Duration::from_secs(20), || {
        lost = server_file(&env)
            .and_then(|v| v["database_lost"].as_str().map(str::to_string))
            .unwrap_or_default();
        !lost.is_empty()
    });
    assert!(noticed, "server.json never said the database was lost");
    assert!(lost.contains("was deleted or moved away"), "{lost}");
    let (status, body) = server.get("/health");
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("was deleted or moved away")),
        "{body}"
    );

    // A command refuses to create a new, empty database where the server serves one.
    let out = env.run(&["sessions", "list"]);
    assert_exit(&out, 1, &["sessions", "list"]);
    let err = stderr(&out);
    assert!(
        err.contains("does not exist")
            && err.contains(&format!("pid {}", server.pid()))
            && err.contains(&server.url),
        "{err}"
    );
    assert!(!env.db_path().exists(), "a new database was created");

    // A tell (through the server) is refused, saying what happened.
    let args = ["tell", "frontend", "backend", "--async", "hello"];
    let out = env.run(&args);
    assert_exit(&out, 1, &args);
    assert!(
        stderr(&out).contains("was deleted or moved away"),
        "{}",
        stderr(&out)
    );
    assert!(!env.db_path().exists(), "a new database was created");

    // doctor says what happened, and fails.
    let out = doctor(&env, &["--json"]);
    assert_exit(&out, 1, &["doctor", "--json"]);
    let report = support::parse_json(&out);
    for name in ["server", "database"] {
        let check = report["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .cloned()
            .unwrap_or_default();
        assert_eq!(check["outcome"], "fail", "{check}");
        assert!(
            check["detail"]
                .as_str()
                .is_some_and(|d| d.contains(&format!("pid {}", server.pid()))),
            "{check}"
        );
    }
    assert!(!env.db_path().exists(), "doctor created a database");

    // Once the server is gone, a new database may be made.
    server.stop();
    env.run_ok(&["sessions", "list"]);
    assert!(env.db_path().exists());
}

#[test]
fn a_command_straight_after_deleting_the_data_folder_makes_no_new_database() {
    let env = TestEnv::new();
    env.run_ok(&["sessions", "open", "frontend", "backend"]);
    let server = ServeProcess::start(&env);

    // No waiting for the server to notice: server.json went with the folder, and the very
    // next command must still not start a new, empty database there.
    std::fs::remove_dir_all(env.db_path().parent().expect("data folder")).expect("rm -r data");
    let args = ["tell", "frontend", "backend", "--async", "hello"];
    let out = env.run(&args);
    assert_exit(&out, 1, &args);
    // Refused here (the claim), or by the server if it noticed first and the command reached
    // it: either way the error names the server and no database was made.
    let err = stderr(&out);
    assert!(
        (err.contains("does not exist") || err.contains("deleted or moved away"))
            && err.contains(&format!("pid {}", server.pid())),
        "{err}"
    );
    assert!(!env.db_path().exists(), "a new database was created");

    // Once the server is gone, its claim is too: a new database may be made.
    server.stop();
    env.run_ok(&["sessions", "list"]);
    assert!(env.db_path().exists());
}

#[test]
fn replacing_the_database_file_under_a_running_server_stops_tells() {
    let env = TestEnv::new();
    env.run_ok(&["sessions", "open", "frontend", "backend"]);
    let server = ServeProcess::start(&env);

    // Swap the file: a copy renamed over the path (what restoring a backup does).
    let copy = env.db_path().with_file_name("copy.db");
    std::fs::copy(env.db_path(), &copy).expect("copy the database");
    std::fs::rename(&copy, env.db_path()).expect("rename over the database");

    let args = ["tell", "frontend", "backend", "--async", "hello"];
    let out = env.run(&args);
    assert_exit(&out, 1, &args);
    let err = stderr(&out);
    assert!(
        err.contains("was replaced by another file")
            && err.contains(&format!("pid {}", server.pid())),
        "{err}"
    );
    let (status, body) = server.get("/health");
    assert_eq!(status, 503, "{body}");
    assert!(
        poll_until(Duration::from_secs(20), || server_file(&env)
            .is_some_and(|v| v["database_lost"].is_string())),
        "server.json never said the database was replaced"
    );
    // Nothing went into either file: the pair has no tell.
    let report = env.run_json(&["report", "frontend", "backend"]);
    assert_eq!(report.as_array().map(Vec::len), Some(0), "{report}");
    server.stop();
}

#[test]
fn a_second_server_names_the_one_running() {
    let env = TestEnv::new();
    let server = ServeProcess::start(&env);

    // Same database, any port.
    let mut second = env.spawn(&["serve", "--http", "127.0.0.1:0"]);
    let status = wait_timeout(&mut second, Duration::from_secs(20));
    if status.is_none() {
        let _ = second.kill();
    }
    let out = second
        .wait_with_output()
        .expect("wait for the second server");
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("already running")
            && err.contains(&format!("pid {}", server.pid()))
            && err.contains(&server.url),
        "{err}"
    );

    // Another database, the same port.
    let other = TestEnv::new();
    let addr = format!("127.0.0.1:{}", server.port());
    let args = ["serve", "--http", addr.as_str()];
    let mut third = other.spawn(&args);
    let status = wait_timeout(&mut third, Duration::from_secs(20));
    if status.is_none() {
        let _ = third.kill();
    }
    let out = third.wait_with_output().expect("wait for the third server");
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{out:?}");
    let err = stderr(&out);
    // It does not take this database's token, so it does not say who it is (its /status is
    // for its owner's token only); it still says a switchboard server holds the port.
    assert!(
        err.contains(&format!("cannot listen on {addr}"))
            && err.contains("another switchboard server listens there"),
        "{err}"
    );

    // A port held by something else: said plainly.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = squatter.local_addr().expect("address").to_string();
    let out = other.run(&["serve", "--http", &addr]);
    assert_exit(&out, 1, &["serve", "--http", &addr]);
    assert!(
        stderr(&out).contains(&format!("cannot listen on {addr}")),
        "{}",
        stderr(&out)
    );
    drop(squatter);

    // The first server was left alone.
    assert_eq!(server.get("/health").0, 200);
    server.stop();
}

/// The pinned Claude Code: `$SWITCHBOARD_TEST_CLAUDE`, or `.tools/claude-code` (installed by
/// `scripts/test.sh`). Fails, never skips, when it is missing.
fn claude_binary() -> String {
    let path = std::env::var("SWITCHBOARD_TEST_CLAUDE").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/.tools/claude-code/node_modules/.bin/claude"
        )
        .to_string()
    });
    assert!(
        std::path::Path::new(&path).is_file(),
        "no claude at {path}: run `bash scripts/test.sh` (it installs the pinned one)"
    );
    path
}

/// `doctor` ARGS with no credentials in the environment (only what the test gives).
fn doctor(env: &TestEnv, args: &[&str]) -> std::process::Output {
    let mut cmd = env.command();
    cmd.arg("--config")
        .arg(env.config_path())
        .arg("doctor")
        .args(args);
    for var in [
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "CLAUDE_CONFIG_DIR",
        "CLAUDE_SECURESTORAGE_CONFIG_DIR",
        "NO_COLOR",
    ] {
        cmd.env_remove(var);
    }
    support::finish(cmd)
}

const FAKE_KEY: &str = "sk-doctor-test-not-a-real-key";

#[test]
fn doctor_checks_agents_credentials_database_and_server() {
    let env = TestEnv::new();
    let claude = claude_binary();
    let q = |s: &str| support::toml_string(s);
    let missing = env.path().join("not-installed").join("claude");
    env.write_config(&format!(
        "[database]\npath = \"data/switchboard.db\"\n\
         [teams.frontend]\npath = {}\nagent_path = {}\nenv = {{ ANTHROPIC_API_KEY = {} }}\n\
         [teams.backend]\npath = {}\nagent_path = {}\n\
         [teams.docs]\npath = {}\nagent_path = {}\n",
        q(&env.project("frontend").display().to_string()),
        q(&claude),
        q(FAKE_KEY),
        q(&env.project("backend").display().to_string()),
        q(support::agent_bin()),
        q(&env.project("docs").display().to_string()),
        q(&missing.display().to_string()),
    ));

    let out = doctor(&env, &["--json"]);
    assert_exit(&out, 1, &["doctor", "--json"]);
    let report = support::parse_json(&out);
    let text = report.to_string();
    assert!(!text.contains(FAKE_KEY), "a secret was printed: {text}");
    let outcome = |name: &str| {
        report["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .map(|c| c["outcome"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no check {name} in {report}"))
    };
    assert_eq!(outcome("teams file"), "ok");
    assert_eq!(outcome("agent frontend"), "ok"); // the real claude answers --version
    assert_eq!(outcome("credentials frontend"), "ok"); // the key in the team's env
    assert_eq!(outcome("agent backend"), "fail"); // the scripted agent refuses --version
    assert_eq!(outcome("agent docs"), "fail"); // not installed
    assert_eq!(outcome("credentials backend"), "fail");
    assert_eq!(outcome("database"), "ok");
    assert_eq!(outcome("server"), "ok");
    let redacted =
        env.redact(serde_json::from_str(&text.replace(&claude, "[claude]")).expect("JSON"));
    insta::assert_json_snapshot!("doctor_json", redacted);

    // Human output: one line per check, the fix on the failing ones.
    let out = doctor(&env, &[]);
    assert_exit(&out, 1, &["doctor"]);
    let human = stdout(&out);
    assert_eq!(
        human.lines().count(),
        report["checks"].as_array().map_or(0, Vec::len),
        "{human}"
    );
    let line = |name: &str| {
        human
            .lines()
            .find(|l| l.split("  ").any(|part| part.trim() == name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{human}"))
            .to_string()
    };
    assert!(
        line("agent docs").starts_with("fail")
            && line("agent docs").contains("-> fix: install Claude Code"),
        "{human}"
    );
    assert!(
        line("agent frontend").starts_with("ok")
            && line("agent frontend").contains("2.1.328 (Claude Code)"),
        "{human}"
    );
    assert!(
        line("agent backend").contains("exited with status 2")
            && line("agent backend").contains("need exactly one of --session-id"),
        "{human}"
    );

    // A Claude Code login in the agent's HOME counts as credentials.
    let claude_dir = env.home().join(".claude");
    std::fs::create_dir_all(&claude_dir).expect("mkdir .claude");
    std::fs::write(
        claude_dir.join(".credentials.json"),
        r#"{"claudeAiOauth":{"accessToken":"x","expiresAt":0}}"#,
    )
    .expect("write credentials");
    let report = support::parse_json(&doctor(&env, &["--json"]));
    let backend = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "credentials backend"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(backend["outcome"], "ok", "{backend}");
    assert!(
        backend["detail"]
            .as_str()
            .is_some_and(|d| d.contains(".claude/.credentials.json")),
        "{backend}"
    );

    // All good: exit 0; a running server and an existing database are reported.
    env.write_config(&format!(
        "[database]\npath = \"data/switchboard.db\"\n\
         [teams.frontend]\npath = {}\nagent_path = {}\nenv = {{ ANTHROPIC_API_KEY = {} }}\n",
        q(&env.project("frontend").display().to_string()),
        q(&claude),
        q(FAKE_KEY),
    ));
    let server = ServeProcess::start(&env);
    let out = doctor(&env, &[]);
    assert_exit(&out, 0, &["doctor"]);
    let human = stdout(&out);
    assert!(
        human.contains(&format!("pid {}, {}", server.pid(), server.url)),
        "{human}"
    );
    assert!(human.contains("writable, schema version"), "{human}");
    server.stop();

    // A server.json left by a process that is gone: a warning with the fix, not a failure.
    let mut dead = Command::new("true").spawn().expect("run true");
    let dead_pid = dead.id();
    dead.wait().expect("reap true");
    let file = env.db_path().with_file_name("server.json");
    std::fs::write(
        &file,
        format!(r#"{{"pid": {dead_pid}, "url": "http://127.0.0.1:9/mcp", "transport": "http"}}"#),
    )
    .expect("write server.json");
    // As Switchboard writes it: readable by the user only (a loose one is flagged).
    std::fs::set_permissions(
        &file,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .expect("chmod server.json");
    let out = doctor(&env, &[]);
    assert_exit(&out, 0, &["doctor"]);
    let human = stdout(&out);
    assert!(
        human.contains("warn  server") && human.contains(&format!("pid {dead_pid}, which is gone")),
        "{human}"
    );
}

#[test]
fn doctor_without_a_teams_file_fails_with_the_fix() {
    let env = TestEnv::new();
    let out = env.run_raw(&["--config", "nowhere.toml", "doctor"]);
    assert_exit(&out, 1, &["--config", "nowhere.toml", "doctor"]);
    let text = stdout(&out);
    assert!(
        text.starts_with("fail  teams file")
            && text.contains("nowhere.toml")
            && text.contains("-> fix:"),
        "{text}"
    );
}

#[test]
fn a_stdio_server_leaves_the_http_servers_announcement_alone() {
    use std::io::{BufRead, Write};
    let env = TestEnv::new();
    let server = ServeProcess::start(&env);
    let file = env.db_path().with_file_name("server.json");
    let announced_pid = || server_file(&env).and_then(|v| v["pid"].as_u64());
    assert_eq!(announced_pid(), Some(u64::from(server.pid())));

    // A stdio server (as Claude Code starts one per project) on the same database.
    let mut cmd = env.command();
    cmd.arg("--config")
        .arg(env.config_path())
        .args(["serve", "--stdio", "--as", "frontend"])
        .stdin(std::process::Stdio::piped());
    let mut stdio = support::spawn_piped(cmd);
    let mut input = stdio.stdin.take().expect("stdin");
    let output = stdio.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(output).read_line(&mut line);
        let _ = tx.send(line);
    });
    writeln!(
        input,
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"test","version":"0"}}}}}}"#
    )
    .expect("send initialize");
    let answer = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the stdio server answers initialize");
    assert!(answer.contains("\"result\""), "{answer}");
    // It is up and listening for its agents: the HTTP server's announcement still stands.
    assert_eq!(announced_pid(), Some(u64::from(server.pid())));

    // When the stdio client leaves, the announcement is still there for the HTTP server.
    drop(input);
    let status = wait_timeout(&mut stdio, Duration::from_secs(30));
    assert!(
        status.is_some(),
        "the stdio server did not exit when stdin closed"
    );
    assert!(file.exists(), "server.json was removed");
    assert_eq!(announced_pid(), Some(u64::from(server.pid())));
    let args = ["tell", "frontend", "backend", "--async", "hello"];
    let out = env.run(&args);
    // Goes to the HTTP server (which queues it), not to a gone stdio server.
    assert_exit(&out, 0, &args);
    server.stop();
}
