//! The server's trust boundary (issue 9, §1, §4, §5): who can reach what.
//!
//! - Another local user (a real second Unix user, created when missing) cannot drive the agents
//!   over TCP (every route but `/health` needs the token), cannot read the token, and cannot
//!   use the CLI's Unix socket (a 0700 folder; the server also checks peer credentials).
//! - A web page cannot post to `/api/` (it needs `Content-Type: application/json`).
//! - `/status` and `/metrics` need the token unless `[server] open_routes` opens them.
//! - The stdio server's helper listener needs the token too.
//! - Limits: half-open connections cannot starve `/health`, slow headers are cut off, MCP
//!   sessions are capped (429 with `Retry-After`) and expire when unused.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::serve::{http, parse_reply, Reply, ServeProcess};
use support::{other_user, poll_until, spawn_piped, TestEnv};

const TELL: &str = r#"{"from":"frontend","to":"backend","text":"hi from elsewhere","async":true}"#;
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;

/// `curl` as the other user: (HTTP status as curl prints it, "000" when no answer; body).
fn curl_as_other(args: &[&str]) -> (String, String) {
    let mut all = vec!["-s", "-m", "20", "-w", "\n%{http_code}"];
    all.extend_from_slice(args);
    let out = other_user::run("/usr/bin/curl", &all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().to_string(), body.to_string())
}

