//! End-to-end tests of the commands that run agents — `tell`, `report`, `wake`, `sleep`,
//! `cancel`, `sessions reboot` — through the `switchboard` binary, with every team's agent being
//! the scripted test agent (`switchboard-test-agent`, Claude Code's protocol). Human and JSON
//! output, exit codes, what is left in the database, and never an orphan process: agents are
//! found in `/proc` by a marker in their environment. The last tests send real signals
//! (SIGTERM, SIGKILL) to a running `switchboard tell`.

mod support;

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    assert_exit, parse_json, poll_until, send_signal, stderr, stdout, wait_timeout, TestEnv,
};
use switchboard::store::{ProcessState, SessionStore};

/// How long a process may take to reach a state the test waits for.
const WAIT: Duration = Duration::from_secs(15);

/// Runs `args`, asserts the exit code, returns (stdout, stderr).
fn run(env: &TestEnv, args: &[&str], code: i32) -> (String, String) {
    let out = env.run(args);
    assert_exit(&out, code, args);
    (stdout(&out), stderr(&out))
}

/// `report FROM TO --json` (20 latest, oldest first).
fn report(env: &TestEnv, from: &str, to: &str) -> Vec<Value> {
    env.run_json(&["report", from, to])
        .as_array()
        .expect("report is an array")
        .clone()
}

