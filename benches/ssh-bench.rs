//! `ssh-bench`: what SSH costs a remote team (issue 13, docs/scaling.md), against a real
//! OpenSSH server on loopback (tests/support/sshd.rs, run as root: it makes the login user).
//!
//! `cargo bench --locked --bench ssh-bench -- [--quick]` (a `[[bench]]` target with
//! `harness = false`: neither installed nor run by `cargo test`).
//!
//! Phases, each printing `op=<name> n=<count> per_s=<..> p50_us=<..> p99_us=<..>`:
//!
//! - `connect`: a new control connection (TCP, key exchange, login), then `ssh -O exit`;
//! - `run_true`: `true` over the existing control connection, one at a time (the cost of
//!   every short remote command: a stop, a check, the forward's set-up);
//! - `run_true_x8`: the same from 8 tasks at once (`per_s` is the total);
//! - `spawn_local` / `spawn_ssh`: a process that prints one line, from spawn to that line,
//!   here and through `RemoteAgent::spawn` (the wrapper's identity line);
//! - `forward_rt`: connect to the forwarded Unix socket on the remote host, send a line and
//!   read the answer of the local end (what each MCP message of the bridge pays on top of
//!   the endpoint's own work: the bridge opens one connection per message);
//! - `turn_local` / `turn_ssh`: one turn of the scripted agent (`switchboard-test-agent`,
//!   Claude Code's protocol, answering at once: build it first with `cargo build --locked
//!   --example switchboard-test-agent`), message line in to result line out, with the agent
//!   here and on the remote host: a tell's cost at the agent layer, without router or store;
//! - `mcp_wiring` / `mcp_close`: `ssh::mcp::remote_mcp_wiring` (the agent's credential file
//!   and the forward: one command and one control request) and its guard's `close`;
//! - `router_local` / `router_ssh` (first, and alone with `--router-only`): tells through the
//!   real `Router` (store, pair worker, session layer), as tests/remote_teams.rs drives it,
//!   to the scripted agent in a local team and to the same agent in a remote team over the
//!   test sshd: one pair, one tell at a time (each sample is `Router::tell` from submit to
//!   the stored answer), then `_x5`: five pairs (five callers to the same team, so five
//!   agents), each telling one at a time, all at once (`per_s` is the total). The first tell
//!   of each pair (the agent's start) is left out and printed as `op=router_*_first`.
//!
//! Then, against a second server with sshd's defaults `MaxSessions 10` and `MaxStartups
//! 10:30:100`: 10 sessions held open on one control connection, and what the 11th command gets (`op=max_sessions ...`: its
//! time, the new logins it made, what ssh said), a burst of 20 commands then
//! (`op=max_sessions_burst`), whether a forwarded socket still answers, whether the control
//! connection survives, and whether commands share it again once the 10 end. Context goes
//! to stderr.

#![allow(
    clippy::unwrap_used,
    reason = "a bench: a failed set-up step ends it with the reason"
)]

// The allocator of the process the bench stands in for (src/alloc.rs).
switchboard::use_jemalloc!();

#[path = "../tests/support/sshd.rs"]
mod sshd;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard::agent::adapter::{AgentAdapter, LaunchSpec};
use switchboard::agent::event::AgentEvent;
use switchboard::agent::process::{AgentProcess, StdoutLine};
use switchboard::agent::ssh::launch::{self, Owner, RemoteAgent};
use switchboard::agent::ssh::{ops, Host, Transport};
use switchboard::router::{Router, Wait};
use switchboard::{SessionManager, TeamsConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

const STEP: Duration = Duration::from_secs(30);

fn report(op: &str, mut samples: Vec<Duration>, wall: Option<Duration>) {
    samples.sort();
    let n = samples.len();
    let pct = |p: f64| samples[((n as f64 - 1.0) * p).round() as usize].as_micros();
    let total: Duration = wall.unwrap_or_else(|| samples.iter().sum());
    println!(
        "op={op} n={n} per_s={:.1} p50_us={} p99_us={}",
        n as f64 / total.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
}

fn sh(cwd: &Path, script: &str) -> LaunchSpec {
    LaunchSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        cwd: cwd.to_path_buf(),
        env: BTreeMap::new(),
        inherit: vec!["PATH".into()],
        env_remove: Vec::new(),
    }
}

/// The scripted agent (`switchboard-test-agent`, an example target) of this build's profile.
fn scripted_agent() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe
        .parent()?
        .parent()?
        .join("examples/switchboard-test-agent");
    path.is_file().then_some(path)
}

