#!/usr/bin/env bash
# The main job, for now: build Switchboard, check teams.example.toml, open a session and read
# it back from the default SQLite database (in the user's data dir), then print stats.
set -euo pipefail
cd "$(dirname "$0")/.."

# The example's teams live under $SWITCHBOARD_PROJECTS; make sure those folders exist.
export SWITCHBOARD_PROJECTS="${SWITCHBOARD_PROJECTS:-$PWD/target/demo/projects}"
mkdir -p "$SWITCHBOARD_PROJECTS"/frontend "$SWITCHBOARD_PROJECTS"/backend "$SWITCHBOARD_PROJECTS"/docs

# A debug build: it shares its compiled dependencies with the test build (CI runs both).
cargo build --locked --bin switchboard
sb() { ./target/debug/switchboard --config teams.example.toml "$@"; }

sb config check
sb sessions open frontend backend
sb sessions list --to backend
sb stats
