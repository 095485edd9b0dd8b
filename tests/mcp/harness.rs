//! Helpers of tests/mcp.rs: a temp project with teams a, b, c run by the scripted test agent,
//! the server started in-process, the pinned MCP test tools (installed on first use by
//! scripts/mcp-test-tools.sh), child processes with deadlines, and a tiny HTTP/1.1 client.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use switchboard::router::Router;
use switchboard::server::serve::{start, ServeOptions, ServerHandle, Transport};
use switchboard::signals::Signals;
use switchboard::{SessionManager, TeamsConfig};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A temp project: teams a, b, c (folders `a/`, `b/`, `c/`), database `data/sb.db`.
pub struct Env {
    pub dir: TempDir,
    pub marker: String,
    pub config: Arc<TeamsConfig>,
}

impl Env {
    /// `extra` is TOML appended after the teams (for example a `[server]` table).
    pub fn new(extra: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("switchboard-mcp-")
            .tempdir()
            .expect("tempdir");
        let marker = uuid::Uuid::new_v4().to_string();
        let root = dir.path().display().to_string();
        let agent = crate::test_agent::path();
        let mut text = format!(
            "[settings]\nmax_message_bytes = 4096\nshutdown_grace = \"2s\"\n\
             [database]\npath = \"{root}/data/sb.db\"\n"
        );
        for t in ["a", "b", "c"] {
            std::fs::create_dir_all(dir.path().join(t)).expect("mkdir");
            text.push_str(&format!(
                "[teams.{t}]\npath = \"{root}/{t}\"\ndescription = \"team {t}\"\n\
                 agent_path = \"{agent}\"\n\
                 env = {{ HOME = \"{root}/home\", TEST_AGENT_MARKER = \"{marker}\" }}\n"
            ));
        }
        text.push_str(extra);
        std::fs::write(dir.path().join("teams.toml"), &text).expect("write teams.toml");
        let config = TeamsConfig::parse(&text, None, &|_| None)
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
        Self {
            dir,
            marker,
            config: Arc::new(config),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("teams.toml")
    }

    pub fn server_json(&self) -> PathBuf {
        self.path().join("data/server.json")
    }

    /// The server's bearer token, where a client of the owner reads it: `server.token` beside
    /// the database (written at the server's first start).
    pub fn token(&self) -> String {
        let file = self.path().join("data/server.token");
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
            .trim()
            .to_string()
    }

    /// `Authorization: Bearer <token>` with [`Env::token`].
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token())
    }

    /// Runs tests/mcp/client.py with `args`, giving it the server's token.
    pub async fn python(&self, args: &[&str]) -> Ran {
        python_with(args, Some(&self.token())).await
    }

    pub fn router(&self) -> Router {
        let m = SessionManager::open(Arc::clone(&self.config)).expect("open");
        m.initialize().expect("initialize");
        Router::new(Arc::new(m))
    }

    /// Starts an in-process server (no signal handling).
    pub async fn start(&self, transport: Transport, token: Option<&str>) -> ServerHandle {
        let mut options = ServeOptions::new(transport);
        options.signals = Signals::none();
        options.auth_token = token.map(str::to_string);
        start(self.router(), options).await.expect("server starts")
    }

    /// Starts an in-process HTTP server on 127.0.0.1, any free port.
    pub async fn start_http(&self) -> ServerHandle {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        self.start(Transport::Http { addr }, None).await
    }

    /// Live agent processes of this test (by the marker in their environment).
    pub fn agent_pids(&self) -> Vec<u32> {
        crate::procs::pids_with_env("TEST_AGENT_MARKER", &self.marker)
    }

    /// Polls (bounded) until no agent process of this test is left.
    pub async fn assert_no_agents(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.agent_pids().is_empty() {
            assert!(
                Instant::now() < deadline,
                "agents left: {:?}",
                self.agent_pids()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Paths of the pinned MCP test tools.
pub struct Tools {
    pub python: String,
    pub node: String,
    pub conformance: String,
}

/// Installs the tools when missing (once per test binary) and returns their paths.
#[allow(
    clippy::disallowed_methods,
    reason = "an install script, not an agent process"
)]
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mcp-test-tools.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg("all")
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/mcp-test-tools.sh");
        assert!(
            out.status.success(),
            "scripts/mcp-test-tools.sh failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let kv: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let get = |k: &str| {
            kv.get(k)
                .unwrap_or_else(|| panic!("no {k} in {text}"))
                .to_string()
        };
        Tools {
            python: get("PYTHON"),
            node: get("NODE"),
            conformance: get("CONFORMANCE"),
        }
    })
}

/// What a child process did.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// The last stdout line as JSON; panics with the whole output if the run failed.
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(
            self.code,
            Some(0),
            "failed:\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        let last = self.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {last}\n{}", self.stderr))
    }
}

/// Runs a command to its end (killed after `limit`), output captured.
pub async fn run(mut cmd: tokio::process::Command, limit: Duration) -> Ran {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn");
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{cmd:?} did not finish within {limit:?}"))
        .expect("wait");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs tests/mcp/client.py with `args` (no token).
pub async fn python(args: &[&str]) -> Ran {
    python_with(args, None).await
}

/// Runs tests/mcp/client.py with `args`; with `token`, its HTTP requests carry it.
pub async fn python_with(args: &[&str], token: Option<&str>) -> Ran {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.py");
    let mut cmd = tokio::process::Command::new(&tools().python);
    cmd.arg(script).args(args);
    match token {
        Some(t) => cmd.env("SWITCHBOARD_TOKEN", t),
        None => cmd.env_remove("SWITCHBOARD_TOKEN"),
    };
    run(cmd, Duration::from_secs(180)).await
}

/// An HTTP response: status, headers (lower-case names), body (empty for streams).
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// One HTTP/1.1 request to `addr`; `headers` may override Host. Reads the body only when it
/// has a Content-Length (streams are not read).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[head_end..].to_vec();
    if let Some(len) = headers
        .get("content-length")
        .and_then(|l| l.parse::<usize>().ok())
    {
        while body.len() < len {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read body");
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.clear();
    }
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A JSON-RPC initialize request body (2025-11-25).
pub const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;

/// Headers of an MCP POST.
pub const MCP_POST: [(&str, &str); 2] = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json, text/event-stream"),
];
