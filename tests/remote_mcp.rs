//! Switchboard's chained MCP tools for an agent on a remote host (issue 13): the session's MCP
//! endpoint forwarded over the host's SSH control connection to a Unix socket in a 0700
//! folder there, the agent's credential in a 0600 file beside it, and `switchboard
//! mcp-bridge` relaying the agent's stdio to it (src/agent/ssh/mcp.rs, src/cli/mcp_bridge.rs).
//!
//! Against a real `switchboard serve` (the local teams' agents are the scripted agent) and a
//! real OpenSSH server standing for the remote host (tests/support/sshd.rs, its own login
//! user). The credential is that of a live agent of the server (team `backend`), as the
//! lifecycle hands it to a remote agent it starts.

#![allow(
    clippy::unwrap_used,
    reason = "a failed set-up step in a helper fails the test"
)]

mod fake_api;
#[path = "support/claude_code.rs"]
mod pinned_claude;
#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sshd::Sshd;
use support::serve::ServeProcess;
use support::{other_user, poll_until, wait_timeout, TestEnv};
use switchboard::agent::adapter::SwitchboardServer;
use switchboard::agent::ssh::mcp::{remote_mcp_wiring, RemoteMcp};
use switchboard::agent::ssh::{quote, Host, Transport};
use tempfile::TempDir;

/// A running Switchboard with a live agent of `backend` (its credential is what a remote
/// agent gets), and an SSH "remote host".
struct Fixture {
    env: TestEnv,
    server: Option<ServeProcess>,
    sshd: Sshd,
    transport: Transport,
    host: Host,
    _local: TempDir,
    /// The live agent's session and what the router made for it.
    session_id: String,
    agent: SwitchboardServer,
}

impl Fixture {
    fn start() -> Self {
        let env = TestEnv::with_scripted_agent();
        let server = ServeProcess::start(&env);
        // frontend tells backend: backend's agent starts, answers and stays (idle), holding
        // its credential.
        let told = env.run_ok(&["tell", "frontend", "backend", "hello"]);
        assert!(told.contains("echo: hello"), "{told}");
        let session = env.session("frontend", "backend").expect("the session");
        let file = env
            .db_path()
            .with_file_name("mcp")
            .join(format!("{}.json", session.session_id));
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("the agent's MCP config"))
                .expect("JSON");
        let entry = &config["mcpServers"]["switchboard"];
        let headers: BTreeMap<String, String> = entry["headers"]
            .as_object()
            .expect("headers")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let agent = SwitchboardServer {
            url: entry["url"].as_str().expect("url").to_string(),
            headers,
            timeout_ms: 3_700_000,
        };
        let sshd = Sshd::start();
        let local = tempfile::Builder::new().prefix("sbm").tempdir().unwrap();
        let transport = Transport::new(local.path().join("s")).expect("socket folder");
        let host = Host::new(Sshd::ALIAS, sshd.ssh_options()).unwrap();
        Fixture {
            env,
            server: Some(server),
            sshd,
            transport,
            host,
            _local: local,
            session_id: session.session_id,
            agent,
        }
    }

    async fn wire(&self) -> RemoteMcp {
        let started = Instant::now();
        let mcp = remote_mcp_wiring(
            &self.transport,
            &self.host,
            &self.session_id,
            &self.agent,
            Some(support::bin()),
        )
        .await
        .expect("the remote MCP wiring");
        eprintln!(
            "the remote MCP wiring took {:?} (control connection included when new)",
            started.elapsed()
        );
        mcp
    }

    /// Runs `program args` on the remote host (as its login user) with `input` on stdin, to
    /// its end (bounded).
    fn run_remote(&self, program: &str, args: &[&str], input: &str) -> Output {
        let mut words = vec![quote::quote(program, "program").unwrap()];
        words.extend(args.iter().map(|a| quote::quote(a, "argument").unwrap()));
        let command = format!("exec {}", words.join(" "));
        let mut child = Command::new("ssh")
            .args(self.transport.command_args(&self.host, &command))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh");
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_string();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let readers = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .map(|pipe| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        });
        let status = wait_timeout(&mut child, Duration::from_secs(90));
        if status.is_none() {
            let _ = child.kill();
            panic!("the remote command {command} did not end within 90 s");
        }
        writer.join().unwrap();
        let [out, err] = readers.map(|r| r.join().unwrap());
        Output {
            status: status.unwrap(),
            stdout: out,
            stderr: err,
        }
    }

    /// Runs the bridge of `mcp`'s config on the remote host with `lines` on stdin.
    fn bridge(&self, mcp: &RemoteMcp, lines: &[Value]) -> Output {
        let entry = &mcp.config["mcpServers"]["switchboard"];
        let args: Vec<&str> = entry["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
        self.run_remote(entry["command"].as_str().unwrap(), &args, &input)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = Command::new("ssh")
            .args(self.host.options.iter())
            .arg("-o")
            .arg(format!(
                "ControlPath={}/%C",
                self.transport.socket_dir().display()
            ))
            .args(["-O", "exit", "--", &self.host.destination])
            .stderr(Stdio::null())
            .status();
        let _ = &self.sshd;
    }
}

