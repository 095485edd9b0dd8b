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
