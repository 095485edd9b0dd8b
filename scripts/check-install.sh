#!/usr/bin/env bash
# `cargo install --path .` installs `switchboard` only (not the bench, not the scripted test
# agent), and the installed binary is lean: stripped, no debug info. Reuses ./target (a release
# build already there makes this quick).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
cargo install --locked --quiet --path . --root "$root" --target-dir target
installed="$(ls "$root/bin")"
if [ "$installed" != "switchboard" ]; then
    echo "check-install: cargo install put these in bin/, expected only switchboard:" >&2
    echo "$installed" >&2
    exit 1
fi
bin="$root/bin/switchboard"
"$bin" --version >/dev/null
if readelf -S "$bin" | grep -qE '\.debug_|\.symtab'; then
    echo "check-install: $bin keeps debug info or symbols (see [profile.release])" >&2
    exit 1
fi
size=$(stat -c %s "$bin")
if [ "$size" -gt $((40 * 1024 * 1024)) ]; then
    echo "check-install: $bin is $size bytes (more than 40 MiB)" >&2
    exit 1
fi
echo "check-install: ok, only switchboard installed ($((size / 1024 / 1024)) MiB, stripped)"