/// The MCP handshake and `calls` (id 2, 3, ...) as JSON-RPC lines.
fn session_lines(calls: &[Value]) -> Vec<Value> {
    let mut lines = vec![
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "remote-test", "version": "0"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    ];
    for (i, call) in calls.iter().enumerate() {
        let mut c = call.clone();
        c["jsonrpc"] = json!("2.0");
        c["id"] = json!(i + 2);
        lines.push(c);
    }
    lines
}

fn tool_call(name: &str, arguments: Value) -> Value {
    json!({"method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

/// The bridge's stdout, one JSON-RPC message per line, by id.
fn answers(out: &Output) -> BTreeMap<i64, Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("a stdout line that is not JSON-RPC ({e}): {l:?}"))
        })
        .filter_map(|m| Some((m.get("id")?.as_i64()?, m)))
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A raw HTTP request through the forwarded socket (as root, who may open it): the status.
fn raw_status(socket: &str, authority: &str, headers: &[(&str, &str)]) -> u16 {
    let body = session_lines(&[])[0].to_string();
    let mut request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    text(&raw)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer: {:?}", text(&raw)))
}

/// The bridge, run on the remote host as its login user, lists and calls Switchboard's
/// tools as the agent whose credential it was given (`team_teams` says `backend`;
/// `team_tell` to `docs` is answered by docs' agent and stored as backend's tell), and
/// nothing else gets through the socket: no credential, a team named instead, a forged
/// credential. When the agent stops, the socket and the credential are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_on_the_remote_host_calls_switchboards_tools_as_the_agent_only() {
    let f = Fixture::start();
    let mcp = f.wire().await;
    let socket = mcp.guard.remote_socket().unwrap().to_string();
    let token_file = mcp.guard.token_file().to_string();
    // Private to the login user of the remote host.
    let (uid, _) = sshd::remote_user();
    for (path, mode) in [
        (Path::new(&socket).parent().unwrap(), 0o700),
        (Path::new(&token_file), 0o600),
    ] {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(meta.uid(), uid, "{}", path.display());
        assert_eq!(
            meta.permissions().mode() & 0o777,
            mode,
            "{}",
            path.display()
        );
    }
    // The credential is in no argv: not in the MCP config the agent is given.
    let token = f.agent.headers.values().next().unwrap().clone();
    assert!(!mcp.config.to_string().contains(&token), "{}", mcp.config);
    assert!(!mcp.args.iter().any(|a| a.contains(&token)));

    let out = f.bridge(
        &mcp,
        &session_lines(&[
            json!({"method": "tools/list"}),
            tool_call("team_teams", json!({})),
            tool_call(
                "team_tell",
                json!({"to": "docs", "message": "hi from afar"}),
            ),
        ]),
    );
    assert!(
        out.status.success(),
        "the bridge failed: {out:?}\n{}",
        text(&out.stderr)
    );
    let got = answers(&out);
    assert!(got[&1]["result"]["serverInfo"].is_object(), "{got:?}");
    let tools: Vec<&str> = got[&2]["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("tools/list: {:?}", got.get(&2)))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        tools.contains(&"team_tell") && tools.contains(&"team_teams"),
        "{tools:?}"
    );
    assert_eq!(
        got[&3]["result"]["structuredContent"]["you"],
        "backend",
        "{:?}",
        got.get(&3)
    );
    assert_eq!(
        got[&4]["result"]["structuredContent"]["answer"],
        "echo: hi from afar",
        "{:?}",
        got.get(&4)
    );
    let told = f.env.run_json(&["report", "backend", "docs"]);
    assert_eq!(told.as_array().map(Vec::len), Some(1), "{told}");

    // Through the socket, nobody but the agent: no credential, or a team named instead of
    // one, is refused (the endpoint's bearer token is not on the remote host).
    let authority = f
        .agent
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(raw_status(&socket, &authority, &[]), 401);
    assert_eq!(
        raw_status(&socket, &authority, &[("X-Switchboard-Team", "docs")]),
        401
    );
    assert_eq!(
        raw_status(&socket, &authority, &[("X-Switchboard-Agent", "forged")]),
        401
    );
    // A bridge with a forged credential says so and fails; the request gets the reason.
    let forged = f.run_remote(
        "/usr/bin/env",
        &[
            "SWITCHBOARD_AGENT_TOKEN=forged-credential",
            support::bin(),
            "mcp-bridge",
            "--socket",
            &socket,
            "--url",
            &f.agent.url,
        ],
        &format!("{}\n", session_lines(&[])[0]),
    );
    assert_eq!(forged.status.code(), Some(1), "{forged:?}");
    assert!(
        text(&forged.stderr).contains("refused the agent's credential"),
        "{}",
        text(&forged.stderr)
    );
    assert!(
        text(&forged.stdout).contains("refused the agent's credential"),
        "the request got no error answer: {}",
        text(&forged.stdout)
    );

    // The agent stops: the forward and the credential go.
    mcp.guard.close().await.expect("take down the forward");
    assert!(!Path::new(&socket).exists());
    assert!(!Path::new(&token_file).exists());
    let after = f.run_remote(
        "/usr/bin/env",
        &[
            "SWITCHBOARD_AGENT_TOKEN=x",
            support::bin(),
            "mcp-bridge",
            "--socket",
            &socket,
            "--url",
            &f.agent.url,
        ],
        "",
    );
    assert_eq!(after.status.code(), Some(1), "{after:?}");
    assert!(
        text(&after.stderr).contains("no such socket"),
        "{}",
        text(&after.stderr)
    );
}

