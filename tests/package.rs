//! What `cargo install` ships: the `switchboard` binary only (the bench is a `[[bench]]` target,
//! the scripted test agent an example), built lean (no debug info, stripped), with symbols only
//! in the `profiling` profile. `scripts/check-install.sh` checks a real `cargo install`.

use std::process::{Command, Stdio};

use serde_json::Value;

fn manifest_dir() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

/// `cargo metadata` of this package (no dependencies).
fn metadata() -> Value {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(manifest_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cargo metadata")
        .wait_with_output()
        .expect("wait for cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata JSON")
}

/// Names of the package's targets of `kind` (bin, bench, example, ...).
fn targets(metadata: &Value, kind: &str) -> Vec<String> {
    let package = &metadata["packages"][0];
    let mut names: Vec<String> = package["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == kind))
        })
        .map(|t| t["name"].as_str().expect("name").to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn switchboard_is_the_only_binary_cargo_install_installs() {
    let metadata = metadata();
    assert_eq!(targets(&metadata, "bin"), ["switchboard"]);
    // The benches are `[[bench]]` targets: built by `cargo bench`, never installed.
    let benches = targets(&metadata, "bench");
    assert!(
        benches.contains(&"switchboard-bench".to_string())
            && benches.contains(&"events-bench".to_string()),
        "{benches:?}"
    );
    // Test programs are examples: built for the tests, never installed.
    assert_eq!(
        targets(&metadata, "example"),
        ["switchboard-ssh-owner", "switchboard-test-agent"]
    );
}

#[test]
fn the_release_build_is_lean_and_the_profiling_build_has_symbols() {
    let text =
        std::fs::read_to_string(format!("{}/Cargo.toml", manifest_dir())).expect("read Cargo.toml");
    let manifest: toml::Table = text.parse().expect("Cargo.toml is TOML");
    let profile = |name: &str| {
        manifest["profile"][name]
            .as_table()
            .unwrap_or_else(|| panic!("[profile.{name}]"))
            .clone()
    };
    let release = profile("release");
    // No debug info (absent means none for release) and stripped: 11 MB, not 85 MB.
    assert!(
        matches!(
            release.get("debug"),
            None | Some(toml::Value::Boolean(false))
        ) || release.get("debug").and_then(toml::Value::as_integer) == Some(0),
        "[profile.release] keeps debug info: {release:?}"
    );
    assert_eq!(
        release.get("strip"),
        Some(&toml::Value::Boolean(true)),
        "{release:?}"
    );
    let profiling = profile("profiling");
    assert_eq!(profiling["inherits"].as_str(), Some("release"));
    assert!(
        profiling
            .get("debug")
            .is_some_and(|d| d.as_integer().is_some_and(|n| n > 0)
                || d.as_bool() == Some(true)
                || d.as_str().is_some_and(|s| s != "none")),
        "[profile.profiling] must keep symbols: {profiling:?}"
    );
}
