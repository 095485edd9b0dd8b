//! End-to-end tests of the `switchboard` binary: every command, in human and JSON output, with
//! the exit codes and messages a user sees. Each test runs in its own temp project (see
//! `tests/support`); JSON shapes are insta snapshots of redacted output.

mod support;

use std::io::Write;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use support::{assert_exit, exit_code, parse_json, session_ids, stderr, stdout, TestEnv};
use switchboard::store::{ProcessState, SessionStatus};
use switchboard::util::ProcessIdentity;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

/// Opens the session of `from -> to` through the binary and returns its id.
fn open(env: &TestEnv, from: &str, to: &str) -> String {
    let v = env.run_json(&["sessions", "open", from, to]);
    v["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no session_id in {v}"))
        .to_string()
}

/// Runs `args`, asserts the exit code is `code`, returns stderr.
fn fails(env: &TestEnv, args: &[&str], code: i32) -> String {
    let out = env.run(args);
    assert_exit(&out, code, args);
    let err = stderr(&out);
    // With --json the error is a JSON line `{"error": ..., "exit_code": N}` on stderr.
    match serde_json::from_str::<serde_json::Value>(err.trim()) {
        Ok(v) if args.contains(&"--json") => {
            assert_eq!(v["exit_code"], code, "{args:?}: {err}");
            v["error"].as_str().unwrap_or_default().to_string()
        }
        _ => err,
    }
}

/// Checks that every row of a table starts its left-aligned columns where the header does, and
/// ends its right-aligned columns where the header does.
fn assert_aligned(table: &str, left: &[&str], right: &[&str]) {
    let mut lines = table.lines();
    let header = lines.next().expect("a header line");
    let rows: Vec<&str> = lines.collect();
    assert!(!rows.is_empty(), "no rows in\n{table}");
    let at = |line: &str, i: usize| line.as_bytes().get(i).copied().unwrap_or(b' ');
    for h in left {
        let p = header
            .find(h)
            .unwrap_or_else(|| panic!("no {h} in {header:?}"));
        for row in &rows {
            assert!(
                at(row, p) != b' ' && (p == 0 || at(row, p - 1) == b' '),
                "column {h} (at {p}) is not aligned in:\n{table}"
            );
        }
    }
    for h in right {
        let end = header
            .find(h)
            .unwrap_or_else(|| panic!("no {h} in {header:?}"))
            + h.len();
        for row in &rows {
            assert!(
                at(row, end - 1) != b' ' && at(row, end) == b' ',
                "column {h} (ending at {end}) is not right-aligned in:\n{table}"
            );
        }
    }
}

/// The cells of a table row (cells are separated by two or more spaces).
fn cells(row: &str) -> Vec<String> {
    row.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// The row of a table that contains `needle`.
fn row_with<'a>(table: &'a str, needle: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no row with {needle:?} in:\n{table}"))
}

/// "just now" or "Ns ago": what a time from a moment ago looks like (a slow machine may take
/// more than a second between two commands).
fn is_recent(cell: &str) -> bool {
    cell == "just now"
        || cell
            .strip_suffix("s ago")
            .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n < 60))
}

// ---------------------------------------------------------------------------------------------
// redaction helper

#[test]
fn redaction_replaces_ids_times_pids_and_temp_paths() {
    let env = TestEnv::new();
    let tmp = env.path().display().to_string();
    let v = json!({
        "session_id": "0b0f0c4e-1234-4abc-8def-0123456789ab",
        "created_at": "2026-11-21T22:49:32.123Z",
        "owner_pid": 4242,
        "transcript": format!("{tmp}/home/0b0f0c4e-1234-4abc-8def-0123456789ab.jsonl"),
        "message_count": 3,
        "nothing": null,
    });
    assert_eq!(
        env.redact(v),
        json!({
            "session_id": "[uuid]",
            "created_at": "[time]",
            "owner_pid": "[pid]",
            "transcript": "[tmp]/home/[uuid].jsonl",
            "message_count": 3,
            "nothing": null,
        })
    );
}

// ---------------------------------------------------------------------------------------------
// allocator

