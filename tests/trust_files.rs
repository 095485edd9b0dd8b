//! Issue 9, files and secrets: Switchboard's files are readable by their owner only (checked as
//! a second Unix user, since root reads everything), older installations are tightened on start,
//! secrets are hidden in what sessions record, agent text cannot drive the terminal, and a
//! teams file in the current folder is not trusted without the user's say-so.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{assert_exit, stderr, stdout, toml_string, TestEnv};

const OTHER_USER: &str = "sbtest-other";

/// The uid and gid of a second local user, created if missing. Panics (never skips) when it
/// cannot be made: these tests are only meaningful with a second user.
fn other_user() -> (u32, u32) {
    let lookup = || {
        let mut id = Command::new("id");
        id.args(["-u", OTHER_USER]);
        let out = support::finish(id);
        let uid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        let mut id = Command::new("id");
        id.args(["-g", OTHER_USER]);
        let out = support::finish(id);
        let gid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        Some((uid, gid))
    };
    if let Some(ids) = lookup() {
        return ids;
    }
    let mut useradd = Command::new("useradd");
    useradd.args(["--system", "--no-create-home", OTHER_USER]);
    let made = support::finish(useradd);
    let ids = lookup();
    assert!(
        ids.is_some(),
        "cannot create the second user {OTHER_USER} these tests read files as (run them as \
         root): {made:?}"
    );
    ids.unwrap_or_default()
}

/// Whether the second user can read `path` (as `cat` would).
fn other_can_read(path: &Path) -> bool {
    let (uid, gid) = other_user();
    let mut cat = Command::new("setpriv");
    cat.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg("cat")
        .arg(path);
    let out = support::finish(cat);
    out.status.success()
}

/// Every file and folder under `dir`, `dir` included.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                all.extend(walk(&p));
            } else {
                all.push(p);
            }
        }
    }
    all
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