/// (text, state) of every tell of a report, in order.
fn texts_and_states(tells: &[Value]) -> Vec<(String, String)> {
    tells
        .iter()
        .map(|t| {
            (
                t["text"].as_str().expect("text").to_string(),
                t["state"].as_str().expect("state").to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Whether `s` is a UUID (8-4-4-4-12 hex digits).
fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// A tell's JSON for snapshots: ids, times, temp paths redacted, and `duration_ms` (measured
/// by the agent) replaced.
fn redact_tell(env: &TestEnv, mut v: Value) -> Value {
    if let Some(d) = v.get_mut("duration_ms").filter(|d| d.is_number()) {
        *d = Value::String("[ms]".into());
    }
    env.redact(v)
}

/// The session of a pair as `sessions show --json` prints it.
fn show(env: &TestEnv, pair: &str) -> Value {
    env.run_json(&["sessions", "show", pair])
}

/// Asserts the pair's session is stopped, with no owner and no agent.
fn assert_stopped(env: &TestEnv, pair: &str) {
    let s = show(env, pair);
    assert_eq!(s["process_state"], "stopped", "{s}");
    assert_eq!(s["owner_pid"], Value::Null, "{s}");
    assert_eq!(s["agent_pid"], Value::Null, "{s}");
    assert_eq!(s["current_tell_id"], Value::Null, "{s}");
}

/// Whether a process with this pid exists and is not a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with(['Z', 'X']))
    })
}

/// Starts `switchboard tell frontend backend TEXT` in the background and waits until its agent
/// is processing the tell (read from the database). The session is opened first, so the
/// database exists before the child starts. Panics at once, with its output, if the child
/// exits before.
fn start_long_tell(env: &TestEnv, text: &str) -> Reaper {
    env.run_json(&["sessions", "open", "frontend", "backend"]);
    let store = SessionStore::open(&env.db_path()).expect("open the database");
    let mut sb = Reaper(Some(env.spawn(&["tell", "frontend", "backend", text])));
    let mut last = None;
    let mut exited = None;
    let processing = poll_until(WAIT, || {
        exited = sb.child().try_wait().expect("poll the child");
        last = store.get_by_pair("frontend", "backend").ok().flatten();
        exited.is_some()
            || last
                .as_ref()
                .is_some_and(|s| s.process_state == ProcessState::Processing)
    });
    if let Some(status) = exited {
        let out =
            sb.0.take()
                .expect("child")
                .wait_with_output()
                .expect("output");
        panic!(
            "switchboard tell {text} exited ({status}) before processing\n--- stdout\n{}\n--- stderr\n{}",
            stdout(&out),
            stderr(&out)
        );
    }
    assert!(
        processing,
        "not processing within {WAIT:?}; last seen: {last:#?}"
    );
    sb
}

/// Makes sure a background switchboard is gone at the end of a test, even a failed one.
struct Reaper(Option<Child>);

impl Reaper {
    fn pid(&self) -> u32 {
        self.0.as_ref().expect("child").id()
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child")
    }

    /// Waits (bounded) for the child to exit by itself and returns its output.
    fn finish(mut self, within: Duration) -> (std::process::ExitStatus, String, String) {
        let mut child = self.0.take().expect("child");
        let status = wait_timeout(&mut child, within);
        if status.is_none() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().expect("collect output");
        let status = status.unwrap_or_else(|| {
            panic!(
                "switchboard did not exit within {within:?}\n--- stdout\n{}\n--- stderr\n{}",
                stdout(&out),
                stderr(&out)
            )
        });
        (status, stdout(&out), stderr(&out))
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// tell

#[test]
fn tell_prints_the_answer_on_stdout_and_a_summary_on_stderr() {
    let env = TestEnv::with_scripted_agent();
    let (out, err) = run(&env, &["tell", "frontend", "backend", "hello"], 0);
    assert_eq!(out, "echo: hello\n");
    let summary = err
        .lines()
        .find(|l| l.starts_with("[tell "))
        .unwrap_or_else(|| panic!("no summary on stderr: {err}"));
    let id = &summary["[tell ".len()..]
        .split(' ')
        .next()
        .expect("tell id");
    assert!(is_uuid(id), "{summary}");
    // The scripted agent counts len(text) + 10 tokens in, len(answer) + 1 out.
    assert!(
        summary.contains(" answered: 15 in / 12 out tokens, $0.0000"),
        "{summary}"
    );

    // The tell, the session and the agent after the command.
    let tells = report(&env, "frontend", "backend");
    assert_eq!(tells.len(), 1);
    assert_eq!(tells[0]["tell_id"], *id);
    assert_eq!(tells[0]["answer"], "echo: hello");
    let s = show(&env, "frontend:backend");
    assert_eq!(s["message_count"], 1, "{s}");
    assert_eq!(s["input_tokens"], 15, "{s}");
    assert_eq!(s["status"], "active", "{s}");
    assert_stopped(&env, "frontend:backend");
    env.assert_no_agents();
    assert_eq!(env.switchboard_pids(), Vec::<u32>::new());

    // A second process resumes the same conversation.
    let (out, _) = run(&env, &["tell", "frontend", "backend", "history"], 0);
    assert_eq!(out, "history: 1\n");
    env.assert_no_agents();
}

#[test]
fn tell_json_prints_the_tell() {
    let env = TestEnv::with_scripted_agent();
    let v = env.run_json(&["tell", "frontend", "backend", "hello"]);
    assert_eq!(v["state"], "answered");
    assert_eq!(v["kind"], "tell");
    assert_eq!(v["text"], "hello");
    assert_eq!(v["answer"], "echo: hello");
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["input_tokens"], 15);
    assert_eq!(v["output_tokens"], 12);
    assert_eq!(v["cost_usd"], 0.000027);
    assert!(is_uuid(v["tell_id"].as_str().expect("tell_id")), "{v}");
    assert_eq!(
        v["session_id"],
        show(&env, "frontend:backend")["session_id"],
        "the pair's session"
    );
    for k in ["created_at", "delivered_at", "answered_at"] {
        assert!(v[k].is_string(), "{k} in {v}");
    }
    insta::assert_json_snapshot!("tell_json", redact_tell(&env, v.clone()));

    // --format json is the same; stderr has no summary then.
    let out = env.run(&["tell", "frontend", "backend", "again", "--format", "json"]);
    assert_exit(&out, 0, &["tell", "--format", "json"]);
    let again = parse_json(&out);
    assert_eq!(again["answer"], "echo: again");
    assert_eq!(again["session_id"], v["session_id"]);
    assert!(!stderr(&out).contains("[tell "), "{}", stderr(&out));
    env.assert_no_agents();
}

#[test]
fn tell_dash_reads_the_message_from_stdin() {
    let env = TestEnv::with_scripted_agent();
    let send = |input: &str, json: bool| {
        let mut cmd = env.command();
        cmd.arg("--config")
            .arg(env.config_path())
            .args(["tell", "frontend", "backend", "-"]);
        if json {
            cmd.arg("--json");
        }
        cmd.stdin(Stdio::piped());
        let mut child = support::spawn_piped(cmd);
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write stdin");
        drop(stdin);
        child.wait_with_output().expect("wait")
    };
    let out = send("from stdin", false);
    assert_exit(&out, 0, &["tell", "-"]);
    assert_eq!(stdout(&out), "echo: from stdin\n");

    let out = send("two\nlines\n", true);
    assert_exit(&out, 0, &["tell", "-", "--json"]);
    let v = parse_json(&out);
    assert_eq!(v["text"], "two\nlines\n", "the whole of stdin, as is");
    assert_eq!(v["answer"], "echo: two\nlines\n");

    // Empty stdin is an empty message.
    let out = send("  \n", false);
    assert_exit(&out, 2, &["tell", "-"]);
    assert!(
        stderr(&out).contains("the message is empty"),
        "{}",
        stderr(&out)
    );
    assert_eq!(report(&env, "frontend", "backend").len(), 2);
    env.assert_no_agents();
}

#[test]
fn tell_refuses_bad_input_with_exit_2_and_stores_nothing() {
    let env = TestEnv::with_scripted_agent();
    for json in [false, true] {
        let extra: &[&str] = if json { &["--json"] } else { &[] };
        let args = |a: &[&'static str]| [a, extra].concat();
        for (argv, wanted) in [
            (
                &["tell", "frontend", "nobody", "hi"][..],
                "unknown team \"nobody\"",
            ),
            (
                &["tell", "nobody", "backend", "hi"],
                "unknown team \"nobody\"",
            ),
            (&["tell", "frontend", "frontend", "hi"], "itself"),
            (&["tell", "bad name", "backend", "hi"], "invalid team name"),
            (&["tell", "frontend", "backend", ""], "the message is empty"),
            (
                &["tell", "frontend", "backend", "   "],
                "the message is empty",
            ),
            (
                &["tell", "frontend", "backend", "hi", "--timeout", "soon"],
                "--timeout",
            ),
            (
                &[
                    "tell",
                    "frontend",
                    "backend",
                    "hi",
                    "--timeout",
                    "1s",
                    "--async",
                ],
                "cannot be used with",
            ),
            (&["tell", "frontend", "backend"], "TEXT"),
        ] {
            let all = args(argv);
            let out = env.run(&all);
            assert_exit(&out, 2, &all);
            assert_eq!(stdout(&out), "", "{all:?}");
            // With --json the error is JSON on stderr.
            let message = if all.contains(&"--json") {
                json_error(&out)["error"].as_str().unwrap_or("").to_string()
            } else {
                stderr(&out)
            };
            assert!(message.contains(wanted), "{all:?}: {}", stderr(&out));
        }
    }
    let (out, _) = run(&env, &["report", "frontend", "backend"], 0);
    assert_eq!(out, "no tells from frontend to backend\n");
    assert!(!env.home().join(".claude").exists(), "no agent ran");
    env.assert_no_agents();
}

#[test]
fn a_crashing_agent_fails_the_tell_with_exit_1_and_its_stderr() {
    let env = TestEnv::with_scripted_agent();
    let (out, err) = run(&env, &["tell", "frontend", "backend", "crash"], 1);
    assert_eq!(out, "", "no answer on stdout");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: tell "))
        .unwrap_or_else(|| panic!("no error line on stderr: {err}"));
    assert!(line.contains(" failed: "), "{line}");
    assert!(line.contains("exit status 9"), "{line}");
    assert!(
        line.contains("simulated crash"),
        "the agent's stderr tail: {line}"
    );

    let out = env.run(&["tell", "frontend", "backend", "crash", "--json"]);
    assert_exit(&out, 1, &["tell", "crash", "--json"]);
    let v = parse_json(&out);
    assert_eq!(v["state"], "failed");
    assert_eq!(v["answer"], Value::Null);
    let error = v["error"].as_str().expect("error");
    assert!(
        error.contains("exit status 9") && error.contains("simulated crash"),
        "{error}"
    );
    let s = show(&env, "frontend:backend");
    assert_eq!(s["status"], "error", "{s}");
    assert!(
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("exit status 9")),
        "{s}"
    );
    assert_stopped(&env, "frontend:backend");
    env.assert_no_agents();

    // The next tell works and clears the error.
    let (out, _) = run(&env, &["tell", "frontend", "backend", "after"], 0);
    assert_eq!(out, "echo: after\n");
    assert_eq!(show(&env, "frontend:backend")["status"], "active");
}

#[test]
fn tell_timeout_cancels_the_tell_and_exits_1() {
    let env = TestEnv::with_scripted_agent();
    let started = Instant::now();
    let (out, err) = run(
        &env,
        &[
            "tell",
            "frontend",
            "backend",
            "sleep:30000",
            "--timeout",
            "1s",
        ],
        1,
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(took >= Duration::from_secs(1), "took {took:?}");
    assert_eq!(out, "");
    assert!(
        err.contains("no answer within 1s; the tell was cancelled"),
        "{err}"
    );
    assert!(err.contains("cancelled"), "{err}");
    let tells = report(&env, "frontend", "backend");
    assert_eq!(
        texts_and_states(&tells),
        pairs(&[("sleep:30000", "cancelled")])
    );
    assert_stopped(&env, "frontend:backend");
    env.assert_no_agents();

    // JSON: the cancelled tell on stdout, still exit 1.
    let out = env.run(&[
        "tell",
        "frontend",
        "backend",
        "sleep:30000",
        "--timeout",
        "500ms",
        "--json",
    ]);
    assert_exit(&out, 1, &["tell", "--timeout", "500ms", "--json"]);
    assert_eq!(parse_json(&out)["state"], "cancelled");
    env.assert_no_agents();
}

#[test]
fn a_timed_out_local_tell_shows_no_agent_internal_text() {
    let env = TestEnv::with_scripted_agent();
    let (_, err) = run(
        &env,
        &[
            "tell",
            "frontend",
            "backend",
            "sleep:3000",
            "--timeout",
            "1s",
        ],
        1,
    );
    assert!(err.contains("the tell was cancelled"), "{err}");
    assert!(
        !err.contains("ede_diagnostic") && !err.contains("WARN"),
        "raw agent text or a log warning reached the user: {err}"
    );
}

#[test]
fn a_timed_out_json_tell_writes_only_json_on_stderr() {
    let env = TestEnv::with_scripted_agent();
    let args = [
        "--json",
        "tell",
        "frontend",
        "backend",
        "--timeout",
        "1s",
        "sleep:3000",
    ];
    let out = env.run(&args);
    assert_exit(&out, 1, &args);
    let err = stderr(&out);
    assert!(!err.trim().is_empty(), "no error at all");
    for line in err.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line:?}\n{err}"));
        if let Some(e) = v.get("error") {
            assert_eq!(v["exit_code"], 1, "{line}");
            assert!(
                e.as_str().is_some_and(|e| e.contains("cancelled")),
                "{line}"
            );
        }
    }
    assert_eq!(parse_json(&out)["state"], "cancelled");
}

/// A server announced in `server.json` whose process lives but whose port refuses
/// connections (it is stopping): the tell was not stored, so it is said so and run here.
#[test]
fn a_refused_connection_to_the_server_runs_the_tell_here() {
    let env = TestEnv::with_scripted_agent();
    env.run_ok(&["sessions", "open", "frontend", "backend"]);
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    // This test process stands for the server: alive, but nobody listens on the port.
    let announced = serde_json::json!({
        "pid": std::process::id(),
        "url": format!("http://127.0.0.1:{port}/mcp"),
        "transport": "http",
        "database": env.db_path(),
    });
    std::fs::write(
        env.db_path().with_file_name("server.json"),
        announced.to_string(),
    )
    .expect("write server.json");
    let (out, err) = run(&env, &["tell", "frontend", "backend", "hello"], 0);
    assert_eq!(out, "echo: hello\n");
    assert!(
        err.contains("refused") && err.contains("the tell was not stored: running it here"),
        "{err}"
    );
    assert!(!err.contains("may or may not"), "{err}");
    assert_eq!(
        texts_and_states(&report(&env, "frontend", "backend")),
        pairs(&[("hello", "answered")])
    );
}

#[test]
fn async_tells_are_queued_and_delivered_first_by_the_next_process() {
    let env = TestEnv::with_scripted_agent();
    let (out, err) = run(
        &env,
        &["tell", "frontend", "backend", "first", "--async"],
        0,
    );
    let id = out.trim_end();
    assert!(is_uuid(id) && out == format!("{id}\n"), "{out:?}");
    assert!(
        err.contains(&format!(
            "[tell {id} queued: see `switchboard tells show {id}` or `switchboard report frontend backend`]"
        )),
        "{err}"
    );
    let v = env.run_json(&["tell", "frontend", "backend", "second", "--async"]);
    assert_eq!(v["state"], "queued");
    assert_eq!(v["answer"], Value::Null);
    assert_eq!(v["delivered_at"], Value::Null);
    assert_eq!(
        texts_and_states(&report(&env, "frontend", "backend")),
        pairs(&[("first", "queued"), ("second", "queued")])
    );
    assert!(
        !env.home().join(".claude").exists(),
        "--async starts no agent"
    );
    env.assert_no_agents();

    // A later tell on the pair, in another process: the queued ones go first, in order.
    let (out, _) = run(&env, &["tell", "frontend", "backend", "third"], 0);
    assert_eq!(out, "echo: third\n");
    let tells = report(&env, "frontend", "backend");
    assert_eq!(
        texts_and_states(&tells),
        pairs(&[
            ("first", "answered"),
            ("second", "answered"),
            ("third", "answered"),
        ])
    );
    assert_eq!(tells[0]["tell_id"], id);
    assert_eq!(tells[1]["answer"], "echo: second");
    for w in tells.windows(2) {
        let answered = w[0]["answered_at"].as_str().expect("answered_at");
        let delivered = w[1]["delivered_at"].as_str().expect("delivered_at");
        assert!(answered <= delivered, "one at a time, in order: {w:?}");
    }
    assert_eq!(show(&env, "frontend:backend")["message_count"], 3);
    env.assert_no_agents();
}

// ---------------------------------------------------------------------------------------------
// report

#[test]
fn report_lists_tells_oldest_first_in_both_formats() {
    let env = TestEnv::with_scripted_agent();
    run(&env, &["tell", "frontend", "backend", "one"], 0);
    run(&env, &["tell", "frontend", "backend", "crash"], 1);
    run(
        &env,
        &["tell", "frontend", "backend", "three\nmore lines"],
        0,
    );
    run(&env, &["tell", "frontend", "docs", "elsewhere"], 0);

    // JSON, across processes, oldest first; only this pair.
    let tells = report(&env, "frontend", "backend");
    assert_eq!(
        texts_and_states(&tells),
        pairs(&[
            ("one", "answered"),
            ("crash", "failed"),
            ("three\nmore lines", "answered"),
        ])
    );
    let snapshot: Vec<Value> = tells.iter().map(|t| redact_tell(&env, t.clone())).collect();
    insta::assert_json_snapshot!("report_json", snapshot);
    let last = env.run_json(&["report", "frontend", "backend", "--limit", "2"]);
    let last: Vec<Value> = last.as_array().expect("array").clone();
    assert_eq!(
        texts_and_states(&last),
        pairs(&[("crash", "failed"), ("three\nmore lines", "answered")]),
        "the latest N, still oldest first"
    );

    // Human: a table, oldest first.
    let (out, _) = run(&env, &["report", "frontend", "backend"], 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["TELL", "WHEN", "STATE", "MESSAGE", "ANSWER", "TOKENS", "COST"]
    );
    let id8 = |t: &Value| t["tell_id"].as_str().expect("id")[..8].to_string();
    for (line, tell) in lines[1..].iter().zip(&tells) {
        assert!(line.starts_with(&id8(tell)), "{line:?}");
    }
    assert!(
        lines[1].contains("answered") && lines[1].contains("echo: one"),
        "{out}"
    );
    assert!(lines[1].contains("13/10"), "tokens in/out: {out}");
    assert!(
        lines[2].contains("failed") && lines[2].contains("agent exited mid-turn"),
        "the error in the answer column: {out}"
    );
    assert!(
        lines[3].contains("three…"),
        "a multi-line message shows its first line: {out}"
    );
    assert!(out.lines().all(|l| l == l.trim_end()), "no trailing spaces");
    let (out, _) = run(&env, &["report", "frontend", "backend", "--limit", "1"], 0);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains(&id8(&tells[2])), "{out}");

    // No tells, bad arguments.
    let (out, _) = run(&env, &["report", "docs", "backend"], 0);
    assert_eq!(out, "no tells from docs to backend\n");
    assert_eq!(
        env.run_json(&["report", "docs", "backend"]),
        serde_json::json!([])
    );
    for json in [false, true] {
        let extra: &[&str] = if json { &["--json"] } else { &[] };
        for (argv, wanted) in [
            (
                &["report", "frontend", "nobody"][..],
                "unknown team \"nobody\"",
            ),
            (&["report", "nobody", "backend"], "unknown team \"nobody\""),
            (
                &["report", "frontend", "backend", "--limit", "0"],
                "--limit",
            ),
            (
                &["report", "frontend", "backend", "--limit", "x"],
                "--limit",
            ),
            (&["report", "frontend"], "TO"),
        ] {
            let all = [argv, extra].concat();
            let out = env.run(&all);
            assert_exit(&out, 2, &all);
            assert_eq!(stdout(&out), "", "{all:?}");
            // With --json the error is JSON on stderr.
            let message = if json {
                json_error(&out)["error"].as_str().unwrap_or("").to_string()
            } else {
                stderr(&out)
            };
            assert!(message.contains(wanted), "{all:?}: {}", stderr(&out));
        }
    }
    env.assert_no_agents();
}

