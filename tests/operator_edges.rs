//! Findings of the operator edges of the event engine, approvals and dashboard (issues 10 and 11), each
//! as a test of what a user would notice.

mod support;

use serde_json::json;
use support::serve::{http, ServeProcess};
use support::TestEnv;
use switchboard::router::approvals::summarize_input;
use switchboard::store::NewApproval;

/// A permission request's input summary (shown by `switchboard approvals`, the dashboard and the
/// `approval_requested` event) hides the values of secret-named keys of a tool's JSON input,
/// as the `tool_use` event's summary does; an MCP tool's `{"api_key": ...}` is not shown.
#[test]
fn an_approval_summary_hides_secret_named_keys_of_a_json_input() {
    let secret = "plainsecretvalue123";
    let input = json!({"query": "select 1", "api_key": secret, "auth": {"password": secret}});
    let s = summarize_input("mcp__db__query", &input);
    assert!(!s.contains(secret), "a secret in the approval summary: {s}");
    assert!(
        s.contains("select 1"),
        "the rest of the input is shown: {s}"
    );
    // A file tool's summary shows the path and a preview of the content, secrets hidden.
    let s = summarize_input(
        "Write",
        &json!({"file_path": "/p/.env", "content": format!("DB_PASSWORD={secret}\n")}),
    );
    assert!(s.starts_with("/p/.env (") && !s.contains(secret), "{s}");
}

/// `POST /api/wait` for a tell that does not exist is a 404 naming the tell (as `approve` for
/// an approval that does not exist), not a 500 "server error".
#[test]
fn waiting_for_an_unknown_tell_over_the_api_is_a_404() {
    let env = TestEnv::new();
    let server = ServeProcess::start(&env);
    let auth = format!("Bearer {}", server.token());
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    for (op, body) in [
        (
            "wait",
            r#"{"tell_id": "0b7f0a52-0000-4000-8000-000000000000"}"#,
        ),
        (
            "approve",
            r#"{"id": "ap-000000000000", "decision": "allow"}"#,
        ),
    ] {
        let r = http(
            &server.authority(),
            "POST",
            &format!("/api/{op}"),
            &headers,
            body,
        );
        assert_eq!(r.status, 404, "{op}: {}", r.body);
        assert!(r.body.contains("not found"), "{op}: {}", r.body);
    }
    server.stop();
}

/// Deleting a session (`sessions delete`) also forgets its permission requests and the allow
/// rules `approvals allow --always` added to it: `approvals rules` no longer lists a rule of a
/// session that is gone (it could never match again), and `approvals --all` no request of its
/// deleted tells.
#[test]
fn deleting_a_session_forgets_its_rules_and_requests() {
    let env = TestEnv::new();
    let m = env.manager();
    let s = m.get_or_create("frontend", "backend").expect("session");
    let now = 1_765_000_000_000;
    m.store()
        .add_session_rule(
            &s.session_id,
            "frontend",
            "backend",
            "Bash(cargo:*)",
            None,
            now,
        )
        .expect("add a rule");
    m.store()
        .insert_approval(
            &NewApproval {
                approval_id: "ap-0123456789ab",
                tell_id: None,
                session_id: &s.session_id,
                from_team: "frontend",
                to_team: "backend",
                request_id: "r1",
                tool_use_id: None,
                tool: "Write",
                input: "/p/notes.txt",
                decide_by: "rule",
                decided: Some(("allowed", "rule", None, Some("Write"))),
                expires_at: now,
                owner: m.me(),
            },
            now,
        )
        .expect("record a request");
    drop(m);
    assert!(env
        .run_ok(&["approvals", "rules"])
        .contains("Bash(cargo:*)"));
    env.run_ok(&["sessions", "delete", "frontend:backend", "--yes"]);
    let rules = env.run_ok(&["approvals", "rules"]);
    assert!(!rules.contains("Bash(cargo:*)"), "{rules}");
    let all = env.run_ok(&["approvals", "--all"]);
    assert!(!all.contains("ap-0123456789ab"), "{all}");
}

/// Records a request of `from -> to` in `m`'s database: pending, or decided by a rule.
fn record_request(m: &switchboard::SessionManager, id: &str, from: &str, to: &str, pending: bool) {
    record_call(m, id, from, to, pending, "Write", "/p/notes.txt");
}