/// Another user of the remote host can neither read the credential nor connect to the
/// socket, even holding the credential; the error says so and the bridge exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_of_the_remote_host_cannot_use_the_socket() {
    let f = Fixture::start();
    let mcp = f.wire().await;
    let socket = mcp.guard.remote_socket().unwrap().to_string();
    let token = f.agent.headers.values().next().unwrap().clone();
    let entry = &mcp.config["mcpServers"]["switchboard"];
    let args: Vec<&str> = entry["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    // As configured: the credential file cannot be read.
    let mut all = vec!["mcp-bridge"];
    all.extend(args.iter().skip(1));
    let out = other_user::run(support::bin(), &all);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("cannot read the agent's credential")
            && text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
    // With the credential stolen somehow: the socket still refuses them.
    let env_token = format!("SWITCHBOARD_AGENT_TOKEN={token}");
    let out = other_user::run(
        "/usr/bin/env",
        &[
            &env_token,
            support::bin(),
            "mcp-bridge",
            "--socket",
            &socket,
            "--url",
            &f.agent.url,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains(&socket) && err.contains("Permission denied"),
        "{err}"
    );
    // Control: the login user gets through with the same command.
    let ok = f.bridge(&mcp, &session_lines(&[tool_call("team_teams", json!({}))]));
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert_eq!(
        answers(&ok)[&2]["result"]["structuredContent"]["you"],
        "backend"
    );
    // The guard dropped without `close` (an agent task that panicked, say): the forward and
    // the credential still go, in the background.
    let token_file = mcp.guard.token_file().to_string();
    drop(mcp);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Path::new(&socket).exists() || Path::new(&token_file).exists() {
        assert!(
            Instant::now() < deadline,
            "the socket or the credential is still there after the guard was dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Bad input to the bridge: no credential (exit 2), a socket that is not there, a server
/// that is gone (exit 1): each says what is wrong, on stderr; stdout stays JSON-RPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_says_what_is_wrong_when_it_cannot_work() {
    let mut f = Fixture::start();
    let mcp = f.wire().await;
    let socket = mcp.guard.remote_socket().unwrap().to_string();
    let bin = support::bin();
    let base = ["mcp-bridge", "--socket", &socket, "--url", &f.agent.url];

    let none = f.run_remote(bin, &base, "");
    assert_eq!(none.status.code(), Some(2), "{none:?}");
    assert!(
        text(&none.stderr).contains("no agent credential"),
        "{}",
        text(&none.stderr)
    );
    let missing = f.run_remote(
        "/usr/bin/env",
        &[
            "SWITCHBOARD_AGENT_TOKEN=x",
            bin,
            "mcp-bridge",
            "--socket",
            "/tmp/sb-mcp-none/gone.sock",
            "--url",
            &f.agent.url,
        ],
        "",
    );
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(
        text(&missing.stderr).contains("/tmp/sb-mcp-none/gone.sock: no such socket"),
        "{}",
        text(&missing.stderr)
    );
    // No input: nothing to relay, a clean exit and an empty stdout.
    let idle = f.bridge(&mcp, &[]);
    assert!(idle.status.success(), "{}", text(&idle.stderr));
    assert!(idle.stdout.is_empty(), "{}", text(&idle.stdout));

    // The server goes away: the forward is still there, nobody answers behind it.
    let server = f.server.take().unwrap();
    server.stop();
    let started = Instant::now();
    let gone = f.bridge(&mcp, &session_lines(&[tool_call("team_teams", json!({}))]));
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    let err = text(&gone.stderr);
    assert!(
        err.contains("Switchboard is not answering through") && err.contains(&socket),
        "{err}"
    );
    // The agent's initialize got the reason as a JSON-RPC error.
    let got = answers(&gone);
    assert!(
        got[&1]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not answering")),
        "{got:?}"
    );
    eprintln!(
        "the bridge noticed the server was gone in {:?}",
        started.elapsed()
    );
    mcp.guard.close().await.unwrap();
    assert!(poll_until(Duration::from_secs(5), || !Path::new(&socket).exists()));
}

/// The text of the `tool_result` blocks of the last user message of a model request.
fn tool_result_texts(rec: &fake_api::Recorded) -> Vec<String> {
    rec.messages()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_array())
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b["type"] == "tool_result")
                .map(|b| match &b["content"] {
                    Value::String(s) => s.clone(),
                    Value::Array(parts) => parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .collect::<Vec<_>>()
                        .join("\n"),
                    _ => String::new(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The real Claude Code 2.1.328, started on the remote host over SSH with the inline MCP
/// config, calls `team_tell` through the bridge: the local team `docs` answers, the answer
/// comes back to Claude Code as the tool result and into its own answer, and the tell is
/// stored as the agent's (backend -> docs).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_claude_code_on_the_remote_host_tells_a_local_team_through_the_bridge() {
    use fake_api::{Answer, FakeApi};
    use switchboard::agent::adapter::{AgentAdapter, LaunchExtras, SessionRef};
    use switchboard::agent::event::AgentEvent;
    use switchboard::agent::process::StdoutLine;
    use switchboard::agent::ssh::launch::{Owner, RemoteAgent};

    let f = Fixture::start();
    let api = FakeApi::start().await;
    api.respond_with(|rec| {
        Some(match tool_result_texts(rec).pop() {
            None => Answer::text("Asking docs.").with_tool_use(
                "toolu_remote_1",
                "mcp__switchboard__team_tell",
                json!({"to": "docs", "message": "hello from the remote host"}),
            ),
            Some(result) => Answer::text(format!("docs said: {result}")),
        })
    });
    let (uid, gid) = sshd::remote_user();
    let folder = |name: &str| {
        let dir = f.sshd.remote_dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        dir
    };
    let (project, home) = (folder("proj"), folder("home"));
    let teams = format!(
        "[database]\nin_memory = true\n[teams.b]\npath = {path:?}\nagent_path = {claude:?}\n\
         env = {{ HOME = {home:?}, ANTHROPIC_BASE_URL = {url:?}, ANTHROPIC_API_KEY = \"test-key\", \
         CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = \"1\", DISABLE_TELEMETRY = \"1\", \
         CLAUDE_CODE_MAX_RETRIES = \"0\" }}\n",
        path = project.display().to_string(),
        claude = pinned_claude::binary(),
        home = home.display().to_string(),
        url = api.url(),
    );
    let config = switchboard::TeamsConfig::parse(&teams, None, &|_| None).expect("teams file");
    let team = config.team("b").unwrap();
    let claude = switchboard::agent::claude::ClaudeCode;
    let session = uuid::Uuid::new_v4().to_string();
    let mut spec = claude.launch(
        team,
        &SessionRef {
            session_id: &session,
            agent_session_id: None,
            resume: false,
        },
        &LaunchExtras {
            switchboard_tools: true,
            ..LaunchExtras::default()
        },
    );
    let mcp = f.wire().await;
    mcp.apply(&mut spec);
    let log = f._local.path().join("agent.log");
    let mut agent = RemoteAgent::spawn(
        &f.transport,
        &f.host,
        &spec,
        &Owner::current().marker(&session),
        &log,
        &switchboard::agent::claude::ClaudeCode,
        Duration::from_secs(30),
    )
    .await
    .expect("claude over ssh");
    agent
        .process
        .send_line(&claude.encode_message("Ask docs something."))
        .await
        .unwrap();
    let answer = loop {
        match tokio::time::timeout(Duration::from_secs(90), agent.process.lines.recv())
            .await
            .expect("a result within 90 s")
        {
            Some(StdoutLine::Event(AgentEvent::Result(result))) => {
                break result.text.clone().unwrap_or_default()
            }
            Some(StdoutLine::Closed(_)) | None => {
                panic!("the agent exited: {}", agent.process.stderr_tail())
            }
            Some(_) => {}
        }
    };
    let results: Vec<String> = api
        .message_requests()
        .iter()
        .flat_map(tool_result_texts)
        .collect();
    assert!(
        answer.contains("echo: hello from the remote host"),
        "Claude Code's answer: {answer:?}; tool results it got: {results:?}; stderr: {}",
        agent.process.stderr_tail()
    );
    let told = f.env.run_json(&["report", "backend", "docs"]);
    assert_eq!(told.as_array().map(Vec::len), Some(1), "{told}");
    // The credential was on no command line of any process, here or there (both are this
    // machine), while the agent and its bridge ran.
    let token = f.agent.headers.values().next().unwrap().clone();
    let exposed: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&token))
        .collect();
    assert!(exposed.is_empty(), "the credential is in argv: {exposed:?}");
    agent
        .stop(&f.transport, Duration::from_secs(3))
        .await
        .unwrap();
    mcp.guard.close().await.unwrap();
}

/// The files of session `session_id` in the remote socket folder `dir`, by name.
fn session_files(dir: &Path, session_id: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(session_id))
        .collect();
    names.sort();
    names
}

/// The bridge of `mcp` answers `team_teams` as backend's agent.
fn assert_bridge_works(f: &Fixture, mcp: &RemoteMcp, which: &str) {
    let out = f.bridge(mcp, &session_lines(&[tool_call("team_teams", json!({}))]));
    assert!(
        out.status.success(),
        "the {which} bridge failed: {}",
        text(&out.stderr)
    );
    assert_eq!(
        answers(&out)[&2]["result"]["structuredContent"]["you"],
        "backend",
        "{which}: {}",
        text(&out.stdout)
    );
}

/// The agent of a session stops, its take-down fails or has not finished (the control
/// connection stays up, so its forward is still there), and the session's next agent
/// starts: the new agent's bridge works, the first start's socket and credential are gone
/// from the host, and the first take-down, finishing late, leaves the new agent's alone.
/// (With one socket name per session, the second start asked `ssh -O forward` for the
/// forward OpenSSH still had, which it took as done without making the removed socket
/// again: the new bridge found no socket.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_start_of_a_session_works_when_the_last_take_down_did_not_happen() {
    let f = Fixture::start();
    let first = f.wire().await;
    assert_bridge_works(&f, &first, "first");
    let dir = Path::new(first.guard.remote_socket().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();

    // No take-down: the first start's forward, socket and credential are still there.
    let second = f.wire().await;
    assert_bridge_works(&f, &second, "second");
    let file_name = |p: &str| {
        Path::new(p)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let mut mine = vec![
        file_name(second.guard.remote_socket().unwrap()),
        file_name(second.guard.token_file()),
    ];
    mine.sort();
    assert_eq!(
        session_files(&dir, &f.session_id),
        mine,
        "the first start's leftovers are still on the host"
    );

    // The first take-down finishes late: the second agent's socket and credential stay.
    let _ = first.guard.close().await;
    assert_eq!(session_files(&dir, &f.session_id), mine);
    assert_bridge_works(&f, &second, "second (after the late take-down)");

    second.guard.close().await.expect("take down the forward");
    assert_eq!(session_files(&dir, &f.session_id), Vec::<String>::new());
}

/// Many calls at once through one bridge: each answer goes to its own request (by id), the
/// tells to one team are answered in turn, each with its own text. Prints the calls per
/// second through the bridge (docs/scaling.md; not asserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_through_one_bridge_each_get_their_own_answer() {
    let f = Fixture::start();
    let mcp = f.wire().await;
    let (teams, tells) = (40, 20);
    let mut calls: Vec<Value> = (0..teams)
        .map(|_| tool_call("team_teams", json!({})))
        .collect();
    calls.extend((0..tells).map(|i| {
        tool_call(
            "team_tell",
            json!({"to": "docs", "message": format!("m{i}")}),
        )
    }));
    let started = Instant::now();
    let out = f.bridge(&mcp, &session_lines(&calls));
    let took = started.elapsed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = answers(&out);
    assert_eq!(got.len(), 1 + teams + tells, "{got:?}");
    for id in 2..2 + teams as i64 {
        assert_eq!(
            got[&id]["result"]["structuredContent"]["you"], "backend",
            "{id}"
        );
    }
    for i in 0..tells {
        let id = (2 + teams + i) as i64;
        assert_eq!(
            got[&id]["result"]["structuredContent"]["answer"],
            format!("echo: m{i}"),
            "{id}"
        );
    }
    eprintln!(
        "{} calls ({teams} team_teams, {tells} team_tell answered by the scripted agent) \
         through one bridge over SSH, with its start and the MCP handshake: {took:?} \
         ({:.1} calls/s)",
        teams + tells,
        (teams + tells) as f64 / took.as_secs_f64()
    );
    mcp.guard.close().await.unwrap();
}

/// `doctor` / `config check --remote` can tell whether the remote host has the bridge: the
/// binary of this version is found; a missing one, another program or version, or one whose
/// `--version` fails, is a problem naming the host and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_says_whether_the_remote_host_has_the_bridge() {
    use switchboard::agent::ssh::mcp::check_bridge;
    let sshd = Sshd::start();
    let local = tempfile::Builder::new().prefix("sbm").tempdir().unwrap();
    let transport = Transport::new(local.path().join("s")).unwrap();
    let host = Host::new(Sshd::ALIAS, sshd.ssh_options()).unwrap();
    let ok = check_bridge(&transport, &host, Some(support::bin())).await;
    assert!(
        ok.as_ref().is_ok_and(|s| s.contains(support::bin())),
        "{ok:?}"
    );
    let missing = check_bridge(&transport, &host, Some("/nonexistent/switchboard"))
        .await
        .unwrap_err();
    assert!(
        missing.contains("sbtest") && missing.contains("switchboard_path"),
        "{missing}"
    );
    // Another program, or another version: named, with the fix.
    let other = check_bridge(&transport, &host, Some("/bin/true"))
        .await
        .unwrap_err();
    assert!(other.contains("install the same version there"), "{other}");
    let failing = check_bridge(&transport, &host, Some("/bin/false"))
        .await
        .unwrap_err();
    assert!(failing.contains("--version` failed there"), "{failing}");
    transport.disconnect(&host).await;
}