// ---------------------------------------------------------------------------------------------
// wake, sleep, cancel, sessions reboot

#[test]
fn wake_starts_the_agent_delivers_queued_tells_and_stops_it_again() {
    let env = TestEnv::with_scripted_agent();
    // Nothing queued: the agent starts (pid reported), and is gone after the command.
    let (out, _) = run(&env, &["wake", "frontend", "backend"], 0);
    let pid: u32 = out
        .split("(pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {out:?}"));
    assert_eq!(
        out,
        format!(
            "frontend -> backend: agent started (pid {pid}); 0 queued tell(s) delivered; \
             stopped again as this command ends\n"
        )
    );
    assert!(poll_until(WAIT, || !running(pid)), "agent {pid} still runs");
    env.assert_no_agents();
    assert_stopped(&env, "frontend:backend");

    // With queued tells: they are delivered, in order, before the command ends.
    for text in ["q1", "q2"] {
        run(&env, &["tell", "frontend", "backend", text, "--async"], 0);
    }
    let v = env.run_json(&["wake", "frontend", "backend"]);
    assert_eq!(v["from_team"], "frontend");
    assert_eq!(v["to_team"], "backend");
    assert!(v["pid"].as_u64().is_some_and(|p| p > 1), "{v}");
    assert_eq!(
        texts_and_states(&report(&env, "frontend", "backend")),
        pairs(&[("q1", "answered"), ("q2", "answered")])
    );
    env.assert_no_agents();
    assert_stopped(&env, "frontend:backend");

    // Unknown team: exit 2, nothing started.
    let (_, err) = run(&env, &["wake", "frontend", "nobody"], 2);
    assert!(err.contains("unknown team \"nobody\""), "{err}");
}