/// The pair's tells, read from the database by the owner's CLI.
fn tells(env: &TestEnv) -> Vec<Value> {
    env.run_json(&["report", "frontend", "backend"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn another_user_cannot_drive_the_agents_over_tcp() {
    let env = TestEnv::with_scripted_agent();
    let server = ServeProcess::start(&env);
    let base = format!("http://{}", server.authority());

    // The attack of the issue: a plain POST to the JSON API, with and without a JSON type.
    for ctype in ["text/plain", "application/json"] {
        let (code, body) = curl_as_other(&[
            "-X",
            "POST",
            "-H",
            &format!("Content-Type: {ctype}"),
            "--data",
            TELL,
            &format!("{base}/api/tell"),
        ]);
        assert_eq!(
            code, "401",
            "POST /api/tell ({ctype}) by another user: {body}"
        );
    }
    // Acting as a team through MCP.
    let (code, body) = curl_as_other(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-H",
        "Accept: application/json, text/event-stream",
        "--data",
        INITIALIZE,
        &format!("{base}/mcp?team=frontend"),
    ]);
    assert_eq!(code, "401", "MCP as team frontend by another user: {body}");
    // What the server shows about teams, paths and queues.
    for path in ["/status", "/metrics"] {
        let (code, _) = curl_as_other(&[&format!("{base}{path}")]);
        assert_eq!(code, "401", "GET {path} by another user");
    }
    // Health stays open (it shows nothing).
    assert_eq!(curl_as_other(&[&format!("{base}/health")]).0, "200");
    assert!(tells(&env).is_empty(), "no tell may have been stored");

    // The owner's CLI still works (through the socket).
    let t = env.run_json(&["tell", "frontend", "backend", "hello"]);
    assert_eq!(t["answer"], "echo: hello");
    server.stop();
}

#[test]
fn the_token_and_the_socket_are_private_to_the_owner() {
    let env = TestEnv::with_scripted_agent();
    let server = ServeProcess::start(&env);
    let data = env.db_path().parent().expect("data folder").to_path_buf();
    // As on a shared machine with a loose umask: every folder above is traversable and the
    // data folder itself is readable by others; what protects the token and the socket is
    // their own mode and the socket folder's.
    other_user::open_path_to(&data.join("x"));
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let token_file = data.join("server.token");
    assert_eq!(mode(&token_file), 0o600, "server.token");
    let announced = server.announcement();
    let socket = std::path::PathBuf::from(
        announced["socket"]
            .as_str()
            .unwrap_or_else(|| panic!("server.json names no socket: {announced}")),
    );
    assert_eq!(
        mode(socket.parent().expect("socket folder")),
        0o700,
        "socket folder"
    );
    assert_eq!(mode(&socket), 0o600, "socket");

    let read = other_user::run("/bin/cat", &[&token_file.display().to_string()]);
    assert!(!read.status.success(), "another user read the token");
    let (code, _) = curl_as_other(&[
        "--unix-socket",
        &socket.display().to_string(),
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data",
        TELL,
        "http://localhost/api/tell",
    ]);
    assert_eq!(code, "000", "another user reached the socket");
    assert!(tells(&env).is_empty(), "no tell may have been stored");
    server.stop();
}

#[test]
fn the_socket_checks_the_peer_user() {
    let env = TestEnv::with_scripted_agent();
    let server = ServeProcess::start(&env);
    let announced = server.announcement();
    let socket = std::path::PathBuf::from(announced["socket"].as_str().expect("a socket"));
    // Someone loosened the folder and the socket: peer credentials still turn others away.
    other_user::open_path_to(&socket);
    std::fs::set_permissions(
        socket.parent().expect("dir"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let (code, body) = curl_as_other(&[
        "--unix-socket",
        &socket.display().to_string(),
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data",
        TELL,
        "http://localhost/api/tell",
    ]);
    assert_eq!(
        code, "000",
        "the server answered another user on its socket: {body}"
    );
    assert!(tells(&env).is_empty(), "no tell may have been stored");

    // The owner's CLI goes through the socket: it needs no token (removed here).
    std::fs::remove_file(server.token_file.clone()).expect("remove server.token");
    let t = env.run_json(&["tell", "frontend", "backend", "through the socket"]);
    assert_eq!(t["answer"], "echo: through the socket");
    let s = env.session("frontend", "backend").expect("session");
    assert_eq!(
        s.owner_pid,
        Some(i64::from(server.pid())),
        "the server's agent answered"
    );
    server.stop();
}

#[test]
fn a_web_page_cannot_post_to_the_api() {
    let env = TestEnv::with_scripted_agent();
    let server = ServeProcess::start(&env);
    let bearer = format!("Bearer {}", server.token());
    // The content types a page may send without a CORS preflight, and none at all.
    for ctype in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut headers = vec![("Authorization", bearer.as_str())];
        if let Some(c) = ctype {
            headers.push(("Content-Type", c));
        }
        let r = http(&server.authority(), "POST", "/api/tell", &headers, TELL);
        assert_eq!(r.status, 415, "{ctype:?}: {}", r.body);
        assert!(r.body.contains("application/json"), "{}", r.body);
    }
    assert!(tells(&env).is_empty(), "no tell may have been stored");
    let r = http(
        &server.authority(),
        "POST",
        "/api/tell",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        TELL,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    server.stop();
}

#[test]
fn status_and_metrics_need_the_token_unless_opened() {
    let env = TestEnv::with_scripted_agent();
    let server = ServeProcess::start(&env);
    let get = |path: &str, token: Option<&str>| -> u16 {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("Authorization", b.as_str()))
            .collect();
        http(&server.authority(), "GET", path, &headers, "").status
    };
    assert_eq!(get("/health", None), 200);
    assert_eq!(get("/status", None), 401);
    assert_eq!(get("/metrics", None), 401);
    let token = server.token();
    assert_eq!(get("/status", Some(&token)), 200);
    assert_eq!(get("/metrics", Some(&token)), 200);
    server.stop();

    let env = TestEnv::scripted_with_config("[server]\nopen_routes = [\"/metrics\"]\n");
    let server = ServeProcess::start(&env);
    let r = http(&server.authority(), "GET", "/metrics", &[], "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        http(&server.authority(), "GET", "/status", &[], "").status,
        401
    );
    server.stop();

    let env = TestEnv::scripted_with_config("[server]\nopen_routes = [\"/mcp\"]\n");
    let out = env.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.open_routes[0]") && err.contains("/status"),
        "{err}"
    );
}

#[test]
fn the_stdio_servers_helper_listener_needs_the_token() {
    let env = TestEnv::with_scripted_agent();
    let mut cmd = env.command();
    cmd.arg("--config")
        .arg(env.config_path())
        .args(["serve", "--stdio", "--as", "frontend"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn serve --stdio");
    // Keep the client side open: the stdio server runs while its stdin does.
    let stdin = child.stdin.take();
    let server = ServeProcess::start_with(&env, child);
    let headers = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    let r = head_only(
        &server.authority(),
        "/mcp?team=backend",
        &headers,
        INITIALIZE,
    );
    assert_eq!(
        r.status, 401,
        "the helper listener answered without a token"
    );
    let bearer = format!("Bearer {}", server.token());
    let mut with = headers.to_vec();
    with.push(("Authorization", &bearer));
    let r = head_only(&server.authority(), "/mcp?team=backend", &with, INITIALIZE);
    assert_eq!(r.status, 200, "with the token");
    drop(stdin);
    server.stop();
}

/// A POST whose answer may be a stream: reads the status line and headers only.
fn head_only(authority: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut stream = std::net::TcpStream::connect(authority).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).expect("read the answer head");
        assert!(n > 0, "closed before the answer head");
        raw.extend_from_slice(&chunk[..n]);
    }
    let mut reply = parse_reply(&raw);
    reply.body.clear();
    reply
}

#[test]
fn half_open_connections_do_not_starve_health() {
    // The issue's attack: 1,100 connections that never finish their headers, against a
    // server with the common 1024 file descriptor limit.
    let env = TestEnv::with_scripted_agent();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 1024 && exec \"$0\" \"$@\"")
        .arg(support::bin())
        .arg("--config")
        .arg(env.config_path())
        .args(["serve", "--http", "127.0.0.1:0"]);
    env.configure(&mut cmd);
    let server = ServeProcess::start_with(&env, spawn_piped(cmd));
    let authority = server.authority();
    let mut held = Vec::new();
    for _ in 0..1100 {
        let mut s = std::net::TcpStream::connect(&authority).expect("connect");
        s.write_all(format!("GET /health HTTP/1.1\r\nHost: {authority}\r\n").as_bytes())
            .expect("write a partial request");
        held.push(s);
    }
    // /health still answers while they are held.
    let r = http(&authority, "GET", "/health", &[], "");
    assert_eq!(r.status, 200, "{}", r.body);
    drop(held);
    server.stop();
}

#[test]
fn a_slow_header_is_cut_off() {
    let env = TestEnv::scripted_with_config("[server]\nheader_timeout = \"1s\"\n");
    let server = ServeProcess::start(&env);
    let authority = server.authority();
    let mut s = std::net::TcpStream::connect(&authority).expect("connect");
    s.write_all(format!("GET /health HTTP/1.1\r\nHost: {authority}\r\n").as_bytes())
        .expect("write");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let started = Instant::now();
    let mut rest = Vec::new();
    // The server closes the connection (possibly after a 408): read ends, it does not time
    // out on our side.
    let read = s.read_to_end(&mut rest);
    assert!(
        read.is_ok() && started.elapsed() < Duration::from_secs(25),
        "the server kept a connection with unfinished headers open: {read:?}"
    );
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    server.stop();
}

#[test]
fn mcp_sessions_are_capped_and_expire() {
    let env = TestEnv::scripted_with_config(
        "[server]\nmax_mcp_sessions = 3\nmcp_session_idle = \"2s\"\n",
    );
    let server = ServeProcess::start(&env);
    let authority = server.authority();
    let bearer = format!("Bearer {}", server.token());
    let headers = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("Authorization", bearer.as_str()),
    ];
    let live = || -> u64 {
        let (status, body) = server.get("/status");
        assert_eq!(status, 200);
        body["mcp_sessions"]
            .as_u64()
            .unwrap_or_else(|| panic!("no mcp_sessions in /status: {body}"))
    };
    for i in 0..3 {
        let r = head_only(&authority, "/mcp?team=frontend", &headers, INITIALIZE);
        assert_eq!(r.status, 200, "session {i}");
        assert!(r.headers.contains_key("mcp-session-id"), "session {i}");
    }
    // A flood gets a refusal naming the limit and when to retry; the count stays bounded.
    for _ in 0..20 {
        let r = http(
            &authority,
            "POST",
            "/mcp?team=frontend",
            &headers,
            INITIALIZE,
        );
        assert_eq!(r.status, 429, "{}", r.body);
        assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
        assert!(r.body.contains("max_mcp_sessions"), "{}", r.body);
    }
    assert_eq!(live(), 3);
    // Unused sessions close after mcp_session_idle; then new ones are welcome again.
    assert!(
        poll_until(Duration::from_secs(30), || live() == 0),
        "idle MCP sessions were never closed"
    );
    let r = head_only(&authority, "/mcp?team=frontend", &headers, INITIALIZE);
    assert_eq!(r.status, 200);
    server.stop();
}