/// The chain holds across the bridge: while backend's agent answers a tell of frontend, its
/// `team_tell` back to frontend is refused as a loop, and one to docs is chained to the tell
/// it is answering (the server sees the same per-session credential as for a local agent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_agents_tells_keep_the_chain_and_its_loop_refusal() {
    use switchboard::store::ProcessState;
    let f = Fixture::start();
    // backend's agent (the same process, the same credential) now works on a tell of
    // frontend's.
    f.env
        .run_ok(&["tell", "frontend", "backend", "sleep:30000", "--async"]);
    assert!(
        poll_until(Duration::from_secs(20), || f
            .env
            .session("frontend", "backend")
            .is_some_and(|s| s.process_state == ProcessState::Processing)),
        "backend's agent did not take the tell"
    );
    let working_on = f
        .env
        .session("frontend", "backend")
        .and_then(|s| s.current_tell_id)
        .expect("the tell backend's agent answers");
    let mcp = f.wire().await;
    let out = f.bridge(
        &mcp,
        &session_lines(&[
            tool_call(
                "team_tell",
                json!({"to": "frontend", "message": "back to you"}),
            ),
            tool_call("team_tell", json!({"to": "docs", "message": "onwards"})),
        ]),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = answers(&out);
    let refused = &got[&2]["result"];
    assert_eq!(refused["isError"], true, "{refused}");
    assert!(
        refused.to_string().contains("loop"),
        "not refused as a loop: {refused}"
    );
    assert_eq!(
        got[&3]["result"]["structuredContent"]["answer"],
        "echo: onwards",
        "{:?}",
        got.get(&3)
    );
    let onwards = f.env.run_json(&["report", "backend", "docs"]);
    let tell_id = onwards[0]["tell_id"].as_str().expect("the tell to docs");
    let shown = f.env.run_json(&["tells", "show", tell_id]);
    assert_eq!(shown["parent_tell_id"], working_on.as_str(), "{shown}");
    assert_eq!(
        f.env.run_json(&["report", "backend", "frontend"]),
        json!([]),
        "the loop was stored"
    );
    mcp.guard.close().await.unwrap();
}