#[test]
fn wake_reports_how_many_queued_tells_it_delivered() {
    let env = TestEnv::with_scripted_agent();
    for text in ["q1", "q2"] {
        run(&env, &["tell", "frontend", "backend", text, "--async"], 0);
    }
    let (out, _) = run(&env, &["wake", "frontend", "backend"], 0);
    assert!(out.contains("; 2 queued tell(s) delivered;"), "{out}");
    assert_eq!(
        texts_and_states(&report(&env, "frontend", "backend")),
        pairs(&[("q1", "answered"), ("q2", "answered")])
    );
    run(&env, &["tell", "frontend", "backend", "q3", "--async"], 0);
    let v = env.run_json(&["wake", "frontend", "backend"]);
    assert_eq!(v["delivered"], 1, "{v}");
    env.assert_no_agents();
}

#[test]
fn sleep_when_no_agent_runs() {
    let env = TestEnv::with_scripted_agent();
    let (out, _) = run(&env, &["sleep", "frontend", "backend"], 0);
    assert_eq!(out, "frontend -> backend: no agent was running\n");
    let v = env.run_json(&["sleep", "frontend", "backend"]);
    assert_eq!(
        v,
        serde_json::json!({"from_team": "frontend", "to_team": "backend", "was_running": false})
    );
    // After a tell (whose agent stopped with its command) there is still none running.
    run(&env, &["tell", "frontend", "backend", "hi"], 0);
    let (out, _) = run(&env, &["sleep", "frontend", "backend"], 0);
    assert_eq!(out, "frontend -> backend: no agent was running\n");
    assert_stopped(&env, "frontend:backend");
    for (argv, wanted) in [
        (&["sleep", "frontend", "nobody"][..], "unknown team"),
        (&["sleep", "frontend", "frontend"], "itself"),
    ] {
        let (_, err) = run(&env, argv, 2);
        assert!(err.contains(wanted), "{argv:?}: {err}");
    }
    env.assert_no_agents();
}

#[test]
fn cancel_cancels_queued_tells() {
    let env = TestEnv::with_scripted_agent();
    let ids: Vec<String> = ["c1", "c2"]
        .iter()
        .map(|t| {
            run(&env, &["tell", "frontend", "backend", t, "--async"], 0)
                .0
                .trim_end()
                .to_string()
        })
        .collect();
    let (out, _) = run(&env, &["cancel", "frontend", "backend"], 0);
    assert_eq!(out, "frontend -> backend: 2 queued tell(s) cancelled\n");
    let tells = report(&env, "frontend", "backend");
    assert_eq!(
        texts_and_states(&tells),
        pairs(&[("c1", "cancelled"), ("c2", "cancelled")])
    );
    assert_eq!(tells[0]["tell_id"], ids[0].as_str());
    assert_eq!(tells[0]["error"], "cancelled before delivery");
    assert_eq!(tells[0]["delivered_at"], Value::Null, "never delivered");
    env.assert_no_agents();

    // JSON; then nothing is left to cancel.
    let id = run(&env, &["tell", "frontend", "backend", "c3", "--async"], 0).0;
    let v = env.run_json(&["cancel", "frontend", "backend"]);
    assert_eq!(
        v,
        serde_json::json!({"cancelled_queued": [id.trim_end()], "interrupted": null})
    );
    let (out, _) = run(&env, &["cancel", "frontend", "backend"], 0);
    assert_eq!(out, "frontend -> backend: 0 queued tell(s) cancelled\n");

    // A later tell is not held up by the cancelled ones.
    let (out, _) = run(&env, &["tell", "frontend", "backend", "after"], 0);
    assert_eq!(out, "echo: after\n");
    assert_eq!(
        texts_and_states(&report(&env, "frontend", "backend")),
        pairs(&[
            ("c1", "cancelled"),
            ("c2", "cancelled"),
            ("c3", "cancelled"),
            ("after", "answered"),
        ])
    );
    let (_, err) = run(&env, &["cancel", "nobody", "backend"], 2);
    assert!(err.contains("unknown team"), "{err}");
    env.assert_no_agents();
}

#[test]
fn cancel_starts_no_agent() {
    let env = TestEnv::with_scripted_agent();
    for text in ["c1", "c2"] {
        run(&env, &["tell", "frontend", "backend", text, "--async"], 0);
    }
    run(&env, &["cancel", "frontend", "backend"], 0);
    let s = show(&env, "frontend:backend");
    assert_eq!(
        s["launch_command"],
        Value::Null,
        "cancelling queued tells must not start an agent to deliver them: {s}"
    );
    assert_eq!(
        texts_and_states(&report(&env, "frontend", "backend")),
        pairs(&[("c1", "cancelled"), ("c2", "cancelled")])
    );
    env.assert_no_agents();
}