/// Records a request of `from -> to` for `tool` with the input summary `input`.
fn record_call(
    m: &switchboard::SessionManager,
    id: &str,
    from: &str,
    to: &str,
    pending: bool,
    tool: &str,
    input: &str,
) {
    let s = m.get_or_create(from, to).expect("session");
    let now = 1_765_000_000_000;
    m.store()
        .insert_approval(
            &NewApproval {
                approval_id: id,
                tell_id: None,
                session_id: &s.session_id,
                from_team: from,
                to_team: to,
                request_id: id,
                tool_use_id: None,
                tool,
                input,
                decide_by: if pending { "human" } else { "rule" },
                decided: (!pending).then_some(("allowed", "rule", None, Some("Write"))),
                expires_at: now + 3_600_000,
                owner: m.me(),
            },
            now,
        )
        .expect("record a request");
}

/// `approvals --all` (and the dashboard's Approvals view, which lists with `all`) shows every
/// pending request even when more requests were decided after it than the list holds (every
/// call a rule decides is recorded too); and `--team` selects before the list is cut, so a
/// team's requests are not crowded out by other teams' newer ones.
#[test]
fn the_list_of_all_requests_keeps_the_pending_ones_and_the_teams_own() {
    let env = TestEnv::new();
    let m = env.manager();
    record_request(&m, "ap-0000pending", "frontend", "backend", true);
    record_request(&m, "ap-0000decided", "frontend", "backend", false);
    for i in 0..120 {
        record_request(&m, &format!("ap-docs{i:08}"), "docs", "frontend", false);
    }
    let all = env.run_ok(&["approvals", "--all"]);
    assert!(
        all.contains("ap-0000pending"),
        "the pending request is missing:\n{all}"
    );
    let backend = env.run_ok(&["approvals", "--all", "--team", "backend"]);
    assert!(
        backend.contains("ap-0000pending") && backend.contains("ap-0000decided"),
        "backend's requests are missing:\n{backend}"
    );
    assert!(!backend.contains("ap-docs"), "{backend}");
}

