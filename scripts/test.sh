#!/usr/bin/env bash
# Runs every test of the crate (unit and integration), building with the committed Cargo.lock.
#
# First makes sure the real Claude Code CLI that tests/claude_code.rs drives is installed, pinned,
# into the git-ignored .tools/claude-code (npm `@anthropic-ai/claude-code`; about 360 MB, ~15 s).
# Set SWITCHBOARD_TEST_CLAUDE=/path/to/claude to use another binary instead (no install then).
set -euo pipefail
cd "$(dirname "$0")/.."

CLAUDE_CODE_VERSION=2.1.328

if [[ -z ${SWITCHBOARD_TEST_CLAUDE:-} ]]; then
    tools=$PWD/.tools
    claude=$tools/claude-code/node_modules/.bin/claude
    claude_version() {
        # `claude --version` prints "2.1.328 (Claude Code)".
        "$claude" --version 2>/dev/null | awk 'NR == 1 { print $1 }' || true
    }
    mkdir -p "$tools"
    (
        # One install at a time, also across concurrent runs of this script.
        flock 9
        if [[ ! -x $claude || $(claude_version) != "$CLAUDE_CODE_VERSION" ]]; then
            command -v npm >/dev/null || {
                echo "error: npm is needed to install Claude Code $CLAUDE_CODE_VERSION into $tools/claude-code" >&2
                exit 1
            }
            echo "installing @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION into $tools/claude-code" >&2
            # A clean install: npm leaves a damaged one (e.g. a stub binary) "up to date".
            rm -rf .tools/claude-code
            npm install --prefix .tools/claude-code --no-audit --no-fund --loglevel=error \
                "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION"
            found=$(claude_version)
            if [[ $found != "$CLAUDE_CODE_VERSION" ]]; then
                echo "error: $claude --version gives '${found}', expected $CLAUDE_CODE_VERSION" >&2
                echo "(if npm skipped the package's postinstall step, the real binary is" >&2
                echo " .tools/claude-code/node_modules/@anthropic-ai/claude-code-linux-x64/claude:" >&2
                echo " point SWITCHBOARD_TEST_CLAUDE at it)" >&2
                exit 1
            fi
        fi
    ) 9>"$tools/.claude-code.lock"
fi

# A real browser for the dashboard's tests (tests/dashboard.rs): Debian's chromium and
# chromium-driver, installed once (quietly) when missing. Set SWITCHBOARD_TEST_CHROMIUM and
# SWITCHBOARD_TEST_CHROMEDRIVER to use other binaries instead (no install then).
if [[ -z ${SWITCHBOARD_TEST_CHROMIUM:-} || -z ${SWITCHBOARD_TEST_CHROMEDRIVER:-} ]] &&
    ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }; then
    if ! command -v apt-get >/dev/null; then
        echo "error: the dashboard tests need chromium and chromedriver (Debian: apt-get install chromium chromium-driver)" >&2
        exit 1
    fi
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    echo "installing chromium and chromium-driver (apt-get) for the dashboard tests" >&2
    (
        # One install at a time, also across concurrent runs of this script.
        flock 9
        if ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }; then
            export DEBIAN_FRONTEND=noninteractive
            "${sudo[@]}" apt-get update -qq >/dev/null
            "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
        fi
    ) 9>"${TMPDIR:-/tmp}/switchboard-chromium-install.lock"
fi
# The Codex and Gemini CLIs that tests/codex_cli.rs and tests/gemini_cli.rs drive, pinned, into
# .tools/codex and .tools/gemini the same way (npm `@openai/codex`, about 420 MB;
# `@google/gemini-cli`, about 100 MB). SWITCHBOARD_TEST_CODEX / SWITCHBOARD_TEST_GEMINI point the
# tests at other binaries instead (no install then).
CODEX_VERSION=0.171.0
GEMINI_CLI_VERSION=0.61.0

# install_pinned_cli NAME PACKAGE VERSION OVERRIDE_VAR: installs PACKAGE@VERSION into .tools/NAME
# unless OVERRIDE_VAR is set or the installed `NAME --version` already says VERSION.
install_pinned_cli() {
    local name=$1 package=$2 version=$3 override=$4
    [[ -z ${!override:-} ]] || return 0
    local tools=$PWD/.tools
    local bin=$tools/$name/node_modules/.bin/$name
    mkdir -p "$tools"
    (
        flock 9
        # `codex --version` prints "codex-cli 0.171.0", `gemini --version` prints "0.61.0".
        found() { "$bin" --version 2>/dev/null | awk 'NR == 1 { print $NF }' || true; }
        if [[ ! -x $bin || $(found) != "$version" ]]; then
            command -v npm >/dev/null || {
                echo "error: npm is needed to install $package $version into $tools/$name" \
                     "(or set $override to a $name binary)" >&2
                exit 1
            }
            echo "installing $package@$version into $tools/$name" >&2
            rm -rf "$tools/$name"
            npm install --prefix "$tools/$name" --no-audit --no-fund --loglevel=error \
                "$package@$version"
            if [[ $(found) != "$version" ]]; then
                echo "error: $bin --version gives '$(found)', expected $version" >&2
                exit 1
            fi
        fi
    ) 9>"$tools/.$name.lock"
}
install_pinned_cli codex @openai/codex "$CODEX_VERSION" SWITCHBOARD_TEST_CODEX
install_pinned_cli gemini @google/gemini-cli "$GEMINI_CLI_VERSION" SWITCHBOARD_TEST_GEMINI

# Debian's OpenSSH server for tests/remote_ssh.rs and tests/remote_teams.rs, which start their
# own sshd on a loopback port (the system's service is never started). Once, when missing, under a lock.
( flock 9; sh scripts/install-sshd.sh ) 9>"${TMPDIR:-/tmp}/switchboard-sshd-install.lock"

cargo test --locked --all-targets
