//! The trust boundary around spawned agents (issue 9, §2, §4 and §5): an agent's credential
//! acts only as that agent, only on `/mcp`, only while the agent runs; agents get an
//! allow-listed environment without Switchboard's secrets; tells are bounded per pair and
//! rate-limited per calling team. Real `switchboard serve` processes and real HTTP requests;
//! the agents are the scripted test agent.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::serve::{http as request, Reply, ServeProcess};
use support::{poll_until, TestEnv};

/// The master token of the servers of these tests.
const MASTER: &str = "master-token-0123456789abcdef";

/// The JSON-RPC messages of an answer (`data:` lines of an event stream, or a JSON body).
fn messages(reply: &Reply) -> Vec<Value> {
    reply
        .body
        .lines()
        .filter_map(|l| {
            l.strip_prefix("data: ")
                .or(Some(l).filter(|l| l.starts_with('{')))
        })
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Calls MCP tool `tool` at `path` (`/mcp?...`) with `headers`: initialize, initialized, then
/// `tools/call`. `Err(reply)` when the server refuses a request at the HTTP level.
fn call_tool(
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
    tool: &str,
    args: Value,
) -> Result<Value, Reply> {
    let mut all: Vec<(&str, &str)> = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2025-11-25"),
    ];
    all.extend_from_slice(headers);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}});
    let r = request(authority, "POST", path, &all, &init.to_string());
    if r.status != 200 {
        return Err(r);
    }
    let session = r
        .header("mcp-session-id")
        .expect("an MCP session id")
        .to_string();
    all.push(("Mcp-Session-Id", &session));
    let done = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = request(authority, "POST", path, &all, &done.to_string());
    if !(200..300).contains(&r.status) {
        return Err(r);
    }
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": tool, "arguments": args}});
    let r = request(authority, "POST", path, &all, &call.to_string());
    if r.status != 200 {
        return Err(r);
    }
    Ok(messages(&r)
        .into_iter()
        .find(|m| m["id"] == 2)
        .and_then(|m| m.get("result").cloned())
        .unwrap_or_else(|| panic!("a tools/call result: {}", r.body)))
}

/// The names of the agent's environment from the scripted agent's `env` answer.
fn env_names(answer: &str) -> Vec<String> {
    answer
        .strip_prefix("env: ")
        .unwrap_or_else(|| panic!("an env answer: {answer}"))
        .split(',')
        .map(str::to_string)
        .collect()
}

