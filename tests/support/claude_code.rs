//! The pinned Claude Code CLI for tests that run the real agent.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The Claude Code version the tests pin.
pub const CLAUDE_VERSION: &str = "2.1.328";

/// The claude binary: `$SWITCHBOARD_TEST_CLAUDE`, or the pinned one in `.tools/claude-code`
/// (installed by `scripts/test.sh`). Fails (never skips) when it is missing.
pub fn binary() -> String {
    if let Ok(path) = std::env::var("SWITCHBOARD_TEST_CLAUDE") {
        assert!(
            Path::new(&path).is_file(),
            "SWITCHBOARD_TEST_CLAUDE={path} is not a file (unset it and run `bash scripts/test.sh` \
             to install the pinned Claude Code {CLAUDE_VERSION})"
        );
        return path;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/claude-code");
    let bin = root.join("node_modules/.bin/claude");
    let package = root.join("node_modules/@anthropic-ai/claude-code/package.json");
    let version = std::fs::read_to_string(&package)
        .ok()
        .and_then(|p| serde_json::from_str::<Value>(&p).ok())
        .and_then(|p| p.get("version").and_then(Value::as_str).map(String::from));
    assert!(
        bin.is_file() && version.as_deref() == Some(CLAUDE_VERSION),
        "Claude Code {CLAUDE_VERSION} is not installed at {} (found version {version:?}): \
         run `bash scripts/test.sh` (it installs it), or set SWITCHBOARD_TEST_CLAUDE to a claude binary",
        bin.display()
    );
    bin.display().to_string()
}
