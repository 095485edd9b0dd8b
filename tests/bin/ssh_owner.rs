//! A stand-in for a Switchboard process that runs agents on a remote host, for the test that
//! kills it with SIGKILL (tests/remote_ssh.rs): starts each given script on the host through
//! the real SSH transport (`switchboard::agent::ssh`), prints one line per agent
//! (`<remote pid> <remote pgid> <remote start> <local ssh pid>`), then waits to be killed.
//!
//! Usage: `switchboard-ssh-owner SOCKET_DIR DESTINATION FOLDER N SCRIPT... [SSH OPTION...]`

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use switchboard::agent::adapter::LaunchSpec;
use switchboard::agent::ssh::launch::{Owner, RemoteAgent};
use switchboard::agent::ssh::{Host, Transport};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: switchboard-ssh-owner SOCKET_DIR DESTINATION FOLDER N SCRIPT... [SSH OPTION...]";
    let n: usize = args.get(3).and_then(|n| n.parse().ok()).expect(usage);
    assert!(args.len() >= 4 + n, "{usage}");
    let socket_dir = PathBuf::from(&args[0]);
    let scripts = args[4..4 + n].to_vec();
    let options = args[4 + n..].to_vec();
    let host = Host::new(&args[1], options).expect("destination");
    let folder = PathBuf::from(&args[2]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let transport = Transport::new(socket_dir.clone()).expect("socket folder");
        let mut agents = Vec::new();
        for (i, script) in scripts.iter().enumerate() {
            let spec = LaunchSpec {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), script.clone()],
                cwd: folder.clone(),
                env: Default::default(),
                inherit: Vec::new(),
                env_remove: Vec::new(),
            };
            let agent = RemoteAgent::spawn(
                &transport,
                &host,
                &spec,
                &Owner::current().marker(&format!("owner-{i}")),
                &socket_dir.join(format!("agent-{i}.log")),
                &switchboard::agent::claude::ClaudeCode,
                Duration::from_secs(30),
            )
            .await
            .expect("start the agent");
            println!(
                "{} {} {} {}",
                agent.remote.pid, agent.remote.pgid, agent.remote.start, agent.process.identity.pid
            );
            agents.push(agent);
        }
        std::io::stdout().flush().expect("flush");
        std::future::pending::<()>().await;
    });
}
