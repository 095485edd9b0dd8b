//! Where the scripted test agent is: `switchboard-test-agent`, an example target built from
//! tests/bin/scripted_agent.rs (an example, so `cargo install` leaves it out). `cargo test`
//! builds examples, `cargo test --test NAME` does not: the first call builds it (a no-op when it
//! is up to date) into the `examples/` folder beside this test's `deps/`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

const NAME: &str = "switchboard-test-agent";

/// Absolute path of the scripted agent, built if needed (panics saying why when it cannot be).
pub fn path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(build)
}

fn build() -> String {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile dir>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary in <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target dir");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let agent: PathBuf = profile_dir.join("examples").join(NAME);
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", NAME, "--profile", &profile])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir)
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build {NAME}: {e}"));
    assert!(
        status.success(),
        "cargo build --example {NAME} failed: {status}"
    );
    assert!(agent.is_file(), "{} was not built", agent.display());
    agent.display().to_string()
}
