#!/usr/bin/env bash
# Runs every test of the crate (unit and integration), building with the committed Cargo.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --all-targets