#[test]
fn sessions_reboot_starts_a_new_conversation_and_keeps_the_history() {
    let env = TestEnv::with_scripted_agent();
    run(&env, &["tell", "frontend", "backend", "hello"], 0);
    run(&env, &["tell", "frontend", "backend", "history"], 0);
    let old = show(&env, "frontend:backend");
    let old_id = old["session_id"].as_str().expect("id").to_string();
    assert_eq!(old["message_count"], 2);

    let v = env.run_json(&["sessions", "reboot", "frontend", "backend"]);
    let new_id = v["session_id"].as_str().expect("session_id").to_string();
    assert!(is_uuid(&new_id), "{v}");
    assert_ne!(new_id, old_id, "a new session id");
    assert_eq!(v["from_team"], "frontend");
    assert_eq!(v["to_team"], "backend");
    assert_eq!(v["message_count"], 0, "{v}");
    assert_eq!(v["process_state"], "stopped", "{v}");
    assert_eq!(
        show(&env, "frontend:backend")["session_id"],
        new_id.as_str()
    );
    assert!(
        env.transcript_path("backend", &old_id).exists(),
        "the old transcript is kept"
    );

    // The agent starts a new conversation; the history of tells is kept.
    let (out, _) = run(&env, &["tell", "frontend", "backend", "history"], 0);
    assert_eq!(out, "history: 0\n", "a new conversation");
    let tells = report(&env, "frontend", "backend");
    assert_eq!(
        texts_and_states(&tells),
        pairs(&[
            ("hello", "answered"),
            ("history", "answered"),
            ("history", "answered"),
        ])
    );
    assert_eq!(tells[0]["session_id"], old_id.as_str());
    assert_eq!(tells[2]["session_id"], new_id.as_str());

    // Human output names both ids.
    let (out, _) = run(&env, &["sessions", "reboot", "frontend", "backend"], 0);
    let newer = show(&env, "frontend:backend")["session_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(
        out,
        format!(
            "frontend -> backend: new session {newer} (was {new_id}; its transcript is kept)\n"
        )
    );
    let (_, err) = run(&env, &["sessions", "reboot", "frontend", "nobody"], 2);
    assert!(err.contains("unknown team"), "{err}");
    env.assert_no_agents();
}

// ---------------------------------------------------------------------------------------------
// sessions compact when the agent fails

#[test]
fn a_failed_compaction_exits_1_and_shows_no_token_counts() {
    let env = TestEnv::with_scripted_agent();
    run(&env, &["sessions", "open", "frontend", "backend"], 0);
    let v = env.run_json(&["sessions", "compact", "frontend:backend"]);
    assert_eq!(v["compacted"], 1, "{v}");
    env.manager()
        .increment_message_count(v["sessions"][0]["session_id"].as_str().expect("id"), 5)
        .expect("messages");

    // Now the agent cannot start.
    let marker = format!("TEST_AGENT_MARKER = \"{}\" }}", env.agent_marker());
    let config = env.teams_toml("");
    assert!(config.contains(&marker), "{config}");
    env.write_config(&config.replace(
        &marker,
        &marker.replace(" }", ", TEST_AGENT_STARTUP = \"exit\" }"),
    ));
    let (out, _) = run(&env, &["sessions", "compact", "frontend:backend"], 1);
    let row = out
        .lines()
        .find(|l| l.starts_with("frontend "))
        .unwrap_or_else(|| panic!("no result row in {out}"));
    assert!(
        row.contains("failed: agent exited before it started: exit status 3"),
        "{out}"
    );
    assert!(
        out.ends_with("\ncompacted 0 of 1 session(s); 1 failed\n"),
        "{out}"
    );
    let s = show(&env, "frontend:backend");
    assert_eq!(s["status"], "error", "{s}");
    assert_eq!(s["message_count"], 5, "not reset: {s}");
    assert_eq!(s["compaction_count"], 1, "{s}");
    assert_stopped(&env, "frontend:backend");
    env.assert_no_agents();

    let out = env.run(&["sessions", "compact", "frontend:backend", "--json"]);
    assert_exit(&out, 1, &["sessions", "compact", "--json"]);
    let v = parse_json(&out);
    assert_eq!(
        (v["compacted"].clone(), v["failed"].clone()),
        (0.into(), 1.into())
    );
    let r = &v["results"][0];
    assert_eq!(r["state"], "failed", "{r}");
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("exit status 3")),
        "{r}"
    );
    assert_eq!(
        (r["pre_tokens"].clone(), r["post_tokens"].clone()),
        (Value::Null, Value::Null),
        "a failed compaction has no token counts (not the previous compaction's): {r}"
    );
}

// ---------------------------------------------------------------------------------------------
// real signals on a running `switchboard tell`

#[test]
fn sigterm_during_a_tell_stops_the_agent_and_fails_the_tell() {
    let env = TestEnv::scripted_with_config("[settings]\nshutdown_grace = \"500ms\"\n");
    let sb = start_long_tell(&env, "sleep:60000");
    let agents = env.agent_pids();
    assert_eq!(agents.len(), 1, "one agent runs the tell: {agents:?}");
    assert_eq!(env.switchboard_pids(), [sb.pid()]);

    let sent = Instant::now();
    send_signal(sb.pid(), libc::SIGTERM);
    let (status, out, err) = sb.finish(Duration::from_secs(15));
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "exits soon after the grace: {took:?}"
    );
    assert_eq!(status.code(), Some(1), "{status:?}\n{err}");
    assert_eq!(out, "");
    assert!(err.contains("SIGTERM"), "{err}");
    assert!(err.contains("500ms"), "names the grace: {err}");

    env.assert_no_agents();
    assert_eq!(env.switchboard_pids(), Vec::<u32>::new());
    assert_stopped(&env, "frontend:backend");
    let tells = report(&env, "frontend", "backend");
    assert_eq!(
        texts_and_states(&tells),
        pairs(&[("sleep:60000", "failed")])
    );
    let error = tells[0]["error"].as_str().expect("error");
    assert!(error.contains("shut down"), "{error}");

    // The next process works normally.
    let (out, _) = run(&env, &["tell", "frontend", "backend", "after"], 0);
    assert_eq!(out, "echo: after\n");
    env.assert_no_agents();
}

