//! The pinned Codex and Gemini CLIs for tests that run the real agents (installed into `.tools/`
//! by `scripts/test.sh`, like Claude Code in `claude_code.rs`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The Codex CLI version the tests pin (npm `@openai/codex`).
pub const CODEX_VERSION: &str = "0.171.0";
/// The Gemini CLI version the tests pin (npm `@google/gemini-cli`).
pub const GEMINI_VERSION: &str = "0.61.0";

/// A pinned npm CLI: `$<var>`, or `.tools/<folder>/node_modules/.bin/<bin>` whose package
/// `<package>` has version `version`. Fails (never skips) when it is missing.
fn pinned(var: &str, folder: &str, bin: &str, package: &str, version: &str) -> String {
    if let Ok(path) = std::env::var(var) {
        assert!(
            Path::new(&path).is_file(),
            "{var}={path} is not a file (unset it and run `bash scripts/test.sh` to install the \
             pinned {package} {version})"
        );
        return path;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".tools")
        .join(folder);
    let exe = root.join("node_modules/.bin").join(bin);
    let manifest = root.join("node_modules").join(package).join("package.json");
    let found = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|p| serde_json::from_str::<Value>(&p).ok())
        .and_then(|p| p.get("version").and_then(Value::as_str).map(String::from));
    assert!(
        exe.is_file() && found.as_deref() == Some(version),
        "{package} {version} is not installed at {} (found version {found:?}): run \
         `bash scripts/test.sh` (it installs it), or set {var} to a {bin} binary",
        exe.display()
    );
    exe.display().to_string()
}

/// The codex binary: `$SWITCHBOARD_TEST_CODEX`, or the pinned one in `.tools/codex`.
pub fn codex() -> String {
    pinned(
        "SWITCHBOARD_TEST_CODEX",
        "codex",
        "codex",
        "@openai/codex",
        CODEX_VERSION,
    )
}

/// The gemini binary: `$SWITCHBOARD_TEST_GEMINI`, or the pinned one in `.tools/gemini`.
pub fn gemini() -> String {
    pinned(
        "SWITCHBOARD_TEST_GEMINI",
        "gemini",
        "gemini",
        "@google/gemini-cli",
        GEMINI_VERSION,
    )
}

/// `python3` and the stdio MCP server of tests/mcp/echo_server.py (one tool, `echo`).
pub fn echo_server() -> (String, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/echo_server.py");
    ("python3".to_string(), script.display().to_string())
}
