//! Findings of the review of the event engine, approvals and dashboard (issues 10 and 11), each
//! as a test of what a user would notice.

mod support;

use serde_json::json;
use support::serve::{http, ServeProcess};
use support::TestEnv;
use switchboard::router::approvals::summarize_input;

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