#[test]
fn kill_9_leaves_no_orphan_and_the_next_process_recovers() {
    let env = TestEnv::with_scripted_agent();
    let mut sb = start_long_tell(&env, "sleep:60000");
    let agent = env.agent_pids();
    assert_eq!(agent.len(), 1, "{agent:?}");

    // Queued behind the running tell, by another process.
    let (out, _) = run(
        &env,
        &["tell", "frontend", "backend", "second", "--async"],
        0,
    );
    assert!(is_uuid(out.trim_end()), "{out:?}");

    send_signal(sb.pid(), libc::SIGKILL);
    let status = wait_timeout(sb.child(), WAIT).expect("killed switchboard exits");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    drop(sb);
    // The agent dies with it (parent-death signal), without anyone stopping it.
    env.assert_no_agents();
    assert_eq!(env.switchboard_pids(), Vec::<u32>::new());
    assert_eq!(
        texts_and_states(&report(&env, "frontend", "backend")),
        pairs(&[("sleep:60000", "delivered"), ("second", "queued")]),
        "as the killed process left them"
    );

    // The next process: the interrupted tell fails, the queued one goes first, then its own.
    let (out, _) = run(&env, &["tell", "frontend", "backend", "third"], 0);
    assert_eq!(out, "echo: third\n");
    let tells = report(&env, "frontend", "backend");
    assert_eq!(
        texts_and_states(&tells),
        pairs(&[
            ("sleep:60000", "failed"),
            ("second", "answered"),
            ("third", "answered"),
        ])
    );
    let error = tells[0]["error"].as_str().expect("error");
    assert!(error.contains("interrupted by restart"), "{error}");
    assert_eq!(tells[1]["answer"], "echo: second");
    assert_stopped(&env, "frontend:backend");
    env.assert_no_agents();
}

#[test]
fn a_pair_busy_in_another_process_fails_fast() {
    let env = TestEnv::scripted_with_config("[settings]\nshutdown_grace = \"200ms\"\n");
    let sb = start_long_tell(&env, "sleep:60000");
    let holder = sb.pid();
    let busy = format!("busy: held by pid {holder}");

    let started = Instant::now();
    let (out, err) = run(&env, &["tell", "frontend", "backend", "x"], 1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fails fast: {:?}",
        started.elapsed()
    );
    assert_eq!(out, "");
    assert!(err.contains(&busy), "{err}");
    let v = parse_json(&env.run(&["tell", "frontend", "backend", "y", "--json"]));
    assert_eq!(v["state"], "failed");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains(&busy)),
        "{v}"
    );
    // The other agent commands see the same.
    for argv in [
        &["sleep", "frontend", "backend"][..],
        &["cancel", "frontend", "backend"],
    ] {
        let (_, err) = run(&env, argv, 1);
        assert!(err.contains(&busy), "{argv:?}: {err}");
    }
    assert_eq!(
        show(&env, "frontend:backend")["owner_pid"],
        holder,
        "still held by the first process"
    );
    assert_eq!(env.agent_pids().len(), 1, "no second agent for the pair");

    // Clean up: SIGTERM the holder; nothing is left behind.
    send_signal(holder, libc::SIGTERM);
    let (status, _, _) = sb.finish(Duration::from_secs(15));
    assert_eq!(status.code(), Some(1), "{status:?}");
    env.assert_no_agents();
    assert_eq!(env.switchboard_pids(), Vec::<u32>::new());
    assert_stopped(&env, "frontend:backend");
    assert_eq!(
        texts_and_states(&report(&env, "frontend", "backend")),
        pairs(&[("sleep:60000", "failed"), ("x", "failed"), ("y", "failed"),])
    );
}

