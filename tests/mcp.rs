//! The MCP server (`switchboard serve`) driven by real clients: the official MCP Python SDK
//! over streamable HTTP and stdio, with both the 2025-11-25 initialize handshake and the
//! 2026-07-28 protocol (server/discover, stateless HTTP); the MCP conformance suite over
//! HTTP; the bearer token, DNS-rebinding guard, `/health`, `/status`, `/metrics`, the
//! `serve` command and `server.json`. Agents are the scripted test agent ("x" → "echo: x").

#[path = "mcp/harness.rs"]
mod harness;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/test_agent.rs"]
mod test_agent;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use harness::*;
use switchboard::server::serve::{start, ServeOptions, Transport};
use switchboard::server::McpError;

/// Runs the tool scenario of tests/mcp/client.py against an in-process HTTP server.
async fn http_scenario(mode: &str) -> serde_json::Value {
    let env = Env::new("");
    let server = env.start_http().await;
    let url = format!("{}?team=a", server.url());
    let out = env
        .python(&["scenario", "--mode", mode, "--url", &url])
        .await
        .json();
    server.shutdown().await;
    env.assert_no_agents().await;
    assert!(
        !env.server_json().exists(),
        "server.json removed at shutdown"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_http_with_the_initialize_handshake() {
    let out = http_scenario("legacy").await;
    assert_eq!(out["protocol_version"], "2025-11-25");
    assert_eq!(out["tools"].as_array().map(Vec::len), Some(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_http_with_the_2026_protocol() {
    let out = http_scenario("auto").await;
    assert_eq!(out["protocol_version"], "2026-07-28");
}

/// The Python client spawns `switchboard serve --stdio --as a` and runs the tool scenario;
/// when it leaves, the server stops its agents and exits.
async fn stdio_scenario(mode: &str) -> serde_json::Value {
    let env = Env::new("");
    let config = env.config_path().display().to_string();
    let out = python(&[
        "scenario", "--mode", mode, "--stdio", BIN, "--config", &config, "serve", "--stdio",
        "--as", "a",
    ])
    .await
    .json();
    env.assert_no_agents().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while env.server_json().exists() {
        assert!(
            Instant::now() < deadline,
            "server.json still there after the server left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_stdio_with_the_initialize_handshake() {
    let out = stdio_scenario("legacy").await;
    assert_eq!(out["protocol_version"], "2025-11-25");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_stdio_with_the_2026_protocol() {
    let out = stdio_scenario("auto").await;
    assert_eq!(out["protocol_version"], "2026-07-28");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_are_named_by_query_header_or_agent_token() {
    let env = Env::new("");
    let server = env.start_http().await;
    let out = env.python(&["callers", "--url", server.url()]).await.json();
    assert_eq!(out["query"], "b");
    assert_eq!(out["header"], "c");
    assert!(
        out["none"]
            .as_str()
            .is_some_and(|s| s.contains("?team=NAME")),
        "{out}"
    );

    // A spawned agent's MCP config (written by the router when the server started it)
    // names the server and carries the agent's token: with it, the caller is the agent's
    // team (b, the callee of the a -> b session), whatever ?team= says.
    let tell = env
        .python(&[
            "scenario-tell",
            "--url",
            &format!("{}?team=a", server.url()),
        ])
        .await
        .json();
    assert_eq!(tell["answer"], "echo: hello");
    let m = switchboard::SessionManager::open(std::sync::Arc::clone(&env.config)).expect("open");
    let s = m.get("a", "b").expect("get").expect("session a -> b");
    let file = env
        .path()
        .join("data/mcp")
        .join(format!("{}.json", s.session_id));
    let mcp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("agent MCP config"))
            .expect("json");
    let entry = &mcp["mcpServers"]["switchboard"];
    assert_eq!(entry["url"], server.url());
    let token = entry["headers"]["X-Switchboard-Agent"]
        .as_str()
        .expect("agent token");
    let out = env
        .python(&["callers", "--url", server.url(), "--agent-token", token])
        .await
        .json();
    assert_eq!(out["agent"], "b");
    server.shutdown().await;
    env.assert_no_agents().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_over_http() {
    // The suite cannot send a token: this server opts out of it on loopback, on purpose
    // (`require_token = false`); tests/trust_server.rs covers the token.
    let env = Env::new("[server]\nrequire_token = false\n");
    let server = env.start_http().await;
    let url = format!("{}?team=a", server.url());
    let t = tools();
    for scenario in [
        "server-initialize",
        "ping",
        "tools-list",
        "server-sse-multiple-streams",
        "dns-rebinding-protection",
    ] {
        let mut cmd = tokio::process::Command::new(&t.node);
        cmd.arg(&t.conformance)
            .args(["server", "--url", &url, "--scenario", scenario, "-o"])
            .arg(env.path().join("conformance"));
        let ran = run(cmd, Duration::from_secs(120)).await;
        assert!(
            ran.code == Some(0) && ran.stdout.contains(" 0 failed"),
            "conformance {scenario} failed:\n{}\n{}",
            ran.stdout,
            ran.stderr
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_address_needs_a_token() {
    let env = Env::new("");
    let addr: SocketAddr = "0.0.0.0:0".parse().expect("addr");
    let mut options = ServeOptions::new(Transport::Http { addr });
    options.signals = switchboard::signals::Signals::none();
    let err = start(env.router(), options).await.expect_err("refused");
    assert!(
        matches!(err, McpError::InsecureBind { .. }) && err.is_bad_input(),
        "{err}"
    );
    assert!(err.to_string().contains("auth_token"), "{err}");

    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--config")
        .arg(env.config_path())
        .args(["serve", "--http", "0.0.0.0:0"]);
    cmd.env_remove("SWITCHBOARD_TOKEN");
    let ran = run(cmd, Duration::from_secs(30)).await;
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("refusing to serve on 0.0.0.0:0 without a token"),
        "{}",
        ran.stderr
    );

    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--config")
        .arg(env.config_path())
        .args(["serve", "--http", "0.0.0.0:0"]);
    cmd.env("SWITCHBOARD_TOKEN", "short");
    let ran = run(cmd, Duration::from_secs(30)).await;
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("$SWITCHBOARD_TOKEN must be at least 16 characters"),
        "{}",
        ran.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_request_needs_it() {
    let env = Env::new(&format!("[server]\nauth_token = \"{TOKEN}\"\n"));
    let addr: SocketAddr = "0.0.0.0:0".parse().expect("addr");
    let server = env.start(Transport::Http { addr }, None).await;
    let local: SocketAddr = ([127, 0, 0, 1], server.addr().port()).into();
    let bearer = format!("Bearer {TOKEN}");
    // Health stays open (it shows nothing); everything else needs the token.
    assert_eq!(http(local, "GET", "/health", &[], "").await.status, 200);
    for (path, method, body) in [
        ("/status", "GET", ""),
        ("/mcp", "POST", INITIALIZE),
        ("/metrics", "GET", ""),
    ] {
        let none = http(local, method, path, &MCP_POST, body).await;
        assert_eq!(none.status, 401, "{method} {path} without a token");
        assert_eq!(
            none.headers.get("www-authenticate").map(String::as_str),
            Some("Bearer realm=\"switchboard\"")
        );
        let wrong = http(
            local,
            method,
            path,
            &[
                MCP_POST[0],
                MCP_POST[1],
                ("Authorization", "Bearer wrong-token-0123456789"),
            ],
            body,
        )
        .await;
        assert_eq!(wrong.status, 401, "{method} {path} with a wrong token");
        let right = http(
            local,
            method,
            path,
            &[MCP_POST[0], MCP_POST[1], ("Authorization", &bearer)],
            body,
        )
        .await;
        assert_eq!(right.status, 200, "{method} {path} with the token");
    }
    // A public bind accepts any Host name (the token guards it).
    let named = http(
        local,
        "GET",
        "/health",
        &[
            ("Host", "switchboard.example:1"),
            ("Authorization", &bearer),
        ],
        "",
    )
    .await;
    assert_eq!(named.status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_guards_host_and_origin() {
    let env = Env::new("");
    let server = env.start_http().await;
    let bearer = env.bearer();
    let addr = server.addr();
    let port = addr.port();
    let ok_host = format!("localhost:{port}");
    let ok_origin = format!("http://127.0.0.1:{port}");
    let other_port = format!("http://localhost:{}", port.wrapping_add(1));
    let cases: [(&str, Option<&str>, u16); 6] = [
        (&ok_host, None, 200),
        (&ok_host, Some(&ok_origin), 200),
        ("evil.example.com", None, 403),
        (&format!("evil.example.com:{port}"), None, 403),
        (&ok_host, Some("http://evil.example.com"), 403),
        (&ok_host, Some(&other_port), 403),
    ];
    for (host, origin, want) in cases {
        let mut headers = vec![("Host", host)];
        if let Some(o) = origin {
            headers.push(("Origin", o));
        }
        assert_eq!(
            http(addr, "GET", "/health", &headers, "").await.status,
            want,
            "Host {host}, Origin {origin:?}"
        );
        headers.extend(MCP_POST);
        headers.push(("Authorization", &bearer));
        assert_eq!(
            http(addr, "POST", "/mcp", &headers, INITIALIZE)
                .await
                .status,
            want,
            "/mcp Host {host}, Origin {origin:?}"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_status_and_metrics() {
    let env = Env::new("");
    let server = env.start_http().await;
    let addr = server.addr();
    let url = format!("{}?team=a", server.url());
    // One tell through the server, so there is a live agent and an answered tell.
    let ran = env
        .python(&["scenario", "--mode", "legacy", "--url", &url])
        .await;
    ran.json();
    let bearer = env.bearer();
    let auth = [("Authorization", bearer.as_str())];

    let health = http(addr, "GET", "/health", &[], "").await;
    assert_eq!(
        (health.status, health.body.trim()),
        (200, "{\n  \"status\": \"ok\"\n}")
    );
    let status: serde_json::Value =
        serde_json::from_str(&http(addr, "GET", "/status", &auth, "").await.body).expect("json");
    assert_eq!(status["pid"], std::process::id());
    assert_eq!(status["url"], server.url());
    assert_eq!(status["teams"], serde_json::json!(["a", "b", "c"]));
    assert!(
        status["live_agents"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{status}"
    );
    assert!(
        status["tells"]["answered"].as_u64().is_some_and(|n| n >= 5),
        "{status}"
    );
    let metrics = http(addr, "GET", "/metrics", &auth, "").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    for needle in [
        "# TYPE switchboard_tells_total counter",
        "switchboard_tells_total{outcome=\"answered\"}",
        "switchboard_live_agents{state=\"idle\"}",
        "switchboard_queue_depth 0",
        "switchboard_tell_duration_seconds_bucket{le=\"+Inf\"}",
        "switchboard_store_query_seconds",
        "switchboard_session_cache_lookups_total{result=\"hit\"}",
        "switchboard_session_cache_hit_ratio",
        "# TYPE switchboard_sessions_by_agent gauge",
        "switchboard_sessions_by_agent{agent=\"claude\"}",
        "switchboard_cost_usd_by_agent{agent=\"claude\"}",
    ] {
        assert!(
            metrics.body.contains(needle),
            "{needle} missing in\n{}",
            metrics.body
        );
    }
    assert!(
        !metrics
            .body
            .contains("switchboard_tell_duration_seconds_count 0\n"),
        "{}",
        metrics.body
    );
    assert_eq!(http(addr, "GET", "/nope", &auth, "").await.status, 404);
    assert_eq!(http(addr, "POST", "/health", &auth, "").await.status, 405);
    server.shutdown().await;
    env.assert_no_agents().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_command_announces_records_and_stops_on_sigterm() {
    let env = Env::new("");
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--config")
        .arg(env.config_path())
        .args(["serve", "--http", "127.0.0.1:0"]);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("announced in time")
        .expect("read")
        .expect("a line");
    let url = line
        .strip_prefix("switchboard: serving MCP at ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("unexpected: {line}"))
        .to_string();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.server_json()).expect("server.json"))
            .expect("json");
    assert_eq!(state["url"], url);
    assert_eq!(state["pid"], child.id().expect("pid"));
    assert_eq!(state["transport"], "http");
    assert!(
        state["process_started_at"].as_i64().is_some_and(|t| t > 0),
        "{state}"
    );
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .parse()
        .expect("addr");
    assert_eq!(http(addr, "GET", "/health", &[], "").await.status, 200);
    let out = env
        .python(&[
            "scenario",
            "--mode",
            "legacy",
            "--url",
            &format!("{url}?team=a"),
        ])
        .await;
    out.json();

    let pid = child.id().expect("pid") as i32;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status}");
    assert!(!env.server_json().exists(), "server.json removed");
    env.assert_no_agents().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_needs_a_known_team() {
    let env = Env::new("");
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--config")
        .arg(env.config_path())
        .args(["serve", "--stdio", "--as", "nosuch"]);
    let ran = run(cmd, Duration::from_secs(30)).await;
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("--as nosuch: unknown team"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stdout.is_empty(),
        "stdout is for JSON-RPC only: {}",
        ran.stdout
    );

    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--config").arg(env.config_path()).args([
        "serve",
        "--http",
        "127.0.0.1:0",
        "--as",
        "a",
    ]);
    let ran = run(cmd, Duration::from_secs(30)).await;
    assert_eq!(ran.code, Some(2), "--as needs --stdio: {}", ran.stderr);
}

/// The endpoint a command without a server serves to the agents it spawns: loopback, every
/// request needs its random token, only `/mcp` is served, and it is gone after shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commands_agent_endpoint_needs_its_token_and_serves_only_mcp() {
    let env = Env::new("");
    let router = env.router();
    let endpoint = switchboard::server::serve::start_agent_endpoint(&router)
        .await
        .expect("agent endpoint");
    let authority = endpoint
        .url()
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .expect("an http:// URL");
    let addr: SocketAddr = authority.parse().expect("addr");
    assert!(addr.ip().is_loopback(), "{addr}");
    let none = http(addr, "POST", "/mcp", &MCP_POST, INITIALIZE).await;
    assert_eq!(none.status, 401, "no token");
    let bearer = format!("Bearer {}", endpoint.token());
    let authorized = [MCP_POST[0], MCP_POST[1], ("Authorization", bearer.as_str())];
    let ok = http(addr, "POST", "/mcp", &authorized, INITIALIZE).await;
    assert_eq!(ok.status, 200, "with the token");
    for path in ["/health", "/status", "/metrics"] {
        let r = http(addr, "GET", path, &[("Authorization", &bearer)], "").await;
        assert_eq!(r.status, 404, "{path} is not served to agents");
    }
    let api = http(
        addr,
        "POST",
        "/api/tell",
        &[("Authorization", &bearer)],
        "{}",
    )
    .await;
    assert_eq!(api.status, 404, "the CLI's API is not served to agents");
    endpoint.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still listening after shutdown"
    );
    router.shutdown().await;
}