#[test]
fn an_agents_credential_acts_only_as_that_agent_and_ends_with_it() {
    let env = TestEnv::scripted_with_config(&format!("[server]\nauth_token = \"{MASTER}\"\n"));
    let server = ServeProcess::start(&env);
    let authority = server.authority();
    let bearer = format!("Bearer {MASTER}");
    let owner = [("Authorization", bearer.as_str())];

    // The owner (master token) tells backend as frontend: backend's agent starts and stays.
    let told = call_tool(
        &authority,
        "/mcp?team=frontend",
        &owner,
        "team_tell",
        json!({"to": "backend", "message": "hello"}),
    )
    .unwrap_or_else(|r| panic!("owner's tell refused: {} {}", r.status, r.body));
    assert_eq!(told["structuredContent"]["answer"], "echo: hello", "{told}");
    let session = env.session("frontend", "backend").expect("session");
    let file = env
        .db_path()
        .with_file_name("mcp")
        .join(format!("{}.json", session.session_id));
    let text = std::fs::read_to_string(&file).expect("the agent's MCP config");

    // What the agent holds: its own token, never the master token.
    assert!(
        !text.contains(MASTER),
        "the agent's MCP config holds the server's master token: {text}"
    );
    let config: Value = serde_json::from_str(&text).expect("JSON");
    let held: Vec<(String, String)> = config["mcpServers"]["switchboard"]["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let agent_token = held
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-switchboard-agent"))
        .map(|(_, v)| v.clone())
        .expect("the agent's token");
    let creds: Vec<(&str, &str)> = held.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    // As the agent: always backend, whatever ?team= or X-Switchboard-Team say.
    let mut with_team = creds.clone();
    with_team.push(("X-Switchboard-Team", "docs"));
    let me = call_tool(
        &authority,
        "/mcp?team=frontend",
        &with_team,
        "team_teams",
        json!({}),
    )
    .unwrap_or_else(|r| panic!("the agent's call refused: {} {}", r.status, r.body));
    assert_eq!(me["structuredContent"]["you"], "backend", "{me}");

    // Its token as a bearer token is not the master token.
    let as_bearer = format!("Bearer {agent_token}");
    let r = call_tool(
        &authority,
        "/mcp?team=frontend",
        &[("Authorization", as_bearer.as_str())],
        "team_teams",
        json!({}),
    )
    .expect_err("an agent token is no bearer token");
    assert_eq!(r.status, 401, "{}", r.body);

    // No /api, /status or /metrics with the agent's credential.
    let mut api_headers = creds.clone();
    api_headers.push(("Content-Type", "application/json"));
    let api = request(
        &authority,
        "POST",
        "/api/tell",
        &api_headers,
        &json!({"from": "frontend", "to": "docs", "text": "as frontend", "async": true})
            .to_string(),
    );
    assert!(
        api.status == 403 || api.status == 401,
        "/api/tell with an agent's credential: {} {}",
        api.status,
        api.body
    );
    for path in ["/status", "/metrics"] {
        let r = request(&authority, "GET", path, &creds, "");
        assert_eq!(
            r.status, 403,
            "{path} with an agent's credential: {}",
            r.body
        );
    }
    let tells = env.run_json(&["report", "frontend", "docs"]);
    assert_eq!(tells, json!([]), "no tell was stored as frontend");

    // The agent stops: its credential ends and its file goes.
    let slept = call_tool(
        &authority,
        "/mcp?team=frontend",
        &owner,
        "team_sleep",
        json!({"to": "backend"}),
    )
    .unwrap_or_else(|r| panic!("sleep refused: {} {}", r.status, r.body));
    assert_ne!(slept["isError"], true, "{slept}");
    assert!(
        poll_until(Duration::from_secs(20), || !file.exists()),
        "the agent's MCP config is still there after it stopped"
    );
    let r = call_tool(&authority, "/mcp", &creds, "team_teams", json!({}))
        .expect_err("a stopped agent's credential");
    assert_eq!(r.status, 401, "{}", r.body);
    server.stop();
    env.assert_no_agents();
}

#[test]
fn agents_get_an_allow_listed_environment_without_switchboard_secrets() {
    let env = TestEnv::with_scripted_agent();
    let mut cmd = env.command();
    cmd.arg("--config")
        .arg(env.config_path())
        .args(["tell", "frontend", "backend", "env", "--json"])
        .env("SWITCHBOARD_TOKEN", MASTER)
        .env("UNRELATED_SECRET_VALUE", "s3cret")
        .env("EXTRA_SETTING", "1")
        .env("LC_ALL", "C");
    let out = support::finish(cmd);
    support::assert_exit(&out, 0, &["tell", "frontend", "backend", "env"]);
    let names = env_names(
        support::parse_json(&out)["answer"]
            .as_str()
            .expect("answer"),
    );
    for absent in [
        "SWITCHBOARD_TOKEN",
        "UNRELATED_SECRET_VALUE",
        "EXTRA_SETTING",
    ] {
        assert!(
            !names.iter().any(|n| n == absent),
            "{absent} reached backend's agent: {names:?}"
        );
    }
    for present in ["PATH", "HOME", "LC_ALL", "TEST_AGENT_MARKER"] {
        assert!(
            names.iter().any(|n| n == present),
            "{present} did not reach the agent: {names:?}"
        );
    }

    // A team's env_passthrough (here docs, the last team of the file) adds to the
    // allow-list; SWITCHBOARD_TOKEN never passes.
    let text = env.teams_toml("") + "env_passthrough = [\"EXTRA_*\", \"SWITCHBOARD_TOKEN\"]\n";
    env.write_config(&text);
    let mut cmd = env.command();
    cmd.arg("--config")
        .arg(env.config_path())
        .args(["tell", "frontend", "docs", "env", "--json"])
        .env("SWITCHBOARD_TOKEN", MASTER)
        .env("EXTRA_SETTING", "1");
    let out = support::finish(cmd);
    support::assert_exit(&out, 0, &["tell", "frontend", "docs", "env"]);
    let names = env_names(
        support::parse_json(&out)["answer"]
            .as_str()
            .expect("answer"),
    );
    assert!(names.iter().any(|n| n == "EXTRA_SETTING"), "{names:?}");
    assert!(!names.iter().any(|n| n == "SWITCHBOARD_TOKEN"), "{names:?}");
    env.assert_no_agents();
}

/// `POST /api/tell` as the owner (waiting for the answer unless `quick`): the reply.
fn api_tell_with(authority: &str, from: &str, to: &str, text: &str, quick: bool) -> Reply {
    let bearer = format!("Bearer {MASTER}");
    request(
        authority,
        "POST",
        "/api/tell",
        &[
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ],
        &json!({"from": from, "to": to, "text": text, "async": quick}).to_string(),
    )
}

/// `POST /api/tell`, async, as the owner.
fn api_tell(authority: &str, from: &str, to: &str, text: &str) -> Reply {
    api_tell_with(authority, from, to, text, true)
}

#[test]
fn queues_and_callers_are_limited_and_told_when_to_retry() {
    let env = TestEnv::scripted_with_config(&format!(
        "[settings]\nmax_queued_per_pair = 2\nmax_queued_bytes_per_pair = 1000\n\
         tells_per_minute = 5\nshutdown_grace = \"1s\"\n\
         [server]\nauth_token = \"{MASTER}\"\n"
    ));
    let server = ServeProcess::start(&env);
    let authority = server.authority();

    // A pair's queue: two tells waiting or being answered, the third is refused (429).
    for _ in 0..2 {
        let r = api_tell(&authority, "frontend", "backend", "hang");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = api_tell(&authority, "frontend", "backend", "hang");
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("60"), "{:?}", r.headers);
    assert!(
        r.body.contains("settings.max_queued_per_pair"),
        "{}",
        r.body
    );
    // The same refusal as a tool error on MCP, and from the CLI (exit 1).
    let bearer = format!("Bearer {MASTER}");
    let owner = [("Authorization", bearer.as_str())];
    let out = call_tool(
        &authority,
        "/mcp?team=frontend",
        &owner,
        "team_quick_tell",
        json!({"to": "backend", "message": "hang"}),
    )
    .unwrap_or_else(|r| panic!("refused at the HTTP level: {} {}", r.status, r.body));
    assert_eq!(out["isError"], true, "{out}");
    let text = out["content"][0]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("max_queued_per_pair") && text.contains("try again in 1m"),
        "{text}"
    );
    let cli = env.run(&["tell", "frontend", "backend", "hang", "--async"]);
    assert_eq!(support::exit_code(&cli), 1, "{}", support::stderr(&cli));
    assert!(
        support::stderr(&cli).contains("settings.max_queued_per_pair"),
        "{}",
        support::stderr(&cli)
    );
    let stored = env.run_json(&["report", "frontend", "backend"]);
    assert_eq!(stored.as_array().map(Vec::len), Some(2), "{stored}");

    // The bytes of a pair's queue: an empty queue takes a message; 4 + 999 bytes is too much.
    let r = api_tell(&authority, "docs", "backend", "hang");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api_tell(&authority, "docs", "backend", &"y".repeat(999));
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.body.contains("settings.max_queued_bytes_per_pair"),
        "{}",
        r.body
    );

    // A calling team's rate: frontend has sent 2; 3 more to docs, then the 6th is refused
    // with the time when one more may go; another calling team is not held back.
    for i in 0..3 {
        let r = api_tell_with(&authority, "frontend", "docs", &format!("hello {i}"), false);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = api_tell(&authority, "frontend", "docs", "one too many");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("settings.tells_per_minute"), "{}", r.body);
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a Retry-After header: {:?}", r.headers));
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let r = api_tell(&authority, "backend", "docs", "hello");
    assert_eq!(r.status, 200, "{}", r.body);
    server.stop();
    env.assert_no_agents();
}

#[test]
fn agent_configs_left_by_agents_that_are_gone_are_deleted() {
    let env = TestEnv::with_scripted_agent();
    env.run_json(&["tell", "frontend", "backend", "hello"]);
    let session = env.session("frontend", "backend").expect("session");
    let dir = env.db_path().with_file_name("mcp");
    let file = dir.join(format!("{}.json", session.session_id));
    assert!(!file.exists(), "removed when the command's agent stopped");
    // What an older version (or a killed process) left: a config with a server token.
    std::fs::create_dir_all(&dir).expect("mcp folder");
    std::fs::write(
        &file,
        r#"{"mcpServers":{"switchboard":{"headers":{"Authorization":"Bearer old-master-token"}}}}"#,
    )
    .expect("write a leftover config");
    // A file that names no session of this database is not this database's to delete.
    let other = dir.join("not-a-session.json");
    std::fs::write(&other, "{}").expect("write another file");
    env.run_json(&["tell", "frontend", "docs", "hello"]);
    assert!(
        !file.exists(),
        "the MCP config of an agent that is gone is still there"
    );
    assert!(
        other.exists(),
        "a file of no session of this database was deleted"
    );
    env.assert_no_agents();
}