/// The scripted agent as Switchboard launches Claude Code (stream-json both ways).
fn scripted_spec(agent: &Path, cwd: &Path, home: &Path) -> LaunchSpec {
    let mut spec = sh(cwd, "");
    spec.program = agent.display().to_string();
    spec.args = [
        "-p",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        "--verbose",
        "--session-id",
    ]
    .map(String::from)
    .to_vec();
    spec.args.push(uuid::Uuid::new_v4().to_string());
    spec.env.insert("HOME".into(), home.display().to_string());
    spec
}

struct Remote {
    sshd: sshd::Sshd,
    transport: Transport,
    host: Host,
    local: tempfile::TempDir,
}

impl Remote {
    fn start(options: &[&str]) -> Self {
        let sshd = sshd::Sshd::start_with(options);
        let local = tempfile::Builder::new().prefix("sbb").tempdir().unwrap();
        let transport = Transport::new(local.path().join("s")).unwrap();
        let host = Host::new(sshd::Sshd::ALIAS, sshd.ssh_options()).unwrap();
        Remote {
            sshd,
            transport,
            host,
            local,
        }
    }

    fn folder(&self, name: &str) -> PathBuf {
        let (uid, gid) = sshd::remote_user();
        let dir = self.sshd.remote_dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        dir
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ssh")
            .args(self.host.options.iter())
            .arg("-o")
            .arg(format!(
                "ControlPath={}/%C",
                self.transport.socket_dir().display()
            ))
            .args(["-O", "exit", "--", &self.host.destination])
            .stderr(Stdio::null())
            .status();
    }
}

/// A local Unix socket answering each line with `ok <line>`, for the forward's local end.
fn echo_socket(dir: &Path) -> PathBuf {
    let path = dir.join("echo.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut lines = tokio::io::BufReader::new(r).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    if w.write_all(format!("ok {l}\n").as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    path
}

/// One round trip through the forwarded socket (as root, who may open the remote user's).
async fn forward_round_trip(socket: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let s = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    let (r, mut w) = s.into_split();
    w.write_all(b"ping\n").await.map_err(|e| e.to_string())?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::BufReader::new(r).read_line(&mut line),
    )
    .await
    .map_err(|_| "no answer within 10 s".to_string())?
    .map_err(|e| e.to_string())?;
    if line.trim() != "ok ping" {
        return Err(format!("answer {line:?}"));
    }
    Ok(started.elapsed())
}

/// Callers of the router phase: `f0`..`f4` (local teams whose agents never start).
const CALLERS: usize = 5;

/// A teams config for the router phase: the callers, `here` (the scripted agent in a local
/// folder) and `there` (the same agent in a folder of the remote host, over the test sshd),
/// a pool big enough for every agent, no rate limit, nothing that expires during the run.
fn router_config(r: &Remote, agent: &Path) -> Arc<TeamsConfig> {
    let q = |v: &str| serde_json::Value::from(v).to_string();
    let root = r.local.path();
    let (here, home) = (root.join("here"), root.join("home"));
    for d in [&here, &home] {
        std::fs::create_dir_all(d).unwrap();
    }
    let (there, there_home) = (r.folder("there"), r.folder("there-home"));
    let options: Vec<String> = r.sshd.ssh_options().iter().map(|o| q(o)).collect();
    let agent = agent.display().to_string();
    let mut text = format!(
        "[settings]\ncache_ttl = \"1h\"\nidle_timeout = \"1h\"\nmax_processes = 32\n\
         max_queued_per_pair = 1000000\ntells_per_minute = 1000000000\n\n\
         [database]\npath = {}\n\n\
         [teams.here]\npath = {}\nagent_path = {}\nenv = {{ HOME = {} }}\n\n\
         [teams.there]\npath = {}\nremote = {}\nssh_options = [{}]\nagent_path = {}\n\
         env = {{ HOME = {} }}\n\n",
        q(&root.join("sb.db").display().to_string()),
        q(&here.display().to_string()),
        q(&agent),
        q(&home.display().to_string()),
        q(&there.display().to_string()),
        q(sshd::Sshd::ALIAS),
        options.join(", "),
        q(&agent),
        q(&there_home.display().to_string()),
    );
    for i in 0..CALLERS {
        text.push_str(&format!(
            "[teams.f{i}]\npath = {}\nagent_path = {}\n\n",
            q(&here.display().to_string()),
            q(&agent)
        ));
    }
    Arc::new(TeamsConfig::parse(&text, None, &|_| None).unwrap())
}