#[test]
fn busy_connections_get_a_429_and_slow_bodies_a_408() {
    let env =
        TestEnv::scripted_with_config("[server]\nmax_connections = 2\nbody_timeout = \"3s\"\n");
    let server = ServeProcess::start(&env);
    let authority = server.authority();
    let token = server.token();
    // Two requests whose headers are complete but whose bodies never come: both busy.
    let mut stalled: Vec<std::net::TcpStream> = (0..2)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&authority).expect("connect");
            write!(
                s,
                "POST /api/tell HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\
                 Connection: close\r\n\r\n"
            )
            .expect("write");
            s.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            // "100 Continue" once the server reads the body: the request is being handled.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).expect("100 Continue");
                head.push(byte[0]);
            }
            assert!(head.starts_with(b"HTTP/1.1 100"), "{head:?}");
            s.write_all(b"{").expect("write a first byte of the body");
            s
        })
        .collect();
    // Every connection is busy: a newcomer is told which limit and when to retry.
    let mut refused = None;
    let got = poll_until(Duration::from_secs(10), || {
        let r = http(&authority, "GET", "/health", &[], "");
        let done = r.status == 429;
        refused = Some(r);
        done
    });
    let r = refused.expect("an answer");
    assert!(got, "status {}: {}", r.status, r.body);
    assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("5"));
    assert!(r.body.contains("max_connections = 2"), "{}", r.body);
    // The stalled bodies run out of time: 408 naming the limit.
    for s in &mut stalled {
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("an answer");
        let r = parse_reply(&raw);
        assert_eq!(r.status, 408, "{}", r.body);
        assert!(r.body.contains("body_timeout"), "{}", r.body);
    }
    assert!(tells(&env).is_empty(), "no tell may have been stored");
    assert!(
        poll_until(Duration::from_secs(10), || {
            http(&authority, "GET", "/health", &[], "").status == 200
        }),
        "/health answers again once the connections are free"
    );
    server.stop();
}