#[test]
fn wait_busy_waits_for_the_other_process_and_then_answers() {
    let env = TestEnv::with_scripted_agent();
    let sb = start_long_tell(&env, "sleep:1500");
    // The pair is held by the first process; with --wait-busy the second waits, then takes
    // over the session once the first one has answered and exited.
    let out = env.run(&[
        "tell",
        "frontend",
        "backend",
        "after",
        "--wait-busy",
        "--timeout",
        "60s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "echo: after");
    let (status, first, _) = sb.finish(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    assert_eq!(first.trim(), "slept 1500ms");
    env.assert_no_agents();
    assert_eq!(
        texts_and_states(&report(&env, "frontend", "backend")),
        pairs(&[("sleep:1500", "answered"), ("after", "answered")])
    );
}

// ---------------------------------------------------------------------------------------------
// ^C on a waiting tell, retries, whole tells, exit codes

/// Reads a child's stderr line by line on a thread, so a test can wait for a line while the
/// child runs.
struct StderrLines {
    rx: std::sync::mpsc::Receiver<String>,
    seen: String,
}

impl StderrLines {
    fn take(child: &mut Child) -> Self {
        use std::io::BufRead;
        let stream = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        StderrLines {
            rx,
            seen: String::new(),
        }
    }

    /// Waits (bounded) for a line containing `wanted`; panics with what was seen otherwise.
    fn wait_for(&mut self, wanted: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.seen.contains(wanted) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                }
                Err(_) => panic!("no {wanted:?} on stderr within {within:?}: {}", self.seen),
            }
        }
    }

    /// Everything read so far plus whatever is left (the child has exited).
    fn rest(mut self) -> String {
        while let Ok(line) = self.rx.recv_timeout(Duration::from_secs(5)) {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        self.seen
    }
}

#[test]
fn sigint_interrupts_the_turn_and_exits_130_without_waiting_the_grace() {
    // A grace far longer than the test may take: the tell must not wait for it.
    let env = TestEnv::scripted_with_config("[settings]\nshutdown_grace = \"120s\"\n");
    let sb = start_long_tell(&env, "sleep:120000");
    let id = report(&env, "frontend", "backend")[0]["tell_id"]
        .as_str()
        .expect("tell id")
        .to_string();
    send_signal(sb.pid(), libc::SIGINT);
    let (status, out, err) = sb.finish(Duration::from_secs(40));
    assert_eq!(status.code(), Some(130), "{status:?}\n{err}");
    assert_eq!(out, "", "no answer came");
    assert!(err.contains(&format!("interrupting tell {id}")), "{err}");
    assert!(
        err.contains(&format!("interrupted: tell {id} cancelled")),
        "{err}"
    );
    let tells = report(&env, "frontend", "backend");
    assert_eq!(
        texts_and_states(&tells),
        pairs(&[("sleep:120000", "cancelled")]),
        "the turn was interrupted, as `cancel` does"
    );
    env.assert_no_agents();
    assert_stopped(&env, "frontend:backend");
}

#[test]
fn sigint_prints_the_answer_that_arrived_meanwhile() {
    let env = TestEnv::scripted_with_config("[settings]\nshutdown_grace = \"120s\"\n");
    // The agent does not stop on an interrupt: its answer arrives after ^C.
    let sb = start_long_tell(&env, "deaf:1500");
    send_signal(sb.pid(), libc::SIGINT);
    let (status, out, err) = sb.finish(Duration::from_secs(40));
    assert_eq!(status.code(), Some(130), "{status:?}\n{err}");
    assert_eq!(out, "finished anyway after 1500ms\n", "{err}");
    assert!(err.contains("its answer arrived first"), "{err}");
    env.assert_no_agents();
}

#[test]
fn a_second_sigint_exits_at_once() {
    let env = TestEnv::scripted_with_config("[settings]\nshutdown_grace = \"120s\"\n");
    // An agent that ignores the interrupt for a minute: only a second ^C ends the wait early.
    let mut sb = start_long_tell(&env, "deaf:60000");
    let mut lines = StderrLines::take(sb.child());
    send_signal(sb.pid(), libc::SIGINT);
    lines.wait_for("interrupting tell", WAIT);
    send_signal(sb.pid(), libc::SIGINT);
    let status = wait_timeout(sb.child(), WAIT).expect("exits on the second ^C");
    assert_eq!(status.code(), Some(130), "{status:?}");
    let err = lines.rest();
    assert!(err.contains("^C again: quitting now"), "{err}");
    // It did not wait for the turn: the tell is left as the process left it.
    assert_eq!(
        texts_and_states(&report(&env, "frontend", "backend")),
        pairs(&[("deaf:60000", "delivered")])
    );
    // Its agent dies with it.
    env.assert_no_agents();
}

#[test]
fn tells_retry_queues_a_copy_of_a_failed_or_cancelled_tell() {
    let env = TestEnv::with_scripted_agent();
    run(
        &env,
        &[
            "tell",
            "frontend",
            "backend",
            "sleep:2000",
            "--timeout",
            "300ms",
        ],
        1,
    );
    let first = report(&env, "frontend", "backend");
    assert_eq!(
        texts_and_states(&first),
        pairs(&[("sleep:2000", "cancelled")])
    );
    let old_id = first[0]["tell_id"].as_str().expect("id").to_string();

    // By the 8-character prefix `report` prints: the copy is delivered and answered.
    let (out, err) = run(&env, &["tells", "retry", &old_id[..8]], 0);
    assert_eq!(out, "slept 2000ms\n", "{err}");
    let tells = report(&env, "frontend", "backend");
    assert_eq!(
        texts_and_states(&tells),
        pairs(&[("sleep:2000", "cancelled"), ("sleep:2000", "answered")]),
        "the original stays as it ended; the copy is a new tell"
    );
    let new_id = tells[1]["tell_id"].as_str().expect("id").to_string();
    assert_ne!(new_id, old_id);
    let shown = env.run_json(&["tells", "show", &new_id]);
    assert_eq!(shown["retry_of"], old_id.as_str(), "{shown}");

    // --async only queues it.
    let q = env.run_json(&["tells", "retry", &old_id, "--async"]);
    assert_eq!(q["state"], "queued");
    assert_eq!(q["retry_of"], old_id.as_str());

    // What cannot be retried says why, exit 2; an unknown tell is not found, exit 1.
    let (_, err) = run(&env, &["tells", "retry", &new_id], 2);
    assert!(err.contains("it was answered"), "{err}");
    let (_, err) = run(&env, &["tells", "retry", "0000ffff"], 1);
    assert!(err.contains("tell 0000ffff not found"), "{err}");
    env.assert_no_agents();
}

#[test]
fn tells_show_and_report_full_print_whole_answers() {
    let env = TestEnv::with_scripted_agent();
    let long = format!("a long question {} the end", "word ".repeat(30));
    let (out, _) = run(&env, &["tell", "frontend", "backend", &long], 0);
    let answer = format!("echo: {long}");
    assert_eq!(out.trim_end(), answer);
    let id = report(&env, "frontend", "backend")[0]["tell_id"]
        .as_str()
        .expect("id")
        .to_string();

    // The table cuts the answer short; `tells show` and `report --full` do not.
    let table = env.run_ok(&["report", "frontend", "backend"]);
    assert!(!table.contains(&answer), "{table}");
    let shown = env.run_ok(&["tells", "show", &id[..8]]);
    assert!(shown.contains(&format!("tell       {id}")), "{shown}");
    assert!(shown.contains("state      answered"), "{shown}");
    assert!(shown.contains(&format!("--- message\n{long}\n")), "{shown}");
    assert!(
        shown.contains(&format!("--- answer\n{answer}\n")),
        "{shown}"
    );
    let full = env.run_ok(&["report", "frontend", "backend", "--full"]);
    assert!(full.contains(&format!("--- answer\n{answer}\n")), "{full}");
    let v = env.run_json(&["tells", "show", &id]);
    assert_eq!(v["answer"], answer.as_str());

    let (_, err) = run(&env, &["tells", "show", "ffffffff"], 1);
    assert!(err.contains("tell ffffffff not found"), "{err}");
}

#[test]
fn report_follow_prints_tells_of_the_pair_as_they_end() {
    let env = TestEnv::with_scripted_agent();
    run(&env, &["tell", "frontend", "backend", "before"], 0);
    let mut follower =
        Reaper(Some(env.spawn(&[
            "report", "frontend", "backend", "--follow", "--json",
        ])));
    let stream = follower.child().stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| -> Value {
        let line = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no {what} line from report --follow within {WAIT:?}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    // First the report so far, one JSON object a line.
    assert_eq!(next("first")["text"], "before");
    // Then each tell of the pair as it ends, from other processes.
    run(&env, &["tell", "frontend", "backend", "during"], 0);
    let t = next("new tell");
    assert_eq!(t["text"], "during");
    assert_eq!(t["answer"], "echo: during");
    run(&env, &["tell", "frontend", "backend", "crash"], 1);
    assert_eq!(next("failed tell")["state"], "failed");
    // A tell of another pair is not followed.
    run(&env, &["tell", "backend", "frontend", "elsewhere"], 0);
    run(&env, &["tell", "frontend", "backend", "last"], 0);
    assert_eq!(next("last tell")["text"], "last");
    drop(follower);
    env.assert_no_agents();
}

/// `report --follow` ends cleanly (exit 130) on SIGTERM and SIGINT, also when started with
/// SIGINT ignored (a background job of a script).
#[test]
fn report_follow_ends_on_sigint_and_sigterm() {
    use std::os::unix::process::CommandExt;
    let env = TestEnv::new();
    env.run_ok(&["sessions", "open", "frontend", "backend"]);
    for (signal, ignore_sigint) in [
        (libc::SIGTERM, false),
        (libc::SIGINT, false),
        (libc::SIGINT, true),
        (libc::SIGTERM, true),
    ] {
        let mut cmd = env.command();
        cmd.arg("--config")
            .arg(env.config_path())
            .args(["report", "frontend", "backend", "--follow"]);
        if ignore_sigint {
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::signal(libc::SIGINT, libc::SIG_IGN);
                    Ok(())
                });
            }
        }
        let mut follower = Reaper(Some(support::spawn_piped(cmd)));
        // Once the report so far is printed, it follows.
        let stream = follower.child().stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx.recv_timeout(WAIT).expect("the report before following");
        assert_eq!(first, "no tells from frontend to backend");
        send_signal(follower.pid(), signal);
        let (status, _, err) = follower.finish(WAIT);
        assert_eq!(
            status.code(),
            Some(130),
            "signal {signal}, SIGINT ignored: {ignore_sigint}: {status:?} {err}"
        );
        assert!(
            err.contains("stopped following frontend -> backend"),
            "{err}"
        );
    }
}