/// One tell through the router, to its stored answer (the scripted agent echoes).
async fn router_tell(router: &Router, from: &str, to: &str, text: &str) -> Duration {
    let t = Instant::now();
    let tell = router.tell(from, to, text, Wait::For(STEP)).await.unwrap();
    let took = t.elapsed();
    assert_eq!(
        tell.answer.as_deref(),
        Some(format!("echo: {text}").as_str()),
        "{tell:?}"
    );
    took
}

/// Tells through the real router to `here` and to `there` (see the module doc).
async fn router_phase(r: &Remote, agent: &Path, n: usize) {
    let m = SessionManager::open(router_config(r, agent)).unwrap();
    m.initialize().unwrap();
    let router = Router::new(Arc::new(m));
    router.recover(None).unwrap();
    for (op, to) in [("router_local", "here"), ("router_ssh", "there")] {
        // The agents' starts (one per pair), apart from the tells.
        let mut first = Vec::new();
        for i in 0..CALLERS {
            first.push(router_tell(&router, &format!("f{i}"), to, "start").await);
        }
        report(&format!("{op}_first"), first, None);
        let mut samples = Vec::new();
        let wall = Instant::now();
        for i in 0..n {
            samples.push(router_tell(&router, "f0", to, &format!("m{i}")).await);
        }
        report(op, samples, Some(wall.elapsed()));
        let wall = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..CALLERS {
            let (router, to) = (router.clone(), to.to_string());
            tasks.spawn(async move {
                let mut s = Vec::new();
                for i in 0..n / CALLERS {
                    s.push(router_tell(&router, &format!("f{c}"), &to, &format!("p{c}-{i}")).await);
                }
                s
            });
        }
        let mut samples = Vec::new();
        while let Some(s) = tasks.join_next().await {
            samples.extend(s.unwrap());
        }
        report(&format!("{op}_x{CALLERS}"), samples, Some(wall.elapsed()));
    }
    router.shutdown().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let router_only = std::env::args().any(|a| a == "--router-only");
    let (n_connect, n_run, n_spawn, n_fwd) = if quick {
        (3, 50, 5, 50)
    } else {
        (10, 300, 20, 300)
    };
    eprintln!(
        "# cpus={} quick={quick}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let r = Remote::start(&[]);
    match scripted_agent() {
        Some(agent) => router_phase(&r, &agent, n_run).await,
        None => eprintln!(
            "# router_* skipped: build the scripted agent first \
             (cargo build --locked --example switchboard-test-agent, same profile)"
        ),
    }
    if router_only {
        return;
    }
    let folder = r.folder("work");

    let mut samples = Vec::new();
    for _ in 0..n_connect {
        let t = Instant::now();
        r.transport.connect(&r.host).await.unwrap();
        samples.push(t.elapsed());
        r.transport.disconnect(&r.host).await;
    }
    report("connect", samples, None);
    r.transport.connect(&r.host).await.unwrap();

    let mut samples = Vec::new();
    for _ in 0..n_run {
        let t = Instant::now();
        let out = r
            .transport
            .run(&r.host, "true", "true", STEP)
            .await
            .unwrap();
        assert_eq!(out.status, Some(0));
        samples.push(t.elapsed());
    }
    report("run_true", samples, None);

    let wall = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (transport, host) = (r.transport.clone(), r.host.clone());
        tasks.spawn(async move {
            let mut s = Vec::new();
            for _ in 0..n_run / 8 {
                let t = Instant::now();
                transport.run(&host, "true", "true", STEP).await.unwrap();
                s.push(t.elapsed());
            }
            s
        });
    }
    let mut samples = Vec::new();
    while let Some(s) = tasks.join_next().await {
        samples.extend(s.unwrap());
    }
    report("run_true_x8", samples, Some(wall.elapsed()));

    let log = r.local.path().join("agent.log");
    let adapter = &switchboard::agent::claude::ClaudeCode;
    let mut local = Vec::new();
    let mut remote = Vec::new();
    for i in 0..n_spawn {
        let t = Instant::now();
        let mut p =
            AgentProcess::spawn(&sh(&folder, "echo ready; exec cat"), &log, adapter).unwrap();
        if let Some(StdoutLine::Closed(_)) | None =
            tokio::time::timeout(STEP, p.lines.recv()).await.unwrap()
        {
            panic!("local spawn ended before its line");
        }
        local.push(t.elapsed());
        let _ = p.stop(Duration::from_secs(1)).await;
        let t = Instant::now();
        let mut agent = RemoteAgent::spawn(
            &r.transport,
            &r.host,
            &sh(&folder, "exec cat"),
            &Owner::current().marker(&format!("bench-{i}")),
            &log,
            adapter,
            STEP,
        )
        .await
        .unwrap();
        remote.push(t.elapsed());
        agent
            .stop(&r.transport, Duration::from_secs(1))
            .await
            .unwrap();
    }
    report("spawn_local", local, None);
    report("spawn_ssh", remote, None);

    let echo = echo_socket(r.local.path());
    let dir = format!(
        "/tmp/sbb-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let fwd = ops::reverse_forward(
        &r.transport,
        &r.host,
        &dir,
        "f.sock",
        &echo.display().to_string(),
    )
    .await
    .unwrap();
    let mut samples = Vec::new();
    for _ in 0..n_fwd {
        samples.push(forward_round_trip(&fwd.remote_socket).await.unwrap());
    }
    report("forward_rt", samples, None);
    ops::cancel_forward(&r.transport, &r.host, &fwd)
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    // Turns with the scripted agent (Claude Code's protocol, answers at once), local and over
    // SSH: what a tell costs at the agent layer once the agent runs (no router, no store).
    match scripted_agent() {
        Some(agent) => {
            let home = r.folder("home");
            for (op, remote) in [("turn_local", false), ("turn_ssh", true)] {
                let spec = scripted_spec(&agent, &folder, &home);
                let session = uuid::Uuid::new_v4().to_string();
                let (mut process, remote_agent) = if remote {
                    let a = RemoteAgent::spawn(
                        &r.transport,
                        &r.host,
                        &spec,
                        &Owner::current().marker(&session),
                        &log,
                        adapter,
                        STEP,
                    )
                    .await
                    .unwrap();
                    (a.process, Some(a.remote))
                } else {
                    (AgentProcess::spawn(&spec, &log, adapter).unwrap(), None)
                };
                let mut samples = Vec::new();
                for i in 0..n_run + 5 {
                    let t = Instant::now();
                    process
                        .send_line(&adapter.encode_message(&format!("m{i}")))
                        .await
                        .unwrap();
                    loop {
                        match tokio::time::timeout(STEP, process.lines.recv())
                            .await
                            .unwrap()
                        {
                            Some(StdoutLine::Event(AgentEvent::Result(_))) => break,
                            Some(StdoutLine::Closed(_)) | None => panic!("the agent ended"),
                            Some(_) => {}
                        }
                    }
                    if i >= 5 {
                        samples.push(t.elapsed());
                    }
                }
                report(op, samples, None);
                let _ = process.stop(Duration::from_secs(2)).await;
                if let Some(id) = remote_agent {
                    let _ =
                        launch::stop_group(&r.transport, &r.host, id, Duration::from_secs(2)).await;
                }
            }
        }
        None => eprintln!(
            "# turn_local / turn_ssh skipped: build the scripted agent first \
             (cargo build --locked --example switchboard-test-agent, same profile)"
        ),
    }

    // Switchboard's tools for a remote agent: the credential, the forward, and taking both
    // down (over the existing control connection; no server needed behind the forward).
    let server = switchboard::agent::adapter::SwitchboardServer {
        url: "http://127.0.0.1:9/mcp".into(),
        headers: [("X-Switchboard-Agent".to_string(), "bench-token".to_string())].into(),
        timeout_ms: 1000,
    };
    let (mut wiring, mut closing) = (Vec::new(), Vec::new());
    for _ in 0..n_spawn {
        let session = uuid::Uuid::new_v4().to_string();
        let t = Instant::now();
        let mcp = switchboard::agent::ssh::mcp::remote_mcp_wiring(
            &r.transport,
            &r.host,
            &session,
            &server,
            None,
        )
        .await
        .unwrap();
        wiring.push(t.elapsed());
        let t = Instant::now();
        mcp.guard.close().await.unwrap();
        closing.push(t.elapsed());
    }
    report("mcp_wiring", wiring, None);
    report("mcp_close", closing, None);
    drop(r);

    // sshd's default MaxSessions (10) per connection: every agent holds one session of the
    // host's control connection for as long as it runs.
    let r = Remote::start(&["MaxSessions=10", "MaxStartups=10:30:100"]);
    let echo = echo_socket(r.local.path());
    r.transport.connect(&r.host).await.unwrap();
    let dir = format!(
        "/tmp/sbb-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let fwd = ops::reverse_forward(
        &r.transport,
        &r.host,
        &dir,
        "f.sock",
        &echo.display().to_string(),
    )
    .await
    .unwrap();
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(
            tokio::process::Command::new("ssh")
                .args(r.transport.command_args(&r.host, "exec sleep 300"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap(),
        );
    }
    let deadline = Instant::now() + STEP;
    while r
        .sshd
        .session_processes()
        .iter()
        .filter(|(_, c)| c.starts_with("sleep 300"))
        .count()
        < 10
    {
        assert!(Instant::now() < deadline, "10 sessions did not open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logins = r.sshd.logins();
    let t = Instant::now();
    let eleventh = r.transport.run(&r.host, "true", "true", STEP).await;
    let took = t.elapsed();
    let new_logins = r.sshd.logins() - logins;
    let outcome = match &eleventh {
        Ok(out) => format!("status={:?} stderr={:?}", out.status, out.stderr.trim()),
        Err(e) => format!("error={:?}", e.to_string()),
    };
    println!(
        "op=max_sessions held=10 eleventh_ms={} new_logins={new_logins} {outcome}",
        took.as_millis()
    );
    let still = forward_round_trip(&fwd.remote_socket).await;
    println!(
        "op=max_sessions_forward held=10 {}",
        match still {
            Ok(d) => format!("ok rt_us={}", d.as_micros()),
            Err(e) => format!("error={e:?}"),
        }
    );
    // A burst past the limit: each command beyond it makes a connection of its own, and
    // sshd's MaxStartups (10:30:100) drops some of a burst of unauthenticated connections.
    let burst = 20;
    let logins = r.sshd.logins();
    let wall = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..burst {
        let (transport, host) = (r.transport.clone(), r.host.clone());
        tasks.spawn(async move {
            match transport.run(&host, "true", "true", STEP).await {
                Ok(out) if out.status == Some(0) => None,
                Ok(out) => Some(format!("status {:?}: {}", out.status, out.stderr.trim())),
                Err(e) => Some(e.to_string()),
            }
        });
    }
    let mut failed = Vec::new();
    while let Some(r) = tasks.join_next().await {
        failed.extend(r.unwrap());
    }
    println!(
        "op=max_sessions_burst held=10 burst={burst} failed={} new_logins={} wall_ms={} first_error={:?}",
        failed.len(),
        r.sshd.logins() - logins,
        wall.elapsed().as_millis(),
        failed.first()
    );
    let alive = r.transport.master_alive(&r.host).await;
    println!("op=max_sessions_master alive_after={alive}");
    drop(held);
    let deadline = Instant::now() + STEP;
    let after = loop {
        match r.transport.run(&r.host, "true", "true", STEP).await {
            Ok(out) if out.status == Some(0) => break Ok(()),
            other if Instant::now() > deadline => break Err(format!("{other:?}")),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    println!("op=max_sessions_after_release ok={}", after.is_ok());
    let _ = ops::cancel_forward(&r.transport, &r.host, &fwd).await;
    let _ = std::fs::remove_dir_all(&dir);
}