/// `switchboard dashboard` only asks the running server for a login link: a team folder that
/// is gone (moved, deleted) since the server started is a warning, as for the other commands
/// that start no agent, not an error that leaves the owner without a way into the page.
#[test]
fn dashboard_gives_a_link_when_a_team_folder_is_gone() {
    let env = TestEnv::new();
    let server = ServeProcess::start(&env);
    std::fs::remove_dir(env.project("docs")).expect("remove docs' folder");
    let out = env.run(&["dashboard"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let link = String::from_utf8_lossy(&out.stdout);
    assert!(link.contains("/dashboard/login?code="), "{link}");
    assert!(stderr.contains("teams.docs.path"), "{stderr}");
    server.stop();
}

/// `POST /api/approve` (and `team_approve`, which read the decision the same way) refuses
/// `"always": true` with a denial, naming `always`, instead of denying and silently dropping
/// it: there are no "deny always" rules. An unknown decision names `decision`.
#[test]
fn approve_refuses_always_with_a_denial() {
    let env = TestEnv::new();
    let server = ServeProcess::start(&env);
    let auth = format!("Bearer {}", server.token());
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    for (body, names) in [
        (
            r#"{"id": "ap-000000000000", "decision": "deny", "always": true}"#,
            "always",
        ),
        (
            r#"{"id": "ap-000000000000", "decision": "maybe"}"#,
            "decision",
        ),
    ] {
        let r = http(&server.authority(), "POST", "/api/approve", &headers, body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.body.contains(names), "{body}: {}", r.body);
    }
    server.stop();
}

/// `approvals allow ID --always` on a shell command that does not start with a plain command
/// name (`FOO=1 make`, `(cd x && make)`) is refused, naming the command, and the request
/// stays pending: the rule it used to add was plain `Bash`, which allows every command of the
/// session, `rm -rf ~` included; so is one that starts with a command that runs any other
/// (`bash -c`, `sudo`). A command that starts with a name gets `Bash(name:*)`.
#[test]
fn allow_always_never_adds_a_rule_for_every_shell_command() {
    let env = TestEnv::new();
    let m = env.manager();
    record_call(
        &m,
        "ap-0000000envs",
        "frontend",
        "backend",
        true,
        "Bash",
        "FOO=1 make",
    );
    record_call(
        &m,
        "ap-00000000make",
        "frontend",
        "backend",
        true,
        "Bash",
        "make test",
    );
    for (id, command) in [
        ("ap-0000000bash", "bash -c 'make'"),
        ("ap-0000000sudo", "/usr/bin/sudo make"),
    ] {
        record_call(&m, id, "frontend", "backend", true, "Bash", command);
    }
    drop(m);
    let out = env.run(&["approvals", "allow", "ap-0000000envs", "--always"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("FOO=1 make"), "{stderr}");
    let rules = env.run_ok(&["approvals", "rules"]);
    assert!(!rules.contains("Bash"), "{rules}");
    // A command that runs whatever follows it is as good as every command.
    for id in ["ap-0000000bash", "ap-0000000sudo"] {
        let out = env.run(&["approvals", "allow", id, "--always"]);
        assert_eq!(out.status.code(), Some(1), "{id}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("runs any command"), "{id}: {stderr}");
    }
    let pending = env.run_ok(&["approvals"]);
    assert!(
        pending.contains("ap-0000000envs"),
        "still pending:\n{pending}"
    );
    env.run_ok(&["approvals", "allow", "ap-00000000make", "--always"]);
    let rules = env.run_ok(&["approvals", "rules"]);
    assert!(rules.contains("Bash(make:*)"), "{rules}");
}

/// The list of requests takes a tell as every other command does, by a unique prefix of its
/// id (`approvals --tell 3f2a9c1e`), and an unknown team is an error naming it also over the
/// HTTP API (it was an empty list there, the CLI alone checked it).
#[test]
fn the_list_of_requests_takes_a_tell_prefix_and_names_an_unknown_team() {
    let env = TestEnv::new();
    let m = env.manager();
    let s = m.get_or_create("frontend", "backend").expect("session");
    let tell_id = "3f2a9c1e-0000-4000-8000-000000000001";
    let now = 1_765_000_000_000;
    m.store()
        .insert_tell(
            &switchboard::store::NewTell {
                tell_id,
                session_id: &s.session_id,
                from_team: "frontend",
                to_team: "backend",
                kind: switchboard::store::TellKind::Tell,
                text: "write the notes",
                parent_tell_id: None,
            },
            now,
        )
        .expect("store a tell");
    m.store()
        .insert_approval(
            &NewApproval {
                approval_id: "ap-00000intell",
                tell_id: Some(tell_id),
                session_id: &s.session_id,
                from_team: "frontend",
                to_team: "backend",
                request_id: "r1",
                tool_use_id: None,
                tool: "Write",
                input: "/p/notes.txt",
                decide_by: "rule",
                decided: Some(("allowed", "rule", None, Some("Write"))),
                expires_at: now,
                owner: m.me(),
            },
            now,
        )
        .expect("record a request");
    drop(m);
    let listed = env.run_ok(&["approvals", "--all", "--tell", "3f2a9c1e"]);
    assert!(listed.contains("ap-00000intell"), "{listed}");

    let server = ServeProcess::start(&env);
    let auth = format!("Bearer {}", server.token());
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let r = http(
        &server.authority(),
        "POST",
        "/api/approvals",
        &headers,
        r#"{"all": true, "team": "bakend"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("bakend"), "{}", r.body);
    let r = http(
        &server.authority(),
        "POST",
        "/api/approvals",
        &headers,
        r#"{"all": true, "tell_id": "3f2a9c1e"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("ap-00000intell"), "{}", r.body);
    server.stop();
}

/// The agent dies while its permission request waits for a person: the request expires at
/// once with that reason (not at its 10-minute timeout, and nobody can allow it any more), the
/// tell fails, and nothing stays pending.
#[test]
fn an_agent_that_dies_with_a_pending_request_expires_it() {
    let env = TestEnv::scripted_with_config(
        "[teams.backend.permissions]\nask = \"human\"\ntimeout = \"10m\"\n",
    );
    let tell = env.spawn(&["tell", "frontend", "backend", "ask:touch made.txt"]);
    let m = env.manager();
    let mut pending = None;
    assert!(
        support::poll_until(std::time::Duration::from_secs(30), || {
            pending = m
                .store()
                .list_approvals(&switchboard::store::ApprovalQuery {
                    pending_only: true,
                    limit: 10,
                    ..Default::default()
                })
                .expect("list")
                .pop();
            pending.is_some()
        }),
        "no pending request"
    );
    let pending = pending.expect("pending");
    assert_eq!(pending.input, "touch made.txt");
    let pid = m
        .store()
        .get_by_pair("frontend", "backend")
        .expect("read")
        .and_then(|s| s.agent_pid)
        .expect("the agent's pid");
    // SAFETY: kill has no memory effects; the pid is the test's own agent.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let out = tell.wait_with_output().expect("the tell ends");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = m
        .store()
        .get_approval(&pending.approval_id)
        .expect("read")
        .expect("stored");
    assert_eq!(a.state, "expired", "{a:?}");
    assert!(
        a.reason.as_deref().unwrap_or("").contains("it exited"),
        "{a:?}"
    );
    let allow = env.run(&["approvals", "allow", &pending.approval_id]);
    assert_eq!(allow.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&allow.stderr).contains("already decided"));
}
