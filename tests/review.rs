//! Findings of the review of the event engine, approvals and dashboard (issues 10 and 11), each
//! as a test of what a user would notice.

mod support;

use serde_json::json;
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