#[test]
fn the_tell_summary_shows_queue_wait_and_turn_time_apart() {
    let env = TestEnv::with_scripted_agent();
    // Queued first: the next tell waits for its turn behind it (at least 1.5 s).
    run(
        &env,
        &["tell", "frontend", "backend", "sleep:1500", "--async"],
        0,
    );
    let (out, err) = run(&env, &["tell", "frontend", "backend", "hello"], 0);
    assert_eq!(out, "echo: hello\n");
    let summary = err
        .lines()
        .find(|l| l.starts_with("[tell "))
        .unwrap_or_else(|| panic!("no summary: {err}"));
    let secs = |label: &str| -> f64 {
        let rest = summary
            .split(&format!("{label} "))
            .nth(1)
            .unwrap_or_else(|| panic!("no {label:?} in {summary}"));
        rest.split('s')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no seconds after {label:?} in {summary}"))
    };
    assert!(
        secs("queued") >= 1.4,
        "waited behind the first tell: {summary}"
    );
    assert!(secs("turn") < secs("queued"), "{summary}");
}

#[test]
fn the_same_idempotency_key_gives_the_same_tell() {
    let env = TestEnv::with_scripted_agent();
    let a = env.run_json(&["tell", "frontend", "backend", "hello", "--id", "req-1"]);
    assert_eq!(a["answer"], "echo: hello");
    assert_eq!(a["idempotency_key"], "req-1");
    // Sent again (a retry after a lost answer): the same tell, not a second one.
    let b = env.run_json(&["tell", "frontend", "backend", "hello", "--id", "req-1"]);
    assert_eq!(b["tell_id"], a["tell_id"]);
    let (out, _) = run(
        &env,
        &["tell", "frontend", "backend", "hello", "--id", "req-1"],
        0,
    );
    assert_eq!(out, "echo: hello\n");
    assert_eq!(report(&env, "frontend", "backend").len(), 1);

    // The same key for another text is refused, naming the key and the tell.
    let (_, err) = run(
        &env,
        &["tell", "frontend", "backend", "other", "--id", "req-1"],
        2,
    );
    assert!(err.contains("\"req-1\" was already used for tell"), "{err}");
    assert!(err.contains(a["tell_id"].as_str().expect("id")), "{err}");
    let (_, err) = run(
        &env,
        &["tell", "frontend", "backend", "x", "--id", "has space"],
        2,
    );
    assert!(err.contains("not a valid key"), "{err}");
    // Keys belong to the calling team: another team may use the same one.
    let c = env.run_json(&["tell", "backend", "frontend", "hello", "--id", "req-1"]);
    assert_ne!(c["tell_id"], a["tell_id"]);
    assert_eq!(report(&env, "frontend", "backend").len(), 1);
    env.assert_no_agents();
}

/// The JSON error a command printed on stderr with `--json`.
fn json_error(out: &std::process::Output) -> Value {
    let err = stderr(out);
    let line = err
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON error on stderr: {err}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn with_json_errors_are_json_on_stderr_with_the_exit_code() {
    let env = TestEnv::with_scripted_agent();
    for (args, code, wanted) in [
        (
            &["tell", "frontend", "nobody", "hi", "--json"][..],
            2,
            "nobody",
        ),
        (
            &["tell", "frontend", "backend", "crash", "--json"],
            1,
            "failed",
        ),
        (&["tells", "show", "ffffffff", "--json"], 1, "not found"),
        (&["tell", "frontend", "--json"], 2, "required"),
        (
            &["--format", "json", "report", "frontend", "nobody"],
            2,
            "nobody",
        ),
    ] {
        let out = env.run(args);
        assert_exit(&out, code, args);
        let e = json_error(&out);
        assert_eq!(e["exit_code"], code, "{args:?}: {e}");
        assert!(
            e["error"].as_str().is_some_and(|m| m.contains(wanted)),
            "{args:?}: {e}"
        );
    }
    // A failed tell still prints the tell itself on stdout.
    let out = env.run(&["tell", "frontend", "backend", "crash", "--json"]);
    assert_eq!(parse_json(&out)["state"], "failed");
    env.assert_no_agents();
}

#[test]
fn sigint_on_other_agent_commands_exits_130_too() {
    let env = TestEnv::scripted_with_config("[settings]\nshutdown_grace = \"200ms\"\n");
    run(
        &env,
        &["tell", "frontend", "backend", "sleep:60000", "--async"],
        0,
    );
    // `wake` delivers the queued tell and waits for it.
    let mut sb = Reaper(Some(env.spawn(&["wake", "frontend", "backend"])));
    let processing = poll_until(WAIT, || {
        env.session("frontend", "backend")
            .is_some_and(|s| s.process_state == ProcessState::Processing)
    });
    assert!(processing, "{:?}", sb.child().try_wait());
    send_signal(sb.pid(), libc::SIGINT);
    let (status, _, err) = sb.finish(WAIT);
    assert_eq!(status.code(), Some(130), "{status:?}\n{err}");
    assert!(err.contains("interrupted by SIGINT"), "{err}");
    env.assert_no_agents();
}

#[test]
fn tells_cancel_cancels_one_tell() {
    let env = TestEnv::scripted_with_config("[settings]\nshutdown_grace = \"200ms\"\n");
    let ids: Vec<String> = ["q1", "q2"]
        .iter()
        .map(|t| {
            run(&env, &["tell", "frontend", "backend", t, "--async"], 0)
                .0
                .trim_end()
                .to_string()
        })
        .collect();
    // Just that one: the other stays queued.
    let (out, _) = run(&env, &["tells", "cancel", &ids[0][..8]], 0);
    assert_eq!(out, format!("tell {} cancelled\n", ids[0]));
    assert_eq!(
        texts_and_states(&report(&env, "frontend", "backend")),
        pairs(&[("q1", "cancelled"), ("q2", "queued")])
    );
    let v = env.run_json(&["tells", "cancel", &ids[0]]);
    assert_eq!(v["state"], "cancelled");
    env.assert_no_agents();

    // A tell another process is answering: that process must interrupt it.
    let sb = start_long_tell(&env, "sleep:60000");
    let running = report(&env, "frontend", "backend")
        .into_iter()
        .find(|t| t["state"] == "delivered")
        .expect("a running tell");
    let id = running["tell_id"].as_str().expect("id");
    let (_, err) = run(&env, &["tells", "cancel", id], 1);
    assert!(
        err.contains(&format!("busy: held by pid {}", sb.pid())),
        "{err}"
    );
    send_signal(sb.pid(), libc::SIGTERM);
    let (status, _, _) = sb.finish(WAIT);
    assert_eq!(status.code(), Some(1), "{status:?}");
    env.assert_no_agents();
}

#[test]
fn concurrent_tells_with_the_same_key_store_one_tell() {
    let env = TestEnv::with_scripted_agent();
    env.run_json(&["sessions", "open", "frontend", "backend"]);
    // Several processes at once, as retries racing each other would.
    let children: Vec<Child> = (0..6)
        .map(|_| {
            env.spawn(&[
                "tell", "frontend", "backend", "once", "--async", "--id", "race-1",
            ])
        })
        .collect();
    let ids: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().expect("output");
            assert_exit(&out, 0, &["tell", "--id", "race-1"]);
            stdout(&out).trim_end().to_string()
        })
        .collect();
    assert!(is_uuid(&ids[0]), "{ids:?}");
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one tell for all: {ids:?}"
    );
    assert_eq!(
        texts_and_states(&report(&env, "frontend", "backend")),
        pairs(&[("once", "queued")])
    );
}