/// The binary runs on jemalloc with the options of `switchboard::alloc::CONF` (one arena, small
/// thread caches, freed pages returned within half a second: the resident memory the benches
/// hold to). jemalloc prints the options it took at exit when asked to in its environment.
#[test]
fn the_binary_allocates_with_jemalloc_and_its_options() {
    let env = TestEnv::new();
    let mut cmd = env.command();
    cmd.arg("--version").env("MALLOC_CONF", "stats_print:true");
    let out = support::finish(cmd);
    assert!(out.status.success(), "{out:?}");
    let stats = String::from_utf8_lossy(&out.stderr);
    for option in [
        "opt.narenas: 1",
        "opt.tcache_max: 4096",
        "opt.dirty_decay_ms: 500",
        "opt.muzzy_decay_ms: 0",
    ] {
        assert!(
            stats.contains(option),
            "{option} not in jemalloc's stats:\n{stats}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// config check

#[test]
fn config_check_ok_human_names_teams_and_database() {
    let env = TestEnv::new();
    let out = env.run_ok(&["config", "check"]);
    assert!(
        out.contains(&format!("{}: ok", env.config_path().display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("database  {}", env.db_path().display())),
        "{out}"
    );
    assert!(out.contains("teams     3"), "{out}");
    for team in support::TEAMS {
        let line = row_with(&out, &format!("  {team} "));
        assert!(
            line.trim_end()
                .ends_with(&env.project(team).display().to_string()),
            "{line:?}"
        );
    }
}

#[test]
fn config_check_ok_json() {
    let env = TestEnv::new();
    let v = env.run_json(&["config", "check", "--format", "json"]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["database"], env.db_path().display().to_string());
    assert_eq!(v["config"], env.config_path().display().to_string());
    assert_eq!(v["teams"], json!(["backend", "docs", "frontend"]));
    insta::assert_json_snapshot!("config_check_ok", env.redact(v));
}

/// A teams file with seven problems, in file order.
fn broken_config(env: &TestEnv) -> String {
    format!(
        r#"[settings]
max_processes = 0
idle_timeout = "soon"

[database]
path = "data/switchboard.db"
colour = "red"

[teams.frontend]
path = "projects/frontend"

[teams.backend]
path = {missing}
agnet = "claude"

[teams."bad name"]
path = {docs}
"#,
        missing = support::toml_string(&env.path().join("projects/missing").display().to_string()),
        docs = support::toml_string(&env.project("docs").display().to_string()),
    )
}

const BROKEN_PATHS: [&str; 7] = [
    "settings.max_processes",
    "settings.idle_timeout",
    "database.colour",
    "teams.frontend.path",
    "teams.backend.path",
    "teams.backend.agnet",
    "teams.\"bad name\"",
];

#[test]
fn config_check_broken_human_prints_every_problem_on_stderr() {
    let env = TestEnv::new();
    env.write_config(&broken_config(&env));
    let out = env.run(&["config", "check"]);
    assert_exit(&out, 2, &["config", "check"]);
    assert_eq!(stdout(&out), "", "problems go to stderr");
    let err = stderr(&out);
    assert!(err.contains("7 problems"), "{err}");
    assert!(
        err.contains(&env.config_path().display().to_string()),
        "{err}"
    );
    for path in BROKEN_PATHS {
        assert!(
            err.contains(&format!("  - {path}: ")),
            "{path} missing in:\n{err}"
        );
    }
    assert!(err.contains("did you mean \"agent\""), "{err}");
    assert!(err.contains("must be an absolute path"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    // Every command refuses a broken config the same way; for the read-only ones the missing
    // folder is not one of the problems (they work without it).
    for args in [&["teams"][..], &["sessions", "list"], &["stats", "--json"]] {
        let err = fails(&env, args, 2);
        assert!(
            err.contains("6 problems") && !err.contains("does not exist"),
            "{args:?}: {err}"
        );
    }
    let err = fails(&env, &["wake", "frontend", "backend"], 2);
    assert!(err.contains("7 problems"), "wake: {err}");
}

#[test]
fn config_check_broken_json_lists_problems_on_stdout() {
    let env = TestEnv::new();
    env.write_config(&broken_config(&env));
    let out = env.run(&["config", "check", "--json"]);
    assert_exit(&out, 2, &["config", "check", "--json"]);
    let v = parse_json(&out);
    assert_eq!(v["ok"], false);
    let problems = v["problems"].as_array().expect("problems array");
    let paths: Vec<&str> = problems
        .iter()
        .map(|p| p["path"].as_str().expect("path"))
        .collect();
    assert_eq!(paths, BROKEN_PATHS);
    for p in problems {
        assert!(p["line"].is_u64() && p["column"].is_u64(), "{p}");
        assert!(!p["message"].as_str().expect("message").is_empty(), "{p}");
    }
    insta::assert_json_snapshot!("config_check_failure", env.redact(v));
}

#[test]
fn config_check_syntax_error_has_line_and_column() {
    let env = TestEnv::new();
    env.write_config("[database]\npath = \"x.db\"\n\n[teams.frontend\npath = \"/x\"\n");
    let v = parse_json(&env.run(&["config", "check", "--json"]));
    assert_eq!(v["ok"], false);
    let problems = v["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{v}");
    assert_eq!(problems[0]["path"], "");
    assert_eq!(problems[0]["line"], 4);
    assert!(problems[0]["column"].is_u64(), "{v}");
    assert!(
        problems[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("TOML syntax error")),
        "{v}"
    );
    let err = fails(&env, &["config", "check"], 2);
    assert!(err.contains("line 4, column"), "{err}");
}

#[test]
fn config_check_missing_file_names_the_path() {
    let env = TestEnv::new();
    let missing = env.path().join("nope").join("teams.toml");
    let missing_text = missing.display().to_string();
    for json in [false, true] {
        let mut args = vec!["--config", missing_text.as_str(), "config", "check"];
        if json {
            args.push("--json");
        }
        let out = env.run_raw(&args);
        assert_exit(&out, 2, &args);
        let err = stderr(&out);
        assert!(err.contains(&missing_text), "{err}");
        assert!(err.contains("cannot read the teams file"), "{err}");
    }
}

#[test]
fn config_is_discovered_in_cwd_then_config_dir() {
    let env = TestEnv::new();
    // ./teams.toml (the current dir is the temp dir), once trusted.
    let out = env.run_raw(&["config", "trust"]);
    assert_exit(&out, 0, &["config", "trust"]);
    let out = env.run_raw(&["config", "check"]);
    assert_exit(&out, 0, &["config", "check"]);
    assert!(stdout(&out).contains("teams.toml: ok"), "{}", stdout(&out));

    // $XDG_CONFIG_HOME/switchboard/teams.toml; its relative database path follows it.
    let dir = env.xdg_config_home().join("switchboard");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::rename(env.config_path(), dir.join("teams.toml")).expect("move teams.toml");
    let v = parse_json(&env.run_raw(&["config", "check", "--json"]));
    assert_eq!(v["config"], dir.join("teams.toml").display().to_string());
    assert_eq!(
        v["database"],
        dir.join("data/switchboard.db").display().to_string()
    );

    // Nowhere: exit 2, every place looked at is named.
    std::fs::remove_file(dir.join("teams.toml")).expect("remove");
    let out = env.run_raw(&["config", "check"]);
    assert_exit(&out, 2, &["config", "check"]);
    let err = stderr(&out);
    assert!(err.contains("no teams file found"), "{err}");
    assert!(
        err.contains(&env.path().join("teams.toml").display().to_string()),
        "{err}"
    );
    assert!(
        err.contains(&dir.join("teams.toml").display().to_string()),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// sessions open

#[test]
fn sessions_open_creates_once_json() {
    let env = TestEnv::new();
    let first = env.run_json(&["sessions", "open", "frontend", "backend"]);
    let second = env.run_json(&[
        "sessions", "open", "frontend", "backend", "--format", "json",
    ]);
    let id = first["session_id"].as_str().expect("session_id");
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(&id[14..15], "4", "a UUID v4: {id}");
    assert_eq!(
        second["session_id"], id,
        "the second open returns the same session"
    );
    assert_eq!(first["from_team"], "frontend");
    assert_eq!(first["to_team"], "backend");
    assert_eq!(first["status"], "active");
    assert_eq!(first["process_state"], "stopped");
    assert_eq!(first["message_count"], 0);
    assert_eq!(first["created_at"], first["last_used_at"]);
    assert_eq!(session_ids(&env.run_json(&["sessions", "list"])), [id]);
    insta::assert_json_snapshot!("session_open", env.redact(first));
}

#[test]
fn sessions_open_human_shows_id_and_pair() {
    let env = TestEnv::new();
    let out = env.run_ok(&["sessions", "open", "frontend", "backend"]);
    let id = session_ids(&env.run_json(&["sessions", "list"])).remove(0);
    assert!(out.starts_with(&format!("session         {id}\n")), "{out}");
    assert!(
        out.contains("\npair            frontend -> backend\n"),
        "{out}"
    );
    assert!(out.contains("\nstatus          active\n"), "{out}");
    assert!(out.contains("\nprocess state   stopped\n"), "{out}");
    assert!(out.contains("\nmessages        0\n"), "{out}");
    assert!(
        out.contains("(just now)") || out.contains("s ago)"),
        "{out}"
    );
    // Opening again shows the same session.
    let again = env.run_ok(&["sessions", "open", "frontend", "backend"]);
    assert!(again.contains(&id), "{again}");
}

#[test]
fn sessions_open_rejects_bad_teams() {
    let env = TestEnv::new();
    for json in [false, true] {
        let extra: &[&str] = if json { &["--json"] } else { &[] };
        let args = |a: &[&'static str]| [a, extra].concat();

        let err = fails(&env, &args(&["sessions", "open", "frontend", "nobody"]), 2);
        assert!(err.contains("unknown team \"nobody\""), "{err}");
        assert!(
            err.contains("backend, docs, frontend"),
            "lists the known teams: {err}"
        );

        let err = fails(&env, &args(&["sessions", "open", "nobody", "backend"]), 2);
        assert!(err.contains("\"nobody\""), "{err}");

        let err = fails(
            &env,
            &args(&["sessions", "open", "frontend", "frontend"]),
            2,
        );
        assert!(err.contains("itself"), "{err}");

        let err = fails(&env, &args(&["sessions", "open", "bad name", "backend"]), 2);
        assert!(err.contains("invalid team name \"bad name\""), "{err}");

        let err = fails(&env, &args(&["sessions", "open", "frontend", "a/../b"]), 2);
        assert!(err.contains("invalid team name"), "{err}");
    }
    assert_eq!(env.run_json(&["sessions", "list"]), json!([]));
}

// ---------------------------------------------------------------------------------------------
// sessions list

/// Four sessions in different states:
/// - fb frontend -> backend: active, stopped, created 5h ago, used 1m ago
/// - fd frontend -> docs:    active, idle (owned by this test process), new
/// - bd backend -> docs:     archived, stopped, new
/// - df docs -> frontend:    active, stopped, created 5h ago, used 3h ago
struct Four {
    fb: String,
    fd: String,
    bd: String,
    df: String,
}

fn seed_four(env: &TestEnv) -> Four {
    let fb = open(env, "frontend", "backend");
    let df = open(env, "docs", "frontend");
    let fd = open(env, "frontend", "docs");
    let bd = open(env, "backend", "docs");
    let m = env.manager();
    m.set_status(&bd, SessionStatus::Archived).expect("archive");
    support::hold_session(&m, &fd, ProcessState::Idle);
    env.backdate(&fb, 5 * HOUR, MINUTE);
    env.backdate(&df, 5 * HOUR, 3 * HOUR);
    Four { fb, fd, bd, df }
}

#[test]
fn sessions_list_filters() {
    let env = TestEnv::new();
    let Four { fb, fd, bd, df } = seed_four(&env);
    let list = |args: &[&str]| {
        let all = [&["sessions", "list"][..], args].concat();
        session_ids(&env.run_json(&all))
    };

    // Most recently used first; fd and bd are equally new, the later row first.
    assert_eq!(list(&[]), [&*bd, &*fd, &*fb, &*df]);
    assert_eq!(list(&["--from", "frontend"]), [&*fd, &*fb]);
    assert_eq!(list(&["--to", "docs"]), [&*bd, &*fd]);
    assert_eq!(list(&["--from", "docs", "--to", "frontend"]), [&*df]);
    assert_eq!(
        list(&["--from", "backend", "--to", "frontend"]),
        Vec::<String>::new()
    );
    assert_eq!(list(&["--status", "archived"]), [&*bd]);
    assert_eq!(list(&["--status", "active"]), [&*fd, &*fb, &*df]);
    assert_eq!(list(&["--status", "compact_pending"]), Vec::<String>::new());
    assert_eq!(list(&["--state", "idle"]), [&*fd]);
    assert_eq!(list(&["--state", "stopped"]), [&*bd, &*fb, &*df]);
    assert_eq!(list(&["--since", "2h"]), [&*bd, &*fd, &*fb]);
    assert_eq!(list(&["--since", "30s"]), [&*bd, &*fd]);
    assert_eq!(list(&["--created-since", "2h"]), [&*bd, &*fd]);
    assert_eq!(list(&["--created-since", "6h"]), [&*bd, &*fd, &*fb, &*df]);
    let two_hours_ago = humantime::format_rfc3339_seconds(SystemTime::now() - 2 * HOUR).to_string();
    assert_eq!(list(&["--since", &two_hours_ago]), [&*bd, &*fd, &*fb]);
    let four_hours_ago =
        humantime::format_rfc3339_seconds(SystemTime::now() - 4 * HOUR).to_string();
    assert_eq!(list(&["--since", &four_hours_ago]).len(), 4);
    let in_an_hour = humantime::format_rfc3339_seconds(SystemTime::now() + HOUR).to_string();
    assert_eq!(
        list(&["--created-since", &in_an_hour]),
        Vec::<String>::new()
    );
    assert_eq!(list(&["--limit", "2"]), [&*bd, &*fd]);
    assert_eq!(list(&["--limit", "100"]).len(), 4);
    assert_eq!(
        list(&["--from", "frontend", "--state", "stopped", "--since", "1h"]),
        [&*fb]
    );

    // The same filters in human output.
    let out = env.run_ok(&["sessions", "list", "--status", "archived"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(row_with(&out, &bd).contains("archived"), "{out}");
}

#[test]
fn sessions_list_json() {
    let env = TestEnv::new();
    let fb = open(&env, "frontend", "backend");
    let df = open(&env, "docs", "frontend");
    let m = env.manager();
    m.increment_message_count(&fb, 3).expect("messages");
    m.record_usage_totals(&fb, 1200, 340, 0.25).expect("usage");
    let v = env.run_json(&["sessions", "list"]);
    assert_eq!(session_ids(&v), [&*fb, &*df], "fb was used last");
    assert_eq!(v[0]["message_count"], 3);
    assert_eq!(v[0]["input_tokens"], 1200);
    assert_eq!(v[0]["cost_usd"], 0.25);
    insta::assert_json_snapshot!("sessions_list", env.redact(v));
}

#[test]
fn sessions_list_human_table() {
    let env = TestEnv::new();
    let fb = open(&env, "frontend", "backend");
    let df = open(&env, "docs", "frontend");
    env.manager()
        .increment_message_count(&fb, 1234)
        .expect("messages");
    env.backdate(&df, 2 * 24 * HOUR + HOUR, 3 * HOUR + 10 * MINUTE);
    let out = env.run_ok(&["sessions", "list"]);
    let header = out.lines().next().expect("header");
    assert_eq!(
        cells(header),
        [
            "SESSION",
            "FROM",
            "TO",
            "STATUS",
            "STATE",
            "MSGS",
            "LAST USED",
            "CREATED"
        ]
    );
    assert!(
        header.starts_with(&format!("{:<38}FROM", "SESSION")),
        "SESSION is as wide as an id: {header:?}"
    );
    assert_aligned(
        &out,
        &[
            "SESSION",
            "FROM",
            "TO",
            "STATUS",
            "STATE",
            "LAST USED",
            "CREATED",
        ],
        &["MSGS"],
    );
    assert!(out.lines().all(|l| l == l.trim_end()), "no trailing spaces");

    let row = cells(row_with(&out, &fb));
    assert_eq!(
        row[..6],
        [&fb, "frontend", "backend", "active", "stopped", "1234"]
    );
    assert!(is_recent(&row[6]), "last used {row:?}");
    assert!(is_recent(&row[7]), "created {row:?}");

    let row = cells(row_with(&out, &df));
    assert_eq!(
        row[..6],
        [&df, "docs", "frontend", "active", "stopped", "0"]
    );
    assert_eq!(row[6], "3h ago");
    assert_eq!(row[7], "2d ago");

    // Most recently used first.
    assert!(out.find(&fb) < out.find(&df), "{out}");
}

#[test]
fn sessions_list_empty() {
    let env = TestEnv::new();
    assert_eq!(env.run_ok(&["sessions", "list"]), "no sessions\n");
    assert_eq!(env.run_json(&["sessions", "list"]), json!([]));
    open(&env, "frontend", "backend");
    assert_eq!(
        env.run_ok(&["sessions", "list", "--from", "docs"]),
        "no sessions\n"
    );
    assert_eq!(
        env.run_json(&["sessions", "list", "--status", "error"]),
        json!([])
    );
}

#[test]
fn sessions_list_rejects_bad_arguments() {
    let env = TestEnv::new();
    open(&env, "frontend", "backend");
    for (args, wanted) in [
        (&["--status", "nope"][..], "nope"),
        (
            &["--status", "Active"],
            "expected one of: active, compact_pending",
        ),
        (&["--state", "nope"], "expected one of: stopped, spawning"),
        (&["--since", "nonsense"], "neither a duration"),
        (&["--since", ""], "neither a duration"),
        (&["--created-since", "yesterday"], "neither a duration"),
        (&["--limit", "0"], "--limit"),
        (&["--limit", "-1"], "-1"),
        (&["--limit", "many"], "--limit"),
        (&["--from", "bad name"], "invalid team name"),
        (&["--to", "a/b"], "invalid team name"),
        (&["--from", "nope"], "unknown team"),
        (&["--to", "nope"], "unknown team"),
        (&["--colour"], "--colour"),
    ] {
        for json in [false, true] {
            let mut all = [&["sessions", "list"][..], args].concat();
            if json {
                all.push("--json");
            }
            let out = env.run(&all);
            assert_exit(&out, 2, &all);
            assert_eq!(stdout(&out), "", "{all:?}");
            assert!(stderr(&out).contains(wanted), "{all:?}: {}", stderr(&out));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sessions show

#[test]
fn sessions_show_by_id_and_pair() {
    let env = TestEnv::with_extra_config("[settings.compaction]\nmax_messages = 5\n");
    let id = open(&env, "frontend", "backend");
    let m = env.manager();
    m.increment_message_count(&id, 7).expect("messages");
    m.record_usage_totals(&id, 1200, 340, 0.25).expect("usage");
    support::hold_session(&m, &id, ProcessState::Idle);

    let by_id = env.run_json(&["sessions", "show", &id]);
    let by_pair = env.run_json(&["sessions", "show", "frontend:backend", "--format", "json"]);
    let by_upper_id = env.run_json(&["sessions", "show", &id.to_uppercase()]);
    assert_eq!(by_id, by_pair);
    assert_eq!(by_id, by_upper_id);
    assert_eq!(by_id["session_id"], id.as_str());
    assert_eq!(by_id["message_count"], 7);
    assert_eq!(by_id["output_tokens"], 340);
    assert_eq!(by_id["process_state"], "idle");
    assert_eq!(by_id["owner_pid"], std::process::id());
    insta::assert_json_snapshot!("session_show", env.redact(by_id));

    for reference in [id.as_str(), "frontend:backend"] {
        let out = env.run_ok(&["sessions", "show", reference]);
        assert!(out.starts_with(&format!("session         {id}\n")), "{out}");
        assert!(
            out.contains("\npair            frontend -> backend\n"),
            "{out}"
        );
        assert!(out.contains("\nprocess state   idle\n"), "{out}");
        assert!(
            out.contains("\nmessages        7 (due for compaction)\n"),
            "{out}"
        );
        assert!(
            out.contains("\ntokens          1200 in, 340 out\n"),
            "{out}"
        );
        assert!(out.contains("\ncost            $0.2500\n"), "{out}");
        assert!(
            out.contains(&format!(
                "\nowner           pid {}, heartbeat ",
                std::process::id()
            )),
            "{out}"
        );
    }
}

#[test]
fn sessions_show_not_found_and_bad_references() {
    let env = TestEnv::new();
    open(&env, "frontend", "backend");
    let unknown = "0b0f0c4e-1234-4abc-8def-0123456789ab";
    for json in [false, true] {
        let extra: &[&str] = if json { &["--json"] } else { &[] };
        for reference in [unknown, "frontend:docs", "backend:frontend"] {
            let args = [&["sessions", "show", reference][..], extra].concat();
            let out = env.run(&args);
            assert_exit(&out, 1, &args);
            assert_eq!(stdout(&out), "", "{args:?}");
            let err = stderr(&out);
            assert!(err.contains("not found"), "{err}");
            assert!(err.contains(reference), "{err}");
        }
        for (reference, wanted) in [
            ("garbage", "neither a session id (UUID) nor a pair"),
            ("frontend:", "not a pair"),
            (":backend", "not a pair"),
            ("a:b:c", "not a pair"),
            ("0b0f0c4e-1234-4abc-8def", "neither a session id"),
            // A team the config does not know: a usage error, as for `report`.
            ("nobody:backend", "unknown team \"nobody\""),
            ("frontend:nope", "unknown team \"nope\""),
        ] {
            let args = [&["sessions", "show", reference][..], extra].concat();
            let err = fails(&env, &args, 2);
            assert!(err.contains(wanted), "{args:?}: {err}");
        }
        let err = fails(
            &env,
            &[&["sessions", "show", "bad name:backend"][..], extra].concat(),
            2,
        );
        assert!(err.contains("invalid team name"), "{err}");
    }
}

#[test]
fn tells_show_refuses_a_prefix_shorter_than_four_characters() {
    let env = TestEnv::new();
    open(&env, "frontend", "backend");
    for json in [false, true] {
        let extra: &[&str] = if json { &["--json"] } else { &[] };
        for id in ["abc", "a", "0b0"] {
            let args = [&["tells", "show", id][..], extra].concat();
            let err = fails(&env, &args, 2);
            assert!(
                err.contains("too short") && err.contains("at least 4 characters"),
                "{args:?}: {err}"
            );
        }
        // Long enough but unknown: not found (exit 1).
        let args = [&["tells", "show", "abcd"][..], extra].concat();
        assert!(fails(&env, &args, 1).contains("not found"));
    }
}

#[test]
fn a_missing_team_folder_is_warned_about_once() {
    let env = TestEnv::new();
    open(&env, "frontend", "backend");
    std::fs::remove_dir(env.project("backend")).expect("remove backend's folder");
    for args in [
        &["sessions", "list"][..],
        &["sessions", "show", "frontend:backend"],
        &["stats"],
    ] {
        let out = env.run(args);
        assert_exit(&out, 0, args);
        let err = stderr(&out);
        let about: Vec<&str> = err
            .lines()
            .filter(|l| {
                l.contains(&*env.project("backend").display().to_string())
                    || l.contains("folder is missing")
            })
            .collect();
        assert_eq!(about.len(), 1, "{args:?}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// sessions delete

#[test]
fn sessions_delete_without_yes_and_no_terminal_refuses() {
    let env = TestEnv::new();
    let id = open(&env, "frontend", "backend");
    for args in [
        &["sessions", "delete", "frontend:backend"][..],
        &["sessions", "delete", &id, "--json"],
        &["sessions", "delete", &id, "--transcript"],
    ] {
        let err = fails(&env, args, 2);
        assert!(err.contains("--yes"), "{err}");
        assert!(err.contains("not a terminal"), "{err}");
    }
    assert_eq!(session_ids(&env.run_json(&["sessions", "list"])), [&*id]);
}

#[test]
fn sessions_delete_with_yes() {
    let env = TestEnv::new();
    let fb = open(&env, "frontend", "backend");
    let fd = open(&env, "frontend", "docs");
    env.manager()
        .increment_message_count(&fb, 2)
        .expect("messages");

    let v = env.run_json(&["sessions", "delete", &fb, "--yes"]);
    assert_eq!(v["deleted"]["session_id"], fb.as_str());
    assert_eq!(v["deleted"]["message_count"], 2);
    assert_eq!(v["transcript"], Value::Null);
    assert_eq!(v["transcript_removed"], false);
    insta::assert_json_snapshot!("session_delete", env.redact(v));
    assert_eq!(session_ids(&env.run_json(&["sessions", "list"])), [&*fd]);
    assert!(fails(&env, &["sessions", "show", &fb], 1).contains("not found"));

    let out = env.run_ok(&["sessions", "delete", "frontend:docs", "-y"]);
    assert_eq!(out, format!("deleted session {fd} (frontend -> docs)\n"));
    assert_eq!(env.run_ok(&["sessions", "list"]), "no sessions\n");

    // Gone: deleting again is "not found"; a new open makes a new session.
    let err = fails(&env, &["sessions", "delete", "frontend:docs", "--yes"], 1);
    assert!(err.contains("not found"), "{err}");
    assert_ne!(open(&env, "frontend", "backend"), fb);
    assert_eq!(
        env.run_json(&["stats"])["total_sessions"],
        1,
        "the stats totals follow deletes"
    );
}

#[test]
fn sessions_delete_transcript() {
    let env = TestEnv::new();
    let fb = open(&env, "frontend", "backend");
    let transcript = env.transcript_path("backend", &fb);
    let folder = transcript.parent().expect("folder");
    std::fs::create_dir_all(folder).expect("mkdir");
    std::fs::write(&transcript, "{\"type\":\"user\"}\n").expect("write transcript");
    let other = folder.join("0b0f0c4e-1234-4abc-8def-0123456789ab.jsonl");
    std::fs::write(&other, "{}\n").expect("write other transcript");

    let v = env.run_json(&[
        "sessions",
        "delete",
        "frontend:backend",
        "--yes",
        "--transcript",
    ]);
    assert_eq!(v["transcript"], transcript.display().to_string());
    assert_eq!(v["transcript_removed"], true);
    assert!(!transcript.exists(), "the transcript is removed");
    assert!(other.exists(), "other sessions' transcripts stay");
    insta::assert_json_snapshot!("session_delete_transcript", env.redact(v));

    // A missing transcript is fine (human output says so).
    let fd = open(&env, "frontend", "docs");
    let missing = env.transcript_path("docs", &fd);
    let out = env.run_ok(&["sessions", "delete", &fd, "--yes", "--transcript"]);
    assert_eq!(
        out,
        format!(
            "deleted session {fd} (frontend -> docs)\nno transcript at {}\n",
            missing.display()
        )
    );

    // And in human output, a removed one is named.
    let bd = open(&env, "backend", "docs");
    let transcript = env.transcript_path("docs", &bd);
    std::fs::create_dir_all(transcript.parent().expect("folder")).expect("mkdir");
    std::fs::write(&transcript, "{}\n").expect("write transcript");
    let out = env.run_ok(&["sessions", "delete", &bd, "--yes", "--transcript"]);
    assert!(
        out.ends_with(&format!("removed transcript {}\n", transcript.display())),
        "{out}"
    );
    assert!(!transcript.exists());
    assert_eq!(env.run_json(&["sessions", "list"]), json!([]));
}

// ---------------------------------------------------------------------------------------------
// sessions compact (through the agent: every team runs the scripted agent)

/// The `results` of a compaction report as (from, to, state) triples, in order.
fn compact_results(v: &Value) -> Vec<(String, String, String)> {
    v["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results array in {v}"))
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_else(|| panic!("no {k} in {r}"));
            (
                s("from_team").into(),
                s("to_team").into(),
                s("state").into(),
            )
        })
        .collect()
}

/// (message_count, compaction_count, status) of a session, as `sessions show --json` says.
fn compaction_fields(env: &TestEnv, session: &str) -> (i64, i64, String) {
    let v = env.run_json(&["sessions", "show", session]);
    (
        v["message_count"].as_i64().expect("message_count"),
        v["compaction_count"].as_i64().expect("compaction_count"),
        v["status"].as_str().expect("status").to_string(),
    )
}

#[test]
fn sessions_compact_one_session() {
    let env = TestEnv::with_scripted_agent();
    let fb = open(&env, "frontend", "backend");
    let fd = open(&env, "frontend", "docs");
    let m = env.manager();
    m.increment_message_count(&fb, 7).expect("messages");
    m.increment_message_count(&fd, 3).expect("messages");

    // JSON: the agent compacted; the session's counters are reset.
    let v = env.run_json(&["sessions", "compact", "frontend:backend"]);
    assert_eq!(v["dry_run"], false);
    assert_eq!(v["compacted"], 1, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(
        compact_results(&v),
        [("frontend".into(), "backend".into(), "answered".into())]
    );
    let r = &v["results"][0];
    assert_eq!(r["session_id"], fb.as_str());
    assert_eq!(r["error"], Value::Null);
    let (pre, post) = (
        r["pre_tokens"].as_i64().expect("pre_tokens"),
        r["post_tokens"].as_i64().expect("post_tokens"),
    );
    assert!(pre >= post && post > 0, "{pre} -> {post}");
    assert_eq!(
        r["result"],
        format!(
            "compacted: context {pre} tokens before (the model API's count), about {post} after \
             (the agent's estimate: summary plus re-attached context)"
        )
    );
    assert_eq!(session_ids(&v["sessions"]), [&*fb]);
    let s = &v["sessions"][0];
    assert_eq!(s["message_count"], 0, "{s}");
    assert_eq!(s["compaction_count"], 1, "{s}");
    assert_eq!(s["status"], "active", "{s}");
    assert_eq!(s["process_state"], "stopped", "{s}");
    assert_eq!(s["owner_pid"], Value::Null, "{s}");
    assert_eq!(s["last_pre_compact_tokens"], pre);
    assert_eq!(s["last_post_compact_tokens"], post);
    insta::assert_json_snapshot!("session_compact", env.redact(v));
    assert_eq!(compaction_fields(&env, &fb), (0, 1, "active".into()));
    assert!(
        env.transcript_path("backend", &fb).exists(),
        "the agent ran in backend's folder"
    );
    env.assert_no_agents();

    // Human: a result table and a summary line.
    let out = env.run_ok(&["sessions", "compact", &fd]);
    let header = out.lines().next().expect("header");
    assert_eq!(cells(header), ["FROM", "TO", "RESULT", "BEFORE", "AFTER"]);
    assert_aligned(
        out.trim_end()
            .rsplit_once('\n')
            .map_or(out.as_str(), |(table, _)| table),
        &["FROM", "TO", "RESULT"],
        &["BEFORE", "AFTER"],
    );
    let row = cells(row_with(&out, "frontend  docs"));
    assert_eq!(row[..2], ["frontend", "docs"]);
    assert!(row[2].starts_with("compacted: "), "{out}");
    assert!(
        out.ends_with("\ncompacted 1 of 1 session(s); 0 failed\n"),
        "{out}"
    );
    assert_eq!(compaction_fields(&env, &fd), (0, 1, "active".into()));

    // Dry run on one session: listed, nothing changed, no agent started.
    let bd = open(&env, "backend", "docs");
    m.increment_message_count(&bd, 4).expect("messages");
    let out = env.run_ok(&["sessions", "compact", "backend:docs", "--dry-run"]);
    assert!(row_with(&out, &bd).contains("backend"), "{out}");
    assert!(
        out.ends_with("1 session(s) selected; dry run, nothing changed\n"),
        "{out}"
    );
    assert_eq!(compaction_fields(&env, &bd), (4, 0, "active".into()));
    assert!(!env.transcript_path("docs", &bd).exists(), "no agent ran");

    // An archived session fails (exit 1), in both formats, and stays as it was.
    m.set_status(&bd, SessionStatus::Archived).expect("archive");
    let out = env.run(&["sessions", "compact", &bd]);
    assert_exit(&out, 1, &["sessions", "compact", &bd]);
    let text = stdout(&out);
    let row = row_with(&text, "backend  docs");
    assert!(
        row.contains("failed: ") && row.contains("archived"),
        "{text}"
    );
    assert!(
        text.ends_with("\ncompacted 0 of 1 session(s); 1 failed\n"),
        "{text}"
    );
    let out = env.run(&["sessions", "compact", &bd, "--json"]);
    assert_exit(&out, 1, &["sessions", "compact", &bd, "--json"]);
    let v = parse_json(&out);
    assert_eq!(
        (v["compacted"].clone(), v["failed"].clone()),
        (json!(0), json!(1))
    );
    assert_eq!(v["results"][0]["state"], "failed");
    assert!(
        v["results"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("archived")),
        "{v}"
    );
    assert_eq!(compaction_fields(&env, &bd), (4, 0, "archived".into()));

    // An unknown session is not found.
    let err = fails(&env, &["sessions", "compact", "docs:backend"], 1);
    assert!(err.contains("not found"), "{err}");

    // Neither can one that a live process is compacting now.
    let df = open(&env, "docs", "frontend");
    support::hold_session(&m, &df, ProcessState::Processing);
    m.set_status(&df, SessionStatus::Compacting)
        .expect("compacting");
    let out = env.run(&["sessions", "compact", "docs:frontend", "--json"]);
    assert_exit(&out, 1, &["sessions", "compact", "docs:frontend"]);
    let v = parse_json(&out);
    assert!(
        v["results"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("compacting already")),
        "{v}"
    );
    let v = env.run_json(&["sessions", "compact", "--due", "--dry-run"]);
    assert_eq!(
        v["sessions"],
        json!([]),
        "compacting sessions are never due"
    );
    env.assert_no_agents();
}

#[test]
fn sessions_compact_due() {
    let env = TestEnv::scripted_with_config(
        "[settings.compaction]\nmax_messages = 50\nstale_messages = 10\nstale_age = \"1h\"\n",
    );
    let fb = open(&env, "frontend", "backend"); // 600 messages: due (max_messages)
    let fd = open(&env, "frontend", "docs"); // 20, unused for 2h: due (stale)
    let bd = open(&env, "backend", "docs"); // 20, used now: not due
    let df = open(&env, "docs", "frontend"); // 5, unused for 2h: not due
    let db = open(&env, "docs", "backend"); // 100, archived: never due
    let m = env.manager();
    for (id, n) in [(&fb, 600), (&fd, 20), (&bd, 20), (&df, 5), (&db, 100)] {
        m.increment_message_count(id, n).expect("messages");
    }
    m.set_status(&db, SessionStatus::Archived).expect("archive");
    env.backdate(&fd, 3 * HOUR, 2 * HOUR);
    env.backdate(&df, 3 * HOUR, 2 * HOUR);
    let sessions = || env.run_json(&["sessions", "list"]);
    let before = sessions();
    assert_eq!(env.run_json(&["stats"])["due_for_compaction"], 2);

    // Dry run: lists the due sessions, most messages first, changes nothing.
    let v = env.run_json(&["sessions", "compact", "--due", "--dry-run"]);
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["compacted"], 0);
    assert_eq!(v["failed"], 0);
    assert_eq!(v["results"], json!([]));
    assert_eq!(session_ids(&v["sessions"]), [&*fb, &*fd]);
    insta::assert_json_snapshot!("sessions_compact_due_dry_run", env.redact(v));
    let out = env.run_ok(&["sessions", "compact", "--due", "--dry-run"]);
    assert!(out.find(&fb) < out.find(&fd), "{out}");
    assert!(
        !out.contains(&bd) && !out.contains(&df) && !out.contains(&db),
        "{out}"
    );
    assert!(
        out.ends_with("2 session(s) due for compaction; dry run, nothing changed\n"),
        "{out}"
    );
    assert_eq!(sessions(), before, "a dry run changes nothing");
    assert!(
        !env.home().join(".claude").exists(),
        "a dry run starts no agent"
    );

    // The human show marks them too.
    let out = env.run_ok(&["sessions", "show", &fb]);
    assert!(
        out.contains("\nmessages        600 (due for compaction)\n"),
        "{out}"
    );
    let out = env.run_ok(&["sessions", "show", &bd]);
    assert!(out.contains("\nmessages        20\n"), "{out}");

    // For real: exactly the due sessions are compacted, most messages first.
    let v = env.run_json(&["sessions", "compact", "--due"]);
    assert_eq!(v["dry_run"], false);
    assert_eq!(
        (v["compacted"].clone(), v["failed"].clone()),
        (json!(2), json!(0)),
        "{v}"
    );
    assert_eq!(
        compact_results(&v),
        [
            ("frontend".into(), "backend".into(), "answered".into()),
            ("frontend".into(), "docs".into(), "answered".into()),
        ]
    );
    for r in v["results"].as_array().expect("results") {
        assert!(r["pre_tokens"].is_i64() && r["post_tokens"].is_i64(), "{r}");
    }
    assert_eq!(session_ids(&v["sessions"]), [&*fb, &*fd]);
    assert_eq!(compaction_fields(&env, &fb), (0, 1, "active".into()));
    assert_eq!(compaction_fields(&env, &fd), (0, 1, "active".into()));
    assert_eq!(compaction_fields(&env, &bd), (20, 0, "active".into()));
    assert_eq!(compaction_fields(&env, &df), (5, 0, "active".into()));
    assert_eq!(compaction_fields(&env, &db), (100, 0, "archived".into()));
    env.assert_no_agents();

    // Nothing is due any more.
    assert_eq!(
        env.run_ok(&["sessions", "compact", "--due"]),
        "0 session(s) due for compaction\n"
    );
    let v = env.run_json(&["sessions", "compact", "--due"]);
    assert_eq!(v["sessions"], json!([]));
    assert_eq!(v["compacted"], 0);

    // --jobs 1, human: two more sessions become due and are compacted one at a time.
    m.increment_message_count(&bd, 100).expect("messages");
    m.increment_message_count(&df, 60).expect("messages");
    let out = env.run_ok(&["sessions", "compact", "--due", "--jobs", "1"]);
    let rows: Vec<Vec<String>> = out.lines().skip(1).map(cells).collect();
    assert_eq!(rows.len(), 3, "two rows and the summary:\n{out}");
    assert_eq!(rows[0][..2], ["backend", "docs"], "{out}");
    assert_eq!(rows[1][..2], ["docs", "frontend"], "{out}");
    assert!(
        rows[..2].iter().all(|r| r[2].starts_with("compacted: ")),
        "{out}"
    );
    assert!(
        out.ends_with("\ncompacted 2 of 2 session(s); 0 failed\n"),
        "{out}"
    );
    assert_eq!(compaction_fields(&env, &bd), (0, 1, "active".into()));
    assert_eq!(compaction_fields(&env, &df), (0, 1, "active".into()));
    assert_eq!(compaction_fields(&env, &fb), (0, 1, "active".into()));
    env.assert_no_agents();
}

#[test]
fn sessions_compact_needs_a_session_or_due() {
    let env = TestEnv::new();
    open(&env, "frontend", "backend");
    for args in [
        &["sessions", "compact"][..],
        &["sessions", "compact", "--dry-run"],
        &["sessions", "compact", "--json"],
        &["sessions", "compact", "--jobs", "2"],
        &["sessions", "compact", "--due", "frontend:backend"],
        &["sessions", "compact", "--due", "--jobs", "0"],
        &["sessions", "compact", "--due", "--jobs", "many"],
    ] {
        let out = env.run(args);
        assert_exit(&out, 2, args);
        assert_eq!(stdout(&out), "", "{args:?}");
    }
    let err = fails(&env, &["sessions", "compact", "garbage"], 2);
    assert!(err.contains("neither a session id"), "{err}");
    let out = env.run_ok(&["sessions", "compact", "--due"]);
    assert_eq!(out, "0 session(s) due for compaction\n");
    let v = env.run_json(&["sessions", "show", "frontend:backend"]);
    assert_eq!(v["status"], "active");
    assert_eq!(v["compaction_count"], 0);
}

// ---------------------------------------------------------------------------------------------
// stats

struct StatsSeed {
    fb: String,
    fd: String,
    bd: String,
}

/// fb 30 msgs (1000 in, 200 out, $0.25); fd 60 msgs, idle, due (500 in, 100 out, $0.50);
/// bd 5 msgs, archived; df no messages.
fn seed_stats(env: &TestEnv) -> StatsSeed {
    let fb = open(env, "frontend", "backend");
    let fd = open(env, "frontend", "docs");
    let bd = open(env, "backend", "docs");
    open(env, "docs", "frontend");
    let m = env.manager();
    m.increment_message_count(&fb, 30).expect("messages");
    m.record_usage_totals(&fb, 1000, 200, 0.25).expect("usage");
    m.increment_message_count(&fd, 60).expect("messages");
    m.record_usage_totals(&fd, 400, 60, 0.125).expect("usage");
    m.record_usage_totals(&fd, 100, 40, 0.375).expect("usage");
    support::hold_session(&m, &fd, ProcessState::Idle);
    m.increment_message_count(&bd, 5).expect("messages");
    m.set_status(&bd, SessionStatus::Archived).expect("archive");
    StatsSeed { fb, fd, bd }
}

#[test]
fn stats_json() {
    let env = TestEnv::with_extra_config("[settings.compaction]\nmax_messages = 50\n");
    let StatsSeed { fb, fd, bd } = seed_stats(&env);
    let v = env.run_json(&["stats"]);
    assert_eq!(v["total_sessions"], 4);
    assert_eq!(v["total_messages"], 95);
    assert_eq!(v["total_input_tokens"], 1500);
    assert_eq!(v["total_output_tokens"], 300);
    assert_eq!(v["total_cost_usd"], 0.75);
    assert_eq!(v["due_for_compaction"], 1);
    assert_eq!(
        v["by_status"],
        json!({"active": 3, "archived": 1, "compact_pending": 0, "compacting": 0, "error": 0})
    );
    assert_eq!(
        v["by_process_state"],
        json!({"idle": 1, "processing": 0, "spawning": 0, "stopped": 3, "terminating": 0})
    );
    assert_eq!(
        v["per_team"],
        json!([
            {"team": "backend", "sessions_as_caller": 1, "sessions_as_callee": 1,
             "messages_as_caller": 5, "messages_as_callee": 30, "cost_usd_as_callee": 0.25},
            {"team": "docs", "sessions_as_caller": 1, "sessions_as_callee": 2,
             "messages_as_caller": 0, "messages_as_callee": 65, "cost_usd_as_callee": 0.5},
            {"team": "frontend", "sessions_as_caller": 2, "sessions_as_callee": 1,
             "messages_as_caller": 90, "messages_as_callee": 0, "cost_usd_as_callee": 0.0},
        ])
    );
    // Every team here runs Claude Code: one row holding every answering session.
    assert_eq!(
        v["by_agent"],
        json!([{"agent": "claude", "teams": 3, "sessions": 4, "messages": 95, "cost_usd": 0.75}])
    );
    let busiest: Vec<(&str, &str, &str, i64)> = v["busiest_pairs"]
        .as_array()
        .expect("busiest_pairs")
        .iter()
        .map(|p| {
            (
                p["from_team"].as_str().expect("from"),
                p["to_team"].as_str().expect("to"),
                p["session_id"].as_str().expect("id"),
                p["message_count"].as_i64().expect("count"),
            )
        })
        .collect();
    assert_eq!(
        busiest,
        [
            ("frontend", "docs", fd.as_str(), 60),
            ("frontend", "backend", fb.as_str(), 30),
            ("backend", "docs", bd.as_str(), 5),
        ],
        "most messages first, sessions without messages left out"
    );
    insta::assert_json_snapshot!("stats", env.redact(v));
}

#[test]
fn stats_human() {
    let env = TestEnv::with_extra_config("[settings.compaction]\nmax_messages = 50\n");
    let StatsSeed { fb, fd, bd } = seed_stats(&env);
    let out = env.run_ok(&["stats"]);
    for line in [
        "sessions            4",
        "messages            95",
        "tokens              1500 in, 300 out",
        "cost                $0.7500",
        "due for compaction  1",
        "by status           active 3, archived 1, compact_pending 0, compacting 0, error 0",
        "by process state    idle 1, processing 0, spawning 0, stopped 3, terminating 0",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "no line {line:?} in:\n{out}"
        );
    }
    let teams_start = out.find("TEAM ").expect("team table");
    let kinds_start = out.find("AGENT KIND").expect("agent kind table");
    let pairs_start = out.find("BUSIEST PAIRS").expect("busiest pairs table");
    let teams = &out[teams_start..kinds_start];
    let kinds = &out[kinds_start..pairs_start];
    assert_aligned(
        kinds.trim_end(),
        &["AGENT KIND"],
        &["TEAMS", "SESSIONS", "MSGS", "COST"],
    );
    assert_eq!(
        cells(row_with(kinds, "claude ")),
        ["claude", "3", "4", "95", "$0.7500"]
    );
    assert_aligned(
        teams.trim_end(),
        &["TEAM"],
        &[
            "SESSIONS AS CALLER",
            "SESSIONS AS CALLEE",
            "MSGS AS CALLER",
            "MSGS AS CALLEE",
            "COST AS CALLEE",
        ],
    );
    assert_eq!(
        cells(row_with(teams, "docs ")),
        ["docs", "1", "2", "0", "65", "$0.5000"]
    );
    assert_eq!(
        cells(row_with(teams, "frontend ")),
        ["frontend", "2", "1", "90", "0", "$0.0000"]
    );
    let pairs = &out[pairs_start..];
    assert_aligned(pairs, &["BUSIEST PAIRS", "SESSION"], &["MSGS", "ANSWERED"]);
    let rows: Vec<Vec<String>> = pairs.lines().skip(1).map(cells).collect();
    assert_eq!(
        rows,
        [
            ["frontend -> docs", "60", "0", fd.as_str()],
            ["frontend -> backend", "30", "0", fb.as_str()],
            ["backend -> docs", "5", "0", bd.as_str()],
        ]
    );
}

#[test]
fn stats_of_an_empty_database() {
    let env = TestEnv::new();
    let v = env.run_json(&["stats", "--format", "json"]);
    assert_eq!(v["total_sessions"], 0);
    assert_eq!(v["total_cost_usd"], 0.0);
    assert_eq!(v["busiest_pairs"], json!([]));
    let teams: Vec<&str> = v["per_team"]
        .as_array()
        .expect("per_team")
        .iter()
        .map(|t| t["team"].as_str().expect("team"))
        .collect();
    assert_eq!(
        teams,
        ["backend", "docs", "frontend"],
        "every team, zeros included"
    );
    let out = env.run_ok(&["stats"]);
    assert!(out.starts_with("sessions            0\n"), "{out}");
    assert!(!out.contains("BUSIEST PAIRS"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// teams

#[test]
fn teams_json() {
    let env = TestEnv::new();
    open(&env, "frontend", "backend");
    open(&env, "frontend", "docs");
    open(&env, "docs", "backend");
    let v = env.run_json(&["teams"]);
    let rows = v.as_array().expect("array");
    assert_eq!(rows.len(), 3);
    for (row, (name, caller, callee)) in
        rows.iter()
            .zip([("backend", 0, 2), ("docs", 1, 1), ("frontend", 2, 0)])
    {
        assert_eq!(row["name"], name);
        assert_eq!(row["path"], env.project(name).display().to_string());
        assert_eq!(row["agent"], "claude");
        assert_eq!(row["sessions_as_caller"], caller, "{row}");
        assert_eq!(row["sessions_as_callee"], callee, "{row}");
    }
    insta::assert_json_snapshot!("teams", env.redact(v));
}

#[test]
fn teams_human() {
    let env = TestEnv::new();
    let mut config = env.teams_toml("");
    config = config.replace(
        "[teams.backend]\n",
        "[teams.backend]\ndescription = \"HTTP API\"\nagent_path = \"/opt/claude\"\n",
    );
    env.write_config(&config);
    open(&env, "frontend", "backend");
    let out = env.run_ok(&["teams", "--format", "human"]);
    let header = out.lines().next().expect("header");
    assert_eq!(
        cells(header),
        ["TEAM", "AGENT", "CALLER", "CALLEE", "PATH", "DESCRIPTION"]
    );
    assert_aligned(&out, &["TEAM", "AGENT", "PATH"], &["CALLER", "CALLEE"]);
    let backend = env.project("backend").display().to_string();
    assert_eq!(
        cells(row_with(&out, "backend ")),
        ["backend", "claude", "0", "1", backend.as_str(), "HTTP API"]
    );
    let frontend = env.project("frontend").display().to_string();
    assert_eq!(
        cells(row_with(&out, "frontend ")),
        ["frontend", "claude", "1", "0", frontend.as_str()]
    );
    assert_eq!(out.lines().count(), 4, "{out}");
    let v = env.run_json(&["teams"]);
    assert_eq!(v[0]["description"], "HTTP API");
    assert_eq!(v[0]["agent_path"], "/opt/claude");
}

// ---------------------------------------------------------------------------------------------
// start-up reset

#[test]
fn commands_reset_sessions_left_by_dead_processes() {
    let env = TestEnv::new();
    let fb = open(&env, "frontend", "backend");
    let fd = open(&env, "frontend", "docs");
    let df = open(&env, "docs", "frontend");
    // A pid that surely is gone: a child that has exited and been reaped.
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let dead = ProcessIdentity {
        pid: child.id(),
        started_at: 1,
    };
    child.wait().expect("wait for true");
    let m = env.manager();
    m.store()
        .force_owner(
            &fb,
            ProcessState::Processing,
            Some(dead),
            switchboard::util::now_ms(),
        )
        .expect("owned by a dead process");
    m.set_current_tell(&fb, Some("tell-1")).expect("tell");
    support::hold_session(&m, &fd, ProcessState::Idle);
    m.set_status(&df, SessionStatus::Compacting)
        .expect("compacting, no owner");

    let v = env.run_json(&["sessions", "show", &fb]);
    assert_eq!(v["process_state"], "stopped", "{v}");
    assert_eq!(v["owner_pid"], Value::Null, "{v}");
    assert_eq!(v["current_tell_id"], Value::Null, "{v}");
    let v = env.run_json(&["sessions", "show", &fd]);
    assert_eq!(
        v["process_state"], "idle",
        "a live owner keeps its session: {v}"
    );
    assert_eq!(v["owner_pid"], std::process::id());
    let v = env.run_json(&["sessions", "show", &df]);
    assert_eq!(
        v["status"], "compact_pending",
        "an interrupted compaction is asked for again: {v}"
    );
}

// ---------------------------------------------------------------------------------------------
// help, unknown commands, logs

#[test]
fn help_and_unknown_subcommands() {
    let env = TestEnv::new();
    let out = env.run_ok(&["--help"]);
    for word in [
        "sessions", "stats", "teams", "config", "--json", "--format", "--config",
    ] {
        assert!(out.contains(word), "{word} missing in:\n{out}");
    }
    let out = env.run_ok(&["sessions", "--help"]);
    for word in ["open", "list", "show", "delete", "compact"] {
        assert!(out.contains(word), "{word} missing in:\n{out}");
    }
    let out = env.run_ok(&["sessions", "list", "--help"]);
    for word in [
        "--from",
        "--to",
        "--status",
        "--state",
        "--since",
        "--created-since",
        "--limit",
    ] {
        assert!(out.contains(word), "{word} missing in:\n{out}");
    }
    assert!(env.run_ok(&["--version"]).starts_with("switchboard "));

    let err = fails(&env, &["bogus"], 2);
    assert!(err.contains("unrecognized subcommand 'bogus'"), "{err}");
    let err = fails(&env, &["sessions", "bogus"], 2);
    assert!(err.contains("unrecognized subcommand 'bogus'"), "{err}");
    fails(&env, &["sessions"], 2);
    fails(&env, &[], 2);
    fails(&env, &["stats", "--format", "yaml"], 2);
    fails(&env, &["sessions", "open", "frontend"], 2);
}

#[test]
fn verbose_logs_go_to_stderr_and_keep_stdout_json() {
    let env = TestEnv::new();
    let out = env.run(&["-vv", "sessions", "open", "frontend", "backend", "--json"]);
    assert_exit(&out, 0, &["-vv", "sessions", "open"]);
    let v = parse_json(&out);
    assert_eq!(v["from_team"], "frontend");
    assert!(
        stderr(&out).contains("created session"),
        "-vv logs on stderr: {}",
        stderr(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// concurrency

/// Starts `switchboard --config <teams.toml> ARGS` behind a gate: a shell that waits for a line
/// on stdin, then execs the binary. Opening every gate after all are started makes the
/// processes reach the database at nearly the same moment.
fn spawn_gated(env: &TestEnv, args: &[&str]) -> std::process::Child {
    let mut cmd = std::process::Command::new("sh");
    env.configure(&mut cmd);
    cmd.arg("-c")
        .arg("read go && exec \"$0\" \"$@\"")
        .arg(support::bin())
        .arg("--config")
        .arg(env.config_path())
        .args(args)
        .stdin(std::process::Stdio::piped());
    support::spawn_piped(cmd)
}

#[test]
fn concurrent_opens_from_separate_processes_create_one_session() {
    for round in 0..5 {
        let env = TestEnv::new();
        assert!(!env.db_path().exists());
        let mut children: Vec<_> = (0..8)
            .map(|_| spawn_gated(&env, &["sessions", "open", "frontend", "backend", "--json"]))
            .collect();
        for child in &mut children {
            let mut gate = child.stdin.take().expect("gate");
            gate.write_all(b"go\n").expect("open the gate");
        }
        let outputs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().expect("wait"))
            .collect();
        let mut ids = Vec::new();
        for out in &outputs {
            assert_eq!(exit_code(out), 0, "round {round}: stderr: {}", stderr(out));
            ids.push(parse_json(out)["session_id"].clone());
        }
        assert!(
            ids.iter().all(|id| *id == ids[0]),
            "round {round}: every process got the same session: {ids:?}"
        );
        let list = env.run_json(&["sessions", "list"]);
        assert_eq!(session_ids(&list).len(), 1, "round {round}: {list}");
        assert_eq!(list[0]["session_id"], ids[0]);
        assert_eq!(env.run_json(&["stats"])["total_sessions"], 1);
    }
}
