//! CLI commands that act on live agents go through a running `switchboard serve` of the same
//! database: the server's agents answer and keep running after the command ends.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{poll_until, send_signal, wait_timeout, TestEnv};

/// A running `switchboard serve --http 127.0.0.1:0`, stopped (SIGTERM) on drop.
struct Server {
    child: std::process::Child,
}

impl Server {
    fn start(env: &TestEnv) -> Self {
        let child = env.spawn(&["serve", "--http", "127.0.0.1:0"]);
        let announce = env.db_path().with_file_name("server.json");
        assert!(
            poll_until(Duration::from_secs(20), || announce.exists()),
            "the server did not announce itself in {}",
            announce.display()
        );
        Server { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) -> std::process::ExitStatus {
        send_signal(self.child.id(), libc::SIGTERM);
        let status = wait_timeout(&mut self.child, Duration::from_secs(30))
            .expect("server exits on SIGTERM");
        std::mem::forget(self);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn agent_commands_go_through_the_running_server() {
    let env = TestEnv::with_scripted_agent();
    let server = Server::start(&env);

    // tell: answered by the server's agent, which stays up after the command ends.
    let t = env.run_json(&["tell", "frontend", "backend", "hello"]);
    assert_eq!(t["state"], "answered");
    assert_eq!(t["answer"], "echo: hello");
    let s = env.session("frontend", "backend").expect("session");
    assert_eq!(
        s.owner_pid,
        Some(i64::from(server.pid())),
        "the server holds the agent"
    );
    assert_eq!(
        s.process_state.as_str(),
        "idle",
        "still running in the server"
    );
    assert_eq!(env.agent_pids().len(), 1);

    // A second tell reuses the same agent (the conversation goes on).
    let t2 = env.run_json(&["tell", "frontend", "backend", "history"]);
    assert_eq!(t2["answer"], "history: 1");
    assert_eq!(env.agent_pids().len(), 1);

    // --async: the server delivers it on its own.
    let q = env.run_json(&["tell", "frontend", "backend", "later", "--async"]);
    let id = q["tell_id"].as_str().expect("tell id").to_string();
    assert!(
        poll_until(Duration::from_secs(20), || {
            env.run_json(&["report", "frontend", "backend"])
                .as_array()
                .is_some_and(|a| {
                    a.iter()
                        .any(|t| t["tell_id"] == id.as_str() && t["state"] == "answered")
                })
        }),
        "the server delivered the async tell"
    );

    // --timeout through the server cancels the tell when no answer comes in time.
    let out = env.run(&[
        "tell",
        "frontend",
        "backend",
        "sleep:30000",
        "--timeout",
        "500ms",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", support::stderr(&out));
    assert!(support::stderr(&out).contains("no answer within 500ms"));

    // sleep / wake through the server.
    let v: Value = env.run_json(&["sleep", "frontend", "backend"]);
    assert_eq!(v["was_running"], true);
    env.assert_no_agents();
    let human = env.run_ok(&["wake", "frontend", "backend"]);
    assert!(human.contains("keeps running in the server"), "{human}");
    assert_eq!(env.agent_pids().len(), 1);

    // compact and reboot through the server.
    let c = env.run_json(&["sessions", "compact", "frontend:backend"]);
    assert_eq!(c["compacted"], 1, "{c}");
    assert!(
        c["results"][0]["pre_tokens"].as_i64().unwrap_or(0) > 0,
        "{c}"
    );
    let before = env
        .session("frontend", "backend")
        .expect("session")
        .session_id;
    let r = env.run_json(&["sessions", "reboot", "frontend", "backend"]);
    assert_ne!(r["session_id"].as_str(), Some(before.as_str()));

    // cancel through the server: queued tells are cancelled.
    let v = env.run_json(&["cancel", "frontend", "backend"]);
    assert!(v["cancelled_queued"].is_array(), "{v}");

    // Errors keep their exit codes through the server.
    let out = env.run(&["tell", "frontend", "nobody", "hi"]);
    assert_eq!(out.status.code(), Some(2), "{}", support::stderr(&out));
    assert!(support::stderr(&out).contains("nobody"));

    // The server stops cleanly: no agent left, no announcement left.
    let status = server.stop();
    assert!(status.success() || status.code().is_some(), "{status:?}");
    env.assert_no_agents();
    assert!(!env.db_path().with_file_name("server.json").exists());
    // Without a server, commands run in-process again.
    let t = env.run_json(&["tell", "frontend", "backend", "after"]);
    assert_eq!(t["answer"], "echo: after");
    env.assert_no_agents();
}

/// How long a process may take to reach a state the test waits for.
const WAIT: Duration = Duration::from_secs(20);

/// Starts `tell frontend backend TEXT` through the server in the background and waits until
/// the server's agent is processing it; returns the child and the tell id.
fn start_long_tell(env: &TestEnv, text: &str) -> (std::process::Child, String) {
    let mut child = env.spawn(&["tell", "frontend", "backend", text]);
    let mut exited = None;
    let processing = poll_until(WAIT, || {
        exited = child.try_wait().expect("poll the child");
        exited.is_some()
            || env
                .session("frontend", "backend")
                .is_some_and(|s| s.process_state.as_str() == "processing")
    });
    assert!(exited.is_none(), "tell exited early: {exited:?}");
    assert!(processing, "not processing within {WAIT:?}");
    let tells = env.run_json(&["report", "frontend", "backend"]);
    let id = tells
        .as_array()
        .and_then(|a| a.iter().find(|t| t["text"] == text))
        .and_then(|t| t["tell_id"].as_str())
        .expect("the tell is stored")
        .to_string();
    (child, id)
}

/// Waits (bounded) for a child and returns (exit code, stdout, stderr).
fn finish(mut child: std::process::Child) -> (Option<i32>, String, String) {
    let status = wait_timeout(&mut child, WAIT);
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("output");
    let status = status.unwrap_or_else(|| {
        panic!(
            "did not exit within {WAIT:?}\n--- stdout\n{}\n--- stderr\n{}",
            support::stdout(&out),
            support::stderr(&out)
        )
    });
    (status.code(), support::stdout(&out), support::stderr(&out))
}

#[test]
fn a_server_dying_mid_wait_leaves_the_caller_the_tell_id() {
    let env = TestEnv::with_scripted_agent();
    let server = Server::start(&env);
    let (child, id) = start_long_tell(&env, "sleep:60000");
    send_signal(server.pid(), libc::SIGKILL);
    let (code, out, err) = finish(child);
    drop(server);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(out, "");
    assert!(!err.contains("malformed HTTP answer"), "{err}");
    assert!(
        err.contains(&format!("while tell {id} was waiting")),
        "{err}"
    );
    assert!(err.contains("do not send it again"), "{err}");
    assert!(
        err.contains(&format!("switchboard tells show {id}")),
        "{err}"
    );
    assert!(
        err.contains(&format!("switchboard tells retry {id}")),
        "{err}"
    );
    // The id is good: the next process marks the tell interrupted, and it can be retried.
    env.run_json(&["tell", "frontend", "backend", "next"]);
    let t = env.run_json(&["tells", "show", &id]);
    assert_eq!(t["state"], "failed", "{t}");
    let copy = env.run_json(&["tells", "retry", &id, "--async"]);
    assert_eq!(copy["retry_of"], id.as_str());
}

#[test]
fn sigint_through_the_server_leaves_the_tell_running_and_says_how_to_cancel_it() {
    let env = TestEnv::with_scripted_agent();
    let server = Server::start(&env);
    let (child, id) = start_long_tell(&env, "sleep:60000");
    send_signal(child.id(), libc::SIGINT);
    let (code, out, err) = finish(child);
    assert_eq!(code, Some(130), "{err}");
    assert_eq!(out, "");
    assert!(
        err.contains(&format!(
            "tell {id} keeps running in the server (pid {})",
            server.pid()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("switchboard tells cancel {id}")),
        "{err}"
    );
    assert!(
        err.contains(&format!("switchboard tells show {id}")),
        "{err}"
    );
    // Still running in the server; the advice works.
    let t = env.run_json(&["tells", "show", &id]);
    assert_eq!(t["state"], "delivered", "{t}");
    let out = env.run_ok(&["tells", "cancel", &id]);
    assert_eq!(out, format!("tell {id} cancelled\n"));
    assert_eq!(env.run_json(&["tells", "show", &id])["state"], "cancelled");
    let out = env.run_ok(&["tells", "cancel", &id]);
    assert_eq!(out, format!("tell {id} had already ended: cancelled\n"));
    server.stop();
    env.assert_no_agents();
}

#[test]
fn through_the_server_keys_retries_and_exit_codes_work_as_they_do_here() {
    let env = TestEnv::with_scripted_agent();
    // The same cases without and with a server: same exit codes, same JSON errors.
    let cases: &[(&[&str], i32, &str)] = &[
        (&["tell", "frontend", "nobody", "hi"], 2, "nobody"),
        (&["tell", "frontend", "backend", "crash"], 1, "failed"),
        (
            &["tell", "frontend", "backend", "k1", "--id", "key-1"],
            0,
            "",
        ),
        (
            &["tell", "frontend", "backend", "k2", "--id", "key-1"],
            2,
            "already used",
        ),
        (&["tells", "retry", "0000ffff"], 1, "not found"),
    ];
    let outcomes = |env: &TestEnv| -> Vec<(i32, String)> {
        cases
            .iter()
            .map(|(args, code, wanted)| {
                let all = [*args, &["--json"]].concat();
                let out = env.run(&all);
                assert_eq!(
                    support::exit_code(&out),
                    *code,
                    "{all:?}: {}",
                    support::stderr(&out)
                );
                if *code == 0 {
                    return (0, String::new());
                }
                let err = support::stderr(&out);
                let line = err.lines().rev().find(|l| l.starts_with('{')).unwrap_or("");
                let e: Value = serde_json::from_str(line)
                    .unwrap_or_else(|_| panic!("{all:?}: no JSON error: {err}"));
                assert_eq!(e["exit_code"], *code, "{all:?}: {e}");
                let message = e["error"].as_str().unwrap_or("").to_string();
                assert!(message.contains(wanted), "{all:?}: {e}");
                (*code, message)
            })
            .collect()
    };
    let here = outcomes(&env);
    let report_len = |env: &TestEnv| {
        env.run_json(&["report", "frontend", "backend"])
            .as_array()
            .map_or(0, Vec::len)
    };
    let before = report_len(&env);
    let server = Server::start(&env);
    let there = outcomes(&env);
    assert_eq!(
        here.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        there.iter().map(|(c, _)| *c).collect::<Vec<_>>()
    );
    // The key sent again through the server is the tell made here: nothing new for it.
    assert_eq!(report_len(&env), before + 1, "only the crash tell is new");

    // A retry through the server is delivered by the server's agent.
    let failed = env
        .run_json(&["report", "frontend", "backend"])
        .as_array()
        .and_then(|a| a.iter().rev().find(|t| t["state"] == "failed").cloned())
        .expect("a failed tell");
    let id = failed["tell_id"].as_str().expect("id");
    let out = env.run(&["tells", "retry", id]);
    // The copy crashes again, as the original did: a failed tell, exit 1, with its id.
    assert_eq!(support::exit_code(&out), 1, "{}", support::stderr(&out));
    let copy = env.run_json(&["report", "frontend", "backend"]);
    let last = copy.as_array().and_then(|a| a.last()).expect("a tell");
    assert_eq!(last["retry_of"], id);
    let answered = env.run_json(&["tell", "frontend", "backend", "hello"]);
    let out = env.run(&["tells", "retry", answered["tell_id"].as_str().expect("id")]);
    assert_eq!(support::exit_code(&out), 2, "{}", support::stderr(&out));
    assert!(support::stderr(&out).contains("it was answered"));
    server.stop();
    env.assert_no_agents();
}

/// One MCP request over streamable HTTP to the server of `env` as team `team`: returns the
/// `mcp-session-id` header (if any) and the JSON-RPC messages of the answer (`data:` lines of
/// the event stream, or the JSON body).
fn mcp_post(
    env: &TestEnv,
    team: &str,
    session: Option<&str>,
    body: &Value,
) -> (Option<String>, Vec<Value>) {
    use std::io::{Read, Write};
    let announce: Value = serde_json::from_str(
        &std::fs::read_to_string(env.db_path().with_file_name("server.json")).expect("server.json"),
    )
    .expect("server.json is JSON");
    let url = announce["url"].as_str().expect("url");
    let authority = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host:port");
    // The server's token, where an MCP client of this user reads it.
    let token = std::fs::read_to_string(env.db_path().with_file_name("server.token"))
        .expect("server.token");
    let mut stream = std::net::TcpStream::connect(authority).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let payload = body.to_string();
    let mut req = format!(
        "POST /mcp?team={team} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n\
         Authorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        token.trim(),
        payload.len()
    );
    if let Some(s) = session {
        req.push_str(&format!("Mcp-Session-Id: {s}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&payload);
    stream.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let session = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("mcp-session-id")
            .then(|| v.trim().to_string())
    });
    // De-chunk: size line, data, CRLF, ... (a plain body is taken as it is).
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let mut body = String::new();
    if chunked {
        let mut rest = rest;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            body.push_str(&after[..n]);
            rest = &after[n..];
            rest = rest.strip_prefix("\r\n").unwrap_or(rest);
        }
    } else {
        body.push_str(rest);
    }
    let messages = body
        .lines()
        .filter_map(|l| {
            l.strip_prefix("data: ")
                .or(Some(l).filter(|l| l.starts_with('{')))
        })
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (session, messages)
}

#[test]
fn team_tell_with_an_idempotency_key_gives_the_same_tell() {
    let env = TestEnv::with_scripted_agent();
    let server = Server::start(&env);
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}});
    let (session, _) = mcp_post(&env, "frontend", None, &init);
    let session = session.expect("an MCP session id");
    mcp_post(
        &env,
        "frontend",
        Some(&session),
        &serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    let call = |message: &str| -> Value {
        let (_, answers) = mcp_post(
            &env,
            "frontend",
            Some(&session),
            &serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
                "name": "team_tell",
                "arguments": {"to": "backend", "message": message, "idempotency_key": "req-7"}}}),
        );
        answers
            .into_iter()
            .find(|m| m["id"] == 2)
            .and_then(|m| m.get("result").cloned())
            .expect("a tools/call result")
    };
    let first = call("hello");
    assert_ne!(first["isError"], true, "{first}");
    let again = call("hello");
    assert_eq!(
        again["structuredContent"]["tell_id"], first["structuredContent"]["tell_id"],
        "{again}"
    );
    assert_eq!(again["structuredContent"]["answer"], "echo: hello");
    let other = call("something else");
    assert_eq!(other["isError"], true, "{other}");
    let text = other["content"][0]["text"].as_str().unwrap_or("");
    assert!(text.contains("\"req-7\" was already used"), "{text}");
    let tells = env.run_json(&["report", "frontend", "backend"]);
    assert_eq!(tells.as_array().map(Vec::len), Some(1), "{tells}");
    server.stop();
    env.assert_no_agents();
}

/// Makes a named pipe at `path` (0600).
fn mkfifo(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// The writing end of the named pipe `path`, once a reader waits at the other end (`None`
/// while there is none: a non-blocking open fails then).
fn fifo_writer(path: &std::path::Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()
}

/// `serve --http 127.0.0.1:0` held while it starts: a `sleep:60000` tell is queued first, and
/// the server's token file is a named pipe, so the server waits at it (before it has its
/// address, before its start-up recovery). Returns once the server waits there: the server,
/// the writing end of its token file, and the tell's id. Nothing has touched the tell yet.
fn serve_held_while_starting(env: &TestEnv) -> (std::process::Child, std::fs::File, String) {
    let queued = env.run_json(&["tell", "frontend", "backend", "sleep:60000", "--async"]);
    let id = queued["tell_id"].as_str().expect("tell id").to_string();
    let token_file = env.db_path().with_file_name("server.token");
    mkfifo(&token_file);
    let mut child = env.spawn(&["serve", "--http", "127.0.0.1:0"]);
    let mut writer = None;
    let mut exited = None;
    poll_until(WAIT, || {
        exited = child.try_wait().expect("poll the server");
        writer = fifo_writer(&token_file);
        writer.is_some() || exited.is_some()
    });
    assert!(exited.is_none(), "serve exited early: {exited:?}");
    let writer = writer.expect("serve reads its token file");
    assert!(env.agent_pids().is_empty(), "no agent before recovery");
    let t = env.run_json(&["tells", "show", &id]);
    assert_eq!(t["state"], "queued", "{t}");
    (child, writer, id)
}

/// After a server ended: no agent left, no lease held, no announcement left.
fn assert_stopped_cleanly(env: &TestEnv, what: &str) {
    env.assert_no_agents();
    let s = env.session("frontend", "backend").expect("session");
    assert_eq!(s.owner_pid, None, "{what}: no lease is held");
    assert!(!env.db_path().with_file_name("server.json").exists());
}

/// A SIGTERM or SIGINT that reaches `serve` while it is still starting stops it as one that
/// comes later does: exit 0, no agent left, no lease held, and the queued tell not lost (left
/// queued when the signal was seen before recovery, else failed with the reason). Before the
/// handlers were installed first, the signal took its default action and killed the server.
#[test]
fn a_signal_while_serve_starts_stops_it_cleanly() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let env = TestEnv::scripted_with_config("[settings]\nshutdown_grace = \"200ms\"\n");
        let (child, mut writer, id) = serve_held_while_starting(&env);
        send_signal(child.id(), signal);
        // Then the token, and the end of the file: the server goes on starting (a server
        // the signal killed is not there to read it).
        let _ = std::io::Write::write_all(&mut writer, b"0123456789abcdef0123456789abcdef\n");
        drop(writer);
        let (code, _, err) = finish(child);
        // No exit code: the signal killed the server.
        assert_eq!(code, Some(0), "signal {signal}: {err}");
        assert_stopped_cleanly(&env, &format!("signal {signal}"));
        let t = env.run_json(&["tells", "show", &id]);
        let kept = t["state"] == "queued"
            || (t["state"] == "failed"
                && t["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("shut down before the agent answered")));
        assert!(kept, "signal {signal}: {t}");
    }
}

/// A server that cannot start (here: a bad stored token) exits 1 with the reason, having
/// touched no tell and started no agent: recovery runs only once the server has its address.
/// (Before, recovery ran first: the queued tell was given to an agent, then failed when the
/// server stopped.)
#[test]
fn serve_that_cannot_start_leaves_the_queued_tells_alone() {
    let env = TestEnv::scripted_with_config("[settings]\nshutdown_grace = \"200ms\"\n");
    let (child, mut writer, id) = serve_held_while_starting(&env);
    let _ = std::io::Write::write_all(&mut writer, b"short\n");
    drop(writer);
    let (code, _, err) = finish(child);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("server.token"), "{err}");
    assert!(err.contains("at least 16 characters"), "{err}");
    assert_stopped_cleanly(&env, "bad token");
    let t = env.run_json(&["tells", "show", &id]);
    assert_eq!(t["state"], "queued", "{t}");
    assert!(t["delivered_at"].is_null(), "{t}");
}
