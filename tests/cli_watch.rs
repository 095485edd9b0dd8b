//! `switchboard watch` (human lines and JSON lines, against a running server and without one)
//! and `tell --follow` (the callee's tool activity on stderr, with the real Claude Code against
//! the model stand-in answering with a `tool_use` block).

mod fake_api;
#[path = "support/claude_code.rs"]
mod pinned_claude;
mod support;

use std::time::Duration;

use serde_json::Value;
use support::lines::follow;
use support::serve::ServeProcess;
use support::{exit_code, send_signal, stderr, stdout, wait_timeout, TestEnv};
use switchboard::events::{EventKind, NewEvent};

const WITHIN: Duration = Duration::from_secs(30);

/// Publishes `events` (pair, kind) from this process, a Switchboard process of its own on the
/// database, and waits until they are stored.
fn publish(env: &TestEnv, events: Vec<((&str, &str), EventKind)>) {
    let m = env.manager();
    for ((from, to), kind) in events {
        m.events().publish(NewEvent {
            from_team: Some(from.into()),
            to_team: Some(to.into()),
            tell_id: None,
            session_id: None,
            kind,
        });
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(m.events().flush());
}

fn tool_use(input: &str) -> EventKind {
    EventKind::ToolUse {
        tool_use_id: "toolu_1".into(),
        tool: "Bash".into(),
        input: input.into(),
    }
}

fn text(t: &str) -> EventKind {
    EventKind::Text { text: t.into() }
}

/// ^C: the command exits 130.
fn interrupt(child: &mut std::process::Child) {
    send_signal(child.id(), libc::SIGINT);
    let status = wait_timeout(child, WITHIN).expect("watch exits on ^C");
    assert_eq!(status.code(), Some(130), "{status:?}");
}

fn max_id(env: &TestEnv) -> String {
    env.manager()
        .store()
        .max_event_id()
        .expect("max id")
        .to_string()
}

#[test]
fn watch_streams_from_a_running_server_then_from_the_database_when_it_stops() {
    let env = TestEnv::new();
    let server = ServeProcess::start(&env);
    let since = max_id(&env);
    let mut human = env.spawn(&["watch", "--pair", "frontend:backend", "--since", &since]);
    let (human_out, human_err) = follow(&mut human);
    let mut json = env.spawn(&["watch", "--json", "--team", "docs", "--since", &since]);
    let (json_out, json_err) = follow(&mut json);
    let source = human_err
        .wait_for(WITHIN, |l| l.starts_with("watching"))
        .expect("watch says what it watches");
    assert!(
        source.contains(&format!("from the server (pid {})", server.pid())),
        "{source}"
    );

    publish(
        &env,
        vec![
            (("frontend", "backend"), tool_use("echo hi")),
            (("docs", "backend"), text("for docs")),
            (
                ("frontend", "backend"),
                EventKind::ToolResult {
                    tool_use_id: "toolu_1".into(),
                    ok: true,
                    excerpt: "hi".into(),
                    duration_ms: Some(12),
                },
            ),
        ],
    );
    let tool = human_out
        .wait_for(WITHIN, |l| l.contains("tool Bash: echo hi"))
        .unwrap_or_else(|| panic!("no tool line: {:?}", human_out.all()));
    assert!(tool.contains("frontend->backend"), "{tool}");
    assert!(
        human_out
            .wait_for(WITHIN, |l| l.contains("-> ok in 0.0s: hi"))
            .is_some(),
        "{:?}",
        human_out.all()
    );
    assert!(json_out.wait_count(WITHIN, 1), "{:?}", json_err.all());
    let first: Value = serde_json::from_str(&json_out.all()[0]).expect("a JSON line");
    assert_eq!(first["type"], "text");
    assert_eq!(first["text"], "for docs");
    assert_eq!(first["from_team"], "docs");
    assert!(first["id"].as_i64().is_some_and(|id| id > 0));
    assert!(json_err.all().is_empty(), "with --json, stderr stays empty");

    // The server stops: the watch goes on from the database, missing nothing.
    assert!(server.stop().success());
    publish(
        &env,
        vec![(("frontend", "backend"), tool_use("after the server"))],
    );
    publish(&env, vec![(("docs", "frontend"), text("docs again"))]);
    assert!(
        human_out
            .wait_for(WITHIN, |l| l.contains("tool Bash: after the server"))
            .is_some(),
        "{:?} {:?}",
        human_out.all(),
        human_err.all()
    );
    assert!(json_out.wait_count(WITHIN, 2), "{:?}", json_err.all());
    let lines = human_out.all();
    assert_eq!(
        lines.len(),
        3,
        "each event once, only the pair's: {lines:?}"
    );
    let json_lines: Vec<Value> = json_out
        .all()
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(json_lines.len(), 2, "{json_lines:?}");
    assert_eq!(json_lines[1]["text"], "docs again");
    assert!(json_lines[1]["id"].as_i64() > json_lines[0]["id"].as_i64());
    interrupt(&mut human);
    interrupt(&mut json);
}

#[test]
fn watch_without_a_server_follows_the_database() {
    let env = TestEnv::new();
    publish(&env, vec![(("frontend", "backend"), text("before"))]);
    // --since 0: the history first, then what comes.
    let mut json = env.spawn(&["watch", "--json", "--since", "0"]);
    let (json_out, _) = follow(&mut json);
    let mut human = env.spawn(&["watch", "--since", "0"]);
    let (human_out, human_err) = follow(&mut human);
    assert!(json_out.wait_count(WITHIN, 1));
    let source = human_err
        .wait_for(WITHIN, |l| l.starts_with("watching"))
        .expect("watch says what it watches");
    assert!(source.contains("from the database"), "{source}");
    publish(&env, vec![(("docs", "backend"), tool_use("ls -la"))]);
    assert!(json_out.wait_count(WITHIN, 2), "{:?}", json_out.all());
    let got: Vec<Value> = json_out
        .all()
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(got[0]["text"], "before");
    assert_eq!(got[1]["type"], "tool_use");
    assert_eq!(got[1]["input"], "ls -la");
    assert!(
        human_out
            .wait_for(WITHIN, |l| l.contains("docs->backend")
                && l.contains("tool Bash: ls -la"))
            .is_some(),
        "{:?}",
        human_out.all()
    );
    interrupt(&mut json);
    interrupt(&mut human);
    // Bad filters name the option.
    let out = env.run(&["watch", "--team", "nobody"]);
    assert_eq!(exit_code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--team"), "{}", stderr(&out));
    let out = env.run(&["watch", "--pair", "frontend"]);
    assert_eq!(exit_code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--pair"), "{}", stderr(&out));
}

#[test]
fn watch_tell_ends_when_the_tell_ends_with_its_exit_code() {
    let env = TestEnv::with_scripted_agent();
    let ok = env.run_json(&["tell", "frontend", "backend", "hello"]);
    let id = ok["tell_id"].as_str().expect("id");
    let out = env.run(&["watch", "--tell", &id[..8]]);
    assert_eq!(exit_code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    for what in ["tell queued", "delivered", "answered"] {
        assert!(text.contains(what), "no {what:?} in:\n{text}");
    }

    let failed = env.run(&["--json", "tell", "frontend", "backend", "crash"]);
    assert_eq!(exit_code(&failed), 1);
    let id = support::parse_json(&failed)["tell_id"]
        .as_str()
        .expect("id")
        .to_string();
    let out = env.run(&["watch", "--json", "--tell", &id]);
    assert_eq!(exit_code(&out), 1, "a failed tell: {}", stderr(&out));
    let last: Value =
        serde_json::from_str(stdout(&out).lines().last().expect("events")).expect("JSON");
    assert_eq!(last["type"], "tell_failed", "{}", stdout(&out));
    assert_eq!(last["tell_id"], id.as_str());
    env.assert_no_agents();
}

/// Teams `a` and `b` run by the real Claude Code against `api`; `b` may use Bash.
fn claude_env(api: &fake_api::FakeApi) -> TestEnv {
    let env = TestEnv::new();
    let claude = pinned_claude::binary();
    let home = env.home().display().to_string();
    let vars = [
        ("HOME", home.clone()),
        ("ANTHROPIC_BASE_URL", api.url()),
        ("ANTHROPIC_API_KEY", "test-key".to_string()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_string()),
        ("DISABLE_TELEMETRY", "1".to_string()),
        ("CLAUDE_CODE_MAX_RETRIES", "0".to_string()),
        ("CLAUDE_CONFIG_DIR", format!("{home}/.claude")),
    ];
    let vars: Vec<String> = vars
        .iter()
        .map(|(k, v)| format!("{k} = {}", Value::from(v.as_str())))
        .collect();
    let mut text = "[database]\npath = \"data/switchboard.db\"\n".to_string();
    for (team, folder) in [("a", "frontend"), ("b", "backend")] {
        text.push_str(&format!(
            "\n[teams.{team}]\npath = {}\nagent_path = {}\nenv = {{ {} }}\n{}",
            Value::from(env.project(folder).display().to_string()),
            Value::from(claude.as_str()),
            vars.join(", "),
            if team == "b" {
                "allowed_tools = [\"Bash\"]\n"
            } else {
                ""
            }
        ));
    }
    env.write_config(&text);
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tell_follow_shows_the_callees_tool_use_on_stderr() {
    let api = fake_api::FakeApi::start().await;
    api.push(fake_api::Answer::text("Running it.").with_tool_use(
        "toolu_follow_1",
        "Bash",
        serde_json::json!({"command": "echo hi", "description": "say hi"}),
    ));
    api.push(fake_api::Answer::text("It printed hi."));
    let env = claude_env(&api);
    let mut cmd = env.command();
    cmd.arg("--config")
        .arg(env.config_path())
        .args(["tell", "a", "b", "Run echo hi", "--follow"]);
    let out = tokio::task::spawn_blocking(move || support::finish(cmd))
        .await
        .expect("the command");
    let err = stderr(&out);
    assert_eq!(exit_code(&out), 0, "{err}");
    assert_eq!(
        stdout(&out),
        "It printed hi.\n",
        "stdout is the answer only"
    );
    let tool = err
        .lines()
        .position(|l| l.contains("[b] tool Bash: echo hi"))
        .unwrap_or_else(|| panic!("no tool use on stderr:\n{err}"));
    let result = err
        .lines()
        .position(|l| l.contains("[b] -> ok") && l.contains("hi"))
        .unwrap_or_else(|| panic!("no tool result on stderr:\n{err}"));
    assert!(tool < result, "{err}");
}

#[test]
fn tell_follow_through_a_running_server_streams_the_tells_events() {
    let env = TestEnv::with_scripted_agent();
    let server = ServeProcess::start(&env);
    // `toolcut`: the scripted agent calls Bash (`make`) and its turn ends cut off.
    let out = env.run(&["tell", "frontend", "backend", "toolcut", "--follow"]);
    let err = stderr(&out);
    assert!(
        err.lines().any(|l| l == "[backend] tool Bash: make"),
        "no tool use on stderr:\n{err}"
    );
    assert!(
        !stdout(&out).contains("tool Bash"),
        "stdout is the answer only: {}",
        stdout(&out)
    );
    // With --json, every stderr line is JSON: the tell's events, then its outcome.
    let out = env.run(&["--json", "tell", "frontend", "backend", "hello", "--follow"]);
    assert_eq!(exit_code(&out), 0, "{}", stderr(&out));
    let events: Vec<Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let id = support::parse_json(&out)["tell_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(
        events.iter().all(|e| e["tell_id"] == id.as_str()),
        "{events:?}"
    );
    assert_eq!(
        events.last().map(|e| e["type"].clone()),
        Some(Value::from("tell_answered")),
        "{events:?}"
    );
    let s = env.session("frontend", "backend").expect("session");
    assert_eq!(
        s.owner_pid,
        Some(i64::from(server.pid())),
        "the server ran it"
    );
    drop(server);
}

#[test]
fn without_the_socket_the_event_stream_goes_over_tcp_with_the_token() {
    let env = TestEnv::with_scripted_agent();
    let server = ServeProcess::start(&env);
    let socket = server.announcement()["socket"]
        .as_str()
        .expect("a socket")
        .to_string();
    std::fs::remove_file(&socket).expect("remove the socket");
    // -v: the stream would log "no event stream; reading the database" had it fallen back.
    let out = env.run(&["-v", "tell", "frontend", "backend", "tools:1", "--follow"]);
    let err = stderr(&out);
    assert_eq!(exit_code(&out), 0, "{err}");
    assert_eq!(stdout(&out), "tools done\n");
    assert!(
        err.lines().any(|l| l == "[backend] tool Bash: echo 0"),
        "{err}"
    );
    assert!(!err.contains("no event stream"), "{err}");
    drop(server);
}