/// A test env whose temp dir others may enter (as a home folder usually is), so only
/// Switchboard's own modes protect its files.
/// With `default_db`, the database is at its default place (`$XDG_DATA_HOME/switchboard/`);
/// otherwise at `data/switchboard.db` beside the teams file.
fn open_env(extra_backend: &str, default_db: bool) -> TestEnv {
    let env = TestEnv::with_scripted_agent();
    for dir in [env.path().to_path_buf(), env.xdg_data_home()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let mut text = if default_db {
        String::new()
    } else {
        String::from("[database]\npath = \"data/switchboard.db\"\n")
    };
    for team in support::TEAMS {
        text.push_str(&format!(
            "\n[teams.{team}]\npath = {}\nagent_path = {}\n",
            toml_string(&env.project(team).display().to_string()),
            toml_string(support::agent_bin()),
        ));
        let mut vars = format!(
            "HOME = {}, TEST_AGENT_MARKER = {}",
            toml_string(&env.home().display().to_string()),
            toml_string(env.agent_marker())
        );
        if team == "backend" {
            vars.push_str(extra_backend);
        }
        text.push_str(&format!("env = {{ {vars} }}\n"));
        if team == "backend" {
            text.push_str(
                "args = [\"--api-key=sk-ant-api03-LEAKLEAKLEAKLEAKLEAK\", \"--token\", \
                 \"plain-token-value\"]\n",
            );
        }
    }
    env.write_config(&text);
    env
}

/// Runs the binary with `--config` and `args` under umask 022 (the usual default).
fn run_umask(env: &TestEnv, args: &[&str]) -> std::process::Output {
    let mut cmd = env.command();
    cmd.arg("--config").arg(env.config_path()).args(args);
    // SAFETY: umask is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    support::finish(cmd)
}

fn assert_private(data: &Path) {
    let files = walk(data);
    for p in &files {
        let m = mode(p);
        assert_eq!(
            m & 0o077,
            0,
            "{} is {m:04o}: others may read it",
            p.display()
        );
        if p.is_file() {
            assert!(!other_can_read(p), "another user read {}", p.display());
        }
    }
}

#[test]
fn data_files_are_private_to_the_owner() {
    let env = open_env(
        ", DATABASE_URL = \"postgres://admin:hunter2pw@db.local/app\", GITHUB_PAT = \"pat-value-123\"",
        false,
    );
    let out = run_umask(&env, &["tell", "frontend", "backend", "hello"]);
    assert_exit(&out, 0, &["tell"]);
    let data = env.db_path().parent().expect("data dir").to_path_buf();
    let logs: Vec<PathBuf> = walk(&data.join("logs"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".stderr.log"))
        .collect();
    assert!(
        !logs.is_empty(),
        "no agent stderr log under {}",
        data.display()
    );
    assert!(env.db_path().exists());
    // The control: before the fix, the same files were readable by the other user.
    assert_eq!(mode(&data), 0o700, "the data folder");
    assert_private(&data);

    // The server's files: server.json and its log.
    let server = support::serve::ServeProcess::start(&env);
    let server_json = data.join("server.json");
    let serve_log = data.join("logs").join("switchboard-serve.log");
    assert!(
        support::poll_until(std::time::Duration::from_secs(10), || serve_log.exists()),
        "no serve log"
    );
    assert!(server_json.exists());
    // SQLite's -wal and -shm (made with the database file's mode) while the server holds it.
    for suffix in ["-wal", "-shm"] {
        let f = data.join(format!("switchboard.db{suffix}"));
        assert!(f.exists(), "no {}", f.display());
    }
    assert_private(&data);
    server.stop();

    // What the session records hides the secrets of the team's args and env.
    let show = env.run_json(&["sessions", "show", "frontend:backend"]);
    let recorded = format!(
        "{} {}",
        show["launch_command"], show["team_config_snapshot"]
    );
    for secret in [
        "LEAKLEAK",
        "plain-token-value",
        "hunter2pw",
        "pat-value-123",
    ] {
        assert!(!recorded.contains(secret), "{secret} recorded: {recorded}");
    }
    assert!(recorded.contains("--api-key=***"), "{recorded}");
    assert!(
        recorded.contains("postgres://admin:***@db.local/app"),
        "{recorded}"
    );
}

/// Starts `serve --http` on the database in `data`, waits (bounded) until it announces itself,
/// stops it with SIGTERM and returns its stderr.
fn serve_once(env: &TestEnv, data: &Path) -> String {
    let mut child = env.spawn(&["serve", "--http", "127.0.0.1:0"]);
    let announced = support::poll_until(std::time::Duration::from_secs(20), || {
        data.join("server.json").exists()
    });
    support::send_signal(child.id(), libc::SIGTERM);
    let status = support::wait_timeout(&mut child, std::time::Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("server output");
    let err = stderr(&out);
    assert!(announced, "the server did not start: {err}");
    err
}

#[test]
fn loose_files_of_an_older_install_are_tightened_on_start() {
    let env = open_env("", true);
    let out = run_umask(&env, &["tell", "frontend", "backend", "hello"]);
    assert_exit(&out, 0, &["tell"]);
    let data = env.xdg_data_home().join("switchboard");
    let db = data.join("switchboard.db");
    assert!(
        db.exists(),
        "no database at the default place {}",
        db.display()
    );
    // A server once, for its log.
    serve_once(&env, &data);
    assert!(data.join("logs/switchboard-serve.log").exists());
    // As an older Switchboard left them: 0644 files in 0755 folders.
    for p in walk(&data) {
        let m = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).expect("chmod");
    }
    assert!(other_can_read(&db), "the control: loose files are readable");
    // The server's start tightens everything, saying which.
    let err = serve_once(&env, &data);
    for name in ["switchboard.db", "switchboard-serve.log", ".stderr.log"] {
        assert!(
            err.lines()
                .any(|l| l.contains("tightened the permissions of") && l.contains(name)),
            "no log line about {name}: {err}"
        );
    }
    assert_private(&data);

    // And any command does, too.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = run_umask(&env, &["sessions", "list"]);
    assert_exit(&out, 0, &["sessions", "list"]);
    let err = stderr(&out);
    assert!(
        err.contains("tightened the permissions of") && err.contains("switchboard.db"),
        "no log line about the tightened files: {err}"
    );
    assert_private(&data);
}

#[test]
fn agent_stderr_in_last_error_hides_secrets() {
    let env = TestEnv::with_scripted_agent();
    let out = env.run(&[
        "tell",
        "frontend",
        "backend",
        "crash:auth failed for postgres://svc:topsecretpw@db/app with ANTHROPIC_API_KEY=sk-ant-api03-ABCDEFGHIJKLMNOPQRSTUV",
    ]);
    assert_exit(&out, 1, &["tell"]);
    let show = env.run_json(&["sessions", "show", "frontend:backend"]);
    let last_error = show["last_error"].as_str().unwrap_or_default().to_string();
    let all = format!("{last_error} {}", stderr(&out));
    assert!(
        last_error.contains("postgres://svc:***@db/app"),
        "{last_error}"
    );
    // The tell's own error, and the agent's stderr log beside the database.
    let tell: serde_json::Value =
        serde_json::from_str(&stdout(&out)).unwrap_or(serde_json::Value::Null);
    let tell_error = env.run_json(&["report", "frontend", "backend"])[0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let logs = env.db_path().parent().expect("data folder").join("logs");
    let mut log_text = String::new();
    for entry in std::fs::read_dir(&logs).expect("logs folder").flatten() {
        if entry.file_name().to_string_lossy().ends_with(".stderr.log") {
            log_text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    assert!(log_text.contains("postgres://svc:***@db/app"), "{log_text}");
    let all = format!("{all} {tell} {tell_error} {log_text}");
    for secret in ["topsecretpw", "ABCDEFGHIJKLMNOP"] {
        assert!(!all.contains(secret), "{secret} shown: {all}");
    }
}

/// What an answer may carry to a terminal: a window title, clear screen, a hyperlink, a
/// carriage return over the line, an 8-bit CSI.
const EVIL: &str =
    "\x1b]0;pwned\x07\x1b[2J\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\\r\u{9b}8m";

fn assert_no_controls(what: &str, text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|c| c.is_control() && !matches!(c, '\n' | '\t'))
        .collect();
    assert!(bad.is_empty(), "{what} printed controls {bad:?}: {text:?}");
    // Whole messages show the escapes (table previews may cut them short).
    if !what.starts_with("report frontend backend") || what.ends_with("--full") {
        assert!(text.contains("\\x1b]0;pwned\\x07"), "{what}: {text:?}");
    }
}

#[test]
fn human_output_escapes_terminal_controls_json_keeps_them() {
    let env = TestEnv::with_scripted_agent();
    let message = format!("multi\nline {EVIL}");
    let out = env.run(&["--color", "never", "tell", "frontend", "backend", &message]);
    assert_exit(&out, 0, &["tell"]);
    let answer = stdout(&out);
    assert_no_controls("tell", &answer);
    assert!(answer.contains("multi\nline"), "newlines stay: {answer:?}");
    for args in [
        vec!["report", "frontend", "backend", "--full"],
        vec!["report", "frontend", "backend"],
    ] {
        let out = env.run(&args);
        assert_exit(&out, 0, &args);
        assert_no_controls(&args.join(" "), &stdout(&out));
    }
    // JSON stays exact.
    let json = env.run_json(&["report", "frontend", "backend"]);
    let tell = &json[0];
    assert_eq!(
        tell["answer"].as_str(),
        Some(format!("echo: {message}").as_str())
    );
    let id = tell["tell_id"].as_str().expect("tell id").to_string();
    let out = env.run(&["tells", "show", &id]);
    assert_exit(&out, 0, &["tells", "show"]);
    assert_no_controls("tells show", &stdout(&out));
    // An error message quoting agent text is escaped too.
    let out = env.run(&["tell", "frontend", "backend", &format!("crash:{EVIL}")]);
    assert_exit(&out, 1, &["tell"]);
    let err = stderr(&out);
    assert!(!err.contains('\x1b') && !err.contains('\x07'), "{err:?}");
}

#[test]
fn a_teams_file_in_the_current_folder_needs_trust() {
    let env = TestEnv::with_scripted_agent();
    // A cloned repository whose teams.toml runs its own script as the agent.
    let repo = env.path().join("evilrepo");
    std::fs::create_dir_all(repo.join("a")).expect("mkdir");
    let marker = env.path().join("script-ran");
    let script = repo.join("agent.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch {}\nexec {} \"$@\"\n",
            marker.display(),
            support::agent_bin()
        ),
    )
    .expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let teams = format!(
        "[database]\npath = \"db/sb.db\"\n[teams.a]\npath = {}\n[teams.b]\npath = {}\nagent_path = {}\nenv = {{ HOME = {} }}\n",
        toml_string(&repo.join("a").display().to_string()),
        toml_string(&repo.display().to_string()),
        toml_string(&script.display().to_string()),
        toml_string(&env.home().display().to_string()),
    );
    std::fs::write(repo.join("teams.toml"), &teams).expect("write teams.toml");
    let in_repo = |args: &[&str]| {
        let mut cmd = env.command();
        cmd.current_dir(&repo).args(args);
        support::finish(cmd)
    };

    let out = in_repo(&["tell", "a", "b", "hi"]);
    assert_exit(&out, 2, &["tell"]);
    let err = stderr(&out);
    assert!(
        err.contains("not trusted") && err.contains("switchboard config trust"),
        "{err}"
    );
    assert!(!marker.exists(), "the repository's agent script ran");

    // Trusted once: used as it is.
    let out = in_repo(&["config", "trust"]);
    assert_exit(&out, 0, &["config", "trust"]);
    // It says what the file runs.
    assert!(
        stdout(&out).contains(&format!("runs {}", script.display())),
        "{}",
        stdout(&out)
    );
    let record = env
        .xdg_config_home()
        .join("switchboard")
        .join("trusted-teams-files.json");
    assert_eq!(mode(&record) & 0o077, 0, "the trust record is private");
    let out = in_repo(&["tell", "a", "b", "hi"]);
    assert_exit(&out, 0, &["tell"]);
    assert!(marker.exists());

    // Changed since: not trusted any more.
    std::fs::write(repo.join("teams.toml"), format!("{teams}# changed\n")).expect("write");
    let out = in_repo(&["teams"]);
    assert_exit(&out, 2, &["teams"]);
    assert!(
        stderr(&out).contains("changed since you trusted it"),
        "{}",
        stderr(&out)
    );
    // An explicit --config is the user's choice.
    let out = in_repo(&["--config", "teams.toml", "teams"]);
    assert_exit(&out, 0, &["teams"]);
}

#[test]
fn descriptions_never_carry_environment_values() {
    let env = TestEnv::new();
    let mut text = env.teams_toml("");
    text.push_str("[teams.leaky]\npath = ");
    text.push_str(&toml_string(&env.project("docs").display().to_string()));
    text.push_str("\ndescription = \"key: ${SB_TEST_SECRET_KEY}\"\n");
    env.write_config(&text);
    let mut cmd = env.command();
    cmd.env("SB_TEST_SECRET_KEY", "sk-ant-api03-VISIBLEVISIBLEVISIBLE")
        .arg("--config")
        .arg(env.config_path())
        .args(["teams", "--json"]);
    let out = support::finish(cmd);
    assert!(
        !stdout(&out).contains("VISIBLEVISIBLE"),
        "the key was shown: {}",
        stdout(&out)
    );
    assert_exit(&out, 2, &["teams"]);
    assert!(
        stderr(&out).contains("teams.leaky.description: ${VAR} is not expanded here"),
        "{}",
        stderr(&out)
    );
    // $${ is still a literal.
    text = text.replace("${SB_TEST_SECRET_KEY}", "$${NOT_A_VAR}");
    env.write_config(&text);
    let v = env.run_json(&["teams"]);
    assert!(v.to_string().contains("key: ${NOT_A_VAR}"), "{v}");
}

/// `doctor` with no credentials in the environment, as JSON.
fn doctor_json(env: &TestEnv) -> serde_json::Value {
    let mut cmd = env.command();
    cmd.env_remove("ANTHROPIC_API_KEY")
        .arg("--config")
        .arg(env.config_path())
        .args(["doctor", "--json"]);
    support::parse_json(&support::finish(cmd))
}

fn check(report: &serde_json::Value, name: &str) -> serde_json::Value {
    report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

#[test]
fn doctor_flags_loose_file_modes_and_a_server_without_a_token() {
    let env = TestEnv::new();
    env.run_ok(&["sessions", "open", "frontend", "backend"]);
    let report = doctor_json(&env);
    assert_eq!(check(&report, "file modes")["outcome"], "ok", "{report}");

    std::fs::set_permissions(env.db_path(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let report = doctor_json(&env);
    let modes = check(&report, "file modes");
    assert_eq!(modes["outcome"], "fail", "{modes}");
    assert!(
        modes["detail"]
            .as_str()
            .is_some_and(|d| d.contains("switchboard.db (0644)")),
        "{modes}"
    );
    assert_eq!(report["ok"], false);

    // A live server that says it needs no token: on loopback a warning, elsewhere a failure.
    let me = switchboard::util::ProcessIdentity::current();
    let server_json = env.db_path().with_file_name("server.json");
    for (url, outcome) in [
        ("http://127.0.0.1:7717/mcp", "warn"),
        ("http://0.0.0.0:7717/mcp", "fail"),
    ] {
        let body = serde_json::json!({
            "pid": me.pid, "process_started_at": me.started_at, "url": url,
            "transport": "http", "auth": false,
        });
        std::fs::write(&server_json, body.to_string()).expect("write server.json");
        std::fs::set_permissions(&server_json, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let server = check(&doctor_json(&env), "server");
        assert_eq!(server["outcome"], outcome, "{url}: {server}");
        assert!(
            server["detail"]
                .as_str()
                .is_some_and(|d| d.contains("without a token")),
            "{server}"
        );
    }
}