#[test]
fn idle_keep_alive_connections_make_room() {
    // Connections that got their answer and stay open (keep-alive) must not fill the server:
    // anyone may ask /health, then hold the connection.
    let env = TestEnv::scripted_with_config("[server]\nmax_connections = 3\n");
    let server = ServeProcess::start(&env);
    let authority = server.authority();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(&authority).expect("connect");
        write!(s, "GET /health HTTP/1.1\r\nHost: {authority}\r\n\r\n").expect("write");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        // Read the whole answer (its Content-Length), leaving the connection open.
        let mut raw = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let n = s.read(&mut chunk).expect("read");
            assert!(n > 0, "closed");
            raw.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&raw).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().expect("length"))
                    })
                    .expect("a Content-Length");
                if body.len() >= len {
                    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                    break;
                }
            }
        }
        held.push(s);
    }
    let r = http(&authority, "GET", "/health", &[], "");
    assert_eq!(r.status, 200, "{}", r.body);
    drop(held);
    server.stop();
}

#[test]
fn doctor_flags_a_server_without_a_token() {
    let server_line = |env: &TestEnv| -> Value {
        let out = env.run(&["doctor", "--json"]);
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("doctor --json ({e}): {out:?}"));
        report["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "server").cloned())
            .unwrap_or_else(|| panic!("no server check: {report}"))
    };
    let env = TestEnv::scripted_with_config("[server]\nrequire_token = false\n");
    let server = ServeProcess::start(&env);
    let line = server_line(&env);
    assert_eq!(line["outcome"], "warn", "{line}");
    assert!(
        line["detail"]
            .as_str()
            .is_some_and(|d| d.contains("without a token"))
            && line["fix"]
                .as_str()
                .is_some_and(|f| f.contains("require_token")),
        "{line}"
    );
    server.stop();

    let env = TestEnv::with_scripted_agent();
    let server = ServeProcess::start(&env);
    assert_eq!(server_line(&env)["outcome"], "ok");
    server.stop();
}

#[test]
fn without_its_socket_the_cli_uses_tcp_with_the_token() {
    let env = TestEnv::with_scripted_agent();
    let server = ServeProcess::start(&env);
    let announced = server.announcement();
    let socket = std::path::PathBuf::from(announced["socket"].as_str().expect("a socket"));
    std::fs::remove_file(&socket).expect("remove the socket");
    let t = env.run_json(&["tell", "frontend", "backend", "over tcp"]);
    assert_eq!(t["answer"], "echo: over tcp");
    let s = env.session("frontend", "backend").expect("session");
    assert_eq!(
        s.owner_pid,
        Some(i64::from(server.pid())),
        "the server's agent answered"
    );

    // Neither the socket nor the token: a clear refusal, nothing done in this process.
    std::fs::remove_file(&server.token_file).expect("remove server.token");
    let args = ["tell", "frontend", "backend", "--async", "no way in"];
    let out = env.run(&args);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused the command") && err.contains("server.token"),
        "{err}"
    );
    assert_eq!(tells(&env).len(), 1, "only the first tell was stored");
    server.stop();
}
